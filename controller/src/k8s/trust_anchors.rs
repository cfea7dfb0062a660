//! The trust anchors in every namespace: the controller copies the trust-anchor ConfigMap of
//! its own namespace (`tulle-trust-anchors`, the source) into every other namespace, where
//! the injector mounts it into each proxy and the proxy reloads it when it changes. Rotating
//! the anchors is then one edit of the source: no workload restarts (docs/identity-rotation.md).
//!
//! A kube-runtime controller over Namespaces: a namespace is reconciled when it appears, when
//! the source changes (every namespace then), and every [`RESYNC`] (a copy edited or deleted by
//! hand is put back). System namespaces, terminating ones and those holding a tulle control
//! plane ([`CONTROL_PLANE_NS_LABEL`]: they have anchors of their own) are left alone. RBAC: get, watch
//! and patch of that one ConfigMap name, and create of ConfigMaps (which RBAC cannot limit
//! by name); nothing reads other ConfigMaps.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt as _};
use tulle_api::proxy_contract::{
    CONTROL_PLANE_NS_LABEL, TRUST_ANCHORS_CONFIGMAP, TRUST_ANCHORS_KEY,
};

/// How often every namespace's copy is checked again.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Retry after a failed copy.
const RETRY: Duration = Duration::from_secs(10);
/// The field manager of the copies.
const MANAGER: &str = "tulle-controller";
/// Namespaces never given a copy.
const SKIPPED: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// Why a namespace's copy was not written.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading the source ConfigMap {namespace}/{TRUST_ANCHORS_CONFIGMAP}: {source}")]
    Source {
        namespace: String,
        source: kube::Error,
    },
    #[error(
        "the source ConfigMap {namespace}/{TRUST_ANCHORS_CONFIGMAP} has no {TRUST_ANCHORS_KEY}; restore it (tulle install writes it)"
    )]
    NoKey { namespace: String },
    #[error("writing {namespace}/{TRUST_ANCHORS_CONFIGMAP}: {source}")]
    Write {
        namespace: String,
        source: kube::Error,
    },
}

struct Ctx {
    client: Client,
    /// The control plane's namespace, where the source is.
    home: String,
}

/// Whether namespace `ns` gets a copy (the control plane's own holds the source).
pub fn wants_copy(ns: &Namespace, home: &str) -> bool {
    let name = ns.name_any();
    let terminating = ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    let control_plane = ns.labels().contains_key(CONTROL_PLANE_NS_LABEL);
    name != home && !SKIPPED.contains(&name.as_str()) && !terminating && !control_plane
}

/// The copy of `pem` for namespace `ns`.
pub fn copy(ns: &str, pem: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": TRUST_ANCHORS_CONFIGMAP, "namespace": ns,
            "labels": {"app.kubernetes.io/part-of": "tulle", "tulle.io/trust-anchors": "copy"},
            "annotations": {"tulle.io/copied-from": "the control plane's tulle-trust-anchors; edit that one, not this copy"},
        },
        "data": {TRUST_ANCHORS_KEY: pem},
    }))
    .unwrap_or_default()
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, CopyError> {
    if !wants_copy(&ns, &ctx.home) {
        return Ok(Action::await_change());
    }
    let source = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.home)
        .get(TRUST_ANCHORS_CONFIGMAP)
        .await
        .map_err(|source| CopyError::Source {
            namespace: ctx.home.clone(),
            source,
        })?;
    let pem = source
        .data
        .as_ref()
        .and_then(|d| d.get(TRUST_ANCHORS_KEY))
        .ok_or_else(|| CopyError::NoKey {
            namespace: ctx.home.clone(),
        })?;
    let name = ns.name_any();
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &name)
        .patch(
            TRUST_ANCHORS_CONFIGMAP,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(copy(&name, pem)),
        )
        .await
        .map_err(|source| CopyError::Write {
            namespace: name,
            source,
        })?;
    Ok(Action::requeue(RESYNC))
}

fn on_error(_ns: Arc<Namespace>, e: &CopyError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!("trust anchors not copied, retrying in {RETRY:?}: {e}");
    Action::requeue(RETRY)
}

/// Runs the copier until the process ends.
pub async fn run(client: Client, home: String) {
    let namespaces = Api::<Namespace>::all(client.clone());
    let source = Api::<ConfigMap>::namespaced(client.clone(), &home);
    let controller = Controller::new(namespaces, watcher::Config::default());
    let store = controller.store();
    let source_config =
        watcher::Config::default().fields(&format!("metadata.name={TRUST_ANCHORS_CONFIGMAP}"));
    let ctx = Arc::new(Ctx { client, home });
    controller
        // A changed source: every namespace.
        .watches(source, source_config, move |_| {
            store
                .state()
                .iter()
                .map(|ns| ObjectRef::from_obj(ns.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, on_error, ctx)
        .for_each(|r| async move {
            if let Ok((ns, _)) = r {
                tracing::debug!(namespace = %ns.name, "trust anchors copied");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, phase: Option<&str>) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn another_control_planes_namespace_keeps_its_own_anchors() {
        let other: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "canary-cp", "labels": {CONTROL_PLANE_NS_LABEL: "canary-cp"}}
        }))
        .unwrap();
        assert!(!wants_copy(&other, "tulle-system"));
    }

    #[test]
    fn every_namespace_but_the_home_system_and_terminating_ones_gets_a_copy() {
        assert!(wants_copy(&ns("web", Some("Active")), "tulle-system"));
        assert!(wants_copy(&ns("web", None), "tulle-system"));
        assert!(!wants_copy(&ns("tulle-system", None), "tulle-system"));
        assert!(!wants_copy(&ns("kube-system", None), "tulle-system"));
        assert!(!wants_copy(&ns("web", Some("Terminating")), "tulle-system"));
    }

    #[test]
    fn the_copy_carries_the_bundle_under_the_key_the_proxy_reads() {
        let c = copy("web", "PEM");
        assert_eq!(c.metadata.name.as_deref(), Some(TRUST_ANCHORS_CONFIGMAP));
        assert_eq!(c.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(c.data.unwrap()[TRUST_ANCHORS_KEY], "PEM");
        assert_eq!(c.metadata.labels.unwrap()["tulle.io/trust-anchors"], "copy");
    }
}
