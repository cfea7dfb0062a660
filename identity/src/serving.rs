//! The identity service's own serving certificate: issued from the current issuer at
//! start (for its own identity, e.g.
//! `tulle-identity.tulle-system.serviceaccount.identity.tulle.cluster.local`), re-issued
//! when the issuer changes or half of its lifetime has passed.

use crate::issuer::{Issuer, IssuerRx};
use rcgen::KeyPair;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};
use tulle_api::{ServiceAccountIdentity, certify::SwappableCert};

/// Lifetime of the serving certificate.
const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The serving certificate, held in the swappable resolver that the Certify clients use too.
#[derive(Debug, Default)]
pub struct ServingCert {
    cert: Arc<SwappableCert>,
}

/// Serving certificate errors.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// Key generation or signing failed.
    #[error("cannot issue the serving certificate: {0}")]
    Issue(String),
}

impl ServingCert {
    /// Issues a fresh certificate for `id` from `issuer` and installs it.
    pub fn issue(
        &self,
        issuer: &Issuer,
        id: &ServiceAccountIdentity,
    ) -> Result<SystemTime, ServingError> {
        let err = |e: &dyn std::fmt::Display| ServingError::Issue(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| err(&e))?;
        let signed = issuer
            .sign(
                &key,
                id,
                SystemTime::now(),
                LIFETIME,
                Duration::from_secs(60),
            )
            .map_err(|e| err(&e))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing =
            rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&key_der).map_err(|e| err(&e))?;
        let mut chain = vec![signed.leaf];
        chain.extend(signed.chain);
        self.cert.set(Arc::new(CertifiedKey::new(chain, signing)));
        Ok(signed.not_after)
    }

    /// Whether a certificate is installed.
    pub fn is_ready(&self) -> bool {
        self.cert.is_ready()
    }

    /// Keeps the certificate current: issues on every issuer change and when half of its
    /// lifetime has passed. Runs until the issuer channel closes.
    pub async fn maintain(self: Arc<Self>, mut issuer: IssuerRx, id: ServiceAccountIdentity) {
        loop {
            let current = issuer.borrow_and_update().clone();
            let mut wait = Duration::from_secs(30);
            if let Some(iss) = current {
                match self.issue(&iss, &id) {
                    Ok(not_after) => {
                        tracing::info!(identity = %id, "serving certificate issued");
                        let left = not_after
                            .duration_since(SystemTime::now())
                            .unwrap_or_default();
                        wait = (left / 2).max(Duration::from_secs(30));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "serving certificate not issued; retrying")
                    }
                }
            }
            tokio::select! {
                r = issuer.changed() => if r.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A rustls server config that serves this certificate (h2 ALPN, no client auth).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        self.cert.server_config()
    }

    /// The same with required client certificates chaining to `roots` (for tests that stand
    /// a controller up with a directly issued certificate).
    pub fn mtls_server_config(
        &self,
        roots: rustls::RootCertStore,
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        self.cert.mtls_server_config(roots)
    }
}
