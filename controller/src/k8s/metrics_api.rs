//! What the metrics API needs of Kubernetes: the front-proxy settings from
//! `kube-system/extension-apiserver-authentication`, SubjectAccessReviews, the resources that
//! exist (metadata-only lists with the caller's label selector), and the APIService's
//! `caBundle`.

use crate::metrics_api::{Access, Authorizer, Caller, Catalog, server::FrontProxy};
use futures::future::BoxFuture;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    batch::v1::Job,
    core::v1::{ConfigMap, Namespace, Pod},
};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use tulle_metrics::golden::{Kind, ResourceRef};

/// The APIService the controller keeps the `caBundle` of.
pub const API_SERVICE: &str = "v1alpha1.metrics.smi-spec.io";
const AUTH_CONFIGMAP: &str = "extension-apiserver-authentication";
const RELOAD: Duration = Duration::from_secs(60);

/// Reads the front-proxy settings from the ConfigMap's data.
pub fn front_proxy(cm: &ConfigMap) -> Result<FrontProxy, String> {
    let data = cm.data.as_ref().ok_or("the ConfigMap has no data")?;
    let ca_pem = data.get("requestheader-client-ca-file").ok_or(
        "no requestheader-client-ca-file: the API server runs without --requestheader-client-ca-file (the aggregation layer is off)",
    )?;
    let ca = tulle_api::certify::roots_from_pem(ca_pem.as_bytes())?;
    let list = |key: &str, default: &[&str]| -> Vec<String> {
        data.get(key)
            .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
    };
    Ok(FrontProxy {
        ca,
        allowed_names: list("requestheader-allowed-names", &[]),
        username_headers: list("requestheader-username-headers", &["X-Remote-User"]),
        group_headers: list("requestheader-group-headers", &["X-Remote-Group"]),
        extra_header_prefixes: list("requestheader-extra-headers-prefix", &["X-Remote-Extra-"]),
    })
}

/// Keeps `tx` at the current front-proxy settings (read every minute; a read that fails
/// keeps the last good settings).
pub async fn maintain_front_proxy(client: Client, tx: watch::Sender<Option<Arc<FrontProxy>>>) {
    let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    let mut last_error = None;
    loop {
        let r = api
            .get(AUTH_CONFIGMAP)
            .await
            .map_err(|e| format!("cannot read kube-system/{AUTH_CONFIGMAP}: {e} (RBAC: the controller needs the extension-apiserver-authentication-reader Role)"))
            .and_then(|cm| front_proxy(&cm));
        match r {
            Ok(f) => {
                last_error = None;
                tx.send_if_modified(|cur| {
                    let changed = cur.as_ref().is_none_or(|c| {
                        c.allowed_names != f.allowed_names || c.ca.roots != f.ca.roots
                    });
                    if changed {
                        tracing::info!(allowed_names = ?f.allowed_names, "metrics API front-proxy settings loaded");
                        *cur = Some(Arc::new(f.clone()));
                    }
                    changed
                });
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "metrics API cannot authenticate the API server yet");
                    last_error = Some(e);
                }
            }
        }
        tokio::time::sleep(RELOAD).await;
    }
}

/// Authorizes with SubjectAccessReviews.
#[derive(Clone)]
pub struct SarAuthorizer(pub Client);

impl Authorizer for SarAuthorizer {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        a: &'a Access,
    ) -> BoxFuture<'a, Result<Result<(), String>, String>> {
        Box::pin(async move {
            let sar = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(caller.user.clone()),
                    groups: Some(caller.groups.clone()),
                    extra: (!caller.extra.is_empty()).then(|| caller.extra.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some("metrics.smi-spec.io".into()),
                        version: Some("v1alpha1".into()),
                        resource: Some(a.resource.into()),
                        subresource: a.subresource.map(Into::into),
                        namespace: a.namespace.clone(),
                        name: a.name.clone(),
                        verb: Some(a.verb.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let api: Api<SubjectAccessReview> = Api::all(self.0.clone());
            let r = api
                .create(&PostParams::default(), &sar)
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status.unwrap_or_default();
            if status.allowed {
                Ok(Ok(()))
            } else {
                Ok(Err(status.reason.unwrap_or_default()))
            }
        })
    }
}

/// Lists resources with metadata-only lists.
#[derive(Clone)]
pub struct KubeCatalog(pub Client);

async fn names<K>(
    api: Api<K>,
    kind: Kind,
    selector: Option<&str>,
) -> Result<Vec<ResourceRef>, String>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let list = api.list_metadata(&lp).await.map_err(|e| e.to_string())?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| {
            let name = o.metadata.name?;
            let namespace = o.metadata.namespace.unwrap_or_else(|| name.clone());
            Some(ResourceRef {
                kind,
                namespace,
                name,
            })
        })
        .collect())
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

impl Catalog for KubeCatalog {
    fn list<'a>(
        &'a self,
        kind: Kind,
        namespace: Option<&'a str>,
        selector: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ResourceRef>, String>> {
        let c = &self.0;
        Box::pin(async move {
            match kind {
                Kind::Namespace => names(Api::<Namespace>::all(c.clone()), kind, selector).await,
                Kind::Pod => names(scoped::<Pod>(c, namespace), kind, selector).await,
                Kind::Deployment => names(scoped::<Deployment>(c, namespace), kind, selector).await,
                Kind::DaemonSet => names(scoped::<DaemonSet>(c, namespace), kind, selector).await,
                Kind::StatefulSet => {
                    names(scoped::<StatefulSet>(c, namespace), kind, selector).await
                }
                Kind::Job => names(scoped::<Job>(c, namespace), kind, selector).await,
            }
        })
    }
}

/// Keeps the APIService's `caBundle` at the serving certificate's CA (the webhook's bundle).
pub async fn maintain_api_service_bundle(client: Client, mut bundle: watch::Receiver<String>) {
    let api: Api<APIService> = Api::all(client);
    let mut last_error = None;
    loop {
        let current = bundle.borrow_and_update().clone();
        if !current.is_empty() {
            let r = ensure_bundle(&api, &current).await;
            match r {
                Ok(()) => last_error = None,
                Err(e) if last_error.as_ref() != Some(&e) => {
                    tracing::warn!(error = %e, "metrics APIService caBundle not reconciled");
                    last_error = Some(e);
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            r = bundle.changed() => if r.is_err() { return },
            () = tokio::time::sleep(RELOAD) => {}
        }
    }
}

async fn ensure_bundle(api: &Api<APIService>, bundle: &str) -> Result<(), String> {
    let svc = api
        .get_opt(API_SERVICE)
        .await
        .map_err(|e| format!("cannot read APIService {API_SERVICE}: {e}"))?
        .ok_or_else(|| format!("APIService {API_SERVICE} does not exist (install it with tulle install or the chart)"))?;
    let have = svc.spec.as_ref().and_then(|s| s.ca_bundle.as_ref());
    // Equal, or from a CA another replica rotated to (ours is the previous one): leave it.
    if have.is_some_and(|b| {
        b.0 == bundle.as_bytes() || crate::webhook::certs::supersedes(&b.0, bundle)
    }) {
        return Ok(());
    }
    let want = k8s_openapi::ByteString(bundle.as_bytes().to_vec());
    let patch = serde_json::json!({"spec": {"caBundle": want, "insecureSkipTLSVerify": false}});
    api.patch(API_SERVICE, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("cannot patch the caBundle of APIService {API_SERVICE}: {e} (RBAC: patch on apiservices)"))?;
    tracing::info!(apiservice = API_SERVICE, "caBundle updated");
    Ok(())
}
