//! The `task_log` table: every line of every task, numbered by `seq`.

use aegir_contract::{LogLevel, LogLine};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::views::LogEntry;

#[derive(Debug, FromRow)]
pub struct LogRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub level: String,
    pub source: String,
    pub step: Option<i32>,
    pub message: String,
}

impl From<LogRow> for LogEntry {
    fn from(row: LogRow) -> Self {
        LogEntry {
            seq: row.seq,
            at: row.at,
            level: row.level,
            source: row.source,
            step: row.step.and_then(|s| u32::try_from(s).ok()),
            message: row.message,
        }
    }
}

pub fn level_str(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Info => "info",
        LogLevel::Warning => "warning",
        LogLevel::Error => "error",
        LogLevel::Success => "success",
    }
}

/// PostgreSQL text cannot hold NUL, which command output may contain.
fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}").into() } else { text.into() }
}

/// A warning task-api itself logs when it queues a task (e.g. what a forced migrate
/// goes ahead despite), in the same transaction as the task.
pub async fn insert_warning(
    db: impl PgExecutor<'_>,
    task_id: Uuid,
    at: DateTime<Utc>,
    message: &str,
) -> sqlx::Result<()> {
    let line = LogLine {
        id: Uuid::now_v7(),
        task_id,
        step: None,
        level: LogLevel::Warning,
        message: message.to_owned(),
        source: "task-api".to_owned(),
        at,
    };
    insert(db, &line).await.map(drop)
}

/// Stores a line of a known task. `None` when the line is already stored (a redelivery)
/// or its task is unknown.
pub async fn insert(db: impl PgExecutor<'_>, line: &LogLine) -> sqlx::Result<Option<LogRow>> {
    sqlx::query_as(
        "INSERT INTO task_log (line_id, task_id, at, level, source, step, message)
         SELECT $1, id, $3, $4, $5, $6, $7 FROM tasks WHERE id = $2
         ON CONFLICT (line_id) DO NOTHING
         RETURNING seq, at, level, source, step, message",
    )
    .bind(line.id)
    .bind(line.task_id)
    .bind(line.at)
    .bind(level_str(line.level))
    .bind(storable(&line.source).as_ref())
    .bind(line.step.and_then(|s| i32::try_from(s).ok()))
    .bind(storable(&line.message).as_ref())
    .fetch_optional(db)
    .await
}

/// A stored line with the id it came with.
#[derive(Debug, FromRow)]
pub struct StoredLine {
    pub line_id: Uuid,
    #[sqlx(flatten)]
    pub row: LogRow,
}

/// Stores many lines in one statement, numbered in the order given. Lines already
/// stored (redeliveries) and lines of unknown tasks are left out of the answer.
///
/// Each line's task is looked up by its own key (a lateral subquery with a limit is never
/// turned into a join): as a join, a plan made while `tasks` was small hashed the whole
/// table for every batch of lines until it was next analyzed.
pub async fn insert_many(db: impl PgExecutor<'_>, lines: &[&LogLine]) -> sqlx::Result<Vec<StoredLine>> {
    let ids: Vec<Uuid> = lines.iter().map(|l| l.id).collect();
    let tasks: Vec<Uuid> = lines.iter().map(|l| l.task_id).collect();
    let ats: Vec<DateTime<Utc>> = lines.iter().map(|l| l.at).collect();
    let levels: Vec<&str> = lines.iter().map(|l| level_str(l.level)).collect();
    let sources: Vec<String> = lines.iter().map(|l| storable(&l.source).into_owned()).collect();
    let steps: Vec<Option<i32>> = lines.iter().map(|l| l.step.and_then(|s| i32::try_from(s).ok())).collect();
    let messages: Vec<String> = lines.iter().map(|l| storable(&l.message).into_owned()).collect();
    sqlx::query_as(
        "INSERT INTO task_log (line_id, task_id, at, level, source, step, message)
         SELECT l.line_id, t.id, l.at, l.level, l.source, l.step, l.message
         FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::int[], $7::text[])
              WITH ORDINALITY AS l(line_id, task_id, at, level, source, step, message, n)
         CROSS JOIN LATERAL (SELECT id FROM tasks WHERE id = l.task_id LIMIT 1) t
         ORDER BY l.n
         ON CONFLICT (line_id) DO NOTHING
         RETURNING line_id, seq, at, level, source, step, message",
    )
    .bind(ids)
    .bind(tasks)
    .bind(ats)
    .bind(levels)
    .bind(sources)
    .bind(steps)
    .bind(messages)
    .fetch_all(db)
    .await
}

/// Up to `limit` lines of `task_id` after `after_seq`, in order.
pub async fn after(db: impl PgExecutor<'_>, task_id: Uuid, after_seq: i64, limit: i64) -> sqlx::Result<Vec<LogRow>> {
    sqlx::query_as(
        "SELECT seq, at, level, source, step, message FROM task_log
         WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(task_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(db)
    .await
}
