//! `/api/v1/login`, `/api/v1/logout`, `/api/v1/me`, `/api/v1/users` (and their tokens),
//! the platforms granted to a client, and `/api/v1/audit`.

use aegir_contract::{ClientName, PlatformName};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{AuditEntry, Caller, Role, SESSION_COOKIE};
use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Fields, JsonObject, Params, parse_segment};
use crate::state::AppState;
use crate::views::Page;

/// How long a password login's session lasts.
const SESSION_HOURS: i64 = 12;
/// Wrong logins of one user within [`FAILURE_WINDOW_MINUTES`] before its logins are refused.
const MAX_FAILURES: i64 = 10;
const FAILURE_WINDOW_MINUTES: i32 = 15;
/// Shorter passwords are refused.
const MIN_PASSWORD: usize = 10;

fn check_user_name(name: &str) -> Result<(), ApiError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= 63 {
        return Ok(());
    }
    Err(ApiError::invalid(
        "name",
        format!(
            "user name `{name}` is not valid: use 1 to 63 characters of a-z, 0-9, `_`, `.` and `-`, starting with a \
             letter or digit"
        ),
    ))
}

fn no_user(name: &str) -> ApiError {
    ApiError::not_found(format!("user `{name}` does not exist; create it with PUT /api/v1/users/{name}"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginView {
    /// Send it as `Authorization: Bearer <token>`; it is shown this once.
    pub token: String,
    pub user: String,
    pub role: Role,
    pub client: Option<String>,
    /// When a session ends; absent for a named token.
    pub expires_at: Option<DateTime<Utc>>,
}

/// name, password hash, role, client, disabled.
type LoginRow = (String, Option<String>, String, Option<String>, bool);

/// `POST /api/v1/login` `{"user", "password"}`: a session token (also set as the
/// `aegir_session` cookie for the web pages) lasting [`SESSION_HOURS`]; with
/// `"token_name"`, an API token of that name that lasts until revoked.
#[utoipa::path(
    post, path = "/api/v1/login", operation_id = "login", tag = "accounts", security(),
    request_body(content = Object, description = "`{\"user\", \"password\"}`, and `\"token_name\"` for a lasting API token"),
    responses(
        (status = 200, description = "A token (and the session cookie)", body = LoginView),
        (status = 401, description = "Wrong user or password, or the user is disabled", body = ErrorBody),
        (status = 429, description = "Too many wrong logins of the user lately", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let remote = super::remote_addr(&headers, &extensions);
    let mut fields = Fields::new(body, &["user", "password", "token_name"])?;
    // A named token (for the CLI or a script) does not expire; a session does.
    let token_name = fields.string("token_name")?;
    if token_name.as_ref().is_some_and(|n| n.is_empty() || n.chars().count() > 100) {
        return Err(ApiError::invalid("token_name", "a token's name takes 1 to 100 characters, e.g. `aegir login`"));
    }
    let user = fields.string("user")?;
    let user = fields.require("user", user)?;
    let password = fields.string("password")?;
    let password = fields.require("password", password)?;
    let row: Option<LoginRow> =
        sqlx::query_as("SELECT name, password_hash, role, client, disabled FROM users WHERE name = $1")
            .bind(&user)
            .fetch_optional(&state.pool)
            .await?;
    // Password guessing: after MAX_FAILURES wrong logins of a user within the window, its
    // logins are refused until the window has moved past them.
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log
         WHERE action = 'POST /api/v1/login' AND status = 401 AND target = $1
           AND at > now() - make_interval(mins => $2)",
    )
    .bind(format!("user {user}"))
    .bind(FAILURE_WINDOW_MINUTES)
    .fetch_one(&state.pool)
    .await?;
    if failures >= MAX_FAILURES {
        return Err(ApiError::TooManyRequests(format!(
            "{failures} wrong logins of user `{user}` in the last {FAILURE_WINDOW_MINUTES} minutes; wait and try \
             again, or ask an admin to set a new password"
        )));
    }
    // The same slow check whether or not the user exists, so timing tells nothing.
    const UNUSABLE: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vh6Clc0k2Jx0ShH4fE3mQJbb+RcCBXN3WGm5w3o09OM";
    let hash = row.as_ref().and_then(|r| r.1.clone()).unwrap_or_else(|| UNUSABLE.to_owned());
    let matches = super::verify_password(password, hash).await;

    let ok_row = row.filter(|r| matches && r.1.is_some() && !r.4);
    let Some((name, _, role, client, _)) = ok_row else {
        let entry = AuditEntry {
            user: None,
            token_id: None,
            action: "POST /api/v1/login",
            target: Some(&format!("user {user}")),
            status: 401,
            remote_addr: remote.as_deref(),
        };
        super::audit(&state.pool, entry).await;
        return Err(ApiError::Unauthorized(
            "the user name or password is wrong, or the user is disabled; check them and try again".into(),
        ));
    };
    let expires_at = token_name.is_none().then(|| Utc::now() + chrono::Duration::hours(SESSION_HOURS));
    let issued = match &token_name {
        Some(token_name) => super::issue_token(&state.pool, &name, token_name, "token", None).await?,
        None => super::issue_token(&state.pool, &name, "login", "session", expires_at).await?,
    };
    let entry = AuditEntry {
        user: Some(&name),
        token_id: Some(issued.id),
        action: "POST /api/v1/login",
        target: Some(&format!("user {name}")),
        status: 200,
        remote_addr: remote.as_deref(),
    };
    super::audit(&state.pool, entry).await;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        issued.token,
        SESSION_HOURS * 3600
    );
    let role = Role::parse(&role).ok_or_else(|| ApiError::internal(format!("stored role `{role}`")))?;
    let view = LoginView { token: issued.token, user: name, role, client, expires_at };
    let mut headers = HeaderMap::new();
    if token_name.is_none() {
        headers.insert(SET_COOKIE, cookie.parse().map_err(|_| ApiError::internal("session cookie"))?);
    }
    Ok((headers, Json(view)).into_response())
}

/// `POST /api/v1/logout`: revokes the token the request came with.
#[utoipa::path(
    post, path = "/api/v1/logout", operation_id = "logout", tag = "accounts",
    responses((status = 204, description = "The token in use is revoked"))
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(caller.token_id)
        .execute(&state.pool)
        .await?;
    let mut headers = HeaderMap::new();
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    headers.insert(SET_COOKIE, expired.parse().map_err(|_| ApiError::internal("session cookie"))?);
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub user: String,
    pub role: Role,
    pub client: Option<String>,
}

/// `GET /api/v1/me`: who the token belongs to.
#[utoipa::path(
    get, path = "/api/v1/me", operation_id = "me", tag = "accounts",
    responses((status = 200, description = "Whose the token is", body = MeView))
)]
pub async fn me(caller: Caller) -> Json<MeView> {
    Json(MeView { user: caller.user, role: caller.role, client: caller.client.map(|c| c.to_string()) })
}

