//! The `servers` table.

use std::sync::LazyLock;

use aegir_contract::{DbService, DnsService, HttpService, PhpVersion, Secret, ServerContext, ServerName, ServiceKind};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, Row};

use super::{Saved, stored, stored_port};
use crate::input::Page;
use crate::routes::servers::ServerInput;
use crate::views::{ContextStatus, DbServiceView, DnsServiceView, HttpServiceView, ServerView, StoredValueError};

/// The columns of [`ServerRow`]; the admin password itself is never read for a view.
macro_rules! view_columns {
    () => {
        "name, remote_host, http_service_type, http_port, http_version, db_service_type, db_host, db_port, \
         db_admin_user, db_admin_password <> '' AS db_admin_password_set, db_version, status, verified_at, \
         created_at, updated_at, php_versions, php_default_version, dns_service_type, dns_version, \
         COALESCE(dns_server, CASE WHEN dns_service_type IS NOT NULL THEN name END) AS dns_server"
    };
}

#[derive(Debug, FromRow)]
pub struct ServerRow {
    pub name: String,
    pub remote_host: String,
    pub http_service_type: Option<String>,
    pub http_port: Option<i32>,
    pub http_version: Option<String>,
    pub db_service_type: Option<String>,
    pub db_host: Option<String>,
    pub db_port: Option<i32>,
    pub db_admin_user: Option<String>,
    pub db_admin_password_set: Option<bool>,
    pub db_version: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: ContextStatus,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The PHP versions the last web server verify found installed; `None` before one.
    pub php_versions: Option<Vec<String>>,
    pub php_default_version: Option<String>,
    pub dns_service_type: Option<String>,
    pub dns_version: Option<String>,
    /// The server holding its sites' records: the one it names, else itself with dns.
    pub dns_server: Option<String>,
}

impl TryFrom<ServerRow> for ServerView {
    type Error = StoredValueError;

