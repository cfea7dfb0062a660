//! Unit tests of the store over hand-written proxy text, with the clock in the tests' hands.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::query::{Matcher, Select};

const LINKERD_BUCKETS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

fn key(name: &str) -> PodKey {
    PodKey::new("ns", name)
}

fn pod_labels(ns: &str, pod: &str, deploy: &str) -> Vec<(String, String)> {
    vec![
        ("namespace".into(), ns.into()),
        ("pod".into(), pod.into()),
        ("deployment".into(), deploy.into()),
        ("daemonset".into(), String::new()),
    ]
}

/// `response_total` lines: (classification, status, value); inbound, one client.
fn responses(lines: &[(&str, u16, u64)]) -> String {
    let mut s = String::from("# TYPE response counter\n");
    for (class, status, v) in lines {
        writeln!(
            s,
            "response_total{{direction=\"inbound\",target_addr=\"10.0.0.1:8080\",tls=\"true\",client_id=\"c.ns\",status_code=\"{status}\",classification=\"{class}\"}} {v}"
        )
        .unwrap();
    }
    s
}

/// Latency buckets from per-bucket counts (non-cumulative) over the Linkerd bounds.
fn latency(labels: &str, per_bucket: &[(f64, u64)]) -> String {
    let mut s = String::from("# TYPE response_latency_ms histogram\n");
    let mut cumulative = 0;
    for le in LINKERD_BUCKETS.iter().copied().chain([f64::INFINITY]) {
        cumulative += per_bucket
            .iter()
            .filter(|(b, _)| *b == le)
            .map(|(_, n)| n)
            .sum::<u64>();
        let le = if le.is_infinite() {
            "+Inf".to_string()
        } else {
            format!("{le:.1}")
        };
        writeln!(
            s,
            "response_latency_ms_bucket{{le=\"{le}\",{labels}}} {cumulative}"
        )
        .unwrap();
    }
    s
}

fn store() -> Store {
    Store::new(StoreConfig::default())
}

fn ingest(s: &Store, pod: &str, deploy: &str, at: u64, text: &str) -> IngestStats {
    s.ingest(key(pod), pod_labels("ns", pod, deploy), t(at), text)
        .unwrap()
}

fn increase(s: &Store, q: &Select, now: u64) -> BTreeMap<String, f64> {
    (s.sum_increase_at(q, t(now)).unwrap().into_iter())
        .map(|r| {
            (
                r.labels.values().cloned().collect::<Vec<_>>().join("/"),
                r.value,
            )
        })
        .collect()
}

fn total(s: &Store, now: u64, window: u64) -> f64 {
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(window));
    increase(s, &q, now).values().sum()
}

#[test]
fn a_lower_value_or_a_new_start_time_is_a_reset_counted_from_zero() {
    let s = store();
    for (at, v) in [(0, 10), (10, 15), (20, 3), (30, 8)] {
        ingest(&s, "a", "web", at, &responses(&[("success", 200, v)]));
    }
    // Baseline 10, then +5, reset to 3 (+3), +5.
    assert_eq!(total(&s, 30, 60), 13.0);
    assert_eq!(total(&s, 30, 10), 5.0);
    assert_eq!(total(&s, 30, 15), 8.0);
    // A restart whose counter already passed the old value: the start time says so.
    let start = |st: &str, v| {
        format!(
            "{}process_start_time_seconds {st}\n",
            responses(&[("success", 200, v)])
        )
    };
    ingest(&s, "b", "web", 0, &start("100.5", 10));
    assert!(!ingest(&s, "b", "web", 10, &start("100.5", 12)).restarted);
    let st = ingest(&s, "b", "web", 20, &start("900.25", 30));
    assert!(st.restarted);
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(60)).with(Matcher::eq("pod", "b"));
    assert_eq!(
        increase(&s, &q, 20)[""],
        32.0,
        "2, then 30 counted from zero"
    );
}

