//! Follows a task's log live over server-sent events until the task finishes.
//!
//! The API replays every stored line, then sends new ones as they arrive, each with its
//! sequence number as the event id, and ends with one `finished` event. When the
//! connection breaks before that, the follower reconnects with `Last-Event-ID` set to
//! the last line it printed, so nothing is lost; lines at or below that number are
//! skipped should the server send them again, so nothing is printed twice.

use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use reqwest::header::CONTENT_TYPE;
use uuid::Uuid;

use crate::api::{Api, LogEntry, TaskView};
use crate::error::{CliError, chain};

/// Consecutive broken connections without a new line before giving up.
pub const MAX_TRIES: u32 = 5;

/// Why one connection ended without the `finished` event.
struct Interruption {
    cause: String,
    /// A new line or event arrived on this connection.
    progressed: bool,
    /// The connection went quiet for longer than the keep-alive period. The task may
    /// just be slow to log, so this does not count towards giving up.
    idle: bool,
    /// The connection could not even be opened.
    error: Option<CliError>,
}

enum Attempt {
    Finished(TaskView),
    Fatal(CliError),
    Interrupted(Interruption),
}

/// Follows the log of `task`, calling `on_line` once per line, in order, and returns the
/// task as it finished.
pub async fn follow(api: &Api, task: Uuid, mut on_line: impl FnMut(&LogEntry)) -> Result<TaskView, CliError> {
    let mut last_seq: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        let broken = match attempt(api, task, &mut last_seq, &mut on_line).await {
            Attempt::Finished(view) => return Ok(view),
            Attempt::Fatal(error) => return Err(error),
            Attempt::Interrupted(broken) => broken,
        };
        if broken.progressed {
            failures = 0;
        }
        if !broken.idle {
            failures += 1;
        }
        if failures >= MAX_TRIES {
            return Err(match broken.error {
                Some(error @ CliError::Unreachable { .. }) => error,
                _ => CliError::StreamLost { task, tries: failures, cause: broken.cause },
            });
        }
        let resume = last_seq.map_or_else(|| "from the start".to_owned(), |seq| format!("after line {seq}"));
        eprintln!(
            "warning: the log stream of task {task} broke ({}); reconnecting {resume} (try {} of {MAX_TRIES})",
            broken.cause,
            failures + 1
        );
        if failures > 0 {
            tokio::time::sleep(Duration::from_millis(250 << (failures - 1).min(4))).await;
        }
    }
}

