//! A real Prometheus server on the cluster, scraping every meshed pod's proxy with the scrape
//! configuration of docs/prometheus.md ([`SCRAPE_JOB`]), for the tests of the Prometheus
//! metrics mode and of Flagger.
//!
//! The server is the `prometheus` binary that `cluster/tools` builds from its Go module,
//! packed into the image `localhost/tulle/prometheus:<version>` by `cluster/tools --import`
//! ([`deploy`] runs it). It runs in namespace [`NAMESPACE`] as Deployment `prometheus`
//! (non-root, read-only root filesystem, the TSDB on an emptyDir) behind Service `prometheus`
//! port 9090, which the host reaches at its ClusterIP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::{Error, Result, kubectl, wait};

/// The namespace Prometheus runs in.
pub const NAMESPACE: &str = "tulle-prometheus";
/// The scrape interval of [`SCRAPE_JOB`].
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(10);
/// The Prometheus version `cluster/tools` builds (module v0.316.0).
pub const VERSION: &str = "3.16.0";
/// The cluster-scoped RBAC (pods: get, list, watch) of its ServiceAccount.
const CLUSTER_ROLE: &str = "e2e-prometheus-pods";

/// The scrape job of the proxies, exactly as docs/prometheus.md documents it (a test checks).
pub const SCRAPE_JOB: &str = r#"- job_name: tulle-proxy
  kubernetes_sd_configs:
  - role: pod
  relabel_configs:
  # Only the proxy's admin port: the container tulle-proxy (a native sidecar) and its
  # port named tulle-admin (4191), which serves /metrics.
  - source_labels: [__meta_kubernetes_pod_container_name, __meta_kubernetes_pod_container_port_name]
    action: keep
    regex: tulle-proxy;tulle-admin
  - source_labels: [__meta_kubernetes_pod_phase]
    action: drop
    regex: Pending|Succeeded|Failed
  - source_labels: [__meta_kubernetes_namespace]
    target_label: namespace
  - source_labels: [__meta_kubernetes_pod_name]
    target_label: pod
  # The owner the injector records in the pod label tulle.io/proxy-<kind>. A Kubernetes
  # Job becomes k8s_job (job is Prometheus' own label, the name of this scrape job).
  - source_labels: [__meta_kubernetes_pod_label_tulle_io_proxy_job]
    target_label: k8s_job
  - action: labeldrop
    regex: __meta_kubernetes_pod_label_tulle_io_proxy_job
  # tulle.io/proxy-deployment: web -> deployment="web"; likewise statefulset, daemonset,
  # replicaset, replicationcontroller.
  - action: labelmap
    regex: __meta_kubernetes_pod_label_tulle_io_proxy_(.+)
"#;

/// The Prometheus image `cluster/tools --import prometheus` imports; `TULLE_PROMETHEUS_IMAGE`
/// overrides it.
pub fn image() -> String {
    std::env::var("TULLE_PROMETHEUS_IMAGE")
        .unwrap_or_else(|_| format!("localhost/tulle/prometheus:{VERSION}"))
}

fn indent(s: &str, n: usize) -> String {
    s.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{}{l}\n", " ".repeat(n))
            }
        })
        .collect()
}

