//! SMI Traffic Metrics on the real cluster, from the controller's embedded scraper, read
//! through the Kubernetes API server (`kubectl get --raw`), on the mesh installed by
//! `tulle install`.
//!
//! `web` answers 500 to 10 % of requests (deterministically) after 120 ms; `canary` answers
//! 500 to all. A meshed `client` sends a burst to `web` and counts what it got; the API's
//! `success_count` / `failure_count` for the deployment, its pod and the namespace must
//! equal the client's counts, and p50 must fall in the 100–200 ms bucket. `/edges` shows
//! client → web with both identities over mTLS; a TrafficSplit (`web-apex` → `web-primary`
//! 50 / `web-canary` 50) shows the canary's failures separately. A caller without the
//! API server's front-proxy certificate is refused (401), one with it but without RBAC is
//! refused by the SubjectAccessReview (403). Readiness probes are TCP so that the kubelet's
//! requests do not count.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tulle_e2e::install::tulle;
use tulle_e2e::metrics_api::{metric, raw};
use tulle_e2e::traffic::{pods, tcp_probed_workload};
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(180);
/// Two scrape intervals and some: the scraper has read every answer.
const SCRAPED: Duration = Duration::from_secs(25);
const REQUESTS: u64 = 300;
const PKI: &str = "/var/lib/tulle-cluster/pki";

fn service(name: &str, selector: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{{selector}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    )
}

const SPLIT: &str = "---\napiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: web-apex}\nspec:\n  service: web-apex\n  backends: [{service: web-primary, weight: 50}, {service: web-canary, weight: 50}]\n";

fn counts(item: &Value) -> (u64, u64) {
    let (ok, failed) = tulle_e2e::metrics_api::counts(item);
    (ok.max(0) as u64, failed.max(0) as u64)
}

/// `testapp burst URL N` from the client: (ok, failed).
fn burst(ns: &str, client: &str, url: &str, n: u64) -> (u64, u64) {
    let out = kubectl::exec(
        ns,
        client,
        Some("app"),
        &["/usr/local/bin/testapp", "burst", url, &n.to_string()],
    )
    .unwrap_or_else(|e| panic!("burst: {e}"));
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    (
        v["ok"].as_u64().unwrap_or(0),
        v["failed"].as_u64().unwrap_or(0),
    )
}

