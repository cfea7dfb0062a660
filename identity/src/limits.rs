//! Abuse bounds of Certify (issue 15, item 6): a token bucket per peer address in front of the
//! TokenReview, and a bound on Certify calls in flight. Both answer `RESOURCE_EXHAUSTED` with
//! how long to wait, in the message and in the `grpc-retry-pushback-ms` trailer gRPC clients
//! honour when retrying.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};
use tonic::Status;

/// Certify's abuse bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CertifyLimits {
    /// Sustained Certify calls per second per peer IP address (a proxy renews once a day; a
    /// node's pods restarting at once are the burst).
    pub per_peer_rate: f64,
    /// Calls a peer may make at once before the rate applies.
    pub per_peer_burst: u32,
    /// Certify calls in flight at once, over all peers (each costs a TokenReview).
    pub max_in_flight: usize,
}

impl Default for CertifyLimits {
    fn default() -> Self {
        Self {
            per_peer_rate: 5.0,
            per_peer_burst: 50,
            max_in_flight: 100,
        }
    }
}

/// The peers remembered at most; beyond it, peers whose bucket is full again are forgotten.
const MAX_PEERS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per peer IP address.
#[derive(Debug)]
pub struct PeerRateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} tokens", self.tokens)
    }
}

impl PeerRateLimiter {
    /// `rate` calls per second, bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate: rate.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call of `peer` at `now`: `Err(wait)` when the peer must wait that long.
    pub fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_PEERS && !buckets.contains_key(&peer) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let b = buckets.entry(peer).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

/// The metadata key gRPC clients read a retry delay from (milliseconds).
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// `RESOURCE_EXHAUSTED` with `what` and a retry hint of `wait` (in the message and the
/// [`RETRY_PUSHBACK`] trailer).
pub fn exhausted(what: &str, wait: Duration) -> Status {
    let ms = wait.as_millis().max(1);
    let mut status = Status::resource_exhausted(format!("{what}; retry in {ms} ms"));
    if let Ok(v) = ms.to_string().parse() {
        status.metadata_mut().insert(RETRY_PUSHBACK, v);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_burst_then_the_rate() {
        let l = PeerRateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            l.check(a, t0).unwrap();
        }
        let wait = l.check(a, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another peer is not affected.
        l.check(b, t0).unwrap();
        // Half a second later one more call is allowed, not two.
        let t1 = t0 + Duration::from_millis(500);
        l.check(a, t1).unwrap();
        assert!(l.check(a, t1).is_err());
    }

    #[test]
    fn exhausted_carries_the_retry_hint() {
        let s = exhausted("too many", Duration::from_millis(1500));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("retry in 1500 ms"), "{}", s.message());
        assert_eq!(s.metadata().get(RETRY_PUSHBACK).unwrap(), "1500");
    }
}
