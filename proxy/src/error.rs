//! Proxy errors and their HTTP answers (the one place where errors become responses).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::body::Body;

/// The header naming why the proxy answered itself.
pub const ERROR_HEADER: &str = "tulle-proxy-error";

/// A failure to proxy a request or connection.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("connecting to {0}: timed out")]
    ConnectTimeout(SocketAddr),
    #[error("TLS handshake with {addr} (expected identity {identity}): {source}")]
    Tls {
        addr: SocketAddr,
        identity: String,
        source: std::io::Error,
    },
    #[error("invalid identity name {0:?}")]
    BadIdentity(String),
    #[error("HTTP/2 handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
    #[error("upstream {0}: {1}")]
    Upstream(SocketAddr, hyper::Error),
    #[error("upstream {addr}: {source}")]
    Client {
        addr: SocketAddr,
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream did not answer within the response timeout")]
    ResponseTimeout,
    #[error("no endpoints available")]
    NoEndpoints,
    #[error(
        "the destination service did not answer for {0}, an address inside the mesh networks (TULLE_PROXY_MESH_NETWORKS): not sending it without mTLS; retry, and check that tulle-controller is running"
    )]
    DiscoveryUnavailable(SocketAddr),
    #[error(
        "TrafficSplit {0} leaves no backend to send to (every weight is 0, or no backend Service exists); give a backend a weight above 0"
    )]
    NoSplitBackends(String),
    #[error("too many requests in flight; failing fast")]
    FailFast,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error(
        "request body larger than {0} bytes, the limit of the destination's proxy (TULLE_PROXY_MAX_REQUEST_BODY_BYTES)"
    )]
    RequestBodyTooLarge(usize),
    #[error(
        "original destination port unknown; set TULLE_PROXY_INBOUND_PORT_FALLBACK or use iptables redirection"
    )]
    NoOrigPort,
    #[error("internal proxy error: {0}")]
    Internal(String),
}

/// The error type of tower's generic layers (timeout, load shedding).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyError {
    /// Recovers a [`ProxyError`] from a tower layer's boxed error: a proxy error passed
    /// through, a timeout (`tower::timeout`) or an overload (`tower::load_shed`).
    pub fn from_boxed(e: BoxError) -> ProxyError {
        match e.downcast::<ProxyError>() {
            Ok(e) => *e,
            Err(e) if e.is::<tower::timeout::error::Elapsed>() => ProxyError::ResponseTimeout,
            Err(e) if e.is::<tower::load_shed::error::Overloaded>() => ProxyError::FailFast,
            Err(e) => ProxyError::Internal(e.to_string()),
        }
    }
}

impl ProxyError {
    /// Status code and short reason (the `tulle-proxy-error` header value).
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::Connect(..) => (StatusCode::BAD_GATEWAY, "connect error"),
            ProxyError::Tls { .. } | ProxyError::BadIdentity(_) => {
                (StatusCode::BAD_GATEWAY, "tls error")
            }
            ProxyError::Handshake(..) | ProxyError::Upstream(..) => {
                (StatusCode::BAD_GATEWAY, "upstream error")
            }
            ProxyError::Client { source, .. } if source.is_connect() => {
                (StatusCode::BAD_GATEWAY, "connect error")
            }
            ProxyError::Client { .. } => (StatusCode::BAD_GATEWAY, "upstream error"),
            ProxyError::ConnectTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "connect timeout"),
            ProxyError::ResponseTimeout => (StatusCode::GATEWAY_TIMEOUT, "response timeout"),
            ProxyError::NoEndpoints => (StatusCode::SERVICE_UNAVAILABLE, "no endpoints"),
            ProxyError::DiscoveryUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "discovery unavailable")
            }
            ProxyError::NoSplitBackends(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "no traffic split backend")
            }
            ProxyError::FailFast => (StatusCode::SERVICE_UNAVAILABLE, "fail fast"),
            ProxyError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request"),
            ProxyError::RequestBodyTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            ProxyError::NoOrigPort => (StatusCode::BAD_GATEWAY, "no original port"),
            ProxyError::Internal(_) => (StatusCode::BAD_GATEWAY, "internal error"),
        }
    }

    /// The synthetic response for this error.
    pub fn to_response(&self) -> Response<Body> {
        let (status, reason) = self.status();
        let mut r = Response::new(Either::Right(Full::new(Bytes::from(format!("{self}\n")))));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(ERROR_HEADER, HeaderValue::from_static(reason));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        r
    }
}
