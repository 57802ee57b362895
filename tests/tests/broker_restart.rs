//! RabbitMQ restarts while tasks run: every service reconnects and no task is lost.
//!
//! This test restarts the machine's broker, so it is the only test in its binary (cargo
//! runs test binaries one after another).

use std::process::Command;

use aegir_e2e::{Options, PATIENCE, System, mariadb_url, wait_for};

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn services_reconnect_after_a_broker_restart_and_no_task_is_lost() {
    let options = Options::default().env("http-worker", "AEGIR_STEP_DELAY_MS", "1500");
    let system = System::start_with(options).await;
    system.save_server(&mariadb_url()).await;
    let server = format!("@{}", system.server);

    let before: Vec<String> = futures(&system, &server, 3).await;
    let (_, last) = system.get(&format!("/api/v1/tasks/{}", before[2])).await;
    assert!(matches!(last["status"].as_str(), Some("queued" | "running")), "still in flight: {last}");
    // Restart while those tasks are queued and running.
    rabbitmqctl(&["stop_app"]);
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);

    for id in &before {
        let view = system.wait_task(id).await;
        assert_eq!(view["status"], "success", "task {id} after the restart: {view}");
    }
    // Every service is connected again and new work flows.
    for service in ["http-worker", "db-worker", "backup-worker", "task-api"] {
        system.wait_healthy(service).await;
    }
    let after = system.post_task(&server, "verify").await;
    assert_eq!(system.wait_task(&after).await["status"], "success");
    let healthy = wait_for(PATIENCE, || async {
        let (status, body) = system.get("/healthz").await;
        status == 200 && body["broker_connected"] == true
    })
    .await;
    assert!(healthy, "task-api reports the broker connected");
}

async fn futures(system: &System, context: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(system.post_task(context, "verify").await);
    }
    ids
}
