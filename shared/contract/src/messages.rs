//! The five kinds of message of a task's life, plus the started event:
//!
//! 1. [`TaskRequested`]: task-api → scheduler, a task to run.
//! 2. [`StepDispatched`]: scheduler → a `<server>.<service>` queue, one step of it.
//! 3. [`StepResult`]: worker → scheduler (and task-api), how the step ended.
//! 4. [`TaskLog`]: any service → task-api, lines of a task's log.
//! 5. [`TaskStarted`] / [`TaskFinished`]: scheduler → everyone, the task's status.
//!
//! Lines written just before a step result, a start or an end ride inside that message
//! (its `log`) instead of a [`TaskLog`] of their own: most tasks' lines cost no message.
//!
//! And [`TaskCancelRequested`]: task-api → scheduler, after the request it cancels.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backup::{BackupFacts, BackupRef};
use crate::context::{FoundSite, Package, PlatformContext, PlatformType, ServerContext, SiteContext};
use crate::names::{ContextName, ContextType, PhpVersion, ProfileName, SiteUri};
use crate::routing::{Lane, Route, ServiceKind};
use crate::secret::Secret;

/// A message of the contract: its schema name and its checks beyond types.
pub trait Message: Serialize + DeserializeOwned + JsonSchema {
    /// File stem of its schema in `schemas/`.
    const NAME: &'static str;

    /// Checks that types alone cannot express.
    fn validate(&self) -> Result<(), ContractError> {
        Ok(())
    }

    /// Parses and checks a message body. Unknown fields, bad names and broken rules are
    /// all refused here, so a consumer never acts on a message it did not understand.
    fn decode(body: &[u8]) -> Result<Self, ContractError> {
        let msg: Self = serde_json::from_slice(body)
            .map_err(|e| ContractError::Invalid { message: Self::NAME, reason: e.to_string() })?;
        msg.validate()?;
        Ok(msg)
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("contract messages always serialize")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("invalid {message} message: {reason}")]
    Invalid { message: &'static str, reason: String },
}

/// The commands a task can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    Verify,
    Install,
    Disable,
    Enable,
    Delete,
    LoginReset,
    Lock,
    Unlock,
    /// Each worker the context depends on answers, doing nothing else: checks the whole
    /// path from the API to the workers and back.
    Ping,
    /// A platform's sites made outside the system get records (Aegir's platform import).
    Import,
    /// An archive of the site: files, settings and a database dump.
    Backup,
    /// The site's files and database put back as an archive holds them.
    Restore,
    /// An archive removed from the backup store.
    BackupDelete,
    /// A new site at a new uri from a copy of this one.
    Clone,
    /// The site moved to another platform (the upgrade path), db server or uri.
    Migrate,
    /// The application's periodic jobs (run by the cron queue, or by hand).
    Cron,
    /// Figures about the site: database and files size, HTTP health and response time,
    /// the application's own counts (run by the stats queue, or by hand).
    Stats,
}

crate::context::str_enum!(TaskKind, "task", "use one of `verify`, `install`, `disable`, `enable`, `delete`, `login-reset`, `lock`, `unlock`, `ping`, `import`, `backup`, `restore`, `backup-delete`, `clone`, `migrate`, `cron`, `stats`", {
    Verify => "verify",
    Install => "install",
    Disable => "disable",
    Enable => "enable",
    Delete => "delete",
    LoginReset => "login-reset",
    Lock => "lock",
    Unlock => "unlock",
    Ping => "ping",
    Import => "import",
    Backup => "backup",
    Restore => "restore",
    BackupDelete => "backup-delete",
    Clone => "clone",
    Migrate => "migrate",
    Cron => "cron",
    Stats => "stats",
});

impl TaskKind {
    pub const ALL: [TaskKind; 17] = [
        TaskKind::Verify,
        TaskKind::Install,
        TaskKind::Disable,
        TaskKind::Enable,
        TaskKind::Delete,
        TaskKind::LoginReset,
        TaskKind::Lock,
        TaskKind::Unlock,
        TaskKind::Ping,
        TaskKind::Import,
        TaskKind::Backup,
        TaskKind::Restore,
        TaskKind::BackupDelete,
        TaskKind::Clone,
        TaskKind::Migrate,
        TaskKind::Cron,
        TaskKind::Stats,
    ];

