//! Kubernetes Events on a ServiceAccount when issuing fails.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

/// Where refusals are reported. Implementations must not block.
pub trait EventSink: Send + Sync + 'static {
    /// Issuing a certificate for `namespace/service_account` failed with `reason`.
    fn issuing_failed(&self, namespace: &str, service_account: &str, reason: &str, note: &str);
}

/// Publishes Warning Events (`IssuingFailed`) through kube's event recorder.
#[derive(Clone)]
pub struct KubeEvents {
    recorder: Recorder,
}

impl std::fmt::Debug for KubeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeEvents")
    }
}

impl KubeEvents {
    /// A sink reporting as `tulle-identity` (instance `pod`).
    pub fn new(client: Client, pod: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "tulle-identity".into(),
            instance: pod,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
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
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "could not publish Event");
            }
        });
    }
}
