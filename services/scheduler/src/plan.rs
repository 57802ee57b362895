//! What each task is made of: the steps, in order, the queue each one goes to, and how
//! each is undone when a later one fails. A plan is a pure function of the request, so
//! it is recomputed rather than stored.

use aegir_contract::{
    BackupRef, HostName, Route, ServerContext, ServerName, ServiceKind, SiteContext, SiteUri, StepAction, TaskKind,
    TaskOptions, TaskRequested, TaskTarget,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub action: StepAction,
    /// Undo this step (also when it failed half way), in this order; empty when nothing
    /// needs undoing.
    pub undo: Vec<StepAction>,
}

fn step(action: StepAction) -> PlannedStep {
    PlannedStep { action, undo: Vec::new() }
}

fn undoable(action: StepAction, undo: StepAction) -> PlannedStep {
    PlannedStep { action, undo: vec![undo] }
}

pub fn steps(request: &TaskRequested) -> Vec<PlannedStep> {
    match (&request.kind, &request.target) {
        (TaskKind::Ping, target) => {
            ping_routes(target).into_iter().map(|route| step(StepAction::Ping { route })).collect()
        }
        (TaskKind::Verify, TaskTarget::Server { server }) => {
            let mut steps = Vec::new();
            // The web part first: it writes the server's base config.
            if server.http.is_some() {
                steps.push(step(StepAction::HttpServerVerify { server: server.clone() }));
            }
            if server.db.is_some() {
                steps.push(step(StepAction::DbServerVerify { server: server.clone() }));
            }
            if server.dns.is_some() {
                steps.push(step(StepAction::DnsServerVerify { server: server.clone() }));
            }
            steps
        }
        // A platform with a source is built first when its root is missing; a failed
        // verify then removes what the build made, and only that.
        (TaskKind::Verify, TaskTarget::Platform { platform }) => {
            let mut plan = Vec::new();
            if platform.source.is_some() {
                plan.push(undoable(
                    StepAction::PlatformBuild { platform: platform.clone() },
                    StepAction::PlatformBuildRemove { platform: platform.clone() },
                ));
            }
            plan.push(step(StepAction::PlatformVerify { platform: platform.clone() }));
            plan
        }
        // Import only reads the platform; task-api creates the records from what it found.
        (TaskKind::Import, TaskTarget::Platform { platform }) => {
            vec![step(StepAction::PlatformImport { platform: platform.clone() })]
        }
        // task-api refused the delete while sites were on it; the step checks the disk too.
        (TaskKind::Delete, TaskTarget::Platform { platform }) => {
            vec![step(StepAction::PlatformDelete { platform: platform.clone() })]
        }
        // Locking is a change of the platform's record only: nothing runs on a server,
        // but it is still a task, in order with the platform's other tasks and logged.
        (TaskKind::Lock | TaskKind::Unlock, TaskTarget::Platform { .. }) => Vec::new(),
        (kind, TaskTarget::Site { site }) => site_steps(*kind, site, &request.options),
        // The contract refuses these combinations before a plan is made.
        (_, TaskTarget::Server { .. } | TaskTarget::Platform { .. }) => Vec::new(),
    }
}

