//! What each task is made of: the steps, in order, and the queue each one goes to.
//! A plan is a pure function of the request, so it is recomputed rather than stored.

use aegir_contract::{StepAction, TaskKind, TaskRequested, TaskTarget};

pub fn steps(request: &TaskRequested) -> Vec<StepAction> {
    match (&request.kind, &request.target) {
        (TaskKind::Verify, TaskTarget::Server { server }) => {
            let mut steps = Vec::new();
            // The web part first: it writes the server's base config.
            if server.http.is_some() {
                steps.push(StepAction::HttpServerVerify { server: server.clone() });
            }
            if server.db.is_some() {
                steps.push(StepAction::DbServerVerify { server: server.clone() });
            }
            steps
        }
        (TaskKind::Verify, TaskTarget::Platform { platform }) => {
            vec![StepAction::PlatformVerify { platform: platform.clone() }]
        }
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

    fn verify(target: TaskTarget) -> TaskRequested {
        TaskRequested { task_id: Uuid::now_v7(), kind: TaskKind::Verify, target, requested_at: Utc::now() }
    }

    #[test]
    fn a_server_verify_checks_each_service_it_offers() {
        let both = steps(&verify(TaskTarget::Server { server: server(true, true) }));
        let routes: Vec<String> = both.iter().map(|s| s.route().to_string()).collect();
        assert_eq!(routes, ["server_master.http", "server_master.db"]);
        assert_eq!(steps(&verify(TaskTarget::Server { server: server(false, true) })).len(), 1);
        assert!(steps(&verify(TaskTarget::Server { server: server(false, false) })).is_empty());
    }

    #[test]
    fn a_platform_verify_runs_on_its_web_server() {
        let platform = PlatformContext {
            name: PlatformName::parse("platform_wp").unwrap(),
            root: AbsolutePath::parse("/var/aegir/platforms/wp").unwrap(),
            web_server: server(true, false),
        };
        let plan = steps(&verify(TaskTarget::Platform { platform }));
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].route().to_string(), "server_master.http");
    }
}
