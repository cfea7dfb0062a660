//! The inbound policy index: which TrafficTargets apply to which pod and port, and how the
//! default, the routes and the probes end up in a pod's policy.

use super::*;
use crate::problems::reason;

const TD: &str = "cluster.local";

fn ix() -> Index {
    Index::new(Naming {
        cluster_domain: "cluster.local".into(),
        trust_domain: TD.into(),
    })
}

fn id(sa: &str, ns: &str) -> String {
    tulle_api::ServiceAccountIdentity::new(sa, ns, TD).dns_name()
}

fn pod(sa: &str) -> PodInfo {
    PodInfo {
        ips: vec![],
        service_account: sa.into(),
        meshed: true,
        owner: None,
    }
}

fn sa(name: &str, ns: Option<&str>) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: ns.map(String::from),
    }
}

fn tt(dest: &str, rules: Vec<AccessRule>, sources: Vec<Subject>) -> TrafficTargetInfo {
    TrafficTargetInfo {
        destination: sa(dest, None),
        rules,
        sources,
        port: None,
        meta: ObjectMeta {
            uid: Some("u".into()),
            created: None,
        },
    }
}

fn group(name: &str, matches: &[&str]) -> AccessRule {
    AccessRule::HttpRouteGroup {
        name: name.into(),
        matches: if matches.is_empty() {
            None
        } else {
            Some(matches.iter().map(|m| m.to_string()).collect())
        },
    }
}

fn rule(name: &str, path: &str) -> HttpRule {
    HttpRule {
        name: name.into(),
        path_regex: Some(path.into()),
        methods: vec!["GET".into()],
        headers: vec![],
    }
}

fn routes(ix: &Index) {
    ix.apply_smi(
        "shop",
        "api-routes",
        Ok(RouteGroupInfo {
            matches: vec![rule("metrics", "/metrics"), rule("health", "/health")],
            meta: ObjectMeta::default(),
        }),
    );
    ix.apply_smi(
        "shop",
        "port-8080",
        Ok(TcpRouteInfo {
            ports: vec![8080],
            meta: ObjectMeta::default(),
        }),
    );
    ix.apply_smi(
        "shop",
        "all-ports",
        Ok(TcpRouteInfo {
            ports: vec![],
            meta: ObjectMeta::default(),
        }),
    );
}

fn policy(ix: &Index, ns: &str, name: &str) -> PodPolicy {
    let w = ix.watch_policy(ns, name).expect("pod known");
    w.rx.borrow().clone().expect("pod present")
}

#[test]
fn untargeted_pods_get_the_default_and_the_overrides() {
    let ix = ix();
    ix.apply_pod("shop", "web-1", pod("web"));
    assert!(ix.watch_policy("shop", "nope").is_none());
    let w = ix.watch_policy("shop", "web-1").unwrap();
    assert_eq!(w.identity, id("web", "shop"));
    let p = w.rx.borrow().clone().unwrap();
    assert_eq!(p.default_policy, DefaultPolicy::Allow);
    assert!(!p.targeted && p.authorizations.is_empty());

    ix.set_default_policy(DefaultPolicy::Authenticated);
    assert_eq!(
        policy(&ix, "shop", "web-1").default_policy,
        DefaultPolicy::Authenticated
    );
    // The namespace overrides the install setting, the pod overrides the namespace.
    ix.apply_namespace(
        "shop",
        NamespaceInfo {
            default_policy: Some(DefaultPolicy::Deny),
        },
    );
    assert_eq!(
        policy(&ix, "shop", "web-1").default_policy,
        DefaultPolicy::Deny
    );
    ix.apply_pod_access(
        "shop",
        "web-1",
        pod("web"),
        PodAccess {
            default_policy: Some(DefaultPolicy::Allow),
            probes: vec![ProbeInfo {
                port: 8080,
                path: "/ready".into(),
            }],
        },
    );
    let p = policy(&ix, "shop", "web-1");
    assert_eq!(p.default_policy, DefaultPolicy::Allow);
    assert_eq!(
        p.probes,
        vec![ProbeInfo {
            port: 8080,
            path: "/ready".into()
        }]
    );
    ix.delete_namespace("shop");
    ix.apply_pod("shop", "web-1", pod("web"));
    assert_eq!(
        policy(&ix, "shop", "web-1").default_policy,
        DefaultPolicy::Authenticated
    );
    // A deleted pod: the watch says so.
    ix.delete_pod("shop", "web-1");
    assert!(w.rx.borrow().is_none());
}

