//! What is simulated: nodes, workloads and their real usage, arrivals, scenarios and faults.
//! Everything is drawn from one seed, so every policy sees the same cluster, the same workload
//! and the same faults.

use std::f64::consts::TAU;

/// One simulation step, in seconds.
pub const STEP: i64 = 10;
/// Simulated time before measurement starts (t < 0): the metric windows fill, the cluster
/// settles. Nothing before t = 0 is counted.
pub const WARMUP: i64 = 3600;
/// Measured time.
pub const DURATION: i64 = 2 * 3600;
/// kube-scheduler places one pod every 5 ms in a burst (10 pods of one request were scored
/// within 54 ms on kube-scheduler 1.36).
pub const SCHEDULE_GAP_MS: i64 = 5;
/// A binding reaches the extender's pod watch this long after it is made (the first binding
/// of a burst reached it 64 ms after the pod was scored on kube-scheduler 1.36).
pub const WATCH_LAG_MS: i64 = 100;
/// From binding to running: image pull and start. A pod uses nothing before.
pub const STARTUP: i64 = 20;
/// The pending backlog is retried every 30 s; new pods are tried as they arrive.
pub const BACKLOG_RETRY: i64 = 30;
/// A "day" of the shared load cycle, compressed so that a two-hour run sees a rise and a fall.
pub const CYCLE: f64 = 4.0 * 3600.0;

/// A deterministic random stream (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A stream for one purpose, independent of the draws made on this one.
    pub fn fork(&self, salt: u64) -> Rng {
        Rng::new(self.0 ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }
}

/// A node: its allocatable CPU (millicores) and memory (MiB), and its zone.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub cpu_m: u64,
    pub mem_mi: u64,
    pub zone: usize,
}

impl NodeSpec {
    /// What a node uses with no pods on it: the kernel, kubelet, the container runtime and the
    /// node's DaemonSets (kube-proxy, CNI, node-exporter). 100m + 2% of the cores and 512 MiB + 4%
    /// of the memory, the order of what such nodes report idle. Without it an empty node would
    /// report 0, which no real node does (and which realload rightly treats as a broken exporter).
    pub fn system_cpu_m(&self) -> f64 {
        100.0 + 0.02 * self.cpu_m as f64
    }

    pub fn system_mem_mi(&self) -> f64 {
        512.0 + 0.04 * self.mem_mi as f64
    }
}

/// A workload: what its pods request, and how their real usage relates to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub name: String,
    pub cpu_request_m: u64,
    pub mem_request_mi: u64,
    /// Real CPU as a share of the request (0.2 = asks 5× too much; 1.5 = uses more).
    pub cpu_usage: f64,
    /// Real memory as a share of the request.
    pub mem_usage: f64,
    /// The workload's own oscillation: relative amplitude, period (s), phase.
    pub amplitude: f64,
    pub period: f64,
    pub phase: f64,
    /// How strongly it follows the cluster's shared load cycle (0..1).
    pub diurnal: f64,
}

/// The cluster's shared load cycle: all workloads rise and fall together, more or less.
pub fn cycle(t: i64, phase: f64) -> f64 {
    0.35 * ((t as f64) * TAU / CYCLE + phase).sin()
}

impl Workload {
    /// Real CPU use of one pod (millicores) at `t`, given the cluster's cycle phase.
    pub fn cpu_m(&self, t: i64, cycle_phase: f64) -> f64 {
        let own = 1.0 + self.amplitude * ((t as f64) * TAU / self.period + self.phase).sin();
        let shared = 1.0 + self.diurnal * cycle(t, cycle_phase);
        (self.cpu_request_m as f64 * self.cpu_usage * own * shared).max(0.0)
    }

    /// Real memory of one pod (MiB): steady, with a slow drift for the shared cycle.
    pub fn mem_mi(&self, t: i64, cycle_phase: f64) -> f64 {
        let shared = 1.0 + 0.3 * self.diurnal * cycle(t, cycle_phase);
        (self.mem_request_mi as f64 * self.mem_usage * shared).max(0.0)
    }
}

