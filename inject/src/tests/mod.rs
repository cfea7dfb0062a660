//! The patches applied (with json-patch) to real Pod JSON, as an AdmissionRequest carries it.

use super::*;
use k8s_openapi::api::core::v1::Container;
use serde_json::{Value, json};

fn cfg() -> Config {
    Config {
        proxy_image: "localhost/tulle/proxy:0.1.0".into(),
        proxy_version: "0.1.0".into(),
        trust_domain: "cluster.local".into(),
        identity_addr: "tulle-identity.tulle-system.svc.cluster.local:8080".into(),
        identity_name: "tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local"
            .into(),
        destination_addr: "tulle-controller.tulle-system.svc.cluster.local:8086".into(),
        destination_name:
            "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local".into(),
        policy_addr: "tulle-controller.tulle-system.svc.cluster.local:8090".into(),
        policy_name: "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local"
            .into(),
        log_level: "info".into(),
        resources: Resources::default(),
        allowed_images: vec!["registry.example/tulle/proxy:dev".into()],
        ipv6: false,
    }
}

const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// A ReplicaSet's pod as the API server hands it to the webhook: generateName, no namespace,
/// an app init container, a volume and a field this k8s-openapi does not know.
fn web_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-5d4f8-",
            "labels": {"app": "web"},
            "annotations": {"tulle.io/inject": "enabled"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f8", "uid": "1234", "controller": true}]
        },
        "spec": {
            "serviceAccountName": "web",
            "initContainers": [{"name": "migrate", "image": "migrate:1"}],
            "containers": [{"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}], "futureField": {"x": 1}}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn bare_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
           "spec": {"containers": [{"name": "app", "image": "app:1"}]}})
}

fn pod(v: &Value) -> Pod {
    serde_json::from_value(v.clone()).unwrap()
}

fn shop(ns_ann: &[(&str, &str)]) -> Namespace {
    Namespace {
        name: "shop".into(),
        annotations: ns_ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn run(v: &Value, ns_ann: &[(&str, &str)]) -> (Decision, Value) {
    run_in(v, &shop(ns_ann))
}

fn run_in(v: &Value, ns: &Namespace) -> (Decision, Value) {
    let d = decide(&pod(v), ns, &cfg(), ANCHORS);
    let mut out = v.clone();
    match &d {
        Decision::Inject(p) => json_patch::patch(&mut out, p).unwrap(),
        Decision::Skip { patch: Some(p), .. } => json_patch::patch(&mut out, p).unwrap(),
        Decision::Skip { patch: None, .. } => {}
    }
    (d, out)
}

fn init(out: &Value, i: usize) -> Container {
    serde_json::from_value(out["spec"]["initContainers"][i].clone()).unwrap()
}

fn env(c: &Container, name: &str) -> Option<String> {
    c.env.iter().flatten().find(|e| e.name == name).map(|e| {
        e.value.clone().unwrap_or_else(|| {
            let f = e.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
            format!("fieldRef:{}", f.field_path)
        })
    })
}

#[test]
fn injects_init_step_and_native_sidecar_first() {
    let (d, out) = run(&web_pod(), &[]);
    assert!(matches!(d, Decision::Inject(_)), "{d:?}");
    let names: Vec<&str> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tulle-init", "tulle-proxy", "migrate"]);
    // The app container is untouched, unknown fields included.
    assert_eq!(out["spec"]["containers"], web_pod()["spec"]["containers"]);
    let vols: Vec<&str> = out["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        vols,
        [
            "data",
            TOKEN_VOLUME,
            "tulle-init-xtables-lock",
            "tulle-trust-anchors"
        ]
    );
    // The namespace's trust-anchor ConfigMap, optional: the pod starts before it exists.
    let anchors = &out["spec"]["volumes"][3]["configMap"];
    assert_eq!(anchors["name"], "tulle-trust-anchors");
    assert_eq!(anchors["optional"], true);
    let token = &out["spec"]["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "identity.tulle.io");
    assert_eq!(token["expirationSeconds"], 86400);
    assert_eq!(out["metadata"]["annotations"]["tulle.io/injected"], "true");
    assert_eq!(
        out["metadata"]["annotations"]["tulle.io/proxy-version"],
        "0.1.0"
    );
    assert_eq!(out["metadata"]["annotations"]["tulle.io/inject"], "enabled");
    assert_eq!(out["metadata"]["labels"]["tulle.io/proxied"], "true");
    assert_eq!(out["metadata"]["labels"]["app"], "web");
    // The result is still a valid Pod.
    let p = pod(&out);
    assert_eq!(p.spec.unwrap().init_containers.unwrap().len(), 3);
}

#[test]
fn init_step_is_the_only_privileged_part() {
    let (_, out) = run(&web_pod(), &[]);
    let i = init(&out, 0);
    assert_eq!(i.image.as_deref(), Some("localhost/tulle/proxy:0.1.0"));
    assert_eq!(i.args.as_deref(), Some(&["init".to_string()][..]));
    assert_eq!(i.restart_policy, None);
    let sc = i.security_context.unwrap();
    assert_eq!(sc.run_as_user, Some(0));
    assert_eq!(sc.run_as_non_root, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    assert_eq!(caps.add.unwrap(), ["NET_ADMIN", "NET_RAW"]);

    let p = init(&out, 1);
    assert_eq!(p.restart_policy.as_deref(), Some("Always"));
    let sc = p.security_context.unwrap();
    assert_eq!(sc.run_as_user, Some(2110));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.privileged, Some(false));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    assert_eq!(caps.add, None);
    let startup = p.startup_probe.unwrap().http_get.unwrap();
    assert_eq!(startup.path.as_deref(), Some("/ready"));
    assert_eq!(
        startup.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(4191)
    );
    assert!(p.readiness_probe.is_some());
    let ports: Vec<(Option<String>, i32)> = p
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("tulle-proxy".into()), 4143),
            (Some("tulle-admin".into()), 4191)
        ]
    );
    let r = p.resources.unwrap();
    assert_eq!(r.requests.unwrap()["memory"].0, "32Mi");
    assert_eq!(r.limits.unwrap()["memory"].0, "256Mi");
}

