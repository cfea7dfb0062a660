//! The simulated pods: what each one's proxy has counted, and the `/metrics` text it serves
//! (prometheus-client's format, the families and labels of proxy/src/metrics.rs).

use std::fmt::Write as _;

use tulle_metrics::store::PodKey;

use super::{DEPLOYMENTS, NS};

/// The proxy's latency bucket bounds, as prometheus-client writes them.
const BOUNDS: [&str; 26] = [
    "1.0", "2.0", "3.0", "4.0", "5.0", "10.0", "20.0", "30.0", "40.0", "50.0", "100.0", "200.0",
    "300.0", "400.0", "500.0", "1000.0", "2000.0", "3000.0", "4000.0", "5000.0", "10000.0",
    "20000.0", "30000.0", "40000.0", "50000.0", "+Inf",
];

/// A tiny deterministic generator (xorshift64*).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One flow of a pod's proxy: a label set and its counters.
pub(super) struct Flow {
    labels: String,
    rate: f64,
    median: usize,
    ok200: u64,
    ok204: u64,
    fail: u64,
    buckets: [u64; 26],
    sum_ms: f64,
    open: u64,
    opened: u64,
    bytes: u64,
}

impl Flow {
    fn new(labels: String, rng: &mut Rng, median: usize) -> Self {
        Flow {
            labels,
            rate: 2.0 + 18.0 * rng.unit(),
            median,
            ok200: 0,
            ok204: 0,
            fail: 0,
            buckets: [0; 26],
            sum_ms: 0.0,
            open: 1,
            opened: 1,
            bytes: 0,
        }
    }

    /// Ten seconds of traffic.
    pub(super) fn step(&mut self, rng: &mut Rng) {
        let n = (self.rate * 10.0 * (0.8 + 0.4 * rng.unit())) as u64;
        let fail = n / 100 + u64::from(rng.unit() < (n % 100) as f64 / 100.0);
        let ok204 = n / 10;
        self.fail += fail;
        self.ok204 += ok204;
        self.ok200 += n - fail - ok204;
        // Around the median bucket: 30 % below it, 45 % in it, 20 % and 5 % above.
        let mut left = n;
        for (b, share) in [
            (self.median - 1, 0.3),
            (self.median, 0.45),
            (self.median + 1, 0.2),
        ] {
            let k = ((n as f64 * share * (0.9 + 0.2 * rng.unit())) as u64).min(left);
            self.buckets[b] += k;
            left -= k;
        }
        self.buckets[(self.median + 2).min(24)] += left;
        self.sum_ms += n as f64 * (3.0 * self.median as f64);
        if rng.unit() < 0.1 {
            self.open = 1 + rng.next() % 4;
            self.opened += 1;
        }
        self.bytes += n * 512;
    }

    pub(super) fn restart(&mut self) {
        (self.ok200, self.ok204, self.fail, self.sum_ms) = (0, 0, 0, 0.0);
        self.buckets = [0; 26];
        (self.opened, self.bytes) = (self.open, 0);
    }
}

/// A simulated pod: its scraper labels and its proxy's flows.
pub(super) struct SimPod {
    pub(super) key: PodKey,
    pub(super) labels: Vec<(String, String)>,
    pub(super) inbound: Vec<Flow>,
    pub(super) outbound: Vec<Flow>,
    pub(super) start_time: f64,
}

fn identity(d: usize) -> String {
    format!("deploy-{d:03}.{NS}.serviceaccount.identity.tulle.cluster.local")
}

fn pod_name(d: usize, r: usize) -> String {
    format!("deploy-{d:03}-7d4b9c{d:03}-{r}x2k")
}

fn ip(d: usize, r: usize) -> String {
    format!("10.1.{}.{}", d, 10 + r)
}

