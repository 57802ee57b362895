//! `/api/v1/tasks`: requesting tasks and following them.
//!
//! A request becomes a task row and a `TaskRequested` message in one transaction (the
//! outbox); the relay publishes the message once the broker confirms it. The message
//! carries a snapshot of the context, so the scheduler and workers never read this
//! database.

use aegir_contract::{
    ContextName, Lane, PlatformContext, PlatformName, Secret, ServerContext, ServerName, SiteContext, SiteDatabase,
    SiteUri, SuppliedCertificate, TaskCancelRequested, TaskKind, TaskOptions, TaskRequested, TaskTarget,
};
use aegir_postgres::{Outbox, OutboxError, Staged};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{FETCHED, listing};
use crate::accounts::ChangeAudit;
use crate::db;
use crate::db::tasks::TaskFilter;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Fields, JsonObject, Params, PathParam};
use crate::metrics::TASKS_REQUESTED;
use crate::site_moves::{self, Resolved};
use crate::state::AppState;
use crate::task_args::{self, TaskArgs};
use crate::views::{Page, SiteStatus, TaskStatus, TaskView};

/// A task as `POST /api/v1/tasks` takes it.
#[derive(Debug, ToSchema)]
pub struct TaskInput {
    /// The context to act on: `@server_<name>`, `@platform_<name>` or `@<site uri>`.
    #[schema(value_type = String, example = "@www.example.com")]
    pub context: ContextName,
    /// Servers run `verify` and `ping`; platforms `verify`, `lock`, `unlock`, `import`,
    /// `delete` (only without sites) and `ping`; sites run `install`, `verify`, `disable`,
    /// `enable`, `delete`, `login-reset`, `backup`, `restore`, `backup-delete`, `clone`
    /// and `migrate`, each when the site's status allows it.
    #[schema(value_type = String, example = "install")]
    pub task: TaskKind,
    /// `interactive` (the default) or `bulk`: a script running many tasks may put them in
    /// the bulk lane, where the scheduled queues' and batches' tasks run, so its steps give
    /// way to what people ask for.
    #[schema(value_type = Option<String>, example = "interactive")]
    pub lane: Lane,
    /// The task's options, given beside `context` and `task`.
    #[schema(inline)]
    pub options: TaskArgs,
}

impl TaskInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut allowed = vec!["context", "task", "lane"];
        allowed.extend(task_args::FIELDS);
        let mut fields = Fields::new(body, &allowed)?;
        let context = fields.parsed::<ContextName>("context")?;
        let context = fields.require("context", context)?;
        let task = fields.parsed::<TaskKind>("task")?;
        let task = fields.require("task", task)?;
        let context_type = context.context_type();
        if !task.applies_to(context_type) {
            let known = TaskKind::ALL
                .iter()
                .filter(|t| t.applies_to(context_type))
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError::invalid(
                "task",
                format!("a {context_type} cannot run `{task}`; its tasks are {known}"),
            ));
        }
        let lane = fields.parsed::<Lane>("lane")?.unwrap_or_default();
        let options = TaskArgs::parse(&mut fields, task)?;
        Ok(Self { context, task, lane, options })
    }
}

