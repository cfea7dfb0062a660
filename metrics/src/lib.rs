//! tulle-metrics: the golden-metrics backend of the control plane.
//!
//! Two sources answer the same three query primitives ([`Source`]): the embedded
//! [`store::Store`] (filled by [`scrape`] from every meshed pod's `:4191/metrics`) and a
//! user's Prometheus ([`promql::Prometheus`]). [`golden`] builds the golden metrics (success
//! and failure counts, latency quantiles, open TCP connections) per resource, per edge and
//! per TrafficSplit backend on top of them, so the SMI Traffic Metrics API, the CLI and the
//! dashboard ask the same questions whichever source is configured.
//!
//! Series carry the proxy's labels (Linkerd's names: `direction`, `classification`,
//! `client_id`, `server_id`, `tls`, `dst_*`) plus the pod labels a Prometheus scrape
//! configuration adds by relabelling ([`query::POD_LABELS`]).

pub mod golden;
pub mod parse;
pub mod promql;
pub mod query;
pub mod scrape;
pub mod store;

pub use query::{Matcher, QueryError, Select, Source};
