//! Decision quality: a deterministic, seeded, discrete-time cluster simulator that runs the same
//! workload through several placement policies side by side, over many seeds, and reports every
//! outcome as a mean with its 95% interval, and win rates per pair of policies.
//!
//! - [`model`]: nodes, workloads, arrivals, scenarios, faults;
//! - [`prom`]: node-exporter and Prometheus as the collectors see them;
//! - [`crane`]: crane-scheduler, rule by rule from its source;
//! - [`sim`]: one run, with the accounting;
//! - [`stats`]: means, intervals, win rates.
#![forbid(unsafe_code)]

pub mod crane;
pub mod model;
pub mod prom;
pub mod sim;
pub mod stats;

use std::collections::BTreeMap;

use realload_common::policy::Policy;
use serde::Serialize;

use model::{SCENARIOS, Scenario};
use sim::{METRICS, PolicyKind, Sim};
use stats::{Summary, WinRate, win_rate};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub seeds: Vec<u64>,
    pub scenarios: Vec<&'static str>,
    pub policies: Vec<PolicyKind>,
    /// realload's policy (the other policies ignore it).
    pub policy: Policy,
    pub extender_weight: i64,
    /// See [`Scenario::usage_oracle`].
    pub usage_oracle: bool,
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seeds: (1..=20).collect(),
            scenarios: SCENARIOS.to_vec(),
            policies: PolicyKind::ALL.to_vec(),
            policy: Policy::default(),
            extender_weight: 5,
            usage_oracle: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// One scenario × policy over every seed.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub scenario: String,
    pub policy: String,
    pub metrics: BTreeMap<String, Summary>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub seeds: Vec<u64>,
    pub extender_weight: i64,
    pub cells: Vec<Cell>,
    pub win_rates: Vec<WinRate>,
}

/// The metrics the win-rate table compares.
pub const WIN_METRICS: [&str; 4] = [
    "hot node-minutes",
    "CPU demand above capacity (core-min)",
    "pending pod-minutes",
    "time to schedule p99 (s)",
];

/// The pairs the win-rate table compares: (a, b), "how often a beats b".
pub const PAIRS: [(PolicyKind, PolicyKind); 6] = [
    (PolicyKind::Realload, PolicyKind::Default),
    (PolicyKind::Realload, PolicyKind::Crane),
    (PolicyKind::Crane, PolicyKind::Default),
    (PolicyKind::RealloadBind, PolicyKind::Realload),
    (PolicyKind::RealloadDescheduler, PolicyKind::Realload),
    (PolicyKind::DefaultLnu, PolicyKind::Default),
];

/// One run's key and its metrics.
type RunResult = ((&'static str, u64, PolicyKind), BTreeMap<&'static str, f64>);

/// Runs every (seed, scenario, policy), on `threads` threads.
pub fn run(config: &Config) -> Report {
    let mut jobs = Vec::new();
    for &scenario in &config.scenarios {
        for &seed in &config.seeds {
            for &policy in &config.policies {
                jobs.push((scenario, seed, policy));
            }
        }
    }
    let results: Vec<RunResult> = {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let out = std::sync::Mutex::new(Vec::with_capacity(jobs.len()));
        std::thread::scope(|scope| {
            for _ in 0..config.threads.max(1) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(name, seed, kind)) = jobs.get(i) else {
                            return;
                        };
                        let mut scenario = Scenario::new(name, seed);
                        scenario.extender_weight = config.extender_weight;
                        scenario.usage_oracle = config.usage_oracle;
                        let metrics = Sim::new(&scenario, kind, config.policy.clone()).run();
                        out.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(((name, seed, kind), metrics));
                    }
                });
            }
        });
        out.into_inner().unwrap_or_else(|p| p.into_inner())
    };
    let lookup: BTreeMap<(&str, u64, PolicyKind), &BTreeMap<&'static str, f64>> =
        results.iter().map(|(k, v)| (*k, v)).collect();
    let value = |scenario: &str, seed: u64, kind: PolicyKind, metric: &str| -> f64 {
        lookup
            .get(&(scenario, seed, kind))
            .and_then(|m| m.get(metric))
            .copied()
            .unwrap_or(0.0)
    };
    let mut cells = Vec::new();
    for &scenario in &config.scenarios {
        for &kind in &config.policies {
            let metrics = METRICS
                .iter()
                .map(|(m, _)| {
                    let values: Vec<f64> = config
                        .seeds
                        .iter()
                        .map(|&seed| value(scenario, seed, kind, m))
                        .collect();
                    (m.to_string(), Summary::of(&values))
                })
                .collect();
            cells.push(Cell {
                scenario: scenario.to_string(),
                policy: kind.name().to_string(),
                metrics,
            });
        }
    }
    let mut win_rates = Vec::new();
    for (a, b) in PAIRS {
        if !config.policies.contains(&a) || !config.policies.contains(&b) {
            continue;
        }
        for metric in WIN_METRICS {
            let lower = METRICS
                .iter()
                .find(|(m, _)| *m == metric)
                .is_none_or(|(_, lower)| *lower);
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for &scenario in &config.scenarios {
                for &seed in &config.seeds {
                    xs.push(value(scenario, seed, a, metric));
                    ys.push(value(scenario, seed, b, metric));
                }
            }
            let (wins, ties, losses) = win_rate(&xs, &ys, lower);
            let cells = (wins + ties + losses).max(1);
            win_rates.push(WinRate {
                a: a.name().into(),
                b: b.name().into(),
                metric: metric.into(),
                wins,
                ties,
                losses,
                rate: (wins as f64 + ties as f64 / 2.0) / cells as f64,
            });
        }
    }
    Report {
        seeds: config.seeds.clone(),
        extender_weight: config.extender_weight,
        cells,
        win_rates,
    }
}

