//! The TrafficSplit semantics of profiles and the problems of SMI objects.

use super::*;
use crate::problems::reason;
use std::net::SocketAddr;

fn ix() -> Index {
    Index::new(Naming {
        cluster_domain: "cluster.local".into(),
        trust_domain: "cluster.local".into(),
    })
}

fn svc(ip: &str, ports: &[u16]) -> ServiceInfo {
    ServiceInfo {
        cluster_ips: vec![ip.parse().unwrap()],
        ports: ports
            .iter()
            .map(|p| ServicePort {
                name: format!("p{p}"),
                port: *p,
                opaque: false,
            })
            .collect(),
    }
}

fn split(apex: &str, backends: &[(&str, u32)], created: i64) -> SplitInfo {
    SplitInfo {
        apex: apex.into(),
        backends: backends.iter().map(|(s, w)| (s.to_string(), *w)).collect(),
        matches: vec![],
        meta: ObjectMeta {
            uid: Some(format!("uid-{created}")),
            created: Some(created),
        },
    }
}

fn target(name: &str, port: u16) -> Target {
    Target::Service {
        namespace: "shop".into(),
        name: name.into(),
        port,
    }
}

fn profile(ix: &Index, name: &str, port: u16) -> Profile {
    ix.watch_profile(&target(name, port)).borrow().clone()
}

fn weights(p: &Profile) -> Vec<(&str, u32)> {
    p.backends
        .iter()
        .map(|b| (b.authority.as_str(), b.weight))
        .collect()
}

/// The reasons of each object with problems.
fn problems(ix: &Index) -> Vec<(String, Vec<&'static str>)> {
    ix.watch_problems()
        .borrow()
        .iter()
        .map(|(k, s)| {
            (
                format!("{}/{}", k.kind.kind(), k.name),
                s.problems.iter().map(|p| p.reason).collect(),
            )
        })
        .collect()
}

/// web, web-v1, web-v2, each with ports 80 and 9090.
fn cluster() -> Index {
    let ix = ix();
    ix.apply_service("shop", "web", svc("10.96.0.10", &[80, 9090]));
    ix.apply_service("shop", "web-v1", svc("10.96.0.11", &[80, 9090]));
    ix.apply_service("shop", "web-v2", svc("10.96.0.12", &[80, 9090]));
    ix
}

#[test]
fn backends_in_spec_order_missing_or_portless_ones_at_zero() {
    let ix = cluster();
    ix.apply_service("shop", "web-v2", svc("10.96.0.12", &[80]));
    ix.apply_split(
        "shop",
        "canary",
        split(
            "web",
            &[("web-v2", 10), ("web-v1", 90), ("web-v3", 5), ("web", 1)],
            100,
        ),
    );
    let p = profile(&ix, "web", 80);
    assert_eq!(p.traffic_split.as_deref(), Some("shop/canary"));
    assert!(p.split_matches.is_empty());
    assert_eq!(
        weights(&p),
        [
            ("web-v2.shop.svc.cluster.local:80", 10),
            ("web-v1.shop.svc.cluster.local:80", 90),
            ("web-v3.shop.svc.cluster.local:80", 0),
            // The apex as a backend: the apex's own authority.
            ("web.shop.svc.cluster.local:80", 1),
        ]
    );
    // web-v2 has no port 9090.
    let p = profile(&ix, "web", 9090);
    assert_eq!(p.backends[0].weight, 0);
    assert_eq!(p.backends[1].weight, 90);
    // The ClusterIP resolves to the same profile.
    let by_ip = ix
        .watch_profile(&Target::Addr(SocketAddr::from(([10, 96, 0, 10], 80))))
        .borrow()
        .clone();
    assert_eq!(by_ip, profile(&ix, "web", 80));
    // A backend is created: it gets its weight.
    let mut rx = ix.watch_profile(&target("web", 80));
    ix.apply_service("shop", "web-v3", svc("10.96.0.13", &[80, 9090]));
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().backends[2].weight, 5);

    let got = problems(&ix);
    assert_eq!(
        got,
        [(
            "TrafficSplit/canary".to_string(),
            vec![reason::PORT_MISMATCH]
        )]
    );
    let msg = ix
        .watch_problems()
        .borrow()
        .values()
        .next()
        .unwrap()
        .problems
        .iter()
        .next()
        .unwrap()
        .message
        .clone();
    assert!(msg.contains("web-v2 has no port 9090"), "{msg}");
}

