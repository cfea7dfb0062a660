//! Exponential backoff with jitter for control-plane retries.

use std::time::Duration;

/// Doubling delays from `min` up to `max`, each with up to 25 % random jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::random::<f64>() * 0.25;
        d + d.mul_f64(jitter)
    }

    /// Back to the shortest delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let ds: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        // Jitter adds up to 25 % of the base exactly: compare in the same units, without
        // rounding the bound down (437 ms for 350 would reject a legal 437.31 ms).
        let within = |d: Duration, base: u64| {
            let base = Duration::from_millis(base);
            d >= base && d <= base + base / 4
        };
        assert!(within(ds[0], 100) && within(ds[1], 200), "{ds:?}");
        assert!(within(ds[2], 350) && within(ds[3], 350), "{ds:?}");
        b.reset();
        assert!(within(b.next_delay(), 100));
    }
}
