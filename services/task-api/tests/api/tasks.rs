//! Tasks from request to finish: the outbox publishes `TaskRequested`, the consumer
//! persists the events the scheduler and workers would send, and the views, the log
//! and the live stream show them.

use aegir_amqp::topology::{EVENTS_EXCHANGE, QueueName};
use aegir_contract::{Lane, PlatformType, StepFacts, TaskKind, TaskOutcome, TaskTarget};
use eventsource_stream::{Event, Eventsource};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, eventually, line, log_line, step_succeeded, task_finished, task_started};

async fn save_master(app: &TestApp) {
    let body = json!({
        "http": {"service_type": "nginx"},
        "db": {"service_type": "mariadb", "host": "127.0.0.1", "admin_user": "root", "admin_password": "secret"}
    });
    assert_eq!(app.put("/api/v1/servers/server_master", body).await.0, StatusCode::CREATED);
}

/// Opens the task's live log.
async fn open_log(app: &TestApp, id: Uuid, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url(&format!("/api/v1/tasks/{id}/log"))).header("Accept", "text/event-stream");
    if let Some(seq) = last_event_id {
        request = request.header("Last-Event-ID", seq);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

/// Collects the events of a live log until the stream ends.
fn read_events(response: reqwest::Response) -> JoinHandle<Vec<Event>> {
    tokio::spawn(async move {
        let mut stream = response.bytes_stream().eventsource();
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            events.push(event.expect("a well-formed event"));
        }
        events
    })
}

async fn follow_log(app: &TestApp, id: Uuid, last_event_id: Option<&str>) -> JoinHandle<Vec<Event>> {
    read_events(open_log(app, id, last_event_id).await)
}

async fn ended(stream: JoinHandle<Vec<Event>>) -> Vec<Event> {
    tokio::time::timeout(std::time::Duration::from_secs(30), stream)
        .await
        .expect("the live log ends when the task finishes")
        .unwrap()
}

