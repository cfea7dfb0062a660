//! Service discovery: what a target resolves to.
//!
//! [`Resolve`] turns a target (an HTTP authority or an original destination address) into a
//! watch of its endpoints, or a distinct [`Lookup::NotFound`] on which the proxy forwards
//! to the original destination, and into a watch of its [`Profile`] (the TrafficSplit in
//! force). [`StaticDiscovery`] reads a JSON file; [`crate::control::destination`] implements
//! the same trait over the controller's gRPC streams.
//!
//! The names are the proxy's own: a [`DiscoveredEndpoint`] is what the proxy learned about one
//! endpoint, a [`Lookup`] what a target turned out to be, [`Resolve`] the proxy's side of
//! discovery. The controller's `Endpoint`, `Resolution` and `Discover` (tulle-controller-core)
//! are its index's endpoints (with weights and protocol hints) and the watches it serves.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use tokio::sync::watch;

use crate::split::{Backend, HttpMatch, Profile, RuleError, Split};

/// One endpoint of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredEndpoint {
    pub addr: SocketAddr,
    /// The identity the endpoint's certificate must carry (meshed peers only).
    pub identity: Option<String>,
    /// Metric labels, exported with a `dst_` prefix.
    pub labels: BTreeMap<String, String>,
}

/// The current answer for a destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    /// The canonical authority (`name:port`), used as the `authority` metric label.
    pub authority: Option<String>,
    pub endpoints: Vec<DiscoveredEndpoint>,
}

/// What a target resolves to.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Known: the receiver always holds the latest endpoint set.
    Found(watch::Receiver<Arc<Destination>>),
    /// Not a known destination (the controller's own answer): forward to the original
    /// destination.
    NotFound,
    /// The controller did not answer in time: nothing is known. Inside the mesh networks
    /// this fails closed (never plaintext to a meshed pod because discovery was slow).
    Unavailable,
}

/// A discovery target.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// An HTTP authority, `host:port`, lower case.
    Authority(&'a str),
    /// An original destination address.
    Addr(SocketAddr),
}

/// A future resolving a target.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Lookup> + Send + 'a>>;

/// A future resolving the profile of a target.
pub type ProfileFuture<'a> =
    Pin<Box<dyn Future<Output = watch::Receiver<Arc<Profile>>> + Send + 'a>>;

/// Resolves targets. Implementations must be cheap to call repeatedly; the proxy caches
/// resolutions per target.
pub trait Resolve: Send + Sync + 'static {
    fn resolve<'a>(&'a self, target: Target<'a>) -> ResolveFuture<'a>;

    /// The profile of a target, kept current (no split when nothing is known).
    fn profile<'a>(&'a self, _target: Target<'a>) -> ProfileFuture<'a> {
        Box::pin(std::future::ready(no_profile()))
    }
}

/// A receiver that holds an empty profile forever.
pub fn no_profile() -> watch::Receiver<Arc<Profile>> {
    watch::channel(Arc::new(Profile::default())).1
}

/// The static configuration file (`TULLE_PROXY_STATIC_CONFIG`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFile {
    #[serde(default)]
    pub destinations: Vec<StaticDestination>,
    /// TrafficSplits by apex.
    #[serde(default)]
    pub splits: Vec<StaticSplit>,
}

/// A TrafficSplit of the static file, for the apex `authority` (and `addrs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSplit {
    /// The apex, `host:port`.
    pub authority: String,
    #[serde(default)]
    pub addrs: Vec<SocketAddr>,
    /// `namespace/name`, for logs and errors.
    pub name: String,
    pub backends: Vec<StaticBackend>,
    #[serde(default)]
    pub matches: Vec<StaticMatch>,
}

/// A backend of a [`StaticSplit`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticBackend {
    pub authority: String,
    pub weight: u32,
}

/// A route match of a [`StaticSplit`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticMatch {
    #[serde(default)]
    pub path_regex: String,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl StaticSplit {
    fn to_split(&self) -> Result<Split, StaticError> {
        let matches = self
            .matches
            .iter()
            .map(|m| {
                let headers: Vec<(String, String)> = m.headers.clone().into_iter().collect();
                HttpMatch::new(
                    &format!("TrafficSplit {}", self.name),
                    &m.path_regex,
                    &m.methods,
                    &headers,
                )
            })
            .collect::<Result<_, RuleError>>()?;
        let backends = self
            .backends
            .iter()
            .map(|b| {
                Ok(Backend {
                    authority: normalize_authority(&b.authority, None)
                        .ok_or_else(|| StaticError::Authority(b.authority.clone()))?,
                    weight: b.weight,
                })
            })
            .collect::<Result<_, StaticError>>()?;
        let apex = normalize_authority(&self.authority, None)
            .and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_string()));
        Ok(Split {
            name: self.name.clone(),
            apex,
            backends,
            matches,
        })
    }
}

