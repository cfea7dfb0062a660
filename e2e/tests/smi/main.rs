//! The SMI APIs on the real cluster, on one mesh installed with `tulle install`: Traffic
//! Split (the canary scenario, [`split`]), Traffic Access ([`access`]) and Traffic Metrics
//! ([`metrics`]), each in namespaces of its own, run concurrently.
//!
//! Needs the images of `cluster/load-tulle`, `cluster/image testapp` and the `tulle` binary
//! (`$TULLE_BIN`); cluster/e2e provides them.

mod access;
mod metrics;
mod split;

use tulle_e2e::install::shared_mesh;

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn smi_split_and_access_on_the_installed_mesh() {
    let kube = tulle_e2e::client().await.expect("cluster");
    let _mesh = shared_mesh(&kube).await;
    // kubectl runs synchronously inside the cases: each gets a worker thread of its own.
    let canary = tokio::spawn(split::canary_release(kube.clone()));
    let access = tokio::spawn(access::traffic_access(kube.clone()));
    let metrics = tokio::spawn(metrics::golden_metrics(kube.clone()));
    let (canary, access, metrics) = (canary.await, access.await, metrics.await);
    let failed: Vec<String> = [
        ("TrafficSplit", canary),
        ("TrafficAccess", access),
        ("TrafficMetrics", metrics),
    ]
    .into_iter()
    .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
    .collect();
    assert!(failed.is_empty(), "failed cases: {failed:#?}");
}
