//! The owner label of an injected pod, `tulle.io/proxy-<kind>: <name>` (as Linkerd's
//! `linkerd.io/proxy-deployment`), so that a Prometheus scrape of the proxy's admin port can
//! label its series with the workload by relabelling alone (see docs/prometheus.md).

use k8s_openapi::api::core::v1::Pod;

/// The prefix of the owner labels: `tulle.io/proxy-deployment`, `-statefulset`, `-daemonset`,
/// `-job`, `-replicaset`, `-replicationcontroller`.
pub const OWNER_LABEL_PREFIX: &str = "tulle.io/proxy-";

/// The owner label of `pod` from its controlling owner reference (or its only one): a
/// ReplicaSet `web-5d8f9c` whose pod carries `pod-template-hash: 5d8f9c` is Deployment `web`;
/// StatefulSets, DaemonSets, Jobs, bare ReplicaSets and ReplicationControllers are named as they
/// are. `None` for a bare pod, another kind of owner, or a name that is not a valid label value.
pub fn owner_label(pod: &Pod) -> Option<(String, String)> {
    let refs = pod.metadata.owner_references.as_deref()?;
    let r = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or(if refs.len() == 1 { refs.first() } else { None })?;
    let hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    let (kind, name) = match r.kind.as_str() {
        "ReplicaSet" => match hash.and_then(|h| r.name.strip_suffix(&format!("-{h}"))) {
            Some(dep) if !dep.is_empty() => ("deployment", dep),
            _ => ("replicaset", r.name.as_str()),
        },
        "StatefulSet" => ("statefulset", r.name.as_str()),
        "DaemonSet" => ("daemonset", r.name.as_str()),
        "Job" => ("job", r.name.as_str()),
        "ReplicationController" => ("replicationcontroller", r.name.as_str()),
        _ => return None,
    };
    valid_label_value(name).then(|| (format!("{OWNER_LABEL_PREFIX}{kind}"), name.to_string()))
}

/// A label value: at most 63 characters, alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
fn valid_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: serde_json::Value, owners: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"labels": labels, "ownerReferences": owners}}))
            .unwrap()
    }

    fn owner(kind: &str, name: &str, controller: bool) -> serde_json::Value {
        json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": controller})
    }

    fn label(k: &str, v: &str) -> Option<(String, String)> {
        Some((k.to_string(), v.to_string()))
    }

    #[test]
    fn a_deployments_pod_is_named_after_the_deployment() {
        let p = pod(
            json!({"app": "web", "pod-template-hash": "5d8f9c"}),
            json!([owner("ReplicaSet", "web-5d8f9c", true)]),
        );
        assert_eq!(owner_label(&p), label("tulle.io/proxy-deployment", "web"));
        // Dashes in the Deployment's name stay.
        let p = pod(
            json!({"pod-template-hash": "7c9"}),
            json!([owner("ReplicaSet", "my-web-app-7c9", true)]),
        );
        assert_eq!(
            owner_label(&p),
            label("tulle.io/proxy-deployment", "my-web-app")
        );
    }

    #[test]
    fn a_replicaset_without_the_hash_is_a_replicaset() {
        let p = pod(json!({}), json!([owner("ReplicaSet", "web-5d8f9c", true)]));
        assert_eq!(
            owner_label(&p),
            label("tulle.io/proxy-replicaset", "web-5d8f9c")
        );
        let p = pod(
            json!({"pod-template-hash": "other"}),
            json!([owner("ReplicaSet", "web-5d8f9c", true)]),
        );
        assert_eq!(
            owner_label(&p),
            label("tulle.io/proxy-replicaset", "web-5d8f9c")
        );
    }

    #[test]
    fn statefulsets_daemonsets_and_jobs_from_the_owner_reference() {
        for (kind, l) in [
            ("StatefulSet", "statefulset"),
            ("DaemonSet", "daemonset"),
            ("Job", "job"),
            ("ReplicationController", "replicationcontroller"),
        ] {
            let p = pod(json!({}), json!([owner(kind, "db", true)]));
            assert_eq!(
                owner_label(&p),
                label(&format!("tulle.io/proxy-{l}"), "db"),
                "{kind}"
            );
        }
    }

    #[test]
    fn the_controller_wins_and_unknown_owners_are_left_out() {
        let p = pod(
            json!({}),
            json!([
                owner("ConfigMap", "x", false),
                owner("StatefulSet", "db", true)
            ]),
        );
        assert_eq!(owner_label(&p), label("tulle.io/proxy-statefulset", "db"));
        // Two owners, none controlling: which one is ambiguous.
        let p = pod(
            json!({}),
            json!([owner("Job", "a", false), owner("Job", "b", false)]),
        );
        assert_eq!(owner_label(&p), None);
        let p = pod(json!({}), json!([owner("Rollout", "web", true)]));
        assert_eq!(owner_label(&p), None);
        let bare: Pod = serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap();
        assert_eq!(owner_label(&bare), None);
        let long = "a".repeat(64);
        let p = pod(json!({}), json!([owner("Job", &long, true)]));
        assert_eq!(owner_label(&p), None);
    }
}
