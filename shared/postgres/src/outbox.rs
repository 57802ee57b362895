//! The transactional outbox.
//!
//! A service that changes its state and must tell others about it writes the message
//! into the `outbox` table of its own schema in the same transaction as the change, so
//! either both happen or neither does. A relay publishes the rows in order, with
//! publisher confirms, and deletes each only after the broker confirmed it. A crash at
//! any point loses nothing; at worst a message is published twice, which every consumer
//! tolerates (they are idempotent).
//!
//! Two ways a row reaches the relay:
//! - **Polled**: [`Outbox::enqueue`] writes a row due now; the relay selects due rows
//!   when woken ([`Outbox::wake`]) and every second.
//! - **Handed off**: [`Outbox::write`] writes the staged rows and returns them; after the
//!   commit, [`Outbox::hand_off`] gives them to the relay, which publishes them from
//!   memory without reading them back (one round trip less on the way of every task).
//!   Such a row is written due only [`HANDOFF_GRACE`] later, so the relay of this or any
//!   other process polls it only when its writer never published it (a crash between
//!   commit and publish, or a broker that stayed away).
//!
//! The table, created by each service's migrations:
//!
//! ```sql
//! CREATE TABLE outbox (
//!     id            bigserial PRIMARY KEY,
//!     exchange      text NOT NULL,
//!     routing_key   text NOT NULL,
//!     body          bytea NOT NULL,
//!     traceparent   text,
//!     publish_after timestamptz NOT NULL DEFAULT now()
//! );
//! CREATE INDEX outbox_ready ON outbox (publish_after, id);
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use aegir_amqp::topology::{QueueName, WORK_EXCHANGE};
use aegir_amqp::{AmqpError, Broker, Outgoing, Publishable};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot write to the outbox: {0}")]
    Database(#[from] sqlx::Error),
}

/// Rows published per transaction.
const BATCH: i64 = 200;
/// How often the relay looks for due rows when nobody woke it (delayed rows, and rows
/// written by another process).
const POLL: Duration = Duration::from_secs(1);

/// How long a handed-off row waits in the table before any relay polls it.
pub const HANDOFF_GRACE: Duration = Duration::from_secs(5);
/// Handed-off rows kept in memory at most (while the broker is away); beyond that the
/// newest are left to the poll, after their grace.
const HANDOFF_ROOM: usize = 20_000;

/// A handle to the relay: rows handed off after a commit, and a wake-up for polled rows.
#[derive(Clone)]
pub struct Outbox {
    wake: Arc<Notify>,
    /// Set by [`Outbox::wake`]: the next round polls.
    poll_asked: Arc<AtomicBool>,
    handed: Arc<Handed>,
    grace: Duration,
}

#[derive(Default)]
struct Handed {
    rows: Mutex<VecDeque<Row>>,
    arrived: Notify,
}

type Row = (i64, String, String, Vec<u8>, Option<String>);

impl Default for Outbox {
    fn default() -> Self {
        Self { wake: Arc::default(), poll_asked: Arc::default(), handed: Arc::default(), grace: HANDOFF_GRACE }
    }
}

/// Rows a transaction wrote with [`Outbox::write`], to hand to the relay once it
/// committed. Dropped unhanded (the transaction rolled back, or its commit failed),
/// nothing is published from memory; a committed row is then polled after its grace.
#[derive(Debug, Default)]
#[must_use = "hand the rows to the relay after the commit, or they wait for the poll"]
pub struct Written {
    rows: Vec<Row>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// An outbox whose handed-off rows are polled after `grace` instead of
    /// [`HANDOFF_GRACE`] (tests of what a crash leaves behind).
    pub fn with_grace(grace: Duration) -> Self {
        Self { grace, ..Self::default() }
    }

