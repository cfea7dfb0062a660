//! Discovery through tulle-controller's destination service.
//!
//! Each target gets one `Destination/Get` stream, shared by every user of the target and
//! dropped after [`Timing::idle`] without users. Add/Remove updates change the watched
//! endpoint set; `NoEndpoints{exists: false}` answers [`Lookup::NotFound`] (the proxy
//! forwards to the original destination). When the controller goes away the stream is
//! re-opened with backoff and the last known endpoints keep serving meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::Channel;
use tulle_api::context::ContextToken;
use tulle_api::destination::destination_client::DestinationClient;
use tulle_api::destination::update::Update as U;
use tulle_api::destination::{GetDestination, WeightedAddr, protocol_hint};

use crate::config::DestinationConfig;
use crate::control::backoff::Backoff;
use crate::control::profile::Profiles;
use crate::control::{LastUsed, Timing};
use crate::discovery::{
    Destination, DiscoveredEndpoint, Lookup, ProfileFuture, Resolve, ResolveFuture, Target,
};

/// The state of one target as the controller last described it.
#[derive(Debug, Clone)]
enum Outcome {
    Pending,
    NotFound,
    Found(watch::Receiver<Arc<Destination>>),
}

#[derive(Debug)]
struct Entry {
    outcome: watch::Receiver<Outcome>,
    last_used: LastUsed,
}

#[derive(Debug)]
struct Inner {
    client: DestinationClient<Channel>,
    context: String,
    timing: Timing,
    cache: Mutex<HashMap<String, Arc<Entry>>>,
}

/// [`Resolve`] backed by the controller.
#[derive(Debug, Clone)]
pub struct DestinationDiscovery {
    inner: Arc<Inner>,
    profiles: Profiles,
}

/// The destination client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0} (TULLE_PROXY_DESTINATION_SVC_ADDR / TULLE_PROXY_DESTINATION_SVC_NAME)")]
pub struct SetupError(tulle_api::tls::ChannelError);

impl DestinationDiscovery {
    /// A client of `config.svc` over TLS with `tls` (the proxy's client configuration for
    /// control-plane connections, presenting its certificate once it has one).
    pub fn new(
        config: &DestinationConfig,
        tls: Arc<rustls::ClientConfig>,
        timing: Timing,
    ) -> Result<Self, SetupError> {
        let channel =
            tulle_api::tls::channel(&config.svc.addr, &config.svc.name, tls).map_err(SetupError)?;
        let context = ContextToken {
            ns: config.namespace.clone(),
            pod: config.pod.clone(),
        }
        .encode();
        let client = DestinationClient::new(channel);
        Ok(DestinationDiscovery {
            profiles: Profiles::new(client.clone(), context.clone(), timing.clone()),
            inner: Arc::new(Inner {
                client,
                context,
                timing,
                cache: Mutex::default(),
            }),
        })
    }

    /// Number of targets with an open (or reconnecting) stream.
    pub fn streams(&self) -> usize {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn entry(&self, key: &str) -> Arc<Entry> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cache.get(key) {
            e.last_used.touch();
            return e.clone();
        }
        let (tx, rx) = watch::channel(Outcome::Pending);
        let entry = Arc::new(Entry {
            outcome: rx,
            last_used: LastUsed::now(),
        });
        cache.insert(key.to_string(), entry.clone());
        let authority = key.parse::<SocketAddr>().is_err().then(|| key.to_string());
        tokio::spawn(watch_target(
            Arc::downgrade(&self.inner),
            key.to_string(),
            authority,
            entry.clone(),
            tx,
        ));
        entry
    }
}

impl Resolve for DestinationDiscovery {
    fn resolve<'a>(&'a self, target: Target<'a>) -> ResolveFuture<'a> {
        Box::pin(async move {
            let key = match target {
                Target::Authority(a) => a.to_string(),
                Target::Addr(a) => a.to_string(),
            };
            let mut rx = self.entry(&key).outcome.clone();
            let first = self.inner.timing.first_answer;
            let answer =
                tokio::time::timeout(first, rx.wait_for(|o| !matches!(o, Outcome::Pending))).await;
            match answer {
                Ok(Ok(o)) => match &*o {
                    Outcome::Found(rx) => Lookup::Found(rx.clone()),
                    _ => Lookup::NotFound,
                },
                _ => {
                    tracing::info!(%key, ?first, "no answer from the destination service yet");
                    Lookup::Unavailable
                }
            }
        })
    }

