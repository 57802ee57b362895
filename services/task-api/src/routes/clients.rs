//! `/api/v1/clients`: who owns sites.

use aegir_contract::ClientName;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{FETCHED, listing};
use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Fields, JsonObject, Params, PathParam, parse_segment};
use crate::state::AppState;
use crate::views::{ClientView, Page};

/// A client as `PUT /api/v1/clients/{name}` takes it. Omitted fields are cleared.
#[derive(Debug, ToSchema)]
pub struct ClientInput {
    #[schema(max_length = 200, example = "Example Ltd")]
    pub title: Option<String>,
    #[schema(example = "ops@example.com")]
    pub email: Option<String>,
}

const MAX_TITLE_CHARS: usize = 200;
const MAX_EMAIL_BYTES: usize = 254;

impl ClientInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body, &["title", "email"])?;
        let title = fields.string("title")?;
        if let Some(title) = &title
            && (title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(
                "title",
                format!("the title must be at most {MAX_TITLE_CHARS} characters, without control characters"),
            ));
        }
        let email = fields.string("email")?;
        if let Some(email) = &email {
            let ok = email.len() <= MAX_EMAIL_BYTES
                && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
                && !email.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(ApiError::invalid(
                    "email",
                    format!("email `{email}` is not valid: use an address such as `ops@example.com`"),
                ));
            }
        }
        Ok(Self { title, email })
    }
}

fn not_found(name: &ClientName) -> ApiError {
    ApiError::not_found(format!("client `{name}` does not exist; create it with PUT /api/v1/clients/{name}"))
}

/// Create or update a client.
#[utoipa::path(
    put, path = "/api/v1/clients/{name}", operation_id = "save_client", tag = "clients",
    params(("name" = String, Path, description = "Client name, e.g. `example`")),
    request_body = ClientInput,
    responses(
        (status = 201, description = "Created", body = ClientView),
        (status = 200, description = "Updated", body = ClientView),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 422, description = "A field is unknown or not valid", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn save(
    State(state): State<AppState>,
    PathParam(name): PathParam,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<ClientView>), ApiError> {
    let name: ClientName = parse_segment("name", &name)?;
    let input = ClientInput::parse(body)?;
    let saved = db::clients::save(&state.pool, &name, input.title.as_deref(), input.email.as_deref()).await?;
    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(saved.row.into())))
}

/// One client.
#[utoipa::path(
    get, path = "/api/v1/clients/{name}", operation_id = "get_client", tag = "clients",
    params(("name" = String, Path, description = "Client name")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 422, description = "Not a client name", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, PathParam(name): PathParam) -> Result<Json<ClientView>, ApiError> {
    let name: ClientName = parse_segment("name", &name)?;
    let row = db::clients::get(&state.pool, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(row.into()))
}

/// Clients, ordered by name.
#[utoipa::path(
    get, path = "/api/v1/clients", operation_id = "list_clients", tag = "clients",
    params(
        ("limit" = Option<i64>, Query, description = "At most this many (default 50, at most 500)"),
        ("offset" = Option<i64>, Query, description = "Skip this many (default 0)"),
    ),
    responses(
        (status = 200, description = "A page of clients", body = Page<ClientView>),
        (status = 422, description = "A bad query parameter", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<Page<ClientView>>, ApiError> {
    params.allow(&["limit", "offset"])?;
    let (rows, total) = db::clients::list(&state.pool, params.page()?).await?;
    Ok(Json(Page { items: rows.into_iter().map(Into::into).collect(), total }))
}

/// Delete a client that owns no site.
#[utoipa::path(
    delete, path = "/api/v1/clients/{name}", operation_id = "delete_client", tag = "clients",
    params(("name" = String, Path, description = "Client name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 409, description = "It owns sites", body = ErrorBody),
    )
)]
pub async fn delete(State(state): State<AppState>, PathParam(name): PathParam) -> Result<StatusCode, ApiError> {
    let name: ClientName = parse_segment("name", &name)?;
    let mut tx = state.pool.begin().await?;
    if !db::clients::lock(&mut tx, &name).await? {
        return Err(not_found(&name));
    }
    let sites = db::sites::of_client(&mut tx, &name, FETCHED).await?;
    if !sites.is_empty() {
        return Err(ApiError::conflict(
            None,
            format!("`{name}` owns sites {}; give them to another client first", listing(&sites, "@")),
        ));
    }
    db::clients::delete(&mut tx, &name).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
