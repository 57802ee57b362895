//! Servers (admins; the API refuses them to others): the list, a server's page with its
//! services, and the form that adds or changes one. The db admin password is sent, never
//! shown: a server's view only says whether one is set.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value as Tpl, context};
use serde_json::{Map, Value, json};

use super::{CHOICES, PER_PAGE, Refusal, choices, drawn, items, keep_current, offset, pages, text_of, to_task};
use crate::backend::{Backend, encode};
use crate::form::{FormData, number_or_text};
use crate::render::{PageError, Session, SignedForm};
use crate::visitor::Visitor;

/// `GET /servers?page=`.
pub async fn list(
    State(backend): State<Backend>,
    visitor: Visitor,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let (page, skip) = offset(query.get("page").map(String::as_str));
    let answer = backend.get(&visitor, &format!("/api/v1/servers?limit={PER_PAGE}&offset={skip}")).await?;
    let total = answer.get("total").and_then(Value::as_i64).unwrap_or(0);
    let html = session.render(
        "servers.html",
        context! {
            section => "servers",
            servers => Tpl::from_serialize(answer.get("items")),
            total, page, pages => pages(total), kept => "",
        },
    )?;
    Ok(html.into_response())
}

/// `GET /servers/{name}`.
pub async fn show(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    server_page(&backend, &visitor, &session, &name, None).await
}

async fn server_page(
    backend: &Backend,
    visitor: &Visitor,
    session: &Session,
    name: &str,
    refusal: Option<Refusal>,
) -> Result<Response, PageError> {
    let server = backend.get(visitor, &format!("/api/v1/servers/{}", encode(name))).await?;
    let context = text_of(&server, "context").unwrap_or_else(|| format!("@{name}"));
    let tasks = items(backend, visitor, &format!("/api/v1/tasks?limit=10&context={}", encode(&context))).await?;
    let refusal = refusal.unwrap_or_default();
    let html = session.render(
        "server.html",
        context! {
            section => "servers",
            server => Tpl::from_serialize(&server),
            tasks => Tpl::from_serialize(&tasks),
            error => refusal.message,
        },
    )?;
    Ok(drawn(refusal.status(), html))
}

/// `POST /servers/{name}/tasks` with `task` (`verify`): starts it and shows its log.
pub async fn act(
    State(backend): State<Backend>,
    Path(name): Path<String>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let task = form.text("task").unwrap_or_default();
    let body = json!({"context": format!("@{name}"), "task": task});
    match backend.send(&visitor, Method::POST, "/api/v1/tasks", body).await {
        Ok(started) => Ok(to_task(&started.body)),
        Err(failure) => server_page(&backend, &visitor, &session, &name, Some(Refusal::of(failure)?)).await,
    }
}

/// The server form as the body of `PUT /api/v1/servers/{name}`: a service is sent when
/// its type is chosen, with the fields given; a blank password keeps the stored one.
pub fn server_body(form: &FormData) -> Map<String, Value> {
    let mut body = form.texts(&["remote_host", "dns_server"]);
    if let Some(service_type) = form.text("http_service_type") {
        let mut http = Map::from_iter([("service_type".to_owned(), Value::String(service_type))]);
        if let Some(port) = form.text("http_port") {
            http.insert("port".into(), number_or_text(port));
        }
        body.insert("http".into(), Value::Object(http));
    }
    if let Some(service_type) = form.text("db_service_type") {
        let mut db = Map::from_iter([("service_type".to_owned(), Value::String(service_type))]);
        if let Some(host) = form.text("db_host") {
            db.insert("host".into(), Value::String(host));
        }
        if let Some(port) = form.text("db_port") {
            db.insert("port".into(), number_or_text(port));
        }
        if let Some(user) = form.text("db_admin_user") {
            db.insert("admin_user".into(), Value::String(user));
        }
        // A password is taken as typed: spaces may be part of it.
        if let Some(password) = form.get("db_admin_password").filter(|p| !p.is_empty()) {
            db.insert("admin_password".into(), Value::String(password.to_owned()));
        }
        body.insert("db".into(), Value::Object(db));
    }
    if let Some(service_type) = form.text("dns_service_type") {
        body.insert("dns".into(), json!({"service_type": service_type}));
    }
    body
}

/// The server form's values from a server's view; never a password.
pub fn values_of(server: &Value) -> Map<String, Value> {
    let mut values = Map::new();
    let mut put = |field: &str, value: Option<&Value>| {
        match value {
            Some(Value::String(text)) => values.insert(field.to_owned(), Value::String(text.clone())),
            Some(Value::Number(n)) => values.insert(field.to_owned(), Value::String(n.to_string())),
            _ => None,
        };
    };
    put("remote_host", server.get("remote_host"));
    put("dns_server", server.get("dns_server"));
    for (service, keys) in [
        ("http", &["service_type", "port"][..]),
        ("db", &["service_type", "host", "port", "admin_user"]),
        ("dns", &["service_type"]),
    ] {
        if let Some(view) = server.get(service).filter(|v| v.is_object()) {
            for key in keys {
                put(&format!("{service}_{key}"), view.get(*key));
            }
        }
    }
    values
}

/// `GET /servers/new`.
pub async fn new_form(State(backend): State<Backend>, visitor: Visitor) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let values = json!({"remote_host": "localhost", "http_port": "80", "db_port": "3306", "db_admin_user": "root", "verify": "on"});
    let Value::Object(values) = values else { unreachable!("an object literal") };
    server_form(&backend, &visitor, &session, None, values, Refusal::default(), false).await
}

