//! `pre-kubernetes-setup` (`tulle check --pre`): the user may create what `tulle install`
//! creates, `tulle-system` does not exist yet (or is empty), and no other mesh's SMI CRDs
//! would clash with tulle's.

use super::{Category, CheckFuture, CheckResult, Ctx, kube_error};
use crate::manifest::{self, NAMESPACE};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        },
        core::v1::{Namespace, Pod},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::api::{Api, ListParams, PostParams};
use std::collections::BTreeSet;

/// The kinds `tulle install` creates: (API group, resource, namespaced, shown name).
pub const KINDS: &[(&str, &str, bool, &str)] = &[
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        false,
        "CustomResourceDefinitions",
    ),
    ("", "namespaces", false, "Namespaces"),
    (
        "rbac.authorization.k8s.io",
        "clusterroles",
        false,
        "ClusterRoles",
    ),
    (
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        false,
        "ClusterRoleBindings",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        false,
        "MutatingWebhookConfigurations",
    ),
    (
        "apiregistration.k8s.io",
        "apiservices",
        false,
        "APIServices",
    ),
    ("", "serviceaccounts", true, "ServiceAccounts"),
    ("rbac.authorization.k8s.io", "roles", true, "Roles"),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        true,
        "RoleBindings",
    ),
    ("", "secrets", true, "Secrets"),
    ("", "configmaps", true, "ConfigMaps"),
    ("", "services", true, "Services"),
    ("apps", "deployments", true, "Deployments"),
];

/// `pre-kubernetes-setup`.
pub struct Setup;

impl Category for Setup {
    fn name(&self) -> &'static str {
        "pre-kubernetes-setup"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            let client = ctx.client();
            let mut out = Vec::new();
            for &(group, resource, namespaced, shown) in KINDS {
                out.push(can_create(&client, group, resource, namespaced, shown).await);
            }
            out.push(namespace_free(&client).await);
            out.push(smi_crds(&client).await);
            out
        })
    }
}

/// `can create <Kind>`: a SelfSubjectAccessReview for `create`.
pub async fn can_create(
    client: &kube::Client,
    group: &str,
    resource: &str,
    namespaced: bool,
    shown: &str,
) -> CheckResult {
    let name = if namespaced {
        format!("can create {shown} in {NAMESPACE}")
    } else {
        format!("can create {shown}")
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                verb: Some("create".into()),
                namespace: namespaced.then(|| NAMESPACE.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => match r.status {
            Some(s) if s.allowed => CheckResult::ok(name, ""),
            s => CheckResult::fail(
                name,
                format!(
                    "not allowed{}",
                    s.and_then(|s| s.reason)
                        .filter(|r| !r.is_empty())
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                format!(
                    "run the install as a cluster admin (`kubectl auth can-i create {resource}` must say yes)"
                ),
            ),
        },
        Err(e) => CheckResult::fail(
            name,
            kube_error(&e),
            "the API server must answer SelfSubjectAccessReviews: check `kubectl auth can-i create namespaces`",
        ),
    }
}

async fn namespace_free(client: &kube::Client) -> CheckResult {
    let name = format!("control plane namespace {NAMESPACE} does not exist yet");
    let hint = "tulle seems installed already: run `tulle check`, or remove it with \
                `tulle uninstall | kubectl delete --ignore-not-found -f -`";
    let ns: Api<Namespace> = Api::all(client.clone());
    match ns.get_opt(NAMESPACE).await {
        Ok(None) => CheckResult::ok(name, ""),
        Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_some() => CheckResult::fail(
            name,
            format!("namespace {NAMESPACE} is being deleted"),
            format!(
                "wait until `kubectl get namespace {NAMESPACE}` finds nothing (or use `tulle check --pre --wait 2m`)"
            ),
        ),
        Ok(Some(_)) => {
            let lp = ListParams::default().limit(1);
            let deployments = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
                .list(&lp)
                .await;
            let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE)
                .list(&lp)
                .await;
            match (deployments, pods) {
                (Ok(d), Ok(p)) if d.items.is_empty() && p.items.is_empty() => {
                    CheckResult::ok(name, "it exists but holds no Deployments or Pods")
                }
                (Ok(_), Ok(_)) => CheckResult::fail(
                    name,
                    format!("namespace {NAMESPACE} exists and holds Deployments or Pods"),
                    hint,
                ),
                (Err(e), _) | (_, Err(e)) => CheckResult::fail(name, kube_error(&e), hint),
            }
        }
        Err(e) => CheckResult::fail(
            name,
            kube_error(&e),
            "you need to read namespaces: `kubectl get namespace tulle-system`",
        ),
    }
}

/// The versions a CRD serves and has stored.
fn versions(crd: &CustomResourceDefinition) -> (BTreeSet<String>, BTreeSet<String>) {
    let served = crd
        .spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| v.name.clone())
        .collect();
    let stored = crd
        .status
        .as_ref()
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    (served, stored)
}

/// Whether an existing SMI CRD clashes with tulle's definition of it: `None` when it is
/// absent, tulle's own, or compatible; else why.
pub fn smi_conflict(
    ours: &CustomResourceDefinition,
    theirs: &CustomResourceDefinition,
) -> Option<String> {
    let labels = theirs.metadata.labels.clone().unwrap_or_default();
    if labels.get("app.kubernetes.io/part-of").map(String::as_str) == Some("tulle") {
        return None;
    }
    let (our_served, _) = versions(ours);
    let (their_served, their_stored) = versions(theirs);
    let lost: Vec<_> = their_stored
        .union(&their_served)
        .filter(|v| !our_served.contains(*v))
        .cloned()
        .collect();
    if lost.is_empty() {
        return None;
    }
    Some(format!(
        "{} from another install serves or stores {}, which tulle does not serve (tulle serves {})",
        ours.metadata.name.as_deref().unwrap_or_default(),
        lost.join(", "),
        our_served.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

async fn smi_crds(client: &kube::Client) -> CheckResult {
    let name = "no incompatible SMI CRDs from another mesh";
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut problems = Vec::new();
    for ours in manifest::crds(env!("CARGO_PKG_VERSION")) {
        let crd_name = ours.metadata.name.clone().unwrap_or_default();
        match api.get_opt(&crd_name).await {
            Ok(Some(theirs)) => problems.extend(smi_conflict(&ours, &theirs)),
            Ok(None) => {}
            Err(e) => problems.push(format!("{crd_name}: {}", kube_error(&e))),
        }
    }
    if problems.is_empty() {
        CheckResult::ok(name, "")
    } else {
        CheckResult::warn(
            name,
            problems.join("\n"),
            "applying tulle's CRDs replaces these definitions and may break the other mesh \
             (or be rejected for stored versions): remove the other mesh first, or migrate its \
             SMI objects",
        )
    }
}