/// A mixed fleet: 40% 8-core/32 GiB, 40% 16-core/64 GiB, 20% 32-core/128 GiB, in 3 zones.
pub fn nodes(count: usize, rng: &mut Rng) -> Vec<NodeSpec> {
    (0..count)
        .map(|i| {
            let r = rng.unit();
            let (cpu, mem) = if r < 0.4 {
                (8_000, 32_768)
            } else if r < 0.8 {
                (16_000, 65_536)
            } else {
                (32_000, 131_072)
            };
            NodeSpec {
                name: format!("n{i:02}"),
                cpu_m: cpu,
                mem_mi: mem,
                zone: i % 3,
            }
        })
        .collect()
}

/// Forty workloads in four classes: over-requesting (30%), accurate (35%), under-requesting
/// (20%) and memory-bound (15%: light on CPU, using more memory than they request).
pub fn workloads(rng: &mut Rng) -> Vec<Workload> {
    let cpu_requests = [250u64, 500, 1000, 2000, 3000, 4000];
    (0..40)
        .map(|i| {
            let class = rng.unit();
            let cpu = cpu_requests[rng.below(cpu_requests.len() as u64) as usize];
            // memory requests of 2 MiB per CPU millicore (+512 MiB), 6 (+2 GiB) for the
            // memory-bound ones
            let (cpu_usage, mem_usage, mem_request) = if class < 0.30 {
                (rng.range(0.15, 0.5), rng.range(0.3, 0.6), 2 * cpu + 512)
            } else if class < 0.65 {
                (rng.range(0.6, 1.0), rng.range(0.5, 0.9), 2 * cpu + 512)
            } else if class < 0.85 {
                (rng.range(1.2, 1.8), rng.range(0.6, 1.0), 2 * cpu + 512)
            } else {
                (rng.range(0.2, 0.5), rng.range(1.0, 1.6), 6 * cpu + 2048)
            };
            Workload {
                name: format!("w{i:02}"),
                cpu_request_m: cpu,
                mem_request_mi: mem_request,
                cpu_usage,
                mem_usage,
                amplitude: if i % 3 == 0 { 0.4 } else { 0.1 },
                period: rng.range(1800.0, 5400.0),
                phase: rng.range(0.0, TAU),
                diurnal: rng.range(0.3, 1.0),
            }
        })
        .collect()
}

/// A reading fault on some nodes, from `from` until `until` (simulated seconds).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// node-exporter reports 0 (CPU idle, memory free): zeros enter Prometheus' windows.
    Zero {
        nodes: Vec<usize>,
        from: i64,
        until: i64,
    },
    /// CPU samples are NaN (a counter reset the rate cannot span).
    Nan {
        nodes: Vec<usize>,
        from: i64,
        until: i64,
    },
    /// node-exporter is down: no samples at all; the series disappear once the windows empty.
    Missing {
        nodes: Vec<usize>,
        from: i64,
        until: i64,
    },
    /// Annotation writes to these nodes fail (both collectors): their readings go stale.
    Stale {
        nodes: Vec<usize>,
        from: i64,
        until: i64,
    },
    /// Prometheus is down: every query fails.
    Outage { from: i64, until: i64 },
}

impl Fault {
    fn active(from: i64, until: i64, t: i64) -> bool {
        (from..until).contains(&t)
    }

    /// Whether this fault affects node `n`'s readings at `t`.
    pub fn hits(&self, n: usize, t: i64) -> bool {
        match self {
            Fault::Zero { nodes, from, until }
            | Fault::Nan { nodes, from, until }
            | Fault::Missing { nodes, from, until }
            | Fault::Stale { nodes, from, until } => {
                nodes.contains(&n) && Fault::active(*from, *until, t)
            }
            Fault::Outage { from, until } => Fault::active(*from, *until, t),
        }
    }
}

/// Something that happens to a node itself.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// The node stops (NotReady) at `at`: its pods are lost and recreated elsewhere, its exporter
    /// is gone; it comes back empty at `until`.
    Failure { node: usize, at: i64, until: i64 },
    /// The node is cordoned and drained at `at`: its pods are evicted; it stays empty.
    Drain { node: usize, at: i64 },
}

