//! What the scheduled queues share: each enabled site gets a task once per interval, at
//! a moment within the period fixed by its uri and the queue, so thousands of sites are
//! spread evenly over the period instead of all starting at once, and one site's queues
//! fall at different moments. A site busy with another task is asked again shortly (a
//! tenth of its interval); one whose state refuses the task skips that round only.
//! Either way, and after an outage, a site's next run falls back on its own moment.

use std::time::Duration;

use aegir_contract::{ContextName, SiteUri, TaskKind};
use sqlx::PgPool;

use crate::error::ApiError;
use crate::routes::tasks::{Queued, enqueue_queued};
use crate::task_args::TaskArgs;

/// Sites queued per round at most, so one round is one short transaction.
const BATCH: i64 = 200;

/// One scheduled queue.
pub struct Periodic {
    pub task: TaskKind,
    /// The `sites` column holding each site's next moment, e.g. `cron_next_at`.
    pub next_at: &'static str,
    /// The `sites` column with a site's own interval in seconds (0: never), if sites have one.
    pub own_interval: Option<&'static str>,
}

impl Periodic {
    /// Queues every task that is due, [`BATCH`] sites per transaction, so a queue keeps
    /// up with any number of sites and one round never holds many rows locked. Returns
    /// how many were queued.
    pub async fn queue_due(&self, pool: &PgPool, default: Duration) -> Result<usize, ApiError> {
        let mut queued = 0;
        loop {
            let round = self.queue_round(pool, default).await?;
            queued += round.queued;
            if round.taken < BATCH as usize {
                return Ok(queued);
            }
        }
    }

    /// The site's interval in seconds, as SQL: its own if it has one, else `$1`.
    fn interval_sql(&self) -> String {
        match self.own_interval {
            Some(column) => format!("COALESCE({column}, $1)"),
            None => "$1".to_owned(),
        }
    }

    /// The first of the site's moments later than `gap_secs` (SQL) from now. A site's
    /// moments are fixed by its uri, the queue (`$2`) and the interval, whatever
    /// happened before: a site asked again because it was busy, or a queue back after
    /// an outage, falls back into its place in the period, so the spread holds.
    fn next_moment_sql(&self, gap_secs: &str) -> String {
        let interval = self.interval_sql();
        let phase = format!("({interval} * ((hashtext(uri || ' ' || $2) & 2147483647) % 10000) / 10000.0)");
        format!(
            "to_timestamp({phase} + {interval} * (floor((extract(epoch FROM now()) + {gap_secs} - {phase}) / {interval}) + 1))"
        )
    }

    /// One round: up to [`BATCH`] due sites in one transaction.
    async fn queue_round(&self, pool: &PgPool, default: Duration) -> Result<Round, ApiError> {
        let next = self.next_at;
        let interval = self.interval_sql();
        let default_secs = i32::try_from(default.as_secs()).unwrap_or(i32::MAX);
        let task = self.task.to_string();
        let mut tx = pool.begin().await?;
        // Column names come from this file only, never from input. The queue's name salts
        // the moment, so a site's cron and stats do not fall due together.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sites SET {next} = {first}
             WHERE status = 'enabled' AND {next} IS NULL AND {interval} > 0",
            first = self.next_moment_sql("0"),
        )))
        .bind(default_secs)
        .bind(&task)
        .execute(&mut *tx)
        .await?;
        let due: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT uri FROM sites
             WHERE status = 'enabled' AND {next} <= now() AND {interval} > 0
             ORDER BY {next} LIMIT $2 FOR UPDATE SKIP LOCKED"
        )))
        .bind(default_secs)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let taken = due.len();
        let (mut done, mut busy, mut queued) = (Vec::with_capacity(taken), Vec::new(), 0);
        for (uri,) in due {
            let Ok(site) = SiteUri::parse(&uri) else {
                done.push(uri);
                continue;
            };
            match enqueue_queued(&mut tx, &ContextName::Site(site.clone()), self.task, &TaskArgs::default()).await? {
                Queued::Task(_) => {
                    queued += 1;
                    done.push(uri);
                }
                Queued::Busy => {
                    tracing::debug!(site = %site, task = %self.task, "the site is busy: asking again shortly");
                    busy.push(uri);
                }
                Queued::Refused(reason) => {
                    tracing::warn!(site = %site, task = %self.task, %reason, "not queued this round");
                    done.push(uri);
                }
            }
        }
        if !done.is_empty() {
            // The site's next moment at least half a period away, so a run made late
            // after missed rounds is not followed by another straight away.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE sites SET {next} = {moment} WHERE uri = ANY($3)",
                moment = self.next_moment_sql(&format!("{interval} / 2.0")),
            )))
            .bind(default_secs)
            .bind(&task)
            .bind(&done)
            .execute(&mut *tx)
            .await?;
        }
        if !busy.is_empty() {
            // A tenth of the interval, between 1 s and 5 minutes: skipping a whole
            // period instead would let two queues that keep finding each other's task
            // running starve one another.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE sites SET {next} = now() + make_interval(secs => LEAST(GREATEST({interval} / 10.0, 1), 300))
                 WHERE uri = ANY($2)"
            )))
            .bind(default_secs)
            .bind(&busy)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Round { queued, taken })
    }
}

/// What one round did.
struct Round {
    queued: usize,
    /// Due sites it took, queued or not.
    taken: usize,
}
