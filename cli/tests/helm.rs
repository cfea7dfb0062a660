//! The Helm charts: `helm lint` clean, and `helm template` of charts/tulle-crds + charts/tulle
//! yields the same objects (kind, namespace, name) as `tulle install`, with the same content
//! apart from labels and the generated PKI.
//!
//! helm is built from its Go module by `scripts/helm` (into /var/cache/tulle/tools/bin/helm;
//! `TULLE_HELM` overrides the path). This test fails, it does not skip, when helm is missing.

mod support;

use serde_json::Value;
use std::{collections::BTreeSet, path::PathBuf, process::Command, time::SystemTime};
use support::*;

fn helm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TULLE_HELM") {
        return p.into();
    }
    let cached = PathBuf::from("/var/cache/tulle/tools/bin/helm");
    if cached.exists() {
        return cached;
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v helm"]).output()
        && out.status.success()
    {
        return String::from_utf8(out.stdout).unwrap().trim().into();
    }
    panic!(
        "helm not found (TULLE_HELM, /var/cache/tulle/tools/bin/helm, PATH): run scripts/helm, \
         which builds it from its Go module (scripts/setup does this too)"
    );
}

fn helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm_bin())
        .args(args)
        .current_dir(repo_dir())
        .output()
        .expect("cannot run helm");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("helm {args:?} failed:\n{stdout}\n{stderr}"))
    }
}

fn rendered(extra: &[&str]) -> Vec<Value> {
    let mut objs = docs(&helm(&["template", "tulle-crds", "charts/tulle-crds"]).unwrap());
    let mut args = vec![
        "template",
        "tulle",
        "charts/tulle",
        "--namespace",
        "tulle-system",
    ];
    args.extend_from_slice(extra);
    objs.extend(docs(&helm(&args).unwrap()));
    objs
}

#[test]
fn charts_lint_clean() {
    helm(&["lint", "--strict", "charts/tulle-crds"]).unwrap();
    helm(&[
        "lint",
        "--strict",
        "charts/tulle",
        "--namespace",
        "tulle-system",
    ])
    .unwrap();
}

#[test]
fn chart_objects_match_tulle_install() {
    let cli: Vec<Value> = docs(&install(&[]).unwrap());
    let chart = rendered(&[]);
    let set = |xs: &[Value]| xs.iter().map(key).collect::<BTreeSet<_>>();
    let (a, b) = (set(&cli), set(&chart));
    assert_eq!(
        a,
        b,
        "only in tulle install: {:?}\nonly in the charts: {:?}",
        a.difference(&b).collect::<Vec<_>>(),
        b.difference(&a).collect::<Vec<_>>()
    );
    assert_eq!(chart.len(), b.len(), "the charts render an object twice");
}

/// Everything but labels, annotations, pod-template metadata and the PKI data is identical.
#[test]
fn chart_objects_have_the_same_content() {
    let strip = |mut v: Value| {
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("labels");
            m.remove("annotations");
        }
        if let Some(t) = v
            .pointer_mut("/spec/template")
            .and_then(Value::as_object_mut)
        {
            t.remove("metadata");
        }
        if v["kind"] == "Secret" || v["kind"] == "ConfigMap" {
            v.as_object_mut().unwrap().remove("data");
        }
        without_proxy_anchors(v)
    };
    let chart = rendered(&[]);
    for o in docs(&install(&[]).unwrap()) {
        let k = key(&o);
        let c = chart
            .iter()
            .find(|c| key(c) == k)
            .unwrap_or_else(|| panic!("{k:?} not in chart"));
        let (o, c) = (strip(o), strip(c.clone()));
        assert!(
            o == c,
            "{k:?} differs:\ntulle install: {o}\nchart:         {c}"
        );
    }
}

#[test]
fn chart_labels_follow_the_contract() {
    for o in rendered(&[]) {
        let l = &o["metadata"]["labels"];
        assert_eq!(l["app.kubernetes.io/part-of"], "tulle", "{:?}", key(&o));
        assert_eq!(
            l["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION"),
            "{:?}",
            key(&o)
        );
        assert_eq!(l["app.kubernetes.io/managed-by"], "Helm");
        assert!(l["app.kubernetes.io/name"].is_string());
    }
}

