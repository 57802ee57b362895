//! The sites: a searchable, paged list; a site's page with the tasks its status allows;
//! and the forms that add a site and change its settings.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Value as Tpl, context};
use serde_json::{Map, Value, json};

use super::{CHOICES, PER_PAGE, Refusal, choices, drawn, items, keep_current, offset, pages, text_of, to_task};
use crate::backend::{Backend, encode};
use crate::form::{self, FormData, number_or_text};
use crate::render::{PageError, Session, SignedForm};
use crate::visitor::Visitor;

/// Filters a list takes from the page's query string, passed on to the API as they are.
const FILTERS: [&str; 4] = ["search", "status", "platform", "client"];

/// The site form's fields the API takes as text, sent when not blank.
const TEXT_FIELDS: [&str; 9] =
    ["platform", "db_server", "client", "title", "admin_email", "profile", "language", "php_version", "ssl"];

/// Backups and tasks a site's page lists.
const RECENT: usize = 10;
const BACKUPS: usize = 50;

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

/// The site form's fields as the body of `PUT /api/v1/sites/{uri}`. Blank fields are left
/// out, so the API applies its defaults; aliases and redirection are always sent, since
/// the PUT replaces the whole record.
pub fn site_body(form: &FormData) -> Map<String, Value> {
    let mut body = form.texts(&TEXT_FIELDS);
    body.insert("aliases".into(), Value::Array(form::list(form.get("aliases"))));
    body.insert("redirection".into(), Value::Bool(form.checked("redirection")));
    if let Some(cron) = form.text("cron_interval") {
        body.insert("cron_interval".into(), number_or_text(cron));
    }
    body
}

/// An action's form as the body of `POST /api/v1/tasks`: the site, the task, and the
/// options of that task the form holds (the API says which a task takes).
pub fn task_body(uri: &str, task: &str, form: &FormData) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("context".into(), Value::String(format!("@{uri}")));
    body.insert("task".into(), Value::String(task.to_owned()));
    let (texts, flags): (&[&str], &[&str]) = match task {
        "restore" => (&["backup"], &[]),
        "clone" => (&["new_uri", "platform", "db_server"], &[]),
        "migrate" => (&["platform", "db_server", "new_uri"], &["force"]),
        "verify" => (&[], &["renew"]),
        "delete" => (&[], &["skip_backup"]),
        _ => (&[], &[]),
    };
    body.extend(form.texts(texts));
    for flag in flags {
        if form.checked(flag) {
            body.insert((*flag).to_owned(), Value::Bool(true));
        }
    }
    body
}

/// The actions a site's page offers in `status`: those the API's `site_task_allowed`
/// lets it run (the API still decides when one is sent). A site not installed has its
/// record deleted rather than a `delete` task.
pub fn actions_for(status: &str) -> &'static [&'static str] {
    match status {
        "new" | "failed" => &["install", "delete-record"],
        "enabled" => &["verify", "backup", "restore", "clone", "migrate", "disable", "login-reset", "delete"],
        "disabled" => &["verify", "backup", "restore", "enable", "login-reset", "delete"],
        _ => &[],
    }
}

/// The site form's values from a site's view, for changing its settings.
pub fn values_of(site: &Value) -> Map<String, Value> {
    let mut values = Map::new();
    for key in TEXT_FIELDS {
        if let Some(text) = text_of(site, key) {
            values.insert(key.to_owned(), Value::String(text));
        }
    }
    let aliases = site.get("aliases").and_then(Value::as_array).cloned().unwrap_or_default();
    let aliases: Vec<&str> = aliases.iter().filter_map(Value::as_str).collect();
    values.insert("aliases".into(), Value::String(aliases.join("\n")));
    if site.get("redirection").and_then(Value::as_bool) == Some(true) {
        values.insert("redirection".into(), Value::String("on".into()));
    }
    if let Some(cron) = site.get("cron_interval").and_then(Value::as_i64) {
        values.insert("cron_interval".into(), Value::String(cron.to_string()));
    }
    values
}

