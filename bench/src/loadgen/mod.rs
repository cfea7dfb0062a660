//! The HTTP/1.1 load generator.
//!
//! Open loop (fixed rate): a pacer task releases request "tickets" at their intended send
//! times (`start + i / rate`, timed by a timerfd); the connections, all driven by the same
//! single-threaded tokio runtime, take the oldest ticket whenever they are free. Latency is
//! measured from the ticket's intended time, so a stalled system is charged for the requests
//! it delayed (no coordinated omission). Closed loop (maximum throughput): every connection
//! sends its next request as soon as the previous response is complete.
//!
//! Only the measurement window (after the warm-up) is recorded. Requests still unanswered at the
//! drain deadline are recorded with their latency so far (a lower bound) and counted as
//! unfinished.
pub mod http1;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::signals;

/// Longest time one request may take before it is abandoned.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after the window the generator waits for the answers still owed.
const DRAIN: Duration = Duration::from_secs(2);
/// Highest latency the histograms can hold (µs).
const MAX_US: u64 = 120_000_000;

/// One load to apply.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub host: String,
    pub connections: usize,
    /// Requests per second (open loop), or `None` for closed-loop maximum throughput.
    pub rate: Option<u64>,
    /// When the first request is due (leave time for the thread to start).
    pub start: Instant,
    pub warmup: Duration,
    pub duration: Duration,
}

impl LoadSpec {
    pub fn window_start(&self) -> Instant {
        self.start + self.warmup
    }
    pub fn window_end(&self) -> Instant {
        self.window_start() + self.duration
    }
}

/// What one load measured (over the window only).
#[derive(Debug)]
pub struct LoadOutcome {
    /// Latency from the intended send time, in µs.
    pub latency_us: Histogram<u64>,
    /// How late the generator itself sent requests (open loop), in µs: its own accuracy.
    pub send_lag_us: Histogram<u64>,
    /// Successful (2xx) responses completed inside the window.
    pub completed: u64,
    /// Failed requests (I/O errors, non-2xx, timeouts) of the window.
    pub errors: u64,
    /// Requests of the window still unanswered at the drain deadline (counted in `errors` too).
    pub unfinished: u64,
    /// A few error messages, for the log.
    pub error_samples: Vec<String>,
    pub window: Duration,
}

impl LoadOutcome {
    pub fn rps(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }
}

/// Runs the load in a dedicated thread (its own single-threaded runtime).
pub fn spawn(spec: LoadSpec) -> std::thread::JoinHandle<anyhow::Result<LoadOutcome>> {
    std::thread::Builder::new()
        .name("loadgen".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, drive(spec))
        })
        .expect("spawning the load generator thread")
}

struct Shared {
    queue: RefCell<VecDeque<Instant>>,
    notify: Notify,
    done: Cell<bool>,
    stats: RefCell<Stats>,
    window_start: Instant,
    window_end: Instant,
    drain_deadline: Instant,
}

struct Stats {
    latency_us: Histogram<u64>,
    send_lag_us: Histogram<u64>,
    completed: u64,
    errors: u64,
    unfinished: u64,
    error_samples: Vec<String>,
}

impl Shared {
    fn in_window(&self, t: Instant) -> bool {
        t >= self.window_start && t < self.window_end
    }

    fn record(
        &self,
        intended: Instant,
        sent: Instant,
        finished: Instant,
        outcome: Result<(), String>,
        unfinished: bool,
    ) {
        let mut s = self.stats.borrow_mut();
        if self.in_window(intended) {
            let us = |d: Duration| (d.as_micros() as u64).clamp(1, MAX_US);
            let _ = s
                .latency_us
                .record(us(finished.saturating_duration_since(intended)));
            let _ = s
                .send_lag_us
                .record(us(sent.saturating_duration_since(intended)));
            if let Err(e) = &outcome {
                s.errors += 1;
                if unfinished {
                    s.unfinished += 1;
                }
                if s.error_samples.len() < 5 {
                    s.error_samples.push(e.clone());
                }
            }
        }
        if outcome.is_ok() && self.in_window(finished) {
            s.completed += 1;
        }
    }
}

