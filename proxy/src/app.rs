//! Wiring: binds the listeners and runs the inbound, outbound and admin servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::discovery::Resolve;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::policy::{Policy, PolicyFile, PolicyRx};
use crate::runtime::{DrainHandle, Runtime, drain};
use crate::server::ConnLimit;
use crate::tls::Tls;

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    pub inbound_addr: SocketAddr,
    pub outbound_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub runtime: Arc<Runtime>,
    drain: DrainHandle,
    accept: Vec<JoinHandle<()>>,
}

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("{0} (TULLE_PROXY_STATIC_POLICY)")]
    StaticPolicy(#[from] crate::policy::PolicyFileError),
    #[error(transparent)]
    PolicyService(#[from] crate::control::policy::SetupError),
}

/// The inbound policy source of `config`: the policy service, a static file, or `allow`.
pub fn policy_from_config(config: &Config, tls: &Tls) -> Result<PolicyRx, StartError> {
    if let Some(p) = &config.policy {
        tracing::info!(svc = %p.svc.addr, pod = %format!("{}/{}", p.namespace, p.pod), "inbound policy from the policy service; not ready until it answers");
        let rx = crate::control::policy::watch(
            p,
            tls.control_client(),
            crate::control::policy::Timing::default(),
        )?;
        return Ok(rx);
    }
    if let Some(path) = &config.static_policy {
        let policy = PolicyFile::from_path(path)?.compile();
        tracing::info!(path = %path.display(), policy = %policy.summary(), "static inbound policy");
        return Ok(crate::policy::fixed(policy));
    }
    tracing::info!(
        "no policy service (TULLE_PROXY_POLICY_SVC_ADDR) nor static policy (TULLE_PROXY_STATIC_POLICY): every inbound client is allowed"
    );
    Ok(crate::policy::fixed(Policy::allow_all()))
}

/// Binding a listener failed.
#[derive(Debug, thiserror::Error)]
#[error("binding the {what} listener on {addr}: {source}; is another process using the port?")]
pub struct BindError {
    what: &'static str,
    addr: SocketAddr,
    source: std::io::Error,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    let l = sock
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(1024)
        })
        .map_err(|source| BindError { what, addr, source })?;
    Ok(l)
}

impl Proxy {
    /// Binds the listeners and starts serving, with the inbound policy `config` names
    /// ([`policy_from_config`]). Ports 0 in `config` pick free ports (tests).
    pub async fn start(
        config: Config,
        tls: Tls,
        discovery: Arc<dyn Resolve>,
    ) -> Result<Proxy, StartError> {
        let policy = policy_from_config(&config, &tls)?;
        Ok(Self::start_with_policy(config, tls, discovery, policy).await?)
    }

    /// [`Proxy::start`] with the given inbound policy (tests: a [`crate::policy::StaticPolicy`]).
    pub async fn start_with_policy(
        mut config: Config,
        tls: Tls,
        discovery: Arc<dyn Resolve>,
        policy: PolicyRx,
    ) -> Result<Proxy, BindError> {
        let inbound = bind("inbound", config.inbound_addr).await?;
        let outbound = bind("outbound", config.outbound_addr).await?;
        let admin = bind("admin", config.admin_addr).await?;
        let local = |l: &TcpListener, a| l.local_addr().unwrap_or(a);
        config.inbound_addr = local(&inbound, config.inbound_addr);
        config.outbound_addr = local(&outbound, config.outbound_addr);
        config.admin_addr = local(&admin, config.admin_addr);
        let (d, drain) = drain();
        let rt = Arc::new(Runtime {
            config: Arc::new(config),
            tls,
            metrics: Arc::new(Metrics::new()),
            discovery,
            policy,
            drain: d,
            ready: AtomicBool::new(false),
        });
        let inb = Inbound::new(rt.clone());
        let out = Outbound::new(rt.clone());
        let admin_rt = rt.clone();
        // Only the kubelet, a scraper and local diagnostics use it: a small bound.
        let admin_limit = Arc::new(ConnLimit::new(
            "admin",
            crate::config::ENV_ADMIN_MAX_CONNECTIONS,
            rt.config.admin_max_connections,
            rt.metrics.admin_connections_refused(),
        ));
        let accept = vec![
            spawn_accept(rt.clone(), inbound, move |s, p| {
                tokio::spawn(inb.clone().accept(s, p))
            }),
            spawn_accept(rt.clone(), outbound, move |s, p| {
                tokio::spawn(out.clone().accept(s, p))
            }),
            spawn_accept(rt.clone(), admin, move |s, peer| {
                let rt = admin_rt.clone();
                let limit = admin_limit.clone();
                tokio::spawn(async move {
                    let Some(_permit) = limit.admit(&s) else {
                        return;
                    };
                    let _ = s.set_nodelay(true);
                    let cfg = rt.config.clone();
                    let drain = rt.drain.clone();
                    let svc = tower::service_fn(move |req| {
                        let rt = rt.clone();
                        async move { Ok(crate::admin::handle(rt, req, peer).await) }
                    });
                    crate::server::serve(s, false, &cfg, &drain, svc).await
                })
            }),
        ];
        rt.ready.store(true, Ordering::Release);
        let c = &rt.config;
        tracing::info!(inbound = %c.inbound_addr, outbound = %c.outbound_addr, admin = %c.admin_addr, identity = %rt.tls.store.name(), "proxy started");
        Ok(Proxy {
            inbound_addr: c.inbound_addr,
            outbound_addr: c.outbound_addr,
            admin_addr: c.admin_addr,
            runtime: rt,
            drain,
            accept,
        })
    }

    /// Graceful shutdown: stop accepting, let in-flight work finish within `grace`.
    /// Returns true if everything drained in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.drain.signal();
        for a in &self.accept {
            a.abort();
        }
        for a in self.accept {
            let _ = a.await;
        }
        let ok = self.drain.drain(grace).await;
        tracing::info!(drained = ok, "proxy stopped");
        ok
    }
}

fn spawn_accept<F>(rt: Arc<Runtime>, listener: TcpListener, on: F) -> JoinHandle<()>
where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> JoinHandle<()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut signal = rt.drain.signal();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, p)) => { on(s, p); }
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = signal.changed() => return,
            }
        }
    })
}
