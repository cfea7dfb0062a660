//! Mesh identity: the proxy's certificate, the trust anchors and the TLS configurations.
//!
//! The certificate lives in a swappable [`IdentityStore`]; rustls asks it for the current
//! certificate on every handshake (`ResolvesServerCert` / `ResolvesClientCert`), so a renewed
//! certificate applies to new connections while established ones continue undisturbed.
//! Where credentials come from is a [`CredentialSource`] (files in development and tests; the identity
//! service client, `control::identity`, calls [`IdentityStore::update`]).

use crate::config::TrustAnchors;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// ALPN of an HTTP/2 connection between proxies.
pub const ALPN_H2: &[u8] = b"tulle.h2";
/// ALPN of an opaque TCP stream between proxies (preceded by a transport header).
pub const ALPN_TCP: &[u8] = b"tulle.tcp";
/// ALPN of an HTTP/1.1 connection that may be upgraded (WebSocket), with a transport header.
pub const ALPN_H1: &[u8] = b"tulle.h1";

/// Why identity material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading {path}: {source}; check the file exists and holds PEM data")]
    Read {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no certificate; it must hold the PEM chain, leaf first")]
    NoCertificate { path: PathBuf },
    #[error("trust anchors in {path}: {source}")]
    Anchors {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the key does not match the certificate or is unsupported: {0}")]
    Key(rustls::Error),
    #[error("building the TLS verifier: {0}")]
    Verifier(String),
}

/// Identity material: own name, certificate chain, key and trust anchors.
#[derive(Debug)]
pub struct Credentials {
    pub name: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: RootCertStore,
}

/// A source of credentials: PEM files (development and tests); the identity service
/// updates the store itself.
pub trait CredentialSource: Send + Sync {
    /// Loads the current credentials.
    fn load(&self) -> Result<Credentials, IdentityError>;
}

/// Credentials from PEM files.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub name: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trust_anchors: TrustAnchors,
}

