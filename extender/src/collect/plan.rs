//! The collector's decision, as a pure function: from samples per metric and node, and the
//! annotations already on each Node, to the patches to send and the readings skipped with reasons.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use realload_common::objects::NodeView;
use realload_common::policy::{MatchBy, MetricSpec, Policy};
use realload_common::reading::{
    RatioProblem, RawReading, Reading, SampleAge, WRITE_CLOCK_SKEW, format_as, is_suspect_zero,
    ratio_problem, sample_age,
};
use serde::Serialize;

/// Why a reading was not written. Stable strings: they are metric labels and JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// The sample is NaN.
    Nan,
    /// The sample is +Inf or -Inf.
    Infinite,
    Negative,
    AboveOne,
    /// Below the metric's plausibility floor: most likely a broken exporter, not an idle node.
    SuspectZero,
    /// The query failed (connection, timeout, HTTP error, unparsable answer).
    QueryFailed,
    /// Prometheus answered `status: error`.
    QueryError,
    /// Several series map to this node.
    Ambiguous,
    /// The result has no series for this node.
    Absent,
    /// This source cannot compute the metric (e.g. a custom PromQL metric with `--source node-exporter`).
    Unsupported,
    /// The source has not seen enough samples yet (direct node-exporter scraping warms up).
    WarmingUp,
    /// The sample value is not a number Prometheus writes (not even NaN or Inf).
    Unparsable,
    /// The sample's timestamp is not a time (not finite, or out of range).
    BadTimestamp,
    /// The sample is older than the metric's `maxAge`: it would be stale on arrival.
    Stale,
    /// The sample is dated ahead of the clock by more than [`WRITE_CLOCK_SKEW`].
    InFuture,
    /// The node already carries a newer sample of this metric; an older one never replaces it.
    OlderThanCurrent,
}

impl SkipReason {
    pub const ALL: [SkipReason; 16] = [
        SkipReason::Nan,
        SkipReason::Infinite,
        SkipReason::Negative,
        SkipReason::AboveOne,
        SkipReason::SuspectZero,
        SkipReason::QueryFailed,
        SkipReason::QueryError,
        SkipReason::Ambiguous,
        SkipReason::Absent,
        SkipReason::Unsupported,
        SkipReason::WarmingUp,
        SkipReason::Unparsable,
        SkipReason::BadTimestamp,
        SkipReason::Stale,
        SkipReason::InFuture,
        SkipReason::OlderThanCurrent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Nan => "nan",
            SkipReason::Infinite => "infinite",
            SkipReason::Negative => "negative",
            SkipReason::AboveOne => "above-one",
            SkipReason::SuspectZero => "suspect-zero",
            SkipReason::QueryFailed => "query-failed",
            SkipReason::QueryError => "query-error",
            SkipReason::Ambiguous => "ambiguous",
            SkipReason::Absent => "absent",
            SkipReason::Unsupported => "unsupported",
            SkipReason::WarmingUp => "warming-up",
            SkipReason::Unparsable => "unparsable",
            SkipReason::BadTimestamp => "bad-timestamp",
            SkipReason::Stale => "stale",
            SkipReason::InFuture => "in-future",
            SkipReason::OlderThanCurrent => "older-than-current",
        }
    }
}

/// One series from a source: its identity label value and its sample (value and time), or why
/// the sample cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub identity: String,
    pub sample: Result<(f64, Timestamp), SkipReason>,
}

/// What a source returned for one metric.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricResult {
    Series(Vec<Series>),
    /// The whole query failed: nothing is written for any node.
    Failed(SkipReason),
    /// Per-node results already resolved by the source (direct node-exporter scraping).
    PerNode(HashMap<String, Result<(f64, Timestamp), SkipReason>>),
}

/// Maps a series identity (`instance` label, `:port` stripped) to a node, by the policy's
/// `nodeIdentity.matchBy` order.
pub struct NodeMatcher<'a> {
    by_name: HashMap<&'a str, &'a str>,
    by_ip: HashMap<&'a str, &'a str>,
    by_hostname: HashMap<&'a str, &'a str>,
    order: Vec<MatchBy>,
}

