//! Prometheus metrics of the identity service.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;

/// Labels of the refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why the request was refused (e.g. `token_invalid`, `name_mismatch`, `bad_csr`).
    pub reason: String,
}

/// The identity service's metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Certificates issued.
    pub issued: Counter,
    /// Refused requests by reason.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Seconds until the issuer certificate expires (negative once expired, NaN-free: 0
    /// until an issuer is loaded).
    pub issuer_expiry_seconds: Gauge<f64, AtomicU64>,
    /// The issuer certificate's notAfter, in seconds since the Unix epoch (0 until an
    /// issuer is loaded).
    pub issuer_expiry_timestamp_seconds: Gauge<f64, AtomicU64>,
    /// 1 while the loaded issuer is within its validity period (and may sign), else 0.
    pub issuer_valid: Gauge,
    /// Failed issuer (re)loads.
    pub issuer_load_failures: Counter,
}

impl Metrics {
    /// Registers the metrics under `identity_` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let reg = registry.sub_registry_with_prefix("identity");
        reg.register(
            "certificates_issued",
            "Certificates issued",
            m.issued.clone(),
        );
        reg.register(
            "refusals",
            "Certify requests refused, by reason",
            m.refusals.clone(),
        );
        reg.register(
            "issuer_expiry_seconds",
            "Seconds until the issuer certificate expires",
            m.issuer_expiry_seconds.clone(),
        );
        reg.register(
            "issuer_expiry_timestamp_seconds",
            "The issuer certificate's notAfter, in seconds since the Unix epoch",
            m.issuer_expiry_timestamp_seconds.clone(),
        );
        reg.register(
            "issuer_valid",
            "1 while an issuer is loaded and within its validity period (Certify signs), else 0",
            m.issuer_valid.clone(),
        );
        reg.register(
            "issuer_load_failures",
            "Issuer loads that failed (the previous issuer is kept)",
            m.issuer_load_failures.clone(),
        );
        m
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}
