//! Wiring: flags, the index, the Kubernetes watches, the gRPC server and the admin server.

mod admin;

use crate::{
    core::{Index, Naming},
    grpc::{DestinationService, GrpcMetrics},
    k8s,
};
use std::{net::SocketAddr, sync::Arc};

/// tulle-controller: the destination API of the tulle control plane.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "tulle-controller", version)]
pub struct Args {
    /// Address of the destination gRPC server.
    #[arg(long, env = "TULLE_CONTROLLER_DESTINATION_ADDR", default_value = "0.0.0.0:8086")]
    pub destination_addr: SocketAddr,
    /// Address of the admin server (/metrics, /ready, /live).
    #[arg(long, env = "TULLE_CONTROLLER_ADMIN_ADDR", default_value = "0.0.0.0:9990")]
    pub admin_addr: SocketAddr,
    /// The cluster DNS domain.
    #[arg(long, env = "TULLE_CONTROLLER_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The identity trust domain.
    #[arg(long, env = "TULLE_CONTROLLER_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
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
}

/// Runs the controller until a server fails.
pub async fn run(args: Args) -> Result<(), RunError> {
    let client = kube::Client::try_default().await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let index = Arc::new(Index::new(Naming {
        cluster_domain: args.cluster_domain.clone(),
        trust_domain: args.trust_domain.clone(),
    }));
    index.metrics().register(&mut registry);
    let grpc_metrics = GrpcMetrics::default();
    grpc_metrics.register(&mut registry);

    let synced = Arc::new(k8s::Synced::default());
    k8s::spawn_watches(client, index.clone(), synced.clone());

    let admin_listener = bind(args.admin_addr).await?;
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(registry),
        Arc::new(move || synced.is_ready()),
    ));

    let listener = bind(args.destination_addr).await?;
    tracing::info!(addr = %args.destination_addr, "serving destination gRPC (plaintext)");
    let svc = DestinationService::new(index, grpc_metrics).into_server();
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
            .add_service(svc)
            .serve_with_incoming(incoming(listener)),
    );
    tokio::select! {
        r = grpc => Err(RunError::Serve(format!("destination gRPC: {r:?}"))),
        r = admin => Err(RunError::Serve(format!("admin: {r:?}"))),
    }
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
