//! The TrafficSplit layer: each request the split covers goes to a backend chosen by weight,
//! every other request to the apex, as if there were no split.
//!
//! The split state is read from a watch per request, so a weight change applies to the next
//! request; backends that stay keep their stacks (and connections). A backend without
//! endpoints is skipped while another has some; when every backend has weight 0 the request
//! fails with 503 ([`ProxyError::NoSplitBackends`]), never silently going to the apex.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::{Request, Response};
use tokio::sync::watch;
use tower::Service;
use tower::util::Oneshot;

use crate::body::Body;
use crate::error::ProxyError;
use crate::split::{Split, pick_weighted_by};

/// A backend's stack, and whether it has endpoints now.
pub trait BackendService<R>: Service<R> + Clone {
    /// Whether the backend has endpoints to send to.
    fn has_endpoints(&self) -> bool;
}

/// The split in force and a stack per backend (in the split's order).
#[derive(Debug)]
pub struct SplitState<S> {
    pub split: Option<Arc<Split>>,
    /// `None`: the backend is the apex itself, or does not exist.
    pub backends: Vec<BackendSlot<S>>,
}

/// One backend of the state.
#[derive(Debug)]
pub enum BackendSlot<S> {
    /// The apex's own endpoints.
    Apex,
    /// Another service.
    Service(S),
    /// A service that does not exist: gets nothing.
    Absent,
}

impl<S> Default for SplitState<S> {
    fn default() -> Self {
        SplitState {
            split: None,
            backends: Vec::new(),
        }
    }
}

/// Routes requests between the apex and the split's backends.
#[derive(Debug)]
pub struct SplitRouter<S> {
    apex: S,
    state: watch::Receiver<Arc<SplitState<S>>>,
}

