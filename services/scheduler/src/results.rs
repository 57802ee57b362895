//! Step results are recorded in lanes side by side, each taking what has arrived since
//! its last round as one batch: one transaction, and one commit, for many results.
//!
//! A result goes to the lane of its task, so a task's results keep their order.

use aegir_amqp::Delivery;
use aegir_contract::TaskRef;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::consumers::Consumers;

/// Batches recorded at once.
const LANES: usize = 4;
/// Results a lane takes at most in one batch.
const BATCH: usize = 32;

/// Hands results to the lanes; dropping it ends them once they have recorded what they hold.
pub struct Lanes {
    senders: Vec<mpsc::Sender<Delivery>>,
}

impl Lanes {
    /// Starts the lanes in `running`.
    pub fn start(consumers: &Consumers, running: &mut JoinSet<()>) -> Self {
        let senders = (0..LANES)
            .map(|_| {
                let (sender, mut receiver) = mpsc::channel::<Delivery>(BATCH);
                let consumers = consumers.clone();
                running.spawn(async move {
                    let mut batch = Vec::with_capacity(BATCH);
                    while receiver.recv_many(&mut batch, BATCH).await > 0 {
                        consumers.on_results(std::mem::take(&mut batch)).await;
                    }
                });
                sender
            })
            .collect();
        Self { senders }
    }

    /// Takes the next delivery of `scheduler.results`.
    pub async fn handle(&self, delivery: Delivery) {
        let lane = lane_of(&delivery.data);
        // A closed lane means shutdown; the unacked delivery comes back next run.
        let _ = self.senders[lane].send(delivery).await;
    }
}

/// The lane of a result: by its task. One that names no task (it will be refused) takes
/// the first lane.
fn lane_of(body: &[u8]) -> usize {
    use std::hash::{Hash, Hasher};
    let Some(task) = TaskRef::peek(body) else { return 0 };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    task.task_id.hash(&mut hasher);
    (hasher.finish() % LANES as u64) as usize
}
