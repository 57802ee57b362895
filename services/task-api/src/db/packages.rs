//! The `packages` table: what the last verify of a context found installed.

use std::collections::HashMap;

use aegir_contract::{Package, PackageKind};
use sqlx::{FromRow, PgConnection, PgExecutor};

use crate::views::PackageView;

#[derive(Debug, FromRow)]
struct PackageRow {
    context: String,
    name: String,
    kind: String,
    version: Option<String>,
}

impl From<PackageRow> for PackageView {
    fn from(row: PackageRow) -> Self {
        PackageView { name: row.name, kind: row.kind, version: row.version }
    }
}

pub fn kind_str(kind: PackageKind) -> &'static str {
    match kind {
        PackageKind::Core => "core",
        PackageKind::Module => "module",
        PackageKind::Theme => "theme",
        PackageKind::Profile => "profile",
        PackageKind::Plugin => "plugin",
        PackageKind::Extension => "extension",
        PackageKind::Skin => "skin",
    }
}

/// The packages of one context (`@platform_wp`), by kind and name.
pub async fn of(db: impl PgExecutor<'_>, context: &str) -> sqlx::Result<Vec<PackageView>> {
    let rows: Vec<PackageRow> =
        sqlx::query_as("SELECT context, name, kind, version FROM packages WHERE context = $1 ORDER BY kind, name")
            .bind(context)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The packages of several contexts at once (a page of a list).
pub async fn of_all(db: impl PgExecutor<'_>, contexts: &[String]) -> sqlx::Result<HashMap<String, Vec<PackageView>>> {
    let rows: Vec<PackageRow> = sqlx::query_as(
        "SELECT context, name, kind, version FROM packages WHERE context = ANY($1) ORDER BY context, kind, name",
    )
    .bind(contexts)
    .fetch_all(db)
    .await?;
    let mut by_context: HashMap<String, Vec<PackageView>> = HashMap::new();
    for row in rows {
        by_context.entry(row.context.clone()).or_default().push(row.into());
    }
    Ok(by_context)
}

/// Replaces the context's packages with `packages` (a report names the whole set).
/// A package reported twice is kept once.
pub async fn replace(conn: &mut PgConnection, context: &str, packages: &[Package]) -> sqlx::Result<()> {
    forget(conn, context).await?;
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let kinds: Vec<&str> = packages.iter().map(|p| kind_str(p.kind)).collect();
    let versions: Vec<Option<&str>> = packages.iter().map(|p| p.version.as_deref()).collect();
    sqlx::query(
        "INSERT INTO packages (context, name, kind, version)
         SELECT $1, name, kind, version FROM unnest($2::text[], $3::text[], $4::text[]) AS p (name, kind, version)
         ON CONFLICT (context, kind, name) DO UPDATE SET version = EXCLUDED.version",
    )
    .bind(context)
    .bind(&names)
    .bind(&kinds)
    .bind(&versions)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn forget(conn: &mut PgConnection, context: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM packages WHERE context = $1").bind(context).execute(conn).await?;
    Ok(())
}
