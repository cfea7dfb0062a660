//! The golden-metrics questions over a store filled with the text prometheus-client writes,
//! with the proxy's families, label names and latency buckets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as PFamily;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{PodKey, Store, StoreConfig};
use crate::golden::{self, Filter, Kind, ResourceRef};

type L = Vec<(String, String)>;

const BUCKETS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

/// The metric families of one tulle-proxy, registered as proxy/src/metrics.rs does.
struct Proxy {
    registry: Registry,
    requests: PFamily<L, Counter>,
    responses: PFamily<L, Counter>,
    latency: PFamily<L, Histogram, fn() -> Histogram>,
    tcp_open: PFamily<L, Gauge>,
    tcp_read: PFamily<L, Counter>,
    /// `inbound_{http,tcp}_authz_{deny,allow}`, indexed [tcp][allowed].
    authz: [[PFamily<L, Counter>; 2]; 2],
}

impl Proxy {
    fn new() -> Self {
        let mut registry = Registry::default();
        let p = Proxy {
            registry: Registry::default(),
            requests: PFamily::default(),
            responses: PFamily::default(),
            latency: PFamily::new_with_constructor(histogram),
            tcp_open: PFamily::default(),
            tcp_read: PFamily::default(),
            authz: Default::default(),
        };
        registry.register("request", "HTTP requests", p.requests.clone());
        registry.register("response", "HTTP responses", p.responses.clone());
        registry.register("response_latency_ms", "Latency", p.latency.clone());
        registry.register(
            "tcp_open_connections",
            "TCP connections open",
            p.tcp_open.clone(),
        );
        registry.register("tcp_read_bytes", "Bytes read", p.tcp_read.clone());
        for (tcp, what) in [(0, "http"), (1, "tcp")] {
            for (allowed, verdict) in [(0, "deny"), (1, "allow")] {
                registry.register(
                    format!("inbound_{what}_authz_{verdict}"),
                    "Decisions",
                    p.authz[tcp][allowed].clone(),
                );
            }
        }
        let start = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        start.set(1_800_000_000.5);
        registry.register("process_start_time_seconds", "Start time", start);
        Proxy { registry, ..p }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        encode(&mut s, &self.registry).unwrap();
        s
    }

    fn record(&self, labels: &L, status: u16, latency_ms: f64) {
        self.requests.get_or_create(labels).inc();
        self.latency.get_or_create(labels).observe(latency_ms);
        let mut l = labels.clone();
        l.push(("status_code".into(), status.to_string()));
        let class = if status >= 500 { "failure" } else { "success" };
        l.push(("classification".into(), class.into()));
        self.responses.get_or_create(&l).inc();
    }

    /// One authorization decision, labelled as proxy/src/svc/authorize.rs does.
    fn decide(&self, tcp: bool, allowed: bool, authz: &str, client: &str) {
        let mut labels = l(&[("target_port", "8080"), ("authz", authz)]);
        if !tcp {
            labels.push(("route".into(), String::new()));
        }
        labels.push(("client_id".into(), client.into()));
        self.authz[usize::from(tcp)][usize::from(allowed)]
            .get_or_create(&labels)
            .inc();
    }

    fn connect(&self, mut labels: L, peer: &str) {
        labels.push(("peer".into(), peer.into()));
        self.tcp_open.get_or_create(&labels).inc();
        self.tcp_read.get_or_create(&labels).inc_by(1234);
    }
}

fn id(sa: &str) -> String {
    format!("{sa}.shop.serviceaccount.identity.tulle.cluster.local")
}

