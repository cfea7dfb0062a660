//! Storing one parsed scrape of a pod: map each line to its series (summing lines that differ
//! only in dropped labels), turn raw cumulative values into increases since the previous
//! scrape (a restarted proxy or a lower value counts from zero; a series new in a pod that was
//! already scraped counts from zero too), and append one record.

use super::codec::{self, MAX_BUCKETS};
use super::pod::{GAUGE, Gauge, Last, Pod, Series, label_hash};
use super::{IngestStats, Inner};
use crate::parse::{Family, Scrape};

/// One kept line: its series (class, index), bucket bound, value.
#[derive(Clone, Copy)]
struct Hit {
    key: u64,
    le: f64,
    value: f64,
    sample: u32,
}

/// Series kept in record order first, then new ones in order of appearance, then gauges.
const EXISTING: u64 = 0;
const NEW: u64 = 1;
const GAUGES: u64 = 2;

/// A series to create: its first line's sample, hash.
struct Pending {
    sample: u32,
    hash: u64,
}

pub(super) fn commit(
    inner: &mut Inner,
    pod: &mut Pod,
    at: i64,
    scrape: &Scrape<'_>,
    chunk_len: usize,
) -> IngestStats {
    let at = at.max(pod.last_at);
    let baseline = pod.scrapes == 0;
    let restarted = !baseline
        && matches!((pod.start_time, scrape.start_time), (Some(a), Some(b)) if (a - b).abs() > 1.0);
    if scrape.start_time.is_some() {
        pod.start_time = scrape.start_time;
    }
    let mut stats = IngestStats {
        samples: scrape.samples.len(),
        restarted,
        ..IngestStats::default()
    };

    // Each line to its series.
    let mut hits = Vec::with_capacity(scrape.samples.len());
    let mut pending: Vec<Pending> = Vec::new();
    for (i, s) in scrape.samples.iter().enumerate() {
        let labels = scrape.labels(s);
        let hash = label_hash(s.family, labels.iter().map(|l| (l.name, l.value.as_ref())));
        let key = match pod.find(hash, s.family, labels) {
            Some(r) if r & GAUGE != 0 => GAUGES << 32 | u64::from(r & !GAUGE),
            Some(r) => EXISTING << 32 | u64::from(r),
            None => {
                let same = |p: &Pending| {
                    let first = &scrape.samples[p.sample as usize];
                    p.hash == hash
                        && first.family == s.family
                        && same_lines(scrape.labels(first), labels)
                };
                let at = pending.iter().position(same).unwrap_or_else(|| {
                    pending.push(Pending {
                        sample: i as u32,
                        hash,
                    });
                    pending.len() - 1
                });
                NEW << 32 | at as u64
            }
        };
        hits.push(Hit {
            key,
            le: s.le,
            value: s.value,
            sample: i as u32,
        });
    }
    hits.sort_unstable_by(|a, b| a.key.cmp(&b.key).then(a.le.total_cmp(&b.le)));

    let mut rec = Vec::with_capacity(pod.series.len() * 4);
    let mut bounds: Vec<(f64, f64)> = Vec::new();
    let mut deltas: Vec<f64> = Vec::new();
    let mut replaced: Vec<(u32, usize)> = Vec::new();
    let mut next = 0usize;
    let known = pod.series.len();
    let mut groups = hits.chunk_by(|a, b| a.key == b.key).peekable();

    // Known series, in record order; absent ones get a zero entry.
    while let Some(g) = groups.next_if(|g| g[0].key >> 32 == EXISTING) {
        let pos = g[0].key as u32 as usize;
        while next < pos {
            absent(&mut pod.series[next], restarted, &mut rec);
            next += 1;
        }
        next = pos + 1;
        let s = &mut pod.series[pos];
        match &mut s.last {
            Last::Counter(last) => match sum(g) {
                Some(v) => {
                    codec::put_val(&mut rec, increase(last, v, restarted));
                    s.last_seen = at;
                }
                None => absent(s, restarted, &mut rec),
            },
            Last::Hist { layout, last } => {
                merge(g, &mut bounds);
                let same = layout.len() == bounds.len()
                    && layout
                        .iter()
                        .zip(&bounds)
                        .all(|(a, (b, _))| a.to_bits() == b.to_bits());
                if !same {
                    // The bucket bounds changed (another proxy version): a new series.
                    s.live = false;
                    let hash = s.hash;
                    rec.push(0);
                    pod.unindex(hash, pos as u32);
                    replaced.push((g[0].sample, pos));
                    continue;
                }
                if bounds.iter().any(|(_, v)| !v.is_finite()) {
                    absent(s, restarted, &mut rec);
                    continue;
                }
                hist_increase(last, &bounds, restarted, &mut deltas);
                codec::put_hist(&mut rec, &deltas);
                s.last_seen = at;
            }
        }
    }
    while next < known {
        absent(&mut pod.series[next], restarted, &mut rec);
        next += 1;
    }

    // New series (and replacements), appended in order; gauges created as they come.
    let fresh = !(baseline || pod.refused);
    let mut creations: Vec<(u32, Vec<Hit>)> = replaced
        .iter()
        .map(|&(sample, pos)| {
            let key = EXISTING << 32 | pos as u64;
            let g = hits.iter().copied().filter(|h| h.key == key).collect();
            (sample, g)
        })
        .collect();
    while let Some(g) = groups.next_if(|g| g[0].key >> 32 == NEW) {
        let p = &pending[g[0].key as u32 as usize];
        creations.push((p.sample, g.to_vec()));
    }
    for (sample, g) in creations {
        let s = &scrape.samples[sample as usize];
        let labels = scrape.labels(s);
        let hash = label_hash(s.family, labels.iter().map(|l| (l.name, l.value.as_ref())));
        let (need, v) = match s.family {
            Family::LatencyBucket => {
                merge(&g, &mut bounds);
                if bounds.iter().any(|b| !b.1.is_finite()) {
                    continue;
                }
                (bounds.len(), 0.0)
            }
            _ => match sum(&g) {
                Some(v) => (1, v),
                None => continue,
            },
        };
        if inner.series + need > inner.max_series || need > MAX_BUCKETS {
            inner.dropped += need as u64;
            stats.dropped += need;
            pod.refused = true;
            continue;
        }
        inner.series += need;
        stats.new_series += need;
        let labels: Box<[_]> = (labels.iter())
            .map(|l| (inner.syms.get(l.name), inner.syms.get(&l.value)))
            .collect();
        if s.family == Family::TcpOpenConnections {
            pod.gauges.push(Gauge {
                labels,
                hash,
                value: v,
                seen: pod.scrapes + 1,
                last_seen: at,
            });
            pod.insert(hash, GAUGE | (pod.gauges.len() - 1) as u32);
            continue;
        }
        let last = if s.family == Family::LatencyBucket {
            let les: Vec<f64> = bounds.iter().map(|b| b.0).collect();
            let mut last = vec![0.0; bounds.len()].into_boxed_slice();
            if !fresh {
                last.iter_mut().zip(&bounds).for_each(|(l, b)| *l = b.1);
            }
            hist_increase(&mut last, &bounds, false, &mut deltas);
            codec::put_hist(&mut rec, &deltas);
            Last::Hist {
                layout: inner.layouts.get(&les),
                last,
            }
        } else {
            let mut last = if fresh { 0.0 } else { v };
            codec::put_val(&mut rec, increase(&mut last, v, false));
            Last::Counter(last)
        };
        pod.series.push(Series {
            family: s.family,
            labels,
            hash,
            last,
            last_seen: at,
            live: true,
        });
        pod.insert(hash, (pod.series.len() - 1) as u32);
    }

    // Known gauges: the latest value.
    for g in groups {
        let gauge = &mut pod.gauges[g[0].key as u32 as usize];
        if let Some(v) = sum(g) {
            gauge.value = v;
            gauge.seen = pod.scrapes + 1;
            gauge.last_seen = at;
        }
    }

    pod.scrapes += 1;
    pod.last_at = at;
    let layout = pod.layout();
    pod.ring.push(at, &rec, chunk_len, &layout);
    stats.series = pod.width();
    stats
}

