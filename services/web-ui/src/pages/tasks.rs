//! Tasks: the list, and a task's page whose log streams live while it runs.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{Html, Redirect};
use minijinja::{Value as Tpl, context};

use super::{PER_PAGE, offset, pages};
use crate::backend::{Backend, encode};
use crate::render::{PageError, Session, SignedForm};
use crate::visitor::Visitor;

/// `GET /tasks?status=&context=&page=`.
pub async fn list(
    State(backend): State<Backend>,
    visitor: Visitor,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let (page, skip) = offset(query.get("page").map(String::as_str));
    let mut path = format!("/api/v1/tasks?limit={PER_PAGE}&offset={skip}");
    let mut kept = String::new();
    for key in ["status", "context"] {
        if let Some(value) = query.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            path.push_str(&format!("&{key}={}", encode(value)));
            kept.push_str(&format!("&{key}={}", encode(value)));
        }
    }
    let answer = backend.get(&visitor, &path).await?;
    let total = answer.get("total").and_then(serde_json::Value::as_i64).unwrap_or(0);
    session.render(
        "tasks.html",
        context! {
            section => "tasks",
            tasks => Tpl::from_serialize(answer.get("items")),
            total, page, pages => pages(total), kept,
            status => query.get("status"), context => query.get("context"),
        },
    )
}

/// `GET /tasks/{id}`: the task and its log so far; the page's script follows the rest.
pub async fn show(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let id = encode(&id);
    let task = backend.get(&visitor, &format!("/api/v1/tasks/{id}")).await?;
    let log = backend.get(&visitor, &format!("/api/v1/tasks/{id}/log")).await?;
    let lines = log.get("items").cloned().unwrap_or_default();
    let last_seq = lines.as_array().and_then(|l| l.last()).and_then(|l| l.get("seq")).cloned();
    session.render(
        "task.html",
        context! {
            section => "tasks",
            task => Tpl::from_serialize(&task),
            lines => Tpl::from_serialize(&lines),
            last_seq => Tpl::from_serialize(&last_seq),
        },
    )
}

/// `POST /tasks/{id}/cancel`: cancels a task that has not started.
pub async fn cancel(
    State(backend): State<Backend>,
    Path(id): Path<String>,
    SignedForm { visitor, .. }: SignedForm,
) -> Result<Redirect, PageError> {
    let id = encode(&id);
    backend.call(&visitor, Method::POST, &format!("/api/v1/tasks/{id}/cancel"), None).await?;
    Ok(Redirect::to(&format!("/tasks/{id}")))
}
