//! `realload-extender explain`: the candidate nodes ranked as the extender would rank them for a
//! pod, with every reading, its quality, the hot-spot addition, the filter verdict and the score.

use std::fmt::Write as _;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use realload_common::objects::{NodeView, is_daemonset_pod, is_ignored_pod};
use realload_common::policy::Policy;
use realload_common::reading::Quality;
use realload_common::scoring::{self, FilterVerdict, NodeAssessment};
use serde::Serialize;

use crate::state::State;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub pod: String,
    pub now: Timestamp,
    /// Why load-awareness is off for this request, if it is.
    pub neutral_reason: Option<String>,
    pub breaker_tripped: bool,
    pub unknown_nodes: usize,
    pub nodes: Vec<NodeRow>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub rank: usize,
    pub node: String,
    pub score: i64,
    pub passes: bool,
    pub filter_message: Option<String>,
    pub known: bool,
    pub hotspot_cpu: f64,
    pub hotspot_memory: f64,
    pub readings: Vec<ReadingCell>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadingCell {
    pub metric: String,
    pub ratio: Option<f64>,
    pub quality: Quality,
    pub age_seconds: Option<i64>,
    pub reason: Option<String>,
    /// The hot-spot share added to this metric.
    pub hotspot: f64,
    pub estimated: Option<f64>,
}

/// Each of a node's readings with its quality, age, reason and estimate (explain and /debug/nodes).
pub fn reading_cells(policy: &Policy, a: &NodeAssessment) -> Vec<ReadingCell> {
    policy
        .metrics
        .iter()
        .zip(&a.metrics)
        .map(|(spec, m)| ReadingCell {
            metric: spec.name.clone(),
            ratio: m.assessed.reading().map(|r| r.ratio),
            quality: m.quality(),
            age_seconds: m.assessed.age().map(|d| d.as_secs()),
            reason: m.assessed.reason(spec.max_age, spec.floor),
            hotspot: m.hotspot,
            estimated: m.estimated,
        })
        .collect()
}

/// Ranks every indexed node for `pod` exactly as the extender's filter and prioritize would
/// (the same state, the same scoring, the circuit breaker over all of them).
pub fn explain(state: &State, pod: &Pod) -> Explanation {
    let policy = state.policy();
    let now = state.clock.now();
    let index = state.index();
    let mut views: Vec<&NodeView> = index.nodes.values().collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    let assessments: Vec<NodeAssessment> = views
        .iter()
        .map(|v| state.assess_known(&index, &policy, &v.name, now))
        .collect();
    let neutral_reason = if is_daemonset_pod(pod) {
        Some("DaemonSet pod: all nodes pass with equal scores".to_string())
    } else if is_ignored_pod(pod) {
        Some("pod annotated realload.io/ignore=true: all nodes pass with equal scores".to_string())
    } else {
        None
    };
    let decision = scoring::decide(&policy, &assessments);
    let neutral = neutral_reason.is_some();
    let mut rows: Vec<NodeRow> = views
        .iter()
        .zip(&assessments)
        .enumerate()
        .map(|(i, (view, a))| {
            let (verdict, score) = if neutral {
                (FilterVerdict::Pass, scoring::NEUTRAL_SCORE)
            } else {
                (decision.verdicts[i].clone(), decision.scores[i])
            };
            let mut notes = Vec::new();
            if !view.ready {
                notes.push("NotReady".to_string());
            }
            if view.unschedulable {
                notes.push("cordoned".to_string());
            }
            NodeRow {
                rank: 0,
                node: view.name.clone(),
                score,
                passes: verdict.passes(),
                filter_message: verdict.message(),
                known: a.known,
                hotspot_cpu: a.hotspot.cpu,
                hotspot_memory: a.hotspot.memory,
                readings: reading_cells(&policy, a),
                notes,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.passes
            .cmp(&a.passes)
            .then(b.score.cmp(&a.score))
            .then_with(|| a.node.cmp(&b.node))
    });
    for (i, row) in rows.iter_mut().enumerate() {
        row.rank = i + 1;
    }
    Explanation {
        pod: format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("(unnamed)")
        ),
        now,
        neutral_reason,
        breaker_tripped: decision.breaker_tripped && !neutral,
        unknown_nodes: decision.unknown,
        nodes: rows,
    }
}

fn cell(c: &ReadingCell) -> String {
    match (c.ratio, c.quality) {
        (Some(r), Quality::Valid) => match c.estimated {
            Some(e) if (e - r).abs() > 0.00005 => format!("{r:.2}→{e:.2}"),
            _ => format!("{r:.2}"),
        },
        (Some(r), q) => format!("{r:.2} {q}"),
        (None, q) => q.to_string(),
    }
}

/// The human-readable table.
pub fn render_table(e: &Explanation, policy: &Policy) -> String {
    let mut header = vec![
        "RANK".to_string(),
        "NODE".into(),
        "SCORE".into(),
        "FILTER".into(),
    ];
    header.extend(policy.metrics.iter().map(|m| m.name.to_uppercase()));
    header.extend(["HOTSPOT CPU/MEM".to_string(), "NOTES".into()]);
    let mut rows = vec![header];
    for n in &e.nodes {
        let mut row = vec![
            n.rank.to_string(),
            n.node.clone(),
            n.score.to_string(),
            if n.passes {
                "pass".to_string()
            } else {
                format!("reject ({})", n.filter_message.as_deref().unwrap_or(""))
            },
        ];
        row.extend(n.readings.iter().map(cell));
        row.push(format!("+{:.2}/+{:.2}", n.hotspot_cpu, n.hotspot_memory));
        let mut notes = n.notes.clone();
        if !n.known {
            notes.insert(0, "unknown".to_string());
        }
        row.push(notes.join(","));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pod {} at {}",
        e.pod,
        e.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    if let Some(reason) = &e.neutral_reason {
        let _ = writeln!(out, "load-awareness off: {reason}");
    } else if e.breaker_tripped {
        let _ = writeln!(
            out,
            "circuit breaker tripped: {} of {} candidates unknown (> {:.0}%), load-awareness suspended",
            e.unknown_nodes,
            e.nodes.len(),
            policy.guards.max_unknown_fraction * 100.0
        );
    } else {
        let _ = writeln!(
            out,
            "{} of {} candidates unknown (scored at load {})",
            e.unknown_nodes,
            e.nodes.len(),
            policy.guards.unknown_load
        );
    }
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, w)| format!("{text:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let _ = writeln!(
        out,
        "readings: ratio (→ with hot-spot estimate) or quality; score 0..10, higher is better"
    );
    out
}
