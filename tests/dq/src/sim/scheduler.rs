//! One scheduling cycle: kube-scheduler's default plugins as modelled (fit, LeastAllocated and
//! BalancedAllocation, PodTopologySpread, random ties), with crane's or realload's extender on top.

use super::*;

impl Sim<'_> {
    /// The learned usage shares realload counts a pod of workload `w` at: the collector's last
    /// published table while it is current (`workloadUsage`), or with `usage_oracle` the
    /// workload's true mean usage; `None`: requests × the hot-spot factors.
    pub(super) fn learned(&self, w: usize) -> Option<UsageRatios> {
        if self.scenario.usage_oracle {
            let w = &self.scenario.workloads[w];
            return Some(UsageRatios {
                cpu: Some(w.cpu_usage),
                memory: Some(w.mem_usage),
            });
        }
        self.realload
            .usage_table
            .in_force(&self.policy.workload_usage, ts(self.t))
            .then(|| self.realload.usage[w])
            .flatten()
    }

    /// NodeResourcesFit (LeastAllocated) + NodeResourcesBalancedAllocation, 0..100 each.
    pub(super) fn resource_scores(&self, n: usize, pod: usize) -> i64 {
        let w = &self.scenario.workloads[self.pods[pod].workload];
        let node = &self.scenario.nodes[n];
        let (c, m) = self.requested[n];
        let cf = (c + w.cpu_request_m) as f64 / node.cpu_m as f64;
        let mf = (m + w.mem_request_mi) as f64 / node.mem_mi as f64;
        let least = ((1.0 - cf) * 100.0 + (1.0 - mf) * 100.0) / 2.0;
        let balanced = (1.0 - (cf - mf).abs() / 2.0) * 100.0;
        least as i64 + balanced as i64
    }

    /// PodTopologySpread with the default soft constraints (hostname maxSkew 3, zone maxSkew
    /// 5, ScheduleAnyway), weight 2: fewer pods of the same workload in the node's domains
    /// score higher, normalised to 0..100 over the candidates.
    pub(super) fn spread_scores(&self, pod: usize, candidates: &[usize]) -> Vec<i64> {
        let workload = self.pods[pod].workload;
        let zones = 3usize;
        let mut per_zone = vec![0usize; zones];
        let mut per_node = vec![0usize; self.scenario.nodes.len()];
        for (n, pods) in self.on_node.iter().enumerate() {
            let same = pods
                .iter()
                .filter(|p| self.pods[**p].workload == workload)
                .count();
            per_node[n] = same;
            per_zone[self.scenario.nodes[n].zone % zones] += same;
        }
        let host_weight = (candidates.len() as f64 + 2.0).ln();
        let zone_weight = (zones as f64 + 2.0).ln();
        let raw: Vec<f64> = candidates
            .iter()
            .map(|&n| {
                per_node[n] as f64 * host_weight
                    + per_zone[self.scenario.nodes[n].zone % zones] as f64 * zone_weight
            })
            .collect();
        let max = raw.iter().copied().fold(0.0, f64::max);
        let min = raw.iter().copied().fold(f64::INFINITY, f64::min);
        raw.iter()
            .map(|r| {
                if max <= 0.0 {
                    100
                } else {
                    (100.0 * (max + min - r) / max) as i64
                }
            })
            .collect()
    }

    /// realload's answer for the candidates at `now_ms`: per candidate, whether it passes and
    /// its score; and the unknown nodes it let the pod onto.
    pub(super) fn realload_decision(
        &mut self,
        pod: usize,
        candidates: &[usize],
        now_ms: i64,
    ) -> (Vec<(bool, i64)>, Vec<usize>) {
        let lag = self.kind.lag_ms();
        let now = ts_ms(now_ms);
        while self
            .realload
            .in_flight
            .front()
            .is_some_and(|(at, _)| at + lag <= now_ms)
        {
            self.realload.in_flight.pop_front();
        }
        // A reservation ends when the pod's binding is visible.
        while self
            .realload
            .reserved
            .front()
            .is_some_and(|(at, _, _)| at + lag <= now_ms)
        {
            self.realload.reserved.pop_front();
        }
        let judged: Vec<scoring::Judgement> = candidates
            .iter()
            .map(|&n| {
                let node = &self.scenario.nodes[n];
                let visible: Vec<BoundPod> = self.on_node[n]
                    .iter()
                    .map(|p| &self.pods[*p])
                    .filter(|p| p.bound_ms + lag <= now_ms)
                    .map(|p| {
                        let w = &self.scenario.workloads[p.workload];
                        BoundPod {
                            bound_at: ts(p.bound_ms / 1000),
                            cpu_millis: w.cpu_request_m,
                            memory_bytes: w.mem_request_mi << 20,
                            pinned: false,
                            learned: self.learned(p.workload),
                        }
                    })
                    .chain(
                        self.realload
                            .reserved
                            .iter()
                            .filter(|(_, node, _)| *node == n)
                            .map(|(_, _, p)| *p),
                    )
                    .collect();
                let in_flight = self
                    .realload
                    .in_flight
                    .iter()
                    .filter(|(_, nodes)| nodes.contains(&n))
                    .count() as u32;
                let input = NodeInput {
                    readings: &self.realload.readings[n],
                    bad_since: &self.realload.bad_since[n],
                    pods: &visible,
                    in_flight,
                    allocatable: Allocatable {
                        cpu_millis: node.cpu_m,
                        memory_bytes: node.mem_mi << 20,
                    },
                };
                let w = self.pods[pod].workload;
                let spec = &self.scenario.workloads[w];
                scoring::judge(&self.policy, &scoring::assess(&self.policy, &input, now)).with_pod(
                    &self.policy,
                    spec.cpu_request_m,
                    spec.mem_request_mi << 20,
                    self.learned(w),
                )
            })
            .collect();
        let unknown = judged.iter().filter(|j| !j.known).count();
        let fleet = (self.realload.fleet_unknown, self.scenario.nodes.len());
        let breaker =
            scoring::breaker_trips_for(&self.policy, (unknown, candidates.len()), Some(fleet));
        let decision = scoring::decide_judged_with(&self.policy, judged, Some(breaker));
        if lag > 0
            && self.policy.hotspot.reserve_ranked
            && let Some(i) = scoring::reservation_target(&decision)
        {
            let w = self.pods[pod].workload;
            let spec = &self.scenario.workloads[w];
            let reserved = BoundPod {
                bound_at: ts(now_ms / 1000),
                cpu_millis: spec.cpu_request_m,
                memory_bytes: spec.mem_request_mi << 20,
                pinned: false,
                learned: self.learned(w),
            };
            self.realload
                .reserved
                .push_back((now_ms, candidates[i], reserved));
        }
        let passed_unknown: Vec<usize> = if decision.breaker_tripped {
            Vec::new()
        } else {
            candidates
                .iter()
                .enumerate()
                .filter(|(i, _)| decision.verdicts[*i].passes() && !decision.known[*i])
                .map(|(_, n)| *n)
                .collect()
        };
        (
            decision
                .verdicts
                .iter()
                .zip(&decision.scores)
                .map(|(v, s)| (v.passes(), *s))
                .collect(),
            passed_unknown,
        )
    }

    /// Places one pod at `now_ms`, or leaves it pending.
    pub(super) fn schedule(&mut self, pod: usize, now_ms: i64) -> bool {
        let candidates: Vec<usize> = (0..self.scenario.nodes.len())
            .filter(|&n| self.fits(n, pod))
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let spread = self.spread_scores(pod, &candidates);
        let mut scored: Vec<(usize, i64)> = candidates
            .iter()
            .zip(&spread)
            .map(|(&n, s)| (n, self.resource_scores(n, pod) + 2 * s))
            .collect();
        match self.kind {
            PolicyKind::Default | PolicyKind::DefaultLnu => {}
            PolicyKind::Crane => {
                let t = self.t;
                scored = scored
                    .into_iter()
                    .filter(|(n, _)| crane::filter(&self.annotator.nodes[*n], t))
                    .map(|(n, s)| {
                        (
                            n,
                            s + crane::score(&self.annotator.nodes[n], t) * crane::PLUGIN_WEIGHT,
                        )
                    })
                    .collect();
            }
            PolicyKind::Realload | PolicyKind::RealloadBind | PolicyKind::RealloadDescheduler => {
                let (answers, passed_unknown) = self.realload_decision(pod, &candidates, now_ms);
                let weight = self.scenario.extender_weight;
                scored = scored
                    .into_iter()
                    .zip(answers)
                    .filter(|(_, (passes, _))| *passes)
                    .map(|((n, s), (_, e))| (n, s + e * weight * 10))
                    .collect();
                if !passed_unknown.is_empty() && self.kind.lag_ms() > 0 {
                    self.realload.in_flight.push_back((now_ms, passed_unknown));
                }
            }
        }
        let Some(best) = scored.iter().map(|(_, s)| *s).max() else {
            return false;
        };
        let tied: Vec<usize> = scored
            .iter()
            .filter(|(_, s)| *s == best)
            .map(|(n, _)| *n)
            .collect();
        let chosen = tied[self.rng.below(tied.len() as u64) as usize];
        self.bind(pod, chosen, now_ms);
        true
    }
}
