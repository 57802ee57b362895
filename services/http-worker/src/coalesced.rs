//! An action many callers ask for at once, run once for all who asked before it began
//! (flushing files to disk, for one).

use std::sync::atomic::{AtomicU64, Ordering};

/// An action many callers ask for at once, run once for all who asked before it began:
/// one run at a time, and a caller returns only after a run that began after its ask
/// succeeded (its own, or one that covered it).
pub struct Coalesced {
    one_at_a_time: tokio::sync::Mutex<()>,
    asked: AtomicU64,
    covered: AtomicU64,
}

impl Coalesced {
    pub const fn new() -> Self {
        Self { one_at_a_time: tokio::sync::Mutex::const_new(()), asked: AtomicU64::new(0), covered: AtomicU64::new(0) }
    }

    /// Runs `action` unless a run that began after this ask has succeeded meanwhile.
    /// Returns whether this call ran it. A failed run covers nobody: the next caller
    /// runs it again.
    pub async fn run<F, Fut, E>(&self, action: F) -> Result<bool, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        // Taken after the caller's change is in place: a run that starts later covers it.
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.one_at_a_time.lock().await;
        if self.covered.load(Ordering::SeqCst) >= ticket {
            return Ok(false);
        }
        let covering = self.asked.load(Ordering::SeqCst);
        action().await?;
        self.covered.fetch_max(covering, Ordering::SeqCst);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::Coalesced;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn asks_made_during_a_run_share_the_next_one_and_each_waits_for_a_run_after_it() {
        let reloads = Arc::new(Coalesced::new());
        let runs = Arc::new(AtomicU64::new(0));
        // What a run made live: the highest ask number written before it began.
        let written = Arc::new(AtomicU64::new(0));
        let live = Arc::new(AtomicU64::new(0));
        let slow_run =
            |reloads: Arc<Coalesced>, runs: Arc<AtomicU64>, written: Arc<AtomicU64>, live: Arc<AtomicU64>| async move {
                reloads
                    .run(|| async {
                        let seen = written.load(Ordering::SeqCst);
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        live.fetch_max(seen, Ordering::SeqCst);
                        Ok::<(), ()>(())
                    })
                    .await
                    .unwrap()
            };
        let first = tokio::spawn(slow_run(reloads.clone(), runs.clone(), written.clone(), live.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Ten changes while the first run is under way.
        let mut asks = Vec::new();
        for n in 1..=10 {
            written.store(n, Ordering::SeqCst);
            let (reloads, runs, written, live) = (reloads.clone(), runs.clone(), written.clone(), live.clone());
            asks.push(tokio::spawn(async move {
                slow_run(reloads, runs, written, live.clone()).await;
                // Back only once its own change is live.
                assert!(live.load(Ordering::SeqCst) >= n, "ask {n} returned before its change was live");
            }));
        }
        assert!(first.await.unwrap(), "the first ask runs");
        for ask in asks {
            ask.await.unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2, "eleven asks, two runs: the first and one for all the others");
    }

    #[tokio::test]
    async fn a_failed_run_covers_nobody() {
        let reloads = Coalesced::new();
        assert_eq!(reloads.run(|| async { Err::<(), &str>("config test failed") }).await, Err("config test failed"));
        assert_eq!(reloads.run(|| async { Ok::<(), &str>(()) }).await, Ok(true), "the next ask runs again");
    }
}
