//! The proxy's certificate from tulle-identity.
//!
//! The proxy makes a P-256 key in memory, sends a CSR for its name (DNS SAN) and SPIFFE ID
//! (URI SAN) with its projected ServiceAccount token to `Identity/Certify` over TLS verified
//! against the trust anchors, and installs the answer in the [`IdentityStore`]. It renews
//! at 70 % of the lifetime; failures, and answers that do not validate (expired, not chaining
//! to the anchors, naming another identity), are retried with exponential backoff while the
//! current certificate keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tonic::transport::Channel;
use tulle_api::ServiceAccountIdentity;
use tulle_api::certify::{CertifyError, certify, renew_after};
use tulle_api::identity::identity_client::IdentityClient;

use crate::config::ControlService;
use crate::control::backoff::Backoff;
use crate::tls::IdentityStore;

/// The identity client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "identity name {0}; set TULLE_PROXY_IDENTITY_NAME to the ServiceAccount identity of this pod"
    )]
    Name(tulle_api::names::NameError),
    #[error("{0} (TULLE_PROXY_IDENTITY_SVC_ADDR / TULLE_PROXY_IDENTITY_SVC_NAME)")]
    Channel(tulle_api::tls::ChannelError),
}

/// One attempt to get a certificate failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(
        "reading the ServiceAccount token {path}: {source}; check the projected token volume is mounted"
    )]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Certify(#[from] CertifyError),
    #[error("no answer from the identity service within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Invalid(crate::tls::IdentityError),
}

/// Retry and timeout settings.
#[derive(Debug, Clone)]
pub struct Timing {
    pub request_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            request_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// A client of tulle-identity keeping the proxy's certificate current.
#[derive(Debug)]
pub struct Certifier {
    client: IdentityClient<Channel>,
    id: ServiceAccountIdentity,
    token_file: PathBuf,
    timing: Timing,
}

impl Certifier {
    /// Prepares a client for `svc` (the connection is made lazily).
    pub fn new(
        svc: &ControlService,
        name: &str,
        token_file: PathBuf,
        tls: Arc<rustls::ClientConfig>,
        timing: Timing,
    ) -> Result<Self, SetupError> {
        let id = ServiceAccountIdentity::parse_dns_name(name).map_err(SetupError::Name)?;
        let cfg = tls;
        let channel =
            tulle_api::tls::channel(&svc.addr, &svc.name, cfg).map_err(SetupError::Channel)?;
        Ok(Certifier {
            client: IdentityClient::new(channel),
            id,
            token_file,
            timing,
        })
    }

    async fn attempt(&mut self) -> Result<tulle_api::certify::Certified, AttemptError> {
        // Projected tokens rotate: read the file on every attempt.
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|source| AttemptError::Token {
                path: self.token_file.clone(),
                source,
            })?;
        let t = self.timing.request_timeout;
        tokio::time::timeout(t, certify(&mut self.client, &self.id, &token))
            .await
            .map_err(|_| AttemptError::Timeout(t))?
            .map_err(AttemptError::from)
    }

    /// Gets a certificate, installs it, and renews it forever. Returns never; abort the
    /// task to stop.
    pub async fn run(mut self, store: Arc<IdentityStore>) {
        let mut backoff = Backoff::new(self.timing.backoff_min, self.timing.backoff_max);
        loop {
            let attempt = self.attempt().await.and_then(|c| {
                // Never install what does not verify: keep the current certificate.
                store
                    .install_validated(c.key.clone(), SystemTime::now())
                    .map(|_| c)
                    .map_err(AttemptError::Invalid)
            });
            match attempt {
                Ok(c) => {
                    backoff.reset();
                    let wait = renew_after(c.valid_until);
                    let until = c
                        .valid_until
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or_default();
                    tracing::info!(identity = %self.id.dns_name(), valid_until_unix = until, renew_in = ?wait, "certificate installed");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(identity = %self.id.dns_name(), retry_in = ?wait, has_cert = store.has_cert(), "getting a certificate failed: {e}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
