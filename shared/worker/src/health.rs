//! `GET /healthz`: is this worker up and connected to the broker?

use std::net::SocketAddr;

use aegir_amqp::Broker;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Health {
    broker: Broker,
    queue: String,
    instance: String,
}

async fn healthz(State(h): State<Health>) -> (StatusCode, Json<Value>) {
    let connected = h.broker.is_connected();
    let status = if connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "queue": h.queue, "instance": h.instance, "broker_connected": connected })))
}

pub(crate) async fn serve(
    addr: SocketAddr,
    broker: Broker,
    queue: String,
    instance: String,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route("/healthz", get(healthz)).with_state(Health { broker, queue, instance });
    tokio::spawn(async move {
        let result = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = result {
            tracing::error!(error = %e, "health endpoint stopped");
        }
    });
    Ok(bound)
}
