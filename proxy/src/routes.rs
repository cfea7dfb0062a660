//! The outbound route cache: routes by original destination and authority text. Routes
//! may expire (passthrough routes are resolved again) and routes unused for the idle
//! timeout are evicted on lookups, releasing their discovery watches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A cached route with its bookkeeping; derefs to the route.
#[derive(Debug)]
pub struct Cached<R> {
    route: R,
    expires: Option<Instant>,
    /// Milliseconds since [`RouteCache::started`] of the last use.
    last_used: AtomicU64,
}

impl<R> Deref for Cached<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.route
    }
}

type Map<R> = HashMap<SocketAddr, HashMap<Box<str>, Arc<Cached<R>>>>;

/// Routes by original destination, then by raw authority text.
#[derive(Debug)]
pub struct RouteCache<R> {
    map: RwLock<Map<R>>,
    count: AtomicUsize,
    max: usize,
    idle: Duration,
    started: Instant,
    /// Milliseconds since `started` of the last sweep.
    last_sweep: AtomicU64,
}

impl<R> RouteCache<R> {
    /// At most `max` routes; routes unused for `idle` are evicted.
    pub fn new(max: usize, idle: Duration) -> Self {
        RouteCache {
            map: RwLock::default(),
            count: AtomicUsize::new(0),
            max,
            idle,
            started: Instant::now(),
            last_sweep: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The live route for `(orig, raw)`, if any.
    pub fn get(&self, orig: SocketAddr, raw: &str) -> Option<Arc<Cached<R>>> {
        let now = self.now_ms();
        self.sweep(now);
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let r = map
            .get(&orig)
            .and_then(|m| m.get(raw))
            .filter(|r| r.expires.is_none_or(|e| Instant::now() < e))?;
        if r.last_used.load(Ordering::Relaxed) / 100 != now / 100 {
            r.last_used.store(now, Ordering::Relaxed);
        }
        Some(r.clone())
    }

    /// Caches `route` (replacing an expired one), to be resolved again after `ttl` if set.
    /// Beyond `max` routes the route is returned without being cached.
    pub fn insert(
        &self,
        orig: SocketAddr,
        raw: &str,
        route: R,
        ttl: Option<Duration>,
    ) -> Arc<Cached<R>> {
        let cached = Arc::new(Cached {
            route,
            expires: ttl.map(|t| Instant::now() + t),
            last_used: AtomicU64::new(self.now_ms()),
        });
        if self.count.load(Ordering::Relaxed) < self.max {
            let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
            let replaced = map
                .entry(orig)
                .or_default()
                .insert(raw.into(), cached.clone());
            if replaced.is_none() {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        cached
    }

    /// Number of cached routes.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether no route is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evicts routes unused for `idle` and not held elsewhere (at most twice per `idle`).
    fn sweep(&self, now: u64) {
        let idle = u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < idle / 2
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        map.retain(|_, m| {
            m.retain(|_, r| {
                // Held elsewhere (a request or connection in progress) counts as in use.
                let keep = Arc::strong_count(r) > 1
                    || now.saturating_sub(r.last_used.load(Ordering::Relaxed)) < idle;
                removed += usize::from(!keep);
                keep
            });
            !m.is_empty()
        });
        self.count.fetch_sub(removed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn expiry_idle_eviction_and_limit() {
        let c = RouteCache::new(2, Duration::from_secs(3600));
        c.insert(addr(1), "a", 1, None);
        assert_eq!(c.get(addr(1), "a").map(|r| **r), Some(1));
        assert!(c.get(addr(1), "b").is_none());
        // An expired route is not returned, and replacing it does not count twice.
        c.insert(addr(2), "x", 2, Some(Duration::ZERO));
        assert!(c.get(addr(2), "x").is_none());
        c.insert(addr(2), "x", 3, None);
        assert_eq!(c.len(), 2);
        // Full: returned but not cached.
        assert_eq!(**c.insert(addr(3), "y", 4, None), 4);
        assert!(c.get(addr(3), "y").is_none());

        // Idle 0: every route not held elsewhere is evicted on the next lookup.
        let c = RouteCache::new(10, Duration::ZERO);
        let held = c.insert(addr(1), "held", 1, None);
        c.insert(addr(1), "dropped", 2, None);
        assert!(c.get(addr(9), "none").is_none());
        assert_eq!(c.len(), 1);
        assert!(c.get(addr(1), "held").is_some());
        drop(held);
        assert!(c.get(addr(9), "none").is_none());
        assert!(c.is_empty());
    }
}
