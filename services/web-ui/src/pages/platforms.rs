//! Platforms: the list with each one's sites, a platform's page with its tasks, and the
//! form that adds or changes one (admins; the API refuses it to others).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value as Tpl, context};
use serde_json::{Map, Value, json};

use super::{CHOICES, PER_PAGE, Refusal, choices, drawn, items, keep_current, offset, pages, text_of, to_task};
use crate::backend::{Backend, encode};
use crate::form::FormData;
use crate::render::{PageError, Session, SignedForm};
use crate::visitor::Visitor;

/// How many sites are on `context` (`@platform_x`), as the API counts them for the visitor.
async fn sites_on(backend: &Backend, visitor: &Visitor, context: &str) -> Option<i64> {
    let page = backend.get(visitor, &format!("/api/v1/sites?limit=1&platform={}", encode(context))).await.ok()?;
    page.get("total").and_then(Value::as_i64)
}

/// `GET /platforms?page=`.
pub async fn list(
    State(backend): State<Backend>,
    visitor: Visitor,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let (page, skip) = offset(query.get("page").map(String::as_str));
    let answer = backend.get(&visitor, &format!("/api/v1/platforms?limit={PER_PAGE}&offset={skip}")).await?;
    let total = answer.get("total").and_then(Value::as_i64).unwrap_or(0);
    let mut platforms = answer.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    for platform in &mut platforms {
        let context = text_of(platform, "context").unwrap_or_default();
        let count = sites_on(&backend, &visitor, &context).await;
        if let Value::Object(platform) = platform {
            platform.insert("sites".into(), json!(count));
        }
    }
    let html = session.render(
        "platforms.html",
        context! { section => "platforms", platforms => Tpl::from_serialize(&platforms), total, page, pages => pages(total), kept => "" },
    )?;
    Ok(html.into_response())
}

/// `GET /platforms/{name}`.
pub async fn show(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    platform_page(&backend, &visitor, &session, &name, None).await
}

/// The tasks a platform's page offers: verify, lock or unlock, and delete.
pub fn actions_for(locked: bool) -> [&'static str; 3] {
    ["verify", if locked { "unlock" } else { "lock" }, "delete"]
}

async fn platform_page(
    backend: &Backend,
    visitor: &Visitor,
    session: &Session,
    name: &str,
    refused: Option<(String, Refusal)>,
) -> Result<Response, PageError> {
    let platform = backend.get(visitor, &format!("/api/v1/platforms/{}", encode(name))).await?;
    let context = text_of(&platform, "context").unwrap_or_else(|| format!("@{name}"));
    let sites = sites_on(backend, visitor, &context).await;
    let tasks = if session.is_admin() {
        items(backend, visitor, &format!("/api/v1/tasks?limit=10&context={}", encode(&context))).await?
    } else {
        Vec::new()
    };
    let locked = platform.get("locked").and_then(Value::as_bool).unwrap_or(false);
    let actions = if session.is_admin() { actions_for(locked).to_vec() } else { Vec::new() };
    let (refused_task, refusal) = refused.unwrap_or_default();
    let html = session.render(
        "platform.html",
        context! {
            section => "platforms",
            platform => Tpl::from_serialize(&platform),
            sites, context, actions, refused_task,
            tasks => Tpl::from_serialize(&tasks),
            error => refusal.message,
        },
    )?;
    Ok(drawn(refusal.status(), html))
}

/// `POST /platforms/{name}/tasks` with `task`: starts it and shows its log.
pub async fn act(
    State(backend): State<Backend>,
    Path(name): Path<String>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let task = form.text("task").unwrap_or_default();
    let body = json!({"context": format!("@{name}"), "task": task});
    match backend.send(&visitor, Method::POST, "/api/v1/tasks", body).await {
        Ok(started) => Ok(to_task(&started.body)),
        Err(failure) => platform_page(&backend, &visitor, &session, &name, Some((task, Refusal::of(failure)?))).await,
    }
}

/// The platform form as the body of `PUT /api/v1/platforms/{name}`: a source of the kind
/// chosen with its fields, or none (`null`, the root is put there by other means).
pub fn platform_body(form: &FormData) -> Map<String, Value> {
    let mut body = form.texts(&["root", "web_server"]);
    let source = match form.text("source_kind") {
        None => Value::Null,
        Some(kind) => {
            let keys: &[&str] = match kind.as_str() {
                "git" => &["url", "ref"],
                "archive" => &["key"],
                _ => &["url", "ref", "key"],
            };
            let mut source = Map::new();
            source.insert("kind".into(), Value::String(kind));
            for key in keys {
                if let Some(value) = form.text(&format!("source_{key}")) {
                    source.insert((*key).to_owned(), Value::String(value));
                }
            }
            Value::Object(source)
        }
    };
    body.insert("source".into(), source);
    body
}

/// The platform form's values from a platform's view.
pub fn values_of(platform: &Value) -> Map<String, Value> {
    let mut values = Map::new();
    for key in ["root", "web_server"] {
        if let Some(text) = text_of(platform, key) {
            values.insert(key.to_owned(), Value::String(text));
        }
    }
    if let Some(Value::Object(source)) = platform.get("source") {
        for (key, value) in source {
            let field = if key == "kind" { "source_kind".to_owned() } else { format!("source_{key}") };
            values.insert(field, value.clone());
        }
    }
    values
}

