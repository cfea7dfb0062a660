//! tulle-inject: the sidecar injector's decision, with no I/O (used by the controller's
//! admission webhook and by `tulle inject --manual`): given a Pod being created, the annotations of
//! its Namespace and the injector [`Config`], either inject (a JSON patch adding the init step
//! `tulle-init`, the native sidecar `tulle-proxy`, their volumes, annotations and label) or skip
//! with a [`Skip`] reason.
//!
//! Triggered by `tulle.io/inject: enabled` on the pod (template) or its namespace; the pod's
//! value wins and `disabled` opts out. `config.tulle.io/*` overrides are read from the pod, then
//! from the namespace. Applying the decision to an already mutated pod changes nothing.
//!
//! What an injected pod carries:
//! - annotations `tulle.io/injected: "true"` (what makes a second pass a no-op) and
//!   `tulle.io/proxy-version: <version>`;
//! - label `tulle.io/proxied: "true"`, so meshed pods can be selected
//!   (`kubectl get pods -l tulle.io/proxied=true`);
//! - label `tulle.io/proxy-<kind>: <name>` naming the pod's workload (`deployment`,
//!   `statefulset`, `daemonset`, `job`, ...: [`owner_label`]), which a Prometheus scrape
//!   relabels into the `deployment`, ... series labels (docs/prometheus.md).
//!
//! A pod skipped for any reason but "not enabled" (and "already injected") gets the annotation
//! `tulle.io/inject-skipped: <reason>`; the webhook also records an Event for it.

pub mod builders;
mod overrides;
mod owner;
mod patch;
mod sidecar;
#[cfg(test)]
mod tests;

pub use overrides::{InvalidAnnotation, Overrides};
pub use owner::{OWNER_LABEL_PREFIX, owner_label};
pub use sidecar::{
    ADMIN_PORT, INBOUND_PORT, INIT_CONTAINER, OUTBOUND_PORT, PROXY_CONTAINER, PROXY_UID,
    TOKEN_VOLUME,
};

use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// Annotation that turns injection on (`enabled`) or off (`disabled`).
pub const INJECT_ANNOTATION: &str = "tulle.io/inject";
/// Annotation set on injected pods.
pub const INJECTED_ANNOTATION: &str = "tulle.io/injected";
/// Annotation carrying the injected proxy's version.
pub const PROXY_VERSION_ANNOTATION: &str = "tulle.io/proxy-version";
/// Annotation saying why a pod was not injected.
pub const SKIPPED_ANNOTATION: &str = "tulle.io/inject-skipped";
/// Label set on injected pods.
pub const PROXIED_LABEL: &str = "tulle.io/proxied";

/// Proxy resources, as Kubernetes quantities (`None` = not set).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Resources {
    /// CPU request.
    pub cpu_request: Option<String>,
    /// CPU limit.
    pub cpu_limit: Option<String>,
    /// Memory request.
    pub memory_request: Option<String>,
    /// Memory limit.
    pub memory_limit: Option<String>,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu_request: Some("10m".into()),
            cpu_limit: None,
            memory_request: Some("32Mi".into()),
            memory_limit: Some("256Mi".into()),
        }
    }
}

/// The namespace a pod is created in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// Its name (from the admission request: the pod's own metadata may not carry it yet).
    pub name: String,
    /// Its UID (an Event target when the pod has no owner).
    pub uid: Option<String>,
    /// Its annotations (`tulle.io/inject`, `config.tulle.io/*` defaults).
    pub annotations: BTreeMap<String, String>,
    /// Its labels (Pod Security Admission level).
    pub labels: BTreeMap<String, String>,
}

