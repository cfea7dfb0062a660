//! The routes and the listeners.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Json;
use axum::extract::Query;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::{admission, client, load, received, tls};

/// Settings from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub tls: Option<(u16, String, String)>,
    pub pod: String,
    pub namespace: String,
    pub group: String,
    /// `$TCP_PORT`: also serve the speaks-first TCP protocol of [`crate::burst`].
    pub tcp_port: Option<u16>,
    /// `$TCP_ECHO_PORT`: also serve a TCP echo there.
    pub tcp_echo_port: Option<u16>,
    /// `$FAIL_PERCENT`: this many of every 100 answers of `/` (and any other path) are 500s,
    /// deterministically (the first N of each hundred), for the metrics tests.
    pub fail_percent: u8,
    /// `$DELAY_MS`: those answers wait this long first.
    pub delay: std::time::Duration,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let port = |k: &str, default: u16| -> anyhow::Result<u16> {
            env(k).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("{k}={v:?} is not a port number"))
            })
        };
        let tls = match (env("TLS_CERT"), env("TLS_KEY")) {
            (Some(c), Some(k)) => Some((port("TLS_PORT", 8443)?, c, k)),
            (None, None) => None,
            _ => anyhow::bail!("set both TLS_CERT and TLS_KEY (PEM files), or neither"),
        };
        Ok(Self {
            port: port("PORT", 8080)?,
            tls,
            pod: env("POD_NAME").unwrap_or_else(|| "unknown".into()),
            namespace: env("POD_NAMESPACE").unwrap_or_else(|| "unknown".into()),
            group: env("APISERVICE_GROUP").unwrap_or_else(|| "testapp.tulle.io".into()),
            tcp_echo_port: env("TCP_ECHO_PORT")
                .map(|v| {
                    v.parse()
                        .with_context(|| format!("TCP_ECHO_PORT={v:?} is not a port number"))
                })
                .transpose()?,
            fail_percent: match env("FAIL_PERCENT") {
                None => 0,
                Some(v) => v
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .with_context(|| format!("FAIL_PERCENT={v:?} is not a percentage (0-100)"))?,
            },
            delay: std::time::Duration::from_millis(match env("DELAY_MS") {
                None => 0,
                Some(v) => v
                    .parse()
                    .with_context(|| format!("DELAY_MS={v:?} is not a number of milliseconds"))?,
            }),
            tcp_port: env("TCP_PORT")
                .map(|v| {
                    v.parse()
                        .with_context(|| format!("TCP_PORT={v:?} is not a port number"))
                })
                .transpose()?,
        })
    }
}

fn router(cfg: &Config, load: Option<load::Shared>) -> axum::Router {
    let (pod, ns) = (cfg.pod.clone(), cfg.namespace.clone());
    let (fail_percent, delay) = (cfg.fail_percent, cfg.delay);
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counts = received::Received::default();
    let who = move || {
        let (pod, ns) = (pod.clone(), ns.clone());
        let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let status = if n % 100 < u64::from(fail_percent) {
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                axum::http::StatusCode::OK
            };
            (status, Json(json!({"pod": pod, "namespace": ns})))
        }
    };
    axum::Router::new()
        .route(
            "/load",
            get(move || async move {
                match &load {
                    Some(s) => Json(s.lock().unwrap_or_else(|p| p.into_inner()).to_json()),
                    None => Json(json!({"error": "no load: set LOAD_URL"})),
                }
            }),
        )
        .route("/", get(who.clone()))
        // Any other path answers who served it too (route rules of the SMI tests).
        .fallback(who)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/call", get(call))
        .merge(
            axum::Router::new()
                .route("/received", get(received::report))
                .with_state(counts.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(
            counts,
            received::record,
        ))
}

#[derive(serde::Deserialize)]
struct CallParams {
    url: String,
}

/// GET another service and report what came back (`error` instead of `status` when it failed).
async fn call(Query(p): Query<CallParams>) -> Json<Value> {
    match client::get(&p.url).await {
        Ok(r) => Json(json!({"url": p.url, "status": r.status, "body": r.body})),
        Err(e) => Json(json!({"url": p.url, "error": format!("{e:#}")})),
    }
}

pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let load = load::start_from_env()?;
    let plain = router(&cfg, load.clone());
    let addr = SocketAddr::from(([0, 0, 0, 0], cfg.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!(
        "tulle-testapp {} pod={} namespace={} listening on http://{addr}",
        env!("CARGO_PKG_VERSION"),
        cfg.pod,
        cfg.namespace
    );
    if let Some(port) = cfg.tcp_port {
        let pod = cfg.pod.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::burst::serve_tcp(port, pod).await {
                eprintln!("TCP server failed: {e:#}");
                std::process::exit(1);
            }
        });
    }
    if let Some(port) = cfg.tcp_echo_port {
        tokio::spawn(async move {
            if let Err(e) = crate::burst::serve_echo(port).await {
                eprintln!("TCP echo server failed: {e:#}");
                std::process::exit(1);
            }
        });
    }
    // Like a real app: SIGTERM (after the pod's preStop hook) stops accepting and finishes
    // the requests in flight. Without a handler, PID 1 ignores SIGTERM until the SIGKILL.
    let http = async {
        axum::serve(listener, plain)
            .with_graceful_shutdown(terminated())
            .await
            .context("HTTP server failed")
    };
    match cfg.tls.clone() {
        None => http.await,
        Some((port, cert, key)) => {
            let group = cfg.group.clone();
            let secure = router(&cfg, load)
                .route("/mutate", post(admission::mutate))
                .route("/validate", post(admission::validate))
                .merge(admission::aggregated_api(&group, &cfg.pod));
            let https = tls::serve(SocketAddr::from(([0, 0, 0, 0], port)), &cert, &key, secure);
            tokio::select! {
                r = http => r,
                r = https => r,
            }
        }
    }
}

/// Resolves on SIGTERM.
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
            println!("SIGTERM: draining");
        }
        Err(_) => std::future::pending().await,
    }
}
