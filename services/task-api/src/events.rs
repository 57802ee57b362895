//! The event consumer: persists every task event from the `api.events` queue.
//!
//! Events are stored in lanes side by side, each lane in queue order; all events of one
//! task take the same lane, so a task's log keeps its order. What a lane has received
//! is stored in one transaction, all its log lines in one statement (the lines a start,
//! end or step result carries are stored before it is applied).
//! Each event is applied idempotently (a redelivered event changes nothing) and acked
//! only after its transaction committed.
//! An event that cannot be understood is dead-lettered; one the database refuses is
//! dead-lettered too, so it never blocks the queue. While PostgreSQL is down the event
//! is retried until it is back.

use std::sync::Arc;
use std::time::Duration;

use aegir_amqp::lapin_options::{BasicAckOptions, BasicNackOptions};
use aegir_amqp::topology::{EventKey, QueueName};
use aegir_amqp::{Broker, ConsumerSpec, Delivery, consume, extract_trace_context};
use aegir_contract::{
    ContextName, LogLine, Message, PlatformName, ServerName, SiteUri, StepFacts, StepOutcome, StepResult, TaskFinished,
    TaskKind, TaskLog, TaskOutcome, TaskRef, TaskStarted,
};
use aegir_postgres::Outbox;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::db;
use crate::error::is_unavailable;
use crate::import::{self, ImportStep};
use crate::live::{LiveEvent, LiveLog};
use crate::metrics::EVENTS_CONSUMED;
use crate::task_args::TaskArgs;
use crate::views::{ContextStatus, SiteStatus, TaskStatus};

/// Deliveries the broker may send ahead of the one being handled.
const PREFETCH: u16 = 100;
/// A bare step result is not routed here; one queued before its binding went still reads.
const EVENT_KEYS: [EventKey; 5] =
    [EventKey::TaskLog, EventKey::StepResult, EventKey::StepResultBare, EventKey::TaskStarted, EventKey::TaskFinished];

/// Events of one lane taken at once: their log lines are stored in one statement.
const BATCH: usize = 64;

/// Lanes events are stored in, side by side. The events of one task always take the
/// same lane, so they are stored in the order they were sent. Two keep the database
/// busy while one waits; more only make each lane's batches (and so its commits) smaller:
/// with eight, a busy system spent a fifth more of the database's time per task.
const LANES: usize = 2;

/// Consumes `api.events` until `shutdown`, finishing the events in hand.
pub async fn run(pool: PgPool, live: LiveLog, outbox: Outbox, broker: Broker, shutdown: CancellationToken) {
    let consumer = Arc::new(EventConsumer { pool, live, outbox, shutdown: shutdown.clone() });
    let mut lanes = tokio::task::JoinSet::new();
    let mut senders = Vec::with_capacity(LANES);
    for _ in 0..LANES {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Delivery>(usize::from(PREFETCH));
        let consumer = consumer.clone();
        lanes.spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while receiver.recv_many(&mut batch, BATCH).await > 0 {
                consumer.handle_batch(std::mem::take(&mut batch)).await;
            }
        });
        senders.push(sender);
    }
    let senders = Arc::new(senders);
    // In order: each delivery is handed to its task's lane before the next is read.
    let spec = ConsumerSpec { queue: QueueName::ApiEvents, prefetch: PREFETCH, in_order: true, batch_acks: true };
    consume(broker, spec, shutdown, move |delivery| {
        let senders = senders.clone();
        async move {
            let lane = lane_of(&delivery.data);
            // A closed lane means shutdown; the unacked delivery comes back next run.
            let _ = senders[lane].send(delivery).await;
        }
    })
    .await;
    // The senders went with the consumer: each lane ends once it has handled what it holds.
    while lanes.join_next().await.is_some() {}
}

/// The lane of an event: by its task, so one task's events keep their order. An event
/// that names no task (it will be refused) takes the first lane.
fn lane_of(body: &[u8]) -> usize {
    use std::hash::{Hash, Hasher};
    let Some(task) = TaskRef::peek(body) else { return 0 };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    task.task_id.hash(&mut hasher);
    (hasher.finish() % LANES as u64) as usize
}

fn event_key(routing_key: &str) -> Option<EventKey> {
    EVENT_KEYS.into_iter().find(|k| k.as_str() == routing_key)
}

