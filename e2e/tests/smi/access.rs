//! SMI Traffic Access on the real cluster: identity-based authorization enforced by the
//! server's inbound proxy, in a namespace whose default inbound policy is `deny`.
//!
//! The server `web` (ServiceAccount `web`) serves HTTP (80 → 8080), a speaks-first TCP
//! protocol (6379 → 9000) and a TCP echo (3306 → 9001). Callers: `client` (listed by the
//! TrafficTargets), `intruder` (meshed, never listed), `unmeshed` (no proxy, plaintext) in the
//! same namespace, and `remote` in another namespace.
//!
//! Covered: the upstream SMI scenarios (default deny → allowed with a TCPRoute →
//! revoked after deletion; path and method rules), a source in another namespace, an
//! unlisted meshed client and an unmeshed pod denied while the listed one succeeds, a TCPRoute
//! allowing one port and not another, header rules in both forms, a v1alpha2 TrafficTarget
//! with `destination.port`, revocation closing an open TCP connection within 2 s, kubelet
//! probes keeping the server Ready under `deny`, the `authenticated` default, and a controller
//! restart under allowed traffic failing nothing and letting no denied request through.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tulle_e2e::traffic::pods;
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(180);
/// Time allowed for a policy change to reach the server's proxy (the target is 1 s).
const SETTLE: Duration = Duration::from_secs(2);
const POLICY: &str = "config.tulle.io/default-inbound-policy";

fn deployment(name: &str, sa: &str, env: &str, extra_annotations: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {sa}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}, annotations: {{{extra_annotations}}}}}
    spec:
      serviceAccountName: {sa}
      containers:
      - name: app
        image: {image}
        imagePullPolicy: Never
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
{env}        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
        livenessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 2}}
        securityContext: {{runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#,
        image = tulle_e2e::testapp_image(),
    )
}

const WEB_ENV: &str = "        - {name: TCP_PORT, value: \"9000\"}\n        - {name: TCP_ECHO_PORT, value: \"9001\"}\n";

const WEB_SERVICE: &str = r#"---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: tcp, port: 6379, targetPort: 9000}
  - {name: echo, port: 3306, targetPort: 9001}
"#;

/// A TrafficTarget v1alpha3 to `web` from `sources` (`(namespace, serviceaccount)`) with
/// `rules` (YAML list items).
fn target(name: &str, ns: &str, sources: &[(&str, &str)], rules: &str) -> String {
    let sources: Vec<String> = sources
        .iter()
        .map(|(n, sa)| format!("{{kind: ServiceAccount, name: {sa}, namespace: {n}}}"))
        .collect();
    format!(
        "---\napiVersion: access.smi-spec.io/v1alpha3\nkind: TrafficTarget\nmetadata: {{name: {name}}}\nspec:\n  destination: {{kind: ServiceAccount, name: web, namespace: {ns}}}\n  rules:\n{rules}  sources: [{}]\n",
        sources.join(", ")
    )
}

/// A caller pod and how it reaches `web`.
struct Caller {
    ns: String,
    pod: String,
    web_ns: String,
}

/// What a burst got: answers, failures by reason (`403 <tulle-proxy-error>`, ...).
#[derive(Debug)]
struct Outcome {
    ok: u64,
    failed: u64,
    errors: Value,
}

