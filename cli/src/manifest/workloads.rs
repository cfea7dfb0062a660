//! ServiceAccounts, the PKI objects, Services and Deployments of identity and controller.

use super::{
    CONTROL_PLANE_COMPONENT_LABEL, CONTROLLER, IDENTITY, ISSUER_SECRET, IpFamily, METRICS_API_PORT,
    NAMESPACE, TRUST_ANCHORS_CONFIGMAP, TRUST_ANCHORS_KEY, Values, WEBHOOK_CONFIG, meta, value,
};
use crate::pki::Pki;
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
            EnvVar, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec,
            Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, Secret,
            SecretVolumeSource, SecurityContext, Service, ServiceAccount,
            ServiceAccountTokenProjection, ServicePort, ServiceSpec, Volume, VolumeMount,
            VolumeProjection, WeightedPodAffinityTerm,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::LabelSelector, util::intstr::IntOrString,
    },
};
use serde_json::Value;
use std::collections::BTreeMap;
use tulle_inject::builders::{container_port, env_field, env_value};

/// The admin port (/ready, /live, /metrics) of identity and controller.
pub const ADMIN_PORT: i32 = 9990;
/// Where the issuer Secret is mounted in identity.
pub const ISSUER_DIR: &str = "/var/run/tulle/identity/issuer";
/// Where the trust anchors ConfigMap is mounted in the controller.
pub const ANCHORS_DIR: &str = "/var/run/tulle/identity";
/// Where the projected identity token is mounted.
pub const TOKEN_DIR: &str = "/var/run/secrets/tulle.io/serviceaccount";
/// The audience of the projected identity token.
pub const TOKEN_AUDIENCE: &str = "identity.tulle.io";

/// The ServiceAccounts of identity and controller.
pub fn service_accounts(v: &Values) -> Vec<Value> {
    [(IDENTITY, "identity"), (CONTROLLER, "controller")]
        .iter()
        .map(|(name, component)| {
            value(&ServiceAccount {
                metadata: meta(name, true, component, &v.tag),
                ..Default::default()
            })
        })
        .collect()
}

/// The issuer Secret and the trust anchors ConfigMap.
pub fn pki_objects(v: &Values, pki: &Pki) -> Vec<Value> {
    let secret = Secret {
        metadata: meta(ISSUER_SECRET, true, "identity", &v.tag),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".to_string(),
                ByteString(pki.issuer_cert_pem.clone().into_bytes()),
            ),
            (
                "tls.key".to_string(),
                ByteString(pki.issuer_key_pem.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    };
    let anchors = ConfigMap {
        metadata: meta(TRUST_ANCHORS_CONFIGMAP, true, "identity", &v.tag),
        data: Some(BTreeMap::from([(
            TRUST_ANCHORS_KEY.to_string(),
            pki.trust_anchors_pem.clone(),
        )])),
        ..Default::default()
    };
    vec![value(&secret), value(&anchors)]
}

pub(super) fn port(name: &str, port: i32, target: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

pub(super) fn selector(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(
        CONTROL_PLANE_COMPONENT_LABEL.to_string(),
        component.to_string(),
    )])
}