/// Whether a site in `status` can run `task`; the refusal says what to do instead.
fn site_task_allowed(uri: &SiteUri, status: SiteStatus, task: TaskKind) -> Result<(), String> {
    let allowed = match task {
        _ if status == SiteStatus::Cloning => task == TaskKind::Ping,
        TaskKind::Install => matches!(status, SiteStatus::New | SiteStatus::Failed),
        TaskKind::Disable => status == SiteStatus::Enabled,
        TaskKind::Enable => status == SiteStatus::Disabled,
        TaskKind::Verify | TaskKind::LoginReset | TaskKind::Delete | TaskKind::Backup | TaskKind::Restore => {
            status.is_installed()
        }
        // A copy or a move deploys the site serving; a disabled one is enabled first.
        TaskKind::Clone | TaskKind::Migrate | TaskKind::Cron => status == SiteStatus::Enabled,
        TaskKind::Stats => status.is_installed(),
        // Archives outlive what happens to the site.
        TaskKind::BackupDelete | TaskKind::Ping => true,
        TaskKind::Lock | TaskKind::Unlock | TaskKind::Import => false,
    };
    if allowed {
        return Ok(());
    }
    let advice = match (task, status) {
        (_, SiteStatus::Cloning) => "it is being made as a clone; wait for the clone task to finish".to_owned(),
        (TaskKind::Clone | TaskKind::Migrate, SiteStatus::Disabled) => {
            format!("`enable` it first, then `{task}` it")
        }
        (TaskKind::Install, _) => {
            "it is installed already; run `verify` to bring it up to date, or `delete` it first to install it again"
                .to_owned()
        }
        (TaskKind::Disable, SiteStatus::Disabled) => "it is disabled already; `enable` serves it again".to_owned(),
        (TaskKind::Enable, SiteStatus::Enabled) => "it is enabled already".to_owned(),
        (TaskKind::Delete, _) => format!(
            "it is not installed, so there is nothing on its servers to delete; remove its record with \
             DELETE /api/v1/sites/{uri} (`aegir delete @{uri}`)"
        ),
        (_, SiteStatus::Failed) => "its install failed; run `install` again once the cause is fixed".to_owned(),
        _ => "it is not installed yet; run `install` first".to_owned(),
    };
    Err(format!("`@{uri}` is {status}, so it cannot run `{task}`: {advice}"))
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
async fn snapshot(conn: &mut PgConnection, context: &ContextName, task: TaskKind) -> Result<TaskTarget, ApiError> {
    match context {
        ContextName::Server(name) => {
            let row = db::servers::context(conn, name).await?.ok_or_else(|| context_not_found(context))?;
            Ok(TaskTarget::Server { server: row.try_into()? })
        }
        ContextName::Platform(name) => {
            // A delete holds the platform until the task is queued, so no site is saved onto it meanwhile.
            let exclusive = task == TaskKind::Delete;
            let db::platforms::LockedForTask { platform, web_server, .. } =
                db::platforms::lock_for_task(conn, name, db::platforms::TaskOf::Platform { exclusive })
                    .await?
                    .ok_or_else(|| context_not_found(context))?;
            if task == TaskKind::Delete {
                platform_deletable(conn, name, context).await?;
            }
            let source = platform.platform_source().map_err(ApiError::internal)?;
            Ok(TaskTarget::Platform {
                platform: PlatformContext {
                    name: name.clone(),
                    root: db::stored("path", platform.root)?,
                    web_server: web_server.try_into()?,
                    source,
                },
            })
        }
        ContextName::Site(uri) => site_snapshot(conn, uri, task).await,
    }
}

/// A platform is deleted only when no site record uses it and no other task of it is pending.
async fn platform_deletable(
    conn: &mut PgConnection,
    name: &PlatformName,
    context: &ContextName,
) -> Result<(), ApiError> {
    let count = db::sites::count_on_platform(conn, name).await?;
    if count > 0 {
        let sites = db::sites::on_platform(conn, name, FETCHED).await?;
        let which = if count == 1 { "site is" } else { "sites are" };
        return Err(ApiError::conflict(
            Some("context"),
            format!(
                "{count} {which} on `{context}` ({}); delete or migrate {} first",
                listing(&sites, "@"),
                if count == 1 { "it" } else { "them" }
            ),
        ));
    }
    if let Some((id, kind)) = db::tasks::pending(conn, &context.to_string()).await? {
        return Err(ApiError::conflict(
            Some("context"),
            format!("task {id} ({kind}) of `{context}` has not finished; wait for it (`aegir task {id}`)"),
        ));
    }
    Ok(())
}

/// The site with its platform, web server, db server and database account. The site's
/// row is locked so two requests cannot both pass the status check.
async fn site_snapshot(conn: &mut PgConnection, uri: &SiteUri, task: TaskKind) -> Result<TaskTarget, ApiError> {
    let context = ContextName::Site(uri.clone());
    let db::sites::LockedForTask { site, database } =
        db::sites::lock_for_task(conn, uri).await?.ok_or_else(|| context_not_found(&context))?;
    site_task_allowed(uri, site.status, task).map_err(|message| ApiError::conflict(Some("task"), message))?;
    if let Some((id, kind)) = db::tasks::pending_change(conn, &context.to_string()).await? {
        return Err(ApiError::conflict(
            Some("context"),
            format!("task {id} ({kind}) of `{context}` has not finished; wait for it (`aegir task {id}`)"),
        ));
    }

    let platform_name = db::stored("platform name", site.platform.clone())?;
    let db::platforms::LockedForTask { platform, web_server, dns_server } =
        db::platforms::lock_for_task(conn, &platform_name, db::platforms::TaskOf::Site)
            .await?
            .ok_or_else(|| ApiError::internal(format!("site `{context}` refers to a missing platform")))?;
    let Some(platform_type) = platform.platform_type.clone() else {
        return Err(ApiError::conflict(
            Some("context"),
            format!("platform `@{platform_name}` of `{context}` has no known type; verify @{platform_name} first"),
        ));
    };
    let web_server_name: ServerName = db::stored("server name", platform.web_server.clone())?;
    let db_server_name: ServerName = db::stored("server name", site.db_server.clone())?;
    // One server often serves both: its row is read (and share-locked) once.
    let db_server = if db_server_name == web_server_name {
        web_server.clone()
    } else {
        db::servers::context(conn, &db_server_name)
            .await?
            .ok_or_else(|| ApiError::internal(format!("site `{context}` refers to a missing db server")))?
    };

    let site = SiteContext {
        uri: uri.clone(),
        aliases: site.aliases.into_iter().map(|a| db::stored("site uri", a)).collect::<Result<_, _>>()?,
        redirection: site.redirection,
        platform: PlatformContext {
            name: platform_name,
            root: db::stored("path", platform.root)?,
            web_server: web_server.try_into()?,
            source: None,
        },
        platform_type: db::stored("platform type", platform_type)?,
        db_server: db_server.try_into()?,
        database: SiteDatabase {
            name: db::stored("database identifier", database.db_name)?,
            user: db::stored("database identifier", database.db_user)?,
            password: Secret::new(database.db_password),
        },
        profile: site.profile.map(|p| db::stored("profile", p)).transpose()?,
        language: db::stored("language", site.language)?,
        title: db::stored("site title", site.title)?,
        admin_email: db::stored("e-mail address", site.admin_email)?,
        client: site.client.map(|c| db::stored("client name", c)).transpose()?,
        php_version: site.php_version.map(|v| db::stored("PHP version", v)).transpose()?,
        dns_server: dns_server.map(ServerContext::try_from).transpose()?,
        ssl: db::stored("ssl mode", site.ssl)?,
    };
    if site.db_server.db.is_none() {
        return Err(ApiError::conflict(
            Some("context"),
            format!("db server `@{}` of `{context}` offers no database service any more", site.db_server.name),
        ));
    }
    Ok(TaskTarget::Site { site })
}

/// Queues a task in `tx`: the context's snapshot (refusing what its state does not
/// allow), the task's options, its row, and its request in the outbox. The API's
/// requests and the scheduled queues both come through here.
pub(crate) async fn enqueue(
    tx: &mut PgConnection,
    context: &ContextName,
    task: (TaskKind, Lane),
    args: &TaskArgs,
) -> Result<db::tasks::TaskRow, ApiError> {
    enqueue_with_certificate(tx, context, task, args, None).await
}

/// [`enqueue`] of a verify that installs a certificate its owner supplied. The key goes
/// into the request (the outbox, deleted once published) only, never into the task's row.
pub(crate) async fn enqueue_with_certificate(
    tx: &mut PgConnection,
    context: &ContextName,
    task: (TaskKind, Lane),
    args: &TaskArgs,
    certificate: Option<SuppliedCertificate>,
) -> Result<db::tasks::TaskRow, ApiError> {
    let (row, request) = insert(&mut *tx, context, task, args, certificate).await?;
    Outbox::enqueue(&mut *tx, &request, None).await?;
    Ok(row)
}

/// A task ready to be written: its context's snapshot taken (refusing what its state
/// does not allow), its options resolved, and the request to send for it.
struct Prepared {
    request: TaskRequested,
    trace_id: Option<String>,
    /// Lines for the task's log once its row is in.
    warnings: Vec<String>,
}

impl Prepared {
    /// Takes the snapshot and resolves the options in `tx`.
    async fn new(
        tx: &mut PgConnection,
        context: &ContextName,
        (task, lane): (TaskKind, Lane),
        args: &TaskArgs,
        certificate: Option<SuppliedCertificate>,
    ) -> Result<Self, ApiError> {
        let target = snapshot(&mut *tx, context, task).await?;
        let resolved = match &target {
            TaskTarget::Site { site } => site_moves::resolve(&mut *tx, site, task, args).await?,
            _ => Resolved { options: TaskOptions::default(), warnings: Vec::new() },
        };
        let options = TaskOptions { certificate, ..resolved.options };
        let request =
            TaskRequested { task_id: Uuid::now_v7(), kind: task, target, options, lane, requested_at: Utc::now() };
        Ok(Self { request, trace_id: aegir_amqp::current_trace_id(), warnings: resolved.warnings })
    }

    /// The task's row; `args` are what it was asked with.
    fn row<'a>(&'a self, context: &'a ContextName, args: &TaskArgs) -> db::tasks::NewTask<'a> {
        db::tasks::NewTask {
            id: self.request.task_id,
            context,
            kind: self.request.kind,
            lane: self.request.lane,
            created_at: self.request.requested_at,
            trace_id: self.trace_id.as_deref(),
            options: args.to_json(),
        }
    }

    /// Writes the warnings to the log of the task, whose row is in.
    async fn log_warnings(&self, tx: &mut PgConnection) -> sqlx::Result<()> {
        for warning in &self.warnings {
            db::task_log::insert_warning(&mut *tx, self.request.task_id, self.request.requested_at, warning).await?;
        }
        Ok(())
    }
}

/// The task's row in `tx`, and the request to send for it: the context's snapshot
/// (refusing what its state does not allow) and the task's options.
async fn insert(
    tx: &mut PgConnection,
    context: &ContextName,
    task: (TaskKind, Lane),
    args: &TaskArgs,
    certificate: Option<SuppliedCertificate>,
) -> Result<(db::tasks::TaskRow, TaskRequested), ApiError> {
    let prepared = Prepared::new(&mut *tx, context, task, args, certificate).await?;
    let row = db::tasks::insert(&mut *tx, &prepared.row(context, args)).await?;
    prepared.log_warnings(tx).await?;
    Ok((row, prepared.request))
}

/// What became of a task a queue asked for.
pub(crate) enum Queued {
    Task(db::tasks::TaskRow),
    /// Another task of the context has not finished: ask again later.
    Busy,
    /// The context's state refuses the task; the reason says why.
    Refused(String),
}

/// Queues a task for a scheduled queue or a batch, in the bulk lane and in a savepoint of `tx`: a context
/// busy with another task, or one whose state refuses the task, changes nothing and
/// says so, so one broken site never stops a queue. Only a database failure is an error.
pub(crate) async fn enqueue_queued(
    tx: &mut PgConnection,
    context: &ContextName,
    task: TaskKind,
    args: &TaskArgs,
) -> Result<Queued, ApiError> {
    // Queues never pile tasks up behind each other: any unfinished task waits a round.
    if db::tasks::pending(&mut *tx, &context.to_string()).await?.is_some() {
        return Ok(Queued::Busy);
    }
    let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
    match enqueue(&mut attempt, context, (task, Lane::Bulk), args).await {
        Ok(row) => {
            attempt.commit().await?;
            Ok(Queued::Task(row))
        }
        Err(e @ ApiError::Unavailable(_)) => Err(e),
        Err(e) => {
            attempt.rollback().await?;
            match e {
                ApiError::Conflict { message, .. } if message.contains("has not finished") => Ok(Queued::Busy),
                other => Ok(Queued::Refused(other.to_string())),
            }
        }
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
        (status = 409, description = "The site's status does not allow this task now (the message says what to do), a task of the context that changes it (install, delete, migrate, …) has not finished (tasks such as verify, backup and cron let others queue behind them), or a platform to delete still has sites (the message names them and says how many)", body = ErrorBody),
        (status = 422, description = "A bad context name, or a task the context cannot run", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    audit: ChangeAudit,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let input = TaskInput::parse(body)?;

    let mut tx = state.pool.begin().await?;
    let prepared = Prepared::new(&mut tx, &input.context, (input.task, input.lane), &input.options, None).await?;
    // The row, the request in the outbox and the audit row go in with one statement; the
    // request is handed to the relay after the commit, so the scheduler has it a round
    // trip sooner.
    let mut out = Staged::new();
    out.push(&prepared.request, None);
    let (row, ids) = db::tasks::insert_requested(
        &mut tx,
        &prepared.row(&input.context, &input.options),
        &state.outbox.columns(&out),
        &audit.entry(StatusCode::ACCEPTED),
    )
    .await?;
    prepared.log_warnings(&mut tx).await?;
    tx.commit().await?;
    audit.committed();
    state.outbox.hand_off(state.outbox.written(ids, out));
    let id = row.id;

    let context_type = input.context.context_type().as_str();
    metrics::counter!(TASKS_REQUESTED, "context_type" => context_type, "task" => input.task.as_str()).increment(1);
    tracing::info!(task_id = %id, context = %input.context, task = %input.task, "task queued");
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

/// Cancel a task that has not started.
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/cancel", operation_id = "cancel_task", tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    responses(
        (status = 202, description = "Cancel requested: the task ends `cancelled` unless it started meanwhile (then its log says so)", body = TaskView),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is running or has ended", body = ErrorBody),
        (status = 422, description = "Not a task id", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let id = parse_task_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let row = db::tasks::lock(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
    match row.status {
        TaskStatus::Queued => {}
        TaskStatus::Running => {
            return Err(ApiError::conflict(
                None,
                format!(
                    "task {id} is running; only a waiting task can be cancelled: a running one ends by itself, or \
                     fails at its step deadline and undoes what it did"
                ),
            ));
        }
        status => return Err(ApiError::conflict(None, format!("task {id} has ended ({status})"))),
    }
    let now = Utc::now();
    Outbox::enqueue(&mut tx, &TaskCancelRequested { task_id: id, requested_at: now }, None).await?;
    db::task_log::insert_warning(&mut *tx, id, now, "cancel requested").await?;
    tx.commit().await?;
    state.outbox.wake();
    tracing::info!(task_id = %id, "task cancel requested");
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
