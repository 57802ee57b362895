//! Who is asking: the session cookie and network address a page request came with, passed
//! on to the API so it authenticates, scopes and audits the call as the visitor's own.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};

/// The cookie the API's login sets for web sessions.
pub const SESSION_COOKIE: &str = "aegir_session";
/// Headers the API may read for the caller's address (when it is set to trust a proxy).
pub const FORWARDED: [&str; 2] = ["x-forwarded-for", "x-real-ip"];

#[derive(Debug, Clone)]
pub struct Visitor {
    /// The session token, when the browser sent one.
    pub session: Option<String>,
    pub connect: Option<ConnectInfo<SocketAddr>>,
    pub forwarded: Vec<(&'static str, HeaderValue)>,
    /// Path and query of the page asked for, to come back to after signing in.
    pub here: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let session = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.to_owned())
            .filter(|value| !value.is_empty());
        let forwarded =
            FORWARDED.iter().filter_map(|name| parts.headers.get(*name).map(|value| (*name, value.clone()))).collect();
        let here = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        Ok(Self { session, connect: parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned(), forwarded, here })
    }
}
