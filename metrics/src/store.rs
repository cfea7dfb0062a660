//! The embedded metrics store: a bounded in-memory history of every meshed pod's golden-metric
//! series, filled by [`crate::scrape`] every 10 s and queried through [`Source`].
//!
//! # What is kept
//!
//! Per pod (a [`PodKey`]), the series of `response_total` and the inbound authorization
//! counters `inbound_{http,tcp}_authz_{allow,deny}_total` (counters; of these only the `authz`
//! label is kept, see [`crate::parse::AUTHZ_LABEL`]), `response_latency_ms`
//! (histogram buckets) and `tcp_open_connections` (gauges), labelled with the proxy's labels
//! minus the high-cardinality ones no query uses ([`crate::parse::DROPPED_LABELS`]; the series
//! that become equal are summed) plus the pod labels the scraper adds ([`crate::query::POD_LABELS`]).
//!
//! - **Counters and histograms** are stored as *increases since the previous scrape of the
//!   pod*, one record per scrape, every record stamped with the pod's scrape time. A value lower
//!   than the previous one is a counter reset (a restarted proxy) and counts from zero; a change
//!   of the proxy's `process_start_time_seconds` is a restart too, even when the counters grew
//!   past their old values in between. Better than Prometheus: a series that appears in a pod
//!   that had already been scraped without it counts from zero (prometheus-client creates a
//!   series at its first event, so the first `500` of a pod is counted, where `increase()`
//!   would miss it), so windows are exact for integer counters, with no extrapolation. The first
//!   scrape of a pod is its baseline (counts before it are unknown).
//! - **Gauges** keep only their latest value, answered while the pod's last scrape is at most
//!   two intervals old and had the series.
//!
//! # Bounds
//!
//! - Time: records older than [`StoreConfig::retention`] go (in whole chunks of up to 32
//!   records, so up to one chunk more is held), and never more than retention ÷ interval + one
//!   chunk records per pod, however often a pod is scraped.
//! - Pods: a pod not scraped for [`StoreConfig::pod_ttl`] goes with its history at
//!   [`Store::expire`]. The default is the retention: a deleted pod's traffic still counts in
//!   the windows that cover it, and by then none does. [`Store::remove_pod`] drops a pod at once.
//! - Series: at most [`StoreConfig::max_series`] (counted as Prometheus does: each histogram
//!   bucket is a series); past it new series are refused and counted
//!   ([`Store::dropped_series_total`]). A series absent from its pod's scrapes for the retention
//!   is dropped at [`Store::expire`], and label strings no series uses are freed.
//!
//! # Memory
//!
//! A record holds one LEB128 value per counter (one byte for increases up to 63) and per
//! histogram a bitmap of the buckets that grew followed by their increases, so a quiet series
//! costs one byte per scrape and a histogram's 26 buckets cost about as much as two counters.
//! Label strings are interned; histogram bucket bounds are shared.
//!
//! Measured by `cargo run --release -p tulle-bench -- metrics` (bench/README.md) on the
//! 2-core VM, with 1,000 simulated pods × 20 label sets of realistic proxy text (145,000
//! series counting each bucket, as Prometheus does) after 1 h of 10 s scrapes:
//!
//! | figure | value |
//! |---|---|
//! | bytes per series (`approx_bytes` ÷ series) | **≈ 212 B** (29.4 MiB in all; ≈ 1.5 KB per label set) |
//! | bytes per series by RSS growth | ≈ 233 B (RSS 8.7 → 40.9 MiB) |
//! | one scrape round (parse + ingest of 1,000 pods, 54 KiB of text each) | ≈ 104 ms CPU: 1.0 % of one core per 10 s |
//! | `golden::stat` for a namespace of 200 deployments | ≈ 5 ms (1 min window), ≈ 8 ms (1 h window) |
//!
//! So the default cap of 500,000 series bounds the store near 105 MB.
//!
//! # Queries
//!
//! A query walks the pods (skipping those whose pod labels do not match after one comparison),
//! maps each matching series to its group, and adds up the records of the window into one
//! accumulator; a window covering a whole sealed chunk reads the chunk's summary record
//! instead of its records. Quantiles sum the per-bucket increases of each group and hand the
//! cumulative buckets to [`crate::query::histogram_quantile`]. The store answers
//! synchronously inside the future (see the figures above), under a read lock that a scrape
//! waits for.