/// `GET /platforms/new`.
pub async fn new_form(State(backend): State<Backend>, visitor: Visitor) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let values = Map::from_iter([("verify".to_owned(), Value::String("on".into()))]);
    platform_form(&backend, &visitor, &session, None, values, Refusal::default()).await
}

/// `POST /platforms/new`: saves the platform, then (when asked) verifies it and shows the log.
pub async fn create(
    State(backend): State<Backend>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let again = |refusal| platform_form(&backend, &visitor, &session, None, form.values(), refusal);
    let Some(name) = form.text("name") else {
        return again(Refusal::missing("name", "give the platform's name, such as platform_wordpress")).await;
    };
    let path = format!("/api/v1/platforms/{}", encode(&name));
    if backend.get(&visitor, &path).await.is_ok() {
        let mut refusal = Refusal::missing("name", &format!("platform `{name}` exists already; choose another name"));
        refusal.status = Some(axum::http::StatusCode::CONFLICT);
        return again(refusal).await;
    }
    if let Err(failure) = backend.send(&visitor, Method::PUT, &path, Value::Object(platform_body(&form))).await {
        return again(Refusal::of(failure)?).await;
    }
    if !form.checked("verify") {
        return Ok(Redirect::to(&format!("/platforms/{}", encode(&name))).into_response());
    }
    match backend
        .send(&visitor, Method::POST, "/api/v1/tasks", json!({"context": format!("@{name}"), "task": "verify"}))
        .await
    {
        Ok(task) => Ok(to_task(&task.body)),
        Err(failure) => {
            platform_page(&backend, &visitor, &session, &name, Some(("verify".into(), Refusal::of(failure)?))).await
        }
    }
}

/// `GET /platforms/{name}/edit`.
pub async fn edit_form(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let platform = backend.get(&visitor, &format!("/api/v1/platforms/{}", encode(&name))).await?;
    platform_form(&backend, &visitor, &session, Some(&name), values_of(&platform), Refusal::default()).await
}

/// `POST /platforms/{name}/edit`.
pub async fn update(
    State(backend): State<Backend>,
    Path(name): Path<String>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let path = format!("/api/v1/platforms/{}", encode(&name));
    backend.get(&visitor, &path).await?;
    match backend.send(&visitor, Method::PUT, &path, Value::Object(platform_body(&form))).await {
        Ok(_) => Ok(Redirect::to(&format!("/platforms/{}", encode(&name))).into_response()),
        Err(failure) => {
            platform_form(&backend, &visitor, &session, Some(&name), form.values(), Refusal::of(failure)?).await
        }
    }
}

async fn platform_form(
    backend: &Backend,
    visitor: &Visitor,
    session: &Session,
    name: Option<&str>,
    values: Map<String, Value>,
    refusal: Refusal,
) -> Result<Response, PageError> {
    let servers = items(backend, visitor, &format!("/api/v1/servers?limit={CHOICES}")).await?;
    let servers: Vec<Value> = servers.into_iter().filter(|s| s.get("http").is_some_and(|h| !h.is_null())).collect();
    let mut web_servers = choices(&servers, |s| text_of(s, "context"), |s| text_of(s, "name").unwrap_or_default());
    keep_current(&mut web_servers, values.get("web_server").and_then(Value::as_str));
    let kinds = [
        ("", "none: the root is put there by other means"),
        ("git", "a git repository"),
        ("archive", "a .tar.gz in the backup store"),
    ];
    let action = match name {
        Some(name) => format!("/platforms/{}/edit", encode(name)),
        None => "/platforms/new".to_owned(),
    };
    let html = session.render(
        "platform_form.html",
        context! {
            section => "platforms",
            name, action, web_servers, kinds,
            values => Tpl::from_serialize(&values),
            errors => Tpl::from_serialize(&refusal.errors),
            error => refusal.message,
        },
    )?;
    Ok(drawn(refusal.status(), html))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::form;

    #[test]
    fn a_source_takes_the_fields_of_its_kind() {
        let git = platform_body(&form(&[
            ("root", "/var/aegir/platforms/wp"),
            ("web_server", "@server_master"),
            ("source_kind", "git"),
            ("source_url", "https://git.example.com/wp.git"),
            ("source_ref", ""),
            ("source_key", "left.tar.gz"),
        ]));
        assert_eq!(
            Value::Object(git),
            json!({"root": "/var/aegir/platforms/wp", "web_server": "@server_master",
                   "source": {"kind": "git", "url": "https://git.example.com/wp.git"}})
        );
        let none = platform_body(&form(&[("root", "/x"), ("source_kind", ""), ("source_url", "https://a")]));
        assert_eq!(none["source"], Value::Null);
        let archive = platform_body(&form(&[("source_kind", "archive"), ("source_key", "p/wp.tar.gz")]));
        assert_eq!(archive["source"], json!({"kind": "archive", "key": "p/wp.tar.gz"}));
    }

    #[test]
    fn an_edit_starts_from_the_platform_as_it_is() {
        let platform = json!({"root": "/r", "web_server": "@server_a", "source": {"kind": "git", "url": "https://g", "ref": "main"}});
        let values = values_of(&platform);
        assert_eq!(values["source_kind"], "git");
        assert_eq!(values["source_ref"], "main");
    }
}