impl Caller {
    fn testapp(&self, args: &[&str]) -> Value {
        let mut cmd = vec!["/usr/local/bin/testapp"];
        cmd.extend_from_slice(args);
        let out = kubectl::exec(&self.ns, &self.pod, Some("app"), &cmd)
            .unwrap_or_else(|e| panic!("{cmd:?} in {}: {e}", self.pod));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn http(&self, path: &str, n: u32, extra: &[&str]) -> Outcome {
        let url = format!("http://web.{}.svc.cluster.local{path}", self.web_ns);
        let n = n.to_string();
        let mut args = vec!["burst", url.as_str(), n.as_str()];
        args.extend_from_slice(extra);
        let v = self.testapp(&args);
        Outcome {
            ok: v["ok"].as_u64().unwrap_or(0),
            failed: v["failed"].as_u64().unwrap_or(0),
            errors: v["errors"].clone(),
        }
    }

    fn tcp(&self, port: u16, n: u32) -> Outcome {
        let addr = format!("web.{}.svc.cluster.local:{port}", self.web_ns);
        let v = self.testapp(&["tcp-burst", &addr, &n.to_string()]);
        Outcome {
            ok: v["ok"].as_u64().unwrap_or(0),
            failed: v["failed"].as_u64().unwrap_or(0),
            errors: v["errors"].clone(),
        }
    }

    /// Starts holding an echoed TCP connection to port 3306 for up to `secs`.
    fn hold(&self, secs: u32) -> std::process::Child {
        let addr = format!("web.{}.svc.cluster.local:3306", self.web_ns);
        Command::new("kubectl")
            .args(["exec", "-n", &self.ns, &self.pod, "-c", "app", "--"])
            .args([
                "/usr/local/bin/testapp",
                "tcp-hold",
                &addr,
                &secs.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl exec tcp-hold")
    }
}

fn allowed(o: &Outcome, n: u64, what: &str) {
    assert_eq!((o.ok, o.failed), (n, 0), "{what}: should be allowed: {o:?}");
}

fn denied(o: &Outcome, n: u64, what: &str) {
    assert_eq!((o.ok, o.failed), (0, n), "{what}: should be denied: {o:?}");
}

/// Denied HTTP answers 403 (never another status).
fn denied_403(o: &Outcome, n: u64, what: &str) {
    denied(o, n, what);
    let forbidden: u64 = o
        .errors
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("403"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum();
    assert_eq!(forbidden, n, "{what}: denied with 403: {o:?}");
}

fn apply(ns: &TestNamespace, yaml: &str) {
    ns.apply(yaml)
        .unwrap_or_else(|e| panic!("applying\n{yaml}\n{e}"));
}

fn delete(ns: &str, kind: &str, name: &str) {
    kubectl::run(&["delete", kind, name, "-n", ns, "--wait=true"])
        .unwrap_or_else(|e| panic!("deleting {kind}/{name}: {e}"));
}

async fn ready(kube: &kube::Client, ns: &str, app: &str) {
    wait::pods_ready(kube, ns, &format!("app={app}"), 1, STEP)
        .await
        .unwrap_or_else(|e| panic!("{app}: {e}"));
}

fn caller(ns: &str, app: &str, web_ns: &str) -> Caller {
    Caller {
        ns: ns.to_string(),
        pod: pods(ns, &format!("app={app}")).remove(0),
        web_ns: web_ns.to_string(),
    }
}

/// Waits until `check` holds (a policy change propagating), at most 10 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !check() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The Traffic Access scenario, on an installed mesh.
pub async fn traffic_access(kube: kube::Client) {
    let ns = TestNamespace::new("access").await.expect("namespace");
    let remote_ns = TestNamespace::new("remote").await.expect("namespace");
    let (n, rn) = (ns.name.clone(), remote_ns.name.clone());
    kubectl::run(&[
        "annotate",
        "namespace",
        &n,
        "tulle.io/inject=enabled",
        &format!("{POLICY}=deny"),
    ])
    .unwrap();
    kubectl::run(&["annotate", "namespace", &rn, "tulle.io/inject=enabled"]).unwrap();
    apply(
        &ns,
        &format!(
            "{}{WEB_SERVICE}{}{}{}",
            deployment("web", "web", WEB_ENV, ""),
            deployment("client", "client", "", ""),
            deployment("intruder", "intruder", "", ""),
            deployment("unmeshed", "unmeshed", "", "tulle.io/inject: disabled"),
        ),
    );
    apply(&remote_ns, &deployment("remote", "remote", "", ""));
    // Kubelet probes keep the server Ready under `deny`.
    for app in ["web", "client", "intruder", "unmeshed"] {
        ready(&kube, &n, app).await;
    }
    ready(&kube, &rn, "remote").await;
    let client = caller(&n, "client", &n);
    let intruder = caller(&n, "intruder", &n);
    let unmeshed = caller(&n, "unmeshed", &n);
    let remote = caller(&rn, "remote", &n);

    // Default deny, no TrafficTarget: nobody gets in, HTTP or TCP.
    until("web's policy is in force", || {
        client.http("/", 1, &[]).failed == 1
    })
    .await;
    denied_403(&client.http("/", 5, &[]), 5, "deny: client");
    denied(&client.tcp(6379, 3), 3, "deny: client TCP");
    denied(&unmeshed.http("/", 3, &[]), 3, "deny: unmeshed");

    // Upstream scenario 1: allowed with a TCPRoute (all ports) → revoked after deletion.
    apply(
        &ns,
        &format!(
            "---\napiVersion: specs.smi-spec.io/v1alpha4\nkind: TCPRoute\nmetadata: {{name: all-ports}}\nspec: {{matches: {{ports: []}}}}\n{}",
            target(
                "client-all",
                &n,
                &[(&n, "client"), (&rn, "remote")],
                "  - {kind: TCPRoute, name: all-ports}\n"
            )
        ),
    );
    until("client-all in force", || client.http("/", 1, &[]).ok == 1).await;
    allowed(&client.http("/", 20, &[]), 20, "TCPRoute: client HTTP");
    allowed(&client.tcp(6379, 10), 10, "TCPRoute: client TCP");
    allowed(
        &remote.http("/", 10, &[]),
        10,
        "TCPRoute: remote (another namespace)",
    );
    denied_403(
        &intruder.http("/", 10, &[]),
        10,
        "TCPRoute: unlisted meshed intruder",
    );
    denied(&intruder.tcp(6379, 5), 5, "TCPRoute: intruder TCP");
    denied(
        &unmeshed.http("/", 10, &[]),
        10,
        "TCPRoute: unmeshed (no identity)",
    );

    // Revocation: an open TCP connection of the client is closed within 2 s of the
    // TrafficTarget's deletion, and new requests are denied.
    let hold = client.hold(60);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deleted_at = Instant::now();
    delete(&n, "traffictarget", "client-all");
    let out = hold.wait_with_output().expect("tcp-hold");
    let held: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("tcp-hold: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let closed_in = deleted_at.elapsed();
    eprintln!(
        "revocation: the open TCP connection closed {closed_in:?} after the deletion ({held})"
    );
    assert_eq!(
        held["connected"], true,
        "the connection was open first: {held}"
    );
    assert!(
        held["closed_after_ms"].is_u64(),
        "closed by the proxy: {held}"
    );
    assert!(
        closed_in < Duration::from_secs(2) + Duration::from_secs(1),
        "closed within 2 s (+1 s for kubectl): {closed_in:?}"
    );
    tokio::time::sleep(SETTLE).await;
    denied_403(&client.http("/", 5, &[]), 5, "revoked: client");

    // Upstream scenario 2: path and method rules (HTTPRouteGroup), with header rules in both
    // forms (opaque TCP is not admitted by HTTP rules); a TCPRoute for port 9000 only: the
    // echo port 9001 stays closed.
    apply(
        &ns,
        r#"---
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: api}
spec:
  matches:
  - {name: get-api, pathRegex: "/api", methods: [GET]}
  - {name: header-list, headers: [{x-team: "blue"}]}
  - {name: header-map, headers: {x-env: "pr.d"}}
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: speaks-first}
spec: {matches: {ports: [9000]}}
"#,
    );
    apply(
        &ns,
        &format!(
            "{}{}",
            target(
                "client-api",
                &n,
                &[(&n, "client")],
                "  - {kind: HTTPRouteGroup, name: api, matches: [get-api, header-list, header-map]}\n",
            ),
            // A TCPRoute in the same TrafficTarget would restrict its HTTP rules to port 9000
            // too (route ports define the allowed ports): the TCP rule is a target of its own.
            target(
                "client-tcp",
                &n,
                &[(&n, "client")],
                "  - {kind: TCPRoute, name: speaks-first}\n",
            ),
        ),
    );
    until("client-api in force", || {
        client.http("/api/items", 1, &[]).ok == 1
    })
    .await;
    allowed(&client.http("/api/items", 10, &[]), 10, "GET /api");
    denied_403(
        &client.http("/api/items", 5, &["-X", "POST"]),
        5,
        "POST /api",
    );
    denied_403(&client.http("/other", 5, &[]), 5, "GET /other");
    allowed(
        &client.http("/other", 5, &["-H", "x-team: blue"]),
        5,
        "header (list form)",
    );
    allowed(
        &client.http("/other", 5, &["-H", "x-env: prod"]),
        5,
        "header (map form)",
    );
    denied_403(
        &client.http("/other", 5, &["-H", "x-env: dev"]),
        5,
        "header mismatch",
    );
    allowed(&client.tcp(6379, 5), 5, "TCPRoute port 9000");
    let echo = client.hold(2);
    let echo: Value =
        serde_json::from_slice(&echo.wait_with_output().unwrap().stdout).unwrap_or(Value::Null);
    assert_ne!(
        echo["connected"], true,
        "port 9001 is not allowed by the TCPRoute: {echo}"
    );
    denied_403(
        &intruder.http("/api/items", 5, &[]),
        5,
        "intruder on an allowed route",
    );
    delete(&n, "traffictarget", "client-api");
    delete(&n, "traffictarget", "client-tcp");

    // A v1alpha2 TrafficTarget: its destination.port restricts it to that port.
    apply(
        &ns,
        &format!(
            "---\napiVersion: access.smi-spec.io/v1alpha2\nkind: TrafficTarget\nmetadata: {{name: client-v1alpha2}}\nspec:\n  destination: {{kind: ServiceAccount, name: web, namespace: {n}, port: 8080}}\n  rules:\n  - {{kind: TCPRoute, name: all-ports}}\n  sources: [{{kind: ServiceAccount, name: client, namespace: {n}}}]\n"
        ),
    );
    until("client-v1alpha2 in force", || {
        client.http("/", 1, &[]).ok == 1
    })
    .await;
    allowed(&client.http("/", 10, &[]), 10, "v1alpha2 port 8080: HTTP");
    denied(&client.tcp(6379, 5), 5, "v1alpha2 port 8080: TCP 9000");

    // A controller restart under allowed traffic: nothing fails, nothing denied gets in.
    kubectl::run(&[
        "delete",
        "pod",
        "-n",
        "tulle-system",
        "-l",
        "tulle.io/control-plane-component=controller",
        "--wait=false",
    ])
    .unwrap();
    let (t0, mut sent) = (Instant::now(), 0);
    while t0.elapsed() < Duration::from_secs(20) {
        allowed(
            &client.http("/", 10, &[]),
            10,
            "during the controller restart: client",
        );
        denied_403(
            &intruder.http("/", 5, &[]),
            5,
            "during the controller restart: intruder",
        );
        sent += 15;
    }
    wait::pods_ready(
        &kube,
        "tulle-system",
        "tulle.io/control-plane-component=controller",
        1,
        STEP,
    )
    .await
    .expect("controller back");
    eprintln!(
        "controller restart: {sent} requests, every allowed one answered, every denied one 403"
    );
    delete(&n, "traffictarget", "client-v1alpha2");

    // The `authenticated` default (no TrafficTarget names web any more): any meshed client,
    // never a plaintext one.
    kubectl::run(&[
        "annotate",
        "namespace",
        &n,
        "--overwrite",
        &format!("{POLICY}=authenticated"),
    ])
    .unwrap();
    until("authenticated default in force", || {
        intruder.http("/", 1, &[]).ok == 1
    })
    .await;
    allowed(
        &intruder.http("/", 10, &[]),
        10,
        "authenticated: meshed intruder",
    );
    allowed(
        &remote.http("/", 10, &[]),
        10,
        "authenticated: meshed remote",
    );
    denied(&unmeshed.http("/", 10, &[]), 10, "authenticated: unmeshed");
}
