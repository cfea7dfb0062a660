//! The `tulle.identity.Identity/Certify` gRPC service.

use crate::{
    csr,
    events::EventSink,
    issuer::IssuerRx,
    limits::{self, CertifyLimits, PeerRateLimiter},
    metrics::Metrics,
    token::{TokenError, TokenReviewer},
};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};
use tonic::{Request, Response, Status};
use tulle_api::{
    ServiceAccountIdentity,
    identity::{CertifyRequest, CertifyResponse, identity_server},
};

/// The largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// The largest gRPC request accepted, in bytes (token + CSR + name, with room to spare).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Settings of the Certify service.
#[derive(Clone, Debug)]
pub struct CertifyConfig {
    /// Trust domain identities must end in.
    pub trust_domain: String,
    /// Token audience required.
    pub audience: String,
    /// Leaf lifetime.
    pub lifetime: Duration,
    /// Backdating of notBefore for clock skew.
    pub clock_skew: Duration,
}

/// The Certify service, generic over token review and event reporting.
pub struct Certify<T, E> {
    config: CertifyConfig,
    issuer: IssuerRx,
    reviewer: Arc<T>,
    events: Arc<E>,
    metrics: Metrics,
    limits: CertifyLimits,
    peers: Arc<PeerRateLimiter>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl<T, E> std::fmt::Debug for Certify<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certify")
            .field("config", &self.config)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A refusal: the gRPC status plus a metric reason.
struct Refusal {
    reason: &'static str,
    status: Status,
}

fn refuse(reason: &'static str, status: Status) -> Refusal {
    Refusal { reason, status }
}

impl<T: TokenReviewer, E: EventSink> Certify<T, E> {
    /// Builds the service.
    pub fn new(
        config: CertifyConfig,
        issuer: IssuerRx,
        reviewer: T,
        events: E,
        metrics: Metrics,
    ) -> Self {
        let limits = CertifyLimits::default();
        Self {
            config,
            issuer,
            reviewer: Arc::new(reviewer),
            events: Arc::new(events),
            metrics,
            limits,
            peers: Arc::new(PeerRateLimiter::new(
                limits.per_peer_rate,
                limits.per_peer_burst,
            )),
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1))),
        }
    }

    /// The same service with other abuse bounds.
    pub fn with_limits(mut self, limits: CertifyLimits) -> Self {
        self.limits = limits;
        self.peers = Arc::new(PeerRateLimiter::new(
            limits.per_peer_rate,
            limits.per_peer_burst,
        ));
        self.in_flight = Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1)));
        self
    }

    /// Admits a call of `peer` (unknown for in-process calls) or says why not: the peer's
    /// rate, then the calls in flight. Checked before anything else, so a flood costs
    /// neither TokenReviews nor Events.
    fn admit(
        &self,
        peer: Option<std::net::IpAddr>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        if let Some(ip) = peer
            && let Err(wait) = self.peers.check(ip, std::time::Instant::now())
        {
            return Err(refuse(
                "rate_limited",
                limits::exhausted(
                    &format!(
                        "too many Certify calls from {ip} (at most {} per second, bursts of {}); \
                         a proxy needs one a day: check for a crash-looping pod on that address",
                        self.limits.per_peer_rate, self.limits.per_peer_burst
                    ),
                    wait,
                ),
            ));
        }
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            refuse(
                "overloaded",
                limits::exhausted(
                    &format!(
                        "tulle-identity is busy ({} Certify calls in flight)",
                        self.limits.max_in_flight
                    ),
                    Duration::from_secs(1),
                ),
            )
        })
    }

    /// The tonic server for this service, with the request size limit applied.
    pub fn into_server(self) -> identity_server::IdentityServer<Self> {
        identity_server::IdentityServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    async fn certify_inner(
        &self,
        req: &CertifyRequest,
        requested: &mut Option<ServiceAccountIdentity>,
    ) -> Result<CertifyResponse, Refusal> {
        let Some(issuer) = self.issuer.borrow().clone() else {
            return Err(refuse(
                "issuer_unavailable",
                Status::unavailable("the issuer is not loaded yet; retry later"),
            ));
        };
        if let Err(e) = issuer.check_valid(SystemTime::now()) {
            return Err(refuse(
                "issuer_invalid",
                Status::failed_precondition(e.to_string()),
            ));
        }
        if req.token.len() > MAX_TOKEN_BYTES || req.identity.len() > 253 {
            return Err(refuse(
                "oversized",
                Status::invalid_argument(format!(
                    "request too large: token {} bytes (max {MAX_TOKEN_BYTES}), identity {} bytes (max 253)",
                    req.token.len(),
                    req.identity.len()
                )),
            ));
        }
        if req.certificate_signing_request.len() > csr::MAX_CSR_BYTES {
            return Err(refuse(
                "oversized",
                Status::invalid_argument(
                    csr::CsrError::TooLarge(req.certificate_signing_request.len()).to_string(),
                ),
            ));
        }
        let id = ServiceAccountIdentity::parse_dns_name(&req.identity)
            .map_err(|e| refuse("bad_identity", Status::invalid_argument(e.to_string())))?;
        if id.trust_domain != self.config.trust_domain {
            return Err(refuse(
                "bad_identity",
                Status::invalid_argument(format!(
                    "identity {} is not in trust domain {}",
                    req.identity, self.config.trust_domain
                )),
            ));
        }
        let token = std::str::from_utf8(&req.token).map_err(|_| {
            refuse(
                "token_invalid",
                Status::unauthenticated("token is not UTF-8"),
            )
        })?;
        let subject = self
            .reviewer
            .review(token, &self.config.audience)
            .await
            .map_err(|e| match e {
                TokenError::Unavailable(_) => refuse(
                    "token_review_unavailable",
                    Status::unavailable(e.to_string()),
                ),
                TokenError::Unauthenticated(_) | TokenError::NotServiceAccount(_) => {
                    refuse("token_invalid", Status::unauthenticated(e.to_string()))
                }
            })?;
        // From here on the caller is an authenticated ServiceAccount: refusals are reported
        // on that ServiceAccount (never on one the unauthenticated request named).
        *requested = Some(ServiceAccountIdentity::new(
            &subject.service_account,
            &subject.namespace,
            &self.config.trust_domain,
        ));
        if subject.namespace != id.namespace || subject.service_account != id.service_account {
            return Err(refuse(
                "name_mismatch",
                Status::permission_denied(format!(
                    "token belongs to ServiceAccount {}/{} but identity {} was requested",
                    subject.namespace, subject.service_account, req.identity
                )),
            ));
        }
        let csr = csr::validate(&req.certificate_signing_request, &id)
            .map_err(|e| refuse("bad_csr", Status::invalid_argument(e.to_string())))?;
        let signed = issuer
            .sign(
                &csr.public_key,
                &id,
                SystemTime::now(),
                self.config.lifetime,
                self.config.clock_skew,
            )
            .map_err(|e| match e {
                crate::issuer::SignError::Issuer(e) => {
                    refuse("issuer_invalid", Status::failed_precondition(e.to_string()))
                }
                e @ crate::issuer::SignError::Rcgen(_) => {
                    refuse("sign_failed", Status::internal(e.to_string()))
                }
            })?;
        Ok(CertifyResponse {
            leaf_certificate: signed.leaf.to_vec(),
            intermediate_certificates: signed.chain.iter().map(|c| c.to_vec()).collect(),
            valid_until: Some(prost_types::Timestamp::from(signed.not_after)),
        })
    }
}

#[tonic::async_trait]
impl<T: TokenReviewer, E: EventSink> identity_server::Identity for Certify<T, E> {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let peer = peer_ip(&request);
        let req = request.into_inner();
        let mut requested = None;
        let result = match self.admit(peer) {
            Ok(_permit) => self.certify_inner(&req, &mut requested).await,
            Err(r) => Err(r),
        };
        match result {
            Ok(rsp) => {
                self.metrics.issued.inc();
                tracing::info!(identity = %req.identity, "certificate issued");
                Ok(Response::new(rsp))
            }
            Err(Refusal { reason, status }) => {
                self.metrics.refused(reason);
                tracing::info!(identity = %req.identity, ?peer, reason, message = status.message(), "certify refused");
                if let Some(id) = requested {
                    self.events.issuing_failed(
                        &id.namespace,
                        &id.service_account,
                        reason,
                        status.message(),
                    );
                }
                Err(status)
            }
        }
    }
}

/// The caller's IP address: from the TLS connection, or the plain TCP one.
fn peer_ip<B>(request: &Request<B>) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<tulle_api::tls::TlsConnectInfo>()
        .and_then(|i| i.remote_addr)
        .or_else(|| request.remote_addr())
        .map(|a| a.ip())
}
