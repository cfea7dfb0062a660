//! One pod's series: their labels, last raw values (for reset detection), and the index that
//! maps a scraped label set to its series; plus the interning of label strings and histogram
//! layouts shared by all pods.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::codec::Kind;
use super::ring::Ring;
use crate::parse::{Family, Label};

/// An interned string (one allocation per distinct label name or value in the store).
pub(super) type Sym = Arc<str>;

/// Interned strings; [`Interner::gc`] frees those no series uses any more.
#[derive(Debug, Default)]
pub(super) struct Interner(HashSet<Sym>);

impl Interner {
    pub fn get(&mut self, s: &str) -> Sym {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Sym = s.into();
        self.0.insert(a.clone());
        a
    }

    pub fn gc(&mut self) {
        self.0.retain(|a| Arc::strong_count(a) > 1);
    }

    pub fn bytes(&self) -> usize {
        self.0.capacity() * (std::mem::size_of::<Sym>() + 8)
            + self.0.iter().map(|s| s.len() + 16).sum::<usize>()
    }
}

/// The bucket bounds of a histogram series, shared by every series with the same ones.
pub(super) type Layout = Arc<[f64]>;

#[derive(Debug, Default)]
pub(super) struct Layouts(Vec<Layout>);

impl Layouts {
    pub fn get(&mut self, bounds: &[f64]) -> Layout {
        let same = |l: &&Layout| {
            l.len() == bounds.len()
                && l.iter()
                    .zip(bounds)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
        };
        if let Some(l) = self.0.iter().find(same) {
            return l.clone();
        }
        let l: Layout = bounds.into();
        self.0.push(l.clone());
        l
    }

    pub fn gc(&mut self) {
        self.0.retain(|l| Arc::strong_count(l) > 1);
    }
}

/// The last raw (cumulative) values of a series.
#[derive(Debug)]
pub(super) enum Last {
    Counter(f64),
    Hist { layout: Layout, last: Box<[f64]> },
}

/// A counter or histogram series: a position in the pod's records.
#[derive(Debug)]
pub(super) struct Series {
    pub family: Family,
    pub labels: Box<[(Sym, Sym)]>,
    pub hash: u64,
    pub last: Last,
    /// When it was last in a scrape (ms since the epoch).
    pub last_seen: i64,
    /// False once replaced (its histogram layout changed); dropped at the next compaction.
    pub live: bool,
}

impl Series {
    pub fn kind(&self) -> Kind {
        match self.last {
            Last::Counter(_) => Kind::Counter,
            Last::Hist { .. } => Kind::Hist,
        }
    }

    /// Series as Prometheus counts them (each bucket is one).
    pub fn width(&self) -> usize {
        match &self.last {
            Last::Counter(_) => 1,
            Last::Hist { layout, .. } => layout.len(),
        }
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.labels.len() * std::mem::size_of::<(Sym, Sym)>()
            + match &self.last {
                Last::Counter(_) => 0,
                Last::Hist { last, .. } => last.len() * 8,
            }
    }
}

/// A gauge series: only its latest value is kept.
#[derive(Debug)]
pub(super) struct Gauge {
    pub labels: Box<[(Sym, Sym)]>,
    pub hash: u64,
    pub value: f64,
    /// The pod scrape (count) that last had it.
    pub seen: u64,
    pub last_seen: i64,
}

/// Refers to a gauge rather than a record series.
pub(super) const GAUGE: u32 = 1 << 31;

/// One scraped pod.
#[derive(Debug, Default)]
pub(super) struct Pod {
    /// The scraper's labels (`namespace`, `pod`, owner), non-empty values only.
    pub labels: Box<[(Sym, Sym)]>,
    pub series: Vec<Series>,
    pub gauges: Vec<Gauge>,
    index: HashMap<u64, u32>,
    collisions: Vec<u32>,
    pub ring: Ring,
    /// Scrapes stored.
    pub scrapes: u64,
    /// Time of the last scrape (ms since the epoch).
    pub last_at: i64,
    pub start_time: Option<f64>,
    /// Some series were refused (series cap): later new series start from their current
    /// value, since their earlier counts may predate them.
    pub refused: bool,
}

/// A hash of a family and a label set that ignores label order.
pub(super) fn label_hash<'a>(
    family: Family,
    labels: impl Iterator<Item = (&'a str, &'a str)>,
) -> u64 {
    let mut h = mix(family as u64 + 1);
    for (n, v) in labels {
        h = h.wrapping_add(mix(str_hash(n) ^ str_hash(v).rotate_left(29)));
    }
    h
}

