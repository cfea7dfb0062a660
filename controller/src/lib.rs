//! tulle-controller: the destination (discovery) and policy APIs, the proxy injector and the
//! SMI Traffic Metrics API of the tulle control plane.
//!
//! Layers, each depending only on the ones before it:
//! - [`core`] (crate `tulle-controller-core`, which has no kube dependency, so Cargo
//!   enforces the layering): domain types (targets, endpoints, resolutions, profiles) and
//!   the [`core::Index`] that keeps cluster state and per-target `watch` channels.
//! - [`grpc`]: the `tulle.destination.Destination` tonic service over [`core::Discover`].
//! - [`k8s`]: kube-rs watchers on Services, EndpointSlices, Pods and the SMI TrafficSplits,
//!   HTTPRouteGroups and TCPRoutes (tolerant: an unreadable object never stalls a watch) that
//!   convert objects into core inputs and feed the index; Events for SMI problems.
//! - [`inject`]: the sidecar injection decision and JSON patch (crate `tulle-inject`, pure,
//!   shared with `tulle inject --manual`).
//! - [`webhook`]: the injector's HTTPS admission server (also the TrafficSplit CRD conversion
//!   webhook), its self-managed certificate and the `caBundle`s of the webhook configuration
//!   and of the trafficsplits CRD.
//! - [`metrics_api`]: the SMI Traffic Metrics API (`metrics.smi-spec.io/v1alpha1`), an
//!   aggregated API server over the golden metrics of `tulle-metrics`; Kubernetes only
//!   through traits that [`k8s::metrics_api`] implements.
//! - [`runtime`]: flags, wiring (the embedded metrics scraper or Prometheus), the admin server.

pub use tulle_controller_core as core;
pub mod grpc;
pub use tulle_inject as inject;
pub mod k8s;
pub mod metrics_api;
pub mod runtime;
pub mod webhook;

pub use runtime::{Args, run};