    fn profile<'a>(&'a self, target: Target<'a>) -> ProfileFuture<'a> {
        Box::pin(async move {
            let key = match target {
                Target::Authority(a) => a.to_string(),
                Target::Addr(a) => a.to_string(),
            };
            self.profiles.get(&key).await
        })
    }
}

/// Converts one endpoint; `None` for an unusable address.
fn endpoint(a: &WeightedAddr, set_labels: &HashMap<String, String>) -> Option<DiscoveredEndpoint> {
    let addr = SocketAddr::try_from(a.addr.as_ref()?).ok()?;
    let meshed = matches!(
        a.protocol_hint.as_ref().and_then(|h| h.protocol.as_ref()),
        Some(protocol_hint::Protocol::H2(_) | protocol_hint::Protocol::Opaque(_))
    );
    let identity = a
        .tls_identity
        .as_ref()
        .map(|t| t.name.to_ascii_lowercase())
        .filter(|n| meshed && !n.is_empty());
    if let Some(id) = &identity
        && crate::tls::server_name(id).is_none()
    {
        // A meshed endpoint whose identity cannot be checked is left out: it must never be
        // reached in plaintext instead.
        tracing::warn!(%addr, identity = %id, "endpoint identity is not a valid TLS name; endpoint skipped");
        return None;
    }
    let mut labels: BTreeMap<String, String> = set_labels.clone().into_iter().collect();
    labels.extend(a.metric_labels.clone());
    Some(DiscoveredEndpoint {
        addr,
        identity,
        labels,
    })
}

/// The endpoint set of one target, published to its watchers.
struct Published {
    authority: Option<String>,
    endpoints: HashMap<SocketAddr, DiscoveredEndpoint>,
    tx: Option<watch::Sender<Arc<Destination>>>,
}

impl Published {
    fn publish(&mut self, outcome: &watch::Sender<Outcome>) {
        let mut endpoints: Vec<DiscoveredEndpoint> = self.endpoints.values().cloned().collect();
        endpoints.sort_by_key(|e| e.addr);
        let dest = Arc::new(Destination {
            authority: self.authority.clone(),
            endpoints,
        });
        match &self.tx {
            Some(tx) => {
                tx.send_replace(dest);
            }
            None => self.tx = Some(watch::channel(dest).0),
        }
        if let Some(tx) = &self.tx
            && !matches!(*outcome.borrow(), Outcome::Found(_))
        {
            outcome.send_replace(Outcome::Found(tx.subscribe()));
        }
    }

    /// Whether anyone outside this client still watches the endpoints (the outcome
    /// channel holds one receiver itself).
    fn in_use(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.receiver_count() > 1)
    }
}