/// Whether two scraped label sets are equal (in any order).
fn same_lines(a: &[crate::parse::Label<'_>], b: &[crate::parse::Label<'_>]) -> bool {
    a.len() == b.len() && b.iter().all(|l| a.contains(l))
}

/// A series missing from this scrape: no increase; after a restart it counts from zero.
fn absent(s: &mut Series, restarted: bool, rec: &mut Vec<u8>) {
    rec.push(0);
    if restarted {
        match &mut s.last {
            Last::Counter(v) => *v = 0.0,
            Last::Hist { last, .. } => last.iter_mut().for_each(|v| *v = 0.0),
        }
    }
}

/// The sum of a counter's or gauge's lines (`None` when one is not finite).
fn sum(g: &[Hit]) -> Option<f64> {
    let v: f64 = g.iter().map(|h| h.value).sum();
    v.is_finite().then_some(v)
}

/// The increase since `last` (a lower value is a reset: counts from zero).
fn increase(last: &mut f64, v: f64, restarted: bool) -> f64 {
    let d = if restarted || v < *last { v } else { v - *last };
    *last = v;
    d
}

/// Bucket lines sorted by bound, equal bounds summed.
fn merge(g: &[Hit], out: &mut Vec<(f64, f64)>) {
    out.clear();
    for h in g {
        match out.last_mut() {
            Some(last) if last.0.to_bits() == h.le.to_bits() => last.1 += h.value,
            _ => out.push((h.le, h.value)),
        }
    }
}

/// Per-bucket increases of a histogram from its cumulative buckets (any bucket lower than
/// before is a reset: all count from zero).
fn hist_increase(last: &mut [f64], now: &[(f64, f64)], restarted: bool, out: &mut Vec<f64>) {
    let reset = restarted || last.iter().zip(now).any(|(l, (_, c))| *c < *l);
    out.clear();
    let mut below = 0.0;
    for (l, (_, c)) in last.iter_mut().zip(now) {
        let cumulative = if reset { *c } else { *c - *l };
        out.push((cumulative - below).max(0.0));
        below = cumulative;
        *l = *c;
    }
}
