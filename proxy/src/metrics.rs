//! Prometheus metrics with Linkerd's names and labels.
//!
//! Label sets are built once per connection or per (route, endpoint) and the resulting
//! metric handles are cached in [`HttpMetrics`] / [`TcpMetrics`], so the request path never
//! formats labels.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label set.
pub type Labels = Vec<(Cow<'static, str>, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Linkerd's latency buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS.iter().copied())
}

/// TLS status of a connection, as the `tls` label and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsStatus {
    /// Mesh mTLS; the peer's identity (client_id inbound, server_id outbound).
    Mesh(String),
    /// No mesh TLS, with a reason (`no_tls_reason`).
    NoIdentity(&'static str),
}

/// Direction of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Builds a label set.
pub fn labels(
    direction: Direction,
    authority: Option<&str>,
    target_addr: &str,
    tls: &TlsStatus,
    dst: Option<&BTreeMap<String, String>>,
) -> Labels {
    let mut l: Labels = Vec::with_capacity(6 + dst.map_or(0, |d| d.len()));
    l.push(("direction".into(), direction.as_str().into()));
    if let Some(a) = authority {
        l.push(("authority".into(), a.into()));
    }
    l.push(("target_addr".into(), target_addr.into()));
    match tls {
        TlsStatus::Mesh(id) => {
            l.push(("tls".into(), "true".into()));
            let key = if direction == Direction::Inbound {
                "client_id"
            } else {
                "server_id"
            };
            l.push((key.into(), id.clone()));
        }
        TlsStatus::NoIdentity(reason) => {
            l.push(("tls".into(), "no_identity".into()));
            l.push(("no_tls_reason".into(), (*reason).into()));
        }
    }
    for (k, v) in dst.into_iter().flatten() {
        let k: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        l.push((format!("dst_{k}").into(), v.clone()));
    }
    l
}

/// All metric families of the proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    request_total: Family<Labels, Counter>,
    response_total: Family<Labels, Counter>,
    response_latency_ms: HistogramFamily,
    tcp_open_total: Family<Labels, Counter>,
    tcp_open_connections: Family<Labels, Gauge>,
    tcp_read_bytes_total: Family<Labels, Counter>,
    tcp_write_bytes_total: Family<Labels, Counter>,
    tcp_close_total: Family<Labels, Counter>,
    /// Connections a listener reset at once: its connection limit was reached.
    connections_refused_total: Family<Labels, Counter>,
    /// `inbound_{http,tcp}_authz_{allow,deny}_total`, indexed by [`AuthzKind`] and allowed.
    authz: [[Family<Labels, Counter>; 2]; 2],
    process: Process,
    /// Distinct TCP label sets created so far (bounded by [`MAX_TCP_SERIES`]).
    tcp_series: Mutex<std::collections::HashSet<u64>>,
    /// Inbound target ports with a label of their own (bounded by [`MAX_TARGET_PORTS`]).
    target_ports: Mutex<std::collections::HashSet<u16>>,
}

/// At most this many distinct inbound target ports (the application's ports, from the
/// original destination or the mesh's `tulle-orig-port`) get a label of their own, in
/// `target_addr` and `target_port`; later ones are all `other`. A pod serves a handful of
/// ports, so a port scan (10,000 ports) makes one more series, not 10,000.
pub const MAX_TARGET_PORTS: usize = 100;

/// The label value of a port past [`MAX_TARGET_PORTS`].
pub const OTHER_PORT: &str = "other";

/// At most this many distinct TCP label sets: past it, new connections are counted under
/// `target_addr="overflow"`, so a port scan cannot grow the proxy's memory without bound.
pub const MAX_TCP_SERIES: usize = 1_000;

/// What an authorization decision was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzKind {
    Http = 0,
    Tcp = 1,
}

