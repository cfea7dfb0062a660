//! The decision function, rule by rule.

use http::{HeaderMap, Method};

use super::*;

const A: &str = "a.shop.serviceaccount.identity.tulle.cluster.local";
const B: &str = "b.other.serviceaccount.identity.tulle.cluster.local";

fn policy(json: serde_json::Value) -> Policy {
    serde_json::from_value::<PolicyFile>(json)
        .unwrap()
        .compile()
}

fn get(p: &Policy, port: u16, client: Option<&str>, path: &str) -> Decision {
    p.check_http(port, client, &Method::GET, path, &HeaderMap::new())
}

fn targeted() -> Policy {
    policy(serde_json::json!({
        "default_policy": "allow",
        "targeted": true,
        "authorizations": [
            {"traffic_target": "shop/tcp", "identities": [A], "ports": [5432]},
            {"traffic_target": "shop/api", "identities": [A, B], "ports": [8080],
             "http_routes": [
                {"name": "api/read", "path_regex": "/api", "methods": ["GET"]},
                {"name": "api/canary", "headers": [{"name": "x-canary", "value_regex": "true"}]},
                {"name": "api/broken", "path_regex": "(["}
             ]},
            {"traffic_target": "shop/any", "identities": [B.to_ascii_uppercase()]}
        ],
        "probes": [{"port": 8080, "path": "/healthz"}, {"port": 9000}]
    }))
}

#[test]
fn defaults_when_not_targeted() {
    let allow = Policy::default_only(DefaultPolicy::Allow);
    assert!(get(&allow, 80, None, "/").allowed);
    assert!(allow.check_tcp(80, None).allowed);
    assert_eq!(
        allow.authz_label(&get(&allow, 80, None, "/")),
        "default:allow"
    );

    let auth = Policy::default_only(DefaultPolicy::Authenticated);
    assert!(get(&auth, 80, Some(A), "/").allowed);
    assert!(auth.check_tcp(80, Some(A)).allowed);
    let d = get(&auth, 80, None, "/");
    assert!(!d.allowed);
    assert_eq!(auth.authz_label(&d), "default:authenticated");
    assert!(auth.deny_reason(&d).contains("authenticated"));
    assert!(!auth.check_tcp(80, None).allowed);

    let deny = Policy::default_only(DefaultPolicy::Deny);
    assert!(!get(&deny, 80, Some(A), "/").allowed);
    assert!(!deny.check_tcp(80, Some(A)).allowed);
    assert_eq!(
        deny.authz_label(&get(&deny, 80, Some(A), "/")),
        "default:deny"
    );
}

#[test]
fn targeted_admits_only_listed_identities_on_covered_ports_and_routes() {
    let p = targeted();
    // Route match by path and method; the route and TrafficTarget are named.
    let d = get(&p, 8080, Some(A), "/api/x");
    assert!(d.allowed);
    assert_eq!(p.authz_label(&d), "shop/api");
    assert_eq!(p.route_label(&d), "api/read");
    // Same path, another method: no route of shop/api matches.
    let post = p.check_http(8080, Some(A), &Method::POST, "/api/x", &HeaderMap::new());
    assert!(!post.allowed);
    assert_eq!(p.authz_label(&post), "targeted");
    assert!(p.deny_reason(&post).contains("TrafficTarget"));
    // A header route.
    let mut h = HeaderMap::new();
    h.insert("x-canary", "true".parse().unwrap());
    let d = p.check_http(8080, Some(A), &Method::DELETE, "/other", &h);
    assert_eq!((d.allowed, p.route_label(&d)), (true, "api/canary"));
    // An invalid route matches nothing (fail closed).
    assert!(!get(&p, 8080, Some(A), "/x").allowed);
    // A is listed for 5432 without routes (HTTP and TCP), not for other ports.
    assert!(get(&p, 5432, Some(A), "/anything").allowed);
    assert!(p.check_tcp(5432, Some(A)).allowed);
    assert!(!get(&p, 6000, Some(A), "/api").allowed);
    assert!(
        !p.check_tcp(8080, Some(A)).allowed,
        "routes admit no opaque TCP"
    );
    // B: every port through shop/any (identities compared case-insensitively).
    let d = p.check_tcp(6000, Some(B));
    assert_eq!((d.allowed, p.authz_label(&d)), (true, "shop/any"));
    assert!(get(&p, 8080, Some(B), "/x").allowed);
    // An unlisted identity, whatever the default says.
    let c = "c.shop.serviceaccount.identity.tulle.cluster.local";
    assert!(!get(&p, 8080, Some(c), "/api").allowed);
    assert!(!p.check_tcp(5432, Some(c)).allowed);
}

