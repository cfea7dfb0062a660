//! Clients of the control plane: certificates from tulle-identity ([`identity`]) and
//! endpoints and profiles (TrafficSplits) from tulle-controller's destination service
//! ([`destination`], [`profile`]), and this pod's inbound policy from its policy service
//! ([`policy`]).

pub mod backoff;
pub mod destination;
pub mod identity;
pub mod policy;
pub mod profile;
