//! What every answer goes through: the Host-header allow-list (403 for any other host,
//! against DNS rebinding) and the security headers, among them a strict
//! Content-Security-Policy (same-origin resources only, no inline script or style).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use regex::Regex;
use std::sync::Arc;

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// Paths answered whatever the Host (the kubelet's probes use the pod IP); they tell nothing.
pub const PROBE_PATHS: [&str; 1] = ["/ready"];

/// The host of a request: the Host header, or the authority of an absolute URI (HTTP/2).
fn host(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(header::HOST) {
        return h.to_str().ok().map(str::to_string);
    }
    req.uri().authority().map(|a| a.as_str().to_string())
}

/// Refuses requests whose Host does not match `allowed`.
pub async fn enforce_host(State(allowed): State<Arc<Regex>>, req: Request, next: Next) -> Response {
    if PROBE_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match host(&req) {
        Some(h) if allowed.is_match(&h) => next.run(req).await,
        h => {
            tracing::info!(host = ?h, path = %req.uri().path(), "refused: Host not allowed");
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "403 Forbidden: the Host {:?} is not allowed (it must match --enforced-host {:?}). \
                     Open the dashboard with `tulle dashboard`, or add your host name to --enforced-host.\n",
                    h.unwrap_or_default(),
                    allowed.as_str()
                ),
            )
                .into_response()
        }
    }
}

/// Adds the security headers.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    res
}
