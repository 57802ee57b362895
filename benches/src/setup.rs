//! Putting the system into the state a benchmark needs, through its REST API.

use std::time::Duration;

use aegir_e2e::System;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// `PUT` a record; anything but a 2xx is an error carrying the API's answer.
pub async fn put(system: &System, path: &str, body: Value) -> anyhow::Result<Value> {
    send(system, reqwest::Method::PUT, path, Some(body)).await
}

/// `POST` a JSON body; anything but a 2xx is an error carrying the API's answer.
pub async fn post(system: &System, path: &str, body: Value) -> anyhow::Result<Value> {
    send(system, reqwest::Method::POST, path, Some(body)).await
}

pub async fn get(system: &System, path: &str) -> anyhow::Result<Value> {
    send(system, reqwest::Method::GET, path, None).await
}

/// One request to the API, its JSON answer, and its status judged.
async fn send(system: &System, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let mut request = system.http.request(method.clone(), format!("{}{path}", system.api));
    if let Some(body) = &body {
        request = request.json(body);
    }
    let response = request.send().await.with_context(|| format!("{method} {path}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{method} {path} answered {status}: {body}");
    }
    Ok(body)
}

/// `POST /api/v1/tasks`; returns the task id and the client's clock just before sending.
pub async fn post_task(system: &System, context: &str, task: &str) -> anyhow::Result<(String, DateTime<Utc>)> {
    post_task_body(system, json!({"context": context, "task": task})).await
}

/// `POST /api/v1/tasks` with a whole request body (a task with options).
pub async fn post_task_body(system: &System, body: Value) -> anyhow::Result<(String, DateTime<Utc>)> {
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    let (context, task) = (field("context"), field("task"));
    let request = system.http.post(format!("{}/api/v1/tasks", system.api)).json(&body);
    let sent = Utc::now();
    let response = request.send().await.context("POST /api/v1/tasks")?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 202 {
        bail!("task {task} on {context} was not accepted ({status}): {body}");
    }
    let id = body["id"].as_str().with_context(|| format!("no task id in {body}"))?.to_owned();
    Ok((id, sent))
}

/// Polls the task every `every` until it ends; a failed task is an error.
pub async fn wait_success(system: &System, id: &str, every: Duration) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let view = get(system, &format!("/api/v1/tasks/{id}")).await?;
        match view["status"].as_str() {
            Some("success") => return Ok(view),
            Some("failed") => bail!("task {id} failed: {}", view["reason"]),
            _ if tokio::time::Instant::now() > deadline => bail!("task {id} did not finish in 10 minutes: {view}"),
            _ => tokio::time::sleep(every).await,
        }
    }
}

pub fn time(view: &Value, field: &str) -> anyhow::Result<DateTime<Utc>> {
    let text = view[field].as_str().with_context(|| format!("no `{field}` in {view}"))?;
    Ok(DateTime::parse_from_rfc3339(text).with_context(|| format!("`{field}` is not a time: {text}"))?.to_utc())
}

/// From `earlier` to `later`, zero when the clocks say otherwise.
pub fn between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> Duration {
    (later - earlier).to_std().unwrap_or_default()
}

/// The system with its server saved (nginx and MariaDB on this machine).
pub async fn system_with_server(options: aegir_e2e::Options) -> System {
    let system = System::start_with(options).await;
    system.save_server(&aegir_e2e::mariadb_url()).await;
    system
}

/// Saves `@platform_<name>` with an empty root directory below the system's platforms
/// directory: enough for no-op tasks, which need the platform to exist, not to be verified.
pub async fn empty_platform(system: &System, name: &str) -> anyhow::Result<()> {
    let root = system.platforms_dir().join(name);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let body = json!({"root": root.display().to_string(), "web_server": format!("@{}", system.server)});
    put(system, &format!("/api/v1/platforms/platform_{name}"), body).await?;
    Ok(())
}
