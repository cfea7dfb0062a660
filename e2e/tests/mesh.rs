//! Two meshed workloads on the real cluster, each with a hand-written proxy sidecar (the
//! iptables init step, then tulle-proxy as a native sidecar), and tulle-identity plus
//! tulle-controller running as pods: each proxy gets a certificate for its own ServiceAccount,
//! the client → server traffic is mTLS with the right identities (from the proxies' metrics),
//! scaling the server changes the balancing set with no failed request, and deleting the
//! controller pod mid-traffic fails no request.
//!
//! Needs the images of `cluster/load-tulle` and `cluster/image testapp` (cluster/e2e builds them).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tulle_e2e::mesh::{self, ClusterRbac, TestCa, identity_name};
use tulle_e2e::{TestNamespace, kubectl, wait};

const STEP: Duration = Duration::from_secs(180);

/// A meshed Deployment of the testapp named `name` (with its ServiceAccount); `env` adds
/// environment entries to the app container.
fn workload(ns: &str, ca: &TestCa, name: &str, replicas: u32, env: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      serviceAccountName: {name}
      terminationGracePeriodSeconds: 30
{sidecar}      containers:
      - name: app
        image: {testapp}
        imagePullPolicy: Never
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
{env}        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
        lifecycle: {{preStop: {{sleep: {{seconds: 5}}}}}}
        securityContext: {{runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#,
        sidecar = mesh::sidecar(name, ns, ns, ca),
        testapp = tulle_e2e::testapp_image(),
    )
}

/// The server: Deployment `web` (2 replicas) behind Service `web` port 80.
fn server(ns: &str, ca: &TestCa) -> String {
    format!(
        r#"{web}---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"#,
        web = workload(ns, ca, "web", 2, ""),
    )
}

/// The client: a steady 20 requests/s to `http://web.<ns>.svc.cluster.local/`.
fn client(ns: &str, ca: &TestCa) -> String {
    let load = format!(
        "        - {{name: LOAD_URL, value: \"http://web.{ns}.svc.cluster.local/\"}}\n        - {{name: LOAD_RPS, value: \"20\"}}\n"
    );
    workload(ns, ca, "client", 1, &load)
}

/// The client's load counters (`/load` of the testapp).
#[derive(Debug, Clone)]
struct Load {
    ok: u64,
    failed: u64,
    by_pod: BTreeMap<String, u64>,
    raw: Value,
}

fn load(ns: &str, pod: &str) -> Load {
    let out = kubectl::exec(
        ns,
        pod,
        Some("app"),
        &[
            "/usr/local/bin/testapp",
            "get",
            "http://127.0.0.1:8080/load",
        ],
    )
    .expect("reading the client's /load");
    let json = out.split_once('\n').map_or("", |(_, b)| b);
    let raw: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"));
    let by_pod = raw["by_pod"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    Load {
        ok: raw["ok"].as_u64().unwrap_or(0),
        failed: raw["failed"].as_u64().unwrap_or(0),
        by_pod,
        raw,
    }
}

fn metrics(ns: &str, pod: &str) -> String {
    kubectl::exec(
        ns,
        pod,
        Some("app"),
        &[
            "/usr/local/bin/testapp",
            "get",
            "http://127.0.0.1:4191/metrics",
        ],
    )
    .expect("reading the proxy's /metrics")
}

/// Pods that answered between two snapshots.
fn answering(before: &Load, after: &Load) -> Vec<String> {
    after
        .by_pod
        .iter()
        .filter(|(p, n)| before.by_pod.get(*p).copied().unwrap_or(0) < **n)
        .map(|(p, _)| p.clone())
        .collect()
}

fn assert_no_failures(l: &Load, when: &str) {
    assert_eq!(l.failed, 0, "failed requests {when}: {}", l.raw);
}

async fn pods(ns: &TestNamespace, selector: &str) -> Vec<String> {
    kubectl::run(&["get", "pods", "-n", &ns.name, "-l", selector, "-o", "name"])
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_string())
        .collect()
}

/// Waits until exactly `want` distinct pods answer within a 4 s window; returns them and the
/// time it took.
async fn until_answering(ns: &str, client: &str, want: usize) -> (Vec<String>, Duration) {
    let t0 = Instant::now();
    loop {
        let a = load(ns, client);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let b = load(ns, client);
        let set = answering(&a, &b);
        if set.len() == want {
            return (set, t0.elapsed());
        }
        assert!(
            t0.elapsed() < STEP,
            "after {:?}, {} pods answer instead of {want}: {set:?}; load {}",
            t0.elapsed(),
            set.len(),
            b.raw
        );
    }
}

#[tokio::test]
#[ignore = "needs the cluster: run with cluster/e2e"]
async fn meshed_pair_mtls_scaling_and_controller_loss() {
    let ns = TestNamespace::new("mesh").await.expect("namespace");
    let n = ns.name.clone();
    let ca = TestCa::new();
    let _rbac = ClusterRbac(n.clone());
    ns.apply(&format!(
        "{}{}",
        mesh::control_plane(&n, &ca),
        server(&n, &ca)
    ))
    .expect("apply");
    for (app, count) in [("tulle-identity", 1), ("tulle-controller", 1), ("web", 2)] {
        wait::pods_ready(&ns.client, &n, &format!("app={app}"), count, STEP)
            .await
            .expect(app);
    }
    // The client starts once the servers are ready (before, "no endpoints" is the right answer).
    ns.apply(&client(&n, &ca)).expect("apply the client");
    wait::pods_ready(&ns.client, &n, "app=client", 1, STEP)
        .await
        .expect("client");
    let client = pods(&ns, "app=client").await.remove(0);

    // Traffic flows to both servers, with no failure.
    let (set, took) = until_answering(&n, &client, 2).await;
    eprintln!("both web pods answer ({set:?}) after {took:?}");
    let l = load(&n, &client);
    assert!(l.ok > 0);
    assert_no_failures(&l, "at start");

    // mTLS with the right identities, both ways: the client's proxy checked the servers'
    // certificates (server_id), the servers' proxies learnt the client's (client_id).
    let (client_id, web_id) = (identity_name("client", &n), identity_name("web", &n));
    let m = metrics(&n, &client);
    let outbound = format!("tls=\"true\",server_id=\"{web_id}\"");
    assert!(
        m.lines()
            .any(|l| l.starts_with("request_total{direction=\"outbound\"") && l.contains(&outbound)),
        "no outbound mTLS request to {web_id} in the client proxy's metrics:\n{m}"
    );
    for web in pods(&ns, "app=web").await {
        let m = metrics(&n, &web);
        let inbound = format!("tls=\"true\",client_id=\"{client_id}\"");
        assert!(
            m.lines()
                .any(|l| l.starts_with("request_total{direction=\"inbound\"")
                    && l.contains(&inbound)),
            "no inbound mTLS request from {client_id} in {web}'s proxy metrics:\n{m}"
        );
    }

    // Scale up: the new pod joins the balancing set; scale down: the removed pods leave it;
    // no request fails either way.
    kubectl::run(&["scale", "-n", &n, "deploy/web", "--replicas=3"]).unwrap();
    wait::pods_ready(&ns.client, &n, "app=web", 3, STEP)
        .await
        .expect("3 web pods");
    let (set, took) = until_answering(&n, &client, 3).await;
    eprintln!("scaled to 3: {set:?} answer, {took:?} after the third pod was ready");
    kubectl::run(&["scale", "-n", &n, "deploy/web", "--replicas=1"]).unwrap();
    let (set, took) = until_answering(&n, &client, 1).await;
    eprintln!("scaled to 1: only {set:?} answers after {took:?}");
    wait::until(
        "web scaled down to one pod",
        STEP,
        || {
            let ns = &ns;
            async move { (pods(ns, "app=web").await.len() == 1).then_some(()) }
        },
        || async { String::new() },
    )
    .await
    .expect("terminated web pods gone");
    assert_no_failures(&load(&n, &client), "while scaling 2 → 3 → 1");

    // Delete the controller pod mid-traffic: proxies keep their last endpoints, then follow
    // the new controller.
    let before = load(&n, &client);
    kubectl::run(&[
        "delete",
        "pod",
        "-n",
        &n,
        "-l",
        "app=tulle-controller",
        "--wait=false",
    ])
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait::pods_ready(&ns.client, &n, "app=tulle-controller", 1, STEP)
        .await
        .expect("a new controller pod");
    let during = load(&n, &client);
    assert!(
        during.ok > before.ok + 20,
        "traffic stalled while the controller was away: {} → {}",
        before.raw,
        during.raw
    );
    assert_no_failures(&during, "while the controller pod was replaced");
    // The proxies resolve through the new controller: a new server pod gets traffic.
    kubectl::run(&["scale", "-n", &n, "deploy/web", "--replicas=2"]).unwrap();
    let (set, took) = until_answering(&n, &client, 2).await;
    eprintln!("after the controller restart, scaled to 2: {set:?} after {took:?}");
    assert_no_failures(&load(&n, &client), "at the end");
}
