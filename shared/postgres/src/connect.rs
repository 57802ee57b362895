use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgPool};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the database URL is not valid: {0}; use postgres://USER@HOST:PORT/DATABASE")]
    Url(sqlx::Error),
    #[error("`{0}` is not a plain identifier (letters, digits, `_`); choose another database or schema name")]
    Identifier(String),
    #[error("cannot reach PostgreSQL at {host}:{port} after {waited_s} s: {source}; check that it runs")]
    Unreachable { host: String, port: u16, waited_s: u64, source: sqlx::Error },
    #[error("cannot prepare the database: {0}")]
    Prepare(sqlx::Error),
}

const WAIT_FOR_POSTGRES: Duration = Duration::from_secs(60);
/// A pooled connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE: Duration = Duration::from_secs(1);

fn plain_identifier(name: &str) -> Result<&str, ConnectError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok { Ok(name) } else { Err(ConnectError::Identifier(name.to_owned())) }
}

/// Opens a pool on `url`. Creates the database if it does not exist, and, when `schema`
/// is given, that schema, which then comes first on every connection's `search_path`
/// (so each service's tables and migrations stay apart in one database). Retries for
/// up to a minute while PostgreSQL is unreachable.
pub async fn connect(url: &str, schema: Option<&str>, pool_size: u32) -> Result<PgPool, ConnectError> {
    let options = PgConnectOptions::from_str(url).map_err(ConnectError::Url)?;
    let database = options.get_database().unwrap_or("postgres").to_owned();
    plain_identifier(&database)?;
    if let Some(schema) = schema {
        plain_identifier(schema)?;
    }

    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match prepare(&options, &database, schema).await {
            Ok(()) => break,
            Err(e @ sqlx::Error::Io(_)) | Err(e @ sqlx::Error::PoolTimedOut) => {
                if started.elapsed() >= WAIT_FOR_POSTGRES {
                    return Err(ConnectError::Unreachable {
                        host: options.get_host().to_owned(),
                        port: options.get_port(),
                        waited_s: started.elapsed().as_secs(),
                        source: e,
                    });
                }
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "PostgreSQL is not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(ConnectError::Prepare(e)),
        }
    }

    // The services run short, indexed queries, where the JIT compiler only adds
    // hundreds of milliseconds of compiling.
    let options = options.options([("jit", "off")]);
    let options = match schema {
        Some(schema) => options.options([("search_path", schema)]),
        None => options,
    };
    pool_options()
        .max_connections(pool_size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(ConnectError::Prepare)
}

/// Options every pool of ours shares. A connection in steady use is not pinged before
/// each use (a round trip, a fifth of all on a busy service): one returned to the pool
/// was pinged then, so only one that sat idle since, when the server may have gone, is
/// tested again.
pub(crate) fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().test_before_acquire(false).before_acquire(|conn, meta| {
        Box::pin(async move {
            if meta.idle_for >= PING_WHEN_IDLE {
                conn.ping().await?;
            }
            Ok(true)
        })
    })
}

async fn prepare(options: &PgConnectOptions, database: &str, schema: Option<&str>) -> Result<(), sqlx::Error> {
    let mut conn = match options.connect().await {
        Ok(conn) => conn,
        // 3D000: invalid_catalog_name, the database does not exist yet.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let mut admin = options.clone().database("postgres").connect().await?;
            let created = admin.execute(AssertSqlSafe(format!("CREATE DATABASE \"{database}\""))).await;
            match created {
                Ok(_) => tracing::info!(database, "created the database"),
                // 42P04 (duplicate_database) or, when both ran at once, 23505 (a unique
                // violation in pg_database): another service created it first.
                Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
                Err(e) => return Err(e),
            }
            admin.close().await?;
            options.connect().await?
        }
        Err(e) => return Err(e),
    };
    if let Some(schema) = schema {
        let created = conn.execute(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))).await;
        match created {
            Ok(_) => {}
            // 23505/42P06: two services raced to create it; it exists now.
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {}
            Err(e) => return Err(e),
        }
    }
    conn.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_are_used_as_names() {
        assert!(plain_identifier("aegir").is_ok());
        assert!(plain_identifier("aegir_test_42").is_ok());
        for bad in ["", "9lives", "a\"b", "a-b", "a b", "x;drop"] {
            assert!(plain_identifier(bad).is_err(), "{bad}");
        }
    }
}
