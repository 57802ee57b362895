//! The `tasks` table. Status changes are compare-and-set, so a redelivered event
//! changes nothing.

use aegir_contract::{ContextName, Lane, TaskKind};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::commands::CommandOfTask;
use crate::input::Page;
use crate::views::{TaskStatus, TaskView};

macro_rules! columns {
    () => {
        "id, context, kind, lane, status, options, reason, trace_id, created_at, started_at, finished_at"
    };
}

#[derive(Debug, Clone, FromRow)]
pub struct TaskRow {
    pub id: Uuid,
    pub context: String,
    pub kind: String,
    pub lane: String,
    #[sqlx(try_from = "String")]
    pub status: TaskStatus,
    pub options: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub trace_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl TaskRow {
    pub fn is_finished(&self) -> bool {
        matches!(self.status, TaskStatus::Success | TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

impl From<TaskRow> for TaskView {
    fn from(row: TaskRow) -> Self {
        TaskView {
            id: row.id,
            context: row.context,
            task: row.kind,
            lane: row.lane,
            status: row.status,
            options: row.options,
            reason: row.reason,
            trace_id: row.trace_id,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
        }
    }
}

/// Which tasks a list shows.
#[derive(Debug, Default)]
pub struct TaskFilter {
    pub context: Option<ContextName>,
    pub status: Option<TaskStatus>,
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    context: &ContextName,
    (kind, lane): (TaskKind, Lane),
    created_at: DateTime<Utc>,
    trace_id: Option<String>,
    options: Option<serde_json::Value>,
) -> sqlx::Result<TaskRow> {
    sqlx::query_as(concat!(
        "INSERT INTO tasks (id, context, context_type, kind, status, created_at, trace_id, options, lane)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8)
         RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(context.to_string())
    .bind(context.context_type().as_str())
    .bind(kind.as_str())
    .bind(created_at)
    .bind(trace_id)
    .bind(options)
    .bind(lane.as_str())
    .fetch_one(conn)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<TaskRow>> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM tasks WHERE id = $1")).bind(id).fetch_optional(db).await
}

/// Reads the task and locks it until the transaction ends.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<TaskRow>> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM tasks WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn exists(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)").bind(id).fetch_one(db).await
}

/// Newest first.
pub async fn list(db: &PgPool, filter: &TaskFilter, page: Page) -> sqlx::Result<(Vec<TaskRow>, i64)> {
    let context = filter.context.as_ref().map(ToString::to_string);
    let status = filter.status.map(TaskStatus::as_str);
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM tasks
         WHERE ($1::text IS NULL OR context = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(&context)
    .bind(status)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE ($1::text IS NULL OR context = $1) AND ($2::text IS NULL OR status = $2)",
    )
    .bind(&context)
    .bind(status)
    .fetch_one(db)
    .await?;
    Ok((rows, total))
}

/// The tasks on the sites of `client`, newest first, as [`list`] gives them.
pub async fn list_of_client(
    db: &PgPool,
    client: &str,
    status: Option<TaskStatus>,
    page: Page,
) -> sqlx::Result<(Vec<TaskRow>, i64)> {
    let status = status.map(TaskStatus::as_str);
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM tasks
         WHERE context IN (SELECT '@' || uri FROM sites WHERE client = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(client)
    .bind(status)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM tasks
         WHERE context IN (SELECT '@' || uri FROM sites WHERE client = $1) AND ($2::text IS NULL OR status = $2)",
    )
    .bind(client)
    .bind(status)
    .fetch_one(db)
    .await?;
    Ok((rows, total))
}

/// `queued` → `running`. `None` when the task is not queued (unknown, or already past
/// it); else the partner command that made it (all `None` when none did), read in the
/// same statement since the partner hears of the start.
///
/// The status guards of this and [`mark_finished`] name the states a task must not have
/// reached yet: no index on status answers that, so the primary key always finds the row.
/// `status = 'queued'` let a plan made while the table was small scan every waiting task
/// by the status index instead, for every start, until the table was next analyzed.
pub async fn mark_started(db: impl PgExecutor<'_>, id: Uuid, at: DateTime<Utc>) -> sqlx::Result<Option<CommandOfTask>> {
    sqlx::query_as(
        "WITH started AS (
             UPDATE tasks SET status = 'running', started_at = $2
             WHERE id = $1 AND status NOT IN ('running', 'success', 'failed', 'cancelled') RETURNING id
         )
         SELECT c.partner, c.idempotency_key, c.command FROM started LEFT JOIN commands c ON c.task_id = started.id",
    )
    .bind(id)
    .bind(at)
    .fetch_optional(db)
    .await
}

/// A task's row as its end left it, and the partner command that made it.
#[derive(Debug, FromRow)]
pub struct Ended {
    #[sqlx(flatten)]
    pub task: TaskRow,
    #[sqlx(flatten)]
    pub command: CommandOfTask,
}

/// Ends a task that has not ended yet; `None` when it is unknown or already finished.
/// The same statement settles what waited on the end: the task's item of a batch ends
/// (`success`, or `failed` for any other end), and the partner command that made the
/// task (all `None` when none did) comes back, since the partner hears of the end.
pub async fn mark_finished(
    conn: &mut PgConnection,
    id: Uuid,
    status: TaskStatus,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<Ended>> {
    sqlx::query_as(concat!(
        "WITH ended AS (
             UPDATE tasks SET status = $2, reason = $3, finished_at = $4
             WHERE id = $1 AND status NOT IN ('success', 'failed', 'cancelled')
             RETURNING ",
        columns!(),
        "
         ), item AS (
             UPDATE batch_items SET status = CASE WHEN $2 = 'success' THEN 'success' ELSE 'failed' END, reason = $3
             WHERE task_id IN (SELECT id FROM ended) AND status = 'queued'
         )
         SELECT ended.*, c.partner, c.idempotency_key, c.command FROM ended LEFT JOIN commands c ON c.task_id = ended.id"
    ))
    .bind(id)
    .bind(status.as_str())
    .bind(reason)
    .bind(at)
    .fetch_optional(conn)
    .await
}

/// The oldest task of `context` (`@www.example.com`) that has not finished, with its kind.
/// The oldest unfinished task of `context` that may change what a later task of it would
/// carry (its platform, uri, database, status): a new site task waits for none of the
/// others (`cron`, `backup`, `verify`, …), it queues behind them in the scheduler.
pub async fn pending_change(conn: &mut PgConnection, context: &str) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as(
        "SELECT id, kind FROM tasks WHERE context = $1 AND status IN ('queued', 'running')
           AND kind NOT IN ('cron', 'stats', 'backup', 'verify', 'login-reset', 'ping', 'backup-delete')
         ORDER BY created_at LIMIT 1",
    )
    .bind(context)
    .fetch_optional(conn)
    .await
}

pub async fn pending(conn: &mut PgConnection, context: &str) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as(
        "SELECT id, kind FROM tasks WHERE context = $1 AND status IN ('queued', 'running')
         ORDER BY created_at LIMIT 1",
    )
    .bind(context)
    .fetch_optional(conn)
    .await
}