#[derive(Debug, Serialize, ToSchema, FromRow)]
pub struct UserView {
    pub name: String,
    pub role: String,
    pub client: Option<String>,
    pub disabled: bool,
    /// Whether the user can log in with a password (else only with tokens).
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const USER_COLUMNS: &str =
    "name, role, client, disabled, password_hash IS NOT NULL AS has_password, created_at, updated_at";

async fn user_view(db: impl sqlx::PgExecutor<'_>, name: &str) -> Result<Option<UserView>, ApiError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1")))
        .bind(name)
        .fetch_optional(db)
        .await?)
}

/// `GET /api/v1/users`.
#[utoipa::path(
    get, path = "/api/v1/users", operation_id = "list_users", tag = "accounts",
    params(("limit" = Option<i64>, Query, description = "At most this many"), ("offset" = Option<i64>, Query, description = "Skip this many")),
    responses((status = 200, description = "A page of users", body = Page<UserView>), (status = 403, description = "Not an admin", body = ErrorBody))
)]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Page<UserView>>, ApiError> {
    caller.require_admin("list users")?;
    params.allow(&["limit", "offset"])?;
    let page = params.page()?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY name LIMIT $1 OFFSET $2"
    )))
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(&state.pool)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&state.pool).await?;
    Ok(Json(Page { items, total }))
}

