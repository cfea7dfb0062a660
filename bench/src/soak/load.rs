//! The soak's steady mixed load and its backend, each on a single-threaded tokio runtime in a
//! thread of its own.
//!
//! A pacer releases tickets for each protocol at its share of the rate (every 5 ms, the
//! tickets due since the start, so the average rate is exact whatever the timer's
//! granularity); the workers of that protocol take the oldest ticket when they are free.
//! Tickets left waiting more than [`BACKLOG`] are dropped and counted as `missed` (the load
//! fell behind), so memory stays bounded on a saturated machine.
//!
//! - HTTP/1.1: keep-alive connections (the HTTP/1 exchange of [`crate::loadgen::http1`]), each
//!   closed and reopened after [`H1_REQUESTS_PER_CONN`] requests;
//! - HTTP/2 (prior knowledge, hyper's client): connections of [`H2_STREAMS`] concurrent
//!   request loops, each reopened after [`H2_REQUESTS_PER_CONN`] requests;
//! - opaque TCP: connections that send 64-byte messages (first byte 0, so no proxy detects
//!   HTTP) and check the echo, [`TCP_EXCHANGES_PER_CONN`] per connection.
//!
//! The reconnections are deliberate: a soak that never opens a connection cannot find a
//! descriptor leak.
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::loadgen::http1;

/// The protocols of the mix, in the order of every per-protocol array.
pub const PROTOCOLS: [&str; 3] = ["http1", "http2", "tcp"];
/// Share of the rate per protocol (sums to 1).
pub const SHARES: [f64; 3] = [0.5, 0.3, 0.2];
/// Connections (HTTP/1, TCP) or request loops (HTTP/2) per protocol.
pub const WORKERS: [usize; 3] = [16, 16, 8];
pub const H1_REQUESTS_PER_CONN: u64 = 1_000;
pub const H2_STREAMS: usize = 4;
pub const H2_REQUESTS_PER_CONN: u64 = 5_000;
pub const TCP_EXCHANGES_PER_CONN: u64 = 50;
const MSG_LEN: usize = 64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How far behind schedule a ticket may fall before it is dropped as missed.
pub const BACKLOG: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(5);

/// Cumulative counters, read by the sampler from another thread.
#[derive(Debug, Default)]
pub struct Counters {
    pub ok: [AtomicU64; 3],
    pub errors: [AtomicU64; 3],
    /// Tickets dropped because the workers fell more than [`BACKLOG`] behind.
    pub missed: [AtomicU64; 3],
    /// Connections opened by the load generator.
    pub connections: [AtomicU64; 3],
    /// The first few error messages.
    pub error_samples: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Counters {
    /// (ok, errors, missed) per protocol, now.
    pub fn snapshot(&self) -> [[u64; 3]; 3] {
        let read = |a: &[AtomicU64; 3]| {
            [
                a[0].load(Ordering::Relaxed),
                a[1].load(Ordering::Relaxed),
                a[2].load(Ordering::Relaxed),
            ]
        };
        [read(&self.ok), read(&self.errors), read(&self.missed)]
    }

    /// Ends the load (the generator returns once the workers have finished their request).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn error(&self, proto: usize, msg: String) {
        self.errors[proto].fetch_add(1, Ordering::Relaxed);
        let mut s = self.error_samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() < 10 {
            s.push(format!("{}: {msg}", PROTOCOLS[proto]));
        }
    }

    fn ok(&self, proto: usize) {
        self.ok[proto].fetch_add(1, Ordering::Relaxed);
    }
}

/// The backend: HTTP/1.1 and HTTP/2 prior knowledge (`200 ok\n`) and, for connections whose
/// first byte is 0, an echo. Returns its address; the thread lives as long as the process.
pub fn spawn_backend() -> anyhow::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("soak-backend".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("backend runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("backend listener");
                loop {
                    let Ok((s, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    tokio::spawn(serve(s));
                }
            });
        })?;
    Ok(addr)
}

async fn serve(mut s: TcpStream) {
    let mut first = [0u8; 1];
    match s.peek(&mut first).await {
        Ok(1) => {}
        _ => return,
    }
    if first[0] == 0 {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        return;
    }
    let svc = hyper::service::service_fn(|_req: hyper::Request<Incoming>| async {
        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok\n"))))
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(s), svc)
        .await;
}

/// What the generator needs.
#[derive(Debug, Clone)]
pub struct MixSpec {
    /// The client (outbound) proxy.
    pub addr: SocketAddr,
    /// Host header / `:authority`.
    pub authority: String,
    /// Total rate, requests (or TCP exchanges) per second.
    pub rps: f64,
    pub duration: Duration,
}

/// Runs the mixed load in a thread of its own until `spec.duration` has passed or
/// [`Counters::stop`] is called.
pub fn spawn(
    spec: MixSpec,
    counters: Arc<Counters>,
) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    std::thread::Builder::new()
        .name("soak-load".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, drive(spec, counters));
            Ok(())
        })
}