    /// Writes `message` to the outbox inside the caller's transaction. With `delay`, the
    /// relay publishes it no sooner (used for retries with backoff). The current span's
    /// trace context goes with it, so the trace continues where it is delivered.
    pub async fn enqueue<M: Publishable>(
        conn: &mut PgConnection,
        message: &M,
        delay: Option<Duration>,
    ) -> Result<(), OutboxError> {
        let (exchange, key) = message.destination();
        let delay_ms = delay.map_or(0, |d| d.as_millis() as i64);
        sqlx::query(
            "INSERT INTO outbox (exchange, routing_key, body, traceparent, publish_after)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::double precision / 1000))",
        )
        .bind(exchange)
        .bind(key)
        .bind(message.encode())
        .bind(current_traceparent())
        .bind(delay_ms as f64)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Writes every message of `staged` inside the caller's transaction, in one
    /// statement, and returns those due now for [`Self::hand_off`] after the commit.
    /// Delayed ones are polled when due.
    pub async fn write(&self, conn: &mut PgConnection, staged: Staged) -> Result<Written, OutboxError> {
        if staged.keys.is_empty() {
            return Ok(Written::default());
        }
        let columns = self.columns(&staged);
        static INSERT: LazyLock<String> = LazyLock::new(|| insert_statement(1));
        let ids: Vec<i64> = sqlx::query_scalar(INSERT.as_str())
            .bind(columns.exchanges)
            .bind(columns.keys)
            .bind(columns.bodies)
            .bind(columns.traceparents)
            .bind(columns.delays_ms)
            .fetch_all(conn)
            .await?;
        Ok(self.written(ids, staged))
    }

    /// The rows `staged` makes, as arrays, for a statement of the caller's that writes
    /// them together with its own change (one round trip for both); give the ids it
    /// inserted them under to [`Self::written`]. A row due now is written due only after
    /// the hand-off grace, as [`Self::write`] writes it.
    pub fn columns<'a>(&self, staged: &'a Staged) -> Columns<'a> {
        let grace_ms = self.grace.as_millis() as f64;
        Columns {
            exchanges: &staged.exchanges,
            keys: &staged.keys,
            bodies: &staged.bodies,
            traceparents: &staged.traceparents,
            delays_ms: staged.delays_ms.iter().map(|&d| if d == 0.0 { grace_ms } else { d }).collect(),
        }
    }

    /// The rows of `staged`, written under `ids`, to hand to the relay after the commit
    /// (those due now).
    pub fn written(&self, mut ids: Vec<i64>, staged: Staged) -> Written {
        // The serial is drawn row by row in the order inserted.
        ids.sort_unstable();
        let Staged { exchanges, keys, bodies, traceparents, delays_ms } = staged;
        let rows = ids
            .into_iter()
            .zip(exchanges.into_iter().zip(keys).zip(bodies).zip(traceparents).zip(delays_ms))
            .filter(|(_, (_, delay))| *delay == 0.0)
            .map(|(id, ((((exchange, key), body), traceparent), _))| (id, exchange.to_owned(), key, body, traceparent))
            .collect();
        Written { rows }
    }

    /// Gives the relay rows whose transaction committed, to publish now in the order
    /// handed.
    pub fn hand_off(&self, written: Written) {
        if written.rows.is_empty() {
            return;
        }
        {
            let mut rows = self.handed.rows.lock().expect("handed rows");
            if rows.len() >= HANDOFF_ROOM {
                // The broker has been away a while; the table keeps them for the poll.
                return;
            }
            rows.extend(written.rows);
        }
        self.handed.arrived.notify_one();
    }

    /// Call after committing a transaction that enqueued messages.
    pub fn wake(&self) {
        self.poll_asked.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Publishes handed-off rows as they come and polls due rows (when woken and every
    /// second, also while handed-off rows keep coming) until `shutdown`. Its deletes go
    /// through a connection of its own that does not wait for them to be flushed: a lost
    /// delete only publishes a row again.
    pub async fn relay(self, pool: PgPool, broker: Broker, shutdown: CancellationToken) {
        let options = (*pool.connect_options()).clone().options([("synchronous_commit", "off")]);
        let pool = crate::connect::pool_options().max_connections(1).connect_lazy_with(options);
        let mut next_poll = Instant::now();
        let mut backoff = false;
        loop {
            if backoff {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.cancelled() => return self.drain(&pool, &broker).await,
                }
                backoff = false;
            }
            let handed = self.take_handed();
            let had_handed = !handed.is_empty();
            if had_handed && let Err(e) = publish_handed(&pool, &broker, &handed).await {
                tracing::warn!(error = %e, "outbox relay failed; retrying");
                self.put_back(handed);
                backoff = true;
                continue;
            }
            if self.poll_asked.swap(false, Ordering::SeqCst) || Instant::now() >= next_poll {
                match relay_batch(&self, &pool, &broker).await {
                    // More are due: poll again next round.
                    Ok(n) if n as i64 == BATCH => self.poll_asked.store(true, Ordering::SeqCst),
                    Ok(_) => next_poll = Instant::now() + POLL,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay failed; retrying");
                        self.poll_asked.store(true, Ordering::SeqCst);
                        backoff = true;
                    }
                }
                continue;
            }
            if had_handed {
                continue;
            }
            tokio::select! {
                _ = self.handed.arrived.notified() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(next_poll) => {}
                _ = shutdown.cancelled() => return self.drain(&pool, &broker).await,
            }
        }
    }

    fn take_handed(&self) -> Vec<Row> {
        let mut rows = self.handed.rows.lock().expect("handed rows");
        let n = rows.len().min(BATCH as usize);
        rows.drain(..n).collect()
    }

    /// Rows that could not be published go first again, keeping their order.
    fn put_back(&self, failed: Vec<Row>) {
        let mut rows = self.handed.rows.lock().expect("handed rows");
        for row in failed.into_iter().rev() {
            rows.push_front(row);
        }
    }

    /// On shutdown: one try at what was handed off; the rest is polled after its grace
    /// by the next run.
    async fn drain(&self, pool: &PgPool, broker: &Broker) {
        let handed = self.take_handed();
        if !handed.is_empty()
            && let Err(e) = publish_handed(pool, broker, &handed).await
        {
            tracing::warn!(error = %e, "outbox rows left for the next run");
        }
    }
}

