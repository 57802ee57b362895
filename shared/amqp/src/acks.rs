//! Acks of one channel's deliveries, sent together.
//!
//! A consumer whose handlers each finish in a moment (the scheduler's, task-api's events)
//! acks hundreds of deliveries a second, and RabbitMQ settles every ack frame in the
//! quorum queue's log: one frame per delivery costs the broker about as much again as
//! the message itself. Delivery tags count up from 1 on each channel, and one ack with
//! `multiple` settles every delivery up to its tag, so the deliveries a consumer has
//! handled are acked together, up to the first one still being handled. A delivery is
//! still acked only once its handler acked it (after its effect is stored); the frame
//! that says so may simply carry the deliveries before it too.
//!
//! A nack goes out at once, on its own: the multiple ack that follows passes over it
//! (the broker has settled it already) but never names it. A delivery dropped without
//! either goes back to the queue (nack with requeue), so it never holds up the acks of
//! the deliveries after it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::DeliveryTag;

/// The acks of one channel's deliveries.
#[derive(Default)]
pub(crate) struct Acks {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Every tag below this one is settled.
    settled_below: DeliveryTag,
    /// Settled tags above the ones settled in a row: with their acker when acked, `None`
    /// when nacked.
    ahead: BTreeMap<DeliveryTag, Option<Acker>>,
    /// The highest tag acked in a row and not yet sent, whose frame settles the rest.
    unsent: Option<Acker>,
    /// A task is sending `unsent`; it sends whatever came meanwhile before it stops.
    sending: bool,
}

impl Acks {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { settled_below: 1, ..State::default() }) })
    }

    /// Marks `tag` handled and acked; the frame goes out soon after, carrying with it
    /// every delivery before it that was handled meanwhile.
    fn acked(self: &Arc<Self>, tag: DeliveryTag, acker: Acker) {
        self.settle(tag, Some(acker));
    }

    /// Marks `tag` settled by a nack already sent.
    fn nacked(self: &Arc<Self>, tag: DeliveryTag) {
        self.settle(tag, None);
    }

    fn settle(self: &Arc<Self>, tag: DeliveryTag, acker: Option<Acker>) {
        let start = {
            let mut state = self.state.lock().expect("acks");
            state.ahead.insert(tag, acker);
            loop {
                let next = state.settled_below;
                let Some(settled) = state.ahead.remove(&next) else { break };
                if let Some(acker) = settled {
                    state.unsent = Some(acker);
                }
                state.settled_below += 1;
            }
            let start = state.unsent.is_some() && !state.sending;
            state.sending |= start;
            start
        };
        if start {
            // Sent by a task of its own, so the acks a handler gives one after another
            // (a batch stored in one transaction) go out in one frame.
            tokio::spawn(self.clone().send());
        }
    }

    async fn send(self: Arc<Self>) {
        loop {
            let acker = {
                let mut state = self.state.lock().expect("acks");
                match state.unsent.take() {
                    Some(acker) => acker,
                    None => {
                        state.sending = false;
                        return;
                    }
                }
            };
            if let Err(e) = acker.ack(BasicAckOptions { multiple: true }).await {
                // The channel is gone: the broker gives the deliveries out again, and
                // their handlers find their effect already stored.
                tracing::warn!(error = %e, "could not ack deliveries");
            }
        }
    }
}

/// A delivery of a queue; acked or rejected by its handler once its effect is stored.
///
/// It reads as lapin's delivery (`data`, `routing_key`, `properties`, …). On a consumer
/// that acks deliveries together (`ConsumerSpec::batch_acks`), [`Delivery::ack`]
/// hands the ack to its channel's [`Acks`].
pub struct Delivery {
    inner: lapin::message::Delivery,
    acks: Option<Arc<Acks>>,
    settled: AtomicBool,
}

impl Delivery {
    pub(crate) fn new(inner: lapin::message::Delivery, acks: Option<Arc<Acks>>) -> Self {
        Self { inner, acks, settled: AtomicBool::new(false) }
    }