/// `10.0.0.1:9100` → `10.0.0.1`; `[fd00::1]:9100` → `fd00::1`; names without a port unchanged.
pub fn strip_port(identity: &str) -> &str {
    if let Some(rest) = identity.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match identity.rsplit_once(':') {
        // a bare IPv6 address has several colons and no port
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => identity,
    }
}

impl<'a> NodeMatcher<'a> {
    pub fn new(nodes: &'a [NodeView], policy: &Policy) -> Self {
        let mut m = NodeMatcher {
            by_name: HashMap::new(),
            by_ip: HashMap::new(),
            by_hostname: HashMap::new(),
            order: policy.node_identity.match_by.clone(),
        };
        for n in nodes {
            m.by_name.insert(n.name.as_str(), n.name.as_str());
            if let Some(ip) = &n.internal_ip {
                m.by_ip.insert(ip.as_str(), n.name.as_str());
            }
            if let Some(h) = &n.hostname {
                m.by_hostname.insert(h.as_str(), n.name.as_str());
            }
        }
        m
    }

    pub fn node_for(&self, identity: &str) -> Option<&'a str> {
        let key = strip_port(identity);
        self.order.iter().find_map(|by| match by {
            MatchBy::Name => self.by_name.get(key).copied(),
            MatchBy::InternalIp => self.by_ip.get(key).copied(),
            MatchBy::Hostname => self.by_hostname.get(key).copied(),
        })
    }
}

