//! The cron queue: every enabled site's cron runs once per its interval, as a `cron`
//! task. Each site's moment within the period is fixed by its uri, so thousands of sites
//! are spread evenly over the period instead of all firing at once; a site that still
//! has a task waiting or running skips that round rather than piling crons up.

use std::time::Duration;

use aegir_contract::{ContextName, SiteUri, TaskKind};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::routes::tasks::{Queued, enqueue_queued};
use crate::state::AppState;
use crate::task_args::TaskArgs;

/// Sites queued per round at most, so one round is one short transaction.
const BATCH: i64 = 200;

/// Queues the cron tasks that are due. Returns how many were queued.
pub async fn queue_due(pool: &PgPool, default: Duration) -> Result<usize, ApiError> {
    let default_secs = i32::try_from(default.as_secs()).unwrap_or(i32::MAX);
    let mut tx = pool.begin().await?;
    // Sites new to the queue get their moment within the period, from their uri.
    sqlx::query(
        "UPDATE sites SET cron_next_at = now() + make_interval(
             secs => COALESCE(cron_interval, $1) * ((hashtext(uri) & 2147483647) % 10000) / 10000.0)
         WHERE status = 'enabled' AND cron_next_at IS NULL AND COALESCE(cron_interval, $1) > 0",
    )
    .bind(default_secs)
    .execute(&mut *tx)
    .await?;
    let due: Vec<(String, i32)> = sqlx::query_as(
        "SELECT uri, COALESCE(cron_interval, $1) FROM sites
         WHERE status = 'enabled' AND cron_next_at <= now() AND COALESCE(cron_interval, $1) > 0
         ORDER BY cron_next_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(default_secs)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut queued = 0;
    for (uri, interval) in due {
        // The next moment is one period on, or one period from now when rounds were missed.
        sqlx::query(
            "UPDATE sites SET cron_next_at = GREATEST(cron_next_at + make_interval(secs => $2),
                                                      now() + make_interval(secs => $2) / 2)
             WHERE uri = $1",
        )
        .bind(&uri)
        .bind(f64::from(interval))
        .execute(&mut *tx)
        .await?;
        let Ok(uri) = SiteUri::parse(&uri) else { continue };
        // A site busy with another task, or one that cannot run cron now, skips this round only.
        match enqueue_queued(&mut tx, &ContextName::Site(uri.clone()), TaskKind::Cron, &TaskArgs::default()).await? {
            Queued::Task(_) => queued += 1,
            Queued::Busy => {
                tracing::debug!(site = %uri, "cron skipped this round: another task of the site is pending")
            }
            Queued::Refused(reason) => tracing::warn!(site = %uri, %reason, "cron not queued this round"),
        }
    }
    tx.commit().await?;
    Ok(queued)
}

/// Runs the queue until `shutdown`, looking for due sites several times per period (at
/// least every 10 s). An interval of zero turns the queue off.
pub async fn run(state: AppState, default: Duration, shutdown: CancellationToken) {
    if default.is_zero() {
        return;
    }
    let every = (default / 20).clamp(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        match queue_due(&state.pool, default).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(tasks = n, "cron tasks queued");
                state.outbox.wake();
            }
            Err(e) => tracing::warn!(error = %e, "could not queue cron tasks; trying again"),
        }
    }
}
