//! PostgreSQL: connecting, migrations, and the queries of each table.

pub mod backups;
pub mod clients;
pub mod packages;
pub mod platforms;
pub mod servers;
pub mod site_stats;
pub mod sites;
pub mod task_log;
pub mod tasks;

use std::str::FromStr;

use aegir_config::DatabaseArgs;
use aegir_postgres::ConnectError;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{FromRow, PgPool};

use crate::views::StoredValueError;

static MIGRATOR: Migrator = sqlx::migrate!();

/// Opens the pool, creating the database if it is missing and waiting up to a minute for
/// PostgreSQL. task-api's tables live in `public`; other services keep their own schema.
pub async fn connect(args: &DatabaseArgs) -> Result<PgPool, ConnectError> {
    aegir_postgres::connect(&args.database_url, Some("public"), args.database_pool).await
}

pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}

/// Parses a value read back from the database.
pub(crate) fn stored<T: FromStr>(kind: &'static str, value: String) -> Result<T, StoredValueError> {
    value.parse().map_err(|_| StoredValueError { kind, value })
}

fn stored_port(value: i32) -> Result<u16, StoredValueError> {
    u16::try_from(value).map_err(|_| StoredValueError { kind: "port", value: value.to_string() })
}

/// A row just written, and whether it was new.
#[derive(Debug, FromRow)]
pub struct Saved<T> {
    #[sqlx(flatten)]
    pub row: T,
    pub created: bool,
}
