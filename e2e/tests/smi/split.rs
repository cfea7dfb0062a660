//! SMI TrafficSplit on the real cluster, on the mesh installed by `tulle install`: the
//! canary scenario. The apex `web` selects both versions; `web-v1` and `web-v2`
//! select one each; a meshed client measures who answers with bursts of requests
//! (`tulle-testapp burst`, counted per pod) while a steady 20 req/s load runs beside them.
//!
//! Covered: no split; 100/0, 0/100, 90/10 and 50/50 for v1alpha1 (Quantity weights through
//! the conversion webhook), v1alpha2, v1alpha3 and v1alpha4 objects; a progressive shift
//! under load with no failed request; an absent backend created later; the apex as a
//! backend; a backend without the apex's port; all-zero weights (503 and a Warning Event);
//! header (both forms) and path `matches` for HTTP/1 and HTTP/2; opaque TCP split per
//! connection; Flagger-style string weights; an unparseable object beside a valid one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tulle_e2e::traffic::{load, pods};
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(180);
/// Time allowed for a split change to reach the client's proxy (the target is 1 s).
const SETTLE: Duration = Duration::from_secs(2);

/// A version of the app: Deployment `web-<v>` (label `version: <v>`), HTTP on 8080 and the
/// speaks-first TCP protocol on 9000.
fn version(ns: &str, v: &str, app: &str) -> String {
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web-{v}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {app}, version: {v}}}}}
  template:
    metadata: {{labels: {{app: {app}, version: {v}}}}}
    spec:
      serviceAccountName: web
      containers:
      - name: app
        image: {image}
        imagePullPolicy: Never
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: POD_NAMESPACE, value: {ns}}}
        - {{name: TCP_PORT, value: "9000"}}
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
        securityContext: {{runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#,
        image = tulle_e2e::testapp_image(),
    )
}

/// Service `name` over the pods matching `selector`: HTTP 80 → 8080, and TCP 6379 → 9000
/// (6379 is one of the proxy's default opaque ports) unless `http_only`.
fn service(name: &str, selector: &str, http_port: u16, http_only: bool) -> String {
    let tcp = if http_only {
        String::new()
    } else {
        ", {name: tcp, port: 6379, targetPort: 9000}".to_string()
    };
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{{selector}}}\n  ports: [{{name: http, port: {http_port}, targetPort: 8080}}{tcp}]\n"
    )
}

fn client(ns: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: web}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: client}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata: {{labels: {{app: client}}}}
    spec:
      serviceAccountName: client
      containers:
      - name: app
        image: {image}
        imagePullPolicy: Never
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: LOAD_URL, value: "http://web.{ns}.svc.cluster.local/"}}
        - {{name: LOAD_RPS, value: "20"}}
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
        securityContext: {{runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#,
        image = tulle_e2e::testapp_image(),
    )
}

/// A TrafficSplit of apex `web` in `api_version` with `backends` (service, weight as YAML).
fn split(name: &str, api_version: &str, backends: &[(&str, &str)], matches: &str) -> String {
    let b: Vec<String> = backends
        .iter()
        .map(|(s, w)| format!("{{service: {s}, weight: {w}}}"))
        .collect();
    format!(
        "---\napiVersion: split.smi-spec.io/{api_version}\nkind: TrafficSplit\nmetadata: {{name: {name}}}\nspec:\n  service: web\n  backends: [{}]\n{matches}",
        b.join(", ")
    )
}

/// Answers of a burst, by version (`v1`, `v2`, `v3`), plus failures by reason.
#[derive(Debug, Default)]
struct Shares {
    by_version: BTreeMap<String, u64>,
    failed: u64,
    errors: Value,
}

impl Shares {
    fn total(&self) -> u64 {
        self.by_version.values().sum::<u64>() + self.failed
    }
    fn share(&self, v: &str) -> f64 {
        self.by_version.get(v).copied().unwrap_or(0) as f64 / self.total().max(1) as f64
    }
    fn count(&self, v: &str) -> u64 {
        self.by_version.get(v).copied().unwrap_or(0)
    }
}

struct Client {
    ns: String,
    pod: String,
}

