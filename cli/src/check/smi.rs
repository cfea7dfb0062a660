//! `tulle-smi`: the SMI CRDs are installed and serve the versions tulle serves; the
//! TrafficSplit conversion webhook has a caBundle and answers (a server-side dry-run create of
//! a v1alpha1 TrafficSplit in tulle-system, whose `500m` weight must come back as `500m`);
//! the Warning Events tulle-controller put on SMI objects (missing backends, port
//! mismatches, duplicate apexes, TrafficTargets referencing missing routes, ...) are listed as
//! warnings, not failures; UDPRoutes are reported as not enforced (the proxy does not
//! carry UDP); and the SMI Traffic Metrics APIService is Available ([`metrics_api`]).

pub mod metrics_api;

use super::{Category, CheckFuture, CheckResult, Ctx, kube_error};
use crate::manifest::{self, CONTROLLER, NAMESPACE};
use k8s_openapi::{
    api::core::v1::Event,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    api::{Api, ListParams, PostParams},
    core::{ApiResource, DynamicObject, GroupVersionKind},
};
use serde_json::json;
use std::{
    collections::{BTreeMap, HashSet},
    time::SystemTime,
};

/// The CRD whose conversion webhook is checked (also with a dry run).
pub const TRAFFIC_SPLITS: &str = "trafficsplits.split.smi-spec.io";
/// The other CRD converted by the controller's webhook (v1alpha2 ↔ v1alpha3).
pub const TRAFFIC_TARGETS: &str = "traffictargets.access.smi-spec.io";
/// The SMI kinds tulle-controller reports Events on.
const KINDS: [&str; 5] = [
    "TrafficSplit",
    "TrafficTarget",
    "HTTPRouteGroup",
    "TCPRoute",
    "UDPRoute",
];
/// At most this many Events are listed.
const MAX_WARNINGS: usize = 20;

const INSTALL: &str = "install (or re-apply) tulle's CRDs: `tulle install | kubectl apply -f -` or `helm upgrade tulle-crds charts/tulle-crds`";

/// `tulle-smi`.
pub struct Smi;

impl Category for Smi {
    fn name(&self) -> &'static str {
        "tulle-smi"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> CheckFuture<'a> {
        Box::pin(async move {
            let client = ctx.client();
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            let mut found = Vec::new();
            for want in manifest::crds(env!("CARGO_PKG_VERSION")) {
                let name = want.metadata.name.clone().unwrap_or_default();
                let got = crds.get_opt(&name).await;
                found.push((want, got));
            }
            let live = |name: &str| {
                found.iter().find_map(|(w, got)| match got {
                    Ok(Some(c)) if w.metadata.name.as_deref() == Some(name) => Some(c.clone()),
                    _ => None,
                })
            };
            let (ts, tt) = (live(TRAFFIC_SPLITS), live(TRAFFIC_TARGETS));
            let mut out = vec![crd_check(found)];
            out.push(ca_bundle_check(ts.as_ref()));
            out.push(ca_bundle_check_of(
                TRAFFIC_TARGETS,
                "TrafficTarget",
                "v1alpha2",
                tt.as_ref(),
            ));
            out.push(dry_run_check(dry_run(&client).await));
            out.push(metrics_api::check(&client).await);
            let events = Api::<Event>::all(client.clone())
                .list(&ListParams::default().fields("type=Warning"))
                .await;
            let (live, udp_routes) = live_uids(&client).await;
            out.push(udp_check(udp_routes));
            out.extend(warning_checks(events.map(|l| l.items), live, super::now()));
            out
        })
    }
}

/// The SMI CRDs exist and serve (at least) the versions of tulle's definitions.
pub fn crd_check(
    found: Vec<(
        CustomResourceDefinition,
        Result<Option<CustomResourceDefinition>, kube::Error>,
    )>,
) -> CheckResult {
    let name = "SMI CRDs are installed and serve the expected versions";
    let mut problems = Vec::new();
    for (want, got) in found {
        let crd = want.metadata.name.clone().unwrap_or_default();
        match got {
            Ok(Some(c)) => {
                let served: HashSet<String> = c
                    .spec
                    .versions
                    .iter()
                    .filter(|v| v.served)
                    .map(|v| v.name.clone())
                    .collect();
                let missing: Vec<String> = want
                    .spec
                    .versions
                    .iter()
                    .map(|v| v.name.clone())
                    .filter(|v| !served.contains(v))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!("{crd} does not serve {}", missing.join(", ")));
                }
            }
            Ok(None) => problems.push(format!("{crd} not found")),
            Err(e) => problems.push(format!("{crd}: {}", kube_error(&e))),
        }
    }
    if problems.is_empty() {
        CheckResult::ok(name, "")
    } else {
        CheckResult::fail(name, problems.join("; "), INSTALL)
    }
}

