//! The proxy's response body: a proxied body ([`ProxyBody`]) or a synthetic one.
//!
//! A proxied body knows nothing of metrics or pools: whoever needs to act when it ends gives
//! it a callback ([`ProxyBody::on_grpc_status`] for the gRPC status in trailers,
//! [`ProxyBody::on_done`] to give an HTTP/1 connection back to its pool).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// The response body type of the proxy: a proxied body or a synthetic one.
pub type Body = Either<ProxyBody, Full<Bytes>>;

/// Called once with whether a gRPC stream failed (a non-zero `grpc-status`, an error, or no
/// trailers).
type OnGrpcStatus = Box<dyn FnOnce(bool) + Send + Sync>;
/// Called once when the body is done or dropped.
type OnDone = Box<dyn FnOnce() + Send + Sync>;

/// A proxied response body.
pub struct ProxyBody {
    inner: Incoming,
    grpc_status: Option<OnGrpcStatus>,
    done: Option<OnDone>,
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBody")
            .field("inner", &self.inner)
            .field("grpc", &self.grpc_status.is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyBody {
    /// Wraps a body.
    pub fn new(inner: Incoming) -> Self {
        ProxyBody {
            inner,
            grpc_status: None,
            done: None,
        }
    }

    /// Watches the trailers for `grpc-status`: `f(failure)` runs once when the stream ends.
    pub fn on_grpc_status(&mut self, f: impl FnOnce(bool) + Send + Sync + 'static) {
        self.grpc_status = Some(Box::new(f));
    }

    /// Runs `f` once when the body is done or dropped.
    pub fn on_done(&mut self, f: impl FnOnce() + Send + Sync + 'static) {
        self.done = Some(Box::new(f));
    }

    fn grpc_finished(&mut self, failure: bool) {
        if let Some(f) = self.grpc_status.take() {
            f(failure);
        }
    }
}

/// Wraps a proxied response.
pub fn proxied(resp: Response<Incoming>) -> Response<Body> {
    resp.map(|b| Either::Left(ProxyBody::new(b)))
}

/// A plain response with a static body.
pub fn simple(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *r.status_mut() = status;
    r
}

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if self.grpc_status.is_some() {
            match &r {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(t) = f.trailers_ref() {
                        let ok = t.get("grpc-status").is_some_and(|v| v.as_bytes() == b"0");
                        self.grpc_finished(!ok);
                    }
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.grpc_finished(true),
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
        self.grpc_finished(true);
        if let Some(f) = self.done.take() {
            f();
        }
    }
}
