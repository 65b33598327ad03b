//! node-exporter and Prometheus, as the collectors see them: one utilisation sample per node
//! per step (what the exporter reports, faults included), and the windowed queries over them.
//!
//! A fault acts on the samples, not on the answers: a zero or NaN enters the 5-minute window and
//! the 1-hour maximum as it would in Prometheus, so a broken exporter first drags a node's
//! average down, and its 1-hour maximum keeps the last peak for an hour.

use std::collections::VecDeque;

use crate::model::STEP;

/// One sample of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    Value(f64),
    Nan,
}

/// A query's answer for one node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    Value(f64),
    Nan,
    /// No series for the node (the exporter is gone and the window emptied).
    Absent,
}

/// One node's series: CPU and memory utilisation samples, and the 1-minute-resolution
/// 5-minute averages the subqueries read (`max_over_time(...[1h:1m])`).
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// (t, cpu, mem) every step, for the last 10 minutes.
    recent: VecDeque<(i64, Option<Sample>, Option<Sample>)>,
    /// (minute, cpu 5m average, mem 5m average), for the last 24 hours.
    per_minute: VecDeque<(i64, Answer, Answer)>,
    /// (half-minute, cpu 1m average), for the last 10 minutes.
    per_half_minute: VecDeque<(i64, Answer)>,
}

fn average(samples: impl Iterator<Item = Sample>) -> Answer {
    let (mut sum, mut n, mut nan) = (0.0, 0, false);
    for s in samples {
        match s {
            Sample::Value(v) => {
                sum += v;
                n += 1;
            }
            Sample::Nan => nan = true,
        }
    }
    if nan {
        Answer::Nan
    } else if n == 0 {
        Answer::Absent
    } else {
        Answer::Value(sum / n as f64)
    }
}

/// PromQL's max_over_time: NaN only when there is nothing else.
fn max_over(answers: impl Iterator<Item = Answer>) -> Answer {
    let mut out = Answer::Absent;
    for a in answers {
        out = match (out, a) {
            (Answer::Value(x), Answer::Value(y)) => Answer::Value(x.max(y)),
            (Answer::Value(x), _) => Answer::Value(x),
            (_, Answer::Value(y)) => Answer::Value(y),
            (Answer::Nan, _) | (_, Answer::Nan) => Answer::Nan,
            _ => Answer::Absent,
        };
    }
    out
}

/// PromQL's min_over_time: NaN only when there is nothing else.
fn min_over(answers: impl Iterator<Item = Answer>) -> Answer {
    let mut out = Answer::Absent;
    for a in answers {
        out = match (out, a) {
            (Answer::Value(x), Answer::Value(y)) => Answer::Value(x.min(y)),
            (Answer::Value(x), _) => Answer::Value(x),
            (_, Answer::Value(y)) => Answer::Value(y),
            (Answer::Nan, _) | (_, Answer::Nan) => Answer::Nan,
            _ => Answer::Absent,
        };
    }
    out
}

impl Series {
    /// Records the exporter's samples at `t` (`None`: no sample, the exporter is down).
    pub fn push(&mut self, t: i64, cpu: Option<Sample>, mem: Option<Sample>) {
        self.recent.push_back((t, cpu, mem));
        while self.recent.front().is_some_and(|(s, _, _)| t - s >= 600) {
            self.recent.pop_front();
        }
        if t.rem_euclid(60) == 0 {
            let cpu5 = self.window_cpu(t, 300);
            let mem5 = average(
                self.recent
                    .iter()
                    .filter(|(s, _, _)| t - s < 300)
                    .filter_map(|(_, _, m)| *m),
            );
            self.per_minute.push_back((t, cpu5, mem5));
            while self
                .per_minute
                .front()
                .is_some_and(|(s, _, _)| t - s >= 86_400)
            {
                self.per_minute.pop_front();
            }
        }
        if t.rem_euclid(30) == 0 {
            let cpu1 = self.window_cpu(t, 60);
            self.per_half_minute.push_back((t, cpu1));
            while self
                .per_half_minute
                .front()
                .is_some_and(|(s, _)| t - s >= 600)
            {
                self.per_half_minute.pop_front();
            }
        }
    }