/// Keeps the stream of one target until it is idle or the client is dropped.
async fn watch_target(
    inner: Weak<Inner>,
    key: String,
    authority: Option<String>,
    entry: Arc<Entry>,
    outcome: watch::Sender<Outcome>,
) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let timing = strong.timing.clone();
    let request = GetDestination {
        scheme: "k8s".into(),
        path: key.clone(),
        context_token: strong.context.clone(),
    };
    let mut client = strong.client.clone();
    drop(strong);
    let mut backoff = Backoff::new(timing.backoff_min, timing.backoff_max);
    let mut published = Published {
        authority,
        endpoints: HashMap::new(),
        tx: None,
    };
    let mut tick = tokio::time::interval(timing.idle_check());
    'reconnect: loop {
        if is_idle(&published, &entry, timing.idle) || inner.strong_count() == 0 {
            break;
        }
        let mut stream = match client.get(request.clone()).await {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                // Not a name the controller knows how to resolve: forward as is.
                tracing::debug!(%key, "destination service refused the target: {}", s.message());
                outcome.send_replace(Outcome::NotFound);
                wait_idle(&entry, &timing).await;
                break;
            }
            Err(s) => {
                let wait = backoff.next_delay();
                tracing::warn!(%key, retry_in = ?wait, "destination service unavailable ({}); keeping the last known endpoints", s.message());
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let mut fresh = true;
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = tick.tick() => {
                    if is_idle(&published, &entry, timing.idle) || inner.strong_count() == 0 { break 'reconnect; }
                    continue;
                }
            };
            let update = match msg {
                Ok(Some(u)) => u,
                Ok(None) | Err(_) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(%key, retry_in = ?wait, "destination stream ended; keeping the last known endpoints");
                    tokio::time::sleep(wait).await;
                    continue 'reconnect;
                }
            };
            backoff.reset();
            if fresh {
                // A (re)connected stream starts from the full current state.
                published.endpoints.clear();
                fresh = false;
            }
            match update.update {
                Some(U::Add(set)) => {
                    for a in &set.addrs {
                        if let Some(e) = endpoint(a, &set.metric_labels) {
                            published.endpoints.insert(e.addr, e);
                        }
                    }
                    published.publish(&outcome);
                }
                Some(U::Remove(set)) => {
                    for a in &set.addrs {
                        if let Ok(sa) = SocketAddr::try_from(a) {
                            published.endpoints.remove(&sa);
                        }
                    }
                    published.publish(&outcome);
                }
                Some(U::NoEndpoints(n)) => {
                    published.endpoints.clear();
                    if n.exists || published.tx.is_some() {
                        published.publish(&outcome);
                    }
                    if !n.exists {
                        outcome.send_replace(Outcome::NotFound);
                    }
                }
                None => {}
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        let mut cache = inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.get(&key).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
            cache.remove(&key);
        }
    }
    tracing::debug!(%key, "destination stream dropped (idle)");
}

/// No watcher outside this client and no resolution for `idle`.
fn is_idle(published: &Published, entry: &Entry, idle: Duration) -> bool {
    !published.in_use() && entry.last_used.elapsed() >= idle
}

async fn wait_idle(entry: &Entry, timing: &Timing) {
    loop {
        let since = entry.last_used.elapsed();
        if since >= timing.idle {
            return;
        }
        tokio::time::sleep(timing.idle - since).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tulle_api::destination::{ProtocolHint, TcpAddress, TlsIdentity};

    fn addr(hint: Option<protocol_hint::Protocol>, id: Option<&str>) -> WeightedAddr {
        WeightedAddr {
            addr: Some(TcpAddress::from(
                "10.1.0.1:8080".parse::<SocketAddr>().unwrap(),
            )),
            weight: 1,
            metric_labels: HashMap::from([("pod".into(), "web-1".into())]),
            tls_identity: id.map(|n| TlsIdentity {
                name: n.into(),
                server_name: n.into(),
            }),
            protocol_hint: hint.map(|p| ProtocolHint { protocol: Some(p) }),
        }
    }

    #[test]
    fn endpoint_identity_hint_and_labels() {
        let id = "web.shop.serviceaccount.identity.tulle.cluster.local";
        let set = HashMap::from([("service".to_string(), "web".to_string())]);
        let h2 = Some(protocol_hint::Protocol::H2(protocol_hint::H2 {}));
        let e = endpoint(&addr(h2, Some(id)), &set).unwrap();
        assert_eq!(e.addr, "10.1.0.1:8080".parse().unwrap());
        assert_eq!(e.identity.as_deref(), Some(id));
        assert!(e.identity.is_some(), "meshed");
        assert_eq!(e.labels["service"], "web");
        assert_eq!(e.labels["pod"], "web-1");
        // Without a mesh protocol hint (an unmeshed pod) the endpoint is plain.
        let e = endpoint(&addr(None, Some(id)), &set).unwrap();
        assert_eq!(e.identity, None);
        // An unusable address is skipped.
        let mut bad = addr(None, None);
        bad.addr = None;
        assert!(endpoint(&bad, &set).is_none());
    }
}
