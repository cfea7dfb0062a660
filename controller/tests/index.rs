//! Destination index behaviour, driven directly (no cluster): resolution of services,
//! ClusterIPs and pod IPs, change propagation, and the Update diffs streamed to clients.

use std::{net::SocketAddr, time::Duration};
use tulle_api::destination::{Update, update::Update as U};
use tulle_controller::{
    core::{
        Index, Naming, PodInfo, ProtocolHint, Resolution, ServiceInfo, ServicePort, SliceEndpoint,
        SliceInfo, SplitInfo, Target,
    },
    grpc::diff,
};

const LIMIT: Duration = Duration::from_secs(10);

fn index() -> Index {
    Index::new(Naming {
        cluster_domain: "cluster.local".into(),
        trust_domain: "cluster.local".into(),
    })
}

fn svc(ip: &str, port: u16) -> ServiceInfo {
    ServiceInfo {
        cluster_ips: vec![ip.parse().unwrap()],
        ports: vec![ServicePort {
            name: "http".into(),
            port,
            opaque: false,
        }],
    }
}

fn slice(service: &str, port: u16, eps: &[(&str, Option<&str>, bool)]) -> SliceInfo {
    SliceInfo {
        service: service.into(),
        ports: vec![("http".into(), port)],
        endpoints: eps
            .iter()
            .map(|(ip, pod, ready)| SliceEndpoint {
                addrs: vec![ip.parse().unwrap()],
                ready: *ready,
                pod: pod.map(str::to_string),
            })
            .collect(),
    }
}

fn pod(ip: &str, sa: &str, meshed: bool) -> PodInfo {
    PodInfo {
        ips: vec![ip.parse().unwrap()],
        service_account: sa.into(),
        meshed,
        owner: Some(("deployment".into(), "web".into())),
    }
}

fn web_target() -> Target {
    Target::parse("web.shop.svc.cluster.local:80", "cluster.local").unwrap()
}

fn addrs(r: &Resolution) -> Vec<SocketAddr> {
    match r {
        Resolution::Endpoints(e) => e.keys().copied().collect(),
        Resolution::Unknown => panic!("expected endpoints, got Unknown"),
    }
}

async fn next(rx: &mut tokio::sync::watch::Receiver<Resolution>) -> Resolution {
    tokio::time::timeout(LIMIT, rx.changed())
        .await
        .expect("no change within the limit")
        .unwrap();
    rx.borrow_and_update().clone()
}

fn kinds(updates: &[Update]) -> Vec<String> {
    updates
        .iter()
        .map(|u| match u.update.as_ref().unwrap() {
            U::Add(a) => format!("add{}", a.addrs.len()),
            U::Remove(r) => format!("remove{}", r.addrs.len()),
            U::NoEndpoints(n) => format!("none(exists={})", n.exists),
        })
        .collect()
}

#[tokio::test]
async fn unknown_service_is_distinct_from_empty() {
    let ix = index();
    let mut rx = ix.watch(&web_target());
    let first = rx.borrow_and_update().clone();
    assert_eq!(first, Resolution::Unknown);
    assert_eq!(kinds(&diff(None, &first)), vec!["none(exists=false)"]);

    ix.apply_service("shop", "web", svc("10.96.0.10", 80));
    let r = next(&mut rx).await;
    assert_eq!(addrs(&r), vec![]);
    assert_eq!(kinds(&diff(Some(&first), &r)), vec!["none(exists=true)"]);

    ix.delete_service("shop", "web");
    assert_eq!(next(&mut rx).await, Resolution::Unknown);
}

