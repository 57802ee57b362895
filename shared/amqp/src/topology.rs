//! The one place where exchanges, queues and bindings are named and declared.
//!
//! ```text
//! aegir.tasks  (direct)  task.requested ─────────────▶ scheduler.tasks
//!                        task.cancel ────────────────▶ scheduler.tasks  (behind its request)
//! aegir.work   (direct)  <server>.<service> ─────────▶ <server>.<service>        (people's steps)
//!                        <server>.<service>.bulk ────▶ <server>.<service>.bulk   (scheduled and batch steps)
//! aegir.events (topic)   step.result, step.result.bare ▶ scheduler.results
//!                        task.#, step.result ────────▶ api.events  (a bare result has nothing for it)
//! aegir.commands (direct) command ────────────────▶ api.commands   (partners' commands, signed)
//! aegir.partner-events (topic)  <partner>.command.accepted|rejected, <partner>.task.started|finished
//!                                  ──────────────▶ billing.<partner>.*  (queues each partner declares)
//! aegir.dead   (fanout)  rejected / over the delivery limit
//!                                         ├─────────▶ aegir.dead-letters   (kept for operators)
//!                                         └─────────▶ scheduler.dead       (fails the task it belongs to)
//! ```
//!
//! Every queue is a durable quorum queue. Work and command queues dead-letter into
//! `aegir.dead` and have a delivery limit, so a message that kills its consumer over
//! and over ends up dead-lettered instead of looping forever.

use aegir_contract::{Lane, PartnerName, Route};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

pub const TASKS_EXCHANGE: &str = "aegir.tasks";
pub const WORK_EXCHANGE: &str = "aegir.work";
pub const EVENTS_EXCHANGE: &str = "aegir.events";
pub const DEAD_LETTER_EXCHANGE: &str = "aegir.dead";
/// Where partners (billing and other systems) publish their commands.
pub const COMMANDS_EXCHANGE: &str = "aegir.commands";
/// Where partners read the answers to their commands and the events of their tasks: only
/// these, never the step logs of every client that `aegir.events` carries.
pub const PARTNER_EVENTS_EXCHANGE: &str = "aegir.partner-events";
pub const COMMAND_KEY: &str = "command";

/// Times a message may be delivered before it is dead-lettered.
pub const DELIVERY_LIMIT: i64 = 5;

/// Routing keys of the events exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKey {
    TaskLog,
    /// A step result that reports facts or carries log lines for task-api to record.
    StepResult,
    /// A step result with nothing to record (no facts, no lines): only the scheduler
    /// takes it, which spares task-api those results.
    StepResultBare,
    TaskStarted,
    TaskFinished,
}

impl EventKey {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKey::TaskLog => "task.log",
            EventKey::StepResult => "step.result",
            EventKey::StepResultBare => "step.result.bare",
            EventKey::TaskStarted => "task.started",
            EventKey::TaskFinished => "task.finished",
        }
    }
}

/// What task-api tells a partner; the routing key is `<partner>.<event>`, so a partner
/// binds its queues with `<partner>.#`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerEventKey {
    CommandAccepted,
    CommandRejected,
    TaskStarted,
    TaskFinished,
}

impl PartnerEventKey {
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerEventKey::CommandAccepted => "command.accepted",
            PartnerEventKey::CommandRejected => "command.rejected",
            PartnerEventKey::TaskStarted => "task.started",
            PartnerEventKey::TaskFinished => "task.finished",
        }
    }

    /// The routing key of this event for `partner`.
    pub fn key(self, partner: &PartnerName) -> String {
        format!("{partner}.{}", self.as_str())
    }

    const ALL: [PartnerEventKey; 4] = [
        PartnerEventKey::CommandAccepted,
        PartnerEventKey::CommandRejected,
        PartnerEventKey::TaskStarted,
        PartnerEventKey::TaskFinished,
    ];

    /// The partner a routing key of the partner events exchange is addressed to.
    pub fn partner_of(key: &str) -> Option<PartnerName> {
        let (partner, event) = key.split_once('.')?;
        Self::ALL.iter().any(|k| k.as_str() == event).then(|| PartnerName::parse(partner).ok()).flatten()
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
    /// Partners' commands, consumed by task-api.
    ApiCommands,
    /// The work people asked for, of one service on one server.
    Work(Route),
    /// The scheduled queues' and batches' work of one service on one server; its worker
    /// takes from it only what the people's queue leaves room for.
    BulkWork(Route),
}

/// Suffix of a bulk work queue's name and routing key.
const BULK_SUFFIX: &str = ".bulk";

impl QueueName {
    pub fn name(&self) -> String {
        match self {
            QueueName::SchedulerTasks => "scheduler.tasks".into(),
            QueueName::SchedulerResults => "scheduler.results".into(),
            QueueName::SchedulerDead => "scheduler.dead".into(),
            QueueName::ApiEvents => "api.events".into(),
            QueueName::DeadLetters => "aegir.dead-letters".into(),
            QueueName::ApiCommands => "api.commands".into(),
            QueueName::Work(route) => route.to_string(),
            QueueName::BulkWork(route) => format!("{route}{BULK_SUFFIX}"),
        }
    }

