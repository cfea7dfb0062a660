//! The manifests of the mesh, built from typed k8s-openapi objects.
//!
//! [`objects`] returns them in an order `kubectl apply -f -` accepts in one pass: the CRDs and
//! the namespace first, then ServiceAccounts and RBAC, the trust anchors and the issuer, the
//! Services, the Deployments, the SMI Traffic Metrics APIService (served by the controller, so
//! after its Deployment), and last the injector webhook configuration (so that no pod of the
//! control plane is created while a webhook that points at it exists).

mod apiservice;
mod crds;
mod dashboard;
mod rbac;
mod smi_schema;
mod webhook;
mod workloads;

pub use apiservice::{METRICS_API_PORT, METRICS_API_SERVICE};
pub use crds::{CONVERSION_PATH, conversion_crd_names, crd_names, crds};
pub use dashboard::{DASHBOARD, DASHBOARD_PORT};
pub use rbac::{AUTH_READER_BINDING, WEBHOOK_TLS_SECRET};

use crate::{
    Error,
    args::{FailurePolicy, InboundPolicy, InstallArgs, IpFamily, Output},
    pki::{self, Pki, PkiFiles},
    render,
};
use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde_json::Value;
use std::{collections::BTreeMap, time::SystemTime};

/// The control-plane namespace.
pub const NAMESPACE: &str = "tulle-system";
/// Name of the identity Deployment, Service and ServiceAccount.
pub const IDENTITY: &str = "tulle-identity";
/// Name of the controller Deployment, Service and ServiceAccount.
pub const CONTROLLER: &str = "tulle-controller";
/// The issuer Secret.
pub const ISSUER_SECRET: &str = "tulle-identity-issuer";
pub use tulle_api::proxy_contract::TRUST_ANCHORS_CONFIGMAP;
pub use tulle_api::proxy_contract::TRUST_ANCHORS_KEY;
/// The injector MutatingWebhookConfiguration.
pub const WEBHOOK_CONFIG: &str = "tulle-proxy-injector";
/// The label on the control-plane namespace (the webhook skips namespaces carrying it, the
/// controller copies no trust anchors into them).
pub use tulle_api::proxy_contract::CONTROL_PLANE_NS_LABEL;
/// The label on control-plane pods.
pub const CONTROL_PLANE_COMPONENT_LABEL: &str = "tulle.io/control-plane-component";

/// Everything the manifests depend on besides the PKI.
#[derive(Clone, Debug)]
pub struct Values {
    /// Image registry prefix.
    pub registry: String,
    /// Image tag; also the `app.kubernetes.io/version` label.
    pub tag: String,
    /// Identity trust domain.
    pub trust_domain: String,
    /// Webhook failurePolicy.
    pub webhook_failure_policy: FailurePolicy,
    /// Controller replicas.
    pub controller_replicas: i32,
    /// High availability (`--ha`): 2 identity replicas, at least 2 of the controller, spread
    /// over nodes, with PodDisruptionBudgets.
    pub ha: bool,
    /// Injected proxies' log level.
    pub proxy_log_level: String,
    /// Further images `config.tulle.io/proxy-image` may choose.
    pub allowed_proxy_images: Vec<String>,
    /// The IP families of the cluster's pod network.
    pub ip_families: Vec<IpFamily>,
    /// The mesh default inbound policy.
    pub default_inbound_policy: InboundPolicy,
    /// The Prometheus the controller queries instead of its embedded scraper.
    pub prometheus_url: Option<String>,
    /// Install the web dashboard.
    pub dashboard: bool,
}

impl Values {
    /// The values of `tulle install` flags.
    pub fn from_args(a: &InstallArgs) -> Self {
        Self {
            registry: a.registry.trim_end_matches('/').to_string(),
            tag: a.tag.clone(),
            trust_domain: a.trust_domain.clone(),
            webhook_failure_policy: a.webhook_failure_policy.unwrap_or(if a.ha {
                FailurePolicy::Fail
            } else {
                FailurePolicy::Ignore
            }),
            controller_replicas: if a.ha {
                a.controller_replicas.max(workloads::HA_REPLICAS)
            } else {
                a.controller_replicas
            },
            ha: a.ha,
            proxy_log_level: a.proxy_log_level.clone(),
            allowed_proxy_images: a.allowed_proxy_images.clone(),
            ip_families: {
                let mut f = a.ip_families.clone();
                f.sort();
                f.dedup();
                f
            },
            default_inbound_policy: a.default_inbound_policy,
            prometheus_url: a.prometheus_url.clone(),
            dashboard: a.dashboard,
        }
    }

    /// `<registry>/<component>:<tag>`.
    pub fn image(&self, component: &str) -> String {
        format!("{}/{component}:{}", self.registry, self.tag)
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str, v: &str| Err(Error::Input(format!("{what} {v:?}")));
        if self.registry.is_empty() || self.registry.contains(char::is_whitespace) {
            return bad(
                "--registry must be a non-empty image path prefix, got",
                &self.registry,
            );
        }
        let tag_ok = !self.tag.is_empty()
            && self.tag.len() <= 128
            && self
                .tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !tag_ok {
            return bad(
                "--tag must be a valid image tag ([A-Za-z0-9_.-], at most 128), got",
                &self.tag,
            );
        }
        let td_ok = !self.trust_domain.is_empty()
            && self
                .trust_domain
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !td_ok {
            return bad("--trust-domain must be a DNS name, got", &self.trust_domain);
        }
        if let Some(url) = &self.prometheus_url {
            // The controller's own check, so install refuses what it would refuse.
            tulle_metrics::promql::Prometheus::new(url)
                .map_err(|e| Error::Input(format!("--prometheus-url {url:?}: {e}")))?;
        }
        Ok(())
    }
}

