//! The `sites` and `site_aliases` tables.

use aegir_contract::{ClientName, DbIdent, PhpVersion, PlatformName, ServerName, SiteUri, SslMode};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};

use crate::views::{PackageView, SiteStatus, SiteView};

/// The columns of [`SiteRow`]; the database password is never read for a view.
macro_rules! view_columns {
    () => {
        "s.uri, s.platform, s.db_server, s.profile, s.language, s.redirection, s.client, s.title, s.admin_email, \
         s.status, s.cron_interval, s.php_version, s.created_at, s.updated_at, s.installed_at, \
         s.ssl, s.ssl_expires_at, s.ssl_issuer, s.ssl_serial, s.ssl_error, s.ssl_retry_at, s.ssl_source, \
         ARRAY(SELECT a.alias FROM site_aliases a WHERE a.site = s.uri ORDER BY a.position) AS aliases"
    };
}

#[derive(Debug, FromRow)]
pub struct SiteRow {
    pub uri: String,
    pub platform: String,
    pub db_server: String,
    pub profile: Option<String>,
    pub language: String,
    pub aliases: Vec<String>,
    pub redirection: bool,
    pub client: Option<String>,
    pub title: String,
    pub admin_email: String,
    #[sqlx(try_from = "String")]
    pub status: SiteStatus,
    pub cron_interval: Option<i32>,
    pub php_version: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub installed_at: Option<DateTime<Utc>>,
    pub ssl: String,
    pub ssl_expires_at: Option<DateTime<Utc>>,
    pub ssl_issuer: Option<String>,
    pub ssl_serial: Option<String>,
    pub ssl_error: Option<String>,
    pub ssl_retry_at: Option<DateTime<Utc>>,
    pub ssl_source: Option<String>,
}

impl SiteRow {
    pub fn into_view(self, packages: Vec<PackageView>) -> SiteView {
        SiteView {
            context: format!("@{}", self.uri),
            uri: self.uri,
            platform: format!("@{}", self.platform),
            db_server: format!("@{}", self.db_server),
            profile: self.profile,
            language: self.language,
            aliases: self.aliases,
            redirection: self.redirection,
            client: self.client,
            title: self.title,
            admin_email: self.admin_email,
            status: self.status,
            cron_interval: self.cron_interval,
            php_version: self.php_version,
            packages,
            stats: None,
            created_at: self.created_at,
            updated_at: self.updated_at,
            installed_at: self.installed_at,
            ssl_status: crate::cert_queue::status(
                &self.ssl,
                self.ssl_source.as_deref(),
                self.ssl_expires_at,
                self.ssl_error.is_some(),
            ),
            ssl: self.ssl,
            ssl_expires_at: self.ssl_expires_at,
            ssl_issuer: self.ssl_issuer,
            ssl_serial: self.ssl_serial,
            ssl_error: self.ssl_error,
            ssl_retry_at: self.ssl_retry_at,
            ssl_source: self.ssl_source,
        }
    }
}

/// The site's database account, as a task carries it.
#[derive(Debug, FromRow)]
pub struct SiteDatabaseRow {
    pub db_name: String,
    pub db_user: String,
    pub db_password: String,
}

/// What a site save writes.
#[derive(Debug)]
pub struct SiteRecord<'a> {
    pub uri: &'a SiteUri,
    pub platform: &'a PlatformName,
    pub db_server: &'a ServerName,
    pub profile: Option<&'a str>,
    pub language: &'a str,
    pub redirection: bool,
    pub client: Option<&'a ClientName>,
    pub title: &'a str,
    pub admin_email: &'a str,
    pub cron_interval: Option<i32>,
    pub php_version: Option<&'a PhpVersion>,
    pub ssl: SslMode,
}

/// Which sites a list shows.
#[derive(Debug, Default)]
pub struct SiteFilter {
    pub platform: Option<PlatformName>,
    pub client: Option<ClientName>,
    pub status: Option<SiteStatus>,
    /// Part of the uri, lower case.
    pub search: Option<String>,
}

/// `LIKE` pattern matching `text` anywhere, its wildcards taken literally.
fn contains_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