impl Client {
    fn run(&self, args: &[&str]) -> Shares {
        let mut cmd = vec!["/usr/local/bin/testapp"];
        cmd.extend_from_slice(args);
        let out = kubectl::exec(&self.ns, &self.pod, Some("app"), &cmd)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        let mut by_version = BTreeMap::new();
        for (pod, n) in v["by_pod"].as_object().into_iter().flatten() {
            // web-v1-<hash>-<id> → v1
            let version = pod.split('-').nth(1).unwrap_or("?").to_string();
            *by_version.entry(version).or_default() += n.as_u64().unwrap_or(0);
        }
        Shares {
            by_version,
            failed: v["failed"].as_u64().unwrap_or(0),
            errors: v["errors"].clone(),
        }
    }

    /// `n` GETs of `path` on the apex.
    fn burst(&self, path: &str, n: u32, extra: &[&str]) -> Shares {
        let url = format!("http://web.{}.svc.cluster.local{path}", self.ns);
        let n = n.to_string();
        let mut args = vec!["burst", url.as_str(), n.as_str()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `n` connections to the apex's opaque TCP port.
    fn tcp_burst(&self, n: u32) -> Shares {
        let addr = format!("web.{}.svc.cluster.local:6379", self.ns);
        self.run(&["tcp-burst", &addr, &n.to_string()])
    }
}

fn assert_share(s: &Shares, v: &str, want: f64, tolerance: f64, what: &str) {
    assert_eq!(s.failed, 0, "{what}: failed requests: {:?}", s.errors);
    let got = s.share(v);
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {v} got {:.1} % of {} answers, want {:.1} % ± {:.1}: {:?}",
        got * 100.0,
        s.total(),
        want * 100.0,
        tolerance * 100.0,
        s.by_version
    );
    eprintln!(
        "{what}: {v} {:.1} % of {} ({:?})",
        got * 100.0,
        s.total(),
        s.by_version
    );
}

/// Requests for a share of 50 % need more samples than 400 to keep ±5 points at > 3 σ.
fn samples(v2_share: f64) -> u32 {
    if v2_share > 0.2 && v2_share < 0.8 {
        1200
    } else {
        400
    }
}

/// Waits for a Warning Event with `reason` on TrafficSplit `name`.
async fn warning(ns: &str, name: &str, reason: &str) {
    let selector = format!(
        "involvedObject.kind=TrafficSplit,involvedObject.name={name},reason={reason},type=Warning"
    );
    wait::until(
        &format!("a {reason} Warning Event on TrafficSplit {name}"),
        Duration::from_secs(60),
        || async {
            let out = kubectl::run(&[
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                &selector,
                "-o",
                "name",
            ])
            .ok()?;
            (!out.trim().is_empty()).then_some(())
        },
        || async { kubectl::run(&["get", "events", "-n", ns]).unwrap_or_default() },
    )
    .await
    .expect("Warning Event");
}

fn apply(ns: &TestNamespace, yaml: &str) {
    ns.apply(yaml)
        .unwrap_or_else(|e| panic!("applying\n{yaml}\n{e}"));
}

/// The canary scenario, on an installed mesh.
pub async fn canary_release(kube: kube::Client) {
    let ns = TestNamespace::new("split").await.expect("namespace");
    let n = ns.name.clone();
    kubectl::run(&["annotate", "namespace", &n, "tulle.io/inject=enabled"]).unwrap();
    apply(
        &ns,
        &format!(
            "{}{}{}{}{}{}{}",
            client(&n),
            version(&n, "v1", "web"),
            version(&n, "v2", "web"),
            version(&n, "v3", "web3"),
            service("web", "app: web", 80, false),
            service("web-v1", "app: web, version: v1", 80, false),
            service("web-v2", "app: web, version: v2", 80, false),
        ),
    );
    // Serves v2's pods, but not on the apex's port 80.
    apply(
        &ns,
        &service("web-otherport", "app: web, version: v2", 8080, true),
    );
    for app in ["client", "web", "web3"] {
        wait::pods_ready(
            &kube,
            &n,
            &format!("app={app}"),
            if app == "web" { 2 } else { 1 },
            STEP,
        )
        .await
        .expect(app);
    }
    let c = Client {
        ns: n.clone(),
        pod: pods(&n, "app=client").remove(0),
    };
    // Until both versions answer through the mesh.
    wait::until(
        "both versions answering the apex",
        STEP,
        || async {
            let s = c.burst("/", 40, &[]);
            (s.count("v1") > 0 && s.count("v2") > 0 && s.failed == 0).then_some(())
        },
        || async { format!("{:?}", c.burst("/", 40, &[])) },
    )
    .await
    .expect("no split: both versions answer");

    // Every released version of the API, with the canary's share 0, 100, 10 and 50 %.
    let weights: [(f64, [&str; 4]); 4] = [
        // (v2 share, [v1alpha1 v1, v1alpha1 v2, v1alpha2+ v1, v1alpha2+ v2])
        (0.0, ["1", "0", "100", "0"]),
        (1.0, ["0", "1", "0", "100"]),
        (0.1, ["900m", "100m", "90", "10"]),
        // 1 and 1000m: the same quantity in two units.
        (0.5, ["1", "1000m", "50", "50"]),
    ];
    for api in ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"] {
        for (want, w) in &weights {
            let (w1, w2) = if api == "v1alpha1" {
                (format!("\"{}\"", w[0]), format!("\"{}\"", w[1]))
            } else {
                (w[2].to_string(), w[3].to_string())
            };
            apply(
                &ns,
                &split("web", api, &[("web-v1", &w1), ("web-v2", &w2)], ""),
            );
            tokio::time::sleep(SETTLE).await;
            let s = c.burst("/", samples(*want), &[]);
            assert_share(&s, "v2", *want, 0.05, &format!("{api} {w1}/{w2}"));
        }
    }

