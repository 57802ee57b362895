//! `/api/v1/sites/{uri}/backups` and `/api/v1/backups/{id}`: the archives of sites.
//! Archives are made, restored and removed by tasks (`backup`, `restore`,
//! `backup-delete`); these endpoints only read their records.

use aegir_contract::SiteUri;
use axum::Json;
use axum::extract::State;
use uuid::Uuid;

use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Params, PathParam, parse_segment};
use crate::state::AppState;
use crate::views::{BackupView, Page};

/// The archives of a site, newest first; a deleted site's stay listed.
#[utoipa::path(
    get, path = "/api/v1/sites/{uri}/backups", operation_id = "list_site_backups", tag = "backups",
    params(
        ("uri" = String, Path, description = "Site uri, e.g. `www.example.com`"),
        ("limit" = Option<i64>, Query, description = "At most this many (default 50, at most 500)"),
        ("offset" = Option<i64>, Query, description = "Skip this many (default 0)"),
    ),
    responses(
        (status = 200, description = "A page of archives", body = Page<BackupView>),
        (status = 422, description = "Not a site uri, or a bad query parameter", body = ErrorBody),
    )
)]
pub async fn of_site(
    State(state): State<AppState>,
    PathParam(uri): PathParam,
    params: Params,
) -> Result<Json<Page<BackupView>>, ApiError> {
    let uri: SiteUri = parse_segment("uri", &uri)?;
    params.allow(&["limit", "offset"])?;
    let mut conn = state.pool.acquire().await?;
    let (rows, total) = db::backups::of_site(&mut conn, &uri, params.page()?).await?;
    Ok(Json(Page { items: rows.into_iter().map(Into::into).collect(), total }))
}

/// One archive.
#[utoipa::path(
    get, path = "/api/v1/backups/{id}", operation_id = "get_backup", tag = "backups",
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, description = "The archive", body = BackupView),
        (status = 404, description = "No such archive", body = ErrorBody),
        (status = 422, description = "Not a backup id", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, PathParam(id): PathParam) -> Result<Json<BackupView>, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::invalid("id", format!("backup id `{id}` is not valid: use a UUID")))?;
    let row = db::backups::get(&state.pool, id).await?.ok_or_else(|| {
        ApiError::not_found(format!("backup `{id}` does not exist; GET /api/v1/sites/<uri>/backups lists a site's"))
    })?;
    Ok(Json(row.into()))
}
