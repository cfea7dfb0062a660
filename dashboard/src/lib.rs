//! tulle-dashboard: the web dashboard of the tulle service mesh.
//!
//! Server-rendered pages (axum + askama) with stable URLs: the overview (control-plane
//! health and namespaces), a namespace (workloads table and topology), a workload (pods,
//! edges with identities and mTLS, its SMI objects), the topology of the whole mesh, and the
//! SMI objects (TrafficSplits as canary views, TrafficTargets, routes, invalid objects).
//! Open pages update themselves over Server-Sent Events while the tab is visible; without
//! JavaScript they are complete as loaded.
//!
//! It reads the Kubernetes API only, read-only: objects, and the golden metrics through the
//! aggregated SMI Traffic Metrics API (`/apis/metrics.smi-spec.io/v1alpha1`) the controller
//! serves — one list request per table, cached for a second and shared by every open page.
//!
//! - [`model`]: plain data, [`mod@format`]: numbers as people read them; [`source`]: the
//!   [`source::Cluster`] trait and its Kubernetes and canned implementations;
//! - [`views`]: the pages, rendered into fragments; [`topology`]: the server-side layered
//!   layout and SVG of the graph; [`history`]: samples for the small charts;
//! - [`web`]: routes, live updates, assets, and the security layer (Host allow-list
//!   against DNS rebinding, a strict Content-Security-Policy, GET only).

pub mod args;
mod error;
pub mod format;
pub mod history;
pub mod model;
pub mod source;
pub mod topology;
pub mod views;
pub mod web;

pub use args::Args;
pub use error::{Error, Result};

use std::sync::Arc;
use std::time::Duration;

use source::Cluster;
use source::kube::{KubeCluster, Settings};

/// Records every workload's metrics every `every` (the charts then have history before
/// anyone opens a page). One list request per workload kind per period.
pub async fn sample(app: web::App, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = views::namespace::workload_metrics(app.ctx(), None).await {
            tracing::debug!(error = %e, "sampling the workloads' metrics");
        }
    }
}

/// Runs the dashboard: connects to the Kubernetes API (in-cluster, or `KUBECONFIG`) and
/// serves until the process ends.
pub async fn run(args: Args) -> Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::Config(format!("cannot connect to the Kubernetes API: {e}")))?;
    let cluster: Arc<dyn Cluster> = Arc::new(KubeCluster::new(
        client,
        Settings {
            control_plane_namespace: args.control_plane_namespace.clone(),
            window: args.window,
            cache_ttl: args.cache_ttl,
            edges_ttl: args.edges_cache_ttl,
        },
    ));
    let app = web::App::new(cluster, &args.enforced_host, args.refresh)?;
    if !args.sample_every.is_zero() {
        tokio::spawn(sample(app.clone(), args.sample_every));
    }
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|source| Error::Io {
            what: format!("listening on {}", args.addr),
            source,
        })?;
    tracing::info!(addr = %args.addr, enforced_host = %args.enforced_host, "serving the dashboard");
    web::serve(listener, app).await
}
