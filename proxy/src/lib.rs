//! tulle-proxy: the sidecar data plane of the tulle service mesh.
