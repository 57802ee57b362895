//! The backup queue: every enabled site gets a `backup` task once per interval, spread
//! over the period by its uri; then retention keeps, per site, the newest archive of
//! each of the last `daily` days that have one and of each of the last `weekly` ISO
//! weeks that have one, and removes the others through `backup-delete` tasks (so the
//! store and the records go together, logged). The final backups of deleted sites are
//! left alone.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aegir_contract::{ContextName, SiteUri, TaskKind};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ApiError;
use crate::periodic::Periodic;
use crate::routes::tasks::{Queued, enqueue_queued};
use crate::state::AppState;
use crate::task_args::TaskArgs;

/// Sites handled per round at most, so one round is one short transaction.
const BATCH: i64 = 200;

/// How many archives of a site are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub daily: usize,
    pub weekly: usize,
}

/// The archives `policy` keeps out of `archives` (id, made at): the newest of each of
/// the `daily` most recent days with an archive, and of each of the `weekly` most
/// recent ISO weeks with one. The newest archive is always kept.
pub fn kept(archives: &[(Uuid, DateTime<Utc>)], policy: Retention) -> HashSet<Uuid> {
    let mut newest_first = archives.to_vec();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut keep = HashSet::new();
    if let Some((id, _)) = newest_first.first() {
        keep.insert(*id);
    }
    let mut by_day: BTreeMap<NaiveDate, Uuid> = BTreeMap::new();
    let mut by_week: BTreeMap<(i32, u32), Uuid> = BTreeMap::new();
    for (id, at) in &newest_first {
        by_day.entry(at.date_naive()).or_insert(*id);
        let week = at.iso_week();
        by_week.entry((week.year(), week.week())).or_insert(*id);
    }
    keep.extend(by_day.values().rev().take(policy.daily));
    keep.extend(by_week.values().rev().take(policy.weekly));
    keep
}

/// Scheduled backups: each enabled site once per interval.
pub const BACKUPS: Periodic = Periodic { task: TaskKind::Backup, next_at: "backup_next_at", own_interval: None };

/// Queues one `backup-delete` per site for an archive the policy no longer keeps (a
/// site runs one task at a time; the next round takes the next archive). Returns how
/// many were queued.
pub async fn enforce_retention(pool: &PgPool, policy: Retention) -> Result<usize, ApiError> {
    let mut tx = pool.begin().await?;
    // Sites (that still exist) with an archive recorded since retention last found
    // nothing to remove there.
    let candidates: Vec<(String,)> = sqlx::query_as(
        "SELECT s.uri FROM sites s
         WHERE EXISTS (SELECT 1 FROM backups b WHERE b.site = s.uri
                       AND (s.retention_checked_at IS NULL OR b.recorded_at > s.retention_checked_at))
         ORDER BY s.uri LIMIT $1 FOR UPDATE OF s SKIP LOCKED",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut queued = 0;
    for (site,) in candidates {
        let Ok(uri) = SiteUri::parse(&site) else { continue };
        let archives = archives_of(&mut tx, &uri).await?;
        let keep = kept(&archives, policy);
        // Oldest first: what has waited longest goes first.
        let doomed = archives.iter().filter(|(id, _)| !keep.contains(id)).min_by_key(|(_, at)| *at);
        let Some((doomed, _)) = doomed else {
            sqlx::query("UPDATE sites SET retention_checked_at = now() WHERE uri = $1")
                .bind(uri.as_str())
                .execute(&mut *tx)
                .await?;
            continue;
        };
        let args = TaskArgs { backup: Some(*doomed), ..TaskArgs::default() };
        if try_enqueue(&mut tx, &uri, TaskKind::BackupDelete, args).await? {
            queued += 1;
        }
    }
    tx.commit().await?;
    Ok(queued)
}

async fn archives_of(conn: &mut PgConnection, site: &SiteUri) -> sqlx::Result<Vec<(Uuid, DateTime<Utc>)>> {
    sqlx::query_as("SELECT id, created_at FROM backups WHERE site = $1").bind(site.as_str()).fetch_all(conn).await
}

/// Queues a task unless the site's state refuses it now (a pending task): that round
/// is skipped for the site.
async fn try_enqueue(tx: &mut PgConnection, uri: &SiteUri, task: TaskKind, args: TaskArgs) -> Result<bool, ApiError> {
    match enqueue_queued(tx, &ContextName::Site(uri.clone()), task, &args).await? {
        Queued::Task(_) => Ok(true),
        Queued::Busy => {
            tracing::debug!(site = %uri, %task, "skipped this round: another task of the site is pending");
            Ok(false)
        }
        Queued::Refused(reason) => {
            tracing::warn!(site = %uri, %task, %reason, "not queued this round");
            Ok(false)
        }
    }
}

/// Runs the queue and retention until `shutdown`; an interval of zero turns scheduled
/// backups off (retention still runs when a policy is set).
pub async fn run(state: AppState, interval: Duration, policy: Option<Retention>, shutdown: CancellationToken) {
    if interval.is_zero() && policy.is_none() {
        return;
    }
    let every = if interval.is_zero() { Duration::from_secs(10) } else { interval / 20 }
        .clamp(Duration::from_millis(500), Duration::from_secs(10));
    // The policy may have changed since the last run: every site is looked at again.
    if policy.is_some()
        && let Err(e) =
            sqlx::query("UPDATE sites SET retention_checked_at = NULL WHERE retention_checked_at IS NOT NULL")
                .execute(&state.pool)
                .await
    {
        tracing::warn!(error = %e, "could not reset the retention checks; sites are looked at when they get an archive");
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        if !interval.is_zero() {
            match BACKUPS.queue_due(&state.pool, interval).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(tasks = n, "scheduled backups queued");
                    state.outbox.wake();
                }
                Err(e) => tracing::warn!(error = %e, "could not queue scheduled backups; trying again"),
            }
        }
        if let Some(policy) = policy {
            match enforce_retention(&state.pool, policy).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(tasks = n, "archives past their retention queued for deletion");
                    state.outbox.wake();
                }
                Err(e) => tracing::warn!(error = %e, "could not apply the backup retention; trying again"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn the_newest_of_each_recent_day_and_week_is_kept() {
        // Two a day on Nov 2..=26 (Nov 2 2026 is a Monday), ids in time order.
        let archives: Vec<(Uuid, DateTime<Utc>)> = (2..=26)
            .flat_map(|day| [(day, 3), (day, 15)])
            .enumerate()
            .map(|(i, (day, hour))| (Uuid::from_u128(i as u128), at(day, hour)))
            .collect();
        let id_at = |day: u32, hour: u32| archives.iter().find(|(_, t)| *t == at(day, hour)).unwrap().0;
        let keep = kept(&archives, Retention { daily: 3, weekly: 3 });
        let mut expected: HashSet<Uuid> = [26, 25, 24].iter().map(|&d| id_at(d, 15)).collect();
        // Weeks: Nov 23–29 (newest: 26th), Nov 16–22 (22nd), Nov 9–15 (15th).
        expected.extend([id_at(22, 15), id_at(15, 15)]);
        assert_eq!(keep, expected);
    }

    #[test]
    fn nothing_but_the_newest_survives_a_zero_policy_and_an_empty_list_keeps_nothing() {
        let archives = vec![(Uuid::from_u128(1), at(1, 1)), (Uuid::from_u128(2), at(1, 2))];
        assert_eq!(kept(&archives, Retention { daily: 0, weekly: 0 }), HashSet::from([Uuid::from_u128(2)]));
        assert!(kept(&[], Retention { daily: 7, weekly: 4 }).is_empty());
    }
}