    /// Whether a context of this type can run this task.
    pub fn applies_to(self, context: ContextType) -> bool {
        match context {
            ContextType::Server => matches!(self, TaskKind::Verify | TaskKind::Ping),
            // Platforms and servers have no archives: their code comes from a source.
            // A locked platform takes no new sites; a platform is deleted only without sites.
            ContextType::Platform => matches!(
                self,
                TaskKind::Verify
                    | TaskKind::Lock
                    | TaskKind::Unlock
                    | TaskKind::Ping
                    | TaskKind::Import
                    | TaskKind::Delete
            ),
            ContextType::Site => !matches!(self, TaskKind::Lock | TaskKind::Unlock | TaskKind::Import),
        }
    }
}

/// What a task acts on, with everything the workers need to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "context_type", rename_all = "snake_case", deny_unknown_fields)]
// A message is decoded, acted on and dropped; boxing would only make matching noisier.
#[allow(clippy::large_enum_variant)]
pub enum TaskTarget {
    Server { server: ServerContext },
    Platform { platform: PlatformContext },
    Site { site: SiteContext },
}

impl TaskTarget {
    pub fn context(&self) -> ContextName {
        match self {
            TaskTarget::Server { server } => ContextName::Server(server.name.clone()),
            TaskTarget::Platform { platform } => ContextName::Platform(platform.name.clone()),
            TaskTarget::Site { site } => ContextName::Site(site.uri.clone()),
        }
    }
}

/// What a task needs beyond its target, decided when it is requested so that its plan
/// is a pure function of the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskOptions {
    /// The archive the task makes first: `backup`; the safety copy `restore` and
    /// `migrate` take before they change anything; the source copy of `clone`; the final
    /// backup of a site `delete` (absent only when the delete was asked to skip it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_backup: Option<BackupRef>,
    /// The archive the task reads (`restore`) or removes (`backup-delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<BackupRef>,
    /// The site as it will be: the new site of a `clone`, the moved site of a `migrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Box<SiteContext>>,
    /// `verify` of a site with ssl: order a new certificate even when the current one
    /// is far from expiry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renew_certificate: bool,
    /// `verify` of a site with ssl: serve this certificate, supplied by the site's owner,
    /// instead of one from ACME. Its key is in this request only while the task runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<SuppliedCertificate>,
}

/// A certificate a site's owner supplied instead of ACME's, with its private key, both
/// PEM. task-api checked that they belong together, cover the site's names and have
/// not expired; the key reaches the site's web server only inside the task's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppliedCertificate {
    /// The site's certificate first, then the intermediates that chain it to a root.
    pub chain: String,
    pub key: Secret,
}

impl TaskOptions {
    pub fn is_empty(&self) -> bool {
        self == &TaskOptions::default()
    }
}

/// task-api → scheduler: run this task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRequested {
    pub task_id: Uuid,
    pub kind: TaskKind,
    pub target: TaskTarget,
    #[serde(default, skip_serializing_if = "TaskOptions::is_empty")]
    pub options: TaskOptions,
    /// `bulk` for tasks of the scheduled queues and batches; their steps give way to
    /// people's.
    #[serde(default, skip_serializing_if = "Lane::is_interactive")]
    pub lane: Lane,
    pub requested_at: DateTime<Utc>,
}

impl Message for TaskRequested {
    const NAME: &'static str = "task_requested";

