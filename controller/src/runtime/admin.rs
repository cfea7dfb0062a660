//! The admin HTTP server: `/metrics`, `/ready` (initial lists done), `/live`.

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;

type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

async fn metrics(State((registry, _)): State<(Arc<Registry>, Ready)>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
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

async fn ready(State((_, ready)): State<(Arc<Registry>, Ready)>) -> impl IntoResponse {
    if ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: initial Kubernetes lists not done\n",
        )
    }
}

/// Serves the admin endpoints on `listener`.
pub(crate) async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    ready_fn: Ready,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/live", get(|| async { "live\n" }))
        .with_state((registry, ready_fn));
    axum::serve(listener, app).await
}
