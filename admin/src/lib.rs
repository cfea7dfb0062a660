//! tulle-admin: the admin HTTP server shared by the control-plane binaries (tulle-identity,
//! tulle-controller): `/metrics` (OpenMetrics text), `/ready` (from a readiness function, with a
//! reason when not ready) and `/live`.

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the admin server needs.
#[derive(Clone)]
pub struct AdminState {
    /// The process registry.
    pub registry: Arc<Registry>,
    /// Returns whether the process is ready.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The `/ready` body while not ready: what the process is waiting for.
    pub not_ready_reason: &'static str,
    /// A more precise reason, computed while not ready; `None` (or the function answering
    /// `None`) falls back to `not_ready_reason`.
    pub not_ready_detail: Option<Arc<dyn Fn() -> Option<String> + Send + Sync>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("not_ready_reason", &self.not_ready_reason)
            .finish_non_exhaustive()
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            e.to_string(),
        ),
    }
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    if (s.ready)() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        let reason = s
            .not_ready_detail
            .as_ref()
            .and_then(|f| f())
            .unwrap_or_else(|| s.not_ready_reason.to_string());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
    }
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: AdminState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/live", get(|| async { "live\n" }))
        .with_state(state);
    axum::serve(listener, app).await
}
