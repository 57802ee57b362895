use std::sync::{Arc, Mutex};

use aegir_amqp::{Broker, Unconfirmed};
use aegir_contract::{Lane, LogLevel, LogLine};
use chrono::Utc;
use uuid::Uuid;

/// Lines sent before the oldest ones' confirms are awaited.
const UNCONFIRMED_MAX: usize = 128;

/// Writes lines into a task's log. Lines are sent in order on one channel without
/// waiting for each confirm (a confirm costs the broker a disk sync); [`StepLog::flush`]
/// waits for them, sending again any whose connection broke, so the log a user watches
/// is the log the worker wrote, in order. The worker flushes before it reports the
/// step's result.
#[derive(Clone)]
pub struct StepLog {
    broker: Broker,
    task_id: Uuid,
    step: Option<u32>,
    source: String,
    lane: Lane,
    unconfirmed: Arc<Mutex<Vec<Unconfirmed>>>,
}

impl StepLog {
    pub fn new(broker: Broker, task_id: Uuid, step: Option<u32>, source: String) -> Self {
        Self { broker, task_id, step, source, lane: Lane::Interactive, unconfirmed: Default::default() }
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
        let sent = self.broker.publish_unconfirmed(&line).await;
        let full = {
            let mut unconfirmed = self.unconfirmed.lock().expect("log lines");
            unconfirmed.push(sent);
            unconfirmed.len() >= UNCONFIRMED_MAX
        };
        if full {
            self.flush().await;
        }
    }

    /// Waits until the broker holds every line written so far.
    pub async fn flush(&self) {
        let lines = std::mem::take(&mut *self.unconfirmed.lock().expect("log lines"));
        if lines.is_empty() {
            return;
        }
        if let Err(e) = self.broker.confirm(lines).await {
            tracing::error!(task_id = %self.task_id, error = %e, "could not publish a log line");
        }
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
