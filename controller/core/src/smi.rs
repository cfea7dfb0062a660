//! SMI objects in domain terms (TrafficSplit, HTTPRouteGroup, TCPRoute; the access kinds are
//! in [`super::access`]), and how a split
//! applies to one apex Service port (the profile's backends and route rules).
//!
//! Semantics (see the crate README, "TrafficSplit"):
//! - the split in force for apex `S` is the oldest (creation time, then name) TrafficSplit of
//!   the namespace whose `spec.service` is `S`; the others are duplicates and ignored;
//! - every backend is listed in spec order; one whose Service does not exist, or that has no
//!   port numbered like the requested apex port, gets weight 0; the apex named as a backend
//!   means the apex's own endpoints (its authority is the apex's);
//! - `matches`: HTTPRouteGroups contribute their matches as rules (ORed); a TCPRoute whose
//!   ports contain the apex port (or are empty) makes the split apply to everything on that
//!   port; matches that resolve to nothing make the split apply to no request at all.

use super::state::{Key, State};
use std::collections::HashMap;

/// A TrafficSplit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitInfo {
    /// The apex Service name.
    pub apex: String,
    /// Backend Service names with weights (negative weights are given as 0).
    pub backends: Vec<(String, u32)>,
    /// `spec.matches`; empty: the split applies to every request.
    pub matches: Vec<RouteRef>,
    /// Object metadata.
    pub meta: ObjectMeta,
}

/// What the index needs of an object's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// `metadata.uid` (Events refer to it).
    pub uid: Option<String>,
    /// `metadata.creationTimestamp` in seconds since the epoch.
    pub created: Option<i64>,
}

/// A reference from a TrafficSplit's `matches`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteRef {
    /// `{kind: HTTPRouteGroup, name}`.
    HttpRouteGroup(String),
    /// `{kind: TCPRoute, name}`.
    TcpRoute(String),
    /// Any other kind (kind, name): contributes nothing.
    Other(String, String),
}

/// An HTTPRouteGroup (`spec.matches`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteGroupInfo {
    /// Its matches, in order.
    pub matches: Vec<HttpRule>,
    /// Object metadata.
    pub meta: ObjectMeta,
}

/// One HTTP match: every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRule {
    /// The match's name.
    pub name: String,
    /// Regex anchored at the start of the path; None: any path.
    pub path_regex: Option<String>,
    /// Upper-case methods; empty or `*`: any.
    pub methods: Vec<String>,
    /// (lower-case header name, value regex), all of which must match.
    pub headers: Vec<(String, String)>,
}

/// A TCPRoute (`spec.matches.ports`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpRouteInfo {
    /// Destination ports; empty: all ports.
    pub ports: Vec<u16>,
    /// Object metadata.
    pub meta: ObjectMeta,
}

/// The SMI kinds the index keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SmiKind {
    /// split.smi-spec.io TrafficSplit.
    TrafficSplit,
    /// specs.smi-spec.io HTTPRouteGroup.
    HttpRouteGroup,
    /// specs.smi-spec.io TCPRoute.
    TcpRoute,
    /// access.smi-spec.io TrafficTarget.
    TrafficTarget,
    /// specs.smi-spec.io UDPRoute.
    UdpRoute,
}

impl SmiKind {
    /// The Kubernetes kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::TrafficSplit => "TrafficSplit",
            Self::HttpRouteGroup => "HTTPRouteGroup",
            Self::TcpRoute => "TCPRoute",
            Self::TrafficTarget => "TrafficTarget",
            Self::UdpRoute => "UDPRoute",
        }
    }
}

/// An object that exists but could not be read: the index treats it as absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invalid {
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// Why it could not be read.
    pub reason: String,
}

/// An SMI type the index stores (one map per kind).
pub trait SmiObject: Clone + Send + 'static {
    /// Its kind.
    const KIND: SmiKind;
    /// The map of this kind in the state.
    fn map(state: &mut State) -> &mut HashMap<Key, Self>;
}

impl SmiObject for SplitInfo {
    const KIND: SmiKind = SmiKind::TrafficSplit;
    fn map(state: &mut State) -> &mut HashMap<Key, Self> {
        &mut state.splits
    }
}

impl SmiObject for RouteGroupInfo {
    const KIND: SmiKind = SmiKind::HttpRouteGroup;
    fn map(state: &mut State) -> &mut HashMap<Key, Self> {
        &mut state.route_groups
    }
}

impl SmiObject for TcpRouteInfo {
    const KIND: SmiKind = SmiKind::TcpRoute;
    fn map(state: &mut State) -> &mut HashMap<Key, Self> {
        &mut state.tcp_routes
    }
}

/// Which rules a split's `matches` select for one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selected {
    /// Every request and connection (no `matches`, or a TCPRoute covering the port).
    All,
    /// Only requests matching one of these rules.
    Rules(Vec<HttpRule>),
    /// `matches` is set but resolves to nothing: the split applies to no request.
    Nothing,
}

impl State {
    /// The TrafficSplit in force for apex `svc` of namespace `ns`: the oldest, then by name.
    pub(crate) fn split_for(&self, ns: &str, svc: &str) -> Option<(&Key, &SplitInfo)> {
        self.splits
            .iter()
            .filter(|((n, _), s)| n == ns && s.apex == svc)
            .min_by(|a, b| split_order(a).cmp(&split_order(b)))
    }

    /// The weight backend `svc` (of namespace `ns`) gets on apex port `port`: 0 when the
    /// Service does not exist or has no port with that number.
    pub(crate) fn backend_weight(&self, ns: &str, svc: &str, port: u16, weight: u32) -> u32 {
        match self.services.get(&(ns.to_string(), svc.to_string())) {
            Some(s) if s.ports.iter().any(|p| p.port == port) => weight,
            _ => 0,
        }
    }

    /// What `split.matches` selects on apex port `port`.
    pub(crate) fn selected(&self, ns: &str, split: &SplitInfo, port: u16) -> Selected {
        if split.matches.is_empty() {
            return Selected::All;
        }
        let mut rules = Vec::new();
        for m in &split.matches {
            match m {
                RouteRef::HttpRouteGroup(name) => {
                    if let Some(g) = self.route_groups.get(&(ns.to_string(), name.clone())) {
                        rules.extend(g.matches.iter().cloned());
                    }
                }
                RouteRef::TcpRoute(name) => {
                    if let Some(r) = self.tcp_routes.get(&(ns.to_string(), name.clone()))
                        && (r.ports.is_empty() || r.ports.contains(&port))
                    {
                        return Selected::All;
                    }
                }
                RouteRef::Other(..) => {}
            }
        }
        if rules.is_empty() {
            Selected::Nothing
        } else {
            Selected::Rules(rules)
        }
    }
}

/// Sort key of splits naming the same apex: creation time (unknown last), then name.
pub(crate) fn split_order<'a>((key, s): &(&'a Key, &SplitInfo)) -> (i64, &'a str) {
    (s.meta.created.unwrap_or(i64::MAX), key.1.as_str())
}