fn site_steps(kind: TaskKind, site: &SiteContext, options: &TaskOptions) -> Vec<PlannedStep> {
    let s = || site.clone();
    match kind {
        TaskKind::Install => {
            let mut plan = vec![
                undoable(StepAction::SiteDatabaseCreate { site: s() }, StepAction::SiteDatabaseDrop { site: s() }),
                undoable(StepAction::SiteInstall { site: s() }, StepAction::SiteRemove { site: s() }),
            ];
            // The name points at the site only once it answers there, and before its
            // certificate is ordered: the ACME server finds the site by that name.
            if has_dns(site) {
                plan.push(undoable(StepAction::SiteDnsAdd { site: s() }, StepAction::SiteDnsRemove { site: s() }));
            }
            // Once the site answers over http, where the ACME challenge is checked.
            if !site.ssl.is_off() {
                plan.push(step(StepAction::SiteCertificate { site: s(), renew: false, supplied: None }));
            }
            plan
        }
        TaskKind::Verify => {
            let mut plan = vec![step(StepAction::SiteVerify { site: s() })];
            // The records follow the site's aliases as they are now (before a certificate
            // for them is ordered).
            if has_dns(site) {
                plan.push(step(StepAction::SiteDnsAdd { site: s() }));
            }
            // Its certificate is renewed when it expires soon (or when asked), so the
            // renewal queue's tasks are verifies too.
            if !site.ssl.is_off() {
                plan.push(step(StepAction::SiteCertificate {
                    site: s(),
                    renew: options.renew_certificate,
                    supplied: options.certificate.clone(),
                }));
            }
            plan
        }
        TaskKind::Disable => vec![step(StepAction::SiteDisable { site: s() })],
        TaskKind::Enable => vec![step(StepAction::SiteEnable { site: s() })],
        TaskKind::LoginReset => vec![step(StepAction::SiteLoginReset { site: s() })],
        TaskKind::Cron => vec![step(StepAction::SiteCron { site: s() })],
        TaskKind::Stats => {
            vec![step(StepAction::SiteDatabaseStats { site: s() }), step(StepAction::SiteStats { site: s() })]
        }
        TaskKind::Backup => {
            let Some(backup) = options.new_backup.clone() else { return Vec::new() };
            let mut plan = archive(site, &backup);
            // A backup that did not finish leaves nothing behind in the store.
            plan[0].undo = vec![StepAction::BackupDelete { site: s(), backup }];
            plan
        }
        // The final backup first (kept whatever happens next); then the web server stops
        // serving the site before its database goes.
        TaskKind::Delete => {
            let mut plan = options.new_backup.as_ref().map(|b| archive(site, b)).unwrap_or_default();
            if has_dns(site) {
                plan.push(step(StepAction::SiteDnsRemove { site: s() }));
            }
            plan.push(step(StepAction::SiteRemove { site: s() }));
            plan.push(step(StepAction::SiteDatabaseDrop { site: s() }));
            plan
        }
        TaskKind::BackupDelete => match &options.from_backup {
            Some(backup) => vec![step(StepAction::BackupDelete { site: s(), backup: backup.clone() })],
            None => Vec::new(),
        },
        TaskKind::Restore => match (&options.from_backup, &options.new_backup) {
            (Some(from), Some(safety)) => restore(site, from, safety),
            _ => Vec::new(),
        },
        TaskKind::Clone => match (&options.new_backup, &options.to) {
            (Some(backup), Some(to)) => clone(site, backup, to),
            _ => Vec::new(),
        },
        TaskKind::Migrate => match (&options.new_backup, &options.to) {
            (Some(backup), Some(to)) => migrate(site, backup, to),
            _ => Vec::new(),
        },
        // Ping is planned above; the contract refuses the others for sites.
        TaskKind::Ping | TaskKind::Lock | TaskKind::Unlock | TaskKind::Import => Vec::new(),
    }
}

/// Dump the database into the store, then write the archive around it.
fn archive(site: &SiteContext, backup: &BackupRef) -> Vec<PlannedStep> {
    vec![
        step(StepAction::SiteDatabaseDump { site: site.clone(), backup: backup.clone() }),
        step(StepAction::SiteArchiveCreate { site: site.clone(), backup: backup.clone() }),
    ]
}

/// Check the archive before anything changes; keep a copy of the site as it is, so a
/// restore that fails half way puts that copy back.
fn restore(site: &SiteContext, from: &BackupRef, safety: &BackupRef) -> Vec<PlannedStep> {
    let s = || site.clone();
    let mut plan = vec![step(StepAction::SiteArchiveCheck { site: s(), backup: from.clone() })];
    plan.extend(archive(site, safety));
    plan.push(undoable(
        StepAction::SiteDatabaseLoad { site: s(), backup: from.clone() },
        StepAction::SiteDatabaseLoad { site: s(), backup: safety.clone() },
    ));
    plan.push(undoable(
        StepAction::SiteFilesUnpack { site: s(), backup: from.clone() },
        StepAction::SiteFilesUnpack { site: s(), backup: safety.clone() },
    ));
    // Settings and vhost rendered for the site as it is now (archives hold no secrets).
    plan.push(step(StepAction::SiteDeploy { site: s(), renamed_from: None }));
    plan
}

/// A new site from an archive of this one; what fails removes the new site entirely.
fn clone(site: &SiteContext, backup: &BackupRef, to: &SiteContext) -> Vec<PlannedStep> {
    let t = || to.clone();
    let mut plan = archive(site, backup);
    plan.push(undoable(StepAction::SiteDatabaseCreate { site: t() }, StepAction::SiteDatabaseDrop { site: t() }));
    plan.push(step(StepAction::SiteDatabaseLoad { site: t(), backup: backup.clone() }));
    plan.push(undoable(
        StepAction::SiteFilesUnpack { site: t(), backup: backup.clone() },
        StepAction::SiteRemove { site: t() },
    ));
    plan.push(step(StepAction::SiteDeploy { site: t(), renamed_from: Some(site.uri.clone()) }));
    if has_dns(to) {
        plan.push(undoable(StepAction::SiteDnsAdd { site: t() }, StepAction::SiteDnsRemove { site: t() }));
    }
    // The new uri gets a certificate of its own once its name points at it.
    if !to.ssl.is_off() {
        plan.push(step(StepAction::SiteCertificate { site: t(), renew: false, supplied: None }));
    }
    plan
}