#[derive(Debug, Default)]
struct Process {
    cpu_seconds: Counter<f64, AtomicU64>,
    cpu_last: Mutex<f64>,
    rss_bytes: Gauge,
    virtual_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge<f64, AtomicU64>,
    threads: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let request_total = Family::<Labels, Counter>::default();
        let response_total = Family::<Labels, Counter>::default();
        let response_latency_ms: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let tcp_open_total = Family::<Labels, Counter>::default();
        let tcp_open_connections = Family::<Labels, Gauge>::default();
        let tcp_read_bytes_total = Family::<Labels, Counter>::default();
        let tcp_write_bytes_total = Family::<Labels, Counter>::default();
        let tcp_close_total = Family::<Labels, Counter>::default();
        registry.register("request", "HTTP requests", request_total.clone());
        registry.register("response", "HTTP responses", response_total.clone());
        registry.register(
            "response_latency_ms",
            "Time from request to response headers, in milliseconds",
            response_latency_ms.clone(),
        );
        registry.register("tcp_open", "TCP connections opened", tcp_open_total.clone());
        registry.register(
            "tcp_open_connections",
            "TCP connections open",
            tcp_open_connections.clone(),
        );
        registry.register(
            "tcp_read_bytes",
            "Bytes read from the peer",
            tcp_read_bytes_total.clone(),
        );
        registry.register(
            "tcp_write_bytes",
            "Bytes written to the peer",
            tcp_write_bytes_total.clone(),
        );
        registry.register(
            "tcp_close",
            "TCP connections closed",
            tcp_close_total.clone(),
        );
        let connections_refused_total = Family::<Labels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections reset at once: the listener's connection limit was reached",
            connections_refused_total.clone(),
        );

        let authz: [[Family<Labels, Counter>; 2]; 2] = Default::default();
        for (kind, what) in [(AuthzKind::Http, "http"), (AuthzKind::Tcp, "tcp")] {
            for (allowed, verdict) in [(false, "deny"), (true, "allow")] {
                let unit = if kind == AuthzKind::Http {
                    "HTTP requests"
                } else {
                    "TCP connections"
                };
                registry.register(
                    format!("inbound_{what}_authz_{verdict}"),
                    format!("Inbound {unit} the policy {verdict}s"),
                    authz[kind as usize][usize::from(allowed)].clone(),
                );
            }
        }

        let process = Process::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time used",
            process.cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory",
            process.rss_bytes.clone(),
        );
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory",
            process.virtual_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            process.open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "File descriptor limit",
            process.max_fds.clone(),
        );
        registry.register("process_threads", "OS threads", process.threads.clone());
        registry.register(
            "process_start_time_seconds",
            "Start time since the Unix epoch",
            process.start_time.clone(),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        process
            .start_time
            .set(now.as_secs_f64() - process_age().as_secs_f64());
        let build = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("profile", build_profile()),
            ])
            .set(1);
        registry.register("proxy_build_info", "Proxy build information", build);

        Metrics {
            registry,
            request_total,
            response_total,
            response_latency_ms,
            tcp_open_total,
            tcp_open_connections,
            tcp_read_bytes_total,
            tcp_write_bytes_total,
            tcp_close_total,
            connections_refused_total,
            authz,
            process,
            tcp_series: Mutex::default(),
            target_ports: Mutex::default(),
        }
    }

    /// `Some(port)` if the inbound target `port` keeps a label of its own, `None` if it is
    /// counted as [`OTHER_PORT`] (past [`MAX_TARGET_PORTS`] distinct ports).
    pub fn target_port(&self, port: u16) -> Option<u16> {
        let mut seen = self.target_ports.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&port) || seen.len() < MAX_TARGET_PORTS {
            seen.insert(port);
            Some(port)
        } else {
            None
        }
    }

    /// The `target_port` label of an inbound target port ([`Metrics::target_port`]).
    pub fn target_port_label(&self, port: u16) -> String {
        match self.target_port(port) {
            Some(p) => p.to_string(),
            None => OTHER_PORT.to_string(),
        }
    }

    /// The `target_addr` label of an inbound target address: `ip:port`, or `ip:other` past
    /// [`MAX_TARGET_PORTS`] ([`Metrics::target_port`]).
    pub fn target_addr_label(&self, addr: std::net::SocketAddr) -> String {
        match self.target_port(addr.port()) {
            Some(_) => addr.to_string(),
            None => other_port_addr(addr.ip()),
        }
    }

    /// The counter of connections the `direction` listener refused (its limit reached).
    pub fn connections_refused(&self, direction: Direction) -> Counter {
        self.connections_refused_total
            .get_or_create_owned(&vec![("direction".into(), direction.as_str().into())])
    }

    /// The counter of connections the admin listener refused (`direction="admin"`).
    pub fn admin_connections_refused(&self) -> Counter {
        self.connections_refused_total
            .get_or_create_owned(&vec![("direction".into(), "admin".into())])
    }

    /// Cached HTTP metric handles for one label set.
    pub fn http(&self, labels: Labels) -> HttpMetrics {
        HttpMetrics {
            request_total: self.request_total.get_or_create_owned(&labels),
            latency: self.response_latency_ms.get_or_create_owned(&labels),
            responses: Mutex::new(Vec::new()),
            family: self.response_total.clone(),
            labels,
        }
    }

    /// Cached TCP metric handles for one label set (a `peer` label is added: `src` for
    /// accepted connections, `dst` for connections the proxy opened).
    pub fn tcp(&self, mut labels: Labels, peer: &'static str) -> TcpMetrics {
        labels.push(("peer".into(), peer.into()));
        self.bound_tcp_series(&mut labels);
        TcpMetrics {
            open_total: self.tcp_open_total.get_or_create_owned(&labels),
            open: self.tcp_open_connections.get_or_create_owned(&labels),
            read: self.tcp_read_bytes_total.get_or_create_owned(&labels),
            write: self.tcp_write_bytes_total.get_or_create_owned(&labels),
            close: self.tcp_close_total.get_or_create_owned(&labels),
        }
    }

    /// Past [`MAX_TCP_SERIES`] distinct label sets, a new one is folded into
    /// `target_addr="overflow"`.
    fn bound_tcp_series(&self, labels: &mut Labels) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        labels.hash(&mut h);
        let key = h.finish();
        let mut seen = self.tcp_series.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&key) || seen.len() < MAX_TCP_SERIES {
            seen.insert(key);
            return;
        }
        for (k, v) in labels.iter_mut() {
            if k == "target_addr" {
                *v = "overflow".into();
            }
        }
    }

    /// The counter of inbound authorization decisions of one kind and verdict for one label
    /// set (`target_port`, `authz`, `route`, `client_id`).
    pub fn authz(&self, kind: AuthzKind, allowed: bool, labels: &Labels) -> Counter {
        self.authz[kind as usize][usize::from(allowed)].get_or_create_owned(labels)
    }

    /// Prometheus text format of all metrics.
    pub fn encode(&self) -> String {
        self.process.refresh();
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }
}