/// The new site form: HTTPS off, language `en`, installed at once.
pub async fn new_form(State(backend): State<Backend>, visitor: Visitor) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let values = json!({"ssl": "off", "language": "en", "install": "on"});
    let Value::Object(values) = values else { unreachable!("an object literal") };
    site_form(&backend, &visitor, &session, None, values, Refusal::default()).await
}

/// `POST /sites/new`: saves the site through the API, then (when asked) installs it and
/// shows the install's log.
pub async fn create(
    State(backend): State<Backend>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let again = |refusal| site_form(&backend, &visitor, &session, None, form.values(), refusal);
    let Some(uri) = form.text("uri") else {
        return again(Refusal::missing("uri", "give the site's uri, a host name such as www.example.com")).await;
    };
    let path = format!("/api/v1/sites/{}", encode(&uri));
    // A PUT of an existing uri would change that site: this form only adds.
    if backend.get(&visitor, &path).await.is_ok() {
        let message = format!("site `{uri}` exists already; change its settings on its page, or choose another uri");
        let mut refusal = Refusal::missing("uri", &message);
        refusal.status = Some(StatusCode::CONFLICT);
        return again(refusal).await;
    }
    if let Err(failure) = backend.send(&visitor, Method::PUT, &path, Value::Object(site_body(&form))).await {
        return again(Refusal::of(failure)?).await;
    }
    if !form.checked("install") {
        return Ok(Redirect::to(&format!("/sites/{}", encode(&uri))).into_response());
    }
    let install = json!({"context": format!("@{uri}"), "task": "install"});
    match backend.send(&visitor, Method::POST, "/api/v1/tasks", install).await {
        Ok(task) => Ok(to_task(&task.body)),
        // Saved, but not installed: its page says why and offers the install again.
        Err(failure) => site_page(&backend, &visitor, &session, &uri, Some(("install", Refusal::of(failure)?))).await,
    }
}

/// `GET /sites/{uri}/edit`: the site's settings, as they are now.
pub async fn edit_form(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(uri): Path<String>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    let site = backend.get(&visitor, &format!("/api/v1/sites/{}", encode(&uri))).await?;
    site_form(&backend, &visitor, &session, Some(&uri), values_of(&site), Refusal::default()).await
}

/// `POST /sites/{uri}/edit`: the whole record, as the form holds it, to the API.
pub async fn update(
    State(backend): State<Backend>,
    Path(uri): Path<String>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    // Another client's site, or none: not found, before anything is sent.
    let path = format!("/api/v1/sites/{}", encode(&uri));
    backend.get(&visitor, &path).await?;
    match backend.send(&visitor, Method::PUT, &path, Value::Object(site_body(&form))).await {
        Ok(_) => Ok(Redirect::to(&format!("/sites/{}", encode(&uri))).into_response()),
        Err(failure) => site_form(&backend, &visitor, &session, Some(&uri), form.values(), Refusal::of(failure)?).await,
    }
}

/// The add or settings form with its choices: the platforms the API lists to the
/// visitor (a client user's are its granted ones), and for admins the database servers
/// and clients.
async fn site_form(
    backend: &Backend,
    visitor: &Visitor,
    session: &Session,
    uri: Option<&str>,
    values: Map<String, Value>,
    refusal: Refusal,
) -> Result<Response, PageError> {
    let platforms = items(backend, visitor, &format!("/api/v1/platforms?limit={CHOICES}")).await?;
    let mut platforms = choices(&platforms, |p| text_of(p, "context"), platform_label);
    keep_current(&mut platforms, values.get("platform").and_then(Value::as_str));
    let (mut db_servers, mut clients) = (Vec::new(), Vec::new());
    if session.is_admin() {
        let servers = items(backend, visitor, &format!("/api/v1/servers?limit={CHOICES}")).await?;
        let servers: Vec<Value> = servers.into_iter().filter(|s| s.get("db").is_some_and(|db| !db.is_null())).collect();
        db_servers = choices(&servers, |s| text_of(s, "context"), |s| text_of(s, "name").unwrap_or_default());
        keep_current(&mut db_servers, values.get("db_server").and_then(Value::as_str));
        let listed = items(backend, visitor, &format!("/api/v1/clients?limit={CHOICES}")).await?;
        clients = choices(&listed, |c| text_of(c, "name"), client_label);
        keep_current(&mut clients, values.get("client").and_then(Value::as_str));
    }
    let ssl_modes =
        [("off", "off: http only"), ("on", "on: http and https"), ("forced", "forced: http redirects to https")];
    let action = match uri {
        Some(uri) => format!("/sites/{}/edit", encode(uri)),
        None => "/sites/new".to_owned(),
    };
    let html = session.render(
        "site_form.html",
        context! {
            section => "sites",
            uri, action,
            values => Tpl::from_serialize(&values),
            errors => Tpl::from_serialize(&refusal.errors),
            error => refusal.message,
            platforms, db_servers, clients, ssl_modes,
        },
    )?;
    Ok(drawn(refusal.status(), html))
}

