//! The trust anchors, replaceable while the proxy runs, so that a trust-anchor rotation
//! needs no restart of the meshed workloads.
//!
//! [`Anchors`] holds the current verifiers; the TLS configurations of [`crate::tls::Tls`] use
//! [`Anchors::server_verifier`] and [`Anchors::client_verifier`], which consult the current
//! anchors on every handshake, so replaced anchors apply to new connections while established
//! ones continue. [`watch_file`] reloads them from the mounted trust-anchor ConfigMap when it
//! changes (the kubelet rewrites it within about a minute of a ConfigMap update); a file that
//! does not parse keeps the current anchors and says why in the log.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

/// How often [`watch_file`] looks at the anchors file.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Verifiers {
    server: Arc<WebPkiServerVerifier>,
    client: Arc<dyn ClientCertVerifier>,
    roots: Vec<TrustAnchor<'static>>,
}

/// The current trust anchors, as the verifiers built from them.
#[derive(Debug)]
pub struct Anchors {
    provider: Arc<CryptoProvider>,
    current: RwLock<Verifiers>,
}

/// The TLS verifiers could not be built from the anchors.
#[derive(Debug, thiserror::Error)]
#[error("building the TLS verifier: {0}")]
pub struct VerifierError(pub String);

impl Anchors {
    /// Anchors from `roots`.
    pub fn new(
        roots: RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, VerifierError> {
        let current = RwLock::new(verifiers(roots, &provider)?);
        Ok(Arc::new(Self { provider, current }))
    }

    /// Replaces the anchors; new handshakes use them.
    pub fn replace(&self, roots: RootCertStore) -> Result<(), VerifierError> {
        let v = verifiers(roots, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = v;
        Ok(())
    }

    /// How many anchors are current.
    pub fn count(&self) -> usize {
        self.read().roots.len()
    }

    /// Whether `roots` are the current anchors.
    pub fn are(&self, roots: &RootCertStore) -> bool {
        self.read().roots == roots.roots
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Verifiers> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The current server-certificate verifier.
    pub fn server(&self) -> Arc<WebPkiServerVerifier> {
        self.read().server.clone()
    }

    fn client(&self) -> Arc<dyn ClientCertVerifier> {
        self.read().client.clone()
    }

    /// A verifier of servers' certificates that always uses the current anchors.
    pub fn server_verifier(self: &Arc<Self>) -> Arc<dyn ServerCertVerifier> {
        Arc::new(CurrentServer(self.clone()))
    }

    /// A verifier of clients' certificates that always uses the current anchors.
    pub fn client_verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(CurrentClient(self.clone()))
    }
}

fn verifiers(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Verifiers, VerifierError> {
    let anchors = roots.roots.clone();
    let roots = Arc::new(roots);
    let server = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| VerifierError(e.to_string()))?;
    let client = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| VerifierError(e.to_string()))?;
    Ok(Verifiers {
        server,
        client,
        roots: anchors,
    })
}

/// Delegates to the current anchors' server verifier.
#[derive(Debug)]
struct CurrentServer(Arc<Anchors>);

impl ServerCertVerifier for CurrentServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.server().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.server().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.server().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.server().supported_verify_schemes()
    }
}

/// Delegates to the current anchors' client verifier. It sends no CA names in its
/// certificate request (they change with the anchors, and a proxy has one certificate).
#[derive(Debug)]
struct CurrentClient(Arc<Anchors>);

impl ClientCertVerifier for CurrentClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .client()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.client().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.client().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.client().supported_verify_schemes()
    }
}

/// Reloads `anchors` from `path` whenever the certificates in it differ from the current
/// ones, looking every `every`. Returns never; abort the task to stop. A missing, empty or
/// unparseable file keeps the current anchors (said once per content in the log).
pub async fn watch_file(path: PathBuf, anchors: Arc<Anchors>, every: Duration) {
    let mut refused: Option<Vec<u8>> = None;
    loop {
        let pem = match tokio::fs::read(&path).await {
            Ok(pem) => pem,
            Err(e) => {
                tracing::debug!(path = %path.display(), "trust anchors not readable ({e}); keeping the current ones");
                tokio::time::sleep(every).await;
                continue;
            }
        };
        match tulle_api::certify::roots_from_pem(&pem) {
            Ok(roots) if anchors.are(&roots) => {}
            Ok(roots) => match anchors.replace(roots) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), anchors = anchors.count(), "trust anchors reloaded")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "trust anchors changed but cannot be used ({e}); keeping the current ones")
                }
            },
            Err(e) if refused.as_ref() != Some(&pem) => {
                tracing::warn!(path = %path.display(), "trust anchors changed but do not parse ({e}); keeping the current ones until the file is fixed");
                refused = Some(pem);
            }
            Err(_) => {}
        }
        tokio::time::sleep(every).await;
    }
}
