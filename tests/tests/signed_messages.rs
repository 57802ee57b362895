//! Only signed messages make the system act: a worker refuses a step that is unsigned or
//! signed with another key, and its task fails saying so; the scheduler refuses task
//! requests not signed with the control plane's key, so nothing runs for them.

use std::time::Duration;

use aegir_amqp::Broker;
use aegir_amqp::signing::{Signer, SigningKey};
use aegir_contract::ServerName;
use aegir_e2e::{PATIENCE, System, mariadb_url, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_refuses_unsigned_or_wrongly_signed_steps_and_their_tasks_fail_with_the_reason() {
    let mut system = System::start().await;
    system.save_server(&mariadb_url()).await;
    let route = format!("{}.http", system.server);
    let dead_before = system.queue_depth("aegir.dead-letters").await;

    // Another server's workers hold a key of their own; it does not sign this server's work.
    let other = ServerName::parse("server_elsewhere").unwrap();
    let forgers: [(&str, Broker, &str); 2] = [
        ("unsigned", Broker::new(system.amqp_url.clone(), "forger"), "carries no signature"),
        (
            "signed by another server",
            Broker::signed(system.amqp_url.clone(), "forger", Signer::Server(system.master_key.server(&other))),
            "does not match",
        ),
    ];
    for (i, (how, forger, expected)) in forgers.iter().enumerate() {
        // The worker is away while its step waits; the genuine step is swapped for a
        // copy that is not signed with this server's key.
        system.kill9("http-worker").await;
        system.save_empty_platform(&format!("p{i}")).await;
        let id = system.post_task(&format!("@platform_p{i}"), "verify").await;
        let body = system.take_message(&route).await;
        assert!(String::from_utf8_lossy(&body).contains(&id), "the step of task {id}");
        forger.publish_bytes("aegir.work", &route, &body).await.unwrap();
        system.spawn("http-worker");
        system.wait_healthy("http-worker").await;

        let view = system.wait_task(&id).await;
        assert_eq!(view["status"], "failed", "a step {how} never runs: {view}");
        let reason = view["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("refused its step message") && reason.contains(expected), "{how}: {reason}");
        let log = system.task_log(&id).await;
        assert!(
            log.iter().any(|(level, source, m)| level == "error" && *source == route && m.contains(expected)),
            "the worker's log line says why: {log:?}"
        );
        assert!(!log.iter().any(|(_, _, m)| m.contains("platform verify started")), "the step never ran: {log:?}");
    }
    let dead = wait_for(PATIENCE, || async { system.queue_depth("aegir.dead-letters").await >= dead_before + 2 }).await;
    let now = system.queue_depth("aegir.dead-letters").await;
    assert!(dead, "both refused messages are kept as dead letters: {dead_before} before, {now} now");

    // The worker goes on with signed work.
    let id = system.post_task(&format!("@{}", system.server), "verify").await;
    assert_eq!(system.wait_task(&id).await["status"], "success");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_runs_no_task_request_the_control_plane_did_not_sign() {
    let mut system = System::start().await;
    system.save_server(&mariadb_url()).await;
    system.save_empty_platform("pings").await;

    // A genuine request, taken off the scheduler's queue while the scheduler is away.
    system.kill9("scheduler").await;
    let genuine = system.post_task("@platform_pings", "ping").await;
    let body = system.take_message("scheduler.tasks").await;
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(request["task_id"], genuine.as_str());

    // Copies under new ids: one unsigned, one signed by a worker with its own server's key.
    let server = ServerName::parse(&system.server).unwrap();
    let forgers = [
        Broker::new(system.amqp_url.clone(), "forger"),
        Broker::signed(system.amqp_url.clone(), "forger", Signer::Server(system.master_key.server(&server))),
    ];
    let mut forged = Vec::new();
    for forger in &forgers {
        let mut copy = request.clone();
        let id = uuid::Uuid::now_v7();
        copy["task_id"] = id.to_string().into();
        forger.publish_bytes("aegir.tasks", "task.requested", copy.to_string().as_bytes()).await.unwrap();
        forged.push(id);
    }
    system.spawn("scheduler");

    for id in &forged {
        let ended = wait_for(PATIENCE, || async {
            let row: Option<(String,)> = sqlx::query_as("SELECT status FROM scheduler.tasks WHERE task_id = $1")
                .bind(id)
                .fetch_optional(&system.pg)
                .await
                .unwrap();
            row.is_some_and(|(status,)| status == "failed")
        })
        .await;
        assert!(ended, "the forged request {id} ends failed in the scheduler");
        let (started,): (Option<chrono::DateTime<chrono::Utc>>,) =
            sqlx::query_as("SELECT started_at FROM scheduler.tasks WHERE task_id = $1")
                .bind(id)
                .fetch_one(&system.pg)
                .await
                .unwrap();
        assert_eq!(started, None, "the forged request {id} never started");
    }
    let log = system.log_tail("scheduler");
    assert!(log.contains("carries no signature") && log.contains("does not match"), "the scheduler says why:\n{log}");
    // The worker never saw a step of them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let worker = std::fs::read_to_string(system.dir.path().join("logs/http-worker.log")).unwrap_or_default();
    for id in &forged {
        assert!(!worker.contains(&id.to_string()), "a step of forged task {id} reached the worker");
    }
    // And a key that is not even well-formed is refused at once.
    assert!(SigningKey::parse("not a key").is_err());
}
