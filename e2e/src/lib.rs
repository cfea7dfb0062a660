//! tulle-e2e: the harness for end-to-end tests on a real cluster (see `cluster/`).
//!
//! Tests connect through `KUBECONFIG` (run them with `cluster/e2e`, which sets it), get a fresh
//! namespace each ([`TestNamespace`], deleted on drop), apply YAML ([`TestNamespace::apply`]), wait
//! with timeouts that explain what was not ready ([`wait`]), and use `kubectl` where that is simpler
//! (exec, logs, port-forward: [`kubectl`]). Images come from `cluster/image`: [`testapp_image`],
//! and `cluster/load-tulle`: [`mesh::tulle_image`]; [`mesh`] also stands up a control plane and
//! hand-written proxy sidecars; [`prometheus`] runs a real Prometheus scraping the proxies;
//! [`browser`] drives a headless Chromium over WebDriver (the dashboard's browser tests).
//!
//! Every e2e test is `#[ignore = "needs the cluster: run with cluster/e2e"]` and uses `#[tokio::test]`.

pub mod browser;
pub mod install;
pub mod kubectl;
pub mod mesh;
pub mod metrics_api;
mod namespace;
pub mod prometheus;
pub mod traffic;
pub mod wait;

pub use namespace::TestNamespace;

use std::time::Duration;

/// Errors of the harness; each says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot connect to the cluster (is KUBECONFIG set? run the tests with cluster/e2e): {0}"
    )]
    Connect(#[source] kube::Error),
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("`kubectl {args}` failed: {stderr}")]
    Kubectl { args: String, stderr: String },
    #[error("{0}")]
    Io(String),
    #[error("timed out after {timeout:?} waiting for {what}\n{diagnostics}")]
    Timeout {
        what: String,
        timeout: Duration,
        diagnostics: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The test-app image (crate `cluster/testapp`), as imported by `cluster/image testapp`.
/// `TULLE_TESTAPP_IMAGE` overrides it.
pub fn testapp_image() -> String {
    std::env::var("TULLE_TESTAPP_IMAGE")
        .unwrap_or_else(|_| format!("localhost/tulle/testapp:{}", env!("CARGO_PKG_VERSION")))
}

/// A client for the cluster in `KUBECONFIG`; installs the aws-lc-rs crypto provider first.
pub async fn client() -> Result<kube::Client> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    kube::Client::try_default().await.map_err(Error::Connect)
}
