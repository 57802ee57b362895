//! The `platforms` table.

use std::sync::LazyLock;

use aegir_contract::{AbsolutePath, PlatformName, PlatformSource, PlatformType, ProfileName, ServerName};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};

use super::Saved;
use super::servers::{self, ServerContextRow};
use crate::input::Page;
use crate::views::{ContextStatus, PackageView, PlatformView};

macro_rules! view_columns {
    () => {
        "name, root, web_server, source, platform_type, app_version, profiles, locked, status, verified_at, created_at, updated_at"
    };
}

#[derive(Debug, FromRow)]
pub struct PlatformRow {
    pub name: String,
    pub root: String,
    pub web_server: String,
    /// As the API checked it when the platform was saved.
    pub source: Option<Json<serde_json::Value>>,
    pub platform_type: Option<String>,
    pub app_version: Option<String>,
    pub profiles: Option<Vec<String>>,
    pub locked: bool,
    #[sqlx(try_from = "String")]
    pub status: ContextStatus,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PlatformRow {
    /// The stored source, checked again as the contract's type.
    pub fn platform_source(&self) -> Result<Option<PlatformSource>, String> {
        self.source
            .as_ref()
            .map(|Json(value)| serde_json::from_value(value.clone()))
            .transpose()
            .map_err(|e| format!("the stored source of platform `@{}` is not valid: {e}", self.name))
    }

    pub fn into_view(self, packages: Vec<PackageView>) -> PlatformView {
        PlatformView {
            context: format!("@{}", self.name),
            name: self.name,
            root: self.root,
            web_server: format!("@{}", self.web_server),
            source: self.source.map(|Json(source)| source),
            platform_type: self.platform_type,
            app_version: self.app_version,
            profiles: self.profiles,
            locked: self.locked,
            packages,
            status: self.status,
            verified_at: self.verified_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

pub async fn get(db: impl PgExecutor<'_>, name: &PlatformName) -> sqlx::Result<Option<PlatformRow>> {
    sqlx::query_as(concat!("SELECT ", view_columns!(), " FROM platforms WHERE name = $1"))
        .bind(name.as_str())
        .fetch_optional(db)
        .await
}

/// Reads the platform and locks it until the transaction ends. With `exclusive` false the
/// lock only keeps others from changing or deleting it (for a task snapshot).
pub async fn lock(conn: &mut PgConnection, name: &PlatformName, exclusive: bool) -> sqlx::Result<Option<PlatformRow>> {
    let query = if exclusive {
        concat!("SELECT ", view_columns!(), " FROM platforms WHERE name = $1 FOR UPDATE")
    } else {
        concat!("SELECT ", view_columns!(), " FROM platforms WHERE name = $1 FOR SHARE")
    };
    sqlx::query_as(query).bind(name.as_str()).fetch_optional(conn).await
}

/// A platform locked for a task, with the servers the task carries.
pub struct LockedForTask {
    pub platform: PlatformRow,
    /// Its web server, share-locked.
    pub web_server: ServerContextRow,
    /// For a site's task: the server keeping the dns records of the platform's sites (the
    /// one its web server names, else the web server itself), when it offers dns,
    /// share-locked; `None` when there is none, and for a platform's task, which has no
    /// use for it.
    pub dns_server: Option<ServerContextRow>,
}

/// Which task a platform is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOf {
    /// A task of the platform; `exclusive` holds it against every other writer (a
    /// delete), else it is share-locked as [`lock`] does.
    Platform { exclusive: bool },
    /// A task of one of its sites, which carries the dns server too.
    Site,
}

/// [`lock`], with the platform's web server (and, for a site's task, the dns server of
/// its sites) in the same read: one round trip where a task's snapshot took two or three.
/// `None` when there is no such platform.
pub async fn lock_for_task(
    conn: &mut PgConnection,
    name: &PlatformName,
    task: TaskOf,
) -> sqlx::Result<Option<LockedForTask>> {
    // Each server is share-locked inside its own subquery: a locking clause cannot reach
    // the nullable side of an outer join.
    fn query(task: TaskOf) -> String {
        let (dns_columns, dns) = match task {
            TaskOf::Site => (
                ", d.*",
                format!(
                    "LEFT JOIN LATERAL (
                     SELECT {} FROM servers
                     WHERE name = COALESCE(w.web_dns_server, platforms.web_server) AND dns_service_type IS NOT NULL
                     FOR SHARE
                 ) d ON true",
                    servers::context_columns_as("dns_")
                ),
            ),
            TaskOf::Platform { .. } => ("", String::new()),
        };
        let lock = if task == (TaskOf::Platform { exclusive: true }) { "FOR UPDATE" } else { "FOR SHARE" };
        format!(
            "SELECT {platform}, w.*{dns_columns} FROM platforms
             CROSS JOIN LATERAL (
                 SELECT {web}, dns_server AS web_dns_server FROM servers
                 WHERE name = platforms.web_server FOR SHARE
             ) w
             {dns}
             WHERE platforms.name = $1 {lock} OF platforms",
            platform = view_columns!(),
            web = servers::context_columns_as("web_"),
        )
    }
    static SHARED: LazyLock<String> = LazyLock::new(|| query(TaskOf::Platform { exclusive: false }));
    static EXCLUSIVE: LazyLock<String> = LazyLock::new(|| query(TaskOf::Platform { exclusive: true }));
    static SITE: LazyLock<String> = LazyLock::new(|| query(TaskOf::Site));
    let sql = match task {
        TaskOf::Platform { exclusive: false } => &SHARED,
        TaskOf::Platform { exclusive: true } => &EXCLUSIVE,
        TaskOf::Site => &SITE,
    };
    // Built only from constant column names.
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(name.as_str()).fetch_optional(conn).await?
    else {
        return Ok(None);
    };
    // An inner join: a platform row comes only with its web server.
    let web_server = ServerContextRow::from_prefixed(&row, "web_")?
        .ok_or_else(|| sqlx::Error::Decode("a platform read without its web server".into()))?;
    let dns_server = match task {
        TaskOf::Site => ServerContextRow::from_prefixed(&row, "dns_")?,
        TaskOf::Platform { .. } => None,
    };
    Ok(Some(LockedForTask { platform: PlatformRow::from_row(&row)?, web_server, dns_server }))
}

pub async fn list(db: &PgPool, page: Page) -> sqlx::Result<(Vec<PlatformRow>, i64)> {
    let rows = sqlx::query_as(concat!("SELECT ", view_columns!(), " FROM platforms ORDER BY name LIMIT $1 OFFSET $2"))
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(db)
        .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM platforms").fetch_one(db).await?;
    Ok((rows, total))
}

/// The platforms granted to `client`, as [`list`] gives them.
pub async fn list_granted(db: &PgPool, client: &str, page: Page) -> sqlx::Result<(Vec<PlatformRow>, i64)> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        view_columns!(),
        " FROM platforms WHERE name IN (SELECT platform FROM client_platforms WHERE client = $1)
         ORDER BY name LIMIT $2 OFFSET $3"
    ))
    .bind(client)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM client_platforms WHERE client = $1")
        .bind(client)
        .fetch_one(db)
        .await?;
    Ok((rows, total))
}

