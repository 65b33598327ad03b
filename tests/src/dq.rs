//! Decision quality: a deterministic, seeded, discrete-time cluster simulator that runs the same
//! workload through several placement policies side by side.
//!
//! - Nodes have capacity. Pods have requests and a real CPU usage that differs from them: some use
//!   far less than they ask, some more, and some vary over time. Pods arrive and depart, in bursts
//!   too.
//! - A collector with lag writes annotations every minute from the real usage history (5-minute
//!   windows). Faults: exporters reporting 0, readings going stale, a Prometheus outage.
//! - kube-scheduler's request-fit filter and default scoring (NodeResourcesFit LeastAllocated and
//!   NodeResourcesBalancedAllocation, weight 1 each, 0..100), plus an extender combined as
//!   kube-scheduler does: `score × weight × 10`.
//! - Policies: `default`; `crane (model)`, crane-scheduler's documented Dynamic policy modelled
//!   from its description; `realload`, which calls `realload-common`'s scoring exactly as the
//!   extender does; `realload+descheduler`, which also applies the descheduler's pure plan every 10
//!   simulated minutes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use realload_common::objects::NodeView;
use realload_common::policy::Policy;
use realload_common::reading::{Reading, format_annotation};
use realload_common::scoring::{self, BoundPod};
use realload_common::whitelist::Whitelist;
use serde::Serialize;
use serde_json::json;

use crate::synth::Rng;

pub const STEP_SECS: i64 = 10;
pub const NODE_CPU_M: u64 = 16_000;
pub const NODE_MEM_MI: u64 = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PolicyKind {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "crane (model)")]
    Crane,
    #[serde(rename = "realload")]
    Realload,
    #[serde(rename = "realload+descheduler")]
    RealloadDescheduler,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Default,
        PolicyKind::Crane,
        PolicyKind::Realload,
        PolicyKind::RealloadDescheduler,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Default => "default",
            PolicyKind::Crane => "crane (model)",
            PolicyKind::Realload => "realload",
            PolicyKind::RealloadDescheduler => "realload+descheduler",
        }
    }
}

/// A fault window: which nodes, from when, until when (simulated seconds).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// node-exporter on these nodes reports 0.
    Zero {
        nodes: Vec<usize>,
        from: i64,
        until: i64,
    },
    /// The collector writes nothing for these nodes: their readings go stale.
    Stale {
        nodes: Vec<usize>,
        from: i64,
        until: i64,
    },
    /// Prometheus is down: nothing is written for any node.
    Outage { from: i64, until: i64 },
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub seed: u64,
    pub nodes: usize,
    pub duration_secs: i64,
    /// Pods per minute arriving in steady state.
    pub arrival_per_min: f64,
    /// (time, count): a burst of `count` pods over 10 seconds.
    pub bursts: Vec<(i64, usize)>,
    pub faults: Vec<Fault>,
    pub extender_weight: i64,
}

impl Scenario {
    fn base(name: &'static str) -> Scenario {
        Scenario {
            name,
            seed: 7,
            nodes: 40,
            duration_secs: 2 * 3600,
            arrival_per_min: 3.0,
            bursts: vec![],
            faults: vec![],
            extender_weight: 5,
        }
    }

