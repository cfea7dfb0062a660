//! The client side of Certify: make a P-256 key, ask tulle-identity for a certificate
//! with a ServiceAccount token, and hold the result for a rustls server
//! ([`SwappableCert`]). Used by control-plane components that serve mTLS/TLS with a
//! mesh identity (the proxy has its own holder).

use crate::{
    ServiceAccountIdentity,
    identity::{CertifyRequest, identity_client::IdentityClient},
};
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};
use tonic::transport::Channel;

/// Getting a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// The key or CSR could not be made.
    #[error("cannot build the key or CSR: {0}")]
    Csr(String),
    /// tulle-identity refused or could not be reached.
    #[error("Certify failed: {0}")]
    Rpc(#[from] tonic::Status),
    /// The answer was unusable.
    #[error("Certify returned an unusable certificate: {0}")]
    Response(String),
}

/// A key with its certificate chain.
#[derive(Debug)]
pub struct Certified {
    /// The certified key, ready for rustls.
    pub key: Arc<CertifiedKey>,
    /// The leaf's notAfter.
    pub valid_until: SystemTime,
}

/// Makes a key and a CSR for `id`, and asks identity to sign it with `token`.
pub async fn certify(
    client: &mut IdentityClient<Channel>,
    id: &ServiceAccountIdentity,
    token: &str,
) -> Result<Certified, CertifyError> {
    let csr_err = |e: &dyn std::fmt::Display| CertifyError::Csr(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| csr_err(&e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| csr_err(&e))?;
    params.subject_alt_names = vec![
        SanType::DnsName(id.dns_name().try_into().map_err(|e| csr_err(&e))?),
        SanType::URI(id.spiffe_uri().try_into().map_err(|e| csr_err(&e))?),
    ];
    let csr = params.serialize_request(&key).map_err(|e| csr_err(&e))?;
    let rsp = client
        .certify(CertifyRequest {
            identity: id.dns_name(),
            token: token.trim().as_bytes().to_vec(),
            certificate_signing_request: csr.der().to_vec(),
        })
        .await?
        .into_inner();
    let valid_until = rsp
        .valid_until
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or_else(|| CertifyError::Response("no valid_until".into()))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&key_der)
        .map_err(|e| CertifyError::Response(e.to_string()))?;
    let mut chain = vec![CertificateDer::from(rsp.leaf_certificate)];
    chain.extend(
        rsp.intermediate_certificates
            .into_iter()
            .map(CertificateDer::from),
    );
    Ok(Certified {
        key: Arc::new(CertifiedKey::new(chain, signing)),
        valid_until,
    })
}

/// When to renew a certificate valid from now until `valid_until`: at 70 % of the
/// remaining lifetime, clamped to 10 s ..= 24 h.
pub fn renew_after(valid_until: SystemTime) -> Duration {
    let left = valid_until
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    left.mul_f64(0.7)
        .clamp(Duration::from_secs(10), Duration::from_secs(24 * 3600))
}

/// A rustls server certificate that can be replaced while serving.
#[derive(Debug, Default)]
pub struct SwappableCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl SwappableCert {
    /// Installs `key`.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(key);
        }
    }

    /// Whether a certificate is installed.
    pub fn is_ready(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// A server config serving this certificate with h2 ALPN and no client auth (tulle-identity:
    /// its clients have no certificate yet; their token authenticates them).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![crate::tls::ALPN_H2.to_vec()];
        Ok(Arc::new(cfg))
    }

    /// A server config serving this certificate with h2 ALPN that requires every client to
    /// present a certificate chaining to `roots` (mTLS: the controller's APIs, which only
    /// meshed proxies that already hold a certificate call).
    pub fn mtls_server_config(
        self: &Arc<Self>,
        roots: rustls::RootCertStore,
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(format!("client verifier: {e}")))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![crate::tls::ALPN_H2.to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.clone()
    }
}

/// Trust anchors from PEM text.
pub fn roots_from_pem(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no CERTIFICATE found in the trust anchors".into());
    }
    Ok(roots)
}

/// A TLS client config trusting `roots`.
pub fn client_config(
    roots: rustls::RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