fn platform_label(platform: &Value) -> String {
    let name = text_of(platform, "name").unwrap_or_default();
    match (text_of(platform, "platform_type"), platform.get("locked").and_then(Value::as_bool)) {
        (_, Some(true)) => format!("{name} (locked)"),
        (Some(kind), _) => format!("{name} ({kind})"),
        (None, _) => format!("{name} (not verified yet)"),
    }
}

fn client_label(client: &Value) -> String {
    let name = text_of(client, "name").unwrap_or_default();
    match text_of(client, "title") {
        Some(title) if title != name => format!("{name} ({title})"),
        _ => name,
    }
}

/// `GET /sites/{uri}`.
pub async fn show(
    State(backend): State<Backend>,
    visitor: Visitor,
    Path(uri): Path<String>,
) -> Result<Response, PageError> {
    let session = Session::of(&backend, &visitor).await?;
    site_page(&backend, &visitor, &session, &uri, None).await
}

/// `POST /sites/{uri}/tasks` with `task` and its options: starts the task and shows its
/// log; refused, the site's page again with the API's reason at that action.
pub async fn act(
    State(backend): State<Backend>,
    Path(uri): Path<String>,
    SignedForm { visitor, session, form }: SignedForm,
) -> Result<Response, PageError> {
    let task = form.text("task").unwrap_or_default();
    let answer = if task == "delete-record" {
        let path = format!("/api/v1/sites/{}", encode(&uri));
        match backend.call(&visitor, Method::DELETE, &path, None).await {
            Ok(_) => return Ok(Redirect::to("/sites").into_response()),
            Err(failure) => failure,
        }
    } else {
        match backend.send(&visitor, Method::POST, "/api/v1/tasks", Value::Object(task_body(&uri, &task, &form))).await
        {
            Ok(started) => return Ok(to_task(&started.body)),
            Err(failure) => failure,
        }
    };
    let refusal = Refusal::of(answer)?;
    let task: &'static str = actions_for("enabled")
        .iter()
        .chain(actions_for("disabled"))
        .chain(actions_for("new"))
        .find(|t| **t == task)
        .copied()
        .unwrap_or("");
    site_page(&backend, &visitor, &session, &uri, Some((task, refusal))).await
}

