//! `destination-scale`: an in-process scale measurement of the destination service: one
//! Service with many endpoints, many gRPC watchers over 127.0.0.1, and the time each change
//! takes to reach every watcher. The Kubernetes watch layer is not involved (the index is
//! driven directly), so this measures the index + gRPC fan-out only; `control-plane` measures
//! the same through the real API server.

use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::StreamExt;
use tulle_api::destination::{
    GetDestination, destination_client::DestinationClient, update::Update as U,
};
use tulle_controller::{
    core::{Index, Naming, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo},
    grpc::{DestinationService, GrpcMetrics},
    runtime::incoming,
};

/// What to measure.
#[derive(Clone, Debug)]
pub struct ScaleOptions {
    /// Endpoints behind the Service.
    pub endpoints: usize,
    /// Concurrent Get streams.
    pub watchers: usize,
    /// Changes to time.
    pub changes: usize,
}

/// The figures.
#[derive(Clone, Debug)]
pub struct ScaleReport {
    /// Median latency from a change to a watcher seeing it.
    pub p50: Duration,
    /// 99th percentile of the same.
    pub p99: Duration,
    /// Worst case: the last watcher of the slowest change.
    pub max: Duration,
    /// Resident set size of this process at the end, in KiB (all watchers are in-process too).
    pub rss_kib: u64,
}

impl std::fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "propagation to all watchers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; process RSS {} MiB",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3,
            self.rss_kib / 1024
        )
    }
}

fn ip(i: usize) -> std::net::IpAddr {
    std::net::Ipv4Addr::new(10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8).into()
}

/// Runs the measurement; errors are described as strings (this is a tool, not a library API).
pub async fn measure(opts: ScaleOptions) -> Result<ScaleReport, String> {
    let ix = Arc::new(Index::new(Naming {
        cluster_domain: "cluster.local".into(),
        trust_domain: "cluster.local".into(),
    }));
    ix.apply_service(
        "bench",
        "web",
        ServiceInfo {
            cluster_ips: vec!["10.96.0.10".parse().map_err(|e| format!("{e}"))?],
            ports: vec![ServicePort {
                name: String::new(),
                port: 80,
                opaque: false,
            }],
        },
    );
    let per_slice = 100;
    let slice = |k: usize, skip: Option<usize>| SliceInfo {
        service: "web".into(),
        ports: vec![(String::new(), 8080)],
        endpoints: (k * per_slice..((k + 1) * per_slice).min(opts.endpoints))
            .filter(|i| Some(*i) != skip)
            .map(|i| SliceEndpoint {
                addrs: vec![ip(i)],
                ready: true,
                pod: Some(format!("web-{i}")),
            })
            .collect(),
    };
    for i in 0..opts.endpoints {
        ix.apply_pod(
            "bench",
            &format!("web-{i}"),
            PodInfo {
                ips: vec![ip(i)],
                service_account: "web".into(),
                meshed: true,
                owner: None,
            },
        );
    }
    for k in 0..opts.endpoints.div_ceil(per_slice) {
        ix.apply_slice("bench", &format!("web-{k}"), slice(k, None));
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DestinationService::new(ix.clone(), GrpcMetrics::default()).into_server())
            .serve_with_incoming(incoming(listener)),
    );

    // The endpoint that is toggled: removed on even changes, re-added on odd ones.
    let marker = SocketAddr::new(ip(0), 8080);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let channels: Vec<_> = (0..opts.watchers.div_ceil(50).max(1))
        .map(|_| tulle_api::tls::plaintext_channel(&addr.to_string()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for w in 0..opts.watchers {
        let mut client = DestinationClient::new(channels[w % channels.len()].clone());
        let (seen_tx, ready_tx) = (seen_tx.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let req = GetDestination {
                scheme: "k8s".into(),
                path: "web.bench.svc.cluster.local:80".into(),
                context_token: String::new(),
            };
            let Ok(rsp) = client.get(req).await else {
                return;
            };
            let mut s = rsp.into_inner();
            let mut change = 0usize;
            let mut first = true;
            while let Some(Ok(u)) = s.next().await {
                if first {
                    first = false;
                    let _ = ready_tx.send(());
                    continue;
                }
                let hit = match u.update {
                    Some(U::Remove(set)) => set
                        .addrs
                        .iter()
                        .any(|a| SocketAddr::try_from(a).ok() == Some(marker)),
                    Some(U::Add(set)) => set.addrs.iter().any(|a| {
                        a.addr.as_ref().and_then(|a| SocketAddr::try_from(a).ok()) == Some(marker)
                    }),
                    _ => false,
                };
                if hit {
                    let _ = seen_tx.send((change, Instant::now()));
                    change += 1;
                }
            }
        });
    }
    for _ in 0..opts.watchers {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .map_err(|_| {
                "watchers did not all receive their first update within 60 s".to_string()
            })?;
    }

    let mut lat = Vec::with_capacity(opts.watchers * opts.changes);
    let mut max = Duration::ZERO;
    for c in 0..opts.changes {
        let t0 = Instant::now();
        ix.apply_slice("bench", "web-0", slice(0, (c % 2 == 0).then_some(0)));
        for _ in 0..opts.watchers {
            let (id, at) = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
                .await
                .map_err(|_| format!("change {c} did not reach every watcher within 30 s"))?
                .ok_or("watchers ended")?;
            if id != c {
                return Err(format!("watcher saw change {id} while {c} was expected"));
            }
            let d = at - t0;
            max = max.max(d);
            lat.push(d);
        }
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    Ok(ScaleReport {
        p50: pct(0.5),
        p99: pct(0.99),
        max,
        rss_kib: rss_kib(),
    })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `tulle-bench destination-scale` and prints the figures.
pub fn run(args: &crate::cli::DestinationScaleArgs) -> anyhow::Result<()> {
    let opts = ScaleOptions {
        endpoints: args.endpoints,
        watchers: args.watchers,
        changes: args.changes,
    };
    println!("{opts:?}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(measure(opts)).map_err(anyhow::Error::msg)?;
    println!("{report}");
    Ok(())
}
