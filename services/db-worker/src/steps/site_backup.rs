//! A site's database into the backup store and back.
//!
//! `site database dump` streams a consistent `mysqldump` through zstd into the staged
//! dump object, which becomes visible only once mysqldump exited cleanly. `site database
//! load` checks the archive first, then replaces everything in the site's database with
//! the archive's dump, checking the dump's checksum as it streams into `mysql`. Both can
//! run again: a dump replaces the staged one, a load starts from an empty database.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use aegir_backup_store::{BackupStore, Progress, archive, dump, rate, size};
use aegir_contract::{BackupRef, DbService, SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};
use sqlx::mysql::MySqlConnection;

use crate::client::{OptionFile, scrubbed, spawn};
use crate::mariadb::{connect_admin, execute, ident};

fn db_service(site: &SiteContext) -> Result<&DbService, StepError> {
    site.db_server.db.as_ref().ok_or_else(|| {
        StepError::permanent(format!(
            "{} has no db service; choose a db server with one for {}",
            site.db_server.name, site.uri
        ))
    })
}

fn store_error(e: aegir_backup_store::Error) -> StepError {
    if e.is_transient() { StepError::transient(e.to_string()) } else { StepError::permanent(e.to_string()) }
}

fn pipe() -> Result<(std::io::PipeReader, std::io::PipeWriter), StepError> {
    std::io::pipe().map_err(|e| StepError::transient(format!("cannot create a pipe: {e}")))
}

pub async fn dump(
    store: &BackupStore,
    site: &SiteContext,
    backup: &BackupRef,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
    let db = db_service(site)?;
    let name = ident(site.database.name.as_str())?;
    let options = OptionFile::new(db)?;
    log.info(format!(
        "dumping database `{name}` on {} (one consistent transaction) into {} in {store}",
        site.db_server.name,
        backup.dump_key()
    ))
    .await;
    let (reader, writer) = pipe()?;
    let args = [
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--hex-blob",
        "--no-tablespaces",
        "--max-allowed-packet=1G",
        name,
    ];
    // The write end goes to mysqldump alone: once it exits, the reader sees the end.
    let (mut child, stderr) = spawn("mysqldump", &options, &args, Stdio::null(), Stdio::from(writer))?;
    let progress = Arc::new(Progress::default());
    let reporter = progress.report_to_log(log, "dumped", None);
    let started = Instant::now();
    let staged = dump::stage(store, backup, reader, progress.clone()).await;
    let status = child.wait().await;
    reporter.abort();
    let stderr = stderr.await.unwrap_or_default();
    let staged = match staged {
        Ok(staged) => staged,
        Err(e) => return Err(store_error(e)),
    };
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => {
            staged.abort().await;
            let reason = format!("mysqldump failed ({status}) and no dump was kept: {}", scrubbed(&stderr, db));
            // A server that cannot be reached now may be reachable on the next try.
            return Err(if unreachable(&stderr) { StepError::transient(reason) } else { StepError::permanent(reason) });
        }
        Err(e) => {
            staged.abort().await;
            return Err(StepError::transient(format!("lost track of mysqldump: {e}")));
        }
    }
    let info = dump::commit(store, backup, staged).await.map_err(store_error)?;
    log.info(format!(
        "dumped database `{name}`: {} of SQL, {} stored, in {:.1} s ({})",
        size(info.size),
        size(info.stored_size),
        started.elapsed().as_secs_f64(),
        rate(info.size, started.elapsed())
    ))
    .await;
    Ok(StepFacts::default())
}