fn restart_hint() -> String {
    restart_hint_of(TRAFFIC_SPLITS)
}

fn restart_hint_of(crd: &str) -> String {
    format!(
        "the controller patches the caBundle of {crd} (RBAC get/patch on that CRD): check its logs (`kubectl -n {NAMESPACE} logs deploy/{CONTROLLER}`)"
    )
}

/// The trafficsplits CRD converts with the controller's webhook and has its caBundle.
pub fn ca_bundle_check(crd: Option<&CustomResourceDefinition>) -> CheckResult {
    ca_bundle_check_of(TRAFFIC_SPLITS, "TrafficSplit", "v1alpha1", crd)
}

/// CRD `crd_name` (of `kind`, whose `old` version needs conversion) converts with the
/// controller's webhook and has its caBundle.
pub fn ca_bundle_check_of(
    crd_name: &str,
    kind: &str,
    old: &str,
    crd: Option<&CustomResourceDefinition>,
) -> CheckResult {
    let name = format!("{kind} conversion webhook is configured with a caBundle");
    let Some(crd) = crd else {
        return CheckResult::fail(name, format!("{crd_name} not found"), INSTALL);
    };
    let conv = crd.spec.conversion.as_ref();
    if conv.map(|c| c.strategy.as_str()) != Some("Webhook") {
        return CheckResult::fail(
            name,
            format!(
                "{crd_name} has no conversion webhook (another install's CRD?): {old} {kind}s cannot be served"
            ),
            INSTALL,
        );
    }
    let has_bundle = conv
        .and_then(|c| c.webhook.as_ref())
        .and_then(|w| w.client_config.as_ref())
        .and_then(|c| c.ca_bundle.as_ref())
        .is_some_and(|b| !b.0.is_empty());
    if has_bundle {
        CheckResult::ok(name, "")
    } else {
        CheckResult::fail(
            name,
            "the conversion webhook has no caBundle yet: the API server cannot call it",
            restart_hint_of(crd_name),
        )
    }
}

/// The v1alpha1 TrafficSplit of the dry run.
pub fn probe() -> DynamicObject {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("split.smi-spec.io", "v1alpha1", "TrafficSplit"),
        "trafficsplits",
    );
    let mut obj = DynamicObject::new("", &ar).within(NAMESPACE);
    obj.metadata.name = None;
    obj.metadata.generate_name = Some("tulle-check-".into());
    obj.data = json!({"spec": {"service": "tulle-check", "backends": [
        {"service": "tulle-check-a", "weight": "500m"}, {"service": "tulle-check-b", "weight": "1000m"}]}});
    obj
}

async fn dry_run(client: &kube::Client) -> Result<DynamicObject, kube::Error> {
    let p = probe();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("split.smi-spec.io", "v1alpha1", "TrafficSplit"),
        "trafficsplits",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &ar);
    let params = PostParams {
        dry_run: true,
        field_manager: Some("tulle-check".into()),
    };
    api.create(&params, &p).await
}

/// The dry-run create of a v1alpha1 TrafficSplit went through the conversion webhook both
/// ways (v1alpha1 → v1alpha4 storage → v1alpha1 answer) and kept the weights: `1000m` comes
/// back as `1` (whole units go down as integers), which only the webhook does.
pub fn dry_run_check(r: Result<DynamicObject, kube::Error>) -> CheckResult {
    let name =
        "TrafficSplit conversion webhook answers (dry-run create of a v1alpha1 TrafficSplit)";
    match r {
        Ok(o) => {
            let w = |i: usize| o.data["spec"]["backends"][i]["weight"].clone();
            if w(0) == json!("500m") && w(1) == json!("1") {
                CheckResult::ok(name, "")
            } else {
                CheckResult::fail(
                    name,
                    format!(
                        "weights 500m and 1000m came back as {} and {} (expected 500m and 1)",
                        w(0),
                        w(1)
                    ),
                    restart_hint(),
                )
            }
        }
        Err(e) => CheckResult::fail(name, kube_error(&e), restart_hint()),
    }
}

