//! `aegir @CONTEXT TASK` and `aegir task ID` against a small stand-in of task-api: the
//! task id and every log line are printed once, and the exit code is the task's outcome.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::{Value, json};

const TASK_ID: &str = "0190c0de-0000-7000-8000-0000000000aa";

#[derive(Clone)]
struct Fake {
    outcome: &'static str,
    /// Bodies of `POST /api/v1/tasks` and `Last-Event-ID`s of the log requests.
    posted: Arc<Mutex<Vec<Value>>>,
    resumed: Arc<Mutex<Vec<Option<String>>>>,
}

fn task_view(status: &str) -> Value {
    let reason = (status == "failed").then_some("db server verify failed: access denied for user root");
    json!({
        "id": TASK_ID, "context": "@server_master", "task": "verify", "status": status, "reason": reason,
        "created_at": "2026-01-01T10:00:00Z", "started_at": "2026-01-01T10:00:01Z",
        "finished_at": if status == "success" || status == "failed" { json!("2026-01-01T10:00:09Z") } else { Value::Null },
    })
}

fn log_event(seq: u64, level: &str, message: &str) -> String {
    let entry = json!({"seq": seq, "at": "2026-01-01T10:00:02Z", "level": level,
                       "source": "server_master.db", "step": 1, "message": message});
    format!("id: {seq}\nevent: log\ndata: {entry}\n\n")
}

async fn create_task(State(fake): State<Fake>, body: axum::Json<Value>) -> Response {
    fake.posted.lock().unwrap().push(body.0);
    (StatusCode::ACCEPTED, axum::Json(task_view("queued"))).into_response()
}

async fn get_task(Path(_id): Path<String>) -> axum::Json<Value> {
    axum::Json(task_view("running"))
}

/// Breaks the first connection after line 2, then resumes after `Last-Event-ID`.
async fn task_log(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    let last = headers.get("last-event-id").map(|v| v.to_str().unwrap().to_owned());
    fake.resumed.lock().unwrap().push(last.clone());
    let lines = [
        log_event(1, "info", "verify of @server_master started"),
        log_event(2, "info", "db server verify started on host:1"),
        log_event(3, if fake.outcome == "success" { "success" } else { "error" }, "db server verify finished"),
    ];
    let body = match last.as_deref() {
        None => {
            let sent = stream::iter([Ok::<_, std::io::Error>(Bytes::from(lines[..2].concat()))]);
            let cut = stream::once(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::other("cut"))
            });
            Body::from_stream(sent.chain(cut))
        }
        Some(seq) => {
            let after: usize = seq.parse().unwrap();
            let finished = format!("event: finished\ndata: {}\n\n", task_view(fake.outcome));
            Body::from(lines[after..].concat() + &finished)
        }
    };
    Response::builder().header("content-type", "text/event-stream").body(body).unwrap()
}

async fn start(outcome: &'static str) -> (String, Fake) {
    let fake = Fake { outcome, posted: Default::default(), resumed: Default::default() };
    let router = Router::new()
        .route("/api/v1/tasks", post(create_task))
        .route("/api/v1/tasks/{id}", get(get_task))
        .route("/api/v1/tasks/{id}/log", get(task_log))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), fake)
}

async fn aegir(api: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_aegir"))
        .args(args)
        .env("AEGIR_API", api)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap()
}

fn lines_with(stdout: &str, needle: &str) -> usize {
    stdout.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test]
async fn a_successful_task_prints_its_id_each_line_once_and_exits_0() {
    let (api, fake) = start("success").await;
    let out = aegir(&api, &["@server_master", "verify"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");

    assert_eq!(*fake.posted.lock().unwrap(), [json!({"context": "@server_master", "task": "verify"})]);
    assert_eq!(*fake.resumed.lock().unwrap(), [None, Some("2".to_owned())]);

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("task {TASK_ID} queued: verify @server_master"));
    for message in ["verify of @server_master started", "db server verify started", "db server verify finished"] {
        assert_eq!(lines_with(&stdout, message), 1, "{message:?} should be printed once:\n{stdout}");
    }
    let line = lines.iter().find(|l| l.contains("db server verify started")).unwrap();
    assert!(line.starts_with('[') && line.contains("] info     server_master.db: "), "{line}");
    assert!(lines.last().unwrap().contains("verify of @server_master succeeded"), "{stdout}");
    assert!(stderr.contains("reconnecting after line 2"), "{stderr}");
}

#[tokio::test]
async fn a_failed_task_exits_1_with_the_reason_on_stderr() {
    let (api, _fake) = start("failed").await;
    let out = aegir(&api, &["run", "@server_master", "verify"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("error: verify of @server_master failed"), "{stderr}");
    assert!(stderr.contains("access denied for user root"), "{stderr}");
    assert_eq!(lines_with(&stdout, "db server verify finished"), 1, "{stdout}");
}

#[tokio::test]
async fn task_id_follows_a_running_task_like_run() {
    let (api, fake) = start("success").await;
    let out = aegir(&api, &["task", TASK_ID]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with(&format!("task {TASK_ID}  verify @server_master\n")), "{stdout}");
    assert!(stdout.contains("status    running"), "{stdout}");
    assert_eq!(lines_with(&stdout, "db server verify started"), 1, "{stdout}");
    assert!(fake.posted.lock().unwrap().is_empty(), "`aegir task` must not start a task");
}

#[tokio::test]
async fn api_errors_are_printed_as_field_and_message_with_exit_code_3() {
    async fn refuse() -> (StatusCode, axum::Json<Value>) {
        let body = json!({"error": {"code": "not_found", "field": "context", "message": "server `server_gone` does not exist"}});
        (StatusCode::NOT_FOUND, axum::Json(body))
    }
    let router = Router::new().route("/api/v1/tasks", post(refuse));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let out = aegir(&api, &["@server_gone", "verify"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "error: context: server `server_gone` does not exist\n");
}
