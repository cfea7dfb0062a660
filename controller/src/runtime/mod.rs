//! Wiring: flags, the index, the Kubernetes watches, the destination and policy gRPC
//! servers, the injector webhook's admission server (`admission_server`) and the admin server.

mod admission_server;
mod metrics;
mod tls;

pub use admission_server::{WebhookArgs, inject_config};
pub use metrics::MetricsArgs;

use crate::{
    core::{DefaultPolicy, Index, Naming},
    grpc::{CallerCheck, DestinationService, GrpcMetrics, PolicyService},
    k8s,
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc};

/// How long Events wait for the SMI lists when a CRD is missing.
const SMI_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// tulle-controller: the destination API and proxy injector of the tulle control plane.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "tulle-controller", version)]
pub struct Args {
    /// Address of the destination gRPC server.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_DESTINATION_ADDR",
        default_value = "0.0.0.0:8086"
    )]
    pub destination_addr: SocketAddr,
    /// Address of the inbound policy gRPC server (SMI Traffic Access).
    #[arg(
        long,
        env = "TULLE_CONTROLLER_POLICY_ADDR",
        default_value = "0.0.0.0:8090"
    )]
    pub policy_addr: SocketAddr,
    /// The mesh default inbound policy of pods no TrafficTarget names: allow,
    /// authenticated or deny (overridden by the namespace's then the pod's
    /// `config.tulle.io/default-inbound-policy` annotation).
    #[arg(
        long,
        env = "TULLE_CONTROLLER_DEFAULT_INBOUND_POLICY",
        default_value = "allow"
    )]
    pub default_inbound_policy: DefaultPolicy,
    /// Destination Get and GetProfile streams one client (pod) may hold at once; beyond it
    /// new streams are refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_MAX_STREAMS_PER_CLIENT",
        default_value_t = 1000
    )]
    pub max_streams_per_client: usize,
    /// Address of the admin server (/metrics, /ready, /live).
    #[arg(
        long,
        env = "TULLE_CONTROLLER_ADMIN_ADDR",
        default_value = "0.0.0.0:9990"
    )]
    pub admin_addr: SocketAddr,
    /// The cluster DNS domain.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,
    /// The identity trust domain.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_TRUST_DOMAIN",
        default_value = "cluster.local"
    )]
    pub trust_domain: String,
    /// tulle-identity's address (`host:port`). When set, the destination and policy APIs
    /// are served over mTLS with a certificate from identity (clients must present a mesh
    /// certificate; the policy API serves a pod's policy to that pod's identity only); when
    /// unset, over plaintext without any caller check (development and tests only).
    #[arg(long, env = "TULLE_CONTROLLER_IDENTITY_ADDR")]
    pub identity_addr: Option<String>,
    /// The identity tulle-identity presents.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_IDENTITY_SERVER_NAME",
        default_value = "tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local"
    )]
    pub identity_server_name: String,
    /// PEM file with the trust anchors.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_TRUST_ANCHORS",
        default_value = "/var/run/tulle/identity/trust-anchors.pem"
    )]
    pub trust_anchors: PathBuf,
    /// Projected ServiceAccount token (audience identity.tulle.io).
    #[arg(
        long,
        env = "TULLE_CONTROLLER_TOKEN_FILE",
        default_value = "/var/run/secrets/tulle.io/serviceaccount/token"
    )]
    pub token_file: PathBuf,
    /// This controller's ServiceAccount (for its identity).
    #[arg(
        long,
        env = "TULLE_CONTROLLER_SERVICE_ACCOUNT",
        default_value = "tulle-controller"
    )]
    pub service_account: String,
    /// This controller's namespace.
    #[arg(
        long,
        env = "TULLE_CONTROLLER_NAMESPACE",
        default_value = "tulle-system"
    )]
    pub namespace: String,
    /// The proxy injector webhook.
    #[command(flatten)]
    pub webhook: WebhookArgs,
    /// The golden metrics and the SMI Traffic Metrics API.
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The controller failed to start or a server stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No Kubernetes client.
    #[error("cannot build a Kubernetes client (in-cluster config or KUBECONFIG): {0}")]
    Kube(#[from] kube::Error),
    /// A server stopped.
    #[error("server stopped: {0}")]
    Serve(String),
    /// TLS could not be configured.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Runs the controller until a server fails.
pub async fn run(args: Args) -> Result<(), RunError> {
    let client = kube::Client::try_default().await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let index = Arc::new(Index::new(Naming {
        cluster_domain: args.cluster_domain.clone(),
        trust_domain: args.trust_domain.clone(),
    }));
    index.set_default_policy(args.default_inbound_policy);
    index.metrics().register(&mut registry);
    let grpc_metrics = GrpcMetrics::default();
    grpc_metrics.register(&mut registry);

    let synced = Arc::new(k8s::Synced::default());
    k8s::spawn_watches(client.clone(), index.clone(), synced.clone());
    // Trust anchors into every namespace, where injected proxies mount and reload them.
    tokio::spawn(k8s::trust_anchors::run(
        client.clone(),
        args.namespace.clone(),
    ));
    let policy_synced = synced.clone();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "tulle-controller".into(),
            instance: args.webhook.pod_name.clone(),
        },
    );
    let (s, started) = (synced.clone(), std::time::Instant::now());
    tokio::spawn(k8s::events::publish(
        recorder,
        index.watch_problems(),
        // An SMI CRD that is not installed never lists: go ahead after a minute.
        move || s.smi_ready() || (s.is_ready() && started.elapsed() > SMI_SYNC_WAIT),
    ));
    let injector = admission_server::start(&args, client.clone(), &mut registry).await?;
    let injector_cert = injector.as_ref().map(|w| w.cert.clone());
    // The metrics API serves with the webhook's certificate (same Service, same names).
    let metrics_api = match &injector {
        Some(w) => Some(
            metrics::start(
                &args.metrics,
                client,
                index.clone(),
                w.cert.clone(),
                w.bundle.clone(),
                &mut registry,
            )
            .await?,
        ),
        None => {
            tracing::warn!(
                "the SMI Traffic Metrics API is off: it serves with the injector webhook's certificate, and the injector is disabled"
            );
            None
        }
    };

    let serving = match &args.identity_addr {
        Some(addr) => Some(start_tls(&args, addr)?),
        None => None,
    };

    let admin_listener = bind(args.admin_addr).await?;
    let tls_ready = serving.as_ref().map(|(cert, _)| cert.clone());
    let admin = tokio::spawn(tulle_admin::serve(
        admin_listener,
        tulle_admin::AdminState {
            registry: Arc::new(registry),
            ready: Arc::new(move || {
                synced.is_ready()
                    && tls_ready.as_ref().is_none_or(|c| c.is_ready())
                    && injector_cert.as_ref().is_none_or(|c| c.is_ready())
            }),
            not_ready_reason: "initial Kubernetes lists, serving or webhook certificate not there yet",
            not_ready_detail: None,
        },
    ));

    let listener = bind(args.destination_addr).await?;
    let policy_listener = bind(args.policy_addr).await?;
    let policy_ready = {
        let (s, started) = (policy_synced, std::time::Instant::now());
        // Route CRDs that are not installed never list: go ahead after a minute (a missing
        // route admits nothing). TrafficTargets must be listed: without them every
        // targeted pod would get the (more open) default.
        Arc::new(move || {
            s.policy_ready() || (s.policy_base_ready() && started.elapsed() > SMI_SYNC_WAIT)
        }) as Arc<dyn Fn() -> bool + Send + Sync>
    };
    let check = if serving.is_some() {
        CallerCheck::MeshIdentity
    } else {
        CallerCheck::InsecureNone
    };
    let policy_svc = PolicyService::new(index.clone(), check, policy_ready).into_server();
    let svc = DestinationService::new(index, grpc_metrics)
        .with_limits(crate::grpc::DestinationLimits {
            max_streams_per_client: args.max_streams_per_client,
        })
        .into_server();
    let server = crate::grpc::server_builder().add_service(svc);
    let policy_server = crate::grpc::server_builder().add_service(policy_svc);
    let (grpc, policy) = match serving {
        Some((cert, roots)) => {
            let cfg = cert
                .mtls_server_config(roots)
                .map_err(|e| RunError::Tls(e.to_string()))?;
            tracing::info!(addr = %args.destination_addr, "serving destination gRPC over mTLS (clients must present a mesh certificate)");
            tracing::info!(addr = %args.policy_addr, "serving policy gRPC over mTLS (a pod's policy only to the pod's own identity)");
            (
                tokio::spawn(
                    server.serve_with_incoming(tulle_api::tls::incoming_with_limits(
                        listener,
                        cfg.clone(),
                        crate::grpc::TLS_LIMITS,
                    )),
                ),
                tokio::spawn(policy_server.serve_with_incoming(
                    tulle_api::tls::incoming_with_limits(
                        policy_listener,
                        cfg,
                        crate::grpc::TLS_LIMITS,
                    ),
                )),
            )
        }
        None => {
            tracing::warn!(addr = %args.destination_addr, "serving destination gRPC over plaintext (no --identity-addr): development and tests only");
            tracing::warn!(addr = %args.policy_addr, "serving policy gRPC over plaintext WITHOUT caller checks (no --identity-addr): development and tests only");
            (
                tokio::spawn(server.serve_with_incoming(incoming(listener))),
                tokio::spawn(policy_server.serve_with_incoming(incoming(policy_listener))),
            )
        }
    };
    let injector = async {
        match injector {
            Some(w) => w.server.await,
            None => std::future::pending().await,
        }
    };
    let metrics_api = async {
        match metrics_api {
            Some(s) => s.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = metrics_api => Err(RunError::Serve(format!("metrics API: {r:?}"))),
        r = grpc => Err(RunError::Serve(format!("destination gRPC: {r:?}"))),
        r = policy => Err(RunError::Serve(format!("policy gRPC: {r:?}"))),
        r = admin => Err(RunError::Serve(format!("admin: {r:?}"))),
        r = injector => Err(RunError::Serve(format!("injector webhook: {r:?}"))),
    }
}

