//! Shared handles of a running proxy, and the drain used for graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::discovery::Resolve;
use crate::metrics::Metrics;
use crate::policy::PolicyRx;
use crate::tls::Tls;

/// Handles shared by all parts of a running proxy.
pub struct Runtime {
    pub config: Arc<Config>,
    pub tls: Tls,
    pub metrics: Arc<Metrics>,
    pub discovery: Arc<dyn Resolve>,
    /// The pod's current inbound policy (SMI Traffic Access).
    pub policy: PolicyRx,
    pub drain: Drain,
    /// Set once identity and listeners are up (`/ready`).
    pub ready: AtomicBool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The shutdown signal plus a count of work in progress.
#[derive(Debug, Clone)]
pub struct Drain {
    signal: watch::Receiver<bool>,
    tokens: mpsc::WeakSender<()>,
}

/// Held by a connection or request in progress; shutdown waits until all are dropped.
#[derive(Debug)]
pub struct Token(#[allow(dead_code)] Option<mpsc::Sender<()>>);

impl Drain {
    /// A receiver whose `changed()` resolves when shutdown begins.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.signal.clone()
    }
    pub fn is_draining(&self) -> bool {
        *self.signal.borrow()
    }
    pub fn token(&self) -> Token {
        Token(self.tokens.upgrade())
    }
}

/// Starts shutdown and waits for the drain.
#[derive(Debug)]
pub struct DrainHandle {
    tx: watch::Sender<bool>,
    root: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<()>,
}

/// A new drain and its handle.
pub fn drain() -> (Drain, DrainHandle) {
    let (tx, signal) = watch::channel(false);
    let (root, done) = mpsc::channel(1);
    (
        Drain {
            signal,
            tokens: root.downgrade(),
        },
        DrainHandle {
            tx,
            root: Some(root),
            done,
        },
    )
}

impl DrainHandle {
    /// Signals shutdown; returns true if all work finished within `grace`.
    pub async fn drain(mut self, grace: Duration) -> bool {
        let _ = self.tx.send(true);
        self.root = None;
        tokio::time::timeout(grace, self.done.recv()).await.is_ok()
    }

    /// Signals shutdown without waiting.
    pub fn signal(&self) {
        let _ = self.tx.send(true);
    }
}
