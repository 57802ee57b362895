//! `GET /healthz`: can this process reach PostgreSQL and RabbitMQ?

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub database: bool,
    pub broker_connected: bool,
}

/// Health of the process's connections.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "operations", security(),
    responses(
        (status = 200, description = "Both connections are up", body = Health),
        (status = 503, description = "The database or the broker is unreachable", body = Health),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool);
    let database = matches!(tokio::time::timeout(Duration::from_secs(2), ping).await, Ok(Ok(_)));
    let health = Health { database, broker_connected: state.broker.is_connected() };
    let status =
        if health.database && health.broker_connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(health))
}
