//! realload's descheduler: evicts one mid-size replica of multi-replica workloads from hot nodes.
//! Run once per invocation (a CronJob runs it).
//!
//! - [`plan`]: the eviction plan, a pure function of the cluster state;
//! - [`gather`]: its inputs, from the API or a snapshot;
//! - [`evict`]: carrying it out through the Eviction API;
//! - [`report`], [`error`], [`run`]: what is printed, why a run stops, and the whole run.
#![forbid(unsafe_code)]

pub mod cli;
pub mod error;
pub mod evict;
pub mod gather;
pub mod plan;
pub mod report;
pub mod run;
