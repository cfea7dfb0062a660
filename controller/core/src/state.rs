//! The cluster state the index keeps (in domain terms) and the pure functions that
//! resolve a target from it.

use super::{
    DEFAULT_WEIGHT, Endpoint, Profile, ProtocolHint, Resolution, Target, WeightedBackend,
    access::{DefaultPolicy, NamespaceInfo, PodAccess, TrafficTargetInfo, UdpRouteInfo},
    smi::{Invalid, RouteGroupInfo, Selected, SmiKind, SplitInfo, TcpRouteInfo},
};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

/// A Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// ClusterIPs (none for headless services).
    pub cluster_ips: Vec<IpAddr>,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// A Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name ("" when unnamed).
    pub name: String,
    /// Port number.
    pub port: u16,
    /// The port is marked opaque (appProtocol other than http/h2c/grpc... or annotation).
    pub opaque: bool,
}

/// An EndpointSlice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceInfo {
    /// The Service it belongs to (`kubernetes.io/service-name`).
    pub service: String,
    /// Ports by name ("" when unnamed).
    pub ports: Vec<(String, u16)>,
    /// Endpoints.
    pub endpoints: Vec<SliceEndpoint>,
}

/// An endpoint of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// Addresses.
    pub addrs: Vec<IpAddr>,
    /// Ready (or readiness unknown).
    pub ready: bool,
    /// The pod behind it (targetRef of kind Pod).
    pub pod: Option<String>,
}

/// A Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// Pod IPs (empty until scheduled, and for hostNetwork pods).
    pub ips: Vec<IpAddr>,
    /// ServiceAccount name.
    pub service_account: String,
    /// Runs a tulle proxy.
    pub meshed: bool,
    /// Owner (kind in lower case, name), e.g. ("deployment", "web").
    pub owner: Option<(String, String)>,
}

/// `(namespace, name)`.
pub(crate) type Key = (String, String);

/// Everything the index knows.
#[derive(Debug, Default)]
pub struct State {
    pub(crate) services: HashMap<Key, ServiceInfo>,
    pub(crate) slices: HashMap<Key, SliceInfo>,
    pub(crate) pods: HashMap<Key, PodInfo>,
    pub(crate) splits: HashMap<Key, SplitInfo>,
    pub(crate) route_groups: HashMap<Key, RouteGroupInfo>,
    pub(crate) tcp_routes: HashMap<Key, TcpRouteInfo>,
    pub(crate) traffic_targets: HashMap<Key, TrafficTargetInfo>,
    pub(crate) udp_routes: HashMap<Key, UdpRouteInfo>,
    /// Namespaces by name (their default inbound policy).
    pub(crate) namespaces: HashMap<String, NamespaceInfo>,
    /// What the policy needs of each pod (annotation, probes).
    pub(crate) pod_access: HashMap<Key, PodAccess>,
    /// The install's default inbound policy.
    pub(crate) default_policy: DefaultPolicy,
    /// SMI objects that exist but could not be read (treated as absent).
    pub(crate) invalid: HashMap<(SmiKind, Key), Invalid>,
    /// Service key → names of its slices.
    pub(crate) slices_by_service: HashMap<Key, HashSet<String>>,
    /// Pod key → services whose slices point at it.
    pub(crate) services_by_pod: HashMap<Key, HashSet<String>>,
    pub(crate) service_by_ip: HashMap<IpAddr, Key>,
    pub(crate) pod_by_ip: HashMap<IpAddr, Key>,
}

/// Static settings used when building endpoints.
#[derive(Clone, Debug)]
pub struct Naming {
    /// Cluster DNS domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// Identity trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
}

/// Who owns an address, as far as resolution is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AddrOwner {
    Service(Key),
    Pod(Key),
    None,
}

impl State {
    pub(crate) fn addr_owner(&self, ip: &IpAddr) -> AddrOwner {
        if let Some(k) = self.service_by_ip.get(ip) {
            AddrOwner::Service(k.clone())
        } else if let Some(k) = self.pod_by_ip.get(ip) {
            AddrOwner::Pod(k.clone())
        } else {
            AddrOwner::None
        }
    }

