//! What the app received, per caller and per request: every request but `/healthz` and
//! `/received` is counted under its `x-conformance-caller` header (`unidentified` without one)
//! as `METHOD /path`, with the status it was answered. `GET /received` answers the counts as
//! `{"<caller>": {"GET /echo 200": n}}`; the conformance suite reads it from inside the pod
//! (`kubectl exec ... testapp get http://127.0.0.1:8080/received`), so the policies under test,
//! which act on traffic between pods, never block it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// The header a caller names itself with.
pub const CALLER_HEADER: &str = "x-conformance-caller";

/// The counts, shared by the recording layer and the `/received` route.
pub type Received = Arc<Mutex<BTreeMap<String, BTreeMap<String, u64>>>>;

/// Counts `req` under its caller once it has been answered.
pub async fn record(State(received): State<Received>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/healthz" || path == "/received" {
        return next.run(req).await;
    }
    let caller = req
        .headers()
        .get(CALLER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unidentified")
        .to_string();
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let key = format!("{method} {path} {}", resp.status().as_u16());
    let mut counts = received.lock().unwrap_or_else(|p| p.into_inner());
    *counts.entry(caller).or_default().entry(key).or_default() += 1;
    resp
}

/// `GET /received`.
pub async fn report(State(received): State<Received>) -> axum::Json<serde_json::Value> {
    let counts = received.lock().unwrap_or_else(|p| p.into_inner()).clone();
    axum::Json(serde_json::json!(counts))
}
