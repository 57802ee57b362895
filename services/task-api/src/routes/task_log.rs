//! `GET /api/v1/tasks/{id}/log`: a task's log, as JSON or as a live stream of
//! server-sent events that ends when the task does.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::tasks::{not_found, parse_task_id};
use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::input::PathParam;
use crate::live::LiveEvent;
use crate::state::AppState;
use crate::views::{LogEntry, LogList, TaskView};

/// Lines read from the database at a time while replaying.
const PAGE: i64 = 500;
/// Events buffered for a slow client before the follower waits for it.
const BUFFER: usize = 64;

/// A task's log: JSON, or with `Accept: text/event-stream` a live stream. The stream
/// sends every stored line (after `Last-Event-ID`) as `event: log` with `id: <seq>`, then
/// new lines as they arrive, and when the task is finished one `event: finished` with
/// the task view; then it ends.
#[utoipa::path(
    get, path = "/api/v1/tasks/{id}/log", operation_id = "task_log", tag = "tasks",
    params(
        ("id" = Uuid, Path, description = "Task id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Stream only the lines after this `seq`"),
    ),
    responses(
        (status = 200, description = "The log", content(
            (LogList = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 422, description = "Not a task id, or a bad `Last-Event-ID`", body = ErrorBody),
    )
)]
pub async fn log(
    State(state): State<AppState>,
    PathParam(id): PathParam,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_task_id(&id)?;
    if !wants_event_stream(&headers) {
        if !db::tasks::exists(&state.pool, id).await? {
            return Err(not_found(id));
        }
        let rows = db::task_log::after(&state.pool, id, 0, i64::MAX).await?;
        return Ok(Json(LogList { items: rows.into_iter().map(Into::into).collect() }).into_response());
    }

    let after = last_event_id(&headers)?;
    // Subscribe before reading anything: a line stored meanwhile then shows up in the
    // replay, in the live feed, or in both (and is sent once), never in neither.
    let live = state.live.subscribe();
    if !db::tasks::exists(&state.pool, id).await? {
        return Err(not_found(id));
    }
    let (sender, receiver) = mpsc::channel(BUFFER);
    let follower = Follower { state, task_id: id, last_seq: after, out: sender };
    tokio::spawn(follower.run(live));
    Ok(Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default()).into_response())
}

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/event-stream")))
}

fn last_event_id(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(0) };
    value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).filter(|&seq| seq >= 0).ok_or_else(|| {
        ApiError::invalid(
            "Last-Event-ID",
            "`Last-Event-ID` must be the `id` of an event this stream sent (a whole number)",
        )
    })
}

/// Why a stream ended early.
enum Stop {
    ClientGone,
    Failed(String),
}

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Self {
        Stop::Failed(format!("cannot read the log: {e}"))
    }
}

/// Feeds one client's stream.
struct Follower {
    state: AppState,
    task_id: Uuid,
    /// The last line sent; nothing at or before it is sent again.
    last_seq: i64,
    out: mpsc::Sender<Result<Event, Infallible>>,
}

impl Follower {
    async fn run(mut self, live: broadcast::Receiver<Arc<LiveEvent>>) {
        match self.follow(live).await {
            Ok(()) | Err(Stop::ClientGone) => {}
            // The client sees the stream end without `finished` and can reconnect with
            // Last-Event-ID.
            Err(Stop::Failed(reason)) => tracing::warn!(task_id = %self.task_id, %reason, "ending a live log stream"),
        }
    }

    async fn follow(&mut self, mut live: broadcast::Receiver<Arc<LiveEvent>>) -> Result<(), Stop> {
        self.replay().await?;
        if self.finish_if_done().await? {
            return Ok(());
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = self.out.closed() => return Err(Stop::ClientGone),
                () = self.state.shutdown.cancelled() => return Ok(()),
            };
            match received {
                Ok(event) if event.task_id() != self.task_id => {}
                Ok(event) => match &*event {
                    LiveEvent::Line { entry, .. } => {
                        if entry.seq > self.last_seq {
                            self.send_line(entry).await?;
                        }
                    }
                    LiveEvent::Finished { .. } => {
                        if self.finish_if_done().await? {
                            return Ok(());
                        }
                    }
                },
                // Announcements were lost; the database has everything they said.
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(task_id = %self.task_id, missed, "live log stream lagged; reading the database");
                    self.replay().await?;
                    if self.finish_if_done().await? {
                        return Ok(());
                    }
                }
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }

    /// Sends the stored lines after the last one sent.
    async fn replay(&mut self) -> Result<(), Stop> {
        loop {
            let rows = db::task_log::after(&self.state.pool, self.task_id, self.last_seq, PAGE).await?;
            let complete = (rows.len() as i64) < PAGE;
            for row in rows {
                self.send_line(&row.into()).await?;
            }
            if complete {
                return Ok(());
            }
        }
    }

    /// When the task is finished: sends its last lines and `finished`, and says so.
    async fn finish_if_done(&mut self) -> Result<bool, Stop> {
        let Some(task) = db::tasks::get(&self.state.pool, self.task_id).await? else {
            // Deleted meanwhile: there is nothing more to follow.
            return Ok(true);
        };
        if !task.is_finished() {
            return Ok(false);
        }
        self.replay().await?;
        let event = Event::default().event("finished").json_data(TaskView::from(task));
        self.send(event).await?;
        Ok(true)
    }

    async fn send_line(&mut self, entry: &LogEntry) -> Result<(), Stop> {
        let event = Event::default().event("log").id(entry.seq.to_string()).json_data(entry);
        self.send(event).await?;
        self.last_seq = entry.seq;
        Ok(())
    }

    async fn send(&self, event: Result<Event, axum::Error>) -> Result<(), Stop> {
        let event = event.map_err(|e| Stop::Failed(format!("cannot encode an event: {e}")))?;
        self.out.send(Ok(event)).await.map_err(|_| Stop::ClientGone)
    }
}
