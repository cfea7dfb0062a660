//! One AdmissionReview in, one out. A review that cannot be decoded is a 400; any other
//! failure lets the pod through unchanged with a warning (the `failurePolicy: Ignore`
//! semantics), so the webhook never blocks pod creation.

use super::{Metrics, cluster::Cluster};
use crate::inject::{self, Decision};
use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// How long the namespace lookup may take.
const NAMESPACE_TIMEOUT: Duration = Duration::from_secs(5);

/// The request body is not an AdmissionReview with a request.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode the AdmissionReview (expected admission.k8s.io/v1 AdmissionReview JSON with a request): {0}"
)]
pub struct BadReview(String);

/// Everything the handler needs.
pub struct Injector {
    /// What to inject.
    pub config: inject::Config,
    /// The trust anchors put into the proxies' environment.
    pub anchors: AnchorsFile,
    /// Namespaces and Events.
    pub cluster: Arc<dyn Cluster>,
    /// Counters.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector")
            .field("config", &self.config)
            .field("anchors", &self.anchors.path)
            .finish_non_exhaustive()
    }
}

/// The trust anchors PEM file, re-read when its modification time or size changes (a
/// ConfigMap volume is updated by swapping a symlink).
#[derive(Debug)]
pub struct AnchorsFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, u64, String)>>,
}

impl AnchorsFile {
    /// Reads from `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            cached: Mutex::new(None),
        }
    }

    /// The current PEM text.
    pub async fn read(&self) -> Result<String, String> {
        let err = |e: std::io::Error| {
            format!(
                "cannot read the trust anchors {}: {e}; mount ConfigMap tulle-trust-anchors there",
                self.path.display()
            )
        };
        let meta = tokio::fs::metadata(&self.path).await.map_err(err)?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if let Ok(c) = self.cached.lock()
            && let Some((m, l, pem)) = c.as_ref()
            && (*m, *l) == stamp
        {
            return Ok(pem.clone());
        }
        let pem = tokio::fs::read_to_string(&self.path).await.map_err(err)?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "the trust anchors file {} holds no PEM CERTIFICATE",
                self.path.display()
            ));
        }
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((stamp.0, stamp.1, pem.clone()));
        }
        Ok(pem)
    }
}

/// Handles one review: decode, decide, answer.
pub async fn review(
    injector: &Injector,
    body: &[u8],
) -> Result<AdmissionReview<DynamicObject>, BadReview> {
    let review: AdmissionReview<Pod> =
        serde_json::from_slice(body).map_err(|e| BadReview(e.to_string()))?;
    let req: AdmissionRequest<Pod> =
        review
            .try_into()
            .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| {
                BadReview(e.to_string())
            })?;
    Ok(respond(injector, &req).await.into_review())
}

async fn respond(injector: &Injector, req: &AdmissionRequest<Pod>) -> AdmissionResponse {
    let rsp = AdmissionResponse::from(req);
    let Some(pod) = req.object.as_ref() else {
        return rsp;
    };
    if req.operation != Operation::Create || req.kind.kind != "Pod" {
        return rsp;
    }
    let pod_name = pod
        .metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.clone())
        .unwrap_or_default();
    let namespace = req
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_default();
    let fail = |rsp: AdmissionResponse, why: String| {
        tracing::error!(namespace = %namespace, pod = %pod_name, error = %why, "injection failed; the pod is created without the proxy");
        injector.metrics.admitted("error");
        with_warning(rsp, format!("tulle: proxy not injected (error): {why}"))
    };
    if namespace.is_empty() {
        return fail(rsp, "the request names no namespace".into());
    }
    // Well within the webhook's 10 s timeout, so that a slow API server still gets an answer
    // (with a warning) rather than timing out silently.
    let lookup = tokio::time::timeout(NAMESPACE_TIMEOUT, injector.cluster.namespace(&namespace));
    let ns = match lookup.await {
        Ok(Ok(ns)) => ns,
        Ok(Err(e)) => return fail(rsp, e),
        Err(_) => {
            return fail(
                rsp,
                format!("reading namespace {namespace} took more than {NAMESPACE_TIMEOUT:?}"),
            );
        }
    };
    let anchors = match injector.anchors.read().await {
        Ok(a) => a,
        Err(e) => return fail(rsp, e),
    };
    match inject::decide(pod, &ns, &injector.config, &anchors) {
        Decision::Inject(patch) => match rsp.clone().with_patch(patch) {
            Ok(rsp) => {
                tracing::info!(namespace = %namespace, pod = %pod_name, "injected the proxy");
                injector.metrics.admitted("injected");
                rsp
            }
            Err(e) => fail(rsp, e.to_string()),
        },
        Decision::Skip { reason, patch } => {
            injector.metrics.admitted(reason.code());
            if !reason.is_recorded() {
                tracing::debug!(namespace = %namespace, pod = %pod_name, %reason, "not injected");
                return rsp;
            }
            tracing::info!(namespace = %namespace, pod = %pod_name, %reason, "injection skipped");
            if !req.dry_run {
                injector.cluster.record_skip(pod, &ns, &reason);
            }
            // The reason code first: the API server may truncate long warnings.
            let rsp = with_warning(
                rsp,
                format!("tulle: proxy not injected ({}): {reason}", reason.code()),
            );
            match patch.map(|p| rsp.clone().with_patch(p)) {
                Some(Ok(r)) => r,
                _ => rsp,
            }
        }
    }
}

fn with_warning(mut rsp: AdmissionResponse, warning: String) -> AdmissionResponse {
    rsp.warnings.get_or_insert_with(Vec::new).push(warning);
    rsp
}