/// The chart's zero-touch PKI (an ECDSA P-256 CA, anchor and issuer at once) passes the same
/// validation as user files, so tulle-identity will load it.
#[test]
fn chart_generates_a_valid_pki() {
    let chart = rendered(&[]);
    let secret = chart.iter().find(|o| o["kind"] == "Secret").unwrap();
    let cm = chart.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let b64 = |k: &str| {
        let out = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(secret["data"][k].as_str().unwrap().as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let pki = tulle_cli::pki::Pki {
        trust_anchors_pem: cm["data"]["trust-anchors.pem"]
            .as_str()
            .unwrap()
            .to_string(),
        issuer_cert_pem: b64("tls.crt"),
        issuer_key_pem: b64("tls.key"),
    };
    assert!(
        pki.issuer_key_pem.contains("BEGIN EC PRIVATE KEY"),
        "ECDSA, not RSA"
    );
    let names = tulle_cli::pki::PkiFiles {
        trust_anchors: "chart ConfigMap".into(),
        issuer_cert: "chart Secret tls.crt".into(),
        issuer_key: "chart Secret tls.key".into(),
    };
    tulle_cli::pki::validate(&pki, &names, SystemTime::now()).unwrap();
    identity_accepts(&pki);
    // Issue 15 item 5: the lifetimes of `tulle install`'s PKI: the issuer for validityDays,
    // the anchor ten times as long, so the issuer can be renewed under the same anchor.
    let days = |pem: &str| {
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        let v = c.validity();
        (v.not_after.timestamp() - v.not_before.timestamp()) as f64 / 86_400.0
    };
    let (anchor, issuer) = (days(&pki.trust_anchors_pem), days(&pki.issuer_cert_pem));
    let cli = tulle_cli::pki::generate(
        "cluster.local",
        std::time::Duration::from_secs(365 * 86_400),
        SystemTime::now(),
    )
    .unwrap();
    let (cli_anchor, cli_issuer) = (days(&cli.trust_anchors_pem), days(&cli.issuer_cert_pem));
    for (what, chart, cli) in [
        ("anchor", anchor, cli_anchor),
        ("issuer", issuer, cli_issuer),
    ] {
        assert!(
            (chart - cli).abs() < 1.0,
            "the chart's {what} lives {chart:.1} days, tulle install's {cli:.1}"
        );
    }
    assert!((issuer - 365.0).abs() < 1.0, "issuer: {issuer} days");
    assert!(
        (anchor - 3650.0).abs() < 1.0,
        "anchor: {anchor} days (ten times the issuer's)"
    );
    // validityDays sets both, in the same ratio.
    let chart = rendered(&["--set", "identity.validityDays=30"]);
    let cm = chart.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let anchor = days(cm["data"]["trust-anchors.pem"].as_str().unwrap());
    assert!((anchor - 300.0).abs() < 1.0, "anchor: {anchor} days");
}

/// User PKI given as values is used verbatim.
#[test]
fn chart_uses_given_pki() {
    let [a, c, k] = fixture_files();
    let set = |name: &str, f: &PathBuf| format!("{name}={}", f.display());
    let (sa, sc, sk) = (
        set("identity.trustAnchorsPEM", &a),
        set("identity.issuer.crtPEM", &c),
        set("identity.issuer.keyPEM", &k),
    );
    let chart = rendered(&["--set-file", &sa, "--set-file", &sc, "--set-file", &sk]);
    let cm = chart.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(
        cm["data"]["trust-anchors.pem"].as_str().unwrap().trim(),
        std::fs::read_to_string(&a).unwrap().trim()
    );
    // the Secret must equal tulle install's with the same files
    let cli = docs(&install_fixed(&[]));
    let s = |xs: &[Value]| xs.iter().find(|o| o["kind"] == "Secret").unwrap()["data"].clone();
    assert_eq!(s(&chart), s(&cli));
    // and so must the anchors of the dashboard's injected proxy
    assert_eq!(
        dashboard_proxy_anchors(&chart),
        dashboard_proxy_anchors(&cli)
    );
}

/// A generated PKI is made once per render: the dashboard's proxy trusts the anchors of the
/// ConfigMap it renders with.
#[test]
fn chart_dashboard_proxy_trusts_the_generated_anchors() {
    let chart = rendered(&[]);
    let cm = chart.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(
        dashboard_proxy_anchors(&chart).trim(),
        cm["data"]["trust-anchors.pem"].as_str().unwrap().trim()
    );
}

#[test]
fn chart_rejects_bad_values_clearly() {
    let e = helm(&[
        "template",
        "tulle",
        "charts/tulle",
        "-n",
        "tulle-system",
        "--set",
        "webhookFailurePolicy=Sometimes",
    ])
    .unwrap_err();
    assert!(e.contains("webhookFailurePolicy"), "{e}");
    let e = helm(&["template", "tulle", "charts/tulle", "-n", "default"]).unwrap_err();
    assert!(
        e.contains("install this chart into the tulle-system namespace"),
        "{e}"
    );
    let e = helm(&[
        "template",
        "tulle",
        "charts/tulle",
        "-n",
        "tulle-system",
        "--set",
        "identity.issuer.crtPEM=x",
    ])
    .unwrap_err();
    assert!(e.contains("go together"), "{e}");
}

/// Issue 11: `defaultInboundPolicy` reaches the controller's env; other values are refused
/// by the values schema.
#[test]
fn chart_default_inbound_policy_reaches_the_controller() {
    for v in ["allow", "authenticated", "deny"] {
        let objs = rendered(&["--set", &format!("defaultInboundPolicy={v}")]);
        let dep = objs
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tulle-controller")
            .expect("controller Deployment");
        let env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "TULLE_CONTROLLER_DEFAULT_INBOUND_POLICY" && e["value"] == v),
            "{v}: {env:?}"
        );
    }
    let e = helm(&[
        "template",
        "tulle",
        "charts/tulle",
        "-n",
        "tulle-system",
        "--set",
        "defaultInboundPolicy=open",
    ])
    .unwrap_err();
    assert!(e.contains("defaultInboundPolicy"), "{e}");
}