    fn validate(&self) -> Result<(), ContractError> {
        let refuse = |reason: String| Err(ContractError::Invalid { message: Self::NAME, reason });
        let context = self.target.context();
        if !self.kind.applies_to(context.context_type()) {
            return refuse(format!("a {} cannot run `{}`", context.context_type(), self.kind));
        }
        let o = &self.options;
        let site = match &self.target {
            TaskTarget::Site { site } => Some(site),
            _ => None,
        };
        // Each task carries exactly the options it uses, each about the right site.
        let (new_backup, from_backup, to) = match self.kind {
            TaskKind::Backup | TaskKind::Clone | TaskKind::Migrate => {
                (true, false, matches!(self.kind, TaskKind::Clone | TaskKind::Migrate))
            }
            TaskKind::Restore => (true, true, false),
            TaskKind::BackupDelete => (false, true, false),
            TaskKind::Delete => (o.new_backup.is_some(), false, false),
            _ => (false, false, false),
        };
        for (name, wanted, present) in [
            ("new_backup", new_backup, o.new_backup.is_some()),
            ("from_backup", from_backup, o.from_backup.is_some()),
            ("to", to, o.to.is_some()),
        ] {
            if wanted != present {
                let verb = if wanted { "needs" } else { "takes no" };
                return refuse(format!("`{}` {verb} `{name}`", self.kind));
            }
        }
        if o.renew_certificate && !(self.kind == TaskKind::Verify && site.is_some_and(|s| !s.ssl.is_off())) {
            return refuse("only the verify of a site with ssl renews a certificate".to_owned());
        }
        if o.certificate.is_some() && !(self.kind == TaskKind::Verify && site.is_some_and(|s| !s.ssl.is_off())) {
            return refuse("only the verify of a site with ssl takes a supplied certificate".to_owned());
        }
        if o.certificate.is_some() && o.renew_certificate {
            return refuse("a verify either serves a supplied certificate or orders one, not both".to_owned());
        }
        if let Some(site) = site {
            if let Some(b) = &o.new_backup
                && b.site != site.uri
            {
                return refuse(format!("new_backup is of {}, not of the task's site {}", b.site, site.uri));
            }
            if let (TaskKind::Clone, Some(to)) = (self.kind, &o.to)
                && to.uri == site.uri
            {
                return refuse(format!("a clone needs a new uri, not the site's own ({})", site.uri));
            }
            if let (TaskKind::Migrate, Some(to)) = (self.kind, &o.to)
                && to.as_ref() == site
            {
                return refuse(format!("migrating {} to where it already is changes nothing", site.uri));
            }
        }
        Ok(())
    }
}

/// task-api → scheduler: cancel this task if it has not started. It travels on the
/// requests' queue, behind the request it cancels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCancelRequested {
    pub task_id: Uuid,
    pub requested_at: DateTime<Utc>,
}

impl Message for TaskCancelRequested {
    const NAME: &'static str = "task_cancel_requested";
}

