//! Request metrics: `request_total` when a request starts, `response_latency_ms` and
//! `response_total` (by status and classification) when its response headers arrive, or
//! for gRPC when the status arrives in the trailers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::body::Body;
use crate::metrics::HttpMetrics;

/// Chooses the metric handles of a request (fixed per endpoint outbound; by authority and
/// port inbound).
pub trait PickMetrics<B> {
    fn pick(&self, req: &Request<B>) -> Arc<HttpMetrics>;
}

impl<B> PickMetrics<B> for Arc<HttpMetrics> {
    fn pick(&self, _: &Request<B>) -> Arc<HttpMetrics> {
        self.clone()
    }
}

/// Layer of [`RecordHttp`].
#[derive(Debug, Clone)]
pub struct RecordHttpLayer<P> {
    pick: P,
}

impl<P> RecordHttpLayer<P> {
    pub fn new(pick: P) -> Self {
        RecordHttpLayer { pick }
    }
}

impl<S, P: Clone> Layer<S> for RecordHttpLayer<P> {
    type Service = RecordHttp<S, P>;
    fn layer(&self, inner: S) -> Self::Service {
        RecordHttp {
            inner,
            pick: self.pick.clone(),
        }
    }
}

/// Records the metrics of every request through it. The inner service answers every
/// request (errors are responses already), so every request is counted.
#[derive(Debug, Clone)]
pub struct RecordHttp<S, P> {
    inner: S,
    pick: P,
}

impl<S, P, B> Service<Request<B>> for RecordHttp<S, P>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    P: PickMetrics<B>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RecordFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let metrics = self.pick.pick(&req);
        metrics.request();
        RecordFuture {
            inner: self.inner.call(req),
            metrics,
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`RecordHttp`].
    pub struct RecordFuture<F> {
        #[pin]
        inner: F,
        metrics: Arc<HttpMetrics>,
        start: Instant,
    }
}

impl<F> Future for RecordFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut resp) = std::task::ready!(this.inner.poll(cx));
        this.metrics.latency(this.start.elapsed());
        count_response(this.metrics, &mut resp);
        Poll::Ready(Ok(resp))
    }
}

/// Counts a response: now, or at the end of its stream for gRPC (status in trailers).
fn count_response(metrics: &Arc<HttpMetrics>, resp: &mut http::Response<Body>) {
    let status = resp.status().as_u16();
    let grpc = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
        && !resp.headers().contains_key("grpc-status")
        && status < 500;
    if grpc && let http_body_util::Either::Left(body) = resp.body_mut() {
        let m = metrics.clone();
        body.on_grpc_status(move |failure| m.count(status, failure));
        return;
    }
    metrics.count(
        status,
        crate::http_headers::is_failure(resp.status(), resp.headers()),
    );
}
