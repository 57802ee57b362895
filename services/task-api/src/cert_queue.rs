//! The certificate renewal queue: sites served over https, disabled ones too (their
//! page keeps answering over https and ACME challenges), get a `verify` (whose
//! certificate step orders a new certificate only when needed) when their certificate
//! expires within the renewal window, when they have none yet, or when the last order
//! failed and its backoff has passed; a failed order is retried with a growing backoff
//! (`retry` doubled per failure in a row, at most a day) and stays shown on the site
//! (`ssl_status` `failing`, `ssl_error`, `ssl_retry_at`) until an order succeeds.

use std::sync::OnceLock;
use std::time::Duration;

use aegir_contract::{CertificateFacts, CertificateSource, ContextName, SiteUri, TaskKind};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::routes::tasks::{Queued, enqueue_queued};
use crate::state::AppState;
use crate::task_args::TaskArgs;

/// Sites queued per round at most, so one round is one short transaction.
const BATCH: i64 = 200;

/// The longest wait between two attempts of a failing site.
const MAX_BACKOFF: Duration = Duration::from_secs(86_400);

/// The first wait after a failure (`AEGIR_CERT_RETRY_SECS`), set once at start.
static RETRY: OnceLock<Duration> = OnceLock::new();

/// The renewal window, set once at start: a supplied certificate expiring within it
/// shows as `expiring`.
static WINDOW: OnceLock<Duration> = OnceLock::new();

/// The queue's settings.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    /// How often the queue looks for due sites; zero turns it off.
    pub every: Duration,
    /// Certificates expiring within this are renewed.
    pub window: Duration,
    /// The first wait after a failure.
    pub retry: Duration,
}

/// The wait before the next attempt after `failures` failed ones in a row.
pub fn backoff(retry: Duration, failures: i32) -> Duration {
    let doublings = u32::try_from(failures.clamp(1, 17) - 1).unwrap_or(0);
    retry.saturating_mul(1 << doublings).min(MAX_BACKOFF).max(Duration::from_secs(1))
}

fn retry() -> Duration {
    RETRY.get().copied().unwrap_or(Duration::from_secs(600))
}

fn window() -> chrono::Duration {
    chrono::Duration::from_std(WINDOW.get().copied().unwrap_or(Duration::from_secs(30 * 86_400)))
        .unwrap_or(chrono::Duration::days(30))
}

/// What the API shows of a site's https: `off`, `pending`, `valid`, `expired`,
/// `failing`, or `expiring` (a certificate its owner supplied, which nothing here renews,
/// expires within the renewal window).
pub fn status(ssl: &str, source: Option<&str>, expires_at: Option<DateTime<Utc>>, failing: bool) -> &'static str {
    match (ssl, expires_at) {
        ("off", _) => "off",
        _ if failing => "failing",
        (_, None) => "pending",
        (_, Some(at)) if at <= Utc::now() => "expired",
        (_, Some(at)) if source == Some("user") && at <= Utc::now() + window() => "expiring",
        _ => "valid",
    }
}

