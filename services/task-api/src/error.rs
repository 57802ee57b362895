//! Errors of the API and the JSON body every 4xx/5xx answer carries:
//! `{"error": {"code": "invalid_field", "field": "root", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::views::StoredValueError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not an object.
    #[error("{0}")]
    BadRequest(String),
    /// A field is missing, has the wrong type, fails validation or is unknown.
    #[error("{message}")]
    InvalidField { field: String, message: String },
    /// No valid credentials came with the request.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts lately; try again later.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{message}")]
    NotFound { field: Option<String>, message: String },
    #[error("{message}")]
    Conflict { field: Option<String>, message: String },
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// PostgreSQL cannot be reached.
    #[error("the database is unavailable ({0}); try again once PostgreSQL is back")]
    Unavailable(sqlx::Error),
    /// Anything else; the details go to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField { field: field.into(), message: message.into() }
    }

    /// The entity named in the path does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound { field: None, message: message.into() }
    }

    /// A context named in body field `field` does not exist.
    pub fn not_found_in(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::NotFound { field: Some(field.into()), message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::Conflict { field: field.map(str::to_owned), message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    fn parts(&self) -> (StatusCode, ErrorCode, Option<&str>) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, None),
            Self::InvalidField { field, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidField, Some(field))
            }
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden, None),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests, None),
            Self::NotFound { field, .. } => (StatusCode::NOT_FOUND, ErrorCode::NotFound, field.as_deref()),
            Self::Conflict { field, .. } => (StatusCode::CONFLICT, ErrorCode::Conflict, field.as_deref()),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, None),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed, None),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, None),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, None),
        }
    }
}

/// True for errors that mean "PostgreSQL is not there right now" rather than "this
/// statement is wrong": the connection broke, the pool has none to give, or the server
/// is shutting down or out of resources.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception, 53: insufficient resources, 57P: operator intervention.
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            return Self::Unavailable(e);
        }
        if let sqlx::Error::Database(db) = &e {
            // A concurrent request changed the same rows between our checks and our write.
            if db.is_unique_violation() || db.is_foreign_key_violation() {
                return Self::conflict(
                    None,
                    format!(
                        "the change conflicts with another one made at the same time ({}); read the current state and try again",
                        db.constraint().unwrap_or("constraint")
                    ),
                );
            }
        }
        Self::Internal(e.to_string())
    }
}

impl From<StoredValueError> for ApiError {
    fn from(e: StoredValueError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The machine-readable kind of an error.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidField,
    Unauthorized,
    Forbidden,
    TooManyRequests,
    NotFound,
    Conflict,
    MethodNotAllowed,
    Unavailable,
    Internal,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// The request field the error is about (`db.port`, `name` for the path), if any.
    pub field: Option<String>,
    /// What was wrong and what to do about it.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let message = match &self {
            Self::Internal(details) => {
                tracing::error!(error = %details, "request failed");
                "internal error; the task-api log has the details".to_owned()
            }
            Self::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                self.to_string()
            }
            _ => self.to_string(),
        };
        let body = ErrorBody { error: ErrorDetail { code, field: field.map(str::to_owned), message } };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_unavailable_not_internal() {
        assert!(matches!(ApiError::from(sqlx::Error::PoolTimedOut), ApiError::Unavailable(_)));
        assert!(matches!(ApiError::from(sqlx::Error::RowNotFound), ApiError::Internal(_)));
        let response = ApiError::from(sqlx::Error::PoolTimedOut).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
