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
use axum::routing::{any, get, post};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{metrics, observe, openapi};

/// The whole API, ready to serve.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/servers", get(servers::list))
        .route("/api/v1/servers/{name}", get(servers::get).put(servers::save).delete(servers::delete))
        .route("/api/v1/platforms", get(platforms::list))
        .route("/api/v1/platforms/{name}", get(platforms::get).put(platforms::save).delete(platforms::delete))
        .route("/api/v1/clients", get(clients::list))
        .route("/api/v1/clients/{name}", get(clients::get).put(clients::save).delete(clients::delete))
        .route("/api/v1/sites", get(sites::list))
        .route("/api/v1/sites/{uri}", get(sites::get).put(sites::save).delete(sites::delete))
        .route("/api/v1/sites/{uri}/backups", get(backups::of_site))
        .route("/api/v1/sites/{uri}/{*rest}", any(sites::uri_with_path))
        .route("/api/v1/backups/{id}", get(backups::get))
        .route("/api/v1/tasks", get(tasks::list).post(tasks::create))
        .route("/api/v1/batches", post(crate::batches::create))
        .route("/api/v1/batches/{id}", get(crate::batches::get))
        .route("/api/v1/tasks/{id}", get(tasks::get))
        .route("/api/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/v1/tasks/{id}/log", get(task_log::log))
        .route("/api/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(health::healthz))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe::observe))
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
