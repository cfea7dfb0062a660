//! A small, strict, fast reader of the Prometheus text exposition format a `tulle-proxy` serves
//! on `:4191/metrics` (prometheus-client's OpenMetrics-flavoured text: `# HELP`, `# TYPE`,
//! `# EOF`, counters as `<name>_total`, histograms as `_bucket{le=...}` / `_sum` / `_count`).
//!
//! Why not a crate: the one maintained-looking candidate, `prometheus-parse` 0.2.5, does not fit
//! the proxy's output. It splits label pairs on `,` and `=` (a label value holding either, or an
//! escaped `"`, is misread), keys types by the `# TYPE` name so prometheus-client's counters
//! (`# TYPE response counter` over `response_total` samples) come out untyped, and builds a
//! `HashMap` of owned strings per sample behind three regular expressions (and pulls in `regex`,
//! `chrono` and `itertools`). The store reads ~150 kept lines out of ~54 KB of text per pod
//! every 10 s from a thousand pods, so this reader borrows from the text, allocates once per scrape,
//! and skips the lines of families nobody queries after reading only their name.
//!
//! What is kept ([`Family`]): `response_total`, `response_latency_ms_bucket`,
//! `tcp_open_connections`, the inbound authorization counters
//! `inbound_{http,tcp}_authz_{allow,deny}_total` with only their `authz` label
//! ([`AUTHZ_LABEL`]) (the families of [`crate::query`]), and
//! `process_start_time_seconds`, which tells the store that the proxy restarted even when its
//! counters grew past their old values between two scrapes. Labels the queries never use and
//! that only multiply series ([`DROPPED_LABELS`]: `target_addr`, `authority`, `status_code`,
//! `no_tls_reason`) are dropped here, and so are labels named like the pod labels the scraper
//! adds itself ([`crate::query::POD_LABELS`]). The store then sums the series that became equal
//! (one lookup per line, where it identifies the series anyway).
//!
//! Strict where it matters: a kept line must be well formed (name, `{label="value",...}` with
//! `\\`, `\"` and `\n` escapes, a float value, an optional integer timestamp and an optional
//! OpenMetrics exemplar), a bucket needs its `le`, and nothing may follow `# EOF`. Any such
//! fault rejects the whole scrape, so a pod's history never holds half of one.

use std::borrow::Cow;

use crate::query::POD_LABELS;

/// Labels the queries never use, dropped at parse time (their series are summed by the store).
pub const DROPPED_LABELS: [&str; 4] = ["target_addr", "authority", "status_code", "no_tls_reason"];

/// The metric families the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `response_total`: a counter.
    ResponseTotal,
    /// `response_latency_ms_bucket`: the cumulative buckets of a histogram.
    LatencyBucket,
    /// `tcp_open_connections`: a gauge.
    TcpOpenConnections,
    /// `inbound_http_authz_allow_total`: a counter (only its `authz` label is kept).
    HttpAuthzAllow,
    /// `inbound_http_authz_deny_total`: a counter (only its `authz` label is kept).
    HttpAuthzDeny,
    /// `inbound_tcp_authz_allow_total`: a counter (only its `authz` label is kept).
    TcpAuthzAllow,
    /// `inbound_tcp_authz_deny_total`: a counter (only its `authz` label is kept).
    TcpAuthzDeny,
}

impl Family {
    /// The sample name in the text.
    pub fn sample_name(self) -> &'static str {
        match self {
            Family::ResponseTotal => "response_total",
            Family::LatencyBucket => "response_latency_ms_bucket",
            Family::TcpOpenConnections => "tcp_open_connections",
            Family::HttpAuthzAllow => "inbound_http_authz_allow_total",
            Family::HttpAuthzDeny => "inbound_http_authz_deny_total",
            Family::TcpAuthzAllow => "inbound_tcp_authz_allow_total",
            Family::TcpAuthzDeny => "inbound_tcp_authz_deny_total",
        }
    }

    /// Every kept family.
    pub const ALL: [Family; 7] = [
        Family::ResponseTotal,
        Family::LatencyBucket,
        Family::TcpOpenConnections,
        Family::HttpAuthzAllow,
        Family::HttpAuthzDeny,
        Family::TcpAuthzAllow,
        Family::TcpAuthzDeny,
    ];

    /// Whether its samples are counters (stored as increases).
    pub fn is_counter(self) -> bool {
        !matches!(self, Family::LatencyBucket | Family::TcpOpenConnections)
    }

    /// Whether it is one of the authorization counters, of which only [`AUTHZ_LABEL`] is
    /// kept.
    pub fn is_authz(self) -> bool {
        self.is_counter() && self != Family::ResponseTotal
    }
}

