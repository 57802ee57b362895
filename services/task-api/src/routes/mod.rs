//! The HTTP API: one module per resource.

pub mod backups;
pub mod clients;
pub mod health;
pub mod platforms;
pub mod servers;
pub mod sites;
pub mod task_log;
pub mod tasks;

use axum::Router;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::{any, delete, get, post, put};

use crate::accounts::{self, AccountSettings};
use crate::error::ApiError;
use crate::state::AppState;
use crate::{metrics, observe, openapi};

/// The whole API, ready to serve.
pub fn router(state: AppState) -> Router {
    router_with(state, AccountSettings::default())
}

/// The whole API; every `/api/v1` route but the login needs a token ([`accounts`]).
pub fn router_with(state: AppState, settings: AccountSettings) -> Router {
    let protected = Router::new()
        .route("/api/v1/servers", get(servers::list))
        .route("/api/v1/servers/{name}", get(servers::get).put(servers::save).delete(servers::delete))
        .route("/api/v1/platforms", get(platforms::list))
        .route("/api/v1/platforms/{name}", get(platforms::get).put(platforms::save).delete(platforms::delete))
        .route("/api/v1/clients", get(clients::list))
        .route("/api/v1/clients/{name}", get(clients::get).put(clients::save).delete(clients::delete))
        .route("/api/v1/clients/{name}/platforms", get(accounts::routes::list_grants))
        .route(
            "/api/v1/clients/{name}/platforms/{platform}",
            put(accounts::routes::grant).delete(accounts::routes::revoke_grant),
        )
        .route("/api/v1/sites", get(sites::list))
        .route("/api/v1/sites/{uri}", get(sites::get).put(sites::save).delete(sites::delete))
        .route("/api/v1/sites/{uri}/backups", get(backups::of_site))
        .route("/api/v1/sites/{uri}/certificate", put(sites::put_certificate).delete(sites::delete_certificate))
        .route("/api/v1/sites/{uri}/{*rest}", any(sites::uri_with_path))
        .route("/api/v1/backups/{id}", get(backups::get))
        .route("/api/v1/tasks", get(tasks::list).post(tasks::create))
        .route("/api/v1/batches", post(crate::batches::create))
        .route("/api/v1/batches/{id}", get(crate::batches::get))
        .route("/api/v1/tasks/{id}", get(tasks::get))
        .route("/api/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/v1/tasks/{id}/log", get(task_log::log))
        .route("/api/v1/logout", post(accounts::routes::logout))
        .route("/api/v1/me", get(accounts::routes::me))
        .route("/api/v1/users", get(accounts::routes::list_users))
        .route(
            "/api/v1/users/{name}",
            get(accounts::routes::get_user).put(accounts::routes::save_user).delete(accounts::routes::delete_user),
        )
        .route("/api/v1/users/{name}/tokens", get(accounts::routes::list_tokens).post(accounts::routes::create_token))
        .route("/api/v1/users/{name}/tokens/{id}", delete(accounts::routes::revoke_token))
        .route("/api/v1/audit", get(accounts::routes::audit_log))
        .route_layer(middleware::from_fn_with_state(state.clone(), accounts::guard));
    Router::new()
        .merge(protected)
        .route("/api/v1/login", post(accounts::routes::login))
        .route("/api/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(health::healthz))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe::observe))
        .layer(axum::Extension(settings))
        .with_state(state)
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(format!("`{}`; /api/openapi.json lists every endpoint", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "`{method}` is not allowed on `{}`; /api/openapi.json lists the methods of every endpoint",
        uri.path()
    ))
}

/// Items blocking a change, for a message: "`@platform_a`, `@platform_b` and more".
/// `names` holds at most [`SHOWN`] + 1 names; the extra one only says there are more.
fn listing(names: &[String], prefix: &str) -> String {
    let mut text = names.iter().take(SHOWN).map(|n| format!("`{prefix}{n}`")).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text.push_str(" and more");
    }
    text
}

/// Names shown in a conflict message.
const SHOWN: usize = 5;
/// Names to fetch for [`listing`].
const FETCHED: i64 = SHOWN as i64 + 1;
