//! Consuming a queue with manual acks, surviving broker restarts.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::acks::Acks;
pub use crate::acks::Delivery;
use crate::broker::Broker;
use crate::topology::QueueName;

pub struct ConsumerSpec {
    pub queue: QueueName,
    /// Unacknowledged deliveries allowed at once; also the handler concurrency.
    pub prefetch: u16,
    /// Handle deliveries one after another, in queue order (for consumers that must
    /// keep order, such as the log persister).
    pub in_order: bool,
    /// Ack handled deliveries together, up to the first one still being handled (one
    /// frame for many, which the broker settles at a fraction of the cost): for
    /// consumers whose handlers each take a moment, never for ones that hold a delivery
    /// for minutes (a worker's steps), which would hold back the acks of every delivery
    /// after it.
    pub batch_acks: bool,
}

/// Consumes `spec.queue` until `shutdown` is cancelled, calling `handler` for each
/// delivery. The handler acks or rejects the delivery itself, after its effect is
/// durable. When the connection breaks the loop reconnects and resubscribes; the
/// broker redelivers whatever was not acked, so handlers must be idempotent.
pub async fn consume<F, Fut>(broker: Broker, spec: ConsumerSpec, shutdown: CancellationToken, handler: F)
where
    F: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let queue = spec.queue.name();
    let mut in_flight = JoinSet::new();
    let mut backoff = Duration::from_millis(100);
    'connection: while !shutdown.is_cancelled() {
        let (channel, generation) = tokio::select! {
            c = broker.channel() => c,
            _ = shutdown.cancelled() => break,
        };
        let subscribed = async {
            broker.declare(&spec.queue).await.map_err(|e| e.to_string())?;
            channel.basic_qos(spec.prefetch, BasicQosOptions::default()).await.map_err(|e| e.to_string())?;
            channel
                .basic_consume(queue.clone().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let mut consumer = match subscribed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(queue, error = %e, "cannot subscribe; retrying");
                // A missing or refused queue closes only this channel; the connection
                // (and the other consumers on it) stays.
                let _ = channel.close(0, "".into()).await;
                broker.invalidate_if_down(generation).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        tracing::info!(queue, prefetch = spec.prefetch, "consuming");
        // Tags count from 1 on each channel: a new channel, new acks.
        let acks = spec.batch_acks.then(Acks::new);
        backoff = Duration::from_millis(100);
        loop {
            // Reap finished handlers so the set does not grow.
            while in_flight.try_join_next().is_some() {}
            let next = tokio::select! {
                d = consumer.next() => d,
                _ = shutdown.cancelled() => break 'connection,
            };
            match next {
                Some(Ok(delivery)) => {
                    let delivery = Delivery::new(delivery, acks.clone());
                    if spec.in_order {
                        handler(delivery).await;
                    } else {
                        in_flight.spawn(handler(delivery));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(queue, error = %e, "consumer lost its channel; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!(queue, "consumer was cancelled by the broker; resubscribing");
                    break;
                }
            }
        }
        broker.invalidate(generation).await;
        tokio::time::sleep(backoff).await;
    }
    // Let handlers that hold a delivery finish and ack before the process exits.
    let drain = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), drain).await.is_err() {
        tracing::warn!(queue, "handlers still running at shutdown; their deliveries will be redelivered");
    }
    tracing::info!(queue, "stopped consuming");
}