/// `GET /api/v1/users/{name}`.
#[utoipa::path(
    get, path = "/api/v1/users/{name}", operation_id = "get_user", tag = "accounts",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, description = "The user", body = UserView), (status = 404, description = "No such user", body = ErrorBody))
)]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.require_admin("read users")?;
    user_view(&state.pool, &name).await?.map(Json).ok_or_else(|| no_user(&name))
}

/// `PUT /api/v1/users/{name}` `{"role", "client", "password", "disabled"}`: creates or
/// updates a user. A password left out keeps the current one.
#[utoipa::path(
    put, path = "/api/v1/users/{name}", operation_id = "save_user", tag = "accounts",
    params(("name" = String, Path, description = "User name, e.g. `alice`")),
    request_body(content = Object, description = "`role` (`admin` or `client`), `client` (a client user's), `password` (at least 10 characters; left out keeps the current one), `disabled`"),
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 200, description = "Updated", body = UserView),
        (status = 422, description = "A field is unknown or not valid", body = ErrorBody),
    )
)]
pub async fn save_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require_admin("manage users")?;
    check_user_name(&name)?;
    let mut fields = Fields::new(body, &["role", "client", "password", "disabled"])?;
    let role = match fields.string("role")?.as_deref() {
        Some("admin") => Role::Admin,
        Some("client") => Role::Client,
        Some(other) => {
            return Err(ApiError::invalid("role", format!("role `{other}` is unknown; use `admin` or `client`")));
        }
        None => return Err(ApiError::invalid("role", "`role` is missing; give `admin` or `client`")),
    };
    let client = fields.parsed::<ClientName>("client")?;
    match (role, &client) {
        (Role::Client, None) => {
            return Err(ApiError::invalid("client", "a client user needs `client`: the client whose sites it manages"));
        }
        (Role::Admin, Some(_)) => {
            return Err(ApiError::invalid("client", "an admin acts for every client; leave `client` out"));
        }
        _ => {}
    }
    let password = fields.string("password")?;
    if let Some(p) = &password
        && p.chars().count() < MIN_PASSWORD
    {
        return Err(ApiError::invalid(
            "password",
            format!("the password is too short; use at least {MIN_PASSWORD} characters"),
        ));
    }
    let disabled = fields.boolean("disabled")?.unwrap_or(false);
    if let Some(client) = &client
        && db::clients::get(&state.pool, client).await?.is_none()
    {
        return Err(ApiError::not_found_in(
            "client",
            format!("client `{client}` does not exist; create it with PUT /api/v1/clients/{client}"),
        ));
    }
    let hash = match password {
        Some(p) => Some(super::hash_password(p).await?),
        None => None,
    };
    let created: bool = sqlx::query_scalar(
        "INSERT INTO users (name, password_hash, role, client, disabled) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET password_hash = COALESCE(EXCLUDED.password_hash, users.password_hash),
             role = EXCLUDED.role, client = EXCLUDED.client, disabled = EXCLUDED.disabled, updated_at = now()
         RETURNING (xmax = 0)",
    )
    .bind(&name)
    .bind(hash)
    .bind(role.as_str())
    .bind(client.as_ref().map(ClientName::as_str))
    .bind(disabled)
    .fetch_one(&state.pool)
    .await?;
    let view = user_view(&state.pool, &name).await?.ok_or_else(|| no_user(&name))?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view)))
}

