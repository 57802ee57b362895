//! Prometheus metrics, rendered by `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Requests answered, by `method`, `route` and `status`.
pub const HTTP_REQUESTS: &str = "aegir_api_http_requests_total";
/// Time to answer a request (to its first byte for streams), by `method`, `route` and `status`.
pub const HTTP_DURATION: &str = "aegir_api_http_request_duration_seconds";
/// Tasks accepted, by `context_type` and `task`.
pub const TASKS_REQUESTED: &str = "aegir_api_tasks_requested_total";
/// Events taken from `api.events`, by `kind` and `outcome`.
pub const EVENTS_CONSUMED: &str = "aegir_api_events_consumed_total";
/// Messages in the outbox not yet confirmed by the broker.
pub const OUTBOX_DEPTH: &str = "aegir_api_outbox_depth";

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's recorder, installed on first use. Several API instances in one process
/// (as in tests) share it.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests answered");
    metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "time to answer an HTTP request");
    metrics::describe_counter!(TASKS_REQUESTED, "tasks accepted and queued");
    metrics::describe_counter!(EVENTS_CONSUMED, "task events taken from the api.events queue");
    metrics::describe_gauge!(OUTBOX_DEPTH, "messages waiting in the outbox");
}

/// Drains histogram samples into their buckets now and then, as the exporter requires
/// when it is not serving HTTP itself.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// `GET /metrics`
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    // Counted at scrape time, so the gauge is never stale; left as it was while the
    // database is down.
    match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox").fetch_one(&state.pool).await {
        Ok(depth) => metrics::gauge!(OUTBOX_DEPTH).set(depth as f64),
        Err(e) => tracing::warn!(error = %e, "cannot count the outbox for /metrics"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