async fn drive(spec: LoadSpec) -> anyhow::Result<LoadOutcome> {
    let hist = || Histogram::<u64>::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds");
    let shared = Rc::new(Shared {
        queue: RefCell::new(VecDeque::new()),
        notify: Notify::new(),
        done: Cell::new(false),
        stats: RefCell::new(Stats {
            latency_us: hist(),
            send_lag_us: hist(),
            completed: 0,
            errors: 0,
            unfinished: 0,
            error_samples: Vec::new(),
        }),
        window_start: spec.window_start(),
        window_end: spec.window_end(),
        drain_deadline: spec.window_end() + DRAIN,
    });
    let req: Rc<[u8]> = http1::request_bytes(&spec.host).into();
    let open_loop = spec.rate.is_some();
    let tasks: Vec<_> = (0..spec.connections.max(1))
        .map(|_| {
            tokio::task::spawn_local(connection(
                shared.clone(),
                spec.addr,
                req.clone(),
                open_loop,
                spec.start,
            ))
        })
        .collect();

    if let Some(rate) = spec.rate {
        pace(&shared, rate.max(1), spec.start, spec.window_end()).await?;
    } else {
        while Instant::now() < spec.window_end() && !signals::stopped() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    shared.done.set(true);
    shared.notify.notify_waiters();
    for t in tasks {
        let _ = t.await;
    }
    signals::check()?;
    let Ok(shared) = Rc::try_unwrap(shared) else {
        anyhow::bail!("load generator tasks still hold their shared state");
    };
    let s = shared.stats.into_inner();
    Ok(LoadOutcome {
        latency_us: s.latency_us,
        send_lag_us: s.send_lag_us,
        completed: s.completed,
        errors: s.errors,
        unfinished: s.unfinished,
        error_samples: s.error_samples,
        window: spec.duration,
    })
}

/// Releases one ticket per `1/rate` from `start` until `end`, waking on a timerfd (tokio's own
/// timer has a 1 ms resolution) in the generator's thread, so no other thread has to wake it.
async fn pace(sh: &Shared, rate: u64, start: Instant, end: Instant) -> anyhow::Result<()> {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

    let timer = register(Timer(TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )?))?;
    let interval_ns = 1e9 / rate as f64;
    let mut i: u64 = 0;
    loop {
        if signals::stopped() {
            return Ok(());
        }
        let t = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
        if t >= end {
            return Ok(());
        }
        let now = Instant::now();
        if t > now {
            let wait = TimeSpec::from_duration(t - now);
            timer
                .get_ref()
                .0
                .set(Expiration::OneShot(wait), TimerSetTimeFlags::empty())?;
            loop {
                let mut guard = timer.readable().await?;
                let mut expirations = [0u8; 8];
                let read = guard.try_io(|fd| {
                    nix::unistd::read(&fd.get_ref().0, &mut expirations)
                        .map_err(std::io::Error::from)
                });
                if let Ok(result) = read {
                    result?;
                    break;
                }
            }
            continue;
        }
        sh.queue.borrow_mut().push_back(t);
        sh.notify.notify_one();
        i += 1;
    }
}

/// A timerfd that tokio can poll.
struct Timer(nix::sys::timerfd::TimerFd);

impl std::os::fd::AsRawFd for Timer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

#[allow(unsafe_code)]
fn register(timer: Timer) -> std::io::Result<tokio::io::unix::AsyncFd<Timer>> {
    // SAFETY: the AsyncFd owns the timer, so the descriptor stays open (and is not reused)
    // for as long as it is registered.
    unsafe { tokio::io::unix::AsyncFd::register(timer) }.map_err(std::io::Error::from)
}

