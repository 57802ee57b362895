//! What every handler shares.

use std::sync::Arc;

use aegir_amqp::Broker;
use aegir_postgres::Outbox;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::PlatformRoots;
use crate::live::LiveLog;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub broker: Broker,
    /// Woken after a commit that wrote to the outbox.
    pub outbox: Outbox,
    pub live: LiveLog,
    pub platform_roots: Arc<PlatformRoots>,
    pub metrics: PrometheusHandle,
    /// Cancelled at shutdown; ends live log streams so the server can stop.
    pub shutdown: CancellationToken,
    /// Wakes the batch runner when a batch is asked for.
    pub batches_wake: Arc<tokio::sync::Notify>,
}
