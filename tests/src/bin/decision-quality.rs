//! `decision-quality`: runs every scenario through every placement policy and reports outcomes.
//!
//! cargo run --release -p realload-tests --bin decision-quality            # markdown tables
//! cargo run --release -p realload-tests --bin decision-quality -- --output json
//!
//! `--policy FILE` runs realload with another policy file (to try a tuning before deploying it),
//! `--extender-weight N` sets the extender's weight in kube-scheduler (default 5), and
//! `--diagnostics` adds the pending backlog and breaker-time placements behind the table.

use realload_tests::dq::{Scenario, diagnostics, markdown, run_all_with};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = false;
    let mut diagnose = false;
    let mut policy = realload_common::policy::Policy::default();
    let mut weight: Option<i64> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--output" => json = value()? == "json",
            "--output=json" => json = true,
            "--diagnostics" => diagnose = true,
            "--policy" => {
                let path = value()?;
                policy = realload_common::cli::load_policy(Some(std::path::Path::new(path)))
                    .map_err(|e| e.to_string())?;
            }
            "--extender-weight" => {
                let v = value()?;
                weight = Some(v.parse().ok().filter(|w| *w > 0).ok_or(format!(
                    "--extender-weight: {v:?} is not a positive integer"
                ))?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut scenarios = Scenario::all();
    if let Some(w) = weight {
        for s in &mut scenarios {
            s.extender_weight = w;
        }
    }
    let report = run_all_with(&scenarios, &policy);
    let text = if json {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    } else if diagnose {
        format!("{}\n{}", markdown(&report), diagnostics(&report))
    } else {
        markdown(&report)
    };
    realload_common::cli::write_stdout(&text).map_err(|e| format!("writing to stdout: {e}"))
}
