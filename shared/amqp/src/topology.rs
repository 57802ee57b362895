//! The one place where exchanges, queues and bindings are named and declared.
//!
//! ```text
//! aegir.tasks  (direct)  task.requested ─────────────▶ scheduler.tasks
//!                        task.cancel ────────────────▶ scheduler.tasks  (behind its request)
//! aegir.work   (direct)  <server>.<service> ─────────▶ <server>.<service>   (one per worker kind per server)
//! aegir.events (topic)   step.result ────────────────▶ scheduler.results
//!                        #  (every event) ───────────▶ api.events
//! aegir.dead   (fanout)  rejected / over the delivery limit
//!                                         ├─────────▶ aegir.dead-letters   (kept for operators)
//!                                         └─────────▶ scheduler.dead       (fails the task it belongs to)
//! ```
//!
//! Every queue is a durable quorum queue. Work and command queues dead-letter into
//! `aegir.dead` and have a delivery limit, so a message that kills its consumer over
//! and over ends up dead-lettered instead of looping forever.

use aegir_contract::Route;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

pub const TASKS_EXCHANGE: &str = "aegir.tasks";
pub const WORK_EXCHANGE: &str = "aegir.work";
pub const EVENTS_EXCHANGE: &str = "aegir.events";
pub const DEAD_LETTER_EXCHANGE: &str = "aegir.dead";

/// Times a message may be delivered before it is dead-lettered.
pub const DELIVERY_LIMIT: i64 = 5;

/// Routing keys of the events exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKey {
    TaskLog,
    StepResult,
    TaskStarted,
    TaskFinished,
}

impl EventKey {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKey::TaskLog => "task.log",
            EventKey::StepResult => "step.result",
            EventKey::TaskStarted => "task.started",
            EventKey::TaskFinished => "task.finished",
        }
    }
}

pub const TASK_REQUESTED_KEY: &str = "task.requested";
pub const TASK_CANCEL_KEY: &str = "task.cancel";

/// The queues of the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueName {
    /// Task requests, consumed by the scheduler.
    SchedulerTasks,
    /// Step results, consumed by the scheduler.
    SchedulerResults,
    /// Dead letters, consumed by the scheduler to fail the tasks they belong to.
    SchedulerDead,
    /// Every event, consumed by task-api to persist it.
    ApiEvents,
    /// Dead letters kept for inspection.
    DeadLetters,
    /// The work of one service on one server.
    Work(Route),
}

impl QueueName {
    pub fn name(&self) -> String {
        match self {
            QueueName::SchedulerTasks => "scheduler.tasks".into(),
            QueueName::SchedulerResults => "scheduler.results".into(),
            QueueName::SchedulerDead => "scheduler.dead".into(),
            QueueName::ApiEvents => "api.events".into(),
            QueueName::DeadLetters => "aegir.dead-letters".into(),
            QueueName::Work(route) => route.to_string(),
        }
    }

    fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        match self {
            QueueName::DeadLetters | QueueName::SchedulerDead => {
                // Dead letters never dead-letter again; keep a bounded history.
                args.insert("x-max-length".into(), AMQPValue::LongLongInt(100_000));
            }
            _ => {
                args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()));
                args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
            }
        }
        args
    }

    fn bindings(&self) -> Vec<(&'static str, String)> {
        match self {
            QueueName::SchedulerTasks => {
                vec![(TASKS_EXCHANGE, TASK_REQUESTED_KEY.into()), (TASKS_EXCHANGE, TASK_CANCEL_KEY.into())]
            }
            QueueName::SchedulerResults => vec![(EVENTS_EXCHANGE, EventKey::StepResult.as_str().into())],
            QueueName::SchedulerDead | QueueName::DeadLetters => vec![(DEAD_LETTER_EXCHANGE, String::new())],
            QueueName::ApiEvents => vec![(EVENTS_EXCHANGE, "#".into())],
            QueueName::Work(route) => vec![(WORK_EXCHANGE, route.to_string())],
        }
    }
}

/// The queues every deployment has, whichever services run.
pub const CORE_QUEUES: [QueueName; 5] = [
    QueueName::SchedulerTasks,
    QueueName::SchedulerResults,
    QueueName::SchedulerDead,
    QueueName::ApiEvents,
    QueueName::DeadLetters,
];

/// Declares the exchanges and the core queues. Safe to repeat: every service does it
/// on every (re)connection, so the broker can start empty.
pub async fn declare_core(channel: &Channel) -> Result<(), lapin::Error> {
    let exchanges = [
        (TASKS_EXCHANGE, ExchangeKind::Direct),
        (WORK_EXCHANGE, ExchangeKind::Direct),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (DEAD_LETTER_EXCHANGE, ExchangeKind::Fanout),
    ];
    for (name, kind) in exchanges {
        channel
            .exchange_declare(
                name.into(),
                kind,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await?;
    }
    for queue in &CORE_QUEUES {
        declare_queue(channel, queue).await?;
    }
    Ok(())
}

/// Declares one queue and its bindings.
pub async fn declare_queue(channel: &Channel, queue: &QueueName) -> Result<(), lapin::Error> {
    let name: ShortString = queue.name().into();
    channel
        .queue_declare(name.clone(), QueueDeclareOptions { durable: true, ..Default::default() }, queue.arguments())
        .await?;
    for (exchange, key) in queue.bindings() {
        channel
            .queue_bind(name.clone(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default())
            .await?;
    }
    Ok(())
}