/// The tickets of one protocol.
#[derive(Default)]
struct Queue {
    tickets: RefCell<VecDeque<Instant>>,
    notify: Notify,
}

struct Shared {
    queues: [Queue; 3],
    done: Cell<bool>,
    counters: Arc<Counters>,
    spec: MixSpec,
}

impl Shared {
    /// The next ticket of `proto`, or `None` once the load is over.
    async fn ticket(&self, proto: usize) -> Option<Instant> {
        loop {
            if self.done.get() {
                return None;
            }
            if let Some(t) = self.queues[proto].tickets.borrow_mut().pop_front() {
                return Some(t);
            }
            self.queues[proto].notify.notified().await;
        }
    }
}

async fn drive(spec: MixSpec, counters: Arc<Counters>) {
    let sh = Rc::new(Shared {
        queues: Default::default(),
        done: Cell::new(false),
        counters,
        spec,
    });
    let mut tasks = Vec::new();
    for _ in 0..WORKERS[0] {
        tasks.push(tokio::task::spawn_local(http1_worker(sh.clone())));
    }
    for _ in 0..WORKERS[1] / H2_STREAMS {
        tasks.push(tokio::task::spawn_local(http2_connection(sh.clone())));
    }
    for _ in 0..WORKERS[2] {
        tasks.push(tokio::task::spawn_local(tcp_worker(sh.clone())));
    }
    pace(&sh).await;
    sh.done.set(true);
    for q in &sh.queues {
        q.notify.notify_waiters();
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn pace(sh: &Shared) {
    let start = Instant::now();
    let end = start + sh.spec.duration;
    let mut released = [0u64; 3];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= end || sh.counters.stop.load(Ordering::SeqCst) || crate::signals::stopped() {
            return;
        }
        let elapsed = (now - start).as_secs_f64();
        for (p, q) in sh.queues.iter().enumerate() {
            let rate = sh.spec.rps * SHARES[p];
            let due = (elapsed * rate) as u64;
            let mut tickets = q.tickets.borrow_mut();
            for i in released[p]..due {
                tickets.push_back(start + Duration::from_secs_f64(i as f64 / rate));
            }
            let fresh = due.saturating_sub(released[p]);
            released[p] = due.max(released[p]);
            while tickets
                .front()
                .is_some_and(|t| now.duration_since(*t) > BACKLOG)
            {
                tickets.pop_front();
                sh.counters.missed[p].fetch_add(1, Ordering::Relaxed);
            }
            drop(tickets);
            for _ in 0..fresh.min(WORKERS[p] as u64) {
                q.notify.notify_one();
            }
        }
    }
}

async fn connect(sh: &Shared, proto: usize) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(sh.spec.addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    s.set_nodelay(true)?;
    sh.counters.connections[proto].fetch_add(1, Ordering::Relaxed);
    Ok(s)
}

/// After a failure to connect, one ticket is charged with the error and the worker waits a
/// little before trying again.
async fn connect_failed(sh: &Shared, proto: usize, e: impl std::fmt::Display) -> bool {
    if sh.ticket(proto).await.is_none() {
        return false;
    }
    sh.counters.error(proto, format!("connect: {e}"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    true
}

async fn http1_worker(sh: Rc<Shared>) {
    let req = http1::request_bytes(&sh.spec.authority);
    let mut buf = Vec::with_capacity(4096);
    loop {
        let mut s = match connect(&sh, 0).await {
            Ok(s) => s,
            Err(e) => {
                if connect_failed(&sh, 0, e).await {
                    continue;
                }
                return;
            }
        };
        for _ in 0..H1_REQUESTS_PER_CONN {
            if sh.ticket(0).await.is_none() {
                return;
            }
            match tokio::time::timeout(REQUEST_TIMEOUT, http1::exchange(&mut s, &req, &mut buf))
                .await
            {
                Ok(Ok(r)) if (200..300).contains(&r.status) && !r.close => sh.counters.ok(0),
                Ok(Ok(r)) if (200..300).contains(&r.status) => {
                    sh.counters.ok(0);
                    break;
                }
                Ok(Ok(r)) => {
                    sh.counters.error(0, format!("status {}", r.status));
                    if r.close {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    sh.counters.error(0, e.to_string());
                    break;
                }
                Err(_) => {
                    sh.counters.error(0, "timed out".into());
                    break;
                }
            }
        }
    }
}

async fn http2_connection(sh: Rc<Shared>) {
    let uri: hyper::Uri = match format!("http://{}/", sh.spec.authority).parse() {
        Ok(u) => u,
        Err(e) => {
            sh.counters.error(1, format!("bad authority: {e}"));
            return;
        }
    };
    while !sh.done.get() {
        let s = match connect(&sh, 1).await {
            Ok(s) => s,
            Err(e) => {
                if connect_failed(&sh, 1, e).await {
                    continue;
                }
                return;
            }
        };
        let (sender, conn) = match hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            TokioIo::new(s),
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                if connect_failed(&sh, 1, format!("h2 handshake: {e}")).await {
                    continue;
                }
                return;
            }
        };
        let driver = tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        let left = Rc::new(Cell::new(H2_REQUESTS_PER_CONN));
        let loops: Vec<_> = (0..H2_STREAMS)
            .map(|_| {
                tokio::task::spawn_local(http2_loop(
                    sh.clone(),
                    sender.clone(),
                    uri.clone(),
                    left.clone(),
                ))
            })
            .collect();
        drop(sender);
        for l in loops {
            let _ = l.await;
        }
        let _ = driver.await;
    }
}

/// Sends requests on one HTTP/2 connection until `left` reaches 0, the connection fails or the
/// load ends.
async fn http2_loop(
    sh: Rc<Shared>,
    mut sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    uri: hyper::Uri,
    left: Rc<Cell<u64>>,
) {
    while left.get() > 0 {
        left.set(left.get() - 1);
        if sh.ticket(1).await.is_none() {
            return;
        }
        let req = hyper::Request::get(uri.clone())
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
        let exchange = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(status)) if status.is_success() => sh.counters.ok(1),
            Ok(Ok(status)) => sh.counters.error(1, format!("status {status}")),
            Ok(Err(e)) => {
                sh.counters.error(1, e.to_string());
                left.set(0);
            }
            Err(_) => {
                sh.counters.error(1, "timed out".into());
                left.set(0);
            }
        }
    }
}

