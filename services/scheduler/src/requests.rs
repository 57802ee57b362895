//! Task requests of different entities are accepted side by side.
//!
//! `scheduler.tasks` is read in order. Each request goes to the lane of its entity, so
//! one entity's requests are accepted in the order they were sent while other entities'
//! requests do not wait behind them. A lane takes what has arrived since its last round
//! as one batch, accepted in one transaction. A cancel first waits until every lane has handled
//! what was read before it, so it always finds the request it cancels.

use aegir_amqp::Delivery;
use aegir_amqp::topology::TASK_CANCEL_KEY;
use aegir_contract::TaskRequested;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::consumers::{CheckedRequest, Consumers};

/// Requests accepted at once, each on an entity of its own. Two keep the database busy
/// while one waits; more lanes take smaller batches, each its own commit.
const LANES: usize = 2;
/// Requests a lane may hold before the reader waits for it.
const LANE_DEPTH: usize = 64;

enum Item {
    Request(Box<CheckedRequest>),
    /// Answered once everything sent to the lane before it was handled.
    Barrier(oneshot::Sender<()>),
}

/// Hands requests to the lanes; dropping it ends them once they have handled what they hold.
pub struct Lanes {
    senders: Vec<mpsc::Sender<Item>>,
}

impl Lanes {
    /// Starts the lanes in `running`.
    pub fn start(consumers: &Consumers, running: &mut JoinSet<()>) -> Self {
        let senders = (0..LANES)
            .map(|_| {
                let (sender, mut receiver) = mpsc::channel::<Item>(LANE_DEPTH);
                let consumers = consumers.clone();
                running.spawn(async move {
                    // What has arrived since the last round is accepted as one batch; a
                    // barrier is answered once the requests before it are.
                    let mut items = Vec::with_capacity(LANE_DEPTH);
                    while receiver.recv_many(&mut items, LANE_DEPTH).await > 0 {
                        let mut requests = Vec::new();
                        for item in items.drain(..) {
                            match item {
                                Item::Request(checked) => requests.push(*checked),
                                Item::Barrier(done) => {
                                    if !requests.is_empty() {
                                        consumers.on_requests(std::mem::take(&mut requests)).await;
                                    }
                                    let _ = done.send(());
                                }
                            }
                        }
                        if !requests.is_empty() {
                            consumers.on_requests(requests).await;
                        }
                    }
                });
                sender
            })
            .collect();
        Self { senders }
    }

    /// Takes the next delivery of `scheduler.tasks`, in queue order. A request is checked
    /// here (an invalid one is refused) and goes to its lane decoded.
    pub async fn handle(&self, consumers: &Consumers, delivery: Delivery) {
        if delivery.routing_key.as_str() == TASK_CANCEL_KEY {
            self.drain().await;
            return consumers.on_cancel(delivery).await;
        }
        let Some(checked) = consumers.check(delivery).await else { return };
        let lane = lane_of(&checked.request);
        // A closed lane means shutdown; the unacked delivery comes back next run.
        let _ = self.senders[lane].send(Item::Request(Box::new(checked))).await;
    }

    /// Waits until every lane has handled what it was given.
    async fn drain(&self) {
        let mut waiting = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            let (done, handled) = oneshot::channel();
            if sender.send(Item::Barrier(done)).await.is_ok() {
                waiting.push(handled);
            }
        }
        for handled in waiting {
            let _ = handled.await;
        }
    }
}

/// The lane of a request: by its entity.
fn lane_of(request: &TaskRequested) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request.target.context().to_string().hash(&mut hasher);
    (hasher.finish() % LANES as u64) as usize
}