#[test]
fn plaintext_clients_never_match_a_traffic_target() {
    let p = targeted();
    assert!(!get(&p, 8080, None, "/api").allowed);
    assert!(!get(&p, 5432, None, "/").allowed);
    assert!(!p.check_tcp(6000, None).allowed);
    assert_eq!(p.authz_label(&p.check_tcp(6000, None)), "targeted");
}

#[test]
fn targeted_with_no_authorization_denies_everyone() {
    let p = policy(serde_json::json!({"targeted": true}));
    assert!(!get(&p, 80, Some(A), "/").allowed);
    assert!(!p.check_tcp(80, Some(A)).allowed);
    assert!(!p.may_admit(None, Some(A)));
}

#[test]
fn probes_are_exempt_for_plaintext_clients_only() {
    let p = policy(serde_json::json!({
        "default_policy": "deny",
        "probes": [{"port": 8080, "path": "/healthz"}, {"port": 9000}]
    }));
    let d = get(&p, 8080, None, "/healthz");
    assert_eq!((d.allowed, p.authz_label(&d)), (true, "probe"));
    assert!(!get(&p, 8080, None, "/healthz/more").allowed, "exact path");
    assert!(
        !get(&p, 8081, None, "/healthz").allowed,
        "the probe's port only"
    );
    assert!(
        !p.check_tcp(8080, None).allowed,
        "a path probe exempts no TCP"
    );
    // A probe without a path: the whole port, HTTP and TCP.
    assert!(get(&p, 9000, None, "/any").allowed);
    assert!(p.check_tcp(9000, None).allowed);
    // Not for mesh clients: the policy decides those.
    assert!(!get(&p, 8080, Some(A), "/healthz").allowed);
    // Also under a targeted policy.
    assert!(get(&targeted(), 8080, None, "/healthz").allowed);
}

#[test]
fn pending_denies_everything_but_probes_are_unknown() {
    let p = Policy::pending();
    assert!(p.is_pending());
    let d = get(&p, 80, Some(A), "/");
    assert_eq!((d.allowed, p.authz_label(&d)), (false, "pending"));
    assert!(p.deny_reason(&d).contains("not ready"));
    assert!(!p.check_tcp(80, Some(A)).allowed);
    assert!(!Policy::allow_all().is_pending());
}

#[test]
fn may_admit_decides_whether_open_connections_stay() {
    let p = targeted();
    assert!(p.may_admit(None, Some(A)));
    assert!(p.may_admit(Some(8080), Some(A)));
    assert!(!p.may_admit(Some(6000), Some(A)));
    assert!(p.may_admit(Some(6000), Some(B)));
    assert!(!p.may_admit(Some(8081), None));
    assert!(p.may_admit(Some(9000), None), "probe port");
    let deny = Policy::default_only(DefaultPolicy::Deny);
    assert!(!deny.may_admit(None, Some(A)));
    let auth = Policy::default_only(DefaultPolicy::Authenticated);
    assert!(auth.may_admit(Some(1), Some(A)) && !auth.may_admit(Some(1), None));
}

#[test]
fn invalid_ports_and_unknown_defaults_fail_closed() {
    let p = policy(serde_json::json!({
        "targeted": true,
        "authorizations": [{"traffic_target": "t/x", "identities": [A], "ports": [70000]}]
    }));
    assert!(
        !p.check_tcp(4464, Some(A)).allowed,
        "70000 does not wrap to 4464"
    );
    let pb = tulle_api::policy::PodPolicy {
        default_policy: 42,
        ..Default::default()
    };
    let p = Policy::from_proto(&pb);
    assert!(!get(&p, 80, Some(A), "/").allowed);
}

#[test]
fn generations_differ_and_the_file_rejects_unknown_fields() {
    assert_ne!(targeted().generation(), targeted().generation());
    assert!(serde_json::from_str::<PolicyFile>(r#"{"defaultPolicy": "deny"}"#).is_err());
    assert!(serde_json::from_str::<PolicyFile>(r#"{"default_policy": "maybe"}"#).is_err());
}
