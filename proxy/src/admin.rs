//! The admin server: `/metrics`, `/ready`, `/live`, `/config`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::error::{Body, simple};
use crate::runtime::Runtime;

/// Answers one admin request.
pub async fn handle(rt: Arc<Runtime>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return simple(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/metrics" => typed(
            rt.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/live" => simple(StatusCode::OK, "live\n"),
        "/ready" => {
            if rt.policy.borrow().is_pending() {
                simple(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: waiting for the inbound policy from the policy service\n",
                )
            } else if rt.ready.load(Ordering::Acquire)
                && rt.tls.store.has_cert()
                && !rt.drain.is_draining()
            {
                simple(StatusCode::OK, "ready\n")
            } else {
                simple(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/config" => typed(rt.config.to_json(), "application/json"),
        _ => simple(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /ready, /live or /config\n",
        ),
    }
}

fn typed(body: String, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}
