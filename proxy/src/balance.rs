//! Load balancing: power of two choices over peak-EWMA latency.
//!
//! A [`Balancer`] follows a discovery watch. When the endpoint set changes, endpoints that
//! stay keep their connection and load estimate; removed endpoints are dropped from the
//! set but in-flight requests hold their own reference and complete normally.
//! [`Balance`] is the balancer as a tower service over the endpoints' own services.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::Response;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::Service;
use tower::util::Oneshot;

use crate::body::Body;
use crate::discovery::{Destination, DiscoveredEndpoint};
use crate::error::ProxyError;

/// Peak-EWMA latency estimate with a count of pending requests.
#[derive(Debug)]
pub struct PeakEwma {
    state: Mutex<(f64, Instant)>,
    pending: AtomicUsize,
    decay_ns: f64,
}

impl PeakEwma {
    /// `default_rtt` seeds the estimate; `decay` is the time constant.
    pub fn new(default_rtt: Duration, decay: Duration) -> Self {
        PeakEwma {
            state: Mutex::new((default_rtt.as_nanos() as f64, Instant::now())),
            pending: AtomicUsize::new(0),
            decay_ns: decay.as_nanos().max(1) as f64,
        }
    }

    /// The cost: latency estimate × (pending + 1). The estimate decays toward zero while no
    /// response updates it (as tower's PeakEwma does), so an endpoint that once had a slow
    /// response is tried again instead of being starved forever: with two endpoints p2c
    /// always compares both, and an estimate frozen at its peak would never be picked.
    pub fn load(&self) -> f64 {
        let (ewma, at) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        let idle = Instant::now().saturating_duration_since(at).as_nanos() as f64;
        let decayed = ewma * (-idle / self.decay_ns).exp();
        decayed * (self.pending.load(Ordering::Relaxed) + 1) as f64
    }

    /// Marks a request pending until the returned guard is dropped or completed.
    pub fn start(self: &Arc<Self>) -> Pending {
        self.pending.fetch_add(1, Ordering::Relaxed);
        Pending {
            ewma: self.clone(),
            start: Instant::now(),
            done: false,
        }
    }

    fn observe(&self, rtt: Duration) {
        let rtt = rtt.as_nanos() as f64;
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_nanos() as f64;
        let w = (-elapsed / self.decay_ns).exp();
        let decayed = s.0 * w;
        s.0 = if rtt > decayed {
            rtt
        } else {
            decayed + rtt * (1.0 - w)
        };
        s.1 = now;
    }
}

/// A pending request; records its latency when completed.
#[derive(Debug)]
pub struct Pending {
    ewma: Arc<PeakEwma>,
    start: Instant,
    done: bool,
}

impl Pending {
    pub fn complete(mut self) {
        self.ewma.observe(self.start.elapsed());
        self.done = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.ewma.pending.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.ewma.observe(self.start.elapsed());
        }
    }
}

/// Something balanced over: built once per endpoint and kept while the endpoint stays.
pub trait Balanced: Send + Sync + 'static {
    fn load(&self) -> &Arc<PeakEwma>;
}

/// A balanced endpoint that serves requests of type `R` (errors already answered).
pub trait Serve<R>: Balanced {
    type Service: Service<R, Response = Response<Body>, Error = Infallible>;
    fn service(&self) -> Self::Service;
}

/// The balancer as a tower service: each request goes to the endpoint [`Balancer::pick`]
/// chooses, and its latency to the first response byte feeds that endpoint's estimate.
/// No endpoint is a 503 (`ProxyError::NoEndpoints`).
pub struct Balance<E> {
    balancer: Arc<Balancer<E>>,
}

impl<E> Balance<E> {
    pub fn new(balancer: Arc<Balancer<E>>) -> Self {
        Balance { balancer }
    }
}

impl<E> Clone for Balance<E> {
    fn clone(&self) -> Self {
        Balance {
            balancer: self.balancer.clone(),
        }
    }
}

impl<E> std::fmt::Debug for Balance<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balance").finish_non_exhaustive()
    }
}

impl<E: Serve<R>, R> Service<R> for Balance<E> {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Either<Ready<Result<Response<Body>, ProxyError>>, BalanceFuture<E::Service, R>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Endpoints are always ready: their clients connect (or fail) per request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        match self.balancer.pick() {
            None => Either::Left(ready(Err(ProxyError::NoEndpoints))),
            Some(ep) => Either::Right(BalanceFuture {
                pending: Some(ep.load().start()),
                inner: Oneshot::new(ep.service(), req),
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`Balance`]: completes the endpoint's pending request at the headers.
    pub struct BalanceFuture<S: Service<R>, R> {
        #[pin]
        inner: Oneshot<S, R>,
        pending: Option<Pending>,
    }
}

impl<S, R> Future for BalanceFuture<S, R>
where
    S: Service<R, Response = Response<Body>, Error = Infallible>,
{
    type Output = Result<Response<Body>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.inner.poll(cx));
        if let Some(p) = this.pending.take() {
            p.complete();
        }
        Poll::Ready(Ok(resp))
    }
}

/// The endpoint stage's typed target: builds the per-endpoint state of a balancer from a
/// discovered endpoint (kept while the endpoint stays).
pub trait NewEndpoint<E>: Send + Sync {
    fn new_endpoint(&self, ep: &DiscoveredEndpoint) -> Arc<E>;
}

impl<E, F: Fn(&DiscoveredEndpoint) -> Arc<E> + Send + Sync> NewEndpoint<E> for F {
    fn new_endpoint(&self, ep: &DiscoveredEndpoint) -> Arc<E> {
        self(ep)
    }
}

/// Builds the per-endpoint state of a balancer.
pub type MakeEndpoint<E> = Box<dyn NewEndpoint<E>>;
/// The current endpoints and their state.
pub type EndpointSet<E> = Arc<Vec<(DiscoveredEndpoint, Arc<E>)>>;