mod codec;
mod ingest;
mod pod;
mod query;
mod ring;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_golden;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, ready};

use crate::parse::{self, Family, ParseError};
use crate::query::{
    QueryError, RESPONSE_LATENCY_MS, RESPONSE_TOTAL, Row, Select, Source, TCP_OPEN_CONNECTIONS,
};
use crate::scrape::{Sink, Target};
use pod::{Interner, Layouts, Pod};

/// A scraped pod: `(namespace, name)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl PodKey {
    /// The pod `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// Store settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The scrape interval (default 10 s): sizes the history and the freshness of gauges.
    pub interval: Duration,
    /// How much history is kept (default 1 h).
    pub retention: Duration,
    /// A pod not scraped for this long goes with its history (default: the retention).
    pub pod_ttl: Duration,
    /// Most series held, each histogram bucket counted (default 500,000: about 105 MB at the
    /// ≈ 210 bytes per series measured by the benchmark).
    pub max_series: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            retention: Duration::from_secs(3600),
            pod_ttl: Duration::from_secs(3600),
            max_series: 500_000,
        }
    }
}

/// What one [`Store::ingest`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Kept sample lines read.
    pub samples: usize,
    /// Series of the pod now (each bucket counted).
    pub series: usize,
    /// Series created by this scrape.
    pub new_series: usize,
    /// Series refused by this scrape (the store is at [`StoreConfig::max_series`]).
    pub dropped: usize,
    /// The proxy restarted since the previous scrape (`process_start_time_seconds` changed).
    pub restarted: bool,
}

/// What one [`Store::expire`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireStats {
    /// Pods dropped (not scraped for [`StoreConfig::pod_ttl`]).
    pub pods: usize,
    /// Series dropped, with those pods or because their pods stopped exporting them.
    pub series: usize,
}

#[derive(Debug, Default)]
struct Inner {
    pods: HashMap<PodKey, Pod>,
    syms: Interner,
    layouts: Layouts,
    /// Series held (each bucket counted).
    series: usize,
    max_series: usize,
    dropped: u64,
}

/// The embedded metrics store (see the module docs). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    inner: RwLock<Inner>,
}