/// Moves the site from `site` to `to`: another platform (then the application's update
/// runs), another db server, another uri, or several of these. The old site keeps
/// serving until the new one is deployed; any failure puts the old one back, database
/// included, from the archive taken first.
fn migrate(site: &SiteContext, backup: &BackupRef, to: &SiteContext) -> Vec<PlannedStep> {
    let old = || site.clone();
    let new = || to.clone();
    let same_web_server = site.platform.web_server.name == to.platform.web_server.name;
    // One vhost file per uri and web server: the new site takes over the old one's.
    let same_vhost = same_web_server && site.uri == to.uri;
    let same_dir = same_vhost && site.platform.root == to.platform.root;
    let same_db = site.db_server.name == to.db_server.name && site.database.name == to.database.name;
    let platform_changed = site.platform.name != to.platform.name;

    let mut plan = archive(site, backup);
    if !same_db {
        plan.push(undoable(
            StepAction::SiteDatabaseCreate { site: new() },
            StepAction::SiteDatabaseDrop { site: new() },
        ));
        plan.push(step(StepAction::SiteDatabaseLoad { site: new(), backup: backup.clone() }));
    }
    if !same_dir {
        let undo = if same_vhost {
            StepAction::SiteFilesRemove { site: new() }
        } else {
            StepAction::SiteRemove { site: new() }
        };
        plan.push(undoable(StepAction::SiteFilesUnpack { site: new(), backup: backup.clone() }, undo));
    }
    let renamed_from = (site.uri != to.uri).then(|| site.uri.clone());
    let mut deploy = step(StepAction::SiteDeploy { site: new(), renamed_from });
    // From here on the old database may change (renamed uri, application update): put
    // it back from the archive, then serve the old site again.
    if same_db {
        deploy.undo.push(StepAction::SiteDatabaseLoad { site: old(), backup: backup.clone() });
    }
    if same_vhost {
        deploy.undo.push(StepAction::SiteDeploy { site: old(), renamed_from: None });
    }
    plan.push(deploy);
    if platform_changed {
        plan.push(step(StepAction::SiteUpdate { site: new() }));
    }
    // The records follow the site once it serves where it moved: the new ones are
    // added (a failure after that puts the old ones back), the old ones go last.
    let dns_moved = dns_of(site) != dns_of(to);
    if dns_moved && has_dns(to) {
        let mut undo = vec![StepAction::SiteDnsRemove { site: new() }];
        if has_dns(site) {
            undo.push(StepAction::SiteDnsAdd { site: old() });
        }
        plan.push(PlannedStep { action: StepAction::SiteDnsAdd { site: new() }, undo });
    }
    // A certificate where the site now serves: a new uri or web server has none yet (an
    // order that fails leaves it on http and shows why, without undoing the move).
    if !to.ssl.is_off() {
        plan.push(step(StepAction::SiteCertificate { site: new(), renew: false, supplied: None }));
    }
    // The new site serves and is up to date: what is left of the old one goes.
    if !same_dir {
        plan.push(step(if same_vhost {
            StepAction::SiteFilesRemove { site: old() }
        } else {
            StepAction::SiteRemove { site: old() }
        }));
    }
    if !same_db {
        plan.push(step(StepAction::SiteDatabaseDrop { site: old() }));
    }
    // The same uri on the same dns server: adding the new records replaced the old ones.
    let old_dns_server = site.dns_server.as_ref().map(|s| &s.name);
    let replaced = has_dns(to) && site.uri == to.uri && old_dns_server == to.dns_server.as_ref().map(|s| &s.name);
    if dns_moved && has_dns(site) && !replaced {
        plan.push(step(StepAction::SiteDnsRemove { site: old() }));
    }
    plan
}

/// Whether the site's records are kept by a dns server.
fn has_dns(site: &SiteContext) -> bool {
    site.dns_server.as_ref().is_some_and(|s| s.dns.is_some())
}

