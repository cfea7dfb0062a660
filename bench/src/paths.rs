//! Starting one measured path: the processes between the load generator and the backend.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::certs::{CLIENT_NAME, CertFiles, SERVER_NAME};
use crate::cli::PathKind;
use crate::configs;
use crate::procs::{Proc, free_port};
use crate::signals;

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// What every path needs.
#[derive(Debug)]
pub struct Ctx {
    pub dir: PathBuf,
    pub certs: CertFiles,
    pub backend: SocketAddr,
    pub nginx: PathBuf,
    pub haproxy: PathBuf,
    pub tulle: Option<PathBuf>,
    pub tulle_threads: usize,
}

/// A started path: where the load goes, and the proxies (outbound first) to watch.
#[derive(Debug)]
pub struct RunningPath {
    pub entry: SocketAddr,
    pub proxies: Vec<Proc>,
}

/// Starts the backend nginx.
pub fn start_backend(dir: &Path, nginx: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let addr = free_port()?;
    let mut p = spawn_nginx("backend", nginx, dir, &configs::backend_nginx(dir, addr))?;
    p.wait_listening(addr, START_TIMEOUT)?;
    Ok((p, addr))
}

fn spawn_nginx(name: &str, nginx: &Path, dir: &Path, conf: &str) -> anyhow::Result<Proc> {
    let conf_path = dir.join(format!("{name}.nginx.conf"));
    std::fs::write(&conf_path, conf)?;
    std::fs::create_dir_all(dir.join(format!("{name}-tmp")))?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join(format!("{name}.error.log")));
    Proc::spawn(name, cmd, dir)
}

fn spawn_haproxy(name: &str, haproxy: &Path, dir: &Path, conf: &str) -> anyhow::Result<Proc> {
    let conf_path = dir.join(format!("{name}.haproxy.cfg"));
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(haproxy);
    cmd.arg("-db").arg("-f").arg(&conf_path);
    Proc::spawn(name, cmd, dir)
}

/// Starts the processes of `kind` and checks that a request through them gets a 200.
pub fn start(kind: PathKind, ctx: &Ctx) -> anyhow::Result<RunningPath> {
    let dir = &ctx.dir;
    let path = match kind {
        PathKind::Direct => RunningPath {
            entry: ctx.backend,
            proxies: Vec::new(),
        },
        PathKind::Nginx => {
            let (entry, mid) = (free_port()?, free_port()?);
            let mut inbound = spawn_nginx(
                "nginx-in",
                &ctx.nginx,
                dir,
                &configs::nginx_inbound(dir, &ctx.certs, mid, ctx.backend),
            )?;
            inbound.wait_listening(mid, START_TIMEOUT)?;
            let mut outbound = spawn_nginx(
                "nginx-out",
                &ctx.nginx,
                dir,
                &configs::nginx_outbound(dir, &ctx.certs, entry, mid),
            )?;
            outbound.wait_listening(entry, START_TIMEOUT)?;
            RunningPath {
                entry,
                proxies: vec![outbound, inbound],
            }
        }
        PathKind::Haproxy => {
            let (entry, mid) = (free_port()?, free_port()?);
            let mut inbound = spawn_haproxy(
                "haproxy-in",
                &ctx.haproxy,
                dir,
                &configs::haproxy_inbound(&ctx.certs, mid, ctx.backend),
            )?;
            inbound.wait_listening(mid, START_TIMEOUT)?;
            let mut outbound = spawn_haproxy(
                "haproxy-out",
                &ctx.haproxy,
                dir,
                &configs::haproxy_outbound(&ctx.certs, entry, mid),
            )?;
            outbound.wait_listening(entry, START_TIMEOUT)?;
            RunningPath {
                entry,
                proxies: vec![outbound, inbound],
            }
        }
        PathKind::Tulle => start_tulle(ctx, false, false)?,
        PathKind::TulleSplit => start_tulle(ctx, true, false)?,
        PathKind::TulleAuthz => start_tulle(ctx, false, true)?,
    };
    verify(path.entry, START_TIMEOUT).with_context(|| {
        let logs: Vec<String> = path
            .proxies
            .iter()
            .map(|p| format!("--- {}:\n{}", p.name(), p.log_tail(15)))
            .collect();
        format!(
            "the {} path does not answer 200; proxy logs:\n{}",
            kind.name(),
            logs.join("\n")
        )
    })?;
    Ok(path)
}

