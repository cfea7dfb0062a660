//! A pod's inbound policy computed from the index state (pure), and which pods a change of
//! an SMI access object can affect.
//!
//! Semantics (SMI Traffic Access v1alpha3, choices of `shared/notes/smi.md` §3):
//! - a pod is `targeted` when some TrafficTarget's destination is its ServiceAccount (kind
//!   `ServiceAccount`, namespace defaulting to the TrafficTarget's);
//! - each such TrafficTarget gives one [`Authorization`]: its `ServiceAccount` sources
//!   (namespace defaulting to the TrafficTarget's) as identities; ports = the union of its
//!   TCPRoute/UDPRoute `spec.matches.ports` (an empty list: every port; no TCP/UDPRoute rule:
//!   every port), restricted to the v1alpha2 `destination.port` when there is one;
//!   http_routes = the HTTPRouteGroup matches its rules select (`matches` names; omitted:
//!   the whole group), which then constrain HTTP on those ports;
//! - fail closed: a referenced route that does not exist (or is invalid) contributes
//!   nothing, and a TrafficTarget whose rules of a kind all resolve to nothing (no port, no
//!   HTTP match), that has no rule of a supported kind or no `ServiceAccount` source gives
//!   no Authorization at all — never one
//!   that admits more;
//! - the default policy: the install setting, overridden by the namespace's then the pod's
//!   `config.tulle.io/default-inbound-policy`.

use super::{
    access::{AccessRule, Authorization, PodPolicy, TrafficTargetInfo},
    smi::{HttpRule, SmiKind},
    state::{Key, Naming, State},
};
use std::collections::BTreeSet;

/// Ports of a TrafficTarget's rules.
enum Ports {
    /// Every port.
    All,
    /// These ports (never empty).
    Some(BTreeSet<u16>),
    /// Port rules exist but none resolves (or the v1alpha2 port is outside them).
    Nothing,
}

impl State {
    /// The policy of pod `key`; None when the pod is not known.
    pub(crate) fn pod_policy(&self, key: &Key, naming: &Naming) -> Option<PodPolicy> {
        let pod = self.pods.get(key)?;
        let access = self.pod_access.get(key).cloned().unwrap_or_default();
        let ns = &key.0;
        let default_policy = access
            .default_policy
            .or_else(|| self.namespaces.get(ns).and_then(|n| n.default_policy))
            .unwrap_or(self.default_policy);
        let account = (ns.clone(), pod.service_account.clone());
        let mut targeted = false;
        let mut authorizations = Vec::new();
        for ((tt_ns, tt_name), tt) in &self.traffic_targets {
            if tt.destination_account(tt_ns).as_ref() != Some(&account) {
                continue;
            }
            targeted = true;
            if let Some(a) = self.authorization(tt_ns, tt_name, tt, naming) {
                authorizations.push(a);
            }
        }
        authorizations.sort_by(|a, b| a.traffic_target.cmp(&b.traffic_target));
        Some(PodPolicy {
            default_policy,
            targeted,
            authorizations,
            probes: access.probes,
        })
    }

    /// What TrafficTarget `ns/name` admits; None when it admits nothing.
    pub(crate) fn authorization(
        &self,
        ns: &str,
        name: &str,
        tt: &TrafficTargetInfo,
        naming: &Naming,
    ) -> Option<Authorization> {
        let identities: BTreeSet<String> = tt
            .sources
            .iter()
            .filter(|s| s.kind == "ServiceAccount" && !s.name.is_empty())
            .map(|s| {
                tulle_api::ServiceAccountIdentity::new(
                    &s.name,
                    s.namespace.as_deref().unwrap_or(ns),
                    &naming.trust_domain,
                )
                .dns_name()
            })
            .collect();
        let supported = tt.rules.iter().any(|r| !matches!(r, AccessRule::Other(..)));
        if identities.is_empty() || !supported {
            return None;
        }
        let ports = match (self.rule_ports(ns, tt), tt.port) {
            (Ports::Nothing, _) => return None,
            (Ports::All, None) => vec![],
            (Ports::All, Some(p)) => vec![p],
            (Ports::Some(set), None) => set.into_iter().collect(),
            (Ports::Some(set), Some(p)) if set.contains(&p) => vec![p],
            (Ports::Some(_), Some(_)) => return None,
        };
        let mut http_routes = Vec::new();
        let mut has_http_rules = false;
        for r in &tt.rules {
            let AccessRule::HttpRouteGroup {
                name: group,
                matches,
            } = r
            else {
                continue;
            };
            has_http_rules = true;
            let Some(g) = self.route_groups.get(&(ns.to_string(), group.clone())) else {
                continue;
            };
            for m in &g.matches {
                if matches.as_ref().is_none_or(|names| names.contains(&m.name)) {
                    http_routes.push(HttpRule {
                        name: format!("{group}/{}", m.name),
                        ..m.clone()
                    });
                }
            }
        }
        if has_http_rules && http_routes.is_empty() {
            return None;
        }
        Some(Authorization {
            traffic_target: format!("{ns}/{name}"),
            identities: identities.into_iter().collect(),
            ports,
            http_routes,
        })
    }

    /// The ports the TCPRoute/UDPRoute rules of `tt` cover.
    fn rule_ports(&self, ns: &str, tt: &TrafficTargetInfo) -> Ports {
        let mut any_port_rule = false;
        let mut set = BTreeSet::new();
        for r in &tt.rules {
            let ports = match r {
                AccessRule::TcpRoute(n) => {
                    any_port_rule = true;
                    self.tcp_routes
                        .get(&(ns.to_string(), n.clone()))
                        .map(|r| &r.ports)
                }
                AccessRule::UdpRoute(n) => {
                    any_port_rule = true;
                    self.udp_routes
                        .get(&(ns.to_string(), n.clone()))
                        .map(|r| &r.ports)
                }
                _ => continue,
            };
            match ports {
                Some(p) if p.is_empty() => return Ports::All,
                Some(p) => set.extend(p.iter().copied()),
                None => {}
            }
        }
        if !any_port_rule {
            Ports::All
        } else if set.is_empty() {
            Ports::Nothing
        } else {
            Ports::Some(set)
        }
    }

    /// The destination ServiceAccounts whose pods' policies depend on SMI object `kind`
    /// `key`: a TrafficTarget's destination, or the destinations of the TrafficTargets of
    /// the route's namespace that reference the route.
    pub(crate) fn access_accounts(&self, kind: SmiKind, key: &Key) -> Vec<Key> {
        let (ns, name) = key;
        let refers = |r: &AccessRule| match (kind, r) {
            (SmiKind::HttpRouteGroup, AccessRule::HttpRouteGroup { name: n, .. })
            | (SmiKind::TcpRoute, AccessRule::TcpRoute(n))
            | (SmiKind::UdpRoute, AccessRule::UdpRoute(n)) => n == name,
            _ => false,
        };
        match kind {
            SmiKind::TrafficSplit => vec![],
            SmiKind::TrafficTarget => self
                .traffic_targets
                .get(key)
                .and_then(|tt| tt.destination_account(ns))
                .into_iter()
                .collect(),
            SmiKind::HttpRouteGroup | SmiKind::TcpRoute | SmiKind::UdpRoute => self
                .traffic_targets
                .iter()
                .filter(|((n, _), tt)| n == ns && tt.rules.iter().any(refers))
                .filter_map(|((n, _), tt)| tt.destination_account(n))
                .collect(),
        }
    }
}