#[test]
fn traffic_targets_apply_to_their_destination_service_account() {
    let ix = ix();
    routes(&ix);
    ix.apply_pod("shop", "api-1", pod("api"));
    ix.apply_pod("shop", "web-1", pod("web"));
    ix.apply_pod("other", "api-1", pod("api"));
    let w = ix.watch_policy("shop", "api-1").unwrap();
    let mut rx = w.rx.clone();
    rx.mark_unchanged();
    ix.apply_smi(
        "shop",
        "allow-web",
        Ok(tt(
            "api",
            vec![AccessRule::TcpRoute("port-8080".into())],
            // Source namespace defaults to the TrafficTarget's; cross-namespace sources.
            vec![sa("web", None), sa("prometheus", Some("monitoring"))],
        )),
    );
    assert!(rx.has_changed().unwrap());
    let p = policy(&ix, "shop", "api-1");
    assert!(p.targeted);
    assert_eq!(
        p.authorizations,
        vec![Authorization {
            traffic_target: "shop/allow-web".into(),
            identities: vec![id("prometheus", "monitoring"), id("web", "shop")],
            ports: vec![8080],
            http_routes: vec![],
        }]
    );
    // Other ServiceAccounts, and the same name in another namespace: not targeted.
    assert!(!policy(&ix, "shop", "web-1").targeted);
    assert!(!policy(&ix, "other", "api-1").targeted);

    // Deleting the TrafficTarget: back to the default.
    ix.delete_smi::<TrafficTargetInfo>("shop", "allow-web");
    let p = policy(&ix, "shop", "api-1");
    assert!(!p.targeted && p.authorizations.is_empty());
}

#[test]
fn http_rules_select_matches_and_constrain_the_tcp_ports() {
    let ix = ix();
    routes(&ix);
    ix.apply_pod("shop", "api-1", pod("api"));
    // The spec's example: TCPRoute port 8080 + the `metrics` match of a group.
    ix.apply_smi(
        "shop",
        "metrics",
        Ok(tt(
            "api",
            vec![
                AccessRule::TcpRoute("port-8080".into()),
                group("api-routes", &["metrics"]),
            ],
            vec![sa("prometheus", None)],
        )),
    );
    // HTTPRouteGroup only, matches omitted: the whole group on every port.
    ix.apply_smi(
        "shop",
        "web",
        Ok(tt(
            "api",
            vec![group("api-routes", &[])],
            vec![sa("web", None)],
        )),
    );
    let p = policy(&ix, "shop", "api-1");
    assert_eq!(p.authorizations.len(), 2);
    let metrics = &p.authorizations[0];
    assert_eq!(metrics.traffic_target, "shop/metrics");
    assert_eq!(metrics.ports, vec![8080]);
    let names: Vec<&str> = metrics
        .http_routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["api-routes/metrics"]);
    assert_eq!(
        metrics.http_routes[0].path_regex.as_deref(),
        Some("/metrics")
    );
    let web = &p.authorizations[1];
    assert!(web.ports.is_empty());
    let names: Vec<&str> = web.http_routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api-routes/metrics", "api-routes/health"]);

    // A route change reaches the pods of the TrafficTargets that use it.
    let mut rx = ix.watch_policy("shop", "api-1").unwrap().rx;
    rx.mark_unchanged();
    ix.apply_smi(
        "shop",
        "port-8080",
        Ok(TcpRouteInfo {
            ports: vec![8080, 9090],
            meta: ObjectMeta::default(),
        }),
    );
    assert!(rx.has_changed().unwrap());
    assert_eq!(
        policy(&ix, "shop", "api-1").authorizations[0].ports,
        vec![8080, 9090]
    );
}

#[test]
fn ports_union_all_ports_and_the_v1alpha2_port() {
    let ix = ix();
    routes(&ix);
    ix.apply_pod("shop", "api-1", pod("api"));
    ix.apply_smi(
        "shop",
        "udp",
        Ok(UdpRouteInfo {
            ports: vec![53],
            meta: ObjectMeta::default(),
        }),
    );
    let with = |rules: Vec<AccessRule>, port: Option<u16>| {
        let mut t = tt("api", rules, vec![sa("web", None)]);
        t.port = port;
        ix.apply_smi("shop", "t", Ok(t));
        policy(&ix, "shop", "api-1").authorizations
    };
    let tcp = |n: &str| AccessRule::TcpRoute(n.into());
    // Union of TCPRoute and UDPRoute ports.
    let a = with(
        vec![tcp("port-8080"), AccessRule::UdpRoute("udp".into())],
        None,
    );
    assert_eq!(a[0].ports, vec![53, 8080]);
    // An empty ports list: every port.
    let a = with(vec![tcp("port-8080"), tcp("all-ports")], None);
    assert!(a[0].ports.is_empty());
    // v1alpha2 destination.port: restricts to that port.
    let a = with(vec![tcp("all-ports")], Some(8443));
    assert_eq!(a[0].ports, vec![8443]);
    let a = with(vec![group("api-routes", &[])], Some(8080));
    assert_eq!(a[0].ports, vec![8080]);
    assert_eq!(a[0].http_routes.len(), 2);
    let a = with(vec![tcp("port-8080")], Some(8080));
    assert_eq!(a[0].ports, vec![8080]);
    // ... outside the TCPRoute's ports: nothing admitted (still targeted).
    assert!(with(vec![tcp("port-8080")], Some(9999)).is_empty());
    assert!(policy(&ix, "shop", "api-1").targeted);
}

