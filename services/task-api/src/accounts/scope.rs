//! What a client user may reach, checked before the handler runs.
//!
//! Default deny: a route not named here is for admins only (403). A client user's view of
//! sites, their backups, tasks and task logs is its client's; another client's site, task
//! or backup answers 404 as if it did not exist, and nothing is changed. Platforms are the
//! ones granted to its client; a site is put only on one of those (403 otherwise).

use std::collections::HashMap;

use aegir_contract::{ClientName, ContextName, PlatformName, SiteUri};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::Method;
use axum::http::uri::PathAndQuery;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::Caller;
use crate::db;
use crate::error::ApiError;
use crate::input::Params;
use crate::routes;
use crate::state::AppState;
use crate::views::Page;

/// Bodies read here are requests of a few fields; anything larger is no valid request.
const BODY_LIMIT: usize = 1 << 20;

pub enum Checked {
    /// Run the handler with this request; the audit target, when the body named it.
    Pass(Request, Option<String>),
    /// Answered here, without the handler.
    Answer(Response),
}

/// Applies the caller's scope to a request for `route` (the matched path).
pub async fn check(state: &AppState, caller: &Caller, route: &str, request: Request) -> Result<Checked, ApiError> {
    let method = request.method().clone();
    let Some(client) = caller.scope().cloned() else {
        // An admin may do everything; the body of a task or batch names what it acts on.
        return match (&method, route) {
            (&Method::POST, "/api/v1/tasks" | "/api/v1/batches") => {
                let (request, body) = read_body(request).await?;
                let target = body.as_ref().map(body_target);
                Ok(Checked::Pass(request, target))
            }
            _ => Ok(Checked::Pass(request, None)),
        };
    };
    let (mut parts, body) = request.into_parts();
    let params = match Path::<HashMap<String, String>>::from_request_parts(&mut parts, &()).await {
        Ok(Path(params)) => params,
        Err(_) => HashMap::new(),
    };
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let request = Request::from_parts(parts, body);
    let pass = |request| Ok(Checked::Pass(request, None));

    match (method, route) {
        // Anyone signed in: about themselves.
        (_, "/api/v1/me" | "/api/v1/logout") => pass(request),

        (Method::GET, "/api/v1/platforms") => {
            let page = page_of(request).await?;
            let (rows, total) = db::platforms::list_granted(&state.pool, client.as_str(), page).await?;
            let contexts: Vec<String> = rows.iter().map(|row| format!("@{}", row.name)).collect();
            let mut packages = db::packages::of_all(&state.pool, &contexts).await?;
            let items = rows
                .into_iter()
                .zip(contexts)
                .map(|(row, context)| row.into_view(packages.remove(&context).unwrap_or_default()))
                .collect();
            Ok(Checked::Answer(Json(Page { items, total }).into_response()))
        }
        (Method::GET, "/api/v1/platforms/{name}") => {
            let name = param("name");
            match name.parse::<PlatformName>() {
                Ok(platform) if !granted(state, &client, &platform).await? => {
                    Err(routes::platforms::not_found(&platform))
                }
                _ => pass(request),
            }
        }

        (Method::GET, "/api/v1/clients") => {
            let page = page_of(request).await?;
            let row = db::clients::get(&state.pool, &client).await?;
            let total = i64::from(row.is_some());
            let items: Vec<crate::views::ClientView> =
                row.into_iter().skip(usize::try_from(page.offset).unwrap_or(usize::MAX)).map(Into::into).collect();
            let items = items.into_iter().take(usize::try_from(page.limit).unwrap_or(0)).collect();
            Ok(Checked::Answer(Json(Page { items, total }).into_response()))
        }
        (Method::GET, "/api/v1/clients/{name}") => {
            if param("name") == client.as_str() {
                return pass(request);
            }
            Err(ApiError::not_found(format!("client `{}` does not exist", param("name"))))
        }

        (Method::GET, "/api/v1/sites") => {
            let (mut parts, body) = request.into_parts();
            let params = Params::from_request_parts(&mut parts, &()).await?;
            match params.parsed::<String>("client")? {
                Some(asked) if asked != client.as_str() => {
                    // Another client's sites: there are none to see.
                    Ok(Checked::Answer(Json(json!({"items": [], "total": 0})).into_response()))
                }
                Some(_) => pass(Request::from_parts(parts, body)),
                None => {
                    let query = match parts.uri.query() {
                        Some(q) if !q.is_empty() => format!("{}?{q}&client={client}", parts.uri.path()),
                        _ => format!("{}?client={client}", parts.uri.path()),
                    };
                    let mut uri = parts.uri.clone().into_parts();
                    uri.path_and_query = Some(
                        PathAndQuery::try_from(query)
                            .map_err(|e| ApiError::bad_request(format!("cannot read the query string: {e}")))?,
                    );
                    parts.uri = axum::http::Uri::from_parts(uri)
                        .map_err(|e| ApiError::bad_request(format!("cannot read the query string: {e}")))?;
                    pass(Request::from_parts(parts, body))
                }
            }
        }
        (Method::GET | Method::DELETE, "/api/v1/sites/{uri}")
        | (Method::GET, "/api/v1/sites/{uri}/backups")
        | (Method::PUT, "/api/v1/sites/{uri}/certificate") => {
            own_site_or_missing(state, &client, &param("uri")).await?;
            pass(request)
        }
        (Method::PUT, "/api/v1/sites/{uri}") => {
            own_site_or_missing(state, &client, &param("uri")).await?;
            let (request, body) = read_body(request).await?;
            let Some(mut body) = body else { return pass(request) };
            match body.get("client") {
                None | Some(Value::Null) => {
                    body.insert("client".into(), Value::String(client.to_string()));
                }
                Some(Value::String(asked)) if asked == client.as_str() => {}
                Some(other) => {
                    return Err(ApiError::forbidden(format!(
                        "user `{}` puts sites of client `{client}` only, not of {other}; leave `client` out or give `{client}`",
                        caller.user
                    )));
                }
            }
            if let Some(Value::String(platform)) = body.get("platform") {
                check_platform(state, caller, &client, platform).await?;
            }
            let (mut parts, _) = request.into_parts();
            let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?;
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            pass(Request::from_parts(parts, Body::from(bytes)))
        }
        (_, "/api/v1/sites/{uri}/{*rest}") => pass(request),

        (Method::GET, "/api/v1/backups/{id}") => {
            let id = param("id");
            if let Ok(uuid) = Uuid::parse_str(&id)
                && let Some(backup) = db::backups::get(&state.pool, uuid).await?
                && site_client(state, &backup.site).await?.as_deref() != Some(client.as_str())
            {
                return Err(ApiError::not_found(format!("backup `{id}` does not exist")));
            }
            pass(request)
        }

        (Method::GET, "/api/v1/tasks") => {
            let (mut parts, _) = request.into_parts();
            let params = Params::from_request_parts(&mut parts, &()).await?;
            params.allow(&["context", "status", "limit", "offset"])?;
            let page = params.page()?;
            let status = params.parsed("status")?;
            let context = params.parsed::<ContextName>("context")?;
            let (rows, total) = match context {
                None => db::tasks::list_of_client(&state.pool, client.as_str(), status, page).await?,
                Some(ContextName::Site(uri))
                    if site_client(state, uri.as_str()).await?.as_deref() == Some(client.as_str()) =>
                {
                    let filter = db::tasks::TaskFilter { context: Some(ContextName::Site(uri)), status };
                    db::tasks::list(&state.pool, &filter, page).await?
                }
                // Another client's site, or a server or platform: none of its tasks are this user's.
                Some(_) => (Vec::new(), 0),
            };
            let items: Vec<crate::views::TaskView> = rows.into_iter().map(Into::into).collect();
            Ok(Checked::Answer(Json(Page { items, total }).into_response()))
        }
        (Method::POST, "/api/v1/tasks") => {
            let (request, body) = read_body(request).await?;
            let Some(body) = body else { return pass(request) };
            let target = body_target(&body);
            match body.get("context").and_then(Value::as_str).map(str::parse::<ContextName>) {
                Some(Ok(ContextName::Site(uri))) => {
                    if site_client(state, uri.as_str()).await?.as_deref() != Some(client.as_str()) {
                        return Err(routes::sites::not_found(&uri));
                    }
                }
                Some(Ok(other)) => {
                    return Err(ApiError::forbidden(format!(
                        "user `{}` is a client user and runs tasks on its client's sites only, not on {} `{other}`",
                        caller.user,
                        other.context_type()
                    )));
                }
                // The handler says what is wrong with it.
                Some(Err(_)) | None => return Ok(Checked::Pass(request, Some(target))),
            }
            if let Some(Value::String(platform)) = body.get("platform") {
                check_platform(state, caller, &client, platform).await?;
            }
            // An archive of another client's site is not there for this user (not even its site's name).
            if let Some(Value::String(id)) = body.get("backup")
                && let Ok(uuid) = Uuid::parse_str(id)
                && let Some(backup) = db::backups::get(&state.pool, uuid).await?
                && site_client(state, &backup.site).await?.as_deref() != Some(client.as_str())
            {
                return Err(ApiError::not_found_in("backup", format!("backup `{id}` does not exist")));
            }
            Ok(Checked::Pass(request, Some(target)))
        }
        (Method::GET, "/api/v1/tasks/{id}" | "/api/v1/tasks/{id}/log")
        | (Method::POST, "/api/v1/tasks/{id}/cancel") => {
            let id = param("id");
            if let Ok(uuid) = Uuid::parse_str(&id)
                && let Some(task) = db::tasks::get(&state.pool, uuid).await?
            {
                let owner = match task.context.parse::<ContextName>() {
                    Ok(ContextName::Site(uri)) => site_client(state, uri.as_str()).await?,
                    _ => None,
                };
                if owner.as_deref() != Some(client.as_str()) {
                    return Err(routes::tasks::not_found(uuid));
                }
            }
            pass(request)
        }

        // The batch takes the client's sites only (see `batches::create`).
        (Method::POST, "/api/v1/batches") => {
            let (request, body) = read_body(request).await?;
            let Some(body) = body else { return pass(request) };
            for key in ["platform", "to_platform"] {
                if let Some(Value::String(platform)) = body.get(key) {
                    check_platform(state, caller, &client, platform).await?;
                }
            }
            Ok(Checked::Pass(request, Some(body_target(&body))))
        }
        (Method::GET, "/api/v1/batches/{id}") => {
            let id = param("id");
            if let Ok(uuid) = Uuid::parse_str(&id) {
                let owner: Option<Option<String>> = sqlx::query_scalar("SELECT client FROM batches WHERE id = $1")
                    .bind(uuid)
                    .fetch_optional(&state.pool)
                    .await?;
                if owner.is_some_and(|owner| owner.as_deref() != Some(client.as_str())) {
                    return Err(ApiError::not_found(format!("batch `{id}` does not exist")));
                }
            }
            pass(request)
        }

        (_, route) => Err(ApiError::forbidden(format!(
            "user `{}` is a client user, and `{route}` is for admins of this system; ask one of them",
            caller.user
        ))),
    }
}