#[test]
fn a_series_new_in_a_scraped_pod_counts_from_zero_and_a_new_pod_is_a_baseline() {
    let s = store();
    ingest(
        &s,
        "a",
        "web",
        0,
        &responses(&[("success", 200, 5), ("failure", 500, 4)]),
    );
    ingest(
        &s,
        "a",
        "web",
        10,
        &responses(&[("success", 200, 7), ("failure", 500, 4)]),
    );
    // The first 503 creates its series mid-window: all of it counts; status codes are summed.
    let st = ingest(
        &s,
        "a",
        "web",
        20,
        &responses(&[
            ("success", 200, 9),
            ("failure", 500, 4),
            ("failure", 503, 1),
        ]),
    );
    assert_eq!(
        (st.samples, st.new_series),
        (3, 0),
        "503 joins the failure series"
    );
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(60)).by(&["classification"]);
    let got = increase(&s, &q, 20);
    assert_eq!(got["success"], 4.0);
    assert_eq!(got["failure"], 1.0);
    let st = ingest(&s, "a", "web", 30, &{
        let mut t = responses(&[("success", 200, 9)]);
        t.push_str(&responses(&[("success", 200, 2)]).replace("inbound", "outbound"));
        t
    });
    assert_eq!(st.new_series, 1);
    assert_eq!(
        increase(&s, &q, 30)["success"],
        6.0,
        "the new outbound series brings 2"
    );
}

#[test]
fn a_restarted_proxy_never_yields_negative_or_huge_increases() {
    let s = store();
    let bucket = "direction=\"inbound\",tls=\"true\"";
    let mut at = 0;
    for (v, n) in [
        (1_000_000, 500_000),
        (1_000_100, 500_050),
        (5, 5),
        (7, 6),
        (1_000, 900),
    ] {
        let text = format!(
            "{}{}",
            responses(&[("success", 200, v)]),
            latency(bucket, &[(10.0, n)])
        );
        ingest(&s, "a", "web", at, &text);
        at += 10;
    }
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(3600)).with(Matcher::eq("pod", "a"));
    for now in [10, 20, 30, 40] {
        for window in [5, 10, 20, 3600] {
            let q = Select {
                window: Duration::from_secs(window),
                ..q.clone()
            };
            let v = increase(&s, &q, now).values().sum::<f64>();
            assert!(
                (0.0..=100.0 + 5.0 + 2.0 + 993.0).contains(&v),
                "{now} {window}: {v}"
            );
        }
    }
    assert_eq!(increase(&s, &q, 40)[""], 100.0 + 5.0 + 2.0 + 993.0);
    let l = Select::new(RESPONSE_LATENCY_MS, Duration::from_secs(3600));
    let rows = s.quantiles_at(&l, &[0.5, 1.0], t(40)).unwrap();
    assert_eq!(rows.len(), 1);
    let p = rows[0].value[1].unwrap();
    assert!((5.0..=10.0).contains(&p), "{p}");
}

#[test]
fn quantiles_come_from_the_buckets_that_grew_in_the_window() {
    let s = store();
    let labels = "direction=\"inbound\",tls=\"true\"";
    // A long history of slow responses before the window...
    ingest(&s, "a", "web", 0, &latency(labels, &[(500.0, 10_000)]));
    ingest(&s, "a", "web", 10, &latency(labels, &[(500.0, 20_000)]));
    // ...then 100 responses of ~35 ms (bucket (30, 40]).
    ingest(
        &s,
        "a",
        "web",
        20,
        &latency(labels, &[(500.0, 20_000), (40.0, 100)]),
    );
    let q = Select::new(RESPONSE_LATENCY_MS, Duration::from_secs(10));
    let rows = s
        .quantiles_at(&q, &crate::golden::QUANTILES, t(20))
        .unwrap();
    let p50 = rows[0].value[0].unwrap();
    assert!(
        (30.0..=40.0).contains(&p50),
        "p50 {p50} within the (30, 40] bucket"
    );
    // Over both windows the slow ones dominate.
    let q = Select::new(RESPONSE_LATENCY_MS, Duration::from_secs(20));
    let p50 = s.quantiles_at(&q, &[0.5], t(20)).unwrap()[0].value[0].unwrap();
    assert!((400.0..=500.0).contains(&p50), "{p50}");
    // A window without observations: None.
    ingest(
        &s,
        "a",
        "web",
        30,
        &latency(labels, &[(500.0, 20_000), (40.0, 100)]),
    );
    let q = Select::new(RESPONSE_LATENCY_MS, Duration::from_secs(5));
    assert_eq!(
        s.quantiles_at(&q, &[0.5], t(30)).unwrap()[0].value,
        vec![None]
    );
}

