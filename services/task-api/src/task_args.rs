//! What a task is asked beyond its context: the archive a restore reads, the new uri of
//! a clone, the platform a migrate moves to. Parsed with the task, checked against the
//! task it belongs to, and stored with it (no secrets) so the API can show it.

use aegir_contract::{Compression, ContextName, PlatformName, ServerName, SiteUri, TaskKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::input::Fields;

/// Every option a task may take; which ones a task takes is [`TaskArgs::allowed`].
pub const FIELDS: [&str; 8] =
    ["backup", "compression", "new_uri", "platform", "db_server", "force", "skip_backup", "renew"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskArgs {
    /// `restore`, `backup-delete`: the id of the site's archive to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Uuid>,
    /// `backup` (and the copy other tasks take first): `zstd` (default) or `gzip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "zstd")]
    pub compression: Option<Compression>,
    /// `clone` (required), `migrate`: the site's new uri.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "staging.example.com")]
    pub new_uri: Option<SiteUri>,
    /// `clone`, `migrate`: the platform to move or copy the site to (default: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "@platform_wordpress_next")]
    pub platform: Option<PlatformName>,
    /// `clone`, `migrate`: the db server for the site's database (default: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "@server_db2")]
    pub db_server: Option<ServerName>,
    /// `migrate`: go ahead although the target platform lacks or downgrades a package the
    /// site uses (each is logged as a warning).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// `delete`: take no final backup first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_backup: bool,
    /// `verify` of a site with ssl: order a new certificate now, however far its expiry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renew: bool,
}

impl TaskArgs {
    /// The options `task` takes.
    pub fn allowed(task: TaskKind) -> &'static [&'static str] {
        match task {
            TaskKind::Backup => &["compression"],
            TaskKind::Restore => &["backup", "compression"],
            TaskKind::BackupDelete => &["backup"],
            TaskKind::Clone => &["new_uri", "platform", "db_server", "compression"],
            TaskKind::Migrate => &["new_uri", "platform", "db_server", "force", "compression"],
            TaskKind::Delete => &["skip_backup", "compression"],
            TaskKind::Verify => &["renew"],
            _ => &[],
        }
    }

    /// Reads the options from a task request whose other fields were taken already.
    pub fn parse(fields: &mut Fields, task: TaskKind) -> Result<Self, ApiError> {
        let backup = match fields.string("backup")? {
            None => None,
            Some(id) => Some(Uuid::parse_str(&id).map_err(|_| {
                ApiError::invalid(
                    "backup",
                    format!("`{id}` is not a backup id; GET /api/v1/sites/<uri>/backups lists them"),
                )
            })?),
        };
        let args = TaskArgs {
            backup,
            compression: fields.parsed("compression")?,
            new_uri: fields.parsed::<ContextName>("new_uri")?.map(site_uri).transpose()?,
            platform: fields.parsed::<ContextName>("platform")?.map(platform).transpose()?,
            db_server: fields.parsed::<ContextName>("db_server")?.map(server).transpose()?,
            force: fields.boolean("force")?.unwrap_or(false),
            skip_backup: fields.boolean("skip_backup")?.unwrap_or(false),
            renew: fields.boolean("renew")?.unwrap_or(false),
        };
        let allowed = Self::allowed(task);
        if let Some(extra) = args.given().into_iter().find(|f| !allowed.contains(f)) {
            let takes = if allowed.is_empty() {
                "it takes no options".to_owned()
            } else {
                format!("its options are {}", allowed.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))
            };
            return Err(ApiError::invalid(extra, format!("`{extra}` is not an option of `{task}`: {takes}")));
        }
        match task {
            TaskKind::Restore | TaskKind::BackupDelete if args.backup.is_none() => Err(ApiError::invalid(
                "backup",
                format!(
                    "`{task}` needs `backup`, the id of one of the site's archives (`aegir backups @<site>` lists them)"
                ),
            )),
            TaskKind::Clone if args.new_uri.is_none() => {
                Err(ApiError::invalid("new_uri", "`clone` needs `new_uri`, the uri of the new site"))
            }
            TaskKind::Migrate if args.new_uri.is_none() && args.platform.is_none() && args.db_server.is_none() => {
                Err(ApiError::invalid(
                    "platform",
                    "`migrate` needs where to: `platform`, `db_server` or `new_uri` (or several of them)",
                ))
            }
            _ => Ok(args),
        }
    }

    fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        let mut note = |present: bool, name| {
            if present {
                given.push(name)
            }
        };
        note(self.backup.is_some(), "backup");
        note(self.compression.is_some(), "compression");
        note(self.new_uri.is_some(), "new_uri");
        note(self.platform.is_some(), "platform");
        note(self.db_server.is_some(), "db_server");
        note(self.force, "force");
        note(self.skip_backup, "skip_backup");
        note(self.renew, "renew");
        given
    }

    /// What is stored with the task and shown by the API; `None` when nothing was asked.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        (self != &TaskArgs::default()).then(|| serde_json::to_value(self).expect("task options serialize"))
    }

    /// Reads back what [`TaskArgs::to_json`] stored.
    pub fn from_stored(value: Option<&serde_json::Value>) -> Option<Self> {
        value.and_then(|v| serde_json::from_value(v.clone()).ok())
    }
}