/// The tulle pair; with `split`, the outbound proxy applies a 50/50 TrafficSplit between two
/// backend services (both served by the same inbound proxy, so only the split's cost differs);
/// with `authz`, the inbound proxy enforces a static policy of one TrafficTarget with 20 HTTP
/// route rules, the bench client allowed by the last one (only the authorization's cost
/// differs).
fn start_tulle(ctx: &Ctx, split: bool, authz: bool) -> anyhow::Result<RunningPath> {
    let Some(bin) = &ctx.tulle else {
        bail!("no tulle-proxy binary")
    };
    let dir = &ctx.dir;
    let (entry, mid, service) = (free_port()?, free_port()?, free_port()?);
    let static_path = dir.join("tulle-static.json");
    std::fs::write(&static_path, configs::tulle_static(service, mid, split))?;
    let certs = &ctx.certs;
    let tulle = |name: &str,
                 cert: &Path,
                 key: &Path,
                 id: &str,
                 inbound: SocketAddr,
                 outbound: SocketAddr|
     -> anyhow::Result<Command> {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("TULLE_PROXY_INBOUND_LISTEN_ADDR", inbound.to_string())
            .env("TULLE_PROXY_OUTBOUND_LISTEN_ADDR", outbound.to_string())
            .env("TULLE_PROXY_ADMIN_LISTEN_ADDR", free_port()?.to_string())
            .env("TULLE_PROXY_IDENTITY_CERT_FILE", cert)
            .env("TULLE_PROXY_IDENTITY_KEY_FILE", key)
            .env("TULLE_PROXY_IDENTITY_TRUST_ANCHORS_FILE", &certs.ca)
            .env("TULLE_PROXY_IDENTITY_NAME", id)
            .env("TULLE_PROXY_STATIC_CONFIG", &static_path)
            .env("TULLE_PROXY_WORKER_THREADS", ctx.tulle_threads.to_string())
            .env("TULLE_PROXY_LOG", "warn");
        let _ = name;
        Ok(cmd)
    };
    let mut cmd_in = tulle(
        "tulle-in",
        &certs.server_cert,
        &certs.server_key,
        SERVER_NAME,
        mid,
        free_port()?,
    )?;
    cmd_in
        .env(
            "TULLE_PROXY_INBOUND_PORT_FALLBACK",
            ctx.backend.port().to_string(),
        )
        .env("TULLE_PROXY_INBOUND_APP_HOST", ctx.backend.ip().to_string());
    if authz {
        let policy_path = dir.join("tulle-policy.json");
        std::fs::write(
            &policy_path,
            configs::tulle_authz_policy(CLIENT_NAME, ctx.backend.port()),
        )?;
        cmd_in.env("TULLE_PROXY_STATIC_POLICY", &policy_path);
    }
    let mut inbound = Proc::spawn("tulle-in", cmd_in, dir)?;
    inbound.wait_listening(mid, START_TIMEOUT)?;
    let mut cmd_out = tulle(
        "tulle-out",
        &certs.client_cert,
        &certs.client_key,
        CLIENT_NAME,
        free_port()?,
        entry,
    )?;
    cmd_out.env(
        "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK",
        service.to_string(),
    );
    let mut outbound = Proc::spawn("tulle-out", cmd_out, dir)?;
    outbound.wait_listening(entry, START_TIMEOUT)?;
    Ok(RunningPath {
        entry,
        proxies: vec![outbound, inbound],
    })
}

/// Sends single GETs until one gets a 200 (or the timeout passes).
pub fn verify(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let err = match get_once(addr) {
            Ok(status) if status.starts_with("HTTP/1.1 200") => return Ok(()),
            Ok(status) => anyhow::anyhow!("answered {status:?}"),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(err.context(format!("no 200 from {addr} within {timeout:?}")));
        }
        signals::sleep(Duration::from_millis(200))?;
    }
}

fn get_once(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        configs::AUTHORITY
    )?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or("").to_string())
}
