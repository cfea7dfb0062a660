//! The dashboard is meshed by `tulle install` (injected statically, as `tulle inject --manual`
//! injects: the webhook skips the control plane): its proxy gets the install's image, log level
//! and trust anchors, the identity of the dashboard's ServiceAccount, and leaves the API server
//! and identity's admin port out of the proxy.

mod support;

use serde_json::Value;
use support::*;

fn dashboard(objs: &[Value]) -> Value {
    objs.iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tulle-dashboard")
        .expect("the dashboard Deployment")
        .clone()
}

fn init(d: &Value, name: &str) -> Value {
    d["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {d}"))
        .clone()
}

fn env(c: &Value, name: &str) -> Value {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {c}"))["value"]
        .clone()
}

#[test]
fn install_meshes_the_dashboard() {
    let objs = docs(&install_fixed(&[
        "--proxy-log-level",
        "debug",
        "--tag",
        "1.2.3",
    ]));
    let d = dashboard(&objs);
    let t = &d["spec"]["template"];
    assert_eq!(t["metadata"]["annotations"]["tulle.io/injected"], "true");
    assert_eq!(
        t["metadata"]["annotations"]["tulle.io/proxy-version"],
        "1.2.3"
    );
    assert_eq!(t["metadata"]["labels"]["tulle.io/proxied"], "true");
    assert_eq!(
        t["metadata"]["labels"]["tulle.io/proxy-deployment"],
        "tulle-dashboard"
    );
    assert_eq!(t["spec"]["serviceAccountName"], "tulle-dashboard");
    let names: Vec<&str> = t["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tulle-init", "tulle-proxy"]);
    let i = init(&d, "tulle-init");
    assert_eq!(
        i["args"],
        serde_json::json!(["init", "--skip-outbound-ports", "443,6443,9990"])
    );
    let p = init(&d, "tulle-proxy");
    assert_eq!(p["image"], "localhost/tulle/proxy:1.2.3");
    assert_eq!(p["restartPolicy"], "Always");
    assert_eq!(env(&p, "TULLE_PROXY_LOG"), "debug");
    assert_eq!(
        env(&p, "TULLE_PROXY_IDENTITY_NAME"),
        "tulle-dashboard.tulle-system.serviceaccount.identity.tulle.cluster.local"
    );
    let cm = objs
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "tulle-trust-anchors")
        .unwrap();
    assert_eq!(
        env(&p, "TULLE_PROXY_IDENTITY_TRUST_ANCHORS_PEM"),
        cm["data"]["trust-anchors.pem"]
    );
    // The token the proxy presents to tulle-identity: the pod's own ServiceAccount's, for
    // identity's audience.
    let vols = t["spec"]["volumes"].as_array().unwrap();
    let token = vols
        .iter()
        .find(|v| v["name"] == "tulle-identity-token")
        .unwrap();
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "identity.tulle.io"
    );
    // The app container is unchanged: still the dashboard, non-root.
    let app = &t["spec"]["containers"][0];
    assert_eq!(app["name"], "dashboard");
    assert_eq!(app["securityContext"]["runAsUser"], 65532);
}

/// The injector refuses pods of clusters with IPv6 (the proxy intercepts only IPv4): the
/// dashboard is then not meshed, as any pod.
#[test]
fn the_dashboard_is_not_meshed_with_ipv6() {
    let d = dashboard(&docs(&install_fixed(&["--ip-families", "IPv4,IPv6"])));
    assert!(
        d["spec"]["template"]["spec"]["initContainers"].is_null(),
        "{d}"
    );
    assert!(
        d["spec"]["template"]["metadata"]["annotations"].is_null(),
        "{d}"
    );
}
