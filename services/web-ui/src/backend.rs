//! The JSON API, called in-process with the visitor's session.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::visitor::{SESSION_COOKIE, Visitor};

/// API answers larger than this are not pages anyone reads (lists are paged).
const ANSWER_LIMIT: usize = 32 << 20;

/// The API router the pages draw from.
#[derive(Clone)]
pub struct Backend {
    api: Router,
}

/// What the API answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// An API call that did not succeed, as the API explained it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    pub status: StatusCode,
    /// The request field the error is about, for showing it beside that form field.
    pub field: Option<String>,
    pub message: String,
}

impl Backend {
    pub fn new(api: Router) -> Self {
        Self { api }
    }

    /// `GET path` as the visitor.
    pub async fn get(&self, visitor: &Visitor, path: &str) -> Result<Value, ApiFailure> {
        self.call(visitor, Method::GET, path, None).await.map(|a| a.body)
    }

    /// `method path` with a JSON body as the visitor.
    pub async fn send(&self, visitor: &Visitor, method: Method, path: &str, body: Value) -> Result<Answer, ApiFailure> {
        self.call(visitor, method, path, Some(body)).await
    }

    /// Any call; a status outside 2xx is an [`ApiFailure`].
    pub async fn call(
        &self,
        visitor: &Visitor,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, ApiFailure> {
        let mut request = Request::builder().method(method).uri(path).header(header::ACCEPT, "application/json");
        if let Some(session) = &visitor.session {
            request = request.header(header::COOKIE, format!("{SESSION_COOKIE}={session}"));
        }
        for (name, value) in &visitor.forwarded {
            request = request.header(*name, value.clone());
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(|e| internal(format!("cannot build the API request: {e}")))?;
        if let Some(connect) = visitor.connect {
            request.extensions_mut().insert(connect);
        }
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes =
            to_bytes(body, ANSWER_LIMIT).await.map_err(|e| internal(format!("cannot read the API answer: {e}")))?;
        let body: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if status.is_success() {
            return Ok(Answer { status, headers: parts.headers, body });
        }
        let error = body.get("error");
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("the API answered {status}"), str::to_owned);
        let field = error.and_then(|e| e.get("field")).and_then(Value::as_str).map(str::to_owned);
        Err(ApiFailure { status, field, message })
    }
}

fn internal(message: String) -> ApiFailure {
    ApiFailure { status: StatusCode::INTERNAL_SERVER_ERROR, field: None, message }
}

/// `text` for a query string or path segment.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encodes_what_a_query_cannot_hold() {
        assert_eq!(encode("www.example.com"), "www.example.com");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
