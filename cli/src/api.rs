//! A typed client of task-api's REST API (v1). Every request is built from validated
//! names, so path segments never need more than the URL encoder.

use std::time::Duration;

use aegir_contract::{ClientName, ContextName, LogLevel, PlatformName, Secret, ServerName, SiteUri, TaskKind};
use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

use crate::config::ApiAddress;
use crate::error::{CliError, chain};

/// Longest wait for an ordinary answer; log streams have no overall limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The API sends a keep-alive on an idle log stream every 15 s, so a longer silence
/// means the connection is gone.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Api {
    address: ApiAddress,
    http: reqwest::Client,
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct ServerBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<DbBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsBody>,
    /// `@server_ns1`: the server keeping the records of this server's sites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DnsBody {
    pub service_type: String,
}

#[derive(Debug, Serialize)]
pub struct HttpBody {
    pub service_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Serialize)]
pub struct DbBody {
    pub service_type: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub admin_user: String,
    /// Absent keeps the stored password on an update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<Secret>,
}

#[derive(Debug, Serialize)]
pub struct PlatformBody {
    pub root: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<aegir_contract::PlatformSource>,
}

/// A site as `PUT /api/v1/sites/{uri}` takes it. The API fills in what is left out.
#[derive(Debug, Serialize)]
pub struct SiteBody {
    pub platform: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub redirection: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron_interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub php_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClientBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Serialize)]
struct TaskBody {
    context: String,
    task: String,
    #[serde(flatten)]
    options: serde_json::Map<String, Value>,
}

// ---------------------------------------------------------------------------
// Views (answers). Unknown fields are ignored so a newer API does not break the CLI.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerView {
    pub name: String,
    pub remote_host: String,
    pub http: Option<HttpView>,
    pub db: Option<DbView>,
    #[serde(default)]
    pub dns: Option<DnsView>,
    #[serde(default)]
    pub dns_server: Option<String>,
    pub status: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpView {
    pub service_type: String,
    pub port: u16,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DnsView {
    pub service_type: String,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DbView {
    pub service_type: String,
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub admin_password_set: bool,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlatformView {
    pub name: String,
    pub root: String,
    pub web_server: String,
    #[serde(default)]
    pub source: Option<aegir_contract::PlatformSource>,
    pub platform_type: Option<String>,
    pub app_version: Option<String>,
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    #[serde(default)]
    pub packages: Vec<PackageView>,
    pub status: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClientView {
    pub name: String,
    pub title: Option<String>,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SiteView {
    pub uri: String,
    pub platform: String,
    pub db_server: String,
    pub profile: Option<String>,
    pub language: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub redirection: bool,
    pub client: Option<String>,
    pub title: String,
    pub admin_email: String,
    pub status: String,
    #[serde(default)]
    pub packages: Vec<PackageView>,
    #[serde(default)]
    pub cron_interval: Option<u32>,
    #[serde(default)]
    pub php_version: Option<String>,
    /// `off`, `on` or `forced`, and what became of its certificate.
    #[serde(default)]
    pub ssl: Option<String>,
    #[serde(default)]
    pub ssl_status: Option<String>,
    #[serde(default)]
    pub ssl_expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ssl_issuer: Option<String>,
    /// `acme` or `user` (supplied by the site's owner).
    #[serde(default)]
    pub ssl_source: Option<String>,
    #[serde(default)]
    pub ssl_error: Option<String>,
    #[serde(default)]
    pub ssl_retry_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub stats: Option<SiteStatsView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub installed_at: Option<DateTime<Utc>>,
}

/// A site's latest figures, from the stats queue.
#[derive(Debug, Clone, Deserialize)]
pub struct SiteStatsView {
    pub database_bytes: Option<u64>,
    pub database_tables: Option<u64>,
    pub files_bytes: Option<u64>,
    pub files: Option<u64>,
    pub http_status: Option<u16>,
    pub response_ms: Option<u64>,
    #[serde(default)]
    pub figures: std::collections::BTreeMap<String, u64>,
    pub measured_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PackageView {
    pub name: String,
    pub kind: String,
    pub version: Option<String>,
}

/// Where a site is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SiteStatus {
    New,
    Enabled,
    Disabled,
    Failed,
}

impl SiteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteStatus::New => "new",
            SiteStatus::Enabled => "enabled",
            SiteStatus::Disabled => "disabled",
            SiteStatus::Failed => "failed",
        }
    }
}

/// Filters of `GET /api/v1/sites`.
#[derive(Debug, Clone, Default)]
pub struct SiteFilter {
    pub platform: Option<PlatformName>,
    pub client: Option<ClientName>,
    pub status: Option<SiteStatus>,
    pub search: Option<String>,
}

impl SiteFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(platform) = &self.platform {
            query.push(("platform", format!("@{platform}")));
        }
        if let Some(client) = &self.client {
            query.push(("client", client.to_string()));
        }
        if let Some(status) = self.status {
            query.push(("status", status.as_str().to_owned()));
        }
        if let Some(search) = &self.search {
            query.push(("search", search.clone()));
        }
        query
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Success,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Success => "success",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TaskView {
    pub id: Uuid,
    pub context: String,
    pub task: String,
    pub status: TaskStatus,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub level: LogLevel,
    pub source: String,
    pub step: Option<u32>,
    pub message: String,
}

#[derive(Debug, Deserialize)]
struct LogItems {
    items: Vec<LogEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    field: Option<String>,
    message: String,
}

/// What a `GET` of a list accepts.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub limit: u16,
    pub offset: u64,
}

/// Filters of `GET /api/v1/tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub context: Option<ContextName>,
    pub status: Option<TaskStatus>,
}

