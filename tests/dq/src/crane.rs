//! crane-scheduler's Dynamic plugin and its annotator, modelled rule by rule from its source
//! (`gocrane/crane-scheduler`). Every parameter is here, each with the file it comes from.

use std::collections::BTreeMap;

use crate::prom::{Answer, Series};

/// One metric crane syncs, filters on and scores.
#[derive(Debug, Clone, Copy)]
pub struct CraneMetric {
    pub name: &'static str,
    /// How often the annotator writes it (`syncPolicy[].period`).
    pub period: i64,
    /// Filter threshold (`predicate[].maxLimitPecent`); `None` when not filtered on.
    pub limit: Option<f64>,
    /// Score weight (`priority[].weight`).
    pub weight: f64,
}

/// The default policy: `deploy/manifests/dynamic/policy.yaml` (syncPolicy, predicate,
/// priority). CPU and memory, 5-minute averages and 1-hour and 1-day maxima of them.
pub const METRICS: [CraneMetric; 6] = [
    CraneMetric {
        name: "cpu_usage_avg_5m",
        period: 180,
        limit: Some(0.65),
        weight: 0.2,
    },
    CraneMetric {
        name: "cpu_usage_max_avg_1h",
        period: 900,
        limit: Some(0.75),
        weight: 0.3,
    },
    CraneMetric {
        name: "cpu_usage_max_avg_1d",
        period: 10_800,
        limit: None,
        weight: 0.5,
    },
    CraneMetric {
        name: "mem_usage_avg_5m",
        period: 180,
        limit: Some(0.65),
        weight: 0.2,
    },
    CraneMetric {
        name: "mem_usage_max_avg_1h",
        period: 900,
        limit: Some(0.75),
        weight: 0.3,
    },
    CraneMetric {
        name: "mem_usage_max_avg_1d",
        period: 10_800,
        limit: None,
        weight: 0.5,
    },
];

/// A synced value stays usable for its period plus this (`ExtraActivePeriod`,
/// `pkg/plugins/dynamic/stats.go`, `getActiveDuration`).
pub const EXTRA_ACTIVE: i64 = 300;
/// The hot value stays usable this long after it is written (`DefautlHotVauleActivePeriod`,
/// `stats.go`).
pub const HOT_VALUE_ACTIVE: i64 = 300;
/// Hot value = bindings in the last 5 minutes / 5 + in the last minute / 2, integer divisions
/// (`policy.yaml` hotValue; `pkg/controller/annotator/node.go`, `annotateNodeHotValue`).
pub const HOT_VALUE: [(i64, i64); 2] = [(300, 5), (60, 2)];
/// The Dynamic plugin's score weight in kube-scheduler (`deploy/manifests/dynamic/scheduler-config.yaml`).
pub const PLUGIN_WEIGHT: i64 = 3;
/// A failed sync is retried with exponential backoff from 10 s to 360 s (`node.go`,
/// `DefaultBackOff`, `MaxBackOff`).
pub const BACKOFF: (i64, i64) = (10, 360);

/// What the annotator has written on one node: each metric's value and write time (crane
/// stamps the write time, `utils.GetLocalTime()`, not the sample time), and the hot value.
#[derive(Debug, Clone, Default)]
pub struct NodeAnnotations {
    pub metrics: BTreeMap<&'static str, (f64, i64)>,
    pub hot: Option<(i64, i64)>,
}

/// The annotator's schedule for one node and metric: next sync, current backoff.
#[derive(Debug, Clone, Copy, Default)]
struct Sync {
    next: i64,
    backoff: i64,
}

/// The annotator: every metric synced on its own period, node by node.
#[derive(Debug, Clone)]
pub struct Annotator {
    schedule: Vec<[Sync; 6]>,
    pub nodes: Vec<NodeAnnotations>,
}

/// The query crane sends for a metric (values are in percent in its recording rules; the
/// annotator divides by 100, `prometheus.go`).
fn query(series: &Series, metric: &str, t: i64) -> Answer {
    match metric {
        "cpu_usage_avg_5m" => series.cpu_avg_5m(t),
        "cpu_usage_max_avg_1h" => series.cpu_max(t, 3600),
        "cpu_usage_max_avg_1d" => series.cpu_max(t, 86_400),
        "mem_usage_avg_5m" => series.mem_avg_5m(t),
        "mem_usage_max_avg_1h" => series.mem_max(t, 3600),
        _ => series.mem_max(t, 86_400),
    }
}

impl Annotator {
    pub fn new(nodes: usize, start: i64) -> Annotator {
        Annotator {
            schedule: vec![
                [Sync {
                    next: start,
                    backoff: 0
                }; 6];
                nodes
            ],
            nodes: vec![NodeAnnotations::default(); nodes],
        }
    }

