use aegir_amqp::Broker;
use aegir_contract::{LogLevel, LogLine};
use chrono::Utc;
use uuid::Uuid;

/// Writes lines into a task's log. Each line is published with a confirm before the
/// call returns, so the log a user watches is the log the worker wrote, in order.
#[derive(Clone)]
pub struct StepLog {
    broker: Broker,
    task_id: Uuid,
    step: Option<u32>,
    source: String,
}

impl StepLog {
    pub fn new(broker: Broker, task_id: Uuid, step: Option<u32>, source: String) -> Self {
        Self { broker, task_id, step, source }
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
        if let Err(e) = self.broker.publish(&line).await {
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