    /// The work queue of `route` for steps of `lane`.
    pub fn work(route: Route, lane: Lane) -> Self {
        match lane {
            Lane::Interactive => QueueName::Work(route),
            Lane::Bulk => QueueName::BulkWork(route),
        }
    }

    /// Both lanes' work queues of `route`.
    pub fn lanes_of(route: &Route) -> [QueueName; 2] {
        [QueueName::Work(route.clone()), QueueName::BulkWork(route.clone())]
    }

    /// The route of a work queue.
    pub fn route(&self) -> Option<&Route> {
        match self {
            QueueName::Work(route) | QueueName::BulkWork(route) => Some(route),
            _ => None,
        }
    }

    /// The work queue a routing key of the work exchange leads to, if it is one.
    pub fn from_work_key(key: &str) -> Option<Self> {
        match key.strip_suffix(BULK_SUFFIX) {
            Some(route) => route.parse().ok().map(QueueName::BulkWork),
            None => key.parse().ok().map(QueueName::Work),
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
            QueueName::SchedulerResults => vec![
                (EVENTS_EXCHANGE, EventKey::StepResult.as_str().into()),
                (EVENTS_EXCHANGE, EventKey::StepResultBare.as_str().into()),
            ],
            QueueName::SchedulerDead | QueueName::DeadLetters => vec![(DEAD_LETTER_EXCHANGE, String::new())],
            QueueName::ApiEvents => {
                vec![(EVENTS_EXCHANGE, "task.#".into()), (EVENTS_EXCHANGE, EventKey::StepResult.as_str().into())]
            }
            QueueName::ApiCommands => vec![(COMMANDS_EXCHANGE, COMMAND_KEY.into())],
            QueueName::Work(_) | QueueName::BulkWork(_) => vec![(WORK_EXCHANGE, self.name())],
        }
    }
}

/// The queues every deployment has, whichever services run.
pub const CORE_QUEUES: [QueueName; 6] = [
    QueueName::SchedulerTasks,
    QueueName::SchedulerResults,
    QueueName::SchedulerDead,
    QueueName::ApiEvents,
    QueueName::DeadLetters,
    QueueName::ApiCommands,
];

/// Declares the exchanges and the core queues. Safe to repeat: every service does it
/// on every (re)connection, so the broker can start empty.
pub async fn declare_core(channel: &Channel) -> Result<(), lapin::Error> {
    let exchanges = [
        (TASKS_EXCHANGE, ExchangeKind::Direct),
        (WORK_EXCHANGE, ExchangeKind::Direct),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (DEAD_LETTER_EXCHANGE, ExchangeKind::Fanout),
        (COMMANDS_EXCHANGE, ExchangeKind::Direct),
        (PARTNER_EVENTS_EXCHANGE, ExchangeKind::Topic),
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
    // Earlier versions bound api.events to every event; that binding would still hand it
    // every bare step result. Unbinding one that is not there is no error.
    let events = QueueName::ApiEvents.name();
    channel.queue_unbind(events.into(), EVENTS_EXCHANGE.into(), "#".into(), FieldTable::default()).await?;
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

/// Checks that a queue exists (a passive declare, which needs no permission to
/// configure it); how many consumers it has.
pub async fn check_queue(channel: &Channel, queue: &QueueName) -> Result<u32, lapin::Error> {
    let options = QueueDeclareOptions { passive: true, durable: true, ..Default::default() };
    let found = channel.queue_declare(queue.name().into(), options, FieldTable::default()).await?;
    Ok(found.consumer_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_keys_lead_back_to_their_queue() {
        let route: Route = "server_web2.http".parse().unwrap();
        for lane in [Lane::Interactive, Lane::Bulk] {
            let queue = QueueName::work(route.clone(), lane);
            assert_eq!(QueueName::from_work_key(&queue.name()), Some(queue.clone()));
            assert_eq!(queue.bindings(), vec![(WORK_EXCHANGE, queue.name())]);
        }
        assert_eq!(QueueName::BulkWork(route).name(), "server_web2.http.bulk");
        assert_eq!(QueueName::from_work_key("scheduler.tasks"), None);
        assert_eq!(QueueName::from_work_key("server_web2.http.other"), None);
    }

    #[test]
    fn partner_events_are_addressed_by_partner() {
        let billing = PartnerName::parse("billing").unwrap();
        let key = PartnerEventKey::TaskFinished.key(&billing);
        assert_eq!(key, "billing.task.finished");
        assert_eq!(PartnerEventKey::partner_of(&key), Some(billing));
        assert_eq!(PartnerEventKey::partner_of("task.finished"), None);
        assert_eq!(PartnerEventKey::partner_of("Billing.task.finished"), None);
    }
}