/// One destination of the static file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticDestination {
    /// `host:port`.
    pub authority: Option<String>,
    /// Original-destination addresses (e.g. the ClusterIP) that also match this destination.
    #[serde(default)]
    pub addrs: Vec<SocketAddr>,
    #[serde(default)]
    pub endpoints: Vec<StaticEndpoint>,
}

/// One endpoint of the static file; without `identity` it is plain (unmeshed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEndpoint {
    pub addr: SocketAddr,
    pub identity: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Why the static file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    #[error("reading static config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "parsing static config {path}: {source}; expected {{\"destinations\":[{{\"authority\":\"host:port\",\"addrs\":[...],\"endpoints\":[{{\"addr\":\"ip:port\",\"identity\":\"...\",\"labels\":{{}}}}]}}]}}"
    )]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("destination {0:?}: an authority must be host:port")]
    Authority(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
}

impl StaticFile {
    pub fn from_path(path: &Path) -> Result<Self, StaticError> {
        let p = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| StaticError::Read {
            path: p.clone(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| StaticError::Parse { path: p, source })
    }
}

#[derive(Debug, Default)]
struct Index {
    by_authority: HashMap<String, watch::Sender<Arc<Destination>>>,
    by_addr: HashMap<SocketAddr, watch::Sender<Arc<Destination>>>,
    /// Profiles by apex authority and address; a profile stays (empty) once watched.
    profiles: HashMap<String, watch::Sender<Arc<Profile>>>,
}

/// Discovery from a [`StaticFile`], replaceable at runtime ([`StaticDiscovery::replace`]):
/// watchers of a destination see the new endpoints, and in-flight requests are unaffected.
#[derive(Debug, Default)]
pub struct StaticDiscovery {
    index: RwLock<Index>,
}

impl StaticDiscovery {
    pub fn new(file: StaticFile) -> Result<Self, StaticError> {
        let d = StaticDiscovery::default();
        d.replace(file)?;
        Ok(d)
    }

    /// Replaces the destinations; existing watches are updated in place.
    pub fn replace(&self, file: StaticFile) -> Result<(), StaticError> {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Index::default();
        for d in file.destinations {
            let authority = match d.authority {
                Some(a) => Some(normalize_authority(&a, None).ok_or(StaticError::Authority(a))?),
                None => None,
            };
            let dest = Arc::new(Destination {
                authority: authority.clone(),
                endpoints: d
                    .endpoints
                    .into_iter()
                    .map(|e| DiscoveredEndpoint {
                        addr: e.addr,
                        identity: e.identity.map(|i| i.to_ascii_lowercase()),
                        labels: e.labels,
                    })
                    .collect(),
            });
            // Reuse the sender of the same destination so watchers see the change.
            let existing = authority
                .as_ref()
                .and_then(|a| index.by_authority.get(a))
                .or_else(|| d.addrs.iter().find_map(|a| index.by_addr.get(a)))
                .cloned();
            let tx = match existing {
                Some(tx) => {
                    tx.send_replace(dest);
                    tx
                }
                None => watch::channel(dest).0,
            };
            if let Some(a) = authority {
                next.by_authority.insert(a, tx.clone());
            }
            for a in d.addrs {
                next.by_addr.insert(a, tx.clone());
            }
        }
        let mut splits: HashMap<String, Arc<Profile>> = HashMap::new();
        for sp in &file.splits {
            let apex = normalize_authority(&sp.authority, None)
                .ok_or_else(|| StaticError::Authority(sp.authority.clone()))?;
            let profile = Arc::new(Profile {
                split: Some(Arc::new(sp.to_split()?)),
            });
            for key in std::iter::once(apex).chain(sp.addrs.iter().map(|a| a.to_string())) {
                splits.insert(key, profile.clone());
            }
        }
        next.profiles = std::mem::take(&mut index.profiles);
        for (key, tx) in &next.profiles {
            let p = splits.get(key).cloned().unwrap_or_default();
            tx.send_replace(p);
        }
        for (key, p) in splits {
            next.profiles
                .entry(key)
                .or_insert_with(|| watch::channel(p).0);
        }
        // Destinations that disappeared keep their watchers but lose their endpoints.
        for (a, tx) in index.by_authority.iter() {
            if !next.by_authority.contains_key(a) {
                tx.send_replace(Arc::new(Destination {
                    authority: Some(a.clone()),
                    endpoints: vec![],
                }));
            }
        }
        *index = next;
        Ok(())
    }

