//! realload's extender binary: `serve` (the kube-scheduler HTTP extender), `collect` (node load
//! into Node annotations) and `explain` (why a pod would land where it lands).
#![forbid(unsafe_code)]

pub mod cli;
pub mod collect;
pub mod evaluate;
pub mod explain;
pub mod index;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod protocol;
pub mod reload;
pub mod serve;
pub mod server;
pub mod state;
pub mod tls;
pub mod validate;
pub mod watch;
