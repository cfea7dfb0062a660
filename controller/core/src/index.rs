//! The destination index: cluster state plus one `tokio::sync::watch` channel per watched
//! target. Every change recomputes only the targets it can affect, and a channel is only
//! notified when the target's resolution really changed. A watch channel keeps only the
//! latest value, so a slow client costs one resolution, not a queue.
//!
//! The cost of a change under the lock is proportional to what it affects, not to what is
//! watched (issue 15, item 7): the watched targets are also indexed by Service and by IP
//! address, so a change looks up the targets of the Services, pods and addresses it touched
//! (`destination_index_targets_examined` counts them) instead of scanning every watch; an
//! EndpointSlice or Pod change recomputes no profile (profiles depend on Services and SMI
//! objects only), and a Service or SMI change recomputes the profiles of its namespace only.
//! Watches nobody listens to any more are dropped when a change examines them, and by a sweep
//! whenever the map has doubled since the last one.

use super::{
    Profile, Resolution, Target,
    access::PodAccess,
    problems::Problems,
    state::{AddrOwner, Key, Naming, PodInfo, ServiceInfo, SliceInfo, State},
};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex},
};
use tokio::sync::watch;

mod inventory;
mod policy;
mod smi;

pub use inventory::{MeshedPod, PodCount, SplitView, TargetView};

pub use policy::PolicyWatch;

/// Index sizes and activity.
#[derive(Clone, Debug, Default)]
pub struct IndexMetrics {
    services: Gauge,
    slices: Gauge,
    pods: Gauge,
    splits: Gauge,
    invalid_smi: Gauge,
    watched_targets: Gauge,
    updates: Counter,
    examined: Counter,
    profiles_recomputed: Counter,
}

impl IndexMetrics {
    /// Registers under `destination_index_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("destination_index");
        r.register("services", "Services indexed", self.services.clone());
        r.register(
            "endpoint_slices",
            "EndpointSlices indexed",
            self.slices.clone(),
        );
        r.register("pods", "Pods indexed", self.pods.clone());
        r.register(
            "traffic_splits",
            "TrafficSplits indexed",
            self.splits.clone(),
        );
        r.register(
            "invalid_smi_objects",
            "SMI objects that could not be read and are ignored (see their Events)",
            self.invalid_smi.clone(),
        );
        r.register(
            "watched_targets",
            "Distinct targets being watched",
            self.watched_targets.clone(),
        );
        r.register(
            "resolution_changes",
            "Resolution changes published to watchers",
            self.updates.clone(),
        );
        r.register(
            "targets_examined",
            "Watched targets examined because a change could affect them (the work per update)",
            self.examined.clone(),
        );
        r.register(
            "profiles_recomputed",
            "Watched profiles recomputed because a change could affect them",
            self.profiles_recomputed.clone(),
        );
    }

    /// Watched targets examined for changes so far.
    pub fn targets_examined(&self) -> u64 {
        self.examined.get()
    }

    /// Watched profiles recomputed for changes so far.
    pub fn profiles_recomputed(&self) -> u64 {
        self.profiles_recomputed.get()
    }
}

struct TargetWatch {
    tx: watch::Sender<Resolution>,
}

struct Inner {
    state: State,
    targets: HashMap<Target, TargetWatch>,
    /// The ports of the watched `Target::Service`s, by Service.
    service_targets: HashMap<Key, HashSet<u16>>,
    /// The ports of the watched `Target::Addr`s, by IP address.
    addr_targets: HashMap<IpAddr, HashSet<u16>>,
    /// How many targets the last sweep of unwatched ones left.
    swept: usize,
    profiles: HashMap<Target, watch::Sender<Profile>>,
    policies: HashMap<Key, policy::PolicyTx>,
    problems: watch::Sender<Arc<Problems>>,
}

/// What a change can affect.
#[derive(Default)]
struct Affected {
    services: HashSet<Key>,
    pods: HashSet<Key>,
    /// Addresses whose owner (Service ClusterIP or pod IP) may have changed.
    ips: HashSet<IpAddr>,
    /// SMI objects or Services changed: the problems and some profiles may have changed.
    profiles: bool,
    /// The namespaces whose profiles may have changed (with `profiles`; empty: all).
    profile_namespaces: HashSet<String>,
    /// Namespaces whose default inbound policy changed.
    namespaces: HashSet<String>,
    /// Destination ServiceAccounts whose TrafficTargets or routes changed.
    accounts: HashSet<Key>,
    /// Every pod's policy may have changed.
    policies: bool,
    all: bool,
}