impl CredentialSource for FileSource {
    fn load(&self) -> Result<Credentials, IdentityError> {
        fn read(
            path: &std::path::Path,
        ) -> impl Fn(rustls_pki_types::pem::Error) -> IdentityError + '_ {
            move |source| IdentityError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
        let chain = CertificateDer::pem_file_iter(&self.cert_file)
            .map_err(read(&self.cert_file))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read(&self.cert_file))?;
        if chain.is_empty() {
            return Err(IdentityError::NoCertificate {
                path: self.cert_file.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(read(&self.key_file))?;
        let origin = self.trust_anchors.origin();
        let pem = self
            .trust_anchors
            .pem()
            .map_err(|e| read(&origin)(rustls_pki_types::pem::Error::Io(e)))?;
        let anchors = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(read(&origin))?;
        let mut roots = RootCertStore::empty();
        for a in anchors {
            roots.add(a).map_err(|source| IdentityError::Anchors {
                path: origin.clone(),
                source,
            })?;
        }
        if roots.is_empty() {
            return Err(IdentityError::NoCertificate { path: origin });
        }
        Ok(Credentials {
            name: self.name.clone(),
            chain,
            key,
            roots,
        })
    }
}

/// The current certificate, swappable at runtime.
#[derive(Debug)]
pub struct IdentityStore {
    name: String,
    current: RwLock<Option<Arc<CertifiedKey>>>,
    provider: Arc<CryptoProvider>,
}

impl IdentityStore {
    fn certified(
        provider: &CryptoProvider,
        creds: Credentials,
    ) -> Result<CertifiedKey, IdentityError> {
        CertifiedKey::from_der(creds.chain, creds.key, provider).map_err(IdentityError::Key)
    }

    /// Replaces the certificate used by new handshakes (renewal). Trust anchors are fixed
    /// for the lifetime of the [`Tls`] built from this store.
    pub fn update(&self, creds: Credentials) -> Result<(), IdentityError> {
        let ck = Arc::new(Self::certified(&self.provider, creds)?);
        self.install(ck);
        Ok(())
    }

    /// Installs an already certified key (from the identity service) for new handshakes.
    pub fn install(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    /// Whether a certificate is installed (the proxy is not ready before).
    pub fn has_cert(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The proxy's own identity name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate new handshakes use, if any.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.get()
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for IdentityStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

impl ResolvesClientCert for IdentityStore {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
    fn has_certs(&self) -> bool {
        self.has_cert()
    }
}

/// The TLS configurations of the mesh (TLS 1.3 only, mutual authentication).
#[derive(Debug, Clone)]
pub struct Tls {
    pub store: Arc<IdentityStore>,
    pub server: Arc<ServerConfig>,
    client_h2: Arc<ClientConfig>,
    client_tcp: Arc<ClientConfig>,
    client_h1: Arc<ClientConfig>,
    control: Arc<ClientConfig>,
}

impl Tls {
    /// Builds the store and the TLS configurations from credentials.
    pub fn new(creds: Credentials) -> Result<Self, IdentityError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = creds.roots.clone();
        let name = creds.name.clone();
        let ck = IdentityStore::certified(&provider, creds)?;
        let tls = Self::pending(name, roots)?;
        tls.store.install(Arc::new(ck));
        Ok(tls)
    }

    /// Builds the configurations before the first certificate exists (identity service
    /// mode): handshakes fail until [`IdentityStore::install`] is called.
    pub fn pending(name: String, roots: RootCertStore) -> Result<Self, IdentityError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = Arc::new(roots);
        let store = Arc::new(IdentityStore {
            name,
            current: RwLock::new(None),
            provider: provider.clone(),
        });

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| IdentityError::Verifier(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| IdentityError::Verifier(e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(store.clone());
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_TCP.to_vec(), ALPN_H1.to_vec()];
        server.max_early_data_size = 0;

        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| IdentityError::Verifier(e.to_string()))?;
        let client = |alpn: &[u8]| -> Result<Arc<ClientConfig>, IdentityError> {
            let mut c = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| IdentityError::Verifier(e.to_string()))?
                .with_webpki_verifier(server_verifier.clone())
                .with_client_cert_resolver(store.clone());
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        let mut control = (*client(b"h2")?).clone();
        control.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tls {
            control: Arc::new(control),
            server: Arc::new(server),
            client_h2: client(ALPN_H2)?,
            client_tcp: client(ALPN_TCP)?,
            client_h1: client(ALPN_H1)?,
            store,
        })
    }

    /// The client configuration for control-plane gRPC (ALPN h2): verifies the server
    /// against the trust anchors and presents the proxy's certificate once it has one.
    pub fn control_client(&self) -> Arc<ClientConfig> {
        self.control.clone()
    }

    /// The client configuration for a connection of the given mesh protocol (an ALPN).
    pub fn client(&self, alpn: &[u8]) -> Arc<ClientConfig> {
        match alpn {
            ALPN_H2 => self.client_h2.clone(),
            ALPN_H1 => self.client_h1.clone(),
            _ => self.client_tcp.clone(),
        }
    }
}

/// The server name a client expects: the peer's identity name.
pub fn server_name(identity: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(identity.to_string()).ok()
}

/// The identity of a peer: the first DNS SAN of its leaf certificate.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcerts::DevCa;

    fn creds(ca: &DevCa, name: &str) -> Credentials {
        let leaf = ca.leaf(name).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).unwrap())
            .unwrap();
        Credentials {
            name: name.into(),
            chain: vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
            key: PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            roots,
        }
    }

    #[test]
    fn certificate_swaps_at_runtime_and_identity_is_read_from_san() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = DevCa::new().unwrap();
        let name = "web.default.serviceaccount.identity.tulle.cluster.local";
        let tls = Tls::new(creds(&ca, name)).unwrap();
        let before = tls.store.get().unwrap();
        assert_eq!(peer_identity(Some(&before.cert)).as_deref(), Some(name));
        tls.store.update(creds(&ca, name)).unwrap();
        let after = ResolvesClientCert::resolve(tls.store.as_ref(), &[], &[]).unwrap();
        assert_ne!(
            before.cert[0], after.cert[0],
            "new handshakes use the renewed certificate"
        );
        // A key that does not match the certificate is refused and the old one stays.
        let mut bad = creds(&ca, name);
        bad.key = creds(&ca, name).key;
        assert!(tls.store.update(bad).is_err());
        assert_eq!(tls.store.get().unwrap().cert[0], after.cert[0]);
    }
}
