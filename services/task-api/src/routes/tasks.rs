//! `/api/v1/tasks`: requesting tasks and following them.
//!
//! A request becomes a task row and a `TaskRequested` message in one transaction (the
//! outbox); the relay publishes the message once the broker confirms it. The message
//! carries a snapshot of the context, so the scheduler and workers never read this
//! database.

use aegir_contract::{ContextName, ContextType, PlatformContext, ServerName, TaskKind, TaskRequested, TaskTarget};
use aegir_postgres::{Outbox, OutboxError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::db::tasks::TaskFilter;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Fields, JsonObject, Params, PathParam};
use crate::metrics::TASKS_REQUESTED;
use crate::state::AppState;
use crate::views::{Page, TaskStatus, TaskView};

/// A task as `POST /api/v1/tasks` takes it.
#[derive(Debug, ToSchema)]
pub struct TaskInput {
    /// The context to act on: `@server_<name>` or `@platform_<name>`.
    #[schema(value_type = String, example = "@server_master")]
    pub context: ContextName,
    /// The task; `verify` is the one there is.
    #[schema(value_type = String, example = "verify")]
    pub task: TaskKind,
}

/// The tasks each kind of context can run.
fn tasks_of(context_type: ContextType) -> &'static [TaskKind] {
    match context_type {
        ContextType::Server | ContextType::Platform => &[TaskKind::Verify],
        ContextType::Site => &[],
    }
}

impl TaskInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body, &["context", "task"])?;
        let context = fields.parsed::<ContextName>("context")?;
        let context = fields.require("context", context)?;
        let task = fields.parsed::<TaskKind>("task")?;
        let task = fields.require("task", task)?;
        let allowed = tasks_of(context.context_type());
        if allowed.is_empty() {
            return Err(ApiError::invalid(
                "context",
                format!(
                    "`{context}` is a {}, and {}s cannot run tasks yet; give a server or a platform",
                    context.context_type(),
                    context.context_type()
                ),
            ));
        }
        if !allowed.contains(&task) {
            let known = allowed.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
            return Err(ApiError::invalid(
                "task",
                format!("a {} cannot run `{task}`; its tasks are {known}", context.context_type()),
            ));
        }
        Ok(Self { context, task })
    }
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Database(e) => e.into(),
        }
    }
}

fn context_not_found(context: &ContextName) -> ApiError {
    ApiError::not_found_in("context", format!("{} `{context}` does not exist; save it first", context.context_type()))
}

/// Everything the workers need to know about the context, read under a share lock so it
/// cannot change before the task is queued.
async fn snapshot(conn: &mut PgConnection, context: &ContextName) -> Result<TaskTarget, ApiError> {
    match context {
        ContextName::Server(name) => {
            let row = db::servers::context(conn, name).await?.ok_or_else(|| context_not_found(context))?;
            Ok(TaskTarget::Server { server: row.try_into()? })
        }
        ContextName::Platform(name) => {
            let platform = db::platforms::lock(conn, name, false).await?.ok_or_else(|| context_not_found(context))?;
            let server_name: ServerName = db::stored("server name", platform.web_server)?;
            let server = db::servers::context(conn, &server_name).await?.ok_or_else(|| {
                ApiError::internal(format!("platform `@{name}` refers to server `@{server_name}`, which is missing"))
            })?;
            Ok(TaskTarget::Platform {
                platform: PlatformContext {
                    name: name.clone(),
                    root: db::stored("path", platform.root)?,
                    web_server: server.try_into()?,
                },
            })
        }
        ContextName::Site(_) => Err(ApiError::invalid("context", "sites cannot run tasks yet")),
    }
}

/// Request a task.
#[utoipa::path(
    post, path = "/api/v1/tasks", operation_id = "request_task", tag = "tasks",
    request_body = TaskInput,
    responses(
        (status = 202, description = "Queued", body = TaskView),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 404, description = "The context does not exist (`field`: `context`)", body = ErrorBody),
        (status = 422, description = "A bad context name, or a task the context cannot run", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let input = TaskInput::parse(body)?;

    let mut tx = state.pool.begin().await?;
    let target = snapshot(&mut tx, &input.context).await?;
    let id = Uuid::now_v7();
    let now = Utc::now();
    let trace_id = aegir_amqp::current_trace_id();
    let row = db::tasks::insert(&mut tx, id, &input.context, input.task, now, trace_id).await?;
    let message = TaskRequested { task_id: id, kind: input.task, target, requested_at: now };
    Outbox::enqueue(&mut tx, &message, None).await?;
    tx.commit().await?;
    state.outbox.wake();

    let context_type = input.context.context_type().as_str();
    metrics::counter!(TASKS_REQUESTED, "context_type" => context_type, "task" => input.task.as_str()).increment(1);
    tracing::info!(task_id = %id, context = %input.context, task = %input.task, "task queued");
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

pub(crate) fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("task `{id}` does not exist; GET /api/v1/tasks lists the tasks"))
}

/// One task.
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}", operation_id = "get_task", tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 422, description = "Not a task id", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, PathParam(id): PathParam) -> Result<Json<TaskView>, ApiError> {
    let id = parse_task_id(&id)?;
    let row = db::tasks::get(&state.pool, id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(row.into()))
}

pub(crate) fn parse_task_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::invalid("id", format!("task id `{id}` is not valid: use a UUID")))
}

/// Tasks, newest first.
#[utoipa::path(
    get, path = "/api/v1/tasks", operation_id = "list_tasks", tag = "tasks",
    params(
        ("context" = Option<String>, Query, description = "Only the tasks of this context, e.g. `@server_master`"),
        ("status" = Option<TaskStatus>, Query, description = "Only the tasks in this status"),
        ("limit" = Option<i64>, Query, description = "At most this many (default 50, at most 500)"),
        ("offset" = Option<i64>, Query, description = "Skip this many (default 0)"),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = Page<TaskView>),
        (status = 422, description = "A bad query parameter", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<Page<TaskView>>, ApiError> {
    params.allow(&["context", "status", "limit", "offset"])?;
    let filter = TaskFilter { context: params.parsed("context")?, status: params.parsed("status")? };
    let (rows, total) = db::tasks::list(&state.pool, &filter, params.page()?).await?;
    Ok(Json(Page { items: rows.into_iter().map(Into::into).collect(), total }))
}