/// `DELETE /api/v1/users/{name}`: the user and its tokens.
#[utoipa::path(
    delete, path = "/api/v1/users/{name}", operation_id = "delete_user", tag = "accounts",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Deleted, with its tokens"), (status = 404, description = "No such user", body = ErrorBody))
)]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("manage users")?;
    if name == caller.user {
        return Err(ApiError::conflict(None, "you cannot delete yourself; another admin can"));
    }
    let done = sqlx::query("DELETE FROM users WHERE name = $1").bind(&name).execute(&state.pool).await?;
    if done.rows_affected() == 0 {
        return Err(no_user(&name));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema, FromRow)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the token, to tell it apart.
    pub prefix: String,
    /// `token` (for scripts) or `session` (a password login).
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the token was last used, to the minute (it is written at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/users/{name}/tokens`.
#[utoipa::path(
    get, path = "/api/v1/users/{name}/tokens", operation_id = "list_tokens", tag = "accounts",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, description = "The user's tokens (never the tokens themselves)", body = Page<TokenView>))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Page<TokenView>>, ApiError> {
    caller.require_admin("manage tokens")?;
    user_view(&state.pool, &name).await?.ok_or_else(|| no_user(&name))?;
    let items: Vec<TokenView> = sqlx::query_as(
        "SELECT id, name, prefix, kind, created_at, expires_at, last_used_at, revoked_at
         FROM api_tokens WHERE user_name = $1 ORDER BY created_at, id",
    )
    .bind(&name)
    .fetch_all(&state.pool)
    .await?;
    let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
    Ok(Json(Page { items, total }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewTokenView {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    /// Shown this once; only its hash is kept.
    pub token: String,
}

/// `POST /api/v1/users/{name}/tokens` `{"name"}`: a new API token, shown once.
#[utoipa::path(
    post, path = "/api/v1/users/{name}/tokens", operation_id = "create_token", tag = "accounts",
    params(("name" = String, Path, description = "User name")),
    request_body(content = Object, description = "`{\"name\"}`: what the token is for"),
    responses((status = 201, description = "The token, shown this once", body = NewTokenView))
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<NewTokenView>), ApiError> {
    caller.require_admin("manage tokens")?;
    let mut fields = Fields::new(body, &["name"])?;
    let name = fields.string("name")?.unwrap_or_else(|| "api".to_owned());
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "a token's name takes 1 to 100 characters, e.g. `backup script`"));
    }
    user_view(&state.pool, &user).await?.ok_or_else(|| no_user(&user))?;
    let issued = super::issue_token(&state.pool, &user, &name, "token", None).await?;
    let view = NewTokenView { id: issued.id, name, prefix: issued.prefix, token: issued.token };
    Ok((StatusCode::CREATED, Json(view)))
}

/// `DELETE /api/v1/users/{name}/tokens/{id}`: revokes the token; it is refused from then on.
#[utoipa::path(
    delete, path = "/api/v1/users/{name}/tokens/{id}", operation_id = "revoke_token", tag = "accounts",
    params(("name" = String, Path, description = "User name"), ("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such token", body = ErrorBody))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((user, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("manage tokens")?;
    let id: Uuid = parse_segment("id", &id)?;
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 AND user_name = $2")
            .bind(id)
            .bind(&user)
            .execute(&state.pool)
            .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!(
            "user `{user}` has no token `{id}`; GET /api/v1/users/{user}/tokens lists them"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn existing_client(state: &AppState, name: &str) -> Result<ClientName, ApiError> {
    let client: ClientName = parse_segment("name", name)?;
    if db::clients::get(&state.pool, &client).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "client `{client}` does not exist; create it with PUT /api/v1/clients/{client}"
        )));
    }
    Ok(client)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantsView {
    pub client: String,
    /// `@platform_<name>` of each platform the client's users may use.
    pub platforms: Vec<String>,
}