/// The outbox rows of a [`Staged`], column by column: `exchange text[]`, `routing_key
/// text[]`, `body bytea[]`, `traceparent text[]` and the delay before each is published,
/// `delay_ms double precision[]`, in the order staged.
pub struct Columns<'a> {
    pub exchanges: &'a [&'static str],
    pub keys: &'a [String],
    pub bodies: &'a [Vec<u8>],
    pub traceparents: &'a [Option<String>],
    pub delays_ms: Vec<f64>,
}

/// The statement that writes the rows of a [`Columns`] bound as parameters `$first` to
/// `$first + 4`, in its order, returning their ids: for [`Outbox::write`], and for a
/// caller's statement that writes them in a CTE with its own change.
pub fn insert_statement(first: usize) -> String {
    let [exchange, key, body, traceparent, delay] = std::array::from_fn(|i| format!("${}", first + i));
    format!(
        "INSERT INTO outbox (exchange, routing_key, body, traceparent, publish_after)
         SELECT m.exchange, m.routing_key, m.body, m.traceparent,
                now() + make_interval(secs => m.delay_ms / 1000)
         FROM UNNEST({exchange}::text[], {key}::text[], {body}::bytea[], {traceparent}::text[],
                     {delay}::double precision[])
              WITH ORDINALITY AS m(exchange, routing_key, body, traceparent, delay_ms, n)
         ORDER BY m.n
         RETURNING id"
    )
}

/// Messages a transaction will write to the outbox, gathered so that
/// [`Outbox::write`] writes them in one statement (one round trip per
/// transaction rather than one per message). Each keeps the trace context current when
/// it was staged.
#[derive(Debug, Default)]
pub struct Staged {
    exchanges: Vec<&'static str>,
    keys: Vec<String>,
    bodies: Vec<Vec<u8>>,
    traceparents: Vec<Option<String>>,
    delays_ms: Vec<f64>,
}

impl Staged {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `message`; with `delay`, the relay publishes it no sooner.
    pub fn push<M: Publishable>(&mut self, message: &M, delay: Option<Duration>) {
        let (exchange, key) = message.destination();
        self.exchanges.push(exchange);
        self.keys.push(key);
        self.bodies.push(message.encode());
        self.traceparents.push(current_traceparent());
        self.delays_ms.push(delay.map_or(0, |d| d.as_millis() as i64) as f64);
    }

    /// Moves `other`'s messages after these, each keeping the trace it was staged in
    /// (several changes written in one transaction stay in their own traces).
    pub fn append(&mut self, other: Staged) {
        let Staged { exchanges, keys, bodies, traceparents, delays_ms } = other;
        self.exchanges.extend(exchanges);
        self.keys.extend(keys);
        self.bodies.extend(bodies);
        self.traceparents.extend(traceparents);
        self.delays_ms.extend(delays_ms);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `(routing key, body)` of each message, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.keys.iter().map(String::as_str).zip(self.bodies.iter().map(Vec::as_slice))
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] AmqpError),
}

