//! tulle-bench: benchmarks of the tulle data plane and control plane.
fn main() {}
