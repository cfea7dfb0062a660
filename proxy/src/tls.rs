//! Mesh TLS: the proxy's certificate (its mesh identity), the trust anchors and the TLS
//! configurations.
//!
//! The certificate lives in a swappable [`IdentityStore`]; rustls asks it for the current
//! certificate on every handshake (`ResolvesServerCert` / `ResolvesClientCert`), so a renewed
//! certificate applies to new connections while established ones continue undisturbed.
//! Where credentials come from is a [`CredentialSource`] (files in development and tests; the identity
//! service client, `control::identity`, calls [`IdentityStore::update`]).

use crate::config::TrustAnchors;
use crate::trust::Anchors;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

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
    #[error(transparent)]
    Verifier(#[from] crate::trust::VerifierError),
    #[error("refusing the certificate for {name}: {reason}")]
    Invalid { name: String, reason: String },
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
    /// The installed leaf's notAfter (when it parses).
    not_after: RwLock<Option<SystemTime>>,
    provider: Arc<CryptoProvider>,
    /// Checks a received leaf against the (current) trust anchors.
    anchors: Arc<Anchors>,
}

/// A leaf's validity period.
fn leaf_validity(leaf: &CertificateDer<'_>) -> Option<(SystemTime, SystemTime)> {
    let (_, x) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let t = |ts: i64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(ts).ok()?));
    let v = x.validity();
    Some((t(v.not_before.timestamp())?, t(v.not_after.timestamp())?))
}