/// Publishes handed-off rows in order, confirms awaited together, and deletes them. A
/// row the broker refuses is dropped as [`relay_batch`] drops it.
async fn publish_handed(pool: &PgPool, broker: &Broker, rows: &[Row]) -> Result<(), RelayError> {
    let batch = outgoing(rows);
    declare_work_queues(broker, rows).await?;
    match broker.publish_many(&batch).await {
        Ok(()) => {}
        Err(AmqpError::Nacked { .. } | AmqpError::Unroutable { .. }) => {
            for (id, exchange, key, body, traceparent) in rows {
                let span = tracing::info_span!("publish", exchange = %exchange, routing_key = %key);
                set_parent(&span, traceparent.as_deref());
                match publish(broker, exchange, key, body).instrument(span).await {
                    Ok(()) => {}
                    Err(e @ (AmqpError::Nacked { .. } | AmqpError::Unroutable { .. })) => {
                        tracing::error!(outbox_id = id, error = %e, "dropping a message the broker refuses");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(e) => return Err(e.into()),
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    delete(&mut *pool.acquire().await?, &ids).await?;
    Ok(())
}

fn outgoing(rows: &[Row]) -> Vec<Outgoing<'_>> {
    rows.iter()
        .map(|(_, exchange, key, body, traceparent)| {
            let span = tracing::info_span!("publish", exchange = %exchange, routing_key = %key);
            set_parent(&span, traceparent.as_deref());
            Outgoing { exchange, key, body, span }
        })
        .collect()
}

/// Publishes the due rows of the table, and with them the rows handed off while they
/// were being read, all in the order they were written: a row handed off before a polled
/// one was written (a task's request before its cancel) must reach the broker first.
/// Returns how many rows were polled.
async fn relay_batch(outbox: &Outbox, pool: &PgPool, broker: &Broker) -> Result<usize, RelayError> {
    let mut tx = pool.begin().await?;
    let polled: Vec<Row> = sqlx::query_as(
        "SELECT id, exchange, routing_key, body, traceparent FROM outbox
         WHERE publish_after <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if polled.is_empty() {
        return Ok(0);
    }
    let count = polled.len();
    let handed = outbox.take_handed();
    let handed_ids: Vec<i64> = handed.iter().map(|r| r.0).collect();
    let mut rows = polled;
    rows.extend(handed);
    rows.sort_unstable_by_key(|r| r.0);
    // Rows handed off but not published go back to memory, in order (the transaction
    // rolls back, so the polled ones stay in the table).
    let put_back = |rows: &[Row], done: &[i64]| {
        let left = rows.iter().filter(|r| handed_ids.contains(&r.0) && !done.contains(&r.0)).cloned().collect();
        outbox.put_back(left);
    };
    // Fast path: the whole batch in order, confirms awaited together.
    let batch = outgoing(&rows);
    if let Err(e) = declare_work_queues(broker, &rows).await {
        put_back(&rows, &[]);
        return Err(e.into());
    }
    match broker.publish_many(&batch).await {
        Ok(()) => {
            // Should the delete fail, the rows are published again later, which every
            // consumer tolerates.
            let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
            finish(tx, &ids).await?;
            return Ok(count);
        }
        // One message the broker refuses: sort it out one by one below.
        Err(AmqpError::Nacked { .. } | AmqpError::Unroutable { .. }) => {}
        Err(e) => {
            put_back(&rows, &[]);
            return Err(e.into());
        }
    }
    let mut done = Vec::with_capacity(rows.len());
    for (id, exchange, key, body, traceparent) in &rows {
        let span = tracing::info_span!("publish", exchange = %exchange, routing_key = %key);
        set_parent(&span, traceparent.as_deref());
        match publish(broker, exchange, key, body).instrument(span).await {
            Ok(()) => done.push(*id),
            // The broker answered and will answer the same again: keeping the row would
            // block every message behind it.
            Err(e @ (AmqpError::Nacked { .. } | AmqpError::Unroutable { .. })) => {
                tracing::error!(outbox_id = id, error = %e, "dropping a message the broker refuses");
                done.push(*id);
            }
            Err(e) => {
                // Keep what was confirmed; the rest is retried.
                put_back(&rows, &done);
                finish(tx, &done).await?;
                return Err(e.into());
            }
        }
    }
    finish(tx, &done).await?;
    Ok(count)
}

/// Deletes the published rows and commits.
async fn finish(mut tx: sqlx::Transaction<'_, sqlx::Postgres>, ids: &[i64]) -> Result<(), sqlx::Error> {
    delete(&mut tx, ids).await?;
    tx.commit().await
}

/// Declares the work queues a batch publishes to (once per connection each).
async fn declare_work_queues(broker: &Broker, rows: &[Row]) -> Result<(), AmqpError> {
    for (_, exchange, key, _, _) in rows {
        if exchange == WORK_EXCHANGE
            && let Some(route) = QueueName::from_work_key(key).as_ref().and_then(QueueName::route)
        {
            // Both lanes at once, so a server's workers find both queues as soon as the
            // first step for it is sent (their broker users may not declare them).
            for queue in QueueName::lanes_of(route) {
                broker.declare(&queue).await?;
            }
        }
    }
    Ok(())
}

async fn publish(broker: &Broker, exchange: &str, key: &str, body: &[u8]) -> Result<(), AmqpError> {
    // A step waits in its server's queue even when that server's worker has never run,
    // so declare the queue before the first step goes to it.
    if exchange == WORK_EXCHANGE
        && let Some(route) = QueueName::from_work_key(key).as_ref().and_then(QueueName::route)
    {
        for queue in QueueName::lanes_of(route) {
            broker.declare(&queue).await?;
        }
    }
    broker.publish_bytes(exchange, key, body).await
}

async fn delete(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    if !ids.is_empty() {
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(ids).execute(conn).await?;
    }
    Ok(())
}

fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove("traceparent")
}

fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else { return };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    // Fails only for a disabled span; nothing to carry then.
    let _ = span.set_parent(parent);
}
