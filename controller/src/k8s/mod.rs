//! Kubernetes watchers feeding the [`Index`], and the task that publishes the SMI objects'
//! problems as Events. Access needed (RBAC): list/watch on services, endpointslices
//! (discovery.k8s.io), pods, namespaces, trafficsplits (split.smi-spec.io), traffictargets
//! (access.smi-spec.io), httproutegroups, tcproutes and udproutes (specs.smi-spec.io);
//! create/patch on events (events.k8s.io).
//!
//! Every watch is one [`watch::handle`] loop over an [`watch::IndexResource`]. The SMI
//! resources are watched as [`DynamicObject`]s and read by the tolerant parsers of [`smi`]:
//! one object that cannot be read is ignored (with a log line and a Warning Event) and never
//! stalls the watch.

pub mod access;
pub mod convert;
pub mod events;
pub mod metrics_api;
pub mod smi;
pub mod trust_anchors;
pub mod watch;

use crate::core::{
    Index, RouteGroupInfo, SplitInfo, TcpRouteInfo, TrafficTargetInfo, UdpRouteInfo,
};
use kube::{
    Api, Client, Resource,
    core::DynamicObject,
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
use watch::IndexResource;

/// Which watches have completed their initial list.
#[derive(Debug, Default)]
pub struct Synced {
    services: AtomicBool,
    slices: AtomicBool,
    pods: AtomicBool,
    splits: AtomicBool,
    route_groups: AtomicBool,
    tcp_routes: AtomicBool,
    traffic_targets: AtomicBool,
    udp_routes: AtomicBool,
    namespaces: AtomicBool,
}

impl Synced {
    /// Services, EndpointSlices and Pods are all listed (the SMI resources are optional:
    /// their CRDs may not be installed; Namespaces only matter to the policy API, see
    /// [`Synced::policy_ready`]).
    pub fn is_ready(&self) -> bool {
        self.services.load(Ordering::Relaxed)
            && self.slices.load(Ordering::Relaxed)
            && self.pods.load(Ordering::Relaxed)
    }

    /// Pods, Namespaces and the SMI access resources are listed: inbound policies are
    /// complete (a policy served before would admit what a TrafficTarget not yet listed
    /// restricts).
    pub fn policy_ready(&self) -> bool {
        self.pods.load(Ordering::Relaxed)
            && self.namespaces.load(Ordering::Relaxed)
            && self.traffic_targets.load(Ordering::Relaxed)
            && self.route_groups.load(Ordering::Relaxed)
            && self.tcp_routes.load(Ordering::Relaxed)
            && self.udp_routes.load(Ordering::Relaxed)
    }

    /// Pods, Namespaces and TrafficTargets are listed (the routes may not be: a route
    /// that is not known admits nothing).
    pub fn policy_base_ready(&self) -> bool {
        self.pods.load(Ordering::Relaxed)
            && self.namespaces.load(Ordering::Relaxed)
            && self.traffic_targets.load(Ordering::Relaxed)
    }

    /// Services and every SMI resource are listed: problems found now are real ones.
    pub fn smi_ready(&self) -> bool {
        self.services.load(Ordering::Relaxed)
            && self.splits.load(Ordering::Relaxed)
            && self.route_groups.load(Ordering::Relaxed)
            && self.tcp_routes.load(Ordering::Relaxed)
            && self.traffic_targets.load(Ordering::Relaxed)
            && self.udp_routes.load(Ordering::Relaxed)
    }
}

/// Spawns one watch task per resource kind.
pub fn spawn_watches(client: Client, index: Arc<Index>, synced: Arc<Synced>) {
    use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
    let c = &client;
    spawn(
        Api::all(c.clone()),
        "services",
        |o: &Service| Some(convert::service(o)),
        &index,
        &synced,
        |s| &s.services,
    );
    spawn(
        Api::all(c.clone()),
        "endpointslices",
        convert::slice,
        &index,
        &synced,
        |s| &s.slices,
    );
    spawn(
        Api::all(c.clone()),
        "pods",
        |o: &Pod| Some(convert::pod_with_access(o)),
        &index,
        &synced,
        |s| &s.pods,
    );
    spawn(
        Api::all(c.clone()),
        "namespaces",
        |o: &Namespace| Some(convert::namespace(o)),
        &index,
        &synced,
        |s| &s.namespaces,
    );
    spawn_smi::<SplitInfo>(
        c,
        smi::traffic_split_resource(),
        "trafficsplits",
        smi::traffic_split,
        &index,
        &synced,
        |s| &s.splits,
    );
    spawn_smi::<RouteGroupInfo>(
        c,
        smi::http_route_group_resource(),
        "httproutegroups",
        smi::http_route_group,
        &index,
        &synced,
        |s| &s.route_groups,
    );
    spawn_smi::<TcpRouteInfo>(
        c,
        smi::tcp_route_resource(),
        "tcproutes",
        smi::tcp_route,
        &index,
        &synced,
        |s| &s.tcp_routes,
    );
    spawn_smi::<TrafficTargetInfo>(
        c,
        access::traffic_target_resource(),
        "traffictargets",
        access::traffic_target,
        &index,
        &synced,
        |s| &s.traffic_targets,
    );
    spawn_smi::<UdpRouteInfo>(
        c,
        access::udp_route_resource(),
        "udproutes",
        access::udp_route,
        &index,
        &synced,
        |s| &s.udp_routes,
    );
}

/// Watches `api` forever (with backoff on errors) into the index.
fn spawn<K, T>(
    api: Api<K>,
    what: &'static str,
    convert: impl FnMut(&K) -> Option<T> + Send + 'static,
    index: &Arc<Index>,
    synced: &Arc<Synced>,
    flag: fn(&Synced) -> &AtomicBool,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Send + 'static,
    Index: IndexResource<T>,
{
    let (index, synced) = (index.clone(), synced.clone());
    tokio::spawn(async move {
        let events = watcher(api, watcher::Config::default()).default_backoff();
        watch::handle(events, what, convert, &*index, flag(&synced)).await;
    });
}

/// Watches an SMI resource as [`DynamicObject`]s read by `parse`.
fn spawn_smi<T: crate::core::SmiObject>(
    client: &Client,
    resource: kube::core::ApiResource,
    what: &'static str,
    parse: fn(&DynamicObject) -> Result<T, smi::ParseError>,
    index: &Arc<Index>,
    synced: &Arc<Synced>,
    flag: fn(&Synced) -> &AtomicBool,
) {
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    spawn(api, what, watch::tolerant(what, parse), index, synced, flag);
}