#[test]
fn matchers_and_grouping_use_pod_and_series_labels() {
    let s = store();
    let text = |v: u64| {
        format!(
            "{}{}",
            responses(&[("success", 200, v), ("failure", 500, v / 10)]),
            "tcp_open_connections{direction=\"inbound\",peer=\"src\",target_addr=\"a\"} 2\ntcp_open_connections{direction=\"inbound\",peer=\"src\",target_addr=\"b\"} 3\n"
        )
    };
    for (at, v) in [(0, 0), (10, 100)] {
        ingest(&s, "web-1", "web", at, &text(v));
        ingest(&s, "web-2", "web", at, &text(2 * v));
        ingest(&s, "api-1", "api", at, &text(3 * v));
        s.ingest(
            PodKey::new("other", "x"),
            pod_labels("other", "x", "web"),
            t(at),
            &text(v),
        )
        .unwrap();
    }
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(60))
        .with(Matcher::eq("namespace", "ns"))
        .by(&["deployment", "classification"]);
    let got = increase(&s, &q, 10);
    let want: BTreeMap<String, f64> = [
        ("web/success", 300.0),
        ("web/failure", 30.0),
        ("api/success", 300.0),
        ("api/failure", 30.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Labels come back in `by` order only through the map's key order: compare as sets.
    let norm = |m: BTreeMap<String, f64>| {
        m.into_iter()
            .map(|(k, v)| {
                let mut p: Vec<_> = k.split('/').map(str::to_string).collect();
                p.sort();
                (p.join("/"), v)
            })
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(norm(got), norm(want));
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(60))
        .with(Matcher::ne("classification", "failure"))
        .with(Matcher::eq("statefulset", ""))
        .with(Matcher::ne("deployment", "api"))
        .by(&["namespace"]);
    let got = increase(&s, &q, 10);
    assert_eq!((got["ns"], got["other"]), (300.0, 100.0));
    let q = Select::new(RESPONSE_TOTAL, Duration::from_secs(60)).with(Matcher::eq("tls", "false"));
    assert!(increase(&s, &q, 10).is_empty());
    // Gauges: lines differing in target_addr are summed; by pod.
    let q = Select::new(TCP_OPEN_CONNECTIONS, Duration::from_secs(60))
        .with(Matcher::eq("peer", "src"))
        .by(&["pod"]);
    let rows = s.sum_gauge_at(&q, t(10)).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.value == 5.0));
    // Each primitive on its own kind of family only.
    assert!(
        s.sum_gauge_at(&Select::new(RESPONSE_TOTAL, Duration::ZERO), t(10))
            .is_err()
    );
    assert!(
        s.sum_increase_at(&Select::new("nope", Duration::ZERO), t(10))
            .is_err()
    );
}

#[test]
fn pods_no_longer_scraped_age_out_and_their_gauges_go_stale_first() {
    let s = Store::new(StoreConfig {
        pod_ttl: Duration::from_secs(120),
        ..StoreConfig::default()
    });
    let text = format!(
        "{}tcp_open_connections{{peer=\"src\"}} 4\n",
        responses(&[("success", 200, 1)])
    );
    ingest(&s, "old", "web", 0, &text);
    for at in (0..=200).step_by(10) {
        ingest(&s, "live", "web", at, &text);
    }
    assert_eq!(s.pod_count(), 2);
    assert_eq!(s.series_count(), 4);
    let q = Select::new(TCP_OPEN_CONNECTIONS, Duration::ZERO).by(&["pod"]);
    assert_eq!(
        s.sum_gauge_at(&q, t(21)).unwrap().len(),
        1,
        "old's gauge is 21 s old"
    );
    assert_eq!(s.sum_gauge_at(&q, t(20)).unwrap().len(), 2);
    assert_eq!(s.expire(t(100)), ExpireStats::default());
    assert_eq!(s.expire(t(200)), ExpireStats { pods: 1, series: 2 });
    assert_eq!((s.pod_count(), s.series_count()), (1, 2));
    assert!(s.remove_pod(&key("live")));
    assert!(!s.remove_pod(&key("live")));
    assert_eq!((s.pod_count(), s.series_count()), (0, 0));
}