/// `prometheusUrl` reaches the controller's env like `tulle install --prometheus-url`; other
/// strings are refused by the values schema.
#[test]
fn chart_prometheus_url_reaches_the_controller() {
    let url = "http://prometheus.monitoring.svc:9090";
    let env_of = |objs: &[Value]| {
        objs.iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tulle-controller")
            .expect("controller Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
            .clone()
    };
    let chart = env_of(&rendered(&["--set", &format!("prometheusUrl={url}")]));
    let cli = env_of(&docs(&install(&["--prometheus-url", url]).unwrap()));
    assert_eq!(chart, cli);
    assert!(
        chart
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "TULLE_CONTROLLER_PROMETHEUS_URL" && e["value"] == url)
    );
    let e = helm(&[
        "template",
        "tulle",
        "charts/tulle",
        "-n",
        "tulle-system",
        "--set",
        "prometheusUrl=prometheus:9090",
    ])
    .unwrap_err();
    assert!(e.contains("prometheusUrl"), "{e}");
}

/// `dashboard.enabled=false` leaves the dashboard out, as `tulle install --dashboard=false`.
#[test]
fn chart_can_leave_out_the_dashboard() {
    let with: Vec<Value> = rendered(&[]);
    let without = rendered(&["--set", "dashboard.enabled=false"]);
    assert!(
        with.iter()
            .any(|o| o["metadata"]["name"] == "tulle-dashboard")
    );
    assert!(
        without
            .iter()
            .all(|o| o["metadata"]["name"] != "tulle-dashboard")
    );
    let cli = docs(&install(&["--dashboard=false"]).unwrap());
    assert_eq!(cli.len(), without.len());
}

/// `proxy.allowedImages` reaches the controller like `tulle install --allowed-proxy-image`
/// (issue 15 item 8); none by default.
#[test]
fn chart_allowed_proxy_images_reach_the_controller() {
    let env_of = |objs: &[Value]| {
        objs.iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tulle-controller")
            .expect("controller Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
            .clone()
    };
    let (a, b) = ("r.example/proxy:1", "r.example/proxy:2");
    let chart = env_of(&rendered(&[
        "--set",
        &format!("proxy.allowedImages={{{a},{b}}}"),
    ]));
    let cli = env_of(&docs(
        &install(&["--allowed-proxy-image", a, "--allowed-proxy-image", b]).unwrap(),
    ));
    assert_eq!(chart, cli);
    assert!(
        chart
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "TULLE_CONTROLLER_ALLOWED_PROXY_IMAGES"
                && e["value"] == format!("{a},{b}"))
    );
    let default = env_of(&rendered(&[]));
    assert!(
        !default
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "TULLE_CONTROLLER_ALLOWED_PROXY_IMAGES")
    );
}