    /// Acks the delivery. On a consumer that acks together, the frame goes out shortly
    /// after this returns (an error of the channel then shows as the delivery coming
    /// back, which handlers tolerate).
    pub async fn ack(&self, options: BasicAckOptions) -> lapin::Result<bool> {
        if self.settled.swap(true, Ordering::SeqCst) {
            return Ok(false);
        }
        match &self.acks {
            Some(acks) if !options.multiple => {
                acks.acked(self.inner.delivery_tag, self.inner.acker.clone());
                Ok(true)
            }
            _ => self.inner.acker.ack(options).await,
        }
    }

    /// Rejects the delivery: dead-lettered, or back to the queue with `requeue`.
    pub async fn nack(&self, options: BasicNackOptions) -> lapin::Result<bool> {
        if self.settled.swap(true, Ordering::SeqCst) {
            return Ok(false);
        }
        let sent = self.inner.acker.nack(options).await;
        if let Some(acks) = &self.acks {
            acks.nacked(self.inner.delivery_tag);
        }
        sent
    }
}

impl std::ops::Deref for Delivery {
    type Target = lapin::message::Delivery;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let Some(acks) = self.acks.take() else { return };
        if self.settled.swap(true, Ordering::SeqCst) {
            return;
        }
        // Left unsettled (its handler stopped at shutdown): back to the queue, so the
        // acks after it need not wait for the channel to close.
        let (acker, tag) = (self.inner.acker.clone(), self.inner.delivery_tag);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = acker.nack(BasicNackOptions { requeue: true, multiple: false }).await;
                acks.nacked(tag);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acker(tag: DeliveryTag) -> Acker {
        lapin::message::Delivery::mock(tag, "".into(), "".into(), false, vec![]).acker
    }

    #[tokio::test(flavor = "current_thread")]
    async fn acks_wait_for_the_deliveries_before_them_and_go_out_together() {
        let acks = Acks::new();
        // 2 and 3 are handled while 1 still is: nothing can be acked yet.
        acks.acked(2, acker(2));
        acks.acked(3, acker(3));
        {
            let state = acks.state.lock().unwrap();
            assert_eq!(state.settled_below, 1);
            assert!(state.unsent.is_none() && !state.sending);
        }
        // 1 is handled: one frame for 3 settles 1 to 3.
        acks.acked(1, acker(1));
        {
            let state = acks.state.lock().unwrap();
            assert_eq!(state.settled_below, 4);
            assert_eq!(state.unsent.as_ref().map(|a| a == &acker(3)), Some(true));
            assert!(state.sending);
        }
        // The send runs once this task yields (a mocked acker sends nothing).
        tokio::task::yield_now().await;
        let state = acks.state.lock().unwrap();
        assert!(state.unsent.is_none() && !state.sending);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_delivery_dropped_unsettled_goes_back_and_holds_up_no_ack_after_it() {
        let acks = Acks::new();
        let delivery = |tag| {
            let inner = lapin::message::Delivery::mock(tag, "".into(), "".into(), false, vec![]);
            Delivery::new(inner, Some(acks.clone()))
        };
        let (first, second) = (delivery(1), delivery(2));
        second.ack(BasicAckOptions::default()).await.unwrap();
        assert_eq!(acks.state.lock().unwrap().settled_below, 1, "2 waits for 1");
        // 1's handler stopped without settling it: it is nacked back to the queue.
        drop(first);
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let state = acks.state.lock().unwrap();
        assert_eq!(state.settled_below, 3);
        assert!(state.unsent.is_none() && !state.sending, "2's ack went out");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_nacked_delivery_is_passed_over_but_never_named() {
        let acks = Acks::new();
        acks.acked(1, acker(1));
        acks.nacked(2);
        {
            let state = acks.state.lock().unwrap();
            assert_eq!(state.settled_below, 3);
            // The frame names 1, the last acked; 2 was settled by its nack.
            assert_eq!(state.unsent.as_ref().map(|a| a == &acker(1)), Some(true));
        }
        tokio::task::yield_now().await;
        acks.nacked(3);
        let state = acks.state.lock().unwrap();
        assert_eq!(state.settled_below, 4);
        assert!(state.unsent.is_none(), "nothing acked after 1: no frame");
    }
}
