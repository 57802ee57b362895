//! `/api/v1/platforms`: code bases on web servers.

use aegir_contract::{AbsolutePath, ContextName, GitRef, GitUrl, PlatformName, PlatformSource, ServerName, StoreKey};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{FETCHED, listing};
use crate::config::PlatformRoots;
use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Fields, JsonObject, Params, PathParam, parse_segment};
use crate::state::AppState;
use crate::views::{Page, PlatformView};

/// A platform as `PUT /api/v1/platforms/{name}` takes it.
#[derive(Debug, ToSchema)]
pub struct PlatformInput {
    /// The code base's directory, below one of task-api's `--platform-roots`.
    #[schema(value_type = String, example = "/var/aegir/platforms/wp")]
    pub root: AbsolutePath,
    /// The server whose web service serves it.
    #[schema(value_type = String, required = false, default = "@server_master", example = "@server_master")]
    pub web_server: ServerName,
    /// Where a verify builds the code from when the root is missing: a git repository
    /// (`{"kind": "git", "url": "https://…", "ref": "main"}`; `ref` is a branch, tag or
    /// commit, the default branch when absent) or a `.tar.gz` in the backup store
    /// (`{"kind": "archive", "key": "platforms/wp-6.4.tar.gz"}`). A url may not hold a
    /// password. Absent or null: the root is put there by other means.
    #[schema(value_type = Option<Object>, example = json!({"kind": "git", "url": "https://git.example.com/wp.git", "ref": "6.4.2"}))]
    pub source: Option<PlatformSource>,
}

impl PlatformInput {
    pub fn parse(body: Map<String, Value>, roots: &PlatformRoots) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body, &["root", "web_server", "source"])?;
        let root = fields.parsed::<AbsolutePath>("root")?;
        let root = fields.require("root", root)?;
        if roots.containing(&root).is_none() {
            return Err(ApiError::invalid(
                "root",
                format!(
                    "path `{root}` is not below an allowed platform root ({roots}); put the platform in a directory below one of them"
                ),
            ));
        }
        let web_server = match fields.parsed::<ContextName>("web_server")? {
            None => ServerName::parse("server_master").expect("`server_master` is a valid server name"),
            Some(ContextName::Server(server)) => server,
            Some(other) => {
                return Err(ApiError::invalid(
                    "web_server",
                    format!(
                        "`{other}` is a {}, not a server; give a web server such as `@server_master`",
                        other.context_type()
                    ),
                ));
            }
        };
        let source = match fields.object("source", &["kind", "url", "ref", "key"])? {
            None => None,
            Some(source) => Some(parse_source(source)?),
        };
        Ok(Self { root, web_server, source })
    }
}

/// `source`: each kind takes its own fields only, each checked by the contract's rules
/// (which never echo a password back).
fn parse_source(mut source: Fields) -> Result<PlatformSource, ApiError> {
    let kind = source.string("kind")?;
    let kind = source.require("kind", kind)?;
    let refuse_extra = |source: &mut Fields, kind: &str, keys: &[&str]| -> Result<(), ApiError> {
        for key in keys {
            if source.string(key)?.is_some() {
                let field = source.name(key);
                return Err(ApiError::invalid(&field, format!("a {kind} source takes no `{field}`")));
            }
        }
        Ok(())
    };
    match kind.as_str() {
        "git" => {
            refuse_extra(&mut source, "git", &["key"])?;
            let url = source.parsed::<GitUrl>("url")?;
            let url = source.require("url", url)?;
            let git_ref = source.parsed::<GitRef>("ref")?;
            Ok(PlatformSource::Git { url, git_ref })
        }
        "archive" => {
            refuse_extra(&mut source, "archive", &["url", "ref"])?;
            let key = source.parsed::<StoreKey>("key")?;
            let key = source.require("key", key)?;
            Ok(PlatformSource::Archive { key })
        }
        other => {
            let field = source.name("kind");
            Err(ApiError::invalid(
                &field,
                format!("`{field}` `{other}` is not a kind of source; use `git` or `archive`"),
            ))
        }
    }
}

pub(crate) fn not_found(name: &PlatformName) -> ApiError {
    ApiError::not_found(format!("platform `@{name}` does not exist; create it with PUT /api/v1/platforms/{name}"))
}

