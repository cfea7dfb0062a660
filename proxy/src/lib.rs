//! tulle-proxy: the sidecar data plane of the tulle service mesh.
//!
//! Every meshed pod runs one: the application's outbound connections are redirected to
//! the outbound listener (4140), other pods' connections to the inbound listener (4143).
//! Between two proxies traffic is mutual TLS 1.3 with identities from the mesh CA; HTTP/1
//! rides one multiplexed HTTP/2 connection per endpoint. Modules, one concern each: [`config`]
//! (env vars), [`control`] (identity and destination service clients), [`tls`] (mesh TLS: the
//! proxy's certificate, the trust anchors, the TLS configurations), [`discovery`] (targets →
//! endpoints), [`detect`] (protocol detection), [`balance`] (p2c over peak-EWMA), [`routes`]
//! (outbound route cache), [`split`] (TrafficSplit matching and weighted choice),
//! [`route_match`] (HTTPRouteGroup matches), [`policy`] (SMI Traffic Access: the inbound policy
//! and its decisions), [`client`] (connections to endpoints), [`server`] (serving an HTTP
//! connection), [`http_headers`] (the mesh's headers, hop-by-hop headers, upgrades), [`conn`]
//! (connection plumbing: original destination, byte counting, the transport header, splicing),
//! [`svc`] (the tower layers of the request path), [`tcp`] (opaque forwarding), [`outbound`] /
//! [`inbound`] (the two pipelines), [`metrics`] and [`admin`] (observability), [`runtime`]
//! (shared handles, drain), [`app`] (wiring), [`init`] (iptables rules), [`devcerts`]
//! (development certificates).

pub mod admin;
pub mod app;
pub mod balance;
pub mod body;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod control;
pub mod detect;
pub mod devcerts;
pub mod discovery;
pub mod error;
pub mod http_headers;
pub mod inbound;
pub mod init;
pub mod metrics;
pub mod outbound;
pub mod policy;
pub mod route_match;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod split;
pub mod svc;
pub mod tcp;
pub mod tls;
pub mod trust;
