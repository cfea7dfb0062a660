//! The URL space of `metrics.smi-spec.io/v1alpha1` and its query parameters.

use std::time::Duration;

use tulle_metrics::golden::Kind;

/// The API group.
pub const GROUP: &str = "metrics.smi-spec.io";
/// The served version.
pub const VERSION: &str = "v1alpha1";
/// `/apis/metrics.smi-spec.io/v1alpha1`.
pub const PREFIX: &str = "/apis/metrics.smi-spec.io/v1alpha1";
/// The window when `?t=` is absent.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// The longest window accepted.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A resource of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// A workload kind (or namespaces, pods).
    Kind(Kind),
    /// `trafficsplits`: one item per backend.
    TrafficSplit,
    /// `traffictargets`: the allow/deny counts of each TrafficTarget (a tulle extension).
    TrafficTarget,
}

impl Resource {
    /// The resource name (`deployments`, `trafficsplits`).
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Kind(k) => k.plural(),
            Resource::TrafficSplit => "trafficsplits",
            Resource::TrafficTarget => "traffictargets",
        }
    }

    /// Every served resource.
    pub fn all() -> impl Iterator<Item = Resource> {
        Kind::ALL
            .into_iter()
            .map(Resource::Kind)
            .chain([Resource::TrafficSplit, Resource::TrafficTarget])
    }

    fn from_plural(s: &str) -> Option<Self> {
        Resource::all().find(|r| r.plural() == s)
    }
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPath {
    /// `/apis`: the group list.
    Groups,
    /// `/apis/metrics.smi-spec.io`: the group.
    Group,
    /// `/apis/metrics.smi-spec.io/v1alpha1`: the resource list.
    Resources,
    /// A list, in one namespace or all.
    List {
        /// The resource.
        resource: Resource,
        /// The namespace (all when `None`).
        namespace: Option<String>,
    },
    /// One item (a namespace's own name is both `namespace` and `name`).
    Get {
        /// The resource.
        resource: Resource,
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
    /// Every edge among the resources of a kind (in one namespace or all), in one aggregate
    /// query: a list with `?edges=true` (a tulle extension; the dashboard's topology).
    EdgeList {
        /// The resource kind.
        resource: Kind,
        /// The namespace (all when `None`).
        namespace: Option<String>,
    },
    /// The `edges` sub-resource of one item.
    Edges {
        /// The resource (not TrafficSplit).
        resource: Kind,
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
}

impl ApiPath {
    /// Parses a request path; `None` for anything this API does not serve (404).
    pub fn parse(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        match path {
            "/apis" => return Some(ApiPath::Groups),
            "/apis/metrics.smi-spec.io" => return Some(ApiPath::Group),
            PREFIX => return Some(ApiPath::Resources),
            _ => {}
        }
        let rest = path.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let ns_kind = Resource::Kind(Kind::Namespace);
        Some(match parts.as_slice() {
            [r] => ApiPath::List {
                resource: Resource::from_plural(r)?,
                namespace: None,
            },
            ["namespaces", n] => ApiPath::Get {
                resource: ns_kind,
                namespace: n.to_string(),
                name: n.to_string(),
            },
            ["namespaces", n, "edges"] => ApiPath::Edges {
                resource: Kind::Namespace,
                namespace: n.to_string(),
                name: n.to_string(),
            },
            ["namespaces", ns, r] => {
                let resource = Resource::from_plural(r).filter(|r| *r != ns_kind)?;
                ApiPath::List {
                    resource,
                    namespace: Some(ns.to_string()),
                }
            }
            ["namespaces", ns, r, name] => {
                let resource = Resource::from_plural(r).filter(|r| *r != ns_kind)?;
                ApiPath::Get {
                    resource,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                }
            }
            ["namespaces", ns, r, name, "edges"] => match Resource::from_plural(r)? {
                Resource::Kind(k) if k != Kind::Namespace => ApiPath::Edges {
                    resource: k,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                },
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Whether this is a discovery document (readable by any authenticated caller).
    pub fn is_discovery(&self) -> bool {
        matches!(self, ApiPath::Groups | ApiPath::Group | ApiPath::Resources)
    }
}

/// A query parameter could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BadParam(pub String);

/// Query parameters: `t` (window) and `labelSelector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// The window.
    pub window: Duration,
    /// The label selector, as given.
    pub label_selector: Option<String>,
    /// `edges=true`: a list answers the edges among its resources.
    pub edges: bool,
}

impl Params {
    /// Parses the query string.
    pub fn parse(query: Option<&str>) -> Result<Self, BadParam> {
        let mut p = Params {
            window: DEFAULT_WINDOW,
            label_selector: None,
            edges: false,
        };
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "t" => p.window = parse_window(&v)?,
                "labelSelector" if !v.is_empty() => p.label_selector = Some(v.into_owned()),
                "edges" => {
                    p.edges = match v.as_ref() {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        other => {
                            return Err(BadParam(format!(
                                "edges={other:?}: use edges=true (or leave it out)"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

/// Parses a Go duration (`30s`, `1m`, `1h30m`, `500ms`) into a window of 1 s to 24 h.
pub fn parse_window(s: &str) -> Result<Duration, BadParam> {
    let bad = || {
        BadParam(format!(
            "t={s:?} is not a duration: use a Go duration such as 30s, 5m or 1h (at most 24h)"
        ))
    };
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_len..];
    }
    if total < Duration::from_secs(1) || total > MAX_WINDOW {
        return Err(bad());
    }
    Ok(total)
}

/// Formats a window as a Go duration (`30s`, `1m0s`).
pub fn format_window(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = |s| ApiPath::parse(s);
        assert_eq!(
            p("/apis/metrics.smi-spec.io/v1alpha1/"),
            Some(ApiPath::Resources)
        );
        assert_eq!(
            p("/apis/metrics.smi-spec.io/v1alpha1/deployments"),
            Some(ApiPath::List {
                resource: Resource::Kind(Kind::Deployment),
                namespace: None
            })
        );
        assert_eq!(
            p("/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo"),
            Some(ApiPath::Get {
                resource: Resource::Kind(Kind::Namespace),
                namespace: "demo".into(),
                name: "demo".into()
            })
        );
        assert_eq!(
            p("/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/edges"),
            Some(ApiPath::Edges {
                resource: Kind::Namespace,
                namespace: "demo".into(),
                name: "demo".into()
            })
        );
        assert_eq!(
            p("/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/pods"),
            Some(ApiPath::List {
                resource: Resource::Kind(Kind::Pod),
                namespace: Some("demo".into())
            })
        );
        assert_eq!(
            p("/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/trafficsplits/web"),
            Some(ApiPath::Get {
                resource: Resource::TrafficSplit,
                namespace: "demo".into(),
                name: "web".into()
            })
        );
        assert_eq!(
            p("/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/traffictargets"),
            Some(ApiPath::List {
                resource: Resource::TrafficTarget,
                namespace: Some("demo".into())
            })
        );
        assert_eq!(
            p("/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/deployments/web/edges"),
            Some(ApiPath::Edges {
                resource: Kind::Deployment,
                namespace: "demo".into(),
                name: "web".into()
            })
        );
        for bad in [
            "/apis/metrics.smi-spec.io/v1alpha1/services",
            "/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/namespaces",
            "/apis/metrics.smi-spec.io/v1alpha1/namespaces/demo/trafficsplits/web/edges",
            "/apis/metrics.smi-spec.io/v1alpha1/namespaces//pods",
            "/apis/metrics.k8s.io/v1beta1/pods",
            "/healthz",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn windows_are_go_durations() {
        assert_eq!(parse_window("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_window("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_window("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_window("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "30", "1d", "0s", "25h", "-1m", "m"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
        assert_eq!(format_window(Duration::from_secs(30)), "30s");
        assert_eq!(format_window(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_window(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn params() {
        assert!(Params::parse(Some("edges=true")).unwrap().edges);
        assert!(Params::parse(Some("edges=maybe")).is_err());
        let p = Params::parse(Some("t=5m&labelSelector=app%3Dweb")).unwrap();
        assert_eq!(p.window, Duration::from_secs(300));
        assert_eq!(p.label_selector.as_deref(), Some("app=web"));
        assert_eq!(Params::parse(None).unwrap().window, DEFAULT_WINDOW);
        assert!(Params::parse(Some("t=forever")).is_err());
    }
}
