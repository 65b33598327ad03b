//! `realload-extender explain`: the candidate nodes ranked as the extender would rank them for a
//! pod, with every reading, its quality, the hot-spot addition, the filter verdict and the score.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use realload_common::cli::{OutputFormat, load_policy};
use tokio_util::sync::CancellationToken;

use crate::cli::ExplainArgs;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use realload_common::objects::{NeutralPod, NodeView};
use realload_common::policy::Policy;
use realload_common::reading::Quality;
use realload_common::scoring::{self, FilterVerdict, NodeAssessment};
use realload_common::workload::{ExpectedUsage, WorkloadKey};
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
    /// The most pods an unknown node takes while it stays unknown (`guards.unknownPodCap`).
    pub unknown_pod_cap: u32,
    /// Set when no node with valid readings passes: what happens to the pod.
    pub warning: Option<String>,
    /// The pod's workload (`namespace/Kind/name`), when it has a controller.
    pub workload: Option<String>,
    /// How the estimates count this pod: learned shares of its requests, or the factors.
    pub expected_usage: ExpectedUsage,
    /// What the learned table says of the workload, when it says anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_from: Option<LearnedFrom>,
    pub nodes: Vec<NodeRow>,
}

/// Where a pod's learned shares come from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnedFrom {
    pub pods: u32,
    pub updated: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    /// 1 for the best; nodes the extender cannot tell apart share a rank (`tied`), and then
    /// kube-scheduler's own scores decide between them.
    pub rank: usize,
    pub tied: bool,
    pub node: String,
    pub score: i64,
    pub passes: bool,
    pub filter_message: Option<String>,
    pub known: bool,
    /// For an unknown node: pods placed on it since it became unknown (in flight included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_pods: Option<u32>,
    /// For an unknown node: since when, as far as the extender can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_since: Option<Timestamp>,
    pub hotspot_cpu: f64,
    pub hotspot_memory: f64,
    /// What this pod itself adds to the node's estimates (`hotspot.includePod`), as shares.
    pub pod_cpu: f64,
    pub pod_memory: f64,
    pub readings: Vec<ReadingCell>,
    pub notes: Vec<String>,
    /// Rejected by the unknown-node cap.
    #[serde(skip)]
    pub capped: bool,
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
/// (the same generation, the same scoring, the circuit breaker over all of them).
pub fn explain(state: &State, pod: &Pod) -> Explanation {
    let generation = state.generation();
    let policy = &generation.policy;
    let now = state.clock.now();
    let in_flight = state.memory.in_flight();
    let mut views: Vec<&NodeView> = generation.nodes.values().map(|e| &*e.view).collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    let assessments: Vec<NodeAssessment> = views
        .iter()
        .map(|v| {
            let flying = in_flight.get(v.name.as_str()).copied().unwrap_or(0);
            generation.assess(&v.name, flying, now)
        })
        .collect();
    let neutral_reason = NeutralPod::of(pod).map(|n| n.explanation().to_string());
    let requests = realload_common::objects::pod_requests(pod);
    let workload = WorkloadKey::of(pod);
    let learned = generation.learned_for(|| workload.clone(), now);
    let expected_usage = ExpectedUsage::new(
        learned,
        policy.hotspot.cpu_factor,
        policy.hotspot.memory_factor,
    );
    let learned_from = learned.and_then(|_| {
        let entry = generation.usage.workloads.get(workload.as_ref()?)?;
        Some(LearnedFrom {
            pods: entry.pods,
            updated: generation.usage.updated?,
        })
    });
    let pod_shares: Vec<scoring::ResourceShares> = assessments
        .iter()
        .map(|a| {
            scoring::pod_shares(
                policy,
                requests.cpu_millis,
                requests.memory_bytes,
                learned,
                a.allocatable,
            )
        })
        .collect();
    let decision = scoring::decide_judged(
        policy,
        assessments
            .iter()
            .map(|a| {
                scoring::judge(policy, a).with_pod(
                    policy,
                    requests.cpu_millis,
                    requests.memory_bytes,
                    learned,
                )
            })
            .collect(),
    );
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
                tied: false,
                node: view.name.clone(),
                score,
                passes: verdict.passes(),
                filter_message: verdict.message(),
                known: a.known,
                unknown_pods: (!a.known).then_some(a.unknown_pods),
                unknown_since: a.unknown_since,
                hotspot_cpu: a.hotspot.cpu,
                hotspot_memory: a.hotspot.memory,
                pod_cpu: pod_shares[i].cpu,
                pod_memory: pod_shares[i].memory,
                readings: reading_cells(policy, a),
                notes,
                capped: matches!(verdict, FilterVerdict::UnknownCap { .. }),
            }
        })
        .collect();
    rank(&mut rows);
    let breaker_tripped = decision.breaker_tripped && !neutral;
    let warning = (!neutral && !breaker_tripped)
        .then(|| waiting_warning(&rows, policy.guards.unknown_pod_cap))
        .flatten();
    Explanation {
        pod: format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("(unnamed)")
        ),
        now,
        neutral_reason,
        breaker_tripped,
        unknown_nodes: decision.unknown,
        unknown_pod_cap: policy.guards.unknown_pod_cap,
        warning,
        workload: workload.map(|w| w.to_string()),
        expected_usage,
        learned_from,
        nodes: rows,
    }
}