fn str_hash(s: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = s.len() as u64;
    let mut chunks = s.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Whether a stored label set equals a scraped one (in any order).
pub(super) fn same_labels(stored: &[(Sym, Sym)], line: &[Label<'_>]) -> bool {
    if stored.len() != line.len() {
        return false;
    }
    let eq = |(n, v): &(Sym, Sym), l: &Label<'_>| **n == *l.name && **v == *l.value;
    stored.iter().zip(line).all(|(s, l)| eq(s, l))
        || line.iter().all(|l| stored.iter().any(|s| eq(s, l)))
}

impl Pod {
    /// The series (or `GAUGE | i`) of a scraped label set.
    pub fn find(&self, hash: u64, family: Family, labels: &[Label<'_>]) -> Option<u32> {
        let check = |r: u32| {
            if r & GAUGE != 0 {
                let g = &self.gauges[(r & !GAUGE) as usize];
                family == Family::TcpOpenConnections
                    && g.hash == hash
                    && same_labels(&g.labels, labels)
            } else {
                let s = &self.series[r as usize];
                s.live && s.family == family && s.hash == hash && same_labels(&s.labels, labels)
            }
        };
        if let Some(&r) = self.index.get(&hash)
            && check(r)
        {
            return Some(r);
        }
        self.collisions.iter().copied().find(|&r| check(r))
    }

    pub fn insert(&mut self, hash: u64, r: u32) {
        match self.index.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => self.collisions.push(r),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(r);
            }
        }
    }

    /// Forgets where a replaced series is (it stays in the records until compaction).
    pub fn unindex(&mut self, hash: u64, r: u32) {
        if self.index.get(&hash) == Some(&r) {
            self.index.remove(&hash);
        }
        self.collisions.retain(|x| *x != r);
    }

    fn reindex(&mut self) {
        self.index.clear();
        self.collisions.clear();
        let refs: Vec<(u64, u32)> = (self.series.iter().enumerate())
            .filter(|(_, s)| s.live)
            .map(|(i, s)| (s.hash, i as u32))
            .chain(
                self.gauges
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (g.hash, GAUGE | i as u32)),
            )
            .collect();
        for (h, r) in refs {
            self.insert(h, r);
        }
    }

    /// Each record position's kind and width.
    pub fn layout(&self) -> Vec<(Kind, usize)> {
        self.series.iter().map(|s| (s.kind(), s.width())).collect()
    }

    /// Series (Prometheus count) held.
    pub fn width(&self) -> usize {
        self.series.iter().map(Series::width).sum::<usize>() + self.gauges.len()
    }

    /// Drops series not scraped since `before` (and replaced ones) and rewrites the records
    /// without them; returns the series (Prometheus count) dropped.
    pub fn compact(&mut self, before: i64) -> usize {
        let keep: Vec<bool> = (self.series.iter())
            .map(|s| s.live && s.last_seen > before)
            .collect();
        let gauges_before = self.gauges.len();
        self.gauges.retain(|g| g.last_seen > before);
        let mut dropped = gauges_before - self.gauges.len();
        if keep.iter().any(|k| !k) {
            let kinds: Vec<Kind> = self.series.iter().map(Series::kind).collect();
            self.ring.retain(&kinds, &keep);
            let mut k = keep.iter();
            dropped += (self.series.iter())
                .zip(&keep)
                .filter(|(_, k)| !**k)
                .map(|(s, _)| s.width())
                .sum::<usize>();
            self.series.retain(|_| *k.next().unwrap_or(&true));
        }
        if dropped > 0 {
            self.reindex();
        }
        dropped
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.labels.len() * std::mem::size_of::<(Sym, Sym)>()
            + self.series.capacity() * std::mem::size_of::<Series>()
            + self
                .series
                .iter()
                .map(|s| s.bytes() - std::mem::size_of::<Series>())
                .sum::<usize>()
            + self.gauges.capacity() * std::mem::size_of::<Gauge>()
            + (self.gauges.iter())
                .map(|g| g.labels.len() * std::mem::size_of::<(Sym, Sym)>())
                .sum::<usize>()
            + self.index.capacity() * (8 + 4 + 1)
            + self.collisions.capacity() * 4
            + self.ring.bytes()
    }
}