/// Names of (at most `limit`) platforms on `server`.
pub async fn names_on_server(conn: &mut PgConnection, server: &ServerName, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT name FROM platforms WHERE web_server = $1 ORDER BY name LIMIT $2")
        .bind(server.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The platform other than `name` that already has `root` on `web_server`, if any.
pub async fn holder_of_root(
    conn: &mut PgConnection,
    web_server: &ServerName,
    root: &AbsolutePath,
    name: &PlatformName,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT name FROM platforms WHERE web_server = $1 AND root = $2 AND name <> $3")
        .bind(web_server.as_str())
        .bind(root.as_str())
        .bind(name.as_str())
        .fetch_optional(conn)
        .await
}

/// Creates or replaces the platform. Moving it (another root or web server) forgets
/// what the last verify found, since that was about other code.
pub async fn save(
    conn: &mut PgConnection,
    name: &PlatformName,
    root: &AbsolutePath,
    web_server: &ServerName,
    source: Option<&PlatformSource>,
) -> sqlx::Result<Saved<PlatformRow>> {
    sqlx::query_as(concat!(
        "INSERT INTO platforms AS p (name, root, web_server, source) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET
             root = EXCLUDED.root,
             web_server = EXCLUDED.web_server,
             source = EXCLUDED.source,
             platform_type = CASE WHEN (EXCLUDED.root, EXCLUDED.web_server) = (p.root, p.web_server)
                                  THEN p.platform_type END,
             app_version = CASE WHEN (EXCLUDED.root, EXCLUDED.web_server) = (p.root, p.web_server)
                                THEN p.app_version END,
             profiles = CASE WHEN (EXCLUDED.root, EXCLUDED.web_server) = (p.root, p.web_server)
                             THEN p.profiles END,
             status = CASE WHEN (EXCLUDED.root, EXCLUDED.web_server) = (p.root, p.web_server)
                           THEN p.status ELSE 'new' END,
             verified_at = CASE WHEN (EXCLUDED.root, EXCLUDED.web_server) = (p.root, p.web_server)
                                THEN p.verified_at END,
             updated_at = now()
         RETURNING ",
        view_columns!(),
        ", (xmax = 0) AS created"
    ))
    .bind(name.as_str())
    .bind(root.as_str())
    .bind(web_server.as_str())
    .bind(source.map(Json))
    .fetch_one(conn)
    .await
}

/// Removes the platform and what its verifies found.
pub async fn delete(conn: &mut PgConnection, name: &PlatformName) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM platforms WHERE name = $1").bind(name.as_str()).execute(&mut *conn).await?;
    super::packages::forget(conn, &format!("@{name}")).await
}

/// Records the outcome of a finished verify.
pub async fn set_status(
    conn: &mut PgConnection,
    name: &PlatformName,
    status: ContextStatus,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE platforms SET status = $2, verified_at = CASE WHEN $2 = 'verified' THEN $3 ELSE verified_at END
         WHERE name = $1",
    )
    .bind(name.as_str())
    .bind(status.as_str())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records what a verify found; absent facts keep their stored value.
pub async fn set_facts(
    db: impl PgExecutor<'_>,
    name: &PlatformName,
    platform_type: Option<PlatformType>,
    app_version: Option<&str>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE platforms SET platform_type = COALESCE($2, platform_type), app_version = COALESCE($3, app_version)
         WHERE name = $1",
    )
    .bind(name.as_str())
    .bind(platform_type.map(PlatformType::as_str))
    .bind(app_version)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Records the install profiles a verify found.
pub async fn set_profiles(
    db: impl PgExecutor<'_>,
    name: &PlatformName,
    profiles: &[ProfileName],
) -> sqlx::Result<bool> {
    let profiles: Vec<&str> = profiles.iter().map(ProfileName::as_str).collect();
    let done = sqlx::query("UPDATE platforms SET profiles = $2 WHERE name = $1")
        .bind(name.as_str())
        .bind(&profiles)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Locks or unlocks a platform: a locked one takes no new sites.
pub async fn set_locked(conn: &mut PgConnection, name: &PlatformName, locked: bool) -> sqlx::Result<()> {
    sqlx::query("UPDATE platforms SET locked = $2, updated_at = now() WHERE name = $1")
        .bind(name.as_str())
        .bind(locked)
        .execute(conn)
        .await?;
    Ok(())
}
