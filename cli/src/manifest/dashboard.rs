//! The web dashboard: its ServiceAccount, read-only RBAC, Service (8084) and Deployment in
//! tulle-system (`tulle install --dashboard=false` leaves them out).
//!
//! RBAC: get/list/watch what the pages read (namespaces, pods, services, events, the
//! workloads, the SMI objects), get/list on the SMI Traffic Metrics API (and its `/edges`),
//! and get on exactly the control-plane objects it shows (the trust anchors ConfigMap, the
//! injector webhook configuration, the metrics APIService) — no Secrets, no writes.
//!
//! Meshed: the injector webhook skips the control plane, so the Deployment is injected here,
//! statically, by the code `tulle inject --manual` runs ([`tulle_inject::inject_pod`]), with the
//! install's proxy image, version, log level and trust anchors ([`mesh`]). Its outbound traffic to
//! the API server (443, 6443) and to tulle-identity's admin port (9990) stays out of the proxy
//! (`config.tulle.io/skip-outbound-ports`), so it does not depend on the controller's discovery.

use super::rbac::{named, role_ref, rule, subject};
use super::workloads::{Workload, deployment as control_plane_deployment, port, selector};
use super::{
    CONTROLLER, IDENTITY, NAMESPACE, TRUST_ANCHORS_CONFIGMAP, Values, WEBHOOK_CONFIG, meta, value,
};
use crate::args::IpFamily;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount, ServiceSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use tulle_inject::builders::{container_port, env_field, env_value};

/// Name of the dashboard Deployment, Service and ServiceAccount.
pub const DASHBOARD: &str = "tulle-dashboard";
/// Its HTTP port.
pub const DASHBOARD_PORT: i32 = 8084;
/// The metrics APIService it checks.
const METRICS_APISERVICE: &str = "v1alpha1.metrics.smi-spec.io";
/// The resources of the Traffic Metrics API.
const METRICS_RESOURCES: [&str; 8] = [
    "namespaces",
    "pods",
    "deployments",
    "daemonsets",
    "statefulsets",
    "jobs",
    "trafficsplits",
    "traffictargets",
];

/// The Hosts it answers: itself through a port-forward and its Service's names.
pub fn enforced_host() -> String {
    let ns = NAMESPACE.replace('.', r"\.");
    format!(
        r"^(localhost|127\.0\.0\.1|\[::1\]|{DASHBOARD}|{DASHBOARD}\.{ns}|{DASHBOARD}\.{ns}\.svc|{DASHBOARD}\.{ns}\.svc\.cluster\.local)(:\d+)?$"
    )
}

/// The ServiceAccount.
pub fn service_account(v: &Values) -> Value {
    value(&ServiceAccount {
        metadata: meta(DASHBOARD, true, "dashboard", &v.tag),
        ..Default::default()
    })
}

/// The ClusterRole and its binding (read-only), the Role on the trust anchors and its binding.
pub fn rbac(v: &Values) -> Vec<Value> {
    let ver = &v.tag;
    let read = ["get", "list", "watch"];
    let mut metrics: Vec<String> = METRICS_RESOURCES.iter().map(|r| r.to_string()).collect();
    metrics.extend(
        METRICS_RESOURCES
            .iter()
            .filter(|r| !r.starts_with("traffic"))
            .map(|r| format!("{r}/edges")),
    );
    let metrics: Vec<&str> = metrics.iter().map(String::as_str).collect();
    let rules = vec![
        rule(&[""], &["namespaces", "pods", "services", "events"], &read),
        rule(
            &["apps"],
            &["deployments", "statefulsets", "daemonsets"],
            &read,
        ),
        rule(&["split.smi-spec.io"], &["trafficsplits"], &read),
        rule(&["access.smi-spec.io"], &["traffictargets"], &read),
        rule(
            &["specs.smi-spec.io"],
            &["httproutegroups", "tcproutes", "udproutes"],
            &read,
        ),
        rule(&["metrics.smi-spec.io"], &metrics, &["get", "list"]),
        named(
            rule(
                &["admissionregistration.k8s.io"],
                &["mutatingwebhookconfigurations"],
                &["get"],
            ),
            &[WEBHOOK_CONFIG],
        ),
        named(
            rule(&["apiregistration.k8s.io"], &["apiservices"], &["get"]),
            &[METRICS_APISERVICE],
        ),
    ];
    vec![
        value(&ClusterRole {
            metadata: meta(DASHBOARD, false, "dashboard", ver),
            rules: Some(rules),
            ..Default::default()
        }),
        value(&ClusterRoleBinding {
            metadata: meta(DASHBOARD, false, "dashboard", ver),
            role_ref: role_ref("ClusterRole", DASHBOARD),
            subjects: Some(subject(DASHBOARD)),
        }),
        value(&Role {
            metadata: meta(DASHBOARD, true, "dashboard", ver),
            rules: Some(vec![named(
                rule(&[""], &["configmaps"], &["get"]),
                &[TRUST_ANCHORS_CONFIGMAP],
            )]),
        }),
        value(&RoleBinding {
            metadata: meta(DASHBOARD, true, "dashboard", ver),
            role_ref: role_ref("Role", DASHBOARD),
            subjects: Some(subject(DASHBOARD)),
        }),
    ]
}

