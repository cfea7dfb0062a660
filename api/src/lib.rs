//! tulle-api: the gRPC APIs between the tulle proxy and its control plane.
//!
//! - [`identity`]: `tulle.identity.Identity/Certify` (CSR + ServiceAccount token → leaf).
//! - [`destination`]: `tulle.destination.Destination/Get` (endpoint watch) and
//!   `GetProfile` (TrafficSplit weighted backends and route matches).
//! - [`policy`]: `tulle.policy.InboundPolicies/Watch` (a pod's SMI Traffic Access policy).
//!
//! The generated code is built from `proto/*.proto` by protox (no system protoc).
//! Small typed helpers sit next to it: identity names ([`names`]), address conversions
//! ([`addr`]), the destination context token ([`context`]), and TLS plumbing for tonic
//! servers and clients over rustls/aws-lc-rs ([`tls`]), and the Certify client side
//! ([`certify`]).

pub mod addr;
pub mod certify;
pub mod context;
pub mod names;
pub mod proxy_contract;
pub mod tls;

/// Generated code of `proto/identity.proto`.
#[allow(missing_docs, clippy::all, unreachable_pub)]
pub mod identity {
    tonic::include_proto!("tulle.identity");
}

/// Generated code of `proto/destination.proto`.
#[allow(missing_docs, clippy::all, unreachable_pub)]
pub mod destination {
    tonic::include_proto!("tulle.destination");
}

/// Generated code of `proto/policy.proto`.
#[allow(missing_docs, clippy::all, unreachable_pub)]
pub mod policy {
    tonic::include_proto!("tulle.policy");
}

pub use names::{NameError, ServiceAccountIdentity};