/// What the site's records depend on: its names, its dns server and where they point.
fn dns_of(site: &SiteContext) -> Option<(&ServerName, &SiteUri, &[SiteUri], &HostName)> {
    let dns = site.dns_server.as_ref().filter(|s| s.dns.is_some())?;
    Some((&dns.name, &site.uri, &site.aliases, &site.platform.web_server.remote_host))
}

/// The workers a context depends on.
fn ping_routes(target: &TaskTarget) -> Vec<Route> {
    let services = |server: &ServerContext| {
        let mut routes = Vec::new();
        if server.http.is_some() {
            routes.push(Route::new(server.name.clone(), ServiceKind::Http));
        }
        if server.db.is_some() {
            routes.push(Route::new(server.name.clone(), ServiceKind::Db));
        }
        if server.dns.is_some() {
            routes.push(Route::new(server.name.clone(), ServiceKind::Dns));
        }
        routes
    };
    match target {
        TaskTarget::Server { server } => services(server),
        TaskTarget::Platform { platform } => vec![Route::new(platform.web_server.name.clone(), ServiceKind::Http)],
        TaskTarget::Site { site } => {
            let mut routes = vec![
                Route::new(site.platform.web_server.name.clone(), ServiceKind::Http),
                Route::new(site.db_server.name.clone(), ServiceKind::Db),
            ];
            if let Some(dns) = site.dns_server.as_ref().filter(|s| s.dns.is_some()) {
                routes.push(Route::new(dns.name.clone(), ServiceKind::Dns));
            }
            routes
        }
    }
}

/// The undo steps after step `failed` failed: that step's own undo first (it may have
/// done part of its work), then those of the steps before it, newest first.
pub fn rollback(plan: &[PlannedStep], failed: usize) -> Vec<StepAction> {
    plan.iter().take(failed + 1).rev().flat_map(|s| s.undo.iter().cloned()).collect()
}

