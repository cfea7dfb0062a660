//! SMI Traffic Access in domain terms: TrafficTargets, UDPRoutes, the mesh default inbound
//! policy, what the index keeps of a pod and a namespace for it, and the [`PodPolicy`] a
//! proxy enforces (mirrors `tulle.policy.PodPolicy` of `api/proto/policy.proto`).
//!
//! The policy is computed in `core::policy` (crate-private); semantics are in the crate README ("SMI
//! Traffic Access").

use super::{
    smi::{HttpRule, ObjectMeta, SmiKind, SmiObject},
    state::{Key, State},
};
use std::collections::HashMap;

/// The annotation (namespace or pod) that overrides the install's default inbound policy.
pub const DEFAULT_POLICY_ANNOTATION: &str = "config.tulle.io/default-inbound-policy";

/// The annotation a v1alpha2 TrafficTarget's `spec.destination.port` is kept in on
/// v1alpha3 (set by the conversion webhook): the TrafficTarget only covers that port.
pub const DESTINATION_PORT_ANNOTATION: &str = "access.smi-spec.io/destination-port";

/// What a client must be to be admitted by a pod no TrafficTarget names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DefaultPolicy {
    /// Everyone, meshed or not.
    #[default]
    Allow,
    /// Any client with a mesh identity.
    Authenticated,
    /// No one (but the exemptions: probes, admin port).
    Deny,
}

/// A default policy value that is not `allow`, `authenticated` or `deny`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid default inbound policy {0:?}: use allow, authenticated or deny")]
pub struct InvalidPolicy(pub String);

impl DefaultPolicy {
    /// Parses `allow`, `authenticated` or `deny` (surrounding spaces and case ignored).
    pub fn parse(s: &str) -> Result<Self, InvalidPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" => Ok(Self::Allow),
            "authenticated" => Ok(Self::Authenticated),
            "deny" => Ok(Self::Deny),
            _ => Err(InvalidPolicy(s.to_string())),
        }
    }

    /// The annotation value (`allow`, `authenticated`, `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Authenticated => "authenticated",
            Self::Deny => "deny",
        }
    }

    /// Reads an annotation value: an invalid one fails closed to [`DefaultPolicy::Deny`].
    pub fn from_annotation(v: Option<&str>) -> Option<Self> {
        v.map(|s| Self::parse(s).unwrap_or(Self::Deny))
    }
}

impl std::str::FromStr for DefaultPolicy {
    type Err = InvalidPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kubelet probe of the pod, exempt from authorization.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeInfo {
    /// Container port (named ports already resolved).
    pub port: u16,
    /// HTTP path without the query; empty for TCP and gRPC probes.
    pub path: String,
}

/// What the policy needs of a pod beyond [`super::PodInfo`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAccess {
    /// The pod's `config.tulle.io/default-inbound-policy` (an invalid value is `Deny`).
    pub default_policy: Option<DefaultPolicy>,
    /// Its containers' liveness, readiness and startup probes, sorted, without duplicates.
    pub probes: Vec<ProbeInfo>,
}

/// What the policy needs of a namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace's `config.tulle.io/default-inbound-policy` (an invalid value is `Deny`).
    pub default_policy: Option<DefaultPolicy>,
}

/// A TrafficTarget subject (`destination` or one of `sources`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// `kind`; only `ServiceAccount` is supported.
    pub kind: String,
    /// `name`.
    pub name: String,
    /// `namespace`; None: the TrafficTarget's namespace.
    pub namespace: Option<String>,
}

/// One of `spec.rules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessRule {
    /// `{kind: HTTPRouteGroup, name, matches}`; `matches` None: the whole group.
    HttpRouteGroup {
        /// The group's name (same namespace as the TrafficTarget).
        name: String,
        /// Names of the group's matches admitted; None: all of them.
        matches: Option<Vec<String>>,
    },
    /// `{kind: TCPRoute, name}`.
    TcpRoute(String),
    /// `{kind: UDPRoute, name}` (not enforced: the proxy does not carry UDP).
    UdpRoute(String),
    /// Any other kind (kind, name): contributes nothing.
    Other(String, String),
}

/// A TrafficTarget (`access.smi-spec.io/v1alpha3`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficTargetInfo {
    /// `spec.destination`.
    pub destination: Subject,
    /// `spec.rules`.
    pub rules: Vec<AccessRule>,
    /// `spec.sources`.
    pub sources: Vec<Subject>,
    /// A v1alpha2 `destination.port` (annotation [`DESTINATION_PORT_ANNOTATION`]): the
    /// TrafficTarget only covers that port.
    pub port: Option<u16>,
    /// Object metadata.
    pub meta: ObjectMeta,
}

impl TrafficTargetInfo {
    /// The destination ServiceAccount `(namespace, name)`, when the destination is one.
    pub fn destination_account(&self, ns: &str) -> Option<Key> {
        let d = &self.destination;
        (d.kind == "ServiceAccount").then(|| {
            (
                d.namespace.clone().unwrap_or_else(|| ns.to_string()),
                d.name.clone(),
            )
        })
    }
}

/// A UDPRoute (`spec.matches.ports`): accepted and indexed, not enforced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpRouteInfo {
    /// Destination ports; empty: all ports.
    pub ports: Vec<u16>,
    /// Object metadata.
    pub meta: ObjectMeta,
}

impl SmiObject for TrafficTargetInfo {
    const KIND: SmiKind = SmiKind::TrafficTarget;
    fn map(state: &mut State) -> &mut HashMap<Key, Self> {
        &mut state.traffic_targets
    }
}

impl SmiObject for UdpRouteInfo {
    const KIND: SmiKind = SmiKind::UdpRoute;
    fn map(state: &mut State) -> &mut HashMap<Key, Self> {
        &mut state.udp_routes
    }
}

/// The inbound policy of one pod (`tulle.policy.PodPolicy`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodPolicy {
    /// The mesh default for this pod.
    pub default_policy: DefaultPolicy,
    /// Some TrafficTarget names the pod's ServiceAccount: only `authorizations` admit.
    pub targeted: bool,
    /// Allow rules, sorted by TrafficTarget.
    pub authorizations: Vec<Authorization>,
    /// Probe exemptions.
    pub probes: Vec<ProbeInfo>,
}

/// What one TrafficTarget admits (`tulle.policy.Authorization`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorization {
    /// `namespace/name` of the TrafficTarget.
    pub traffic_target: String,
    /// Client identities (DNS names), sorted.
    pub identities: Vec<String>,
    /// Ports covered, sorted; empty: every port.
    pub ports: Vec<u16>,
    /// HTTP routes admitted (names `<group>/<match>`); empty: any request or connection.
    pub http_routes: Vec<HttpRule>,
}