/// All of it: Namespace, ServiceAccount + ClusterRole(Binding), ConfigMap, Deployment, Service.
pub fn manifest() -> String {
    let config = format!(
        "global:\n  scrape_interval: {i}s\n  scrape_timeout: 5s\n  evaluation_interval: {i}s\nscrape_configs:\n{SCRAPE_JOB}",
        i = SCRAPE_INTERVAL.as_secs()
    );
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: prometheus, namespace: {NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {CLUSTER_ROLE}}}
rules:
- {{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {CLUSTER_ROLE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {CLUSTER_ROLE}}}
subjects: [{{kind: ServiceAccount, name: prometheus, namespace: {NAMESPACE}}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: prometheus-config, namespace: {NAMESPACE}}}
data:
  prometheus.yml: |
{config}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: prometheus, namespace: {NAMESPACE}}}
spec:
  replicas: 1
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app: prometheus}}}}
  template:
    metadata: {{labels: {{app: prometheus}}}}
    spec:
      serviceAccountName: prometheus
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532}}
      containers:
      - name: prometheus
        image: {image}
        imagePullPolicy: IfNotPresent
        args:
        - --config.file=/etc/prometheus/prometheus.yml
        - --storage.tsdb.path=/prometheus
        - --storage.tsdb.retention.time=6h
        - --web.listen-address=:9090
        ports: [{{name: http, containerPort: 9090}}]
        readinessProbe: {{httpGet: {{path: /-/ready, port: 9090}}, periodSeconds: 2}}
        resources:
          requests: {{cpu: 50m, memory: 128Mi}}
          limits: {{memory: 1Gi}}
        volumeMounts:
        - {{name: config, mountPath: /etc/prometheus, readOnly: true}}
        - {{name: data, mountPath: /prometheus}}
        securityContext: {{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
      volumes:
      - {{name: config, configMap: {{name: prometheus-config}}}}
      - {{name: data, emptyDir: {{sizeLimit: 1Gi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: prometheus, namespace: {NAMESPACE}}}
spec:
  selector: {{app: prometheus}}
  ports: [{{name: http, port: 9090, targetPort: 9090}}]
"#,
        config = indent(&config, 4),
        image = image(),
    )
}

/// Prometheus on the cluster; removed (namespace and cluster RBAC) when dropped, unless
/// `TULLE_E2E_KEEP` is set.
#[derive(Debug)]
pub struct Deployed {
    /// Its Service's ClusterIP and port, reachable from the host.
    pub addr: SocketAddr,
}

impl Deployed {
    /// `http://<ClusterIP>:9090`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An instant query, answered as (labels, value) pairs.
    pub async fn query(&self, promql: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
        let (status, body) = kubectl::http_get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .await?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| Error::Io(format!("{promql}: HTTP {status}, not JSON ({e}): {body}")))?;
        if v["status"] != "success" {
            return Err(Error::Io(format!("{promql}: HTTP {status}: {body}")));
        }
        Ok(v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect())
    }

    /// The sum of an instant query's values (0 when it is empty).
    pub async fn sum(&self, promql: &str) -> Result<f64> {
        Ok(self.query(promql).await?.iter().map(|(_, v)| v).sum())
    }

    /// Waits until the proxies of all `pods` in `namespace` are scrape targets that are up.
    pub async fn until_scraped(&self, namespace: &str, pods: &[String], timeout: Duration) {
        let q = format!("up{{job=\"tulle-proxy\",namespace=\"{namespace}\"}} == 1");
        let last = std::sync::Mutex::new(String::new());
        wait::until(
            &format!("Prometheus scraping the proxies of {pods:?} in {namespace}"),
            timeout,
            || async {
                let up = self.query(&q).await;
                let found: Vec<String> = match &up {
                    Ok(rows) => rows
                        .iter()
                        .filter_map(|(l, _)| l.get("pod").cloned())
                        .collect(),
                    Err(e) => vec![e.to_string()],
                };
                *last.lock().unwrap_or_else(|p| p.into_inner()) = format!("{found:?}");
                pods.iter().all(|p| found.contains(p)).then_some(())
            },
            || async {
                let targets = kubectl::http_get(self.addr, "/api/v1/targets?state=active")
                    .await
                    .map(|(_, b)| b.chars().take(3000).collect::<String>())
                    .unwrap_or_default();
                format!(
                    "up == 1 for: {}\ntargets: {targets}",
                    last.lock().unwrap_or_else(|p| p.into_inner())
                )
            },
        )
        .await
        .expect("Prometheus scrapes the proxies");
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        if std::env::var_os("TULLE_E2E_KEEP").is_some() {
            eprintln!("TULLE_E2E_KEEP set: keeping Prometheus in {NAMESPACE}");
            return;
        }
        remove(false);
    }
}

fn remove(wait: bool) {
    let w = format!("--wait={wait}");
    let _ = kubectl::run(&["delete", "namespace", NAMESPACE, "--ignore-not-found", &w]);
    for kind in ["clusterrolebinding", "clusterrole"] {
        let _ = kubectl::run(&["delete", kind, CLUSTER_ROLE, "--ignore-not-found"]);
    }
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Deploys Prometheus (the image imported first with `cluster/tools --import prometheus`,
/// which builds the binary if this machine has none yet), waits until it is ready and
/// answers queries from the host.
pub async fn deploy(client: &kube::Client) -> Deployed {
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster/tools");
    let out = std::process::Command::new(tools)
        .args(["--import", "prometheus"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {tools}: {e}"));
    assert!(
        out.status.success(),
        "cluster/tools --import prometheus failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A namespace of an earlier run that is still terminating cannot take new objects.
    remove(true);
    kubectl::run_stdin(&["apply", "-f", "-"], &manifest()).expect("applying Prometheus");
    // Removed again if anything below fails.
    let mut deployed = Deployed {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    wait::pods_ready(
        client,
        NAMESPACE,
        "app=prometheus",
        1,
        Duration::from_secs(120),
    )
    .await
    .expect("Prometheus ready");
    let ip = kubectl::run(&[
        "get",
        "service",
        "prometheus",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
    .expect("Prometheus' ClusterIP");
    let addr: SocketAddr = format!("{}:9090", ip.trim())
        .parse()
        .unwrap_or_else(|e| panic!("ClusterIP {ip:?}: {e}"));
    deployed.addr = addr;
    wait::until(
        "Prometheus answering /-/ready from the host",
        Duration::from_secs(60),
        || async {
            matches!(kubectl::http_get(addr, "/-/ready").await, Ok((200, _))).then_some(())
        },
        || async { format!("{:?}", kubectl::http_get(addr, "/-/ready").await) },
    )
    .await
    .expect("Prometheus reachable");
    deployed
}

/// The mesh for the Prometheus and Flagger tests: the shared default install
/// ([`crate::install::shared_mesh`]).
pub async fn mesh(client: &kube::Client) -> crate::install::Uninstall {
    crate::install::shared_mesh(client).await
}

/// Panics with what to do when the injector did not give `pod` its owner label
/// `tulle.io/proxy-deployment: <deployment>` (a control plane older than the owner labels).
pub fn assert_owner_label(ns: &str, pod: &str, deployment: &str) {
    let got = kubectl::run(&[
        "get",
        "pod",
        "-n",
        ns,
        pod,
        "-o",
        r"jsonpath={.metadata.labels.tulle\.io/proxy-deployment}",
    ])
    .unwrap_or_default();
    assert_eq!(
        got.trim(),
        deployment,
        "pod {ns}/{pod} lacks the label tulle.io/proxy-deployment={deployment} that the injector adds \
         (is the installed controller older than the owner labels? reinstall with cluster/e2e)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_scrape_job_is_the_tested_one() {
        let doc = include_str!("../../docs/prometheus.md");
        assert!(
            doc.contains(SCRAPE_JOB),
            "docs/prometheus.md must show the scrape job of e2e/src/prometheus.rs verbatim"
        );
    }

    #[test]
    fn the_manifest_is_yaml_documents() {
        let m = manifest();
        assert_eq!(m.matches("\n---\n").count(), 6, "{m}");
        assert!(m.contains("    - job_name: tulle-proxy\n      kubernetes_sd_configs:"));
        assert!(m.contains("scrape_interval: 10s"));
        assert_eq!(encode("up{a=\"b\"}"), "up%7Ba%3D%22b%22%7D");
    }
}