/// Create or update a platform.
#[utoipa::path(
    put, path = "/api/v1/platforms/{name}", operation_id = "save_platform", tag = "platforms",
    params(("name" = String, Path, description = "Platform name, e.g. `platform_wp`")),
    request_body = PlatformInput,
    responses(
        (status = 201, description = "Created", body = PlatformView),
        (status = 200, description = "Updated", body = PlatformView),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 404, description = "The web server does not exist (`field`: `web_server`)", body = ErrorBody),
        (status = 409, description = "Another platform has this root on this web server", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or not valid; or the server has no web service", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn save(
    State(state): State<AppState>,
    PathParam(name): PathParam,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<PlatformView>), ApiError> {
    let name: PlatformName = parse_segment("name", &name)?;
    let input = PlatformInput::parse(body, &state.platform_roots)?;
    let server = &input.web_server;

    let mut tx = state.pool.begin().await?;
    let web_server = db::servers::lock(&mut tx, server, false).await?.ok_or_else(|| {
        ApiError::not_found_in(
            "web_server",
            format!("web server `@{server}` does not exist; create it with PUT /api/v1/servers/{server} first"),
        )
    })?;
    if web_server.http_service_type.is_none() {
        return Err(ApiError::invalid(
            "web_server",
            format!("`@{server}` offers no web service; save it with `http` or choose another web server"),
        ));
    }
    if let Some(holder) = db::platforms::holder_of_root(&mut tx, server, &input.root, &name).await? {
        return Err(ApiError::conflict(
            Some("root"),
            format!("`@{holder}` already has root `{}` on `@{server}`; choose another directory", input.root),
        ));
    }
    let context = format!("@{name}");
    if let Some(current) = db::platforms::lock(&mut tx, &name, true).await?
        && (current.root != input.root.as_str() || current.web_server != server.as_str())
    {
        // What verifies found there is about other code now.
        db::packages::forget(&mut tx, &context).await?;
        let sites = db::sites::on_platform(&mut tx, &name, FETCHED).await?;
        if !sites.is_empty() {
            return Err(ApiError::conflict(
                None,
                format!(
                    "sites {} are on `@{name}`; it cannot move to another root or web server while they are",
                    listing(&sites, "@")
                ),
            ));
        }
    }
    let saved = db::platforms::save(&mut tx, &name, &input.root, server, input.source.as_ref()).await?;
    let packages = db::packages::of(&mut *tx, &context).await?;
    tx.commit().await?;

    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(saved.row.into_view(packages))))
}