/// The destination index.
pub struct Index {
    naming: Naming,
    inner: Mutex<Inner>,
    metrics: IndexMetrics,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("naming", &self.naming)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// An empty index.
    pub fn new(naming: Naming) -> Self {
        Self {
            naming,
            inner: Mutex::new(Inner {
                state: State::default(),
                targets: HashMap::new(),
                service_targets: HashMap::new(),
                addr_targets: HashMap::new(),
                swept: 0,
                profiles: HashMap::new(),
                policies: HashMap::new(),
                problems: watch::channel(Arc::new(Problems::new())).0,
            }),
            metrics: IndexMetrics::default(),
        }
    }

    /// The index's metrics.
    pub fn metrics(&self) -> &IndexMetrics {
        &self.metrics
    }

    /// The cluster/trust domain settings.
    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough state: keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches the endpoints of `target`; the receiver holds the current resolution.
    pub fn watch(&self, target: &Target) -> watch::Receiver<Resolution> {
        let mut inner = self.lock();
        if let Some(tw) = inner.targets.get(target) {
            return tw.tx.subscribe();
        }
        let res = inner.state.resolve(target, &self.naming);
        let (tx, rx) = watch::channel(res);
        if inner.targets.len() >= (2 * inner.swept).max(64) {
            inner.sweep();
        }
        inner.insert_target(target.clone(), TargetWatch { tx });
        self.metrics.watched_targets.set(inner.targets.len() as i64);
        rx
    }

    /// Watches the profile (TrafficSplit backends) of `target`.
    pub fn watch_profile(&self, target: &Target) -> watch::Receiver<Profile> {
        let mut inner = self.lock();
        if let Some(tx) = inner.profiles.get(target) {
            return tx.subscribe();
        }
        let p = inner.state.profile(target, &self.naming);
        let (tx, rx) = watch::channel(p);
        inner.profiles.insert(target.clone(), tx);
        rx
    }

    // === Services ===

