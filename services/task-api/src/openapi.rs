//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the API, generated from the
//! handlers and types themselves.

use axum::Json;
use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::routes::{backups, clients, health, platforms, servers, sites, task_log, tasks};
use crate::views::{ContextStatus, PackageView, SiteStatus, TaskStatus};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Aegir task API",
        description = "Servers, platforms, clients and sites of an Aegir hosting system, and the tasks run on them. \
                       Every error answer carries `{\"error\": {\"code\", \"field\", \"message\"}}`."
    ),
    paths(
        servers::list, servers::get, servers::save, servers::delete,
        platforms::list, platforms::get, platforms::save, platforms::delete,
        clients::list, clients::get, clients::save, clients::delete,
        sites::list, sites::get, sites::save, sites::delete,
        backups::of_site, backups::get,
        tasks::create, tasks::list, tasks::get, tasks::cancel,
        crate::batches::create, crate::batches::get, task_log::log,
        health::healthz,
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode, ContextStatus, SiteStatus, TaskStatus, PackageView)),
    tags(
        (name = "servers", description = "Machines and the services they offer"),
        (name = "platforms", description = "Code bases on web servers"),
        (name = "clients", description = "Who owns sites"),
        (name = "sites", description = "Sites on platforms"),
        (name = "backups", description = "Archives of sites in the backup store"),
        (name = "tasks", description = "Work on a context, and its live log"),
        (name = "batches", description = "One task on every site of a platform, a few at a time"),
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
