//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the API, generated from the
//! handlers and types themselves.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::accounts::routes as accounts;
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
        sites::list, sites::get, sites::save, sites::delete, sites::put_certificate, sites::delete_certificate,
        backups::of_site, backups::get,
        tasks::create, tasks::list, tasks::get, tasks::cancel,
        crate::batches::create, crate::batches::get, task_log::log,
        health::healthz,
        accounts::login, accounts::logout, accounts::me,
        accounts::list_users, accounts::get_user, accounts::save_user, accounts::delete_user,
        accounts::list_tokens, accounts::create_token, accounts::revoke_token,
        accounts::list_grants, accounts::grant, accounts::revoke_grant, accounts::audit_log,
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
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
        (name = "accounts", description = "Users, API tokens, platforms granted to clients, and the audit log"),
    )
)]
pub struct ApiDoc;

/// Every `/api/v1` route but the login takes `Authorization: Bearer <token>`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        openapi.components.get_or_insert_with(Default::default).add_security_scheme("bearer", scheme);
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
