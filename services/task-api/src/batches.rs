//! Fleet operations: `POST /api/v1/batches` runs `verify` or `migrate` on every site of
//! a platform as many tasks, `parallel` at a time, with a live summary at
//! `GET /api/v1/batches/{id}`. Once more than `max_failures` tasks have failed it starts
//! no new ones (the batch ends `stopped`, the sites it did not reach `skipped`).
//!
//! The sites are the platform's when the batch is asked for. The runner queues the next
//! sites as tasks finish; a site busy with another task waits for the next round.

use std::time::Duration;

use aegir_contract::{ContextName, PlatformName, SiteUri, TaskKind};
use aegir_postgres::Outbox;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::Caller;
use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Fields, JsonObject, PathParam};
use crate::routes::tasks::{Queued, enqueue_queued};
use crate::state::AppState;
use crate::task_args::TaskArgs;

/// A batch as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub id: Uuid,
    /// `verify` or `migrate`.
    #[schema(example = "migrate")]
    pub task: String,
    #[schema(example = "@platform_wp")]
    pub platform: String,
    #[schema(example = "@platform_wp_next")]
    pub to_platform: Option<String>,
    pub max_failures: i32,
    pub parallel: i32,
    /// `running`, `done` (every site had its task) or `stopped` (too many failed).
    #[schema(example = "running")]
    pub status: String,
    pub summary: BatchSummary,
    /// The failed sites, with their task and why (the first 50).
    pub failures: Vec<BatchFailure>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How many sites are in each state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BatchSummary {
    pub total: i64,
    /// Not started yet.
    pub waiting: i64,
    /// Their task is queued or running.
    pub running: i64,
    pub success: i64,
    pub failed: i64,
    /// Not started because the batch stopped.
    pub skipped: i64,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct BatchFailure {
    pub site: String,
    pub task_id: Option<Uuid>,
    pub reason: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct BatchRow {
    id: Uuid,
    task: String,
    platform: String,
    to_platform: Option<String>,
    max_failures: i32,
    parallel: i32,
    status: String,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

/// Tasks a batch may run at once. A web server carries a fleet operation's changes in
/// windows while the next ones come in, so a large fleet wants a few thousand at once.
const MAX_PARALLEL: i64 = 5000;

/// Run `verify` or `migrate` on every site of a platform.
#[utoipa::path(
    post, path = "/api/v1/batches", operation_id = "create_batch", tag = "batches",
    request_body(content = Object, description = "`platform` (`@platform_x`), `task` (`verify` or `migrate`), `to_platform` (migrate), `parallel` (default 5, at most 5000), `max_failures` (default 0: stop at the first failure)"),
    responses(
        (status = 202, description = "Started", body = BatchView),
        (status = 404, description = "A platform does not exist", body = ErrorBody),
        (status = 409, description = "The platform has no site to run it on", body = ErrorBody),
        (status = 422, description = "A field is missing or not valid", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<BatchView>), ApiError> {
    // A client user's batch takes its client's sites only; an admin's, every site.
    let client = caller.scope().map(ToString::to_string);
    let mut fields = Fields::new(body, &["platform", "task", "to_platform", "parallel", "max_failures"])?;
    let platform = platform_field(&mut fields, "platform")?
        .ok_or_else(|| ApiError::invalid("platform", "`platform` is missing; give one such as `@platform_wp`"))?;
    let task = fields.parsed::<TaskKind>("task")?.ok_or_else(|| ApiError::invalid("task", "`task` is missing"))?;
    let to_platform = platform_field(&mut fields, "to_platform")?;
    let parallel = fields.take_number("parallel")?.unwrap_or(5);
    let max_failures = fields.take_number("max_failures")?.unwrap_or(0);
    match (task, &to_platform) {
        (TaskKind::Verify, None) | (TaskKind::Migrate, Some(_)) => {}
        (TaskKind::Verify, Some(_)) => {
            return Err(ApiError::invalid("to_platform", "`to_platform` goes with `migrate` only"));
        }
        (TaskKind::Migrate, None) => {
            return Err(ApiError::invalid("to_platform", "`migrate` needs `to_platform`, the platform to move to"));
        }
        _ => return Err(ApiError::invalid("task", format!("a batch runs `verify` or `migrate`, not `{task}`"))),
    }
    if !(1..=MAX_PARALLEL).contains(&parallel) {
        return Err(ApiError::invalid("parallel", format!("`parallel` is {parallel}: give 1 to {MAX_PARALLEL}")));
    }
    if !(0..=i64::from(i32::MAX)).contains(&max_failures) {
        return Err(ApiError::invalid("max_failures", "`max_failures` must be 0 or more"));
    }

    let mut tx = state.pool.begin().await?;
    for name in std::iter::once(&platform).chain(to_platform.as_ref()) {
        if db::platforms::get(&mut *tx, name).await?.is_none() {
            let field = if name == &platform { "platform" } else { "to_platform" };
            return Err(ApiError::not_found_in(field, format!("platform `@{name}` does not exist")));
        }
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO batches (id, task, platform, to_platform, max_failures, parallel, client)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(task.as_str())
    .bind(platform.as_str())
    .bind(to_platform.as_ref().map(PlatformName::as_str))
    .bind(max_failures as i32)
    .bind(parallel as i32)
    .bind(&client)
    .execute(&mut *tx)
    .await?;
    // Migrate moves the serving sites; verify checks every installed one.
    let statuses: &[&str] = if task == TaskKind::Migrate { &["enabled"] } else { &["enabled", "disabled"] };
    let added = sqlx::query(
        "INSERT INTO batch_items (batch_id, site, position)
         SELECT $1, uri, (row_number() OVER (ORDER BY uri))::integer FROM sites
         WHERE platform = $2 AND status = ANY($3) AND ($4::text IS NULL OR client = $4)",
    )
    .bind(id)
    .bind(platform.as_str())
    .bind(statuses)
    .bind(&client)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if added == 0 {
        return Err(ApiError::conflict(
            Some("platform"),
            format!("`@{platform}` has no site to {task}; `aegir list sites --platform=@{platform}` lists its sites"),
        ));
    }
    let view = view(&mut tx, id).await?;
    tx.commit().await?;
    state.batches_wake.notify_one();
    tracing::info!(batch = %id, %platform, %task, sites = added, "batch started");
    Ok((StatusCode::ACCEPTED, Json(view)))
}

fn platform_field(fields: &mut Fields, key: &str) -> Result<Option<PlatformName>, ApiError> {
    match fields.parsed::<ContextName>(key)? {
        None => Ok(None),
        Some(ContextName::Platform(name)) => Ok(Some(name)),
        Some(other) => Err(ApiError::invalid(
            key,
            format!("`{other}` is a {}, not a platform; give one such as `@platform_wp`", other.context_type()),
        )),
    }
}

/// A batch and its live summary.
#[utoipa::path(
    get, path = "/api/v1/batches/{id}", operation_id = "get_batch", tag = "batches",
    params(("id" = Uuid, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 404, description = "No such batch", body = ErrorBody),
        (status = 422, description = "Not a batch id", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, PathParam(id): PathParam) -> Result<Json<BatchView>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::invalid("id", format!("batch id `{id}` is not valid")))?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(view(&mut conn, id).await?))
}

async fn view(conn: &mut PgConnection, id: Uuid) -> Result<BatchView, ApiError> {
    let row: BatchRow = sqlx::query_as(
        "SELECT id, task, platform, to_platform, max_failures, parallel, status, created_at, finished_at
         FROM batches WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("batch `{id}` does not exist")))?;
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM batch_items WHERE batch_id = $1 GROUP BY status")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let mut summary = BatchSummary::default();
    for (status, n) in counts {
        summary.total += n;
        match status.as_str() {
            "waiting" => summary.waiting = n,
            "queued" => summary.running = n,
            "success" => summary.success = n,
            "failed" => summary.failed = n,
            _ => summary.skipped = n,
        }
    }
    let failures = sqlx::query_as(
        "SELECT site, task_id, reason FROM batch_items WHERE batch_id = $1 AND status = 'failed'
         ORDER BY position LIMIT 50",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(BatchView {
        id: row.id,
        task: row.task,
        platform: format!("@{}", row.platform),
        to_platform: row.to_platform.map(|p| format!("@{p}")),
        max_failures: row.max_failures,
        parallel: row.parallel,
        status: row.status,
        summary,
        failures,
        created_at: row.created_at,
        finished_at: row.finished_at,
    })
}

/// Tasks of a batch queued per transaction: each chunk is committed, and its tasks
/// start, while the next is queued (a thousand take a couple of seconds to queue).
const CHUNK: i64 = 100;

/// One round over the running batches: stop those past their failures, finish those
/// with nothing left, and queue the next sites of the others, a chunk per transaction;
/// `outbox` is woken after each. Returns the tasks queued.
pub async fn advance(pool: &PgPool, outbox: &Outbox) -> Result<usize, ApiError> {
    let running: Vec<BatchRow> = sqlx::query_as(
        "SELECT id, task, platform, to_platform, max_failures, parallel, status, created_at, finished_at
         FROM batches WHERE status = 'running' ORDER BY created_at",
    )
    .fetch_all(pool)
    .await?;
    let mut queued = 0;
    for batch in running {
        loop {
            let chunk = advance_batch(pool, &batch).await?;
            queued += chunk.queued;
            if chunk.queued > 0 {
                outbox.wake();
            }
            if !chunk.more {
                break;
            }
        }
    }
    Ok(queued)
}

struct Chunk {
    queued: usize,
    /// Whether there may be room and sites for another chunk.
    more: bool,
}

/// Stops, finishes or queues the next chunk of one batch, in one transaction.
async fn advance_batch(pool: &PgPool, batch: &BatchRow) -> Result<Chunk, ApiError> {
    let none = Chunk { queued: 0, more: false };
    let mut tx = pool.begin().await?;
    // One runner at a time per batch.
    let locked: Option<(String,)> =
        sqlx::query_as("SELECT status FROM batches WHERE id = $1 AND status = 'running' FOR UPDATE SKIP LOCKED")
            .bind(batch.id)
            .fetch_optional(&mut *tx)
            .await?;
    if locked.is_none() {
        return Ok(none);
    }
    let (failed, in_flight, waiting): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'queued'),
                count(*) FILTER (WHERE status = 'waiting')
         FROM batch_items WHERE batch_id = $1",
    )
    .bind(batch.id)
    .fetch_one(&mut *tx)
    .await?;
    if failed > i64::from(batch.max_failures) {
        // No new task; those running finish on their own.
        sqlx::query("UPDATE batch_items SET status = 'skipped' WHERE batch_id = $1 AND status = 'waiting'")
            .bind(batch.id)
            .execute(&mut *tx)
            .await?;
        if in_flight == 0 {
            finish(&mut tx, batch.id, "stopped").await?;
            tracing::warn!(batch = %batch.id, failed, "batch stopped: too many failures");
        }
        tx.commit().await?;
        return Ok(none);
    }
    if waiting == 0 && in_flight == 0 {
        finish(&mut tx, batch.id, "done").await?;
        tx.commit().await?;
        return Ok(none);
    }
    let room = i64::from(batch.parallel) - in_flight;
    if room <= 0 || waiting == 0 {
        tx.commit().await?;
        return Ok(none);
    }
    let limit = room.min(CHUNK);
    let next: Vec<(String,)> = sqlx::query_as(
        "SELECT site FROM batch_items WHERE batch_id = $1 AND status = 'waiting' ORDER BY position LIMIT $2",
    )
    .bind(batch.id)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut queued = 0;
    for (site,) in &next {
        queued += queue_item(&mut tx, batch, site).await?;
    }
    tx.commit().await?;
    // Sites busy with another task stay waiting: another chunk only after progress.
    let more = queued > 0 && next.len() as i64 == limit && room > limit;
    Ok(Chunk { queued, more })
}