impl<S: Clone> Clone for SplitRouter<S> {
    fn clone(&self) -> Self {
        SplitRouter {
            apex: self.apex.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S> SplitRouter<S> {
    pub fn new(apex: S, state: watch::Receiver<Arc<SplitState<S>>>) -> Self {
        SplitRouter { apex, state }
    }
}

impl<S> SplitRouter<S>
where
    S: Clone,
{
    /// The stack for a request the split covers: a backend by weight, skipping those
    /// without endpoints while another has some. `Err`: no backend has weight.
    fn pick<R>(&self, split: &Split, state: &SplitState<S>) -> Result<S, ProxyError>
    where
        S: BackendService<R>,
    {
        let has_endpoints = |slot: &BackendSlot<S>| match slot {
            BackendSlot::Apex => self.apex.has_endpoints(),
            BackendSlot::Service(s) => s.has_endpoints(),
            BackendSlot::Absent => false,
        };
        let n = split.backends.len().min(state.backends.len());
        let weight = |i: usize| match state.backends[i] {
            BackendSlot::Absent => 0,
            _ => split.backends[i].weight,
        };
        let live = |i: usize| {
            if has_endpoints(&state.backends[i]) {
                weight(i)
            } else {
                0
            }
        };
        let mut rng = rand::rng();
        let i = pick_weighted_by(n, live, &mut rng)
            .or_else(|| pick_weighted_by(n, weight, &mut rng))
            .ok_or_else(|| ProxyError::NoSplitBackends(split.name.clone()))?;
        Ok(match &state.backends[i] {
            BackendSlot::Service(s) => s.clone(),
            _ => self.apex.clone(),
        })
    }
}

impl<S, B> Service<Request<B>> for SplitRouter<S>
where
    S: BackendService<Request<B>, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Either<Oneshot<S, Request<B>>, Ready<Result<Response<Body>, ProxyError>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Each request gets its own clone of the chosen stack (`Oneshot` drives readiness).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = self.state.borrow().clone();
        let svc = match &state.split {
            Some(split) if split.covers(req.method(), req.uri().path(), req.headers()) => {
                match self.pick::<Request<B>>(split, &state) {
                    Ok(s) => s,
                    Err(e) => return Either::Right(ready(Err(e))),
                }
            }
            _ => self.apex.clone(),
        };
        Either::Left(Oneshot::new(svc, req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{Backend, HttpMatch};
    use std::collections::HashMap;
    use tower::ServiceExt;

    /// A backend that answers with its name in a header.
    #[derive(Clone)]
    struct Named(&'static str, bool);

    impl Service<Request<()>> for Named {
        type Response = Response<Body>;
        type Error = ProxyError;
        type Future = Ready<Result<Response<Body>, ProxyError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            let mut r = crate::body::simple(http::StatusCode::OK, "");
            r.headers_mut().insert("x-backend", self.0.parse().unwrap());
            ready(Ok(r))
        }
    }

    impl BackendService<Request<()>> for Named {
        fn has_endpoints(&self) -> bool {
            self.1
        }
    }

    fn split(weights: &[u32], matches: Vec<HttpMatch>) -> Arc<Split> {
        Arc::new(Split {
            name: "shop/canary".into(),
            apex: None,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Backend {
                    authority: format!("b{i}:80"),
                    weight: *w,
                })
                .collect(),
            matches,
        })
    }

    async fn shares(
        router: &SplitRouter<Named>,
        n: usize,
        req: impl Fn() -> Request<()>,
    ) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for _ in 0..n {
            let r = router.clone().oneshot(req()).await;
            let key = match r {
                Ok(r) => r
                    .headers()
                    .get("x-backend")
                    .map_or("?".into(), |v| v.to_str().unwrap().to_string()),
                Err(e) => format!("error: {e}"),
            };
            *out.entry(key).or_default() += 1;
        }
        out
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[tokio::test]
    async fn weights_matches_apex_and_absent_backends() {
        let (tx, rx) = watch::channel(Arc::new(SplitState::default()));
        let router = SplitRouter::new(Named("apex", true), rx);
        // No split: everything to the apex.
        assert_eq!(shares(&router, 10, || get("/")).await["apex"], 10);

        // 90/10 between two services, and the apex named as a backend.
        tx.send_replace(Arc::new(SplitState {
            split: Some(split(&[0, 900, 100], vec![])),
            backends: vec![
                BackendSlot::Apex,
                BackendSlot::Service(Named("v1", true)),
                BackendSlot::Service(Named("v2", true)),
            ],
        }));
        let s = shares(&router, 4000, || get("/")).await;
        let v2 = s.get("v2").copied().unwrap_or(0) as f64 / 4000.0;
        assert!((v2 - 0.1).abs() < 0.03, "{s:?}");
        assert!(!s.contains_key("apex"), "weight 0 gets nothing: {s:?}");

        // A backend without endpoints is skipped while another has some.
        tx.send_replace(Arc::new(SplitState {
            split: Some(split(&[50, 50], vec![])),
            backends: vec![
                BackendSlot::Service(Named("v1", true)),
                BackendSlot::Service(Named("v2", false)),
            ],
        }));
        assert_eq!(shares(&router, 50, || get("/")).await["v1"], 50);

        // An absent backend gets nothing; all absent: 503 naming the split.
        tx.send_replace(Arc::new(SplitState {
            split: Some(split(&[50, 50], vec![])),
            backends: vec![BackendSlot::Absent, BackendSlot::Absent],
        }));
        let e = router.clone().oneshot(get("/")).await.unwrap_err();
        assert!(matches!(e, ProxyError::NoSplitBackends(ref n) if n == "shop/canary"));
        assert_eq!(
            e.status().0,
            http::StatusCode::SERVICE_UNAVAILABLE,
            "all-zero is a 503"
        );

        // Matches: only covered requests are split; the rest go to the apex.
        let canary = HttpMatch::new("shop/canary", "/api", &[], &[]).unwrap();
        tx.send_replace(Arc::new(SplitState {
            split: Some(split(&[0, 100], vec![canary])),
            backends: vec![
                BackendSlot::Service(Named("v1", true)),
                BackendSlot::Service(Named("v2", true)),
            ],
        }));
        assert_eq!(shares(&router, 20, || get("/api/x")).await["v2"], 20);
        assert_eq!(shares(&router, 20, || get("/other")).await["apex"], 20);
    }
}
