//! What the scheduled queues share: each enabled site gets a task once per interval, at
//! a moment within the period fixed by its uri and the queue, so thousands of sites are
//! spread evenly over the period instead of all starting at once, and one site's queues
//! fall at different moments. A site busy with another task is asked again shortly
//! (see [`busy_retry`]); one whose state refuses the task skips that round only.

use std::time::Duration;

use aegir_contract::{ContextName, SiteUri, TaskKind};
use sqlx::PgPool;

use crate::error::ApiError;
use crate::routes::tasks::{Queued, enqueue_queued};
use crate::task_args::TaskArgs;

/// Sites queued per round at most, so one round is one short transaction.
const BATCH: i64 = 200;

/// How long a site found busy waits before its queue asks again: a tenth of the
/// interval, between 1 s and 5 minutes. Skipping a whole period instead would let two
/// queues that keep finding each other's task running starve one another.
pub fn busy_retry(interval: Duration) -> Duration {
    (interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// One scheduled queue.
pub struct Periodic {
    pub task: TaskKind,
    /// The `sites` column holding each site's next moment, e.g. `cron_next_at`.
    pub next_at: &'static str,
    /// The `sites` column with a site's own interval in seconds (0: never), if sites have one.
    pub own_interval: Option<&'static str>,
}

impl Periodic {
    /// Queues the tasks that are due. Returns how many were queued.
    pub async fn queue_due(&self, pool: &PgPool, default: Duration) -> Result<usize, ApiError> {
        let next = self.next_at;
        let interval = match self.own_interval {
            Some(column) => format!("COALESCE({column}, $1)"),
            None => "$1".to_owned(),
        };
        let default_secs = i32::try_from(default.as_secs()).unwrap_or(i32::MAX);
        let mut tx = pool.begin().await?;
        // Column names come from this file only, never from input. The queue's name salts
        // the moment, so a site's cron and stats do not fall due together.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sites SET {next} = now() + make_interval(
                 secs => {interval} * ((hashtext(uri || ' ' || $2) & 2147483647) % 10000) / 10000.0)
             WHERE status = 'enabled' AND {next} IS NULL AND {interval} > 0"
        )))
        .bind(default_secs)
        .bind(self.task.to_string())
        .execute(&mut *tx)
        .await?;
        let due: Vec<(String, i32)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT uri, {interval} FROM sites
             WHERE status = 'enabled' AND {next} <= now() AND {interval} > 0
             ORDER BY {next} LIMIT $2 FOR UPDATE SKIP LOCKED"
        )))
        .bind(default_secs)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut queued = 0;
        for (uri, secs) in due {
            let busy = match SiteUri::parse(&uri) {
                Err(_) => false,
                Ok(site) => {
                    match enqueue_queued(&mut tx, &ContextName::Site(site.clone()), self.task, &TaskArgs::default())
                        .await?
                    {
                        Queued::Task(_) => {
                            queued += 1;
                            false
                        }
                        Queued::Busy => {
                            tracing::debug!(site = %site, task = %self.task, "the site is busy: asking again shortly");
                            true
                        }
                        Queued::Refused(reason) => {
                            tracing::warn!(site = %site, task = %self.task, %reason, "not queued this round");
                            false
                        }
                    }
                }
            };
            let period = f64::from(secs);
            if busy {
                let retry = busy_retry(Duration::from_secs(u64::try_from(secs).unwrap_or(1))).as_secs_f64();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE sites SET {next} = now() + make_interval(secs => $2) WHERE uri = $1"
                )))
                .bind(&uri)
                .bind(retry)
                .execute(&mut *tx)
                .await?;
            } else {
                // One period on, or half a period from now when rounds were missed.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE sites SET {next} = GREATEST({next} + make_interval(secs => $2),
                                                        now() + make_interval(secs => $2) / 2)
                     WHERE uri = $1"
                )))
                .bind(&uri)
                .bind(period)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(queued)
    }
}