impl SimPod {
    pub(super) fn new(i: usize, rng: &mut Rng) -> Self {
        let (d, r) = (i % DEPLOYMENTS, i / DEPLOYMENTS);
        let name = pod_name(d, r);
        let median = 5 + d % 6;
        let inbound = [1, 2]
            .iter()
            .map(|k| {
                let l = format!(
                    "direction=\"inbound\",target_addr=\"{}:8080\",tls=\"true\",client_id=\"{}\"",
                    ip(d, r),
                    identity((d + k) % DEPLOYMENTS)
                );
                Flow::new(l, rng, median)
            })
            .collect();
        let outbound = [(1, 0), (1, 1), (2, 0)]
            .iter()
            .map(|&(k, dr)| {
                let dd = (d + DEPLOYMENTS - k) % DEPLOYMENTS;
                let l = format!(
                    "direction=\"outbound\",authority=\"deploy-{dd:03}.{NS}.svc.cluster.local:80\",target_addr=\"{}:8080\",tls=\"true\",server_id=\"{}\",dst_deployment=\"deploy-{dd:03}\",dst_namespace=\"{NS}\",dst_pod=\"{}\",dst_service=\"deploy-{dd:03}\",dst_serviceaccount=\"deploy-{dd:03}\"",
                    ip(dd, dr),
                    identity(dd),
                    pod_name(dd, dr)
                );
                Flow::new(l, rng, 5 + dd % 6)
            })
            .collect();
        let labels = vec![
            ("namespace".to_string(), NS.to_string()),
            ("pod".to_string(), name.clone()),
            ("deployment".to_string(), format!("deploy-{d:03}")),
        ];
        SimPod {
            key: PodKey::new(NS, name),
            labels,
            inbound,
            outbound,
            start_time: 1_764_000_000.0 + i as f64,
        }
    }

    fn flows(&self) -> impl Iterator<Item = (&Flow, &'static str)> {
        (self.inbound.iter().map(|f| (f, "src"))).chain(self.outbound.iter().map(|f| (f, "dst")))
    }

    /// The proxy's `/metrics` text, family by family as prometheus-client writes it.
    pub(super) fn text(&self, out: &mut String) {
        out.clear();
        let family = |out: &mut String, name: &str, kind: &str| {
            let _ = write!(out, "# HELP {name} {name}.\n# TYPE {name} {kind}\n");
        };
        family(out, "request", "counter");
        for (f, _) in self.flows() {
            let _ = writeln!(
                out,
                "request_total{{{}}} {}",
                f.labels,
                f.ok200 + f.ok204 + f.fail
            );
        }
        family(out, "response", "counter");
        for (f, _) in self.flows() {
            for (code, class, n) in [
                (200, "success", f.ok200),
                (204, "success", f.ok204),
                (500, "failure", f.fail),
            ] {
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "response_total{{{},status_code=\"{code}\",classification=\"{class}\"}} {n}",
                        f.labels
                    );
                }
            }
        }
        family(out, "response_latency_ms", "histogram");
        for (f, _) in self.flows() {
            let count: u64 = f.buckets.iter().sum();
            let _ = writeln!(
                out,
                "response_latency_ms_sum{{{}}} {:.1}",
                f.labels, f.sum_ms
            );
            let _ = writeln!(out, "response_latency_ms_count{{{}}} {count}", f.labels);
            let mut cumulative = 0;
            for (le, n) in BOUNDS.iter().zip(f.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "response_latency_ms_bucket{{le=\"{le}\",{}}} {cumulative}",
                    f.labels
                );
            }
        }
        for (name, kind) in [
            ("tcp_open", "counter"),
            ("tcp_open_connections", "gauge"),
            ("tcp_read_bytes", "counter"),
            ("tcp_write_bytes", "counter"),
            ("tcp_close", "counter"),
        ] {
            family(out, name, kind);
            let suffix = if kind == "counter" { "_total" } else { "" };
            for (f, peer) in self.flows() {
                let v = match name {
                    "tcp_open" => f.opened,
                    "tcp_open_connections" => f.open,
                    "tcp_close" => f.opened - f.open,
                    _ => f.bytes,
                };
                let _ = writeln!(out, "{name}{suffix}{{{},peer=\"{peer}\"}} {v}", f.labels);
            }
        }
        for (name, v) in [
            ("process_cpu_seconds_total", 12.5),
            ("process_resident_memory_bytes", 21_000_000.0),
            ("process_virtual_memory_bytes", 80_000_000.0),
            ("process_open_fds", 42.0),
            ("process_max_fds", 1_048_576.0),
            ("process_threads", 3.0),
        ] {
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {:.3}",
            self.start_time
        );
        let _ = writeln!(
            out,
            "# TYPE proxy_build_info gauge\nproxy_build_info{{version=\"0.1.0\",profile=\"release\"}} 1\n# EOF"
        );
    }
}

/// Successful responses each deployment's proxies counted inbound so far.
pub(super) fn inbound_success(pods: &[SimPod]) -> Vec<u64> {
    let mut out = vec![0; DEPLOYMENTS];
    for (i, p) in pods.iter().enumerate() {
        out[i % DEPLOYMENTS] += p.inbound.iter().map(|f| f.ok200 + f.ok204).sum::<u64>();
    }
    out
}
