//! Statistics over seeds: means with 95% confidence intervals, and win rates per pair of
//! policies over seed × scenario cells.

use serde::Serialize;

/// Student's t quantile at 0.975 for `df` degrees of freedom (two-sided 95%).
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

/// A metric over seeds: its mean, the half-width of the 95% interval of the mean, and every
/// seed's value (in seed order).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub mean: f64,
    pub ci95: f64,
    pub per_seed: Vec<f64>,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let n = values.len();
        let mean = if n == 0 {
            0.0
        } else {
            values.iter().sum::<f64>() / n as f64
        };
        let ci95 = if n < 2 {
            0.0
        } else {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t_975(n - 1) * (var / n as f64).sqrt()
        };
        Summary {
            mean,
            ci95,
            per_seed: values.to_vec(),
        }
    }
}

/// How often policy `a` did better than policy `b` on one metric, cell by cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WinRate {
    pub a: String,
    pub b: String,
    pub metric: String,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// (wins + ties / 2) / cells.
    pub rate: f64,
}

/// Compares paired values (one per cell); `lower_is_better` says which way wins. Values within
/// 1e-9 of each other tie.
pub fn win_rate(a: &[f64], b: &[f64], lower_is_better: bool) -> (usize, usize, usize) {
    let (mut wins, mut ties, mut losses) = (0, 0, 0);
    for (x, y) in a.iter().zip(b) {
        if (x - y).abs() <= 1e-9 {
            ties += 1;
        } else if (x < y) == lower_is_better {
            wins += 1;
        } else {
            losses += 1;
        }
    }
    (wins, ties, losses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_of_a_known_sample() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(s.mean, 3.0);
        // sd = 1.5811, se = 0.7071, t(4) = 2.776
        assert!(
            (s.ci95 - 2.776 * std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-4,
            "{}",
            s.ci95
        );
        assert_eq!(Summary::of(&[7.0]).ci95, 0.0);
        assert_eq!(
            win_rate(&[1.0, 2.0, 3.0], &[2.0, 2.0, 1.0], true),
            (1, 1, 1)
        );
        assert_eq!(win_rate(&[1.0], &[2.0], false), (0, 0, 1));
    }
}
