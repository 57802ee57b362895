//! task-api: the REST API of Aegir. See the library for what it does.

use aegir_config::LogFormat;
use clap::Parser;
use task_api::Config;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = aegir_telemetry::init("task-api", config.common.log_format == LogFormat::Json)?;
    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let token = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: no new requests; finishing the event in hand");
        token.cancel();
    });
    task_api::run(config, shutdown).await?;
    Ok(())
}
