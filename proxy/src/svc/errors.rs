//! Errors become answers: a [`ProxyError`] turns into its 502/503/504/400 response with
//! the `tulle-proxy-error` header, so no request ever ends without a response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::ProxyError;

/// Layer of [`ErrorResponse`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorResponseLayer;

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;
    fn layer(&self, inner: S) -> ErrorResponse<S> {
        ErrorResponse {
            inner,
            failed: None,
        }
    }
}

/// Answers the inner service's errors with their synthetic responses.
#[derive(Debug)]
pub struct ErrorResponse<S> {
    inner: S,
    /// The inner service failed to become ready: the next request gets this answer.
    failed: Option<ProxyError>,
}

impl<S: Clone> Clone for ErrorResponse<S> {
    fn clone(&self) -> Self {
        ErrorResponse {
            inner: self.inner.clone(),
            failed: None,
        }
    }
}

impl<S, R> Service<R> for ErrorResponse<S>
where
    S: Service<R, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ErrorResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.failed.is_none() {
            match self.inner.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => self.failed = Some(e),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        match self.failed.take() {
            Some(e) => ErrorResponseFuture::Failed { error: Some(e) },
            None => ErrorResponseFuture::Inner {
                inner: self.inner.call(req),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`ErrorResponse`].
    #[project = Proj]
    pub enum ErrorResponseFuture<F> {
        Inner { #[pin] inner: F },
        Failed { error: Option<ProxyError> },
    }
}

impl<F> Future for ErrorResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, ProxyError>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let r = match self.project() {
            Proj::Inner { inner } => std::task::ready!(inner.poll(cx)),
            Proj::Failed { error } => Err(error
                .take()
                .unwrap_or_else(|| ProxyError::Internal("polled after completion".into()))),
        };
        Poll::Ready(Ok(r.unwrap_or_else(|e| {
            tracing::debug!("answering with an error response: {e}");
            e.to_response()
        })))
    }
}
