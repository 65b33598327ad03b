//! What a run did, as printed: a table for people, JSON for machines.

use serde::Serialize;

use crate::plan::{Plan, PlannedEviction, Skipped};

/// What the run did, as printed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub evictions: Vec<PlannedEviction>,
    pub skipped: Vec<Skipped>,
    pub hot_nodes: Vec<String>,
    /// Set when the run stopped early (API failure, SIGTERM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub dry_run: bool,
}

impl Report {
    /// The report of a run that stopped before planning (bad input): nothing evicted.
    pub fn failed(error: String) -> Report {
        Report {
            error: Some(error),
            ..Report::default()
        }
    }

    pub fn from_plan(plan: Plan, dry_run: bool) -> Report {
        Report {
            evictions: plan.evictions,
            skipped: plan.skipped,
            hot_nodes: plan.hot_nodes,
            error: None,
            dry_run,
        }
    }
}

/// The human-readable report.
pub fn render_table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hot nodes: {}",
        if r.hot_nodes.is_empty() {
            "none".to_string()
        } else {
            r.hot_nodes.join(", ")
        }
    );
    let verb = if r.dry_run {
        "evictions planned (dry run)"
    } else {
        "evictions"
    };
    let _ = writeln!(out, "{verb}: {}", r.evictions.len());
    for e in &r.evictions {
        let _ = writeln!(
            out,
            "  {}/{}  on {}  ({})  {}",
            e.namespace, e.pod, e.node, e.workload, e.reason
        );
    }
    let _ = writeln!(out, "skipped: {}", r.skipped.len());
    for s in &r.skipped {
        let _ = writeln!(out, "  {}/{}  {}", s.namespace, s.pod, s.reason);
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "stopped early: {e}");
    }
    out
}
