//! The transactional outbox.
//!
//! A service that changes its state and must tell others about it writes the message
//! into the `outbox` table of its own schema in the same transaction as the change, so
//! either both happen or neither does. A relay publishes the rows in order, with
//! publisher confirms, and deletes each only after the broker confirmed it. A crash at
//! any point loses nothing; at worst a message is published twice, which every consumer
//! tolerates (they are idempotent).
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aegir_amqp::topology::{QueueName, WORK_EXCHANGE};
use aegir_amqp::{AmqpError, Broker, Outgoing, Publishable};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
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

/// A handle to wake the relay after a commit.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

type Row = (i64, String, String, Vec<u8>, Option<String>);

impl Outbox {
    pub fn new() -> Self {
        Self::default()
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

    /// Writes every message of `staged` to the outbox inside the caller's transaction, in
    /// the order they were staged, in one statement.
    pub async fn enqueue_staged(conn: &mut PgConnection, staged: Staged) -> Result<(), OutboxError> {
        if staged.keys.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO outbox (exchange, routing_key, body, traceparent, publish_after)
             SELECT m.exchange, m.routing_key, m.body, m.traceparent,
                    now() + make_interval(secs => m.delay_ms / 1000)
             FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::text[], $5::double precision[])
                  WITH ORDINALITY AS m(exchange, routing_key, body, traceparent, delay_ms, n)
             ORDER BY m.n",
        )
        .bind(staged.exchanges)
        .bind(staged.keys)
        .bind(staged.bodies)
        .bind(staged.traceparents)
        .bind(staged.delays_ms)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Call after committing a transaction that enqueued messages.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes due rows until `shutdown`, in id order.
    pub async fn relay(self, pool: PgPool, broker: Broker, shutdown: CancellationToken) {
        loop {
            match relay_batch(&pool, &broker).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    continue;
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Messages a transaction will write to the outbox, gathered so that
/// [`Outbox::enqueue_staged`] writes them in one statement (one round trip per
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

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] AmqpError),
}

async fn relay_batch(pool: &PgPool, broker: &Broker) -> Result<usize, RelayError> {
    let mut tx = pool.begin().await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, exchange, routing_key, body, traceparent FROM outbox
         WHERE publish_after <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Fast path: the whole batch in order, confirms awaited together.
    let batch: Vec<Outgoing> = rows
        .iter()
        .map(|(_, exchange, key, body, traceparent)| {
            let span = tracing::info_span!("publish", exchange = %exchange, routing_key = %key);
            set_parent(&span, traceparent.as_deref());
            Outgoing { exchange, key, body, span }
        })
        .collect();
    declare_work_queues(broker, &rows).await?;
    match broker.publish_many(&batch).await {
        Ok(()) => {
            let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
            delete(&mut tx, &ids).await?;
            tx.commit().await?;
            return Ok(rows.len());
        }
        // One message the broker refuses: sort it out one by one below.
        Err(AmqpError::Nacked { .. } | AmqpError::Unroutable { .. }) => {}
        Err(e) => return Err(e.into()),
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
                delete(&mut tx, &done).await?;
                tx.commit().await?;
                return Err(e.into());
            }
        }
    }
    delete(&mut tx, &done).await?;
    tx.commit().await?;
    Ok(rows.len())
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
