//! The Prometheus metrics mode on the real cluster: a real Prometheus (built by
//! `cluster/tools`) scrapes the meshed pods with the job of docs/prometheus.md, and tulle's
//! golden metrics are read from it through `tulle_metrics::promql::Prometheus` — the source
//! the controller uses with `--prometheus-url`.
//!
//! A meshed `client` sends a steady 10 req/s to a meshed `web` (the testapp's `LOAD_URL`) and
//! counts its answers. Over a window of about a minute, `golden::stat` of Deployment `web`
//! (and of its pod) must count what the client counted within one scrape interval's worth of
//! requests (Prometheus' `increase` extrapolates between 10 s scrapes), with no failures and
//! a p50 in the bucket of web's 50 ms answer delay; `golden::edges` must show client → web over mTLS with web's identity. Then
//! a third meshed Deployment, `burst`, sends exactly 200 requests (`testapp burst`): the raw
//! counters in Prometheus must show exactly 200 on both sides — the client proxy's outbound
//! series labelled `deployment="burst"`, `dst_deployment="web"`, and web's inbound series
//! from burst's identity — which proves the relabelling (namespace, pod, owner labels from
//! the injector) and the scrape of the native sidecar's admin port. Last, the controller is
//! switched to this Prometheus (`TULLE_CONTROLLER_PROMETHEUS_URL`, what `tulle install
//! --prometheus-url` sets) and the SMI Traffic Metrics API, read with `kubectl get --raw`, must
//! count what the client counted over a minute.

use std::time::{Duration, Instant};

use tulle_e2e::traffic::{load, pods, tcp_probed_workload};
use tulle_e2e::{TestNamespace, kubectl, metrics_api, prometheus, wait};
use tulle_metrics::golden::{self, Filter, Kind, ResourceRef};
use tulle_metrics::promql::Prometheus;

const STEP: Duration = Duration::from_secs(180);
const RPS: u64 = 10;
const BURST: u64 = 200;
const WINDOW: Duration = Duration::from_secs(60);

/// web answers after 50 ms: its p50 falls in the (50, 100] ms bucket of the latency histogram.
const WEB_ENV: &str = "        - {name: DELAY_MS, value: \"50\"}\n";
/// The latency bucket the p50 must fall in.
const P50_BUCKET: std::ops::RangeInclusive<f64> = 50.0..=100.0;

const WEB_SERVICE: &str = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";

