//! Reading the SMI Traffic Metrics API through the Kubernetes API server (so the caller's
//! RBAC applies), and turning its failures into messages that say what to do.
//!
//! A 404 is either a resource that does not exist, or the whole group missing: the group's
//! discovery document (`/apis/metrics.smi-spec.io/v1alpha1`, readable by anyone) tells them
//! apart. A 503 is either the APIService not `Available` (the controller is not ready) or the
//! API's own answer that its metrics backend failed: the APIService's condition tells them
//! apart (when the caller may read it).

use crate::error::{ApiError, error_chain};
use crate::manifest::{CONTROLLER, METRICS_API_SERVICE, NAMESPACE};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::Value;

/// `/apis/metrics.smi-spec.io/v1alpha1`.
pub const PREFIX: &str = "/apis/metrics.smi-spec.io/v1alpha1";

/// Percent-encodes everything but RFC 3986 unreserved characters (path segments, query values).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn raw_get(client: &kube::Client, uri: &str) -> Result<Value, kube::Error> {
    let req = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request::<Value>(req).await
}

/// GETs `path` (below [`PREFIX`], with its query string) and returns the JSON answer.
pub async fn get(client: &kube::Client, path_and_query: &str) -> Result<Value, ApiError> {
    let uri = format!("{PREFIX}{path_and_query}");
    match raw_get(client, &uri).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) => Err(classify(client, s.code, s.message).await),
        Err(e) => Err(ApiError::Other(format!(
            "cannot read {uri} from the Kubernetes API: {}",
            error_chain(&e)
        ))),
    }
}

/// Turns an error answer into an [`ApiError`], asking the cluster what it needs to know.
async fn classify(client: &kube::Client, code: u16, message: String) -> ApiError {
    match code {
        400 => ApiError::BadRequest(message),
        403 => ApiError::Forbidden(forbidden(message)),
        404 => match raw_get(client, PREFIX).await {
            Err(kube::Error::Api(s)) if s.code == 404 => ApiError::NotInstalled,
            Err(kube::Error::Api(s)) if s.code == 503 => unavailable(client, s.message).await,
            _ => ApiError::NotFound(message),
        },
        503 => unavailable(client, message).await,
        _ => ApiError::Other(format!(
            "the SMI Traffic Metrics API answered {code}: {message}"
        )),
    }
}

/// The API's (or the API server's) 403 message, with a hint unless it has one.
pub fn forbidden(message: String) -> String {
    if message.contains("grant") {
        message
    } else {
        format!(
            "{message} (grant get/list on the metrics.smi-spec.io resources with a Role or ClusterRole)"
        )
    }
}

async fn unavailable(client: &kube::Client, message: String) -> ApiError {
    let svc = kube::Api::<APIService>::all(client.clone())
        .get_opt(METRICS_API_SERVICE)
        .await;
    unavailable_from(svc, message)
}

/// A 503, judged by the APIService (`Err` when it could not be read).
pub fn unavailable_from(svc: Result<Option<APIService>, kube::Error>, message: String) -> ApiError {
    let logs = format!("`kubectl -n {NAMESPACE} logs deploy/{CONTROLLER}`");
    match svc {
        Ok(None) => ApiError::NotInstalled,
        Ok(Some(s)) => {
            let available = s
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Available");
            match available {
                Some(c) if c.status == "True" => ApiError::Unavailable(format!(
                    "the SMI Traffic Metrics API cannot read its metrics: {message} (see {logs})"
                )),
                c => {
                    let why = c
                        .and_then(|c| c.message.or(c.reason))
                        .filter(|m| !m.is_empty())
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default();
                    ApiError::Unavailable(format!(
                        "the SMI Traffic Metrics API is not available: tulle-controller is not ready \
                         (APIService {METRICS_API_SERVICE} is not Available{why}); wait for it with \
                         `tulle check --wait 2m`, or see {logs}"
                    ))
                }
            }
        }
        Err(_) => ApiError::Unavailable(format!(
            "the SMI Traffic Metrics API is unavailable ({message}): tulle-controller may not be \
             ready; see `kubectl get apiservice {METRICS_API_SERVICE}` and {logs}"
        )),
    }
}
