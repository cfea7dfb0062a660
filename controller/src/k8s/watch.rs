//! One watch loop for every resource: [`IndexResource`] is what the index offers per resource
//! type (apply, delete, reset), [`handle`] maps a stream of watcher events onto it. An object
//! `convert` maps to `None` is treated as absent. SMI objects are converted to
//! `Result<T, Invalid>`: an object that cannot be read is recorded as invalid (its Events say
//! why) and the watch keeps serving every other object.

use crate::core::{
    Index, Invalid, NamespaceInfo, PodAccess, PodInfo, ServiceInfo, SliceInfo, SmiObject,
};
use futures::{Stream, StreamExt};
use kube::{
    Resource, ResourceExt,
    runtime::watcher::{self, Event},
};
use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
};

/// What the index offers for one resource type.
pub trait IndexResource<T> {
    /// Adds or replaces an object.
    fn apply(&self, ns: &str, name: &str, v: T);
    /// Removes an object.
    fn delete(&self, ns: &str, name: &str);
    /// Replaces every object (after a watch (re)start).
    fn reset(&self, all: Vec<(String, String, T)>);
}

impl IndexResource<ServiceInfo> for Index {
    fn apply(&self, ns: &str, name: &str, v: ServiceInfo) {
        self.apply_service(ns, name, v);
    }
    fn delete(&self, ns: &str, name: &str) {
        self.delete_service(ns, name);
    }
    fn reset(&self, all: Vec<(String, String, ServiceInfo)>) {
        self.reset_services(all);
    }
}

impl IndexResource<SliceInfo> for Index {
    fn apply(&self, ns: &str, name: &str, v: SliceInfo) {
        self.apply_slice(ns, name, v);
    }
    fn delete(&self, ns: &str, name: &str) {
        self.delete_slice(ns, name);
    }
    fn reset(&self, all: Vec<(String, String, SliceInfo)>) {
        self.reset_slices(all);
    }
}

impl IndexResource<PodInfo> for Index {
    fn apply(&self, ns: &str, name: &str, v: PodInfo) {
        self.apply_pod(ns, name, v);
    }
    fn delete(&self, ns: &str, name: &str) {
        self.delete_pod(ns, name);
    }
    fn reset(&self, all: Vec<(String, String, PodInfo)>) {
        self.reset_pods(all);
    }
}

impl IndexResource<(PodInfo, PodAccess)> for Index {
    fn apply(&self, ns: &str, name: &str, (pod, access): (PodInfo, PodAccess)) {
        self.apply_pod_access(ns, name, pod, access);
    }
    fn delete(&self, ns: &str, name: &str) {
        self.delete_pod(ns, name);
    }
    fn reset(&self, all: Vec<(String, String, (PodInfo, PodAccess))>) {
        self.reset_pods_access(all);
    }
}

/// Namespaces are cluster-scoped: `ns` is empty, `name` the namespace.
impl IndexResource<NamespaceInfo> for Index {
    fn apply(&self, _: &str, name: &str, v: NamespaceInfo) {
        self.apply_namespace(name, v);
    }
    fn delete(&self, _: &str, name: &str) {
        self.delete_namespace(name);
    }
    fn reset(&self, all: Vec<(String, String, NamespaceInfo)>) {
        self.reset_namespaces(all.into_iter().map(|(_, n, v)| (n, v)).collect());
    }
}

impl<T: SmiObject> IndexResource<Result<T, Invalid>> for Index {
    fn apply(&self, ns: &str, name: &str, v: Result<T, Invalid>) {
        self.apply_smi(ns, name, v);
    }
    fn delete(&self, ns: &str, name: &str) {
        self.delete_smi::<T>(ns, name);
    }
    fn reset(&self, all: Vec<(String, String, Result<T, Invalid>)>) {
        self.reset_smi(all);
    }
}

/// Feeds `events` into `sink` until the stream ends: Init/InitApply collect a fresh list that
/// InitDone swaps in (`reset`) and flags `synced`; Apply/Delete change one object. Errors
/// are logged once per distinct message (the watcher retries with backoff).
pub async fn handle<K, T, S>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    what: &'static str,
    mut convert: impl FnMut(&K) -> Option<T>,
    sink: &S,
    synced: &AtomicBool,
) where
    K: Resource,
    S: IndexResource<T> + ?Sized,
{
    let mut events = std::pin::pin!(events);
    let mut initial: Vec<(String, String, T)> = Vec::new();
    let mut last_error: Option<String> = None;
    while let Some(ev) = events.next().await {
        match ev {
            Ok(Event::Apply(o)) => {
                let (ns, name) = (o.namespace().unwrap_or_default(), o.name_any());
                match convert(&o) {
                    Some(v) => sink.apply(&ns, &name, v),
                    None => sink.delete(&ns, &name),
                }
            }
            Ok(Event::Delete(o)) => sink.delete(&o.namespace().unwrap_or_default(), &o.name_any()),
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(o)) => {
                if let Some(v) = convert(&o) {
                    initial.push((o.namespace().unwrap_or_default(), o.name_any(), v));
                }
            }
            Ok(Event::InitDone) => {
                let n = initial.len();
                sink.reset(std::mem::take(&mut initial));
                synced.store(true, Ordering::Relaxed);
                last_error = None;
                tracing::info!(resource = what, count = n, "initial list indexed");
            }
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(&msg) {
                    tracing::warn!(resource = what, error = %msg, "watch failed; retrying with backoff (check RBAC and that the CRD is installed)");
                    last_error = Some(msg);
                }
            }
        }
    }
}

/// Wraps a fallible parser of SMI objects: an object it rejects becomes [`Invalid`] (with the
/// reason), logged at warn once per object and reason.
pub fn tolerant<K, T, E>(
    what: &'static str,
    parse: impl Fn(&K) -> Result<T, E>,
) -> impl FnMut(&K) -> Option<Result<T, Invalid>>
where
    K: Resource,
    E: std::fmt::Display,
{
    let mut logged: HashMap<(String, String), String> = HashMap::new();
    move |o: &K| {
        let key = (o.namespace().unwrap_or_default(), o.name_any());
        let parsed = parse(o);
        if parsed.is_ok() {
            logged.remove(&key);
        }
        Some(parsed.map_err(|e| {
            let reason = e.to_string();
            if logged.get(&key) != Some(&reason) {
                tracing::warn!(resource = what, namespace = %key.0, name = %key.1, %reason, "cannot read this object; it is ignored until fixed (a Warning Event says why)");
                logged.insert(key.clone(), reason.clone());
            }
            Invalid {
                uid: o.meta().uid.clone(),
                reason,
            }
        }))
    }
}

#[cfg(test)]
mod tests;
