//! Accounts: who calls the API, what they may see and do, and a record of what they did.
//!
//! Every `/api/v1` request but the login carries `Authorization: Bearer <token>` (or the
//! `aegir_session` cookie a password login sets). Tokens are random, shown once, and kept
//! only as their sha256; passwords only as argon2id hashes. An admin may do everything; a
//! client user sees and acts only on its client's sites and the platforms granted to its
//! client ([`scope`]). Every request that changes something is written to `audit_log`.

pub mod routes;
pub mod scope;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::LazyLock;

use aegir_contract::ClientName;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The cookie a password login sets, for the web pages.
pub const SESSION_COOKIE: &str = "aegir_session";
/// Every token starts so, which makes a leaked one easy to recognise.
const TOKEN_PREFIX: &str = "aegir_";
/// Characters of a token kept to tell tokens apart.
const SHOWN_PREFIX: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Its client's sites, on the platforms granted to its client.
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Client => "client",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "admin" => Some(Role::Admin),
            "client" => Some(Role::Client),
            _ => None,
        }
    }
}

/// The authenticated caller of a request; handlers (and pages) take it as an extractor.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    /// The client a client user acts for.
    pub client: Option<ClientName>,
    pub token_id: Uuid,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The client whose sites alone this caller may see; `None` for an admin.
    pub fn scope(&self) -> Option<&ClientName> {
        if self.is_admin() { None } else { self.client.as_ref() }
    }

    /// Refuses anyone but an admin.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.is_admin() {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "user `{}` is a client user and may not {what}; ask an admin of this system",
            self.user
        )))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Put there by `authenticate`, which runs before every handler that needs it.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| unauthorized("no token was sent"))
    }
}

fn unauthorized(why: &str) -> ApiError {
    ApiError::Unauthorized(format!(
        "{why}; send `Authorization: Bearer <token>` with an API token (`aegir login USER` stores one for the CLI, \
         POST /api/v1/login gives one for a user and password)"
    ))
}

/// A new random token: `aegir_` and 64 hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn token_prefix(token: &str) -> String {
    token.chars().take(SHOWN_PREFIX).collect()
}

/// An argon2id hash of `password` (slow on purpose: off the async threads).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::internal(format!("cannot hash a password: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("password hashing stopped: {e}")))?
}

/// Whether `password` matches `hash`; a malformed hash matches nothing.
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A token just made: its id, and the token itself, which is never stored.
pub struct IssuedToken {
    pub id: Uuid,
    pub token: String,
    pub prefix: String,
}

/// Makes a token for `user`; a session expires at `expires_at`.
pub async fn issue_token(
    db: impl sqlx::PgExecutor<'_>,
    user: &str,
    name: &str,
    kind: &str,
    expires_at: Option<DateTime<Utc>>,
) -> sqlx::Result<IssuedToken> {
    let token = new_token();
    let id = Uuid::now_v7();
    let prefix = token_prefix(&token);
    sqlx::query(
        "INSERT INTO api_tokens (id, user_name, name, token_hash, prefix, kind, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(user)
    .bind(name)
    .bind(token_hash(&token))
    .bind(&prefix)
    .bind(kind)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(IssuedToken { id, token, prefix })
}

#[derive(FromRow)]
struct CallerRow {
    token_id: Uuid,
    user_name: String,
    role: String,
    client: Option<String>,
    /// `last_used_at` is older than [`LAST_USED_PRECISION`].
    stale: bool,
}

/// How far behind a token's `last_used_at` may be.
const LAST_USED_PRECISION: std::time::Duration = std::time::Duration::from_secs(60);

/// The bearer token of a request, else its session cookie.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

/// The caller a request's token belongs to.
pub async fn authenticate(pool: &PgPool, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = presented_token(headers).ok_or_else(|| unauthorized("no token was sent"))?;
    if token.is_empty() {
        return Err(unauthorized("the token sent is empty"));
    }
    let row: Option<CallerRow> = sqlx::query_as(
        "SELECT t.id AS token_id, u.name AS user_name, u.role, u.client,
                t.last_used_at IS NULL OR t.last_used_at < now() - make_interval(secs => $2) AS stale
         FROM api_tokens t JOIN users u ON u.name = t.user_name
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL
           AND (t.expires_at IS NULL OR t.expires_at > now()) AND NOT u.disabled",
    )
    .bind(token_hash(token))
    .bind(LAST_USED_PRECISION.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    let row =
        row.ok_or_else(|| unauthorized("the token sent is unknown, revoked or expired, or its user is disabled"))?;
    if row.stale {
        // Every request of a token writing its row would queue them all on that row's
        // lock; once a minute is enough to tell which tokens are in use. Of requests
        // racing here, the first writes and the rest find it fresh and skip.
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = now()
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))",
        )
        .bind(row.token_id)
        .bind(LAST_USED_PRECISION.as_secs_f64())
        .execute(pool)
        .await?;
    }
    let role = Role::parse(&row.role).ok_or_else(|| ApiError::internal(format!("stored role `{}`", row.role)))?;
    let client = row.client.map(|c| crate::db::stored("client name", c)).transpose()?;
    Ok(Caller { user: row.user_name, role, client, token_id: row.token_id })
}