/// Judges one sample value by the shared trust rules (range, then plausibility floor).
pub fn judge(value: f64, spec: &MetricSpec) -> Result<f64, SkipReason> {
    match ratio_problem(value) {
        Some(RatioProblem::Nan) => Err(SkipReason::Nan),
        Some(RatioProblem::Infinite) => Err(SkipReason::Infinite),
        Some(RatioProblem::Negative) => Err(SkipReason::Negative),
        Some(RatioProblem::AboveOne) => Err(SkipReason::AboveOne),
        None if is_suspect_zero(value, spec.floor) => Err(SkipReason::SuspectZero),
        None => Ok(value),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePatch {
    pub node: String,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub node: String,
    pub metric: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    pub patches: Vec<NodePatch>,
    pub skipped: Vec<Skip>,
    /// Valid readings not written: within the deadband of the current one, which stays fresh.
    #[serde(skip)]
    pub suppressed: usize,
    /// Per metric: nodes with a valid new reading.
    #[serde(skip)]
    pub coverage: BTreeMap<String, usize>,
}

/// Judges a sample's time at `now` by the shared time rule: a reading written must be valid
/// when it is written, and dated at most [`WRITE_CLOCK_SKEW`] ahead.
pub fn judge_time(
    sampled_at: Timestamp,
    spec: &MetricSpec,
    now: Timestamp,
) -> Result<(), SkipReason> {
    match sample_age(sampled_at, now, spec.max_age, WRITE_CLOCK_SKEW) {
        SampleAge::Fresh(_) => Ok(()),
        SampleAge::Stale(_) => Err(SkipReason::Stale),
        SampleAge::Ahead(_) => Err(SkipReason::InFuture),
    }
}

/// What to do with a trusted new reading, given the annotation already on the Node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Send,
    /// Same value within the deadband, still fresh at the next cycle: not rewritten.
    Suppress,
    Skip(SkipReason),
}

fn decide_write(
    existing: Option<&str>,
    new: &Reading,
    spec: &MetricSpec,
    policy: &Policy,
    now: Timestamp,
    next_cycle: Timestamp,
) -> Write {
    let Some(text) = existing else {
        return Write::Send;
    };
    let RawReading::Parsed(old) =
        RawReading::from_annotation(Some(text), spec.format, &policy.crane_timezone)
    else {
        return Write::Send;
    };
    // A reading dated in the future is garbage, not "newer": replace it.
    let old_plausible = !matches!(
        sample_age(old.sampled_at, now, spec.max_age, WRITE_CLOCK_SKEW),
        SampleAge::Ahead(_)
    );
    if old_plausible && new.sampled_at < old.sampled_at {
        return Write::Skip(SkipReason::OlderThanCurrent);
    }
    if old_plausible && new.sampled_at == old.sampled_at {
        // The node already carries this very sample.
        return Write::Suppress;
    }
    let moved = (new.ratio - old.ratio).abs() > policy.collector.deadband;
    let stale_by_next_cycle = next_cycle.duration_since(old.sampled_at) > spec.max_age;
    if !moved && !stale_by_next_cycle && old_plausible {
        Write::Suppress
    } else {
        Write::Send
    }
}

/// Decides the patches for one cycle at `now`. `results` holds the metrics queried this cycle
/// (keyed by metric name); the next cycle runs one [`cycle_period`] later.
pub fn plan(
    policy: &Policy,
    nodes: &[NodeView],
    current: &HashMap<String, BTreeMap<String, String>>,
    results: &BTreeMap<String, MetricResult>,
    now: Timestamp,
) -> Plan {
    let next_cycle = now.checked_add(cycle_period(policy)).unwrap_or(now);
    let matcher = NodeMatcher::new(nodes, policy);
    let mut out = Plan::default();
    let mut per_node: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for spec in &policy.metrics {
        let Some(result) = results.get(&spec.name) else {
            continue;
        };
        // node -> sample or reason, for every node
        let mut verdicts: HashMap<&str, Result<(f64, Timestamp), SkipReason>> = HashMap::new();
        match result {
            MetricResult::Failed(reason) => {
                for n in nodes {
                    verdicts.insert(n.name.as_str(), Err(*reason));
                }
            }
            MetricResult::PerNode(map) => {
                for n in nodes {
                    verdicts.insert(
                        n.name.as_str(),
                        map.get(&n.name).cloned().unwrap_or(Err(SkipReason::Absent)),
                    );
                }
            }
            MetricResult::Series(series) => {
                let mut seen: HashMap<&str, Vec<&Series>> = HashMap::new();
                for s in series {
                    if let Some(node) = matcher.node_for(&s.identity) {
                        seen.entry(node).or_default().push(s);
                    }
                }
                for n in nodes {
                    let v = match seen.get(n.name.as_str()).map(Vec::as_slice) {
                        None | Some([]) => Err(SkipReason::Absent),
                        Some([one]) => one.sample,
                        Some(_) => Err(SkipReason::Ambiguous),
                    };
                    verdicts.insert(n.name.as_str(), v);
                }
            }
        }
        let mut covered = 0;
        for n in nodes {
            let verdict = verdicts
                .remove(n.name.as_str())
                .unwrap_or(Err(SkipReason::Absent))
                .and_then(|(value, at)| judge(value, spec).map(|v| (v, at)))
                .and_then(|(value, at)| judge_time(at, spec, now).map(|()| (value, at)));
            match verdict {
                Err(reason) => out.skipped.push(Skip {
                    node: n.name.clone(),
                    metric: spec.name.clone(),
                    reason,
                }),
                Ok((ratio, sampled_at)) => {
                    covered += 1;
                    // As it will be written, so the deadband compares like with like.
                    let reading = Reading { ratio, sampled_at }.as_written();
                    let existing = current
                        .get(&n.name)
                        .and_then(|a| a.get(&spec.annotation))
                        .map(String::as_str);
                    match decide_write(existing, &reading, spec, policy, now, next_cycle) {
                        Write::Suppress => out.suppressed += 1,
                        Write::Skip(reason) => out.skipped.push(Skip {
                            node: n.name.clone(),
                            metric: spec.name.clone(),
                            reason,
                        }),
                        Write::Send => {
                            per_node.entry(n.name.as_str()).or_default().insert(
                                spec.annotation.clone(),
                                format_as(&reading, spec.format, &policy.crane_timezone),
                            );
                        }
                    }
                }
            }
        }
        out.coverage.insert(spec.name.clone(), covered);
    }
    out.patches = per_node
        .into_iter()
        .map(|(node, annotations)| NodePatch {
            node: node.to_string(),
            annotations,
        })
        .collect();
    out
}

/// The shortest collection period: how often the collector cycles.
pub fn cycle_period(policy: &Policy) -> SignedDuration {
    policy
        .metrics
        .iter()
        .map(|m| m.period)
        .min()
        .unwrap_or(SignedDuration::from_mins(1))
}

#[cfg(test)]
mod tests;
