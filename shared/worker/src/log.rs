use std::sync::Arc;
use std::time::Duration;

use aegir_amqp::{Broker, Unconfirmed};
use aegir_contract::{Lane, LogLevel, LogLine, TaskLog};
use chrono::Utc;
use tokio::sync::Mutex;
use uuid::Uuid;

/// Messages sent before the oldest ones' confirms are awaited.
const UNCONFIRMED_MAX: usize = 128;

/// Lines gathered into one message at most.
const LINES_MAX: usize = 100;

/// How long a line may wait for others to share its message: short enough that a
/// person watching sees no delay, long enough that a quick step's lines all ride in
/// its result. In the bulk lane no one watches each step, so lines wait longer.
fn linger(lane: Lane) -> Duration {
    match lane {
        Lane::Interactive => Duration::from_millis(100),
        Lane::Bulk => Duration::from_secs(2),
    }
}

/// Writes lines into a task's log. A line waits at most [`linger`] for others and then
/// goes out with them in one [`TaskLog`]; the lines still waiting when the step ends
/// ride in its result ([`StepLog::rest`]). Messages are sent in order on one channel
/// without waiting for each confirm (a confirm costs the broker a disk sync);
/// [`StepLog::flush`] sends what waits and waits for the confirms, so the log a user
/// watches is the log the worker wrote, in order.
#[derive(Clone)]
pub struct StepLog {
    broker: Broker,
    task_id: Uuid,
    step: Option<u32>,
    source: String,
    lane: Lane,
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    lines: Vec<LogLine>,
    unconfirmed: Vec<Unconfirmed>,
    /// A timer will send the waiting lines.
    timer: bool,
}

impl StepLog {
    pub fn new(broker: Broker, task_id: Uuid, step: Option<u32>, source: String) -> Self {
        Self { broker, task_id, step, source, lane: Lane::Interactive, pending: Default::default() }
    }

    /// The log of a step of `lane`.
    pub fn in_lane(self, lane: Lane) -> Self {
        Self { lane, ..self }
    }

    /// The lane of the step: work it shares with others (a web server's reload) may wait
    /// longer for them in the bulk lane, where no one watches each step.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    pub async fn line(&self, level: LogLevel, message: impl Into<String>) {
        let line = LogLine {
            id: Uuid::now_v7(),
            task_id: self.task_id,
            step: self.step,
            level,
            message: message.into(),
            source: self.source.clone(),
            at: Utc::now(),
        };
        match level {
            LogLevel::Error | LogLevel::Warning => tracing::warn!(task_id = %self.task_id, "{}", line.message),
            _ => tracing::info!(task_id = %self.task_id, "{}", line.message),
        }
        let mut pending = self.pending.lock().await;
        pending.lines.push(line);
        if pending.lines.len() >= LINES_MAX {
            self.send(&mut pending).await;
        } else if !pending.timer {
            pending.timer = true;
            let log = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(linger(log.lane)).await;
                let mut pending = log.pending.lock().await;
                pending.timer = false;
                log.send(&mut pending).await;
            });
        }
    }

    /// Sends the waiting lines, if any. The lock is held while it sends, so messages
    /// leave in the order their lines were written.
    async fn send(&self, pending: &mut Pending) {
        if pending.lines.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut pending.lines);
        let sent = self.broker.publish_unconfirmed(&TaskLog { task_id: self.task_id, lines }).await;
        pending.unconfirmed.push(sent);
        if pending.unconfirmed.len() >= UNCONFIRMED_MAX {
            self.confirm(pending).await;
        }
    }

    async fn confirm(&self, pending: &mut Pending) {
        let sent = std::mem::take(&mut pending.unconfirmed);
        if sent.is_empty() {
            return;
        }
        if let Err(e) = self.broker.confirm(sent).await {
            tracing::error!(task_id = %self.task_id, error = %e, "could not publish a log line");
        }
    }

    /// The lines not sent yet, taken to ride in the step's result; send the result
    /// before anything else is written.
    pub async fn rest(&self) -> Vec<LogLine> {
        std::mem::take(&mut self.pending.lock().await.lines)
    }

    /// Sends the waiting lines and waits until the broker holds every line written so far.
    pub async fn flush(&self) {
        let mut pending = self.pending.lock().await;
        self.send(&mut pending).await;
        self.confirm(&mut pending).await;
    }

    pub async fn info(&self, message: impl Into<String>) {
        self.line(LogLevel::Info, message).await
    }

    pub async fn warning(&self, message: impl Into<String>) {
        self.line(LogLevel::Warning, message).await
    }

    pub async fn error(&self, message: impl Into<String>) {
        self.line(LogLevel::Error, message).await
    }

    pub async fn success(&self, message: impl Into<String>) {
        self.line(LogLevel::Success, message).await
    }
}
