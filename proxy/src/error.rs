//! Proxy errors and their HTTP answers (the one place where errors become responses).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::metrics::HttpMetrics;

/// The response body type of the proxy: a proxied body or a synthetic one.
pub type Body = Either<ProxyBody, Full<Bytes>>;

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
    #[error("upstream {0}: {1}")]
    Client(SocketAddr, String, bool),
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
            ProxyError::Client(_, _, true) => (StatusCode::BAD_GATEWAY, "connect error"),
            ProxyError::Client(..) => (StatusCode::BAD_GATEWAY, "upstream error"),
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

/// A plain response with a static body.
pub fn simple(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *r.status_mut() = status;
    r
}

/// A proxied response body. For gRPC responses whose status arrives in trailers, it counts
/// the response (`response_total` with its classification) when the stream ends.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Incoming,
    grpc: Option<(Arc<HttpMetrics>, u16)>,
    /// An HTTP/1 connection to give back to its pool when the body is done.
    pub(crate) release: Option<(
        Arc<crate::client::H1Pool>,
        hyper::client::conn::http1::SendRequest<Incoming>,
    )>,
}

impl ProxyBody {
    pub fn new(inner: Incoming) -> Self {
        ProxyBody {
            inner,
            grpc: None,
            release: None,
        }
    }

    fn finish(&mut self, failure: bool) {
        if let Some((m, status)) = self.grpc.take() {
            m.count(status, failure);
        }
    }
}

/// Wraps a proxied response.
pub fn proxied(resp: Response<Incoming>) -> Response<Body> {
    resp.map(|b| Either::Left(ProxyBody::new(b)))
}

/// Counts a response: now, or at the end of its stream for gRPC (status in trailers).
pub fn count_response(metrics: &Arc<HttpMetrics>, resp: &mut Response<Body>) {
    let status = resp.status().as_u16();
    let grpc = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
        && !resp.headers().contains_key("grpc-status")
        && status < 500;
    if grpc && let Either::Left(body) = resp.body_mut() {
        body.grpc = Some((metrics.clone(), status));
        return;
    }
    metrics.count(
        status,
        crate::http::is_failure(resp.status(), resp.headers()),
    );
}

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if self.grpc.is_some() {
            match &r {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(t) = f.trailers_ref() {
                        let ok = t.get("grpc-status").is_some_and(|v| v.as_bytes() == b"0");
                        self.finish(!ok);
                    }
                }
                Poll::Ready(Some(Err(_))) => self.finish(true),
                Poll::Ready(None) => self.finish(true),
                Poll::Pending => {}
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // A gRPC stream abandoned before its trailers is a failure.
        self.finish(true);
        if let Some((pool, send)) = self.release.take() {
            pool.put(send);
        }
    }
}
