//! A Kubernetes client from the kubectl-style global flags.

use crate::args::GlobalArgs;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::time::Duration;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// The client could not be built.
    #[error("client: {0}")]
    Client(#[from] kube::Error),
}

/// Builds a client: `--kubeconfig` (else $KUBECONFIG / ~/.kube/config, else in-cluster),
/// `--context`, with `timeout` as connect and read timeout.
pub async fn client(g: &GlobalArgs, timeout: Duration) -> Result<kube::Client, KubeconfigError> {
    let options = KubeConfigOptions {
        context: g.context.clone(),
        ..Default::default()
    };
    let mut config = match &g.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| KubeconfigError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| KubeconfigError::Config(format!("{}: {e}", path.display())))?
        }
        None if g.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| KubeconfigError::Config(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| KubeconfigError::Config(e.to_string()))?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    if let Some(ns) = &g.namespace {
        config.default_namespace = ns.clone();
    }
    Ok(kube::Client::try_from(config)?)
}
