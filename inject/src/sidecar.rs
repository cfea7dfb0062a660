//! The containers and volumes the injector adds: the init step `tulle-init` (iptables, the only
//! thing with NET_ADMIN/NET_RAW, runs as root), and the proxy `tulle-proxy` as a native sidecar
//! (an init container with `restartPolicy: Always`), non-root UID 2110 with a read-only root
//! filesystem and no capabilities.

use super::{Config, Overrides, Resources};
use crate::builders::{container_port, env_field, env_value, http_probe};
use k8s_openapi::{
    api::core::v1::{
        Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, Pod,
        ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecurityContext,
        ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    },
    apimachinery::pkg::api::resource::Quantity,
};
use std::collections::BTreeMap;

use tulle_api::proxy_contract::{self as contract, env};
pub use tulle_api::proxy_contract::{INIT_CONTAINER, PROXY_CONTAINER};
/// The proxy's UID (skipped by the outbound iptables rules), as Kubernetes types it.
pub const PROXY_UID: i64 = tulle_api::proxy_contract::PROXY_UID as i64;
/// The proxy's inbound port, as Kubernetes types it.
pub const INBOUND_PORT: i32 = tulle_api::proxy_contract::INBOUND_PORT as i32;
/// The proxy's outbound port, as Kubernetes types it.
pub const OUTBOUND_PORT: i32 = tulle_api::proxy_contract::OUTBOUND_PORT as i32;
/// The proxy's admin port (`/ready`, `/live`, `/metrics`), as Kubernetes types it.
pub const ADMIN_PORT: i32 = tulle_api::proxy_contract::ADMIN_PORT as i32;
/// The projected ServiceAccount token volume.
pub const TOKEN_VOLUME: &str = "tulle-identity-token";
/// Where the token volume is mounted in the proxy.
pub const TOKEN_DIR: &str = "/var/run/secrets/tulle.io/serviceaccount";
/// The init step's writable `/run` (iptables' xtables lock) on a read-only root filesystem.
pub const XTABLES_VOLUME: &str = "tulle-init-xtables-lock";
/// The namespace's copy of the trust-anchor ConfigMap (the controller writes it; optional, so
/// a pod starts before it exists, with the anchors of the environment until then).
pub const TRUST_ANCHORS_VOLUME: &str = "tulle-trust-anchors";

/// What is added to the pod.
#[derive(Debug)]
pub(super) struct Added {
    pub(super) init: Container,
    pub(super) proxy: Container,
    pub(super) volumes: Vec<Volume>,
}

