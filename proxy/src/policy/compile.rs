//! Compiles the controller's `PodPolicy` into a [`Policy`]: identities lower-cased, ports
//! checked, route regexes compiled once. Parts that cannot be used fail closed: a route that
//! does not compile matches nothing, an out-of-range port covers nothing, an unknown default
//! is `deny`.

use tulle_api::policy::{self as pb, PodPolicy};

use super::{Authorization, DefaultPolicy, Policy, Probe, Route, State, next_generation};
use crate::route_match::HttpMatch;

impl Policy {
    /// Compiles a policy from the controller (or a static file converted to the same shape).
    pub fn from_proto(p: &PodPolicy) -> Policy {
        let default = match pb::DefaultPolicy::try_from(p.default_policy) {
            Ok(pb::DefaultPolicy::Allow) => DefaultPolicy::Allow,
            Ok(pb::DefaultPolicy::Authenticated) => DefaultPolicy::Authenticated,
            Ok(pb::DefaultPolicy::Deny) => DefaultPolicy::Deny,
            Err(_) => {
                tracing::warn!(
                    value = p.default_policy,
                    "unknown default inbound policy; using `deny` (upgrade the proxy?)"
                );
                DefaultPolicy::Deny
            }
        };
        Policy {
            generation: next_generation(),
            state: State::Ready,
            default,
            targeted: p.targeted,
            authorizations: p.authorizations.iter().map(authorization).collect(),
            probes: p
                .probes
                .iter()
                .filter_map(|pr| {
                    let port = port(pr.port, "probe")?;
                    Some(Probe {
                        port,
                        path: pr.path.as_str().into(),
                    })
                })
                .collect(),
        }
    }
}

fn port(p: u32, what: &str) -> Option<u16> {
    let port = u16::try_from(p).ok().filter(|p| *p != 0);
    if port.is_none() {
        tracing::warn!(
            port = p,
            "ignoring invalid port of a {what} in the inbound policy"
        );
    }
    port
}

fn authorization(a: &pb::Authorization) -> Authorization {
    let owner = format!("TrafficTarget {}", a.traffic_target);
    let ports = if a.ports.is_empty() {
        None
    } else {
        Some(a.ports.iter().filter_map(|p| port(*p, &owner)).collect())
    };
    let routes = a
        .http_routes
        .iter()
        .map(|r| {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value_regex.clone()))
                .collect();
            let owner = format!("route {} of {owner}", r.name);
            let matcher = match HttpMatch::new(&owner, &r.path_regex, &r.methods, &headers) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!("{e}; the route admits nothing until it is fixed");
                    None
                }
            };
            Route {
                name: r.name.as_str().into(),
                matcher,
            }
        })
        .collect();
    Authorization {
        name: a.traffic_target.as_str().into(),
        identities: a
            .identities
            .iter()
            .map(|i| i.to_ascii_lowercase().into_boxed_str())
            .collect(),
        ports,
        http_only: !a.http_routes.is_empty(),
        routes,
    }
}
