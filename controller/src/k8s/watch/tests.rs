use super::*;
use crate::core::{SplitInfo, Target};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::{DynamicObject, ObjectMeta};
use std::sync::Mutex;

/// Records the calls it gets.
#[derive(Default)]
struct Sink(Mutex<Vec<String>>);

impl IndexResource<String> for Sink {
    fn apply(&self, ns: &str, name: &str, v: String) {
        self.0
            .lock()
            .unwrap()
            .push(format!("apply {ns}/{name}={v}"));
    }
    fn delete(&self, ns: &str, name: &str) {
        self.0.lock().unwrap().push(format!("delete {ns}/{name}"));
    }
    fn reset(&self, all: Vec<(String, String, String)>) {
        let all: Vec<String> = all
            .into_iter()
            .map(|(ns, n, v)| format!("{ns}/{n}={v}"))
            .collect();
        self.0
            .lock()
            .unwrap()
            .push(format!("reset [{}]", all.join(", ")));
    }
}

fn cm(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        data: Some([("v".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

/// `v` of the ConfigMap; "skip" converts to None (absent).
fn convert(o: &ConfigMap) -> Option<String> {
    let v = o.data.as_ref()?.get("v")?.clone();
    (v != "skip").then_some(v)
}

#[tokio::test]
async fn init_lists_are_swapped_in_whole_and_changes_applied() {
    let events = futures::stream::iter(vec![
        Ok(Event::Init),
        Ok(Event::InitApply(cm("a", "1"))),
        Ok(Event::InitApply(cm("skipped", "skip"))),
        Ok(Event::InitApply(cm("b", "2"))),
        Ok(Event::InitDone),
        Ok(Event::Apply(cm("a", "3"))),
        Ok(Event::Apply(cm("b", "skip"))),
        Ok(Event::Delete(cm("a", "3"))),
        Err(watcher::Error::NoResourceVersion),
        Err(watcher::Error::NoResourceVersion),
        // A restart: a fresh list replaces everything; what was half-listed before the
        // restart is dropped.
        Ok(Event::Init),
        Ok(Event::InitApply(cm("stale", "x"))),
        Ok(Event::Init),
        Ok(Event::InitApply(cm("c", "4"))),
        Ok(Event::InitDone),
    ]);
    let sink = Sink::default();
    let synced = AtomicBool::new(false);
    handle(events, "configmaps", convert, &sink, &synced).await;
    assert!(synced.load(Ordering::Relaxed));
    assert_eq!(
        *sink.0.lock().unwrap(),
        [
            "reset [shop/a=1, shop/b=2]",
            "apply shop/a=3",
            "delete shop/b",
            "delete shop/a",
            "reset [shop/c=4]",
        ]
    );
}

#[tokio::test]
async fn not_synced_until_the_first_list_is_done() {
    let events = futures::stream::iter(vec![Ok(Event::Init), Ok(Event::InitApply(cm("a", "1")))]);
    let sink = Sink::default();
    let synced = AtomicBool::new(false);
    handle(events, "configmaps", convert, &sink, &synced).await;
    assert!(!synced.load(Ordering::Relaxed));
    assert!(sink.0.lock().unwrap().is_empty());
}

fn split_obj(name: &str, weight: serde_json::Value) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": weight}]}
    }))
    .unwrap()
}

/// One unreadable TrafficSplit beside a good one: the good one is served, the bad one is
/// recorded as invalid, and later events still flow.
#[tokio::test]
async fn an_unreadable_object_never_stalls_the_watch() {
    let ix = Index::new(crate::core::Naming {
        cluster_domain: "cluster.local".into(),
        trust_domain: "cluster.local".into(),
    });
    ix.apply_service(
        "shop",
        "web",
        ServiceInfo {
            cluster_ips: vec![],
            ports: vec![crate::core::ServicePort {
                name: String::new(),
                port: 80,
                opaque: false,
            }],
        },
    );
    let events = futures::stream::iter(vec![
        Ok(Event::Init),
        Ok(Event::InitApply(split_obj("bad", serde_json::json!("abc")))),
        Ok(Event::InitApply(split_obj("good", serde_json::json!("25")))),
        Ok(Event::InitDone),
        Ok(Event::Apply(split_obj("bad", serde_json::json!({"x": 1})))),
    ]);
    let synced = AtomicBool::new(false);
    let convert = tolerant("trafficsplits", crate::k8s::smi::traffic_split);
    handle::<_, Result<SplitInfo, Invalid>, _>(events, "trafficsplits", convert, &ix, &synced)
        .await;
    let p = ix
        .watch_profile(&Target::Service {
            namespace: "shop".into(),
            name: "web".into(),
            port: 80,
        })
        .borrow()
        .clone();
    assert_eq!(p.traffic_split.as_deref(), Some("shop/good"));
    assert_eq!(p.backends[0].weight, 0, "web-v1 does not exist");
    let problems = ix.watch_problems().borrow().clone();
    let bad = problems
        .iter()
        .find(|(k, _)| k.name == "bad")
        .map(|(_, s)| s.clone())
        .unwrap();
    assert_eq!(bad.uid.as_deref(), Some("uid-bad"));
    let msg = &bad.problems.iter().next().unwrap().message;
    assert!(msg.contains("spec.backends[0].weight"), "{msg}");
}
