//! Zero-touch PKI: generate a trust anchor (root CA) and an issuer (intermediate CA signed by
//! the root), or load and validate the user's own files.
//!
//! Generated keys are ECDSA P-256. The root's private key is not kept: only its certificate is
//! published (the trust anchors ConfigMap); the issuer's certificate and key go to the issuer
//! Secret that tulle-identity mounts.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// The PEM texts the manifests carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pki {
    /// One or more root CA certificates.
    pub trust_anchors_pem: String,
    /// The issuer certificate, optionally followed by further intermediates.
    pub issuer_cert_pem: String,
    /// The issuer's private key.
    pub issuer_key_pem: String,
}

/// User-supplied PKI files.
#[derive(Clone, Debug)]
pub struct PkiFiles {
    /// `--identity-trust-anchors-file`.
    pub trust_anchors: PathBuf,
    /// `--identity-issuer-certificate-file`.
    pub issuer_cert: PathBuf,
    /// `--identity-issuer-key-file`.
    pub issuer_key: PathBuf,
}

/// Why the PKI is unusable. Every variant about a file names it.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no certificate, or one that does not parse.
    #[error("{path}: not a PEM X.509 certificate file: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file holds no usable private key.
    #[error("{path}: not a usable PEM private key (PKCS#8, SEC1 EC or PKCS#1 RSA): {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate that must be a CA is not one.
    #[error("{path}: certificate {subject:?} is not a CA (basicConstraints cA=true is required)")]
    NotCa {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate is outside its validity period.
    #[error("{path}: certificate {subject:?} is not valid now (valid {not_before} to {not_after})")]
    Expired {
        /// The file.
        path: PathBuf,
        /// The certificate's subject.
        subject: String,
        /// notBefore (RFC 2822).
        not_before: String,
        /// notAfter (RFC 2822).
        not_after: String,
    },
    /// The key does not belong to the issuer certificate.
    #[error("{key}: the private key does not match the issuer certificate in {cert}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The issuer does not chain to any anchor.
    #[error(
        "{cert}: the issuer certificate does not chain to any trust anchor in {anchors}: {reason}"
    )]
    Chain {
        /// The issuer certificate file.
        cert: PathBuf,
        /// The anchors file.
        anchors: PathBuf,
        /// The verifier's reason.
        reason: String,
    },
    /// The issuer would outlive the trust anchor it chains to.
    #[error(
        "{cert}: the issuer certificate {detail}; proxies would reject its leaves once the \
         anchor expires: issue an issuer that expires before its root"
    )]
    OutlivesRoot {
        /// The issuer certificate file.
        cert: PathBuf,
        /// Which issuer expires when, after which anchor in which file.
        detail: String,
    },
    /// Generation failed (a bug or an rcgen limitation).
    #[error("cannot generate the identity PKI: {0}")]
    Generate(String),
}

/// A generated root lives this many times as long as its issuer (10 years for the default
/// 1-year issuer), so the issuer can be rotated several times under the same trust anchor.
pub const ROOT_LIFETIME_FACTOR: u32 = 10;

/// Generates a root CA and an issuer signed by it, both valid from `now - 5 min`: the issuer
/// for `validity`, the root for [`ROOT_LIFETIME_FACTOR`] times as long.
pub fn generate(trust_domain: &str, validity: Duration, now: SystemTime) -> Result<Pki, PkiError> {
    let gen_err = |e: rcgen::Error| PkiError::Generate(e.to_string());
    let not_before = now - Duration::from_secs(300);
    let not_after = now + validity;
    let root_not_after = now + validity * ROOT_LIFETIME_FACTOR;

    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let root_params = ca_params(
        &format!("root.tulle.{trust_domain}"),
        1,
        not_before,
        root_not_after,
    );
    let root_cert = root_params.self_signed(&root_key).map_err(gen_err)?;
    let root = rcgen::Issuer::new(root_params, root_key);

    let issuer_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let issuer_params = ca_params(
        &format!("identity.tulle.{trust_domain}"),
        0,
        not_before,
        not_after,
    );
    let issuer_cert = issuer_params
        .signed_by(&issuer_key, &root)
        .map_err(gen_err)?;

    Ok(Pki {
        trust_anchors_pem: root_cert.pem(),
        issuer_cert_pem: issuer_cert.pem(),
        issuer_key_pem: issuer_key.serialize_pem(),
    })
}

fn ca_params(
    cn: &str,
    path_len: u8,
    not_before: SystemTime,
    not_after: SystemTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = not_before.into();
    p.not_after = not_after.into();
    p.use_authority_key_identifier_extension = true;
    p
}

/// Reads the user's files and validates them (see [`validate`]); the PEM texts are used
/// verbatim.
pub fn load(files: &PkiFiles, now: SystemTime) -> Result<Pki, PkiError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| PkiError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let pki = Pki {
        trust_anchors_pem: read(&files.trust_anchors)?,
        issuer_cert_pem: read(&files.issuer_cert)?,
        issuer_key_pem: read(&files.issuer_key)?,
    };
    validate(&pki, files, now)?;
    Ok(pki)
}