    fn window_cpu(&self, t: i64, window: i64) -> Answer {
        average(
            self.recent
                .iter()
                .filter(|(s, _, _)| t - s < window)
                .filter_map(|(_, c, _)| *c),
        )
    }

    /// `1 - avg(rate(idle[5m]))`: the CPU utilisation averaged over 5 minutes.
    pub fn cpu_avg_5m(&self, t: i64) -> Answer {
        self.window_cpu(t, 300)
    }

    /// The maximum of the 5-minute CPU average over `window` seconds, at 1-minute resolution.
    pub fn cpu_max(&self, t: i64, window: i64) -> Answer {
        max_over(
            self.per_minute
                .iter()
                .filter(|(s, _, _)| t - s < window)
                .map(|(_, c, _)| *c),
        )
    }

    /// The minimum of the 1-minute CPU average over 10 minutes, at 30-second resolution.
    pub fn cpu_sustained_10m(&self, t: i64) -> Answer {
        min_over(
            self.per_half_minute
                .iter()
                .filter(|(s, _)| t - s < 600)
                .map(|(_, c)| *c),
        )
    }

    /// `1 - MemAvailable/MemTotal` averaged over 5 minutes.
    pub fn mem_avg_5m(&self, t: i64) -> Answer {
        average(
            self.recent
                .iter()
                .filter(|(s, _, _)| t - s < 300)
                .filter_map(|(_, _, m)| *m),
        )
    }

    /// The maximum of the 5-minute memory average over `window` seconds.
    pub fn mem_max(&self, t: i64, window: i64) -> Answer {
        max_over(
            self.per_minute
                .iter()
                .filter(|(s, _, _)| t - s < window)
                .map(|(_, _, m)| *m),
        )
    }
}

/// Steps per minute (for callers that count).
pub const STEPS_PER_MINUTE: i64 = 60 / STEP;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_exporter_drags_the_average_down_and_the_hour_keeps_its_peak() {
        let mut s = Series::default();
        let mut t = 0;
        while t < 3600 {
            s.push(t, Some(Sample::Value(0.6)), Some(Sample::Value(0.4)));
            t += STEP;
        }
        // the exporter breaks and reports 0
        let broke = t;
        while t < broke + 150 {
            s.push(t, Some(Sample::Value(0.0)), Some(Sample::Value(0.0)));
            t += STEP;
        }
        let Answer::Value(half) = s.cpu_avg_5m(t - STEP) else {
            panic!()
        };
        assert!(
            half > 0.2 && half < 0.4,
            "halfway through the window: {half}"
        );
        while t < broke + 600 {
            s.push(t, Some(Sample::Value(0.0)), Some(Sample::Value(0.0)));
            t += STEP;
        }
        assert_eq!(s.cpu_avg_5m(t - STEP), Answer::Value(0.0));
        assert_eq!(
            s.cpu_max(t - STEP, 3600),
            Answer::Value(0.6),
            "the peak stays for an hour"
        );
        assert_eq!(s.cpu_sustained_10m(t - STEP), Answer::Value(0.0));
    }

    #[test]
    fn nan_propagates_through_averages_and_a_missing_series_disappears() {
        let mut s = Series::default();
        for k in 0..40 {
            s.push(k * STEP, Some(Sample::Value(0.5)), Some(Sample::Value(0.5)));
        }
        s.push(400, Some(Sample::Nan), Some(Sample::Value(0.5)));
        assert_eq!(s.cpu_avg_5m(400), Answer::Nan);
        assert_eq!(s.mem_avg_5m(400), Answer::Value(0.5));
        let mut t = 410;
        while t < 800 {
            s.push(t, None, None);
            t += STEP;
        }
        assert_eq!(s.cpu_avg_5m(t - STEP), Answer::Absent);
        assert_eq!(s.mem_avg_5m(t - STEP), Answer::Absent);
    }
}