/// `limit` and `offset` of a list request.
async fn page_of(request: Request) -> Result<crate::input::Page, ApiError> {
    let (mut parts, _) = request.into_parts();
    let params = Params::from_request_parts(&mut parts, &()).await?;
    params.allow(&["limit", "offset"])?;
    params.page()
}

/// The client of site `uri`; `None` when it has none or does not exist.
async fn site_client(state: &AppState, uri: &str) -> Result<Option<String>, ApiError> {
    let client: Option<Option<String>> =
        sqlx::query_scalar("SELECT client FROM sites WHERE uri = $1").bind(uri).fetch_optional(&state.pool).await?;
    Ok(client.flatten())
}

/// Refuses (as missing) a site that exists and is not `client`'s.
async fn own_site_or_missing(state: &AppState, client: &ClientName, uri: &str) -> Result<(), ApiError> {
    let Ok(uri) = SiteUri::parse(uri) else { return Ok(()) };
    let owner: Option<Option<String>> = sqlx::query_scalar("SELECT client FROM sites WHERE uri = $1")
        .bind(uri.as_str())
        .fetch_optional(&state.pool)
        .await?;
    match owner {
        Some(owner) if owner.as_deref() != Some(client.as_str()) => Err(routes::sites::not_found(&uri)),
        _ => Ok(()),
    }
}

