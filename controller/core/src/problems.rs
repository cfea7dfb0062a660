//! The problems a user can make with SMI objects (TrafficSplits here, TrafficTargets in
//! [`access`]), computed from the index state (pure): each
//! becomes a Warning Event on the object (see `k8s::events`), published when an object's set
//! of problems changes.

use super::{
    smi::{RouteRef, Selected, SmiKind},
    state::State,
};
use std::collections::{BTreeMap, BTreeSet};

mod access;

/// Event reasons.
pub mod reason {
    /// The object could not be read (wrong field types, ...); it is ignored.
    pub const INVALID_OBJECT: &str = "InvalidObject";
    /// The apex Service does not exist.
    pub const APEX_NOT_FOUND: &str = "ApexNotFound";
    /// A backend Service does not exist.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// A backend lacks a port of the apex.
    pub const PORT_MISMATCH: &str = "PortMismatch";
    /// A referenced HTTPRouteGroup does not exist (or is invalid).
    pub const ROUTE_GROUP_NOT_FOUND: &str = "RouteGroupNotFound";
    /// A referenced TCPRoute does not exist (or is invalid).
    pub const ROUTE_NOT_FOUND: &str = "RouteNotFound";
    /// A `matches` entry of a kind other than HTTPRouteGroup or TCPRoute.
    pub const UNSUPPORTED_MATCH: &str = "UnsupportedMatch";
    /// `matches` resolves to no rule: the split applies to no request.
    pub const NO_MATCHING_ROUTES: &str = "NoMatchingRoutes";
    /// An older TrafficSplit names the same apex: this one is ignored.
    pub const DUPLICATE_APEX: &str = "DuplicateApex";
    /// No backend can take traffic: meshed clients get 503.
    pub const ALL_WEIGHTS_ZERO: &str = "AllWeightsZero";
    /// A TrafficTarget rule names a match its HTTPRouteGroup does not have.
    pub const MATCH_NOT_FOUND: &str = "MatchNotFound";
    /// A TrafficTarget rule of a kind other than HTTPRouteGroup, TCPRoute or UDPRoute.
    pub const UNSUPPORTED_RULE: &str = "UnsupportedRule";
    /// A TrafficTarget subject of a kind other than ServiceAccount.
    pub const UNSUPPORTED_SUBJECT: &str = "UnsupportedSubject";
    /// A TrafficTarget references a UDPRoute: UDP is not carried by the proxy.
    pub const UDP_NOT_ENFORCED: &str = "UDPRouteNotEnforced";
    /// A TrafficTarget admits nothing (its rules or sources resolve to nothing).
    pub const ADMITS_NOTHING: &str = "AdmitsNothing";
}

/// An object with problems.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Its kind.
    pub kind: SmiKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// One problem: an Event reason and a message that says what to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Problem {
    /// The Event reason (see [`reason`]).
    pub reason: &'static str,
    /// The Event note.
    pub message: String,
}

/// The problems of one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProblemSet {
    /// The object's uid, when known (Events refer to it).
    pub uid: Option<String>,
    /// Its problems, sorted, without duplicates.
    pub problems: BTreeSet<Problem>,
}

/// Every object with at least one problem.
pub type Problems = BTreeMap<ObjectKey, ProblemSet>;