/// Milliseconds since the epoch.
fn ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn dur_ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        let inner = Inner {
            max_series: config.max_series,
            ..Inner::default()
        };
        Self {
            config,
            inner: RwLock::new(inner),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records per pod: retention ÷ interval.
    fn records(&self) -> usize {
        let interval = self.config.interval.max(Duration::from_millis(1));
        (self.config.retention.as_secs_f64() / interval.as_secs_f64()).ceil() as usize
    }

    fn chunk_len(&self) -> usize {
        (self.records() / 8).clamp(2, 32)
    }

    /// Stores one scrape of `pod` taken at `at`: `text` is its proxy's `/metrics`,
    /// `pod_labels` the labels the scraper adds to each of its series (empty values are left
    /// out). Nothing is stored when the text cannot be read. A scrape older than the pod's
    /// previous one counts as taken at the same time.
    pub fn ingest(
        &self,
        pod: PodKey,
        pod_labels: Vec<(String, String)>,
        at: SystemTime,
        text: &str,
    ) -> Result<IngestStats, ParseError> {
        let scrape = parse::parse(text)?;
        let (chunk_len, max_records) = (self.chunk_len(), self.records() + self.chunk_len());
        let at = ms(at);
        let mut guard = self.write();
        let inner = &mut *guard;
        let mut p = inner.pods.remove(&pod).unwrap_or_default();
        let same = p.labels.len() == pod_labels.iter().filter(|l| !l.1.is_empty()).count()
            && (pod_labels.iter().filter(|l| !l.1.is_empty()))
                .all(|(n, v)| p.labels.iter().any(|(a, b)| **a == **n && **b == **v));
        if !same {
            p.labels = (pod_labels.iter())
                .filter(|(_, v)| !v.is_empty())
                .map(|(n, v)| (inner.syms.get(n), inner.syms.get(v)))
                .collect();
        }
        let stats = ingest::commit(inner, &mut p, at, &scrape, chunk_len);
        p.ring
            .expire(at - dur_ms(self.config.retention), max_records);
        inner.pods.insert(pod, p);
        Ok(stats)
    }

    /// Drops a pod and its history at once; false when it was not there.
    pub fn remove_pod(&self, pod: &PodKey) -> bool {
        let mut inner = self.write();
        let Some(p) = inner.pods.remove(pod) else {
            return false;
        };
        inner.series -= p.width();
        true
    }

    /// Drops pods not scraped for the pod TTL, records older than the retention, series a pod
    /// has not exported for the retention, and strings and layouts nothing uses any more.
    pub fn expire(&self, now: SystemTime) -> ExpireStats {
        let now = ms(now);
        let before = now - dur_ms(self.config.retention);
        let gone = now - dur_ms(self.config.pod_ttl);
        let max_records = self.records() + self.chunk_len();
        let mut guard = self.write();
        let inner = &mut *guard;
        let mut stats = ExpireStats::default();
        inner.pods.retain(|_, p| {
            if p.last_at < gone {
                stats.pods += 1;
                stats.series += p.width();
                return false;
            }
            p.ring.expire(before, max_records);
            stats.series += p.compact(before);
            true
        });
        inner.series -= stats.series;
        if stats.series > 0 {
            inner.syms.gc();
            inner.layouts.gc();
        }
        stats
    }

    /// Series held, counted as Prometheus does (each histogram bucket is one).
    pub fn series_count(&self) -> usize {
        self.read().series
    }

    /// Pods held.
    pub fn pod_count(&self) -> usize {
        self.read().pods.len()
    }

    /// Series refused since the start because the store was full (each bucket counted, each
    /// scrape that brought them again counted again).
    pub fn dropped_series_total(&self) -> u64 {
        self.read().dropped
    }

    /// Heap bytes held (allocated capacity of every structure, plus a per-entry estimate for
    /// the hash tables).
    pub fn approx_bytes(&self) -> usize {
        let inner = self.read();
        std::mem::size_of::<Self>()
            + inner.pods.capacity() * (std::mem::size_of::<(PodKey, Pod)>() + 8)
            + (inner.pods.iter())
                .map(|(k, p)| k.namespace.capacity() + k.name.capacity() + p.bytes())
                .sum::<usize>()
            + inner.syms.bytes()
    }

    /// [`Source::sum_increase`] over the window ending at `now`.
    pub fn sum_increase_at(
        &self,
        q: &Select,
        now: SystemTime,
    ) -> Result<Vec<Row<f64>>, QueryError> {
        let family = family(q.metric, Family::ResponseTotal)?;
        let now = ms(now);
        Ok(query::increase(
            &self.read(),
            q,
            family,
            now - dur_ms(q.window),
            now,
        ))
    }

    /// [`Source::quantiles`] over the window ending at `now`.
    pub fn quantiles_at(
        &self,
        q: &Select,
        quantiles: &[f64],
        now: SystemTime,
    ) -> Result<Vec<Row<Vec<Option<f64>>>>, QueryError> {
        let family = family(q.metric, Family::LatencyBucket)?;
        let now = ms(now);
        let t0 = now - dur_ms(q.window);
        Ok(query::quantiles(
            &self.read(),
            q,
            family,
            quantiles,
            t0,
            now,
        ))
    }

    /// [`Source::sum_gauge`] at `now`: pods scraped within two intervals before it.
    pub fn sum_gauge_at(&self, q: &Select, now: SystemTime) -> Result<Vec<Row<f64>>, QueryError> {
        family(q.metric, Family::TcpOpenConnections)?;
        let fresh = ms(now) - 2 * dur_ms(self.config.interval);
        Ok(query::gauge(&self.read(), q, fresh))
    }

    /// This store as a [`Source`] whose windows end at `now` (tests, benchmarks, replays).
    pub fn at(&self, now: SystemTime) -> At<'_> {
        At { store: self, now }
    }
}