/// Where a request came from: the peer, or (when configured to trust the proxy in front)
/// the last address the proxy added to `X-Forwarded-For`.
pub fn remote_addr(headers: &HeaderMap, extensions: &axum::http::Extensions) -> Option<String> {
    let trust = extensions.get::<AccountSettings>().is_some_and(|s| s.trust_forwarded_for);
    if trust
        && let Some(forwarded) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(last) = forwarded.rsplit(',').next().map(str::trim).and_then(|a| a.parse::<IpAddr>().ok())
    {
        return Some(last.to_string());
    }
    extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// What the audit log records of one request.
pub struct AuditEntry<'a> {
    pub user: Option<&'a str>,
    pub token_id: Option<Uuid>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub status: u16,
    pub remote_addr: Option<&'a str>,
}

pub async fn audit(pool: &PgPool, entry: AuditEntry<'_>) {
    if let Err(e) = insert_audit(pool, &entry).await {
        tracing::error!(error = %e, action = entry.action, "cannot write the audit log");
    }
}

/// The statement that writes an audit row bound as parameters `$first` to `$first + 5`
/// by [`bind_audit`]; a caller's statement may write it in a CTE with its own change.
pub(crate) fn audit_insert_statement(first: usize) -> String {
    let [user, token, action, target, status, addr] = std::array::from_fn(|i| format!("${}", first + i));
    format!(
        "INSERT INTO audit_log (user_name, token_id, action, target, status, remote_addr)
         VALUES ({user}, {token}, {action}, {target}, {status}, {addr})"
    )
}

/// Binds `entry` to the parameters of [`audit_insert_statement`], which come next in `query`.
pub(crate) fn bind_audit<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    entry: &AuditEntry<'q>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(entry.user)
        .bind(entry.token_id)
        .bind(entry.action)
        .bind(entry.target)
        .bind(i32::from(entry.status))
        .bind(entry.remote_addr)
}

async fn insert_audit(db: impl sqlx::PgExecutor<'_>, entry: &AuditEntry<'_>) -> sqlx::Result<()> {
    static STATEMENT: LazyLock<String> = LazyLock::new(|| audit_insert_statement(1));
    let query = sqlx::query_as::<_, ()>(STATEMENT.as_str());
    bind_audit(query, entry).fetch_optional(db).await.map(drop)
}

/// The audit row of a change, for a handler that writes it in the transaction of the
/// change itself: the row then goes in with the change or not at all, and the change
/// costs one commit instead of two. When the handler has not written it (it failed, or
/// never takes this), [`guard`] writes it after the response, as for any change.
#[derive(Debug, Clone)]
pub struct ChangeAudit {
    user: String,
    token_id: Uuid,
    action: String,
    target: String,
    remote_addr: Option<String>,
    written: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ChangeAudit {
    /// Writes the row in `tx`, with the status the handler answers once `tx` commits.
    /// Call [`ChangeAudit::committed`] after the commit.
    pub async fn write(&self, tx: &mut sqlx::PgConnection, status: axum::http::StatusCode) -> sqlx::Result<()> {
        insert_audit(tx, &self.entry(status)).await
    }

    /// The row, with the status the handler answers, for a statement of the handler's
    /// that writes it with the change ([`bind_audit`]). Call [`ChangeAudit::committed`]
    /// after the commit.
    pub fn entry(&self, status: axum::http::StatusCode) -> AuditEntry<'_> {
        AuditEntry {
            user: Some(&self.user),
            token_id: Some(self.token_id),
            action: &self.action,
            target: Some(&self.target),
            status: status.as_u16(),
            remote_addr: self.remote_addr.as_deref(),
        }
    }

    /// The transaction that holds the row committed: the guard writes no other.
    pub fn committed(&self) {
        self.written.store(true, std::sync::atomic::Ordering::Release);
    }

    fn is_written(&self) -> bool {
        self.written.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ChangeAudit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ChangeAudit>()
            .cloned()
            .ok_or_else(|| ApiError::internal("a change's audit row was asked for outside the accounts guard"))
    }
}

