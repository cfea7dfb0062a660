//! The issuer (intermediate CA): loaded from the mounted Secret files `tls.crt` and
//! `tls.key`, validated, hot-reloaded when the files change, and used to sign leaves.

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio::sync::watch;
use tulle_api::ServiceAccountIdentity;

/// The issuer files could not be loaded or are not a usable intermediate CA.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// A file could not be read.
    #[error(
        "cannot read issuer file {path}: {source}; mount the issuer Secret (tls.crt, tls.key) there"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `tls.crt` holds no PEM certificate or a certificate that does not parse.
    #[error("issuer certificate is not a valid PEM X.509 certificate: {0}")]
    Certificate(String),
    /// `tls.key` holds no usable private key.
    #[error("issuer key is not a valid PEM private key (PKCS#8 or SEC1 ECDSA): {0}")]
    Key(String),
    /// The certificate is not a CA.
    #[error("issuer certificate is not a CA (basicConstraints cA=true is required)")]
    NotCa,
    /// The key does not belong to the certificate.
    #[error("issuer key does not match the public key of the issuer certificate")]
    KeyMismatch,
    /// The certificate has expired or is not yet valid.
    #[error(transparent)]
    Expired(#[from] IssuerInvalid),
}

/// The issuer certificate is outside its validity period: nothing may be signed with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssuerInvalid {
    /// `now` is at or past the issuer's notAfter.
    #[error(
        "the issuer certificate expired at {} and is outside its validity period; rotate the issuer: \
         replace the Secret tulle-identity-issuer (tls.crt, tls.key) in the identity's namespace with \
         a new intermediate CA signed by the trust anchor (it is reloaded without a restart)",
        rfc3339(*.0)
    )]
    Expired(SystemTime),
    /// `now` is before the issuer's notBefore.
    #[error(
        "the issuer certificate is not valid before {} and is outside its validity period; \
         check the clock or replace the Secret tulle-identity-issuer (tls.crt, tls.key)",
        rfc3339(*.0)
    )]
    NotYetValid(SystemTime),
}

/// Formats `t` as an RFC 3339 UTC time with second precision.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    match k8s_openapi::jiff::Timestamp::from_second(secs) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("{secs} s after the Unix epoch"),
    }
}

/// A leaf could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The certificate could not be built or signed.
    #[error("signing failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The issuer is outside its validity period.
    #[error(transparent)]
    Issuer(#[from] IssuerInvalid),
}

/// A loaded issuer.
pub struct Issuer {
    signer: rcgen::Issuer<'static, KeyPair>,
    chain: Vec<CertificateDer<'static>>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("chain_len", &self.chain.len())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A signed leaf certificate.
#[derive(Clone, Debug)]
pub struct Signed {
    /// DER of the leaf.
    pub leaf: CertificateDer<'static>,
    /// DER of the issuer chain (issuer first).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's notAfter.
    pub not_after: SystemTime,
}

impl Issuer {
    /// Builds an issuer from PEM text: `cert_pem` may hold the issuer followed by further
    /// intermediates; `key_pem` holds the issuer's private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], now: SystemTime) -> Result<Self, IssuerError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IssuerError::Certificate(e.to_string()))?;
        let first = chain
            .first()
            .ok_or_else(|| IssuerError::Certificate("no CERTIFICATE block found".into()))?;
        let (_, x509) = x509_parser::parse_x509_certificate(first)
            .map_err(|e| IssuerError::Certificate(e.to_string()))?;
        if !x509.is_ca() {
            return Err(IssuerError::NotCa);
        }
        let not_before = asn1_to_system(x509.validity().not_before.timestamp());
        let not_after = asn1_to_system(x509.validity().not_after.timestamp());
        validity(not_before, not_after, now)?;
        let key_der =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| IssuerError::Key(e.to_string()))?;
        let key = KeyPair::try_from(&key_der).map_err(|e| IssuerError::Key(e.to_string()))?;
        if key.public_key_raw() != &x509.public_key().subject_public_key.data[..] {
            return Err(IssuerError::KeyMismatch);
        }
        let signer = rcgen::Issuer::from_ca_cert_der(first, key)
            .map_err(|e| IssuerError::Certificate(e.to_string()))?;
        Ok(Self {
            signer,
            chain,
            not_before,
            not_after,
        })
    }

    /// Reads `tls.crt` and `tls.key` from `dir`.
    pub fn load_dir(dir: &Path, now: SystemTime) -> Result<Self, IssuerError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| IssuerError::Read { path, source })
        };
        Self::from_pem(&read("tls.crt")?, &read("tls.key")?, now)
    }

    /// The issuer's notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The issuer's notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Whether the issuer may sign at `now`: an error saying why not once it has expired
    /// (or before it is valid).
    pub fn check_valid(&self, now: SystemTime) -> Result<(), IssuerInvalid> {
        validity(self.not_before, self.not_after, now)
    }

    /// The issuer chain, issuer first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Signs a leaf for `id` with `public_key` (from a validated CSR), valid from
    /// `now - skew` (but not before the issuer's notBefore) for `lifetime` (but never past
    /// the issuer's own notAfter). Refuses while the issuer is outside its validity period,
    /// so a leaf's notAfter is never before its notBefore.
    pub fn sign(
        &self,
        public_key: &impl PublicKeyData,
        id: &ServiceAccountIdentity,
        now: SystemTime,
        lifetime: Duration,
        skew: Duration,
    ) -> Result<Signed, SignError> {
        self.check_valid(now)?;
        let not_after = (now + lifetime).min(self.not_after);
        let not_before = now.checked_sub(skew).unwrap_or(now).max(self.not_before);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, id.dns_name());
        params.subject_alt_names = vec![
            SanType::DnsName(id.dns_name().try_into()?),
            SanType::URI(id.spiffe_uri().try_into()?),
        ];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(public_key, &self.signer)?;
        Ok(Signed {
            leaf: cert.der().clone(),
            chain: self.chain.clone(),
            not_after: truncate_secs(not_after),
        })
    }
}

