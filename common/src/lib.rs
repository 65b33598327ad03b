//! realload's shared core: the load model, the policy, the decisions and the runtime pieces that
//! the collector, the extender and the descheduler all use.
//!
//! - [`reading`]: the annotation codec and reading quality (valid / missing / stale / suspect-zero / invalid)
//! - [`policy`]: the policy file, its defaults and its validation
//! - [`scoring`]: filter, score, circuit breaker and hot-spot estimate, as pure functions
//! - [`selector`]: Kubernetes label selectors and node-affinity requirements
//! - [`whitelist`]: the operators' whitelist ConfigMap
//! - [`workload`]: learned per-workload usage (the collector's table, the extender's input)
//! - [`snapshot`]: snapshot mode's `kubectl get -o json|yaml` List loader
//! - [`quantity`]: Kubernetes quantities in millicores and bytes
//! - [`runtime`]: tracing, shutdown on SIGTERM/SIGINT, `/healthz` `/readyz` `/metrics`
//! - `client` (feature `kube`): the Kubernetes client, built one way for every binary
#![forbid(unsafe_code)]

pub mod cli;
#[cfg(feature = "kube")]
pub mod client;
pub mod objects;
pub mod policy;
pub mod quantity;
pub mod reading;
pub mod runtime;
pub mod scoring;
pub mod selector;
pub mod snapshot;
pub mod whitelist;
pub mod workload;
pub mod yaml;
