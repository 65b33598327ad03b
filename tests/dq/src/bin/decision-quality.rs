//! `decision-quality`: every scenario through every placement policy over many seeds; outcomes
//! as means with 95% intervals, and win rates per pair of policies.
//!
//!   decision-quality                     20 seeds, all scenarios, markdown
//!   decision-quality --seeds 50          seeds 1..=50
//!   decision-quality --seed 7            one seed (intervals are then 0)
//!   decision-quality --scenario burst    one scenario (repeatable)
//!   decision-quality --output json       one object per scenario × policy (mean, interval,
//!                                        per-seed values of every metric) and the win rates
//!   decision-quality --policy FILE       realload with another policy file
//!   decision-quality --extender-weight N realload's weight in kube-scheduler (default 5)
//!   decision-quality --threads N         runs in parallel (default: the machine's cores)
//!   decision-quality --usage-oracle      realload counts pods at their workload's true mean
//!                                        usage from the start, not what its collector learned:
//!                                        what learning usage per workload could buy at best
#![forbid(unsafe_code)]

use std::process::ExitCode;

use realload_dq::model::SCENARIOS;
use realload_dq::{Config, markdown, run};

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a number"))
}

fn main_inner() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = Config::default();
    let mut json = false;
    let mut scenarios = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--output" => json = value()? == "json",
            "--seeds" => {
                let n: u64 = number(flag, value()?)?;
                if n == 0 {
                    return Err("--seeds must be at least 1".into());
                }
                config.seeds = (1..=n).collect();
            }
            "--seed" => config.seeds = vec![number(flag, value()?)?],
            "--scenario" => {
                let v = value()?;
                let name = SCENARIOS.iter().find(|s| **s == v.as_str()).ok_or(format!(
                    "--scenario: {v:?} is not one of {}",
                    SCENARIOS.join(", ")
                ))?;
                scenarios.push(*name);
            }
            "--policy" => {
                let path = value()?;
                config.policy = realload_common::cli::load_policy(Some(std::path::Path::new(path)))
                    .map_err(|e| e.to_string())?;
            }
            "--extender-weight" => {
                let w: i64 = number(flag, value()?)?;
                if w <= 0 {
                    return Err("--extender-weight must be positive".into());
                }
                config.extender_weight = w;
            }
            "--threads" => config.threads = number::<usize>(flag, value()?)?.max(1),
            "--usage-oracle" => config.usage_oracle = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !scenarios.is_empty() {
        config.scenarios = scenarios;
    }
    let report = run(&config);
    let text = if json {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    } else {
        markdown(&report)
    };
    realload_common::cli::write_stdout(&text).map_err(|e| format!("writing to stdout: {e}"))
}