/// Starts getting the serving certificate from identity; also returns the trust anchors that
/// client certificates must chain to.
fn start_tls(
    args: &Args,
    addr: &str,
) -> Result<
    (
        Arc<tulle_api::certify::SwappableCert>,
        rustls::RootCertStore,
    ),
    RunError,
> {
    let pem = std::fs::read(&args.trust_anchors).map_err(|e| {
        RunError::Tls(format!(
            "cannot read trust anchors {}: {e}",
            args.trust_anchors.display()
        ))
    })?;
    let roots = tulle_api::certify::roots_from_pem(&pem).map_err(RunError::Tls)?;
    let client_cfg = tulle_api::certify::client_config(roots.clone())
        .map_err(|e| RunError::Tls(e.to_string()))?;
    let channel = tulle_api::tls::channel(addr, &args.identity_server_name, client_cfg)
        .map_err(|e| RunError::Tls(e.to_string()))?;
    let id = tulle_api::ServiceAccountIdentity::new(
        &args.service_account,
        &args.namespace,
        &args.trust_domain,
    );
    let cert = Arc::new(tulle_api::certify::SwappableCert::default());
    tokio::spawn(tls::maintain(
        cert.clone(),
        channel,
        id,
        args.token_file.clone(),
    ));
    Ok((cert, roots))
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// A plain TCP incoming stream for tonic (TCP_NODELAY set).
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}
