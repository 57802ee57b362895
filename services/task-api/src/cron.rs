//! The cron and stats queues: every enabled site's cron runs once per its interval (the
//! site's own `cron_interval`, else the installation's), and its figures are measured
//! once per the stats interval, each as a task ([`Periodic`]).

use std::time::Duration;

use aegir_contract::TaskKind;
use tokio_util::sync::CancellationToken;

use crate::periodic::Periodic;
use crate::state::AppState;

pub const CRON: Periodic =
    Periodic { task: TaskKind::Cron, next_at: "cron_next_at", own_interval: Some("cron_interval") };
pub const STATS: Periodic = Periodic { task: TaskKind::Stats, next_at: "stats_next_at", own_interval: None };

/// Runs `queue` until `shutdown`, looking for due sites several times per period (at
/// least every 10 s). An interval of zero turns the queue off.
pub async fn run(state: AppState, queue: &'static Periodic, default: Duration, shutdown: CancellationToken) {
    if default.is_zero() {
        return;
    }
    let every = (default / 20).clamp(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        match queue.queue_due(&state.pool, default).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(tasks = n, task = %queue.task, "scheduled tasks queued");
                state.outbox.wake();
            }
            Err(e) => tracing::warn!(error = %e, task = %queue.task, "could not queue scheduled tasks; trying again"),
        }
    }
}
