//! The proxy injector: a mutating admission webhook over HTTPS (`POST /inject`) that applies
//! [`crate::inject`] to pods being created, with its own serving certificate.
//!
//! - [`admission`]: AdmissionReview in, AdmissionReview out (fail-open on internal errors);
//! - [`conversion`]: the TrafficSplit CRD conversion webhook (`POST /convert`);
//! - [`server`]: the TLS HTTP server;
//! - [`certs`]: CA and serving certificate generation and the rotation decision (no I/O);
//! - [`store`]: Secret `tulle-webhook-tls` persistence and the rotation loop;
//! - [`ca_bundle`]: keeps the MutatingWebhookConfiguration's `caBundle` current;
//! - [`crd_bundle`]: keeps the conversion `caBundle` of the trafficsplits CRD current;
//! - [`cluster`]: namespace lookups and Events.

pub mod admission;
pub mod ca_bundle;
pub mod certs;
pub mod cluster;
pub mod conversion;
pub mod crd_bundle;
pub mod server;
pub mod store;
#[cfg(test)]
mod test_api;

pub use admission::{AnchorsFile, BadReview, Injector, review};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// How often the caBundle reconcilers ([`ca_bundle`], [`crd_bundle`]) look again without an
/// event.
pub(crate) const BUNDLE_RECHECK: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// The injector's metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    admissions: Family<ResultLabels, Counter>,
    /// Seconds until the webhook serving certificate expires.
    pub certificate_expiry_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Registers `webhook_admissions_total{result}` and `webhook_certificate_expiry_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_admissions",
            "Pod admissions by result: injected, error, or the skip reason",
            self.admissions.clone(),
        );
        registry.register(
            "webhook_certificate_expiry_seconds",
            "Seconds until the injector webhook's serving certificate expires",
            self.certificate_expiry_seconds.clone(),
        );
    }

    /// Counts one admission.
    pub fn admitted(&self, result: &str) {
        self.admissions
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }
}