fn ports_list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl State {
    /// The problems of every SMI object.
    pub(crate) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        let mut add = |kind, ns: &str, name: &str, uid: &Option<String>, reason, message| {
            let set = out
                .entry(ObjectKey {
                    kind,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
                .or_default();
            set.uid.clone_from(uid);
            set.problems.insert(Problem { reason, message });
        };
        for ((kind, (ns, name)), inv) in &self.invalid {
            add(
                *kind,
                ns,
                name,
                &inv.uid,
                reason::INVALID_OBJECT,
                format!(
                    "cannot read this {}: {}; it is ignored until it is fixed",
                    kind.kind(),
                    inv.reason
                ),
            );
        }
        for ((ns, name), split) in &self.splits {
            let mut p = |reason, message| {
                add(
                    SmiKind::TrafficSplit,
                    ns,
                    name,
                    &split.meta.uid,
                    reason,
                    message,
                )
            };
            let apex = &split.apex;
            let apex_svc = self.services.get(&(ns.clone(), apex.clone()));
            if apex_svc.is_none() {
                p(
                    reason::APEX_NOT_FOUND,
                    format!(
                        "apex Service {apex} does not exist in namespace {ns}: the split applies once it does"
                    ),
                );
            }
            let winner = self.split_for(ns, apex).map(|(k, _)| k.1.clone());
            let is_winner = winner.as_deref() == Some(name.as_str());
            if let Some(w) = winner.filter(|_| !is_winner) {
                p(
                    reason::DUPLICATE_APEX,
                    format!(
                        "TrafficSplit {w} is older and also splits apex {apex}, so this one is ignored: delete it or merge its backends into {w}"
                    ),
                );
            }
            for (svc, _) in &split.backends {
                match self.services.get(&(ns.clone(), svc.clone())) {
                    None => p(
                        reason::BACKEND_NOT_FOUND,
                        format!(
                            "backend Service {svc} does not exist: it gets no traffic until it is created"
                        ),
                    ),
                    Some(b) => {
                        let missing: Vec<u16> = apex_svc
                            .iter()
                            .flat_map(|a| a.ports.iter().map(|p| p.port))
                            .filter(|port| !b.ports.iter().any(|bp| bp.port == *port))
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect();
                        if !missing.is_empty() {
                            p(
                                reason::PORT_MISMATCH,
                                format!(
                                    "backend Service {svc} has no port {} like apex {apex}: it gets no traffic for that port (give it a port with the same number)",
                                    ports_list(&missing)
                                ),
                            );
                        }
                    }
                }
            }
            for m in &split.matches {
                let key = |n: &String| (ns.clone(), n.clone());
                match m {
                    RouteRef::HttpRouteGroup(n) if !self.route_groups.contains_key(&key(n)) => p(
                        reason::ROUTE_GROUP_NOT_FOUND,
                        format!(
                            "HTTPRouteGroup {n} (in matches) does not exist or is invalid: it matches no request"
                        ),
                    ),
                    RouteRef::TcpRoute(n) if !self.tcp_routes.contains_key(&key(n)) => p(
                        reason::ROUTE_NOT_FOUND,
                        format!(
                            "TCPRoute {n} (in matches) does not exist or is invalid: it matches nothing"
                        ),
                    ),
                    RouteRef::Other(kind, n) => p(
                        reason::UNSUPPORTED_MATCH,
                        format!(
                            "matches kind {kind:?} ({n}) is not supported and is ignored; use HTTPRouteGroup or TCPRoute"
                        ),
                    ),
                    _ => {}
                }
            }
            if !is_winner {
                continue;
            }
            if split.backends.iter().all(|(_, w)| *w == 0) {
                p(
                    reason::ALL_WEIGHTS_ZERO,
                    format!(
                        "every backend has weight 0: meshed clients of {apex} get 503 (give a backend a weight above 0)"
                    ),
                );
                continue;
            }
            let Some(apex_svc) = apex_svc else { continue };
            let ports: BTreeSet<u16> = apex_svc.ports.iter().map(|p| p.port).collect();
            let (mut nothing, mut zero) = (vec![], vec![]);
            for port in ports {
                if self.selected(ns, split, port) == Selected::Nothing {
                    nothing.push(port);
                } else if split
                    .backends
                    .iter()
                    .all(|(svc, w)| self.backend_weight(ns, svc, port, *w) == 0)
                {
                    zero.push(port);
                }
            }
            if !nothing.is_empty() {
                p(
                    reason::NO_MATCHING_ROUTES,
                    format!(
                        "matches resolve to no route for port {}: the split applies to no request there (all go to apex {apex})",
                        ports_list(&nothing)
                    ),
                );
            }
            if !zero.is_empty() {
                p(
                    reason::ALL_WEIGHTS_ZERO,
                    format!(
                        "no backend with a weight above 0 exists with port {}: meshed clients of {apex} get 503 there",
                        ports_list(&zero)
                    ),
                );
            }
        }
        self.access_problems(&mut add);
        out
    }
}
