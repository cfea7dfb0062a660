//! The `tulle.destination.Destination` gRPC service, over [`core::Discover`] only (no
//! Kubernetes types here). Each `Get` stream sends the current state at once, then the
//! difference (Add / Remove / NoEndpoints) on every change. The inbound policy service is
//! in [`policy`].
//!
//! A client (a pod: its IP address, else its mesh identity) may hold at most
//! [`DestinationLimits::max_streams_per_client`] Get and GetProfile streams at once; beyond
//! that a new stream is refused with `RESOURCE_EXHAUSTED` saying so (issue 15, item 7). The
//! server's connection and stream bounds are in [`server_builder`] and [`TLS_LIMITS`].

pub mod policy;

pub use policy::{CallerCheck, PolicyService};

use crate::core::{self, Discover, Endpoint, Resolution};
use futures::Stream;
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Weak},
};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};
use tulle_api::destination::{
    self as pb, AddrSet, DestinationProfile, GetDestination, NoEndpoints, TcpAddress, TlsIdentity,
    Update, WeightedAddr, WeightedAddrSet, WeightedDst, destination_server, protocol_hint, update,
};

/// Stream metrics.
#[derive(Clone, Debug, Default)]
pub struct GrpcMetrics {
    active_streams: Gauge,
    updates_sent: Counter,
    refused_streams: Counter,
}

impl GrpcMetrics {
    /// Registers under `destination_grpc_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("destination_grpc");
        r.register(
            "active_streams",
            "Open Get/GetProfile streams",
            self.active_streams.clone(),
        );
        r.register(
            "updates_sent",
            "Update messages sent",
            self.updates_sent.clone(),
        );
        r.register(
            "refused_streams",
            "Streams refused because their client holds the most allowed",
            self.refused_streams.clone(),
        );
    }
}

/// Bounds of the destination API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestinationLimits {
    /// Get and GetProfile streams one client may hold at once (a proxy holds two per
    /// destination it talks to, and drops those of idle routes).
    pub max_streams_per_client: usize,
}

impl Default for DestinationLimits {
    fn default() -> Self {
        Self {
            max_streams_per_client: 1000,
        }
    }
}

/// HTTP/2 streams one connection may open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 2048;

/// Connections and handshakes the control-plane gRPC servers accept at once (over mTLS).
pub const TLS_LIMITS: tulle_api::tls::Limits = tulle_api::tls::Limits {
    max_handshakes: 64,
    max_connections: 20_000,
    handshake_timeout: tulle_api::tls::HANDSHAKE_TIMEOUT,
};

/// The settings of the controller's gRPC servers: bounded streams per connection, calls in
/// flight per connection (beyond it `RESOURCE_EXHAUSTED` at once, not a queue), and HTTP/2
/// keepalive so that dead clients' streams are dropped.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        .load_shed(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
}

/// Streams open per client.
#[derive(Default)]
struct Clients {
    open: std::sync::Mutex<HashMap<String, usize>>,
}

/// A client's place among its streams, given back when the stream ends.
struct ClientSlot {
    clients: Arc<Clients>,
    key: String,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Who is calling, for the per-client bound: the peer's IP address (one pod), else its mesh
/// identity, with the identity for the messages.
fn client_of<T>(req: &Request<T>) -> (String, String) {
    let ids = policy::caller_identities(req);
    let addr = req
        .extensions()
        .get::<tulle_api::tls::TlsConnectInfo>()
        .and_then(|i| i.remote_addr)
        .or_else(|| req.remote_addr())
        .map(|a| a.ip().to_string());
    let shown = match (&addr, ids.first()) {
        (Some(a), Some(id)) => format!("client {a} ({id})"),
        (Some(a), None) => format!("client {a}"),
        (None, Some(id)) => format!("client {id}"),
        (None, None) => "this client".to_string(),
    };
    let key = addr.or_else(|| ids.first().cloned()).unwrap_or_default();
    (key, shown)
}

/// The Destination service.
pub struct DestinationService<D> {
    discover: Arc<D>,
    metrics: GrpcMetrics,
    shared: std::sync::Mutex<HashMap<core::Target, Weak<SharedDiff>>>,
    limits: DestinationLimits,
    clients: Arc<Clients>,
}

impl<D> std::fmt::Debug for DestinationService<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DestinationService")
    }
}

