//! Profiles (the TrafficSplit in force for a service and port) through tulle-controller's
//! `Destination/GetProfile` stream.
//!
//! Each target gets one stream, shared by every user and dropped after [`Timing::idle`]
//! without users. A lookup waits for the first answer at most [`Timing::first_answer`];
//! after that the profile is empty (no split) until the controller answers. When the
//! controller goes away the stream is re-opened with backoff and the last profile stays in
//! force.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;
use tonic::transport::Channel;
use tulle_api::destination::destination_client::DestinationClient;
use tulle_api::destination::{DestinationProfile, GetDestination};

use crate::control::backoff::Backoff;
use crate::control::{LastUsed, Timing};
use crate::discovery::normalize_authority;
use crate::split::{Backend, HttpMatch, Profile, RuleError, Split};

#[derive(Debug)]
struct Entry {
    profile: watch::Receiver<Arc<Profile>>,
    answered: watch::Receiver<bool>,
    last_used: LastUsed,
}

#[derive(Debug)]
struct Inner {
    client: DestinationClient<Channel>,
    context: String,
    timing: Timing,
    cache: Mutex<HashMap<String, Arc<Entry>>>,
}

/// Profile lookups backed by the controller.
#[derive(Debug, Clone)]
pub struct Profiles {
    inner: Arc<Inner>,
}

impl Profiles {
    pub fn new(client: DestinationClient<Channel>, context: String, timing: Timing) -> Self {
        Profiles {
            inner: Arc::new(Inner {
                client,
                context,
                timing,
                cache: Mutex::default(),
            }),
        }
    }

    /// The profile of `key` (`host:port` or `ip:port`), kept current.
    pub async fn get(&self, key: &str) -> watch::Receiver<Arc<Profile>> {
        let entry = self.entry(key);
        let mut answered = entry.answered.clone();
        let first = self.inner.timing.first_answer;
        if tokio::time::timeout(first, answered.wait_for(|a| *a))
            .await
            .is_err()
        {
            tracing::info!(%key, ?first, "no profile from the destination service yet; no TrafficSplit applies until it answers");
        }
        entry.profile.clone()
    }

    fn entry(&self, key: &str) -> Arc<Entry> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cache.get(key) {
            e.last_used.touch();
            return e.clone();
        }
        let (tx, rx) = watch::channel(Arc::new(Profile::default()));
        let (answered_tx, answered) = watch::channel(false);
        let entry = Arc::new(Entry {
            profile: rx,
            answered,
            last_used: LastUsed::now(),
        });
        cache.insert(key.to_string(), entry.clone());
        tokio::spawn(watch_profile(
            Arc::downgrade(&self.inner),
            key.to_string(),
            entry.clone(),
            tx,
            answered_tx,
        ));
        entry
    }
}

/// Keeps the profile stream of one target until it is idle or the client is dropped.
async fn watch_profile(
    inner: Weak<Inner>,
    key: String,
    entry: Arc<Entry>,
    tx: watch::Sender<Arc<Profile>>,
    answered: watch::Sender<bool>,
) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let timing = strong.timing.clone();
    let request = GetDestination {
        scheme: "k8s".into(),
        path: key.clone(),
        context_token: strong.context.clone(),
    };
    let mut client = strong.client.clone();
    drop(strong);
    let mut backoff = Backoff::new(timing.backoff_min, timing.backoff_max);
    let mut tick = tokio::time::interval(timing.idle_check());
    // Users hold receivers; the entry holds one itself.
    let idle = |entry: &Entry| {
        tx.receiver_count() <= 1 && entry.last_used.elapsed() >= timing.idle
            || inner.strong_count() == 0
    };
    'reconnect: loop {
        if idle(&entry) {
            break;
        }
        let mut stream = match client.get_profile(request.clone()).await {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                // Not a service the controller resolves: never a split.
                answered.send_replace(true);
                while !idle(&entry) {
                    tick.tick().await;
                }
                break;
            }
            Err(s) => {
                let wait = backoff.next_delay();
                tracing::warn!(%key, retry_in = ?wait, "profile stream unavailable ({}); keeping the last profile", s.message());
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = tick.tick() => {
                    if idle(&entry) { break 'reconnect; }
                    continue;
                }
            };
            match msg {
                Ok(Some(p)) => {
                    backoff.reset();
                    tx.send_replace(Arc::new(profile(&p)));
                    answered.send_replace(true);
                }
                Ok(None) | Err(_) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(%key, retry_in = ?wait, "profile stream ended; keeping the last profile");
                    tokio::time::sleep(wait).await;
                    continue 'reconnect;
                }
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        let mut cache = inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.get(&key).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
            cache.remove(&key);
        }
    }
    tracing::debug!(%key, "profile stream dropped (idle)");
}

/// Converts the controller's profile. A split whose rules do not compile is not applied
/// (everything goes to the apex) and logged: the controller validates them first, so this
/// only happens with an older controller.
pub fn profile(p: &DestinationProfile) -> Profile {
    if p.dst_overrides.is_empty() {
        return Profile::default();
    }
    match split(p) {
        Ok(s) => Profile {
            split: Some(Arc::new(s)),
        },
        Err(e) => {
            tracing::warn!("TrafficSplit not applied: {e}");
            Profile::default()
        }
    }
}

fn split(p: &DestinationProfile) -> Result<Split, RuleError> {
    let name = if p.traffic_split.is_empty() {
        p.fully_qualified_name.clone()
    } else {
        p.traffic_split.clone()
    };
    let matches = p
        .split_matches
        .iter()
        .map(|m| {
            let headers: Vec<(String, String)> = m
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value_regex.clone()))
                .collect();
            HttpMatch::new(
                &format!("TrafficSplit {name}"),
                &m.path_regex,
                &m.methods,
                &headers,
            )
        })
        .collect::<Result<_, _>>()?;
    let backends = p
        .dst_overrides
        .iter()
        .filter_map(|d| {
            Some(Backend {
                authority: normalize_authority(&d.authority, None)?,
                weight: d.weight,
            })
        })
        .collect();
    let apex = Some(p.fully_qualified_name.to_ascii_lowercase()).filter(|a| !a.is_empty());
    Ok(Split {
        name,
        apex,
        backends,
        matches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tulle_api::destination::{HeaderMatch, HttpMatch as PbMatch, WeightedDst};

    #[test]
    fn converts_splits_and_rules() {
        let mut p = DestinationProfile {
            fully_qualified_name: "web.shop.svc.cluster.local".into(),
            ..Default::default()
        };
        assert!(profile(&p).split.is_none(), "no overrides: no split");
        p.dst_overrides = vec![
            WeightedDst {
                authority: "Web-V1.shop.svc.cluster.local:80".into(),
                weight: 900,
            },
            WeightedDst {
                authority: "web-v2.shop.svc.cluster.local:80".into(),
                weight: 100,
            },
        ];
        p.traffic_split = "shop/canary".into();
        p.split_matches = vec![PbMatch {
            path_regex: "/api".into(),
            methods: vec!["GET".into()],
            headers: vec![HeaderMatch {
                name: "x-canary".into(),
                value_regex: "true".into(),
            }],
        }];
        let s = profile(&p).split.unwrap();
        assert_eq!(s.name, "shop/canary");
        assert_eq!(s.backends[0].authority, "web-v1.shop.svc.cluster.local:80");
        assert_eq!(s.total_weight(), 1000);
        assert_eq!(s.matches.len(), 1);
        // A rule that does not compile: the split is not applied.
        p.split_matches[0].path_regex = "([".into();
        assert!(profile(&p).split.is_none());
    }
}
