//! realload end to end, on a real kube-apiserver and kube-scheduler: one control plane for the
//! whole run (or the cluster in `KUBECONFIG`), each test in its own namespace with its own nodes.
//!
//! `tests/run.sh` runs these; by hand: `cargo test -p realload-e2e -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod admission;
mod collector;
mod descheduler;
mod extender;
mod fidelity;
mod manifests;
mod rbac;