/// The Pod Security Admission label whose `baseline` and `restricted` levels forbid the init
/// step's capabilities.
pub const POD_SECURITY_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// What the injector puts in the pods (from the controller's flags).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    /// The proxy image (also used by the init step).
    pub proxy_image: String,
    /// The proxy version (annotation `tulle.io/proxy-version`).
    pub proxy_version: String,
    /// The identity trust domain.
    pub trust_domain: String,
    /// tulle-identity's `host:port` as seen from any pod.
    pub identity_addr: String,
    /// The identity tulle-identity presents.
    pub identity_name: String,
    /// tulle-controller's destination `host:port` as seen from any pod.
    pub destination_addr: String,
    /// The identity tulle-controller presents.
    pub destination_name: String,
    /// tulle-controller's inbound policy `host:port` as seen from any pod.
    pub policy_addr: String,
    /// The identity tulle-controller's policy server presents.
    pub policy_name: String,
    /// Default proxy log filter (`TULLE_PROXY_LOG`).
    pub log_level: String,
    /// Default proxy resources.
    pub resources: Resources,
    /// The images a `config.tulle.io/proxy-image` annotation may choose besides
    /// `proxy_image`, set at install. The image also runs the init step, as root with
    /// NET_ADMIN and NET_RAW, so any other is refused ([`Skip::ImageNotAllowed`]).
    pub allowed_images: Vec<String>,
    /// Whether the cluster gives pods IPv6 addresses (dual-stack or IPv6-only), as the install
    /// says (`tulle install --ip-families`, chart value `ipFamilies`). The proxy intercepts only
    /// IPv4 (iptables, IPv4 original destinations), so IPv6 traffic would bypass it: every pod
    /// is then refused ([`Skip::Ipv6`]) rather than meshed only in part.
    pub ipv6: bool,
}

/// Why a pod is not injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// `tulle.io/inject: enabled` is on neither the pod nor its namespace.
    NotEnabled,
    /// The pod carries `tulle.io/injected` already.
    AlreadyInjected,
    /// `tulle.io/inject: disabled` on the pod (`on = "pod"`) or its namespace.
    Disabled {
        /// `pod` or `namespace`.
        on: &'static str,
    },
    /// The pod shares the node's network namespace: iptables rules would capture the node.
    HostNetwork,
    /// A container (`tulle-proxy`, `tulle-init`) or volume the injector adds is already there
    /// (added by hand?).
    ExistingSidecar(String),
    /// An annotation has a value the injector cannot use.
    Invalid(InvalidAnnotation),
    /// An app container already uses a port the proxy listens on.
    PortConflict(i32),
    /// The namespace enforces a Pod Security level (`baseline`, `restricted`) that rejects the
    /// init step (NET_ADMIN, NET_RAW, root): injecting would make the pod impossible to create.
    PodSecurity(String),
    /// `config.tulle.io/proxy-image` names an image the install does not allow.
    ImageNotAllowed {
        /// The image asked for.
        image: String,
        /// The images allowed (the install's proxy image first).
        allowed: Vec<String>,
    },
    /// The cluster gives pods IPv6 addresses ([`Config::ipv6`]) and the proxy intercepts only
    /// IPv4: the pod's IPv6 traffic, in and out, would bypass the proxy (no mTLS, no policy).
    Ipv6,
}

