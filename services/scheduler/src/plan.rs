//! What each task is made of: the steps, in order, the queue each one goes to, and how
//! each is undone when a later one fails. A plan is a pure function of the request, so
//! it is recomputed rather than stored.

use aegir_contract::{Route, ServerContext, ServiceKind, StepAction, TaskKind, TaskRequested, TaskTarget};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub action: StepAction,
    /// Undoes this step (also when it failed half way); `None` when nothing needs undoing.
    pub undo: Option<StepAction>,
}

fn step(action: StepAction) -> PlannedStep {
    PlannedStep { action, undo: None }
}

fn undoable(action: StepAction, undo: StepAction) -> PlannedStep {
    PlannedStep { action, undo: Some(undo) }
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
            steps
        }
        (TaskKind::Verify, TaskTarget::Platform { platform }) => {
            vec![step(StepAction::PlatformVerify { platform: platform.clone() })]
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
        (kind, TaskTarget::Site { site }) => {
            let site = site.clone();
            match kind {
                TaskKind::Install => vec![
                    undoable(
                        StepAction::SiteDatabaseCreate { site: site.clone() },
                        StepAction::SiteDatabaseDrop { site: site.clone() },
                    ),
                    undoable(StepAction::SiteInstall { site: site.clone() }, StepAction::SiteRemove { site }),
                ],
                TaskKind::Verify => vec![step(StepAction::SiteVerify { site })],
                TaskKind::Disable => vec![step(StepAction::SiteDisable { site })],
                TaskKind::Enable => vec![step(StepAction::SiteEnable { site })],
                TaskKind::LoginReset => vec![step(StepAction::SiteLoginReset { site })],
                // The web server stops serving it before its database goes.
                TaskKind::Delete => vec![
                    step(StepAction::SiteRemove { site: site.clone() }),
                    step(StepAction::SiteDatabaseDrop { site }),
                ],
                // Ping is planned above; the contract refuses the others for sites.
                TaskKind::Ping | TaskKind::Lock | TaskKind::Unlock | TaskKind::Import => Vec::new(),
            }
        }
        // The contract refuses these combinations before a plan is made.
        (_, TaskTarget::Server { .. } | TaskTarget::Platform { .. }) => Vec::new(),
    }
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
        routes
    };
    match target {
        TaskTarget::Server { server } => services(server),
        TaskTarget::Platform { platform } => vec![Route::new(platform.web_server.name.clone(), ServiceKind::Http)],
        TaskTarget::Site { site } => vec![
            Route::new(site.platform.web_server.name.clone(), ServiceKind::Http),
            Route::new(site.db_server.name.clone(), ServiceKind::Db),
        ],
    }
}

/// The undo steps after step `failed` failed: that step's own undo first (it may have
/// done part of its work), then those of the steps before it, newest first.
pub fn rollback(plan: &[PlannedStep], failed: usize) -> Vec<StepAction> {
    plan.iter().take(failed + 1).rev().filter_map(|s| s.undo.clone()).collect()
}

/// Something the task log should say before the task's first step.
pub fn notice(request: &TaskRequested) -> Option<&'static str> {
    match (&request.kind, &request.target) {
        (TaskKind::Delete, TaskTarget::Site { .. }) => {
            Some("no final backup is taken before the delete: this installation has no backup service yet")
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
        }
    }

    fn platform() -> PlatformContext {
        PlatformContext {
            name: PlatformName::parse("platform_wp").unwrap(),
            root: AbsolutePath::parse("/var/aegir/platforms/wp").unwrap(),
            web_server: server(true, false),
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
        }
    }

    fn task(kind: TaskKind, target: TaskTarget) -> TaskRequested {
        TaskRequested { task_id: Uuid::now_v7(), kind, target, requested_at: Utc::now() }
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
    fn a_delete_stops_serving_before_it_drops_the_database() {
        let request = task(TaskKind::Delete, TaskTarget::Site { site: site() });
        let plan = steps(&request);
        assert_eq!(labels(plan.iter().map(|s| s.action.clone())), ["site remove", "site database drop"]);
        assert!(rollback(&plan, 1).is_empty());
        assert!(notice(&request).is_some());
    }
}
