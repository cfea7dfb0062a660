//! `tulle version`: the client version, and the control plane's from the
//! `app.kubernetes.io/version` label of the tulle-controller Deployment.

use crate::error::error_chain;
use crate::{
    args::{GlobalArgs, VersionArgs},
    exit, kubeconfig,
    manifest::{CONTROLLER, NAMESPACE},
};
use k8s_openapi::api::apps::v1::Deployment;
use std::time::Duration;

/// What to print and the exit code.
#[derive(Debug)]
pub struct Report {
    /// The text for stdout.
    pub text: String,
    /// 0, or 1 when the server version is unavailable.
    pub exit_code: u8,
}

/// The client version line.
pub fn client_line() -> String {
    format!("Client version: {}\n", env!("CARGO_PKG_VERSION"))
}

/// Builds the report; contacts the cluster unless `--client`.
pub async fn report(g: &GlobalArgs, args: &VersionArgs) -> Report {
    let mut text = client_line();
    if args.client {
        return Report {
            text,
            exit_code: exit::OK,
        };
    }
    let timeout = Duration::from_secs(args.timeout.max(1));
    let server = tokio::time::timeout(timeout * 2, server_version(g, timeout))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from the cluster in {}s",
                timeout.as_secs() * 2
            ))
        });
    match server {
        Ok(v) => {
            text.push_str(&format!("Server version: {v}\n"));
            Report {
                text,
                exit_code: exit::OK,
            }
        }
        Err(reason) => {
            text.push_str(&format!("Server version: unavailable ({reason})\n"));
            Report {
                text,
                exit_code: exit::FAILURE,
            }
        }
    }
}

async fn server_version(g: &GlobalArgs, timeout: Duration) -> Result<String, String> {
    let client = kubeconfig::client(g, timeout)
        .await
        .map_err(|e| error_chain(&e))?;
    let api: kube::Api<Deployment> = kube::Api::namespaced(client, NAMESPACE);
    let d = api.get_opt(CONTROLLER).await.map_err(|e| match e {
        kube::Error::Api(s) => format!("{}: {}", s.reason, s.message),
        other => error_chain(&other),
    })?;
    let d = d.ok_or_else(|| {
        format!("deployment {NAMESPACE}/{CONTROLLER} not found: is tulle installed?")
    })?;
    d.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/version"))
        .cloned()
        .ok_or_else(|| {
            format!("deployment {NAMESPACE}/{CONTROLLER} has no app.kubernetes.io/version label")
        })
}
