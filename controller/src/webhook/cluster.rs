//! What the admission handler asks of the cluster: a namespace's annotations, and Events
//! saying why a pod was not injected. [`KubeCluster`] is the real one (RBAC: get namespaces;
//! create/patch events.k8s.io events).

use crate::inject::{Namespace as NamespaceInfo, Skip};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod};
use kube::{
    Api, Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

/// Cluster access of the admission handler.
pub trait Cluster: Send + Sync + 'static {
    /// The namespace `name`; the error says what to fix.
    fn namespace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<NamespaceInfo, String>>;
    /// Records (in the background, never blocking) that `pod` was not injected.
    fn record_skip(&self, pod: &Pod, ns: &NamespaceInfo, reason: &Skip);
}

/// The real cluster.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    recorder: Recorder,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeCluster")
    }
}

impl KubeCluster {
    /// Events are reported as `tulle-controller` (instance: this pod's name, if known).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "tulle-controller".into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
        }
    }
}

impl Cluster for KubeCluster {
    fn namespace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<NamespaceInfo, String>> {
        Box::pin(async move {
            let api: Api<Namespace> = Api::all(self.client.clone());
            let ns = api.get_metadata(name).await.map_err(|e| {
                format!(
                    "cannot get namespace {name}: {e} (the controller needs RBAC get on namespaces)"
                )
            })?;
            Ok(NamespaceInfo {
                name: name.to_string(),
                uid: ns.metadata.uid,
                annotations: ns.metadata.annotations.unwrap_or_default(),
                labels: ns.metadata.labels.unwrap_or_default(),
            })
        })
    }

    fn record_skip(&self, pod: &Pod, ns: &NamespaceInfo, reason: &Skip) {
        let reference = event_target(pod, ns);
        let pod_name = pod
            .metadata
            .name
            .clone()
            .or_else(|| pod.metadata.generate_name.clone())
            .unwrap_or_default();
        let event = Event {
            type_: if reason.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: "InjectionSkipped".into(),
            note: Some(
                format!("pod {pod_name}: the tulle proxy was not injected: {reason}")
                    .chars()
                    .take(1000)
                    .collect(),
            ),
            action: "Inject".into(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "cannot publish the InjectionSkipped Event (RBAC: create/patch events.k8s.io events)");
            }
        });
    }
}

/// The pod has no UID yet at admission: the Event goes to its controlling owner (a ReplicaSet,
/// Job, ...) when it has one, else to its namespace.
pub fn event_target(pod: &Pod, ns: &NamespaceInfo) -> ObjectReference {
    let owners = pod.metadata.owner_references.iter().flatten();
    let owner = owners
        .clone()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.clone().next());
    match owner {
        Some(o) => ObjectReference {
            api_version: Some(o.api_version.clone()),
            kind: Some(o.kind.clone()),
            name: Some(o.name.clone()),
            namespace: Some(ns.name.clone()),
            uid: Some(o.uid.clone()),
            ..Default::default()
        },
        None => ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some(ns.name.clone()),
            // Events about a namespace live in that namespace.
            namespace: Some(ns.name.clone()),
            uid: ns.uid.clone(),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::test_api::{expect, reply};
    use hyper::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::json;

    #[tokio::test]
    async fn namespace_and_event() {
        let (svc, mut h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let cluster = KubeCluster::new(Client::new(svc, "default"), Some("ctl-0".into()));
        let server = tokio::spawn(async move {
            let (_, send) = expect(&mut h, Method::GET, "/api/v1/namespaces/shop").await;
            reply(
                send,
                StatusCode::OK,
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                       "metadata": {"name": "shop", "uid": "ns-uid",
                                    "annotations": {"tulle.io/inject": "enabled"},
                                    "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}),
            );
            let (ev, send) = expect(
                &mut h,
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events",
            )
            .await;
            reply(send, StatusCode::CREATED, ev.clone());
            ev
        });
        let ns = cluster.namespace("shop").await.unwrap();
        assert_eq!(ns.uid.as_deref(), Some("ns-uid"));
        assert_eq!(ns.annotations["tulle.io/inject"], "enabled");
        assert_eq!(ns.labels["pod-security.kubernetes.io/enforce"], "baseline");
        let pod: Pod = serde_json::from_value(json!({"metadata": {"generateName": "web-",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs", "controller": true}]}}))
        .unwrap();
        cluster.record_skip(&pod, &ns, &Skip::HostNetwork);
        let ev = server.await.unwrap();
        assert_eq!(ev["reason"], "InjectionSkipped");
        assert_eq!(ev["type"], "Normal");
        assert_eq!(ev["reportingController"], "tulle-controller");
        assert_eq!(ev["reportingInstance"], "ctl-0");
        assert_eq!(ev["regarding"]["kind"], "ReplicaSet");
        assert_eq!(ev["regarding"]["uid"], "rs");
        assert!(
            ev["note"]
                .as_str()
                .unwrap()
                .contains("pod web-: the tulle proxy was not injected: the pod uses hostNetwork")
        );

        // No owner: the namespace itself.
        let bare = Pod::default();
        let r = event_target(&bare, &ns);
        assert_eq!(
            (
                r.kind.as_deref(),
                r.name.as_deref(),
                r.namespace.as_deref(),
                r.uid.as_deref()
            ),
            (
                Some("Namespace"),
                Some("shop"),
                Some("shop"),
                Some("ns-uid")
            )
        );
    }
}