async fn tcp_worker(sh: Rc<Shared>) {
    let mut seq = 0u64;
    let mut msg = [0u8; MSG_LEN];
    let mut back = [0u8; MSG_LEN];
    loop {
        let mut s = match connect(&sh, 2).await {
            Ok(s) => s,
            Err(e) => {
                if connect_failed(&sh, 2, e).await {
                    continue;
                }
                return;
            }
        };
        for _ in 0..TCP_EXCHANGES_PER_CONN {
            if sh.ticket(2).await.is_none() {
                return;
            }
            seq += 1;
            fill_message(&mut msg, seq);
            let exchange = async {
                s.write_all(&msg).await?;
                s.read_exact(&mut back).await?;
                Ok::<_, std::io::Error>(())
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(Ok(())) if back == msg => sh.counters.ok(2),
                Ok(Ok(())) => {
                    sh.counters.error(2, "echo differs".into());
                    break;
                }
                Ok(Err(e)) => {
                    sh.counters.error(2, e.to_string());
                    break;
                }
                Err(_) => {
                    sh.counters.error(2, "timed out".into());
                    break;
                }
            }
        }
        let _ = s.shutdown().await;
    }
}

/// A 64-byte message: a 0 byte (never HTTP), a tag, the sequence number, padding, newline.
fn fill_message(msg: &mut [u8; MSG_LEN], seq: u64) {
    msg.fill(b'.');
    msg[0] = 0;
    let text = format!("tulle-soak {seq:020}");
    msg[1..1 + text.len()].copy_from_slice(text.as_bytes());
    msg[MSG_LEN - 1] = b'\n';
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_one_and_messages_are_not_http() {
        assert!((SHARES.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let mut m = [0u8; MSG_LEN];
        fill_message(&mut m, 42);
        assert_eq!(m[0], 0);
        assert_eq!(m[MSG_LEN - 1], b'\n');
    }

    /// The whole mix against the backend directly (no proxies): every protocol answers.
    #[test]
    fn mix_against_the_backend() {
        let backend = spawn_backend().unwrap();
        let counters = Arc::new(Counters::default());
        let spec = MixSpec {
            addr: backend,
            authority: "bench.local".into(),
            rps: 400.0,
            duration: Duration::from_millis(1500),
        };
        spawn(spec, counters.clone())
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        let [ok, errors, _] = counters.snapshot();
        assert_eq!(errors, [0, 0, 0], "{:?}", counters.error_samples.lock());
        for (p, n) in ok.iter().enumerate() {
            assert!(*n > 0, "no {} request succeeded", PROTOCOLS[p]);
        }
    }
}