pub async fn get(db: impl PgExecutor<'_>, uri: &SiteUri) -> sqlx::Result<Option<SiteRow>> {
    sqlx::query_as(concat!("SELECT ", view_columns!(), " FROM sites s WHERE s.uri = $1"))
        .bind(uri.as_str())
        .fetch_optional(db)
        .await
}

/// Reads the site and locks it until the transaction ends.
pub async fn lock(conn: &mut PgConnection, uri: &SiteUri) -> sqlx::Result<Option<SiteRow>> {
    sqlx::query_as(concat!("SELECT ", view_columns!(), " FROM sites s WHERE s.uri = $1 FOR UPDATE OF s"))
        .bind(uri.as_str())
        .fetch_optional(conn)
        .await
}

/// A site locked for a task's snapshot, with its database account.
#[derive(Debug, FromRow)]
pub struct LockedForTask {
    #[sqlx(flatten)]
    pub site: SiteRow,
    #[sqlx(flatten)]
    pub database: SiteDatabaseRow,
}

/// [`lock`], with the site's database account read in the same statement.
pub async fn lock_for_task(conn: &mut PgConnection, uri: &SiteUri) -> sqlx::Result<Option<LockedForTask>> {
    sqlx::query_as(concat!(
        "SELECT ",
        view_columns!(),
        ", s.db_name, s.db_user, s.db_password FROM sites s WHERE s.uri = $1 FOR UPDATE OF s"
    ))
    .bind(uri.as_str())
    .fetch_optional(conn)
    .await
}

macro_rules! filter {
    () => {
        "($1::text IS NULL OR s.platform = $1) AND ($2::text IS NULL OR s.client = $2) \
         AND ($3::text IS NULL OR s.status = $3) AND ($4::text IS NULL OR s.uri LIKE $4)"
    };
}

/// Where a page of the list starts: `offset` sites on from the first, or the first site
/// after `after` in uri order (a keyset cursor, which costs the same at any depth).
#[derive(Debug, Clone)]
pub enum Start {
    Offset(i64),
    After(SiteUri),
}

/// A page of sites, with how many match in all and whether more follow.
#[derive(Debug)]
pub struct SiteList {
    pub rows: Vec<SiteRow>,
    pub total: i64,
    /// The uri the next page starts after; `None` when this page is the last.
    pub next: Option<String>,
}

pub async fn list(db: &PgPool, filter: &SiteFilter, limit: i64, start: &Start) -> sqlx::Result<SiteList> {
    let platform = filter.platform.as_ref().map(PlatformName::as_str);
    let client = filter.client.as_ref().map(ClientName::as_str);
    let status = filter.status.map(SiteStatus::as_str);
    let search = filter.search.as_deref().map(contains_pattern);
    let (after, offset) = match start {
        Start::Offset(offset) => (None, *offset),
        Start::After(uri) => (Some(uri.as_str()), 0),
    };
    // The page's uris are chosen from an index alone (the filter's, the uri's or the
    // search's), so an offset skips index entries, not rows; the rest of each row and its
    // aliases are read for the page only. One row past the page tells whether another
    // follows. Planned for each call's own values (not persistent): a plan made for no
    // filter would scan the whole table for a search, and one for a search would sort
    // every site for a plain page.
    let page = sqlx::query_as(concat!(
        "SELECT ",
        view_columns!(),
        " FROM (SELECT s.uri FROM sites s WHERE ",
        filter!(),
        " AND ($5::text IS NULL OR s.uri > $5) ORDER BY s.uri LIMIT $6 OFFSET $7) page \
         JOIN sites s ON s.uri = page.uri ORDER BY s.uri"
    ))
    .persistent(false)
    .bind(platform)
    .bind(client)
    .bind(status)
    .bind(&search)
    .bind(after)
    .bind(limit + 1)
    .bind(offset)
    .fetch_all(db);
    let total = async {
        match &search {
            // Matching uris are counted through the trigram index; a text that matches
            // most uris is a scan of one column (about 15 ms at 100,000 sites).
            Some(_) => {
                sqlx::query_scalar(concat!("SELECT count(*) FROM sites s WHERE ", filter!()))
                    .persistent(false)
                    .bind(platform)
                    .bind(client)
                    .bind(status)
                    .bind(&search)
                    .fetch_one(db)
                    .await
            }
            // Exact, from the counts the triggers of `sites` keep per platform, client and status.
            None => {
                sqlx::query_scalar(
                    "SELECT COALESCE(sum(sites), 0)::bigint FROM site_counts
                     WHERE ($1::text IS NULL OR platform = $1) AND ($2::text IS NULL OR client = $2)
                       AND ($3::text IS NULL OR status = $3)",
                )
                .bind(platform)
                .bind(client)
                .bind(status)
                .fetch_one(db)
                .await
            }
        }
    };
    // Two connections: a search's count runs beside its page.
    let (mut rows, total): (Vec<SiteRow>, i64) = tokio::try_join!(page, total)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if more { rows.last().map(|row| row.uri.clone()) } else { None };
    Ok(SiteList { rows, total, next })
}

