//! realload's descheduler: evicts one mid-size replica of multi-replica workloads from hot nodes.
//! Run once per invocation (a CronJob runs it).
#![forbid(unsafe_code)]

pub mod cli;
pub mod plan;
pub mod run;
