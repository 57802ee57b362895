//! One module per page or group of pages, and what their forms share.

pub mod clients;
pub mod dashboard;
pub mod login;
pub mod platforms;
pub mod servers;
pub mod sites;
pub mod tasks;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Map, Value};

use crate::backend::{ApiFailure, Backend, encode};
use crate::render::PageError;
use crate::visitor::Visitor;

/// Rows a list page shows at a time.
pub const PER_PAGE: i64 = 50;
/// The most a form's choices (platforms, servers, clients) hold: the API's page limit.
pub const CHOICES: i64 = 500;

/// `?page=N` (1-based) as an API offset; anything unreadable is the first page.
pub fn offset(page: Option<&str>) -> (i64, i64) {
    let page = page.and_then(|p| p.parse::<i64>().ok()).filter(|p| *p >= 1).unwrap_or(1);
    (page, (page - 1) * PER_PAGE)
}

/// The number of pages `total` rows fill.
pub fn pages(total: i64) -> i64 {
    ((total + PER_PAGE - 1) / PER_PAGE).max(1)
}

/// A form the API refused, drawn again: the status the API gave, its message, and that
/// message beside the form field it names.
#[derive(Debug, Default)]
pub struct Refusal {
    pub status: Option<StatusCode>,
    pub message: Option<String>,
    /// Form field name → message. The API's nested fields (`http.port`) are the form's
    /// flat ones (`http_port`).
    pub errors: Map<String, Value>,
}

impl Refusal {
    /// The API's refusal; an expired session is not shown on the form but sends the
    /// visitor to sign in.
    pub fn of(failure: ApiFailure) -> Result<Self, PageError> {
        if failure.status == StatusCode::UNAUTHORIZED {
            return Err(failure.into());
        }
        let mut errors = Map::new();
        if let Some(field) = &failure.field {
            errors.insert(form_field(field), Value::String(failure.message.clone()));
        }
        Ok(Self { status: Some(failure.status), message: Some(failure.message), errors })
    }

    /// A form missing what the request cannot be made without (the uri or name in its path).
    pub fn missing(field: &str, message: &str) -> Self {
        let mut errors = Map::new();
        errors.insert(field.to_owned(), Value::String(message.to_owned()));
        Self { status: Some(StatusCode::UNPROCESSABLE_ENTITY), message: Some(message.to_owned()), errors }
    }

    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(StatusCode::OK)
    }
}

/// The form field an API field is shown beside: `db.admin_user` → `db_admin_user`.
pub fn form_field(api_field: &str) -> String {
    api_field.replace('.', "_")
}

/// A page drawn with the status it answers.
pub fn drawn(status: StatusCode, html: Html<String>) -> Response {
    (status, html).into_response()
}

/// After a form that started a task: its page, where the log follows it.
pub fn to_task(task: &Value) -> Response {
    match task.get("id").and_then(Value::as_str) {
        Some(id) => Redirect::to(&format!("/tasks/{}", encode(id))).into_response(),
        None => Redirect::to("/tasks").into_response(),
    }
}

/// The items of an API list, or none when the API refuses it to this visitor (a client
/// user asking for servers): choices the visitor may not see are not offered.
pub async fn items(backend: &Backend, visitor: &Visitor, path: &str) -> Result<Vec<Value>, PageError> {
    match backend.get(visitor, path).await {
        Ok(page) => Ok(page.get("items").and_then(Value::as_array).cloned().unwrap_or_default()),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(e.into()),
        Err(_) => Ok(Vec::new()),
    }
}

/// `(value, label)` pairs for a `<select>`, from list items.
pub fn choices(
    items: &[Value],
    value: impl Fn(&Value) -> Option<String>,
    label: impl Fn(&Value) -> String,
) -> Vec<(String, String)> {
    items.iter().filter_map(|item| value(item).map(|v| (v, label(item)))).collect()
}

/// Keeps the current value selectable even when the list no longer offers it (a
/// platform no longer granted, a server on a later page), so saving does not change it.
pub fn keep_current(choices: &mut Vec<(String, String)>, current: Option<&str>) {
    if let Some(current) = current.filter(|c| !c.is_empty())
        && !choices.iter().any(|(v, _)| v == current)
    {
        choices.insert(0, (current.to_owned(), current.to_owned()));
    }
}

/// A string field of a view.
pub fn text_of(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_api_fields_name_flat_form_fields() {
        assert_eq!(form_field("http.port"), "http_port");
        assert_eq!(form_field("source.url"), "source_url");
        assert_eq!(form_field("uri"), "uri");
    }

    #[test]
    fn a_refusal_shows_beside_its_field() {
        let failure =
            ApiFailure { status: StatusCode::CONFLICT, field: Some("db.port".into()), message: "taken".into() };
        let refusal = Refusal::of(failure).unwrap();
        assert_eq!(refusal.status(), StatusCode::CONFLICT);
        assert_eq!(refusal.errors.get("db_port"), Some(&Value::String("taken".into())));
        let expired = ApiFailure { status: StatusCode::UNAUTHORIZED, field: None, message: "sign in".into() };
        assert!(Refusal::of(expired).is_err());
    }

    #[test]
    fn the_current_choice_stays_offered() {
        let mut list = vec![("@platform_a".to_owned(), "a".to_owned())];
        keep_current(&mut list, Some("@platform_b"));
        keep_current(&mut list, Some("@platform_a"));
        keep_current(&mut list, None);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].0, "@platform_b");
    }
}
