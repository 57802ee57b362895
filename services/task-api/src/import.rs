//! Records for the sites a platform import found. Each found site gets a record
//! (status `enabled`) unless it cannot: it has one already, a name or database of it
//! belongs to another site, no database account was found, or no db server is at the
//! host its settings name. Each outcome is written to the task's log, under the step
//! that found the sites.

use std::hash::{DefaultHasher, Hash, Hasher};

use aegir_contract::{Email, FoundSite, LanguageCode, LogLevel, LogLine, PlatformName, ServerName, SiteTitle, SiteUri};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db;
use crate::db::sites::SiteRecord;
use crate::live::LiveEvent;
use crate::views::SiteStatus;

/// The step whose result listed the sites.
pub struct ImportStep {
    pub task_id: Uuid,
    pub step: u32,
    pub at: DateTime<Utc>,
}

/// Creates the records; returns how many were created. The log lines it writes go to
/// `announce`, for the live log once the transaction committed.
pub async fn create_records(
    conn: &mut PgConnection,
    announce: &mut Vec<LiveEvent>,
    platform: &PlatformName,
    web_server: &ServerName,
    sites: &[FoundSite],
    step: &ImportStep,
) -> sqlx::Result<usize> {
    db::sites::lock_names(conn).await?;
    let mut created = 0;
    for site in sites {
        let (level, message) = match import_one(conn, platform, web_server, site, step.at).await? {
            Ok(db_server) => {
                created += 1;
                (
                    LogLevel::Success,
                    format!("created the record of @{} (database on @{db_server}), status enabled", site.uri),
                )
            }
            Err(reason) => {
                tracing::info!(site = %site.uri, %platform, reason, "platform import left a site out");
                (LogLevel::Warning, format!("no record created for @{}: {reason}", site.uri))
            }
        };
        log(conn, announce, step, site, level, message).await?;
    }
    Ok(created)
}

async fn import_one(
    conn: &mut PgConnection,
    platform: &PlatformName,
    web_server: &ServerName,
    site: &FoundSite,
    at: DateTime<Utc>,
) -> sqlx::Result<Result<ServerName, String>> {
    let uri = &site.uri;
    if db::sites::exists(&mut *conn, uri).await? {
        return Ok(Err("it has a record already".into()));
    }
    for name in std::iter::once(uri).chain(&site.aliases) {
        if let Some(holder) = db::sites::holder_of_name(conn, name.as_str(), uri).await? {
            return Ok(Err(format!("`{name}` is already a name of @{holder}")));
        }
    }
    let Some(database) = &site.database else {
        return Ok(Err(format!(
            "no database account was found in its settings or vhost; save it with `aegir save @{uri} \
             --context_type=site` and install it, or put the account in its settings and import again"
        )));
    };
    if let Some(holder) = db::sites::holder_of_database(conn, &database.name).await? {
        return Ok(Err(format!("its database `{}` is the database of @{holder}", database.name)));
    }
    let db_server = match &database.host {
        Some(host) => {
            let port = database.port.map(i32::from);
            match db::servers::db_server_at(conn, host.as_str(), port, web_server).await? {
                Some(server) => server,
                None => {
                    return Ok(Err(format!(
                        "no server has a db service at {host}{}; save that server with --db_service_type and \
                         --db_host={host}, then import again",
                        database.port.map_or(String::new(), |p| format!(":{p}"))
                    )));
                }
            }
        }
        None if db::servers::has_db_service(conn, web_server).await? => web_server.as_str().to_owned(),
        None => {
            return Ok(Err(format!(
                "its settings name no database host and its web server @{web_server} has no db service"
            )));
        }
    };
    let db_server: ServerName = match ServerName::parse(&db_server) {
        Ok(name) => name,
        Err(e) => return Ok(Err(format!("stored server name is not valid: {e}"))),
    };
    let title = SiteTitle::parse(uri.as_str()).map_err(|e| e.to_string());
    let email = Email::parse(&format!("webmaster@{uri}")).map_err(|e| e.to_string());
    let (title, email) = match (title, email) {
        (Ok(t), Ok(e)) => (t, e),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(format!("no default title or e-mail address fits it: {e}"))),
    };
    let language = LanguageCode::parse("en").expect("`en` is a valid language code");
    let record = SiteRecord {
        uri,
        platform,
        db_server: &db_server,
        profile: None,
        language: language.as_str(),
        redirection: site.redirection,
        client: None,
        title: title.as_str(),
        admin_email: email.as_str(),
        cron_interval: None,
        php_version: None,
        ssl: aegir_contract::SslMode::Off,
    };
    db::sites::save(conn, &record, (&database.name, &database.user, database.password.expose())).await?;
    db::sites::set_aliases(conn, uri, &site.aliases).await?;
    db::sites::set_status(conn, uri, SiteStatus::Enabled, Some(at)).await?;
    Ok(Ok(db_server))
}

/// Writes a line to the task's log. Its id derives from the task and the site, so a
/// redelivered step result adds no second line.
async fn log(
    conn: &mut PgConnection,
    announce: &mut Vec<LiveEvent>,
    step: &ImportStep,
    site: &FoundSite,
    level: LogLevel,
    message: String,
) -> sqlx::Result<()> {
    let line = LogLine {
        id: line_id(step.task_id, &site.uri),
        task_id: step.task_id,
        step: Some(step.step),
        level,
        message,
        source: "task-api".into(),
        at: Utc::now(),
    };
    if let Some(row) = db::task_log::insert(&mut *conn, &line).await? {
        announce.push(LiveEvent::Line { task_id: step.task_id, entry: row.into() });
    }
    Ok(())
}

fn line_id(task_id: Uuid, uri: &SiteUri) -> Uuid {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        (salt, task_id, uri.as_str()).hash(&mut h);
        h.finish()
    };
    Uuid::from_u64_pair(half(1), half(2))
}