async fn attempt(api: &Api, task: Uuid, last_seq: &mut Option<u64>, on_line: &mut impl FnMut(&LogEntry)) -> Attempt {
    let response = match api.open_log_stream(task, *last_seq).await {
        Ok(response) => response,
        Err(error @ (CliError::Unreachable { .. } | CliError::Api { status: 500.., .. })) => {
            return Attempt::Interrupted(Interruption {
                cause: error.to_string().lines().next().unwrap_or_default().to_owned(),
                progressed: false,
                idle: false,
                error: Some(error),
            });
        }
        Err(error) => return Attempt::Fatal(error),
    };
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        return Attempt::Fatal(api.unexpected("the task log did not come as server-sent events (text/event-stream)"));
    }

    let mut events = response.bytes_stream().eventsource();
    let mut progressed = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(EventStreamError::Transport(e)) => {
                let idle = e.is_timeout();
                return Attempt::Interrupted(Interruption { cause: chain(&e), progressed, idle, error: None });
            }
            Err(e) => {
                return Attempt::Interrupted(Interruption {
                    cause: e.to_string(),
                    progressed,
                    idle: false,
                    error: None,
                });
            }
        };
        match event.event.as_str() {
            "log" => {
                let entry: LogEntry = match serde_json::from_str(&event.data) {
                    Ok(entry) => entry,
                    Err(e) => return Attempt::Fatal(api.unexpected(format!("a log line that does not parse: {e}"))),
                };
                if last_seq.is_none_or(|seen| entry.seq > seen) {
                    on_line(&entry);
                    *last_seq = Some(entry.seq);
                    progressed = true;
                }
            }
            "finished" => {
                return match serde_json::from_str::<TaskView>(&event.data) {
                    Ok(view) => Attempt::Finished(view),
                    Err(e) => Attempt::Fatal(api.unexpected(format!("a `finished` event that does not parse: {e}"))),
                };
            }
            // Events a newer API may add are not ours to print.
            _ => {}
        }
    }
    Attempt::Interrupted(Interruption {
        cause: "the stream ended before the task finished".into(),
        progressed,
        idle: false,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::Response;
    use axum::routing::get;
    use futures_util::stream;
    use url::Url;

    use super::*;
    use crate::config::{ApiAddress, Origin};

    const TASK: &str = "0190c0de-0000-7000-8000-000000000001";

    fn log_event(seq: u64) -> String {
        format!(
            "id: {seq}\nevent: log\ndata: {{\"seq\":{seq},\"at\":\"2026-01-01T00:00:0{seq}Z\",\"level\":\"info\",\
             \"source\":\"server_master.http\",\"step\":0,\"message\":\"line {seq}\"}}\n\n"
        )
    }

    fn finished_event() -> String {
        format!(
            "event: finished\ndata: {{\"id\":\"{TASK}\",\"context\":\"@server_master\",\"task\":\"verify\",\
             \"status\":\"success\",\"reason\":null,\"created_at\":\"2026-01-01T00:00:00Z\",\
             \"started_at\":\"2026-01-01T00:00:00Z\",\"finished_at\":\"2026-01-01T00:00:05Z\"}}\n\n"
        )
    }

    /// The `Last-Event-ID` of every request the server got.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Option<String>>>>);

    /// First connection: lines 1 and 2, half of line 3, then the connection breaks.
    /// Later connections: what follows `Last-Event-ID`, up to line 4, then `finished`.
    async fn flaky_log(State(seen): State<Seen>, headers: HeaderMap) -> Response {
        let last = headers.get("last-event-id").map(|v| v.to_str().unwrap().to_owned());
        seen.0.lock().unwrap().push(last.clone());
        let after: u64 = last.map_or(0, |v| v.parse().unwrap());
        let body = if after == 0 {
            let half_of_3: String = log_event(3).chars().take(40).collect();
            let chunks = [log_event(1), log_event(2), half_of_3].map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
            let broken = stream::once(async {
                // Let the chunks reach the client before the connection is cut.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::other("connection cut by the test"))
            });
            Body::from_stream(stream::iter(chunks).chain(broken))
        } else {
            let mut text: String = (after + 1..=4).map(log_event).collect();
            text.push_str(&finished_event());
            Body::from_stream(stream::iter([Ok::<_, Infallible>(Bytes::from(text))]))
        };
        Response::builder().header("content-type", "text/event-stream").body(body).unwrap()
    }

    async fn serve(router: Router) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let url = Url::parse(&format!("http://{addr}")).unwrap();
        Api::new(ApiAddress { url, origin: Origin::Flag }).unwrap()
    }

    #[tokio::test]
    async fn a_dropped_stream_resumes_after_the_last_line_and_prints_each_line_once() {
        let seen = Seen::default();
        let router = Router::new().route("/api/v1/tasks/{id}/log", get(flaky_log)).with_state(seen.clone());
        let api = serve(router).await;

        let mut printed = Vec::new();
        let view = follow(&api, TASK.parse().unwrap(), |entry| printed.push(entry.message.clone())).await.unwrap();

        assert_eq!(printed, ["line 1", "line 2", "line 3", "line 4"]);
        assert_eq!(view.status, crate::api::TaskStatus::Success);
        assert_eq!(*seen.0.lock().unwrap(), [None, Some("2".to_owned())]);
    }

    #[tokio::test]
    async fn lines_sent_again_are_not_printed_again() {
        // A server that ignores Last-Event-ID and replays everything on each connection.
        async fn replaying(State(seen): State<Seen>) -> Response {
            let first = {
                let mut s = seen.0.lock().unwrap();
                s.push(None);
                s.len() == 1
            };
            let text = if first {
                log_event(1) + &log_event(2)
            } else {
                log_event(1) + &log_event(2) + &log_event(3) + &finished_event()
            };
            Response::builder().header("content-type", "text/event-stream").body(Body::from(text)).unwrap()
        }
        let seen = Seen::default();
        let api = serve(Router::new().route("/api/v1/tasks/{id}/log", get(replaying)).with_state(seen)).await;
        let mut printed = Vec::new();
        follow(&api, TASK.parse().unwrap(), |entry| printed.push(entry.seq)).await.unwrap();
        assert_eq!(printed, [1, 2, 3]);
    }

    #[tokio::test]
    async fn an_unknown_task_is_the_apis_error_at_once() {
        async fn not_found() -> (StatusCode, &'static str) {
            (StatusCode::NOT_FOUND, r#"{"error":{"code":"not_found","field":"id","message":"no task with this id"}}"#)
        }
        let api = serve(Router::new().route("/api/v1/tasks/{id}/log", get(not_found))).await;
        let error = follow(&api, TASK.parse().unwrap(), |_| {}).await.unwrap_err();
        assert_eq!(error.to_string(), "id: no task with this id");
        assert_eq!(error.exit_code(), 3);
    }

    #[tokio::test]
    async fn an_api_that_is_gone_ends_with_exit_code_4_after_a_few_tries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let api = Api::new(ApiAddress { url, origin: Origin::Env }).unwrap();
        let error = follow(&api, TASK.parse().unwrap(), |_| {}).await.unwrap_err();
        assert_eq!(error.exit_code(), 4);
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
    }
}