    /// Runs the syncs due at `t`. `bindings(node, since)` counts the bindings the annotator saw
    /// on a node since an instant; `reachable` is false during a Prometheus outage; `writable`
    /// is false for nodes whose annotation writes fail.
    pub fn step(
        &mut self,
        t: i64,
        series: &[Series],
        reachable: bool,
        writable: impl Fn(usize) -> bool,
        bindings: impl Fn(usize, i64) -> i64,
    ) {
        for (n, node_series) in series.iter().enumerate().take(self.nodes.len()) {
            for (m, metric) in METRICS.iter().enumerate() {
                let sync = self.schedule[n][m];
                if t < sync.next {
                    continue;
                }
                // A failed query or write is retried with backoff; the hot value is written only
                // after a successful metric write (`syncNode`: annotateNodeLoad, then
                // annotateNodeHotValue).
                let answer = if reachable {
                    query(node_series, metric.name, t)
                } else {
                    Answer::Absent
                };
                let value = match answer {
                    // NaN and negative values are written as 0 (`prometheus.go`, `query`)
                    Answer::Value(v) => Some(v.max(0.0)),
                    Answer::Nan => Some(0.0),
                    Answer::Absent => None,
                };
                match value.filter(|_| writable(n)) {
                    Some(v) => {
                        self.nodes[n].metrics.insert(metric.name, (v, t));
                        let hot: i64 = HOT_VALUE
                            .iter()
                            .map(|(range, count)| bindings(n, t - range) / count)
                            .sum();
                        self.nodes[n].hot = Some((hot, t));
                        self.schedule[n][m] = Sync {
                            next: t + metric.period,
                            backoff: 0,
                        };
                    }
                    None => {
                        let backoff = if sync.backoff == 0 {
                            BACKOFF.0
                        } else {
                            (sync.backoff * 2).min(BACKOFF.1)
                        };
                        self.schedule[n][m] = Sync {
                            next: t + backoff,
                            backoff,
                        };
                    }
                }
            }
        }
    }
}

/// A metric's value if it is still active at `t` (`stats.go`, `inActivePeriod`).
fn active(annotations: &NodeAnnotations, metric: &CraneMetric, t: i64) -> Option<f64> {
    annotations
        .metrics
        .get(metric.name)
        .filter(|(_, at)| t < at + metric.period + EXTRA_ACTIVE)
        .map(|(v, _)| *v)
}

/// The Dynamic plugin's Filter: a node is rejected when an active metric is above its limit;
/// an expired or missing metric passes (`isOverLoad` returns false on error).
pub fn filter(annotations: &NodeAnnotations, t: i64) -> bool {
    !METRICS.iter().any(
        |m| matches!((m.limit, active(annotations, m, t)), (Some(limit), Some(v)) if v > limit),
    )
}

/// The Dynamic plugin's Score, 0..100 before its plugin weight: `int(Σ (1 − u)·w·100 / Σ w)`,
/// an expired or missing metric contributing 0 while its weight still counts (`getNodeScore`),
/// minus the active hot value × 10, clamped (`plugins.go`, `Score`).
pub fn score(annotations: &NodeAnnotations, t: i64) -> i64 {
    let (mut sum, mut weight) = (0.0, 0.0);
    for m in &METRICS {
        if let Some(u) = active(annotations, m, t) {
            sum += (1.0 - u) * m.weight * 100.0;
        }
        weight += m.weight;
    }
    let hot = annotations
        .hot
        .filter(|(_, at)| t < at + HOT_VALUE_ACTIVE)
        .map_or(0, |(h, _)| h);
    ((sum / weight) as i64 - hot * 10).clamp(0, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_metrics_pass_the_filter_and_score_as_zero() {
        let mut a = NodeAnnotations::default();
        a.metrics.insert("cpu_usage_avg_5m", (0.9, 0));
        assert!(!filter(&a, 100), "0.9 > 0.65");
        assert!(filter(&a, 180 + 300), "expired after period + 5 min");
        a.metrics.insert("cpu_usage_avg_5m", (0.5, 0));
        // only one metric of weight 0.2 of 2.0, half free: 0.5·0.2·100/2 = 5
        assert_eq!(score(&a, 100), 5);
        for m in METRICS {
            a.metrics.insert(m.name, (0.2, 0));
        }
        assert_eq!(score(&a, 100), 80);
        a.hot = Some((3, 0));
        assert_eq!(score(&a, 100), 50);
        assert_eq!(score(&a, 400), 80, "the hot value expires after 5 minutes");
    }

    #[test]
    fn the_annotator_writes_zero_for_nan_and_nothing_while_prometheus_is_down() {
        let mut series = vec![Series::default()];
        let mut t = 0;
        while t < 600 {
            series[0].push(
                t,
                Some(crate::prom::Sample::Nan),
                Some(crate::prom::Sample::Value(0.5)),
            );
            t += 10;
        }
        let mut a = Annotator::new(1, 590);
        a.step(590, &series, true, |_| true, |_, _| 0);
        assert_eq!(
            a.nodes[0].metrics["cpu_usage_avg_5m"].0, 0.0,
            "NaN is written as 0"
        );
        let mut b = Annotator::new(1, 590);
        b.step(590, &series, false, |_| true, |_, _| 7);
        assert!(b.nodes[0].metrics.is_empty() && b.nodes[0].hot.is_none());
    }
}
