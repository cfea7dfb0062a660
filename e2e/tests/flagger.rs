//! Flagger drives a real canary through tulle's TrafficSplit on the real cluster.
//!
//! Flagger (built by `cluster/tools`) runs on the host as a child process with
//! `-mesh-provider=linkerd`: it creates `split.smi-spec.io/v1alpha1` TrafficSplits (tulle
//! serves them through its conversion webhook) and judges the canary with its built-in
//! `request-success-rate` query against the real Prometheus of `tulle_e2e::prometheus`, which
//! needs the `namespace` and `deployment` labels of the documented scrape configuration.
//!
//! A meshed Deployment `podinfo` (the testapp) gets steady traffic (20 req/s) from a meshed
//! `loadgen` through the apex Service `podinfo` that Flagger creates. Rollout 1 (a new env
//! value) must be promoted — phase `Succeeded`, the canary having received traffic through
//! the split on the way, `podinfo-primary` running the new template, the split back to
//! primary 100. Rollout 2 answers 500 to half of its requests (`FAIL_PERCENT=50`): the
//! failed checks reach the threshold and Flagger rolls back — phase `Failed`, the split back
//! to primary 100, the canary scaled to zero and the load failing no more.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tulle_e2e::traffic::{load, pods, tcp_probed_workload};
use tulle_e2e::{TestNamespace, kubectl, prometheus, wait};

const STEP: Duration = Duration::from_secs(180);
const ROLLOUT: Duration = Duration::from_secs(240);

fn podinfo(rev: &str, extra_env: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: podinfo}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      serviceAccountName: podinfo
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: {image}
        imagePullPolicy: Never
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: REV, value: "{rev}"}}
{extra_env}        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 2}}
        securityContext: {{runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#,
        image = tulle_e2e::testapp_image(),
    )
}

/// The steady 20 req/s client of podinfo.
fn loadgen(ns: &str) -> String {
    let env = format!(
        "        - {{name: LOAD_URL, value: \"http://podinfo.{ns}.svc.cluster.local/\"}}\n        - {{name: LOAD_RPS, value: \"20\"}}\n"
    );
    tcp_probed_workload("loadgen", "loadgen", &env)
}

/// The Canary: 15 s steps of 25 % up to 50 %, rolled back after 4 failed checks; Flagger's
/// built-in linkerd request-success-rate over 30 s must stay at 99 % or more.
const CANARY: &str = r#"---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  progressDeadlineSeconds: 120
  service: {port: 80, targetPort: 8080}
  analysis:
    interval: 15s
    threshold: 4
    maxWeight: 50
    stepWeight: 25
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 30s
"#;

/// Flagger on the host; killed when dropped (its log is kept in a temp file, printed on failure).
struct Flagger {
    child: Child,
    log: std::path::PathBuf,
}

impl Flagger {
    fn start(dir: &str, ns: &str, prometheus_url: &str) -> Self {
        let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG (run with cluster/e2e)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log = std::env::temp_dir().join(format!("flagger-{ns}.log"));
        let file = std::fs::File::create(&log).expect("Flagger's log file");
        let child = Command::new(format!("{dir}/flagger"))
            .args([
                &format!("-kubeconfig={kubeconfig}"),
                "-mesh-provider=linkerd",
                &format!("-metrics-server={prometheus_url}"),
                &format!("-namespace={ns}"),
                "-log-level=info",
                "-control-loop-interval=5s",
                &format!("-port={port}"),
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {dir}/flagger: {e}"));
        eprintln!(
            "Flagger started (pid {}), log {}",
            child.id(),
            log.display()
        );
        Flagger { child, log }
    }

    fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Flagger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- last lines of Flagger's log:\n{}", self.tail(40));
        }
    }
}

/// Flagger's CRDs (canaries, metrictemplates, alertproviders); deleted when dropped.
struct Crds(String);

impl Drop for Crds {
    fn drop(&mut self) {
        if std::env::var_os("TULLE_E2E_KEEP").is_none() {
            let _ = kubectl::run(&[
                "delete",
                "-f",
                &self.0,
                "--ignore-not-found",
                "--wait=false",
            ]);
        }
    }
}