    /// The six standard scenarios.
    pub fn all() -> Vec<Scenario> {
        let mut v = vec![Scenario::base("steady")];
        let mut burst = Scenario::base("burst");
        burst.bursts = vec![(1800, 200), (4500, 200)];
        v.push(burst);
        let mut zero = Scenario::base("zero-reading fault");
        zero.faults = vec![Fault::Zero {
            nodes: vec![3, 17, 29],
            from: 1200,
            until: 5400,
        }];
        v.push(zero);
        let mut stale = Scenario::base("stale readings");
        stale.faults = vec![Fault::Stale {
            nodes: (0..12).collect(),
            from: 1500,
            until: 5400,
        }];
        v.push(stale);
        let mut outage = Scenario::base("Prometheus outage");
        outage.faults = vec![Fault::Outage {
            from: 2400,
            until: 4800,
        }];
        outage.bursts = vec![(3600, 150)];
        v.push(outage);
        let mut mixed = Scenario::base("mixed");
        mixed.bursts = vec![(2000, 150)];
        mixed.faults = vec![
            Fault::Zero {
                nodes: vec![5, 21],
                from: 900,
                until: 6000,
            },
            Fault::Stale {
                nodes: (30..36).collect(),
                from: 3000,
                until: 5000,
            },
            Fault::Outage {
                from: 5400,
                until: 6000,
            },
        ];
        v.push(mixed);
        v
    }
}

/// A workload: how its pods' real usage relates to what they request.
#[derive(Debug, Clone)]
pub struct Workload {
    pub cpu_request_m: u64,
    pub mem_request_mi: u64,
    /// Real CPU use as a share of the request (0.2 = asks 5× too much, 1.6 = uses more).
    pub usage_factor: f64,
    /// Relative amplitude of a slow oscillation of usage (0 = flat).
    pub amplitude: f64,
    pub period_secs: f64,
    pub phase: f64,
}

impl Workload {
    pub fn usage_m(&self, t: i64) -> f64 {
        let wave = 1.0
            + self.amplitude
                * ((t as f64) * std::f64::consts::TAU / self.period_secs + self.phase).sin();
        self.cpu_request_m as f64 * self.usage_factor * wave.max(0.0)
    }
}

#[derive(Debug, Clone)]
pub struct SimPod {
    pub id: usize,
    pub workload: usize,
    pub node: Option<usize>,
    pub bound_at: i64,
    pub departs_at: i64,
    pub created_at: i64,
}

/// The arrivals of a scenario, identical for every policy: (time, workload, lifetime).
pub fn arrivals(s: &Scenario, workloads: &[Workload], rng: &mut Rng) -> Vec<(i64, usize, i64)> {
    let mut out = Vec::new();
    // the cluster starts about half requested
    let initial = s.nodes * 6;
    for _ in 0..initial {
        out.push((
            0,
            rng.below(workloads.len() as u64) as usize,
            3600 + rng.below(7200) as i64,
        ));
    }
    let mut t = 0;
    while t < s.duration_secs {
        let expected = s.arrival_per_min * STEP_SECS as f64 / 60.0;
        let mut n = expected.floor() as usize;
        if rng.unit() < expected.fract() {
            n += 1;
        }
        for _ in 0..n {
            out.push((
                t,
                rng.below(workloads.len() as u64) as usize,
                600 + rng.below(3000) as i64,
            ));
        }
        t += STEP_SECS;
    }
    for &(at, count) in &s.bursts {
        for k in 0..count {
            out.push((
                at + (k as i64 % 10),
                rng.below(workloads.len() as u64) as usize,
                1800 + rng.below(1800) as i64,
            ));
        }
    }
    out.sort_by_key(|a| a.0);
    out
}

pub fn workloads(rng: &mut Rng) -> Vec<Workload> {
    let requests = [250u64, 500, 1000, 2000, 3000, 4000];
    (0..40)
        .map(|i| {
            let class = rng.unit();
            let usage_factor = if class < 0.3 {
                0.15 + rng.unit() * 0.35
            } else if class < 0.7 {
                0.6 + rng.unit() * 0.4
            } else {
                1.2 + rng.unit() * 0.6
            };
            let cpu = requests[rng.below(requests.len() as u64) as usize];
            Workload {
                cpu_request_m: cpu,
                mem_request_mi: cpu / 2 + 256,
                usage_factor,
                amplitude: if i % 3 == 0 { 0.4 } else { 0.1 },
                period_secs: 1800.0 + rng.unit() * 3600.0,
                phase: rng.unit() * std::f64::consts::TAU,
            }
        })
        .collect()
}

