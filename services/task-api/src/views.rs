//! What the API answers: the views of servers, platforms, clients, sites, tasks and log
//! lines, as the REST contract describes them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A stored value this version does not know; the database was changed by hand or by a
/// newer version.
#[derive(Debug, thiserror::Error)]
#[error("unexpected {kind} `{value}` in the database")]
pub struct StoredValueError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $ty:ident, $kind:literal, { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty {
            $($variant),+
        }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $s),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($ty::$variant),)+
                    _ => {
                        let known = Self::ALL.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ");
                        Err(format!("{} `{s}` is not valid: use one of {known}", $kind))
                    }
                }
            }
        }

        impl TryFrom<String> for $ty {
            type Error = StoredValueError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse().map_err(|_| StoredValueError { kind: $kind, value: s })
            }
        }
    };
}

text_enum!(
    /// Where a task is in its life.
    TaskStatus, "task status", {
        Queued => "queued",
        Running => "running",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

text_enum!(
    /// The outcome of the last finished verify of a context.
    ContextStatus, "context status", {
        New => "new",
        Verified => "verified",
        Failed => "failed",
    }
);

text_enum!(
    /// Where a site is in its life: `new` (saved, not installed), `enabled`, `disabled`,
    /// `failed` (its install failed), `cloning` (being made as a copy of another site).
    SiteStatus, "site status", {
        New => "new",
        Enabled => "enabled",
        Disabled => "disabled",
        Failed => "failed",
        Cloning => "cloning",
    }
);

impl SiteStatus {
    /// Whether the site's code, vhost and database exist (as far as task-api knows).
    pub fn is_installed(self) -> bool {
        matches!(self, SiteStatus::Enabled | SiteStatus::Disabled)
    }
}

/// A module, theme, profile, plugin, extension or skin a verify found installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PackageView {
    #[schema(example = "woocommerce")]
    pub name: String,
    /// `core`, `module`, `theme`, `profile`, `plugin`, `extension` or `skin`.
    #[schema(example = "plugin")]
    pub kind: String,
    #[schema(example = "8.5.1")]
    pub version: Option<String>,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many there are in all, whatever the page.
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HttpServiceView {
    #[schema(example = "nginx")]
    pub service_type: String,
    #[schema(example = 80)]
    pub port: u16,
    /// Reported by the last successful verify.
    #[schema(example = "nginx/1.22.1")]
    pub version: Option<String>,
    /// The PHP versions (php-fpm) the last successful verify found installed; sites may
    /// choose among them. Absent before a verify reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["8.2"]))]
    pub php_versions: Option<Vec<String>>,
    /// The version sites without one of their own run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "8.2")]
    pub php_default_version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DbServiceView {
    #[schema(example = "mariadb")]
    pub service_type: String,
    #[schema(example = "127.0.0.1")]
    pub host: String,
    #[schema(example = 3306)]
    pub port: u16,
    #[schema(example = "root")]
    pub admin_user: String,
    /// Whether a non-empty admin password is stored; the password itself is never shown.
    pub admin_password_set: bool,
    #[schema(example = "10.11.6-MariaDB-0+deb12u1")]
    pub version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DnsServiceView {
    #[schema(example = "bind")]
    pub service_type: String,
    /// Reported by the last successful verify.
    #[schema(example = "BIND 9.18.28-1~deb12u2-Debian")]
    pub version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServerView {
    #[schema(example = "server_master")]
    pub name: String,
    #[schema(example = "@server_master")]
    pub context: String,
    #[schema(example = "localhost")]
    pub remote_host: String,
    pub http: Option<HttpServiceView>,
    pub db: Option<DbServiceView>,
    /// The name service; absent when the server offers none.
    pub dns: Option<DnsServiceView>,
    /// The server whose name service keeps the records of this server's sites: the one
    /// it was saved with, else itself when it offers dns; absent: no records are kept.
    #[schema(example = "@server_ns1")]
    pub dns_server: Option<String>,
    pub status: ContextStatus,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformView {
    #[schema(example = "platform_wp")]
    pub name: String,
    #[schema(example = "@platform_wp")]
    pub context: String,
    #[schema(example = "/var/aegir/platforms/wp")]
    pub root: String,
    #[schema(example = "@server_master")]
    pub web_server: String,
    /// Where a verify builds its code from when the root is missing: `{"kind": "git", "url": …, "ref": …}`
    /// or `{"kind": "archive", "key": …}`; null when the root is put there by other means.
    #[schema(value_type = Option<Object>, example = json!({"kind": "git", "url": "https://git.example.com/wp.git", "ref": "6.4.2"}))]
    pub source: Option<serde_json::Value>,
    /// Found by the last successful verify: `drupal7`, `drupal`, `wordpress`, `mediawiki` or `php`.
    #[schema(example = "wordpress")]
    pub platform_type: Option<String>,
    #[schema(example = "6.4.2")]
    pub app_version: Option<String>,
    /// Install profiles the last verify found (Drupal); null when none were reported.
    #[schema(example = json!(["standard", "minimal"]))]
    pub profiles: Option<Vec<String>>,
    /// A locked platform takes no new sites (the `lock` and `unlock` tasks).
    pub locked: bool,
    /// What the last verify found installed.
    pub packages: Vec<PackageView>,
    pub status: ContextStatus,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    #[schema(example = "example")]
    pub name: String,
    #[schema(example = "Example Ltd")]
    pub title: Option<String>,
    #[schema(example = "ops@example.com")]
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteView {
    #[schema(example = "www.example.com")]
    pub uri: String,
    #[schema(example = "@www.example.com")]
    pub context: String,
    #[schema(example = "@platform_wp")]
    pub platform: String,
    /// The server whose database service holds the site's database.
    #[schema(example = "@server_master")]
    pub db_server: String,
    /// The install profile (Drupal).
    #[schema(example = "standard")]
    pub profile: Option<String>,
    #[schema(example = "en")]
    pub language: String,
    /// Other names the site answers to.
    #[schema(example = json!(["example.com"]))]
    pub aliases: Vec<String>,
    /// Whether the aliases redirect (301) to the uri instead of serving the site.
    pub redirection: bool,
    #[schema(example = "acme")]
    pub client: Option<String>,
    #[schema(example = "Example shop")]
    pub title: String,
    #[schema(example = "admin@example.com")]
    pub admin_email: String,
    pub status: SiteStatus,
    /// Seconds between cron runs; `null`: the installation's default; 0: no cron.
    pub cron_interval: Option<i32>,
    /// The PHP version the site's php-fpm pool runs; `null`: its web server's default.
    #[schema(example = "8.2")]
    pub php_version: Option<String>,
    /// What the last verify or install found installed.
    pub packages: Vec<PackageView>,
    /// The latest figures (on `GET /api/v1/sites/{uri}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<SiteStatsView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the last successful install finished.
    pub installed_at: Option<DateTime<Utc>>,
    /// `off`, `on` (http and https) or `forced` (http redirects to https).
    #[schema(example = "forced")]
    pub ssl: String,
    /// `off`; `pending` (no certificate yet); `valid`; `expired`; `failing` (the last
    /// order failed: `ssl_error` says why, `ssl_retry_at` when it is tried again);
    /// `expiring` (a certificate its owner supplied expires within the renewal window:
    /// nothing renews it, a new one must be uploaded).
    #[schema(example = "valid")]
    pub ssl_status: &'static str,
    /// When the certificate the site serves expires.
    pub ssl_expires_at: Option<DateTime<Utc>>,
    pub ssl_issuer: Option<String>,
    /// Hex serial number of the certificate the site serves.
    pub ssl_serial: Option<String>,
    /// Why the last certificate order failed; `null` once one succeeds.
    pub ssl_error: Option<String>,
    /// When the renewal queue orders again after a failure.
    pub ssl_retry_at: Option<DateTime<Utc>>,
    /// Where the certificate the site serves came from: `acme` (renewed by the renewal
    /// queue) or `user` (supplied with `PUT /api/v1/sites/{uri}/certificate`, never
    /// renewed here); `null` while it has none. Its key is never shown.
    #[schema(example = "acme")]
    pub ssl_source: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskView {
    pub id: Uuid,
    #[schema(example = "@server_master")]
    pub context: String,
    #[schema(example = "verify")]
    pub task: String,
    /// `interactive` for tasks people asked for; `bulk` for those of the scheduled queues
    /// (cron, stats, backups) and batches, whose steps give way to people's.
    #[schema(example = "interactive")]
    pub lane: String,
    pub status: TaskStatus,
    /// What it was asked beyond its context, e.g. `{"new_uri": "staging.example.com"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Value>,
    /// Why the task failed.
    pub reason: Option<String>,
    /// The OpenTelemetry trace id of the request; every service's spans for this task
    /// belong to it.
    pub trace_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The latest figures of a site, from the stats queue (or a `stats` task).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SiteStatsView {
    pub database_bytes: Option<i64>,
    pub database_tables: Option<i32>,
    /// Bytes of the site's directory (settings, files, private files).
    pub files_bytes: Option<i64>,
    pub files: Option<i64>,
    /// Status of `GET /` on the site's name, from its web server; 0: no answer.
    pub http_status: Option<i32>,
    pub response_ms: Option<i32>,
    /// The application's own counts, e.g. `{"users": 3, "posts": 120}`.
    #[schema(value_type = Object)]
    pub figures: serde_json::Value,
    pub measured_at: DateTime<Utc>,
}

/// A complete archive of a site in the backup store.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupView {
    pub id: Uuid,
    /// The site it belongs to (it follows a renamed site; it outlives a deleted one).
    #[schema(example = "@www.example.com")]
    pub site: String,
    /// `zstd` or `gzip`.
    #[schema(example = "zstd")]
    pub compression: String,
    /// Bytes stored.
    pub size: i64,
    /// SHA-256 of the stored archive; restore checks it before anything changes.
    pub sha256: String,
    /// Bytes of the database dump before compression.
    pub database_bytes: i64,
    /// Bytes of the site's files before compression.
    pub files_bytes: i64,
    /// Files and directories of the site's directory in the archive.
    pub entries: i64,
    /// The task that made it: `backup`, or the copy taken first by `restore`, `migrate`,
    /// `clone` or `delete`.
    #[schema(example = "backup")]
    pub origin: String,
    pub task_id: Option<Uuid>,
    /// The platform the site was on.
    #[schema(example = "@platform_wordpress")]
    pub platform: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LogEntry {
    /// Position in the log; also the `id` of its server-sent event.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// `info`, `warning`, `error` or `success`.
    #[schema(example = "info")]
    pub level: String,
    /// Who wrote it: `scheduler` or a route such as `server_master.http`.
    #[schema(example = "server_master.http")]
    pub source: String,
    /// The step of the task it belongs to, if any.
    pub step: Option<u32>,
    pub message: String,
}

/// A task's whole log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogList {
    pub items: Vec<LogEntry>,
}