#[tokio::test]
async fn endpoints_are_added_changed_and_removed() {
    let ix = index();
    ix.apply_service("shop", "web", svc("10.96.0.10", 80));
    ix.apply_pod("shop", "web-1", pod("10.1.0.1", "web", true));
    ix.apply_pod("shop", "web-2", pod("10.1.0.2", "web", false));
    let mut rx = ix.watch(&web_target());
    let r0 = rx.borrow_and_update().clone();

    ix.apply_slice(
        "shop",
        "web-a",
        slice(
            "web",
            8080,
            &[
                ("10.1.0.1", Some("web-1"), true),
                ("10.1.0.2", Some("web-2"), true),
                ("10.1.0.3", None, false),
            ],
        ),
    );
    let r1 = next(&mut rx).await;
    assert_eq!(
        addrs(&r1),
        vec![
            "10.1.0.1:8080".parse().unwrap(),
            "10.1.0.2:8080".parse().unwrap()
        ],
        "not-ready endpoints are left out"
    );
    let Resolution::Endpoints(eps) = &r1 else {
        unreachable!()
    };
    let meshed = &eps[&"10.1.0.1:8080".parse().unwrap()];
    assert_eq!(
        meshed.identity.as_deref(),
        Some("web.shop.serviceaccount.identity.tulle.cluster.local")
    );
    assert_eq!(meshed.hint, ProtocolHint::H2);
    assert_eq!(meshed.labels.get("pod").map(String::as_str), Some("web-1"));
    assert_eq!(
        meshed.labels.get("namespace").map(String::as_str),
        Some("shop")
    );
    assert_eq!(
        meshed.labels.get("deployment").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        meshed.labels.get("serviceaccount").map(String::as_str),
        Some("web")
    );
    let plain = &eps[&"10.1.0.2:8080".parse().unwrap()];
    assert_eq!(plain.identity, None);
    assert_eq!(plain.hint, ProtocolHint::Unknown);

    let d = diff(Some(&r0), &r1);
    assert_eq!(kinds(&d), vec!["add2"]);
    let Some(U::Add(set)) = &d[0].update else {
        unreachable!()
    };
    let w = set.addrs.iter().find(|a| a.tls_identity.is_some()).unwrap();
    assert_eq!(
        w.tls_identity.as_ref().unwrap().server_name,
        "web.shop.serviceaccount.identity.tulle.cluster.local"
    );
    assert_eq!(
        w.metric_labels.get("pod").map(String::as_str),
        Some("web-1")
    );

    // The second pod gets meshed: only it is re-sent.
    ix.apply_pod("shop", "web-2", pod("10.1.0.2", "web", true));
    let r2 = next(&mut rx).await;
    assert_eq!(kinds(&diff(Some(&r1), &r2)), vec!["add1"]);

    // Scale down: one endpoint leaves.
    ix.apply_slice(
        "shop",
        "web-a",
        slice("web", 8080, &[("10.1.0.2", Some("web-2"), true)]),
    );
    let r3 = next(&mut rx).await;
    assert_eq!(kinds(&diff(Some(&r2), &r3)), vec!["remove1"]);

    // All gone: the service still exists.
    ix.delete_slice("shop", "web-a");
    let r4 = next(&mut rx).await;
    assert_eq!(kinds(&diff(Some(&r3), &r4)), vec!["none(exists=true)"]);
}

#[tokio::test]
async fn unrelated_changes_do_not_wake_watchers() {
    let ix = index();
    ix.apply_service("shop", "web", svc("10.96.0.10", 80));
    let mut rx = ix.watch(&web_target());
    rx.borrow_and_update();
    ix.apply_service("shop", "db", svc("10.96.0.11", 5432));
    ix.apply_slice(
        "shop",
        "db-a",
        slice("db", 5432, &[("10.1.0.9", None, true)]),
    );
    ix.apply_pod("shop", "other", pod("10.1.0.8", "other", true));
    assert!(!rx.has_changed().unwrap());
    // Re-applying identical state does not wake them either.
    ix.apply_service("shop", "web", svc("10.96.0.10", 80));
    assert!(!rx.has_changed().unwrap());
}

