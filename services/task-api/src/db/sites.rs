//! The `sites` table. Sites are created by site install, which does not exist yet; the
//! API already lists them and keeps servers, platforms and clients in use from going.

use aegir_contract::{ClientName, PlatformName, ServerName, SiteUri};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};

use crate::input::Page;
use crate::views::SiteView;

#[derive(Debug, FromRow)]
pub struct SiteRow {
    pub uri: String,
    pub platform: String,
    pub db_server: String,
    pub client: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<SiteRow> for SiteView {
    fn from(row: SiteRow) -> Self {
        SiteView {
            context: format!("@{}", row.uri),
            uri: row.uri,
            platform: format!("@{}", row.platform),
            db_server: format!("@{}", row.db_server),
            client: row.client,
            status: row.status,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

pub async fn get(db: impl PgExecutor<'_>, uri: &SiteUri) -> sqlx::Result<Option<SiteRow>> {
    sqlx::query_as("SELECT uri, platform, db_server, client, status, created_at, updated_at FROM sites WHERE uri = $1")
        .bind(uri.as_str())
        .fetch_optional(db)
        .await
}

pub async fn list(db: &PgPool, page: Page) -> sqlx::Result<(Vec<SiteRow>, i64)> {
    let rows = sqlx::query_as(
        "SELECT uri, platform, db_server, client, status, created_at, updated_at FROM sites
         ORDER BY uri LIMIT $1 OFFSET $2",
    )
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM sites").fetch_one(db).await?;
    Ok((rows, total))
}

/// Uris of (at most `limit`) sites whose database is on `server`.
pub async fn on_db_server(conn: &mut PgConnection, server: &ServerName, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT uri FROM sites WHERE db_server = $1 ORDER BY uri LIMIT $2")
        .bind(server.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Uris of (at most `limit`) sites on `platform`.
pub async fn on_platform(conn: &mut PgConnection, platform: &PlatformName, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT uri FROM sites WHERE platform = $1 ORDER BY uri LIMIT $2")
        .bind(platform.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Uris of (at most `limit`) sites owned by `client`.
pub async fn of_client(conn: &mut PgConnection, client: &ClientName, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT uri FROM sites WHERE client = $1 ORDER BY uri LIMIT $2")
        .bind(client.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await
}
