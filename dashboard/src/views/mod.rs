//! The pages: each has a stable URL ([`Page::parse`] / [`Page::href`]) and renders, from a
//! [`Cluster`], into named HTML fragments ([`Rendered`]). A full page is the fragments in
//! the layout ([`Document`]); a live update sends the fragments that changed.
//!
//! - [`overview`]: control-plane health and the namespaces;
//! - [`namespace`]: the workloads table (sortable) and the namespace topology;
//! - [`workload`]: pods, edges with identities and mTLS, TrafficSplits and TrafficTargets;
//! - [`topology`]: every workload of the mesh (or of one namespace);
//! - [`smi`]: TrafficSplits as canary views, TrafficTargets, routes, invalid objects.

pub mod cells;
pub mod namespace;
pub mod overview;
pub mod smi;
pub mod topology;
pub mod workload;

use askama::Template;

use crate::history::History;
use crate::model::{Kind, WorkloadRef};
use crate::source::Cluster;
use crate::{Error, Result};

/// A page and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Page {
    /// `/`.
    Overview,
    /// `/namespaces/{ns}?sort=&dir=`.
    Namespace {
        /// The namespace.
        namespace: String,
        /// The table order.
        sort: namespace::Sort,
    },
    /// `/namespaces/{ns}/{kind}/{name}`.
    Workload(WorkloadRef),
    /// `/topology?namespace=`.
    Topology {
        /// One namespace, or all.
        namespace: Option<String>,
    },
    /// `/smi?namespace=`.
    Smi {
        /// One namespace, or all.
        namespace: Option<String>,
    },
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

impl Page {
    /// The page at `path?query`; `None` for no page (404). Names must be Kubernetes names.
    pub fn parse(path: &str, query: Option<&str>) -> Result<Option<Page>> {
        let path = path.trim_end_matches('/');
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        let ns_param = || -> Result<Option<String>> {
            match query_param(query, "namespace") {
                Some(n) if !valid_name(&n) => Err(Error::BadRequest(format!(
                    "namespace {n:?} is not a Kubernetes name"
                ))),
                n => Ok(n),
            }
        };
        Ok(Some(match parts.as_slice() {
            [] => Page::Overview,
            ["topology"] => Page::Topology {
                namespace: ns_param()?,
            },
            ["smi"] => Page::Smi {
                namespace: ns_param()?,
            },
            ["namespaces", ns] if valid_name(ns) => Page::Namespace {
                namespace: ns.to_string(),
                sort: namespace::Sort::parse(query)?,
            },
            ["namespaces", ns, kind, name] if valid_name(ns) && valid_name(name) => {
                match Kind::parse(kind) {
                    Some(k) if *kind == k.plural() => Page::Workload(WorkloadRef::new(k, ns, name)),
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        }))
    }

    /// The page's URL (path and query).
    pub fn href(&self) -> String {
        match self {
            Page::Overview => "/".into(),
            Page::Namespace { namespace, sort } => {
                format!("/namespaces/{namespace}{}", sort.query())
            }
            Page::Workload(w) => w.href(),
            Page::Topology { namespace: None } => "/topology".into(),
            Page::Topology { namespace: Some(n) } => format!("/topology?namespace={n}"),
            Page::Smi { namespace: None } => "/smi".into(),
            Page::Smi { namespace: Some(n) } => format!("/smi?namespace={n}"),
        }
    }

    /// Which top-level navigation entry is active.
    pub fn section(&self) -> &'static str {
        match self {
            Page::Overview | Page::Namespace { .. } | Page::Workload(_) => "overview",
            Page::Topology { .. } => "topology",
            Page::Smi { .. } => "smi",
        }
    }
}

/// One named part of a page, replaced as a whole by live updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The element id.
    pub id: &'static str,
    /// Its inner HTML.
    pub html: String,
}

/// A rendered page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The title.
    pub title: String,
    /// Breadcrumbs (label, href) before the title.
    pub crumbs: Vec<(String, String)>,
    /// The fragments, in order.
    pub fragments: Vec<Fragment>,
}

impl Fragment {
    /// The version of its HTML (what live updates compare).
    pub fn version(&self) -> String {
        format!("{:016x}", fnv(self.html.as_bytes()))
    }
}

/// FNV-1a, 64 bits: the content hash of fragment versions and asset URLs.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What rendering needs besides the page.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The data.
    pub cluster: &'a dyn Cluster,
    /// Recent samples for the small charts.
    pub history: &'a History,
    /// Now, in Unix seconds (certificate expiry).
    pub now: i64,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Renders a template into a fragment.
pub fn fragment(id: &'static str, t: &impl Template) -> Result<Fragment> {
    Ok(Fragment {
        id,
        html: t.render()?,
    })
}

/// An error shown in place of a fragment that could not be built.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorBox<'a> {
    /// What could not be shown.
    pub what: &'a str,
    /// Why.
    pub message: String,
}

/// A fragment, or the error box saying why it is missing.
pub fn or_error(id: &'static str, what: &str, r: Result<Fragment>) -> Result<Fragment> {
    match r {
        Ok(f) => Ok(f),
        Err(e) => fragment(
            id,
            &ErrorBox {
                what,
                message: e.to_string(),
            },
        ),
    }
}

/// Renders a page.
pub async fn render(page: &Page, ctx: Ctx<'_>) -> Result<Rendered> {
    match page {
        Page::Overview => overview::render(ctx).await,
        Page::Namespace { namespace, sort } => namespace::render(ctx, namespace, *sort).await,
        Page::Workload(w) => workload::render(ctx, w).await,
        Page::Topology { namespace } => topology::render(ctx, namespace.as_deref()).await,
        Page::Smi { namespace } => smi::render(ctx, namespace.as_deref()).await,
    }
}

/// The full HTML document of a rendered page.
#[derive(Template)]
#[template(path = "page.html")]
pub struct Document<'a> {
    /// The page.
    pub page: &'a Rendered,
    /// Active navigation entry.
    pub section: &'a str,
    /// The stylesheet URL.
    pub css: &'a str,
    /// The script URL.
    pub js: &'a str,
    /// The icon URL.
    pub icon: &'a str,
    /// The live-update stream URL of this page.
    pub live: String,
    /// When it was rendered.
    pub rendered_at: String,
    /// The metrics window.
    pub window: String,
}

/// The URL of the live-update stream of a page.
pub fn live_url(page: &Page) -> String {
    let target: String = form_urlencoded::byte_serialize(page.href().as_bytes()).collect();
    format!("/live?page={target}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_stable_and_round_trip() {
        for href in [
            "/",
            "/namespaces/demo",
            "/namespaces/demo?sort=rps&dir=desc",
            "/namespaces/demo/deployments/web",
            "/namespaces/demo/statefulsets/db-0",
            "/topology",
            "/topology?namespace=demo",
            "/smi?namespace=demo",
        ] {
            let (path, query) = href
                .split_once('?')
                .map_or((href, None), |(p, q)| (p, Some(q)));
            let page = Page::parse(path, query)
                .unwrap()
                .unwrap_or_else(|| panic!("{href}"));
            assert_eq!(page.href(), href);
        }
        for none in [
            "/nope",
            "/namespaces/Demo",
            "/namespaces/demo/pods/x",
            "/namespaces/demo/Deployment/web",
        ] {
            assert_eq!(Page::parse(none, None).unwrap(), None, "{none}");
        }
        assert!(Page::parse("/topology", Some("namespace=%3Cx%3E")).is_err());
        assert!(Page::parse("/namespaces/demo", Some("sort=bogus")).is_err());
    }
}
