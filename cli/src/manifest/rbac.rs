//! Least-privilege RBAC of the control plane.
//!
//! - identity: create TokenReviews (to check proxies' tokens); create/patch Events.
//! - controller: list/watch what discovery and policy index (Services, EndpointSlices, Pods,
//!   Namespaces for the inject and policy annotations, the SMI resources), exactly the
//!   watches of `controller/src/k8s` and no more (get only on Namespaces, which the injector
//!   reads); get/patch only the
//!   injector webhook configuration (to keep its caBundle current) and the CRDs it converts
//!   (trafficsplits: the conversion webhook's caBundle); create/patch Events; and,
//!   in tulle-system only, the Secret that persists the webhook serving certificate.
//! - controller, for the SMI Traffic Metrics API it serves: list the workloads it reports
//!   on (Deployments, DaemonSets, StatefulSets, Jobs), create SubjectAccessReviews (to
//!   authorize its callers), get/patch only its own APIService (the caBundle), and read
//!   `kube-system/extension-apiserver-authentication` (the front-proxy CA: the built-in Role
//!   every aggregated API server is bound to).

use super::{
    CONTROLLER, IDENTITY, METRICS_API_SERVICE, NAMESPACE, TRUST_ANCHORS_CONFIGMAP, Values,
    WEBHOOK_CONFIG, meta, value,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

/// The Secret the controller may keep its webhook serving certificate in.
pub const WEBHOOK_TLS_SECRET: &str = "tulle-webhook-tls";
/// The RoleBinding (in kube-system) of the controller to `extension-apiserver-authentication-reader`.
pub const AUTH_READER_BINDING: &str = "tulle-controller-auth-reader";

pub(super) fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |xs: &[&str]| Some(xs.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        api_groups: v(groups),
        resources: v(resources),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub(super) fn named(mut r: PolicyRule, names: &[&str]) -> PolicyRule {
    r.resource_names = Some(names.iter().map(|s| s.to_string()).collect());
    r
}

fn events() -> [PolicyRule; 2] {
    [
        rule(&[""], &["events"], &["create", "patch"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

pub(super) fn subject(sa: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: sa.into(),
        namespace: Some(NAMESPACE.into()),
        ..Default::default()
    }]
}

pub(super) fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

/// ClusterRoles, ClusterRoleBindings, the Role and the RoleBinding.
pub fn objects(v: &Values) -> Vec<Value> {
    let ver = &v.tag;
    let mut identity_rules = vec![rule(
        &["authentication.k8s.io"],
        &["tokenreviews"],
        &["create"],
    )];
    identity_rules.extend(events());

    let mut controller_rules = vec![
        // Watched by controller/src/k8s (spawn_watches); nothing gets a single Service or
        // Pod, so no `get` (issue 15 item 8: no verb nothing uses).
        rule(&[""], &["services", "pods"], &["list", "watch"]),
        // Watched, and got by the injector (the namespace of the pod being admitted).
        rule(&[""], &["namespaces"], &["get", "list", "watch"]),
        // controller/src/k8s/trust_anchors.rs: the trust anchors read from the control
        // plane's namespace and copied into every namespace, by that one name; create
        // (which RBAC cannot limit by name) for a namespace's first copy.
        named(
            rule(&[""], &["configmaps"], &["get", "list", "watch", "patch"]),
            &[TRUST_ANCHORS_CONFIGMAP],
        ),
        rule(&[""], &["configmaps"], &["create"]),
        rule(
            &["discovery.k8s.io"],
            &["endpointslices"],
            &["list", "watch"],
        ),
        rule(
            &["split.smi-spec.io"],
            &["trafficsplits"],
            &["list", "watch"],
        ),
        rule(
            &["access.smi-spec.io"],
            &["traffictargets"],
            &["list", "watch"],
        ),
        rule(
            &["specs.smi-spec.io"],
            &["httproutegroups", "tcproutes", "udproutes"],
            &["list", "watch"],
        ),
        named(
            rule(
                &["admissionregistration.k8s.io"],
                &["mutatingwebhookconfigurations"],
                &["get", "patch", "list", "watch"],
            ),
            &[WEBHOOK_CONFIG],
        ),
        {
            let crds = super::conversion_crd_names();
            named(
                rule(
                    &["apiextensions.k8s.io"],
                    &["customresourcedefinitions"],
                    &["get", "patch"],
                ),
                &crds.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        },
        rule(
            &["apps"],
            &["deployments", "daemonsets", "statefulsets"],
            &["list"],
        ),
        rule(&["batch"], &["jobs"], &["list"]),
        rule(
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
            &["create"],
        ),
        named(
            rule(
                &["apiregistration.k8s.io"],
                &["apiservices"],
                &["get", "patch"],
            ),
            &[METRICS_API_SERVICE],
        ),
    ];
    controller_rules.extend(events());

    let cluster_role = |name: &str, component: &str, rules: Vec<PolicyRule>| ClusterRole {
        metadata: meta(name, false, component, ver),
        rules: Some(rules),
        ..Default::default()
    };
    let cluster_binding = |name: &str, component: &str| ClusterRoleBinding {
        metadata: meta(name, false, component, ver),
        role_ref: role_ref("ClusterRole", name),
        subjects: Some(subject(name)),
    };

    vec![
        value(&cluster_role(IDENTITY, "identity", identity_rules)),
        value(&cluster_binding(IDENTITY, "identity")),
        value(&cluster_role(CONTROLLER, "controller", controller_rules)),
        value(&cluster_binding(CONTROLLER, "controller")),
        value(&Role {
            metadata: meta(CONTROLLER, true, "controller", ver),
            rules: Some(vec![
                rule(&[""], &["secrets"], &["create"]),
                named(
                    rule(&[""], &["secrets"], &["get", "update", "patch"]),
                    &[WEBHOOK_TLS_SECRET],
                ),
            ]),
        }),
        value(&RoleBinding {
            metadata: meta(CONTROLLER, true, "controller", ver),
            role_ref: role_ref("Role", CONTROLLER),
            subjects: Some(subject(CONTROLLER)),
        }),
        value(&RoleBinding {
            metadata: {
                let mut m = meta(AUTH_READER_BINDING, true, "controller", ver);
                m.namespace = Some("kube-system".into());
                m
            },
            role_ref: role_ref("Role", "extension-apiserver-authentication-reader"),
            subjects: Some(subject(CONTROLLER)),
        }),
    ]
}