/// One platform.
#[utoipa::path(
    get, path = "/api/v1/platforms/{name}", operation_id = "get_platform", tag = "platforms",
    params(("name" = String, Path, description = "Platform name, e.g. `platform_wp`")),
    responses(
        (status = 200, description = "The platform", body = PlatformView),
        (status = 404, description = "No such platform", body = ErrorBody),
        (status = 422, description = "Not a platform name", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, PathParam(name): PathParam) -> Result<Json<PlatformView>, ApiError> {
    let name: PlatformName = parse_segment("name", &name)?;
    let row = db::platforms::get(&state.pool, &name).await?.ok_or_else(|| not_found(&name))?;
    let packages = db::packages::of(&state.pool, &format!("@{name}")).await?;
    Ok(Json(row.into_view(packages)))
}

/// Platforms, ordered by name.
#[utoipa::path(
    get, path = "/api/v1/platforms", operation_id = "list_platforms", tag = "platforms",
    params(
        ("limit" = Option<i64>, Query, description = "At most this many (default 50, at most 500)"),
        ("offset" = Option<i64>, Query, description = "Skip this many (default 0)"),
    ),
    responses(
        (status = 200, description = "A page of platforms", body = Page<PlatformView>),
        (status = 422, description = "A bad query parameter", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<Page<PlatformView>>, ApiError> {
    params.allow(&["limit", "offset"])?;
    let (rows, total) = db::platforms::list(&state.pool, params.page()?).await?;
    let contexts: Vec<String> = rows.iter().map(|row| format!("@{}", row.name)).collect();
    let mut packages = db::packages::of_all(&state.pool, &contexts).await?;
    let items = rows
        .into_iter()
        .zip(contexts)
        .map(|(row, context)| row.into_view(packages.remove(&context).unwrap_or_default()))
        .collect();
    Ok(Json(Page { items, total }))
}

/// Delete a platform no site is on.
#[utoipa::path(
    delete, path = "/api/v1/platforms/{name}", operation_id = "delete_platform", tag = "platforms",
    params(("name" = String, Path, description = "Platform name, e.g. `platform_wp`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such platform", body = ErrorBody),
        (status = 409, description = "Sites are on it", body = ErrorBody),
    )
)]
pub async fn delete(State(state): State<AppState>, PathParam(name): PathParam) -> Result<StatusCode, ApiError> {
    let name: PlatformName = parse_segment("name", &name)?;
    let mut tx = state.pool.begin().await?;
    db::platforms::lock(&mut tx, &name, true).await?.ok_or_else(|| not_found(&name))?;
    let sites = db::sites::on_platform(&mut tx, &name, FETCHED).await?;
    if !sites.is_empty() {
        return Err(ApiError::conflict(
            None,
            format!("sites {} are on `@{name}`; migrate or delete them first", listing(&sites, "@")),
        ));
    }
    db::platforms::delete(&mut tx, &name).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<PlatformInput, (String, String)> {
        let roots = PlatformRoots::new(vec![AbsolutePath::parse("/var/aegir/platforms").unwrap()]);
        let Value::Object(body) = body else { panic!("an object") };
        PlatformInput::parse(body, &roots).map_err(|e| match e {
            ApiError::InvalidField { field, message } => (field, message),
            other => panic!("unexpected {other:?}"),
        })
    }

    fn refused(source: Value) -> (String, String) {
        parse(json!({"root": "/var/aegir/platforms/wp", "source": source})).expect_err("refused")
    }

    #[test]
    fn a_git_or_archive_source_is_taken() {
        let git = parse(json!({"root": "/var/aegir/platforms/wp",
            "source": {"kind": "git", "url": "https://git.example.com/wp.git", "ref": "6.4.2"}}))
        .unwrap();
        assert_eq!(git.source.unwrap().to_string(), "git https://git.example.com/wp.git at 6.4.2");
        let archive = parse(json!({"root": "/var/aegir/platforms/wp",
            "source": {"kind": "archive", "key": "platforms/wp.tar.gz"}}))
        .unwrap();
        assert_eq!(archive.source.unwrap().to_string(), "archive platforms/wp.tar.gz");
        assert!(parse(json!({"root": "/var/aegir/platforms/wp", "source": null})).unwrap().source.is_none());
    }

    #[test]
    fn bad_sources_are_refused_with_the_field_that_was_wrong() {
        let cases = [
            (json!({"kind": "git", "url": "--upload-pack=touch /tmp/x"}), "source.url", "`-`"),
            (json!({"kind": "git", "url": "https://example.com/x.git", "ref": "--output=/tmp/x"}), "source.ref", "`-`"),
            (json!({"kind": "git", "url": "ext::sh%20-c%20x"}), "source.url", "not allowed"),
            (json!({"kind": "git"}), "source.url", "missing"),
            (json!({"kind": "git", "url": "https://example.com/x.git", "key": "x.tar.gz"}), "source.key", "takes no"),
            (json!({"kind": "archive", "key": "../x.tar.gz"}), "source.key", "archive key"),
            (json!({"kind": "archive", "key": "x.zip"}), "source.key", ".tar.gz"),
            (json!({"kind": "svn", "url": "https://example.com/x"}), "source.kind", "`git` or `archive`"),
            (json!({"url": "https://example.com/x.git"}), "source.kind", "missing"),
            (json!({"kind": "git", "url": "https://example.com/x.git", "branch": "main"}), "source.branch", "unknown"),
            (json!("https://example.com/x.git"), "source", "an object"),
        ];
        for (source, field, says) in cases {
            let (f, message) = refused(source.clone());
            assert_eq!(f, field, "{source}: {message}");
            assert!(message.contains(says), "{source}: {message}");
        }
    }

    #[test]
    fn a_password_in_a_url_is_refused_and_not_repeated() {
        let (field, message) =
            refused(json!({"kind": "git", "url": "https://deploy:hunter2-secret@git.example.com/wp.git"}));
        assert_eq!(field, "source.url");
        assert!(message.contains("password"), "{message}");
        assert!(!message.contains("hunter2-secret"), "{message}");
    }
}