/// Serializes site saves, so the checks that keep uris and aliases apart see every
/// committed save and none in flight.
pub async fn lock_names(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aegir.site_names'))").execute(conn).await?;
    Ok(())
}

/// The site (other than `uri`) that already answers to `name`, as its uri or an alias.
pub async fn holder_of_name(conn: &mut PgConnection, name: &str, uri: &SiteUri) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT uri FROM sites WHERE uri = $1 AND uri <> $2
         UNION ALL
         SELECT site FROM site_aliases WHERE alias = $1 AND site <> $2
         LIMIT 1",
    )
    .bind(name)
    .bind(uri.as_str())
    .fetch_optional(conn)
    .await
}

/// Creates or updates the site. The database account is only written on create: an
/// update keeps the one the site was created with.
pub async fn save(
    conn: &mut PgConnection,
    site: &SiteRecord<'_>,
    database: (&DbIdent, &DbIdent, &str),
) -> sqlx::Result<bool> {
    let (db_name, db_user, db_password) = database;
    let created: bool = sqlx::query_scalar(
        "INSERT INTO sites AS s (uri, platform, db_server, profile, language, redirection, client, title, admin_email,
                                 db_name, db_user, db_password, cron_interval, php_version, ssl)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (uri) DO UPDATE SET
             ssl = EXCLUDED.ssl,
             -- A site whose ssl is turned on is looked at by the renewal queue at once.
             ssl_retry_at = CASE WHEN s.ssl IS DISTINCT FROM EXCLUDED.ssl THEN NULL ELSE s.ssl_retry_at END,
             php_version = EXCLUDED.php_version,
             cron_interval = EXCLUDED.cron_interval,
             -- A changed interval takes effect from now, spread again.
             cron_next_at = CASE WHEN s.cron_interval IS DISTINCT FROM EXCLUDED.cron_interval THEN NULL
                                 ELSE s.cron_next_at END,
             platform = EXCLUDED.platform,
             db_server = EXCLUDED.db_server,
             profile = EXCLUDED.profile,
             language = EXCLUDED.language,
             redirection = EXCLUDED.redirection,
             client = EXCLUDED.client,
             title = EXCLUDED.title,
             admin_email = EXCLUDED.admin_email,
             updated_at = now()
         RETURNING (xmax = 0) AS created",
    )
    .bind(site.uri.as_str())
    .bind(site.platform.as_str())
    .bind(site.db_server.as_str())
    .bind(site.profile)
    .bind(site.language)
    .bind(site.redirection)
    .bind(site.client.map(ClientName::as_str))
    .bind(site.title)
    .bind(site.admin_email)
    .bind(db_name.as_str())
    .bind(db_user.as_str())
    .bind(db_password)
    .bind(site.cron_interval)
    .bind(site.php_version.map(PhpVersion::as_str))
    .bind(site.ssl.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok(created)
}

