//! The bare broker as a reference: what RabbitMQ alone costs for the kind of messages
//! the system sends. A vhost of its own, one durable quorum queue (as the system's
//! queues are), persistent messages published with confirms on one connection and
//! consumed with manual acks on another.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, PublisherConfirm};
use tokio::sync::mpsc;

/// About the size of a step message of the system.
const PAYLOAD: [u8; 600] = [b'x'; 600];

/// A scratch vhost, deleted when dropped.
pub struct BareBroker {
    vhost: String,
    url: String,
}

impl BareBroker {
    pub fn new() -> Self {
        let vhost = format!("aegir_bench_{}", aegir_e2e::random_suffix());
        let url = aegir_e2e::add_vhost(&vhost);
        Self { vhost, url }
    }

    /// A fresh queue: a confirming publisher channel and a consumer on another connection.
    async fn queue(&self, prefetch: u16) -> anyhow::Result<Link> {
        let connect = || Connection::connect(&self.url, ConnectionProperties::default());
        let connections =
            [connect().await.context("connecting to RabbitMQ")?, connect().await.context("connecting to RabbitMQ")?];
        let publisher = connections[0].create_channel().await?;
        let consumer = connections[1].create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        let queue = format!("bench.{}", aegir_e2e::random_suffix());
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        publisher
            .queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
            .await?;
        consumer.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let stream = consumer
            .basic_consume(queue.as_str().into(), "bench".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        Ok(Link { _connections: connections, publisher, consumer: Some(stream), queue })
    }

    /// `count` round trips one after the other: publish, wait for the confirm, and the
    /// time from the publish to the consumer holding the message.
    pub async fn round_trips(&self, count: usize) -> anyhow::Result<Vec<Duration>> {
        let mut link = self.queue(1).await?;
        let (tx, mut received) = mpsc::unbounded_channel();
        let consuming = tokio::spawn(consume(link.consumer.take().expect("a fresh link"), tx));
        let (publisher, queue) = (&link.publisher, &link.queue);
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            publish(publisher, queue).await?.await.map(check_confirm)??;
            let at = received.recv().await.context("the consumer stopped")?;
            samples.push(at.duration_since(start));
        }
        consuming.abort();
        Ok(samples)
    }

    /// Publishes `count` messages with at most `in_flight` unconfirmed, while the other
    /// connection consumes and acks them; the rate from the first publish to the last ack.
    pub async fn rate(&self, count: usize, in_flight: usize) -> anyhow::Result<f64> {
        let in_flight = in_flight.clamp(1, usize::from(u16::MAX));
        let mut link = self.queue(in_flight as u16).await?;
        let (tx, mut received) = mpsc::unbounded_channel();
        let consuming = tokio::spawn(consume(link.consumer.take().expect("a fresh link"), tx));
        let (publisher, queue) = (&link.publisher, &link.queue);
        let start = Instant::now();
        let mut pending = VecDeque::with_capacity(in_flight);
        for _ in 0..count {
            if pending.len() == in_flight {
                let confirm: PublisherConfirm = pending.pop_front().expect("in_flight is at least 1");
                check_confirm(confirm.await?)?;
            }
            pending.push_back(publish(publisher, queue).await?);
        }
        for confirm in pending {
            check_confirm(confirm.await?)?;
        }
        for _ in 0..count {
            received.recv().await.context("the consumer stopped")?;
        }
        let rate = crate::stats::rate(count, start.elapsed());
        consuming.abort();
        Ok(rate)
    }
}

/// Both connections stay open as long as this lives.
struct Link {
    _connections: [Connection; 2],
    publisher: Channel,
    consumer: Option<Consumer>,
    queue: String,
}

impl Drop for BareBroker {
    fn drop(&mut self) {
        aegir_e2e::delete_vhost(&self.vhost);
    }
}

async fn publish(channel: &Channel, queue: &str) -> lapin::Result<PublisherConfirm> {
    let properties = BasicProperties::default().with_content_type("application/json".into()).with_delivery_mode(2);
    channel.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), &PAYLOAD, properties).await
}

fn check_confirm(confirmation: Confirmation) -> anyhow::Result<()> {
    if confirmation.is_nack() {
        bail!("RabbitMQ refused a message (nack)");
    }
    Ok(())
}

/// Acks each delivery and reports when it arrived.
async fn consume(mut consumer: Consumer, arrived: mpsc::UnboundedSender<Instant>) -> anyhow::Result<()> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let at = Instant::now();
        delivery.ack(BasicAckOptions::default()).await?;
        if arrived.send(at).is_err() {
            break;
        }
    }
    Ok(())
}
