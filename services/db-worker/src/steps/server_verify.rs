//! `server verify`, database part: the admin account logs in and can create (and drop)
//! a database and a user with grants on it.

use aegir_contract::{ServerContext, StepFacts};
use aegir_worker::{StepError, StepLog};
use rand::distr::{Alphanumeric, SampleString};
use sqlx::Row;
use sqlx::mysql::MySqlConnection;

use crate::mariadb::{connect_admin, execute, generate_password, ident};

pub async fn run(server: &ServerContext, log: &StepLog) -> Result<StepFacts, StepError> {
    let db = server.db.as_ref().ok_or_else(|| {
        StepError::permanent(format!("{} has no db service; save it with --db_service_type", server.name))
    })?;
    log.info(format!("logging in to {} at {}:{} as `{}`", db.service_type, db.host, db.port, db.admin_user)).await;
    let mut conn = connect_admin(db).await?;
    let version: String = sqlx::query("SELECT VERSION()")
        .fetch_one(&mut conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| StepError::permanent(format!("the database server did not report its version: {e}")))?;
    log.info(format!("logged in; the server runs {version}")).await;

    let suffix = Alphanumeric.sample_string(&mut rand::rng(), 10).to_lowercase();
    let name = format!("aegir_verify_{suffix}");
    let outcome = create_and_drop(&mut conn, &name).await;
    // Clean up whatever the check left, even when it failed half way.
    let _ = execute(&mut conn, format!("DROP USER IF EXISTS '{name}'@'localhost'"), "drop the check user").await;
    let _ = execute(&mut conn, format!("DROP DATABASE IF EXISTS `{name}`"), "drop the check database").await;
    outcome?;
    log.info("the admin account can create databases and users and grant privileges").await;
    Ok(StepFacts { service_version: Some(version), ..Default::default() })
}

async fn create_and_drop(conn: &mut MySqlConnection, name: &str) -> Result<(), StepError> {
    let name = ident(name)?;
    let password = generate_password();
    execute(conn, format!("CREATE DATABASE `{name}`"), "create a database (does the admin account have CREATE?)")
        .await?;
    execute(
        conn,
        format!("CREATE USER '{name}'@'localhost' IDENTIFIED BY '{password}'"),
        "create a user (does the admin account have CREATE USER?)",
    )
    .await?;
    execute(
        conn,
        format!("GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'localhost'"),
        "grant privileges (does the admin account have GRANT OPTION?)",
    )
    .await?;
    execute(conn, format!("DROP USER '{name}'@'localhost'"), "drop a user").await?;
    execute(conn, format!("DROP DATABASE `{name}`"), "drop a database").await
}
