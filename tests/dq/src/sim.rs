//! One run: a scenario through one placement policy, step by step, with the accounting.
//!
//! - kube-scheduler: request fit, then NodeResourcesFit (LeastAllocated) and
//!   NodeResourcesBalancedAllocation (weight 1 each) and PodTopologySpread with its default
//!   soft constraints (weight 2), ties broken at random; one pod every [`SCHEDULE_GAP_MS`] in a
//!   burst; new pods tried as they arrive, the backlog every [`BACKLOG_RETRY`] seconds, in order.
//! - realload: the extender's own functions (`realload-common`'s assessment, judgement and
//!   breaker; the unknown-node cap with in-flight reservations), fed by the collector's own plan
//!   (`realload-extender`'s `collect::plan`) every minute, with bindings reaching its pod watch
//!   [`WATCH_LAG_MS`] after they are made (or at once in bind mode).
//! - crane: [`crate::crane`].
//! - descheduling every 10 minutes: realload's own plan (`realload-descheduler`), its workload
//!   cooldown kept across runs; or an upstream-style LowNodeUtilization pass by requests.
//! - Pods use nothing until [`STARTUP`] seconds after binding and run for their lifetime from
//!   then; an evicted pod's replacement is pending at once and is disrupted until it runs.

use std::collections::{BTreeMap, HashMap, VecDeque};

use jiff::Timestamp;
use realload_common::objects::{NodeView, Requests};
use realload_common::policy::Policy;
use realload_common::reading::RawReading;
use realload_common::scoring::{self, Allocatable, BoundPod, NodeInput};
use realload_common::workload::{UsageRatios, UsageTable};
use realload_extender::collect::plan::{self as collector, MetricResult, SkipReason};
use realload_extender::index::{BadSince, next_bad_since};
use serde::Serialize;

use crate::crane;

mod rebalance;
mod scheduler;
mod telemetry;

#[cfg(test)]
use crate::model::Fault;
use crate::model::{
    Arrival, BACKLOG_RETRY, DURATION, Rng, SCHEDULE_GAP_MS, STARTUP, STEP, Scenario, WARMUP,
    WATCH_LAG_MS, arrivals,
};
use crate::prom::{Answer, Sample, Series};

/// The placement policies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PolicyKind {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "default+LowNodeUtilization")]
    DefaultLnu,
    #[serde(rename = "crane (model)")]
    Crane,
    #[serde(rename = "realload")]
    Realload,
    #[serde(rename = "realload (bind)")]
    RealloadBind,
    #[serde(rename = "realload+descheduler")]
    RealloadDescheduler,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Default,
        PolicyKind::DefaultLnu,
        PolicyKind::Crane,
        PolicyKind::Realload,
        PolicyKind::RealloadBind,
        PolicyKind::RealloadDescheduler,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Default => "default",
            PolicyKind::DefaultLnu => "default+LowNodeUtilization",
            PolicyKind::Crane => "crane (model)",
            PolicyKind::Realload => "realload",
            PolicyKind::RealloadBind => "realload (bind)",
            PolicyKind::RealloadDescheduler => "realload+descheduler",
        }
    }

    fn realload(self) -> bool {
        matches!(
            self,
            PolicyKind::Realload | PolicyKind::RealloadBind | PolicyKind::RealloadDescheduler
        )
    }

    /// How long a binding takes to reach realload's ledger.
    fn lag_ms(self) -> i64 {
        if self == PolicyKind::RealloadBind {
            0
        } else {
            WATCH_LAG_MS
        }
    }
}

/// The outcome metrics, in report order: (name, lower is better).
pub const METRICS: [(&str, bool); 15] = [
    ("hot node-minutes", true),
    ("CPU demand above capacity (core-min)", true),
    ("CPU work delivered (core-min)", false),
    ("memory-pressure node-minutes", true),
    ("pending pod-minutes", true),
    ("time to schedule p50 (s)", true),
    ("time to schedule p99 (s)", true),
    ("faulty-node hot minutes", true),
    ("faulty-node CPU above capacity (core-min)", true),
    ("pods placed on faulty nodes", true),
    ("largest share of a burst on faulty nodes (%)", true),
    ("most pods on one node in a minute", true),
    ("evictions", true),
    ("most evictions of one workload", true),
    ("disrupted pod-minutes", true),
];