    // A progressive shift 0 → 10 → 50 → 100 % under the steady 20 req/s: nothing fails.
    let before = load(&n, &c.pod);
    for (w1, w2) in [(100, 0), (90, 10), (50, 50), (0, 100)] {
        let (w1, w2) = (w1.to_string(), w2.to_string());
        apply(
            &ns,
            &split("web", "v1alpha4", &[("web-v1", &w1), ("web-v2", &w2)], ""),
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let after = load(&n, &c.pod);
    eprintln!(
        "progressive shift: {} requests, {} failed",
        after.ok - before.ok,
        after.failed - before.failed
    );
    assert!(after.ok > before.ok + 100, "the load ran: {}", after.raw);
    assert_eq!(
        after.failed, before.failed,
        "failed during the shift: {}",
        after.raw
    );

    // Opaque TCP, split per connection (the split above is 0/100, then 75/25).
    let s = c.tcp_burst(100);
    assert_share(&s, "v2", 1.0, 0.0, "TCP 0/100");
    apply(
        &ns,
        &split("web", "v1alpha4", &[("web-v1", "75"), ("web-v2", "25")], ""),
    );
    tokio::time::sleep(SETTLE).await;
    let s = c.tcp_burst(400);
    assert_share(&s, "v2", 0.25, 0.07, "TCP 75/25");

    // A backend whose Service does not exist yet gets nothing; created, it receives within 5 s.
    apply(
        &ns,
        &split("web", "v1alpha4", &[("web-v1", "50"), ("web-v3", "50")], ""),
    );
    tokio::time::sleep(SETTLE).await;
    assert_share(&c.burst("/", 100, &[]), "v1", 1.0, 0.0, "absent web-v3");
    warning(&n, "web", "BackendNotFound").await;
    apply(&ns, &service("web-v3", "app: web3", 80, false));
    let t0 = Instant::now();
    wait::until(
        "web-v3 receiving after its Service was created",
        Duration::from_secs(5),
        || async { (c.burst("/", 20, &[]).count("v3") > 0).then_some(()) },
        || async { format!("{:?}", c.burst("/", 20, &[])) },
    )
    .await
    .expect("the created backend receives within 5 s");
    eprintln!(
        "web-v3 receives {:?} after its Service was created",
        t0.elapsed()
    );

    // The apex as a backend: its own endpoints (v1 and v2, balanced by latency), no
    // recursion; web-v3's pods are not the apex's, so its share shows the split.
    apply(
        &ns,
        &split("web", "v1alpha4", &[("web", "50"), ("web-v3", "50")], ""),
    );
    tokio::time::sleep(SETTLE).await;
    let s = c.burst("/", 1200, &[]);
    assert_share(&s, "v3", 0.5, 0.05, "apex 50 / v3 50");
    assert!(
        s.count("v1") + s.count("v2") > 0,
        "the apex's own endpoints answer: {s:?}"
    );

    // A backend without the apex's port is left out for that port.
    apply(
        &ns,
        &split(
            "web",
            "v1alpha4",
            &[("web-v1", "50"), ("web-otherport", "50")],
            "",
        ),
    );
    tokio::time::sleep(SETTLE).await;
    assert_share(&c.burst("/", 100, &[]), "v1", 1.0, 0.0, "port mismatch");
    warning(&n, "web", "PortMismatch").await;

    // All weights 0: a 503 that says why, and a Warning Event.
    apply(
        &ns,
        &split("web", "v1alpha4", &[("web-v1", "0"), ("web-v2", "0")], ""),
    );
    tokio::time::sleep(SETTLE).await;
    let s = c.burst("/", 10, &[]);
    assert_eq!(s.failed, 10, "all-zero weights: {s:?}");
    assert_eq!(
        s.errors["503 no traffic split backend"], 10,
        "all-zero weights answer 503 with tulle-proxy-error: {s:?}"
    );
    warning(&n, "web", "AllWeightsZero").await;

    // Matches: a header rule in list form, one in map form, and a path rule send matching
    // requests to v2; the rest go to the apex (its endpoints, v1 among them), over HTTP/1 and HTTP/2.
    apply(
        &ns,
        r#"---
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: canary}
spec:
  matches:
  - {name: header-list, headers: [{x-canary: "true"}]}
  - {name: header-map, headers: {x-beta: "y.s"}}
  - {name: api, pathRegex: "/api", methods: [GET]}
"#,
    );
    let matches = "  matches: [{kind: HTTPRouteGroup, name: canary}]\n";
    apply(
        &ns,
        &split(
            "web",
            "v1alpha4",
            &[("web-v1", "0"), ("web-v2", "100")],
            matches,
        ),
    );
    tokio::time::sleep(SETTLE).await;
    for h2 in [false, true] {
        let proto: &[&str] = if h2 { &["--h2"] } else { &[] };
        fn with<'a>(proto: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
            [proto, extra].concat()
        }
        let what = |w: &str| format!("{w} ({})", if h2 { "HTTP/2" } else { "HTTP/1" });
        let s = c.burst("/", 40, &with(proto, &["-H", "x-canary: true"]));
        assert_share(&s, "v2", 1.0, 0.0, &what("x-canary: true"));
        let s = c.burst("/", 40, &with(proto, &["-H", "x-beta: yes"]));
        assert_share(&s, "v2", 1.0, 0.0, &what("x-beta: yes (map form)"));
        let s = c.burst("/api/items", 40, proto);
        assert_share(&s, "v2", 1.0, 0.0, &what("path /api"));
        // The split sends nothing to v1, so a v1 answer shows the apex served it. (The
        // apex balances its two endpoints by latency, so v2 may get none of these.)
        let s = c.burst("/other", 200, &with(proto, &["-H", "x-canary: false"]));
        assert!(
            s.count("v1") > 0 && s.failed == 0,
            "{}: not matching goes to the apex: {s:?}",
            what("no match")
        );
    }

    // Flagger writes v1alpha1 weights as strings ("75"/"25"); an unparseable object for
    // another apex beside it leaves it working. (A fresh object: v1alpha1 has no `matches`,
    // so applying it over the split above would keep the matches of the last apply.)
    kubectl::run(&["delete", "trafficsplit", "web", "-n", &n]).expect("delete the split");
    apply(
        &ns,
        &split(
            "web",
            "v1alpha1",
            &[("web-v1", "\"75\""), ("web-v2", "\"25\"")],
            "",
        ),
    );
    apply(
        &ns,
        "---\napiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: broken}\nspec:\n  service: web-v1\n  backends: [{service: web-v2, weight: \"abc\"}]\n",
    );
    tokio::time::sleep(SETTLE).await;
    assert_share(
        &c.burst("/", 1000, &[]),
        "v2",
        0.25,
        0.05,
        "v1alpha1 \"75\"/\"25\"",
    );
    warning(&n, "broken", "InvalidObject").await;
    let s = c.burst("/", 1000, &[]);
    assert_share(&s, "v2", 0.25, 0.05, "still split beside the broken object");

    let l = load(&n, &c.pod);
    eprintln!(
        "steady load over the whole scenario: {} ok, {} failed",
        l.ok, l.failed
    );
}