/// A scenario: the load and what goes wrong, drawn for one seed.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub seed: u64,
    pub nodes: Vec<NodeSpec>,
    pub workloads: Vec<Workload>,
    pub cycle_phase: f64,
    /// Pods per minute arriving in steady state.
    pub arrival_per_min: f64,
    /// (time, count): a burst of `count` pods created within 10 seconds.
    pub bursts: Vec<(i64, usize)>,
    pub faults: Vec<Fault>,
    pub node_events: Vec<NodeEvent>,
    pub extender_weight: i64,
    /// realload counts a pod at its workload's true mean usage from the start (an upper bound
    /// for what learning usage can buy), instead of what its collector has learned so far.
    pub usage_oracle: bool,
}

/// The scenario names, in report order.
pub const SCENARIOS: [&str; 8] = [
    "steady",
    "burst",
    "zero-reading exporters",
    "NaN and missing series",
    "stale readings",
    "Prometheus outage",
    "node failure and drain",
    "mixed",
];

/// `count` distinct node indices.
fn pick(rng: &mut Rng, count: usize, of: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..of).collect();
    for i in 0..count.min(of) {
        let j = i + rng.below((of - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(count.min(of));
    all.sort_unstable();
    all
}

impl Scenario {
    /// Scenario `name` for `seed` (the cluster and workload are the seed's; the faults and
    /// events the scenario's, on nodes drawn from the seed).
    pub fn new(name: &'static str, seed: u64) -> Scenario {
        let rng = Rng::new(seed);
        let nodes = nodes(40, &mut rng.fork(1));
        let workloads = workloads(&mut rng.fork(2));
        let cycle_phase = rng.fork(3).range(0.0, TAU);
        let mut faults_rng = rng.fork(4);
        let n = nodes.len();
        let mut s = Scenario {
            name,
            seed,
            nodes,
            workloads,
            cycle_phase,
            arrival_per_min: 2.5,
            bursts: Vec::new(),
            faults: Vec::new(),
            node_events: Vec::new(),
            extender_weight: 5,
            usage_oracle: false,
        };
        let jitter = |rng: &mut Rng, t: i64| t + 60 * rng.below(10) as i64;
        match name {
            "steady" => {}
            "burst" => {
                s.bursts = vec![
                    (jitter(&mut faults_rng, 1200), 100),
                    (jitter(&mut faults_rng, 4200), 100),
                ]
            }
            "zero-reading exporters" => {
                s.faults = vec![Fault::Zero {
                    nodes: pick(&mut faults_rng, 4, n),
                    from: jitter(&mut faults_rng, 900),
                    until: 5400,
                }];
                s.bursts = vec![(jitter(&mut faults_rng, 2400), 80)];
            }
            "NaN and missing series" => {
                let picked = pick(&mut faults_rng, 6, n);
                s.faults = vec![
                    Fault::Nan {
                        nodes: picked[..3].to_vec(),
                        from: jitter(&mut faults_rng, 900),
                        until: 4800,
                    },
                    Fault::Missing {
                        nodes: picked[3..].to_vec(),
                        from: jitter(&mut faults_rng, 1200),
                        until: 5400,
                    },
                ];
                s.bursts = vec![(jitter(&mut faults_rng, 2400), 80)];
            }
            "stale readings" => {
                s.faults = vec![Fault::Stale {
                    nodes: pick(&mut faults_rng, 12, n),
                    from: jitter(&mut faults_rng, 1500),
                    until: 5400,
                }];
            }
            "Prometheus outage" => {
                let from = jitter(&mut faults_rng, 2400);
                s.faults = vec![Fault::Outage {
                    from,
                    until: from + 2400,
                }];
                s.bursts = vec![(from + 1200, 80)];
            }
            "node failure and drain" => {
                let picked = pick(&mut faults_rng, 2, n);
                let at = jitter(&mut faults_rng, 1800);
                s.node_events = vec![
                    NodeEvent::Failure {
                        node: picked[0],
                        at,
                        until: at + 1800,
                    },
                    NodeEvent::Drain {
                        node: picked[1],
                        at: at + 900,
                    },
                ];
            }
            "mixed" => {
                let picked = pick(&mut faults_rng, 9, n);
                s.bursts = vec![(jitter(&mut faults_rng, 2000), 80)];
                s.faults = vec![
                    Fault::Zero {
                        nodes: picked[..2].to_vec(),
                        from: 900,
                        until: 6000,
                    },
                    Fault::Stale {
                        nodes: picked[2..8].to_vec(),
                        from: 3000,
                        until: 5000,
                    },
                    Fault::Outage {
                        from: 5400,
                        until: 6000,
                    },
                ];
                s.node_events = vec![NodeEvent::Failure {
                    node: picked[8],
                    at: 3600,
                    until: 5400,
                }];
            }
            _ => {}
        }
        s
    }

    /// Whether a reading fault (not an outage) hits node `n` at `t`.
    pub fn reading_fault(&self, n: usize, t: i64) -> bool {
        self.faults
            .iter()
            .any(|f| !matches!(f, Fault::Outage { .. }) && f.hits(n, t))
    }

    pub fn outage(&self, t: i64) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::Outage { .. }) && f.hits(0, t))
    }

    /// Whether node `n` is down (failed) at `t`.
    pub fn down(&self, n: usize, t: i64) -> bool {
        self.node_events.iter().any(|e| {
            matches!(e, NodeEvent::Failure { node, at, until } if *node == n && (*at..*until).contains(&t))
        })
    }

    /// Whether node `n` is cordoned at `t`.
    pub fn cordoned(&self, n: usize, t: i64) -> bool {
        self.node_events
            .iter()
            .any(|e| matches!(e, NodeEvent::Drain { node, at } if *node == n && t >= *at))
    }
}

