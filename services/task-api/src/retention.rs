//! Task history does not grow without bound: finished tasks older than the retention
//! period are deleted with their logs (in batches, so no long lock is held), once an
//! hour; successful cron runs go after a day. Unfinished tasks are never touched.
//! Partners' commands are remembered (for their idempotency keys) as long as tasks.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 5_000;
const EVERY: Duration = Duration::from_secs(3600);

/// Deletes finished tasks, and their logs, that finished more than `keep` ago. Returns
/// how many tasks went.
pub async fn prune(pool: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    let keep_secs = keep.as_secs_f64();
    let mut total = 0;
    loop {
        let deleted = delete_with_logs(
            pool,
            "SELECT id FROM tasks
             WHERE status IN ('success', 'failed', 'cancelled') AND finished_at < now() - make_interval(secs => $1)
             LIMIT $2",
            keep_secs,
        )
        .await?;
        total += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    // Successful cron runs come by the thousand every hour: a day of them is enough.
    loop {
        let deleted = delete_with_logs(
            pool,
            "SELECT id FROM tasks
             WHERE kind = 'cron' AND status = 'success' AND finished_at < now() - make_interval(secs => $1)
             LIMIT $2",
            86_400.0,
        )
        .await?;
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Deletes the tasks `which` selects (its `$1` is `secs`, its `$2` the batch size) and
/// their log lines, in one statement; returns how many tasks went.
async fn delete_with_logs(pool: &PgPool, which: &'static str, secs: f64) -> sqlx::Result<u64> {
    let statement = format!(
        "WITH gone AS (DELETE FROM tasks WHERE id IN ({which}) RETURNING id),
              lines AS (DELETE FROM task_log WHERE task_id IN (SELECT id FROM gone))
         SELECT count(*) FROM gone"
    );
    let deleted: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(statement)).bind(secs).bind(BATCH).fetch_one(pool).await?;
    Ok(deleted as u64)
}

/// Forgets partners' commands received more than `keep` ago: the same idempotency key
/// after that is a new command. Returns how many went.
pub async fn prune_commands(pool: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM commands WHERE (partner, idempotency_key) IN (
                 SELECT partner, idempotency_key FROM commands
                 WHERE created_at < now() - make_interval(secs => $1)
                 LIMIT $2)",
        )
        .bind(keep.as_secs_f64())
        .bind(BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Prunes once an hour until `shutdown`; `keep` of zero keeps everything.
pub async fn run(pool: PgPool, keep: Duration, shutdown: CancellationToken) {
    if keep.is_zero() {
        return;
    }
    loop {
        match prune(&pool, keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, keep_days = keep.as_secs() / 86_400, "pruned old tasks and their logs"),
            Err(e) => tracing::warn!(error = %e, "could not prune old tasks; trying again in an hour"),
        }
        match prune_commands(&pool, keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(commands = n, keep_days = keep.as_secs() / 86_400, "forgot old commands"),
            Err(e) => tracing::warn!(error = %e, "could not prune old commands; trying again in an hour"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
