//! The steps a worker runs at once, shared by its two lanes.
//!
//! A worker consumes its people's queue and its bulk queue (scheduled queues, batches).
//! Both take a slot before running a step; a freed slot goes to a waiting interactive
//! step first, so a person's step waits at most for one running step to end, however
//! long the bulk queue is.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aegir_contract::Lane;
use tokio::sync::oneshot;

/// `capacity` slots, handed out interactive lane first.
pub struct Slots {
    state: Mutex<State>,
}

struct State {
    free: usize,
    interactive: VecDeque<oneshot::Sender<()>>,
    bulk: VecDeque<oneshot::Sender<()>>,
}

/// A taken slot; dropping it frees the slot for the next waiting step.
pub struct Slot {
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.give_back();
    }
}

/// A wait for a slot. A slot handed to a wait that is dropped before it sees it goes
/// back to the others instead of being lost.
struct Waiting {
    slots: Arc<Slots>,
    receiver: oneshot::Receiver<()>,
    seen: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.seen && self.receiver.try_recv().is_ok() {
            self.slots.give_back();
        }
    }
}

impl Slots {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { free: capacity.max(1), interactive: VecDeque::new(), bulk: VecDeque::new() }),
        })
    }

    /// Waits for a slot. An interactive step takes a free slot at once; a bulk step
    /// takes one only when no interactive step is waiting.
    pub async fn take(self: &Arc<Self>, lane: Lane) -> Slot {
        let receiver = {
            let mut state = self.state.lock().expect("slots lock");
            if state.free > 0 && (lane == Lane::Interactive || state.interactive.is_empty()) {
                state.free -= 1;
                return Slot { slots: self.clone() };
            }
            let (sender, receiver) = oneshot::channel();
            match lane {
                Lane::Interactive => state.interactive.push_back(sender),
                Lane::Bulk => state.bulk.push_back(sender),
            }
            receiver
        };
        let mut waiting = Waiting { slots: self.clone(), receiver, seen: false };
        // The sender is only dropped after sending, or with the whole `Slots`, which this
        // waiter keeps alive.
        (&mut waiting.receiver).await.expect("a waiting slot is always handed over");
        // From now on the `Slot` frees it, not the `Waiting`.
        waiting.seen = true;
        Slot { slots: self.clone() }
    }

    /// Slots no step holds now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.state.lock().expect("slots lock").free
    }

    fn give_back(&self) {
        let mut state = self.state.lock().expect("slots lock");
        loop {
            let next = state.interactive.pop_front().or_else(|| state.bulk.pop_front());
            match next {
                // A waiter that went away hands it on through its own drop; try the next.
                Some(sender) => {
                    if sender.send(()).is_ok() {
                        return;
                    }
                }
                None => {
                    state.free += 1;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn is_waiting(wait: &mut (impl std::future::Future + Unpin)) -> bool {
        tokio::time::timeout(Duration::from_millis(20), wait).await.is_err()
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_a_waiting_interactive_step_before_older_bulk_steps() {
        let slots = Slots::new(2);
        let first = slots.take(Lane::Bulk).await;
        let second = slots.take(Lane::Bulk).await;
        assert_eq!(slots.free(), 0);

        let mut bulk = Box::pin(slots.take(Lane::Bulk));
        assert!(is_waiting(&mut bulk).await);
        let mut person = Box::pin(slots.take(Lane::Interactive));
        assert!(is_waiting(&mut person).await);

        drop(first);
        let person = tokio::time::timeout(Duration::from_secs(1), person).await.expect("the person's step goes first");
        assert!(is_waiting(&mut bulk).await, "the bulk step still waits");
        drop(second);
        let bulk = tokio::time::timeout(Duration::from_secs(1), bulk).await.expect("then the bulk step");
        drop((person, bulk));
        assert_eq!(slots.free(), 2);
    }

    #[tokio::test]
    async fn a_bulk_step_does_not_take_a_free_slot_while_a_person_waits() {
        let slots = Slots::new(1);
        let held = slots.take(Lane::Interactive).await;
        let mut person = Box::pin(slots.take(Lane::Interactive));
        assert!(is_waiting(&mut person).await);
        drop(held);
        let mut bulk = Box::pin(slots.take(Lane::Bulk));
        let person = tokio::time::timeout(Duration::from_secs(1), person).await.unwrap();
        assert!(is_waiting(&mut bulk).await);
        drop(person);
        tokio::time::timeout(Duration::from_secs(1), bulk).await.unwrap();
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_wait_that_went_away_is_not_lost() {
        let slots = Slots::new(1);
        let held = slots.take(Lane::Bulk).await;
        let mut gone = Box::pin(slots.take(Lane::Interactive));
        assert!(is_waiting(&mut gone).await);
        // Handed over, then the waiter goes away before it looked.
        drop(held);
        drop(gone);
        assert_eq!(slots.free(), 1);
        let _again = tokio::time::timeout(Duration::from_secs(1), slots.take(Lane::Bulk)).await.unwrap();
        assert_eq!(slots.free(), 0);
    }
}