/// The common labels of every object (the shared contract).
pub fn labels(component: &str, version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/part-of".to_string(), "tulle".to_string()),
        ("app.kubernetes.io/name".to_string(), component.to_string()),
        ("app.kubernetes.io/version".to_string(), version.to_string()),
    ])
}

/// Metadata with the common labels; `namespace` is `None` for cluster-scoped objects (and
/// the control-plane namespace for namespaced ones).
pub fn meta(name: &str, namespaced: bool, component: &str, version: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespaced.then(|| NAMESPACE.to_string()),
        labels: Some(labels(component, version)),
        ..Default::default()
    }
}

/// Serializes a typed object (k8s-openapi includes apiVersion and kind).
pub(crate) fn value<T: serde::Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("k8s-openapi objects serialize to JSON")
}

/// Every object of the mesh, in apply order.
pub fn objects(v: &Values, pki: &Pki) -> Vec<Value> {
    let mut out: Vec<Value> = crds(&v.tag).iter().map(value).collect();
    let mut ns_meta = meta(NAMESPACE, false, "namespace", &v.tag);
    ns_meta
        .labels
        .get_or_insert_default()
        .insert(CONTROL_PLANE_NS_LABEL.into(), NAMESPACE.into());
    out.push(value(&Namespace {
        metadata: ns_meta,
        ..Default::default()
    }));
    out.extend(workloads::service_accounts(v));
    if v.dashboard {
        out.push(dashboard::service_account(v));
    }
    out.extend(rbac::objects(v));
    if v.dashboard {
        out.extend(dashboard::rbac(v));
    }
    out.extend(workloads::pki_objects(v, pki));
    out.extend(workloads::services(v));
    if v.dashboard {
        out.push(dashboard::service(v));
    }
    out.extend(workloads::deployments(v));
    out.extend(workloads::disruption_budgets(v));
    if v.dashboard {
        out.push(dashboard::deployment(v, &pki.trust_anchors_pem));
    }
    out.push(value(&apiservice::metrics_api(v)));
    out.push(value(&webhook::injector(v)));
    out
}

/// `tulle install`: the PKI (loaded or generated), the objects, rendered.
pub fn install(args: &InstallArgs, now: SystemTime) -> Result<String, Error> {
    let values = Values::from_args(args);
    values.validate()?;
    let pki = match (
        &args.identity_trust_anchors_file,
        &args.identity_issuer_certificate_file,
        &args.identity_issuer_key_file,
    ) {
        (Some(a), Some(c), Some(k)) => pki::load(
            &PkiFiles {
                trust_anchors: a.clone(),
                issuer_cert: c.clone(),
                issuer_key: k.clone(),
            },
            now,
        )?,
        (None, None, None) => pki::generate(
            &values.trust_domain,
            std::time::Duration::from_secs(u64::from(args.identity_validity_days) * 86_400),
            now,
        )?,
        _ => {
            return Err(Error::Input(
                "--identity-trust-anchors-file, --identity-issuer-certificate-file and \
                 --identity-issuer-key-file go together"
                    .into(),
            ));
        }
    };
    render::render(&objects(&values, &pki), args.output)
}

/// `tulle uninstall`: every object `install` creates, as bare references (apiVersion, kind,
/// name, namespace), in reverse apply order.
pub fn uninstall(output: Output) -> Result<String, Error> {
    let values = Values {
        registry: "localhost/tulle".into(),
        tag: env!("CARGO_PKG_VERSION").into(),
        trust_domain: "cluster.local".into(),
        webhook_failure_policy: FailurePolicy::Ignore,
        controller_replicas: 1,
        // The PodDisruptionBudgets of --ha are in tulle-system: the namespace takes them.
        ha: false,
        proxy_log_level: String::new(),
        allowed_proxy_images: vec![],
        ip_families: vec![IpFamily::Ipv4],
        default_inbound_policy: InboundPolicy::Allow,
        prometheus_url: None,
        dashboard: true,
    };
    let placeholder = Pki {
        trust_anchors_pem: String::new(),
        issuer_cert_pem: String::new(),
        issuer_key_pem: String::new(),
    };
    let refs: Vec<Value> = objects(&values, &placeholder)
        .iter()
        .rev()
        .map(reference)
        .collect();
    render::render(&refs, output)
}

/// apiVersion, kind, metadata.name and metadata.namespace of an object.
pub fn reference(obj: &Value) -> Value {
    let mut metadata = serde_json::Map::new();
    for k in ["name", "namespace"] {
        if let Some(x) = obj["metadata"].get(k) {
            metadata.insert(k.into(), x.clone());
        }
    }
    serde_json::json!({
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": metadata,
    })
}
