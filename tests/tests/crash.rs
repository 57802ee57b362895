//! Crashes and bad messages: nothing is lost, nothing is done twice, nothing stops.

use aegir_e2e::{Options, PATIENCE, System, mariadb_url, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_step_gets_the_step_again_and_the_task_ends_once() {
    // The http-worker waits 3 s inside every step, so the test can kill it there.
    let options = Options::default().env("http-worker", "AEGIR_STEP_DELAY_MS", "3000");
    let mut system = System::start_with(options).await;
    system.save_server(&mariadb_url()).await;
    let id = system.post_task(&format!("@{}", system.server), "verify").await;

    let http_source = format!("{}.http", system.server);
    let holding = wait_for(PATIENCE, || async {
        system.task_log(&id).await.iter().any(|(_, s, m)| s == &http_source && m.contains("started on"))
    })
    .await;
    assert!(holding, "the http-worker never started the step");
    system.kill9("http-worker").await;
    let (_, view) = system.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(view["status"], "running", "the task waits for its step: {view}");

    system.respawn_with("http-worker", &[]);
    let view = system.wait_task(&id).await;
    assert_eq!(view["status"], "success", "{view}");

    let log = system.task_log(&id).await;
    assert!(
        log.iter().any(|(l, s, m)| l == "warning" && s == &http_source && m.contains("interrupted")),
        "the redelivered step says it runs again: {log:?}"
    );
    let ends = log.iter().filter(|(_, s, m)| s == "scheduler" && m.starts_with("task ")).count();
    assert_eq!(ends, 1, "the task ended exactly once: {log:?}");
    let started = log.iter().filter(|(_, s, m)| s == "scheduler" && m.contains("started:")).count();
    assert_eq!(started, 1, "{log:?}");

    // And the system keeps working.
    let again = system.post_task(&format!("@{}", system.server), "verify").await;
    assert_eq!(system.wait_task(&again).await["status"], "success");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_work_message_is_dead_lettered_and_fails_its_task_and_the_worker_goes_on() {
    let mut system = System::start().await;
    system.save_server(&mariadb_url()).await;
    // Signed with the server's own key: the worker checks the signature, then the message.
    let server = aegir_contract::ServerName::parse(&system.server).unwrap();
    let signer = aegir_amqp::signing::Signer::Server(system.master_key.server(&server));
    let broker = aegir_amqp::Broker::signed(system.amqp_url.clone(), "e2e test", signer);

    // Plain garbage on the http-worker's queue, belonging to no task.
    let route = format!("{}.http", system.server);
    let dead_before = system.queue_depth("aegir.dead-letters").await;
    broker.publish_bytes("aegir.work", &route, b"this is not json").await.unwrap();
    let dead = wait_for(PATIENCE, || async { system.queue_depth("aegir.dead-letters").await > dead_before }).await;
    assert!(dead, "the garbage message was not dead-lettered");

    // A task whose step waits while the worker is away...
    system.kill9("http-worker").await;
    let id = system.post_task(&format!("@{}", system.server), "verify").await;
    let queued = wait_for(PATIENCE, || async { system.queue_depth(&route).await == 1 }).await;
    assert!(queued, "the task's step should wait in {route}");
    let channel = system.channel().await;
    let genuine = channel.basic_get(route.as_str().into(), Default::default()).await.unwrap().expect("the step");
    genuine.delivery.ack(Default::default()).await.unwrap();
    // ...is replaced by a broken message that claims to be its step.
    let broken = format!(r#"{{"task_id":"{id}","step":0,"attempt":0,"route":"{route}","action":"rm -rf /"}}"#);
    broker.publish_bytes("aegir.work", &route, broken.as_bytes()).await.unwrap();
    system.spawn("http-worker");
    let view = system.wait_task(&id).await;
    assert_eq!(view["status"], "failed", "{view}");
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("refused its step message"), "{reason}");
    let log = system.task_log(&id).await;
    assert!(
        log.iter().any(|(l, s, m)| l == "error" && s == &route && m.contains("refused a step message")),
        "the worker said why: {log:?}"
    );
    let kept = wait_for(PATIENCE, || async { system.queue_depth("aegir.dead-letters").await > dead_before + 1 }).await;
    assert!(kept, "the broken step message is kept with the dead letters");

    // The worker is still consuming: a real task on it succeeds.
    let ok = system.post_task(&format!("@{}", system.server), "verify").await;
    assert_eq!(system.wait_task(&ok).await["status"], "success");
}