/// Simulated seconds → the timestamps the annotations carry.
pub fn ts(t: i64) -> Timestamp {
    Timestamp::from_second(1_763_769_600 + t).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ts_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(1_763_769_600_000 + ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[derive(Debug, Clone)]
struct Pod {
    workload: usize,
    arrived: i64,
    runs_for: i64,
    node: Option<usize>,
    bound_ms: i64,
    /// The burst the pod arrived in (its first placement only counts toward the burst).
    burst: Option<usize>,
    /// Counted in time-to-schedule (a new pod, not a replacement).
    original: bool,
    /// Set on a replacement: when its predecessor was evicted or lost.
    disrupted_since: Option<i64>,
    /// Tried at least once (then it waits for the backlog's next retry).
    tried: bool,
    done: bool,
}

impl Pod {
    fn started(&self) -> i64 {
        self.bound_ms / 1000 + STARTUP
    }

    fn ends(&self) -> i64 {
        self.started() + self.runs_for
    }
}

/// Everything realload's extender and collector know.
struct RealloadState {
    annotations: Vec<BTreeMap<String, String>>,
    readings: Vec<Vec<RawReading>>,
    bad_since: Vec<BadSince>,
    /// (scheduled at, ms; the unknown nodes the filter let the pod onto).
    in_flight: VecDeque<(i64, Vec<usize>)>,
    /// (reserved at, ms; the node realload ranked best; the pod as counted there).
    reserved: VecDeque<(i64, usize, BoundPod)>,
    /// Unknown nodes among all, as of the last step (the breaker's fleet condition).
    fleet_unknown: usize,
    last_evictions: BTreeMap<realload_descheduler::plan::WorkloadKey, Timestamp>,
    /// The collector's last published usage table, and its shares per workload index (looked
    /// up per candidate per pod: an index, not a key built each time).
    usage_table: UsageTable,
    usage: Vec<Option<UsageRatios>>,
}

/// One run.
pub struct Sim<'a> {
    scenario: &'a Scenario,
    kind: PolicyKind,
    policy: Policy,
    pods: Vec<Pod>,
    queue: VecDeque<usize>,
    /// Per node: pods bound to it.
    on_node: Vec<Vec<usize>>,
    /// Per node: requested CPU (m), memory (MiB).
    requested: Vec<(u64, u64)>,
    series: Vec<Series>,
    realload: RealloadState,
    annotator: crane::Annotator,
    /// Bindings per node (second), for crane's hot value.
    bindings: Vec<Vec<i64>>,
    rng: Rng,
    t: i64,
    metrics: BTreeMap<&'static str, f64>,
    waits: Vec<f64>,
    per_minute: HashMap<(usize, i64), usize>,
    evictions_per_workload: Vec<usize>,
    /// Per burst: its pods first placed on a node whose readings were faulty then.
    burst_on_faulty: Vec<usize>,
}

fn readings_of(policy: &Policy, annotations: &BTreeMap<String, String>) -> Vec<RawReading> {
    realload_common::objects::parse_readings(annotations, policy)
}

impl<'a> Sim<'a> {
    pub fn new(scenario: &'a Scenario, kind: PolicyKind, policy: Policy) -> Sim<'a> {
        let n = scenario.nodes.len();
        let readings: Vec<Vec<RawReading>> = (0..n)
            .map(|_| readings_of(&policy, &BTreeMap::new()))
            .collect();
        let bad_since = readings
            .iter()
            .map(|r| next_bad_since(&policy, None, r, ts(-WARMUP)))
            .collect();
        Sim {
            scenario,
            kind,
            pods: Vec::new(),
            queue: VecDeque::new(),
            on_node: vec![Vec::new(); n],
            requested: vec![(0, 0); n],
            series: vec![Series::default(); n],
            realload: RealloadState {
                annotations: vec![BTreeMap::new(); n],
                readings,
                bad_since,
                in_flight: VecDeque::new(),
                reserved: VecDeque::new(),
                fleet_unknown: 0,
                last_evictions: BTreeMap::new(),
                usage_table: UsageTable::default(),
                usage: vec![None; scenario.workloads.len()],
            },
            annotator: crane::Annotator::new(n, -WARMUP),
            bindings: vec![Vec::new(); n],
            rng: Rng::new(scenario.seed).fork(100 + kind as u64),
            t: -WARMUP,
            metrics: METRICS.iter().map(|(m, _)| (*m, 0.0)).collect(),
            waits: Vec::new(),
            per_minute: HashMap::new(),
            evictions_per_workload: vec![0; scenario.workloads.len()],
            burst_on_faulty: vec![0; scenario.bursts.len()],
            policy,
        }
    }

    fn add(&mut self, metric: &'static str, v: f64) {
        if self.t >= 0 {
            *self.metrics.entry(metric).or_default() += v;
        }
    }

    fn available(&self, n: usize) -> bool {
        !self.scenario.down(n, self.t) && !self.scenario.cordoned(n, self.t)
    }

    fn fits(&self, n: usize, pod: usize) -> bool {
        let w = &self.scenario.workloads[self.pods[pod].workload];
        let node = &self.scenario.nodes[n];
        let (c, m) = self.requested[n];
        self.available(n)
            && c + w.cpu_request_m <= node.cpu_m
            && m + w.mem_request_mi <= node.mem_mi
            && self.on_node[n].len() < 110
    }

    fn bind(&mut self, pod: usize, n: usize, at_ms: i64) {
        let w = &self.scenario.workloads[self.pods[pod].workload];
        self.requested[n].0 += w.cpu_request_m;
        self.requested[n].1 += w.mem_request_mi;
        self.on_node[n].push(pod);
        self.pods[pod].node = Some(n);
        self.pods[pod].bound_ms = at_ms;
        self.bindings[n].push(at_ms / 1000);
        if self.t > 0 {
            *self.per_minute.entry((n, self.t / 60)).or_default() += 1;
        }
        // only a pod's first placement counts toward its burst
        let burst = self.pods[pod].burst.take();
        if self.scenario.reading_fault(n, self.t) {
            self.add("pods placed on faulty nodes", 1.0);
            if let Some(b) = burst {
                self.burst_on_faulty[b] += 1;
            }
        }
        let p = &self.pods[pod];
        if p.original && p.arrived >= 0 {
            self.waits
                .push((at_ms as f64 / 1000.0 - p.arrived as f64).max(0.0));
        }
    }

    /// Takes a pod off its node; with `replace`, its replacement (the rest of its run) is queued.
    fn release(&mut self, pod: usize, replace: bool) {
        let Some(n) = self.pods[pod].node else {
            return;
        };
        let w = &self.scenario.workloads[self.pods[pod].workload];
        self.requested[n].0 -= w.cpu_request_m;
        self.requested[n].1 -= w.mem_request_mi;
        self.on_node[n].retain(|p| *p != pod);
        self.pods[pod].done = true;
        self.pods[pod].node = None;
        if replace {
            let p = &self.pods[pod];
            let remaining = (p.ends() - self.t).max(60);
            let replacement = Pod {
                workload: p.workload,
                arrived: self.t,
                runs_for: remaining,
                node: None,
                bound_ms: 0,
                burst: None,
                original: false,
                disrupted_since: Some(self.t),
                tried: false,
                done: false,
            };
            self.pods.push(replacement);
            self.queue.push_back(self.pods.len() - 1);
        }
    }

    // ---- kube-scheduler ------------------------------------------------------------------

    // ---- collectors ----------------------------------------------------------------------

    // ---- descheduling --------------------------------------------------------------------

    // ---- the loop ------------------------------------------------------------------------

    fn arrive(&mut self, a: &Arrival) {
        self.pods.push(Pod {
            workload: a.workload,
            arrived: a.at,
            runs_for: a.runs_for,
            node: None,
            bound_ms: 0,
            burst: a.burst,
            original: true,
            disrupted_since: None,
            tried: false,
            done: false,
        });
        self.queue.push_back(self.pods.len() - 1);
    }

    fn node_events(&mut self) {
        for n in 0..self.scenario.nodes.len() {
            let lost = self.scenario.down(n, self.t) || self.scenario.cordoned(n, self.t);
            if lost && !self.on_node[n].is_empty() {
                for p in self.on_node[n].clone() {
                    self.release(p, true);
                }
            }
        }
    }

    fn run_queue(&mut self) {
        let retry_tick = self.t.rem_euclid(BACKLOG_RETRY) == 0;
        let mut k = 0;
        let mut still = VecDeque::with_capacity(self.queue.len());
        while let Some(id) = self.queue.pop_front() {
            if self.pods[id].done {
                continue;
            }
            // new pods are tried as they come; the backlog waits for its retry, in order
            if self.pods[id].tried && !retry_tick {
                still.push_back(id);
                continue;
            }
            let now_ms = self.t * 1000 + k * SCHEDULE_GAP_MS;
            k += 1;
            if !self.schedule(id, now_ms) {
                self.pods[id].tried = true;
                still.push_back(id);
            }
        }
        self.queue = still;
    }

    fn account(&mut self) {
        let t = self.t;
        let s = self.scenario;
        let minutes = STEP as f64 / 60.0;
        for n in 0..s.nodes.len() {
            let node = &s.nodes[n];
            let (mut cpu, mut mem) = (node.system_cpu_m(), node.system_mem_mi());
            for p in &self.on_node[n] {
                let pod = &self.pods[*p];
                if t >= pod.started() {
                    let w = &s.workloads[pod.workload];
                    cpu += w.cpu_m(t, s.cycle_phase);
                    mem += w.mem_mi(t, s.cycle_phase);
                }
            }
            let cap = node.cpu_m as f64;
            let over = (cpu - cap).max(0.0) / 1000.0 * minutes;
            let hot = cpu / cap >= 0.9;
            self.add(
                "CPU work delivered (core-min)",
                cpu.min(cap) / 1000.0 * minutes,
            );
            self.add("CPU demand above capacity (core-min)", over);
            if hot {
                self.add("hot node-minutes", minutes);
            }
            if mem / node.mem_mi as f64 > 0.95 {
                self.add("memory-pressure node-minutes", minutes);
            }
            if s.reading_fault(n, t) {
                if hot {
                    self.add("faulty-node hot minutes", minutes);
                }
                self.add("faulty-node CPU above capacity (core-min)", over);
            }
            // what the exporter reports: utilisation as busy time, faults applied
            let util = (cpu / cap).min(1.0);
            let mem_util = (mem / node.mem_mi as f64).min(1.0);
            let gone = s.down(n, t)
                || s.faults
                    .iter()
                    .any(|f| matches!(f, crate::model::Fault::Missing { .. }) && f.hits(n, t));
            let zero = s
                .faults
                .iter()
                .any(|f| matches!(f, crate::model::Fault::Zero { .. }) && f.hits(n, t));
            let nan = s
                .faults
                .iter()
                .any(|f| matches!(f, crate::model::Fault::Nan { .. }) && f.hits(n, t));
            let (c, m) = if gone {
                (None, None)
            } else if zero {
                (Some(Sample::Value(0.0)), Some(Sample::Value(0.0)))
            } else if nan {
                (Some(Sample::Nan), Some(Sample::Value(mem_util)))
            } else {
                (Some(Sample::Value(util)), Some(Sample::Value(mem_util)))
            };
            self.series[n].push(t, c, m);
        }
        let pending = self
            .queue
            .iter()
            .filter(|id| !self.pods[**id].done && self.pods[**id].arrived <= t)
            .count();
        self.add("pending pod-minutes", pending as f64 * minutes);
        // a disrupted replacement counts until it runs
        let disrupted = self
            .pods
            .iter()
            .filter(|p| {
                !p.done && p.disrupted_since.is_some() && (p.node.is_none() || t < p.started())
            })
            .count();
        self.add("disrupted pod-minutes", disrupted as f64 * minutes);
    }

    /// Runs the scenario to its end; the metrics by name.
    pub fn run(mut self) -> BTreeMap<&'static str, f64> {
        let arrivals = arrivals(self.scenario);
        let mut next = 0;
        while self.t < DURATION {
            while next < arrivals.len() && arrivals[next].at <= self.t {
                let a = arrivals[next];
                self.arrive(&a);
                next += 1;
            }
            // departures
            for n in 0..self.on_node.len() {
                let ended: Vec<usize> = self.on_node[n]
                    .iter()
                    .copied()
                    .filter(|p| self.pods[*p].ends() <= self.t)
                    .collect();
                for p in ended {
                    self.release(p, false);
                }
            }
            self.node_events();
            if self.t > 0 && self.t.rem_euclid(600) == 0 {
                match self.kind {
                    PolicyKind::RealloadDescheduler => self.realload_deschedule(),
                    PolicyKind::DefaultLnu => self.low_node_utilization(),
                    _ => {}
                }
            }
            if self.kind.realload() {
                self.refresh_fleet();
            }
            self.run_queue();
            self.account();
            if self.kind.realload() {
                self.collect();
            }
            if self.kind == PolicyKind::Crane {
                self.crane_annotate();
            }
            self.t += STEP;
        }
        // pods still waiting at the end waited at least this long
        for p in &self.pods {
            if p.original && !p.done && p.node.is_none() && p.arrived >= 0 {
                self.waits.push((DURATION - p.arrived) as f64);
            }
        }
        self.waits.sort_by(f64::total_cmp);
        let quantile = |q: f64, v: &[f64]| -> f64 {
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() as f64 - 1.0) * q).round() as usize]
            }
        };
        let p50 = quantile(0.5, &self.waits);
        let p99 = quantile(0.99, &self.waits);
        self.metrics.insert("time to schedule p50 (s)", p50);
        self.metrics.insert("time to schedule p99 (s)", p99);
        self.metrics.insert(
            "most evictions of one workload",
            self.evictions_per_workload
                .iter()
                .copied()
                .max()
                .unwrap_or(0) as f64,
        );
        let burst_share = self.largest_burst_share_on_faulty();
        self.metrics
            .insert("largest share of a burst on faulty nodes (%)", burst_share);
        self.metrics.insert(
            "most pods on one node in a minute",
            self.per_minute.values().copied().max().unwrap_or(0) as f64,
        );
        self.metrics
    }

    /// The largest share (%) of one burst whose pods were first placed on a node with faulty
    /// readings at that moment.
    fn largest_burst_share_on_faulty(&self) -> f64 {
        self.scenario
            .bursts
            .iter()
            .zip(&self.burst_on_faulty)
            .map(|(&(_, count), &on_faulty)| 100.0 * on_faulty as f64 / count.max(1) as f64)
            .fold(0.0, f64::max)
    }

    /// Pods in the run and where they are (for the mechanics tests): (arrived, running,
    /// pending, done).
    #[cfg(test)]
    pub(crate) fn census(&self) -> (usize, usize, usize, usize) {
        let running = self.pods.iter().filter(|p| p.node.is_some()).count();
        let pending = self
            .pods
            .iter()
            .filter(|p| !p.done && p.node.is_none())
            .count();
        let done = self.pods.iter().filter(|p| p.done).count();
        (self.pods.len(), running, pending, done)
    }
}

#[cfg(test)]
mod tests;
