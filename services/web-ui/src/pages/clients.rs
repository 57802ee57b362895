//! Clients (admins; a client user sees only its own through the API): the list, a
//! client's page with its sites, users and granted platforms, and the form that adds or
//! changes one.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value as Tpl, context};
use serde_json::{Map, Value};

use super::{CHOICES, PER_PAGE, Refusal, choices, drawn, items, offset, pages, text_of};
use crate::backend::{Backend, encode};
use crate::form::FormData;
use crate::render::{PageError, Session, SignedForm};
use crate::visitor::Visitor;

/// How many sites `client` has, as the API counts them for the visitor.
async fn sites_of(backend: &Backend, visitor: &Visitor, client: &str) -> Option<i64> {
    let page = backend.get(visitor, &format!("/api/v1/sites?limit=1&client={}", encode(client))).await.ok()?;
    page.get("total").and_then(Value::as_i64)
}

/// `GET /clients?page=`.
pub async fn list(
    State(backend): State<Backend>,
    visitor: Visitor,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let (page, skip) = offset(query.get("page").map(String::as_str));
    let answer = backend.get(&visitor, &format!("/api/v1/clients?limit={PER_PAGE}&offset={skip}")).await?;
    let total = answer.get("total").and_then(Value::as_i64).unwrap_or(0);
    let mut clients = answer.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    for client in &mut clients {
        let name = text_of(client, "name").unwrap_or_default();
        let count = sites_of(&backend, &visitor, &name).await;
        if let Value::Object(client) = client {
            client.insert("sites".into(), Value::from(count));
        }
    }
    let html = session.render(
        "clients.html",
        context! { section => "clients", clients => Tpl::from_serialize(&clients), total, page, pages => pages(total), kept => "" },
    )?;
    Ok(html.into_response())
}

/// `GET /clients/{name}`.
pub async fn show(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    client_page(&backend, &visitor, &session, &name, Refusal::default()).await
}

async fn client_page(
    backend: &Backend,
    visitor: &Visitor,
    session: &Session,
    name: &str,
    refusal: Refusal,
) -> Result<Response, PageError> {
    let enc = encode(name);
    let client = backend.get(visitor, &format!("/api/v1/clients/{enc}")).await?;
    let sites = sites_of(backend, visitor, name).await;
    let (mut granted, mut grantable, mut users) = (Vec::new(), Vec::new(), Vec::new());
    if session.is_admin() {
        let grants = backend.get(visitor, &format!("/api/v1/clients/{enc}/platforms")).await?;
        granted = grants.get("platforms").and_then(Value::as_array).cloned().unwrap_or_default();
        let platforms = items(backend, visitor, &format!("/api/v1/platforms?limit={CHOICES}")).await?;
        grantable = choices(&platforms, |p| text_of(p, "context"), |p| text_of(p, "name").unwrap_or_default());
        grantable.retain(|(context, _)| !granted.iter().any(|g| g.as_str() == Some(context)));
        let all = items(backend, visitor, &format!("/api/v1/users?limit={CHOICES}")).await?;
        users = all.into_iter().filter(|u| u.get("client").and_then(Value::as_str) == Some(name)).collect();
    }
    let html = session.render(
        "client.html",
        context! {
            section => "clients",
            client => Tpl::from_serialize(&client),
            sites, grantable,
            granted => Tpl::from_serialize(&granted),
            users => Tpl::from_serialize(&users),
            error => refusal.message,
        },
    )?;
    Ok(drawn(refusal.status(), html))
}

/// `POST /clients/{name}/platforms` with `platform` and `change` (`grant` or `revoke`):
/// the client's users may (no longer) see the platform and put sites on it.
pub async fn grant(
    State(backend): State<Backend>,
    Path(name): Path<String>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let Some(platform) = form.text("platform") else {
        let refusal = Refusal::missing("platform", "choose a platform to grant");
        return client_page(&backend, &visitor, &session, &name, refusal).await;
    };
    let method = if form.get("change") == Some("revoke") { Method::DELETE } else { Method::PUT };
    let path = format!("/api/v1/clients/{}/platforms/{}", encode(&name), encode(&platform));
    match backend.call(&visitor, method, &path, None).await {
        Ok(_) => Ok(Redirect::to(&format!("/clients/{}", encode(&name))).into_response()),
        Err(failure) => client_page(&backend, &visitor, &session, &name, Refusal::of(failure)?).await,
    }
}

/// The client form as the body of `PUT /api/v1/clients/{name}` (blank fields are cleared).
pub fn client_body(form: &FormData) -> Map<String, Value> {
    form.texts(&["title", "email"])
}

/// `GET /clients/new`.
pub async fn new_form(State(backend): State<Backend>, visitor: Visitor) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    client_form(&session, None, Map::new(), Refusal::default())
}

/// `POST /clients/new`.
pub async fn create(
    State(backend): State<Backend>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let Some(name) = form.text("name") else {
        let refusal = Refusal::missing("name", "give the client's name, such as acme");
        return client_form(&session, None, form.values(), refusal);
    };
    let path = format!("/api/v1/clients/{}", encode(&name));
    if backend.get(&visitor, &path).await.is_ok() {
        let mut refusal = Refusal::missing("name", &format!("client `{name}` exists already; choose another name"));
        refusal.status = Some(StatusCode::CONFLICT);
        return client_form(&session, None, form.values(), refusal);
    }
    match backend.send(&visitor, Method::PUT, &path, Value::Object(client_body(&form))).await {
        Ok(_) => Ok(Redirect::to(&format!("/clients/{}", encode(&name))).into_response()),
        Err(failure) => client_form(&session, None, form.values(), Refusal::of(failure)?),
    }
}

/// `GET /clients/{name}/edit`.
pub async fn edit_form(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let client = backend.get(&visitor, &format!("/api/v1/clients/{}", encode(&name))).await?;
    let values = ["title", "email"]
        .into_iter()
        .filter_map(|key| text_of(&client, key).map(|v| (key.to_owned(), Value::String(v))))
        .collect();
    client_form(&session, Some(&name), values, Refusal::default())
}

/// `POST /clients/{name}/edit`.
pub async fn update(
    State(backend): State<Backend>,
    Path(name): Path<String>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let path = format!("/api/v1/clients/{}", encode(&name));
    backend.get(&visitor, &path).await?;
    match backend.send(&visitor, Method::PUT, &path, Value::Object(client_body(&form))).await {
        Ok(_) => Ok(Redirect::to(&format!("/clients/{}", encode(&name))).into_response()),
        Err(failure) => client_form(&session, Some(&name), form.values(), Refusal::of(failure)?),
    }
}

fn client_form(
    session: &Session,
    name: Option<&str>,
    values: Map<String, Value>,
    refusal: Refusal,
) -> Result<Response, PageError> {
    let action = match name {
        Some(name) => format!("/clients/{}/edit", encode(name)),
        None => "/clients/new".to_owned(),
    };
    let html = session.render(
        "client_form.html",
        context! {
            section => "clients",
            name, action,
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

    #[test]
    fn blank_client_fields_are_cleared() {
        let form =
            FormData(vec![("csrf".into(), "x".into()), ("title".into(), "Acme".into()), ("email".into(), "".into())]);
        assert_eq!(Value::Object(client_body(&form)), serde_json::json!({"title": "Acme"}));
    }
}
