//! A pod's bounded history: scrape records in chunks of a few dozen. A sealed chunk is sized
//! exactly and carries a summary record (the sum of its records), so a long window costs one
//! decode per whole chunk inside it; retention drops whole chunks.

use std::collections::VecDeque;

use super::codec::{self, Kind, Target};

/// Records of consecutive scrapes: `(ms after base, end offset in data)`.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    pub base: i64,
    pub recs: Vec<(u32, u32)>,
    pub data: Vec<u8>,
    /// Sum of the records (sealed chunks only).
    pub summary: Vec<u8>,
}

impl Chunk {
    pub fn first(&self) -> i64 {
        self.base
    }

    pub fn last(&self) -> i64 {
        self.base + self.recs.last().map_or(0, |r| i64::from(r.0))
    }

    /// The records, as `(time, bytes)`.
    pub fn records(&self) -> impl Iterator<Item = (i64, &[u8])> {
        let mut start = 0usize;
        self.recs.iter().map(move |&(dt, end)| {
            let r = &self.data[start..end as usize];
            start = end as usize;
            (self.base + i64::from(dt), r)
        })
    }

    fn bytes(&self) -> usize {
        self.recs.capacity() * 8 + self.data.capacity() + self.summary.capacity()
    }
}

/// The records of one pod, oldest first.
#[derive(Debug, Default)]
pub(super) struct Ring {
    pub sealed: VecDeque<Chunk>,
    pub open: Chunk,
    records: usize,
}

impl Ring {
    /// Chunks oldest first (the open one last).
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.sealed
            .iter()
            .chain(std::iter::once(&self.open).filter(|c| !c.recs.is_empty()))
    }

    #[cfg(test)]
    pub fn records(&self) -> usize {
        self.records
    }

    /// Appends the record of a scrape at `at` (never before the previous one). `layout`
    /// gives each position's kind and width, to sum a chunk when it is sealed.
    pub fn push(&mut self, at: i64, rec: &[u8], chunk_len: usize, layout: &[(Kind, usize)]) {
        let dt = at - self.open.base;
        if !self.open.recs.is_empty()
            && (self.open.recs.len() >= chunk_len || dt > i64::from(u32::MAX))
        {
            self.seal(layout);
        }
        if self.open.recs.is_empty() {
            self.open.base = at;
        }
        let dt = (at - self.open.base).clamp(0, i64::from(u32::MAX)) as u32;
        self.open.data.extend_from_slice(rec);
        self.open.recs.push((dt, self.open.data.len() as u32));
        self.records += 1;
    }

    fn seal(&mut self, layout: &[(Kind, usize)]) {
        let mut targets = Vec::with_capacity(layout.len());
        let mut width = 0usize;
        for &(kind, w) in layout {
            targets.push(Target {
                kind,
                at: width as u32,
            });
            width += w;
        }
        let mut sums = vec![0.0; width];
        for (_, r) in self.open.records() {
            codec::accumulate(r, &targets, &mut sums);
        }
        let mut summary = Vec::new();
        let mut at = 0;
        for &(kind, w) in layout {
            match kind {
                Kind::Counter => codec::put_val(&mut summary, sums[at]),
                Kind::Hist => codec::put_hist(&mut summary, &sums[at..at + w]),
            }
            at += w;
        }
        let next_capacity = self.open.data.len() + self.open.data.len() / 8;
        let mut c = std::mem::take(&mut self.open);
        c.data.shrink_to_fit();
        c.recs.shrink_to_fit();
        summary.shrink_to_fit();
        c.summary = summary;
        self.sealed.push_back(c);
        self.open.data.reserve_exact(next_capacity);
    }

    /// Drops whole chunks that end at or before `before`, and the oldest ones while more than
    /// `max_records` are held.
    pub fn expire(&mut self, before: i64, max_records: usize) {
        while let Some(c) = self.sealed.front() {
            if c.last() > before && self.records <= max_records {
                break;
            }
            self.records -= c.recs.len();
            self.sealed.pop_front();
        }
        if self.sealed.is_empty() && !self.open.recs.is_empty() && self.open.last() <= before {
            self.records = 0;
            self.open = Chunk::default();
        }
    }

    /// Rewrites every record without the positions where `keep` is false.
    pub fn retain(&mut self, kinds: &[Kind], keep: &[bool]) {
        for c in self
            .sealed
            .iter_mut()
            .chain(std::iter::once(&mut self.open))
        {
            let mut data = Vec::with_capacity(c.data.len());
            let mut recs = Vec::with_capacity(c.recs.len());
            for (at, r) in c.records() {
                data.extend_from_slice(&codec::retain(r, kinds, keep));
                recs.push(((at - c.base) as u32, data.len() as u32));
            }
            c.data = data;
            c.recs = recs;
            c.summary = codec::retain(&c.summary, kinds, keep);
        }
    }

    pub fn bytes(&self) -> usize {
        self.sealed.capacity() * std::mem::size_of::<Chunk>()
            + self.sealed.iter().map(Chunk::bytes).sum::<usize>()
            + self.open.bytes()
    }
}
