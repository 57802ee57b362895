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

/// The platform, server and client pages drawn with data shaped like the API's, so a
/// template calling something minijinja lacks fails here rather than in front of a user.
#[cfg(test)]
mod rendered {
    use minijinja::context;
    use serde_json::json;

    use crate::render::Session;

    fn admin() -> Session {
        Session { me: json!({"user": "ada", "role": "admin", "client": null}), csrf: "t0ken".into() }
    }

    fn no_choices() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn platform_pages_draw() {
        let platform = json!({"name": "platform_wp", "context": "@platform_wp", "root": "/var/aegir/platforms/wp",
            "web_server": "@server_master", "source": {"kind": "git", "url": "https://g.example.com/wp.git", "ref": "6.4"},
            "platform_type": "wordpress", "app_version": "6.4.2", "profiles": null, "locked": true, "packages": [],
            "status": "verified", "verified_at": "2026-11-26T16:50:02Z", "sites": 3});
        let session = admin();
        let list = session
            .render(
                "platforms.html",
                context! { section => "platforms", platforms => json!([platform.clone()]),
                total => 1, page => 1, pages => 1, kept => "" },
            )
            .unwrap()
            .0;
        assert!(list.contains("3 sites") && list.contains("platform=%40platform_wp"), "{list}");
        let page = session
            .render(
                "platform.html",
                context! { section => "platforms", platform => platform.clone(), sites => 3,
                context => "@platform_wp", actions => super::platforms::actions_for(true), refused_task => "",
                tasks => json!([]), error => None::<String> },
            )
            .unwrap()
            .0;
        assert!(page.contains(r#"id="action-unlock""#) && !page.contains(r#"id="action-lock""#), "{page}");
        let form = session
            .render(
                "platform_form.html",
                context! { section => "platforms", name => None::<String>, action => "/platforms/new",
                web_servers => vec![("@server_master", "server_master")], kinds => vec![("", "none"), ("git", "git")],
                values => super::platforms::values_of(&platform), errors => json!({"source_url": "not a url"}),
                error => "not a url" },
            )
            .unwrap()
            .0;
        assert!(form.contains(r#"<p class="error" id="e-source_url">not a url</p>"#), "{form}");
    }

    #[test]
    fn server_pages_draw_without_the_password() {
        let server = json!({"name": "server_master", "context": "@server_master", "remote_host": "localhost",
            "http": {"service_type": "nginx", "port": 80, "version": "nginx/1.22", "php_versions": ["8.2"], "php_default_version": "8.2"},
            "db": {"service_type": "mariadb", "host": "127.0.0.1", "port": 3306, "admin_user": "root", "admin_password_set": true, "version": null},
            "dns": null, "dns_server": null, "status": "verified", "verified_at": null});
        let session = admin();
        let list = session
            .render(
                "servers.html",
                context! { section => "servers", servers => json!([server.clone()]), total => 1,
                page => 1, pages => 1, kept => "" },
            )
            .unwrap()
            .0;
        assert!(list.contains("nginx:80"), "{list}");
        let page = session
            .render(
                "server.html",
                context! { section => "servers", server => server.clone(), tasks => json!([]),
                error => None::<String> },
            )
            .unwrap()
            .0;
        assert!(page.contains("password set") && page.contains(r#"id="action-verify""#), "{page}");
        let form = session
            .render(
                "server_form.html",
                context! { section => "servers", name => "server_master", action => "/servers/server_master/edit",
                dns_servers => no_choices(), password_set => true, http_types => vec![("nginx", "nginx")],
                db_types => vec![("mariadb", "MariaDB")], dns_types => vec![("bind", "BIND")],
                values => super::servers::values_of(&server), errors => json!({}), error => None::<String> },
            )
            .unwrap()
            .0;
        assert!(form.contains("A password is set; leave blank to keep it"), "{form}");
        assert!(
            form.contains(r#"id="f-db_admin_password" name="db_admin_password" type="password" value="""#),
            "{form}"
        );
    }

    #[test]
    fn client_pages_draw() {
        let client = json!({"name": "acme", "title": "Acme Ltd", "email": "ops@acme.example", "sites": 2});
        let session = admin();
        let list = session
            .render(
                "clients.html",
                context! { section => "clients", clients => json!([client.clone()]), total => 1,
                page => 1, pages => 1, kept => "" },
            )
            .unwrap()
            .0;
        assert!(list.contains("/sites?client=acme"), "{list}");
        let page = session
            .render(
                "client.html",
                context! { section => "clients", client => client.clone(), sites => 2,
                granted => json!(["@platform_wp"]), grantable => vec![("@platform_d10", "platform_d10")],
                users => json!([{"name": "alice", "disabled": false, "created_at": "2026-11-26T16:50:02Z"}]),
                error => None::<String> },
            )
            .unwrap()
            .0;
        assert!(
            page.contains(r#"aria-label="Revoke @platform_wp""#) && page.contains(r#"id="action-grant""#),
            "{page}"
        );
        assert!(page.contains("alice"), "{page}");
        let form = session
            .render(
                "client_form.html",
                context! { section => "clients", name => None::<String>, action => "/clients/new",
                values => json!({}), errors => json!({}), error => None::<String> },
            )
            .unwrap()
            .0;
        assert!(form.contains(r#"id="client-save""#), "{form}");
    }
}