async fn connection(
    sh: Rc<Shared>,
    addr: SocketAddr,
    req: Rc<[u8]>,
    open_loop: bool,
    start: Instant,
) {
    let mut buf = Vec::with_capacity(4096);
    let mut stream: Option<TcpStream> = None;
    if !open_loop {
        tokio::time::sleep_until(start.into()).await;
    }
    loop {
        let intended = if open_loop {
            loop {
                let next = sh.queue.borrow_mut().pop_front();
                if let Some(t) = next {
                    break t;
                }
                if sh.done.get() {
                    return;
                }
                sh.notify.notified().await;
            }
        } else {
            let now = Instant::now();
            if now >= sh.window_end || signals::stopped() {
                return;
            }
            now
        };
        let sent = Instant::now();
        if sent >= sh.drain_deadline || signals::stopped() {
            sh.record(
                intended,
                sent,
                sh.drain_deadline,
                Err("not sent before the drain deadline".into()),
                true,
            );
            continue;
        }
        let limit = (sh.drain_deadline - sent).min(REQUEST_TIMEOUT);
        let result =
            tokio::time::timeout(limit, one_request(&mut stream, addr, &req, &mut buf)).await;
        let finished = Instant::now();
        match result {
            Ok(Ok(resp)) if (200..300).contains(&resp.status) => {
                if resp.close {
                    stream = None;
                }
                sh.record(intended, sent, finished, Ok(()), false);
            }
            Ok(Ok(resp)) => {
                if resp.close {
                    stream = None;
                }
                sh.record(
                    intended,
                    sent,
                    finished,
                    Err(format!("HTTP status {}", resp.status)),
                    false,
                );
            }
            Ok(Err(e)) => {
                stream = None;
                sh.record(intended, sent, finished, Err(e.to_string()), false);
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                stream = None;
                sh.record(
                    intended,
                    sent,
                    finished,
                    Err(format!("no response within {limit:?}")),
                    true,
                );
            }
        }
    }
}

async fn one_request(
    stream: &mut Option<TcpStream>,
    addr: SocketAddr,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> Result<http1::Response, http1::ExchangeError> {
    let s = match stream {
        Some(s) => s,
        None => {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            stream.insert(s)
        }
    };
    http1::exchange(s, req, buf).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A tiny keep-alive HTTP/1.1 server on a random port, in its own thread.
    fn tiny_server() -> SocketAddr {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        std_listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (mut s, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        let mut pending = Vec::new();
                        loop {
                            let n = match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            pending.extend_from_slice(&buf[..n]);
                            while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n")
                            {
                                pending.drain(..end + 4);
                                let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
                                if s.write_all(resp).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        });
        addr
    }

    fn spec(addr: SocketAddr, rate: Option<u64>) -> LoadSpec {
        LoadSpec {
            addr,
            host: "bench.local".into(),
            connections: 4,
            rate,
            start: Instant::now() + Duration::from_millis(50),
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(1000),
        }
    }

    #[test]
    fn open_loop_sends_the_requested_rate() {
        let addr = tiny_server();
        let out = spawn(spec(addr, Some(500))).join().unwrap().unwrap();
        assert_eq!(out.errors, 0, "{:?}", out.error_samples);
        // 500 req/s over a 1 s window: every intended request is recorded exactly once.
        assert_eq!(out.latency_us.len(), 500);
        assert!(
            (450..=550).contains(&out.completed),
            "completed {}",
            out.completed
        );
    }

    #[test]
    fn closed_loop_and_refused_connections() {
        let addr = tiny_server();
        let out = spawn(spec(addr, None)).join().unwrap().unwrap();
        assert_eq!(out.errors, 0, "{:?}", out.error_samples);
        assert!(out.completed > 0);

        let dead = crate::procs::free_port().unwrap();
        let out = spawn(spec(dead, Some(100))).join().unwrap().unwrap();
        assert_eq!(out.completed, 0);
        assert_eq!(out.errors, 100);
    }
}
