//! Property-based fuzzing (issue 15) of HTTP request handling: SMI route matching
//! (`HttpMatch`, `Split`) with arbitrary regexes, methods, header names and values and
//! paths gives an error or a verdict, never a panic; a rule is accepted only when each of
//! its regexes is valid on its own (so a path regex cannot escape its anchor); weighted
//! picks and the hop-by-hop header handling hold on arbitrary input. Cases:
//! `TULLE_FUZZ_CASES` (default 256); see docs/fuzzing.md.

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use proptest::prelude::*;
use rand::SeedableRng;
use tulle_proxy::split::{Backend, HttpMatch, Split, pick_weighted};

fn config() -> ProptestConfig {
    let cases = std::env::var("TULLE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings rich in regex syntax, or anything.
fn regexish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z/()|?*+.^$\\[\\]{}\\\\:0-9-]{0,16}",
        any::<String>(),
        Just(String::new()),
        Just(".*".to_string()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9-]{1,12}", any::<String>(), Just("*".to_string())]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((name(), prop::collection::vec(any::<u8>(), 0..24)), 0..8).prop_map(
        |pairs| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(n.as_bytes()),
                    HeaderValue::from_bytes(&v),
                ) {
                    h.append(n, v);
                }
            }
            h
        },
    )
}

fn method() -> impl Strategy<Value = Method> {
    name().prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn route_matches_compile_or_fail_and_match_without_panics(
        path_regex in regexish(),
        methods in prop::collection::vec(name(), 0..4),
        rule_headers in prop::collection::vec((name(), regexish()), 0..3),
        req_method in method(),
        path in prop_oneof!["/[a-z/]{0,12}", any::<String>()],
        req_headers in headers(),
    ) {
        let Ok(m) = HttpMatch::new("ns/s", &path_regex, &methods, &rule_headers) else {
            return Ok(());
        };
        // Every regex accepted is valid on its own: wrapping it cannot change its meaning.
        prop_assert!(regex::Regex::new(&path_regex).is_ok(), "{path_regex:?}");
        for (_, re) in &rule_headers {
            prop_assert!(regex::Regex::new(re).is_ok(), "{re:?}");
        }
        let hit = m.matches(&req_method, &path, &req_headers);
        if hit && !path_regex.is_empty() {
            // The path regex matched at the start of the path.
            let re = regex::Regex::new(&path_regex).unwrap();
            prop_assert!(re.find(&path).is_some_and(|f| f.start() == 0), "{path_regex:?} {path:?}");
        }
        let split = Split {
            name: "ns/s".into(),
            apex: None,
            backends: vec![Backend { authority: "a:80".into(), weight: 1 }],
            matches: vec![m],
        };
        prop_assert_eq!(split.covers(&req_method, &path, &req_headers), hit);
        prop_assert!(!split.covers_connections());
    }

    #[test]
    fn weighted_picks_land_on_a_positive_weight(
        weights in prop::collection::vec(
            prop_oneof![Just(0u32), any::<u32>(), 0u32..10], 0..20),
        seed in any::<u64>(),
    ) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        match pick_weighted(&weights, &mut rng) {
            Some(i) => prop_assert!(weights[i] > 0),
            None => prop_assert!(weights.iter().all(|&w| w == 0)),
        }
    }

    #[test]
    fn hop_by_hop_headers_are_stripped_from_arbitrary_headers(
        mut h in headers(),
        connection in prop::collection::vec(name(), 0..5),
        te in prop_oneof![Just("trailers".to_string()), name()],
        upgrade in any::<bool>(),
    ) {
        let listed = connection.join(", ");
        if let Ok(v) = HeaderValue::from_str(&listed) {
            h.append(header::CONNECTION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&te) {
            h.append(header::TE, v);
        }
        if upgrade {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        let mut req = http::Request::new(());
        *req.headers_mut() = h.clone();
        let _ = tulle_proxy::http_headers::is_upgrade(&req);
        let _ = tulle_proxy::http_headers::is_failure(http::StatusCode::OK, &h);
        tulle_proxy::http_headers::strip_hop_by_hop(&mut h);
        for n in ["connection", "transfer-encoding", "upgrade", "keep-alive", "proxy-connection"] {
            prop_assert!(!h.contains_key(n), "{n}");
        }
        prop_assert!(h.get(header::TE).is_none_or(|v| v == "trailers"));
    }
}