/// Records what a certificate step reported: the certificate the site serves, and the
/// order's error with the time of the next attempt, or a clean state once it succeeded.
pub async fn record(
    conn: &mut PgConnection,
    uri: &SiteUri,
    facts: &CertificateFacts,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let failures: Option<i32> = sqlx::query_scalar(
        "UPDATE sites SET
             ssl_expires_at = $2, ssl_issuer = $3, ssl_serial = $4, ssl_error = $5, ssl_checked_at = $6,
             ssl_source = $7,
             ssl_failures = CASE WHEN $5::text IS NULL THEN 0 ELSE ssl_failures + 1 END,
             ssl_retry_at = NULL
         WHERE uri = $1
         RETURNING ssl_failures",
    )
    .bind(uri.as_str())
    .bind(facts.expires_at)
    .bind(facts.issuer.as_deref())
    .bind(facts.serial.as_deref())
    .bind(facts.error.as_deref())
    .bind(at)
    .bind(facts.source.map(CertificateSource::as_str))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(failures) = failures else { return Ok(false) };
    if facts.error.is_some() {
        let wait = chrono::Duration::from_std(backoff(retry(), failures)).unwrap_or(chrono::Duration::days(1));
        sqlx::query("UPDATE sites SET ssl_retry_at = $2 WHERE uri = $1")
            .bind(uri.as_str())
            .bind(at + wait)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

/// Queues a `verify` for each due site. Returns how many were queued.
pub async fn queue_due(pool: &PgPool, renewal: Renewal) -> Result<usize, ApiError> {
    let window = i64::try_from(renewal.window.as_secs()).unwrap_or(i64::MAX) as f64;
    let mut tx = pool.begin().await?;
    let due: Vec<(String, bool, i32)> = sqlx::query_as(
        "SELECT uri, ssl_error IS NOT NULL, ssl_failures FROM sites
         WHERE status IN ('enabled', 'disabled') AND ssl <> 'off'
           -- A certificate its owner supplied is never ordered over ACME in its place.
           AND ssl_source IS DISTINCT FROM 'user'
           AND (ssl_retry_at IS NULL OR ssl_retry_at <= now())
           AND (ssl_error IS NOT NULL OR ssl_expires_at IS NULL
                OR ssl_expires_at < now() + make_interval(secs => $1))
         ORDER BY ssl_retry_at NULLS FIRST, ssl_expires_at NULLS FIRST LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(window)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut queued = 0;
    for (uri, failing, failures) in due {
        // Not again before the backoff, whatever becomes of the task: a verify that fails
        // before its certificate step must not be queued every round.
        let hold =
            chrono::Duration::from_std(backoff(renewal.retry, failures.max(1))).unwrap_or(chrono::Duration::days(1));
        sqlx::query("UPDATE sites SET ssl_retry_at = now() + $2 WHERE uri = $1")
            .bind(&uri)
            .bind(hold)
            .execute(&mut *tx)
            .await?;
        let Ok(uri) = SiteUri::parse(&uri) else { continue };
        // A failed order is tried again even when the old certificate is far from expiry
        // (a renewal asked for early failed).
        let args = TaskArgs { renew: failing, ..TaskArgs::default() };
        match enqueue_queued(&mut tx, &ContextName::Site(uri.clone()), TaskKind::Verify, &args).await? {
            Queued::Task(_) => queued += 1,
            Queued::Busy => tracing::debug!(site = %uri, "certificate renewal skipped this round: the site is busy"),
            Queued::Refused(reason) => tracing::warn!(site = %uri, %reason, "certificate renewal not queued"),
        }
    }
    tx.commit().await?;
    Ok(queued)
}

/// Runs the queue until `shutdown`. An interval of zero turns it off.
pub async fn run(state: AppState, renewal: Renewal, shutdown: CancellationToken) {
    let _ = RETRY.set(renewal.retry);
    let _ = WINDOW.set(renewal.window);
    if renewal.every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(renewal.every) => {}
            _ = shutdown.cancelled() => return,
        }
        match queue_due(&state.pool, renewal).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(tasks = n, "certificate renewals queued");
                state.outbox.wake();
            }
            Err(e) => tracing::warn!(error = %e, "could not queue certificate renewals; trying again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_up_to_a_day() {
        let base = Duration::from_secs(600);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 2), base * 2);
        assert_eq!(backoff(base, 4), base * 8);
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }

    #[test]
    fn status_tells_failing_from_pending_and_expired() {
        let past = Utc::now() - chrono::Duration::days(1);
        let future = Utc::now() + chrono::Duration::days(60);
        let soon = Utc::now() + chrono::Duration::days(5);
        assert_eq!(status("off", None, Some(future), true), "off");
        assert_eq!(status("forced", Some("acme"), Some(future), true), "failing");
        assert_eq!(status("on", None, None, false), "pending");
        assert_eq!(status("on", Some("acme"), Some(past), false), "expired");
        assert_eq!(status("forced", Some("acme"), Some(future), false), "valid");
        assert_eq!(status("on", Some("acme"), Some(soon), false), "valid", "the queue renews it");
        assert_eq!(status("on", Some("user"), Some(soon), false), "expiring", "nothing renews it");
        assert_eq!(status("on", Some("user"), Some(future), false), "valid");
    }
}
