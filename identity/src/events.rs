//! Kubernetes Events: on a ServiceAccount when issuing fails, and on the identity's own Pod
//! when its issuer turns invalid.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

/// Where refusals are reported. Implementations must not block.
pub trait EventSink: Send + Sync + 'static {
    /// Issuing a certificate for `namespace/service_account` failed with `reason`.
    fn issuing_failed(&self, namespace: &str, service_account: &str, reason: &str, note: &str);

    /// The issuer turned invalid (expired or not yet valid): nothing is signed until it is
    /// rotated. `note` says why and how to rotate it.
    fn issuer_invalid(&self, _note: &str) {}
}

/// Publishes Warning Events (`IssuingFailed`) through kube's event recorder.
#[derive(Clone)]
pub struct KubeEvents {
    recorder: Recorder,
    pod: Option<String>,
    namespace: String,
}

impl std::fmt::Debug for KubeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeEvents")
    }
}

impl KubeEvents {
    /// A sink reporting as `tulle-identity` (instance `pod`) running in `namespace`.
    pub fn new(client: Client, pod: Option<String>, namespace: String) -> Self {
        let reporter = Reporter {
            controller: "tulle-identity".into(),
            instance: pod.clone(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
            pod,
            namespace,
        }
    }

    fn publish(&self, event: Event, reference: ObjectReference) {
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "could not publish Event");
            }
        });
    }
}

impl EventSink for KubeEvents {
    fn issuing_failed(&self, namespace: &str, service_account: &str, reason: &str, note: &str) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ServiceAccount".into()),
            name: Some(service_account.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "IssuingFailed".into(),
            note: Some(format!("{reason}: {note}").chars().take(1000).collect()),
            action: "Certify".into(),
            secondary: None,
        };
        self.publish(event, reference);
    }

    fn issuer_invalid(&self, note: &str) {
        // On this Pod when its name is known (downward API), else on the Deployment.
        let (api_version, kind, name) = match &self.pod {
            Some(pod) => ("v1", "Pod", pod.clone()),
            None => ("apps/v1", "Deployment", "tulle-identity".to_string()),
        };
        let reference = ObjectReference {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "IssuerInvalid".into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Sign".into(),
            secondary: None,
        };
        self.publish(event, reference);
    }
}