/// Orders rows best first (passing, then score) and numbers them; rows the extender scores the
/// same share a rank.
fn rank(rows: &mut [NodeRow]) {
    rows.sort_by(|a, b| {
        b.passes
            .cmp(&a.passes)
            .then(b.score.cmp(&a.score))
            .then_with(|| a.node.cmp(&b.node))
    });
    let key = |r: &NodeRow| (r.passes, r.score);
    let mut rank = 0;
    for i in 0..rows.len() {
        if i == 0 || key(&rows[i]) != key(&rows[i - 1]) {
            rank = i + 1;
        }
        rows[i].rank = rank;
    }
    for i in 0..rows.len() {
        let same = |j: usize| rows.get(j).is_some_and(|r| key(r) == key(&rows[i]));
        rows[i].tied = (i > 0 && same(i - 1)) || same(i + 1);
    }
}

/// What happens to a pod no known node can take.
fn waiting_warning(rows: &[NodeRow], cap: u32) -> Option<String> {
    if rows.iter().any(|r| r.passes && r.known) {
        return None;
    }
    let unknown_open = rows.iter().filter(|r| r.passes && !r.known).count();
    let capped = rows.iter().filter(|r| r.capped).count();
    if unknown_open > 0 {
        Some(format!(
            "no node with valid readings can take this pod: only {unknown_open} unknown node(s) pass, and each takes at most {cap} pod(s) until it reports a valid reading; beyond that the pod waits"
        ))
    } else if capped > 0 {
        Some(format!(
            "no node passes: {capped} unknown node(s) already took their {cap} pod(s); the pod waits until a node reports a valid reading or a known node has room"
        ))
    } else {
        None
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

/// How the estimates count the pod, in words.
fn expected_line(e: &Explanation) -> String {
    let u = &e.expected_usage;
    let source = |learned: bool, factor: &str| {
        if learned {
            "learned".to_string()
        } else {
            format!("hotspot.{factor}")
        }
    };
    let mut line = format!(
        "counted at {:.2} of its CPU request ({}) and {:.2} of its memory request ({})",
        u.cpu_share,
        source(u.cpu_learned, "cpuFactor"),
        u.memory_share,
        source(u.memory_learned, "memoryFactor"),
    );
    match (&e.workload, &e.learned_from) {
        (Some(w), Some(from)) => {
            let _ = write!(
                line,
                "; workload {w} measured on {} pod(s) at {}",
                from.pods,
                from.updated.strftime("%Y-%m-%dT%H:%M:%SZ")
            );
        }
        (Some(w), None) => {
            let _ = write!(line, "; nothing learned for workload {w}");
        }
        (None, _) => line.push_str("; no controller, so no workload to learn from"),
    }
    line
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
            if n.tied {
                format!("{}=", n.rank)
            } else {
                n.rank.to_string()
            },
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
            notes.insert(
                0,
                format!(
                    "unknown ({} of {} pods since)",
                    n.unknown_pods.unwrap_or(0),
                    e.unknown_pod_cap
                ),
            );
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
    let _ = writeln!(out, "{}", expected_line(e));
    if let Some(w) = &e.warning {
        let _ = writeln!(out, "warning: {w}");
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
        "readings: ratio (→ with hot-spot estimate) or quality; hot-spot: pods bound after a node's newest sample in full, those bound less than {} before it in part (the reading shows the rest); the filter and the score also count this pod's own requests (podCpu/podMemory in --output json); score 0..10, higher is better; \"2=\" marks nodes realload scores the same (kube-scheduler's own scores decide between them)",
        format_args!("{:#}", policy.hotspot.reading_window)
    );
    out
}

/// Runs `explain`, printing to stdout: on a snapshot, or on the live cluster once the extender's
/// watches have synced.
/// A Pod manifest in YAML or JSON (`explain --pod` and the status page's what-if box).
pub fn parse_pod(text: &str) -> Result<Pod, String> {
    let text = realload_common::yaml::strip_bom(text);
    if let Some(problem) = realload_common::yaml::nesting_problem(text) {
        return Err(problem);
    }
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "Pod" {
        return Err(if kind.is_empty() {
            "not a Pod manifest: no kind: Pod".to_string()
        } else {
            format!("not a Pod manifest: kind is {kind}")
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("not a Pod manifest: {path}: {}", e.inner())
    })
}

pub async fn run(args: &ExplainArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let policy = load_policy(args.policy.policy.as_deref())?;
    let pod_text = std::fs::read_to_string(&args.pod)
        .with_context(|| format!("pod file {}", args.pod.display()))?;
    let pod = parse_pod(&pod_text)
        .map_err(|e| anyhow::anyhow!("pod file {}: {e}", args.pod.display()))?;
    let watches = CancellationToken::new();
    let running = crate::serve::build_state(
        policy.clone(),
        args.snapshot.snapshot.as_deref(),
        args.snapshot.now,
        &args.namespace,
        &watches,
    )
    .await?;
    let state = running.state;
    let synced = tokio::select! {
        _ = shutdown.cancelled() => bail!("interrupted"),
        r = tokio::time::timeout(Duration::from_secs(60), state.index.wait_synced()) => r,
    };
    if synced.is_err() {
        watches.cancel();
        bail!("the node and pod watches did not sync within 60s");
    }
    if running.client.is_some() && policy.workload_usage.enabled {
        // The learned usage too, so the pod is counted as `serve` would count it.
        let mut listed = state.usage_listed.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(10), listed.wait_for(|l| *l)).await;
        if waited.is_err() {
            tracing::warn!(
                "the workload usage ConfigMap could not be read within 10s; pods are counted at the hot-spot factors"
            );
        }
    }
    watches.cancel();
    let explanation = explain(&state, &pod);
    let text = match args.output {
        OutputFormat::Table => render_table(&explanation, &policy),
        OutputFormat::Json => serde_json::to_string_pretty(&explanation)?,
    };
    realload_common::cli::write_stdout(&text).context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::parse_pod;

    #[test]
    fn pod_manifests_are_read_and_other_documents_named() {
        let pod = parse_pod("\u{feff}apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
        assert!(parse_pod(r#"{"kind": "Pod", "metadata": {"name": "j"}}"#).is_ok());
        let cases = [
            (
                "kind: Deployment\n",
                "not a Pod manifest: kind is Deployment",
            ),
            ("metadata: {name: p}\n", "no kind: Pod"),
            (
                "kind: Pod\nspec: {containers: 3}\n",
                "not a Pod manifest: spec.containers",
            ),
            ("{{{", "not YAML or JSON"),
            (&"[".repeat(100_000), "nesting deeper than 64 levels"),
        ];
        for (text, want) in cases {
            let e = parse_pod(text).unwrap_err();
            assert!(e.contains(want), "{e} should say {want}");
        }
    }
}