fn data(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

#[tokio::test]
async fn a_server_verify_goes_from_request_to_finished() {
    let app = TestApp::spawn().await;
    save_master(&app).await;

    // The caller's trace goes on through the outbox into the message.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = app
        .http
        .post(app.url("/api/v1/tasks"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"context": "@server_master", "task": "verify"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["context"], "@server_master");
    assert_eq!(queued["task"], "verify");
    assert_eq!(queued["started_at"], Value::Null);
    let id: Uuid = queued["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(app.get(&format!("/api/v1/tasks/{id}")).await.1, queued);

    assert_eq!(queued["lane"], "interactive");
    let (request, traceparent) = app.next_task_request().await;
    assert_eq!(request.task_id, id);
    assert_eq!(request.kind, TaskKind::Verify);
    assert_eq!(request.lane, Lane::Interactive);
    let TaskTarget::Server { server } = &request.target else { panic!("a server target: {request:?}") };
    assert_eq!(server.name.as_str(), "server_master");
    assert_eq!(server.http.as_ref().unwrap().port, 80);
    let db = server.db.as_ref().unwrap();
    assert_eq!((db.host.as_str(), db.port, db.admin_user.as_str()), ("127.0.0.1", 3306, "root"));
    assert_eq!(db.admin_password.expose(), "secret");
    let traceparent = traceparent.expect("the message carries a traceparent");
    assert!(traceparent.contains(trace_id), "{traceparent}");
    eventually("the outbox to be empty", || async { (app.count("outbox").await == 0).then_some(()) }).await;

    // A client follows the log before anything happens.
    let live = follow_log(&app, id, None).await;

    app.publish(&task_started(id, "@server_master")).await;
    let running = app.task_reaches(id, "running").await;
    assert!(running["started_at"].is_string());

    let first = log_line(id, "web server verify started");
    app.publish(&first).await;
    app.publish(&first).await; // redelivered: stored once
    app.publish(&log_line(id, "nginx: configuration test ok")).await;
    let facts = |version: &str| StepFacts { service_version: Some(version.to_owned()), ..Default::default() };
    app.publish(&step_succeeded(id, 0, "server_master.http", facts("nginx/1.22.1"))).await;
    // A step's last lines ride in its result, the scheduler's in the end: stored first.
    let mut db_step = step_succeeded(id, 1, "server_master.db", facts("10.11.6-MariaDB"));
    db_step.log = vec![line(id, "database server answers")];
    app.publish(&db_step).await;
    let mut finished = task_finished(id, TaskOutcome::Success, None);
    finished.log = vec![line(id, "task succeeded")];
    app.publish(&finished).await;

    let done = app.task_reaches(id, "success").await;
    assert_eq!(done["reason"], Value::Null);
    assert!(done["finished_at"].is_string());
    let (_, server) = app.get("/api/v1/servers/server_master").await;
    assert_eq!(server["status"], "verified");
    assert!(server["verified_at"].is_string());
    assert_eq!(server["http"]["version"], "nginx/1.22.1");
    assert_eq!(server["db"]["version"], "10.11.6-MariaDB");

    let lines = app.log_reaches(id, 4).await;
    let messages: Vec<_> = lines.iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(
        messages,
        ["web server verify started", "nginx: configuration test ok", "database server answers", "task succeeded"]
    );
    assert_eq!(lines[0]["level"], "info");
    assert_eq!(lines[0]["source"], "server_master.http");
    assert_eq!(lines[0]["step"], 0);
    assert!(lines.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    assert_eq!(app.count("task_log").await, 4);

    let events = ended(live).await;
    let kinds: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["log", "log", "log", "log", "finished"]);
    assert_eq!(events[0].id, lines[0]["seq"].to_string());
    for (event, line) in events.iter().zip(&lines) {
        assert_eq!(&data(event), line);
    }
    assert_eq!(data(&events[4]), done);

    // A duplicate finish, here claiming failure, changes nothing; its lines are stored once.
    app.publish(&finished).await;
    app.publish(&task_finished(id, TaskOutcome::Failed, Some("a late duplicate"))).await;
    app.publish(&log_line(id, "after the end")).await;
    let lines = app.log_reaches(id, 5).await;
    assert_eq!(lines[4]["message"], "after the end");
    assert_eq!(app.get(&format!("/api/v1/tasks/{id}")).await.1, done);
    assert_eq!(app.get("/api/v1/servers/server_master").await.1, server);

    // Reconnecting after the first line replays the rest, then says it is finished.
    let replay = ended(follow_log(&app, id, Some(&lines[0]["seq"].to_string())).await).await;
    let kinds: Vec<_> = replay.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["log", "log", "log", "log", "finished"]);
    for (event, line) in replay.iter().zip(&lines[1..]) {
        assert_eq!(&data(event), line);
    }
    assert_eq!(replay[3].id, lines[4]["seq"].to_string());
    assert_eq!(data(&replay[4])["status"], "success");

    let (_, listed) = app.get("/api/v1/tasks?context=@server_master&status=success").await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["id"], id.to_string());
    assert_eq!(app.get("/api/v1/tasks?status=running").await.1["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_slow_reader_of_a_live_log_misses_nothing() {
    let app = TestApp::spawn().await;
    save_master(&app).await;
    let (_, task) = app.post("/api/v1/tasks", json!({"context": "@server_master", "task": "verify"})).await;
    let id: Uuid = task["id"].as_str().unwrap().parse().unwrap();

    // The client reads nothing while far more arrives than the live feed and the socket
    // buffers hold, so its stream falls behind and has to catch up from the database.
    let response = open_log(&app, id, None).await;
    const LINES: usize = 3000;
    let padding = "x".repeat(4000);
    let publishes = (0..LINES).map(|i| {
        let (broker, line) = (app.broker.clone(), log_line(id, &format!("{i:04} {padding}")));
        async move { broker.publish(&line).await }
    });
    futures_util::future::try_join_all(publishes).await.unwrap();
    app.publish(&task_finished(id, TaskOutcome::Success, None)).await;
    app.task_reaches(id, "success").await;

    let events = ended(read_events(response)).await;
    assert_eq!(events.len(), LINES + 1);
    assert_eq!(events[LINES].event, "finished");
    let lines: Vec<Value> = events[..LINES].iter().map(data).collect();
    let seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "lines come in order, each once");
    let mut numbers: Vec<String> = lines.iter().map(|l| l["message"].as_str().unwrap()[..4].to_owned()).collect();
    numbers.sort();
    assert_eq!(numbers, (0..LINES).map(|i| format!("{i:04}")).collect::<Vec<_>>());
    app.stop().await;
}

#[tokio::test]
async fn a_platform_verify_records_what_it_found_and_why_it_failed() {
    let app = TestApp::spawn().await;
    save_master(&app).await;
    let platform = json!({"root": "/var/aegir/platforms/wp", "web_server": "@server_master"});
    assert_eq!(app.put("/api/v1/platforms/platform_wp", platform).await.0, StatusCode::CREATED);

    let (status, first) = app.post("/api/v1/tasks", json!({"context": "@platform_wp", "task": "verify"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let first_id: Uuid = first["id"].as_str().unwrap().parse().unwrap();
    let (request, _) = app.next_task_request().await;
    let TaskTarget::Platform { platform } = &request.target else { panic!("a platform target: {request:?}") };
    assert_eq!(platform.name.as_str(), "platform_wp");
    assert_eq!(platform.root.as_str(), "/var/aegir/platforms/wp");
    assert_eq!(platform.web_server.name.as_str(), "server_master");
    assert!(platform.web_server.http.is_some());
    assert_eq!(platform.web_server.db.as_ref().unwrap().admin_password.expose(), "secret");

    let facts = StepFacts {
        platform_type: Some(PlatformType::Wordpress),
        app_version: Some("6.4.2".to_owned()),
        service_version: None,
        ..StepFacts::default()
    };
    app.publish(&task_started(first_id, "@platform_wp")).await;
    app.publish(&step_succeeded(first_id, 0, "server_master.http", facts)).await;
    app.publish(&task_finished(first_id, TaskOutcome::Success, None)).await;
    app.task_reaches(first_id, "success").await;
    let (_, verified) = app.get("/api/v1/platforms/platform_wp").await;
    assert_eq!(verified["platform_type"], "wordpress");
    assert_eq!(verified["app_version"], "6.4.2");
    assert_eq!(verified["status"], "verified");

    let (_, second) = app.post("/api/v1/tasks", json!({"context": "@platform_wp", "task": "verify"})).await;
    let second_id: Uuid = second["id"].as_str().unwrap().parse().unwrap();
    let reason = "the platform root /var/aegir/platforms/wp does not exist";
    app.publish(&task_finished(second_id, TaskOutcome::Failed, Some(reason))).await;
    let failed = app.task_reaches(second_id, "failed").await;
    assert_eq!(failed["reason"], reason);
    assert_eq!(failed["started_at"], Value::Null);
    let (_, platform) = app.get("/api/v1/platforms/platform_wp").await;
    assert_eq!(platform["status"], "failed");
    // What the last successful verify found, and when, stays known.
    assert_eq!(platform["platform_type"], "wordpress");
    assert_eq!(platform["verified_at"], verified["verified_at"]);

    let (_, all) = app.get("/api/v1/tasks?context=@platform_wp").await;
    let ids: Vec<_> = all["items"].as_array().unwrap().iter().map(|t| t["id"].clone()).collect();
    assert_eq!(ids, [json!(second_id), json!(first_id)], "newest first");
    let (_, failures) = app.get("/api/v1/tasks?status=failed").await;
    assert_eq!(failures["total"], 1);
    assert_eq!(app.get("/api/v1/tasks?context=@server_master").await.1["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_task_requests_are_refused_and_nothing_is_queued() {
    let app = TestApp::spawn().await;
    save_master(&app).await;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let refused = [
        (json!({"context": "@server_nope", "task": "verify"}), StatusCode::NOT_FOUND, "not_found", "context"),
        (json!({"context": "@platform_nope", "task": "verify"}), StatusCode::NOT_FOUND, "not_found", "context"),
        (json!({"context": "@../etc", "task": "verify"}), unprocessable, "invalid_field", "context"),
        (json!({"context": "@www.example.com", "task": "verify"}), StatusCode::NOT_FOUND, "not_found", "context"),
        (json!({"context": "@server_master", "task": "install"}), unprocessable, "invalid_field", "task"),
        (json!({"context": "@server_master", "task": "login_reset"}), unprocessable, "invalid_field", "task"),
        (json!({"context": "@server_master", "task": "destroy"}), unprocessable, "invalid_field", "task"),
        (json!({"context": "@server_master"}), unprocessable, "invalid_field", "task"),
        (json!({"task": "verify"}), unprocessable, "invalid_field", "context"),
        (
            json!({"context": "@server_master", "task": "verify", "force": true}),
            unprocessable,
            "invalid_field",
            "force",
        ),
        (
            json!({"context": "@server_master", "task": "verify", "lane": "urgent"}),
            unprocessable,
            "invalid_field",
            "lane",
        ),
        (json!({"context": "@server_master", "task": "verify", "lane": 1}), unprocessable, "invalid_field", "lane"),
    ];
    for (body, status, code, field) in refused {
        let answer = app.post("/api/v1/tasks", body).await;
        assert_error(&answer, status, code, Some(field));
        if field == "task"
            && status == unprocessable
            && answer.1["error"]["message"].as_str().unwrap().contains("destroy")
        {
            assert!(answer.1["error"]["message"].as_str().unwrap().contains("verify"), "{}", answer.1);
        }
    }
    assert_eq!(app.count("tasks").await, 0);
    assert_eq!(app.count("outbox").await, 0);
    assert_eq!(app.queue_depth(QueueName::SchedulerTasks).await, 0);

    let unknown = Uuid::now_v7();
    assert_error(&app.get(&format!("/api/v1/tasks/{unknown}")).await, StatusCode::NOT_FOUND, "not_found", None);
    assert_error(&app.get(&format!("/api/v1/tasks/{unknown}/log")).await, StatusCode::NOT_FOUND, "not_found", None);
    assert_error(&app.get("/api/v1/tasks/12345").await, unprocessable, "invalid_field", Some("id"));
    assert_error(&app.get("/api/v1/tasks?status=lost").await, unprocessable, "invalid_field", Some("status"));
    assert_error(&app.get("/api/v1/tasks?context=@Bad").await, unprocessable, "invalid_field", Some("context"));
    app.stop().await;
}

#[tokio::test]
async fn each_task_request_leaves_one_audit_row_with_its_answer() {
    let app = TestApp::spawn().await;
    save_master(&app).await;
    // Accepted: the row goes in with the task (one transaction); refused: written after.
    let (status, task) = app.post("/api/v1/tasks", json!({"context": "@server_master", "task": "verify"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    let refused = app.post("/api/v1/tasks", json!({"context": "@server_nope", "task": "verify"})).await;
    assert_error(&refused, StatusCode::NOT_FOUND, "not_found", Some("context"));

    let rows: Vec<(String, i32, Option<String>)> = sqlx::query_as(
        "SELECT target, status, user_name FROM audit_log WHERE action = 'POST /api/v1/tasks' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let expected = [
        ("@server_master verify".to_owned(), 202, Some("admin".to_owned())),
        ("@server_nope verify".to_owned(), 404, Some("admin".to_owned())),
    ];
    assert_eq!(rows, expected);
    app.stop().await;
}

#[tokio::test]
async fn invalid_events_are_dead_lettered_and_the_consumer_keeps_going() {
    let app = TestApp::spawn().await;
    save_master(&app).await;
    let (_, task) = app.post("/api/v1/tasks", json!({"context": "@server_master", "task": "verify"})).await;
    let id: Uuid = task["id"].as_str().unwrap().parse().unwrap();

    app.broker.publish_bytes(EVENTS_EXCHANGE, "task.finished", b"{not json").await.unwrap();
    let wrong_fields = format!(r#"{{"task_id":"{id}","outcome":"success","at":"2025-01-01T00:00:00Z","extra":1}}"#);
    app.broker.publish_bytes(EVENTS_EXCHANGE, "task.finished", wrong_fields.as_bytes()).await.unwrap();
    app.broker.publish_bytes(EVENTS_EXCHANGE, "task.exploded", b"{}").await.unwrap();
    // Not ours, but valid: acked, not dead-lettered.
    app.publish(&task_finished(Uuid::now_v7(), TaskOutcome::Success, None)).await;
    app.publish(&log_line(Uuid::now_v7(), "a line of a task task-api does not know")).await;
    app.publish(&log_line(id, "still consuming")).await;

    let lines = app.log_reaches(id, 1).await;
    assert_eq!(lines[0]["message"], "still consuming");
    eventually("three dead letters", || async { (app.queue_depth(QueueName::DeadLetters).await == 3).then_some(()) })
        .await;
    assert_eq!(app.get(&format!("/api/v1/tasks/{id}")).await.1["status"], "queued");
    assert_eq!(app.count("task_log").await, 1);
    assert_eq!(app.queue_depth(QueueName::ApiEvents).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_script_may_put_its_tasks_in_the_bulk_lane() {
    let app = TestApp::spawn().await;
    save_master(&app).await;
    let (status, queued) =
        app.post("/api/v1/tasks", json!({"context": "@server_master", "task": "verify", "lane": "bulk"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["lane"], "bulk");
    let (request, _) = app.next_task_request().await;
    assert_eq!(request.lane, Lane::Bulk);
    app.stop().await;
}