/// A site's page: its facts, packages, backups, figures, recent tasks and the actions
/// its status allows; `refused` shows the API's reason at the action it refused.
async fn site_page(
    backend: &Backend,
    visitor: &Visitor,
    session: &Session,
    uri: &str,
    refused: Option<(&str, Refusal)>,
) -> Result<Response, PageError> {
    let enc = encode(uri);
    let site = backend.get(visitor, &format!("/api/v1/sites/{enc}")).await?;
    let backups = items(backend, visitor, &format!("/api/v1/sites/{enc}/backups?limit={BACKUPS}")).await?;
    let tasks = items(backend, visitor, &format!("/api/v1/tasks?context=%40{enc}&limit={RECENT}")).await?;
    let status = text_of(&site, "status").unwrap_or_default();
    let actions = actions_for(&status);
    let (mut platforms, mut db_servers) = (Vec::new(), Vec::new());
    if actions.contains(&"clone") {
        let listed = items(backend, visitor, &format!("/api/v1/platforms?limit={CHOICES}")).await?;
        platforms = choices(&listed, |p| text_of(p, "context"), platform_label);
        if session.is_admin() {
            let servers = items(backend, visitor, &format!("/api/v1/servers?limit={CHOICES}")).await?;
            let servers: Vec<Value> =
                servers.into_iter().filter(|s| s.get("db").is_some_and(|db| !db.is_null())).collect();
            db_servers = choices(&servers, |s| text_of(s, "context"), |s| text_of(s, "name").unwrap_or_default());
        }
    }
    let scheme = if text_of(&site, "ssl").is_some_and(|ssl| ssl != "off") { "https" } else { "http" };
    let (refused_task, refusal) = refused.unwrap_or(("", Refusal::default()));
    let html = session.render(
        "site.html",
        context! {
            section => "sites",
            site => Tpl::from_serialize(&site),
            link => format!("{scheme}://{uri}/"),
            backups => Tpl::from_serialize(&backups),
            tasks => Tpl::from_serialize(&tasks),
            actions, platforms, db_servers,
            refused_task,
            error => refusal.message,
            errors => Tpl::from_serialize(&refusal.errors),
        },
    )?;
    Ok(drawn(refusal.status(), html))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::form;

    #[test]
    fn the_site_form_becomes_the_apis_body() {
        let body = site_body(&form(&[
            ("csrf", "x"),
            ("uri", "www.example.com"),
            ("platform", "@platform_wp"),
            ("db_server", ""),
            ("title", " Shop "),
            ("aliases", "example.com\nshop.example.com"),
            ("ssl", "forced"),
            ("cron_interval", "3600"),
            ("install", "on"),
        ]));
        assert_eq!(
            Value::Object(body),
            json!({"platform": "@platform_wp", "title": "Shop", "aliases": ["example.com", "shop.example.com"],
                   "redirection": false, "ssl": "forced", "cron_interval": 3600})
        );
    }

    #[test]
    fn an_edit_sends_back_what_the_page_showed() {
        let site = json!({"uri": "www.example.com", "platform": "@platform_wp", "db_server": "@server_master",
            "client": "acme", "title": "Shop", "admin_email": "a@example.com", "profile": null, "language": "en",
            "aliases": ["example.com"], "redirection": true, "ssl": "on", "php_version": null, "cron_interval": 0});
        let values = values_of(&site);
        let fields: Vec<(String, String)> =
            values.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect();
        let body = site_body(&FormData(fields));
        assert_eq!(
            Value::Object(body),
            json!({"platform": "@platform_wp", "db_server": "@server_master", "client": "acme", "title": "Shop",
                   "admin_email": "a@example.com", "language": "en", "aliases": ["example.com"],
                   "redirection": true, "ssl": "on", "cron_interval": 0})
        );
    }

    #[test]
    fn each_action_sends_its_own_options() {
        let fields = form(&[("task", "clone"), ("new_uri", "staging.example.com"), ("platform", ""), ("backup", "x")]);
        assert_eq!(
            Value::Object(task_body("www.example.com", "clone", &fields)),
            json!({"context": "@www.example.com", "task": "clone", "new_uri": "staging.example.com"})
        );
        let fields = form(&[("renew", "on")]);
        assert_eq!(task_body("a.example.com", "verify", &fields)["renew"], json!(true));
        assert_eq!(task_body("a.example.com", "disable", &fields).len(), 2);
    }

    #[test]
    fn actions_follow_the_sites_status() {
        assert!(actions_for("enabled").contains(&"disable") && !actions_for("enabled").contains(&"enable"));
        assert!(actions_for("disabled").contains(&"enable") && !actions_for("disabled").contains(&"clone"));
        assert_eq!(actions_for("new"), &["install", "delete-record"]);
        assert!(actions_for("cloning").is_empty());
    }
}

#[cfg(test)]
mod rendered {
    use minijinja::context;
    use serde_json::json;

    use crate::render::Session;

    fn session(role: &str) -> Session {
        let client = if role == "client" { json!("acme") } else { json!(null) };
        Session { me: json!({"user": "ada", "role": role, "client": client}), csrf: "t0ken".into() }
    }