/// The Services of identity and controller.
pub fn services(v: &Values) -> Vec<Value> {
    let svc = |name: &str, component: &str, ports: Vec<ServicePort>| Service {
        metadata: meta(name, true, component, &v.tag),
        spec: Some(ServiceSpec {
            selector: Some(selector(component)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        value(&svc(IDENTITY, "identity", vec![port("grpc", 8080, 8080)])),
        value(&svc(
            CONTROLLER,
            "controller",
            vec![
                port("grpc", 8086, 8086),
                port("policy", 8090, 8090),
                port("webhook", 443, 9443),
                port("admin", ADMIN_PORT, ADMIN_PORT),
                port("metrics-api", METRICS_API_PORT, METRICS_API_PORT),
            ],
        )),
    ]
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn probe(port: i32, path: &str, period: i32, failures: i32) -> Probe {
    tulle_inject::builders::http_probe(port, path, period, failures, 2)
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    let mut m = BTreeMap::from([("memory".to_string(), Quantity(memory.into()))]);
    if !cpu.is_empty() {
        m.insert("cpu".into(), Quantity(cpu.into()));
    }
    m
}

/// The strict container security context of every control-plane container.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A control-plane Deployment's particulars.
pub(super) struct Workload {
    pub(super) name: &'static str,
    pub(super) component: &'static str,
    pub(super) replicas: i32,
    pub(super) env: Vec<EnvVar>,
    pub(super) ports: Vec<ContainerPort>,
    pub(super) mounts: Vec<VolumeMount>,
    pub(super) volumes: Vec<Volume>,
    pub(super) requests: (&'static str, &'static str),
    pub(super) memory_limit: &'static str,
    /// The port of the HTTP probes and the liveness path (readiness is `/ready`).
    pub(super) probes: (i32, &'static str),
}

/// The Deployment of a control-plane component (non-root, read-only root filesystem).
pub(super) fn deployment(v: &Values, w: Workload) -> Deployment {
    let mut pod_labels = super::labels(w.component, &v.tag);
    pod_labels.extend(selector(w.component));
    let container = Container {
        name: w.component.into(),
        image: Some(v.image(w.component)),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(w.env),
        ports: Some(w.ports),
        volume_mounts: (!w.mounts.is_empty()).then_some(w.mounts),
        readiness_probe: Some(probe(w.probes.0, "/ready", 5, 3)),
        liveness_probe: Some(probe(w.probes.0, w.probes.1, 10, 6)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(w.requests.0, w.requests.1)),
            limits: Some(quantities("", w.memory_limit)),
            ..Default::default()
        }),
        security_context: Some(container_security()),
        ..Default::default()
    };
    Deployment {
        metadata: meta(w.name, true, w.component, &v.tag),
        spec: Some(DeploymentSpec {
            replicas: Some(w.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(w.component)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(w.name.into()),
                    automount_service_account_token: Some(true),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: (!w.volumes.is_empty()).then_some(w.volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The identity and controller Deployments.
pub fn deployments(v: &Values) -> Vec<Value> {
    let identity_name = |sa: &str| {
        format!(
            "{sa}.{NAMESPACE}.serviceaccount.identity.tulle.{}",
            v.trust_domain
        )
    };
    let identity = Workload {
        name: IDENTITY,
        component: "identity",
        replicas: if v.ha { HA_REPLICAS } else { 1 },
        env: vec![
            env_value("TULLE_IDENTITY_ISSUER_DIR", ISSUER_DIR),
            env_value("TULLE_IDENTITY_TRUST_DOMAIN", &v.trust_domain),
            env_value("TULLE_IDENTITY_TOKEN_AUDIENCE", TOKEN_AUDIENCE),
            env_value("TULLE_IDENTITY_SERVICE_ACCOUNT", IDENTITY),
            env_field("TULLE_IDENTITY_NAMESPACE", "metadata.namespace"),
            env_field("TULLE_IDENTITY_POD_NAME", "metadata.name"),
        ],
        ports: vec![
            container_port("grpc", 8080),
            container_port("admin", ADMIN_PORT),
        ],
        mounts: vec![mount("issuer", ISSUER_DIR)],
        volumes: vec![Volume {
            name: "issuer".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ISSUER_SECRET.into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        requests: ("10m", "32Mi"),
        memory_limit: "256Mi",
        probes: (ADMIN_PORT, "/live"),
    };
    let mut controller_env = vec![
        env_field("TULLE_CONTROLLER_NAMESPACE", "metadata.namespace"),
        env_value("TULLE_CONTROLLER_SERVICE_ACCOUNT", CONTROLLER),
        env_value("TULLE_CONTROLLER_TRUST_DOMAIN", &v.trust_domain),
        env_value(
            "TULLE_CONTROLLER_IDENTITY_ADDR",
            format!("{IDENTITY}.{NAMESPACE}.svc.cluster.local:8080"),
        ),
        env_value(
            "TULLE_CONTROLLER_IDENTITY_SERVER_NAME",
            identity_name(IDENTITY),
        ),
        env_value(
            "TULLE_CONTROLLER_TRUST_ANCHORS",
            format!("{ANCHORS_DIR}/{TRUST_ANCHORS_KEY}"),
        ),
        env_value("TULLE_CONTROLLER_TOKEN_FILE", format!("{TOKEN_DIR}/token")),
        env_value("TULLE_CONTROLLER_WEBHOOK_ADDR", "0.0.0.0:9443"),
        env_value("TULLE_CONTROLLER_WEBHOOK_CONFIG_NAME", WEBHOOK_CONFIG),
        env_value("TULLE_CONTROLLER_WEBHOOK_SERVICE_NAME", CONTROLLER),
        env_value("TULLE_CONTROLLER_PROXY_IMAGE", v.image("proxy")),
        env_value("TULLE_CONTROLLER_PROXY_VERSION", &v.tag),
        env_value("TULLE_CONTROLLER_PROXY_LOG_LEVEL", &v.proxy_log_level),
        env_value("TULLE_CONTROLLER_POLICY_ADDR", "0.0.0.0:8090"),
        env_value(
            "TULLE_CONTROLLER_DEFAULT_INBOUND_POLICY",
            v.default_inbound_policy.as_str(),
        ),
        env_value(
            "TULLE_CONTROLLER_METRICS_API_ADDR",
            format!("0.0.0.0:{METRICS_API_PORT}"),
        ),
    ];
    if let Some(url) = &v.prometheus_url {
        controller_env.push(env_value("TULLE_CONTROLLER_PROMETHEUS_URL", url));
    }
    if !v.allowed_proxy_images.is_empty() {
        controller_env.push(env_value(
            "TULLE_CONTROLLER_ALLOWED_PROXY_IMAGES",
            v.allowed_proxy_images.join(","),
        ));
    }
    if v.ip_families != [IpFamily::Ipv4] {
        let families: Vec<&str> = v.ip_families.iter().map(|f| f.as_str()).collect();
        controller_env.push(env_value(
            "TULLE_CONTROLLER_IP_FAMILIES",
            families.join(","),
        ));
    }
    let controller = Workload {
        name: CONTROLLER,
        component: "controller",
        replicas: v.controller_replicas,
        env: controller_env,
        ports: vec![
            container_port("grpc", 8086),
            container_port("policy", 8090),
            container_port("webhook", 9443),
            container_port("admin", ADMIN_PORT),
            container_port("metrics-api", METRICS_API_PORT),
        ],
        mounts: vec![
            mount("trust-anchors", ANCHORS_DIR),
            mount("identity-token", TOKEN_DIR),
        ],
        volumes: vec![
            Volume {
                name: "trust-anchors".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: TRUST_ANCHORS_CONFIGMAP.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "identity-token".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            audience: Some(TOKEN_AUDIENCE.into()),
                            expiration_seconds: Some(86_400),
                            path: "token".into(),
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        requests: ("50m", "64Mi"),
        memory_limit: "512Mi",
        probes: (ADMIN_PORT, "/live"),
    };
    [identity, controller]
        .into_iter()
        .map(|w| {
            let component = w.component;
            let mut d = deployment(v, w);
            if v.ha
                && let Some(pod) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut())
            {
                pod.affinity = Some(spread(component));
            }
            value(&d)
        })
        .collect()
}

/// Replicas of identity, and the least of the controller, with `--ha`.
pub const HA_REPLICAS: i32 = 2;

/// Pod anti-affinity of a component's replicas, preferred (not required) so that a single-node
/// cluster still schedules them all.
fn spread(component: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector(component)),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// With `--ha`: a PodDisruptionBudget (minAvailable 1) for identity and for the controller, so
/// a node drain never evicts the last replica. In `tulle-system`, so deleting the namespace
/// (`tulle uninstall`) removes them.
pub fn disruption_budgets(v: &Values) -> Vec<Value> {
    if !v.ha {
        return vec![];
    }
    [(IDENTITY, "identity"), (CONTROLLER, "controller")]
        .into_iter()
        .map(|(name, component)| {
            value(&PodDisruptionBudget {
                metadata: meta(name, true, component, &v.tag),
                spec: Some(PodDisruptionBudgetSpec {
                    min_available: Some(IntOrString::Int(1)),
                    selector: Some(LabelSelector {
                        match_labels: Some(selector(component)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
        .collect()
}