/// One unit of work for one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepAction {
    /// Log in to the db server as admin; create and drop a database and a user.
    DbServerVerify { server: ServerContext },
    /// Check the web server is installed, its config tests clean, our config directory
    /// is writable, and that it reloads.
    HttpServerVerify { server: ServerContext },
    /// Check the name server's tools and zone directory, and write the `named.conf`
    /// include that lists the zones the system keeps.
    DnsServerVerify { server: ServerContext },
    /// Add (or put back) the records of the site's uri and aliases on its dns server, then
    /// reload the name server.
    SiteDnsAdd { site: SiteContext },
    /// Remove the site's records from its dns server (and a zone of its own with them),
    /// then reload the name server.
    SiteDnsRemove { site: SiteContext },
    /// Check the platform root, detect its type, fix permissions.
    PlatformVerify { platform: PlatformContext },
    /// Find the sites already on the platform (site directories with settings) and
    /// report them with what their settings and vhosts say. Changes nothing.
    PlatformImport { platform: PlatformContext },
    /// Remove the platform's root, refusing while it still holds site directories.
    /// Idempotent: a root already gone is success.
    PlatformDelete { platform: PlatformContext },
    /// Put the platform's code at its root from its `source` when the root is missing:
    /// built in a temporary directory beside it, then renamed into place, so no half
    /// platform is ever at the root. A root already there is kept as it is.
    PlatformBuild { platform: PlatformContext },
    /// Undo of [`StepAction::PlatformBuild`]: remove the root that build made in this
    /// task. A root this task did not build is left alone.
    PlatformBuildRemove { platform: PlatformContext },
    /// Create the site's database and its user, with grants on that database only.
    /// Idempotent: what exists already is kept.
    SiteDatabaseCreate { site: SiteContext },
    /// Drop the site's database and user, if they exist.
    SiteDatabaseDrop { site: SiteContext },
    /// Lay out the site's directory and settings, run the application's installer,
    /// write the vhost, test the config and reload.
    SiteInstall { site: SiteContext },
    /// Remove the site's vhost (and reload), then its directory. Idempotent.
    SiteRemove { site: SiteContext },
    /// Re-render settings and vhost, fix permissions, rescan packages, reload if changed.
    SiteVerify { site: SiteContext },
    /// Serve the "site disabled" page instead of the site.
    SiteDisable { site: SiteContext },
    /// Serve the site again.
    SiteEnable { site: SiteContext },
    /// Make a one-time login link for the site's administrator.
    SiteLoginReset { site: SiteContext },
    /// Answer, doing nothing else. Any worker runs it.
    Ping { route: Route },
    /// Dump the site's database, consistently and streamed, into the backup store as
    /// the staging object `backup.dump_key()`. Idempotent: a repeated dump replaces it.
    SiteDatabaseDump { site: SiteContext, backup: BackupRef },
    /// Replace everything in the site's database with the dump an archive holds, after
    /// checking it against the archive's manifest. The database and user must exist.
    SiteDatabaseLoad { site: SiteContext, backup: BackupRef },
    /// Write the archive: the staged dump, the site's directory, the manifest; then its
    /// sidecar manifest; then remove the staged dump. Reports [`BackupFacts`]. A repeated
    /// step whose archive is complete reports it again and writes nothing.
    SiteArchiveCreate { site: SiteContext, backup: BackupRef },
    /// Read a whole archive and check it against its manifest: changes nothing.
    SiteArchiveCheck { site: SiteContext, backup: BackupRef },
    /// Replace the site's directory with the one an archive holds (unpacked beside it,
    /// checked, then swapped in). Settings are rendered again by the deploy after it.
    SiteFilesUnpack { site: SiteContext, backup: BackupRef },
    /// Remove an archive, its sidecar manifest and any staged dump. Idempotent.
    BackupDelete { site: SiteContext, backup: BackupRef },
    /// Put a site whose files and database are in place into service: render settings
    /// (and, when it moved from another uri, update what the application stores about
    /// its address), fix permissions, write the vhost, test the config and reload.
    SiteDeploy {
        site: SiteContext,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renamed_from: Option<SiteUri>,
    },
    /// Run the application's own update (Drupal's database updates, WordPress's
    /// `wp_upgrade`, MediaWiki's `update.php`) after a move to another platform.
    SiteUpdate { site: SiteContext },
    /// Remove the site's directory and its entries in the platform's shared files,
    /// leaving the vhost, which serves the site from its new place. Idempotent.
    SiteFilesRemove { site: SiteContext },
    /// Run the application's periodic jobs once (Drupal's cron, WordPress's wp-cron,
    /// MediaWiki's job queue).
    SiteCron { site: SiteContext },
    /// Measure the site's database: bytes and tables. Changes nothing.
    SiteDatabaseStats { site: SiteContext },
    /// Measure the site: its files, its answer over HTTP (status, time), and the
    /// application's own counts where its platform type knows them. Changes nothing.
    SiteStats { site: SiteContext },
    /// Obtain or renew the site's certificate over ACME (HTTP-01, for its uri and
    /// aliases) when it has none, it expires soon or `renew` asks, then serve the site
    /// over https. A failed order keeps the old certificate and is reported in the facts.
    /// With `supplied`, serve that certificate instead; a supplied certificate is never
    /// replaced by an ACME one unless `renew` asks.
    SiteCertificate {
        site: SiteContext,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        renew: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supplied: Option<SuppliedCertificate>,
    },
}

