//! Signing in and out.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde_json::json;

use crate::backend::Backend;
use crate::form::FormData;
use crate::render::{PageError, Session, page};
use crate::visitor::{SESSION_COOKIE, Visitor};

/// `GET /login`: the sign-in form (or, signed in already, where `next` points).
pub async fn form(
    State(backend): State<Backend>,
    visitor: Visitor,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let next = safe_next(query.get("next").map(String::as_str));
    if visitor.session.is_some() && Session::of(&backend, &visitor).await.is_ok() {
        return Ok(Redirect::to(next).into_response());
    }
    Ok(page("login.html", context! { next, user => "", message => None::<String> })?.into_response())
}

/// `POST /login`: signs in through the API, which sets the session cookie.
pub async fn submit(
    State(backend): State<Backend>,
    visitor: Visitor,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = FormData(fields);
    let next = safe_next(fields.get("next"));
    let user = fields.get("user").unwrap_or_default().trim().to_owned();
    let password = fields.get("password").unwrap_or_default().to_owned();
    let body = json!({ "user": user, "password": password });
    match backend.send(&visitor, Method::POST, "/api/v1/login", body).await {
        Ok(answer) => {
            let mut response = Redirect::to(next).into_response();
            if let Some(cookie) = answer.headers.get(header::SET_COOKIE) {
                response.headers_mut().insert(header::SET_COOKIE, cookie.clone());
            }
            Ok(response)
        }
        Err(failure) => {
            let status = failure.status;
            let html = page("login.html", context! { next, user, message => failure.message })?;
            Ok((status, html).into_response())
        }
    }
}

/// `POST /logout`: ends the session (the API revokes its token) and forgets the cookie.
pub async fn logout(
    State(backend): State<Backend>,
    visitor: Visitor,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = FormData(fields);
    if let Ok(session) = Session::of(&backend, &visitor).await {
        session.check_form(&visitor, fields.get("csrf"))?;
        backend.call(&visitor, Method::POST, "/api/v1/logout", None).await?;
    }
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let expired = HeaderValue::from_str(&expired)
        .map_err(|_| PageError::Refused(StatusCode::INTERNAL_SERVER_ERROR, "cookie".into()))?;
    response.headers_mut().insert(header::SET_COOKIE, expired);
    Ok(response)
}

/// Where to go after signing in: a path of ours, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => next,
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/sites?search=a")), "/sites?search=a");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
