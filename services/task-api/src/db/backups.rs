//! The `backups` table: complete archives in the backup store.

use aegir_contract::{BackupFacts, BackupRef, Compression, SiteUri};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::input::Page;
use crate::views::BackupView;

#[derive(Debug, FromRow)]
pub struct BackupRow {
    pub id: Uuid,
    pub site: String,
    pub archive_site: String,
    pub compression: String,
    pub size: i64,
    pub sha256: String,
    pub database_bytes: i64,
    pub files_bytes: i64,
    pub entries: i64,
    pub origin: String,
    pub task_id: Option<Uuid>,
    pub platform: Option<String>,
    pub created_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, site, archive_site, compression, size, sha256, database_bytes, files_bytes, entries, origin, task_id, \
         platform, created_at"
    };
}

impl BackupRow {
    /// The archive as a task names it.
    pub fn reference(&self) -> Result<BackupRef, crate::views::StoredValueError> {
        Ok(BackupRef {
            id: self.id,
            site: super::stored("site uri", self.archive_site.clone())?,
            compression: super::stored::<Compression>("compression", self.compression.clone())?,
        })
    }
}

impl From<BackupRow> for BackupView {
    fn from(row: BackupRow) -> Self {
        BackupView {
            id: row.id,
            site: format!("@{}", row.site),
            compression: row.compression,
            size: row.size,
            sha256: row.sha256,
            database_bytes: row.database_bytes,
            files_bytes: row.files_bytes,
            entries: row.entries,
            origin: row.origin,
            task_id: row.task_id,
            platform: row.platform.map(|p| format!("@{p}")),
            created_at: row.created_at,
        }
    }
}

/// Who made an archive, for its record.
pub struct Origin<'a> {
    pub site: &'a SiteUri,
    pub task_kind: &'a str,
    pub task_id: Uuid,
    pub platform: Option<&'a str>,
}

/// Records a stored archive; a repeated report changes nothing.
pub async fn insert(conn: &mut PgConnection, facts: &BackupFacts, origin: &Origin<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO backups (id, site, archive_site, compression, size, sha256, database_bytes, files_bytes, entries,
                              origin, task_id, platform, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(facts.backup.id)
    .bind(origin.site.as_str())
    .bind(facts.backup.site.as_str())
    .bind(facts.backup.compression.as_str())
    .bind(i64::try_from(facts.size).unwrap_or(i64::MAX))
    .bind(&facts.sha256)
    .bind(i64::try_from(facts.database_bytes).unwrap_or(i64::MAX))
    .bind(i64::try_from(facts.files_bytes).unwrap_or(i64::MAX))
    .bind(i64::try_from(facts.entries).unwrap_or(i64::MAX))
    .bind(origin.task_kind)
    .bind(origin.task_id)
    .bind(origin.platform)
    .bind(facts.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<BackupRow>> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM backups WHERE id = $1")).bind(id).fetch_optional(db).await
}

/// The archives of a site, newest first.
pub async fn of_site(conn: &mut PgConnection, site: &SiteUri, page: Page) -> sqlx::Result<(Vec<BackupRow>, i64)> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM backups WHERE site = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(site.as_str())
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(&mut *conn)
    .await?;
    let total =
        sqlx::query_scalar("SELECT count(*) FROM backups WHERE site = $1").bind(site.as_str()).fetch_one(conn).await?;
    Ok((rows, total))
}

pub async fn delete(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM backups WHERE id = $1").bind(id).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// A renamed site keeps its archives.
pub async fn rename_site(conn: &mut PgConnection, from: &SiteUri, to: &SiteUri) -> sqlx::Result<()> {
    sqlx::query("UPDATE backups SET site = $2 WHERE site = $1")
        .bind(from.as_str())
        .bind(to.as_str())
        .execute(conn)
        .await?;
    Ok(())
}
