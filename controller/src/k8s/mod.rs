//! Kubernetes watchers feeding the [`Index`]. Access needed (RBAC): list/watch on
//! services, endpointslices (discovery.k8s.io), pods and trafficsplits
//! (split.smi-spec.io); nothing is written.

pub mod convert;
pub mod smi;

use crate::core::Index;
use futures::StreamExt;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use std::{
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// Which watches have completed their initial list.
#[derive(Debug, Default)]
pub struct Synced {
    services: AtomicBool,
    slices: AtomicBool,
    pods: AtomicBool,
}

impl Synced {
    /// Services, EndpointSlices and Pods are all listed (TrafficSplits are optional: the
    /// CRD may not be installed).
    pub fn is_ready(&self) -> bool {
        self.services.load(Ordering::Relaxed)
            && self.slices.load(Ordering::Relaxed)
            && self.pods.load(Ordering::Relaxed)
    }
}

/// Spawns one watch task per resource kind.
pub fn spawn_watches(client: Client, index: Arc<Index>, synced: Arc<Synced>) {
    let ix = index.clone();
    let (a, b, c) = (ix.clone(), ix.clone(), ix.clone());
    let s = synced.clone();
    tokio::spawn(watch_kind(
        Api::all(client.clone()),
        "services",
        move |o: &k8s_openapi::api::core::v1::Service| Some(convert::service(o)),
        move |ns, n, v| a.apply_service(ns, n, v),
        move |ns, n| b.delete_service(ns, n),
        move |all| {
            c.reset_services(all);
            s.services.store(true, Ordering::Relaxed);
        },
    ));
    let (a, b, c) = (ix.clone(), ix.clone(), ix.clone());
    let s = synced.clone();
    tokio::spawn(watch_kind(
        Api::all(client.clone()),
        "endpointslices",
        convert::slice,
        move |ns, n, v| a.apply_slice(ns, n, v),
        move |ns, n| b.delete_slice(ns, n),
        move |all| {
            c.reset_slices(all);
            s.slices.store(true, Ordering::Relaxed);
        },
    ));
    let (a, b, c) = (ix.clone(), ix.clone(), ix.clone());
    let s = synced;
    tokio::spawn(watch_kind(
        Api::all(client.clone()),
        "pods",
        move |o: &k8s_openapi::api::core::v1::Pod| Some(convert::pod(o)),
        move |ns, n, v| a.apply_pod(ns, n, v),
        move |ns, n| b.delete_pod(ns, n),
        move |all| {
            c.reset_pods(all);
            s.pods.store(true, Ordering::Relaxed);
        },
    ));
    let (a, b, c) = (ix.clone(), ix.clone(), ix);
    tokio::spawn(watch_kind(
        Api::<smi::TrafficSplit>::all(client),
        "trafficsplits",
        |o: &smi::TrafficSplit| Some(convert::split(o)),
        move |ns, n, v| a.apply_split(ns, n, v),
        move |ns, n| b.delete_split(ns, n),
        move |all| c.reset_splits(all),
    ));
}

/// Runs a watch on `api` forever (with backoff on errors), mapping events to index calls.
/// `convert` returning None treats the object as absent.
async fn watch_kind<K, T>(
    api: Api<K>,
    what: &'static str,
    convert: impl Fn(&K) -> Option<T> + Send + 'static,
    apply: impl Fn(&str, &str, T) + Send + 'static,
    delete: impl Fn(&str, &str) + Send + 'static,
    reset: impl Fn(Vec<(String, String, T)>) + Send + 'static,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Send + 'static,
{
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut initial: Vec<(String, String, T)> = Vec::new();
    let mut last_error: Option<String> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(o)) => {
                let (ns, name) = (o.namespace().unwrap_or_default(), o.name_any());
                match convert(&o) {
                    Some(v) => apply(&ns, &name, v),
                    None => delete(&ns, &name),
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                delete(&o.namespace().unwrap_or_default(), &o.name_any())
            }
            Ok(watcher::Event::Init) => initial.clear(),
            Ok(watcher::Event::InitApply(o)) => {
                if let Some(v) = convert(&o) {
                    initial.push((o.namespace().unwrap_or_default(), o.name_any(), v));
                }
            }
            Ok(watcher::Event::InitDone) => {
                let n = initial.len();
                reset(std::mem::take(&mut initial));
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