    pub(crate) fn resolve(&self, target: &Target, naming: &Naming) -> Resolution {
        match target {
            Target::Service {
                namespace,
                name,
                port,
            } => self.resolve_service(&(namespace.clone(), name.clone()), *port, naming),
            Target::Addr(sa) => match self.addr_owner(&sa.ip()) {
                AddrOwner::Service(k) => self.resolve_service(&k, sa.port(), naming),
                AddrOwner::Pod(k) => match self.pods.get(&k) {
                    Some(pod) => {
                        let ep = endpoint(*sa, &k, Some(pod), false, naming);
                        Resolution::Endpoints(Arc::new(BTreeMap::from([(*sa, ep)])))
                    }
                    None => Resolution::Unknown,
                },
                AddrOwner::None => Resolution::Unknown,
            },
        }
    }

    fn resolve_service(&self, key: &Key, port: u16, naming: &Naming) -> Resolution {
        let Some(svc) = self.services.get(key) else {
            return Resolution::Unknown;
        };
        let mut out = BTreeMap::new();
        let Some(sp) = svc.ports.iter().find(|p| p.port == port) else {
            return Resolution::Endpoints(Arc::new(out));
        };
        for slice_name in self.slices_by_service.get(key).into_iter().flatten() {
            let Some(slice) = self.slices.get(&(key.0.clone(), slice_name.clone())) else {
                continue;
            };
            let Some(&(_, target_port)) = slice.ports.iter().find(|(n, _)| *n == sp.name) else {
                continue;
            };
            for ep in slice.endpoints.iter().filter(|e| e.ready) {
                let pod_key = ep.pod.as_ref().map(|p| (key.0.clone(), p.clone()));
                let pod = pod_key.as_ref().and_then(|k| self.pods.get(k));
                for ip in &ep.addrs {
                    let addr = SocketAddr::new(*ip, target_port);
                    let pk = pod_key
                        .clone()
                        .unwrap_or_else(|| (key.0.clone(), String::new()));
                    out.insert(addr, endpoint(addr, &pk, pod, sp.opaque, naming));
                }
            }
        }
        Resolution::Endpoints(Arc::new(out))
    }

    pub(crate) fn profile(&self, target: &Target, naming: &Naming) -> Profile {
        let (key, port) = match target {
            Target::Service {
                namespace,
                name,
                port,
            } => ((namespace.clone(), name.clone()), *port),
            Target::Addr(sa) => match self.addr_owner(&sa.ip()) {
                AddrOwner::Service(k) => (k, sa.port()),
                _ => return Profile::default(),
            },
        };
        if !self.services.contains_key(&key) {
            return Profile::default();
        }
        let fqn = |svc: &str| format!("{svc}.{}.svc.{}", key.0, naming.cluster_domain);
        let mut profile = Profile {
            fully_qualified_name: Some(fqn(&key.1)),
            ..Profile::default()
        };
        let Some((split_key, split)) = self.split_for(&key.0, &key.1) else {
            return profile;
        };
        let rules = match self.selected(&key.0, split, port) {
            Selected::All => vec![],
            Selected::Rules(r) => r,
            Selected::Nothing => return profile,
        };
        profile.backends = split
            .backends
            .iter()
            .map(|(svc, w)| WeightedBackend {
                authority: format!("{}:{port}", fqn(svc)),
                weight: self.backend_weight(&key.0, svc, port, *w),
            })
            .collect();
        profile.split_matches = rules;
        profile.traffic_split = Some(format!("{}/{}", split_key.0, split_key.1));
        profile
    }
}

fn endpoint(
    addr: SocketAddr,
    pod_key: &Key,
    pod: Option<&PodInfo>,
    opaque: bool,
    naming: &Naming,
) -> Endpoint {
    let mut labels = BTreeMap::new();
    labels.insert("namespace".to_string(), pod_key.0.clone());
    let mut identity = None;
    let mut hint = if opaque {
        ProtocolHint::Opaque
    } else {
        ProtocolHint::Unknown
    };
    if let Some(pod) = pod {
        labels.insert("pod".to_string(), pod_key.1.clone());
        labels.insert("serviceaccount".to_string(), pod.service_account.clone());
        if let Some((kind, name)) = &pod.owner {
            labels.insert(kind.clone(), name.clone());
        }
        if pod.meshed {
            identity = Some(
                tulle_api::ServiceAccountIdentity::new(
                    &pod.service_account,
                    &pod_key.0,
                    &naming.trust_domain,
                )
                .dns_name(),
            );
            if !opaque {
                hint = ProtocolHint::H2;
            }
        }
    }
    Endpoint {
        addr,
        weight: DEFAULT_WEIGHT,
        identity,
        hint,
        labels,
    }
}
