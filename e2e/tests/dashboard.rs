//! The web dashboard on the real cluster, in a real headless Chromium: the mesh installed with
//! `tulle install` (dashboard included), a demo — a meshed `client` sending 20 requests/s to
//! `web` through a TrafficSplit (`web` → `web-primary` 100 / `web-canary` 0) — and the
//! dashboard opened with `tulle dashboard --show url` (its kube-rs port-forward).
//!
//! - every page loads with no console errors and no failed requests (screenshots saved to
//!   `docs/screenshots/`);
//! - the topology shows client → web over mTLS with the numbers of the metrics API;
//! - a TrafficSplit weight change, and then the canary's first traffic, reach the open page
//!   within 5 s without a reload; an invalid TrafficSplit is flagged with the controller's reason;
//! - the TrafficTarget `client-to-web` shows the requests it allowed, as the metrics API's
//!   `traffictargets` counts them; the overview shows the identity issuer's expiry (from
//!   tulle-identity's metrics);
//! - the pages are complete with JavaScript disabled;
//! - a wrong Host header is refused (a raw request, and DNS rebinding in the browser).
//!
//! Needs the images of `cluster/load-tulle` and `cluster/image testapp`, the `tulle` binary
//! (`$TULLE_BIN`), chromium and chromedriver (`scripts/setup`); cluster/e2e provides them.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tulle_e2e::browser::{Browser, Options};
use tulle_e2e::install::{bin, shared_mesh};
use tulle_e2e::traffic::{WEB_SERVICE, load_env, workload};
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(180);
const LIVE: Duration = Duration::from_secs(5);

/// `tulle dashboard --show url --port 0`, stopped on drop.
struct Dashboard {
    child: Child,
    base: String,
}

