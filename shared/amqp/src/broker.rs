//! One AMQP connection per process, re-established whenever it breaks.
//!
//! lapin's own recovery is opt-in and has had trouble after full broker restarts, so
//! the handle does it itself: the connection and a confirm-mode publishing channel live
//! behind a mutex with a generation number; whoever sees them broken drops that
//! generation, and the next caller connects again (with backoff) and re-declares the
//! topology. Consumers reopen their channels on the new connection.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};
use tokio::sync::Mutex;

use crate::publish::Publishable;
use crate::signing::Signer;
use crate::topology::{self, QueueName};
use crate::trace::inject_trace_context;

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("RabbitMQ error: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("RabbitMQ did not confirm the publish to `{exchange}` / `{key}` in time; is the broker up?")]
    Timeout { exchange: String, key: String },
    #[error("RabbitMQ refused (nacked) the message to `{exchange}` / `{key}`")]
    Nacked { exchange: String, key: String },
    #[error("no queue is bound for `{exchange}` / `{key}`; the message was returned")]
    Unroutable { exchange: String, key: String },
    #[error(
        "queue `{queue}` is not there yet (or this user may not use it): the control plane declares a \
         server's queues when the server is saved; save it with `aegir save @SERVER ...` ({source})"
    )]
    QueueMissing { queue: String, source: lapin::Error },
}

/// One message of a batch for [`Broker::publish_many`].
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub key: &'a str,
    pub body: &'a [u8],
    /// The span whose trace context the message carries.
    pub span: tracing::Span,
}

/// A message sent without waiting for its confirm; [`Broker::confirm`] waits for it (and
/// sends it again when its connection broke first).
pub struct Unconfirmed {
    exchange: &'static str,
    key: String,
    body: Vec<u8>,
    /// `None` when it could not be sent at all.
    confirm: Option<(PublisherConfirm, u64)>,
}

#[derive(Clone)]
struct Live {
    connection: Arc<Connection>,
    publisher: Channel,
    generation: u64,
}

struct Inner {
    url: String,
    name: String,
    live: Mutex<Option<Live>>,
    next_generation: std::sync::atomic::AtomicU64,
    connected: AtomicBool,
    /// Work queues already declared on the current connection.
    declared: std::sync::Mutex<HashSet<String>>,
    /// Signs every message published; `None` only for tools and tests that must send
    /// unsigned messages.
    signer: Option<Signer>,
    /// Whether this connection declares the topology. A worker's broker user may not:
    /// it only checks that its queues exist.
    declares: bool,
}