#[test]
fn proxy_environment() {
    let (_, out) = run(&web_pod(), &[]);
    let p = init(&out, 1);
    let e = |n| env(&p, n).unwrap_or_else(|| panic!("{n} missing"));
    // The namespace comes from the request: the pod's metadata has none yet.
    assert_eq!(
        e("TULLE_PROXY_IDENTITY_NAME"),
        "web.shop.serviceaccount.identity.tulle.cluster.local"
    );
    assert_eq!(e("TULLE_PROXY_IDENTITY_TRUST_ANCHORS_PEM"), ANCHORS);
    assert_eq!(
        e("TULLE_PROXY_IDENTITY_TRUST_ANCHORS_FILE"),
        "/var/run/tulle.io/trust-anchors/trust-anchors.pem",
        "the mounted ConfigMap, reloaded on change"
    );
    assert_eq!(
        e("TULLE_PROXY_IDENTITY_SVC_ADDR"),
        "tulle-identity.tulle-system.svc.cluster.local:8080"
    );
    assert_eq!(
        e("TULLE_PROXY_IDENTITY_SVC_NAME"),
        "tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local"
    );
    assert_eq!(
        e("TULLE_PROXY_IDENTITY_TOKEN_FILE"),
        "/var/run/secrets/tulle.io/serviceaccount/token"
    );
    assert_eq!(
        e("TULLE_PROXY_DESTINATION_SVC_ADDR"),
        "tulle-controller.tulle-system.svc.cluster.local:8086"
    );
    assert_eq!(
        e("TULLE_PROXY_DESTINATION_SVC_NAME"),
        "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local"
    );
    assert_eq!(
        e("TULLE_PROXY_POLICY_SVC_ADDR"),
        "tulle-controller.tulle-system.svc.cluster.local:8090"
    );
    assert_eq!(
        e("TULLE_PROXY_POLICY_SVC_NAME"),
        "tulle-controller.tulle-system.serviceaccount.identity.tulle.cluster.local"
    );
    assert_eq!(
        e("TULLE_PROXY_POD_NAMESPACE"),
        "fieldRef:metadata.namespace"
    );
    assert_eq!(e("TULLE_PROXY_POD_NAME"), "fieldRef:metadata.name");
    assert_eq!(e("TULLE_PROXY_LOG"), "info");
    assert_eq!(env(&p, "TULLE_PROXY_OPAQUE_PORTS"), None);
    // The token is mounted where the env var says.
    let m = &p.volume_mounts.unwrap()[0];
    assert_eq!(
        (m.name.as_str(), m.mount_path.as_str(), m.read_only),
        (
            TOKEN_VOLUME,
            "/var/run/secrets/tulle.io/serviceaccount",
            Some(true)
        )
    );
}

#[test]
fn bare_pod_from_namespace_annotation_and_default_service_account() {
    let (d, out) = run(&bare_pod(), &[("tulle.io/inject", "enabled")]);
    assert!(matches!(d, Decision::Inject(_)), "{d:?}");
    assert_eq!(out["spec"]["initContainers"].as_array().unwrap().len(), 2);
    assert_eq!(out["spec"]["volumes"].as_array().unwrap().len(), 3);
    assert_eq!(out["metadata"]["annotations"]["tulle.io/injected"], "true");
    assert_eq!(out["metadata"]["labels"]["tulle.io/proxied"], "true");
    assert_eq!(
        env(&init(&out, 1), "TULLE_PROXY_IDENTITY_NAME").unwrap(),
        "default.shop.serviceaccount.identity.tulle.cluster.local"
    );
}