/// Per-node history of real utilisation (one sample per step) for the collector's windows.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub samples: VecDeque<(i64, f64)>,
}

impl History {
    fn push(&mut self, t: i64, util: f64) {
        self.samples.push_back((t, util));
        while self.samples.front().is_some_and(|(s, _)| t - s > 3700) {
            self.samples.pop_front();
        }
    }

    fn avg(&self, t: i64, window: i64) -> Option<f64> {
        let v: Vec<f64> = self
            .samples
            .iter()
            .filter(|(s, _)| t - s < window)
            .map(|(_, u)| *u)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    fn max_avg5(&self, t: i64) -> Option<f64> {
        self.samples
            .iter()
            .filter(|(s, _)| t - s < 3600)
            .filter_map(|(s, _)| self.avg(*s, 300))
            .reduce(f64::max)
    }

    fn min_avg1(&self, t: i64) -> Option<f64> {
        self.samples
            .iter()
            .filter(|(s, _)| t - s < 600)
            .filter_map(|(s, _)| self.avg(*s, 60))
            .reduce(f64::min)
    }
}

/// Simulated time → wall-clock timestamp (annotations carry real timestamps).
pub fn ts(t: i64) -> Timestamp {
    Timestamp::from_second(1_763_769_600 + t).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// What one policy run produced.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub name: String,
    pub hot_node_minutes: f64,
    pub p99_node_cpu: f64,
    pub stddev_node_cpu: f64,
    pub pods_on_faulty_nodes: usize,
    pub max_pods_per_node_per_minute: usize,
    pub pending: usize,
    pub evictions: usize,
    /// Of `pods_on_faulty_nodes`, those placed while realload's circuit breaker was tripped
    /// (load-awareness suspended): a diagnostic, not part of the report.
    #[serde(skip)]
    pub faulty_while_breaker_tripped: usize,
    /// Of `pods_on_faulty_nodes`, those for which every node that fitted the pod's requests was
    /// faulty: no placement could have avoided them (diagnostic).
    #[serde(skip)]
    pub faulty_without_alternative: usize,
    /// Pending pods summed over every minute: the price of refusing nodes (diagnostic).
    #[serde(skip)]
    pub pending_pod_minutes: f64,
    /// Bookkeeping for the conservation test: arrived = running + pending + departed.
    #[serde(skip)]
    pub arrived: usize,
    #[serde(skip)]
    pub running: usize,
    #[serde(skip)]
    pub departed: usize,
}

pub struct Sim<'a> {
    pub scenario: &'a Scenario,
    pub kind: PolicyKind,
    pub policy: Policy,
    pub workloads: Vec<Workload>,
    pub pods: Vec<SimPod>,
    pub pending: VecDeque<usize>,
    pub annotations: Vec<BTreeMap<String, String>>,
    pub history: Vec<History>,
    pub t: i64,
    /// crane's hot value per node, refreshed every 3 minutes from recent bindings.
    crane_hot: Vec<i64>,
    bindings: Vec<(i64, usize)>,
    pub outcome: Outcome,
    /// Requests placed on each node (CPU millicores, memory MiB), kept up to date on every bind
    /// and release.
    requested: Vec<(u64, u64)>,
    /// Pods that arrived this step (scheduled at once; the backlog is retried every 30 s).
    fresh_pending: usize,
    util_samples: Vec<f64>,
    stddev_sum: f64,
    stddev_n: usize,
}

