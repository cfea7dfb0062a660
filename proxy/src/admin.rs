//! The admin server: `/metrics`, `/ready`, `/live` for scrapers and the kubelet, served to
//! anyone; everything else (`/config`, the proxy's whole configuration, and any other path)
//! for local clients only (`kubectl exec` or `kubectl port-forward` reach it over loopback;
//! other pods get 403 whatever the path, so they cannot even probe what exists).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::body::{Body, simple};
use crate::runtime::Runtime;

/// What a scraper or the kubelet needs: the only paths served to non-local clients.
pub const PUBLIC_PATHS: [&str; 3] = ["/metrics", "/ready", "/live"];

/// Whether `peer` may read `path`: [`PUBLIC_PATHS`] for everyone, the rest for local
/// clients only.
fn allowed(path: &str, peer: SocketAddr) -> bool {
    PUBLIC_PATHS.contains(&path) || peer.ip().to_canonical().is_loopback()
}

/// Answers one admin request from `peer`.
pub async fn handle(rt: Arc<Runtime>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if !allowed(req.uri().path(), peer) {
        return simple(
            StatusCode::FORBIDDEN,
            "only /metrics, /ready and /live are served to other pods; the rest (/config) to \
             local clients only: use kubectl exec or kubectl port-forward\n",
        );
    }
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
            } else if let Some(reason) = rt.tls.store.not_ready_reason(std::time::SystemTime::now())
            {
                let mut r = simple(StatusCode::SERVICE_UNAVAILABLE, "");
                *r.body_mut() =
                    Either::Right(Full::new(Bytes::from(format!("not ready: {reason}\n"))));
                r
            } else if rt.ready.load(Ordering::Acquire) && !rt.drain.is_draining() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scraper_paths_for_remote_clients() {
        let remote: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert!(!allowed("/config", remote));
        for diagnostic in ["/", "/config/", "/debug", "/metrics/x", "/unknown"] {
            assert!(!allowed(diagnostic, remote), "{diagnostic}");
            assert!(allowed(diagnostic, local), "{diagnostic}");
        }
        assert!(allowed("/config", local));
        assert!(allowed("/config", mapped));
        for scraped in ["/metrics", "/ready", "/live"] {
            assert!(allowed(scraped, remote), "{scraped}");
        }
    }
}
