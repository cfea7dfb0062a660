//! The problems of TrafficTargets: references to routes that do not exist, unsupported
//! kinds, UDPRoutes (not enforced), and TrafficTargets that admit nothing.

use super::reason;
use crate::{
    access::AccessRule,
    smi::SmiKind,
    state::{Naming, State},
};

impl State {
    /// Adds the problems of every TrafficTarget through `add(kind, ns, name, uid, reason,
    /// message)`.
    pub(super) fn access_problems(
        &self,
        add: &mut impl FnMut(SmiKind, &str, &str, &Option<String>, &'static str, String),
    ) {
        // Only used to know whether anything is admitted; identities are not reported.
        let naming = Naming {
            cluster_domain: String::new(),
            trust_domain: String::new(),
        };
        for ((ns, name), tt) in &self.traffic_targets {
            let mut p = |reason, message| {
                add(
                    SmiKind::TrafficTarget,
                    ns,
                    name,
                    &tt.meta.uid,
                    reason,
                    message,
                )
            };
            let d = &tt.destination;
            if d.kind != "ServiceAccount" {
                p(
                    reason::UNSUPPORTED_SUBJECT,
                    format!(
                        "destination kind {:?} is not supported (use ServiceAccount): this TrafficTarget applies to no pod",
                        d.kind
                    ),
                );
            }
            for s in tt.sources.iter().filter(|s| s.kind != "ServiceAccount") {
                p(
                    reason::UNSUPPORTED_SUBJECT,
                    format!(
                        "source kind {:?} ({}) is not supported and is ignored: list ServiceAccounts",
                        s.kind, s.name
                    ),
                );
            }
            for r in &tt.rules {
                let key = |n: &String| (ns.clone(), n.clone());
                match r {
                    AccessRule::HttpRouteGroup { name: g, matches } => {
                        match self.route_groups.get(&key(g)) {
                            None => p(
                                reason::ROUTE_GROUP_NOT_FOUND,
                                format!(
                                    "HTTPRouteGroup {g} (in rules) does not exist in namespace {ns} or is invalid: it admits no request"
                                ),
                            ),
                            Some(group) => {
                                for m in matches.iter().flatten() {
                                    if !group.matches.iter().any(|x| &x.name == m) {
                                        p(
                                            reason::MATCH_NOT_FOUND,
                                            format!(
                                                "HTTPRouteGroup {g} has no match named {m}: it admits no request (fix rules[].matches or the group)"
                                            ),
                                        );
                                    }
                                }
                            }
                        }
                    }
                    AccessRule::TcpRoute(n) if !self.tcp_routes.contains_key(&key(n)) => p(
                        reason::ROUTE_NOT_FOUND,
                        format!(
                            "TCPRoute {n} (in rules) does not exist in namespace {ns} or is invalid: it admits no port"
                        ),
                    ),
                    AccessRule::TcpRoute(_) => {}
                    AccessRule::UdpRoute(n) => {
                        p(
                            reason::UDP_NOT_ENFORCED,
                            format!(
                                "UDPRoute {n} is not enforced: the proxy does not carry UDP, so UDP traffic is neither authorized nor blocked by the mesh (its ports are admitted for TCP)"
                            ),
                        );
                        if !self.udp_routes.contains_key(&key(n)) {
                            p(
                                reason::ROUTE_NOT_FOUND,
                                format!(
                                    "UDPRoute {n} (in rules) does not exist in namespace {ns} or is invalid: it admits no port"
                                ),
                            );
                        }
                    }
                    AccessRule::Other(kind, n) => p(
                        reason::UNSUPPORTED_RULE,
                        format!(
                            "rules kind {kind:?} ({n}) is not supported and is ignored: use HTTPRouteGroup, TCPRoute or UDPRoute"
                        ),
                    ),
                }
            }
            if d.kind == "ServiceAccount" && self.authorization(ns, name, tt, &naming).is_none() {
                p(
                    reason::ADMITS_NOTHING,
                    format!(
                        "this TrafficTarget admits nothing (no ServiceAccount source, or its rules resolve to no port or HTTP match{}): ServiceAccount {} only accepts what other TrafficTargets allow",
                        tt.port
                            .map(|p| format!(
                                ", or destination port {p} is not among its TCPRoute ports"
                            ))
                            .unwrap_or_default(),
                        d.name
                    ),
                );
            }
        }
    }
}
