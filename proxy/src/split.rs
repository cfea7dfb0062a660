//! SMI TrafficSplit as the outbound proxy applies it: which requests a split covers (its
//! HTTPRouteGroup matches) and which backend each covered request or connection goes to
//! (a weighted random choice).
//!
//! The controller resolves everything that needs cluster state (the oldest split of an apex,
//! absent backends and port mismatches as weight 0, route groups into [`HttpMatch`]es); this
//! module is pure and decides per request.

use std::sync::Arc;

use http::{HeaderMap, Method};
use rand::Rng;

/// A split in force for one apex service and port.
#[derive(Debug, Clone)]
pub struct Split {
    /// `namespace/name` of the TrafficSplit.
    pub name: String,
    /// The apex service's host name (`svc.ns.svc.<domain>`): a backend with this host is
    /// the apex's own endpoints.
    pub apex: Option<String>,
    /// Backends in spec order; weight 0 gets nothing.
    pub backends: Vec<Backend>,
    /// The requests the split covers (ORed); empty: every request and connection.
    pub matches: Vec<HttpMatch>,
}

/// A backend service of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `svc.ns.svc.<domain>:port`; the apex's own authority means the apex's endpoints.
    pub authority: String,
    /// Relative weight.
    pub weight: u32,
}

pub use crate::route_match::{HttpMatch, RuleError};

impl Split {
    /// Whether the split covers an HTTP request (no matches: every request).
    pub fn covers(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        self.matches.is_empty()
            || self
                .matches
                .iter()
                .any(|m| m.matches(method, path, headers))
    }

    /// Whether the split covers opaque connections (only a split without HTTP matches).
    pub fn covers_connections(&self) -> bool {
        self.matches.is_empty()
    }

    /// The sum of the weights.
    pub fn total_weight(&self) -> u64 {
        self.backends.iter().map(|b| u64::from(b.weight)).sum()
    }
}

/// Picks an index of `weights` with probability proportional to its weight; `None` when
/// every weight is 0.
pub fn pick_weighted<R: Rng + ?Sized>(weights: &[u32], rng: &mut R) -> Option<usize> {
    pick_weighted_by(weights.len(), |i| weights[i], rng)
}

/// [`pick_weighted`] over `n` weights given by `weight(i)`, without collecting them (the
/// request path calls this per request).
pub fn pick_weighted_by<R: Rng + ?Sized>(
    n: usize,
    weight: impl Fn(usize) -> u32,
    rng: &mut R,
) -> Option<usize> {
    let total: u64 = (0..n).map(|i| u64::from(weight(i))).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for i in 0..n {
        let w = u64::from(weight(i));
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    None
}

/// What a profile says about a target: the split in force, if any.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub split: Option<Arc<Split>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route_match::test_support::{headers, m};
    use rand::SeedableRng;

    #[test]
    fn matches_are_ored_and_empty_means_everything() {
        let none = HeaderMap::new();
        let mut s = Split {
            name: "ns/s".into(),
            apex: None,
            backends: vec![],
            matches: vec![],
        };
        assert!(s.covers(&Method::GET, "/x", &none));
        assert!(s.covers_connections());
        s.matches = vec![m("/a", &[], &[]), m("", &[], &[("x-canary", "true")])];
        assert!(s.covers(&Method::GET, "/a/1", &none));
        assert!(s.covers(&Method::GET, "/b", &headers(&[("x-canary", "true")])));
        assert!(!s.covers(&Method::GET, "/b", &none));
        assert!(!s.covers_connections());
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for weights in [
            vec![90u32, 10],
            vec![50, 50],
            vec![1000, 0, 500],
            vec![0, 100],
            vec![1, 2, 3, 4],
        ] {
            let n = 200_000;
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..n {
                counts[pick_weighted(&weights, &mut rng).unwrap()] += 1;
            }
            let total: u32 = weights.iter().sum();
            for (i, w) in weights.iter().enumerate() {
                let want = f64::from(*w) / f64::from(total);
                let got = f64::from(counts[i]) / f64::from(n);
                assert!(
                    (want - got).abs() < 0.005,
                    "weights {weights:?}: backend {i} got {got:.4}, want {want:.4}"
                );
                if *w == 0 {
                    assert_eq!(counts[i], 0, "weight 0 gets nothing");
                }
            }
        }
        assert_eq!(pick_weighted(&[0, 0], &mut rng), None);
        assert_eq!(pick_weighted(&[], &mut rng), None);
    }
}
