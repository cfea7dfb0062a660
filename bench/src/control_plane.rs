//! `control-plane`: how fast an EndpointSlice change made through the real Kubernetes API
//! server reaches every proxy watching the Service through the real tulle-controller, and how
//! much memory the controller needs for it.
//!
//! Setup: a namespace with one selector-less Service and `--endpoints` synthetic endpoints in
//! EndpointSlices of 100; the release `tulle-controller` runs on this host against the local
//! cluster (`cluster/`, brought up when none answers, and taken down again afterwards), serving
//! plaintext gRPC on 127.0.0.1; `--watchers` Get streams (like proxies) watch the Service.
//! Each change toggles one endpoint of the first slice (server-side apply) and is timed from
//! the API request to its arrival at every watcher. Results go to `control-plane.json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tulle_api::destination::{
    GetDestination, destination_client::DestinationClient, update::Update as U,
};

use crate::cli::ControlPlaneArgs;
use crate::data_plane::{command_output, loadavg, machine};
use crate::procs::{Proc, free_port, rss_kb};
use crate::tools::{build_release, workspace_root};

const NS: &str = "tulle-bench-cp";
const PER_SLICE: usize = 100;

/// The figures of one run.
#[derive(Debug, serde::Serialize)]
struct Report {
    date: String,
    machine: String,
    loadavg_before: String,
    endpoints: usize,
    watchers: usize,
    changes: usize,
    propagation_p50_ms: f64,
    propagation_p99_ms: f64,
    propagation_max_ms: f64,
    controller_rss_kb_idle: u64,
    controller_rss_kb: u64,
    controller_rss_kb_peak: u64,
}