impl<'a> Sim<'a> {
    pub fn new(scenario: &'a Scenario, kind: PolicyKind) -> Sim<'a> {
        Sim::with_policy(scenario, kind, Policy::default())
    }

    /// A run whose realload policies use `policy` (the other policies ignore it).
    pub fn with_policy(scenario: &'a Scenario, kind: PolicyKind, policy: Policy) -> Sim<'a> {
        let mut rng = Rng::new(scenario.seed);
        let workloads = workloads(&mut rng);
        Sim {
            scenario,
            kind,
            policy,
            workloads,
            pods: Vec::new(),
            pending: VecDeque::new(),
            annotations: vec![BTreeMap::new(); scenario.nodes],
            history: vec![History::default(); scenario.nodes],
            t: 0,
            crane_hot: vec![0; scenario.nodes],
            bindings: Vec::new(),
            outcome: Outcome {
                name: kind.name().into(),
                ..Outcome::default()
            },
            requested: vec![(0, 0); scenario.nodes],
            fresh_pending: 0,
            util_samples: Vec::new(),
            stddev_sum: 0.0,
            stddev_n: 0,
        }
    }

    pub fn node_util(&self, n: usize) -> f64 {
        let used: f64 = self
            .pods
            .iter()
            .filter(|p| p.node == Some(n))
            .map(|p| self.workloads[p.workload].usage_m(self.t))
            .sum();
        (used / NODE_CPU_M as f64).min(1.0)
    }

    fn requested(&self, n: usize) -> (u64, u64) {
        self.requested[n]
    }

    /// Binds or releases a pod, keeping the per-node request totals exact.
    fn place(&mut self, pod: usize, node: Option<usize>) {
        let w = &self.workloads[self.pods[pod].workload];
        let (c, m) = (w.cpu_request_m, w.mem_request_mi);
        if let Some(old) = self.pods[pod].node {
            self.requested[old].0 -= c;
            self.requested[old].1 -= m;
        }
        if let Some(new) = node {
            self.requested[new].0 += c;
            self.requested[new].1 += m;
        }
        self.pods[pod].node = node;
    }

    /// Real utilisation of every node at the current time, in one pass over the pods.
    fn utils(&self) -> Vec<f64> {
        let mut used = vec![0.0; self.scenario.nodes];
        for p in &self.pods {
            if let Some(n) = p.node {
                used[n] += self.workloads[p.workload].usage_m(self.t);
            }
        }
        used.into_iter()
            .map(|u| (u / NODE_CPU_M as f64).min(1.0))
            .collect()
    }

    fn faulty(&self, n: usize) -> bool {
        self.scenario.faults.iter().any(|f| match f {
            Fault::Zero { nodes, from, until } | Fault::Stale { nodes, from, until } => {
                nodes.contains(&n) && (*from..*until).contains(&self.t)
            }
            Fault::Outage { .. } => false,
        })
    }

    /// The collector: every 60 s, from the real history, with the scenario's faults.
    fn collect(&mut self) {
        if self.t % 60 != 0 {
            return;
        }
        if self.scenario.faults.iter().any(
            |f| matches!(f, Fault::Outage { from, until } if (*from..*until).contains(&self.t)),
        ) {
            return;
        }
        let at = ts(self.t);
        for n in 0..self.scenario.nodes {
            let stale = self.scenario.faults.iter().any(|f| matches!(f, Fault::Stale { nodes, from, until } if nodes.contains(&n) && (*from..*until).contains(&self.t)));
            if stale {
                continue;
            }
            let zero = self.scenario.faults.iter().any(|f| matches!(f, Fault::Zero { nodes, from, until } if nodes.contains(&n) && (*from..*until).contains(&self.t)));
            let h = &self.history[n];
            let (_, mem) = self.requested(n);
            let values = [
                ("realload.io/cpu-avg-5m", h.avg(self.t, 300)),
                ("realload.io/cpu-max-1h", h.max_avg5(self.t)),
                (
                    "realload.io/mem-avg-5m",
                    Some((mem as f64 * 0.8 / NODE_MEM_MI as f64).min(1.0)),
                ),
                ("realload.io/cpu-sustained-10m", h.min_avg1(self.t)),
            ];
            for (key, value) in values {
                if let Some(v) = value {
                    // a broken exporter reports 0; crane's controller writes it as truth
                    let ratio = if zero { 0.0 } else { v.clamp(0.0, 1.0) };
                    self.annotations[n].insert(
                        key.into(),
                        format_annotation(&Reading {
                            ratio,
                            sampled_at: at,
                        }),
                    );
                }
            }
        }
    }

    fn reading(&self, n: usize, key: &str) -> Option<(f64, i64)> {
        let raw = self.annotations[n].get(key)?;
        let (ratio, time) = raw.split_once(',')?;
        let t: Timestamp = time.parse().ok()?;
        Some((ratio.parse().ok()?, t.as_second() - ts(0).as_second()))
    }

    fn view(&self, n: usize) -> NodeView {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": format!("n{n}"), "annotations": self.annotations[n]},
            "status": {"allocatable": {"cpu": format!("{NODE_CPU_M}m"), "memory": format!("{NODE_MEM_MI}Mi")},
                       "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap_or_default();
        NodeView::from_node(&node, &self.policy)
    }

    /// kube-scheduler's default scores for `n` with the pod added (0..100 each, weight 1).
    fn default_score(&self, n: usize, w: &Workload) -> Option<i64> {
        let (c, m) = self.requested(n);
        let (c, m) = (c + w.cpu_request_m, m + w.mem_request_mi);
        if c > NODE_CPU_M || m > NODE_MEM_MI {
            return None;
        }
        let cf = c as f64 / NODE_CPU_M as f64;
        let mf = m as f64 / NODE_MEM_MI as f64;
        let least = ((1.0 - cf) * 100.0 + (1.0 - mf) * 100.0) / 2.0;
        let balanced = (1.0 - (cf - mf).abs() / 2.0) * 100.0;
        Some(least as i64 + balanced as i64)
    }

    /// crane-scheduler's Dynamic policy, modelled from its documentation.
    fn crane(&self, n: usize) -> (bool, i64) {
        let valid = |key: &str, ttl: i64| {
            self.reading(n, key)
                .filter(|(_, at)| self.t - at <= ttl)
                .map(|(v, _)| v)
        };
        let avg5 = valid("realload.io/cpu-avg-5m", 180 + 300);
        let max1h = valid("realload.io/cpu-max-1h", 900 + 300);
        // filter: avg 5m above 0.65 or max 1h above 0.75 (missing passes)
        let passes = !(avg5.is_some_and(|v| v > 0.65) || max1h.is_some_and(|v| v > 0.75));
        // score: (1 - usage) × weight × 100 / Σ weights; a missing metric contributes 0
        let parts = [(avg5, 0.2), (max1h, 0.3), (max1h, 0.5)];
        let score = parts
            .iter()
            .map(|(v, w)| v.map_or(0.0, |u| (1.0 - u) * w * 100.0))
            .sum::<f64>()
            / 1.0;
        let score = (score as i64 - self.crane_hot[n] * 10).clamp(0, 100);
        (passes, score)
    }

    fn ledger(&self, n: usize) -> Vec<BoundPod> {
        self.pods
            .iter()
            .filter(|p| p.node == Some(n) && self.t - p.bound_at < 600)
            .map(|p| {
                let w = &self.workloads[p.workload];
                BoundPod {
                    bound_at: ts(p.bound_at),
                    cpu_millis: w.cpu_request_m,
                    memory_bytes: w.mem_request_mi << 20,
                    pinned: false,
                }
            })
            .collect()
    }

    fn schedule(&mut self, pod: usize) -> bool {
        let w = self.workloads[self.pods[pod].workload].clone();
        let feasible: Vec<(usize, i64)> = (0..self.scenario.nodes)
            .filter_map(|n| self.default_score(n, &w).map(|s| (n, s)))
            .collect();
        if feasible.is_empty() {
            return false;
        }
        let only_faulty = feasible.iter().all(|(n, _)| self.faulty(*n));
        let weight = self.scenario.extender_weight;
        let mut breaker_tripped = false;
        let scored: Vec<(usize, i64)> = match self.kind {
            PolicyKind::Default => feasible,
            PolicyKind::Crane => feasible
                .into_iter()
                .filter_map(|(n, s)| {
                    let (passes, c) = self.crane(n);
                    passes.then_some((n, s + c * 3))
                })
                .collect(),
            PolicyKind::Realload | PolicyKind::RealloadDescheduler => {
                // exactly the extender's decision: the same assessment, judgement and breaker
                let now = ts(self.t);
                let assessed: Vec<_> = feasible
                    .iter()
                    .map(|(n, _)| {
                        let view = self.view(*n);
                        scoring::assess_node(
                            &self.policy,
                            &view.readings,
                            &self.ledger(*n),
                            view.allocatable,
                            now,
                        )
                    })
                    .collect();
                let decision = scoring::decide(&self.policy, &assessed);
                breaker_tripped = decision.breaker_tripped;
                let survivors: Vec<(usize, i64)> = feasible
                    .iter()
                    .zip(decision.verdicts.iter().zip(&decision.scores))
                    .filter(|(_, (v, _))| v.passes())
                    .map(|((n, s), (_, e))| (*n, s + e * weight * 10))
                    .collect();
                // an empty filter result leaves the pod pending, as kube-scheduler would
                survivors
            }
        };
        let Some(&(best, _)) = scored
            .iter()
            .max_by_key(|(n, s)| (*s, std::cmp::Reverse(*n)))
        else {
            return false;
        };
        if self.faulty(best) {
            self.outcome.pods_on_faulty_nodes += 1;
            if breaker_tripped {
                self.outcome.faulty_while_breaker_tripped += 1;
            }
            if only_faulty {
                self.outcome.faulty_without_alternative += 1;
            }
        }
        self.place(pod, Some(best));
        self.pods[pod].bound_at = self.t;
        self.bindings.push((self.t, best));
        true
    }

    fn refresh_crane_hot(&mut self) {
        if self.t % 180 != 0 {
            return;
        }
        for n in 0..self.scenario.nodes {
            let in5 = self
                .bindings
                .iter()
                .filter(|(t, b)| *b == n && self.t - t < 300)
                .count() as i64;
            let in1 = self
                .bindings
                .iter()
                .filter(|(t, b)| *b == n && self.t - t < 60)
                .count() as i64;
            self.crane_hot[n] = in5 / 5 + in1 / 2;
        }
    }

    /// Every 10 simulated minutes: the descheduler's pure plan on the current state.
    fn deschedule(&mut self) {
        if self.kind != PolicyKind::RealloadDescheduler || self.t % 600 != 0 || self.t == 0 {
            return;
        }
        let now = ts(self.t);
        let views: Vec<NodeView> = (0..self.scenario.nodes).map(|n| self.view(n)).collect();
        let mut pods = Vec::new();
        let mut node_requests = HashMap::new();
        for n in 0..self.scenario.nodes {
            let (c, m) = self.requested(n);
            node_requests.insert(
                format!("n{n}"),
                realload_common::objects::Requests {
                    cpu_millis: c,
                    memory_bytes: m << 20,
                },
            );
        }
        for p in self.pods.iter().filter(|p| p.node.is_some()) {
            let w = &self.workloads[p.workload];
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("p{}", p.id), "namespace": "sim", "labels": {"app": format!("w{}", p.workload)},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("w{}-rs", p.workload), "uid": "u", "controller": true}]},
                "spec": {"nodeName": format!("n{}", p.node.unwrap_or(0)), "containers": [{"name": "c", "resources": {"requests": {"cpu": format!("{}m", w.cpu_request_m), "memory": format!("{}Mi", w.mem_request_mi)}}}]},
                "status": {"phase": "Running", "startTime": ts(p.bound_at).to_string(), "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap_or_default();
            pods.push(pod);
        }
        let mut replica_sets = Vec::new();
        let mut deployments = Vec::new();
        for (i, _) in self.workloads.iter().enumerate() {
            let ready = self
                .pods
                .iter()
                .filter(|p| p.workload == i && p.node.is_some())
                .count();
            let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": format!("w{i}-rs"), "namespace": "sim",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("w{i}"), "uid": "d", "controller": true}]}})).unwrap_or_default();
            let dep: Deployment = serde_json::from_value(json!({"metadata": {"name": format!("w{i}"), "namespace": "sim"}, "status": {"readyReplicas": ready}})).unwrap_or_default();
            replica_sets.push(rs);
            deployments.push(dep);
        }
        let whitelist = Whitelist::default();
        let last = BTreeMap::new();
        let plan = realload_descheduler::plan::plan(&realload_descheduler::plan::Inputs {
            policy: &self.policy,
            whitelist: &whitelist,
            now,
            nodes: &views,
            candidates: &pods,
            node_requests: &node_requests,
            replica_sets: &replica_sets,
            deployments: &deployments,
            stateful_sets: &[],
            pdbs: &[],
            last_evictions: &last,
        });
        for e in plan.evictions {
            let id: usize = e.pod.trim_start_matches('p').parse().unwrap_or(usize::MAX);
            if id < self.pods.len() {
                // evicted: its ReplicaSet recreates it; the replacement is scheduled like any pod
                self.place(id, None);
                self.pending.push_back(id);
                self.outcome.evictions += 1;
            }
        }
    }

    /// Runs the scenario to its end and returns the outcome.
    pub fn run(mut self) -> Outcome {
        let mut rng = Rng::new(self.scenario.seed ^ 0x5eed);
        let _ = workloads(&mut rng); // keep the arrival stream independent of workload draws
        let arrivals = arrivals(self.scenario, &self.workloads, &mut rng);
        let mut next = 0;
        let mut per_minute: HashMap<(usize, i64), usize> = HashMap::new();
        while self.t < self.scenario.duration_secs {
            while next < arrivals.len() && arrivals[next].0 <= self.t {
                let (at, workload, life) = arrivals[next];
                let id = self.pods.len();
                self.pods.push(SimPod {
                    id,
                    workload,
                    node: None,
                    bound_at: at,
                    departs_at: at + life,
                    created_at: at,
                });
                self.pending.push_front(id);
                self.fresh_pending += 1;
                self.outcome.arrived += 1;
                next += 1;
            }
            // departures
            for id in 0..self.pods.len() {
                if self.pods[id].node.is_some() && self.pods[id].departs_at <= self.t {
                    self.place(id, None);
                    self.pods[id].departs_at = i64::MAX;
                    self.outcome.departed += 1;
                }
            }
            self.refresh_crane_hot();
            // scheduling: the queue, in order; pods that fit nowhere stay pending
            let queued = if self.t % 30 == 0 {
                self.pending.len()
            } else {
                self.pending.len().min(self.fresh_pending)
            };
            for _ in 0..queued {
                let Some(id) = self.pending.pop_front() else {
                    break;
                };
                if self.pods[id].departs_at == i64::MAX {
                    continue;
                }
                if self.schedule(id) {
                    // the initial fill at t = 0 is the same for every policy: not a burst
                    if let Some(n) = self.pods[id].node.filter(|_| self.t > 0) {
                        *per_minute.entry((n, self.t / 60)).or_default() += 1;
                    }
                } else {
                    self.pending.push_back(id);
                }
            }
            // real usage, history, metrics
            let utils = self.utils();
            for (n, u) in utils.iter().enumerate() {
                self.history[n].push(self.t, *u);
                if *u > 0.9 {
                    self.outcome.hot_node_minutes += STEP_SECS as f64 / 60.0;
                }
            }
            self.outcome.pending_pod_minutes += self
                .pending
                .iter()
                .filter(|id| self.pods[**id].departs_at != i64::MAX)
                .count() as f64
                * STEP_SECS as f64
                / 60.0;
            let mean = utils.iter().sum::<f64>() / utils.len() as f64;
            self.stddev_sum +=
                (utils.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / utils.len() as f64).sqrt();
            self.stddev_n += 1;
            self.util_samples.extend(utils);
            self.collect();
            self.deschedule();
            self.t += STEP_SECS;
        }
        self.util_samples.sort_by(f64::total_cmp);
        let idx = ((self.util_samples.len() as f64) * 0.99) as usize;
        self.outcome.p99_node_cpu = self
            .util_samples
            .get(idx.min(self.util_samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0);
        self.outcome.stddev_node_cpu = self.stddev_sum / self.stddev_n.max(1) as f64;
        self.outcome.max_pods_per_node_per_minute = per_minute.values().copied().max().unwrap_or(0);
        self.outcome.pending = self
            .pending
            .iter()
            .filter(|id| self.pods[**id].departs_at != i64::MAX)
            .count();
        self.outcome.running = self.pods.iter().filter(|p| p.node.is_some()).count();
        let round = |v: f64, d: i32| (v * 10f64.powi(d)).round() / 10f64.powi(d);
        self.outcome.hot_node_minutes = round(self.outcome.hot_node_minutes, 1);
        self.outcome.p99_node_cpu = round(self.outcome.p99_node_cpu, 3);
        self.outcome.stddev_node_cpu = round(self.outcome.stddev_node_cpu, 3);
        self.outcome
    }
}

#[derive(Debug, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub policies: Vec<Outcome>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioReport>,
}

pub fn run_all(scenarios: &[Scenario]) -> Report {
    run_all_with(scenarios, &Policy::default())
}

/// Every scenario through every policy, realload's with `policy`.
pub fn run_all_with(scenarios: &[Scenario], policy: &Policy) -> Report {
    Report {
        scenarios: scenarios
            .iter()
            .map(|s| ScenarioReport {
                name: s.name.into(),
                policies: PolicyKind::ALL
                    .iter()
                    .map(|k| Sim::with_policy(s, *k, policy.clone()).run())
                    .collect(),
            })
            .collect(),
    }
}

/// Diagnostics behind the table: the pending backlog over time and the faulty-node placements
/// made while realload's breaker had suspended load-awareness.
pub fn diagnostics(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| scenario | policy | pending pod-minutes | pods on faulty nodes | of which while the breaker was tripped | of which only faulty nodes fitted the pod |\n|---|---|---|---|---|---|\n",
    );
    for s in &report.scenarios {
        for p in &s.policies {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} |",
                s.name,
                p.name,
                p.pending_pod_minutes,
                p.pods_on_faulty_nodes,
                p.faulty_while_breaker_tripped,
                p.faulty_without_alternative
            );
        }
    }
    out
}

pub fn markdown(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for s in &report.scenarios {
        let _ = writeln!(out, "### {}\n", s.name);
        let _ = writeln!(
            out,
            "| policy | hot node-minutes (>90% CPU) | p99 node CPU | stddev node CPU | pods placed on faulty nodes | most pods on one node in a minute | pending | evictions |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for p in &s.policies {
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} | {:.3} | {} | {} | {} | {} |",
                p.name,
                p.hot_node_minutes,
                p.p99_node_cpu,
                p.stddev_node_cpu,
                p.pods_on_faulty_nodes,
                p.max_pods_per_node_per_minute,
                p.pending,
                p.evictions
            );
        }
        let _ = writeln!(out);
    }
    out
}

/// Seconds since the simulation's start for a timestamp (the inverse of [`ts`]).
pub fn since_start(t: Timestamp) -> SignedDuration {
    t.duration_since(ts(0))
}

#[cfg(test)]
mod tests;