    fn lookup_profile(&self, target: Target<'_>) -> watch::Receiver<Arc<Profile>> {
        let key = match target {
            Target::Authority(a) => a.to_string(),
            Target::Addr(a) => a.to_string(),
        };
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index
            .profiles
            .entry(key)
            .or_insert_with(|| watch::channel(Arc::default()).0)
            .subscribe()
    }

    fn lookup(&self, target: Target<'_>) -> Lookup {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let tx = match target {
            Target::Authority(a) => index.by_authority.get(a),
            Target::Addr(a) => index.by_addr.get(&a),
        };
        match tx {
            Some(tx) => Lookup::Found(tx.subscribe()),
            None => Lookup::NotFound,
        }
    }
}

impl Resolve for StaticDiscovery {
    fn resolve<'a>(&'a self, target: Target<'a>) -> ResolveFuture<'a> {
        let r = self.lookup(target);
        Box::pin(std::future::ready(r))
    }

    fn profile<'a>(&'a self, target: Target<'a>) -> ProfileFuture<'a> {
        Box::pin(std::future::ready(self.lookup_profile(target)))
    }
}

/// Lower-cases an authority and adds `default_port` when it has none. `None` if invalid.
pub fn normalize_authority(a: &str, default_port: Option<u16>) -> Option<String> {
    let a = a.trim().trim_end_matches('.');
    if a.is_empty() || a.contains(['/', ' ', '@']) {
        return None;
    }
    let has_port = match a.rfind(':') {
        Some(i) if !a.ends_with(']') => a[i + 1..].parse::<u16>().is_ok(),
        _ => false,
    };
    let mut s = a.to_ascii_lowercase();
    if !has_port {
        s.push(':');
        s.push_str(&default_port?.to_string());
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"destinations":[{"authority":"web.default.svc.cluster.local:80","addrs":["10.96.0.5:80"],"endpoints":[{"addr":"127.0.0.1:4143","identity":"web.default.serviceaccount.identity.tulle.cluster.local","labels":{"pod":"web-1"}}]}]}"#;

    #[tokio::test]
    async fn static_resolves_by_authority_and_addr() {
        let d = StaticDiscovery::new(serde_json::from_str(EXAMPLE).unwrap()).unwrap();
        let Lookup::Found(rx) = d
            .resolve(Target::Authority("web.default.svc.cluster.local:80"))
            .await
        else {
            panic!("not found")
        };
        let dest = rx.borrow().clone();
        assert_eq!(dest.endpoints.len(), 1);
        assert!(dest.endpoints[0].identity.is_some(), "meshed");
        assert_eq!(dest.endpoints[0].labels["pod"], "web-1");
        assert!(matches!(
            d.resolve(Target::Addr("10.96.0.5:80".parse().unwrap()))
                .await,
            Lookup::Found(_)
        ));
        assert!(matches!(
            d.resolve(Target::Authority("other:80")).await,
            Lookup::NotFound
        ));
    }

    #[tokio::test]
    async fn replace_updates_watchers() {
        let d = StaticDiscovery::new(serde_json::from_str(EXAMPLE).unwrap()).unwrap();
        let Lookup::Found(mut rx) = d
            .resolve(Target::Authority("web.default.svc.cluster.local:80"))
            .await
        else {
            panic!()
        };
        let next = EXAMPLE.replace(
            r#","identity":"web.default.serviceaccount.identity.tulle.cluster.local""#,
            "",
        );
        d.replace(serde_json::from_str(&next).unwrap()).unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().endpoints[0].identity, None);
    }

    #[test]
    fn authorities() {
        assert_eq!(
            normalize_authority("Web.Default:8080", None).unwrap(),
            "web.default:8080"
        );
        assert_eq!(normalize_authority("web", Some(80)).unwrap(), "web:80");
        assert_eq!(normalize_authority("web", None), None);
        assert_eq!(normalize_authority("[::1]", Some(80)).unwrap(), "[::1]:80");
    }
}