pub fn run(args: &ControlPlaneArgs) -> anyhow::Result<()> {
    let controller = build_release("tulle-controller")?;
    let root = workspace_root();
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/tulle-cluster/admin.kubeconfig"));
    let cluster = Cluster::ensure(&root, &kubeconfig)?;
    let rt = tokio::runtime::Runtime::new()?;
    let out = rt.block_on(measure(args, &controller, &kubeconfig));
    drop(cluster);
    let report = out?;
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| root.join("bench/results"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("control-plane.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    eprintln!("tulle-bench: wrote {}", path.display());
    println!(
        "control-plane: {} endpoints, {} watchers, {} changes through the API server: propagation to all watchers p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; controller RSS {} MiB idle, {} MiB with the watchers (peak {} MiB)",
        report.endpoints,
        report.watchers,
        report.changes,
        report.propagation_p50_ms,
        report.propagation_p99_ms,
        report.propagation_max_ms,
        report.controller_rss_kb_idle / 1024,
        report.controller_rss_kb / 1024,
        report.controller_rss_kb_peak / 1024,
    );
    Ok(())
}

/// The local cluster: used when it answers, otherwise brought up (and taken down on drop).
struct Cluster {
    root: PathBuf,
    owned: bool,
}

impl Cluster {
    fn ensure(root: &Path, kubeconfig: &Path) -> anyhow::Result<Cluster> {
        let up = kubeconfig.is_file()
            && Command::new("kubectl")
                .env("KUBECONFIG", kubeconfig)
                .args(["get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|o| o.status.success());
        if !up {
            eprintln!(
                "tulle-bench: no cluster answers at {}: cluster/up",
                kubeconfig.display()
            );
            let ok = Command::new(root.join("cluster/up")).status()?.success();
            if !ok {
                bail!("cluster/up failed; see its output above");
            }
        }
        Ok(Cluster {
            root: root.to_path_buf(),
            owned: !up,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new(self.root.join("cluster/down")).status();
        }
    }
}

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", 200 + (i >> 16), (i >> 8) & 255, i & 255)
}

fn slice(k: usize, endpoints: usize, without_first: bool) -> serde_json::Value {
    let eps: Vec<_> = (k * PER_SLICE..((k + 1) * PER_SLICE).min(endpoints))
        .filter(|i| !(without_first && *i == 0))
        .map(|i| json!({"addresses": [ip(i)], "conditions": {"ready": true}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("web-{k}"), "namespace": NS,
                     "labels": {"kubernetes.io/service-name": "web",
                                "endpointslice.kubernetes.io/managed-by": "tulle-bench"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    })
}

async fn setup(client: &kube::Client, endpoints: usize) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    if nss.get_opt(NS).await?.is_some() {
        eprintln!("tulle-bench: deleting the previous run's namespace {NS}");
        nss.delete(NS, &DeleteParams::foreground()).await?;
        while nss.get_opt(NS).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
    )
    .await?;
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }))?,
    )
    .await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    for k in 0..endpoints.div_ceil(PER_SLICE) {
        slices
            .create(
                &PostParams::default(),
                &serde_json::from_value(slice(k, endpoints, false))?,
            )
            .await
            .with_context(|| format!("creating EndpointSlice web-{k}"))?;
    }
    Ok(())
}

async fn measure(
    args: &ControlPlaneArgs,
    controller_bin: &Path,
    kubeconfig: &Path,
) -> anyhow::Result<Report> {
    let (endpoints, watchers) = (args.endpoints, args.watchers);
    let changes = args.changes.unwrap_or(if args.quick { 10 } else { 40 });
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &Default::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    eprintln!("tulle-bench: creating 1 Service with {endpoints} endpoints in {NS}");
    setup(&client, endpoints).await?;

    let tmp = tempfile::tempdir()?;
    let grpc = free_port()?;
    let admin = free_port()?;
    let mut cmd = Command::new(controller_bin);
    cmd.env("KUBECONFIG", kubeconfig)
        .env("TULLE_CONTROLLER_DESTINATION_ADDR", grpc.to_string())
        .env("TULLE_CONTROLLER_ADMIN_ADDR", admin.to_string())
        .env("RUST_LOG", "warn");
    let mut proc = Proc::spawn("tulle-controller", cmd, tmp.path())?;
    proc.wait_listening(grpc, Duration::from_secs(30))?;
    let pid = proc.pid();

    // Watchers, like proxies: one channel (HTTP/2 connection) per 50 streams.
    let marker: SocketAddr = format!("{}:8080", ip(0)).parse()?;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let channels: Vec<_> = (0..watchers.div_ceil(50).max(1))
        .map(|_| tulle_api::tls::plaintext_channel(&grpc.to_string()))
        .collect::<Result<_, _>>()?;
    let total = Arc::new(endpoints);
    for w in 0..watchers {
        let mut client = DestinationClient::new(channels[w % channels.len()].clone());
        let (seen_tx, ready_tx, total) = (seen_tx.clone(), ready_tx.clone(), total.clone());
        tokio::spawn(async move {
            let req = GetDestination {
                scheme: "k8s".into(),
                path: format!("web.{NS}.svc.cluster.local:80"),
                context_token: String::new(),
            };
            let Ok(rsp) = client.get(req).await else {
                return;
            };
            let mut s = rsp.into_inner();
            let (mut known, mut ready, mut change) = (0usize, false, 0usize);
            while let Some(Ok(u)) = s.next().await {
                let hit = match u.update {
                    Some(U::Remove(set)) => {
                        known = known.saturating_sub(set.addrs.len());
                        set.addrs
                            .iter()
                            .any(|a| SocketAddr::try_from(a).ok() == Some(marker))
                    }
                    Some(U::Add(set)) => {
                        known += set.addrs.len();
                        set.addrs.iter().any(|a| {
                            a.addr.as_ref().and_then(|a| SocketAddr::try_from(a).ok())
                                == Some(marker)
                        })
                    }
                    _ => false,
                };
                if !ready {
                    if known >= *total {
                        ready = true;
                        let _ = ready_tx.send(());
                    }
                    continue;
                }
                if hit {
                    let _ = seen_tx.send((change, Instant::now()));
                    change += 1;
                }
            }
        });
    }
    let t0 = Instant::now();
    for n in 0..watchers {
        tokio::select! {
            r = ready_rx.recv() => { r.context("watchers ended")?; }
            () = tokio::time::sleep(Duration::from_secs(120).saturating_sub(t0.elapsed())) => {
                proc.check_alive()?;
                bail!("only {n} of {watchers} watchers saw all {endpoints} endpoints within 120 s; controller log:\n{}", proc.log_tail(20));
            }
        }
    }
    eprintln!(
        "tulle-bench: {watchers} watchers have all {endpoints} endpoints ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    let rss_idle = rss_kb(pid)?;
    let load_before = loadavg();

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let pp = PatchParams::apply("tulle-bench").force();
    let mut lat = Vec::with_capacity(watchers * changes);
    for c in 0..changes {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        slices
            .patch("web-0", &pp, &Patch::Apply(slice(0, endpoints, c % 2 == 0)))
            .await
            .context("patching EndpointSlice web-0")?;
        for _ in 0..watchers {
            let (id, at) = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("change {c} did not reach every watcher within 30 s"))?
                .context("watchers ended")?;
            if id != c {
                bail!("a watcher saw change {id} while {c} was expected");
            }
            lat.push(at - t0);
        }
    }
    let rss = rss_kb(pid)?;
    let peak = peak_rss_kb(pid).unwrap_or(rss);
    drop(proc);
    let nss: Api<Namespace> = Api::all(client.clone());
    let _ = nss.delete(NS, &DeleteParams::default()).await;
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: f64| ms(lat[((lat.len() as f64 - 1.0) * p) as usize]);
    Ok(Report {
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        machine: machine(),
        loadavg_before: load_before,
        endpoints,
        watchers,
        changes,
        propagation_p50_ms: pct(0.5),
        propagation_p99_ms: pct(0.99),
        propagation_max_ms: lat.last().map_or(0.0, |d| ms(*d)),
        controller_rss_kb_idle: rss_idle,
        controller_rss_kb: rss,
        controller_rss_kb_peak: peak,
    })
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
