//! A user's Prometheus as the metrics [`Source`]: each primitive is one instant query
//! (`GET {url}/api/v1/query?query=...`) over the series a scrape of the proxies' admin port
//! collects (the scrape configuration is in docs/prometheus.md).
//!
//! - [`Source::sum_increase`]: `sum by (...) (increase(response_total{...}[W]))`. Prometheus
//!   extrapolates `increase` to the window's edges, so counts are not integers (nothing is
//!   rounded here);
//! - [`Source::quantiles`]: `histogram_quantile(q, sum by (le, ...) (rate(response_latency_ms_bucket{...}[W])))`,
//!   one query per quantile, `NaN` (no observation in the window) as `None`;
//! - [`Source::sum_gauge`]: `sum by (...) (tcp_open_connections{...})`.
//!
//! The Kubernetes Job of a pod is the series label `k8s_job` in Prometheus (as linkerd-viz's
//! scrape configuration names it: `job` is Prometheus' own scrape-job label); this source
//! translates the `job` label of the queries and results to and from it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::query::{Labels, Matcher, QueryError, Row, Select, Source};

/// The series label of a pod's Kubernetes Job in Prometheus (the query layer calls it `job`).
pub const K8S_JOB_LABEL: &str = "k8s_job";

/// How long a query may take by default (connecting included); Prometheus is also asked to
/// give up after this long (`timeout=` parameter).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers larger than this are refused (a query grouped by a high-cardinality label).
const MAX_ANSWER: usize = 32 << 20;

/// A Prometheus server's HTTP API.
#[derive(Clone)]
pub struct Prometheus {
    /// The base URL as given, without a trailing `/` (`http://prometheus.monitoring:9090`).
    url: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One sample of an instant vector: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series' labels (for an aggregation: the `by` labels).
    pub labels: Labels,
    /// The value (`NaN` and infinities as Prometheus sent them).
    pub value: f64,
}

impl Prometheus {
    /// A client for the Prometheus at `url`: `http://host:port`, optionally with a path prefix
    /// (`http://host:port/prometheus`, for a Prometheus behind `--web.route-prefix`). Must be
    /// in a Tokio runtime when queried.
    pub fn new(url: &str) -> Result<Self, QueryError> {
        let bad = |reason: String| QueryError::Prometheus {
            url: url.to_string(),
            reason,
        };
        let trimmed = url.trim().trim_end_matches('/');
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|e| bad(format!("not a URL ({e}); expected http://host:port")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported; give the plain-HTTP address of Prometheus (http://host:port, e.g. its in-cluster Service)"
                        .into(),
                ));
            }
            _ => return Err(bad("expected a URL like http://host:port".into())),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host; expected http://host:port".into()));
        }
        if uri.query().is_some() {
            return Err(bad("the URL must not carry a query string".into()));
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(http);
        Ok(Self {
            url: trimmed.to_string(),
            client,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets how long a query may take ([`DEFAULT_TIMEOUT`] otherwise).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, reason: impl Into<String>) -> QueryError {
        QueryError::Prometheus {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    /// Runs the instant query `promql` (evaluated now) and returns its vector.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, QueryError> {
        let secs = self.timeout.as_secs_f64();
        let uri = format!(
            "{}/api/v1/query?query={}&timeout={:.3}",
            self.url,
            encode(promql),
            // Prometheus' own deadline (seconds) slightly inside ours, so its error wins the race.
            (secs * 0.9).max(0.001)
        );
        let uri: http::Uri = uri
            .parse()
            .map_err(|e| self.error(format!("cannot build the query URL: {e}")))?;
        let call = async {
            let resp = self
                .client
                .get(uri)
                .await
                .map_err(|e| self.error(format!("cannot reach it: {}", chain(&e))))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| self.error(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, QueryError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                self.error(format!(
                    "no answer within {:?} to {promql} (is it overloaded? a shorter window or a longer timeout may help)",
                    self.timeout
                ))
            })??;
        let answer: Answer = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(200).collect();
                return Err(self.error(format!(
                    "HTTP {status} without a Prometheus API answer ({e}): {text:?} (is this the Prometheus server's address, with the right path prefix?)"
                )));
            }
        };
        if answer.status != "success" {
            return Err(self.error(format!(
                "HTTP {status}, {}: {} (query: {promql})",
                answer.error_type.unwrap_or_else(|| "error".into()),
                answer.error.unwrap_or_default()
            )));
        }
        let data = answer
            .data
            .ok_or_else(|| self.error("a success answer without data"))?;
        if data.result_type != "vector" {
            return Err(self.error(format!(
                "expected an instant vector, got a {} (query: {promql})",
                data.result_type
            )));
        }
        let samples: Vec<VectorSample> = serde_json::from_value(data.result)
            .map_err(|e| self.error(format!("malformed vector: {e}")))?;
        samples
            .into_iter()
            .map(|s| {
                let value = parse_value(&s.value.1)
                    .ok_or_else(|| self.error(format!("malformed sample value {:?}", s.value.1)))?;
                Ok(Sample {
                    labels: from_prometheus(s.metric),
                    value,
                })
            })
            .collect()
    }

    async fn rows(&self, promql: &str) -> Result<Vec<Row<f64>>, QueryError> {
        Ok(self
            .query(promql)
            .await?
            .into_iter()
            .map(|s| Row {
                labels: s.labels,
                value: s.value,
            })
            .collect())
    }
}