/// Settings of the accounts layer, in every request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountSettings {
    pub trust_forwarded_for: bool,
}

/// The middleware of every protected route: authenticates, applies the client user's
/// scope, runs the handler and writes the audit row of a change.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |p| p.as_str().to_owned());
    let action = format!("{method} {route}");
    let remote = remote_addr(request.headers(), request.extensions());
    let path_target = request.uri().path().to_owned();

    let caller = match authenticate(&state.pool, request.headers()).await {
        Ok(caller) => caller,
        Err(e) => {
            let response = e.into_response();
            if changes {
                let entry = AuditEntry {
                    user: None,
                    token_id: None,
                    action: &action,
                    target: Some(&path_target),
                    status: response.status().as_u16(),
                    remote_addr: remote.as_deref(),
                };
                audit(&state.pool, entry).await;
            }
            return response;
        }
    };
    let mut in_change = None;
    let (response, target) = match scope::check(&state, &caller, &route, request).await {
        Ok(scope::Checked::Pass(mut request, target)) => {
            request.extensions_mut().insert(caller.clone());
            if changes {
                let audit = ChangeAudit {
                    user: caller.user.clone(),
                    token_id: caller.token_id,
                    action: action.clone(),
                    target: target.clone().unwrap_or_else(|| path_target.clone()),
                    remote_addr: remote.clone(),
                    written: Default::default(),
                };
                request.extensions_mut().insert(audit.clone());
                in_change = Some(audit);
            }
            (next.run(request).await, target)
        }
        Ok(scope::Checked::Answer(response)) => (response, None),
        Err(e) => (e.into_response(), None),
    };
    if changes && !in_change.is_some_and(|audit| audit.is_written()) {
        let entry = AuditEntry {
            user: Some(&caller.user),
            token_id: Some(caller.token_id),
            action: &action,
            target: Some(target.as_deref().unwrap_or(&path_target)),
            status: response.status().as_u16(),
            remote_addr: remote.as_deref(),
        };
        audit(&state.pool, entry).await;
    }
    response
}

/// At start, when `file` does not exist: makes user `admin` (if missing) and a token for
/// it, written to `file` with mode 0600. An existing file is left as it is, so a restart
/// changes nothing; delete the file to get a new token.
pub async fn bootstrap_admin_token(pool: &PgPool, file: &Path) -> Result<(), BootstrapError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    if file.exists() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO users (name, role) VALUES ('admin', 'admin') ON CONFLICT (name) DO NOTHING")
        .execute(&mut *tx)
        .await?;
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE name = 'admin'").fetch_one(&mut *tx).await?;
    if role != "admin" {
        return Err(BootstrapError::NotAdmin);
    }
    let issued = issue_token(&mut *tx, "admin", "bootstrap", "token", None).await?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut f| f.write_all(format!("{}\n", issued.token).as_bytes()));
    written.map_err(|source| BootstrapError::Write { path: file.display().to_string(), source })?;
    tx.commit().await?;
    tracing::info!(file = %file.display(), prefix = %issued.prefix, "wrote a new token of user admin");
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot make the first admin's token: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot write the admin token to {path}: {source}; check that its directory exists and is writable")]
    Write { path: String, source: std::io::Error },
    #[error("user `admin` exists but is not an admin, so no admin token was written; remove or rename that user")]
    NotAdmin,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("aegir_") && a.len() == 70, "{a}");
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(token_prefix(&a).len(), SHOWN_PREFIX);
    }

    #[test]
    fn bearer_beats_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "x=1; aegir_session=abc".parse().unwrap());
        assert_eq!(presented_token(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert_eq!(presented_token(&headers), Some("tok"));
        headers.insert(AUTHORIZATION, "Basic xyz".parse().unwrap());
        assert_eq!(presented_token(&headers), None);
    }

    #[test]
    fn x_forwarded_for_counts_only_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.7".parse().unwrap());
        let mut extensions = axum::http::Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 2], 4711))));
        assert_eq!(remote_addr(&headers, &extensions).as_deref(), Some("10.0.0.2"));
        extensions.insert(AccountSettings { trust_forwarded_for: true });
        // The last entry is the one the trusted proxy added; earlier ones the client wrote.
        assert_eq!(remote_addr(&headers, &extensions).as_deref(), Some("203.0.113.7"));
        headers.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(remote_addr(&headers, &extensions).as_deref(), Some("10.0.0.2"));
    }

    #[tokio::test]
    async fn passwords_are_argon2id_hashes() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse".into(), hash.clone()).await);
        assert!(!verify_password("wrong".into(), hash).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }
}
