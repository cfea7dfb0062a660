//! Command-line flags (each also an environment variable).

use std::{net::SocketAddr, path::PathBuf};

/// tulle-identity: signs short-lived mTLS certificates for ServiceAccount identities.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "tulle-identity", version)]
pub struct Args {
    /// Address of the Certify gRPC server.
    #[arg(long, env = "TULLE_IDENTITY_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
    /// Address of the admin server (/metrics, /ready, /live).
    #[arg(
        long,
        env = "TULLE_IDENTITY_ADMIN_ADDR",
        default_value = "0.0.0.0:9990"
    )]
    pub admin_addr: SocketAddr,
    /// Directory holding the issuer's `tls.crt` (issuer first, then further intermediates)
    /// and `tls.key`, usually a mounted Secret; polled for changes.
    #[arg(
        long,
        env = "TULLE_IDENTITY_ISSUER_DIR",
        default_value = "/var/run/tulle/identity/issuer"
    )]
    pub issuer_dir: PathBuf,
    /// How often the issuer files are checked for changes, in seconds.
    #[arg(long, env = "TULLE_IDENTITY_ISSUER_POLL_SECS", default_value_t = 5)]
    pub issuer_poll_secs: u64,
    /// The trust domain.
    #[arg(
        long,
        env = "TULLE_IDENTITY_TRUST_DOMAIN",
        default_value = "cluster.local"
    )]
    pub trust_domain: String,
    /// Audience the ServiceAccount tokens must carry.
    #[arg(long, env = "TULLE_IDENTITY_TOKEN_AUDIENCE", default_value = tulle_api::names::TOKEN_AUDIENCE)]
    pub token_audience: String,
    /// Lifetime of issued certificates, in seconds.
    #[arg(
        long,
        env = "TULLE_IDENTITY_CERT_LIFETIME_SECS",
        default_value_t = 86400
    )]
    pub cert_lifetime_secs: u64,
    /// How far notBefore is backdated to allow for clock skew, in seconds.
    #[arg(long, env = "TULLE_IDENTITY_CLOCK_SKEW_SECS", default_value_t = 60)]
    pub clock_skew_secs: u64,
    /// This service's own ServiceAccount and namespace, for its serving certificate.
    #[arg(
        long,
        env = "TULLE_IDENTITY_SERVICE_ACCOUNT",
        default_value = "tulle-identity"
    )]
    pub service_account: String,
    /// Namespace of this service (from the downward API in a pod).
    #[arg(long, env = "TULLE_IDENTITY_NAMESPACE", default_value = "tulle-system")]
    pub namespace: String,
    /// Pod name, reported in Events.
    #[arg(long, env = "TULLE_IDENTITY_POD_NAME")]
    pub pod_name: Option<String>,
    /// Sustained Certify calls per second allowed per peer IP address (beyond it:
    /// RESOURCE_EXHAUSTED with a retry delay, before any TokenReview).
    #[arg(long, env = "TULLE_IDENTITY_CERTIFY_PEER_RATE", default_value_t = 5.0)]
    pub certify_peer_rate: f64,
    /// Certify calls a peer IP address may make at once before the rate applies.
    #[arg(long, env = "TULLE_IDENTITY_CERTIFY_PEER_BURST", default_value_t = 50)]
    pub certify_peer_burst: u32,
    /// Certify calls in flight at once (each costs a TokenReview).
    #[arg(long, env = "TULLE_IDENTITY_MAX_IN_FLIGHT", default_value_t = 100)]
    pub max_in_flight: usize,
    /// TLS handshakes in progress at once (more connections wait in the listen backlog).
    #[arg(long, env = "TULLE_IDENTITY_MAX_HANDSHAKES", default_value_t = 64)]
    pub max_handshakes: usize,
    /// Open connections at once.
    #[arg(long, env = "TULLE_IDENTITY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Serve plaintext gRPC instead of TLS (tests and debugging only).
    #[arg(long, env = "TULLE_IDENTITY_PLAINTEXT", default_value_t = false)]
    pub plaintext: bool,
}
