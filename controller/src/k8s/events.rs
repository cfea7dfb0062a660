//! Publishes the SMI objects' problems ([`crate::core::Problems`]) as Warning Events on the
//! objects (`kubectl describe trafficsplit` shows them), reported by `tulle-controller`.
//! Only changes are published: a problem gets an Event when it appears on an object (again
//! after it was gone), never once per recomputation. Changes are coalesced for
//! [`SETTLE`] so that objects applied together (a split and its backends) do not produce
//! transient Events, and nothing is published before the initial lists are in.

use crate::core::{ObjectKey, Problem, Problems, SmiKind};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;

/// How long changes are coalesced before Events are published.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The `apiVersion` Events refer to for each kind (the version the controller watches).
pub fn api_version(kind: SmiKind) -> &'static str {
    match kind {
        SmiKind::TrafficSplit => "split.smi-spec.io/v1alpha4",
        SmiKind::HttpRouteGroup | SmiKind::TcpRoute | SmiKind::UdpRoute => {
            "specs.smi-spec.io/v1alpha4"
        }
        SmiKind::TrafficTarget => "access.smi-spec.io/v1alpha3",
    }
}

/// The problems in `cur` that `last` did not have (for the same object uid), in order.
pub fn new_problems<'a>(
    last: &Problems,
    cur: &'a Problems,
) -> Vec<(&'a ObjectKey, Option<&'a str>, &'a Problem)> {
    let mut out = Vec::new();
    for (key, set) in cur {
        let before = last.get(key).filter(|b| b.uid == set.uid);
        for p in &set.problems {
            if !before.is_some_and(|b| b.problems.contains(p)) {
                out.push((key, set.uid.as_deref(), p));
            }
        }
    }
    out
}

/// The Event of one problem, and the object it is about.
pub fn event(key: &ObjectKey, uid: Option<&str>, p: &Problem) -> (Event, ObjectReference) {
    let reference = ObjectReference {
        api_version: Some(api_version(key.kind).into()),
        kind: Some(key.kind.kind().into()),
        name: Some(key.name.clone()),
        namespace: Some(key.namespace.clone()),
        uid: uid.map(String::from),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: p.reason.into(),
        note: Some(p.message.chars().take(1000).collect()),
        action: "Resolve".into(),
        secondary: None,
    };
    (event, reference)
}

/// Runs forever: waits until `ready()`, then publishes the new problems of every change.
pub async fn publish(
    recorder: Recorder,
    mut problems: watch::Receiver<Arc<Problems>>,
    ready: impl Fn() -> bool + Send,
) {
    while !ready() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut last = Arc::new(Problems::new());
    loop {
        tokio::time::sleep(SETTLE).await;
        let cur = problems.borrow_and_update().clone();
        for (key, uid, p) in new_problems(&last, &cur) {
            tracing::info!(kind = key.kind.kind(), namespace = %key.namespace, name = %key.name, reason = p.reason, message = %p.message, "SMI object problem");
            let (ev, reference) = event(key, uid, p);
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, reason = p.reason, "cannot publish an Event (RBAC: create/patch events.k8s.io events)");
            }
        }
        last = cur;
        if problems.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ProblemSet;

    fn set(uid: &str, reasons: &[&'static str]) -> ProblemSet {
        ProblemSet {
            uid: Some(uid.into()),
            problems: reasons
                .iter()
                .map(|r| Problem {
                    reason: r,
                    message: format!("{r}!"),
                })
                .collect(),
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: SmiKind::TrafficSplit,
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn reasons(last: &Problems, cur: &Problems) -> Vec<(String, &'static str)> {
        new_problems(last, cur)
            .into_iter()
            .map(|(k, _, p)| (k.name.clone(), p.reason))
            .collect()
    }

    #[test]
    fn only_changes_are_published() {
        let empty = Problems::new();
        let a = Problems::from([(key("a"), set("u1", &["BackendNotFound", "PortMismatch"]))]);
        assert_eq!(
            reasons(&empty, &a),
            [
                ("a".to_string(), "BackendNotFound"),
                ("a".to_string(), "PortMismatch")
            ]
        );
        // The same set again: nothing.
        assert!(reasons(&a, &a.clone()).is_empty());
        // One more problem, one more object.
        let b = Problems::from([
            (
                key("a"),
                set("u1", &["BackendNotFound", "PortMismatch", "AllWeightsZero"]),
            ),
            (key("b"), set("u2", &["DuplicateApex"])),
        ]);
        assert_eq!(
            reasons(&a, &b),
            [
                ("a".to_string(), "AllWeightsZero"),
                ("b".to_string(), "DuplicateApex")
            ]
        );
        // Fixed, then broken again: published again.
        assert!(reasons(&b, &empty).is_empty());
        assert_eq!(reasons(&empty, &a).len(), 2);
        // Re-created object (new uid): its problems are new.
        let recreated = Problems::from([(key("a"), set("u9", &["BackendNotFound"]))]);
        assert_eq!(reasons(&a, &recreated).len(), 1);
    }

    #[test]
    fn events_refer_to_the_object() {
        let p = Problem {
            reason: "BackendNotFound",
            message: "backend Service web-v2 does not exist".into(),
        };
        let (ev, r) = event(&key("web"), Some("u1"), &p);
        assert_eq!(ev.type_, EventType::Warning);
        assert_eq!(ev.reason, "BackendNotFound");
        assert_eq!(r.kind.as_deref(), Some("TrafficSplit"));
        assert_eq!(r.api_version.as_deref(), Some("split.smi-spec.io/v1alpha4"));
        assert_eq!(r.uid.as_deref(), Some("u1"));
        assert_eq!(r.namespace.as_deref(), Some("shop"));
    }
}