fn l(pairs: &[(&str, &str)]) -> L {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A meshed pod: its proxy and the labels the scraper adds.
struct Pod {
    name: &'static str,
    deployment: &'static str,
    ip: &'static str,
    proxy: Proxy,
}

impl Pod {
    fn new(name: &'static str, deployment: &'static str, ip: &'static str) -> Self {
        Pod {
            name,
            deployment,
            ip,
            proxy: Proxy::new(),
        }
    }

    fn outbound(&self, to: &Pod) -> L {
        let server = id(to.deployment);
        l(&[
            ("direction", "outbound"),
            ("authority", "api.shop.svc.cluster.local:80"),
            ("target_addr", &format!("{}:8080", to.ip)),
            ("tls", "true"),
            ("server_id", &server),
            ("dst_namespace", "shop"),
            ("dst_pod", to.name),
            ("dst_serviceaccount", to.deployment),
            ("dst_deployment", to.deployment),
            ("dst_service", to.deployment),
        ])
    }

    fn inbound(&self, from: &Pod) -> L {
        let client = id(from.deployment);
        l(&[
            ("direction", "inbound"),
            ("target_addr", &format!("{}:8080", self.ip)),
            ("tls", "true"),
            ("client_id", &client),
        ])
    }

    fn scrape(&self, store: &Store, at: SystemTime) {
        let labels = l(&[
            ("namespace", "shop"),
            ("pod", self.name),
            ("deployment", self.deployment),
        ]);
        store
            .ingest(
                PodKey::new("shop", self.name),
                labels,
                at,
                &self.proxy.text(),
            )
            .unwrap();
    }
}

/// `n` requests from `client` to `server`, seen by both proxies.
fn requests(client: &Pod, server: &Pod, n: usize, status: u16, latency_ms: f64) {
    for _ in 0..n {
        client
            .proxy
            .record(&client.outbound(server), status, latency_ms);
        server
            .proxy
            .record(&server.inbound(client), status, latency_ms);
    }
}

fn connect(client: &Pod, server: &Pod) {
    client.proxy.connect(client.outbound(server), "dst");
    server.proxy.connect(server.inbound(client), "src");
}

fn res(kind: Kind, name: &str) -> ResourceRef {
    ResourceRef {
        kind,
        namespace: "shop".into(),
        name: name.into(),
    }
}

#[test]
fn stat_edges_and_backends_over_scraped_proxy_text() {
    let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
    let web1 = Pod::new("web-1", "web", "10.0.0.1");
    let web2 = Pod::new("web-2", "web", "10.0.0.2");
    let v1 = Pod::new("api-v1-1", "api-v1", "10.0.1.1");
    let v2 = Pod::new("api-v2-1", "api-v2", "10.0.1.2");
    let pods = [&web1, &web2, &v1, &v2];
    let store = Store::new(StoreConfig::default());

    // Traffic before the first scrape is not counted (the baseline).
    connect(&web1, &v1);
    requests(&web1, &v1, 1000, 200, 3.0);
    pods.iter().for_each(|p| p.scrape(&store, t(0)));

    requests(&web1, &v1, 30, 200, 15.0);
    requests(&web1, &v1, 2, 500, 15.0);
    connect(&web2, &v2);
    requests(&web2, &v2, 10, 200, 250.0);
    pods.iter().for_each(|p| p.scrape(&store, t(10)));

    // web-2's first requests to v1: new series in both proxies, all counted.
    connect(&web2, &v1);
    requests(&web1, &v1, 20, 201, 12.0);
    requests(&web2, &v1, 5, 503, 18.0);
    pods.iter().for_each(|p| p.scrape(&store, t(20)));

    let at = store.at(t(20));
    let window = Duration::from_secs(30);
    let filter = Filter {
        kind: Kind::Deployment,
        namespace: Some("shop".into()),
        name: None,
    };

    let stat = futures::executor::block_on(golden::stat(&at, &filter, window)).unwrap();
    assert_eq!(
        stat.keys().cloned().collect::<Vec<_>>(),
        [
            res(Kind::Deployment, "api-v1"),
            res(Kind::Deployment, "api-v2")
        ]
    );
    let g1 = stat[&res(Kind::Deployment, "api-v1")];
    assert_eq!((g1.success, g1.failure, g1.tcp_open), (50.0, 7.0, 2.0));
    let p50 = g1.latency.p50.unwrap();
    assert!((10.0..=20.0).contains(&p50), "{p50}");
    let g2 = stat[&res(Kind::Deployment, "api-v2")];
    assert_eq!((g2.success, g2.failure, g2.tcp_open), (10.0, 0.0, 1.0));
    assert!((200.0..=300.0).contains(&g2.latency.p99.unwrap()));

    let pods_stat = futures::executor::block_on(golden::stat(
        &at,
        &Filter {
            kind: Kind::Pod,
            ..filter.clone()
        },
        window,
    ))
    .unwrap();
    assert_eq!(pods_stat[&res(Kind::Pod, "api-v1-1")].success, 50.0);

    let edges = futures::executor::block_on(golden::edges(&at, &filter, window)).unwrap();
    assert_eq!(edges.len(), 2, "{edges:?}");
    let e1 = edges.iter().find(|e| e.dst.name == "api-v1").unwrap();
    assert_eq!(e1.src, res(Kind::Deployment, "web"));
    assert_eq!(e1.server_id.as_deref(), Some(id("api-v1").as_str()));
    assert!(e1.secured);
    assert_eq!(
        (e1.golden.success, e1.golden.failure, e1.golden.tcp_open),
        (50.0, 7.0, 2.0)
    );
    let e2 = edges.iter().find(|e| e.dst.name == "api-v2").unwrap();
    assert_eq!((e2.golden.success, e2.golden.failure), (10.0, 0.0));

    let services = ["api-v1".to_string(), "api-v2".into(), "api-v3".into()];
    let b = futures::executor::block_on(golden::backends(&at, "shop", &services, window)).unwrap();
    assert_eq!((b["api-v1"].success, b["api-v1"].failure), (50.0, 7.0));
    assert_eq!((b["api-v2"].success, b["api-v2"].tcp_open), (10.0, 1.0));
    assert_eq!(b["api-v3"], golden::Golden::default());

    // Only the first window: web-2 had not yet talked to v1.
    let first = futures::executor::block_on(golden::backends(
        &store.at(t(10)),
        "shop",
        &services,
        Duration::from_secs(10),
    ))
    .unwrap();
    assert_eq!(
        (first["api-v1"].success, first["api-v1"].failure),
        (30.0, 2.0)
    );
}

#[test]
fn authz_counts_admissions_per_traffic_target_and_denials_per_pod() {
    let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
    let v1 = Pod::new("api-v1-1", "api-v1", "10.0.1.1");
    let v2 = Pod::new("api-v2-1", "api-v2", "10.0.1.2");
    let store = Store::new(StoreConfig::default());
    v1.proxy.decide(false, true, "shop/web-to-api", &id("web"));
    [&v1, &v2].iter().for_each(|p| p.scrape(&store, t(0)));
    let series = store.series_count();

    for i in 0..7 {
        // Each client its own identity: the series do not multiply (only `authz` is kept).
        v1.proxy
            .decide(false, true, "shop/web-to-api", &id(&format!("web{i}")));
    }
    v1.proxy.decide(true, true, "shop/web-to-api", &id("web"));
    v2.proxy.decide(true, true, "shop/db-to-api", &id("db"));
    for i in 0..3 {
        v1.proxy
            .decide(false, false, "targeted", &id(&format!("evil{i}")));
    }
    v1.proxy.decide(true, false, "targeted", "");
    v2.proxy.decide(false, false, "default:deny", "");
    v2.proxy.decide(false, true, "probe", "");
    [&v1, &v2].iter().for_each(|p| p.scrape(&store, t(10)));
    // v1: http allow (1 series, there before), tcp allow, http deny, tcp deny; v2: tcp
    // allow, http deny, http allow.
    assert_eq!(store.series_count() - series, 6);

    let window = Duration::from_secs(30);
    let a =
        futures::executor::block_on(golden::authz(&store.at(t(10)), Some("shop"), window)).unwrap();
    assert_eq!(a.allowed["shop/web-to-api"], 8.0);
    assert_eq!(a.allowed["shop/db-to-api"], 1.0);
    assert_eq!(a.allowed["probe"], 1.0);
    assert_eq!(a.denied.len(), 1, "{a:?}");
    assert_eq!(a.denied[&("shop".to_string(), "api-v1-1".to_string())], 4.0);
    let none = futures::executor::block_on(golden::authz(&store.at(t(10)), Some("other"), window))
        .unwrap();
    assert_eq!(none, golden::AuthzCounts::default());
}