    /// Adds or replaces a Service.
    pub fn apply_service(&self, ns: &str, name: &str, svc: ServiceInfo) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            remove_service(s, &key, a);
            for ip in &svc.cluster_ips {
                s.service_by_ip.insert(*ip, key.clone());
                a.ips.insert(*ip);
            }
            s.services.insert(key.clone(), svc);
            a.profile_namespaces.insert(key.0.clone());
            a.services.insert(key);
            a.profiles = true;
        });
    }

    /// Removes a Service.
    pub fn delete_service(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            remove_service(s, &key, a);
            a.profile_namespaces.insert(key.0.clone());
            a.services.insert(key);
            a.profiles = true;
        });
    }

    /// Replaces all Services (after a watch restart).
    pub fn reset_services(&self, all: Vec<(String, String, ServiceInfo)>) {
        self.update(|s, a| {
            s.services.clear();
            s.service_by_ip.clear();
            for (ns, name, svc) in all {
                for ip in &svc.cluster_ips {
                    s.service_by_ip.insert(*ip, (ns.clone(), name.clone()));
                }
                s.services.insert((ns, name), svc);
            }
            a.all = true;
        });
    }

    // === EndpointSlices ===

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&self, ns: &str, name: &str, slice: SliceInfo) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            if let Some(old) = remove_slice(s, &key) {
                a.services.insert((ns.to_string(), old));
            }
            a.services.insert((ns.to_string(), slice.service.clone()));
            insert_slice(s, key, slice);
        });
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            if let Some(old) = remove_slice(s, &key) {
                a.services.insert((ns.to_string(), old));
            }
        });
    }

    /// Replaces all EndpointSlices.
    pub fn reset_slices(&self, all: Vec<(String, String, SliceInfo)>) {
        self.update(|s, a| {
            s.slices.clear();
            s.slices_by_service.clear();
            s.services_by_pod.clear();
            for (ns, name, slice) in all {
                insert_slice(s, (ns, name), slice);
            }
            a.all = true;
        });
    }

    // === Pods ===

    /// Adds or replaces a Pod (without probes or default-policy annotation: see
    /// [`Index::apply_pod_access`]).
    pub fn apply_pod(&self, ns: &str, name: &str, pod: PodInfo) {
        self.apply_pod_access(ns, name, pod, PodAccess::default());
    }

    /// Adds or replaces a Pod with what its inbound policy needs.
    pub fn apply_pod_access(&self, ns: &str, name: &str, pod: PodInfo, access: PodAccess) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            remove_pod(s, &key, a);
            for ip in &pod.ips {
                s.pod_by_ip.insert(*ip, key.clone());
                a.ips.insert(*ip);
            }
            s.pods.insert(key.clone(), pod);
            s.pod_access.insert(key.clone(), access);
            pod_affects(s, &key, a);
        });
    }

    /// Removes a Pod.
    pub fn delete_pod(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            remove_pod(s, &key, a);
            pod_affects(s, &key, a);
        });
    }

    /// Replaces all Pods.
    pub fn reset_pods(&self, all: Vec<(String, String, PodInfo)>) {
        self.reset_pods_access(
            all.into_iter()
                .map(|(ns, name, p)| (ns, name, (p, PodAccess::default())))
                .collect(),
        );
    }

    /// Replaces all Pods, with what their inbound policies need.
    pub fn reset_pods_access(&self, all: Vec<(String, String, (PodInfo, PodAccess))>) {
        self.update(|s, a| {
            s.pods.clear();
            s.pod_by_ip.clear();
            s.pod_access.clear();
            for (ns, name, (pod, access)) in all {
                for ip in &pod.ips {
                    s.pod_by_ip.insert(*ip, (ns.clone(), name.clone()));
                }
                s.pod_access.insert((ns.clone(), name.clone()), access);
                s.pods.insert((ns, name), pod);
            }
            a.all = true;
        });
    }

    fn update(&self, f: impl FnOnce(&mut State, &mut Affected)) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut affected = Affected::default();
        f(&mut inner.state, &mut affected);
        let m = &self.metrics;
        m.services.set(inner.state.services.len() as i64);
        m.slices.set(inner.state.slices.len() as i64);
        m.pods.set(inner.state.pods.len() as i64);
        m.splits.set(inner.state.splits.len() as i64);
        m.invalid_smi.set(inner.state.invalid.len() as i64);
        if affected.all || affected.profiles {
            let problems = inner.state.problems();
            inner.problems.send_if_modified(|cur| {
                if **cur == problems {
                    false
                } else {
                    *cur = Arc::new(problems);
                    true
                }
            });
        }

        let naming = &self.naming;
        let candidates = inner.candidates(&affected);
        for target in candidates {
            m.examined.inc();
            let Some(tw) = inner.targets.get_mut(&target) else {
                continue;
            };
            if tw.tx.receiver_count() == 0 {
                inner.remove_target(&target);
                continue;
            }
            let state = &inner.state;
            let new = state.resolve(&target, naming);
            let changed = tw.tx.send_if_modified(|cur| {
                if *cur == new {
                    false
                } else {
                    *cur = new;
                    true
                }
            });
            if changed {
                m.updates.inc();
            }
        }
        let state = &inner.state;
        m.watched_targets.set(inner.targets.len() as i64);
        policy::publish(&mut inner.policies, state, naming, &affected);
        if affected.all || affected.profiles {
            let everywhere = affected.all || affected.profile_namespaces.is_empty();
            let in_scope = |target: &Target| {
                everywhere
                    || match target {
                        Target::Service { namespace, .. } => {
                            affected.profile_namespaces.contains(namespace)
                        }
                        Target::Addr(sa) => {
                            affected.ips.contains(&sa.ip())
                                || match state.addr_owner(&sa.ip()) {
                                    AddrOwner::Service((ns, _)) => {
                                        affected.profile_namespaces.contains(&ns)
                                    }
                                    _ => false,
                                }
                        }
                    }
            };
            inner.profiles.retain(|target, tx| {
                if tx.receiver_count() == 0 {
                    return false;
                }
                if !in_scope(target) {
                    return true;
                }
                m.profiles_recomputed.inc();
                let new = state.profile(target, naming);
                tx.send_if_modified(|cur| {
                    if *cur == new {
                        false
                    } else {
                        *cur = new;
                        true
                    }
                });
                true
            });
        }
    }
}

fn remove_service(s: &mut State, key: &Key, a: &mut Affected) {
    if let Some(old) = s.services.remove(key) {
        for ip in old.cluster_ips {
            a.ips.insert(ip);
            if s.service_by_ip.get(&ip) == Some(key) {
                s.service_by_ip.remove(&ip);
            }
        }
    }
}

fn remove_pod(s: &mut State, key: &Key, a: &mut Affected) {
    s.pod_access.remove(key);
    if let Some(old) = s.pods.remove(key) {
        for ip in old.ips {
            a.ips.insert(ip);
            if s.pod_by_ip.get(&ip) == Some(key) {
                s.pod_by_ip.remove(&ip);
            }
        }
    }
}