/// Everything but labels, annotations, pod-template metadata and the PKI data is identical
/// between `helm template` with `chart_args` and `tulle install` with `cli_args`.
fn assert_same_content(chart_args: &[&str], cli_args: &[&str]) {
    let strip = |mut v: Value| {
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("labels");
            m.remove("annotations");
        }
        if let Some(t) = v
            .pointer_mut("/spec/template")
            .and_then(Value::as_object_mut)
        {
            t.remove("metadata");
        }
        if v["kind"] == "Secret" || v["kind"] == "ConfigMap" {
            v.as_object_mut().unwrap().remove("data");
        }
        without_proxy_anchors(v)
    };
    let chart = rendered(chart_args);
    let cli = docs(&install(cli_args).unwrap());
    let keys = |xs: &[Value]| xs.iter().map(key).collect::<BTreeSet<_>>();
    assert_eq!(keys(&cli), keys(&chart), "{chart_args:?} vs {cli_args:?}");
    for o in cli {
        let k = key(&o);
        let c = chart.iter().find(|c| key(c) == k).unwrap();
        let (o, c) = (strip(o), strip(c.clone()));
        assert!(
            o == c,
            "{k:?} differs ({chart_args:?} vs {cli_args:?}):\ntulle install: {o}\nchart:         {c}"
        );
    }
}

/// `v` without the trust anchors PEM of its injected proxies (the dashboard's): the PKI, which
/// the chart generates anew; `chart_uses_given_pki` compares them with given files.
fn without_proxy_anchors(mut v: Value) -> Value {
    let inits = v.pointer_mut("/spec/template/spec/initContainers");
    for c in inits.and_then(Value::as_array_mut).into_iter().flatten() {
        for e in c["env"].as_array_mut().into_iter().flatten() {
            if e["name"] == "TULLE_PROXY_IDENTITY_TRUST_ANCHORS_PEM" {
                e["value"] = Value::Null;
            }
        }
    }
    v
}

/// The trust anchors PEM in the environment of the dashboard's injected proxy.
fn dashboard_proxy_anchors(objs: &[Value]) -> String {
    let d = objs
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tulle-dashboard")
        .expect("dashboard Deployment");
    let inits = d["spec"]["template"]["spec"]["initContainers"].as_array();
    let proxy = inits
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "tulle-proxy")
        .expect("the dashboard's tulle-proxy");
    let env = proxy["env"].as_array().unwrap();
    let e = env
        .iter()
        .find(|e| e["name"] == "TULLE_PROXY_IDENTITY_TRUST_ANCHORS_PEM")
        .unwrap();
    e["value"].as_str().unwrap().to_string()
}

fn controller_env(objs: &[Value]) -> Vec<Value> {
    objs.iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tulle-controller")
        .expect("controller Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone()
}

/// `ipFamilies` reaches the controller like `tulle install --ip-families` (issue 15 item 4: the
/// injector refuses pods of clusters with IPv6); nothing is set for IPv4, the default.
#[test]
fn chart_ip_families_reach_the_controller() {
    assert_same_content(
        &["--set", "ipFamilies={IPv6,IPv4}"],
        &["--ip-families", "IPv4,IPv6"],
    );
    let env = controller_env(&rendered(&["--set", "ipFamilies={IPv6}"]));
    assert!(
        env.iter()
            .any(|e| e["name"] == "TULLE_CONTROLLER_IP_FAMILIES" && e["value"] == "IPv6"),
        "{env:?}"
    );
    for objs in [
        rendered(&[]),
        rendered(&["--set", "ipFamilies={IPv4}"]),
        docs(&install(&[]).unwrap()),
    ] {
        let env = controller_env(&objs);
        assert!(
            !env.iter()
                .any(|e| e["name"] == "TULLE_CONTROLLER_IP_FAMILIES"),
            "{env:?}"
        );
    }
    let e = helm(&[
        "template",
        "tulle",
        "charts/tulle",
        "--set",
        "ipFamilies={IPv5}",
    ])
    .unwrap_err();
    assert!(e.contains("ipFamilies"), "{e}");
}

/// `ha.enabled` renders what `tulle install --ha` prints (issue 15, high availability), with
/// the same precedence of explicit replicas and failure policy.
#[test]
fn chart_ha_matches_tulle_install_ha() {
    assert_same_content(&["--set", "ha.enabled=true"], &["--ha"]);
    assert_same_content(
        &["--set", "ha.enabled=true", "--set", "controller.replicas=3"],
        &["--ha", "--controller-replicas", "3"],
    );
    assert_same_content(
        &[
            "--set",
            "ha.enabled=true",
            "--set",
            "webhookFailurePolicy=Ignore",
        ],
        &["--ha", "--webhook-failure-policy", "Ignore"],
    );
    assert_same_content(
        &["--set", "webhookFailurePolicy=Fail"],
        &["--webhook-failure-policy", "Fail"],
    );
    let ha = rendered(&["--set", "ha.enabled=true"]);
    assert_eq!(
        ha.iter()
            .filter(|o| o["kind"] == "PodDisruptionBudget")
            .count(),
        2
    );
    assert!(
        !rendered(&[])
            .iter()
            .any(|o| o["kind"] == "PodDisruptionBudget")
    );
}