    #[test]
    fn a_sites_page_shows_its_facts_and_the_actions_its_status_allows() {
        let site = json!({"uri": "www.example.com", "context": "@www.example.com", "platform": "@platform_wp",
            "db_server": "@server_master", "profile": null, "language": "en", "aliases": ["example.com"],
            "redirection": true, "client": "acme", "title": "Shop", "admin_email": "a@example.com",
            "status": "enabled", "cron_interval": null, "php_version": "8.2", "ssl": "forced", "ssl_status": "failing",
            "ssl_error": "the ACME server said <no>", "ssl_retry_at": "2026-11-27T10:00:00Z", "ssl_expires_at": null,
            "packages": [{"name": "woocommerce", "kind": "plugin", "version": "8.5.1"}],
            "stats": {"database_bytes": 1_200_000, "database_tables": 12, "files_bytes": 3000, "files": 4,
                      "http_status": 200, "response_ms": 35, "figures": {"users": 3}, "measured_at": "2026-11-26T16:50:02Z"},
            "installed_at": "2026-11-26T16:50:02Z"});
        let backups = json!([{"id": "0190e6c4-0000-7000-8000-000000000002", "created_at": "2026-11-26T16:50:02Z",
            "origin": "backup", "size": 2048, "database_bytes": 100, "files_bytes": 200, "task_id": null}]);
        let html = session("admin")
            .render(
                "site.html",
                context! { section => "sites", site, link => "https://www.example.com/", backups, tasks => json!([]),
                    actions => super::actions_for("enabled"), platforms => vec![("@platform_wp", "platform_wp (wordpress)")],
                    db_servers => vec![("@server_master", "server_master")], refused_task => "clone",
                    error => "`clone` needs `new_uri`", errors => json!({}) },
            )
            .unwrap()
            .0;
        for shown in [
            r#"id="site-status""#,
            r#"id="site-link" href="https:&#x2f;&#x2f;www.example.com&#x2f;""#,
            r#"id="action-disable""#,
            r#"id="action-restore""#,
            r#"id="action-delete""#,
            "the ACME server said &lt;no&gt;",
            "woocommerce",
            "users",
            "1.2 MB",
            r#"data-confirm="Disable www.example.com? It stops serving its pages.""#,
            r#"id="action-error">`clone` needs `new_uri`"#,
        ] {
            assert!(html.contains(shown), "{shown} in {html}");
        }
        assert!(!html.contains(r#"id="action-enable""#), "{html}");
        assert!(!html.contains(r#"id="action-install""#), "{html}");
    }

    #[test]
    fn the_site_form_shows_the_apis_reason_beside_its_field() {
        let values = json!({"uri": "Not A Uri", "platform": "@platform_wp", "ssl": "on", "install": "on"});
        let errors = json!({"uri": "site uri `Not A Uri` is not valid"});
        let html = session("client")
            .render(
                "site_form.html",
                context! { section => "sites", uri => None::<String>, action => "/sites/new", values, errors,
                    error => "site uri `Not A Uri` is not valid",
                    platforms => vec![("@platform_wp", "platform_wp (wordpress)")], db_servers => Vec::<(String, String)>::new(),
                    clients => Vec::<(String, String)>::new(),
                    ssl_modes => vec![("off", "off"), ("on", "on"), ("forced", "forced")] },
            )
            .unwrap()
            .0;
        for shown in [
            r#"id="site-form""#,
            r#"id="f-uri""#,
            r#"aria-invalid="true" aria-describedby="e-uri""#,
            r#"<p class="error" id="e-uri">site uri `Not A Uri` is not valid</p>"#,
            r#"<option value="@platform_wp" selected>"#,
            r#"<option value="on" selected>"#,
            r#"id="f-install" name="install" type="checkbox" value="on" checked"#,
            r#"id="site-save""#,
            r#"name="csrf" value="t0ken""#,
            "The site belongs to acme.",
        ] {
            assert!(html.contains(shown), "{shown} in {html}");
        }
        assert!(!html.contains(r#"id="f-client""#), "a client user chooses no client: {html}");
    }
}
