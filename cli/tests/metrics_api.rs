//! The wiring of the SMI Traffic Metrics API in `tulle install`: the APIService, the
//! controller's port, Service port and env, its RBAC, and `--prometheus-url`.

mod support;

use serde_json::Value;
use support::*;

fn generated() -> Vec<Value> {
    docs(&install(&[]).unwrap())
}

/// The SMI Traffic Metrics API: the APIService, the controller's port, Service port, env and
/// RBAC (issue: the aggregated API server).
#[test]
fn metrics_api_is_wired() {
    let objs = generated();
    let find = |kind: &str, name: &str| {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let api = find("APIService", "v1alpha1.metrics.smi-spec.io");
    assert_eq!(api["apiVersion"], "apiregistration.k8s.io/v1");
    let spec = &api["spec"];
    assert_eq!(spec["group"], "metrics.smi-spec.io");
    assert_eq!(spec["version"], "v1alpha1");
    assert_eq!(spec["groupPriorityMinimum"], 100);
    assert_eq!(spec["versionPriority"], 100);
    assert_eq!(spec["insecureSkipTLSVerify"], false);
    assert!(spec.get("caBundle").is_none(), "the controller patches it");
    assert_eq!(
        spec["service"],
        serde_json::json!({"namespace": "tulle-system", "name": "tulle-controller", "port": 8443})
    );
    let svc = find("Service", "tulle-controller");
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics-api" && p["port"] == 8443 && p["targetPort"] == 8443)
    );
    let dep = find("Deployment", "tulle-controller");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert!(
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics-api" && p["containerPort"] == 8443)
    );
    let env: Vec<&Value> = c["env"].as_array().unwrap().iter().collect();
    assert!(
        env.iter()
            .any(|e| e["name"] == "TULLE_CONTROLLER_METRICS_API_ADDR"
                && e["value"] == "0.0.0.0:8443")
    );
    assert!(
        !env.iter()
            .any(|e| e["name"] == "TULLE_CONTROLLER_PROMETHEUS_URL"),
        "the embedded scraper by default"
    );
    let role = find("ClusterRole", "tulle-controller");
    let allows = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == group)
                && r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
        })
    };
    for (g, r, v) in [
        ("apps", "deployments", "list"),
        ("apps", "daemonsets", "list"),
        ("apps", "statefulsets", "list"),
        ("batch", "jobs", "list"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
        ("apiregistration.k8s.io", "apiservices", "get"),
        ("apiregistration.k8s.io", "apiservices", "patch"),
    ] {
        assert!(allows(g, r, v), "{v} {g}/{r}");
    }
    let apiservices = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"][0] == "apiservices")
        .unwrap();
    assert_eq!(
        apiservices["resourceNames"],
        serde_json::json!(["v1alpha1.metrics.smi-spec.io"])
    );
    let rb = objs
        .iter()
        .find(|o| {
            o["kind"] == "RoleBinding" && o["metadata"]["name"] == "tulle-controller-auth-reader"
        })
        .unwrap();
    assert_eq!(rb["metadata"]["namespace"], "kube-system");
    assert_eq!(
        rb["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "extension-apiserver-authentication-reader"})
    );
    assert_eq!(
        rb["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "tulle-controller",
                            "namespace": "tulle-system"}])
    );
}

#[test]
fn prometheus_url_reaches_the_controller() {
    let objs = docs(&install(&["--prometheus-url", "http://prometheus.monitoring:9090"]).unwrap());
    let dep = objs
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tulle-controller")
        .unwrap();
    let env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "TULLE_CONTROLLER_PROMETHEUS_URL"
                && e["value"] == "http://prometheus.monitoring:9090")
    );
    for ok in [
        "http://prom.example.com/",
        "http://10.0.0.1:9090/prometheus",
    ] {
        install(&["--prometheus-url", ok]).unwrap();
    }
    // https is refused as the controller would refuse it (it speaks plain HTTP to Prometheus).
    for bad in [
        "prometheus:9090",
        "ftp://prom",
        "http://",
        "http://a b",
        "",
        "https://prom.example.com/",
    ] {
        let e = install(&["--prometheus-url", bad]).unwrap_err();
        assert_eq!(e.exit_code(), tulle_cli::exit::CONFIG, "{bad}: {e}");
        assert!(e.to_string().contains("--prometheus-url"), "{e}");
    }
}
