//! SMI Traffic Access as the inbound proxy enforces it: the compiled [`Policy`] of this pod
//! and the decision for one HTTP request ([`Policy::check_http`]) or one opaque TCP
//! connection ([`Policy::check_tcp`]).
//!
//! The order of a decision:
//! 1. exemptions: a plaintext client (no mesh identity) on a kubelet probe's port and path
//!    (a probe without a path exempts its whole port for plaintext clients);
//! 2. no policy received yet from the controller: denied (fail closed for new pods);
//! 3. not `targeted`: the default policy (`allow`: everyone; `authenticated`: any client
//!    with a mesh identity; `deny`: no one);
//! 4. `targeted`: admitted iff an authorization lists the client's mesh identity, covers the
//!    port and, for HTTP, has no routes or a matching one (opaque TCP: only authorizations
//!    without routes). Clients without a mesh identity never match.
//!
//! Policies come from the controller ([`crate::control::policy`]), from a static file
//! ([`StaticPolicy`]) or are `allow` when neither is configured. They are compiled once per
//! update (regexes included); a decision allocates nothing.

mod compile;
mod file;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::{HeaderMap, Method};
use tokio::sync::watch;

use crate::route_match::HttpMatch;

pub use file::{PolicyFile, PolicyFileError, StaticPolicy};

/// The current policy of the pod, replaced as a whole on every update.
pub type PolicyRx = watch::Receiver<Arc<Policy>>;

/// A receiver of a fixed policy that never changes.
pub fn fixed(policy: Policy) -> PolicyRx {
    watch::channel(Arc::new(policy)).1
}

/// The mesh default for a pod no TrafficTarget names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Everyone, meshed or not.
    Allow,
    /// Any client with a mesh identity.
    Authenticated,
    /// No one (but the exemptions).
    Deny,
}

impl DefaultPolicy {
    /// The `authz` metric label of decisions made by this default.
    pub fn label(self) -> &'static str {
        match self {
            DefaultPolicy::Allow => "default:allow",
            DefaultPolicy::Authenticated => "default:authenticated",
            DefaultPolicy::Deny => "default:deny",
        }
    }
}

/// Where a policy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A policy service is configured and has not answered yet: everything is denied.
    Pending,
    /// A policy (from the controller or a static file).
    Ready,
}

/// The compiled inbound policy of this pod.
#[derive(Debug)]
pub struct Policy {
    generation: u64,
    state: State,
    default: DefaultPolicy,
    targeted: bool,
    authorizations: Vec<Authorization>,
    probes: Vec<Probe>,
}

/// One allow rule (from one TrafficTarget).
#[derive(Debug)]
struct Authorization {
    /// `namespace/name` of the TrafficTarget.
    name: Box<str>,
    /// Client identities, lower case.
    identities: Vec<Box<str>>,
    /// `None`: every port.
    ports: Option<Vec<u16>>,
    /// Routes were given: only matching HTTP requests are admitted, opaque TCP never.
    http_only: bool,
    routes: Vec<Route>,
}

/// One HTTP route of an authorization.
#[derive(Debug)]
struct Route {
    name: Box<str>,
    /// `None`: the route could not be compiled and matches nothing (fail closed).
    matcher: Option<HttpMatch>,
}

/// A kubelet probe exemption.
#[derive(Debug)]
struct Probe {
    port: u16,
    /// Empty: the whole port.
    path: Box<str>,
}

/// What admitted or denied a request or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A kubelet probe exemption.
    Probe,
    /// No policy yet.
    Pending,
    /// The default policy (the pod is not targeted).
    Default,
    /// Targeted, and no authorization admits it.
    Targeted,
    /// The authorization at this index.
    Authorization(u32),
}

/// A decision: admitted or not, by which rule and (HTTP) which route of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    pub allowed: bool,
    pub rule: Rule,
    /// The index of the matching route in the authorization.
    pub route: Option<u32>,
}

impl Decision {
    fn allow(rule: Rule) -> Self {
        Decision {
            allowed: true,
            rule,
            route: None,
        }
    }
    fn deny(rule: Rule) -> Self {
        Decision {
            allowed: false,
            rule,
            route: None,
        }
    }
}

fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Policy {
    /// No policy source configured: everyone is admitted (the mesh default `allow`).
    pub fn allow_all() -> Self {
        Self::default_only(DefaultPolicy::Allow)
    }

    /// A policy of only a default (not targeted, no probes).
    pub fn default_only(default: DefaultPolicy) -> Self {
        Policy {
            generation: next_generation(),
            state: State::Ready,
            default,
            targeted: false,
            authorizations: Vec::new(),
            probes: Vec::new(),
        }
    }

    /// Waiting for the policy service: everything is denied.
    pub fn pending() -> Self {
        Policy {
            state: State::Pending,
            ..Self::default_only(DefaultPolicy::Deny)
        }
    }

    /// No policy received yet (the proxy is not ready).
    pub fn is_pending(&self) -> bool {
        self.state == State::Pending
    }

    /// Distinct for every compiled policy (caches keyed by it are invalidated on updates).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A short description for logs.
    pub fn summary(&self) -> String {
        if self.is_pending() {
            return "pending".into();
        }
        format!(
            "{}, targeted: {}, {} authorization(s), {} probe exemption(s)",
            self.default.label(),
            self.targeted,
            self.authorizations.len(),
            self.probes.len()
        )
    }

    fn probe_exempt(&self, port: u16, path: Option<&str>) -> bool {
        self.probes
            .iter()
            .any(|p| p.port == port && (p.path.is_empty() || Some(&*p.path) == path))
    }

    /// The default's decision for `client`; `None` when the pod is targeted.
    fn by_default(&self, client: Option<&str>) -> Option<Decision> {
        if self.state == State::Pending {
            return Some(Decision::deny(Rule::Pending));
        }
        if self.targeted {
            return None;
        }
        let allowed = match self.default {
            DefaultPolicy::Allow => true,
            DefaultPolicy::Authenticated => client.is_some(),
            DefaultPolicy::Deny => false,
        };
        Some(Decision {
            allowed,
            rule: Rule::Default,
            route: None,
        })
    }

    /// The authorizations listing `client` and covering `port` (any port when `None`).
    fn candidates<'a>(
        &'a self,
        client: &'a str,
        port: Option<u16>,
    ) -> impl Iterator<Item = (u32, &'a Authorization)> + 'a {
        self.authorizations
            .iter()
            .enumerate()
            .filter(move |(_, a)| {
                port.is_none_or(|p| a.ports.as_ref().is_none_or(|ps| ps.contains(&p)))
                    && a.identities
                        .iter()
                        .any(|id| id.eq_ignore_ascii_case(client))
            })
            .map(|(i, a)| (i as u32, a))
    }

    /// Decides an HTTP request to `port` from `client` (its mesh identity; `None` for a
    /// client without one).
    pub fn check_http(
        &self,
        port: u16,
        client: Option<&str>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Decision {
        if client.is_none() && self.probe_exempt(port, Some(path)) {
            return Decision::allow(Rule::Probe);
        }
        if let Some(d) = self.by_default(client) {
            return d;
        }
        let Some(client) = client else {
            return Decision::deny(Rule::Targeted);
        };
        for (i, a) in self.candidates(client, Some(port)) {
            if !a.http_only {
                return Decision::allow(Rule::Authorization(i));
            }
            let hit = a.routes.iter().position(|r| {
                r.matcher
                    .as_ref()
                    .is_some_and(|m| m.matches(method, path, headers))
            });
            if let Some(j) = hit {
                return Decision {
                    allowed: true,
                    rule: Rule::Authorization(i),
                    route: Some(j as u32),
                };
            }
        }
        Decision::deny(Rule::Targeted)
    }

    /// Decides an opaque TCP connection to `port` from `client`.
    pub fn check_tcp(&self, port: u16, client: Option<&str>) -> Decision {
        if client.is_none() && self.probe_exempt(port, None) {
            return Decision::allow(Rule::Probe);
        }
        if let Some(d) = self.by_default(client) {
            return d;
        }
        let Some(client) = client else {
            return Decision::deny(Rule::Targeted);
        };
        match self
            .candidates(client, Some(port))
            .find(|(_, a)| !a.http_only)
        {
            Some((i, _)) => Decision::allow(Rule::Authorization(i)),
            None => Decision::deny(Rule::Targeted),
        }
    }

    /// Whether some request of `client` on `port` (`None`: any port) could still be
    /// admitted: an HTTP connection for which this is false is closed on a policy update.
    pub fn may_admit(&self, port: Option<u16>, client: Option<&str>) -> bool {
        if client.is_none() && self.probes.iter().any(|p| port.is_none_or(|q| q == p.port)) {
            return true;
        }
        if let Some(d) = self.by_default(client) {
            return d.allowed;
        }
        client.is_some_and(|c| self.candidates(c, port).next().is_some())
    }

    /// The `authz` metric label of a decision: the TrafficTarget's `namespace/name`,
    /// `default:<policy>`, `probe`, `pending` (no policy yet) or `targeted` (a targeted pod
    /// and no TrafficTarget admits it).
    pub fn authz_label(&self, d: &Decision) -> &str {
        match d.rule {
            Rule::Probe => "probe",
            Rule::Pending => "pending",
            Rule::Default => self.default.label(),
            Rule::Targeted => "targeted",
            Rule::Authorization(i) => self.authorizations.get(i as usize).map_or("", |a| &a.name),
        }
    }

    /// The `route` metric label of a decision: the matching route's name, or empty.
    pub fn route_label(&self, d: &Decision) -> &str {
        match (d.rule, d.route) {
            (Rule::Authorization(i), Some(j)) => self
                .authorizations
                .get(i as usize)
                .and_then(|a| a.routes.get(j as usize))
                .map_or("", |r| &r.name),
            _ => "",
        }
    }

    /// Why a decision denies, for the response body and logs.
    pub fn deny_reason(&self, d: &Decision) -> &'static str {
        match (d.rule, self.default) {
            (Rule::Pending, _) => {
                "no inbound policy received from the controller yet (the proxy is not ready)"
            }
            (Rule::Default, DefaultPolicy::Authenticated) => {
                "the default inbound policy is `authenticated` and the client has no mesh identity"
            }
            (Rule::Default, _) => "the default inbound policy is `deny`",
            _ => {
                "no TrafficTarget allows this client on this port and route (a TrafficTarget names \
                 this pod's ServiceAccount, so only what TrafficTargets allow is admitted)"
            }
        }
    }
}
