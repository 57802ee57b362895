//! The `tasks` table. Status changes are compare-and-set, so a redelivered event
//! changes nothing.

use aegir_contract::{ContextName, Lane, TaskKind};
use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::accounts::AuditEntry;
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

/// A task's row, as [`insert`] writes it.
pub struct NewTask<'a> {
    pub id: Uuid,
    pub context: &'a ContextName,
    pub kind: TaskKind,
    pub lane: Lane,
    pub created_at: DateTime<Utc>,
    pub trace_id: Option<&'a str>,
    /// What the task was asked with.
    pub options: Option<serde_json::Value>,
}

const INSERT: &str = "INSERT INTO tasks (id, context, context_type, kind, status, created_at, trace_id, options, lane)
                      VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8)";

fn bind_new<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    task: &'q NewTask<'_>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(task.id)
        .bind(task.context.to_string())
        .bind(task.context.context_type().as_str())
        .bind(task.kind.as_str())
        .bind(task.created_at)
        .bind(task.trace_id)
        .bind(&task.options)
        .bind(task.lane.as_str())
}

pub async fn insert(conn: &mut PgConnection, task: &NewTask<'_>) -> sqlx::Result<TaskRow> {
    static STATEMENT: LazyLock<String> = LazyLock::new(|| format!("{INSERT} RETURNING {}", columns!()));
    bind_new(sqlx::query_as(STATEMENT.as_str()), task).fetch_one(conn).await
}

/// A task's row as [`insert_requested`] wrote it, and the ids of its outbox rows.
#[derive(FromRow)]
struct Requested {
    #[sqlx(flatten)]
    task: TaskRow,
    outbox_ids: Vec<i64>,
}

/// Writes a task's row, its messages (`outbox`, the columns of the outbox's rows) and
/// the audit row of the request that asked for it, in one statement: one round trip
/// where three took one each. The row comes back with the ids of the outbox rows.
pub async fn insert_requested(
    conn: &mut PgConnection,
    task: &NewTask<'_>,
    outbox: &aegir_postgres::outbox::Columns<'_>,
    audit: &AuditEntry<'_>,
) -> sqlx::Result<(TaskRow, Vec<i64>)> {
    static STATEMENT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH task AS ({INSERT} RETURNING {}), sent AS ({}), audit AS ({})
             SELECT task.*, ARRAY(SELECT id FROM sent) AS outbox_ids FROM task",
            columns!(),
            aegir_postgres::outbox::insert_statement(9),
            crate::accounts::audit_insert_statement(14),
        )
    });
    let query = bind_new(sqlx::query_as::<_, Requested>(STATEMENT.as_str()), task)
        .bind(outbox.exchanges)
        .bind(outbox.keys)
        .bind(outbox.bodies)
        .bind(outbox.traceparents)
        .bind(&outbox.delays_ms);
    let requested = crate::accounts::bind_audit(query, audit).fetch_one(conn).await?;
    Ok((requested.task, requested.outbox_ids))
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

/// `queued` → `running`, for the tasks of a batch of events, each with its start time:
/// one statement for all of them. What comes back names each task started now (not the
/// unknown ones, nor those already past `queued`), with the partner command that made it
/// (all `None` when none did), since the partner hears of the start.
///
/// The status guards of this and [`mark_finished`] name the states a task must not have
/// reached yet, and the rows are found by `id = ANY(…)`: no index on status answers that,
/// so the primary key always finds them. `status = 'queued'` let a plan made while the
/// table was small scan every waiting task by the status index instead, for every start,
/// until the table was next analyzed.
pub async fn mark_started(
    conn: &mut PgConnection,
    started: &[(Uuid, DateTime<Utc>)],
) -> sqlx::Result<HashMap<Uuid, CommandOfTask>> {
    if started.is_empty() {
        return Ok(HashMap::new());
    }
    let (ids, ats): (Vec<Uuid>, Vec<DateTime<Utc>>) = started.iter().copied().unzip();
    let rows: Vec<StartedRow> = sqlx::query_as(
        "WITH started AS (
             UPDATE tasks SET status = 'running', started_at = s.s_at
             FROM unnest($1::uuid[], $2::timestamptz[]) AS s(s_id, s_at)
             WHERE id = ANY($1) AND id = s.s_id AND status NOT IN ('running', 'success', 'failed', 'cancelled')
             RETURNING id
         )
         SELECT started.id, c.partner, c.idempotency_key, c.command FROM started LEFT JOIN commands c ON c.task_id = started.id",
    )
    .bind(&ids)
    .bind(&ats)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.command)).collect())
}

#[derive(FromRow)]
struct StartedRow {
    id: Uuid,
    #[sqlx(flatten)]
    command: CommandOfTask,
}

/// A task's row as its end left it, and the partner command that made it.
#[derive(Debug, FromRow)]
pub struct Ended {
    #[sqlx(flatten)]
    pub task: TaskRow,
    #[sqlx(flatten)]
    pub command: CommandOfTask,
}

/// How a task ended, as [`mark_finished`] records it.
pub struct End<'a> {
    pub id: Uuid,
    pub status: TaskStatus,
    pub reason: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// Ends the tasks of a batch of events that have not ended yet, in one statement; what
/// comes back holds each task ended now (not the unknown or already finished ones). The
/// same statement settles what waited on each end: the task's item of a batch ends
/// (`success`, or `failed` for any other end), and the partner command that made the
/// task (all `None` when none did) comes back, since the partner hears of the end.
pub async fn mark_finished(conn: &mut PgConnection, ends: &[End<'_>]) -> sqlx::Result<HashMap<Uuid, Ended>> {
    if ends.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = ends.iter().map(|e| e.id).collect();
    let statuses: Vec<&str> = ends.iter().map(|e| e.status.as_str()).collect();
    let reasons: Vec<Option<&str>> = ends.iter().map(|e| e.reason).collect();
    let ats: Vec<DateTime<Utc>> = ends.iter().map(|e| e.at).collect();
    let rows: Vec<Ended> = sqlx::query_as(concat!(
        "WITH ended AS (
             UPDATE tasks SET status = e.e_status, reason = e.e_reason, finished_at = e.e_at
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS e(e_id, e_status, e_reason, e_at)
             WHERE id = ANY($1) AND id = e.e_id AND status NOT IN ('success', 'failed', 'cancelled')
             RETURNING ",
        columns!(),
        "
         ), item AS (
             UPDATE batch_items b
             SET status = CASE WHEN ended.status = 'success' THEN 'success' ELSE 'failed' END, reason = ended.reason
             FROM ended WHERE b.task_id = ended.id AND b.status = 'queued'
         )
         SELECT ended.*, c.partner, c.idempotency_key, c.command FROM ended LEFT JOIN commands c ON c.task_id = ended.id"
    ))
    .bind(&ids)
    .bind(&statuses)
    .bind(&reasons)
    .bind(&ats)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.task.id, row)).collect())
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
