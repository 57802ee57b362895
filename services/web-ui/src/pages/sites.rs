//! The sites: a searchable, paged list.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Html;
use minijinja::{Value as Tpl, context};

use super::{PER_PAGE, offset, pages};
use crate::backend::{Backend, encode};
use crate::render::{PageError, Session};
use crate::visitor::Visitor;

/// Filters a list takes from the page's query string, passed on to the API as they are.
const FILTERS: [&str; 4] = ["search", "status", "platform", "client"];

/// `GET /sites?search=&status=&platform=&client=&page=`.
pub async fn list(
    State(backend): State<Backend>,
    visitor: Visitor,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let (page, skip) = offset(query.get("page").map(String::as_str));
    let mut path = format!("/api/v1/sites?limit={PER_PAGE}&offset={skip}");
    let mut kept = String::new();
    for key in FILTERS {
        if let Some(value) = query.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            path.push_str(&format!("&{key}={}", encode(value)));
            kept.push_str(&format!("&{key}={}", encode(value)));
        }
    }
    let answer = backend.get(&visitor, &path).await?;
    let total = answer.get("total").and_then(serde_json::Value::as_i64).unwrap_or(0);
    let filters: HashMap<&str, &str> =
        FILTERS.iter().filter_map(|key| query.get(*key).map(|v| (*key, v.as_str()))).collect();
    session.render(
        "sites.html",
        context! {
            section => "sites",
            sites => Tpl::from_serialize(answer.get("items")),
            total, page, pages => pages(total), kept, filters,
        },
    )
}