fn id(sa: &str, ns: &str) -> String {
    format!("{sa}.{ns}.serviceaccount.identity.tulle.cluster.local")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn prometheus_mode_counts_what_the_client_sent() {
    let t0 = Instant::now();
    let kube = tulle_e2e::client().await.expect("cluster");
    let _mesh = prometheus::mesh(&kube).await;
    let prom = prometheus::deploy(&kube).await;
    eprintln!(
        "[{:>3}s] Prometheus ready at {}",
        t0.elapsed().as_secs(),
        prom.url()
    );

    let ns = TestNamespace::new("prom").await.expect("namespace");
    let n = ns.name.clone();
    kubectl::run(&["annotate", "namespace", &n, "tulle.io/inject=enabled"]).unwrap();
    let load_env = format!(
        "        - {{name: LOAD_URL, value: \"http://web.{n}.svc.cluster.local/\"}}\n        - {{name: LOAD_RPS, value: \"{RPS}\"}}\n"
    );
    let yaml = [
        tcp_probed_workload("web", "web", WEB_ENV),
        WEB_SERVICE.to_string(),
        tcp_probed_workload("client", "client", &load_env),
        tcp_probed_workload("burst", "burst", ""),
    ]
    .concat();
    ns.apply(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let mut names = Vec::new();
    for app in ["web", "client", "burst"] {
        wait::pods_ready(&kube, &n, &format!("app={app}"), 1, STEP)
            .await
            .expect(app);
        let pod = pods(&n, &format!("app={app}")).remove(0);
        prometheus::assert_owner_label(&n, &pod, app);
        names.push(pod);
    }
    let (web_pod, client) = (names[0].clone(), names[1].clone());
    eprintln!("[{:>3}s] pods ready: {names:?}", t0.elapsed().as_secs());
    prom.until_scraped(&n, &names, Duration::from_secs(90))
        .await;
    // Two more scrapes: web's series have samples before the window starts.
    tokio::time::sleep(2 * prometheus::SCRAPE_INTERVAL).await;
    eprintln!("[{:>3}s] all three proxies scraped", t0.elapsed().as_secs());

    // The steady load over about a minute, as the client counted it and as Prometheus has it.
    let source = Prometheus::new(&prom.url()).expect("Prometheus URL");
    let before = load(&n, &client);
    let start = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let after = load(&n, &client);
    let window = Duration::from_secs(start.elapsed().as_secs_f64().round() as u64);
    let deployments = Filter {
        kind: Kind::Deployment,
        namespace: Some(n.clone()),
        name: Some("web".into()),
    };
    let stat = golden::stat(&source, &deployments, window)
        .await
        .expect("golden::stat from Prometheus");
    let pod_stat = golden::stat(
        &source,
        &Filter {
            kind: Kind::Pod,
            namespace: Some(n.clone()),
            name: Some(web_pod.clone()),
        },
        window,
    )
    .await
    .expect("golden::stat of the pod");
    let edges = golden::edges(&source, &deployments, window)
        .await
        .expect("golden::edges from Prometheus");
    let sent = after.ok - before.ok;
    // (Requests sent before web was ready failed with 503s; none may fail in the window.)
    assert_eq!(
        after.failed, before.failed,
        "the client saw failures in the window: {}",
        after.raw
    );
    let web = ResourceRef {
        kind: Kind::Deployment,
        namespace: n.clone(),
        name: "web".into(),
    };
    let g = stat
        .get(&web)
        .unwrap_or_else(|| panic!("no stat for web: {stat:#?}"));
    let tolerance = (RPS * prometheus::SCRAPE_INTERVAL.as_secs()) as f64;
    eprintln!(
        "[{:>3}s] window {window:?}: client counted {sent} answers; Prometheus: success {:.1}, failure {:.1}, p50 {:?} ms, p99 {:?} ms (tolerance ±{tolerance})",
        t0.elapsed().as_secs(),
        g.success,
        g.failure,
        g.latency.p50,
        g.latency.p99
    );
    assert!(
        (g.success - sent as f64).abs() <= tolerance,
        "success_count {} vs {sent} counted by the client (±{tolerance}): {g:#?}",
        g.success
    );
    assert_eq!(g.failure, 0.0, "{g:#?}");
    assert!(
        g.latency.p50.is_some_and(|p| P50_BUCKET.contains(&p)),
        "p50 not in the bucket of web's 50 ms: {g:#?}"
    );
    let p = pod_stat
        .values()
        .next()
        .unwrap_or_else(|| panic!("no stat for pod {web_pod}: {pod_stat:#?}"));
    assert!(
        (p.success - g.success).abs() < 1e-6,
        "the pod's count equals its Deployment's: {p:#?} vs {g:#?}"
    );
    let edge = edges
        .iter()
        .find(|e| e.src.name == "client" && e.dst == web)
        .unwrap_or_else(|| panic!("no edge client -> web: {edges:#?}"));
    assert!(edge.secured, "{edge:#?}");
    assert_eq!(edge.server_id.as_deref(), Some(id("web", &n).as_str()));
    assert!(
        (edge.golden.success - sent as f64).abs() <= tolerance,
        "edge success {} vs {sent} (±{tolerance}): {edge:#?}",
        edge.golden.success
    );
    eprintln!(
        "[{:>3}s] edge client -> web: mTLS as {:?}, success {:.1}",
        t0.elapsed().as_secs(),
        edge.server_id,
        edge.golden.success
    );

    // Exactly BURST requests from `burst`: the raw counters in Prometheus, both sides.
    let burster = names[2].clone();
    let out = kubectl::exec(
        &n,
        &burster,
        Some("app"),
        &[
            "/usr/local/bin/testapp",
            "burst",
            &format!("http://web.{n}.svc.cluster.local/"),
            &BURST.to_string(),
        ],
    )
    .expect("burst");
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["ok"], BURST, "{out}");
    let outbound = format!(
        r#"sum(response_total{{namespace="{n}",deployment="burst",direction="outbound",dst_deployment="web",dst_namespace="{n}",tls="true"}})"#
    );
    let inbound = format!(
        r#"sum(response_total{{namespace="{n}",deployment="web",pod="{web_pod}",direction="inbound",client_id="{}",classification="success"}})"#,
        id("burst", &n)
    );
    let counted = wait::until(
        "Prometheus to have scraped the burst on both sides",
        Duration::from_secs(45),
        || async {
            let o = prom.sum(&outbound).await.ok()?;
            let i = prom.sum(&inbound).await.ok()?;
            (o == BURST as f64 && i == BURST as f64).then_some((o, i))
        },
        || async {
            format!(
                "{outbound} = {:?}\n{inbound} = {:?}",
                prom.sum(&outbound).await,
                prom.sum(&inbound).await
            )
        },
    )
    .await
    .expect("exact counts");
    eprintln!(
        "[{:>3}s] burst of {BURST}: outbound {} / inbound {} in Prometheus",
        t0.elapsed().as_secs(),
        counted.0,
        counted.1
    );

    // The SMI Traffic Metrics API in Prometheus mode: the controller (--prometheus-url, as
    // `tulle install --prometheus-url` sets it) answers from this Prometheus.
    let _mode = PrometheusMode::set(&format!(
        "http://prometheus.{}.svc.cluster.local:9090",
        prometheus::NAMESPACE
    ));
    let path = format!("/apis/metrics.smi-spec.io/v1alpha1/namespaces/{n}/deployments/web");
    wait::until(
        "the metrics API answering from Prometheus",
        STEP,
        || async { kubectl::run(&["get", "--raw", &format!("{path}?t=1m")]).ok() },
        || async {
            kubectl::run(&[
                "get",
                "apiservice",
                "v1alpha1.metrics.smi-spec.io",
                "-o",
                "yaml",
            ])
            .unwrap_or_default()
        },
    )
    .await
    .expect("metrics API");
    let before = load(&n, &client);
    tokio::time::sleep(WINDOW).await;
    let after = load(&n, &client);
    let item = metrics_api::raw(&format!("{path}?t={}s", WINDOW.as_secs()));
    let (ok, failed) = metrics_api::counts(&item);
    let sent = (after.ok - before.ok) as i64;
    eprintln!(
        "[{:>3}s] the API from Prometheus over {WINDOW:?}: success {ok}, failure {failed}; the client counted {sent}",
        t0.elapsed().as_secs()
    );
    assert!(
        (ok - sent).abs() as f64 <= tolerance,
        "API success_count {ok} vs {sent} counted by the client (±{tolerance}): {item:#}"
    );
    assert_eq!(failed, 0, "{item:#}");
    assert!(
        metrics_api::metric(&item, "p50_response_latency").is_some_and(|p| P50_BUCKET.contains(&p)),
        "{item:#}"
    );
}

/// Points the installed controller at a Prometheus (`TULLE_CONTROLLER_PROMETHEUS_URL`) until
/// dropped, then back to its embedded store.
struct PrometheusMode;

impl PrometheusMode {
    fn set(url: &str) -> Self {
        set_controller_env(&format!("TULLE_CONTROLLER_PROMETHEUS_URL={url}"));
        PrometheusMode
    }
}

impl Drop for PrometheusMode {
    fn drop(&mut self) {
        set_controller_env("TULLE_CONTROLLER_PROMETHEUS_URL-");
    }
}

fn set_controller_env(change: &str) {
    let deploy = ["-n", "tulle-system", "deployment/tulle-controller"];
    kubectl::run(&[&["set", "env"][..], &deploy, &[change]].concat())
        .unwrap_or_else(|e| panic!("kubectl set env {change}: {e}"));
    kubectl::run(&[&["rollout", "status", "--timeout=180s"][..], &deploy].concat())
        .unwrap_or_else(|e| panic!("the controller after {change}: {e}"));
}