/// The collections of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    Servers,
    Platforms,
    Sites,
    Clients,
}

impl Collection {
    pub fn segment(self) -> &'static str {
        match self {
            Collection::Servers => "servers",
            Collection::Platforms => "platforms",
            Collection::Sites => "sites",
            Collection::Clients => "clients",
        }
    }

    /// Where a context lives.
    pub fn of(context: &ContextName) -> Self {
        match context {
            ContextName::Server(_) => Collection::Servers,
            ContextName::Platform(_) => Collection::Platforms,
            ContextName::Site(_) => Collection::Sites,
        }
    }
}

/// Whether a `PUT` created the entity or updated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Updated,
}

impl Api {
    pub fn new(address: ApiAddress) -> Result<Self, CliError> {
        Self::with_token(address, None)
    }

    /// A client sending `Authorization: Bearer <token>` with every request.
    pub fn with_token(address: ApiAddress, token: Option<&str>) -> Result<Self, CliError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                CliError::usage("AEGIR_TOKEN", "the API token holds characters no HTTP header can carry; check it")
            })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STREAM_IDLE_TIMEOUT)
            .user_agent(concat!("aegir-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::usage("--api", format!("cannot set up the HTTP client: {}", chain(&e))))?;
        Ok(Self { address, http })
    }

    /// `<base>/api/v1/<segments...>`; a base with a path prefix keeps it.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.address.url.clone();
        url.path_segments_mut()
            .expect("http URLs always have a path")
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        url
    }

    fn unreachable(&self, error: &reqwest::Error) -> CliError {
        CliError::Unreachable {
            api: self.address.url.as_str().trim_end_matches('/').to_owned(),
            origin: self.address.origin.to_string(),
            cause: chain(error),
        }
    }

    pub fn unexpected(&self, message: impl Into<String>) -> CliError {
        CliError::Unexpected {
            api: self.address.url.as_str().trim_end_matches('/').to_owned(),
            message: message.into(),
        }
    }

    /// Sends a request; any HTTP answer comes back as a response, only a missing answer
    /// is an error.
    async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        request.send().await.map_err(|e| self.unreachable(&e))
    }

    /// Turns a 4xx/5xx answer into the API's error.
    pub async fn check(&self, response: Response) -> Result<Response, CliError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => CliError::Api {
                status: status.as_u16(),
                field: error.field.filter(|f| !f.is_empty()),
                message: error.message,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(&body);
                let excerpt: String = text.trim().chars().take(200).collect();
                let message =
                    if excerpt.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {excerpt}") };
                CliError::Api { status: status.as_u16(), field: None, message }
            }
        })
    }

    fn call(&self, method: Method, segments: &[&str], query: &[(&str, String)]) -> RequestBuilder {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.http.request(method, url).timeout(REQUEST_TIMEOUT)
    }

    async fn read_json<T: DeserializeOwned>(&self, response: Response) -> Result<T, CliError> {
        let value: Value =
            response.json().await.map_err(|e| self.unexpected(format!("a body that is not JSON ({})", chain(&e))))?;
        self.typed(value)
    }

    /// Reads a JSON value already fetched (for `--json`) as a view.
    pub fn typed<T: DeserializeOwned>(&self, value: Value) -> Result<T, CliError> {
        serde_json::from_value(value).map_err(|e| self.unexpected(e.to_string()))
    }

    /// `GET` of any resource, as the API's JSON.
    pub async fn get_json(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, CliError> {
        let request = self.call(Method::GET, segments, query);
        let response = self.check(self.send(request).await?).await?;
        response.json().await.map_err(|e| self.unexpected(format!("a body that is not JSON ({})", chain(&e))))
    }

    pub async fn list(&self, collection: Collection, paging: Paging) -> Result<Value, CliError> {
        self.get_json(&[collection.segment()], &paging.query()).await
    }

    pub async fn sites(&self, filter: &SiteFilter, paging: Paging) -> Result<Value, CliError> {
        let mut query = paging.query();
        query.extend(filter.query());
        self.get_json(&[Collection::Sites.segment()], &query).await
    }

    async fn put<B: Serialize>(&self, segments: &[&str], body: &B) -> Result<(Saved, Value), CliError> {
        let request = self.call(Method::PUT, segments, &[]).json(body);
        let response = self.check(self.send(request).await?).await?;
        let saved = if response.status() == StatusCode::CREATED { Saved::Created } else { Saved::Updated };
        let value =
            response.json().await.map_err(|e| self.unexpected(format!("a body that is not JSON ({})", chain(&e))))?;
        Ok((saved, value))
    }

    pub async fn put_server(&self, name: &ServerName, body: &ServerBody) -> Result<(Saved, Value), CliError> {
        self.put(&["servers", name.as_str()], body).await
    }

    pub async fn put_platform(&self, name: &PlatformName, body: &PlatformBody) -> Result<(Saved, Value), CliError> {
        self.put(&["platforms", name.as_str()], body).await
    }

    pub async fn put_site(&self, uri: &SiteUri, body: &SiteBody) -> Result<(Saved, Value), CliError> {
        self.put(&["sites", uri.as_str()], body).await
    }

    pub async fn put_client(&self, name: &ClientName, body: &ClientBody) -> Result<(Saved, Value), CliError> {
        self.put(&["clients", name.as_str()], body).await
    }

    pub async fn delete(&self, collection: Collection, name: &str) -> Result<(), CliError> {
        let request = self.call(Method::DELETE, &[collection.segment(), name], &[]);
        self.check(self.send(request).await?).await?;
        Ok(())
    }

    /// Queues a task; `options` are the task's own fields (`new_uri`, `backup`, …).
    pub async fn create_task(
        &self,
        context: &ContextName,
        task: TaskKind,
        options: serde_json::Map<String, Value>,
    ) -> Result<TaskView, CliError> {
        let body = TaskBody { context: context.to_string(), task: task.to_string(), options };
        let request = self.call(Method::POST, &["tasks"], &[]).json(&body);
        let response = self.check(self.send(request).await?).await?;
        self.read_json(response).await
    }

    /// Starts a batch: one task on every site of a platform.
    pub async fn create_batch(&self, body: &Value) -> Result<Value, CliError> {
        let request = self.call(Method::POST, &["batches"], &[]).json(body);
        let response = self.check(self.send(request).await?).await?;
        self.read_json(response).await
    }

    /// Asks to cancel a task that has not started.
    pub async fn cancel_task(&self, id: Uuid) -> Result<TaskView, CliError> {
        let request = self.call(Method::POST, &["tasks", &id.to_string(), "cancel"], &[]);
        let response = self.check(self.send(request).await?).await?;
        self.read_json(response).await
    }

    /// The archives of a site, newest first.
    pub async fn backups(&self, site: &SiteUri, paging: Paging) -> Result<Value, CliError> {
        self.get_json(&["sites", site.as_str(), "backups"], &paging.query()).await
    }

    pub async fn tasks(&self, filter: &TaskFilter, paging: Paging) -> Result<Value, CliError> {
        let mut query = paging.query();
        if let Some(context) = &filter.context {
            query.push(("context", context.to_string()));
        }
        if let Some(status) = filter.status {
            query.push(("status", status.as_str().to_owned()));
        }
        self.get_json(&["tasks"], &query).await
    }

    pub async fn task(&self, id: Uuid) -> Result<Value, CliError> {
        self.get_json(&["tasks", &id.to_string()], &[]).await
    }

    /// The stored log of a task, as JSON.
    pub async fn task_log(&self, id: Uuid) -> Result<Value, CliError> {
        self.get_json(&["tasks", &id.to_string(), "log"], &[]).await
    }

    pub fn log_entries(&self, value: Value) -> Result<Vec<LogEntry>, CliError> {
        Ok(self.typed::<LogItems>(value)?.items)
    }

    /// Any request with an optional JSON body; the answer's JSON (`null` for none).
    pub async fn send_json(&self, method: Method, segments: &[&str], body: Option<&Value>) -> Result<Value, CliError> {
        let mut request = self.call(method, segments, &[]);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.check(self.send(request).await?).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| self.unexpected(format!("a body that is not JSON ({e})")))
    }

    /// `POST /api/v1/login`: a token of `user`, named `token_name`.
    pub async fn login(&self, user: &str, password: &str, token_name: &str) -> Result<Value, CliError> {
        let body = serde_json::json!({"user": user, "password": password, "token_name": token_name});
        let request = self.call(Method::POST, &["login"], &[]).json(&body);
        let response = self.check(self.send(request).await?).await?;
        self.read_json(response).await
    }

    /// Opens the live log of a task as server-sent events, resuming after `after`.
    pub async fn open_log_stream(&self, id: Uuid, after: Option<u64>) -> Result<Response, CliError> {
        let mut request = self
            .http
            .get(self.url(&["tasks", &id.to_string(), "log"]))
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(seq) = after {
            request = request.header("Last-Event-ID", seq.to_string());
        }
        self.check(self.send(request).await?).await
    }
}