#[test]
fn history_is_bounded_by_the_retention_and_long_windows_use_chunk_sums() {
    let s = Store::new(StoreConfig {
        retention: Duration::from_secs(600),
        ..StoreConfig::default()
    });
    // Increments 1, 2, 3, ...: the sum over any window is known.
    let mut v = 0;
    for i in 0..500u64 {
        v += i;
        ingest(&s, "a", "web", i * 10, &responses(&[("success", 200, v)]));
    }
    let records = s.read().pods[&key("a")].ring.records();
    assert!(
        (60..=60 + s.chunk_len()).contains(&records),
        "{records} records"
    );
    let now = 499;
    for window in [0u64, 5, 10, 60, 95, 300, 330, 599, 600] {
        // Scrapes at now*10, now*10-10, ... inside (now*10 - window, now*10].
        let want: u64 = (0..window.div_ceil(10)).map(|k| now - k).sum();
        assert_eq!(total(&s, now * 10, window), want as f64, "window {window}");
    }
    // Scraped too often: still bounded.
    for i in 0..2000u64 {
        ingest(
            &s,
            "fast",
            "web",
            5000 + i,
            &responses(&[("success", 200, i)]),
        );
    }
    let records = s.read().pods[&key("fast")].ring.records();
    assert!(records <= 60 + s.chunk_len(), "{records}");
}

#[test]
fn the_series_cap_refuses_new_series_and_counts_them() {
    let s = Store::new(StoreConfig {
        max_series: 30,
        pod_ttl: Duration::from_secs(60),
        ..StoreConfig::default()
    });
    let labels = "direction=\"inbound\"";
    let text = format!(
        "{}{}",
        responses(&[("success", 200, 5)]),
        latency(labels, &[(10.0, 3)])
    );
    let st = ingest(&s, "a", "web", 0, &text);
    assert_eq!((st.new_series, st.dropped), (27, 0));
    let st = ingest(&s, "b", "web", 0, &text);
    assert_eq!(
        (st.new_series, st.dropped),
        (1, 26),
        "the counter fits, the histogram not"
    );
    assert_eq!(s.series_count(), 28);
    assert_eq!(s.dropped_series_total(), 26);
    // Space again (a aged out): b's histogram is stored from its current values, not as one
    // huge increase.
    ingest(&s, "b", "web", 70, &text);
    s.expire(t(70));
    let st = ingest(&s, "b", "web", 80, &text);
    assert_eq!(st.new_series, 26);
    let q = Select::new(RESPONSE_LATENCY_MS, Duration::from_secs(3600));
    assert_eq!(
        s.quantiles_at(&q, &[0.5], t(80)).unwrap()[0].value,
        vec![None]
    );
}

#[test]
fn series_a_pod_stopped_exporting_are_dropped_after_the_retention() {
    let s = Store::new(StoreConfig {
        retention: Duration::from_secs(60),
        ..StoreConfig::default()
    });
    let both = responses(&[("success", 200, 1), ("failure", 500, 1)]);
    let one = responses(&[("success", 200, 1)]);
    ingest(&s, "a", "web", 0, &both);
    ingest(&s, "a", "web", 10, &both);
    for at in (20..=200).step_by(10) {
        ingest(
            &s,
            "a",
            "web",
            at,
            &one.replace(" 1\n", &format!(" {at}\n")),
        );
    }
    assert_eq!(s.series_count(), 2);
    assert_eq!(s.expire(t(200)).series, 1);
    assert_eq!(s.series_count(), 1);
    // The rewritten records still answer.
    assert_eq!(total(&s, 200, 30), 30.0);
    // Histogram bounds that change make a new series; the old one goes at compaction.
    let l = "direction=\"inbound\"";
    ingest(&s, "h", "web", 0, &latency(l, &[(10.0, 1)]));
    let other = latency(l, &[(10.0, 2)]).replace("le=\"1.0\"", "le=\"0.5\"");
    assert_eq!(ingest(&s, "h", "web", 10, &other).new_series, 26);
    assert_eq!(s.series_count(), 1 + 52);
    s.expire(t(10));
    assert_eq!(s.series_count(), 1 + 26);
    let q = Select::new(RESPONSE_LATENCY_MS, Duration::from_secs(60));
    let p = s.quantiles_at(&q, &[1.0], t(10)).unwrap()[0].value[0].unwrap();
    assert!(
        (5.0..=10.0).contains(&p),
        "{p}: 2 observations counted from zero"
    );
}

#[test]
fn unreadable_text_stores_nothing() {
    let s = store();
    let e = s
        .ingest(key("a"), vec![], t(0), "response_total{a=\"b\" 1\n")
        .unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.to_string().contains("nothing of this scrape was stored"));
    assert_eq!((s.pod_count(), s.series_count()), (0, 0));
    assert!(s.approx_bytes() > 0);
}
