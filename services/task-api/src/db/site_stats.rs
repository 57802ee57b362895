//! The `site_stats` table: the latest figures of each site.

use aegir_contract::{SiteStats, SiteUri};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};

use crate::views::SiteStatsView;

/// Merges what one step measured into the site's figures (each step measures a part).
pub async fn record(conn: &mut PgConnection, site: &SiteUri, stats: &SiteStats, at: DateTime<Utc>) -> sqlx::Result<()> {
    let big = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let figures: serde_json::Map<String, serde_json::Value> =
        stats.figures.iter().map(|f| (f.name.clone(), serde_json::Value::from(f.value))).collect();
    let figures = (!figures.is_empty()).then_some(serde_json::Value::Object(figures));
    sqlx::query(
        "INSERT INTO site_stats AS s (site, database_bytes, database_tables, files_bytes, files, http_status,
                                      response_ms, figures, measured_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, COALESCE($8, '{}'), $9 WHERE EXISTS (SELECT 1 FROM sites WHERE uri = $1)
         ON CONFLICT (site) DO UPDATE SET
             database_bytes = COALESCE(EXCLUDED.database_bytes, s.database_bytes),
             database_tables = COALESCE(EXCLUDED.database_tables, s.database_tables),
             files_bytes = COALESCE(EXCLUDED.files_bytes, s.files_bytes),
             files = COALESCE(EXCLUDED.files, s.files),
             http_status = COALESCE(EXCLUDED.http_status, s.http_status),
             response_ms = COALESCE(EXCLUDED.response_ms, s.response_ms),
             figures = CASE WHEN $8 IS NULL THEN s.figures ELSE EXCLUDED.figures END,
             measured_at = GREATEST(EXCLUDED.measured_at, s.measured_at)",
    )
    .bind(site.as_str())
    .bind(big(stats.database_bytes))
    .bind(stats.database_tables.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
    .bind(big(stats.files_bytes))
    .bind(big(stats.files))
    .bind(stats.http_status.map(i32::from))
    .bind(stats.response_ms.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
    .bind(figures)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, FromRow)]
struct StatsRow {
    database_bytes: Option<i64>,
    database_tables: Option<i32>,
    files_bytes: Option<i64>,
    files: Option<i64>,
    http_status: Option<i32>,
    response_ms: Option<i32>,
    figures: serde_json::Value,
    measured_at: DateTime<Utc>,
}

pub async fn of(db: impl PgExecutor<'_>, site: &SiteUri) -> sqlx::Result<Option<SiteStatsView>> {
    let row: Option<StatsRow> = sqlx::query_as(
        "SELECT database_bytes, database_tables, files_bytes, files, http_status, response_ms, figures, measured_at
         FROM site_stats WHERE site = $1",
    )
    .bind(site.as_str())
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| SiteStatsView {
        database_bytes: r.database_bytes,
        database_tables: r.database_tables,
        files_bytes: r.files_bytes,
        files: r.files,
        http_status: r.http_status,
        response_ms: r.response_ms,
        figures: r.figures,
        measured_at: r.measured_at,
    }))
}