/// Balances over a discovery watch. `make` builds the per-endpoint state.
pub struct Balancer<E> {
    rx: Mutex<watch::Receiver<Arc<Destination>>>,
    set: RwLock<EndpointSet<E>>,
    make: MakeEndpoint<E>,
}

impl<E> std::fmt::Debug for Balancer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer").finish_non_exhaustive()
    }
}

impl<E: Balanced> Balancer<E> {
    pub fn new(mut rx: watch::Receiver<Arc<Destination>>, make: MakeEndpoint<E>) -> Self {
        let dest = rx.borrow_and_update().clone();
        let set = dest
            .endpoints
            .iter()
            .map(|e| (e.clone(), make.new_endpoint(e)))
            .collect();
        Balancer {
            rx: Mutex::new(rx),
            set: RwLock::new(Arc::new(set)),
            make,
        }
    }

    fn refresh(&self) -> EndpointSet<E> {
        if let Ok(mut rx) = self.rx.try_lock()
            && rx.has_changed().unwrap_or(false)
        {
            let dest = rx.borrow_and_update().clone();
            let old = self.set.read().unwrap_or_else(|e| e.into_inner()).clone();
            let next: Vec<_> = dest
                .endpoints
                .iter()
                .map(|e| match old.iter().find(|(o, _)| o == e) {
                    Some((_, svc)) => (e.clone(), svc.clone()),
                    None => (e.clone(), self.make.new_endpoint(e)),
                })
                .collect();
            let next = Arc::new(next);
            *self.set.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
            return next;
        }
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current endpoint set.
    pub fn endpoints(&self) -> EndpointSet<E> {
        self.refresh()
    }

    /// Picks an endpoint's state: the less loaded of two chosen at random. (On the request
    /// path: only an `Arc` is cloned, never the endpoint's metadata.)
    pub fn pick(&self) -> Option<Arc<E>> {
        let set = self.refresh();
        match set.len() {
            0 => None,
            1 => Some(set[0].1.clone()),
            n => {
                use rand::Rng;
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (ea, eb) = (&set[a], &set[b]);
                Some(if ea.1.load().load() <= eb.1.load().load() {
                    ea.1.clone()
                } else {
                    eb.1.clone()
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ep(Arc<PeakEwma>);
    impl Balanced for Ep {
        fn load(&self) -> &Arc<PeakEwma> {
            &self.0
        }
    }

    fn dest(ports: &[u16]) -> Arc<Destination> {
        Arc::new(Destination {
            authority: None,
            endpoints: ports
                .iter()
                .map(|p| DiscoveredEndpoint {
                    addr: ([127, 0, 0, 1], *p).into(),
                    identity: None,
                    labels: Default::default(),
                })
                .collect(),
        })
    }

    fn ep() -> MakeEndpoint<Ep> {
        Box::new(|_: &DiscoveredEndpoint| {
            Arc::new(Ep(Arc::new(PeakEwma::new(
                Duration::from_millis(30),
                Duration::from_secs(10),
            ))))
        })
    }

    #[tokio::test]
    async fn prefers_less_loaded_and_follows_updates() {
        let (tx, rx) = watch::channel(dest(&[1, 2]));
        let b = Balancer::new(rx, ep());
        // Load endpoint 1 heavily: with two endpoints p2c always compares both.
        let (_, s1) = b
            .endpoints()
            .iter()
            .find(|(e, _)| e.addr.port() == 1)
            .cloned()
            .unwrap();
        let _pending: Vec<_> = (0..10).map(|_| s1.load().start()).collect();
        for _ in 0..50 {
            assert!(!Arc::ptr_eq(&b.pick().unwrap(), &s1));
        }
        let kept = b
            .endpoints()
            .iter()
            .find(|(e, _)| e.addr.port() == 2)
            .cloned()
            .unwrap()
            .1;
        tx.send_replace(dest(&[2, 3]));
        let set = b.endpoints();
        assert_eq!(set.len(), 2);
        let still = set.iter().find(|(e, _)| e.addr.port() == 2).unwrap();
        assert!(
            Arc::ptr_eq(&still.1, &kept),
            "a kept endpoint keeps its state"
        );
        tx.send_replace(dest(&[]));
        assert!(b.pick().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_endpoint_is_tried_again_once_its_estimate_decays() {
        let (_tx, rx) = watch::channel(dest(&[1, 2]));
        let b = Balancer::new(rx, ep());
        let state = |port| {
            b.endpoints()
                .iter()
                .find(|(e, _)| e.addr.port() == port)
                .cloned()
                .unwrap()
        };
        let (slow, fast) = (state(1), state(2));
        slow.1.load().observe(Duration::from_millis(500));
        // Fast responses keep endpoint 2's estimate low and fresh; endpoint 1 is not picked.
        for _ in 0..10 {
            assert!(Arc::ptr_eq(&b.pick().unwrap(), &fast.1));
            fast.1.load().observe(Duration::from_millis(5));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Left idle, endpoint 1's peak decays below endpoint 2's steady 5 ms.
        let mut picked_slow = false;
        for _ in 0..60 {
            if Arc::ptr_eq(&b.pick().unwrap(), &slow.1) {
                picked_slow = true;
                break;
            }
            fast.1.load().observe(Duration::from_millis(5));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!(picked_slow, "the once-slow endpoint is never tried again");
    }

    #[test]
    fn peak_ewma_takes_peaks() {
        let e = Arc::new(PeakEwma::new(
            Duration::from_millis(1),
            Duration::from_secs(10),
        ));
        let before = e.load();
        e.observe(Duration::from_millis(100));
        assert!(e.load() > before * 50.0);
    }
}