#[test]
fn no_split_or_unknown_apex() {
    let ix = cluster();
    let p = profile(&ix, "web", 80);
    assert_eq!(
        p.fully_qualified_name.as_deref(),
        Some("web.shop.svc.cluster.local")
    );
    assert!(p.backends.is_empty() && p.traffic_split.is_none());
    ix.apply_split("shop", "ghost", split("nope", &[("web-v1", 1)], 1));
    assert_eq!(profile(&ix, "nope", 80), Profile::default());
    assert_eq!(
        problems(&ix),
        [(
            "TrafficSplit/ghost".to_string(),
            vec![reason::APEX_NOT_FOUND]
        )]
    );
    // A split in another namespace does not apply.
    ix.apply_split("other", "web", split("web", &[("web-v1", 1)], 1));
    assert!(profile(&ix, "web", 80).backends.is_empty());
}

#[test]
fn the_oldest_split_wins_then_the_name() {
    let ix = cluster();
    ix.apply_split("shop", "b-newer", split("web", &[("web-v1", 1)], 200));
    ix.apply_split("shop", "z-older", split("web", &[("web-v2", 1)], 100));
    assert_eq!(
        profile(&ix, "web", 80).traffic_split.as_deref(),
        Some("shop/z-older")
    );
    assert_eq!(
        problems(&ix),
        [(
            "TrafficSplit/b-newer".to_string(),
            vec![reason::DUPLICATE_APEX]
        )]
    );
    // Same age: by name.
    ix.apply_split("shop", "a-same", split("web", &[("web-v1", 1)], 100));
    assert_eq!(
        profile(&ix, "web", 80).traffic_split.as_deref(),
        Some("shop/a-same")
    );
    // The winner goes away: the next one applies.
    ix.delete_split("shop", "a-same");
    ix.delete_split("shop", "z-older");
    assert_eq!(
        profile(&ix, "web", 80).traffic_split.as_deref(),
        Some("shop/b-newer")
    );
    assert!(problems(&ix).is_empty());
}

#[test]
fn all_zero_weights_are_sent_and_reported() {
    let ix = cluster();
    ix.apply_split(
        "shop",
        "off",
        split("web", &[("web-v1", 0), ("web-v2", 0)], 1),
    );
    assert_eq!(
        weights(&profile(&ix, "web", 80)),
        [
            ("web-v1.shop.svc.cluster.local:80", 0),
            ("web-v2.shop.svc.cluster.local:80", 0)
        ]
    );
    assert_eq!(
        problems(&ix),
        [(
            "TrafficSplit/off".to_string(),
            vec![reason::ALL_WEIGHTS_ZERO]
        )]
    );
    // Effective zero: the only weighted backend is missing.
    ix.apply_split(
        "shop",
        "off",
        split("web", &[("web-v1", 0), ("web-v9", 5)], 1),
    );
    assert_eq!(
        problems(&ix),
        [(
            "TrafficSplit/off".to_string(),
            vec![reason::ALL_WEIGHTS_ZERO, reason::BACKEND_NOT_FOUND]
        )]
    );
}

