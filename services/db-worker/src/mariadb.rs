//! Talking to MariaDB/MySQL as the server's admin account.
//!
//! Identifiers are never taken from user input: they are generated here and checked
//! against a strict pattern before they are quoted into a statement.

use std::time::Duration;

use aegir_contract::DbService;
use aegir_worker::StepError;
use rand::distr::{Alphanumeric, SampleString};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, Connection, Executor};

/// Opens an admin connection, turning failures into errors a user can act on.
pub async fn connect_admin(db: &DbService) -> Result<MySqlConnection, StepError> {
    let mut options = MySqlConnectOptions::new().host(db.host.as_str()).port(db.port).username(&db.admin_user);
    // An empty password must be sent as none at all: sqlx would scramble the empty
    // string, which the server rejects.
    if !db.admin_password.is_empty() {
        options = options.password(db.admin_password.expose());
    }
    let connecting = tokio::time::timeout(Duration::from_secs(10), MySqlConnection::connect_with(&options));
    match connecting.await {
        Err(_) => Err(StepError::transient(format!(
            "cannot reach the database server at {}:{} within 10 s; check that it runs and that the port is open",
            db.host, db.port
        ))),
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(sqlx::Error::Database(e)))
            if e.code().as_deref() == Some("28000") || e.message().contains("Access denied") =>
        {
            Err(StepError::permanent(format!(
                "the database server at {}:{} refused the admin login for user `{}`: access denied; check the server's db admin user and password (--master_db)",
                db.host, db.port, db.admin_user
            )))
        }
        Ok(Err(sqlx::Error::Io(e))) => Err(StepError::transient(format!(
            "cannot reach the database server at {}:{}: {e}; check that it runs and that the port is open",
            db.host, db.port
        ))),
        Ok(Err(e)) => {
            Err(StepError::permanent(format!("cannot log in to the database server at {}:{}: {e}", db.host, db.port)))
        }
    }
}

/// A database or user name we made: `[a-z0-9_]{1,64}`, safe to quote.
pub fn ident(name: &str) -> Result<&str, StepError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(name) } else { Err(StepError::permanent(format!("refusing unsafe SQL identifier `{name}`"))) }
}

/// A random password of letters and digits; never logged.
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Runs one admin statement we built from checked identifiers.
pub async fn execute(conn: &mut MySqlConnection, sql: String, what: &str) -> Result<(), StepError> {
    conn.execute(AssertSqlSafe(sql))
        .await
        .map(|_| ())
        .map_err(|e| StepError::permanent(format!("could not {what}: {e}")))
}