/// The uids of every SMI object (None when one kind cannot be listed), and the number of
/// UDPRoutes (None when they cannot be listed).
async fn live_uids(client: &kube::Client) -> (Option<HashSet<String>>, Option<usize>) {
    let mut out = Some(HashSet::new());
    let mut udp = None;
    for (group, version, kind, plural) in [
        (
            "split.smi-spec.io",
            "v1alpha4",
            "TrafficSplit",
            "trafficsplits",
        ),
        (
            "access.smi-spec.io",
            "v1alpha3",
            "TrafficTarget",
            "traffictargets",
        ),
        (
            "specs.smi-spec.io",
            "v1alpha4",
            "HTTPRouteGroup",
            "httproutegroups",
        ),
        ("specs.smi-spec.io", "v1alpha4", "TCPRoute", "tcproutes"),
        ("specs.smi-spec.io", "v1alpha4", "UDPRoute", "udproutes"),
    ] {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                if kind == "UDPRoute" {
                    udp = Some(list.items.len());
                }
                if let Some(o) = out.as_mut() {
                    o.extend(list.items.into_iter().filter_map(|o| o.metadata.uid));
                }
            }
            Err(_) => out = None,
        }
    }
    (out, udp)
}

/// UDPRoutes are accepted but not enforced: a warning when some exist.
pub fn udp_check(count: Option<usize>) -> CheckResult {
    let name = "UDPRoutes are not enforced";
    let why = "the proxy does not carry UDP: UDP traffic is neither authorized nor blocked by the mesh (a TrafficTarget's UDPRoute ports are admitted for TCP)";
    match count {
        Some(0) | None => CheckResult::ok(name, format!("none in use; {why}")),
        Some(n) => CheckResult::warn(
            name,
            format!("{n} UDPRoute(s) exist; {why}"),
            "restrict UDP with a Kubernetes NetworkPolicy",
        ),
    }
}

fn event_time(e: &Event) -> Option<i64> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0.as_second()))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.as_second()))
        .or_else(|| e.event_time.as_ref().map(|t| t.0.as_second()))
}

/// The latest Warning Event of tulle-controller per SMI object and reason (only objects that
/// still exist, when `live` is known), as warnings.
pub fn warning_checks(
    events: Result<Vec<Event>, kube::Error>,
    live: Option<HashSet<String>>,
    now: SystemTime,
) -> Vec<CheckResult> {
    let name = "no Warning Events on SMI objects";
    let events = match events {
        Ok(e) => e,
        Err(e) => {
            return vec![CheckResult::warn(
                name,
                format!("cannot list Events: {}", kube_error(&e)),
                "kubectl get events -A --field-selector type=Warning",
            )];
        }
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let mut latest: BTreeMap<(String, String, String, String), (i64, String)> = BTreeMap::new();
    for e in events {
        let o = &e.involved_object;
        let kind = o.kind.clone().unwrap_or_default();
        if e.reporting_component.as_deref() != Some(CONTROLLER) || !KINDS.contains(&kind.as_str()) {
            continue;
        }
        if let (Some(live), Some(uid)) = (&live, &o.uid)
            && !live.contains(uid)
        {
            continue;
        }
        let key = (
            kind,
            o.namespace.clone().unwrap_or_default(),
            o.name.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
        );
        let t = event_time(&e).unwrap_or_default();
        let msg = e.message.clone().unwrap_or_default();
        if latest.get(&key).is_none_or(|(old, _)| *old <= t) {
            latest.insert(key, (t, msg));
        }
    }
    if latest.is_empty() {
        return vec![CheckResult::ok(name, "")];
    }
    let total = latest.len();
    let mut out: Vec<CheckResult> = latest
        .into_iter()
        .take(MAX_WARNINGS)
        .map(|((kind, ns, obj, reason), (t, msg))| {
            let age = (now - t).max(0);
            let age = if age >= 3600 {
                format!("{}h", age / 3600)
            } else if age >= 60 {
                format!("{}m", age / 60)
            } else {
                format!("{age}s")
            };
            CheckResult::warn(
                format!("{kind} {ns}/{obj}: {reason}"),
                format!("{msg} ({age} ago)"),
                format!(
                    "kubectl -n {ns} describe {} {obj}",
                    kind.to_ascii_lowercase()
                ),
            )
        })
        .collect();
    if total > MAX_WARNINGS {
        out.push(CheckResult::warn(
            "more Warning Events on SMI objects",
            format!("{} more not shown", total - MAX_WARNINGS),
            "kubectl get events -A --field-selector type=Warning,reportingComponent=tulle-controller",
        ));
    }
    out
}

#[cfg(test)]
mod tests;
