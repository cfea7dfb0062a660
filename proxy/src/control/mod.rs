//! Clients of the control plane: certificates from tulle-identity ([`identity`]) and
//! endpoints from tulle-controller's destination service ([`destination`]).

pub mod backoff;
pub mod destination;
pub mod identity;
