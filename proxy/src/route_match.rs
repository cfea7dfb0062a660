//! HTTPRouteGroup matching shared by TrafficSplit (outbound, [`crate::split`]) and Traffic
//! Access (inbound, [`crate::policy`]): a path regex anchored at the start, methods with `*`
//! as any, and header regexes that must match the whole value. Compiled once per update;
//! matching allocates nothing.

use http::{HeaderMap, Method};
use regex::Regex;

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
    #[error("invalid regex {regex:?} in {owner}: {source}")]
    Regex {
        owner: String,
        regex: String,
        source: Box<regex::Error>,
    },
    #[error("invalid header name {name:?} in {owner}")]
    HeaderName { owner: String, name: String },
    #[error("invalid method {method:?} in {owner}")]
    Method { owner: String, method: String },
}

impl HttpMatch {
    /// Compiles one match; `owner` names where it comes from in error messages (for
    /// example `TrafficSplit ns/name`).
    pub fn new(
        owner: &str,
        path_regex: &str,
        methods: &[String],
        headers: &[(String, String)],
    ) -> Result<Self, RuleError> {
        // `re` must be valid on its own: else it could close the anchoring group (`)(`
        // compiles as `^(?:)()`, matching anywhere). Found by fuzzing.
        let compile = |re: &str, anchored: String| {
            Regex::new(re)
                .and_then(|_| Regex::new(&anchored))
                .map_err(|e| RuleError::Regex {
                    owner: owner.to_string(),
                    regex: re.to_string(),
                    source: Box::new(e),
                })
        };
        let path = match path_regex {
            "" => None,
            re => Some(compile(re, format!("^(?:{re})"))?),
        };
        let methods = if methods.iter().any(|m| m == "*") {
            Vec::new()
        } else {
            methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        RuleError::Method {
                            owner: owner.to_string(),
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
                        owner: owner.to_string(),
                        name: name.clone(),
                    })?;
                Ok((name, compile(re, format!("^(?:{re})$"))?))
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

/// Builders shared by the tests of the modules that match routes.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub(crate) fn m(path: &str, methods: &[&str], headers: &[(&str, &str)]) -> HttpMatch {
        let methods: Vec<String> = methods.iter().map(|s| s.to_string()).collect();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        HttpMatch::new("ns/s", path, &methods, &headers).unwrap()
    }

    pub(crate) fn headers(h: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in h {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{headers, m};
    use super::*;

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
    fn invalid_rules_are_errors_that_name_their_owner() {
        let e = HttpMatch::new("ns/s", "([", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("ns/s"), "{e}");
        assert!(HttpMatch::new("ns/s", "", &["GE T".into()], &[]).is_err());
        assert!(HttpMatch::new("ns/s", "", &[], &[("bad header".into(), "x".into())]).is_err());
    }

    /// Regression (fuzzing, issue 15): a regex that closes the anchoring group compiled
    /// once wrapped (`^(?:)(.*x)`) and matched anywhere in the path or header value.
    #[test]
    fn a_regex_cannot_escape_its_anchors() {
        assert!(HttpMatch::new("ns/s", ")(", &[], &[]).is_err());
        assert!(HttpMatch::new("ns/s", "/a)|(/b", &[], &[]).is_err());
        assert!(HttpMatch::new("ns/s", "", &[], &[("x-a".into(), "a)|(b".into())]).is_err());
    }
}