fn validity(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
) -> Result<(), IssuerInvalid> {
    if now >= not_after {
        Err(IssuerInvalid::Expired(not_after))
    } else if now < not_before {
        Err(IssuerInvalid::NotYetValid(not_before))
    } else {
        Ok(())
    }
}

fn asn1_to_system(ts: i64) -> SystemTime {
    if ts >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// X.509 times have second precision.
fn truncate_secs(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// The current issuer, shared between the gRPC service and the reloader.
pub type IssuerRx = watch::Receiver<Option<Arc<Issuer>>>;

/// What the reloader saw on disk last time: modification times and sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint(Vec<Option<(SystemTime, u64)>>);

fn fingerprint(dir: &Path) -> Fingerprint {
    Fingerprint(
        ["tls.crt", "tls.key"]
            .iter()
            .map(|n| {
                std::fs::metadata(dir.join(n))
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect(),
    )
}

/// Watches `dir` by polling file metadata every `interval` and publishes each issuer that
/// loads and validates. A bad update keeps the previous issuer and is reported through
/// `on_error`.
#[derive(Debug)]
pub struct Reloader {
    dir: PathBuf,
    interval: Duration,
    tx: watch::Sender<Option<Arc<Issuer>>>,
}

impl Reloader {
    /// A reloader for `dir` and the receiver of its issuers (None until the first load).
    pub fn new(dir: PathBuf, interval: Duration) -> (Self, IssuerRx) {
        let (tx, rx) = watch::channel(None);
        (Self { dir, interval, tx }, rx)
    }

    /// Loads the issuer if the files changed since `last`; returns the new fingerprint.
    fn poll(
        &self,
        last: Option<&Fingerprint>,
        on_error: &mut impl FnMut(&IssuerError),
    ) -> Option<Fingerprint> {
        let fp = fingerprint(&self.dir);
        if last == Some(&fp) {
            return Some(fp);
        }
        match Issuer::load_dir(&self.dir, SystemTime::now()) {
            Ok(issuer) => {
                tracing::info!(dir = %self.dir.display(), "issuer loaded");
                self.tx.send_replace(Some(Arc::new(issuer)));
                Some(fp)
            }
            Err(e) => {
                on_error(&e);
                // Retry on the next tick even if nothing changes (e.g. a half-written pair).
                None
            }
        }
    }

    /// Runs until every receiver is dropped.
    pub async fn run(self, mut on_error: impl FnMut(&IssuerError) + Send) {
        let mut last: Option<Fingerprint> = None;
        let mut last_err: Option<String> = None;
        loop {
            let mut report = |e: &IssuerError| {
                let msg = e.to_string();
                if last_err.as_deref() != Some(&msg) {
                    tracing::warn!(error = %e, "issuer not (re)loaded; keeping the previous one if any");
                    last_err = Some(msg);
                }
                on_error(e);
            };
            let next = self.poll(last.as_ref(), &mut report);
            if next.is_some() && next != last {
                last_err = None;
            }
            last = next;
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = self.tx.closed() => return,
            }
        }
    }
}