impl Skip {
    /// A short machine-friendly reason, the value of `tulle.io/inject-skipped`.
    pub fn code(&self) -> &'static str {
        match self {
            Skip::NotEnabled => "not-enabled",
            Skip::AlreadyInjected => "already-injected",
            Skip::Disabled { .. } => "disabled",
            Skip::HostNetwork => "host-network",
            Skip::ExistingSidecar(_) => "existing-sidecar",
            Skip::Invalid(_) => "invalid-annotation",
            Skip::PortConflict(_) => "port-conflict",
            Skip::PodSecurity(_) => "pod-security",
            Skip::ImageNotAllowed { .. } => "image-not-allowed",
            Skip::Ipv6 => "ipv6",
        }
    }

    /// Whether the Event recorded is a `Warning` (something to fix) rather than `Normal` (the
    /// pod asked not to be meshed, or cannot be by nature).
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Skip::Invalid(_)
                | Skip::ExistingSidecar(_)
                | Skip::PortConflict(_)
                | Skip::PodSecurity(_)
                | Skip::ImageNotAllowed { .. }
                | Skip::Ipv6
        )
    }

    /// Whether the pod is annotated and an Event recorded.
    pub fn is_recorded(&self) -> bool {
        !matches!(self, Skip::NotEnabled | Skip::AlreadyInjected)
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotEnabled => write!(
                f,
                "{INJECT_ANNOTATION}: enabled is on neither the pod nor its namespace"
            ),
            Skip::AlreadyInjected => {
                write!(f, "the pod is already injected ({INJECTED_ANNOTATION})")
            }
            Skip::Disabled { on } => write!(f, "{INJECT_ANNOTATION}: disabled on the {on}"),
            Skip::HostNetwork => write!(
                f,
                "the pod uses hostNetwork; the proxy's iptables rules would capture the node's traffic, so it is not meshed"
            ),
            Skip::ExistingSidecar(c) => write!(
                f,
                "the pod already has a container or volume named {c}; remove it (or add {INJECTED_ANNOTATION}: \"true\" if it was injected by hand)"
            ),
            Skip::Invalid(e) => write!(f, "{e}"),
            Skip::PortConflict(p) => write!(
                f,
                "a container uses port {p}, which the proxy needs ({OUTBOUND_PORT}, {INBOUND_PORT}, {ADMIN_PORT}); move it or set {INJECT_ANNOTATION}: disabled"
            ),
            Skip::PodSecurity(level) => write!(
                f,
                "the namespace enforces Pod Security level {level:?} ({POD_SECURITY_LABEL}), which rejects the init step's NET_ADMIN/NET_RAW; label the namespace {POD_SECURITY_LABEL}=privileged to mesh it"
            ),
            Skip::ImageNotAllowed { image, allowed } => write!(
                f,
                "config.tulle.io/proxy-image {image:?} is not an allowed proxy image (allowed: {}); the image also runs the privileged init step, so only images allowed at install may be chosen (tulle install --allowed-proxy-image, chart value proxy.allowedImages); remove the annotation or allow the image",
                allowed.join(", ")
            ),
            Skip::Ipv6 => write!(
                f,
                "the cluster gives pods IPv6 addresses (installed with --ip-families including IPv6, chart value ipFamilies) and the proxy intercepts only IPv4, so the pod's IPv6 traffic would bypass it (no mTLS, no policy); IPv6 pods are not meshed yet (docs/ipv6.md)"
            ),
        }
    }
}

/// What to do with a pod.
#[derive(Debug)]
pub enum Decision {
    /// Inject: apply this patch.
    Inject(json_patch::Patch),
    /// Do not inject. `patch` records the reason on the pod when [`Skip::is_recorded`].
    Skip {
        /// Why.
        reason: Skip,
        /// The annotation patch, if any.
        patch: Option<json_patch::Patch>,
    },
}

/// Decides what to do with `pod`, created in `ns`. `trust_anchors_pem` is put inline in the
/// proxy's environment.
pub fn decide(pod: &Pod, ns: &Namespace, cfg: &Config, trust_anchors_pem: &str) -> Decision {
    match check(pod, ns, cfg) {
        Err(reason) => {
            let patch = reason
                .is_recorded()
                .then(|| patch::skipped(pod, reason.code()));
            Decision::Skip { reason, patch }
        }
        Ok((overrides, resources)) => {
            let added = sidecar::build(
                pod,
                &ns.name,
                cfg,
                &overrides,
                &resources,
                trust_anchors_pem,
            );
            Decision::Inject(patch::inject(pod, added, cfg))
        }
    }
}

/// The injected pod itself (for `tulle inject --manual`, which has no API server to apply the
/// patch): [`decide`], then the patch applied to `pod`. `Err` when it is not injected.
pub fn inject_pod(
    pod: &Pod,
    ns: &Namespace,
    cfg: &Config,
    trust_anchors_pem: &str,
) -> Result<Pod, Skip> {
    match decide(pod, ns, cfg, trust_anchors_pem) {
        Decision::Skip { reason, .. } => Err(reason),
        Decision::Inject(patch) => {
            let mut doc = serde_json::to_value(pod).unwrap_or_default();
            // The patch was built for this very document: it applies.
            match json_patch::patch(&mut doc, &patch)
                .ok()
                .and_then(|()| serde_json::from_value(doc).ok())
            {
                Some(p) => Ok(p),
                None => Err(Skip::Invalid(InvalidAnnotation {
                    key: INJECT_ANNOTATION.into(),
                    value: "enabled".into(),
                    expected: "a pod the injector can patch (internal error, please report)",
                })),
            }
        }
    }
}