impl Inner {
    fn insert_target(&mut self, target: Target, tw: TargetWatch) {
        match &target {
            Target::Service {
                namespace,
                name,
                port,
            } => {
                self.service_targets
                    .entry((namespace.clone(), name.clone()))
                    .or_default()
                    .insert(*port);
            }
            Target::Addr(sa) => {
                self.addr_targets
                    .entry(sa.ip())
                    .or_default()
                    .insert(sa.port());
            }
        }
        self.targets.insert(target, tw);
    }

    fn remove_target(&mut self, target: &Target) {
        self.targets.remove(target);
        match target {
            Target::Service {
                namespace,
                name,
                port,
            } => {
                let key = (namespace.clone(), name.clone());
                if let Some(ports) = self.service_targets.get_mut(&key) {
                    ports.remove(port);
                    if ports.is_empty() {
                        self.service_targets.remove(&key);
                    }
                }
            }
            Target::Addr(sa) => {
                if let Some(ports) = self.addr_targets.get_mut(&sa.ip()) {
                    ports.remove(&sa.port());
                    if ports.is_empty() {
                        self.addr_targets.remove(&sa.ip());
                    }
                }
            }
        }
    }

    /// Drops the watches nobody listens to any more.
    fn sweep(&mut self) {
        let dead: Vec<Target> = (self.targets.iter())
            .filter(|(_, tw)| tw.tx.receiver_count() == 0)
            .map(|(t, _)| t.clone())
            .collect();
        for t in &dead {
            self.remove_target(t);
        }
        self.swept = self.targets.len();
    }

    /// The watched targets `a` can affect: those of the affected Services (by name and by
    /// ClusterIP), of the affected pods' IPs, and of the addresses whose owner changed.
    fn candidates(&self, a: &Affected) -> Vec<Target> {
        if a.all {
            return self.targets.keys().cloned().collect();
        }
        let mut out = HashSet::new();
        let mut ips: Vec<IpAddr> = a.ips.iter().copied().collect();
        for key in &a.services {
            for port in self.service_targets.get(key).into_iter().flatten() {
                out.insert(Target::Service {
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                    port: *port,
                });
            }
            if let Some(svc) = self.state.services.get(key) {
                ips.extend(svc.cluster_ips.iter().copied());
            }
        }
        for key in &a.pods {
            if let Some(pod) = self.state.pods.get(key) {
                ips.extend(pod.ips.iter().copied());
            }
        }
        for ip in ips {
            for port in self.addr_targets.get(&ip).into_iter().flatten() {
                out.insert(Target::Addr(std::net::SocketAddr::new(ip, *port)));
            }
        }
        out.into_iter().collect()
    }
}

fn pod_affects(s: &State, key: &Key, a: &mut Affected) {
    a.pods.insert(key.clone());
    for svc in s.services_by_pod.get(key).into_iter().flatten() {
        a.services.insert((key.0.clone(), svc.clone()));
    }
}

/// Removes a slice and its back-references; returns the service it belonged to.
fn remove_slice(s: &mut State, key: &Key) -> Option<String> {
    let old = s.slices.remove(key)?;
    let svc_key = (key.0.clone(), old.service.clone());
    if let Some(set) = s.slices_by_service.get_mut(&svc_key) {
        set.remove(&key.1);
        if set.is_empty() {
            s.slices_by_service.remove(&svc_key);
        }
    }
    // Recompute pod back-references of this service from its remaining slices.
    for ep in &old.endpoints {
        if let Some(pod) = &ep.pod {
            let pk = (key.0.clone(), pod.clone());
            let still = s
                .slices_by_service
                .get(&svc_key)
                .into_iter()
                .flatten()
                .any(|sl| {
                    s.slices
                        .get(&(key.0.clone(), sl.clone()))
                        .is_some_and(|x| x.endpoints.iter().any(|e| e.pod.as_ref() == Some(pod)))
                });
            if !still && let Some(set) = s.services_by_pod.get_mut(&pk) {
                set.remove(&old.service);
                if set.is_empty() {
                    s.services_by_pod.remove(&pk);
                }
            }
        }
    }
    Some(old.service)
}

fn insert_slice(s: &mut State, key: Key, slice: SliceInfo) {
    let (ns, name) = key;
    s.slices_by_service
        .entry((ns.clone(), slice.service.clone()))
        .or_default()
        .insert(name.clone());
    for ep in &slice.endpoints {
        if let Some(pod) = &ep.pod {
            s.services_by_pod
                .entry((ns.clone(), pod.clone()))
                .or_default()
                .insert(slice.service.clone());
        }
    }
    s.slices.insert((ns, name), slice);
}
