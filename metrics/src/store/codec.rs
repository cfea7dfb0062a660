//! The byte encoding of one scrape record: per series position, in order, a counter's
//! increase or a histogram's per-bucket increases, never absolute values.
//!
//! - a value: LEB128 of `n << 1` for an integer `n` below 2^53 (one byte up to 63), else the
//!   byte `1` followed by the 8 bytes of the f64;
//! - a counter entry: one value;
//! - a histogram entry: LEB128 of a bitmap of the buckets that grew (bit i: the i-th bound of
//!   the series' layout, at most 64 bounds), then one value per set bit. A quiet histogram is
//!   the single byte `0`, and so is a quiet counter.
//!
//! A record may hold fewer entries than the pod has series (series created later): missing
//! trailing entries are zero.

/// What one series position holds in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Hist,
}

/// Most bucket bounds a stored histogram may have (one bitmap word).
pub(super) const MAX_BUCKETS: usize = 64;

/// A position's kind and where its values go in an accumulator (`SKIP`: nowhere).
#[derive(Clone, Copy, Debug)]
pub(super) struct Target {
    pub kind: Kind,
    pub at: u32,
}

pub(super) const SKIP: u32 = u32::MAX;

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(super) fn get_varint(b: &[u8], p: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*p)?;
        *p += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

pub(super) fn put_val(out: &mut Vec<u8>, v: f64) {
    if (0.0..EXACT).contains(&v) && v.fract() == 0.0 {
        put_varint(out, (v as u64) << 1);
    } else {
        out.push(1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[inline]
pub(super) fn get_val(b: &[u8], p: &mut usize) -> Option<f64> {
    let v = get_varint(b, p)?;
    if v & 1 == 0 {
        return Some((v >> 1) as f64);
    }
    let bytes = b.get(*p..*p + 8)?;
    *p += 8;
    Some(f64::from_le_bytes(bytes.try_into().ok()?))
}

/// A histogram entry from per-bucket increases (at most [`MAX_BUCKETS`]).
pub(super) fn put_hist(out: &mut Vec<u8>, deltas: &[f64]) {
    let bitmap = deltas
        .iter()
        .enumerate()
        .filter(|(_, d)| **d != 0.0)
        .fold(0u64, |m, (i, _)| m | 1 << i);
    put_varint(out, bitmap);
    for d in deltas.iter().filter(|d| **d != 0.0) {
        put_val(out, *d);
    }
}

/// Adds the entries of `rec` into `acc`: a counter at its target, bucket i of a histogram at
/// its target + i.
#[inline]
pub(super) fn accumulate(rec: &[u8], targets: &[Target], acc: &mut [f64]) {
    let mut p = 0;
    for t in targets {
        if p >= rec.len() {
            return;
        }
        match t.kind {
            Kind::Counter => {
                let Some(v) = get_val(rec, &mut p) else {
                    return;
                };
                if t.at != SKIP
                    && let Some(a) = acc.get_mut(t.at as usize)
                {
                    *a += v;
                }
            }
            Kind::Hist => {
                let Some(mut bits) = get_varint(rec, &mut p) else {
                    return;
                };
                while bits != 0 {
                    let i = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let Some(v) = get_val(rec, &mut p) else {
                        return;
                    };
                    if t.at != SKIP
                        && let Some(a) = acc.get_mut(t.at as usize + i)
                    {
                        *a += v;
                    }
                }
            }
        }
    }
}

/// `rec` without the entries of the positions where `keep` is false.
pub(super) fn retain(rec: &[u8], kinds: &[Kind], keep: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rec.len());
    let mut p = 0;
    for (kind, keep) in kinds.iter().zip(keep) {
        if p >= rec.len() {
            break;
        }
        let start = p;
        let ok = match kind {
            Kind::Counter => get_val(rec, &mut p).is_some(),
            Kind::Hist => get_varint(rec, &mut p)
                .is_some_and(|bits| (0..bits.count_ones()).all(|_| get_val(rec, &mut p).is_some())),
        };
        if !ok {
            break;
        }
        if *keep {
            out.extend_from_slice(&rec[start..p]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_small_integers_in_one_byte() {
        for v in [0.0, 1.0, 63.0, 64.0, 1e15, 0.5, 1e300, EXACT] {
            let mut b = Vec::new();
            put_val(&mut b, v);
            assert_eq!(get_val(&b, &mut 0), Some(v));
            if v < 64.0 && v.fract() == 0.0 {
                assert_eq!(b.len(), 1);
            }
        }
    }

    #[test]
    fn records_accumulate_and_drop_positions() {
        let mut rec = Vec::new();
        put_val(&mut rec, 5.0);
        put_hist(&mut rec, &[0.0, 2.0, 0.0, 1.5]);
        put_val(&mut rec, 7.0);
        let targets = [
            Target {
                kind: Kind::Counter,
                at: 0,
            },
            Target {
                kind: Kind::Hist,
                at: 1,
            },
            Target {
                kind: Kind::Counter,
                at: SKIP,
            },
        ];
        let mut acc = [0.0; 5];
        accumulate(&rec, &targets, &mut acc);
        accumulate(&rec[..1], &targets, &mut acc);
        assert_eq!(acc, [10.0, 0.0, 2.0, 0.0, 1.5]);
        let kinds = [Kind::Counter, Kind::Hist, Kind::Counter];
        let kept = retain(&rec, &kinds, &[true, false, true]);
        let mut acc = [0.0; 2];
        let t = [
            Target {
                kind: Kind::Counter,
                at: 0,
            },
            Target {
                kind: Kind::Counter,
                at: 1,
            },
        ];
        accumulate(&kept, &t, &mut acc);
        assert_eq!(acc, [5.0, 7.0]);
    }
}