/// Replaces the site's aliases, keeping their order.
pub async fn set_aliases(conn: &mut PgConnection, uri: &SiteUri, aliases: &[SiteUri]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM site_aliases WHERE site = $1").bind(uri.as_str()).execute(&mut *conn).await?;
    let aliases: Vec<&str> = aliases.iter().map(SiteUri::as_str).collect();
    sqlx::query(
        "INSERT INTO site_aliases (alias, site, position)
         SELECT alias, $1, position::integer FROM unnest($2::text[]) WITH ORDINALITY AS a (alias, position)",
    )
    .bind(uri.as_str())
    .bind(&aliases)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the site's record (its aliases and packages with it).
pub async fn delete(conn: &mut PgConnection, uri: &SiteUri) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM sites WHERE uri = $1").bind(uri.as_str()).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM packages WHERE context = $1").bind(format!("@{uri}")).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// Records the outcome of a finished site task; `installed` also stamps `installed_at`.
pub async fn set_status(
    conn: &mut PgConnection,
    uri: &SiteUri,
    status: SiteStatus,
    installed_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sites SET status = $2, installed_at = COALESCE($3, installed_at), updated_at = now() WHERE uri = $1",
    )
    .bind(uri.as_str())
    .bind(status.as_str())
    .bind(installed_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The database account a migrate to another db server makes, kept aside until it ends.
pub async fn set_moving_database(
    conn: &mut PgConnection,
    uri: &SiteUri,
    database: Option<(&DbIdent, &DbIdent, &str)>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE sites SET moving_db_name = $2, moving_db_user = $3, moving_db_password = $4 WHERE uri = $1")
        .bind(uri.as_str())
        .bind(database.map(|d| d.0.as_str()))
        .bind(database.map(|d| d.1.as_str()))
        .bind(database.map(|d| d.2))
        .execute(conn)
        .await?;
    Ok(())
}

/// A migrated site's new platform and db server (each only when it changed), and the
/// database account made on the new db server, if any.
pub async fn moved(
    conn: &mut PgConnection,
    uri: &SiteUri,
    platform: Option<&PlatformName>,
    db_server: Option<&ServerName>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sites SET platform = COALESCE($2, platform), db_server = COALESCE($3, db_server),
             db_name = COALESCE(moving_db_name, db_name), db_user = COALESCE(moving_db_user, db_user),
             db_password = COALESCE(moving_db_password, db_password),
             moving_db_name = NULL, moving_db_user = NULL, moving_db_password = NULL, updated_at = now()
         WHERE uri = $1",
    )
    .bind(uri.as_str())
    .bind(platform.map(PlatformName::as_str))
    .bind(db_server.map(ServerName::as_str))
    .execute(conn)
    .await?;
    Ok(())
}

/// A site migrated to a new uri: its aliases follow (the foreign key cascades), and so
/// do the packages its verify found.
pub async fn rename(conn: &mut PgConnection, from: &SiteUri, to: &SiteUri) -> sqlx::Result<()> {
    sqlx::query("UPDATE sites SET uri = $2, updated_at = now() WHERE uri = $1")
        .bind(from.as_str())
        .bind(to.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM site_aliases WHERE alias = $1").bind(to.as_str()).execute(&mut *conn).await?;
    sqlx::query("UPDATE packages SET context = $2 WHERE context = $1")
        .bind(format!("@{from}"))
        .bind(format!("@{to}"))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn exists(db: impl PgExecutor<'_>, uri: &SiteUri) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sites WHERE uri = $1)").bind(uri.as_str()).fetch_one(db).await
}

/// Uris of (at most `limit`) sites whose database is on `server`.
pub async fn on_db_server(conn: &mut PgConnection, server: &ServerName, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT uri FROM sites WHERE db_server = $1 ORDER BY uri LIMIT $2")
        .bind(server.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The site whose database is `name`.
pub async fn holder_of_database(conn: &mut PgConnection, name: &DbIdent) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT uri FROM sites WHERE db_name = $1").bind(name.as_str()).fetch_optional(conn).await
}

/// How many sites are on `platform`.
pub async fn count_on_platform(conn: &mut PgConnection, platform: &PlatformName) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM sites WHERE platform = $1").bind(platform.as_str()).fetch_one(conn).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_wildcards_are_literal() {
        assert_eq!(contains_pattern("shop"), "%shop%");
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