/// The family a query names, if the store answers that primitive for it (`want` is
/// [`Family::ResponseTotal`] for any counter).
fn family(metric: &str, want: Family) -> Result<Family, QueryError> {
    let name = if metric == RESPONSE_LATENCY_MS {
        "response_latency_ms_bucket"
    } else {
        metric
    };
    let Some(f) = Family::ALL.into_iter().find(|f| f.sample_name() == name) else {
        return Err(QueryError::Unsupported(format!(
            "the embedded store keeps only {RESPONSE_TOTAL}, {RESPONSE_LATENCY_MS}, {TCP_OPEN_CONNECTIONS} and inbound_{{http,tcp}}_authz_{{allow,deny}}_total, not {metric}; use a Prometheus source for other metrics"
        )));
    };
    let fits = match want {
        Family::LatencyBucket | Family::TcpOpenConnections => f == want,
        _ => f.is_counter(),
    };
    if !fits {
        let what = match want {
            Family::LatencyBucket => "quantiles of a histogram",
            Family::TcpOpenConnections => "the value of a gauge",
            _ => "an increase of a counter",
        };
        return Err(QueryError::Unsupported(format!(
            "{metric} cannot answer {what} in the embedded store"
        )));
    }
    Ok(f)
}

/// A [`Store`] whose query windows end at a fixed time ([`Store::at`]).
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    store: &'a Store,
    now: SystemTime,
}

impl Source for At<'_> {
    fn sum_increase<'a>(
        &'a self,
        q: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>> {
        Box::pin(ready(self.store.sum_increase_at(q, self.now)))
    }

    fn quantiles<'a>(
        &'a self,
        q: &'a Select,
        quantiles: &'a [f64],
    ) -> BoxFuture<'a, Result<Vec<Row<Vec<Option<f64>>>>, QueryError>> {
        Box::pin(ready(self.store.quantiles_at(q, quantiles, self.now)))
    }

    fn sum_gauge<'a>(&'a self, q: &'a Select) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>> {
        Box::pin(ready(self.store.sum_gauge_at(q, self.now)))
    }
}

impl Source for Store {
    fn sum_increase<'a>(
        &'a self,
        q: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>> {
        Box::pin(ready(self.sum_increase_at(q, SystemTime::now())))
    }

    fn quantiles<'a>(
        &'a self,
        q: &'a Select,
        quantiles: &'a [f64],
    ) -> BoxFuture<'a, Result<Vec<Row<Vec<Option<f64>>>>, QueryError>> {
        Box::pin(ready(self.quantiles_at(q, quantiles, SystemTime::now())))
    }

    fn sum_gauge<'a>(&'a self, q: &'a Select) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>> {
        Box::pin(ready(self.sum_gauge_at(q, SystemTime::now())))
    }
}

impl Sink for Store {
    fn ingest(&self, target: &Target, at: SystemTime, text: &str) -> Result<(), String> {
        let pod = PodKey::new(&target.pod.0, &target.pod.1);
        Store::ingest(self, pod, target.labels.clone(), at, text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn expire(&self, now: SystemTime) {
        Store::expire(self, now);
    }
}
