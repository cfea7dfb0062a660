//! Ctrl-C and SIGTERM become a stop flag that every long wait checks, so the bench unwinds
//! normally and the `Drop` of each child process kills it.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

static STOP: AtomicBool = AtomicBool::new(false);

/// The bench was asked to stop.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal; every started process was stopped")]
pub struct Interrupted;

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread started later) and waits for
/// them in a dedicated thread. Call first thing in `run`, before any other thread exists.
pub fn install() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                eprintln!("tulle-bench: got {sig}, stopping (children are killed on the way out)");
                STOP.store(true, Ordering::SeqCst);
            }
        })?;
    Ok(())
}

/// Whether a stop was requested.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Fails with [`Interrupted`] when a stop was requested.
pub fn check() -> Result<(), Interrupted> {
    if stopped() { Err(Interrupted) } else { Ok(()) }
}

/// Sleeps until `deadline`, waking early (with an error) on a stop request.
pub fn sleep_until(deadline: Instant) -> Result<(), Interrupted> {
    loop {
        check()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Sleeps for `d`, waking early (with an error) on a stop request.
pub fn sleep(d: Duration) -> Result<(), Interrupted> {
    sleep_until(Instant::now() + d)
}