impl Dashboard {
    fn open() -> Dashboard {
        let mut child = Command::new(bin("TULLE_BIN"))
            .args(["dashboard", "--show", "url", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running tulle dashboard");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("http://") => break l.trim().to_string(),
                Some(Ok(_)) => continue,
                other => panic!("tulle dashboard printed no URL: {other:?}"),
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Dashboard { child, base }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn split(primary: u32, canary: u32) -> String {
    format!(
        "---\napiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {{name: web}}\nspec:\n  service: web\n  backends: [{{service: web-primary, weight: {primary}}}, {{service: web-canary, weight: {canary}}}]\n"
    )
}

/// `client` may call `web` on every port (a TCPRoute with no ports).
fn traffic_target() -> String {
    "---\napiVersion: specs.smi-spec.io/v1alpha4\nkind: TCPRoute\nmetadata: {name: all-ports}\nspec: {matches: {ports: []}}\n---\napiVersion: access.smi-spec.io/v1alpha3\nkind: TrafficTarget\nmetadata: {name: client-to-web}\nspec:\n  destination: {kind: ServiceAccount, name: web}\n  rules:\n  - {kind: TCPRoute, name: all-ports}\n  sources: [{kind: ServiceAccount, name: client}]\n".to_string()
}

/// Requests and connections the TrafficTarget `client-to-web` allowed in the window, as the
/// metrics API reports them.
fn api_allowed(ns: &str) -> f64 {
    let list = raw(&format!(
        "/apis/metrics.smi-spec.io/v1alpha1/namespaces/{ns}/traffictargets/client-to-web?t=30s"
    ));
    list["items"]
        .as_array()
        .and_then(|i| i.first())
        .map_or(0.0, |i| metric(i, "allow_count"))
}

fn service(name: &str, app: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    )
}

/// `kubectl get --raw PATH` as JSON.
fn raw(path: &str) -> Value {
    let out = kubectl::run(&["get", "--raw", path]).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
}

fn metric(item: &Value, name: &str) -> f64 {
    let v = item["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .and_then(|m| m["value"].as_str())
        .unwrap_or("0");
    match v.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().unwrap_or(0.0) / 1000.0,
        None => v.parse().unwrap_or(0.0),
    }
}

/// The client → web edge as the metrics API reports it: (secured, success rate, RPS).
fn api_edge(ns: &str) -> Option<(bool, f64, f64)> {
    let edges = raw(&format!(
        "/apis/metrics.smi-spec.io/v1alpha1/namespaces/{ns}/deployments/web/edges?t=30s"
    ));
    let e = edges["items"]
        .as_array()?
        .iter()
        .find(|e| e["edge"]["resource"]["name"] == "client" && e["edge"]["direction"] == "from")?
        .clone();
    let (s, f) = (metric(&e, "success_count"), metric(&e, "failure_count"));
    (s + f > 0.0).then(|| (e["edge"]["secured"] == true, s / (s + f), (s + f) / 30.0))
}

/// Requests the canary backend got in the window, as the metrics API reports them.
fn api_canary_requests(ns: &str) -> f64 {
    let list = raw(&format!(
        "/apis/metrics.smi-spec.io/v1alpha1/namespaces/{ns}/trafficsplits/web?t=30s"
    ));
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["backend"]["name"] == "web-canary")
        .map(|i| metric(i, "success_count") + metric(i, "failure_count"))
        .sum()
}

/// A raw HTTP/1.1 GET with the given Host: the status code.
fn status_with_host(base: &str, host: &str) -> u16 {
    let addr = base
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1");
    let mut s = std::net::TcpStream::connect(&addr).expect("connect to the port-forward");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The dashboard is meshed (injected by `tulle install`): its pod carries a ready `tulle-proxy`,
/// whose admin `/ready` answers 200 (it holds a certificate for its own identity, verified
/// against the anchors, and its policy) and which logged the certificate tulle-identity issued
/// to the dashboard's ServiceAccount.
async fn assert_dashboard_meshed() {
    let out = kubectl::run(&[
        "get",
        "pods",
        "-n",
        "tulle-system",
        "-l",
        "tulle.io/control-plane-component=dashboard",
        "-o",
        "json",
    ])
    .unwrap();
    let pods: Value = serde_json::from_str(&out).unwrap();
    let pod = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["metadata"]["deletionTimestamp"].is_null())
        .expect("a dashboard pod");
    let name = pod["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        pod["metadata"]["labels"]["tulle.io/proxied"], "true",
        "{pod}"
    );
    let proxy = pod["status"]["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "tulle-proxy")
        .unwrap_or_else(|| panic!("no tulle-proxy in the dashboard pod: {pod}"));
    assert_eq!(proxy["ready"], true, "{proxy}");
    let pf = kubectl::PortForward::start("tulle-system", &format!("pod/{name}"), 4191).unwrap();
    let (code, body) = kubectl::http_get(pf.local, "/ready").await.unwrap();
    assert_eq!(code, 200, "the dashboard's proxy is not ready: {body}");
    let id = "tulle-dashboard.tulle-system.serviceaccount.identity.tulle.cluster.local";
    let logs = kubectl::logs("tulle-system", name, Some("tulle-proxy")).unwrap();
    assert!(
        logs.lines()
            .any(|l| l.contains("certificate installed") && l.contains(id)),
        "the dashboard's proxy logged no certificate for {id}:\n{logs}"
    );
    eprintln!("dashboard pod {name}: meshed, its proxy ready with a certificate for {id}");
}

async fn until<F: AsyncFnMut() -> bool>(limit: Duration, mut check: F) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn page_text(b: &Browser, css: &str) -> String {
    let script =
        format!("const e = document.querySelector({css:?}); return e ? e.textContent.trim() : '';");
    b.eval(&script)
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn screenshots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn the_dashboard_in_a_browser_on_the_installed_mesh() {
    let t0 = Instant::now();
    let kube = tulle_e2e::client().await.expect("cluster");
    let _mesh = shared_mesh(&kube).await;
    wait::pods_ready(
        &kube,
        "tulle-system",
        "tulle.io/control-plane-component=dashboard",
        1,
        STEP,
    )
    .await
    .expect("the dashboard pod");
    assert_dashboard_meshed().await;
    let installed = t0.elapsed();

    let ns = TestNamespace::new("dash").await.expect("namespace");
    let n = ns.name.clone();
    kubectl::run(&["annotate", "namespace", &n, "tulle.io/inject=enabled"]).unwrap();
    let yaml = [
        workload("client", 1, "", &load_env(&n)),
        workload("web", 1, "", ""),
        workload("web-canary", 1, "", ""),
        WEB_SERVICE.to_string(),
        service("web-primary", "web"),
        service("web-canary", "web-canary"),
        split(100, 0),
        traffic_target(),
    ]
    .concat();
    ns.apply(&yaml).unwrap_or_else(|e| panic!("{e}"));
    for app in ["client", "web", "web-canary"] {
        wait::pods_ready(&kube, &n, &format!("app={app}"), 1, STEP)
            .await
            .expect(app);
    }
    // The metrics API sees client → web (two scrapes of the client's proxy).
    let seen = until(STEP, async || api_edge(&n).is_some()).await;
    assert!(seen.is_some(), "no client → web edge in the metrics API");
    let demo_ready = t0.elapsed();

    let dash = Dashboard::open();
    let base = dash.base.clone();
    eprintln!("tulle dashboard: {base}");

    // Every page, JavaScript on: live, no console errors, no failed requests; screenshots.
    let b = Browser::start(Options::default()).await.expect("chromium");
    let pages = [
        ("overview", "/".to_string()),
        ("namespace", format!("/namespaces/{n}")),
        ("workload", format!("/namespaces/{n}/deployments/web")),
        ("topology", format!("/topology?namespace={n}")),
        ("topology-all", "/topology".to_string()),
        ("smi", format!("/smi?namespace={n}")),
    ];
    for (_, path) in &pages {
        b.goto(&format!("{base}{path}")).await.unwrap();
        let live = until(LIVE, async || {
            page_text(&b, "#live-status").await.starts_with("live")
        })
        .await;
        assert!(
            live.is_some(),
            "{path}: no live update: {:?}",
            page_text(&b, "#live-status").await
        );
        let problems = b.problems(&base).await.unwrap();
        assert!(problems.is_empty(), "{path}: {problems:#?}");
    }
    let pages_checked = t0.elapsed();

    // The TrafficTarget's allowed count (client → web goes through it), as the API says.
    let allowed = until(STEP, async || api_allowed(&n) > 0.0).await;
    assert!(
        allowed.is_some(),
        "no allow_count for client-to-web in the metrics API"
    );
    b.goto(&format!("{base}/smi?namespace={n}")).await.unwrap();
    let cell = page_text(&b, "#target-client-to-web td.allowed").await;
    let api = api_allowed(&n);
    eprintln!("client-to-web allowed: page {cell:?}, metrics API {api}");
    let on_page: f64 = cell.parse().unwrap_or(0.0);
    assert!(
        on_page > 0.0 && on_page >= api * 0.5 && on_page <= api * 1.5 + 20.0,
        "allowed on the page {cell:?} vs {api} in the API"
    );
    // The overview: the issuer's expiry, read from tulle-identity's metrics.
    b.goto(&format!("{base}/")).await.unwrap();
    let issuer = b
        .eval("const l = [...document.querySelectorAll('li.check')].find(l => l.textContent.includes('issuer is valid')); return l ? l.className + ' ' + l.textContent : '';")
        .await
        .unwrap();
    let issuer = issuer.as_str().unwrap_or_default().to_string();
    eprintln!("issuer on the overview: {issuer:?}");
    assert!(
        issuer.contains("expires in") && !issuer.contains("fail"),
        "the overview does not show the issuer's expiry: {issuer:?}"
    );

    // The topology: client → web over mTLS, with the metrics API's numbers.
    b.goto(&format!("{base}/topology?namespace={n}"))
        .await
        .unwrap();
    let before = api_edge(&n).expect("edge");
    let edge = b
        .eval(&format!(
            "const e = document.querySelector('g.edge[data-src=\"{n}/client\"][data-dst=\"{n}/web\"]'); \
             return e ? Object.assign({{label: e.querySelector('.elabel').textContent}}, e.dataset) : null;"
        ))
        .await
        .unwrap();
    let after = api_edge(&n).expect("edge");
    eprintln!("topology edge {edge}; metrics API before {before:?}, after {after:?}");
    assert_eq!(edge["secured"], "true", "client → web is mTLS: {edge}");
    assert!(
        edge["label"].as_str().unwrap_or_default().contains("mTLS"),
        "{edge}"
    );
    let rate: f64 = edge["successRate"].as_str().unwrap().parse().unwrap();
    let rps: f64 = edge["rps"].as_str().unwrap().parse().unwrap();
    let (rlo, rhi) = (before.1.min(after.1), before.1.max(after.1));
    assert!(
        rate >= rlo - 0.005 && rate <= rhi + 0.005,
        "success rate {rate} vs API {before:?} {after:?}"
    );
    let (slo, shi) = (before.2.min(after.2), before.2.max(after.2));
    assert!(
        rps >= slo * 0.8 - 0.5 && rps <= shi * 1.2 + 0.5,
        "RPS {rps} vs API {before:?} {after:?}"
    );
    assert!(before.0 && after.0, "the API says mTLS too");

    // Live: the weight change, then the canary's traffic, on the open SMI page.
    b.goto(&format!("{base}/smi?namespace={n}")).await.unwrap();
    b.eval("window.notReloaded = true;").await.unwrap();
    let weight = "const r = document.querySelector('tr[data-backend=\"web-canary\"]'); return r ? r.dataset.weight : null;";
    assert_eq!(b.eval(weight).await.unwrap(), "0");
    let patched = Instant::now();
    kubectl::run(&[
        "patch", "trafficsplit.split.smi-spec.io", "web", "-n", &n, "--type", "merge", "-p",
        r#"{"spec":{"backends":[{"service":"web-primary","weight":50},{"service":"web-canary","weight":50}]}}"#,
    ])
    .expect("patch the split");
    let weight_shown = until(LIVE, async || b.eval(weight).await.unwrap() == "50").await;
    eprintln!("weight 0 → 50 on the open page after {weight_shown:?}");
    assert!(
        weight_shown.is_some(),
        "the new weight did not reach the open page within 5 s"
    );
    let canary_rps = "const c = document.querySelector('tr[data-backend=\"web-canary\"] td.rps'); return c ? c.textContent : '';";
    let page_has_traffic = async || {
        let t = b.eval(canary_rps).await.unwrap();
        let t = t.as_str().unwrap_or_default();
        !t.is_empty() && t != "—" && t != "0"
    };
    let mut api_at = None;
    let mut page_at = None;
    while patched.elapsed() < STEP && (api_at.is_none() || page_at.is_none()) {
        if api_at.is_none() && api_canary_requests(&n) > 0.0 {
            api_at = Some(patched.elapsed());
        }
        if page_at.is_none() && page_has_traffic().await {
            page_at = Some(patched.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "canary traffic after the patch: in the metrics API at {api_at:?}, on the open page at {page_at:?}"
    );
    let (api_at, page_at) = (
        api_at.expect("canary traffic in the API"),
        page_at.expect("canary traffic on the page"),
    );
    assert!(
        page_at <= api_at + LIVE,
        "the page showed the canary's traffic {:?} after the API",
        page_at - api_at
    );
    assert_eq!(
        b.eval("return window.notReloaded === true;").await.unwrap(),
        true,
        "no reload"
    );
    let problems = b.problems(&base).await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    let live_checked = t0.elapsed();

    // An invalid object (a backend Service that does not exist) is flagged on the open page
    // with the reason the controller gives in its Warning Event.
    ns.apply(&format!(
        "{}---\napiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {{name: broken}}\nspec:\n  service: orphan\n  backends: [{{service: orphan-v2, weight: 1}}]\n",
        service("orphan", "web")
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let flagged = until(Duration::from_secs(60), async || {
        b.eval("return !!document.querySelector('article.split.invalid#split-broken') && !!document.querySelector('tr[data-reason=\"BackendNotFound\"]');")
            .await
            .unwrap()
            == true
    })
    .await;
    eprintln!("invalid split flagged on the open page after {flagged:?}");
    assert!(
        flagged.is_some(),
        "the BackendNotFound Event of split broken is not shown: {}",
        page_text(&b, "#problems").await
    );
    assert!(page_text(&b, "#problems").await.contains("orphan-v2"));

    // Screenshots of each page with the canary taking half the traffic, once the 30 s window
    // holds only the new split.
    tokio::time::sleep(Duration::from_secs(30)).await;
    for (name, path) in &pages {
        if *name == "topology-all" {
            continue;
        }
        b.goto(&format!("{base}{path}")).await.unwrap();
        b.full_screenshot(&screenshots().join(format!("{name}.png")), 2400)
            .await
            .unwrap();
        b.client.set_window_size(1400, 1000).await.unwrap();
        let problems = b.problems(&base).await.unwrap();
        assert!(problems.is_empty(), "{path}: {problems:#?}");
    }
    b.close().await;

    // JavaScript off: the pages are complete as loaded.
    let b = Browser::start(Options {
        javascript: false,
        ..Default::default()
    })
    .await
    .expect("chromium");
    for (_, path) in &pages {
        b.goto(&format!("{base}{path}")).await.unwrap();
        let html = b.client.source().await.unwrap();
        assert!(
            html.contains("class=\"fragment\"") && !html.contains("Cannot show"),
            "{path}: {html}"
        );
        let problems = b.problems(&base).await.unwrap();
        assert!(
            problems.is_empty(),
            "{path} without JavaScript: {problems:#?}"
        );
    }
    b.goto(&format!("{base}/topology?namespace={n}"))
        .await
        .unwrap();
    let html = b.client.source().await.unwrap();
    assert!(
        html.contains(&format!(
            "data-src=\"{n}/client\" data-dst=\"{n}/web\" data-secured=\"true\""
        )),
        "{html}"
    );
    b.close().await;

    // A wrong Host is refused: a raw request, and DNS rebinding in the browser.
    assert_eq!(status_with_host(&base, "evil.example"), 403);
    assert_eq!(status_with_host(&base, "localhost"), 200);
    let port = base.rsplit(':').next().unwrap().to_string();
    let b = Browser::start(Options {
        host_rules: Some("MAP rebind.test 127.0.0.1".into()),
        ..Default::default()
    })
    .await
    .expect("chromium");
    b.goto(&format!("http://rebind.test:{port}/"))
        .await
        .unwrap();
    let body = b.client.source().await.unwrap();
    assert!(body.contains("403 Forbidden"), "{body}");
    b.close().await;
    drop(dash);
    eprintln!(
        "timings: mesh installed {installed:?}, demo with traffic {demo_ready:?}, pages {pages_checked:?}, live {live_checked:?} (then 30 s before the screenshots), all {:?}",
        t0.elapsed()
    );
}
