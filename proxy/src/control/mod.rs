//! Clients of the control plane: certificates from tulle-identity ([`identity`], installed in
//! [`crate::tls`]), endpoints and profiles (TrafficSplits) from tulle-controller's destination
//! service ([`destination`], [`profile`]), and this pod's inbound policy from its policy
//! service ([`policy`]).

pub mod backoff;
pub mod destination;
pub mod identity;
pub mod policy;
pub mod profile;

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a cached control-plane stream was last asked for (streams without users are dropped
/// after an idle time).
#[derive(Debug)]
pub(crate) struct LastUsed(Mutex<Instant>);

impl LastUsed {
    pub(crate) fn now() -> Self {
        LastUsed(Mutex::new(Instant::now()))
    }

    pub(crate) fn touch(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }
}

/// The reconnect backoff of the controller's streams (destination, profile and policy).
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// See [`RECONNECT_BACKOFF_MIN`].
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Timeouts of the destination and profile clients.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long a resolution waits for the controller's first answer before forwarding to
    /// the original destination.
    pub first_answer: Duration,
    /// How long a stream is kept without users.
    pub idle: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            first_answer: Duration::from_secs(3),
            idle: Duration::from_secs(60),
            backoff_min: RECONNECT_BACKOFF_MIN,
            backoff_max: RECONNECT_BACKOFF_MAX,
        }
    }
}

impl Timing {
    /// How often a stream checks whether it has gone idle: a quarter of [`Timing::idle`],
    /// at least 10 ms.
    pub(crate) fn idle_check(&self) -> Duration {
        (self.idle / 4).max(Duration::from_millis(10))
    }
}