/// `t` as seconds since the Unix epoch, for messages.
fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
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

    /// Installs an already certified key for new handshakes, unchecked (see
    /// [`IdentityStore::install_validated`] for what the identity service sends).
    pub fn install(&self, key: Arc<CertifiedKey>) {
        let not_after = key.cert.first().and_then(leaf_validity).map(|(_, na)| na);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
        *self.not_after.write().unwrap_or_else(|e| e.into_inner()) = not_after;
    }

    /// Checks a certificate received from the identity service at `now`: the leaf parses,
    /// is within its validity period, names this proxy's identity, and chains to the trust
    /// anchors through the intermediates sent with it. Returns its notAfter.
    pub fn validate(
        &self,
        key: &CertifiedKey,
        now: SystemTime,
    ) -> Result<SystemTime, IdentityError> {
        let invalid = |reason: String| IdentityError::Invalid {
            name: self.name.clone(),
            reason,
        };
        let leaf = key
            .cert
            .first()
            .ok_or_else(|| invalid("the answer holds no certificate".into()))?;
        let (not_before, not_after) = leaf_validity(leaf)
            .ok_or_else(|| invalid("the leaf does not parse as an X.509 certificate".into()))?;
        if not_after <= not_before {
            return Err(invalid(format!(
                "the leaf's notAfter ({} s since the epoch) is not after its notBefore ({}); \
                 the identity service's issuer has probably expired",
                unix(not_after),
                unix(not_before)
            )));
        }
        if now >= not_after {
            return Err(invalid(format!(
                "the leaf expired at {} s since the epoch (now {}); the identity service's \
                 issuer has probably expired",
                unix(not_after),
                unix(now)
            )));
        }
        if now < not_before {
            return Err(invalid(format!(
                "the leaf is not valid before {} s since the epoch (now {}); check the clocks",
                unix(not_before),
                unix(now)
            )));
        }
        match peer_identity(Some(&key.cert)) {
            Some(n) if n == self.name.to_ascii_lowercase() => {}
            other => {
                return Err(invalid(format!(
                    "the leaf names {:?}, not this proxy's identity",
                    other.unwrap_or_default()
                )));
            }
        }
        let server_name = server_name(&self.name)
            .ok_or_else(|| invalid("the identity is not a valid DNS name".into()))?;
        self.anchors
            .server()
            .verify_server_cert(
                leaf,
                &key.cert[1..],
                &server_name,
                &[],
                UnixTime::since_unix_epoch(Duration::from_secs(unix(now))),
            )
            .map_err(|e| {
                invalid(format!(
                    "the leaf does not verify against the trust anchors: {e}"
                ))
            })?;
        Ok(not_after)
    }

    /// Validates (see [`IdentityStore::validate`]) and installs a certificate from the
    /// identity service; a refused one leaves the current certificate in place.
    pub fn install_validated(
        &self,
        key: Arc<CertifiedKey>,
        now: SystemTime,
    ) -> Result<SystemTime, IdentityError> {
        let not_after = self.validate(&key, now)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
        *self.not_after.write().unwrap_or_else(|e| e.into_inner()) = Some(not_after);
        Ok(not_after)
    }

    /// Why the proxy cannot serve mTLS at `now`: no certificate yet, or the installed one
    /// has expired. `None` when it can.
    pub fn not_ready_reason(&self, now: SystemTime) -> Option<String> {
        if !self.has_cert() {
            return Some("no certificate yet from the identity service".into());
        }
        let not_after = *self.not_after.read().unwrap_or_else(|e| e.into_inner());
        match not_after {
            Some(na) if now >= na => Some(format!(
                "the certificate expired at {} s since the epoch and no valid renewal was \
                 received (is tulle-identity's issuer expired? see its /ready)",
                unix(na)
            )),
            _ => None,
        }
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
    /// The trust anchors, replaceable at runtime ([`crate::trust::watch_file`]).
    pub anchors: Arc<Anchors>,
    /// For the identity service, before the proxy has a certificate: server auth only.
    identity: Arc<ClientConfig>,
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
        let anchors = Anchors::new(roots, provider.clone())?;
        let store = Arc::new(IdentityStore {
            name,
            current: RwLock::new(None),
            not_after: RwLock::new(None),
            provider: provider.clone(),
            anchors: anchors.clone(),
        });
        // Both verifiers read the current anchors on every handshake (crate::trust), so the
        // configurations are built once and a reload needs no rebuild.
        let client_verifier = anchors.client_verifier();
        let server_verifier = anchors.server_verifier();
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| crate::trust::VerifierError(e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(store.clone());
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_TCP.to_vec(), ALPN_H1.to_vec()];
        server.max_early_data_size = 0;

        let client = |alpn: &[u8]| -> Result<Arc<ClientConfig>, IdentityError> {
            let mut c = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| crate::trust::VerifierError(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(server_verifier.clone())
                .with_client_cert_resolver(store.clone());
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        let mut control = (*client(b"h2")?).clone();
        control.alpn_protocols = vec![b"h2".to_vec()];
        let mut identity = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| crate::trust::VerifierError(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier.clone())
            .with_no_client_auth();
        identity.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tls {
            anchors,
            identity: Arc::new(identity),
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

    /// The client configuration for the identity service (ALPN h2, no client certificate):
    /// verifies the server against the current trust anchors.
    pub fn identity_client(&self) -> Arc<ClientConfig> {
        self.identity.clone()
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

    #[test]
    fn received_certificates_are_validated_before_install() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = DevCa::new().unwrap();
        let name = "web.default.serviceaccount.identity.tulle.cluster.local";
        let tls = Tls::pending(name.into(), creds(&ca, name).roots).unwrap();
        let store = &tls.store;
        let ck = |c: Credentials| Arc::new(IdentityStore::certified(&store.provider, c).unwrap());
        let now = SystemTime::now();
        let reason = store.not_ready_reason(now).unwrap();
        assert!(reason.contains("no certificate"), "{reason}");

        let good = ck(creds(&ca, name));
        store.install_validated(good.clone(), now).unwrap();
        assert_eq!(store.not_ready_reason(now), None);

        // Another identity, another CA, outside the validity period: refused, and the
        // installed certificate stays.
        let other_name = "db.default.serviceaccount.identity.tulle.cluster.local";
        let e = store
            .install_validated(ck(creds(&ca, other_name)), now)
            .unwrap_err();
        assert!(e.to_string().contains("not this proxy's identity"), "{e}");
        let other = DevCa::new().unwrap();
        let e = store
            .install_validated(ck(creds(&other, name)), now)
            .unwrap_err();
        assert!(e.to_string().contains("trust anchors"), "{e}");
        // rcgen's default validity is 1975-01-01 to 4096-01-01.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(2200 * 365 * 86_400);
        let e = store
            .install_validated(ck(creds(&ca, name)), far)
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        let e = store
            .install_validated(ck(creds(&ca, name)), early)
            .unwrap_err();
        assert!(e.to_string().contains("not valid before"), "{e}");
        assert_eq!(store.get().unwrap().cert[0], good.cert[0]);

        // Once the installed certificate has expired the proxy is not ready, saying why.
        let reason = store.not_ready_reason(far).unwrap();
        assert!(reason.contains("expired"), "{reason}");
    }
}