    fn try_from(row: ServerRow) -> Result<Self, Self::Error> {
        let http = match (row.http_service_type, row.http_port) {
            (Some(service_type), Some(port)) => Some(HttpServiceView {
                service_type,
                port: stored_port(port)?,
                version: row.http_version,
                php_versions: row.php_versions,
                php_default_version: row.php_default_version,
            }),
            _ => None,
        };
        let db = match (row.db_service_type, row.db_host, row.db_port, row.db_admin_user) {
            (Some(service_type), Some(host), Some(port), Some(admin_user)) => Some(DbServiceView {
                service_type,
                host,
                port: stored_port(port)?,
                admin_user,
                admin_password_set: row.db_admin_password_set.unwrap_or(false),
                version: row.db_version,
            }),
            _ => None,
        };
        let dns = row.dns_service_type.map(|service_type| DnsServiceView { service_type, version: row.dns_version });
        Ok(ServerView {
            context: format!("@{}", row.name),
            name: row.name,
            remote_host: row.remote_host,
            http,
            db,
            dns,
            dns_server: row.dns_server.map(|s| format!("@{s}")),
            status: row.status,
            verified_at: row.verified_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A server as a task carries it, admin password included.
#[derive(Debug, Clone, FromRow)]
pub struct ServerContextRow {
    name: String,
    remote_host: String,
    http_service_type: Option<String>,
    http_port: Option<i32>,
    db_service_type: Option<String>,
    db_host: Option<String>,
    db_port: Option<i32>,
    db_admin_user: Option<String>,
    db_admin_password: Option<String>,
    dns_service_type: Option<String>,
}

impl ServerContextRow {
    /// The columns [`context_columns_as`] named with `prefix`; `None` when the row has
    /// none there (an outer join that found no server).
    pub fn from_prefixed(row: &PgRow, prefix: &str) -> sqlx::Result<Option<Self>> {
        let column = |name: &str| format!("{prefix}{name}");
        let Some(name) = row.try_get(column("name").as_str())? else { return Ok(None) };
        Ok(Some(Self {
            name,
            remote_host: row.try_get(column("remote_host").as_str())?,
            http_service_type: row.try_get(column("http_service_type").as_str())?,
            http_port: row.try_get(column("http_port").as_str())?,
            db_service_type: row.try_get(column("db_service_type").as_str())?,
            db_host: row.try_get(column("db_host").as_str())?,
            db_port: row.try_get(column("db_port").as_str())?,
            db_admin_user: row.try_get(column("db_admin_user").as_str())?,
            db_admin_password: row.try_get(column("db_admin_password").as_str())?,
            dns_service_type: row.try_get(column("dns_service_type").as_str())?,
        }))
    }
}

impl TryFrom<ServerContextRow> for ServerContext {
    type Error = StoredValueError;

    fn try_from(row: ServerContextRow) -> Result<Self, Self::Error> {
        let http = match (row.http_service_type, row.http_port) {
            (Some(service_type), Some(port)) => {
                Some(HttpService { service_type: stored("http service type", service_type)?, port: stored_port(port)? })
            }
            _ => None,
        };
        let db = match (row.db_service_type, row.db_host, row.db_port, row.db_admin_user) {
            (Some(service_type), Some(host), Some(port), Some(admin_user)) => Some(DbService {
                service_type: stored("db service type", service_type)?,
                host: stored("host name", host)?,
                port: stored_port(port)?,
                admin_user,
                admin_password: Secret::new(row.db_admin_password.unwrap_or_default()),
            }),
            _ => None,
        };
        Ok(ServerContext {
            name: stored("server name", row.name)?,
            remote_host: stored("host name", row.remote_host)?,
            http,
            db,
            dns: row
                .dns_service_type
                .map(|t| stored("dns service type", t).map(|service_type| DnsService { service_type }))
                .transpose()?,
        })
    }
}

pub async fn get(db: impl PgExecutor<'_>, name: &ServerName) -> sqlx::Result<Option<ServerRow>> {
    sqlx::query_as(concat!("SELECT ", view_columns!(), " FROM servers WHERE name = $1"))
        .bind(name.as_str())
        .fetch_optional(db)
        .await
}

/// Reads the server and locks it until the transaction ends. With `exclusive` (to change
/// or delete it) nobody can add platforms to it meanwhile; without, only changing and
/// deleting it are kept out (while a platform is added to it).
pub async fn lock(conn: &mut PgConnection, name: &ServerName, exclusive: bool) -> sqlx::Result<Option<ServerRow>> {
    let query = if exclusive {
        concat!("SELECT ", view_columns!(), " FROM servers WHERE name = $1 FOR UPDATE")
    } else {
        concat!("SELECT ", view_columns!(), " FROM servers WHERE name = $1 FOR SHARE")
    };
    sqlx::query_as(query).bind(name.as_str()).fetch_optional(conn).await
}

/// The server as a task snapshot; keeps it from changing until the transaction ends.
pub async fn context(conn: &mut PgConnection, name: &ServerName) -> sqlx::Result<Option<ServerContextRow>> {
    static QUERY: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {} FROM servers WHERE name = $1 FOR SHARE", CONTEXT_COLUMNS.join(", ")));
    // Built only from the constant column names above.
    sqlx::query_as(sqlx::AssertSqlSafe(QUERY.as_str())).bind(name.as_str()).fetch_optional(conn).await
}

/// The columns of [`ServerContextRow`].
const CONTEXT_COLUMNS: [&str; 10] = [
    "name",
    "remote_host",
    "http_service_type",
    "http_port",
    "db_service_type",
    "db_host",
    "db_port",
    "db_admin_user",
    "db_admin_password",
    "dns_service_type",
];

/// The columns of [`ServerContextRow`] of `servers`, each named with `prefix` before it,
/// so one read can take servers beside other rows; [`ServerContextRow::from_prefixed`]
/// reads them back.
pub fn context_columns_as(prefix: &str) -> String {
    CONTEXT_COLUMNS.map(|column| format!("{column} AS {prefix}{column}")).join(", ")
}

/// Whether server `name` exists and offers dns: `None` when it does not exist.
pub async fn has_dns_service(conn: &mut PgConnection, name: &ServerName) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar("SELECT dns_service_type IS NOT NULL FROM servers WHERE name = $1 FOR SHARE")
        .bind(name.as_str())
        .fetch_optional(conn)
        .await
}

/// The servers (other than `name`) that name `name` as their dns server.
pub async fn naming_dns_server(conn: &mut PgConnection, name: &ServerName, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT name FROM servers WHERE dns_server = $1 AND name <> $1 ORDER BY name LIMIT $2")
        .bind(name.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The server whose db service is at `host` (and `port`, when given); `preferred` (the
/// platform's web server) when several are. A loopback host means the web server itself.
pub async fn db_server_at(
    conn: &mut PgConnection,
    host: &str,
    port: Option<i32>,
    preferred: &ServerName,
) -> sqlx::Result<Option<String>> {
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "::1");
    sqlx::query_scalar(
        "SELECT name FROM servers
         WHERE db_service_type IS NOT NULL AND ($2::integer IS NULL OR db_port = $2)
           AND (db_host = $1 OR ($3 AND name = $4 AND db_host IN ('localhost', '127.0.0.1', '::1')))
         ORDER BY name = $4 DESC, name LIMIT 1",
    )
    .bind(host)
    .bind(port)
    .bind(loopback)
    .bind(preferred.as_str())
    .fetch_optional(conn)
    .await
}

pub async fn has_db_service(conn: &mut PgConnection, name: &ServerName) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM servers WHERE name = $1 AND db_service_type IS NOT NULL)")
        .bind(name.as_str())
        .fetch_one(conn)
        .await
}

pub async fn list(db: &sqlx::PgPool, page: Page) -> sqlx::Result<(Vec<ServerRow>, i64)> {
    let rows = sqlx::query_as(concat!("SELECT ", view_columns!(), " FROM servers ORDER BY name LIMIT $1 OFFSET $2"))
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(db)
        .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM servers").fetch_one(db).await?;
    Ok((rows, total))
}

/// Creates or replaces the server. An omitted admin password keeps the stored one; a
/// service whose type changed forgets the version the last verify reported.
pub async fn save(conn: &mut PgConnection, name: &ServerName, input: &ServerInput) -> sqlx::Result<Saved<ServerRow>> {
    let http = input.http.as_ref();
    let db = input.db.as_ref();
    sqlx::query_as(concat!(
        "INSERT INTO servers AS s (name, remote_host, http_service_type, http_port, db_service_type, db_host, db_port,
                                   db_admin_user, db_admin_password, dns_service_type, dns_server)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $5::text IS NULL THEN NULL ELSE COALESCE($9, '') END,
                 $10, $11)
         ON CONFLICT (name) DO UPDATE SET
             remote_host = EXCLUDED.remote_host,
             http_service_type = EXCLUDED.http_service_type,
             http_port = EXCLUDED.http_port,
             http_version = CASE WHEN EXCLUDED.http_service_type IS NOT DISTINCT FROM s.http_service_type
                                 THEN s.http_version END,
             db_service_type = EXCLUDED.db_service_type,
             db_host = EXCLUDED.db_host,
             db_port = EXCLUDED.db_port,
             db_admin_user = EXCLUDED.db_admin_user,
             db_admin_password = CASE WHEN EXCLUDED.db_service_type IS NULL THEN NULL
                                      ELSE COALESCE($9, s.db_admin_password, '') END,
             db_version = CASE WHEN EXCLUDED.db_service_type IS NOT DISTINCT FROM s.db_service_type
                               THEN s.db_version END,
             dns_service_type = EXCLUDED.dns_service_type,
             dns_version = CASE WHEN EXCLUDED.dns_service_type IS NOT DISTINCT FROM s.dns_service_type
                                THEN s.dns_version END,
             dns_server = EXCLUDED.dns_server,
             updated_at = now()
         RETURNING ",
        view_columns!(),
        ", (xmax = 0) AS created"
    ))
    .bind(name.as_str())
    .bind(input.remote_host.as_str())
    .bind(http.map(|h| h.service_type.as_str()))
    .bind(http.map(|h| i32::from(h.port)))
    .bind(db.map(|d| d.service_type.as_str()))
    .bind(db.map(|d| d.host.as_str()))
    .bind(db.map(|d| i32::from(d.port)))
    .bind(db.map(|d| d.admin_user.as_str()))
    .bind(db.and_then(|d| d.admin_password.as_ref()).map(|p| p.expose()))
    .bind(input.dns.as_ref().map(|d| d.service_type.as_str()))
    .bind(input.dns_server.as_ref().map(ServerName::as_str))
    .fetch_one(conn)
    .await
}

pub async fn delete(conn: &mut PgConnection, name: &ServerName) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM servers WHERE name = $1").bind(name.as_str()).execute(conn).await?;
    Ok(())
}