/// Queues the task of one site; a site busy with another task stays waiting, and one
/// its task cannot run on (gone, not enabled) fails with the reason.
async fn queue_item(tx: &mut PgConnection, batch: &BatchRow, site: &str) -> Result<usize, ApiError> {
    let (kind, args) = match &batch.to_platform {
        Some(to) => (
            TaskKind::Migrate,
            TaskArgs { platform: Some(db::stored("platform name", to.clone())?), ..TaskArgs::default() },
        ),
        None => (TaskKind::Verify, TaskArgs::default()),
    };
    let uri: SiteUri = db::stored("site uri", site.to_owned())?;
    let (status, task_id, reason) = match enqueue_queued(tx, &ContextName::Site(uri), kind, &args).await? {
        Queued::Task(task) => ("queued", Some(task.id), None),
        Queued::Busy => return Ok(0),
        Queued::Refused(reason) => ("failed", None, Some(reason)),
    };
    sqlx::query("UPDATE batch_items SET status = $3, task_id = $4, reason = $5 WHERE batch_id = $1 AND site = $2")
        .bind(batch.id)
        .bind(site)
        .bind(status)
        .bind(task_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    Ok(usize::from(status == "queued"))
}

async fn finish(tx: &mut PgConnection, id: Uuid, status: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE batches SET status = $2, finished_at = now() WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(tx)
        .await?;
    Ok(())
}

/// Advances the running batches every second, and at once when woken (a new batch, a
/// finished task of one), until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = state.batches_wake.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        match advance(&state.pool, &state.outbox).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "batch tasks queued"),
            Err(e) => tracing::warn!(error = %e, "could not advance the batches; trying again"),
        }
    }
}
