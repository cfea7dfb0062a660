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
use regex::Regex;

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

/// One HTTPRouteGroup match: every part present must match.
#[derive(Debug, Clone)]
pub struct HttpMatch {
    /// Anchored at the start of the path only (SMI semantics).
    path: Option<Regex>,
    /// Empty: any method.
    methods: Vec<Method>,
    /// Header name (lower case) and a regex the whole value must match.
    headers: Vec<(http::HeaderName, Regex)>,
}

/// A route rule the proxy cannot use.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("invalid regex {regex:?} in TrafficSplit {split}: {source}")]
    Regex {
        split: String,
        regex: String,
        source: Box<regex::Error>,
    },
    #[error("invalid header name {name:?} in TrafficSplit {split}")]
    HeaderName { split: String, name: String },
    #[error("invalid method {method:?} in TrafficSplit {split}")]
    Method { split: String, method: String },
}

impl HttpMatch {
    /// Compiles one match of split `split` (for error messages).
    pub fn new(
        split: &str,
        path_regex: &str,
        methods: &[String],
        headers: &[(String, String)],
    ) -> Result<Self, RuleError> {
        let compile = |re: String| {
            Regex::new(&re).map_err(|e| RuleError::Regex {
                split: split.to_string(),
                regex: re,
                source: Box::new(e),
            })
        };
        let path = match path_regex {
            "" => None,
            re => Some(compile(format!("^(?:{re})"))?),
        };
        let methods = if methods.iter().any(|m| m == "*") {
            Vec::new()
        } else {
            methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        RuleError::Method {
                            split: split.to_string(),
                            method: m.clone(),
                        }
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let headers = headers
            .iter()
            .map(|(name, re)| {
                let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| RuleError::HeaderName {
                        split: split.to_string(),
                        name: name.clone(),
                    })?;
                Ok((name, compile(format!("^(?:{re})$"))?))
            })
            .collect::<Result<_, RuleError>>()?;
        Ok(HttpMatch {
            path,
            methods,
            headers,
        })
    }

    /// Whether a request with this method, path and headers matches.
    pub fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if let Some(re) = &self.path
            && !re.is_match(path)
        {
            return false;
        }
        self.headers.iter().all(|(name, re)| {
            headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| re.is_match(v)))
        })
    }
}

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
    use rand::SeedableRng;

    fn m(path: &str, methods: &[&str], headers: &[(&str, &str)]) -> HttpMatch {
        let methods: Vec<String> = methods.iter().map(|s| s.to_string()).collect();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        HttpMatch::new("ns/s", path, &methods, &headers).unwrap()
    }

    fn headers(h: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in h {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn path_is_anchored_at_the_start_only() {
        let r = m("/api", &[], &[]);
        let none = HeaderMap::new();
        assert!(r.matches(&Method::GET, "/api", &none));
        assert!(r.matches(&Method::GET, "/api/v1/x", &none));
        assert!(!r.matches(&Method::GET, "/v2/api", &none));
        // An alternation stays anchored as a whole.
        let r = m("/a|/b", &[], &[]);
        assert!(r.matches(&Method::GET, "/b/1", &none));
        assert!(!r.matches(&Method::GET, "/x/a", &none));
    }

    #[test]
    fn methods_and_wildcard() {
        let none = HeaderMap::new();
        let r = m("", &["GET", "post"], &[]);
        assert!(r.matches(&Method::GET, "/", &none));
        assert!(r.matches(&Method::POST, "/", &none));
        assert!(!r.matches(&Method::DELETE, "/", &none));
        let any = m("", &["GET", "*"], &[]);
        assert!(any.matches(&Method::DELETE, "/", &none));
    }

    #[test]
    fn headers_are_anded_and_match_the_whole_value() {
        let r = m(
            "",
            &[],
            &[("X-Canary", "true"), ("user-agent", ".*Firefox.*")],
        );
        let ff = headers(&[("x-canary", "true"), ("user-agent", "Mozilla Firefox/1")]);
        assert!(r.matches(&Method::GET, "/", &ff));
        // One header missing: no match.
        assert!(!r.matches(&Method::GET, "/", &headers(&[("x-canary", "true")])));
        // The whole value must match: "true" does not match "untrue".
        let partial = headers(&[("x-canary", "untrue"), ("user-agent", "Firefox")]);
        assert!(!r.matches(&Method::GET, "/", &partial));
        // Any of repeated values may match.
        let repeated = headers(&[
            ("x-canary", "no"),
            ("x-canary", "true"),
            ("user-agent", "Firefox"),
        ]);
        assert!(r.matches(&Method::GET, "/", &repeated));
    }

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
    fn invalid_rules_are_errors_that_name_the_split() {
        let e = HttpMatch::new("ns/s", "([", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("ns/s"), "{e}");
        assert!(HttpMatch::new("ns/s", "", &["GE T".into()], &[]).is_err());
        assert!(HttpMatch::new("ns/s", "", &[], &[("bad header".into(), "x".into())]).is_err());
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