/// Checks that every anchor is a CA valid now; that the issuer is a CA valid now whose key
/// matches; and that a leaf signed by the issuer verifies against the anchors (through the
/// intermediates in the issuer file), exactly as proxies will verify their peers. `names`
/// gives the file names used in error messages.
pub fn validate(pki: &Pki, names: &PkiFiles, now: SystemTime) -> Result<(), PkiError> {
    let anchors = certs(&pki.trust_anchors_pem, &names.trust_anchors)?;
    for der in &anchors {
        check_ca(der, &names.trust_anchors, now)?;
    }
    let chain = certs(&pki.issuer_cert_pem, &names.issuer_cert)?;
    check_ca(&chain[0], &names.issuer_cert, now)?;

    let key_err = |reason: String| PkiError::Key {
        path: names.issuer_key.clone(),
        reason,
    };
    let key_der = PrivateKeyDer::from_pem_slice(pki.issuer_key_pem.as_bytes())
        .map_err(|e| key_err(e.to_string()))?;
    let key = KeyPair::try_from(&key_der).map_err(|e| key_err(e.to_string()))?;
    let (_, issuer_x509) =
        x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| PkiError::Certificate {
            path: names.issuer_cert.clone(),
            reason: e.to_string(),
        })?;
    if key.public_key_raw() != &issuer_x509.public_key().subject_public_key.data[..] {
        return Err(PkiError::KeyMismatch {
            key: names.issuer_key.clone(),
            cert: names.issuer_cert.clone(),
        });
    }

    // A throwaway leaf, signed the way tulle-identity signs, must verify against the anchors.
    let chain_err = |reason: String| PkiError::Chain {
        cert: names.issuer_cert.clone(),
        anchors: names.trust_anchors.clone(),
        reason,
    };
    let signer =
        rcgen::Issuer::from_ca_cert_der(&chain[0], key).map_err(|e| chain_err(e.to_string()))?;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::DnsName(
        "check.tulle.serviceaccount.identity.tulle.invalid"
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Generate(e.to_string()))?,
    )];
    leaf.not_before = (now - Duration::from_secs(60)).into();
    leaf.not_after = (now + Duration::from_secs(3600)).into();
    leaf.use_authority_key_identifier_extension = true;
    let leaf = leaf
        .signed_by(&leaf_key, &signer)
        .map_err(|e| chain_err(e.to_string()))?;
    let trust = anchors
        .iter()
        .map(|a| webpki::anchor_from_trusted_cert(a).map(|t| t.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Certificate {
            path: names.trust_anchors.clone(),
            reason: format!("{e:?}"),
        })?;
    let leaf_der = leaf.der().clone();
    let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| chain_err(format!("{e:?}")))?;
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &trust,
        &chain,
        UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| chain_err(format!("{e:?}")))?;
    outlives_root(&anchors, &chain, names)
}

/// Refuses an issuer whose notAfter is after that of the anchor its chain ends at (matched
/// by subject name).
fn outlives_root(
    anchors: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
    names: &PkiFiles,
) -> Result<(), PkiError> {
    fn parse<'a>(
        der: &'a CertificateDer<'static>,
        path: &Path,
    ) -> Result<x509_parser::certificate::X509Certificate<'a>, PkiError> {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| c)
            .map_err(|e| PkiError::Certificate {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }
    let issuer = parse(&chain[0], &names.issuer_cert)?;
    let top = parse(&chain[chain.len() - 1], &names.issuer_cert)?;
    for der in anchors {
        let anchor = parse(der, &names.trust_anchors)?;
        if anchor.subject().as_raw() != top.issuer().as_raw() {
            continue;
        }
        let (i, a) = (issuer.validity().not_after, anchor.validity().not_after);
        if i.timestamp() > a.timestamp() {
            return Err(PkiError::OutlivesRoot {
                cert: names.issuer_cert.clone(),
                detail: format!(
                    "{:?} expires on {}, after the trust anchor {:?} in {} that signs it (on {})",
                    issuer.subject().to_string(),
                    i.to_rfc2822().unwrap_or_default(),
                    anchor.subject().to_string(),
                    names.trust_anchors.display(),
                    a.to_rfc2822().unwrap_or_default(),
                ),
            });
        }
    }
    Ok(())
}

fn certs(pem: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let err = |reason: String| PkiError::Certificate {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn check_ca(der: &CertificateDer<'_>, path: &Path, now: SystemTime) -> Result<(), PkiError> {
    let (_, x509) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Certificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let subject = x509.subject().to_string();
    if !x509.is_ca() {
        return Err(PkiError::NotCa {
            path: path.to_path_buf(),
            subject,
        });
    }
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let v = x509.validity();
    if secs < v.not_before.timestamp() || secs >= v.not_after.timestamp() {
        return Err(PkiError::Expired {
            path: path.to_path_buf(),
            subject,
            not_before: v.not_before.to_rfc2822().unwrap_or_default(),
            not_after: v.not_after.to_rfc2822().unwrap_or_default(),
        });
    }
    Ok(())
}

/// The notAfter of the first certificate in `pem`, for messages and tests.
pub fn not_after(pem: &str) -> Option<SystemTime> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der).ok()?;
    let t = x509.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).ok()?))
}