/// Something the task log should say before the task's first step.
pub fn notice(request: &TaskRequested) -> Option<&'static str> {
    match (&request.kind, &request.target) {
        (TaskKind::Delete, TaskTarget::Site { .. }) if request.options.new_backup.is_none() => {
            Some("no final backup is taken before the delete: it was asked to skip it")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegir_contract::*;
    use chrono::Utc;
    use uuid::Uuid;

    fn server(http: bool, db: bool) -> ServerContext {
        ServerContext {
            name: ServerName::parse("server_master").unwrap(),
            remote_host: HostName::parse("localhost").unwrap(),
            http: http.then_some(HttpService { service_type: HttpServiceType::Nginx, port: 80 }),
            db: db.then(|| DbService {
                service_type: DbServiceType::Mariadb,
                host: HostName::parse("127.0.0.1").unwrap(),
                port: 3306,
                admin_user: "root".into(),
                admin_password: Secret::new(""),
            }),
            dns: None,
        }
    }

    fn platform() -> PlatformContext {
        PlatformContext {
            name: PlatformName::parse("platform_wp").unwrap(),
            root: AbsolutePath::parse("/var/aegir/platforms/wp").unwrap(),
            web_server: server(true, false),
            source: None,
        }
    }

    fn site() -> SiteContext {
        SiteContext {
            uri: SiteUri::parse("www.example.com").unwrap(),
            aliases: vec![],
            redirection: false,
            platform: platform(),
            platform_type: PlatformType::Wordpress,
            db_server: server(false, true),
            database: SiteDatabase {
                name: DbIdent::parse("www_example_com_abc").unwrap(),
                user: DbIdent::parse("www_example_com_abc").unwrap(),
                password: Secret::new("pw"),
            },
            profile: None,
            language: LanguageCode::parse("en").unwrap(),
            title: SiteTitle::parse("Example").unwrap(),
            admin_email: Email::parse("admin@example.com").unwrap(),
            client: None,
            php_version: None,
            dns_server: None,
            ssl: Default::default(),
        }
    }

    fn task(kind: TaskKind, target: TaskTarget) -> TaskRequested {
        TaskRequested {
            task_id: Uuid::now_v7(),
            kind,
            target,
            options: TaskOptions::default(),
            lane: Default::default(),
            requested_at: Utc::now(),
        }
    }

    fn site_task(kind: TaskKind, options: TaskOptions) -> TaskRequested {
        let request = TaskRequested { options, ..task(kind, TaskTarget::Site { site: site() }) };
        request.validate().expect("a valid request");
        request
    }

    fn backup() -> BackupRef {
        BackupRef::new(site().uri, Compression::Zstd)
    }

    fn plan_labels(plan: &[PlannedStep]) -> Vec<&'static str> {
        labels(plan.iter().map(|s| s.action.clone()))
    }

    fn labels(actions: impl IntoIterator<Item = StepAction>) -> Vec<&'static str> {
        actions.into_iter().map(|a| a.label()).collect()
    }

    #[test]
    fn a_server_verify_checks_each_service_it_offers() {
        let both = steps(&task(TaskKind::Verify, TaskTarget::Server { server: server(true, true) }));
        let routes: Vec<String> = both.iter().map(|s| s.action.route().to_string()).collect();
        assert_eq!(routes, ["server_master.http", "server_master.db"]);
        assert_eq!(steps(&task(TaskKind::Verify, TaskTarget::Server { server: server(false, true) })).len(), 1);
        assert!(steps(&task(TaskKind::Verify, TaskTarget::Server { server: server(false, false) })).is_empty());
    }

    #[test]
    fn a_platform_verify_runs_on_its_web_server() {
        let plan = steps(&task(TaskKind::Verify, TaskTarget::Platform { platform: platform() }));
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].action.route().to_string(), "server_master.http");
    }

    #[test]
    fn a_platform_with_a_source_is_built_by_the_backup_worker_before_its_verify() {
        let mut built = platform();
        built.source = Some(PlatformSource::Archive { key: StoreKey::parse("platforms/wp.tar.gz").unwrap() });
        let plan = steps(&task(TaskKind::Verify, TaskTarget::Platform { platform: built }));
        assert_eq!(plan_labels(&plan), ["platform build", "platform verify"]);
        let routes: Vec<String> = plan.iter().map(|s| s.action.route().to_string()).collect();
        assert_eq!(routes, ["server_master.backup", "server_master.http"]);
        // A verify that fails removes what the build made; a failed build has its own undo
        // too, which finds nothing of this task's to remove.
        assert_eq!(labels(rollback(&plan, 1)), ["platform build remove"]);
        assert_eq!(labels(rollback(&plan, 0)), ["platform build remove"]);
    }

    #[test]
    fn a_platform_import_and_delete_each_run_one_step_on_its_web_server() {
        for (kind, label) in [(TaskKind::Import, "platform import"), (TaskKind::Delete, "platform delete")] {
            let plan = steps(&task(kind, TaskTarget::Platform { platform: platform() }));
            assert_eq!(labels(plan.iter().map(|s| s.action.clone())), [label]);
            assert_eq!(plan[0].action.route().to_string(), "server_master.http");
            assert!(rollback(&plan, 0).is_empty());
        }
    }

    #[test]
    fn a_failed_install_undoes_what_it_did_newest_first() {
        let plan = steps(&task(TaskKind::Install, TaskTarget::Site { site: site() }));
        assert_eq!(labels(plan.iter().map(|s| s.action.clone())), ["site database create", "site install"]);
        assert_eq!(labels(rollback(&plan, 0)), ["site database drop"]);
        assert_eq!(labels(rollback(&plan, 1)), ["site remove", "site database drop"]);
    }

    #[test]
    fn a_backup_dumps_then_archives_and_leaves_nothing_when_it_fails() {
        let plan =
            steps(&site_task(TaskKind::Backup, TaskOptions { new_backup: Some(backup()), ..Default::default() }));
        assert_eq!(plan_labels(&plan), ["site database dump", "site archive create"]);
        assert_eq!(plan[0].action.route().to_string(), "server_master.db");
        assert_eq!(plan[1].action.route().to_string(), "server_master.backup");
        assert_eq!(labels(rollback(&plan, 1)), ["backup delete"]);
    }

    #[test]
    fn a_restore_checks_the_archive_first_and_puts_the_safety_copy_back_on_failure() {
        let (from, safety) = (backup(), backup());
        let options =
            TaskOptions { new_backup: Some(safety.clone()), from_backup: Some(from.clone()), ..Default::default() };
        let plan = steps(&site_task(TaskKind::Restore, options));
        assert_eq!(
            plan_labels(&plan),
            [
                "site archive check",
                "site database dump",
                "site archive create",
                "site database load",
                "site files unpack",
                "site deploy"
            ]
        );
        assert!(rollback(&plan, 0).is_empty(), "a damaged archive changes nothing");
        let undo = rollback(&plan, 4);
        assert_eq!(labels(undo.clone()), ["site files unpack", "site database load"]);
        for action in undo {
            match action {
                StepAction::SiteFilesUnpack { backup, .. } | StepAction::SiteDatabaseLoad { backup, .. } => {
                    assert_eq!(backup, safety)
                }
                other => panic!("unexpected undo {other:?}"),
            }
        }
    }

    #[test]
    fn a_clone_that_fails_removes_the_new_site_only() {
        let mut to = site();
        to.uri = SiteUri::parse("staging.example.com").unwrap();
        to.database.name = DbIdent::parse("staging_example_com").unwrap();
        let options = TaskOptions { new_backup: Some(backup()), to: Some(Box::new(to.clone())), ..Default::default() };
        let plan = steps(&site_task(TaskKind::Clone, options));
        assert_eq!(
            plan_labels(&plan),
            [
                "site database dump",
                "site archive create",
                "site database create",
                "site database load",
                "site files unpack",
                "site deploy"
            ]
        );
        let undo = rollback(&plan, 5);
        assert_eq!(labels(undo.clone()), ["site remove", "site database drop"]);
        assert!(undo.iter().all(|a| match a {
            StepAction::SiteRemove { site } | StepAction::SiteDatabaseDrop { site } => site.uri == to.uri,
            _ => false,
        }));
    }

    #[test]
    fn a_migrate_to_another_platform_updates_and_rolls_back_to_the_old_one() {
        let mut to = site();
        to.platform.name = PlatformName::parse("platform_wp_next").unwrap();
        to.platform.root = AbsolutePath::parse("/var/aegir/platforms/wp-next").unwrap();
        let b = backup();
        let options = TaskOptions { new_backup: Some(b.clone()), to: Some(Box::new(to.clone())), ..Default::default() };
        let plan = steps(&site_task(TaskKind::Migrate, options));
        assert_eq!(
            plan_labels(&plan),
            [
                "site database dump",
                "site archive create",
                "site files unpack",
                "site deploy",
                "site update",
                "site files remove"
            ]
        );
        // The update failed: the old database comes back, the old platform serves, the copy goes.
        let undo = rollback(&plan, 4);
        assert_eq!(labels(undo.clone()), ["site database load", "site deploy", "site files remove"]);
        assert!(matches!(&undo[0], StepAction::SiteDatabaseLoad { site: s, backup } if *s == site() && *backup == b));
        assert!(matches!(&undo[1], StepAction::SiteDeploy { site: s, .. } if *s == site()));
        assert!(matches!(&undo[2], StepAction::SiteFilesRemove { site: s } if s.platform.name == to.platform.name));
        // What is left of the old site goes last, from the old platform.
        assert!(matches!(&plan[5].action, StepAction::SiteFilesRemove { site: s } if *s == site()));
    }

    #[test]
    fn a_migrate_to_another_db_server_and_uri_copies_the_database_and_drops_the_old_one_last() {
        let mut to = site();
        to.uri = SiteUri::parse("new.example.com").unwrap();
        to.db_server.name = ServerName::parse("server_db2").unwrap();
        let options = TaskOptions { new_backup: Some(backup()), to: Some(Box::new(to)), ..Default::default() };
        let plan = steps(&site_task(TaskKind::Migrate, options));
        assert_eq!(
            plan_labels(&plan),
            [
                "site database dump",
                "site archive create",
                "site database create",
                "site database load",
                "site files unpack",
                "site deploy",
                "site remove",
                "site database drop"
            ]
        );
        assert_eq!(plan[2].action.route().to_string(), "server_db2.db");
        assert_eq!(plan[7].action.route().to_string(), "server_master.db");
        assert_eq!(labels(rollback(&plan, 5)), ["site remove", "site database drop"]);
    }

    #[test]
    fn a_ping_reaches_every_worker_the_context_depends_on() {
        let routes = |target| -> Vec<String> {
            steps(&task(TaskKind::Ping, target)).iter().map(|s| s.action.route().to_string()).collect()
        };
        assert_eq!(
            routes(TaskTarget::Server { server: server(true, true) }),
            ["server_master.http", "server_master.db"]
        );
        assert_eq!(routes(TaskTarget::Platform { platform: platform() }), ["server_master.http"]);
        assert_eq!(routes(TaskTarget::Site { site: site() }), ["server_master.http", "server_master.db"]);
    }

    #[test]
    fn a_site_with_ssl_gets_its_certificate_after_install_and_at_each_verify() {
        let ssl_site = SiteContext { ssl: aegir_contract::SslMode::Forced, ..site() };
        let install = steps(&task(TaskKind::Install, TaskTarget::Site { site: ssl_site.clone() }));
        assert_eq!(plan_labels(&install), ["site database create", "site install", "site certificate"]);
        let renew = TaskOptions { renew_certificate: true, ..Default::default() };
        let verify =
            steps(&TaskRequested { options: renew, ..task(TaskKind::Verify, TaskTarget::Site { site: ssl_site }) });
        assert!(matches!(verify[1].action, StepAction::SiteCertificate { renew: true, .. }));
        let supplied =
            aegir_contract::SuppliedCertificate { chain: "chain".to_owned(), key: aegir_contract::Secret::new("key") };
        let own = TaskOptions { certificate: Some(supplied.clone()), ..Default::default() };
        let verify = steps(&TaskRequested {
            options: own,
            ..task(
                TaskKind::Verify,
                TaskTarget::Site { site: SiteContext { ssl: aegir_contract::SslMode::On, ..site() } },
            )
        });
        assert!(
            matches!(&verify[1].action, StepAction::SiteCertificate { renew: false, supplied: Some(s), .. } if *s == supplied),
            "the supplied certificate goes to the certificate step"
        );
        let plain = steps(&task(TaskKind::Verify, TaskTarget::Site { site: site() }));
        assert_eq!(plan_labels(&plain), ["site verify"]);
    }

    #[test]
    fn a_site_with_ssl_gets_a_certificate_where_a_clone_or_migrate_takes_it() {
        let ssl_site = SiteContext { ssl: aegir_contract::SslMode::On, ..site() };
        let mut to = ssl_site.clone();
        to.uri = SiteUri::parse("new.example.com").unwrap();
        let options = TaskOptions { new_backup: Some(backup()), to: Some(Box::new(to.clone())), ..Default::default() };
        for kind in [TaskKind::Clone, TaskKind::Migrate] {
            let request = TaskRequested {
                target: TaskTarget::Site { site: ssl_site.clone() },
                ..site_task(kind, options.clone())
            };
            let plan = steps(&request);
            let at =
                plan.iter().position(|p| matches!(&p.action, StepAction::SiteCertificate { site, .. } if *site == to));
            let deploy = plan.iter().position(|p| matches!(p.action, StepAction::SiteDeploy { .. }));
            assert!(at > deploy, "{kind}: {:?}", plan_labels(&plan));
        }
    }

    #[test]
    fn a_delete_stops_serving_before_it_drops_the_database() {
        let request = task(TaskKind::Delete, TaskTarget::Site { site: site() });
        let plan = steps(&request);
        assert_eq!(labels(plan.iter().map(|s| s.action.clone())), ["site remove", "site database drop"]);
        assert!(rollback(&plan, 1).is_empty());
        assert!(notice(&request).is_some(), "no final backup was asked for");

        let request = site_task(TaskKind::Delete, TaskOptions { new_backup: Some(backup()), ..Default::default() });
        let plan = steps(&request);
        assert_eq!(
            plan_labels(&plan),
            ["site database dump", "site archive create", "site remove", "site database drop"]
        );
        assert!(rollback(&plan, 3).is_empty(), "the final backup is kept");
        assert!(notice(&request).is_none());
    }
    /// A name server of its own, and the site's web server naming it.
    fn ns() -> ServerContext {
        ServerContext {
            name: ServerName::parse("server_ns1").unwrap(),
            remote_host: HostName::parse("ns1.example.net").unwrap(),
            http: None,
            db: None,
            dns: Some(DnsService { service_type: DnsServiceType::Bind }),
        }
    }

    fn dns_site() -> SiteContext {
        SiteContext { dns_server: Some(ns()), ..site() }
    }

    fn dns_task(kind: TaskKind, options: TaskOptions) -> TaskRequested {
        let request = TaskRequested { options, ..task(kind, TaskTarget::Site { site: dns_site() }) };
        request.validate().expect("a valid request");
        request
    }

    #[test]
    fn a_server_with_dns_verifies_it_and_answers_pings_on_its_dns_queue() {
        let server =
            ServerContext { dns: Some(DnsService { service_type: DnsServiceType::Bind }), ..server(true, false) };
        let plan = steps(&task(TaskKind::Verify, TaskTarget::Server { server: server.clone() }));
        assert_eq!(plan_labels(&plan), ["web server verify", "dns server verify"]);
        assert_eq!(plan[1].action.route().to_string(), "server_master.dns");
        let pings = steps(&task(TaskKind::Ping, TaskTarget::Site { site: dns_site() }));
        let routes: Vec<String> = pings.iter().map(|s| s.action.route().to_string()).collect();
        assert_eq!(routes, ["server_master.http", "server_master.db", "server_ns1.dns"]);
    }

    #[test]
    fn an_install_adds_the_records_last_and_a_failure_removes_them_first() {
        let plan = steps(&dns_task(TaskKind::Install, TaskOptions::default()));
        assert_eq!(plan_labels(&plan), ["site database create", "site install", "site dns add"]);
        assert_eq!(plan[2].action.route().to_string(), "server_ns1.dns");
        assert_eq!(labels(rollback(&plan, 2)), ["site dns remove", "site remove", "site database drop"]);
        let verify = steps(&dns_task(TaskKind::Verify, TaskOptions::default()));
        assert_eq!(plan_labels(&verify), ["site verify", "site dns add"]);
        // A certificate is ordered for names that already point at the site.
        let ssl = SiteContext { ssl: SslMode::On, ..dns_site() };
        let plan = steps(&task(TaskKind::Install, TaskTarget::Site { site: ssl.clone() }));
        let certificate = plan_labels(&plan).iter().position(|l| *l == "site certificate");
        assert_eq!(certificate, Some(3), "{:?}", plan_labels(&plan));
        let plan = steps(&task(TaskKind::Verify, TaskTarget::Site { site: ssl }));
        assert_eq!(plan_labels(&plan)[1], "site dns add");
    }

    #[test]
    fn a_delete_removes_the_records_before_the_site() {
        let plan = steps(&dns_task(TaskKind::Delete, TaskOptions { new_backup: Some(backup()), ..Default::default() }));
        assert_eq!(
            plan_labels(&plan),
            ["site database dump", "site archive create", "site dns remove", "site remove", "site database drop"]
        );
    }

    #[test]
    fn a_clone_adds_the_new_sites_records_and_removes_them_when_it_fails() {
        let mut to = dns_site();
        to.uri = SiteUri::parse("staging.example.com").unwrap();
        to.database.name = DbIdent::parse("staging_example_com").unwrap();
        let options = TaskOptions { new_backup: Some(backup()), to: Some(Box::new(to.clone())), ..Default::default() };
        let plan = steps(&dns_task(TaskKind::Clone, options));
        assert_eq!(plan_labels(&plan).last(), Some(&"site dns add"));
        let undo = rollback(&plan, plan.len() - 1);
        assert!(matches!(&undo[0], StepAction::SiteDnsRemove { site } if site.uri == to.uri));
    }

    #[test]
    fn the_records_follow_a_site_migrated_to_another_uri_or_web_server() {
        // A new uri: the new records once the site serves there, the old ones last.
        let mut to = dns_site();
        to.uri = SiteUri::parse("new.example.com").unwrap();
        let options = TaskOptions { new_backup: Some(backup()), to: Some(Box::new(to.clone())), ..Default::default() };
        let plan = steps(&dns_task(TaskKind::Migrate, options));
        assert_eq!(
            plan_labels(&plan),
            [
                "site database dump",
                "site archive create",
                "site files unpack",
                "site deploy",
                "site dns add",
                "site remove",
                "site dns remove"
            ]
        );
        assert!(matches!(&plan[4].action, StepAction::SiteDnsAdd { site } if site.uri == to.uri));
        assert!(matches!(&plan[6].action, StepAction::SiteDnsRemove { site } if *site == dns_site()));
        // A failure after the new records puts the old ones back.
        let undo = rollback(&plan, 5);
        assert_eq!(labels(undo[..2].to_vec()), ["site dns remove", "site dns add"]);
        assert!(matches!(&undo[1], StepAction::SiteDnsAdd { site } if *site == dns_site()));

        // The same uri on another web server: the new records replace the old ones.
        let mut to = dns_site();
        to.platform.name = PlatformName::parse("platform_wp_web2").unwrap();
        to.platform.web_server.name = ServerName::parse("server_web2").unwrap();
        to.platform.web_server.remote_host = HostName::parse("192.0.2.20").unwrap();
        let options = TaskOptions { new_backup: Some(backup()), to: Some(Box::new(to)), ..Default::default() };
        let plan = steps(&dns_task(TaskKind::Migrate, options));
        let labels = plan_labels(&plan);
        assert_eq!(labels.iter().filter(|l| l.starts_with("site dns")).collect::<Vec<_>>(), [&"site dns add"]);

        // Another platform on the same web server: the records stay as they are.
        let mut to = dns_site();
        to.platform.name = PlatformName::parse("platform_wp_next").unwrap();
        to.platform.root = AbsolutePath::parse("/var/aegir/platforms/wp-next").unwrap();
        let options = TaskOptions { new_backup: Some(backup()), to: Some(Box::new(to)), ..Default::default() };
        let plan = steps(&dns_task(TaskKind::Migrate, options));
        assert!(plan_labels(&plan).iter().all(|l| !l.starts_with("site dns")));
    }
}
