//! The suite's test app: `tulle-testapp` (cluster/testapp), one Deployment per app with a
//! ServiceAccount of its own. It answers every path with the pod that served it, records per
//! caller (the `x-conformance-caller` header the suite's clients send) what it received and
//! answered (`/received`, read from inside the pod), and is the client too (`testapp burst`).

use serde_json::{Value, json};

use crate::profile::Metadata;

/// The app's HTTP port in the pod; Services expose it on [`HTTP_PORT`].
pub const APP_PORT: u16 = 8080;
/// The Services' HTTP port (the upstream suite's 9091).
pub const HTTP_PORT: u16 = 9091;
/// The app's speaks-first TCP port in the pod; Services expose it on [`TCP_PORT`].
pub const APP_TCP_PORT: u16 = 9000;
/// The Services' opaque TCP port.
pub const TCP_PORT: u16 = 6379;
/// Where the testapp binary is in its image (it has no shell).
pub const BINARY: &str = "/usr/local/bin/testapp";

/// One app: a Deployment `name` (label `app: <name>` plus `labels`) running as ServiceAccount
/// `sa`, with `pod` metadata laid over (e.g. the profile's "not meshed").
#[derive(Clone, Debug)]
pub struct App {
    pub name: String,
    pub sa: String,
    pub labels: Vec<(String, String)>,
    pub pod: Metadata,
    /// Extra environment (`FAIL_PERCENT`, ...).
    pub env: Vec<(String, String)>,
    /// Readiness by a TCP probe instead of HTTP, so no probe request is in the app's metrics.
    pub tcp_probe: bool,
}

impl App {
    /// `name` with ServiceAccount `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            sa: name.into(),
            labels: Vec::new(),
            pod: Metadata::default(),
            env: Vec::new(),
            tcp_probe: false,
        }
    }

    /// Ready by a TCP probe (for the Traffic Metrics case, which counts every HTTP request;
    /// only where access is open: a TCP probe is not an HTTP probe a mesh can exempt).
    pub fn tcp_probe(mut self) -> Self {
        self.tcp_probe = true;
        self
    }

    /// With ServiceAccount `sa`.
    pub fn sa(mut self, sa: &str) -> Self {
        self.sa = sa.into();
        self
    }

    /// With a pod label.
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.into(), v.into()));
        self
    }

    /// With pod metadata laid over.
    pub fn pod(mut self, m: &Metadata) -> Self {
        self.pod = self.pod.merged(m);
        self
    }

    /// With an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Its ServiceAccount and Deployment.
    pub fn manifests(&self, image: &str) -> Vec<Value> {
        let mut labels = self.pod.labels.clone();
        labels.insert("app".into(), self.name.clone());
        labels.extend(self.labels.iter().cloned());
        let mut env = vec![
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
            json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
            json!({"name": "TCP_PORT", "value": APP_TCP_PORT.to_string()}),
        ];
        env.extend(self.env.iter().map(|(k, v)| json!({"name": k, "value": v})));
        let probe = if self.tcp_probe {
            json!({"tcpSocket": {"port": APP_PORT}, "periodSeconds": 1})
        } else {
            // Meshes exempt the kubelet's HTTP probes from access policies; /healthz is not
            // counted in /received.
            json!({"httpGet": {"path": "/healthz", "port": APP_PORT}, "periodSeconds": 1})
        };
        vec![
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": self.sa}}),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": self.name},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": self.name}},
                    "template": {
                        "metadata": {"labels": labels, "annotations": self.pod.annotations},
                        "spec": {
                            "serviceAccountName": self.sa,
                            "terminationGracePeriodSeconds": 5,
                            "containers": [{
                                "name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                                "env": env,
                                "ports": [{"name": "http", "containerPort": APP_PORT}, {"name": "tcp", "containerPort": APP_TCP_PORT}],
                                "readinessProbe": probe,
                                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                            }],
                        },
                    },
                },
            }),
        ]
    }
}

/// A Service `name` selecting `selector`, HTTP on [`HTTP_PORT`] and (with `tcp`) opaque TCP on
/// [`TCP_PORT`].
pub fn service(name: &str, selector: &[(&str, &str)], tcp: bool) -> Value {
    let selector: serde_json::Map<String, Value> = selector
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut ports = vec![json!({"name": "http", "port": HTTP_PORT, "targetPort": APP_PORT})];
    if tcp {
        ports.push(json!({"name": "tcp", "port": TCP_PORT, "targetPort": APP_TCP_PORT}));
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": selector, "ports": ports}})
}

/// The app `name` of a pod of its Deployment (`app-b-5d9f7c6b8-x2x7q` → `app-b`).
pub fn app_of_pod(pod: &str) -> &str {
    let mut parts = pod.rsplitn(3, '-');
    let (_, _, app) = (parts.next(), parts.next(), parts.next());
    app.unwrap_or(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_of_pod_strips_the_replica_set_and_pod_suffixes() {
        assert_eq!(app_of_pod("app-b-5d9f7c6b8-x2x7q"), "app-b");
        assert_eq!(app_of_pod("web-7494c75785-nhmtr"), "web");
        assert_eq!(app_of_pod("odd"), "odd");
    }

    #[test]
    fn manifests_carry_the_pod_metadata_and_the_app_label() {
        let m = App::new("app-a")
            .label("version", "a")
            .pod(&crate::profile::Profile::tulle().outside)
            .manifests("img");
        let tpl = &m[1]["spec"]["template"];
        assert_eq!(tpl["metadata"]["labels"]["app"], "app-a");
        assert_eq!(tpl["metadata"]["labels"]["version"], "a");
        assert_eq!(
            tpl["metadata"]["annotations"]["tulle.io/inject"],
            "disabled"
        );
        assert_eq!(tpl["spec"]["serviceAccountName"], "app-a");
    }
}