/// `ip:other`: the `target_addr` of a port past [`MAX_TARGET_PORTS`].
pub fn other_port_addr(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(ip) => format!("{ip}:{OTHER_PORT}"),
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{OTHER_PORT}"),
    }
}

fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn process_age() -> Duration {
    // Field 22 of /proc/self/stat is the start time in clock ticks since boot.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let ticks = clock_ticks();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let start: f64 = fields.get(19).and_then(|v| v.parse().ok()).unwrap_or(0.0) / ticks;
    let up: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Duration::from_secs_f64((up - start).max(0.0))
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

impl Process {
    fn refresh(&self) {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // After the command: state(0) ... utime(11) stime(12) ... num_threads(17) ... vsize(20) rss(21).
        let cpu = (num(11) + num(12)) / clock_ticks();
        let mut last = self.cpu_last.lock().unwrap_or_else(|e| e.into_inner());
        if cpu > *last {
            self.cpu_seconds.inc_by(cpu - *last);
            *last = cpu;
        }
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096);
        self.threads.set(num(17) as i64);
        self.virtual_bytes.set(num(20) as i64);
        self.rss_bytes.set(num(21) as i64 * page);
        self.open_fds.set(
            std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count() as i64)
                .unwrap_or(0),
        );
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        if let Some(soft) = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<i64>().ok())
        {
            self.max_fds.set(soft);
        }
    }
}

