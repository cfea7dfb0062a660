//! Live updates: `GET /live?page=<url>&known=<id>:<hash>,...` is a Server-Sent Events stream
//! that renders the page every refresh period (2 s at the least) and sends the fragments
//! whose HTML changed (`event: fragment`, data: `<id> <hash>` then the HTML), and a `tick`
//! with the time. The page's script opens it only while the tab is visible and passes the
//! hashes of the fragments it has, so a reconnect sends only what changed meanwhile.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;

use super::{App, clock};
use crate::views::{self, Page, Rendered};

/// The query of `/live`.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    /// The page (path and query).
    pub page: String,
    /// `id:hash` of the fragments the browser has, comma-separated.
    #[serde(default)]
    pub known: String,
}

/// The events for the fragments of `r` that differ from `known`, which is updated.
pub fn changes(r: &Rendered, known: &mut HashMap<String, String>) -> Vec<Event> {
    let mut out = Vec::new();
    for f in &r.fragments {
        let v = f.version();
        if known.get(f.id) == Some(&v) {
            continue;
        }
        out.push(
            Event::default()
                .event("fragment")
                .data(format!("{} {v}\n{}", f.id, f.html)),
        );
        known.insert(f.id.to_string(), v);
    }
    out
}

fn parse_known(s: &str) -> HashMap<String, String> {
    s.split(',')
        .filter_map(|p| p.split_once(':'))
        .map(|(id, v)| (id.to_string(), v.to_string()))
        .collect()
}

/// Counts a stream in [`App::live_streams`] while it lives.
struct Open(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Live {
    _open: Open,
    app: App,
    page: Page,
    known: HashMap<String, String>,
    interval: tokio::time::Interval,
    pending: std::collections::VecDeque<Event>,
}

fn events(live: Live) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(live, |mut live| async move {
        loop {
            if let Some(e) = live.pending.pop_front() {
                return Some((Ok(e), live));
            }
            live.interval.tick().await;
            match views::render(&live.page, live.app.ctx()).await {
                Ok(r) => {
                    let mut evs = changes(&r, &mut live.known);
                    evs.push(
                        Event::default()
                            .event("tick")
                            .data(format!("updated {}", clock())),
                    );
                    live.pending.extend(evs);
                }
                Err(e) => live.pending.push_back(
                    Event::default()
                        .event("problem")
                        .data(format!("cannot update: {e}")),
                ),
            }
        }
    })
}

/// `GET /live`.
pub async fn stream(State(app): State<App>, Query(q): Query<LiveQuery>) -> Response {
    let (path, query) = q
        .page
        .split_once('?')
        .map_or((q.page.as_str(), None), |(p, q)| (p, Some(q)));
    let page = match Page::parse(path, query) {
        Ok(Some(p)) => p,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such page\n").into_response(),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let mut interval = tokio::time::interval(app.refresh);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    app.live_streams
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let live = Live {
        _open: Open(app.live_streams.clone()),
        app,
        page,
        known: parse_known(&q.known),
        interval,
        pending: [Event::default().retry(Duration::from_secs(2))].into(),
    };
    Sse::new(events(live))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::Fragment;

    #[test]
    fn only_changed_fragments_are_sent() {
        let r = |a: &str, b: &str| Rendered {
            title: String::new(),
            crumbs: Vec::new(),
            fragments: vec![
                Fragment {
                    id: "a",
                    html: a.into(),
                },
                Fragment {
                    id: "b",
                    html: b.into(),
                },
            ],
        };
        let mut known = parse_known(&format!("a:{:016x}", crate::views::fnv(b"x")));
        assert_eq!(changes(&r("x", "y"), &mut known).len(), 1, "b is new");
        assert_eq!(changes(&r("x", "y"), &mut known).len(), 0);
        assert_eq!(changes(&r("x", "z"), &mut known).len(), 1);
    }
}
