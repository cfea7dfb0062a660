//! The destination index: cluster state plus one `tokio::sync::watch` channel per watched
//! target. Every change recomputes only the targets it can affect, and a channel is only
//! notified when the target's resolution really changed. A watch channel keeps only the
//! latest value, so a slow client costs one resolution, not a queue.

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
    sync::{Arc, Mutex},
};
use tokio::sync::watch;

mod inventory;
mod policy;
mod smi;

pub use inventory::{MeshedPod, PodCount, SplitView};

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
    }
}

struct TargetWatch {
    tx: watch::Sender<Resolution>,
    owner: Option<AddrOwner>,
}

struct Inner {
    state: State,
    targets: HashMap<Target, TargetWatch>,
    profiles: HashMap<Target, watch::Sender<Profile>>,
    policies: HashMap<Key, policy::PolicyTx>,
    problems: watch::Sender<Arc<Problems>>,
}

/// What a change can affect.
#[derive(Default)]
struct Affected {
    services: HashSet<Key>,
    pods: HashSet<Key>,
    profiles: bool,
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
        let owner = match target {
            Target::Addr(sa) => Some(inner.state.addr_owner(&sa.ip())),
            Target::Service { .. } => None,
        };
        let (tx, rx) = watch::channel(res);
        inner
            .targets
            .insert(target.clone(), TargetWatch { tx, owner });
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
            remove_service(s, &key);
            for ip in &svc.cluster_ips {
                s.service_by_ip.insert(*ip, key.clone());
            }
            s.services.insert(key.clone(), svc);
            a.services.insert(key);
            a.profiles = true;
        });
    }

    /// Removes a Service.
    pub fn delete_service(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            remove_service(s, &key);
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
            remove_pod(s, &key);
            for ip in &pod.ips {
                s.pod_by_ip.insert(*ip, key.clone());
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
            remove_pod(s, &key);
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

        let state = &inner.state;
        let naming = &self.naming;
        inner.targets.retain(|target, tw| {
            if tw.tx.receiver_count() == 0 {
                return false;
            }
            let recompute = match target {
                Target::Service {
                    namespace, name, ..
                } => {
                    affected.all
                        || affected
                            .services
                            .contains(&(namespace.clone(), name.clone()))
                }
                Target::Addr(sa) => {
                    let owner = state.addr_owner(&sa.ip());
                    let hit = affected.all
                        || tw.owner.as_ref() != Some(&owner)
                        || match &owner {
                            AddrOwner::Service(k) => affected.services.contains(k),
                            AddrOwner::Pod(k) => affected.pods.contains(k),
                            AddrOwner::None => false,
                        };
                    tw.owner = Some(owner);
                    hit
                }
            };
            if recompute {
                let new = state.resolve(target, naming);
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
            true
        });
        m.watched_targets.set(inner.targets.len() as i64);
        policy::publish(&mut inner.policies, state, naming, &affected);
        if affected.all || affected.profiles || !affected.services.is_empty() {
            inner.profiles.retain(|target, tx| {
                if tx.receiver_count() == 0 {
                    return false;
                }
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

fn remove_service(s: &mut State, key: &Key) {
    if let Some(old) = s.services.remove(key) {
        for ip in old.cluster_ips {
            if s.service_by_ip.get(&ip) == Some(key) {
                s.service_by_ip.remove(&ip);
            }
        }
    }
}

fn remove_pod(s: &mut State, key: &Key) {
    s.pod_access.remove(key);
    if let Some(old) = s.pods.remove(key) {
        for ip in old.ips {
            if s.pod_by_ip.get(&ip) == Some(key) {
                s.pod_by_ip.remove(&ip);
            }
        }
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
