//! The webhook's serving certificate, with no I/O: a self-signed CA (10 years) signs a serving
//! certificate (1 year) for the webhook Service. [`plan`] decides what to renew; [`rotate`]
//! does it. A new CA keeps the previous one in the bundle while it is still valid, so that
//! certificates of replicas not yet switched stay trusted.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::time::{Duration, SystemTime};

/// Lifetime of the webhook CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of the serving certificate.
pub const CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Renew when this close to expiry.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Backdating against clock skew between the controller and the API server.
const SKEW: Duration = Duration::from_secs(300);

/// The webhook's TLS material, as PEM text (the data of Secret `tulle-webhook-tls`).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTls {
    /// `ca.crt`: the current CA first, then older CAs still valid (the webhook's `caBundle`).
    pub ca_bundle: String,
    /// `ca.key`: the current CA's key.
    pub ca_key: String,
    /// `tls.crt`: the serving certificate.
    pub cert: String,
    /// `tls.key`: its key.
    pub key: String,
}

impl std::fmt::Debug for WebhookTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTls")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// The webhook TLS material cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A certificate could not be parsed.
    #[error(
        "cannot parse the {what} certificate: {reason}; delete Secret tulle-webhook-tls to regenerate it"
    )]
    Parse {
        /// Which one.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// rcgen failed.
    #[error("cannot generate the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What to do with the stored material.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Valid for the right names and more than [`RENEW_BEFORE`] from expiry.
    Keep,
    /// The serving certificate expires soon or names the wrong Service: re-issue it.
    RenewCert,
    /// Nothing usable, or the CA expires soon: make a new CA and certificate.
    NewCa,
}

/// Decides what to do with `stored` (None: there is none) for `dns_names` at `now`.
pub fn plan(stored: Option<&WebhookTls>, dns_names: &[String], now: SystemTime) -> Plan {
    let Some(s) = stored else {
        return Plan::NewCa;
    };
    let (Ok(ca), Ok(cert)) = (
        Info::parse(first_cert(&s.ca_bundle), "CA"),
        Info::parse(first_cert(&s.cert), "serving"),
    ) else {
        return Plan::NewCa;
    };
    if KeyPair::from_pem(&s.ca_key).is_err() {
        return Plan::NewCa;
    }
    if ca.expires_within(now, RENEW_BEFORE) {
        return Plan::NewCa;
    }
    if KeyPair::from_pem(&s.key).is_err()
        || cert.expires_within(now, RENEW_BEFORE)
        || now < cert.not_before
        || !dns_names.iter().all(|n| cert.dns_names.contains(n))
    {
        return Plan::RenewCert;
    }
    Plan::Keep
}

/// Applies `plan` to `stored`, returning the new material (or `stored` for [`Plan::Keep`]).
pub fn rotate(
    stored: Option<&WebhookTls>,
    plan: Plan,
    dns_names: &[String],
    now: SystemTime,
) -> Result<WebhookTls, CertError> {
    match (plan, stored) {
        (Plan::Keep, Some(s)) => Ok(s.clone()),
        (Plan::RenewCert, Some(s)) => {
            let (cert, key) = issue(&s.ca_bundle, &s.ca_key, dns_names, now)?;
            Ok(WebhookTls {
                cert,
                key,
                ..s.clone()
            })
        }
        _ => {
            let (ca_cert, ca_key) = new_ca(now)?;
            let (cert, key) = issue(&ca_cert, &ca_key, dns_names, now)?;
            // Keep the previous CA in the bundle while it is valid.
            let mut ca_bundle = ca_cert;
            if let Some(prev) = stored.map(|s| first_cert(&s.ca_bundle))
                && Info::parse(prev, "CA").is_ok_and(|i| i.not_after > now)
            {
                ca_bundle.push_str(&pem(prev));
            }
            Ok(WebhookTls {
                ca_bundle,
                ca_key,
                cert,
                key,
            })
        }
    }
}

/// Whether `current` (the caBundle an API object holds) comes from a newer CA than `mine`: its
/// first (current) CA was issued after ours. Then a replica holding `mine` must not write it:
/// replicas share the Secret but re-read it only every minute ([`crate::webhook::store`]), so
/// right after another replica rotated the CA one may still hold the previous bundle; putting
/// it back would drop the new CA while the replica that rotated serves a certificate it signed,
/// and the replicas would undo each other's patches until they agree. A rotation keeps the
/// previous CA in the new bundle, so the stale replica's certificate stays trusted meanwhile.
/// Either bundle unreadable: not newer (the object is repaired, as before).
pub fn supersedes(current: &[u8], mine: &str) -> bool {
    let first_ca = |pem: &str| Info::parse(first_cert(pem), "CA").map(|i| i.not_before);
    match (std::str::from_utf8(current).map(first_ca), first_ca(mine)) {
        (Ok(Ok(theirs)), Ok(ours)) => theirs > ours,
        _ => false,
    }
}

/// The serving certificate's notAfter.
pub fn cert_not_after(tls: &WebhookTls) -> Result<SystemTime, CertError> {
    Ok(Info::parse(first_cert(&tls.cert), "serving")?.not_after)
}

/// The DNS names the API server may use for the webhook Service.
pub fn service_dns_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

fn new_ca(now: SystemTime) -> Result<(String, String), CertError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, "tulle webhook CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = (now - SKEW).into();
    p.not_after = (now + CA_VALIDITY).into();
    let cert = p.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue(
    ca_pem: &str,
    ca_key_pem: &str,
    dns_names: &[String],
    now: SystemTime,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let ca_der = CertificateDer::from_pem_slice(first_cert(ca_pem).as_bytes()).map_err(|e| {
        CertError::Parse {
            what: "CA",
            reason: e.to_string(),
        }
    })?;
    let ca_not_after = Info::parse(first_cert(ca_pem), "CA")?.not_after;
    let signer = rcgen::Issuer::from_ca_cert_der(&ca_der, ca_key)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().cloned().unwrap_or_default(),
    );
    p.subject_alt_names = dns_names
        .iter()
        .map(|n| Ok(SanType::DnsName(n.clone().try_into()?)))
        .collect::<Result<_, rcgen::Error>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = (now - SKEW).into();
    p.not_after = (now + CERT_VALIDITY).min(ca_not_after).into();
    let cert = p.signed_by(&key, &signer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The first PEM block of `pem` (its text, trimmed).
fn first_cert(pem: &str) -> &str {
    const END: &str = "-----END CERTIFICATE-----";
    match pem.find(END) {
        Some(i) => pem[..i + END.len()].trim(),
        None => pem.trim(),
    }
}

fn pem(block: &str) -> String {
    format!("{}\n", block.trim())
}

struct Info {
    not_before: SystemTime,
    not_after: SystemTime,
    dns_names: Vec<String>,
}

impl Info {
    fn parse(pem: &str, what: &'static str) -> Result<Self, CertError> {
        let err = |reason: String| CertError::Parse { what, reason };
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| err(e.to_string()))?;
        let (_, x) = x509_parser::parse_x509_certificate(&der).map_err(|e| err(e.to_string()))?;
        let t = |ts: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(ts.max(0).unsigned_abs());
        let dns_names = x
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|g| match g {
                        x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Info {
            not_before: t(x.validity().not_before.timestamp()),
            not_after: t(x.validity().not_after.timestamp()),
            dns_names,
        })
    }

    fn expires_within(&self, now: SystemTime, d: Duration) -> bool {
        self.not_after <= now + d
    }
}

#[cfg(test)]
mod tests;