/// Whether `pod` is to be injected; if so with which overrides and proxy resources.
fn check(pod: &Pod, ns: &Namespace, cfg: &Config) -> Result<(Overrides, Resources), Skip> {
    let ns_annotations = &ns.annotations;
    let empty = BTreeMap::new();
    let pod_annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    if pod_annotations.contains_key(INJECTED_ANNOTATION) {
        return Err(Skip::AlreadyInjected);
    }
    let (value, on) = match (
        pod_annotations.get(INJECT_ANNOTATION),
        ns_annotations.get(INJECT_ANNOTATION),
    ) {
        (Some(v), _) => (v, "pod"),
        (None, Some(v)) => (v, "namespace"),
        (None, None) => return Err(Skip::NotEnabled),
    };
    match value.trim() {
        "enabled" => {}
        "disabled" => return Err(Skip::Disabled { on }),
        other => {
            return Err(Skip::Invalid(InvalidAnnotation {
                key: INJECT_ANNOTATION.into(),
                value: other.into(),
                expected: "enabled or disabled",
            }));
        }
    }
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return Err(Skip::HostNetwork);
    }
    if cfg.ipv6 {
        return Err(Skip::Ipv6);
    }
    let names = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .map(|c| c.name.as_str())
    });
    let volumes = spec
        .into_iter()
        .flat_map(|s| s.volumes.iter().flatten().map(|v| v.name.as_str()));
    for name in names.chain(volumes) {
        if [
            PROXY_CONTAINER,
            INIT_CONTAINER,
            TOKEN_VOLUME,
            sidecar::XTABLES_VOLUME,
        ]
        .contains(&name)
        {
            return Err(Skip::ExistingSidecar(name.to_string()));
        }
    }
    let ports = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| p.container_port)
    });
    for p in ports {
        if [OUTBOUND_PORT, INBOUND_PORT, ADMIN_PORT].contains(&p) {
            return Err(Skip::PortConflict(p));
        }
    }
    if let Some(level) = ns.labels.get(POD_SECURITY_LABEL)
        && matches!(level.as_str(), "baseline" | "restricted")
    {
        return Err(Skip::PodSecurity(level.clone()));
    }
    let o = Overrides::parse(pod_annotations, ns_annotations).map_err(Skip::Invalid)?;
    if let Some(image) = &o.image
        && *image != cfg.proxy_image
        && !cfg.allowed_images.contains(image)
    {
        let mut allowed = vec![cfg.proxy_image.clone()];
        allowed.extend(cfg.allowed_images.iter().cloned());
        return Err(Skip::ImageNotAllowed {
            image: image.clone(),
            allowed,
        });
    }
    let d = &cfg.resources;
    let r = Resources {
        cpu_request: o.cpu_request.clone().or_else(|| d.cpu_request.clone()),
        cpu_limit: o.cpu_limit.clone().or_else(|| d.cpu_limit.clone()),
        memory_request: o
            .memory_request
            .clone()
            .or_else(|| d.memory_request.clone()),
        memory_limit: o.memory_limit.clone().or_else(|| d.memory_limit.clone()),
    };
    overrides::check_request_limit(
        r.cpu_request.as_deref(),
        r.cpu_limit.as_deref(),
        "proxy-cpu-limit",
    )
    .and_then(|()| {
        overrides::check_request_limit(
            r.memory_request.as_deref(),
            r.memory_limit.as_deref(),
            "proxy-memory-limit",
        )
    })
    .map_err(Skip::Invalid)?;
    Ok((o, r))
}