/// `POST /servers/new`: saves the server, then (when asked) verifies it and shows the log.
pub async fn create(
    State(backend): State<Backend>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let again = |refusal| server_form(&backend, &visitor, &session, None, without_password(&form), refusal, false);
    let Some(name) = form.text("name") else {
        return again(Refusal::missing("name", "give the server's name, such as server_web1")).await;
    };
    let path = format!("/api/v1/servers/{}", encode(&name));
    if backend.get(&visitor, &path).await.is_ok() {
        let mut refusal = Refusal::missing("name", &format!("server `{name}` exists already; choose another name"));
        refusal.status = Some(StatusCode::CONFLICT);
        return again(refusal).await;
    }
    if let Err(failure) = backend.send(&visitor, Method::PUT, &path, Value::Object(server_body(&form))).await {
        return again(Refusal::of(failure)?).await;
    }
    if !form.checked("verify") {
        return Ok(Redirect::to(&format!("/servers/{}", encode(&name))).into_response());
    }
    match backend
        .send(&visitor, Method::POST, "/api/v1/tasks", json!({"context": format!("@{name}"), "task": "verify"}))
        .await
    {
        Ok(task) => Ok(to_task(&task.body)),
        Err(failure) => server_page(&backend, &visitor, &session, &name, Some(Refusal::of(failure)?)).await,
    }
}

/// `GET /servers/{name}/edit`.
pub async fn edit_form(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let server = backend.get(&visitor, &format!("/api/v1/servers/{}", encode(&name))).await?;
    let password_set = server.pointer("/db/admin_password_set").and_then(Value::as_bool).unwrap_or(false);
    server_form(&backend, &visitor, &session, Some(&name), values_of(&server), Refusal::default(), password_set).await
}

/// `POST /servers/{name}/edit`.
pub async fn update(
    State(backend): State<Backend>,
    Path(name): Path<String>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let path = format!("/api/v1/servers/{}", encode(&name));
    let current = backend.get(&visitor, &path).await?;
    match backend.send(&visitor, Method::PUT, &path, Value::Object(server_body(&form))).await {
        Ok(_) => Ok(Redirect::to(&format!("/servers/{}", encode(&name))).into_response()),
        Err(failure) => {
            let set = current.pointer("/db/admin_password_set").and_then(Value::as_bool).unwrap_or(false);
            server_form(&backend, &visitor, &session, Some(&name), without_password(&form), Refusal::of(failure)?, set)
                .await
        }
    }
}

/// A refused form's values to draw again, without the password typed into it.
fn without_password(form: &FormData) -> Map<String, Value> {
    let mut values = form.values();
    values.remove("db_admin_password");
    values
}

async fn server_form(
    backend: &Backend,
    visitor: &Visitor,
    session: &Session,
    name: Option<&str>,
    values: Map<String, Value>,
    refusal: Refusal,
    password_set: bool,
) -> Result<Response, PageError> {
    let servers = items(backend, visitor, &format!("/api/v1/servers?limit={CHOICES}")).await?;
    let servers: Vec<Value> = servers.into_iter().filter(|s| s.get("dns").is_some_and(|d| !d.is_null())).collect();
    let mut dns_servers = choices(&servers, |s| text_of(s, "context"), |s| text_of(s, "name").unwrap_or_default());
    keep_current(&mut dns_servers, values.get("dns_server").and_then(Value::as_str));
    let action = match name {
        Some(name) => format!("/servers/{}/edit", encode(name)),
        None => "/servers/new".to_owned(),
    };
    let html = session.render(
        "server_form.html",
        context! {
            section => "servers",
            name, action, dns_servers, password_set,
            http_types => [("nginx", "nginx"), ("apache", "apache")],
            db_types => [("mariadb", "MariaDB"), ("mysql", "MySQL")],
            dns_types => [("bind", "BIND")],
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
    fn services_are_sent_when_chosen() {
        let body = server_body(&form(&[
            ("remote_host", "web1.example.com"),
            ("http_service_type", "nginx"),
            ("http_port", "8080"),
            ("db_service_type", ""),
            ("db_port", "3306"),
            ("dns_service_type", "bind"),
            ("dns_server", ""),
        ]));
        assert_eq!(
            Value::Object(body),
            json!({"remote_host": "web1.example.com", "http": {"service_type": "nginx", "port": 8080},
                   "dns": {"service_type": "bind"}})
        );
    }

    #[test]
    fn a_blank_password_keeps_the_stored_one() {
        let fields = [("db_service_type", "mariadb"), ("db_admin_user", "root"), ("db_admin_password", "")];
        assert_eq!(server_body(&form(&fields))["db"], json!({"service_type": "mariadb", "admin_user": "root"}));
        let fields = [("db_service_type", "mariadb"), ("db_admin_password", " s3cret ")];
        assert_eq!(server_body(&form(&fields))["db"]["admin_password"], " s3cret ");
        assert!(!without_password(&form(&fields)).contains_key("db_admin_password"));
    }

    #[test]
    fn an_edit_starts_from_the_server_as_it_is_without_its_password() {
        let server = json!({"remote_host": "localhost", "http": {"service_type": "nginx", "port": 80},
            "db": {"service_type": "mariadb", "host": "127.0.0.1", "port": 3306, "admin_user": "root", "admin_password_set": true},
            "dns": null, "dns_server": null});
        let values = values_of(&server);
        assert_eq!(values["http_port"], "80");
        assert_eq!(values["db_host"], "127.0.0.1");
        assert!(!values.contains_key("dns_service_type"));
        assert!(!values.keys().any(|k| k.contains("password")));
    }
}