fn json(args: &[&str]) -> Value {
    let out = kubectl::run(args).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// (phase, canaryWeight, failedChecks, condition message) of the Canary.
fn status(ns: &str) -> (String, i64, i64, String) {
    let c = json(&["get", "canary", "podinfo", "-n", ns, "-o", "json"]);
    let s = &c["status"];
    (
        s["phase"].as_str().unwrap_or("").to_string(),
        s["canaryWeight"].as_i64().unwrap_or(0),
        s["failedChecks"].as_i64().unwrap_or(0),
        s["conditions"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

/// The split's weights as shares in percent (canary, primary), read as v1alpha4: tulle's
/// conversion turns Flagger's v1alpha1 quantities into relative milli-units (100 -> 100000).
fn weights(ns: &str) -> (i64, i64) {
    let ts = json(&[
        "get",
        "trafficsplits.v1alpha4.split.smi-spec.io",
        "podinfo",
        "-n",
        ns,
        "-o",
        "json",
    ]);
    let w = |svc: &str| {
        ts["spec"]["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["service"] == svc)
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or_else(|| panic!("no weight for backend {svc}: {ts}"))
    };
    let (c, p) = (w("podinfo-canary"), w("podinfo-primary"));
    let total = (c + p).max(1);
    (c * 100 / total, p * 100 / total)
}

/// Polls the Canary until it reaches `want` (panics on `Failed` when not wanted, or after
/// `timeout`), printing every change; returns the highest canary weight seen on the way.
async fn until_phase(
    ns: &str,
    want: &str,
    timeout: Duration,
    t0: Instant,
    flagger: &Flagger,
) -> i64 {
    let deadline = Instant::now() + timeout;
    let mut last = (String::new(), -1, -1, String::new());
    let mut max_weight = 0;
    loop {
        let s = status(ns);
        max_weight = max_weight.max(s.1);
        if s != last {
            eprintln!(
                "[{:>3}s] canary: phase {} weight {} failedChecks {}: {}",
                t0.elapsed().as_secs(),
                s.0,
                s.1,
                s.2,
                s.3
            );
            last = s.clone();
        }
        if s.0 == want {
            return max_weight;
        }
        assert!(
            s.0 != "Failed" || want == "Failed",
            "the canary failed: {s:?}\n{}\n--- Flagger:\n{}",
            events(ns),
            flagger.tail(30)
        );
        assert!(
            Instant::now() < deadline,
            "no {want} after {timeout:?}: {s:?}\n{}\n--- Flagger:\n{}",
            events(ns),
            flagger.tail(30)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn events(ns: &str) -> String {
    kubectl::run(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "involvedObject.kind=Canary",
        "-o",
        "custom-columns=TYPE:.type,MESSAGE:.message",
    ])
    .unwrap_or_default()
}

fn env_of(ns: &str, deployment: &str, name: &str) -> Option<String> {
    let d = json(&["get", "deployment", deployment, "-n", ns, "-o", "json"]);
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(String::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn flagger_promotes_and_rolls_back_through_the_traffic_split() {
    let t0 = Instant::now();
    let kube = tulle_e2e::client().await.expect("cluster");
    let _mesh = prometheus::mesh(&kube).await;
    let prom = prometheus::deploy(&kube).await;
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster/tools");
    let out = Command::new(tools)
        .arg("flagger")
        .stdin(Stdio::null())
        .output()
        .expect("cluster/tools flagger");
    assert!(
        out.status.success(),
        "cluster/tools flagger: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let crd = format!("{dir}/crd.yaml");
    let _crds = Crds(crd.clone());
    kubectl::run(&["apply", "--server-side", "--force-conflicts", "-f", &crd])
        .expect("Flagger's CRDs");
    kubectl::run(&[
        "wait",
        "--for=condition=Established",
        "crd/canaries.flagger.app",
        "crd/metrictemplates.flagger.app",
        "crd/alertproviders.flagger.app",
        "--timeout=60s",
    ])
    .expect("Flagger's CRDs established");
    eprintln!(
        "[{:>3}s] Prometheus at {}, Flagger's CRDs applied",
        t0.elapsed().as_secs(),
        prom.url()
    );

    let ns = TestNamespace::new("flagger").await.expect("namespace");
    let n = ns.name.clone();
    kubectl::run(&["annotate", "namespace", &n, "tulle.io/inject=enabled"]).unwrap();
    ns.apply(&[podinfo("1", ""), loadgen(&n)].concat())
        .unwrap_or_else(|e| panic!("{e}"));
    for app in ["podinfo", "loadgen"] {
        wait::pods_ready(&kube, &n, &format!("app={app}"), 1, STEP)
            .await
            .expect(app);
    }
    let podinfo_pod = pods(&n, "app=podinfo").remove(0);
    prometheus::assert_owner_label(&n, &podinfo_pod, "podinfo");
    let client = pods(&n, "app=loadgen").remove(0);

    let flagger = Flagger::start(&dir, &n, &prom.url());
    ns.apply(CANARY).unwrap_or_else(|e| panic!("{e}"));
    until_phase(&n, "Initialized", STEP, t0, &flagger).await;
    assert_eq!(weights(&n), (0, 100), "the split after initialization");
    let apiv = kubectl::run(&[
        "get",
        "trafficsplits.split.smi-spec.io",
        "podinfo",
        "-n",
        &n,
        "-o",
        "jsonpath={.metadata.managedFields[0].apiVersion}",
    ])
    .unwrap_or_default();
    eprintln!(
        "[{:>3}s] initialized: podinfo-primary serves, TrafficSplit podinfo written as {apiv}",
        t0.elapsed().as_secs()
    );
    // The load reaches the primary through the apex Service Flagger created.
    wait::until(
        "the load answered by podinfo-primary",
        Duration::from_secs(60),
        || async {
            let l = load(&n, &client);
            l.by_pod
                .keys()
                .any(|p| p.starts_with("podinfo-primary-"))
                .then_some(())
        },
        || async { load(&n, &client).raw.to_string() },
    )
    .await
    .expect("traffic to the primary");

    // Rollout 1: a healthy new revision is promoted.
    let before = load(&n, &client);
    kubectl::run(&["set", "env", "deployment/podinfo", "-n", &n, "REV=2"]).expect("set env");
    let t1 = Instant::now();
    let max_weight = until_phase(&n, "Succeeded", ROLLOUT, t0, &flagger).await;
    let after = load(&n, &client);
    let canary_answers: u64 = after
        .by_pod
        .iter()
        .filter(|(p, _)| p.starts_with("podinfo-") && !p.starts_with("podinfo-primary-"))
        .map(|(p, c)| c - before.by_pod.get(p).copied().unwrap_or(0))
        .sum();
    eprintln!(
        "[{:>3}s] rollout 1 promoted in {}s: canary weight up to {max_weight}, the canary answered {canary_answers} requests; load {} ok / {} failed during it",
        t0.elapsed().as_secs(),
        t1.elapsed().as_secs(),
        after.ok - before.ok,
        after.failed - before.failed
    );
    assert!(max_weight >= 25, "the canary never got weight");
    assert!(
        canary_answers > 0,
        "no request reached the canary through the split: {}",
        after.raw
    );
    assert_eq!(env_of(&n, "podinfo-primary", "REV").as_deref(), Some("2"));
    assert_eq!(weights(&n), (0, 100), "the split after promotion");

    // Rollout 2: half of the new revision's answers are 500s; Flagger rolls back.
    kubectl::run(&[
        "set",
        "env",
        "deployment/podinfo",
        "-n",
        &n,
        "REV=3",
        "FAIL_PERCENT=50",
    ])
    .expect("set env");
    let t2 = Instant::now();
    let before = load(&n, &client);
    until_phase(&n, "Failed", ROLLOUT, t0, &flagger).await;
    let after = load(&n, &client);
    eprintln!(
        "[{:>3}s] rollout 2 rolled back in {}s; the load saw {} failures meanwhile",
        t0.elapsed().as_secs(),
        t2.elapsed().as_secs(),
        after.failed - before.failed
    );
    assert!(
        after.failed > before.failed,
        "the failing canary got traffic"
    );
    assert_eq!(weights(&n), (0, 100), "the split after the rollback");
    assert_eq!(env_of(&n, "podinfo-primary", "REV").as_deref(), Some("2"));
    assert_eq!(env_of(&n, "podinfo-primary", "FAIL_PERCENT"), None);
    let replicas =
        json(&["get", "deployment", "podinfo", "-n", &n, "-o", "json"])["spec"]["replicas"]
            .as_i64();
    assert_eq!(replicas, Some(0), "the canary is scaled to zero");
    // The load is healthy again (the split reached the client's proxy).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = load(&n, &client);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = load(&n, &client);
    assert_eq!(b.failed, a.failed, "failures after the rollback: {}", b.raw);
    assert!(b.ok > a.ok, "{}", b.raw);
    let _ = std::io::stderr().flush();
    eprintln!("[{:>3}s] done", t0.elapsed().as_secs());
}