impl StepAction {
    /// The queue this step must go to.
    pub fn route(&self) -> Route {
        match self {
            StepAction::DbServerVerify { server } => Route::new(server.name.clone(), ServiceKind::Db),
            StepAction::HttpServerVerify { server } => Route::new(server.name.clone(), ServiceKind::Http),
            StepAction::DnsServerVerify { server } => Route::new(server.name.clone(), ServiceKind::Dns),
            // A site without a dns server has no dns steps (`StepDispatched` refuses them);
            // its web server stands in so that a route always exists.
            StepAction::SiteDnsAdd { site } | StepAction::SiteDnsRemove { site } => {
                Route::new(site.dns_server.as_ref().unwrap_or(&site.platform.web_server).name.clone(), ServiceKind::Dns)
            }
            StepAction::PlatformVerify { platform }
            | StepAction::PlatformImport { platform }
            | StepAction::PlatformDelete { platform } => {
                Route::new(platform.web_server.name.clone(), ServiceKind::Http)
            }
            // The backup-worker of the web server builds: it reaches both the platform
            // roots and the backup store, so both kinds of source are built in one place.
            StepAction::PlatformBuild { platform } | StepAction::PlatformBuildRemove { platform } => {
                Route::new(platform.web_server.name.clone(), ServiceKind::Backup)
            }
            StepAction::SiteDatabaseCreate { site } | StepAction::SiteDatabaseDrop { site } => {
                Route::new(site.db_server.name.clone(), ServiceKind::Db)
            }
            StepAction::SiteInstall { site }
            | StepAction::SiteRemove { site }
            | StepAction::SiteVerify { site }
            | StepAction::SiteDisable { site }
            | StepAction::SiteEnable { site }
            | StepAction::SiteLoginReset { site } => {
                Route::new(site.platform.web_server.name.clone(), ServiceKind::Http)
            }
            StepAction::Ping { route } => route.clone(),
            StepAction::SiteDatabaseDump { site, .. }
            | StepAction::SiteDatabaseLoad { site, .. }
            | StepAction::SiteDatabaseStats { site } => Route::new(site.db_server.name.clone(), ServiceKind::Db),
            // Archives are made and unpacked where the site's files are.
            StepAction::SiteArchiveCreate { site, .. }
            | StepAction::SiteArchiveCheck { site, .. }
            | StepAction::SiteFilesUnpack { site, .. }
            | StepAction::BackupDelete { site, .. } => {
                Route::new(site.platform.web_server.name.clone(), ServiceKind::Backup)
            }
            StepAction::SiteDeploy { site, .. }
            | StepAction::SiteUpdate { site }
            | StepAction::SiteFilesRemove { site }
            | StepAction::SiteCron { site }
            | StepAction::SiteStats { site }
            | StepAction::SiteCertificate { site, .. } => {
                Route::new(site.platform.web_server.name.clone(), ServiceKind::Http)
            }
        }
    }

    /// A short human name for logs: `db server verify`.
    pub fn label(&self) -> &'static str {
        match self {
            StepAction::DbServerVerify { .. } => "db server verify",
            StepAction::HttpServerVerify { .. } => "web server verify",
            StepAction::DnsServerVerify { .. } => "dns server verify",
            StepAction::SiteDnsAdd { .. } => "site dns add",
            StepAction::SiteDnsRemove { .. } => "site dns remove",
            StepAction::PlatformVerify { .. } => "platform verify",
            StepAction::PlatformImport { .. } => "platform import",
            StepAction::PlatformDelete { .. } => "platform delete",
            StepAction::PlatformBuild { .. } => "platform build",
            StepAction::PlatformBuildRemove { .. } => "platform build remove",
            StepAction::SiteDatabaseCreate { .. } => "site database create",
            StepAction::SiteDatabaseDrop { .. } => "site database drop",
            StepAction::SiteInstall { .. } => "site install",
            StepAction::SiteRemove { .. } => "site remove",
            StepAction::SiteVerify { .. } => "site verify",
            StepAction::SiteDisable { .. } => "site disable",
            StepAction::SiteEnable { .. } => "site enable",
            StepAction::SiteLoginReset { .. } => "site login reset",
            StepAction::Ping { .. } => "ping",
            StepAction::SiteDatabaseDump { .. } => "site database dump",
            StepAction::SiteDatabaseLoad { .. } => "site database load",
            StepAction::SiteArchiveCreate { .. } => "site archive create",
            StepAction::SiteArchiveCheck { .. } => "site archive check",
            StepAction::SiteFilesUnpack { .. } => "site files unpack",
            StepAction::BackupDelete { .. } => "backup delete",
            StepAction::SiteDeploy { .. } => "site deploy",
            StepAction::SiteUpdate { .. } => "site update",
            StepAction::SiteFilesRemove { .. } => "site files remove",
            StepAction::SiteCron { .. } => "site cron",
            StepAction::SiteDatabaseStats { .. } => "site database stats",
            StepAction::SiteStats { .. } => "site stats",
            StepAction::SiteCertificate { .. } => "site certificate",
        }
    }
}