/// The one label kept on the authorization counters: the TrafficTarget (`namespace/name`)
/// that admitted the request or connection, or `default:<policy>`, `probe`, `pending`,
/// `targeted` (a targeted pod that no TrafficTarget admits it to). Their other labels
/// (`target_port`, `route`, `client_id`) would multiply the series by ports × routes × client
/// identities, and no question asks them, so a pod keeps at most
/// 4 × (its TrafficTargets + 4) authorization series.
pub const AUTHZ_LABEL: &str = "authz";

const START_TIME: &str = "process_start_time_seconds";

/// A kept text line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "line {line} of the /metrics text: {what}; nothing of this scrape was stored (is the target a tulle proxy serving the Prometheus text format on :4191/metrics?)"
)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub what: String,
}

/// One label of a kept sample (the value unescaped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its value.
    pub value: Cow<'a, str>,
}

/// One kept sample; its labels are [`Scrape::labels`] of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Its family.
    pub family: Family,
    /// The bucket's upper bound (`le`) for [`Family::LatencyBucket`], NaN otherwise.
    pub le: f64,
    /// Its value.
    pub value: f64,
    labels: (u32, u32),
}

/// The kept part of one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape<'a> {
    /// Kept samples, in text order.
    pub samples: Vec<Sample>,
    labels: Vec<Label<'a>>,
    /// `process_start_time_seconds`, when the text has it.
    pub start_time: Option<f64>,
    /// Sample lines read (kept or not).
    pub lines: usize,
}

impl<'a> Scrape<'a> {
    /// The kept labels of `s` (without `le`), in text order.
    pub fn labels(&self, s: &Sample) -> &[Label<'a>] {
        &self.labels[s.labels.0 as usize..s.labels.1 as usize]
    }
}

/// Reads the kept families of a `/metrics` text.
pub fn parse(text: &str) -> Result<Scrape<'_>, ParseError> {
    let mut out = Scrape::default();
    let mut eof = false;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let err = |what: &str| ParseError {
            line: i + 1,
            what: what.to_string(),
        };
        if eof {
            return Err(err("text after `# EOF`"));
        }
        if let Some(comment) = line.strip_prefix('#') {
            eof = comment.trim() == "EOF";
            continue;
        }
        out.lines += 1;
        let name_len = line
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'))
            .unwrap_or(line.len());
        if name_len == 0 {
            return Err(err("a sample line without a metric name"));
        }
        let name = &line[..name_len];
        let family = match Family::ALL.iter().find(|f| f.sample_name() == name) {
            Some(f) => Some(*f),
            None if name == START_TIME => None,
            None => continue,
        };
        let start = out.labels.len();
        let (le, rest) = read_labels(&line[name_len..], &mut out.labels).map_err(err)?;
        let value = read_value(rest).map_err(err)?;
        let Some(family) = family else {
            out.labels.truncate(start);
            out.start_time = Some(value);
            continue;
        };
        if family.is_authz() {
            let mut i = start;
            while i < out.labels.len() {
                if out.labels[i].name == AUTHZ_LABEL {
                    i += 1;
                } else {
                    out.labels.remove(i);
                }
            }
        }
        let le = match (family, le) {
            (Family::LatencyBucket, Some(le)) => le,
            (Family::LatencyBucket, None) => return Err(err("a histogram bucket without `le`")),
            _ => f64::NAN,
        };
        out.samples.push(Sample {
            family,
            le,
            value,
            labels: (start as u32, out.labels.len() as u32),
        });
    }
    Ok(out)
}

/// Reads `{name="value",...}` (if present) into `labels` (kept ones only); returns `le` and
/// the rest of the line.
fn read_labels<'a>(
    s: &'a str,
    labels: &mut Vec<Label<'a>>,
) -> Result<(Option<f64>, &'a str), &'static str> {
    let Some(mut s) = s.strip_prefix('{') else {
        return Ok((None, s));
    };
    let mut le = None;
    loop {
        s = s.trim_start_matches(' ');
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((le, rest));
        }
        let n = s
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or(s.len());
        if n == 0 {
            return Err("a label without a name");
        }
        let name = &s[..n];
        s = s[n..]
            .strip_prefix("=\"")
            .ok_or("a label name not followed by =\"")?;
        let (value, rest) = read_quoted(s)?;
        s = rest;
        if name == "le" {
            le = Some(read_float(&value).ok_or("an `le` that is not a number")?);
        } else if !DROPPED_LABELS.contains(&name) && !POD_LABELS.contains(&name) {
            labels.push(Label { name, value });
        }
        s = s.trim_start_matches(' ');
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("labels not separated by `,` or not closed by `}`");
        }
    }
}

/// Reads a label value up to its closing quote (the opening one already consumed).
fn read_quoted(s: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok((Cow::Borrowed(&s[..i]), &s[i + 1..])),
            b'\\' => break,
            _ => i += 1,
        }
    }
    let mut owned = String::from(&s[..i]);
    let mut chars = s[i..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '"' => return Ok((Cow::Owned(owned), &s[i + j + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => owned.push('\n'),
                Some((_, c @ ('\\' | '"'))) => owned.push(c),
                _ => return Err("an unknown escape in a label value"),
            },
            c => owned.push(c),
        }
    }
    Err("a label value without its closing quote")
}