/// Builds the additions for `pod` in `namespace`.
pub(super) fn build(
    pod: &Pod,
    namespace: &str,
    cfg: &Config,
    o: &Overrides,
    resources: &Resources,
    trust_anchors_pem: &str,
) -> Added {
    let image = o.image.clone().unwrap_or_else(|| cfg.proxy_image.clone());
    Added {
        init: init_container(&image, o),
        proxy: proxy_container(pod, namespace, &image, cfg, o, resources, trust_anchors_pem),
        volumes: vec![
            Volume {
                name: TOKEN_VOLUME.into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            audience: Some(tulle_api::names::TOKEN_AUDIENCE.into()),
                            expiration_seconds: Some(86400),
                            path: "token".into(),
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: XTABLES_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: TRUST_ANCHORS_VOLUME.into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: contract::TRUST_ANCHORS_CONFIGMAP.into(),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
    }
}

fn init_container(image: &str, o: &Overrides) -> Container {
    let mut args = vec!["init".to_string()];
    for (flag, v) in [
        ("--skip-inbound-ports", &o.skip_inbound_ports),
        ("--skip-outbound-ports", &o.skip_outbound_ports),
        ("--skip-inbound-subnets", &o.skip_inbound_subnets),
        ("--skip-outbound-subnets", &o.skip_outbound_subnets),
    ] {
        if let Some(v) = v {
            args.push(flag.into());
            args.push(v.clone());
        }
    }
    Container {
        name: INIT_CONTAINER.into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        resources: Some(requirements(&Resources {
            cpu_request: Some("10m".into()),
            cpu_limit: None,
            memory_request: Some("16Mi".into()),
            memory_limit: Some("64Mi".into()),
        })),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: XTABLES_VOLUME.into(),
            mount_path: "/run".into(),
            ..Default::default()
        }]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

/// The ServiceAccount the pod runs as (the ServiceAccount admission plugin fills in
/// `default` before webhooks run; the fallback is for completeness).
pub(super) fn service_account(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.service_account_name
                .as_deref()
                .or(s.service_account.as_deref())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

fn proxy_container(
    pod: &Pod,
    namespace: &str,
    image: &str,
    cfg: &Config,
    o: &Overrides,
    resources: &Resources,
    anchors: &str,
) -> Container {
    let identity =
        tulle_api::ServiceAccountIdentity::new(service_account(pod), namespace, &cfg.trust_domain);
    let mut env = vec![
        env_value(env::LOG, o.log_level.as_ref().unwrap_or(&cfg.log_level)),
        env_value(env::IDENTITY_NAME, identity.dns_name()),
        env_value(env::IDENTITY_SVC_ADDR, &cfg.identity_addr),
        env_value(env::IDENTITY_SVC_NAME, &cfg.identity_name),
        env_value(env::IDENTITY_TOKEN_FILE, format!("{TOKEN_DIR}/token")),
        env_value(env::IDENTITY_TRUST_ANCHORS_PEM, anchors),
        // The mounted ConfigMap, reloaded on change (rotation); the PEM above until it exists.
        env_value(
            env::IDENTITY_TRUST_ANCHORS_FILE,
            format!(
                "{}/{}",
                contract::TRUST_ANCHORS_DIR,
                contract::TRUST_ANCHORS_KEY
            ),
        ),
        env_value(env::DESTINATION_SVC_ADDR, &cfg.destination_addr),
        env_value(env::DESTINATION_SVC_NAME, &cfg.destination_name),
        env_value(env::POLICY_SVC_ADDR, &cfg.policy_addr),
        env_value(env::POLICY_SVC_NAME, &cfg.policy_name),
        env_field(env::POD_NAMESPACE, "metadata.namespace"),
        env_field(env::POD_NAME, "metadata.name"),
    ];
    if let Some(p) = &o.opaque_ports {
        env.push(env_value(env::OPAQUE_PORTS, p));
    }
    let probe = |path: &str, period, failures| http_probe(ADMIN_PORT, path, period, failures, 1);
    Container {
        name: super::PROXY_CONTAINER.into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        restart_policy: Some("Always".into()),
        env: Some(env),
        ports: Some(vec![
            container_port("tulle-proxy", INBOUND_PORT),
            container_port("tulle-admin", ADMIN_PORT),
        ]),
        // Up to 2 minutes to get the first certificate; the app starts only after this.
        startup_probe: Some(probe("/ready", 1, 120)),
        readiness_probe: Some(probe("/ready", 10, 3)),
        liveness_probe: Some(probe("/live", 10, 6)),
        resources: Some(requirements(resources)),
        security_context: Some(SecurityContext {
            run_as_user: Some(PROXY_UID),
            run_as_group: Some(PROXY_UID),
            run_as_non_root: Some(true),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: TOKEN_VOLUME.into(),
                mount_path: TOKEN_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: TRUST_ANCHORS_VOLUME.into(),
                mount_path: contract::TRUST_ANCHORS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn requirements(r: &Resources) -> ResourceRequirements {
    let map = |cpu: &Option<String>, mem: &Option<String>| {
        let m: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", mem)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), Quantity(v.clone()))))
            .collect();
        (!m.is_empty()).then_some(m)
    };
    ResourceRequirements {
        requests: map(&r.cpu_request, &r.memory_request),
        limits: map(&r.cpu_limit, &r.memory_limit),
        ..Default::default()
    }
}