/// scheduler → `<server>.<service>`: run one step of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDispatched {
    pub task_id: Uuid,
    /// Index of the step in the task's plan, from 0.
    pub step: u32,
    /// 0 for the first try, then 1, 2, … for retries.
    pub attempt: u32,
    pub route: Route,
    /// The lane of the step's task: which of the route's two queues it is sent to.
    #[serde(default, skip_serializing_if = "Lane::is_interactive")]
    pub lane: Lane,
    pub action: StepAction,
    pub dispatched_at: DateTime<Utc>,
}

impl Message for StepDispatched {
    const NAME: &'static str = "step_dispatched";

    fn validate(&self) -> Result<(), ContractError> {
        let expected = self.action.route();
        if self.route != expected {
            return Err(ContractError::Invalid {
                message: Self::NAME,
                reason: format!("route `{}` does not match the action, which belongs on `{expected}`", self.route),
            });
        }
        if let StepAction::PlatformBuild { platform } = &self.action
            && platform.source.is_none()
        {
            return Err(ContractError::Invalid {
                message: Self::NAME,
                reason: format!("platform build of `@{}` names no source to build from", platform.name),
            });
        }
        if let StepAction::SiteDnsAdd { site } | StepAction::SiteDnsRemove { site } = &self.action
            && site.dns_server.as_ref().is_none_or(|s| s.dns.is_none())
        {
            return Err(ContractError::Invalid {
                message: Self::NAME,
                reason: format!("{} of `@{}` names no server with a dns service", self.action.label(), site.uri),
            });
        }
        Ok(())
    }
}

/// What a worker found out while doing a step, for the front end to record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_type: Option<PlatformType>,
    /// Version of the application on a platform, e.g. `6.4.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// Version of the service a server verify checked, e.g. `nginx/1.22.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_version: Option<String>,
    /// Everything a platform or site verify found installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<Package>>,
    /// Install profiles a platform offers (Drupal), found by platform verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<ProfileName>>,
    /// Sites found on a platform by platform import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<FoundSite>>,
    /// The archive a site archive create stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupFacts>,
    /// What a stats step measured; each step fills its own part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<SiteStats>,
    /// The PHP versions whose php-fpm a server verify found installed, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub php_versions: Option<Vec<PhpVersion>>,
    /// The version sites without one of their own run, found by the same verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub php_default_version: Option<PhpVersion>,
    /// The certificate a site certificate step left the site with, and the error of
    /// its order when one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateFacts>,
}

/// A site's certificate as its web server holds it. Never the key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateFacts {
    /// When the certificate in use expires; absent when the site has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Hex serial number, to tell a renewed certificate from the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Why the last order failed; absent when it succeeded or none was needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the certificate in use came from; absent when the site has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<CertificateSource>,
}

/// Where a site's certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// Ordered over ACME and renewed by the renewal queue.
    Acme,
    /// Supplied by the site's owner, who replaces it before it expires.
    User,
}

impl CertificateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateSource::Acme => "acme",
            CertificateSource::User => "user",
        }
    }
}

/// Figures about a site. Absent fields were not measured by the step that reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_tables: Option<u32>,
    /// Bytes of the site's directory (settings, files, private files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// The status of `GET /` on the site's own name; 0 when nothing answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<u32>,
    /// The application's own counts, e.g. `users`, `posts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<AppFigure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppFigure {
    pub name: String,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
