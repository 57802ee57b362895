//! `/api/v1/sites`: read-only until site install exists.

use aegir_contract::SiteUri;
use axum::Json;
use axum::extract::State;

use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Params, PathParam, parse_segment};
use crate::state::AppState;
use crate::views::{Page, SiteView};

/// One site.
#[utoipa::path(
    get, path = "/api/v1/sites/{uri}", operation_id = "get_site", tag = "sites",
    params(("uri" = String, Path, description = "Site uri, e.g. `www.example.com`")),
    responses(
        (status = 200, description = "The site", body = SiteView),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 422, description = "Not a site uri", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<AppState>, PathParam(uri): PathParam) -> Result<Json<SiteView>, ApiError> {
    let uri: SiteUri = parse_segment("uri", &uri)?;
    let row = db::sites::get(&state.pool, &uri)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("site `@{uri}` does not exist")))?;
    Ok(Json(row.into()))
}

/// Sites, ordered by uri.
#[utoipa::path(
    get, path = "/api/v1/sites", operation_id = "list_sites", tag = "sites",
    params(
        ("limit" = Option<i64>, Query, description = "At most this many (default 50, at most 500)"),
        ("offset" = Option<i64>, Query, description = "Skip this many (default 0)"),
    ),
    responses(
        (status = 200, description = "A page of sites", body = Page<SiteView>),
        (status = 422, description = "A bad query parameter", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Json<Page<SiteView>>, ApiError> {
    params.allow(&["limit", "offset"])?;
    let (rows, total) = db::sites::list(&state.pool, params.page()?).await?;
    Ok(Json(Page { items: rows.into_iter().map(Into::into).collect(), total }))
}