/// `GET /api/v1/clients/{name}/platforms`.
#[utoipa::path(
    get, path = "/api/v1/clients/{name}/platforms", operation_id = "list_grants", tag = "accounts",
    params(("name" = String, Path, description = "Client name")),
    responses((status = 200, description = "The platforms granted to the client", body = GrantsView))
)]
pub async fn list_grants(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<GrantsView>, ApiError> {
    caller.require_admin("read platform grants")?;
    let client = existing_client(&state, &name).await?;
    let platforms: Vec<String> =
        sqlx::query_scalar("SELECT '@' || platform FROM client_platforms WHERE client = $1 ORDER BY platform")
            .bind(client.as_str())
            .fetch_all(&state.pool)
            .await?;
    Ok(Json(GrantsView { client: client.to_string(), platforms }))
}

fn platform_segment(platform: &str) -> Result<PlatformName, ApiError> {
    parse_segment("platform", platform.strip_prefix('@').unwrap_or(platform))
}

/// `PUT /api/v1/clients/{name}/platforms/{platform}`: the client's users may see the
/// platform and put sites on it.
#[utoipa::path(
    put, path = "/api/v1/clients/{name}/platforms/{platform}", operation_id = "grant_platform", tag = "accounts",
    params(("name" = String, Path, description = "Client name"), ("platform" = String, Path, description = "Platform name")),
    responses((status = 201, description = "Granted"), (status = 200, description = "Granted already"), (status = 404, description = "No such client or platform", body = ErrorBody))
)]
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, platform)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("grant platforms")?;
    let client = existing_client(&state, &name).await?;
    let platform = platform_segment(&platform)?;
    if db::platforms::get(&state.pool, &platform).await?.is_none() {
        return Err(crate::routes::platforms::not_found(&platform));
    }
    let done = sqlx::query("INSERT INTO client_platforms (client, platform) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(client.as_str())
        .bind(platform.as_str())
        .execute(&state.pool)
        .await?;
    Ok(if done.rows_affected() > 0 { StatusCode::CREATED } else { StatusCode::OK })
}

/// `DELETE /api/v1/clients/{name}/platforms/{platform}`: takes the grant back; the
/// client's sites already on the platform stay.
#[utoipa::path(
    delete, path = "/api/v1/clients/{name}/platforms/{platform}", operation_id = "revoke_platform", tag = "accounts",
    params(("name" = String, Path, description = "Client name"), ("platform" = String, Path, description = "Platform name")),
    responses((status = 204, description = "No longer granted"), (status = 404, description = "Not granted", body = ErrorBody))
)]
pub async fn revoke_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, platform)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("grant platforms")?;
    let client = existing_client(&state, &name).await?;
    let platform = platform_segment(&platform)?;
    let done = sqlx::query("DELETE FROM client_platforms WHERE client = $1 AND platform = $2")
        .bind(client.as_str())
        .bind(platform.as_str())
        .execute(&state.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("platform `@{platform}` is not granted to client `{client}`")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema, FromRow)]
pub struct AuditView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub user: Option<String>,
    pub token_id: Option<Uuid>,
    pub action: String,
    pub target: Option<String>,
    pub status: i32,
    pub remote_addr: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditView>,
    /// Give it as `before` for the next (older) page; absent on the last one.
    pub next: Option<i64>,
}

/// `GET /api/v1/audit?user=&before=&limit=`: what was done, newest first.
#[utoipa::path(
    get, path = "/api/v1/audit", operation_id = "audit_log", tag = "accounts",
    params(
        ("user" = Option<String>, Query, description = "Only this user's actions"),
        ("before" = Option<i64>, Query, description = "Older than this entry: the `next` of the page before"),
        ("limit" = Option<i64>, Query, description = "At most this many (default 50)"),
    ),
    responses((status = 200, description = "Newest first", body = AuditPage), (status = 403, description = "Not an admin", body = ErrorBody))
)]
pub async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require_admin("read the audit log")?;
    params.allow(&["user", "before", "limit"])?;
    let page = params.page()?;
    let before = params.parsed::<i64>("before")?;
    let user = params.parsed::<String>("user")?;
    let mut items: Vec<AuditView> = sqlx::query_as(
        "SELECT id, at, user_name AS user, token_id, action, target, status, remote_addr FROM audit_log
         WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR user_name = $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(before)
    .bind(user)
    .bind(page.limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let more = items.len() > usize::try_from(page.limit).unwrap_or(0);
    items.truncate(usize::try_from(page.limit).unwrap_or(0));
    let next = if more { items.last().map(|a| a.id) } else { None };
    Ok(Json(AuditPage { items, next }))
}
