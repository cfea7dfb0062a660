//! The index's inbound policies: one `watch` channel per watched pod, recomputed only when
//! something it depends on changed (the pod, its namespace's default, a TrafficTarget naming
//! its ServiceAccount or a route such a TrafficTarget references, the install default).

use super::{Affected, Index};
use crate::{
    access::{DefaultPolicy, NamespaceInfo, PodPolicy},
    state::{Key, Naming, State},
};
use std::collections::HashMap;
use tokio::sync::watch;

/// A pod's policy watch.
#[derive(Debug)]
pub struct PolicyWatch {
    /// The identity (DNS name) of the pod's ServiceAccount: the only caller served.
    pub identity: String,
    /// The current and future policy; None once the pod is gone.
    pub rx: watch::Receiver<Option<PodPolicy>>,
}

impl Index {
    /// Watches the inbound policy of pod `ns/name`; None when the pod is not known.
    pub fn watch_policy(&self, ns: &str, name: &str) -> Option<PolicyWatch> {
        let key = (ns.to_string(), name.to_string());
        let mut inner = self.lock();
        let pod = inner.state.pods.get(&key)?;
        let identity = tulle_api::ServiceAccountIdentity::new(
            &pod.service_account,
            ns,
            &self.naming.trust_domain,
        )
        .dns_name();
        if let Some(p) = inner.policies.get(&key) {
            return Some(PolicyWatch {
                identity,
                rx: p.tx.subscribe(),
            });
        }
        let account = Some(pod.service_account.clone());
        let policy = inner.state.pod_policy(&key, &self.naming);
        let (tx, rx) = watch::channel(policy);
        inner.policies.insert(key, PolicyTx { account, tx });
        Some(PolicyWatch { identity, rx })
    }

    /// Sets the install's default inbound policy (namespace and pod annotations override it).
    pub fn set_default_policy(&self, policy: DefaultPolicy) {
        self.update(|s, a| {
            s.default_policy = policy;
            a.policies = true;
        });
    }

    /// Adds or replaces a Namespace.
    pub fn apply_namespace(&self, name: &str, ns: NamespaceInfo) {
        self.update(|s, a| {
            s.namespaces.insert(name.to_string(), ns);
            a.namespaces.insert(name.to_string());
        });
    }

    /// Removes a Namespace.
    pub fn delete_namespace(&self, name: &str) {
        self.update(|s, a| {
            s.namespaces.remove(name);
            a.namespaces.insert(name.to_string());
        });
    }

    /// Replaces all Namespaces.
    pub fn reset_namespaces(&self, all: Vec<(String, NamespaceInfo)>) {
        self.update(|s, a| {
            s.namespaces = all.into_iter().collect();
            a.policies = true;
        });
    }
}

/// A watched pod's channel and the ServiceAccount its policy was computed for.
pub(crate) struct PolicyTx {
    account: Option<String>,
    tx: watch::Sender<Option<PodPolicy>>,
}

/// Recomputes the watched policies `a` can affect and notifies those that changed; drops
/// the channels nobody listens to.
pub(super) fn publish(
    policies: &mut HashMap<Key, PolicyTx>,
    state: &State,
    naming: &Naming,
    a: &Affected,
) {
    policies.retain(|key, p| {
        if p.tx.receiver_count() == 0 {
            return false;
        }
        let account = state.pods.get(key).map(|pod| pod.service_account.clone());
        let hit = a.all
            || a.policies
            || a.pods.contains(key)
            || a.namespaces.contains(&key.0)
            || account
                .as_ref()
                .is_some_and(|sa| a.accounts.contains(&(key.0.clone(), sa.clone())));
        if hit {
            let new = state.pod_policy(key, naming);
            if account != p.account {
                // Another pod under the same name (and identity): always tell the streams,
                // even when the policy is the same, so that they re-check their caller.
                p.account = account;
                p.tx.send_replace(new);
            } else {
                p.tx.send_if_modified(|cur| {
                    if *cur == new {
                        false
                    } else {
                        *cur = new;
                        true
                    }
                });
            }
        }
        true
    });
}
