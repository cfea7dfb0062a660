//! The query primitives every metrics source answers, shaped after the PromQL they become.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

/// Labels of one result row (only the `by` labels of the query).
pub type Labels = BTreeMap<String, String>;

/// The proxy's HTTP response counter (labels include `classification`).
pub const RESPONSE_TOTAL: &str = "response_total";
/// The proxy's latency histogram (milliseconds); queries name the family, the store and
/// PromQL use its `_bucket` series.
pub const RESPONSE_LATENCY_MS: &str = "response_latency_ms";
/// The proxy's open TCP connections gauge.
pub const TCP_OPEN_CONNECTIONS: &str = "tcp_open_connections";
/// Inbound HTTP requests the policy admitted (label `authz`: the TrafficTarget or default).
pub const HTTP_AUTHZ_ALLOW_TOTAL: &str = "inbound_http_authz_allow_total";
/// Inbound HTTP requests the policy denied.
pub const HTTP_AUTHZ_DENY_TOTAL: &str = "inbound_http_authz_deny_total";
/// Inbound TCP connections the policy admitted.
pub const TCP_AUTHZ_ALLOW_TOTAL: &str = "inbound_tcp_authz_allow_total";
/// Inbound TCP connections the policy denied.
pub const TCP_AUTHZ_DENY_TOTAL: &str = "inbound_tcp_authz_deny_total";

/// Labels that describe the scraped pod, added by the embedded scraper and by the documented
/// Prometheus relabelling (as linkerd-viz's scrape configuration does).
pub const POD_LABELS: [&str; 6] = [
    "namespace",
    "pod",
    "deployment",
    "daemonset",
    "statefulset",
    "job",
];

/// A label matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// `label="value"` (an absent label is the empty string, as in PromQL).
    Eq(String, String),
    /// `label!="value"`.
    Ne(String, String),
}

impl Matcher {
    /// `label="value"`.
    pub fn eq(label: &str, value: &str) -> Self {
        Matcher::Eq(label.into(), value.into())
    }

    /// `label!="value"`.
    pub fn ne(label: &str, value: &str) -> Self {
        Matcher::Ne(label.into(), value.into())
    }

    /// Whether a series with these labels (looked up by `get`) matches.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Matcher::Eq(l, v) => get(l).unwrap_or("") == v,
            Matcher::Ne(l, v) => get(l).unwrap_or("") != v,
        }
    }
}

/// Which series, grouped how, over which window ending now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Select {
    /// The metric family ([`RESPONSE_TOTAL`], [`RESPONSE_LATENCY_MS`], [`TCP_OPEN_CONNECTIONS`],
    /// the authorization counters such as [`HTTP_AUTHZ_ALLOW_TOTAL`]).
    pub metric: &'static str,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// The result is one row per distinct value of these labels (`sum by (...)`).
    pub by: Vec<String>,
    /// The window the increase or the quantile covers.
    pub window: Duration,
}

impl Select {
    /// A selection of `metric` with no matchers and no grouping.
    pub fn new(metric: &'static str, window: Duration) -> Self {
        Self {
            metric,
            matchers: Vec::new(),
            by: Vec::new(),
            window,
        }
    }

    /// Adds a matcher.
    pub fn with(mut self, m: Matcher) -> Self {
        self.matchers.push(m);
        self
    }

    /// Groups by these labels.
    pub fn by(mut self, labels: &[&str]) -> Self {
        self.by = labels.iter().map(|l| l.to_string()).collect();
        self
    }
}

/// A query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Prometheus did not answer or answered with an error.
    #[error(
        "Prometheus at {url} failed: {reason} (check --prometheus-url and that Prometheus is up)"
    )]
    Prometheus {
        /// The URL queried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The query itself is not supported by this source.
    #[error("unsupported query: {0}")]
    Unsupported(String),
}

/// One row of a query: the `by` labels and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Row<T> {
    /// Values of the `by` labels (absent labels are left out).
    pub labels: Labels,
    /// The value.
    pub value: T,
}

/// Rows of latency quantiles: one value per asked quantile, `None` without observations.
pub type QuantileRows = Vec<Row<Vec<Option<f64>>>>;

/// A source of metrics: the embedded store or Prometheus.
pub trait Source: Send + Sync {
    /// `sum by (by) (increase(metric{matchers}[window]))`: counter increase over the window,
    /// counter resets (a restarted proxy) counted from zero, never negative.
    fn sum_increase<'a>(
        &'a self,
        q: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>>;

    /// `histogram_quantile(q, sum by (le, by) (rate(metric_bucket{matchers}[window])))` for
    /// each quantile in `quantiles`; `None` where the window holds no observation.
    fn quantiles<'a>(
        &'a self,
        q: &'a Select,
        quantiles: &'a [f64],
    ) -> BoxFuture<'a, Result<QuantileRows, QueryError>>;

    /// `sum by (by) (metric{matchers})`: the latest value of a gauge.
    fn sum_gauge<'a>(&'a self, q: &'a Select) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>>;
}

/// `histogram_quantile` over cumulative buckets `(upper bound, cumulative count)` sorted by
/// bound, the last one `+Inf`: Prometheus' linear interpolation inside the bucket the rank
/// falls in (the lowest bucket interpolates from 0; a rank in `+Inf` answers the highest
/// finite bound). `None` when the total is zero.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let i = buckets.iter().position(|(_, c)| *c >= rank)?;
    let (upper, count) = buckets[i];
    if upper.is_infinite() {
        return buckets
            .iter()
            .rev()
            .find(|(b, _)| b.is_finite())
            .map(|(b, _)| *b);
    }
    let (lower, below) = if i == 0 { (0.0, 0.0) } else { buckets[i - 1] };
    let in_bucket = count - below;
    if in_bucket <= 0.0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / in_bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_inside_the_bucket_like_prometheus() {
        // 100 observations: 50 in (0,10], 40 in (10,20], 10 in (20,+Inf).
        let b = [(10.0, 50.0), (20.0, 90.0), (f64::INFINITY, 100.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(10.0));
        assert_eq!(histogram_quantile(0.25, &b), Some(5.0));
        assert_eq!(histogram_quantile(0.7, &b), Some(15.0));
        // The rank falls in +Inf: the highest finite bound.
        assert_eq!(histogram_quantile(0.99, &b), Some(20.0));
        assert_eq!(
            histogram_quantile(0.5, &[(10.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(0.5, &[]), None);
    }

    #[test]
    fn absent_labels_match_the_empty_string() {
        let get = |l: &str| (l == "direction").then_some("inbound");
        assert!(Matcher::eq("direction", "inbound").matches(get));
        assert!(Matcher::eq("tls", "").matches(get));
        assert!(Matcher::ne("classification", "failure").matches(get));
        assert!(!Matcher::ne("direction", "inbound").matches(get));
    }
}
