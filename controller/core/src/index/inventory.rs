//! Read-only views of the index for the metrics side: the meshed pods to scrape, pod counts
//! per workload, the TrafficSplits and the TrafficTargets of a namespace.

use super::Index;
use std::{collections::BTreeMap, net::IpAddr};

/// A meshed pod with an IP: a scrape target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshedPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The first pod IP.
    pub ip: IpAddr,
    /// Owner (kind in lower case, name), e.g. ("deployment", "web").
    pub owner: Option<(String, String)>,
    /// ServiceAccount name.
    pub service_account: String,
}

/// Meshed and total pods of one workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCount {
    /// Pods with a tulle proxy.
    pub meshed: u32,
    /// All pods.
    pub total: u32,
}

/// A TrafficSplit as the metrics API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitView {
    /// Its name.
    pub name: String,
    /// The apex Service.
    pub apex: String,
    /// Backend Services and weights, in spec order.
    pub backends: Vec<(String, u32)>,
}

/// A TrafficTarget as the metrics API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetView {
    /// Its destination ServiceAccount `(namespace, name)` (`None` for another kind, which
    /// admits nothing).
    pub destination: Option<(String, String)>,
}

impl Index {
    /// The TrafficTargets the index knows, of one namespace or all, by (namespace, name).
    pub fn traffic_targets(
        &self,
        namespace: Option<&str>,
    ) -> BTreeMap<(String, String), TargetView> {
        let inner = self.lock();
        (inner.state.traffic_targets.iter())
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|((ns, name), t)| {
                let view = TargetView {
                    destination: t.destination_account(ns),
                };
                ((ns.clone(), name.clone()), view)
            })
            .collect()
    }

    /// Every meshed pod that has an IP.
    pub fn meshed_pods(&self) -> Vec<MeshedPod> {
        let inner = self.lock();
        inner
            .state
            .pods
            .iter()
            .filter(|(_, p)| p.meshed)
            .filter_map(|((ns, name), p)| {
                Some(MeshedPod {
                    namespace: ns.clone(),
                    name: name.clone(),
                    ip: *p.ips.first()?,
                    owner: p.owner.clone(),
                    service_account: p.service_account.clone(),
                })
            })
            .collect()
    }

    /// Meshed and total pods per (namespace, owner kind, owner name); the pod itself under
    /// kind `pod` and the namespace under kind `namespace` (name = namespace).
    pub fn pod_counts(&self) -> BTreeMap<(String, String, String), PodCount> {
        let inner = self.lock();
        let mut out: BTreeMap<(String, String, String), PodCount> = BTreeMap::new();
        for ((ns, name), p) in &inner.state.pods {
            let mut keys = vec![
                (ns.clone(), "pod".to_string(), name.clone()),
                (ns.clone(), "namespace".to_string(), ns.clone()),
            ];
            if let Some((kind, owner)) = &p.owner {
                keys.push((ns.clone(), kind.clone(), owner.clone()));
            }
            for k in keys {
                let c = out.entry(k).or_default();
                c.total += 1;
                c.meshed += u32::from(p.meshed);
            }
        }
        out
    }

    /// The TrafficSplits the index knows (valid ones), of one namespace or all, by
    /// (namespace, name).
    pub fn splits(&self, namespace: Option<&str>) -> BTreeMap<(String, String), SplitView> {
        let inner = self.lock();
        inner
            .state
            .splits
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|((ns, name), s)| {
                (
                    (ns.clone(), name.clone()),
                    SplitView {
                        name: name.clone(),
                        apex: s.apex.clone(),
                        backends: s.backends.clone(),
                    },
                )
            })
            .collect()
    }
}