/// The Service (port 8084).
pub fn service(v: &Values) -> Value {
    value(&Service {
        metadata: meta(DASHBOARD, true, "dashboard", &v.tag),
        spec: Some(ServiceSpec {
            selector: Some(selector("dashboard")),
            ports: Some(vec![port("http", DASHBOARD_PORT, DASHBOARD_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Outbound ports the dashboard's proxy does not intercept: the API server (the `kubernetes`
/// Service's 443, its endpoints' 6443) and tulle-identity's admin port (its `/metrics`, asked
/// of each identity pod by IP), none of them meshed.
pub const SKIP_OUTBOUND_PORTS: &str = "443,6443,9990";

/// The Deployment: non-root, read-only root filesystem, probes on its own port; meshed with the
/// trust anchors `anchors_pem` ([`mesh`]).
pub fn deployment(v: &Values, anchors_pem: &str) -> Value {
    let mut d = plain_deployment(v);
    mesh(v, &mut d, anchors_pem);
    value(&d)
}

/// The injector configuration a webhook of this install uses (the controller's flags).
pub fn inject_config(v: &Values) -> tulle_inject::Config {
    let id = |sa: &str| tulle_api::ServiceAccountIdentity::new(sa, NAMESPACE, &v.trust_domain);
    tulle_inject::Config {
        proxy_image: v.image("proxy"),
        proxy_version: v.tag.clone(),
        trust_domain: v.trust_domain.clone(),
        identity_addr: format!("{IDENTITY}.{NAMESPACE}.svc.cluster.local:8080"),
        identity_name: id(IDENTITY).dns_name(),
        destination_addr: format!("{CONTROLLER}.{NAMESPACE}.svc.cluster.local:8086"),
        destination_name: id(CONTROLLER).dns_name(),
        policy_addr: format!("{CONTROLLER}.{NAMESPACE}.svc.cluster.local:8090"),
        policy_name: id(CONTROLLER).dns_name(),
        log_level: v.proxy_log_level.clone(),
        resources: tulle_inject::Resources::default(),
        allowed_images: v.allowed_proxy_images.clone(),
        ipv6: v.ip_families.contains(&IpFamily::Ipv6),
    }
}

/// Injects the proxy into the Deployment's pod template, as `tulle inject --manual` would (the
/// template annotated `tulle.io/inject: enabled` and the skipped outbound ports, and labelled
/// with its workload as the webhook labels pods). Where the injector refuses (with
/// `--ip-families` including IPv6, which the proxy does not intercept), the dashboard stays
/// unmeshed, as every IPv6 pod.
pub fn mesh(v: &Values, d: &mut Deployment, anchors_pem: &str) {
    let Some(template) = d.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    let mut metadata = template.metadata.clone().unwrap_or_default();
    let annotations = metadata.annotations.get_or_insert_default();
    annotations.insert(tulle_inject::INJECT_ANNOTATION.into(), "enabled".into());
    annotations.insert(
        "config.tulle.io/skip-outbound-ports".into(),
        SKIP_OUTBOUND_PORTS.into(),
    );
    metadata.labels.get_or_insert_default().insert(
        format!("{}deployment", tulle_inject::OWNER_LABEL_PREFIX),
        DASHBOARD.into(),
    );
    let pod = Pod {
        metadata,
        spec: template.spec.clone(),
        ..Default::default()
    };
    let ns = tulle_inject::Namespace {
        name: NAMESPACE.into(),
        ..Default::default()
    };
    if let Ok(injected) = tulle_inject::inject_pod(&pod, &ns, &inject_config(v), anchors_pem) {
        template.metadata = Some(injected.metadata);
        template.spec = injected.spec;
    }
}

/// The Deployment before injection.
fn plain_deployment(v: &Values) -> Deployment {
    control_plane_deployment(
        v,
        Workload {
            name: DASHBOARD,
            component: "dashboard",
            replicas: 1,
            env: vec![
                env_value("TULLE_DASHBOARD_ADDR", format!("0.0.0.0:{DASHBOARD_PORT}")),
                env_field(
                    "TULLE_DASHBOARD_CONTROL_PLANE_NAMESPACE",
                    "metadata.namespace",
                ),
                env_value("TULLE_DASHBOARD_ENFORCED_HOST", enforced_host()),
            ],
            ports: vec![container_port("http", DASHBOARD_PORT)],
            mounts: Vec::new(),
            volumes: Vec::new(),
            requests: ("10m", "32Mi"),
            memory_limit: "128Mi",
            probes: (DASHBOARD_PORT, "/ready"),
        },
    )
}