/// HTTP metric handles of one label set.
#[derive(Debug)]
pub struct HttpMetrics {
    request_total: Counter,
    latency: Histogram,
    responses: Mutex<Vec<(u16, bool, Counter)>>,
    family: Family<Labels, Counter>,
    labels: Labels,
}

impl HttpMetrics {
    pub fn request(&self) {
        self.request_total.inc();
    }

    /// Records the time to response headers.
    pub fn latency(&self, latency: Duration) {
        self.latency.observe(latency.as_secs_f64() * 1000.0);
    }

    /// Counts a response; `failure` is the classification (5xx, gRPC error, or proxy error).
    pub fn count(&self, status: u16, failure: bool) {
        let mut cache = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = cache.iter().find(|(s, f, _)| *s == status && *f == failure) {
            c.inc();
            return;
        }
        let mut l = self.labels.clone();
        l.push(("status_code".into(), status.to_string()));
        l.push((
            "classification".into(),
            if failure { "failure" } else { "success" }.into(),
        ));
        let c = self.family.get_or_create_owned(&l);
        c.inc();
        cache.push((status, failure, c));
    }
}

/// TCP metric handles of one label set; [`TcpMetrics::open`] returns a guard that counts
/// the close when dropped.
#[derive(Debug, Clone)]
pub struct TcpMetrics {
    open_total: Counter,
    open: Gauge,
    pub read: Counter,
    pub write: Counter,
    close: Counter,
}

impl TcpMetrics {
    pub fn open(&self) -> TcpGuard {
        self.open_total.inc();
        self.open.inc();
        TcpGuard(self.clone())
    }
}

/// Counts a connection as closed when dropped.
#[derive(Debug)]
pub struct TcpGuard(pub TcpMetrics);

impl Drop for TcpGuard {
    fn drop(&mut self) {
        self.0.open.dec();
        self.0.close.inc();
    }
}

/// Adds `n` bytes to a byte counter.
pub fn add(counter: &Counter, n: usize) {
    if n > 0 {
        counter.inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scan of 10,000 ports keeps [`MAX_TARGET_PORTS`] labels, plus `other`; ports seen
    /// before keep theirs.
    #[test]
    fn target_ports_are_bounded() {
        let m = Metrics::default();
        let mut labels = std::collections::HashSet::new();
        for port in 1..=10_000u16 {
            labels.insert(m.target_addr_label(([10, 0, 0, 1], port).into()));
            labels.insert(m.target_port_label(port));
        }
        // ip:port and port for the first ones, and "10.0.0.1:other", "other".
        assert_eq!(labels.len(), 2 * MAX_TARGET_PORTS + 2);
        assert!(labels.contains("10.0.0.1:other") && labels.contains("other"));
        assert_eq!(m.target_port_label(1), "1");
        assert_eq!(
            m.target_addr_label("[::1]:60000".parse().unwrap()),
            "[::1]:other"
        );
    }

    #[test]
    fn tcp_series_are_bounded() {
        let m = Metrics::default();
        let label = |port: u32| -> Labels {
            vec![
                ("direction".into(), "inbound".into()),
                ("target_addr".into(), format!("10.0.0.1:{port}")),
            ]
        };
        for port in 0..(MAX_TCP_SERIES as u32 + 500) {
            m.tcp(label(port), "src").open_total.inc();
        }
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("tcp_open_total{"))
            .count();
        assert_eq!(
            series,
            MAX_TCP_SERIES + 1,
            "the first ones plus one overflow series"
        );
        assert!(text.contains("target_addr=\"overflow\""));
        // A label set seen before the cap keeps its own series.
        m.tcp(label(0), "src").open_total.inc();
        assert!(
            m.encode()
                .contains("target_addr=\"10.0.0.1:0\",peer=\"src\"} 2")
        );
    }
}
