//! `tulle-existence`: the SMI CRDs are established, `tulle-system` exists, and the
//! control-plane Deployments have all their replicas ready (the dashboard's when it is
//! installed; an explicit "not installed" line when it was left out). Also records the control plane's
//! version for `tulle-data-plane` and `tulle-version`.

use super::{Category, CheckFuture, CheckResult, Ctx, kube_error};
use crate::manifest::{self, CONTROLLER, DASHBOARD, IDENTITY, NAMESPACE};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Namespace, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::api::Api;

const INSTALL: &str = "install tulle: `tulle install | kubectl apply -f -`";

/// `tulle-existence`.
pub struct Existence;

impl Category for Existence {
    fn name(&self) -> &'static str {
        "tulle-existence"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            let client = ctx.client();
            let mut out = vec![crds_established(&client).await];
            let ns = namespace(&client).await;
            let missing = ns.status == super::Status::Fail;
            out.push(ns);
            if missing {
                return out;
            }
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
            for name in [IDENTITY, CONTROLLER] {
                let d = deployments.get_opt(name).await;
                if name == CONTROLLER
                    && let Ok(Some(d)) = &d
                {
                    ctx.control_plane_version = d
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("app.kubernetes.io/version"))
                        .cloned();
                }
                out.push(deployment_ready(name, d));
            }
            let d = deployments.get_opt(DASHBOARD).await;
            let account = match &d {
                Ok(None) => Api::<ServiceAccount>::namespaced(client, NAMESPACE)
                    .get_opt(DASHBOARD)
                    .await
                    .map(|a| a.is_some()),
                _ => Ok(true),
            };
            out.push(dashboard_check(d, account));
            out
        })
    }
}

async fn crds_established(client: &kube::Client) -> CheckResult {
    let name = "SMI CRDs are installed and established";
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut problems = Vec::new();
    for crd_name in manifest::crd_names() {
        match api.get_opt(&crd_name).await {
            Ok(Some(crd)) => {
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if !established {
                    problems.push(format!("{crd_name} is not established yet"));
                }
            }
            Ok(None) => problems.push(format!("{crd_name} is missing")),
            Err(e) => problems.push(format!("{crd_name}: {}", kube_error(&e))),
        }
    }
    if problems.is_empty() {
        CheckResult::ok(name, "")
    } else {
        CheckResult::fail(
            name,
            problems.join("\n"),
            format!("{INSTALL}; a CRD that stays not established: `kubectl describe crd NAME`"),
        )
    }
}

async fn namespace(client: &kube::Client) -> CheckResult {
    namespace_check(
        Api::<Namespace>::all(client.clone())
            .get_opt(NAMESPACE)
            .await,
    )
}

/// `control plane namespace tulle-system exists` (and is not being deleted); fatal.
pub fn namespace_check(ns: Result<Option<Namespace>, kube::Error>) -> CheckResult {
    let name = format!("control plane namespace {NAMESPACE} exists");
    match ns {
        Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_some() => CheckResult::fail(
            name,
            format!("namespace {NAMESPACE} is being deleted"),
            format!("wait until `kubectl get namespace {NAMESPACE}` finds nothing, then {INSTALL}"),
        )
        .fatal(),
        Ok(Some(_)) => CheckResult::ok(name, ""),
        Ok(None) => {
            CheckResult::fail(name, format!("namespace {NAMESPACE} not found"), INSTALL).fatal()
        }
        Err(e) => CheckResult::fail(
            name,
            kube_error(&e),
            "you need to read namespaces: `kubectl get namespace tulle-system`",
        )
        .fatal(),
    }
}

/// `<name> Deployment is ready`: every desired replica updated, available and ready.
pub fn deployment_ready(name: &str, d: Result<Option<Deployment>, kube::Error>) -> CheckResult {
    let check = format!("{name} Deployment is ready");
    let d = match d {
        Ok(Some(d)) => d,
        Ok(None) => {
            return CheckResult::fail(
                check,
                format!("deployment {NAMESPACE}/{name} not found"),
                INSTALL,
            );
        }
        Err(e) => {
            return CheckResult::fail(
                check,
                kube_error(&e),
                format!("kubectl -n {NAMESPACE} get deployment {name}"),
            );
        }
    };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    if ready >= want && updated >= want {
        CheckResult::ok(check, format!("{ready}/{want} replicas ready"))
    } else {
        CheckResult::fail(
            check,
            format!("{ready}/{want} replicas ready, {updated}/{want} up to date"),
            format!(
                "see why the pods are not ready: `kubectl -n {NAMESPACE} describe pods -l \
                 {}={}` (or retry with `tulle check --wait 5m`)",
                manifest::CONTROL_PLANE_COMPONENT_LABEL,
                name.trim_start_matches("tulle-")
            ),
        )
    }
}

/// The dashboard: `tulle-dashboard Deployment is ready` when it is installed. When its
/// Deployment is absent, its ServiceAccount tells a dashboard left out at install
/// (`--dashboard=false`: an explicit ok line saying so) from one whose Deployment was deleted
/// (a failure). `account`: whether the ServiceAccount exists (asked only when the Deployment
/// is absent).
pub fn dashboard_check(
    d: Result<Option<Deployment>, kube::Error>,
    account: Result<bool, kube::Error>,
) -> CheckResult {
    if let Ok(None) = d {
        return match account {
            Ok(false) => CheckResult::ok(
                format!("{DASHBOARD} is not installed"),
                "left out with `tulle install --dashboard=false`: not checked",
            ),
            Ok(true) => CheckResult::fail(
                format!("{DASHBOARD} Deployment is ready"),
                format!(
                    "deployment {NAMESPACE}/{DASHBOARD} not found, but its ServiceAccount is there: it was installed and the Deployment deleted"
                ),
                "reinstall it: `tulle install | kubectl apply -f -` (or remove the rest of it: `kubectl -n tulle-system delete serviceaccount,service tulle-dashboard` and `kubectl delete clusterrole,clusterrolebinding tulle-dashboard`)",
            ),
            Err(e) => CheckResult::fail(
                format!("{DASHBOARD} Deployment is ready"),
                kube_error(&e),
                format!("kubectl -n {NAMESPACE} get deployment,serviceaccount {DASHBOARD}"),
            ),
        };
    }
    let mut r = deployment_ready(DASHBOARD, d);
    if r.status == super::Status::Fail {
        r.hint = Some(format!(
            "see why its pods are not ready: `kubectl -n {NAMESPACE} describe pods -l {}=dashboard` and `kubectl -n {NAMESPACE} logs deploy/{DASHBOARD}`; `tulle dashboard` needs it (or retry with `tulle check --wait 5m`)",
            manifest::CONTROL_PLANE_COMPONENT_LABEL
        ));
    }
    r
}