#[test]
fn owner_label_for_prometheus_relabelling() {
    // A Deployment's pod: the ReplicaSet's name minus the pod-template-hash.
    let mut p = web_pod();
    p["metadata"]["labels"]["pod-template-hash"] = json!("5d4f8");
    let (_, out) = run(&p, &[]);
    assert_eq!(
        out["metadata"]["labels"]["tulle.io/proxy-deployment"],
        "web"
    );
    assert_eq!(out["metadata"]["labels"]["app"], "web");
    // A StatefulSet's pod without labels: the label map is created with both labels.
    let mut p = bare_pod();
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u", "controller": true}]);
    let (_, out) = run(&p, &[("tulle.io/inject", "enabled")]);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"tulle.io/proxied": "true", "tulle.io/proxy-statefulset": "db"})
    );
    // A bare pod gets no owner label.
    let (_, out) = run(&bare_pod(), &[("tulle.io/inject", "enabled")]);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"tulle.io/proxied": "true"})
    );
}

#[test]
fn second_pass_is_a_no_op() {
    for (v, ns) in [
        (web_pod(), vec![]),
        (bare_pod(), vec![("tulle.io/inject", "enabled")]),
    ] {
        let (_, once) = run(&v, &ns);
        let (d, twice) = run(&once, &ns);
        assert!(
            matches!(
                d,
                Decision::Skip {
                    reason: Skip::AlreadyInjected,
                    patch: None
                }
            ),
            "{d:?}"
        );
        assert_eq!(once, twice);
    }
}

#[test]
fn overrides_from_annotations() {
    let mut v = web_pod();
    let a = &mut v["metadata"]["annotations"];
    a["config.tulle.io/skip-inbound-ports"] = json!("22, 8000-8010");
    a["config.tulle.io/skip-outbound-ports"] = json!("3306");
    a["config.tulle.io/skip-outbound-subnets"] = json!("10.0.0.0/8,192.168.0.0/16");
    a["config.tulle.io/proxy-cpu-request"] = json!("100m");
    a["config.tulle.io/proxy-cpu-limit"] = json!("1");
    a["config.tulle.io/proxy-memory-request"] = json!("64Mi");
    a["config.tulle.io/proxy-memory-limit"] = json!("128Mi");
    a["config.tulle.io/proxy-log-level"] = json!("tulle_proxy=debug,info");
    a["config.tulle.io/proxy-image"] = json!("registry.example/tulle/proxy:dev");
    let (d, out) = run(&v, &[("config.tulle.io/opaque-ports", "5432,6379")]);
    assert!(matches!(d, Decision::Inject(_)), "{d:?}");
    let i = init(&out, 0);
    assert_eq!(
        i.args.unwrap(),
        [
            "init",
            "--skip-inbound-ports",
            "22,8000-8010",
            "--skip-outbound-ports",
            "3306",
            "--skip-outbound-subnets",
            "10.0.0.0/8,192.168.0.0/16"
        ]
    );
    assert_eq!(i.image.as_deref(), Some("registry.example/tulle/proxy:dev"));
    let p = init(&out, 1);
    assert_eq!(p.image.as_deref(), Some("registry.example/tulle/proxy:dev"));
    assert_eq!(
        env(&p, "TULLE_PROXY_LOG").unwrap(),
        "tulle_proxy=debug,info"
    );
    assert_eq!(env(&p, "TULLE_PROXY_OPAQUE_PORTS").unwrap(), "5432,6379");
    let r = p.resources.unwrap();
    let (req, lim) = (r.requests.unwrap(), r.limits.unwrap());
    assert_eq!(
        (req["cpu"].0.as_str(), req["memory"].0.as_str()),
        ("100m", "64Mi")
    );
    assert_eq!(
        (lim["cpu"].0.as_str(), lim["memory"].0.as_str()),
        ("1", "128Mi")
    );
}

#[test]
fn inject_pod_returns_the_mutated_pod() {
    let (_, out) = run(&web_pod(), &[]);
    let p = inject_pod(&pod(&web_pod()), &shop(&[]), &cfg(), ANCHORS).unwrap();
    // Same as the patch (but for the field k8s-openapi does not know).
    let mut expected = out;
    expected["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("futureField");
    assert_eq!(serde_json::to_value(&p).unwrap(), expected);
    assert_eq!(
        inject_pod(&p, &shop(&[]), &cfg(), ANCHORS).unwrap_err(),
        Skip::AlreadyInjected
    );
}

mod skips;