/// A cheap, cloneable handle on the process's broker connection.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to connect, open the publishing channel and declare the topology.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl Broker {
    /// A handle that connects on first use and signs what it publishes with `signer`.
    /// `name` shows in RabbitMQ's connection list.
    pub fn signed(url: impl Into<String>, name: impl Into<String>, signer: Signer) -> Self {
        Self::with(url.into(), name.into(), Some(signer), true)
    }

    /// Like [`Broker::signed`], for a broker user that may not declare anything (a
    /// server's workers under `deploy/rabbitmq-users.sh`): the topology is left to the
    /// control plane, and [`Broker::declare`] only checks that a queue exists.
    pub fn signed_restricted(url: impl Into<String>, name: impl Into<String>, signer: Signer) -> Self {
        Self::with(url.into(), name.into(), Some(signer), false)
    }

    /// A handle whose messages carry no signature: consumers that check signatures refuse
    /// them. For tools and tests.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self::with(url.into(), name.into(), None, true)
    }

    fn with(url: String, name: String, signer: Option<Signer>, declares: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                url,
                name,
                live: Mutex::new(None),
                next_generation: 1.into(),
                connected: AtomicBool::new(false),
                declared: Default::default(),
                signer,
                declares,
            }),
        }
    }

    /// Connects (retrying until it works) and declares the core topology.
    pub async fn ready(&self) {
        self.live().await;
    }

    /// Whether the last known state of the connection is up; for health checks.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    async fn live(&self) -> Live {
        let mut guard = self.inner.live.lock().await;
        if let Some(live) = guard.as_ref() {
            if live.connection.status().connected() && live.publisher.status().connected() {
                return live.clone();
            }
            self.inner.connected.store(false, Ordering::Relaxed);
        }
        let mut delay = Duration::from_millis(100);
        loop {
            // A broker stopping or starting can leave a handshake unanswered; without a
            // limit that would hold the connection lock, and every user of it, forever.
            let attempt = tokio::time::timeout(CONNECT_TIMEOUT, self.connect_once()).await;
            match attempt
                .unwrap_or_else(|_| Err(lapin::Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut))))
            {
                Ok(live) => {
                    tracing::info!(broker = %redact_url(&self.inner.url), generation = live.generation, "connected to RabbitMQ");
                    self.inner.connected.store(true, Ordering::Relaxed);
                    self.inner.declared.lock().expect("declared set").clear();
                    *guard = Some(live.clone());
                    return live;
                }
                Err(e) => {
                    tracing::warn!(broker = %redact_url(&self.inner.url), error = %e, retry_in_ms = delay.as_millis() as u64, "cannot reach RabbitMQ");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn connect_once(&self) -> Result<Live, lapin::Error> {
        let props = ConnectionProperties::default().with_connection_name(self.inner.name.clone().into());
        let connection = Connection::connect(&self.inner.url, props).await?;
        let publisher = connection.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        if self.inner.declares {
            topology::declare_core(&publisher).await?;
        }
        Ok(Live {
            connection: Arc::new(connection),
            publisher,
            generation: self.inner.next_generation.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Drops the connection of `generation` so the next user reconnects.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut guard = self.inner.live.lock().await;
        if guard.as_ref().is_some_and(|l| l.generation == generation) {
            self.inner.connected.store(false, Ordering::Relaxed);
            *guard = None;
        }
    }

    /// Like [`Broker::invalidate`], but only when the connection itself is down: a
    /// channel closed by the broker (a queue missing or refused) leaves it usable.
    pub(crate) async fn invalidate_if_down(&self, generation: u64) {
        let down = {
            let guard = self.inner.live.lock().await;
            guard.as_ref().is_some_and(|l| l.generation == generation && !l.connection.status().connected())
        };
        if down {
            self.invalidate(generation).await;
        }
    }

    /// A fresh channel on the live connection, with its generation; for consumers.
    pub(crate) async fn channel(&self) -> (Channel, u64) {
        loop {
            let live = self.live().await;
            match live.connection.create_channel().await {
                Ok(ch) => return (ch, live.generation),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a channel; reconnecting");
                    self.invalidate(live.generation).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Declares a queue (and its bindings) once per connection; on a restricted
    /// connection, checks that it exists.
    pub async fn declare(&self, queue: &QueueName) -> Result<(), AmqpError> {
        let name = queue.name();
        if self.inner.declared.lock().expect("declared set").contains(&name) {
            return Ok(());
        }
        let live = self.live().await;
        if !self.inner.declares {
            // A queue the control plane has not declared yet closes the channel that
            // asked: ask on a channel of its own, so the connection and its publisher
            // stay up while a new server's workers wait for their queues.
            let checked = async {
                let channel = live.connection.create_channel().await?;
                let found = topology::check_queue(&channel, queue).await;
                if found.is_ok() {
                    let _ = channel.close(0, "".into()).await;
                }
                found.map(|_| ())
            };
            if let Err(e) = checked.await {
                self.invalidate_if_down(live.generation).await;
                return Err(AmqpError::QueueMissing { queue: name, source: e });
            }
            self.inner.declared.lock().expect("declared set").insert(name);
            return Ok(());
        }
        if let Err(e) = topology::declare_queue(&live.publisher, queue).await {
            self.invalidate(live.generation).await;
            return Err(e.into());
        }
        self.inner.declared.lock().expect("declared set").insert(name);
        Ok(())
    }

    /// How many consumers take from `queue` now (0 when the queue does not exist), asked
    /// on a channel of its own so a missing queue closes nothing else.
    pub async fn consumers(&self, queue: &QueueName) -> Result<u32, AmqpError> {
        let live = self.live().await;
        let channel = live.connection.create_channel().await?;
        match topology::check_queue(&channel, queue).await {
            Ok(count) => {
                let _ = channel.close(0, "".into()).await;
                Ok(count)
            }
            Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes a contract message where it belongs, persistent, and waits for the
    /// broker's confirm. Retries across reconnections for up to 30 s.
    pub async fn publish<M: Publishable>(&self, message: &M) -> Result<(), AmqpError> {
        let (exchange, key) = message.destination();
        self.publish_bytes(exchange, &key, &message.encode()).await
    }

    /// Publishes raw bytes; for tools and tests that must send what the contract forbids.
    pub async fn publish_bytes(&self, exchange: &str, key: &str, body: &[u8]) -> Result<(), AmqpError> {
        let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
        loop {
            let live = self.live().await;
            match self.publish_once(&live, exchange, key, body).await {
                Ok(()) => return Ok(()),
                // The broker answered: retrying will not change its mind.
                Err(e @ (AmqpError::Nacked { .. } | AmqpError::Unroutable { .. })) => return Err(e),
                Err(e) => {
                    self.invalidate(live.generation).await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, exchange, key, "publish failed; retrying on a new connection");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// Sends a contract message, persistent, without waiting for the broker's confirm, so
    /// that several messages' confirms overlap. Messages sent this way on one handle
    /// reach the broker in the order they were sent; pass them to [`Broker::confirm`].
    pub async fn publish_unconfirmed<M: Publishable>(&self, message: &M) -> Unconfirmed {
        let (exchange, key) = message.destination();
        let body = message.encode();
        let live = self.live().await;
        let properties = self.properties(exchange, &key, &body);
        let sent = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            live.publisher.basic_publish(
                exchange.into(),
                key.as_str().into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &body,
                properties,
            ),
        )
        .await;
        let confirm = match sent {
            Ok(Ok(confirm)) => Some((confirm, live.generation)),
            // Sent again, with retries, by `confirm`.
            Ok(Err(_)) | Err(_) => None,
        };
        Unconfirmed { exchange, key, body, confirm }
    }

    /// Waits for the confirms of messages sent with [`Broker::publish_unconfirmed`], in
    /// the order they were sent. From the first one whose connection broke (or that was
    /// never sent) on, each is published again with [`Broker::publish_bytes`], in order,
    /// so none is lost and the order holds (a message may then arrive twice; consumers
    /// are idempotent). Returns the first error; the messages after it are still sent.
    pub async fn confirm(&self, messages: Vec<Unconfirmed>) -> Result<(), AmqpError> {
        let mut first_error = None;
        let mut resend = false;
        for message in messages {
            let Unconfirmed { exchange, key, body, confirm } = message;
            let outcome = match confirm {
                Some((confirm, generation)) if !resend => match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                    Ok(Ok(confirmation)) if confirmation.is_nack() => {
                        Err(AmqpError::Nacked { exchange: exchange.into(), key: key.clone() })
                    }
                    Ok(Ok(confirmation)) => match confirmation.take_message() {
                        Some(_) => Err(AmqpError::Unroutable { exchange: exchange.into(), key: key.clone() }),
                        None => Ok(()),
                    },
                    Ok(Err(_)) | Err(_) => {
                        self.invalidate(generation).await;
                        resend = true;
                        self.publish_bytes(exchange, &key, &body).await
                    }
                },
                _ => {
                    resend = true;
                    self.publish_bytes(exchange, &key, &body).await
                }
            };
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Publishes messages in order and waits for all their confirms at the end, so the
    /// broker's confirm round trips overlap instead of adding up. Each message carries the
    /// trace context of its own span. On an error nothing is retried here: some of the
    /// messages may be out, and the caller publishes the batch again (consumers are
    /// idempotent).
    pub async fn publish_many(&self, batch: &[Outgoing<'_>]) -> Result<(), AmqpError> {
        let live = self.live().await;
        let result = self.publish_many_once(&live, batch).await;
        if let Err(AmqpError::Lapin(_) | AmqpError::Timeout { .. }) = &result {
            self.invalidate(live.generation).await;
        }
        result
    }

    async fn publish_many_once(&self, live: &Live, batch: &[Outgoing<'_>]) -> Result<(), AmqpError> {
        let Some(first) = batch.first() else { return Ok(()) };
        // Each publish hands its frames to the connection when first polled, so polling
        // them together in order sends the batch in order without a wait per message.
        let sends = batch.iter().map(|message| {
            let properties = {
                let _in_span = message.span.enter();
                self.properties(message.exchange, message.key, message.body)
            };
            live.publisher.basic_publish(
                message.exchange.into(),
                message.key.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                message.body,
                properties,
            )
        });
        let timeout = |_| AmqpError::Timeout { exchange: first.exchange.into(), key: first.key.into() };
        let sent =
            tokio::time::timeout(CONFIRM_TIMEOUT, futures_util::future::join_all(sends)).await.map_err(timeout)?;
        let mut confirms = Vec::with_capacity(batch.len());
        for (message, confirm) in batch.iter().zip(sent) {
            confirms.push((message, confirm?));
        }
        for (message, confirm) in confirms {
            let (exchange, key) = (message.exchange, message.key);
            let timeout = |_| AmqpError::Timeout { exchange: exchange.into(), key: key.into() };
            let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await.map_err(timeout)??;
            if confirmation.is_nack() {
                return Err(AmqpError::Nacked { exchange: exchange.into(), key: key.into() });
            }
            if confirmation.take_message().is_some() {
                return Err(AmqpError::Unroutable { exchange: exchange.into(), key: key.into() });
            }
        }
        Ok(())
    }

    /// Persistent JSON, with the current span's trace context, the publisher's name and
    /// the message's signature.
    fn properties(&self, exchange: &str, key: &str, body: &[u8]) -> BasicProperties {
        let mut headers = FieldTable::default();
        inject_trace_context(&mut headers);
        headers.insert("x-aegir-publisher".into(), AMQPValue::LongString(self.inner.name.clone().into()));
        if let Some(signer) = &self.inner.signer {
            signer.sign_into(&mut headers, exchange, key, body);
        }
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers)
    }

    async fn publish_once(&self, live: &Live, exchange: &str, key: &str, body: &[u8]) -> Result<(), AmqpError> {
        let properties = self.properties(exchange, key, body);
        let timeout = |_| AmqpError::Timeout { exchange: exchange.into(), key: key.into() };
        let confirm = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            live.publisher.basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                body,
                properties,
            ),
        )
        .await
        .map_err(timeout)??;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await.map_err(timeout)??;
        if confirmation.is_nack() {
            return Err(AmqpError::Nacked { exchange: exchange.into(), key: key.into() });
        }
        if confirmation.take_message().is_some() {
            return Err(AmqpError::Unroutable { exchange: exchange.into(), key: key.into() });
        }
        Ok(())
    }
}

/// `amqp://user:pass@host/vhost` without the password, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_cut_from_urls() {
        assert_eq!(redact_url("amqp://guest:secret@localhost:5672/%2f"), "amqp://guest:***@localhost:5672/%2f");
        assert_eq!(redact_url("amqp://localhost"), "amqp://localhost");
    }
}