#[test]
fn what_does_not_resolve_admits_nothing() {
    let ix = ix();
    routes(&ix);
    ix.apply_pod("shop", "api-1", pod("api"));
    let web = || vec![sa("web", None)];
    let cases = [
        // Missing TCPRoute: no port (not "every port").
        tt("api", vec![AccessRule::TcpRoute("missing".into())], web()),
        // Missing group, and a match name the group lacks: no request (not "any").
        tt("api", vec![group("missing", &[])], web()),
        tt(
            "api",
            vec![
                AccessRule::TcpRoute("port-8080".into()),
                group("api-routes", &["nope"]),
            ],
            web(),
        ),
        // Only unsupported rule kinds.
        tt(
            "api",
            vec![AccessRule::Other("Foo".into(), "x".into())],
            web(),
        ),
        // No ServiceAccount source.
        tt(
            "api",
            vec![AccessRule::TcpRoute("port-8080".into())],
            vec![Subject {
                kind: "Group".into(),
                name: "admins".into(),
                namespace: None,
            }],
        ),
    ];
    for (i, t) in cases.into_iter().enumerate() {
        ix.apply_smi("shop", "t", Ok(t));
        let p = policy(&ix, "shop", "api-1");
        assert!(p.targeted, "case {i}");
        assert!(
            p.authorizations.is_empty(),
            "case {i}: {:?}",
            p.authorizations
        );
        let probs = ix.watch_problems().borrow().clone();
        let set = probs
            .iter()
            .find(|(k, _)| k.kind == SmiKind::TrafficTarget)
            .map(|(_, s)| s.problems.iter().map(|p| p.reason).collect::<Vec<_>>())
            .unwrap_or_default();
        assert!(set.contains(&reason::ADMITS_NOTHING), "case {i}: {set:?}");
    }
    // An invalid TrafficTarget is absent: the pod is no longer targeted.
    ix.apply_smi::<TrafficTargetInfo>(
        "shop",
        "t",
        Err(Invalid {
            uid: None,
            reason: "spec.destination: is missing".into(),
        }),
    );
    assert!(!policy(&ix, "shop", "api-1").targeted);
}

#[test]
fn traffic_target_problems() {
    let ix = ix();
    routes(&ix);
    ix.apply_smi(
        "shop",
        "t",
        Ok(tt(
            "api",
            vec![
                group("gone", &[]),
                group("api-routes", &["metrics", "nope"]),
                AccessRule::TcpRoute("gone".into()),
                AccessRule::UdpRoute("gone-udp".into()),
                AccessRule::Other("Foo".into(), "x".into()),
            ],
            vec![
                sa("web", None),
                Subject {
                    kind: "Group".into(),
                    name: "g".into(),
                    namespace: None,
                },
            ],
        )),
    );
    let probs = ix.watch_problems().borrow().clone();
    let (key, set) = probs.iter().next().unwrap();
    assert_eq!(key.kind, SmiKind::TrafficTarget);
    let reasons: std::collections::BTreeSet<&str> = set.problems.iter().map(|p| p.reason).collect();
    for r in [
        reason::ROUTE_GROUP_NOT_FOUND,
        reason::MATCH_NOT_FOUND,
        reason::ROUTE_NOT_FOUND,
        reason::UDP_NOT_ENFORCED,
        reason::UNSUPPORTED_RULE,
        reason::UNSUPPORTED_SUBJECT,
    ] {
        assert!(reasons.contains(r), "{r} missing from {reasons:?}");
    }
    // Its port rules all point at missing routes: it admits nothing (fail closed).
    assert!(reasons.contains(reason::ADMITS_NOTHING));
}

#[test]
fn default_policy_values() {
    assert_eq!(DefaultPolicy::parse(" Deny "), Ok(DefaultPolicy::Deny));
    assert_eq!("authenticated".parse(), Ok(DefaultPolicy::Authenticated));
    assert!(DefaultPolicy::parse("open").is_err());
    assert_eq!(
        DefaultPolicy::from_annotation(Some("open")),
        Some(DefaultPolicy::Deny)
    );
    assert_eq!(DefaultPolicy::from_annotation(None), None);
}
