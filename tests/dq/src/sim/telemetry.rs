//! What the load-aware policies see: Prometheus windows over the node model, realload's collector
//! writing annotations, crane's annotator, the extender's watch lag.

use super::*;
use realload_common::workload::{PodSample, learn};

impl Sim<'_> {
    pub(super) fn answer(&self, n: usize, metric: &str) -> Option<Answer> {
        let s = &self.series[n];
        let t = self.t;
        Some(match metric {
            "cpu-avg-5m" => s.cpu_avg_5m(t),
            "cpu-max-1h" => s.cpu_max(t, 3600),
            "mem-avg-5m" => s.mem_avg_5m(t),
            "cpu-sustained-10m" => s.cpu_sustained_10m(t),
            _ => return None,
        })
    }

    /// realload's collector learning usage (`workloadUsage`), with the product's own
    /// [`learn`]: every running pod older than a minute measured as the default `cpuQuery`
    /// sees it (the mean of per-minute rates since it started, at most an hour back), every
    /// `period`; nothing is published while Prometheus is down.
    pub(super) fn learn_usage(&mut self) {
        let usage = &self.policy.workload_usage;
        let period = usage.period.as_secs().max(1);
        if !usage.enabled || self.t.rem_euclid(period) != 0 || self.scenario.outage(self.t) {
            return;
        }
        let key = |w: usize| self.workload_key(w);
        let phase = self.scenario.cycle_phase;
        let mut samples = Vec::new();
        for pods in &self.on_node {
            for &p in pods {
                let pod = &self.pods[p];
                let started = pod.bound_ms / 1000;
                if self.t - started < 60 {
                    continue;
                }
                let w = &self.scenario.workloads[pod.workload];
                let from = started.max(self.t - 3600);
                let points: Vec<i64> = (from..=self.t).step_by(60).collect();
                let mean = |f: &dyn Fn(i64) -> f64| {
                    points.iter().map(|&s| f(s)).sum::<f64>() / points.len() as f64
                };
                samples.push(PodSample {
                    workload: std::sync::Arc::new(key(pod.workload)),
                    cpu_request_millis: w.cpu_request_m,
                    memory_request_bytes: w.mem_request_mi << 20,
                    cpu_cores: Some(mean(&|s| w.cpu_m(s, phase)) / 1000.0),
                    memory_bytes: Some(mean(&|s| w.mem_mi(s, phase)) * 1048576.0),
                });
            }
        }
        let table = learn(&samples, ts(self.t));
        self.realload.usage = (0..self.scenario.workloads.len())
            .map(|w| table.ratios(&key(w)))
            .collect();
        self.realload.usage_table = table;
    }

    /// realload's collector: every minute, its own plan over what Prometheus answers.
    pub(super) fn collect(&mut self) {
        self.learn_usage();
        if self.t.rem_euclid(60) != 0 {
            return;
        }
        let now = ts(self.t);
        let mut results = BTreeMap::new();
        for spec in &self.policy.metrics {
            let result = if self.scenario.outage(self.t) {
                MetricResult::Failed(SkipReason::QueryFailed)
            } else {
                MetricResult::PerNode(
                    (0..self.scenario.nodes.len())
                        .map(|n| {
                            let v = match self.answer(n, &spec.name) {
                                None => Err(SkipReason::Unsupported),
                                Some(Answer::Value(v)) => Ok((v, now)),
                                Some(Answer::Nan) => Ok((f64::NAN, now)),
                                Some(Answer::Absent) => Err(SkipReason::Absent),
                            };
                            (self.scenario.nodes[n].name.clone(), v)
                        })
                        .collect(),
                )
            };
            results.insert(spec.name.clone(), result);
        }
        let views: Vec<NodeView> = self
            .scenario
            .nodes
            .iter()
            .map(|node| NodeView {
                name: node.name.clone(),
                uid: None,
                readings: Vec::new(),
                allocatable: Allocatable::default(),
                ready: true,
                unschedulable: false,
                taints: Vec::new(),
                internal_ip: None,
                hostname: None,
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
            })
            .collect();
        let current: HashMap<String, BTreeMap<String, String>> = self
            .scenario
            .nodes
            .iter()
            .zip(&self.realload.annotations)
            .map(|(node, a)| (node.name.clone(), a.clone()))
            .collect();
        let plan = collector::plan(&self.policy, &views, &current, &results, now);
        for patch in plan.patches {
            let Some(n) = self
                .scenario
                .nodes
                .iter()
                .position(|x| x.name == patch.node)
            else {
                continue;
            };
            if self
                .scenario
                .faults
                .iter()
                .any(|f| matches!(f, crate::model::Fault::Stale { .. }) && f.hits(n, self.t))
            {
                continue; // the write fails: the old reading stays and goes stale
            }
            self.realload.annotations[n].extend(patch.annotations);
            let readings = readings_of(&self.policy, &self.realload.annotations[n]);
            self.realload.bad_since[n] = next_bad_since(
                &self.policy,
                Some((&self.realload.readings[n], &self.realload.bad_since[n])),
                &readings,
                now,
            );
            self.realload.readings[n] = readings;
        }
    }

    pub(super) fn crane_annotate(&mut self) {
        let reachable = !self.scenario.outage(self.t);
        let scenario = self.scenario;
        let t = self.t;
        let bindings = &self.bindings;
        self.annotator.step(
            t,
            &self.series,
            reachable,
            |n| {
                !scenario
                    .faults
                    .iter()
                    .any(|f| matches!(f, crate::model::Fault::Stale { .. }) && f.hits(n, t))
            },
            |n, since| bindings[n].iter().filter(|b| **b > since).count() as i64,
        );
    }

    pub(super) fn refresh_fleet(&mut self) {
        let now = ts(self.t);
        self.realload.fleet_unknown = (0..self.scenario.nodes.len())
            .filter(|&n| {
                scoring::unknown_since(
                    &self.policy,
                    &self.realload.readings[n],
                    &self.realload.bad_since[n],
                    now,
                )
                .is_some()
            })
            .count();
    }
}
