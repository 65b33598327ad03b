//! What the load-aware policies see: Prometheus windows over the node model, realload's collector
//! writing annotations, crane's annotator, the extender's watch lag.

use super::*;

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

    /// realload's collector: every minute, its own plan over what Prometheus answers.
    pub(super) fn collect(&mut self) {
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
