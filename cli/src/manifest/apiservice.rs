//! The APIService `v1alpha1.metrics.smi-spec.io`: the Kubernetes API server forwards
//! `/apis/metrics.smi-spec.io/v1alpha1/...` (the SMI Traffic Metrics API) to the controller's
//! port 8443. Its `caBundle` is left out: the controller serves the API with the injector
//! webhook's certificate and patches the bundle in (and `insecureSkipTLSVerify` stays false).

use super::{CONTROLLER, NAMESPACE, Values, meta};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceSpec, ServiceReference,
};

/// The APIService's name (`<version>.<group>`).
pub const METRICS_API_SERVICE: &str = "v1alpha1.metrics.smi-spec.io";
/// The controller's port (container and Service) of the metrics API.
pub const METRICS_API_PORT: i32 = 8443;

/// `v1alpha1.metrics.smi-spec.io` → Service tulle-controller:8443.
pub fn metrics_api(v: &Values) -> APIService {
    APIService {
        metadata: meta(METRICS_API_SERVICE, false, "controller", &v.tag),
        spec: Some(APIServiceSpec {
            group: Some("metrics.smi-spec.io".into()),
            version: Some("v1alpha1".into()),
            group_priority_minimum: 100,
            version_priority: 100,
            insecure_skip_tls_verify: Some(false),
            service: Some(ServiceReference {
                namespace: Some(NAMESPACE.into()),
                name: Some(CONTROLLER.into()),
                port: Some(METRICS_API_PORT),
            }),
            ca_bundle: None,
        }),
        status: None,
    }
}