/// Kills the pod's proxy container through containerd; the kubelet starts it again in the
/// same pod (a native sidecar), with its counters at zero.
fn restart_proxy(ns: &str, pod: &str) {
    let id = kubectl::run(&[
        "get",
        "pod",
        "-n",
        ns,
        pod,
        "-o",
        "jsonpath={.status.initContainerStatuses[?(@.name==\"tulle-proxy\")].containerID}",
    ])
    .expect("proxy container id");
    let id = id.trim().trim_start_matches("containerd://").to_string();
    assert!(!id.is_empty(), "no tulle-proxy container in {pod}");
    let restarts = || {
        kubectl::run(&[
            "get",
            "pod",
            "-n",
            ns,
            pod,
            "-o",
            "jsonpath={.status.initContainerStatuses[?(@.name==\"tulle-proxy\")].restartCount}",
        ])
        .unwrap_or_default()
    };
    let before = restarts();
    let out = Command::new("ctr")
        .args([
            "-a",
            "/run/tulle-cluster/containerd/containerd.sock",
            "-n",
            "k8s.io",
            "tasks",
            "kill",
            "-s",
            "SIGKILL",
            &id,
        ])
        .output()
        .expect("ctr");
    assert!(
        out.status.success(),
        "ctr tasks kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + STEP;
    while restarts() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy of {pod} did not restart"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// HTTPS GET of the controller's metrics API directly (not through the API server), with
/// curl: `cert` is the client certificate to present, if any. Returns (status, body).
fn direct(ip: &str, path: &str, cert: Option<&str>, user: &str) -> (u16, String) {
    let url = format!("https://{ip}:8443{path}");
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("X-Remote-User: {user}"))
        .arg(&url);
    if let Some(c) = cert {
        cmd.args([
            "--cert",
            &format!("{PKI}/{c}.crt"),
            "--key",
            &format!("{PKI}/{c}.key"),
        ]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The golden metrics scenario, on an installed mesh.
pub async fn golden_metrics(kube: kube::Client) {
    let ns = TestNamespace::new("metrics").await.expect("namespace");
    let n = ns.name.clone();
    kubectl::run(&["annotate", "namespace", &n, "tulle.io/inject=enabled"]).unwrap();
    let web_env = "        - {name: FAIL_PERCENT, value: \"10\"}\n        - {name: DELAY_MS, value: \"120\"}\n";
    let canary_env = "        - {name: FAIL_PERCENT, value: \"100\"}\n";
    let yaml = [
        tcp_probed_workload("client", "client", ""),
        tcp_probed_workload("web", "web", web_env),
        tcp_probed_workload("canary", "web", canary_env),
        service("web", "app: web"),
        service("web-apex", "tier: web"),
        service("web-primary", "app: web"),
        service("web-canary", "app: canary"),
        SPLIT.to_string(),
    ]
    .concat();
    ns.apply(&yaml).unwrap_or_else(|e| panic!("{e}"));
    for app in ["client", "web", "canary"] {
        wait::pods_ready(&kube, &n, &format!("app={app}"), 1, STEP)
            .await
            .expect(app);
    }
    let client = pods(&n, "app=client").remove(0);
    let web_pod = pods(&n, "app=web").remove(0);
    let base = format!("/apis/metrics.smi-spec.io/v1alpha1/namespaces/{n}");

    // The API is discoverable and answers an empty window with zeros, not an error.
    let resources = kubectl::run(&[
        "api-resources",
        "--api-group=metrics.smi-spec.io",
        "-o",
        "name",
    ])
    .expect("api-resources");
    assert!(
        resources.contains("deployments.metrics.smi-spec.io"),
        "{resources}"
    );
    let empty = raw(&format!("{base}/deployments/web?t=30s"));
    assert_eq!(counts(&empty), (0, 0), "{empty:#}");
    assert_eq!(metric(&empty, "p50_response_latency"), None, "{empty:#}");

    // A scrape of web's proxy before the traffic, so its new series count from zero.
    tokio::time::sleep(SCRAPED).await;
    let web_url = format!("http://web.{n}.svc.cluster.local/");
    let (ok, failed) = burst(&n, &client, &web_url, REQUESTS);
    assert_eq!(ok + failed, REQUESTS);
    assert_eq!(failed, REQUESTS / 10, "web fails 10 % deterministically");
    tokio::time::sleep(SCRAPED).await;

    let window = "?t=5m";
    for path in [
        format!("{base}/deployments/web{window}"),
        format!("{base}/pods/{web_pod}{window}"),
    ] {
        let item = raw(&path);
        assert_eq!(counts(&item), (ok, failed), "{path}: {item:#}");
        let p50 = metric(&item, "p50_response_latency").expect("p50");
        assert!(
            (100.0..=200.0).contains(&p50),
            "{path}: p50 {p50} ms not in the 100–200 ms bucket"
        );
        eprintln!("{path}: success {ok}, failure {failed}, p50 {p50} ms");
    }
    // The namespace: web's answers are all the HTTP it served so far.
    let nsitem = raw(&format!("{base}{window}"));
    assert_eq!(counts(&nsitem), (ok, failed), "{nsitem:#}");
    // Lists carry every deployment, with label selectors.
    let list = raw(&format!("{base}/deployments{window}"));
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["resource"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"web") && names.contains(&"client"),
        "{names:?}"
    );

    // Edges: client → web with both identities, over mTLS.
    let edges = raw(&format!("{base}/deployments/web/edges{window}"));
    let from_client = edges["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["edge"]["resource"]["name"] == "client")
        .unwrap_or_else(|| panic!("no edge from client: {edges:#}"))
        .clone();
    assert_eq!(from_client["edge"]["direction"], "from", "{from_client:#}");
    assert_eq!(from_client["edge"]["secured"], true, "{from_client:#}");
    let id = |sa: &str| format!("{sa}.{n}.serviceaccount.identity.tulle.cluster.local");
    assert_eq!(
        from_client["edge"]["clientId"],
        id("client"),
        "{from_client:#}"
    );
    assert_eq!(
        from_client["edge"]["serverId"],
        id("web"),
        "{from_client:#}"
    );
    assert_eq!(counts(&from_client), (ok, failed), "{from_client:#}");

    // The CLI reads the same API: `tulle stat` and `tulle edges`.
    let table = tulle(&["stat", "deploy", "-n", &n, "-t", "5m"]);
    eprintln!("tulle stat deploy -n {n} -t 5m:\n{table}");
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "MESHED",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
        "TCP_CONN",
    ] {
        assert!(header.contains(col), "{col} in {header}");
    }
    let web_row = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        web_row.contains("1/1") && web_row.contains("90.00%"),
        "{web_row}"
    );
    let rows: Value = serde_json::from_str(&tulle(&[
        "stat", "deploy", "web", "-n", &n, "-t", "5m", "-o", "json",
    ]))
    .expect("tulle stat -o json");
    let web_json = &rows[0];
    assert_eq!(web_json["name"], "web", "{rows:#}");
    assert!(
        (web_json["success"].as_f64().unwrap_or(0.0) - 0.9).abs() < 1e-9,
        "{rows:#}"
    );
    let p50 = web_json["latency_ms_p50"].as_f64().unwrap_or(0.0);
    assert!((100.0..=200.0).contains(&p50), "{rows:#}");
    let edges_table = tulle(&["edges", "deploy", "-n", &n, "-t", "5m"]);
    eprintln!("tulle edges deploy -n {n} -t 5m:\n{edges_table}");
    let edge_row = edges_table
        .lines()
        .find(|l| l.starts_with("client ") && l.contains(" web "))
        .unwrap_or_else(|| panic!("no client → web edge:\n{edges_table}"));
    assert!(edge_row.contains('√'), "mTLS marked: {edge_row}");

    // A proxy restart resets its counters: the counts go on from where they were, never
    // negative or huge (the second burst is smaller than the first, so the reset shows).
    restart_proxy(&n, &web_pod);
    wait::pods_ready(&kube, &n, "app=web", 1, STEP)
        .await
        .expect("web after the proxy restart");
    tokio::time::sleep(SCRAPED).await;
    let (ok2, failed2) = burst(&n, &client, &web_url, REQUESTS / 3);
    tokio::time::sleep(SCRAPED).await;
    let item = raw(&format!("{base}/deployments/web{window}"));
    assert_eq!(
        counts(&item),
        (ok + ok2, failed + failed2),
        "after the proxy restart: {item:#}"
    );

    // The TrafficSplit: the canary's answers (all failures) apart from the primary's.
    let apex = format!("http://web-apex.{n}.svc.cluster.local/");
    let (split_ok, split_failed) = burst(&n, &client, &apex, 200);
    tokio::time::sleep(SCRAPED).await;
    let split = raw(&format!("{base}/trafficsplits/web-apex{window}"));
    let backend = |name: &str| {
        split["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["backend"]["name"] == name)
            .unwrap_or_else(|| panic!("no backend {name}: {split:#}"))
            .clone()
    };
    let (primary, canary) = (backend("web-primary"), backend("web-canary"));
    let (p_ok, p_failed) = counts(&primary);
    let (c_ok, c_failed) = counts(&canary);
    assert_eq!(canary["backend"]["weight"], 50);
    assert_eq!(canary["backend"]["apex"], "web-apex");
    assert_eq!(c_ok, 0, "the canary only fails: {canary:#}");
    assert!(c_failed > 0 && p_ok > 0, "both backends served: {split:#}");
    assert_eq!(p_ok + c_ok, split_ok, "{split:#}");
    assert_eq!(p_failed + c_failed, split_failed, "{split:#}");
    eprintln!("split: primary {p_ok}/{p_failed}, canary {c_ok}/{c_failed}");

    // Security: the metrics API only answers the API server, and authorizes every caller.
    let ip = kubectl::run(&[
        "get",
        "pods",
        "-n",
        "tulle-system",
        "-l",
        "tulle.io/control-plane-component=controller",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ])
    .expect("controller pod IP");
    let path = format!("{base}/deployments/web");
    let (code, body) = direct(&ip, &path, None, "system:admin");
    assert_eq!(code, 401, "no front-proxy certificate: {body}");
    // A certificate of another CA fails the handshake (0) or is treated as none (401).
    let (code, body) = direct(&ip, &path, Some("admin"), "system:admin");
    assert!(
        code == 0 || code == 401,
        "a client certificate of another CA: {code} {body}"
    );
    let (code, body) = direct(&ip, &path, Some("front-proxy-client"), "nobody");
    assert_eq!(code, 403, "a user without RBAC: {body}");
    assert!(body.contains("metrics.smi-spec.io"), "{body}");
    let denied = kubectl::run(&["get", "--raw", &path, "--as", "nobody"]);
    assert!(
        denied.is_err(),
        "kubectl as a user without RBAC: {denied:?}"
    );
    wait::until(
        "the metrics API answering through the API server",
        Duration::from_secs(10),
        || async { kubectl::run(&["get", "--raw", &path]).ok() },
        || async { String::new() },
    )
    .await
    .expect("metrics API");
}