// Decoded, acted on and dropped; boxing the facts would only make matching noisier.
#[allow(clippy::large_enum_variant)]
pub enum StepOutcome {
    Success {
        #[serde(default)]
        facts: StepFacts,
    },
    Failed {
        reason: String,
        /// True when trying again may succeed (a service briefly unreachable).
        transient: bool,
    },
}

/// worker → scheduler: how a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepResult {
    pub task_id: Uuid,
    pub step: u32,
    pub attempt: u32,
    pub route: Route,
    /// Which worker process did it (host and pid).
    pub worker: String,
    pub outcome: StepOutcome,
    pub finished_at: DateTime<Utc>,
    /// The step's last log lines, not sent before it ended. task-api stores them before
    /// the result's facts; a result without facts never reaches task-api, and the
    /// scheduler passes its lines on in the message it sends next for the task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogLine>,
}

impl StepResult {
    /// Whether task-api reads this result itself: only a success with facts tells it
    /// anything the scheduler's events do not. Any other goes to the scheduler alone,
    /// which passes its log lines on, so each step costs the broker one delivery.
    pub fn read_by_task_api(&self) -> bool {
        matches!(&self.outcome, StepOutcome::Success { facts } if *facts != StepFacts::default())
    }
}

impl Message for StepResult {
    const NAME: &'static str = "step_result";

    fn validate(&self) -> Result<(), ContractError> {
        lines_of(Self::NAME, self.task_id, &self.log)
    }
}

/// Refuses lines carried by a message of another task.
fn lines_of(message: &'static str, task_id: Uuid, lines: &[LogLine]) -> Result<(), ContractError> {
    match lines.iter().find(|line| line.task_id != task_id) {
        Some(line) => Err(ContractError::Invalid {
            message,
            reason: format!("it carries a log line of task {}, not of its task {task_id}", line.task_id),
        }),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warning,
    Error,
    Success,
}

/// One line of a task's log: sent in a [`TaskLog`], or inside the step result, start or
/// end it was written with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// Unique per line (UUIDv7, so it sorts by time); a redelivered line is stored once.
    pub id: Uuid,
    pub task_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    pub level: LogLevel,
    pub message: String,
    /// Who wrote it: `scheduler` or a route such as `server_master.http`.
    pub source: String,
    pub at: DateTime<Utc>,
}

/// any service → task-api: lines of one task's log, in the order written. A worker sends
/// the lines of a long step as they come, a few at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskLog {
    pub task_id: Uuid,
    /// At least one.
    pub lines: Vec<LogLine>,
}

impl Message for TaskLog {
    const NAME: &'static str = "task_log";

    fn validate(&self) -> Result<(), ContractError> {
        if self.lines.is_empty() {
            return Err(ContractError::Invalid { message: Self::NAME, reason: "it has no line".into() });
        }
        lines_of(Self::NAME, self.task_id, &self.lines)
    }
}

/// scheduler → everyone: a task left the queue and runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskStarted {
    pub task_id: Uuid,
    pub context: ContextName,
    pub kind: TaskKind,
    pub steps: u32,
    pub at: DateTime<Utc>,
    /// The scheduler's lines written as it started the task; stored before the start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogLine>,
}

impl Message for TaskStarted {
    const NAME: &'static str = "task_started";

    fn validate(&self) -> Result<(), ContractError> {
        lines_of(Self::NAME, self.task_id, &self.log)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    Success,
    Failed,
    /// Cancelled while it waited: it never started.
    Cancelled,
}

impl TaskOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskOutcome::Success => "success",
            TaskOutcome::Failed => "failed",
            TaskOutcome::Cancelled => "cancelled",
        }
    }
}

/// scheduler → everyone: a task ended. Sent exactly once per task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskFinished {
    pub task_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TaskKind>,
    pub outcome: TaskOutcome,
    /// Why it failed; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
    /// The scheduler's lines written as it ended the task; stored before the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogLine>,
}

impl Message for TaskFinished {
    const NAME: &'static str = "task_finished";

    fn validate(&self) -> Result<(), ContractError> {
        lines_of(Self::NAME, self.task_id, &self.log)
    }
}

/// The task a message belongs to, read from a body that may not be a valid message.
/// Lets a consumer fail the right task when it has to refuse what it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    pub task_id: Uuid,
    pub step: Option<u32>,
    pub attempt: Option<u32>,
}