/// The causes of an error, outermost first (hyper's errors hide the interesting part).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

/// A sample value as Prometheus writes it: a decimal, `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Query-layer label name → Prometheus label name.
fn to_prometheus(label: &str) -> &str {
    if label == "job" { K8S_JOB_LABEL } else { label }
}

/// Prometheus result labels → query-layer labels.
fn from_prometheus(metric: BTreeMap<String, String>) -> Labels {
    metric
        .into_iter()
        .map(|(k, v)| {
            if k == K8S_JOB_LABEL {
                ("job".to_string(), v)
            } else {
                (k, v)
            }
        })
        .collect()
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A PromQL string literal: double-quoted, with `\`, `"` and control characters escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn label_name(l: &str) -> Result<&str, QueryError> {
    let ok = l
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if l.is_empty() || !ok {
        return Err(QueryError::Unsupported(format!(
            "{l:?} is not a Prometheus label name"
        )));
    }
    Ok(to_prometheus(l))
}

/// `metric{matchers}`.
fn selector(metric: &str, matchers: &[Matcher]) -> Result<String, QueryError> {
    label_name(metric)?;
    if matchers.is_empty() {
        return Ok(metric.to_string());
    }
    let m: Vec<String> = matchers
        .iter()
        .map(|m| {
            Ok(match m {
                Matcher::Eq(l, v) => format!("{}={}", label_name(l)?, quote(v)),
                Matcher::Ne(l, v) => format!("{}!={}", label_name(l)?, quote(v)),
            })
        })
        .collect::<Result<_, QueryError>>()?;
    Ok(format!("{metric}{{{}}}", m.join(",")))
}

/// A PromQL range (`30s`, `1500ms`).
fn range(window: Duration) -> Result<String, QueryError> {
    let ms = window.as_millis();
    if ms == 0 {
        return Err(QueryError::Unsupported("an empty window".into()));
    }
    Ok(if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

/// `sum by (a, b) (inner)` (`sum(inner)` without grouping); `le` first when asked.
fn sum_by(by: &[String], le: bool, inner: &str) -> Result<String, QueryError> {
    let mut labels: Vec<&str> = Vec::with_capacity(by.len() + 1);
    if le {
        labels.push("le");
    }
    for l in by {
        labels.push(label_name(l)?);
    }
    Ok(if labels.is_empty() {
        format!("sum({inner})")
    } else {
        format!("sum by ({}) ({inner})", labels.join(", "))
    })
}

/// The PromQL of [`Source::sum_increase`].
pub fn increase_query(q: &Select) -> Result<String, QueryError> {
    let inner = format!(
        "increase({}[{}])",
        selector(q.metric, &q.matchers)?,
        range(q.window)?
    );
    sum_by(&q.by, false, &inner)
}

/// The PromQL of [`Source::quantiles`] for quantile `quantile`.
pub fn quantile_query(q: &Select, quantile: f64) -> Result<String, QueryError> {
    if !(0.0..=1.0).contains(&quantile) {
        return Err(QueryError::Unsupported(format!(
            "quantile {quantile} is not in [0, 1]"
        )));
    }
    let bucket = if q.metric.ends_with("_bucket") {
        q.metric.to_string()
    } else {
        format!("{}_bucket", q.metric)
    };
    let inner = format!(
        "rate({}[{}])",
        selector(&bucket, &q.matchers)?,
        range(q.window)?
    );
    Ok(format!(
        "histogram_quantile({quantile}, {})",
        sum_by(&q.by, true, &inner)?
    ))
}

/// The PromQL of [`Source::sum_gauge`].
pub fn gauge_query(q: &Select) -> Result<String, QueryError> {
    sum_by(&q.by, false, &selector(q.metric, &q.matchers)?)
}

impl Source for Prometheus {
    fn sum_increase<'a>(
        &'a self,
        q: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>> {
        Box::pin(async move { self.rows(&increase_query(q)?).await })
    }

    fn quantiles<'a>(
        &'a self,
        q: &'a Select,
        quantiles: &'a [f64],
    ) -> BoxFuture<'a, Result<Vec<Row<Vec<Option<f64>>>>, QueryError>> {
        Box::pin(async move {
            let queries = quantiles
                .iter()
                .map(|&p| quantile_query(q, p))
                .collect::<Result<Vec<_>, _>>()?;
            let answers =
                futures::future::try_join_all(queries.iter().map(|p| self.query(p))).await?;
            let mut rows: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
            for (i, samples) in answers.into_iter().enumerate() {
                for s in samples {
                    let v = rows
                        .entry(s.labels)
                        .or_insert_with(|| vec![None; quantiles.len()]);
                    v[i] = s.value.is_finite().then_some(s.value);
                }
            }
            Ok(rows
                .into_iter()
                .map(|(labels, value)| Row { labels, value })
                .collect())
        })
    }

    fn sum_gauge<'a>(&'a self, q: &'a Select) -> BoxFuture<'a, Result<Vec<Row<f64>>, QueryError>> {
        Box::pin(async move { self.rows(&gauge_query(q)?).await })
    }
}

#[cfg(test)]
mod tests;