#[tokio::test]
async fn cluster_ip_resolves_to_its_service() {
    let ix = index();
    let mut rx = ix.watch(&Target::Addr("10.96.0.10:80".parse().unwrap()));
    assert_eq!(rx.borrow_and_update().clone(), Resolution::Unknown);
    ix.apply_service("shop", "web", svc("10.96.0.10", 80));
    ix.apply_slice(
        "shop",
        "web-a",
        slice("web", 8080, &[("10.1.0.1", None, true)]),
    );
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let r = next(&mut rx).await;
        if matches!(&r, Resolution::Endpoints(e) if !e.is_empty()) {
            assert_eq!(addrs(&r), vec!["10.1.0.1:8080".parse().unwrap()]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
    // A port the service does not expose: known, but no endpoints.
    let other = ix.watch(&Target::Addr("10.96.0.10:81".parse().unwrap()));
    assert_eq!(addrs(&other.borrow()), vec![]);
}

#[tokio::test]
async fn pod_ip_resolves_to_that_pod() {
    let ix = index();
    let t = Target::Addr("10.1.0.1:9000".parse().unwrap());
    let mut rx = ix.watch(&t);
    assert_eq!(rx.borrow_and_update().clone(), Resolution::Unknown);
    ix.apply_pod("shop", "web-1", pod("10.1.0.1", "web", true));
    let r = next(&mut rx).await;
    assert_eq!(addrs(&r), vec!["10.1.0.1:9000".parse().unwrap()]);
    let Resolution::Endpoints(e) = &r else {
        unreachable!()
    };
    assert_eq!(
        e.values().next().unwrap().identity.as_deref(),
        Some("web.shop.serviceaccount.identity.tulle.cluster.local")
    );
    ix.delete_pod("shop", "web-1");
    assert_eq!(next(&mut rx).await, Resolution::Unknown);
}

#[tokio::test]
async fn reset_replaces_state() {
    let ix = index();
    ix.apply_service("shop", "web", svc("10.96.0.10", 80));
    ix.apply_slice(
        "shop",
        "web-a",
        slice("web", 8080, &[("10.1.0.1", None, true)]),
    );
    let mut rx = ix.watch(&web_target());
    assert_eq!(addrs(&rx.borrow_and_update()).len(), 1);
    // After a watch restart the slice is gone from the fresh list.
    ix.reset_slices(vec![]);
    assert_eq!(addrs(&next(&mut rx).await), vec![]);
    ix.reset_services(vec![]);
    assert_eq!(next(&mut rx).await, Resolution::Unknown);
}

#[tokio::test]
async fn traffic_split_backends_reach_the_profile() {
    let ix = index();
    ix.apply_service("shop", "web", svc("10.96.0.10", 80));
    ix.apply_service("shop", "web-v1", svc("10.96.0.11", 80));
    let mut rx = ix.watch_profile(&web_target());
    let p = rx.borrow_and_update().clone();
    assert_eq!(
        p.fully_qualified_name.as_deref(),
        Some("web.shop.svc.cluster.local")
    );
    assert!(p.backends.is_empty());
    ix.apply_split(
        "shop",
        "web-split",
        SplitInfo {
            apex: "web".into(),
            backends: vec![("web-v1".into(), 90), ("web-v2".into(), 10)],
            ..Default::default()
        },
    );
    tokio::time::timeout(LIMIT, rx.changed())
        .await
        .unwrap()
        .unwrap();
    let p = rx.borrow_and_update().clone();
    let got: Vec<(String, u32)> = p
        .backends
        .iter()
        .map(|b| (b.authority.clone(), b.weight))
        .collect();
    assert_eq!(
        got,
        vec![
            ("web-v1.shop.svc.cluster.local:80".to_string(), 90),
            // web-v2 does not exist: listed with weight 0.
            ("web-v2.shop.svc.cluster.local:80".to_string(), 0)
        ]
    );
    ix.delete_split("shop", "web-split");
    tokio::time::timeout(LIMIT, rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(rx.borrow().backends.is_empty());
}

/// Issue 15, item 7: the work a Kubernetes update does under the index lock is proportional to
/// the targets it can affect, not to everything watched.
#[tokio::test]
async fn the_work_per_update_is_proportional_to_what_it_affects() {
    let ix = index();
    let n = 300;
    let mut rxs = vec![];
    let mut profiles = vec![];
    for i in 0..n {
        let (name, cip, pip) = (
            format!("svc-{i}"),
            format!("10.96.{}.{}", i / 200, i % 200 + 1),
            format!("10.1.{}.{}", i / 200, i % 200 + 1),
        );
        ix.apply_service("shop", &name, svc(&cip, 80));
        ix.apply_pod("shop", &format!("pod-{i}"), pod(&pip, "web", true));
        ix.apply_slice(
            "shop",
            &format!("{name}-a"),
            slice(
                &name,
                8080,
                &[(pip.as_str(), Some(&format!("pod-{i}")), true)],
            ),
        );
        let by_name = Target::parse(
            &format!("{name}.shop.svc.cluster.local:80"),
            "cluster.local",
        )
        .unwrap();
        rxs.push(ix.watch(&by_name));
        rxs.push(ix.watch(&Target::Addr(format!("{cip}:80").parse().unwrap())));
        rxs.push(ix.watch(&Target::Addr(format!("{pip}:8080").parse().unwrap())));
        profiles.push(ix.watch_profile(&by_name));
    }
    let m = ix.metrics();
    let (examined, recomputed) = (m.targets_examined(), m.profiles_recomputed());

    // An EndpointSlice change of one Service: its two targets (name and ClusterIP), no profile.
    ix.apply_slice(
        "shop",
        "svc-7-a",
        slice(
            "svc-7",
            8080,
            &[("10.1.0.8", Some("pod-7")), ("10.1.9.9", None)].map(|(ip, p)| (ip, p, true)),
        ),
    );
    assert_eq!(m.targets_examined() - examined, 2);
    assert_eq!(m.profiles_recomputed(), recomputed);
    assert_eq!(
        addrs(&rxs[7 * 3].borrow()).len(),
        2,
        "svc-7 by name updated"
    );
    assert_eq!(
        addrs(&rxs[7 * 3 + 1].borrow()).len(),
        2,
        "svc-7 by ClusterIP updated"
    );

    // A Pod change: its IP's target and the targets of the Service it backs.
    let examined = m.targets_examined();
    ix.apply_pod("shop", "pod-9", pod("10.1.0.10", "other", true));
    assert_eq!(m.targets_examined() - examined, 3);
    assert_eq!(m.profiles_recomputed(), recomputed);

    // A Service change in another namespace touches nothing watched here.
    let examined = m.targets_examined();
    ix.apply_service("other", "x", svc("10.96.99.1", 80));
    assert_eq!(m.targets_examined(), examined);
    assert_eq!(m.profiles_recomputed(), recomputed);

    // A pod that moves away from a watched IP: that address is re-resolved (now Unknown).
    let mut moved = ix.watch(&Target::Addr("10.1.0.12:8080".parse().unwrap()));
    moved.borrow_and_update();
    ix.apply_pod("shop", "pod-11", pod("10.1.200.1", "web", true));
    assert_eq!(next(&mut moved).await, Resolution::Unknown);
    drop((rxs, profiles));
}
