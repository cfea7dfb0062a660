//! Bounds on a request: the response timeout (504) and the in-flight limit with fail-fast
//! (503) instead of a queue, both tower's layers whose boxed errors are mapped back to
//! [`ProxyError`] so the stack keeps one error type; and the request-body limit (413,
//! [`RequestBodyLimit`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::timeout::Timeout;
use tower::{Layer, Service};

use crate::body::{Body, RequestBody};
use crate::error::{BoxError, ProxyError};

/// A service whose responses must start within a timeout.
pub type ResponseTimeout<S> = ProxyErrors<Timeout<S>>;

/// Layer of [`ResponseTimeout`]: no response headers within `timeout` is a 504.
#[derive(Debug, Clone, Copy)]
pub struct ResponseTimeoutLayer {
    pub timeout: Duration,
}

impl<S> Layer<S> for ResponseTimeoutLayer {
    type Service = ResponseTimeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ProxyErrors(Timeout::new(inner, self.timeout))
    }
}

/// A service with at most N requests in flight (across all its clones); beyond that,
/// requests fail at once.
pub type FailFast<S> = ProxyErrors<LoadShed<ConcurrencyLimit<S>>>;

/// Layer of [`FailFast`]: more than `max_in_flight` concurrent requests get a 503.
#[derive(Debug, Clone, Copy)]
pub struct FailFastLayer {
    pub max_in_flight: usize,
}

impl<S> Layer<S> for FailFastLayer {
    type Service = FailFast<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ProxyErrors(LoadShed::new(ConcurrencyLimit::new(
            inner,
            self.max_in_flight,
        )))
    }
}

/// Maps a tower layer's boxed errors back to [`ProxyError`] ([`ProxyError::from_boxed`]).
#[derive(Debug, Clone)]
pub struct ProxyErrors<S>(S);

impl<S: Service<R, Error = BoxError>, R> Service<R> for ProxyErrors<S> {
    type Response = S::Response;
    type Error = ProxyError;
    type Future = ProxyErrorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.0.poll_ready(cx).map_err(ProxyError::from_boxed)
    }

    fn call(&mut self, req: R) -> Self::Future {
        ProxyErrorsFuture {
            inner: self.0.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`ProxyErrors`].
    pub struct ProxyErrorsFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future<Output = Result<T, BoxError>>, T> Future for ProxyErrorsFuture<F> {
    type Output = Result<T, ProxyError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map_err(ProxyError::from_boxed)
    }
}

/// Layer of [`RequestBodyLimit`]: request bodies of at most `max` bytes (`None`: any size).
#[derive(Debug, Clone, Copy)]
pub struct RequestBodyLimitLayer {
    pub max: Option<usize>,
}

impl<S> Layer<S> for RequestBodyLimitLayer {
    type Service = RequestBodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestBodyLimit {
            inner,
            max: self.max,
        }
    }
}

/// Bounds request bodies. A request whose `Content-Length` is over the limit is refused
/// (413) before anything is sent upstream. A body that grows past it while streaming is cut
/// ([`RequestBody::limited`]): the upstream request is aborted, and the client gets 413 if
/// its response has not started (else its response body fails: the stream is reset).
#[derive(Debug, Clone)]
pub struct RequestBodyLimit<S> {
    inner: S,
    max: Option<usize>,
}

impl<S> Service<Request<Incoming>> for RequestBodyLimit<S>
where
    S: Service<Request<RequestBody>, Response = Response<Body>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let Some(max) = self.max else {
            let fut = self.inner.call(req.map(RequestBody::new));
            return Box::pin(fut);
        };
        // hyper's size hint of a body with a Content-Length is exactly that length.
        if req.body().size_hint().lower() > max as u64 {
            return Box::pin(std::future::ready(Err(ProxyError::RequestBodyTooLarge(
                max,
            ))));
        }
        let (parts, body) = req.into_parts();
        let (body, mut exceeded) = RequestBody::limited(body, max);
        let fut = self.inner.call(Request::from_parts(parts, body));
        Box::pin(async move {
            tokio::select! {
                biased;
                // The upstream request is dropped, so aborted, if it was still waiting.
                () = &mut exceeded => Err(ProxyError::RequestBodyTooLarge(max)),
                r = fut => match r {
                    // The cut body made the upstream request fail.
                    Err(_) if exceeded.happened() => Err(ProxyError::RequestBodyTooLarge(max)),
                    r => r,
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;
    use crate::svc::ErrorResponseLayer;
    use http::{Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt};

    /// Answers 200 once `release` is set.
    fn slow(
        release: tokio::sync::watch::Receiver<bool>,
    ) -> impl Service<(), Response = Response<Body>, Error = ProxyError, Future: Send> + Clone {
        tower::service_fn(move |()| {
            let mut release = release.clone();
            async move {
                let _ = release.wait_for(|r| *r).await;
                Ok(crate::body::simple(StatusCode::OK, "ok"))
            }
        })
    }

    #[tokio::test]
    async fn beyond_the_in_flight_limit_requests_fail_fast_and_capacity_comes_back() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let svc = ServiceBuilder::new()
            .layer(ErrorResponseLayer)
            .layer(FailFastLayer { max_in_flight: 2 })
            .service(slow(rx));
        let first = tokio::spawn(svc.clone().oneshot(()));
        let second = tokio::spawn(svc.clone().oneshot(()));
        tokio::task::yield_now().await;
        let shed = svc.clone().oneshot(()).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[crate::error::ERROR_HEADER], "fail fast");
        tx.send_replace(true);
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
        // The permits are back: a new request goes through.
        let again = svc.oneshot(()).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn no_response_within_the_timeout_is_a_504() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let svc = ServiceBuilder::new()
            .layer(ErrorResponseLayer)
            .layer(ResponseTimeoutLayer {
                timeout: Duration::from_secs(3),
            })
            .service(slow(rx));
        let resp = svc.oneshot(()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            resp.headers()[crate::error::ERROR_HEADER],
            "response timeout"
        );
    }

    #[test]
    fn boxed_errors_come_back_as_proxy_errors() {
        let e: BoxError = Box::new(ProxyError::NoEndpoints);
        assert!(matches!(ProxyError::from_boxed(e), ProxyError::NoEndpoints));
        let e: BoxError = "something else".into();
        assert!(matches!(ProxyError::from_boxed(e), ProxyError::Internal(_)));
    }
}