fn fmt(s: &Summary) -> String {
    let digits = if s.mean.abs() >= 100.0 { 0 } else { 1 };
    format!("{:.*} ± {:.*}", digits, s.mean, digits, s.ci95)
}

/// The report as markdown: per scenario, every policy's outcomes (mean ± 95% interval over the
/// seeds), then the win-rate table.
pub fn markdown(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} seeds ({}…{}), extender weight {}; every figure: mean ± half-width of its 95% interval.\n",
        report.seeds.len(),
        report.seeds.first().copied().unwrap_or(0),
        report.seeds.last().copied().unwrap_or(0),
        report.extender_weight
    );
    let columns = [
        ("hot node-minutes", "hot node-min"),
        (
            "CPU demand above capacity (core-min)",
            "CPU above capacity (core-min)",
        ),
        ("CPU work delivered (core-min)", "CPU work (core-min)"),
        ("memory-pressure node-minutes", "memory-pressure node-min"),
        ("pending pod-minutes", "pending pod-min"),
        ("time to schedule p50 (s)", "TTS p50 (s)"),
        ("time to schedule p99 (s)", "TTS p99 (s)"),
        ("faulty-node hot minutes", "faulty-node hot min"),
        (
            "faulty-node CPU above capacity (core-min)",
            "faulty-node CPU above cap",
        ),
        (
            "largest share of a burst on faulty nodes (%)",
            "burst on faulty nodes (max %)",
        ),
        ("most pods on one node in a minute", "most pods/node/min"),
        ("evictions", "evictions"),
        (
            "most evictions of one workload",
            "most evictions of a workload",
        ),
        ("disrupted pod-minutes", "disrupted pod-min"),
    ];
    let mut scenario = String::new();
    for cell in &report.cells {
        if cell.scenario != scenario {
            scenario = cell.scenario.clone();
            let _ = writeln!(out, "\n### {scenario}\n");
            let _ = write!(out, "| policy |");
            for (_, short) in &columns {
                let _ = write!(out, " {short} |");
            }
            let _ = write!(out, "\n|---|");
            for _ in &columns {
                let _ = write!(out, "---|");
            }
            let _ = writeln!(out);
        }
        let _ = write!(out, "| {} |", cell.policy);
        for (metric, _) in &columns {
            let text = cell.metrics.get(*metric).map(fmt).unwrap_or_default();
            let _ = write!(out, " {text} |");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\n### Win rates over seed × scenario cells\n\n| a | b | metric | a better | tie | b better | rate |\n|---|---|---|---|---|---|---|"
    );
    for w in &report.win_rates {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.0}% |",
            w.a,
            w.b,
            w.metric,
            w.wins,
            w.ties,
            w.losses,
            w.rate * 100.0
        );
    }
    out
}
