//! The proxy's response body: a proxied body ([`ProxyBody`]) or a synthetic one; and its
//! request body ([`RequestBody`]): the client's body, within the request-body limit.
//!
//! A proxied body knows nothing of metrics or pools: whoever needs to act when it ends gives
//! it a callback ([`ProxyBody::on_grpc_status`] for the gRPC status in trailers,
//! [`ProxyBody::on_done`] to give an HTTP/1 connection back to its pool).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::sync::oneshot;

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

/// A request body on its way upstream: the client's body, cut with an error once it grows
/// past the request-body limit (http-body-util's [`Limited`]). The client that sends it
/// upstream then aborts the upstream request (HTTP/2: the stream is reset; HTTP/1: the
/// connection is closed), and whoever holds the [`Exceeded`] of the body learns it.
#[derive(Debug)]
pub struct RequestBody {
    inner: Limited<Incoming>,
    exceeded: Option<oneshot::Sender<()>>,
}

/// Resolves when the body of a [`RequestBody::limited`] grows past its limit; never if it
/// does not (the body ends or is dropped first).
#[derive(Debug)]
pub struct Exceeded {
    /// `None` once it answered.
    rx: Option<oneshot::Receiver<()>>,
    happened: bool,
}

impl Exceeded {
    /// Whether the body has grown past its limit by now.
    pub fn happened(&mut self) -> bool {
        if let Some(rx) = &mut self.rx {
            match rx.try_recv() {
                Ok(()) => self.happened = true,
                Err(oneshot::error::TryRecvError::Empty) => return false,
                Err(oneshot::error::TryRecvError::Closed) => {}
            }
            self.rx = None;
        }
        self.happened
    }
}

impl std::future::Future for Exceeded {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(rx) = &mut self.rx else {
            return if self.happened {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        };
        match Pin::new(rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.rx = None;
                self.happened = r.is_ok();
                if self.happened {
                    Poll::Ready(())
                } else {
                    // The body ended or was dropped within the limit: never.
                    Poll::Pending
                }
            }
        }
    }
}

impl RequestBody {
    /// A body without a limit.
    pub fn new(inner: Incoming) -> Self {
        RequestBody {
            inner: Limited::new(inner, usize::MAX),
            exceeded: None,
        }
    }

    /// A body cut once more than `max` bytes of data have come; the [`Exceeded`] says when.
    pub fn limited(inner: Incoming, max: usize) -> (Self, Exceeded) {
        let (tx, rx) = oneshot::channel();
        let body = RequestBody {
            inner: Limited::new(inner, max),
            exceeded: Some(tx),
        };
        (
            body,
            Exceeded {
                rx: Some(rx),
                happened: false,
            },
        )
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &r
            && e.is::<LengthLimitError>()
            && let Some(tx) = self.exceeded.take()
        {
            let _ = tx.send(());
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
