//! HTTPS listener for the webhook and aggregated-API routes.

use std::sync::Arc;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Serve `router` over TLS on `addr` with the PEM certificate chain and key from the given files.
pub async fn serve(
    addr: std::net::SocketAddr,
    cert: &str,
    key: &str,
    router: axum::Router,
) -> anyhow::Result<()> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificates from {cert}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {cert}"))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {key}"))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("listening on https://{addr}");
    loop {
        let (tcp, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => return eprintln!("TLS handshake with {peer} failed: {e}"),
            };
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}
