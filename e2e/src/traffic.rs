//! Meshed test workloads and what their traffic shows: a testapp Deployment (optionally with a
//! hand-written sidecar), the steady load of a client pod (`/load` of the testapp) and the
//! proxy metrics of a pod, read through `kubectl exec` (the testapp image has no shell).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kubectl;

/// A testapp Deployment `name` with its ServiceAccount; `spec_extra` is inserted into the pod
/// spec (e.g. [`crate::mesh::sidecar`]), `env` into the app container's env list (8 spaces).
pub fn workload(name: &str, replicas: u32, spec_extra: &str, env: &str) -> String {
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
{spec_extra}      containers:
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
        testapp = crate::testapp_image(),
    )
}

/// A testapp Deployment `name` (labels `app: <name>`, `tier: <tier>`) with its ServiceAccount,
/// ready when its port 8080 accepts a connection: a TCP probe, so that the kubelet's probes
/// are no HTTP requests in the metrics a test counts. `env` goes into the app container's env
/// list (8 spaces).
pub fn tcp_probed_workload(name: &str, tier: &str, env: &str) -> String {
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
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}, tier: {tier}}}}}
    spec:
      serviceAccountName: {name}
      containers:
      - name: app
        image: {image}
        imagePullPolicy: Never
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
{env}        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 2}}
        securityContext: {{runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"#,
        image = crate::testapp_image(),
    )
}

/// Service `web` (port 80 → 8080) in front of `app: web` pods.
pub const WEB_SERVICE: &str = r#"---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

/// The env entries that make a testapp send 20 requests/s to `http://web.<ns>.svc.cluster.local/`.
pub fn load_env(ns: &str) -> String {
    format!(
        "        - {{name: LOAD_URL, value: \"http://web.{ns}.svc.cluster.local/\"}}\n        - {{name: LOAD_RPS, value: \"20\"}}\n"
    )
}

/// The client's load counters (`/load` of the testapp).
#[derive(Debug, Clone)]
pub struct Load {
    pub ok: u64,
    pub failed: u64,
    pub by_pod: BTreeMap<String, u64>,
    pub raw: Value,
}

/// Reads `/load` of the testapp in `pod`.
pub fn load(ns: &str, pod: &str) -> Load {
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

/// The proxy metrics of `pod` (from its app container, over loopback).
pub fn proxy_metrics(ns: &str, pod: &str) -> String {
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

/// Whether `metrics` count an HTTP request in `direction` over mesh mTLS with `peer` (the
/// server's identity outbound, the client's inbound).
pub fn has_mtls_request(metrics: &str, direction: &str, peer: &str) -> bool {
    let key = if direction == "inbound" {
        "client_id"
    } else {
        "server_id"
    };
    let want = format!("tls=\"true\",{key}=\"{peer}\"");
    metrics.lines().any(|l| {
        l.starts_with(&format!("request_total{{direction=\"{direction}\"")) && l.contains(&want)
    })
}

/// Pods that answered between two snapshots.
pub fn answering(before: &Load, after: &Load) -> Vec<String> {
    after
        .by_pod
        .iter()
        .filter(|(p, n)| before.by_pod.get(*p).copied().unwrap_or(0) < **n)
        .map(|(p, _)| p.clone())
        .collect()
}

/// Waits until exactly `want` distinct pods answer within a 4 s window; returns them and the
/// time it took. Panics after `timeout`.
pub async fn until_answering(
    ns: &str,
    client: &str,
    want: usize,
    timeout: Duration,
) -> (Vec<String>, Duration) {
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
            t0.elapsed() < timeout,
            "after {:?}, {} pods answer instead of {want}: {set:?}; load {}",
            t0.elapsed(),
            set.len(),
            b.raw
        );
    }
}

/// Names of the pods matching `selector` in `ns`.
pub fn pods(ns: &str, selector: &str) -> Vec<String> {
    kubectl::run(&["get", "pods", "-n", ns, "-l", selector, "-o", "name"])
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_string())
        .collect()
}