fn site_uri(name: ContextName) -> Result<SiteUri, ApiError> {
    match name {
        ContextName::Site(uri) => Ok(uri),
        other => Err(ApiError::invalid(
            "new_uri",
            format!(
                "`{other}` is a {} name, not a site uri; give one such as `staging.example.com`",
                other.context_type()
            ),
        )),
    }
}

fn platform(name: ContextName) -> Result<PlatformName, ApiError> {
    match name {
        ContextName::Platform(p) => Ok(p),
        other => Err(ApiError::invalid(
            "platform",
            format!("`{other}` is a {}, not a platform; give one such as `@platform_wp`", other.context_type()),
        )),
    }
}

fn server(name: ContextName) -> Result<ServerName, ApiError> {
    match name {
        ContextName::Server(s) => Ok(s),
        other => Err(ApiError::invalid(
            "db_server",
            format!("`{other}` is a {}, not a server; give one such as `@server_master`", other.context_type()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(task: TaskKind, body: serde_json::Value) -> Result<TaskArgs, ApiError> {
        let serde_json::Value::Object(map) = body else { panic!("an object") };
        let mut fields = Fields::new(map, &FIELDS).unwrap();
        TaskArgs::parse(&mut fields, task)
    }

    #[test]
    fn each_task_takes_its_own_options() {
        let clone =
            parse(TaskKind::Clone, json!({"new_uri": "staging.example.com", "platform": "@platform_b"})).unwrap();
        assert_eq!(clone.new_uri.unwrap().as_str(), "staging.example.com");
        assert_eq!(clone.platform.unwrap().as_str(), "platform_b");
        let e = parse(TaskKind::Backup, json!({"new_uri": "x.example.com"})).unwrap_err();
        assert!(e.to_string().contains("not an option of `backup`"), "{e}");
        let e = parse(TaskKind::Verify, json!({"force": true})).unwrap_err();
        assert!(e.to_string().contains("not an option of `verify`"), "{e}");
        let e = parse(TaskKind::Cron, json!({"force": true})).unwrap_err();
        assert!(e.to_string().contains("takes no options"), "{e}");
        assert!(parse(TaskKind::Verify, json!({"renew": true})).unwrap().renew);
    }

    #[test]
    fn required_options_are_asked_for() {
        assert!(parse(TaskKind::Restore, json!({})).unwrap_err().to_string().contains("needs `backup`"));
        assert!(parse(TaskKind::Clone, json!({})).unwrap_err().to_string().contains("needs `new_uri`"));
        assert!(parse(TaskKind::Migrate, json!({})).unwrap_err().to_string().contains("needs where to"));
        let e = parse(TaskKind::Restore, json!({"backup": "yesterday"})).unwrap_err();
        assert!(e.to_string().contains("not a backup id"), "{e}");
        let e = parse(TaskKind::Migrate, json!({"platform": "@server_master"})).unwrap_err();
        assert!(e.to_string().contains("not a platform"), "{e}");
    }

    #[test]
    fn stored_options_read_back() {
        let args = parse(TaskKind::Migrate, json!({"platform": "platform_b", "force": true})).unwrap();
        let stored = args.to_json().unwrap();
        assert_eq!(stored, json!({"platform": "platform_b", "force": true}));
        assert_eq!(TaskArgs::from_stored(Some(&stored)), Some(args));
        assert_eq!(TaskArgs::default().to_json(), None);
    }
}