impl Paging {
    fn query(self) -> Vec<(&'static str, String)> {
        vec![("limit", self.limit.to_string()), ("offset", self.offset.to_string())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn api(base: &str) -> Api {
        Api::new(ApiAddress { url: Url::parse(base).unwrap(), origin: Origin::Flag }).unwrap()
    }

    #[test]
    fn urls_keep_a_base_path_prefix() {
        assert_eq!(
            api("http://127.0.0.1:8090").url(&["servers", "server_master"]).as_str(),
            "http://127.0.0.1:8090/api/v1/servers/server_master"
        );
        assert_eq!(api("http://h/aegir/").url(&["tasks"]).as_str(), "http://h/aegir/api/v1/tasks");
    }

    #[test]
    fn server_bodies_follow_the_contract_and_leave_out_what_was_not_given() {
        let body = ServerBody {
            remote_host: None,
            http: Some(HttpBody { service_type: "nginx".into(), port: None }),
            db: Some(DbBody {
                service_type: "mariadb".into(),
                host: "127.0.0.1".into(),
                port: Some(3306),
                admin_user: "root".into(),
                admin_password: None,
            }),
            dns: None,
            dns_server: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "http": {"service_type": "nginx"},
                "db": {"service_type": "mariadb", "host": "127.0.0.1", "port": 3306, "admin_user": "root"}
            })
        );
    }
}