/// A decoded event.
#[derive(Debug)]
// One at a time, decoded and dropped: boxing would only make matching noisier.
#[allow(clippy::large_enum_variant)]
enum Event {
    Log(TaskLog),
    Step(StepResult),
    Started(TaskStarted),
    Finished(TaskFinished),
}

impl Event {
    /// The routing key says which message the body must be.
    fn decode(routing_key: &str, body: &[u8]) -> Result<Self, String> {
        let key = event_key(routing_key).ok_or_else(|| {
            format!("unknown event `{routing_key}`; task-api knows task.log, step.result, task.started, task.finished")
        })?;
        let decoded = match key {
            EventKey::TaskLog => TaskLog::decode(body).map(Event::Log),
            EventKey::StepResult | EventKey::StepResultBare => StepResult::decode(body).map(Event::Step),
            EventKey::TaskStarted => TaskStarted::decode(body).map(Event::Started),
            EventKey::TaskFinished => TaskFinished::decode(body).map(Event::Finished),
        };
        decoded.map_err(|e| e.to_string())
    }

    fn kind(&self) -> &'static str {
        match self {
            Event::Log(_) => EventKey::TaskLog.as_str(),
            Event::Step(_) => EventKey::StepResult.as_str(),
            Event::Started(_) => EventKey::TaskStarted.as_str(),
            Event::Finished(_) => EventKey::TaskFinished.as_str(),
        }
    }

    /// The log lines it carries, stored before it is applied.
    fn lines(&self) -> &[LogLine] {
        match self {
            Event::Log(m) => &m.lines,
            Event::Step(m) => &m.log,
            Event::Started(m) => &m.log,
            Event::Finished(m) => &m.log,
        }
    }

    fn task_id(&self) -> Uuid {
        match self {
            Event::Log(m) => m.task_id,
            Event::Step(m) => m.task_id,
            Event::Started(m) => m.task_id,
            Event::Finished(m) => m.task_id,
        }
    }
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Applied,
    /// Already applied (a redelivery), or nothing to do.
    Unchanged,
    /// The task is not one of ours.
    UnknownTask,
}

impl Effect {
    fn as_str(self) -> &'static str {
        match self {
            Effect::Applied => "applied",
            Effect::Unchanged => "unchanged",
            Effect::UnknownTask => "unknown_task",
        }
    }
}

struct EventConsumer {
    pool: PgPool,
    live: LiveLog,
    /// Woken after a commit that wrote a partner's task event.
    outbox: Outbox,
    shutdown: CancellationToken,
}

/// What to do once the transaction that stored some events has committed: tell the
/// live log's watchers, and wake the relay when a partner's event was written.
#[derive(Default)]
struct After {
    live: Vec<LiveEvent>,
    wake_outbox: bool,
}

const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