async fn granted(state: &AppState, client: &ClientName, platform: &PlatformName) -> Result<bool, ApiError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM client_platforms WHERE client = $1 AND platform = $2)")
        .bind(client.as_str())
        .bind(platform.as_str())
        .fetch_one(&state.pool)
        .await?)
}

/// Refuses a platform not granted to `client` (one that does not parse is the handler's to refuse).
async fn check_platform(
    state: &AppState,
    caller: &Caller,
    client: &ClientName,
    platform: &str,
) -> Result<(), ApiError> {
    if let Ok(ContextName::Platform(platform)) = platform.parse::<ContextName>()
        && !granted(state, client, &platform).await?
    {
        return Err(ApiError::forbidden(format!(
            "platform `@{platform}` is not granted to client `{client}`, so user `{}` cannot put sites on it; \
             GET /api/v1/platforms lists the granted ones",
            caller.user
        )));
    }
    Ok(())
}

/// Reads a JSON object body and puts the same bytes back; `None` when it is not one
/// (the handler then says what is wrong).
async fn read_body(request: Request) -> Result<(Request, Option<Map<String, Value>>), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    let object = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), object))
}

/// What a task or batch request acts on, for the audit log: `@www.example.com install`.
fn body_target(body: &Map<String, Value>) -> String {
    let on = body.get("context").or_else(|| body.get("platform")).and_then(Value::as_str).unwrap_or("?");
    let task = body.get("task").and_then(Value::as_str).unwrap_or("?");
    format!("{on} {task}")
}
