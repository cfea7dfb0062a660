//! The index's SMI objects: TrafficSplits, TrafficTargets, HTTPRouteGroups, TCPRoutes and
//! UDPRoutes (valid or not), and the watch on their problems.

use super::Index;
use crate::{
    problems::Problems,
    smi::{Invalid, SmiObject, SplitInfo},
};
use std::sync::Arc;
use tokio::sync::watch;

impl Index {
    /// The problems of the SMI objects (see [`super::Problems`]), current and future.
    pub fn watch_problems(&self) -> watch::Receiver<Arc<Problems>> {
        self.lock().problems.subscribe()
    }

    // === SMI objects (TrafficSplit, HTTPRouteGroup, TCPRoute) ===

    /// Adds or replaces an SMI object; an `Err` (it could not be read) removes it and keeps
    /// the reason for its Events.
    pub fn apply_smi<T: SmiObject>(&self, ns: &str, name: &str, obj: Result<T, Invalid>) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            a.accounts.extend(s.access_accounts(T::KIND, &key));
            match obj {
                Ok(v) => {
                    s.invalid.remove(&(T::KIND, key.clone()));
                    T::map(s).insert(key.clone(), v);
                }
                Err(inv) => {
                    T::map(s).remove(&key);
                    s.invalid.insert((T::KIND, key.clone()), inv);
                }
            }
            a.accounts.extend(s.access_accounts(T::KIND, &key));
            a.profile_namespaces.insert(key.0.clone());
            a.profiles = true;
        });
    }

    /// Removes an SMI object.
    pub fn delete_smi<T: SmiObject>(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        self.update(|s, a| {
            a.accounts.extend(s.access_accounts(T::KIND, &key));
            T::map(s).remove(&key);
            a.profile_namespaces.insert(key.0.clone());
            s.invalid.remove(&(T::KIND, key));
            a.profiles = true;
        });
    }

    /// Replaces all SMI objects of kind `T`.
    pub fn reset_smi<T: SmiObject>(&self, all: Vec<(String, String, Result<T, Invalid>)>) {
        self.update(|s, a| {
            T::map(s).clear();
            s.invalid.retain(|(k, _), _| *k != T::KIND);
            for (ns, name, obj) in all {
                match obj {
                    Ok(v) => {
                        T::map(s).insert((ns, name), v);
                    }
                    Err(inv) => {
                        s.invalid.insert((T::KIND, (ns, name)), inv);
                    }
                }
            }
            a.profiles = true;
            a.policies = true;
        });
    }

    /// Adds or replaces a TrafficSplit.
    pub fn apply_split(&self, ns: &str, name: &str, split: SplitInfo) {
        self.apply_smi(ns, name, Ok(split));
    }

    /// Removes a TrafficSplit.
    pub fn delete_split(&self, ns: &str, name: &str) {
        self.delete_smi::<SplitInfo>(ns, name);
    }
}