/// One pod arrival: when, which workload, how long it runs once started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub at: i64,
    pub workload: usize,
    pub runs_for: i64,
    /// The burst (index into `Scenario::bursts`) this pod arrives in, if any.
    pub burst: Option<usize>,
}

/// The arrivals of a scenario: an initial fill to about 45% of the cluster's CPU requested, a
/// steady stream, and the bursts. Identical for every policy.
pub fn arrivals(s: &Scenario) -> Vec<Arrival> {
    let mut rng = Rng::new(s.seed).fork(5);
    let capacity: u64 = s.nodes.iter().map(|n| n.cpu_m).sum();
    let mut out = Vec::new();
    let mut filled = 0u64;
    // the long-running part of the cluster arrives over the first half of the warm-up, so
    // that every policy places it with readings to go by
    while filled < capacity * 45 / 100 {
        let w = rng.below(s.workloads.len() as u64) as usize;
        filled += s.workloads[w].cpu_request_m;
        out.push(Arrival {
            at: -WARMUP + rng.below((WARMUP / 2) as u64) as i64,
            workload: w,
            runs_for: 2 * 3600 + rng.below(3 * 3600) as i64,
            burst: None,
        });
    }
    let mut t = -WARMUP;
    while t < DURATION {
        let expected = s.arrival_per_min * STEP as f64 / 60.0;
        let mut count = expected.floor() as usize;
        if rng.unit() < expected.fract() {
            count += 1;
        }
        for _ in 0..count {
            out.push(Arrival {
                at: t + rng.below(STEP as u64) as i64,
                workload: rng.below(s.workloads.len() as u64) as usize,
                runs_for: 600 + rng.below(3000) as i64,
                burst: None,
            });
        }
        t += STEP;
    }
    for (b, &(at, count)) in s.bursts.iter().enumerate() {
        for k in 0..count {
            out.push(Arrival {
                at: at + (k as i64 % 10),
                workload: rng.below(s.workloads.len() as u64) as usize,
                runs_for: 1800 + rng.below(1800) as i64,
                burst: Some(b),
            });
        }
    }
    out.sort_by_key(|a| a.at);
    out
}