impl EventConsumer {
    /// Stores a lane's batch of events in one transaction, in their order (their log
    /// lines in one statement), and acks them once it committed: one commit for many
    /// events rather than one each. When the database refuses something in it, the
    /// events go through one at a time, so only the refused one is dead-lettered.
    async fn handle_batch(&self, batch: Vec<Delivery>) {
        let mut events = Vec::with_capacity(batch.len());
        for delivery in batch {
            match Event::decode(delivery.routing_key.as_str(), &delivery.data) {
                Ok(event) => events.push((delivery, event)),
                Err(reason) => self.dead_letter(&delivery, "refused", &reason).await,
            }
        }
        if events.len() <= 1 {
            for (delivery, event) in events {
                self.handle(delivery, event).await;
            }
            return;
        }
        let mut delay = RETRY_FIRST;
        loop {
            match self.store_together(&events).await {
                Ok((effects, after)) => {
                    self.announce(after);
                    for ((delivery, event), effect) in events.iter().zip(effects) {
                        self.acknowledge(delivery, event, effect).await;
                    }
                    return;
                }
                Err(e) if is_unavailable(&e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot store events; retrying");
                    if !self.wait(delay).await {
                        for (delivery, _) in &events {
                            // Back to the queue, for the next run.
                            let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                        }
                        return;
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a batch of events was refused; storing them one at a time");
                    for (delivery, event) in events {
                        self.handle(delivery, event).await;
                    }
                    return;
                }
            }
        }
    }

    /// Applies `events` in one transaction; their effects, in their order.
    async fn store_together(&self, events: &[(Delivery, Event)]) -> sqlx::Result<(Vec<Effect>, After)> {
        let mut tx = self.pool.begin().await?;
        let mut after = After::default();
        let events: Vec<&Event> = events.iter().map(|(_, event)| event).collect();
        let effects = self.store(&mut tx, &events, &mut after).await?;
        tx.commit().await?;
        Ok((effects, after))
    }

    /// Applies `events` in `tx`, in their order, every line they carry first; their effects.
    async fn store(&self, tx: &mut PgConnection, events: &[&Event], after: &mut After) -> sqlx::Result<Vec<Effect>> {
        let lines: Vec<&LogLine> = events.iter().flat_map(|event| event.lines()).collect();
        let applied = self.log_lines(tx, &lines, after).await?;
        // The tasks' rows take their starts, then their ends, one statement each for the
        // whole batch (a task's start comes before its end); what follows from each, its
        // partner's event and its context's state, is settled below in the events' order.
        let starts: Vec<(Uuid, DateTime<Utc>)> = events
            .iter()
            .filter_map(|event| match event {
                Event::Started(started) => Some((started.task_id, started.at)),
                _ => None,
            })
            .collect();
        let mut started = db::tasks::mark_started(tx, &starts).await?;
        let ends: Vec<db::tasks::End<'_>> = events
            .iter()
            .filter_map(|event| match event {
                Event::Finished(finished) => Some(db::tasks::End {
                    id: finished.task_id,
                    status: finished_status(finished.outcome),
                    reason: finished.reason.as_deref(),
                    at: finished.at,
                }),
                _ => None,
            })
            .collect();
        let mut ended = db::tasks::mark_finished(tx, &ends).await?;
        let mut effects = Vec::with_capacity(events.len());
        for event in events {
            let lines_applied = event.lines().iter().any(|line| applied.contains(&line.id));
            let effect = match event {
                Event::Log(_) if lines_applied => Effect::Applied,
                Event::Log(log) => unchanged_or_unknown(tx, log.task_id).await?,
                Event::Started(s) => task_started(tx, s, started.remove(&s.task_id), after).await?,
                Event::Step(result) => self.step_result(tx, result, after).await?,
                Event::Finished(f) => self.task_finished(tx, f, ended.remove(&f.task_id), after).await?,
            };
            effects.push(match effect {
                Effect::Unchanged if lines_applied => Effect::Applied,
                effect => effect,
            });
        }
        Ok(effects)
    }

    /// Stores one event in a transaction of its own, retrying while the database is away.
    async fn handle(&self, delivery: Delivery, event: Event) {
        let routing_key = delivery.routing_key.as_str().to_owned();
        let span = tracing::info_span!("event", routing_key = %routing_key, task_id = %event.task_id());
        extract_trace_context(delivery.properties.headers().as_ref(), &span);
        async {
            let mut delay = RETRY_FIRST;
            loop {
                let mut after = After::default();
                let stored = async {
                    let mut tx = self.pool.begin().await?;
                    let effect = self.store(&mut tx, &[&event], &mut after).await?.remove(0);
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(effect)
                };
                match stored.await {
                    Ok(effect) => {
                        self.announce(after);
                        return self.acknowledge(&delivery, &event, effect).await;
                    }
                    Err(e) if is_unavailable(&e) => {
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot store an event; retrying");
                        if !self.wait(delay).await {
                            // Back to the queue, for the next run.
                            let requeue = BasicNackOptions { requeue: true, ..Default::default() };
                            let _ = delivery.nack(requeue).await;
                            return;
                        }
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                    // The database refuses this event (a broken constraint, a value it
                    // cannot hold): trying again would block every event behind it.
                    Err(e) => return self.dead_letter(&delivery, "failed", &e.to_string()).await,
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Sleeps `delay`; false when shutting down first.
    async fn wait(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    fn announce(&self, after: After) {
        for event in after.live {
            self.live.announce(event);
        }
        if after.wake_outbox {
            self.outbox.wake();
        }
    }

    async fn acknowledge(&self, delivery: &Delivery, event: &Event, effect: Effect) {
        metrics::counter!(EVENTS_CONSUMED, "kind" => event.kind(), "outcome" => effect.as_str()).increment(1);
        if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
            // The effect is stored; a redelivery will change nothing.
            tracing::warn!(error = %e, "could not ack an event");
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, outcome: &'static str, reason: &str) {
        tracing::warn!(reason, "dead-lettering an event task-api cannot store");
        let kind = event_key(delivery.routing_key.as_str()).map_or("unknown", EventKey::as_str);
        metrics::counter!(EVENTS_CONSUMED, "kind" => kind, "outcome" => outcome).increment(1);
        let reject = BasicNackOptions { requeue: false, ..Default::default() };
        if let Err(e) = delivery.nack(reject).await {
            tracing::warn!(error = %e, "could not dead-letter an event");
        }
    }

    /// Stores log lines in one statement, numbered in their order, and tells the live
    /// log's watchers; the ids of those not stored before.
    async fn log_lines(
        &self,
        tx: &mut PgConnection,
        lines: &[&LogLine],
        after: &mut After,
    ) -> sqlx::Result<std::collections::HashSet<Uuid>> {
        if lines.is_empty() {
            return Ok(Default::default());
        }
        let mut stored = db::task_log::insert_many(&mut *tx, lines).await?;
        stored.sort_by_key(|s| s.row.seq);
        let applied = stored.iter().map(|s| s.line_id).collect();
        for line in stored {
            if let Some(task_id) = lines.iter().find(|l| l.id == line.line_id).map(|l| l.task_id) {
                after.live.push(LiveEvent::Line { task_id, entry: line.row.into() });
            }
        }
        Ok(applied)
    }

    /// A successful step tells what it found about the task's context: versions, the
    /// platform's type and profiles, and the packages of a platform or site.
    async fn step_result(&self, tx: &mut PgConnection, result: &StepResult, after: &mut After) -> sqlx::Result<Effect> {
        let StepOutcome::Success { facts } = &result.outcome else { return Ok(Effect::Unchanged) };
        // Most steps (a ping, a vhost write) report nothing: no read, no transaction.
        if *facts == StepFacts::default() {
            return Ok(Effect::Unchanged);
        }
        let Some(task) = db::tasks::get(&mut *tx, result.task_id).await? else { return Ok(Effect::UnknownTask) };
        let Ok(context) = ContextName::parse(&task.context) else {
            tracing::warn!(context = %task.context, "task has a context name this version cannot read");
            return Ok(Effect::Unchanged);
        };
        let mut changed = match &context {
            ContextName::Platform(name) if facts.platform_type.is_some() || facts.app_version.is_some() => {
                db::platforms::set_facts(&mut *tx, name, facts.platform_type, facts.app_version.as_deref()).await?
            }
            ContextName::Server(name) if result.route.server == *name => match &facts.service_version {
                Some(version) => {
                    db::servers::set_service_version(&mut *tx, name, result.route.service, version).await?
                }
                None => false,
            },
            _ => false,
        };
        if let (ContextName::Server(name), Some(php_versions)) = (&context, &facts.php_versions)
            && result.route.server == *name
        {
            let default = facts.php_default_version.as_ref();
            changed |= db::servers::set_php_versions(&mut *tx, name, php_versions, default).await?;
        }
        if let (ContextName::Platform(name), Some(profiles)) = (&context, &facts.profiles) {
            changed |= db::platforms::set_profiles(&mut *tx, name, profiles).await?;
        }
        if let (ContextName::Platform(name), Some(sites)) = (&context, &facts.sites) {
            // A platform deleted meanwhile takes no sites.
            if let Some(platform) = db::platforms::lock(tx, name, false).await? {
                match ServerName::parse(&platform.web_server) {
                    Ok(web_server) => {
                        let step = ImportStep { task_id: result.task_id, step: result.step, at: result.finished_at };
                        let created =
                            import::create_records(tx, &mut after.live, name, &web_server, sites, &step).await?;
                        tracing::info!(platform = %name, found = sites.len(), created, "platform import");
                        changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(platform = %name, error = %e, "platform has a web server name this version cannot read")
                    }
                }
            }
        }
        if let (ContextName::Site(uri), Some(stats)) = (&context, &facts.stats) {
            db::site_stats::record(tx, uri, stats, result.finished_at).await?;
            changed = true;
        }
        if let (ContextName::Site(uri), Some(certificate)) = (&context, &facts.certificate) {
            changed |= crate::cert_queue::record(tx, uri, certificate, result.finished_at).await?;
        }
        if let (ContextName::Site(uri), Some(backup)) = (&context, &facts.backup) {
            let platform = db::sites::get(&mut *tx, uri).await?.map(|site| site.platform);
            let origin = db::backups::Origin {
                site: uri,
                task_kind: &task.kind,
                task_id: task.id,
                platform: platform.as_deref(),
            };
            changed |= db::backups::insert(tx, backup, &origin).await?;
        }
        if let Some(packages) = &facts.packages {
            // A clone's deploy reports the packages of the new site.
            let context = match (&context, TaskArgs::from_stored(task.options.as_ref())) {
                (ContextName::Site(_), Some(TaskArgs { new_uri: Some(new_uri), .. }))
                    if task.kind == TaskKind::Clone.as_str() =>
                {
                    ContextName::Site(new_uri)
                }
                _ => context.clone(),
            };
            // Only for a context that still exists: a late report must not bring back
            // the packages of a deleted site.
            let exists = match &context {
                ContextName::Platform(name) => db::platforms::lock(tx, name, false).await?.is_some(),
                ContextName::Site(uri) => db::sites::exists(&mut *tx, uri).await?,
                ContextName::Server(_) => false,
            };
            if exists {
                db::packages::replace(tx, &context.to_string(), packages).await?;
                changed = true;
            }
        }
        Ok(if changed { Effect::Applied } else { Effect::Unchanged })
    }

    /// What follows from a task's end: `ended` is its row as [`db::tasks::mark_finished`]
    /// left it, `None` when that changed nothing.
    async fn task_finished(
        &self,
        tx: &mut PgConnection,
        finished: &TaskFinished,
        ended: Option<db::tasks::Ended>,
        after: &mut After,
    ) -> sqlx::Result<Effect> {
        let status = finished_status(finished.outcome);
        let Some(db::tasks::Ended { task, command }) = ended else {
            let effect = unchanged_or_unknown(tx, finished.task_id).await?;
            if effect == Effect::UnknownTask {
                tracing::warn!(task_id = %finished.task_id, "task.finished for a task task-api does not know; ignoring it");
            }
            return Ok(effect);
        };
        if task.kind == TaskKind::Verify.as_str() {
            let verified = if status == TaskStatus::Success { ContextStatus::Verified } else { ContextStatus::Failed };
            match ContextName::parse(&task.context) {
                Ok(ContextName::Server(name)) => db::servers::set_status(tx, &name, verified, finished.at).await?,
                Ok(ContextName::Platform(name)) => db::platforms::set_status(tx, &name, verified, finished.at).await?,
                Ok(ContextName::Site(_)) | Err(_) => {}
            }
        }
        match (ContextName::parse(&task.context), task.kind.parse::<TaskKind>()) {
            (Ok(ContextName::Site(uri)), Ok(kind)) => {
                let args = TaskArgs::from_stored(task.options.as_ref()).unwrap_or_default();
                site_finished(tx, &uri, kind, &args, status, finished.at).await?
            }
            (Ok(ContextName::Platform(name)), Ok(kind @ (TaskKind::Lock | TaskKind::Unlock)))
                if status == TaskStatus::Success =>
            {
                db::platforms::set_locked(tx, &name, kind == TaskKind::Lock).await?
            }
            (Ok(ContextName::Platform(name)), Ok(TaskKind::Delete)) if status == TaskStatus::Success => {
                platform_deleted(tx, &name).await?
            }
            _ => {}
        }
        let kind = finished.kind.or_else(|| task.kind.parse().ok());
        let told = match kind {
            Some(kind) => crate::commands::task_finished(tx, finished, kind, command).await?,
            None => false,
        };
        after.wake_outbox |= told;
        after.live.push(LiveEvent::Finished { task_id: finished.task_id });
        Ok(Effect::Applied)
    }
}

async fn unchanged_or_unknown(tx: &mut PgConnection, task_id: Uuid) -> sqlx::Result<Effect> {
    Ok(if db::tasks::exists(tx, task_id).await? { Effect::Unchanged } else { Effect::UnknownTask })
}

fn finished_status(outcome: TaskOutcome) -> TaskStatus {
    match outcome {
        TaskOutcome::Success => TaskStatus::Success,
        TaskOutcome::Failed => TaskStatus::Failed,
        TaskOutcome::Cancelled => TaskStatus::Cancelled,
    }
}

/// What follows from a task's start: `command` is what [`db::tasks::mark_started`] gave
/// back for it, `None` when that changed nothing.
async fn task_started(
    tx: &mut PgConnection,
    started: &TaskStarted,
    command: Option<crate::commands::CommandOfTask>,
    after: &mut After,
) -> sqlx::Result<Effect> {
    if let Some(command) = command {
        // A task a partner's command made: the partner hears of it too.
        after.wake_outbox |= crate::commands::task_started(tx, started, command).await?;
        Ok(Effect::Applied)
    } else {
        unchanged_or_unknown(tx, started.task_id).await
    }
}

/// A platform whose code base is gone loses its record (its tasks and logs stay). A
/// site saved onto it since the delete was requested keeps it, so no record points nowhere.
async fn platform_deleted(conn: &mut PgConnection, name: &PlatformName) -> sqlx::Result<()> {
    if db::platforms::lock(conn, name, true).await?.is_none() {
        return Ok(());
    }
    let sites = db::sites::count_on_platform(conn, name).await?;
    if sites > 0 {
        tracing::warn!(platform = %name, sites, "platform deleted on disk but sites were saved onto it; its record stays");
        return Ok(());
    }
    db::platforms::delete(conn, name).await
}

/// What a finished task did to its site: install → `enabled` (or `failed`), disable →
/// `disabled`, enable → `enabled`, delete → the record goes (its tasks, logs and
/// archives stay), clone → the new site is `enabled` (or its record goes), migrate →
/// the record follows the site to its new platform, db server and uri, backup-delete →
/// the archive's record goes. A failed task otherwise leaves the records as they were:
/// its rollback put the site back where it was.
async fn site_finished(
    conn: &mut PgConnection,
    uri: &SiteUri,
    kind: TaskKind,
    args: &TaskArgs,
    status: TaskStatus,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let success = status == TaskStatus::Success;
    // A cancelled task never started: only what its request made goes.
    if status == TaskStatus::Cancelled {
        return match (kind, &args.new_uri) {
            (TaskKind::Clone, Some(new_uri)) => db::sites::delete(conn, new_uri).await.map(drop),
            (TaskKind::Migrate, _) => db::sites::set_moving_database(conn, uri, None).await,
            _ => Ok(()),
        };
    }
    match kind {
        TaskKind::Install if success => db::sites::set_status(conn, uri, SiteStatus::Enabled, Some(at)).await,
        TaskKind::Install => db::sites::set_status(conn, uri, SiteStatus::Failed, None).await,
        TaskKind::Disable if success => db::sites::set_status(conn, uri, SiteStatus::Disabled, None).await,
        TaskKind::Enable if success => db::sites::set_status(conn, uri, SiteStatus::Enabled, None).await,
        TaskKind::Delete if success => db::sites::delete(conn, uri).await.map(drop),
        TaskKind::Clone => match &args.new_uri {
            Some(new_uri) if success => db::sites::set_status(conn, new_uri, SiteStatus::Enabled, Some(at)).await,
            Some(new_uri) => db::sites::delete(conn, new_uri).await.map(drop),
            None => Ok(()),
        },
        TaskKind::Migrate if success => {
            db::sites::moved(conn, uri, args.platform.as_ref(), args.db_server.as_ref()).await?;
            match &args.new_uri {
                Some(new_uri) if new_uri != uri => {
                    db::sites::rename(conn, uri, new_uri).await?;
                    db::backups::rename_site(conn, uri, new_uri).await
                }
                _ => Ok(()),
            }
        }
        TaskKind::Migrate => db::sites::set_moving_database(conn, uri, None).await,
        TaskKind::BackupDelete if success => match args.backup {
            Some(id) => db::backups::delete(conn, id).await.map(drop),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routing_key_decides_the_message() {
        let started = br#"{"task_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","context":"@server_master","kind":"verify","steps":2,"at":"2025-01-01T00:00:00Z"}"#;
        assert!(matches!(Event::decode("task.started", started), Ok(Event::Started(_))));
        let e = Event::decode("task.finished", started).unwrap_err();
        assert!(e.contains("task_finished"), "{e}");
        let e = Event::decode("task.bogus", started).unwrap_err();
        assert!(e.contains("unknown event"), "{e}");
    }
}