fn rule(name: &str, path: Option<&str>, headers: &[(&str, &str)]) -> HttpRule {
    HttpRule {
        name: name.into(),
        path_regex: path.map(String::from),
        methods: vec![],
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn group(rules: Vec<HttpRule>) -> Result<RouteGroupInfo, Invalid> {
    Ok(RouteGroupInfo {
        matches: rules,
        meta: ObjectMeta::default(),
    })
}

#[test]
fn matches_resolve_route_groups_and_tcp_routes() {
    let ix = cluster();
    let mut s = split("web", &[("web-v1", 0), ("web-v2", 100)], 1);
    s.matches = vec![
        RouteRef::HttpRouteGroup("canary".into()),
        RouteRef::HttpRouteGroup("api".into()),
    ];
    ix.apply_split("shop", "ab", s.clone());
    // Nothing resolves: no split at all.
    let p = profile(&ix, "web", 80);
    assert!(p.backends.is_empty() && p.traffic_split.is_none());
    assert_eq!(
        problems(&ix),
        [(
            "TrafficSplit/ab".to_string(),
            // Sorted by reason.
            vec![
                reason::NO_MATCHING_ROUTES,
                reason::ROUTE_GROUP_NOT_FOUND,
                reason::ROUTE_GROUP_NOT_FOUND
            ]
        )]
    );
    ix.apply_smi(
        "shop",
        "canary",
        group(vec![rule("c", None, &[("x-canary", "true")])]),
    );
    ix.apply_smi("shop", "api", group(vec![rule("a", Some("/api"), &[])]));
    let p = profile(&ix, "web", 80);
    assert_eq!(p.traffic_split.as_deref(), Some("shop/ab"));
    assert_eq!(
        p.split_matches,
        [
            rule("c", None, &[("x-canary", "true")]),
            rule("a", Some("/api"), &[])
        ]
    );
    assert_eq!(p.backends.len(), 2);
    // A TCPRoute on port 9090 only: everything on 9090, rules on 80.
    s.matches.push(RouteRef::TcpRoute("tcp".into()));
    ix.apply_split("shop", "ab", s.clone());
    ix.apply_smi::<TcpRouteInfo>(
        "shop",
        "tcp",
        Ok(TcpRouteInfo {
            ports: vec![9090],
            meta: ObjectMeta::default(),
        }),
    );
    assert_eq!(profile(&ix, "web", 80).split_matches.len(), 2);
    let p9090 = profile(&ix, "web", 9090);
    assert!(p9090.split_matches.is_empty());
    assert_eq!(p9090.traffic_split.as_deref(), Some("shop/ab"));
    // Empty ports: all ports.
    ix.apply_smi::<TcpRouteInfo>("shop", "tcp", Ok(TcpRouteInfo::default()));
    assert!(profile(&ix, "web", 80).split_matches.is_empty());
    // An unsupported kind contributes nothing and is reported.
    let mut u = split("web", &[("web-v2", 1)], 5);
    u.matches = vec![RouteRef::Other("UDPRoute".into(), "u".into())];
    ix.apply_split("shop", "udp", u);
    let got = problems(&ix);
    assert!(
        got.contains(&(
            "TrafficSplit/udp".to_string(),
            vec![reason::DUPLICATE_APEX, reason::UNSUPPORTED_MATCH]
        )),
        "{got:?}"
    );
}

#[test]
fn invalid_objects_are_absent_and_reported() {
    let ix = cluster();
    ix.apply_split("shop", "good", split("web", &[("web-v1", 1)], 1));
    let mut rx = ix.watch_profile(&target("web", 80));
    rx.borrow_and_update();
    // A bad object beside the good one changes nothing for it.
    ix.apply_smi::<SplitInfo>(
        "shop",
        "bad",
        Err(Invalid {
            uid: Some("u-bad".into()),
            reason: "spec.backends[0].weight: \"abc\" is not a quantity".into(),
        }),
    );
    assert!(!rx.has_changed().unwrap());
    let set = ix.watch_problems().borrow().clone();
    let (k, s) = set.iter().next().unwrap();
    assert_eq!((k.kind, k.name.as_str()), (SmiKind::TrafficSplit, "bad"));
    assert_eq!(s.uid.as_deref(), Some("u-bad"));
    let p = s.problems.iter().next().unwrap();
    assert_eq!(p.reason, reason::INVALID_OBJECT);
    assert!(p.message.contains("is not a quantity"), "{}", p.message);
    // The good split becomes invalid: it is gone from the profile.
    ix.apply_smi::<SplitInfo>("shop", "good", Err(Invalid::default()));
    assert!(profile(&ix, "web", 80).backends.is_empty());
    // Fixed: back, and no problem left for it.
    ix.apply_split("shop", "good", split("web", &[("web-v1", 1)], 1));
    assert_eq!(profile(&ix, "web", 80).backends.len(), 1);
    ix.delete_smi::<SplitInfo>("shop", "bad");
    assert!(problems(&ix).is_empty());
    // A reset replaces valid and invalid objects of the kind.
    ix.reset_smi::<SplitInfo>(vec![(
        "shop".into(),
        "bad2".into(),
        Err(Invalid::default()),
    )]);
    assert!(profile(&ix, "web", 80).backends.is_empty());
    assert_eq!(problems(&ix).len(), 1);
}
