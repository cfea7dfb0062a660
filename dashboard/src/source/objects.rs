//! Kubernetes objects (k8s-openapi types) → [`crate::model`].

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::model::{Kind, NamespaceInfo, PodInfo, Problem, ServiceInfo, WorkloadInfo, WorkloadRef};

/// The annotation that asks for injection.
pub const INJECT_ANNOTATION: &str = "tulle.io/inject";
/// The name of the proxy container the injector adds.
pub const PROXY_CONTAINER: &str = "tulle-proxy";
/// The controller, as the reporter of its Events.
pub const CONTROLLER: &str = "tulle-controller";

fn annotation(meta: &ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref()?.get(key).cloned()
}

/// A label selector as the `labelSelector` query parameter (`a=b,c in (d,e),!f`).
pub fn selector_string(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// A namespace.
pub fn namespace(n: &Namespace) -> NamespaceInfo {
    NamespaceInfo {
        name: n.metadata.name.clone().unwrap_or_default(),
        inject: annotation(&n.metadata, INJECT_ANNOTATION),
    }
}

fn workload(
    kind: Kind,
    meta: &ObjectMeta,
    selector: &LabelSelector,
    template: &PodTemplateSpec,
    (desired, ready): (i32, i32),
) -> WorkloadInfo {
    let tmeta = template.metadata.clone().unwrap_or_default();
    WorkloadInfo {
        id: WorkloadRef::new(
            kind,
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        ),
        desired,
        ready,
        service_account: template
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        pod_labels: tmeta.labels.clone().unwrap_or_default(),
        selector: selector_string(selector),
        inject: annotation(&tmeta, INJECT_ANNOTATION),
    }
}

/// A Deployment.
pub fn deployment(d: &Deployment) -> Option<WorkloadInfo> {
    let spec = d.spec.as_ref()?;
    let ready = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    Some(workload(
        Kind::Deployment,
        &d.metadata,
        &spec.selector,
        &spec.template,
        (spec.replicas.unwrap_or(1), ready),
    ))
}

/// A StatefulSet.
pub fn stateful_set(s: &StatefulSet) -> Option<WorkloadInfo> {
    let spec = s.spec.as_ref()?;
    let ready = s
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    Some(workload(
        Kind::StatefulSet,
        &s.metadata,
        &spec.selector,
        &spec.template,
        (spec.replicas.unwrap_or(1), ready),
    ))
}

/// A DaemonSet.
pub fn daemon_set(d: &DaemonSet) -> Option<WorkloadInfo> {
    let spec = d.spec.as_ref()?;
    let (desired, ready) = d
        .status
        .as_ref()
        .map(|s| (s.desired_number_scheduled, s.number_ready))
        .unwrap_or((0, 0));
    Some(workload(
        Kind::DaemonSet,
        &d.metadata,
        &spec.selector,
        &spec.template,
        (desired, ready),
    ))
}

/// A pod.
pub fn pod(p: &Pod) -> PodInfo {
    let spec = p.spec.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_default();
    let meshed = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == PROXY_CONTAINER);
    let statuses: Vec<_> = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .collect();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    PodInfo {
        name: p.metadata.name.clone().unwrap_or_default(),
        phase: status.phase.clone().unwrap_or_default(),
        ready,
        meshed,
        ip: status.pod_ip.clone().unwrap_or_default(),
        restarts: statuses.iter().map(|s| s.restart_count).sum(),
        service_account: spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
    }
}

/// A Service.
pub fn service(s: &Service) -> ServiceInfo {
    ServiceInfo {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        selector: s
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default(),
    }
}

/// A Warning Event of the controller on an SMI object, as a problem (`None` for others).
pub fn problem(e: &Event) -> Option<Problem> {
    if e.type_.as_deref() != Some("Warning") {
        return None;
    }
    let by_controller = e.reporting_component.as_deref() == Some(CONTROLLER)
        || e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(CONTROLLER);
    let o = &e.involved_object;
    let smi = o
        .api_version
        .as_deref()
        .is_some_and(|v| v.contains("smi-spec.io"));
    if !by_controller || !smi {
        return None;
    }
    let time = e
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.to_string()))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .unwrap_or_default();
    Some(Problem {
        kind: o.kind.clone().unwrap_or_default(),
        namespace: o.namespace.clone().unwrap_or_default(),
        name: o.name.clone().unwrap_or_default(),
        uid: o.uid.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
        time,
    })
}

/// Keeps the latest problem per (object, reason).
pub fn latest_problems(mut ps: Vec<Problem>) -> Vec<Problem> {
    ps.sort_by(|a, b| b.time.cmp(&a.time));
    let mut seen = std::collections::BTreeSet::new();
    ps.retain(|p| {
        seen.insert((
            p.kind.clone(),
            p.namespace.clone(),
            p.name.clone(),
            p.uid.clone(),
            p.reason.clone(),
        ))
    });
    ps.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    ps
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    #[test]
    fn selectors_render_as_query_parameters() {
        let s = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(selector_string(&s), "app=web,tier in (a,b)");
    }

    #[test]
    fn only_the_controllers_warnings_on_smi_objects_are_problems() {
        let ev: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e", "namespace": "demo"},
            "type": "Warning", "reason": "BackendNotFound", "message": "no Service web-v3",
            "reportingComponent": "tulle-controller",
            "involvedObject": {"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit",
                               "namespace": "demo", "name": "web", "uid": "u"},
            "eventTime": "2026-01-01T00:00:00.000000Z"
        }))
        .unwrap();
        let p = problem(&ev).unwrap();
        assert_eq!(
            (p.kind.as_str(), p.reason.as_str()),
            ("TrafficSplit", "BackendNotFound")
        );
        let mut other = ev.clone();
        other.reporting_component = Some("kubelet".into());
        assert!(problem(&other).is_none());
        let twice = latest_problems(vec![
            p.clone(),
            Problem {
                time: "2027".into(),
                ..p
            },
        ]);
        assert_eq!(twice.len(), 1);
        assert_eq!(twice[0].time, "2027");
    }
}
