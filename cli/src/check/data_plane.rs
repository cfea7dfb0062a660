//! `tulle-data-plane`: every meshed pod (label `tulle.io/proxied=true`, set by the injector),
//! in all namespaces, has a ready `tulle-proxy` container, and its `tulle.io/proxy-version`
//! annotation matches the control plane's version (a warning otherwise).

use super::{Category, CheckFuture, CheckResult, Ctx, kube_error};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// The label the injector puts on meshed pods.
pub const PROXIED_LABEL: &str = "tulle.io/proxied";
/// The annotation with the injected proxy's version.
pub const PROXY_VERSION_ANNOTATION: &str = "tulle.io/proxy-version";
/// The proxy container (a native sidecar, so among the init containers).
pub const PROXY_CONTAINER: &str = "tulle-proxy";

/// At most this many pods are named in a message.
const SHOWN: usize = 10;

/// `tulle-data-plane`.
pub struct DataPlane;

impl Category for DataPlane {
    fn name(&self) -> &'static str {
        "tulle-data-plane"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            let api: Api<Pod> = Api::all(ctx.client());
            let lp = ListParams::default().labels(&format!("{PROXIED_LABEL}=true"));
            match api.list(&lp).await {
                Ok(list) => data_plane_checks(&list.items, ctx.control_plane_version.as_deref()),
                Err(e) => vec![CheckResult::fail(
                    "data-plane proxies are ready",
                    kube_error(&e),
                    format!(
                        "you need to list pods in all namespaces: `kubectl get pods -A -l {PROXIED_LABEL}=true`"
                    ),
                )],
            }
        })
    }
}

fn pod_name(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

fn shown(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// Whether the pod's proxy container is ready (native sidecar or, for older injections, a
/// regular container).
pub fn proxy_ready(p: &Pod) -> bool {
    let Some(status) = &p.status else {
        return false;
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .any(|c| c.name == PROXY_CONTAINER && c.ready)
}

/// The checks of the category from the meshed pods and the control plane's version.
pub fn data_plane_checks(pods: &[Pod], control_plane_version: Option<&str>) -> Vec<CheckResult> {
    // Pods that are done (Jobs) or going away have no running proxy by design.
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded") | Some("Failed"))
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let name = "data-plane proxies are ready";
    let not_ready: Vec<String> = live
        .iter()
        .filter(|p| !proxy_ready(p))
        .map(|p| pod_name(p))
        .collect();
    let mut out = vec![if not_ready.is_empty() {
        CheckResult::ok(name, format!("{} meshed pod(s)", live.len()))
    } else {
        CheckResult::fail(
            name,
            format!(
                "{} of {} meshed pod(s) have no ready {PROXY_CONTAINER}: {}",
                not_ready.len(),
                live.len(),
                shown(&not_ready)
            ),
            format!(
                "see why: `kubectl -n NAMESPACE describe pod NAME` and `kubectl -n NAMESPACE logs NAME -c {PROXY_CONTAINER}` (or retry with `tulle check --wait 5m`)"
            ),
        )
    }];
    let name = "data-plane proxies are at the control plane's version";
    out.push(match control_plane_version {
        None => CheckResult::warn(
            name,
            "the control plane's version is unknown (no app.kubernetes.io/version label on tulle-controller)",
            "re-apply the install: `tulle install | kubectl apply -f -` with the PKI files in use",
        ),
        Some(v) => {
            let stale: Vec<String> = live
                .iter()
                .filter(|p| {
                    p.metadata.annotations.as_ref().and_then(|a| a.get(PROXY_VERSION_ANNOTATION)).map(String::as_str) != Some(v)
                })
                .map(|p| {
                    let pv = p.metadata.annotations.as_ref().and_then(|a| a.get(PROXY_VERSION_ANNOTATION)).map(String::as_str).unwrap_or("unknown");
                    format!("{} ({pv})", pod_name(p))
                })
                .collect();
            if stale.is_empty() {
                CheckResult::ok(name, v.to_string())
            } else {
                CheckResult::warn(
                    name,
                    format!("{} pod(s) run a proxy other than {v}: {}", stale.len(), shown(&stale)),
                    "restart those workloads so that they get the current proxy: `kubectl -n NAMESPACE rollout restart deploy/NAME`",
                )
            }
        }
    });
    out
}