pub async fn load(
    store: &BackupStore,
    site: &SiteContext,
    backup: &BackupRef,
    log: &StepLog,
) -> Result<StepFacts, StepError> {
    let db = db_service(site)?;
    let name = ident(site.database.name.as_str())?;
    let key = backup.archive_key();

    // Nothing changes before the archive is known to be whole.
    let sidecar = archive::sidecar(store, backup).await.map_err(store_error)?;
    let total = sidecar.archive.as_ref().map(|a| a.size);
    log.info(format!("checking archive {key} in {store} ({}) before changing the database", size(total.unwrap_or(0))))
        .await;
    let progress = Arc::new(Progress::default());
    let reporter = progress.report_to_log(log, "checked", total);
    let checked = archive::verify_stored(store, backup, &sidecar, progress).await;
    reporter.abort();
    checked.map_err(|e| {
        let mut error = store_error(e);
        error.reason.push_str(&format!("; database `{name}` was not changed"));
        error
    })?;

    let mut conn = connect_admin(db).await?;
    empty_database(&mut conn, name, site).await?;
    drop(conn);
    log.info(format!("emptied database `{name}` on {}; its user keeps its privileges", site.db_server.name)).await;

    let options = OptionFile::new(db)?;
    let (reader, writer) = pipe()?;
    let args = ["--batch", "--binary-mode", "--max-allowed-packet=1G", name];
    let (mut child, stderr) = spawn("mysql", &options, &args, Stdio::from(reader), Stdio::null())?;
    let progress = Arc::new(Progress::default());
    // What is counted is the archive read, compressed: no share of the dump's size.
    let reporter = progress.report_to_log(log, "loading the dump: archive read", None);
    let started = Instant::now();
    // The write end is dropped when the dump has been read: mysql then sees its end.
    let loaded = archive::load_database(store, backup, &sidecar, writer, progress).await;
    let status = child.wait().await;
    reporter.abort();
    let stderr = stderr.await.unwrap_or_default();
    let mysql_failed = match &status {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("mysql failed ({status}) loading the dump: {}", scrubbed(&stderr, db))),
        Err(e) => Some(format!("lost track of mysql: {e}")),
    };
    let incomplete = format!("; database `{name}` holds part of the dump only");
    match (loaded, mysql_failed) {
        // A failing mysql makes the writing fail: its own message says why.
        (Ok(_) | Err(aegir_backup_store::Error::Failed(_)), Some(failed)) => {
            Err(StepError::permanent(format!("{failed}{incomplete}")))
        }
        (Err(e), _) => {
            let mut error = store_error(e);
            error.reason.push_str(&incomplete);
            Err(error)
        }
        (Ok(bytes), None) => {
            log.info(format!(
                "loaded {} of SQL from {key} into `{name}`, checked against the manifest, in {:.1} s ({})",
                size(bytes),
                started.elapsed().as_secs_f64(),
                rate(bytes, started.elapsed())
            ))
            .await;
            Ok(StepFacts::default())
        }
    }
}

/// True when a client's error output says the server could not be reached (MariaDB's
/// errors 2002, 2003, 2006 and 2013).
fn unreachable(stderr: &str) -> bool {
    ["Can't connect", "Lost connection", "server has gone away"].iter().any(|s| stderr.contains(s))
}

/// Drops and creates the site's database again with its character set and collation.
/// Grants on the database are kept by MariaDB across both, so the site's user keeps its
/// privileges; tables, views, routines and triggers all go.
async fn empty_database(conn: &mut MySqlConnection, name: &str, site: &SiteContext) -> Result<(), StepError> {
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| StepError::transient(format!("cannot look up database `{name}`: {e}")))?;
    let Some((charset, collation)) = found else {
        // Only a load interrupted between its drop and its create leaves the site's
        // user without its database (site database create runs before any load): make
        // it again, so the redelivered load finishes. The dump sets each table's own
        // character set.
        tracing::warn!(database = name, server = %site.db_server.name, "database missing before a load; creating it");
        return execute(
            conn,
            format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
            "create the site's database",
        )
        .await;
    };
    let charset = ident(&charset.to_ascii_lowercase())?.to_owned();
    let collation = ident(&collation.to_ascii_lowercase())?.to_owned();
    execute(conn, format!("DROP DATABASE `{name}`"), "empty the site's database").await?;
    execute(
        conn,
        format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET {charset} COLLATE {collation}"),
        "create the site's database again",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::unreachable;

    #[test]
    fn an_unreachable_server_is_worth_another_try_and_a_missing_database_is_not() {
        assert!(unreachable("mysqldump: Got error: 2002: \"Can't connect to server on '127.0.0.1' (115)\""));
        assert!(unreachable("ERROR 2013 (HY000): Lost connection to server during query"));
        assert!(!unreachable("mysqldump: Got error: 1049: \"Unknown database 'x'\" when selecting the database"));
    }
}