impl<D: Discover> DestinationService<D> {
    /// A service over `discover`.
    pub fn new(discover: Arc<D>, metrics: GrpcMetrics) -> Self {
        Self {
            discover,
            metrics,
            shared: Default::default(),
            limits: DestinationLimits::default(),
            clients: Default::default(),
        }
    }

    /// The same service with other bounds.
    pub fn with_limits(mut self, limits: DestinationLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Takes a stream place of the caller of `req`, or refuses with why and what to do.
    fn admit<T>(&self, req: &Request<T>) -> Result<ClientSlot, Status> {
        let (key, shown) = client_of(req);
        let max = self.limits.max_streams_per_client;
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_default();
        if *n >= max {
            drop(open);
            self.metrics.refused_streams.inc();
            tracing::warn!(client = %shown, max, "destination stream refused: too many open");
            return Err(Status::resource_exhausted(format!(
                "{shown} holds {max} destination streams (Get and GetProfile), the most one \
                 client may hold (tulle-controller --max-streams-per-client); close the streams \
                 it no longer needs, or raise the bound"
            )));
        }
        *n += 1;
        Ok(ClientSlot {
            clients: self.clients.clone(),
            key,
        })
    }

    /// The diff memo of `target`, shared by all of its streams.
    fn shared_diff(&self, target: &core::Target) -> Arc<SharedDiff> {
        let mut map = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(target).and_then(Weak::upgrade) {
            return s;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(SharedDiff::default());
        map.insert(target.clone(), Arc::downgrade(&s));
        s
    }

    /// The tonic server.
    pub fn into_server(self) -> destination_server::DestinationServer<Self> {
        destination_server::DestinationServer::new(self)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Decrements the active-stream gauge when the stream task ends.
struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[tonic::async_trait]
impl<D: Discover> destination_server::Destination for DestinationService<D> {
    type GetStream = BoxStream<Update>;
    type GetProfileStream = BoxStream<DestinationProfile>;

    async fn get(
        &self,
        request: Request<GetDestination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let slot = self.admit(&request)?;
        let req = request.into_inner();
        let target = self
            .discover
            .parse(&req.path)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::debug!(path = %req.path, context = %req.context_token, "Get");
        let rx = self.discover.watch(&target);
        let shared = self.shared_diff(&target);
        let (tx, out) = mpsc::channel(4);
        self.metrics.active_streams.inc();
        let guard = StreamGuard(self.metrics.active_streams.clone());
        let sent = self.metrics.updates_sent.clone();
        tokio::spawn(async move {
            let _guard = (guard, slot);
            stream_updates(rx, tx, sent, shared).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn get_profile(
        &self,
        request: Request<GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let slot = self.admit(&request)?;
        let req = request.into_inner();
        let target = self
            .discover
            .parse(&req.path)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut rx = self.discover.watch_profile(&target);
        let (tx, out) = mpsc::channel(2);
        self.metrics.active_streams.inc();
        let guard = StreamGuard(self.metrics.active_streams.clone());
        tokio::spawn(async move {
            let _guard = (guard, slot);
            loop {
                let p = to_profile(&rx.borrow_and_update());
                if tx.send(Ok(p)).await.is_err() {
                    return;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}

/// The updates of the last transition of one target, computed once and reused by every stream
/// of that target making the same transition (the common case: all follow the same watch
/// channel, so with 500 watchers a change is diffed once instead of 500 times over thousands of
/// endpoints). It holds the two states it was computed for, so their identity (`Arc`
/// pointers) cannot be reused by other states while it is cached.
#[derive(Default)]
struct SharedDiff {
    last: std::sync::Mutex<Option<Transition>>,
}

struct Transition {
    prev: Option<Resolution>,
    cur: Resolution,
    updates: Arc<Vec<Update>>,
}

/// Whether two states are the same published value (not merely equal).
fn same(a: &Resolution, b: &Resolution) -> bool {
    match (a, b) {
        (Resolution::Unknown, Resolution::Unknown) => true,
        (Resolution::Endpoints(x), Resolution::Endpoints(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

impl SharedDiff {
    fn updates(&self, prev: Option<&Resolution>, cur: &Resolution) -> Arc<Vec<Update>> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = last.as_ref() {
            let same_prev = match (&t.prev, prev) {
                (None, None) => true,
                (Some(a), Some(b)) => same(a, b),
                _ => false,
            };
            if same_prev && same(&t.cur, cur) {
                return t.updates.clone();
            }
        }
        let updates = Arc::new(diff(prev, cur));
        *last = Some(Transition {
            prev: prev.cloned(),
            cur: cur.clone(),
            updates: updates.clone(),
        });
        updates
    }
}

async fn stream_updates(
    mut rx: watch::Receiver<Resolution>,
    tx: mpsc::Sender<Result<Update, Status>>,
    sent: Counter,
    shared: Arc<SharedDiff>,
) {
    // None: nothing sent yet.
    let mut prev: Option<Resolution> = None;
    loop {
        let cur = rx.borrow_and_update().clone();
        let updates = shared.updates(prev.as_ref(), &cur);
        for u in updates.iter() {
            if tx.send(Ok(u.clone())).await.is_err() {
                return;
            }
            sent.inc();
        }
        prev = Some(cur);
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

/// The updates that take a client from `prev` (None: fresh stream) to `cur`.
pub fn diff(prev: Option<&Resolution>, cur: &Resolution) -> Vec<Update> {
    let empty = BTreeMap::new();
    let prev_eps = match prev {
        Some(Resolution::Endpoints(e)) => e.as_ref(),
        _ => &empty,
    };
    match cur {
        Resolution::Unknown => {
            if matches!(prev, Some(Resolution::Unknown)) {
                vec![]
            } else {
                vec![no_endpoints(false)]
            }
        }
        Resolution::Endpoints(eps) if eps.is_empty() => {
            if matches!(prev, Some(Resolution::Endpoints(p)) if p.is_empty()) {
                vec![]
            } else {
                vec![no_endpoints(true)]
            }
        }
        Resolution::Endpoints(eps) => {
            let mut out = vec![];
            let removed: Vec<TcpAddress> = prev_eps
                .keys()
                .filter(|a| !eps.contains_key(a))
                .map(|a| TcpAddress::from(*a))
                .collect();
            if !removed.is_empty() {
                out.push(Update {
                    update: Some(update::Update::Remove(AddrSet { addrs: removed })),
                });
            }
            let added: Vec<WeightedAddr> = eps
                .iter()
                .filter(|(a, e)| prev_eps.get(a) != Some(e))
                .map(|(a, e)| to_weighted_addr(*a, e))
                .collect();
            if !added.is_empty() {
                out.push(Update {
                    update: Some(update::Update::Add(WeightedAddrSet {
                        addrs: added,
                        metric_labels: Default::default(),
                    })),
                });
            }
            out
        }
    }
}

fn no_endpoints(exists: bool) -> Update {
    Update {
        update: Some(update::Update::NoEndpoints(NoEndpoints { exists })),
    }
}

fn to_weighted_addr(addr: SocketAddr, e: &Endpoint) -> WeightedAddr {
    let hint = match e.hint {
        core::ProtocolHint::H2 => Some(pb::ProtocolHint {
            protocol: Some(protocol_hint::Protocol::H2(protocol_hint::H2 {})),
        }),
        core::ProtocolHint::Opaque => Some(pb::ProtocolHint {
            protocol: Some(protocol_hint::Protocol::Opaque(protocol_hint::Opaque {})),
        }),
        core::ProtocolHint::Unknown => None,
    };
    WeightedAddr {
        addr: Some(TcpAddress::from(addr)),
        weight: e.weight,
        metric_labels: e.labels.clone().into_iter().collect(),
        tls_identity: e.identity.as_ref().map(|n| TlsIdentity {
            name: n.clone(),
            server_name: n.clone(),
        }),
        protocol_hint: hint,
    }
}

fn to_profile(p: &core::Profile) -> DestinationProfile {
    DestinationProfile {
        fully_qualified_name: p.fully_qualified_name.clone().unwrap_or_default(),
        dst_overrides: p
            .backends
            .iter()
            .map(|b| WeightedDst {
                authority: b.authority.clone(),
                weight: b.weight,
            })
            .collect(),
        opaque_protocol: false,
        split_matches: p
            .split_matches
            .iter()
            .map(|r| pb::HttpMatch {
                path_regex: r.path_regex.clone().unwrap_or_default(),
                methods: r.methods.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(name, value)| pb::HeaderMatch {
                        name: name.clone(),
                        value_regex: value.clone(),
                    })
                    .collect(),
            })
            .collect(),
        traffic_split: p.traffic_split.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ProtocolHint;

    fn state(ports: &[u16]) -> Resolution {
        Resolution::Endpoints(Arc::new(
            ports
                .iter()
                .map(|p| {
                    let addr = SocketAddr::from(([10, 0, 0, 1], *p));
                    let e = Endpoint {
                        addr,
                        weight: core::DEFAULT_WEIGHT,
                        identity: None,
                        hint: ProtocolHint::Unknown,
                        labels: Default::default(),
                    };
                    (addr, e)
                })
                .collect(),
        ))
    }

    #[test]
    fn profiles_carry_the_split_and_its_rules() {
        let p = core::Profile {
            fully_qualified_name: Some("web.shop.svc.cluster.local".into()),
            backends: vec![core::WeightedBackend {
                authority: "web-v2.shop.svc.cluster.local:80".into(),
                weight: 100,
            }],
            split_matches: vec![core::HttpRule {
                name: "canary".into(),
                path_regex: Some("/api".into()),
                methods: vec!["GET".into()],
                headers: vec![("x-canary".into(), "true".into())],
            }],
            traffic_split: Some("shop/web".into()),
        };
        let pb = to_profile(&p);
        assert_eq!(pb.traffic_split, "shop/web");
        assert_eq!(pb.dst_overrides[0].weight, 100);
        let m = &pb.split_matches[0];
        assert_eq!(m.path_regex, "/api");
        assert_eq!(m.methods, ["GET"]);
        assert_eq!(
            (
                m.headers[0].name.as_str(),
                m.headers[0].value_regex.as_str()
            ),
            ("x-canary", "true")
        );
        let none = to_profile(&core::Profile::default());
        assert!(none.traffic_split.is_empty() && none.split_matches.is_empty());
    }

    #[test]
    fn a_transition_is_diffed_once_for_all_streams() {
        let shared = SharedDiff::default();
        let (a, b) = (state(&[1, 2]), state(&[1, 3]));
        let first = shared.updates(Some(&a), &b);
        let again = shared.updates(Some(&a), &b);
        assert!(Arc::ptr_eq(&first, &again), "the same transition is reused");
        assert_eq!(*first, diff(Some(&a), &b));
        // An equal but distinct state is another transition (identity, not equality).
        let a2 = state(&[1, 2]);
        let other = shared.updates(Some(&a2), &b);
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(*other, *first);
        // A fresh stream gets the full state.
        let fresh = shared.updates(None, &b);
        assert_eq!(*fresh, diff(None, &b));
        assert_eq!(shared.updates(None, &Resolution::Unknown).len(), 1);
    }
}
