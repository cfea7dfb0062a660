//! The backends of an outbound route under a TrafficSplit: the typed targets of the split
//! (the logical apex, its concrete backends), the backend stacks kept across profile
//! changes, and the task that follows the profile.
//!
//! A route's split state is rebuilt when its profile changes: backends that stay keep
//! their stacks (balancer, connections, load estimates), new ones are resolved before the
//! new state is published, so a weight change never fails a request by itself.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::{BackendStack, Outbound};
use crate::discovery::{Lookup, Target};
use crate::split::{Profile, Split, pick_weighted};
use crate::svc::{BackendService, BackendSlot, SplitState};

/// The logical target of a route: what the application addressed.
#[derive(Debug, Clone)]
pub struct Logical {
    /// The normalised authority, when the request named one.
    pub authority: Option<String>,
    /// The connection's original destination.
    pub orig: std::net::SocketAddr,
}

/// A concrete backend of a logical target: the service whose endpoints are balanced over.
#[derive(Debug, Clone)]
pub struct Concrete {
    /// The backend's authority (`svc.ns.svc.<domain>:port`).
    pub authority: String,
    /// The apex's metric label (`authority`), so that every backend reports under it.
    pub apex_label: Option<String>,
}

impl Concrete {
    /// The Service name of the backend (the `dst_service` metric label).
    pub fn service(&self) -> Option<&str> {
        service_name(&self.authority)
    }
}

/// `web` of `web.shop.svc.cluster.local:80`; `None` for other authorities.
pub fn service_name(authority: &str) -> Option<&str> {
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let (name, rest) = host.split_once('.')?;
    rest.contains(".svc.").then_some(name)
}

/// Whether `backend` names the apex itself (`apex` is the profile's apex service name).
fn is_apex(split: &Split, backend: &str) -> bool {
    let host = backend.rsplit_once(':').map_or(backend, |(h, _)| h);
    split.apex.as_deref() == Some(host)
}

/// Builds the split state of `profile`, reusing the stacks of `kept` by authority.
async fn build(
    outbound: &Outbound,
    profile: &Profile,
    apex_label: &Option<String>,
    kept: &mut HashMap<String, BackendStack>,
) -> SplitState<BackendStack> {
    let Some(split) = profile.split.clone() else {
        kept.clear();
        return SplitState::default();
    };
    let mut next = HashMap::new();
    let mut backends = Vec::with_capacity(split.backends.len());
    for b in &split.backends {
        let slot = if is_apex(&split, &b.authority) {
            BackendSlot::Apex
        } else if b.weight == 0 {
            BackendSlot::Absent
        } else if let Some(stack) = kept.get(&b.authority).or(next.get(&b.authority)) {
            let stack = stack.clone();
            next.insert(b.authority.clone(), stack.clone());
            BackendSlot::Service(stack)
        } else {
            let concrete = Concrete {
                authority: b.authority.clone(),
                apex_label: apex_label.clone(),
            };
            match outbound.backend(&concrete).await {
                Some(stack) => {
                    next.insert(b.authority.clone(), stack.clone());
                    BackendSlot::Service(stack)
                }
                None => {
                    tracing::info!(split = %split.name, backend = %b.authority, "TrafficSplit backend is not a known service; it gets nothing");
                    BackendSlot::Absent
                }
            }
        };
        backends.push(slot);
    }
    *kept = next;
    SplitState {
        split: Some(split),
        backends,
    }
}

/// Builds the first split state of a route, then keeps it current from `profile` in a
/// task that ends when the route is gone (every receiver of the state dropped).
pub async fn follow(
    outbound: Arc<Outbound>,
    mut profile: watch::Receiver<Arc<Profile>>,
    apex_label: Option<String>,
) -> watch::Receiver<Arc<SplitState<BackendStack>>> {
    let mut kept = HashMap::new();
    let first = profile.borrow_and_update().clone();
    let state = build(&outbound, &first, &apex_label, &mut kept).await;
    let (tx, rx) = watch::channel(Arc::new(state));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = profile.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
            let p = profile.borrow_and_update().clone();
            let state = build(&outbound, &p, &apex_label, &mut kept).await;
            if let Some(s) = &state.split {
                tracing::debug!(split = %s.name, "TrafficSplit updated");
            }
            tx.send_replace(Arc::new(state));
        }
    });
    rx
}

/// The endpoints an opaque connection to `apex` (the original destination's resolution)
/// goes to under the split of `profile`: the apex's own, or a backend's chosen by weight.
/// `None`: the split leaves no backend (the connection is closed).
pub async fn tcp_backend(outbound: &Outbound, profile: &Profile, apex: Lookup) -> Option<Lookup> {
    let Some(split) = profile.split.as_ref().filter(|s| s.covers_connections()) else {
        return Some(apex);
    };
    let mut choices: Vec<Lookup> = Vec::with_capacity(split.backends.len());
    let mut weights = Vec::with_capacity(split.backends.len());
    let mut live = Vec::with_capacity(split.backends.len());
    for b in &split.backends {
        let res = if is_apex(split, &b.authority) {
            apex.clone()
        } else if b.weight == 0 {
            Lookup::NotFound
        } else {
            outbound
                .rt
                .discovery
                .resolve(Target::Authority(&b.authority))
                .await
        };
        let (w, has) = match &res {
            Lookup::Found(rx) => (b.weight, !rx.borrow().endpoints.is_empty()),
            Lookup::NotFound | Lookup::Unavailable => (0, false),
        };
        weights.push(w);
        live.push(if has { w } else { 0 });
        choices.push(res);
    }
    let mut rng = rand::rng();
    let i = pick_weighted(&live, &mut rng).or_else(|| pick_weighted(&weights, &mut rng));
    match i {
        Some(i) => Some(choices.swap_remove(i)),
        None => {
            tracing::info!(split = %split.name, "TrafficSplit leaves no backend for an opaque connection (every weight is 0 or no backend exists); closing");
            None
        }
    }
}

impl BackendService<http::Request<crate::body::RequestBody>> for BackendStack {
    fn has_endpoints(&self) -> bool {
        !self.balancer.endpoints().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_and_apex() {
        assert_eq!(
            service_name("web-v2.shop.svc.cluster.local:80"),
            Some("web-v2")
        );
        assert_eq!(service_name("web:80"), None);
        assert_eq!(service_name("10.0.0.1:80"), None);
        let split = Split {
            name: "shop/s".into(),
            apex: Some("web.shop.svc.cluster.local".into()),
            backends: vec![],
            matches: vec![],
        };
        assert!(is_apex(&split, "web.shop.svc.cluster.local:80"));
        assert!(!is_apex(&split, "web-v1.shop.svc.cluster.local:80"));
    }
}