impl TaskRef {
    pub fn peek(body: &[u8]) -> Option<TaskRef> {
        // Every message of a task is peeked at for its lane: a well-formed one gives its
        // ids without a tree of its whole body being built.
        #[derive(Deserialize)]
        struct Ids {
            task_id: Uuid,
            #[serde(default)]
            step: Option<u32>,
            #[serde(default)]
            attempt: Option<u32>,
        }
        if let Ok(Ids { task_id, step, attempt }) = serde_json::from_slice(body) {
            return Some(TaskRef { task_id, step, attempt });
        }
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let task_id = value.get("task_id")?.as_str()?.parse().ok()?;
        let number = |k: &str| value.get(k).and_then(|v| v.as_u64()).and_then(|n| u32::try_from(n).ok());
        Some(TaskRef { task_id, step: number("step"), attempt: number("attempt") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{HostName, ServerName};

    fn server() -> ServerContext {
        ServerContext {
            name: ServerName::parse("server_master").unwrap(),
            remote_host: HostName::parse("localhost").unwrap(),
            http: None,
            db: None,
            dns: None,
        }
    }

    #[test]
    fn a_step_on_the_wrong_route_is_refused() {
        let step = StepDispatched {
            task_id: Uuid::nil(),
            step: 0,
            attempt: 0,
            route: "server_master.http".parse().unwrap(),
            lane: Lane::Interactive,
            action: StepAction::DbServerVerify { server: server() },
            dispatched_at: Utc::now(),
        };
        let err = StepDispatched::decode(&step.encode()).unwrap_err();
        assert!(err.to_string().contains("server_master.db"), "{err}");
    }

    #[test]
    fn messages_round_trip() {
        let step = StepDispatched {
            task_id: Uuid::now_v7(),
            step: 1,
            attempt: 0,
            route: "server_master.db".parse().unwrap(),
            lane: Lane::Interactive,
            action: StepAction::DbServerVerify { server: server() },
            dispatched_at: Utc::now(),
        };
        assert_eq!(StepDispatched::decode(&step.encode()).unwrap(), step);
    }

    fn line(task_id: Uuid) -> LogLine {
        LogLine {
            id: Uuid::now_v7(),
            task_id,
            step: None,
            level: LogLevel::Info,
            message: "a line".into(),
            source: "scheduler".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn lines_ride_only_with_their_own_task() {
        let (task_id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let log = TaskLog { task_id, lines: vec![line(task_id), line(task_id)] };
        assert_eq!(TaskLog::decode(&log.encode()).unwrap(), log);
        let empty = TaskLog { task_id, lines: vec![] };
        assert!(TaskLog::decode(&empty.encode()).unwrap_err().to_string().contains("no line"));
        let mixed = TaskLog { task_id, lines: vec![line(task_id), line(other)] };
        assert!(TaskLog::decode(&mixed.encode()).unwrap_err().to_string().contains(&other.to_string()));

        let finished = |log| TaskFinished {
            task_id,
            context: None,
            kind: None,
            outcome: TaskOutcome::Success,
            reason: None,
            at: Utc::now(),
            log,
        };
        let carried = finished(vec![line(task_id)]);
        assert_eq!(TaskFinished::decode(&carried.encode()).unwrap(), carried);
        assert!(TaskFinished::decode(&finished(vec![line(other)]).encode()).is_err());
        // Without lines the field is left out, as earlier versions wrote it.
        assert!(!String::from_utf8(finished(vec![]).encode()).unwrap().contains("log"));
    }

    #[test]
    fn task_refs_are_read_from_broken_bodies() {
        let id = Uuid::now_v7();
        let body = format!(r#"{{"task_id":"{id}","step":2,"attempt":1,"nonsense":true}}"#);
        assert!(StepDispatched::decode(body.as_bytes()).is_err());
        let r = TaskRef::peek(body.as_bytes()).unwrap();
        assert_eq!((r.task_id, r.step, r.attempt), (id, Some(2), Some(1)));
        assert!(TaskRef::peek(b"not json").is_none());
    }
}
