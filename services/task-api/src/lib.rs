//! task-api: the REST API of the system and its memory.
//!
//! It keeps servers, platforms, clients, sites, tasks and task logs in PostgreSQL,
//! requests tasks by publishing `TaskRequested` through a transactional outbox, and
//! persists every event it consumes from the `api.events` queue. Live task logs are
//! streamed as server-sent events.
//!
//! [`start`] runs it in-process (the tests do); [`run`] runs it until shut down.

pub mod accounts;
mod backup_queue;
mod batches;
pub mod cert_queue;
mod commands;
pub mod config;
pub mod cron;
pub mod db;
mod error;
mod events;
mod import;
mod input;
pub mod live;
pub mod metrics;
mod observe;
pub mod openapi;
pub mod periodic;
pub mod retention;
mod routes;
mod site_moves;
pub mod state;
mod task_args;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use aegir_amqp::Broker;
use aegir_amqp::signing::{LoadKeyError, MasterKey, Signer, load_key};
use aegir_postgres::{ConnectError, Outbox};
use sqlx::migrate::MigrateError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Config, PlatformRoots};
pub use routes::{router, router_with};
pub use state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] ConnectError),
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(#[from] MigrateError),
    #[error("cannot listen on {addr}: {source}; is another process using it?")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    SigningKey(#[from] LoadKeyError),
    #[error(transparent)]
    Bootstrap(#[from] accounts::BootstrapError),
    #[error("shut down before the service was ready")]
    Cancelled,
}

/// A started API: its address, and its background work to wait for.
pub struct Running {
    local_addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Running {
    /// The address the HTTP API listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the HTTP server, the event consumer and the outbox relay have stopped,
    /// which they do once the shutdown token is cancelled.
    pub async fn wait(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "a task-api component crashed");
            }
        }
    }
}

/// Connects to PostgreSQL (creating the database if needed, waiting up to a minute for
/// it), applies the migrations, and starts the HTTP API, the event consumer and the
/// outbox relay. All of them stop when `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let signing = &config.signing;
    let master = load_key(
        "master signing key",
        "AEGIR_SIGNING_KEY",
        signing.signing_key.as_deref(),
        signing.signing_key_file.as_deref(),
    )?;
    let pool = tokio::select! {
        pool = db::connect(&config.database) => pool?,
        () = shutdown.cancelled() => return Err(StartError::Cancelled),
    };
    db::migrate(&pool).await?;
    if let Some(file) = &config.bootstrap_admin_token_file {
        accounts::bootstrap_admin_token(&pool, file).await?;
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen { addr: config.listen, source })?;

    let master = MasterKey::new(master);
    let signer = Signer::Control(master.clone());
    let broker = Broker::signed(config.common.amqp_url.as_str(), format!("task-api {local_addr}"), signer);
    let state = AppState {
        pool: pool.clone(),
        broker: broker.clone(),
        outbox: Outbox::new(),
        live: live::LiveLog::new(),
        platform_roots: Arc::new(config.platform_roots.clone()),
        metrics: metrics::recorder(),
        shutdown: shutdown.clone(),
        batches_wake: Arc::new(tokio::sync::Notify::new()),
    };

    let mut tasks = JoinSet::new();
    tasks.spawn(state.outbox.clone().relay(pool.clone(), broker.clone(), shutdown.clone()));
    tasks.spawn(events::run(pool, state.live.clone(), state.outbox.clone(), broker, shutdown.clone()));
    tasks.spawn(commands::run(state.clone(), master, shutdown.clone()));
    tasks.spawn(metrics::upkeep(state.metrics.clone(), shutdown.clone()));
    let keep = std::time::Duration::from_secs(u64::from(config.task_retention_days) * 86_400);
    tasks.spawn(retention::run(state.pool.clone(), keep, shutdown.clone()));
    let cron_interval = std::time::Duration::from_secs(config.cron_interval_secs);
    tasks.spawn(cron::run(state.clone(), &cron::CRON, cron_interval, shutdown.clone()));
    let stats_interval = std::time::Duration::from_secs(config.stats_interval_secs);
    tasks.spawn(cron::run(state.clone(), &cron::STATS, stats_interval, shutdown.clone()));
    tasks.spawn(batches::run(state.clone(), shutdown.clone()));
    let backup_interval = std::time::Duration::from_secs(config.backup_interval_secs);
    tasks.spawn(backup_queue::run(state.clone(), backup_interval, config.retention(), shutdown.clone()));
    let renewal = cert_queue::Renewal {
        every: std::time::Duration::from_secs(config.cert_interval_secs),
        window: std::time::Duration::from_secs(config.cert_renew_days.saturating_mul(86_400)),
        retry: std::time::Duration::from_secs(config.cert_retry_secs),
    };
    tasks.spawn(cert_queue::run(state.clone(), renewal, shutdown.clone()));
    let settings = accounts::AccountSettings { trust_forwarded_for: config.trust_forwarded_for };
    // The web pages sit in front of the API and draw from it.
    let app = web_ui::router(router_with(state, settings)).into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        // Graceful: stop accepting, let requests in hand finish (live log streams end on
        // the same token).
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned()).await {
            tracing::error!(error = %e, "the HTTP server failed; stopping");
            stop.cancel();
        }
    });
    tracing::info!(listen = %local_addr, platform_roots = %config.platform_roots, "task-api ready");
    Ok(Running { local_addr, tasks })
}

/// Runs task-api until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    start(config, shutdown).await?.wait().await;
    tracing::info!("task-api stopped");
    Ok(())
}
