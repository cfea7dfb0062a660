//! tulle-e2e: the harness for end-to-end tests on a real cluster (see `cluster/`).
