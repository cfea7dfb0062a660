//! tulle-identity: the mesh certificate authority.
//!
//! A proxy sends `Certify` a CSR (ECDSA P-256) and its projected ServiceAccount token
//! (audience `identity.tulle.io`). The service reviews the token ([`token`]), checks the
//! requested identity and the CSR ([`csr`]), and signs a short-lived leaf with the issuer
//! loaded and hot-reloaded from mounted files ([`issuer`]). It serves over TLS with a
//! certificate it issues to itself ([`serving`]), exports metrics ([`metrics`]) on the
//! admin port (`tulle_admin`) and reports failures as Kubernetes Events ([`events`]), only
//! once the caller's token authenticated and only on the caller's own ServiceAccount.
//! Abuse is bounded ([`limits`]): Certify calls per peer address and in flight, streams per
//! connection, and TLS handshakes and connections (`tulle_api::tls::Limits`); beyond a bound
//! the answer is `RESOURCE_EXHAUSTED` with a retry delay.

pub mod config;
pub mod csr;
pub mod events;
pub mod issuer;
pub mod limits;
pub mod metrics;
pub mod service;
pub mod serving;
pub mod token;

pub use config::Args;

use std::{sync::Arc, time::Duration};
use tulle_api::ServiceAccountIdentity;

/// The process failed to start or a server stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No Kubernetes client could be built.
    #[error("cannot build a Kubernetes client (in-cluster config or KUBECONFIG): {0}")]
    Kube(#[from] kube::Error),
    /// TLS configuration failed.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// A server stopped.
    #[error("server stopped: {0}")]
    Serve(String),
}

/// Runs the identity service until a server fails.
pub async fn run(args: Args) -> Result<(), RunError> {
    let client = kube::Client::try_default().await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);

    let (reloader, issuer_rx) = issuer::Reloader::new(
        args.issuer_dir.clone(),
        Duration::from_secs(args.issuer_poll_secs.max(1)),
    );
    let load_failures = metrics.issuer_load_failures.clone();
    tokio::spawn(reloader.run(move |_| {
        load_failures.inc();
    }));
    let events = Arc::new(events::KubeEvents::new(
        client.clone(),
        args.pod_name.clone(),
        args.namespace.clone(),
    ));
    tokio::spawn(watch_issuer(
        issuer_rx.clone(),
        metrics.clone(),
        events.clone(),
        Duration::from_secs(10),
    ));

    let certify = service::Certify::new(
        service::CertifyConfig {
            trust_domain: args.trust_domain.clone(),
            audience: args.token_audience.clone(),
            lifetime: Duration::from_secs(args.cert_lifetime_secs),
            clock_skew: Duration::from_secs(args.clock_skew_secs),
        },
        issuer_rx.clone(),
        token::KubeTokenReviewer::new(client.clone()),
        events::KubeEvents::new(client, args.pod_name.clone(), args.namespace.clone()),
        metrics,
    )
    .with_limits(limits::CertifyLimits {
        per_peer_rate: args.certify_peer_rate,
        per_peer_burst: args.certify_peer_burst,
        max_in_flight: args.max_in_flight,
    });

    let admin_listener = bind(args.admin_addr).await?;
    let ready_rx = issuer_rx.clone();
    let detail_rx = issuer_rx.clone();
    let admin_state = tulle_admin::AdminState {
        registry: Arc::new(registry),
        ready: Arc::new(move || issuer_readiness(&ready_rx, std::time::SystemTime::now()).is_ok()),
        not_ready_reason: "issuer not loaded",
        not_ready_detail: Some(Arc::new(move || {
            issuer_readiness(&detail_rx, std::time::SystemTime::now()).err()
        })),
    };
    let admin = tokio::spawn(tulle_admin::serve(admin_listener, admin_state));

    let listener = bind(args.addr).await?;
    let router = server_builder().add_service(certify.into_server());
    let grpc = if args.plaintext {
        tracing::warn!(addr = %args.addr, "serving Certify over plaintext gRPC");
        let incoming = tokio_stream_incoming(listener);
        tokio::spawn(async move {
            router
                .serve_with_incoming(incoming)
                .await
                .map_err(|e| e.to_string())
        })
    } else {
        let own =
            ServiceAccountIdentity::new(&args.service_account, &args.namespace, &args.trust_domain);
        let serving = Arc::new(serving::ServingCert::default());
        let config = serving.server_config()?;
        tokio::spawn(serving.maintain(issuer_rx, own.clone()));
        tracing::info!(addr = %args.addr, identity = %own, "serving Certify over TLS");
        let incoming = tulle_api::tls::incoming_with_limits(
            listener,
            config,
            tulle_api::tls::Limits {
                max_handshakes: args.max_handshakes,
                max_connections: args.max_connections,
                ..Default::default()
            },
        );
        tokio::spawn(async move {
            router
                .serve_with_incoming(incoming)
                .await
                .map_err(|e| e.to_string())
        })
    };
    tokio::select! {
        r = grpc => Err(RunError::Serve(format!("gRPC: {:?}", r))),
        r = admin => Err(RunError::Serve(format!("admin: {:?}", r))),
    }
}

/// Streams a connection may open at once (a proxy makes one Certify call a day).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;

/// The gRPC server's settings: a bound on streams and on calls in flight per connection
/// (beyond it, RESOURCE_EXHAUSTED at once rather than a queue), and a deadline per call.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        .load_shed(true)
        .timeout(Duration::from_secs(30))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// A plain TCP incoming stream for tonic.
pub fn tokio_stream_incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

/// Whether the service can sign at `now`: an issuer is loaded and within its validity
/// period. The error is the `/ready` reason.
pub fn issuer_readiness(rx: &issuer::IssuerRx, now: std::time::SystemTime) -> Result<(), String> {
    match rx.borrow().as_ref() {
        None => Err(
            "issuer not loaded (see identity_issuer_load_failures and the logs; the issuer \
             Secret tulle-identity-issuer must hold a valid tls.crt and tls.key)"
                .into(),
        ),
        Some(iss) => iss.check_valid(now).map_err(|e| e.to_string()),
    }
}

/// Keeps the issuer gauges current, every `interval` and on every issuer change, and
/// reports a Warning Event (and a log line) each time the issuer turns invalid (a renewed
/// issuer makes it valid, and the service ready, again).
pub async fn watch_issuer<E: events::EventSink>(
    mut rx: issuer::IssuerRx,
    metrics: metrics::Metrics,
    events: Arc<E>,
    interval: Duration,
) {
    let mut was_valid: Option<bool> = None;
    loop {
        let current = rx.borrow_and_update().clone();
        if let Some(iss) = current {
            let now = std::time::SystemTime::now();
            let secs = match iss.not_after().duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            metrics.issuer_expiry_seconds.set(secs);
            let at = match iss.not_after().duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            metrics.issuer_expiry_timestamp_seconds.set(at);
            let check = iss.check_valid(now);
            metrics.issuer_valid.set(i64::from(check.is_ok()));
            match check {
                Err(e) if was_valid != Some(false) => {
                    tracing::error!(error = %e, "issuer invalid: Certify refuses to sign until it is rotated");
                    events.issuer_invalid(&e.to_string());
                    was_valid = Some(false);
                }
                Ok(()) if was_valid != Some(true) => {
                    if was_valid.is_some() {
                        tracing::info!("issuer valid again: Certify signs");
                    }
                    was_valid = Some(true);
                }
                _ => {}
            }
        } else {
            metrics.issuer_valid.set(0);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            () = tokio::time::sleep(interval) => {}
        }
    }
}
