//! How the scheduler runs tasks: one at a time per entity, in order; transient failures
//! retried a bounded number of times; each task ends once.

use aegir_amqp::Broker;
use aegir_amqp::signing::Signer;
use aegir_e2e::{Options, PATIENCE, System, mariadb_url, wait_for};
use serde_json::Value;
use std::time::Duration;

/// A task view's timestamp as a time: their text varies in precision ("56.952Z" against
/// "56.952230Z"), so comparing the text would misorder them.
fn time(view: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    let text = view[field].as_str().unwrap_or_else(|| panic!("{field} missing in {view}"));
    text.parse().unwrap_or_else(|e| panic!("{field} is no timestamp ({e}) in {view}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_of_one_entity_run_one_at_a_time_in_order() {
    let system = System::start().await;
    system.save_server(&mariadb_url()).await;
    let server = format!("@{}", system.server);

    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(system.post_task(&server, "verify").await);
    }
    let mut views = Vec::new();
    for id in &ids {
        let view = system.wait_task(id).await;
        assert_eq!(view["status"], "success", "{view}");
        views.push(view);
    }
    // RFC 3339 UTC timestamps of one format compare as strings.
    for pair in views.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        assert!(
            time(later, "started_at") >= time(earlier, "finished_at"),
            "a task started before the one ahead of it finished:\n{earlier}\n{later}"
        );
    }
    let queued_note = system.task_log(&ids[1]).await;
    assert!(
        queued_note.iter().any(|(_, s, m)| s == "scheduler" && m.contains("waiting for task")),
        "a task that waits says for what: {queued_note:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_failure_is_retried_a_bounded_number_of_times() {
    let system = System::start().await;
    // Nothing listens on port 9; connecting fails at once, a failure that may pass.
    let closed = mariadb_url().rsplit_once(':').map(|(head, _)| format!("{head}:9")).unwrap();
    system.save_server(&closed).await;
    let server = format!("@{}", system.server);

    let id = system.post_task(&server, "verify").await;
    let view = system.wait_task(&id).await;
    assert_eq!(view["status"], "failed", "{view}");
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("after 3 tries") && reason.contains("cannot reach the database server"), "{reason}");

    let log = system.task_log(&id).await;
    let tries = log.iter().filter(|(_, s, m)| s.ends_with(".db") && m.starts_with("logging in to")).count();
    assert_eq!(tries, 3, "{log:?}");
    let retries = log.iter().filter(|(l, _, m)| l == "warning" && m.contains("trying again")).count();
    assert_eq!(retries, 2, "{log:?}");
    let ends = log.iter().filter(|(_, s, m)| s == "scheduler" && m.starts_with("task ")).count();
    assert_eq!(ends, 1, "{log:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_without_an_answer_times_out_and_the_next_task_of_its_entity_runs() {
    let options = Options::default().env("scheduler", "AEGIR_STEP_DEADLINE_SECS", "8");
    let mut system = System::start_with(options).await;
    system.save_server(&mariadb_url()).await;
    let server = format!("@{}", system.server);
    // The web server's worker is gone: the ping's first step gets no answer.
    system.kill9("http-worker").await;
    let stuck = system.post_task(&server, "ping").await;
    let next = system.post_task(&server, "verify").await;

    let view = system.wait_task(&stuck).await;
    assert_eq!(view["status"], "failed", "{view}");
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no answer within 8 s") && reason.contains(".http"), "{reason}");

    // The worker comes back: the entity's next task runs; the late answer to the
    // stuck step changes nothing.
    system.spawn("http-worker");
    system.wait_healthy("http-worker").await;
    let view = system.wait_task(&next).await;
    assert_eq!(view["status"], "success", "{view}");
    let stuck_view = system.wait_task(&stuck).await;
    assert!(time(&view, "started_at") >= time(&stuck_view, "finished_at"), "{stuck_view}\n{view}");
    assert_eq!(stuck_view["status"], "failed", "a late answer does not change a finished task");
    let ends =
        system.task_log(&stuck).await.iter().filter(|(_, s, m)| s == "scheduler" && m.starts_with("task ")).count();
    assert_eq!(ends, 1);
    // The late answer's lines still reach the stuck task's log: a ping's answer has no
    // facts, so only the scheduler received it, and it passes the lines on though the
    // answer changes nothing.
    let late = wait_for(PATIENCE, || async {
        system.task_log(&stuck).await.iter().any(|(_, s, m)| s.ends_with(".http") && m.ends_with(".http answers"))
    })
    .await;
    assert!(late, "the late answer's lines are in the stuck task's log: {:?}", system.task_log(&stuck).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_cancelled_while_it_waits_never_starts() {
    let mut system = System::start().await;
    system.save_server(&mariadb_url()).await;
    let server = format!("@{}", system.server);
    // The first task holds the entity: its web step waits for a worker that is gone.
    system.kill9("http-worker").await;
    let first = system.post_task(&server, "verify").await;
    let waiting = system.post_task(&server, "verify").await;

    let out = system.cli(&["cancel", &waiting]).await;
    assert_eq!(out.code, Some(1), "following the cancelled task ends non-zero: {out}");
    assert!(out.stderr.contains("was cancelled"), "{out}");
    let view = system.wait_task(&waiting).await;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert!(view["started_at"].is_null(), "it never started: {view}");
    // The running one cannot be cancelled; it goes on once its worker is back.
    let (status, answer) = system.post(&format!("/api/v1/tasks/{first}/cancel"), serde_json::json!({})).await;
    assert_eq!(status, 409, "{answer}");
    system.spawn("http-worker");
    system.wait_healthy("http-worker").await;
    assert_eq!(system.wait_task(&first).await["status"], "success");

    let log = system.task_log(&waiting).await;
    assert!(!log.iter().any(|(_, s, _)| s.ends_with(".http") || s.ends_with(".db")), "no step ran: {log:?}");
    assert!(log.iter().any(|(_, _, m)| m == "task cancelled before it started"), "{log:?}");
    let (status, _) = system.post(&format!("/api/v1/tasks/{waiting}/cancel"), serde_json::json!({})).await;
    assert_eq!(status, 409, "an ended task cannot be cancelled again");
}

/// When the worker started the task's step: its first log line from the web server's
/// worker (RFC 3339 UTC, comparable as text).
async fn worker_started(system: &System, id: &str) -> String {
    let (status, log) = system.get(&format!("/api/v1/tasks/{id}/log")).await;
    assert_eq!(status, 200, "{log}");
    let worker = format!("{}.http", system.server);
    let items = log["items"].as_array().cloned().unwrap_or_default();
    let line = items.iter().find(|line| line["source"] == worker.as_str());
    line.and_then(|line| line["at"].as_str()).unwrap_or_else(|| panic!("no line from {worker} in {log}")).to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persons_task_goes_before_the_bulk_lane_however_long_it_is() {
    // Two steps at once on the web server, each taking a second: the bulk lane may use
    // one slot, so its eight steps need eight seconds one after the other.
    let options =
        Options::default().env("http-worker", "AEGIR_PREFETCH", "2").env("http-worker", "AEGIR_STEP_DELAY_MS", "1000");
    let system = System::start_with(options).await;
    system.save_server(&mariadb_url()).await;
    let web = format!("--web_server=@{}", system.server);
    for name in ["person", "b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"] {
        let platform = system.platforms_dir().join(name);
        std::fs::create_dir_all(&platform).unwrap();
        let root = format!("--root={}", platform.display());
        system.cli_ok(&["save", &format!("@platform_{name}"), "--context_type=platform", &root, &web]).await;
    }

    let mut bulk = Vec::new();
    for i in 0..8 {
        let body = serde_json::json!({"context": format!("@platform_b{i}"), "task": "ping", "lane": "bulk"});
        let (status, view) = system.post("/api/v1/tasks", body).await;
        assert_eq!(status, 202, "{view}");
        assert_eq!(view["lane"], "bulk", "{view}");
        bulk.push(view["id"].as_str().unwrap().to_owned());
    }
    let (status, refused) = system
        .post("/api/v1/tasks", serde_json::json!({"context": "@platform_b0", "task": "ping", "lane": "fast"}))
        .await;
    assert_eq!(status, 422, "an unknown lane is refused: {refused}");
    assert!(refused.to_string().contains("interactive"), "the refusal names the lanes: {refused}");

    // The bulk lane is busy before the person asks.
    let first = bulk[0].clone();
    let busy = aegir_e2e::wait_for(std::time::Duration::from_secs(30), || async {
        let (_, log) = system.get(&format!("/api/v1/tasks/{first}/log")).await;
        log.to_string().contains("started on")
    })
    .await;
    assert!(busy, "the first bulk step never started");

    let person = system.post_task("@platform_person", "ping").await;
    let view = system.wait_task(&person).await;
    assert_eq!(view["status"], "success", "{view}");
    assert_eq!(view["lane"], "interactive", "{view}");
    let person_started = worker_started(&system, &person).await;

    let mut bulk_started = Vec::new();
    for id in &bulk {
        let view = system.wait_task(id).await;
        assert_eq!(view["status"], "success", "{view}");
        bulk_started.push(worker_started(&system, id).await);
    }
    let after = bulk_started.iter().filter(|at| at.as_str() > person_started.as_str()).count();
    assert!(
        after >= 5,
        "the person's step started at {person_started}, after all but {after} of the bulk steps asked before it: \
         {bulk_started:?}"
    );
    let log = system.task_log(&bulk[0]).await;
    assert!(log.iter().any(|(_, _, m)| m.contains("bulk lane")), "a bulk task's log says so: {log:?}");
}

/// Requests that pile up while the scheduler is away reach it together, and it takes
/// them in batches (one transaction each): every entity's tasks still run one at a time
/// in the order they were asked for, and a forged request among them is refused without
/// holding up the rest.
#[tokio::test(flavor = "multi_thread")]
async fn requests_piled_up_while_the_scheduler_was_away_run_in_order_and_a_forged_one_holds_up_none() {
    let mut system = System::start().await;
    system.save_server(&mariadb_url()).await;
    let platforms = ["a", "b", "c"];
    for name in platforms {
        system.save_empty_platform(name).await;
    }
    system.kill9("scheduler").await;

    // The first request, taken off the queue, goes back behind an unsigned copy of itself.
    let first = system.post_task("@platform_a", "ping").await;
    let body = system.take_message("scheduler.tasks").await;
    let mut forged: Value = serde_json::from_slice(&body).unwrap();
    let forged_id = uuid::Uuid::now_v7();
    forged["task_id"] = forged_id.to_string().into();
    Broker::new(system.amqp_url.clone(), "forger")
        .publish_bytes("aegir.tasks", "task.requested", forged.to_string().as_bytes())
        .await
        .unwrap();
    Broker::signed(system.amqp_url.clone(), "task-api", Signer::Control(system.master_key.clone()))
        .publish_bytes("aegir.tasks", "task.requested", &body)
        .await
        .unwrap();
    let mut asked: Vec<(&str, String)> = vec![("a", first)];
    for _ in 0..4 {
        for name in platforms {
            asked.push((name, system.post_task(&format!("@platform_{name}"), "ping").await));
        }
    }
    system.respawn_with("scheduler", &[("RUST_LOG", "info,scheduler=debug")]);

    let mut views = Vec::new();
    for (name, id) in &asked {
        let view = system.wait_task(id).await;
        assert_eq!(view["status"], "success", "{view}");
        views.push((*name, view));
    }
    for name in platforms {
        let mine: Vec<&Value> = views.iter().filter(|(n, _)| *n == name).map(|(_, v)| v).collect();
        for pair in mine.windows(2) {
            let (earlier, later) = (pair[0], pair[1]);
            assert!(
                time(later, "started_at") >= time(earlier, "finished_at"),
                "a task of @platform_{name} started before the one asked for ahead of it finished:\n{earlier}\n{later}"
            );
        }
    }
    let refused = wait_for(PATIENCE, || async {
        let row: Option<(String, Option<chrono::DateTime<chrono::Utc>>)> =
            sqlx::query_as("SELECT status, started_at FROM scheduler.tasks WHERE task_id = $1")
                .bind(forged_id)
                .fetch_optional(&system.pg)
                .await
                .unwrap();
        row.is_some_and(|(status, started)| status == "failed" && started.is_none())
    })
    .await;
    assert!(refused, "the forged request ends failed in the scheduler without starting");
    let log = system.log_tail("scheduler");
    assert!(log.contains("accepting task requests together"), "the piled-up requests were taken in batches:\n{log}");
}

/// Step results that pile up while the scheduler is away reach it together, and it
/// records them in batches (one transaction each): every task still ends once, with
/// success.
#[tokio::test(flavor = "multi_thread")]
async fn results_piled_up_while_the_scheduler_was_away_are_recorded_together_and_every_task_ends() {
    let mut system = System::start().await;
    system.save_server(&mariadb_url()).await;
    // Enough that each of the scheduler's result lanes gets several: a lane takes what has
    // arrived, so a lane given two could take each on its own when the second is late.
    let platforms = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
    for name in platforms {
        system.save_empty_platform(name).await;
    }
    // Steps are sent while the worker is away, so none is answered yet.
    system.kill9("http-worker").await;
    let mut ids = Vec::new();
    for name in platforms {
        ids.push(system.post_task(&format!("@platform_{name}"), "ping").await);
    }
    let all_running = wait_for(PATIENCE, || async {
        let mut running = true;
        for id in &ids {
            running &= system.get(&format!("/api/v1/tasks/{id}")).await.1["status"] == "running";
        }
        running
    })
    .await;
    assert!(all_running, "every task starts its step");
    // The answers come while the scheduler is away, and wait for it.
    system.kill9("scheduler").await;
    system.spawn("http-worker");
    let piled =
        wait_for(PATIENCE, || async { system.queue_depth("scheduler.results").await == ids.len() as u32 }).await;
    assert!(piled, "every step's result waits in scheduler.results");
    system.respawn_with("scheduler", &[("RUST_LOG", "info,scheduler=debug")]);

    for id in &ids {
        let view = system.wait_task(id).await;
        assert_eq!(view["status"], "success", "{view}");
        let ends = system.task_log(id).await.iter().filter(|(_, _, m)| m == "task succeeded").count();
        assert_eq!(ends, 1, "task {id} ends once");
    }
    let log = system.log_tail("scheduler");
    assert!(log.contains("recording step results together"), "the piled-up results were recorded in batches:\n{log}");

    // What the scheduler and task-api handled they acked (together, a frame for many):
    // once they are gone, nothing comes back to their queues.
    tokio::time::sleep(Duration::from_secs(1)).await;
    system.kill9("scheduler").await;
    system.kill9("task-api").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for queue in ["scheduler.tasks", "scheduler.results", "api.events"] {
        assert_eq!(system.queue_depth(queue).await, 0, "{queue}: every handled delivery was acked");
    }
}
