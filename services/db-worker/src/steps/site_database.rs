//! A site's own database and the user its application connects as, with privileges on
//! that database only, granted to the web server's address as this server sees it.
//!
//! Both steps are idempotent: a redelivered create finds what it made and sets the
//! password again; a drop of what is gone is a success. Drop also undoes a create that
//! failed half way.

use aegir_contract::{DbService, SiteContext, StepFacts};
use aegir_worker::{StepError, StepLog};
use sqlx::mysql::MySqlConnection;

use crate::mariadb::{connect_admin, execute, ident};

fn db_service(site: &SiteContext) -> Result<&DbService, StepError> {
    site.db_server.db.as_ref().ok_or_else(|| {
        StepError::permanent(format!(
            "{} has no db service; choose a db server with one for {}",
            site.db_server.name, site.uri
        ))
    })
}

/// The password goes into a statement as a string literal, so only characters that
/// need no quoting are accepted; the API generates such passwords.
fn password_literal(site: &SiteContext) -> Result<&str, StepError> {
    let password = site.database.password.expose();
    let ok = (16..=128).contains(&password.len())
        && password.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'~' | b'+' | b'-'));
    if ok {
        Ok(password)
    } else {
        Err(StepError::permanent(format!(
            "the database password of {} is not one the system generated (16 to 128 letters, digits or `_.~+-`); save the site again to get a new one",
            site.uri
        )))
    }
}

pub async fn create(site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let db = db_service(site)?;
    let name = ident(site.database.name.as_str())?;
    let user = ident(site.database.user.as_str())?;
    let password = password_literal(site)?;
    let mut conn = connect_admin(db).await?;

    let exists = database_exists(&mut conn, name).await?;
    execute(
        &mut conn,
        format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
        "create the site's database",
    )
    .await?;
    if exists {
        log.info(format!("database `{name}` exists already on {}; keeping it", site.db_server.name)).await;
    } else {
        log.info(format!("created database `{name}` on {}", site.db_server.name)).await;
    }
    for host in site.db_grant_hosts() {
        let account = format!("'{user}'@'{host}'");
        execute(
            &mut conn,
            format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}'"),
            "create the site's database user",
        )
        .await?;
        // A user left by an earlier try gets the current password.
        execute(
            &mut conn,
            format!("ALTER USER {account} IDENTIFIED BY '{password}'"),
            "set the site's database password",
        )
        .await?;
        execute(
            &mut conn,
            format!("GRANT ALL PRIVILEGES ON `{name}`.* TO {account}"),
            "grant the site's user its privileges",
        )
        .await?;
        log.info(format!("user `{user}`@`{host}` may use `{name}` and nothing else")).await;
    }
    Ok(StepFacts::default())
}

pub async fn drop(site: &SiteContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let db = db_service(site)?;
    let name = ident(site.database.name.as_str())?;
    let user = ident(site.database.user.as_str())?;
    let mut conn = connect_admin(db).await?;
    for host in site.db_grant_hosts() {
        execute(&mut conn, format!("DROP USER IF EXISTS '{user}'@'{host}'"), "drop the site's database user").await?;
        log.info(format!("dropped user `{user}`@`{host}` (if it existed)")).await;
    }
    let existed = database_exists(&mut conn, name).await?;
    execute(&mut conn, format!("DROP DATABASE IF EXISTS `{name}`"), "drop the site's database").await?;
    if existed {
        log.info(format!("dropped database `{name}` on {}", site.db_server.name)).await;
    } else {
        log.info(format!("database `{name}` did not exist on {}; nothing to drop", site.db_server.name)).await;
    }
    Ok(StepFacts::default())
}

async fn database_exists(conn: &mut MySqlConnection, name: &str) -> Result<bool, StepError> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(name)
            .fetch_optional(conn)
            .await
            .map_err(|e| StepError::transient(format!("cannot list the databases: {e}")))?;
    Ok(found.is_some())
}