/// Records the outcome of a finished verify.
pub async fn set_status(
    conn: &mut PgConnection,
    name: &ServerName,
    status: ContextStatus,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE servers SET status = $2, verified_at = CASE WHEN $2 = 'verified' THEN $3 ELSE verified_at END
         WHERE name = $1",
    )
    .bind(name.as_str())
    .bind(status.as_str())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the PHP versions a web server verify found installed, and the default one.
pub async fn set_php_versions(
    db: impl PgExecutor<'_>,
    name: &ServerName,
    versions: &[PhpVersion],
    default: Option<&PhpVersion>,
) -> sqlx::Result<bool> {
    let versions: Vec<&str> = versions.iter().map(PhpVersion::as_str).collect();
    let done = sqlx::query(
        "UPDATE servers SET php_versions = $2, php_default_version = $3
         WHERE name = $1 AND http_service_type IS NOT NULL
           AND (php_versions IS DISTINCT FROM $2 OR php_default_version IS DISTINCT FROM $3)",
    )
    .bind(name.as_str())
    .bind(&versions)
    .bind(default.map(PhpVersion::as_str))
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Records the version a verify found for one of the server's services.
pub async fn set_service_version(
    db: impl PgExecutor<'_>,
    name: &ServerName,
    service: ServiceKind,
    version: &str,
) -> sqlx::Result<bool> {
    let query = match service {
        ServiceKind::Http => "UPDATE servers SET http_version = $2 WHERE name = $1 AND http_service_type IS NOT NULL",
        ServiceKind::Db => "UPDATE servers SET db_version = $2 WHERE name = $1 AND db_service_type IS NOT NULL",
        ServiceKind::Dns => "UPDATE servers SET dns_version = $2 WHERE name = $1 AND dns_service_type IS NOT NULL",
        ServiceKind::Backup => return Ok(false),
    };
    let done = sqlx::query(query).bind(name.as_str()).bind(version).execute(db).await?;
    Ok(done.rows_affected() > 0)
}
