//! The `clients` table.

use aegir_contract::ClientName;
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};

use super::Saved;
use crate::input::Page;
use crate::views::ClientView;

#[derive(Debug, FromRow)]
pub struct ClientRow {
    pub name: String,
    pub title: Option<String>,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ClientRow> for ClientView {
    fn from(row: ClientRow) -> Self {
        ClientView {
            name: row.name,
            title: row.title,
            email: row.email,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

pub async fn get(db: impl PgExecutor<'_>, name: &ClientName) -> sqlx::Result<Option<ClientRow>> {
    sqlx::query_as("SELECT name, title, email, created_at, updated_at FROM clients WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(db)
        .await
}

pub async fn list(db: &PgPool, page: Page) -> sqlx::Result<(Vec<ClientRow>, i64)> {
    let rows = sqlx::query_as(
        "SELECT name, title, email, created_at, updated_at FROM clients ORDER BY name LIMIT $1 OFFSET $2",
    )
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM clients").fetch_one(db).await?;
    Ok((rows, total))
}

/// Creates or replaces the client.
pub async fn save(
    db: impl PgExecutor<'_>,
    name: &ClientName,
    title: Option<&str>,
    email: Option<&str>,
) -> sqlx::Result<Saved<ClientRow>> {
    sqlx::query_as(
        "INSERT INTO clients (name, title, email) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET title = EXCLUDED.title, email = EXCLUDED.email, updated_at = now()
         RETURNING name, title, email, created_at, updated_at, (xmax = 0) AS created",
    )
    .bind(name.as_str())
    .bind(title)
    .bind(email)
    .fetch_one(db)
    .await
}

/// Locks the client until the transaction ends; false when it does not exist.
pub async fn lock(conn: &mut PgConnection, name: &ClientName) -> sqlx::Result<bool> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM clients WHERE name = $1 FOR UPDATE")
        .bind(name.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

pub async fn delete(conn: &mut PgConnection, name: &ClientName) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM clients WHERE name = $1").bind(name.as_str()).execute(conn).await?;
    Ok(())
}