/// Reads ` value [timestamp] [# exemplar]`.
fn read_value(s: &str) -> Result<f64, &'static str> {
    let s = s
        .strip_prefix([' ', '\t'])
        .ok_or("no space before the value")?
        .trim_start_matches([' ', '\t']);
    let (value, rest) = s.split_once([' ', '\t']).unwrap_or((s, ""));
    let v = read_float(value).ok_or("a value that is not a number")?;
    let rest = rest.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(v);
    }
    let (ts, after) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let after = after.trim_start_matches([' ', '\t']);
    if read_float(ts).is_none() || !(after.is_empty() || after.starts_with('#')) {
        return Err("unexpected text after the value");
    }
    Ok(v)
}

/// A float as Prometheus writes it (`12`, `1.5`, `1e3`, `+Inf`, `NaN`), integers fast.
fn read_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 15 && b.iter().all(u8::is_ascii_digit) {
        return Some(b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')) as f64);
    }
    // Rust's parser also takes `inf`/`infinity`/`nan` in any case, which covers `+Inf`.
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP response HTTP responses.
# TYPE response counter
response_total{direction=\"inbound\",target_addr=\"10.0.0.1:80\",tls=\"true\",client_id=\"a,b=\\\"c\\\"\",status_code=\"200\",classification=\"success\"} 7
# HELP response_latency_ms Time.
# TYPE response_latency_ms histogram
response_latency_ms_sum{direction=\"inbound\"} 12.5
response_latency_ms_count{direction=\"inbound\"} 3
response_latency_ms_bucket{le=\"1.0\",direction=\"inbound\"} 1
response_latency_ms_bucket{le=\"+Inf\",direction=\"inbound\"} 3 # {trace=\"x\"} 1.0
tcp_open_connections{direction=\"inbound\",peer=\"src\",namespace=\"spoof\"} 2 1700000000000
process_start_time_seconds 1764560000.25
inbound_http_authz_allow_total{target_port=\"8080\",authz=\"shop/api\",route=\"\",client_id=\"web.shop.serviceaccount.identity.tulle.cluster.local\"} 5
request_total{this line is not read} 1
# EOF
";

    #[test]
    fn reads_the_kept_families_and_drops_the_unused_labels() {
        let s = parse(TEXT).unwrap();
        assert_eq!(s.samples.len(), 5);
        assert_eq!(s.lines, 9);
        assert_eq!(s.start_time, Some(1764560000.25));
        let r = &s.samples[0];
        assert_eq!((r.family, r.value), (Family::ResponseTotal, 7.0));
        let names: Vec<_> = s
            .labels(r)
            .iter()
            .map(|l| (l.name, l.value.as_ref()))
            .collect();
        assert_eq!(
            names,
            [
                ("direction", "inbound"),
                ("tls", "true"),
                ("client_id", "a,b=\"c\""),
                ("classification", "success")
            ]
        );
        let b = &s.samples[1];
        assert_eq!((b.family, b.le, b.value), (Family::LatencyBucket, 1.0, 1.0));
        assert_eq!(s.samples[2].le, f64::INFINITY);
        let g = &s.samples[3];
        assert_eq!((g.family, g.value), (Family::TcpOpenConnections, 2.0));
        // The scraper's own pod labels win over a scraped `namespace`.
        assert_eq!(s.labels(g).len(), 2);
        // Only `authz` of an authorization counter.
        let a = &s.samples[4];
        assert_eq!((a.family, a.value), (Family::HttpAuthzAllow, 5.0));
        let names: Vec<_> = (s.labels(a).iter())
            .map(|l| (l.name, l.value.as_ref()))
            .collect();
        assert_eq!(names, [("authz", "shop/api")]);
    }

    #[test]
    fn rejects_malformed_kept_lines_with_their_line_number() {
        for (text, line) in [
            ("response_total{a=\"b} 1\n", 1),
            ("# x\nresponse_total{a=b} 1\n", 2),
            ("response_total{a=\"b\"}\n", 1),
            ("response_total 1x\n", 1),
            ("response_latency_ms_bucket{a=\"b\"} 1\n", 1),
            ("response_total{a=\"\\q\"} 1\n", 1),
            ("response_total 1 2 3\n", 1),
            ("# EOF\nresponse_total 1\n", 2),
            ("{a=\"b\"} 1\n", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
        // Lines of families nobody reads are only skipped.
        assert!(parse("other_total{garbage 1\nresponse_total 2\n").is_ok());
        assert_eq!(read_float("NaN").map(f64::is_nan), Some(true));
        assert_eq!(read_float("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(read_float("1e3"), Some(1000.0));
    }
}
