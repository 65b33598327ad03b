//! `decision-quality`: runs every scenario through every placement policy and reports outcomes.
//!
//! cargo run --release -p realload-tests --bin decision-quality            # markdown tables
//! cargo run --release -p realload-tests --bin decision-quality -- --output json

use realload_tests::dq::{Scenario, markdown, run_all};

fn main() {
    let json = std::env::args()
        .skip(1)
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "--output" && w[1] == "json")
        || std::env::args().any(|a| a == "--output=json");
    let report = run_all(&Scenario::all());
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    } else {
        print!("{}", markdown(&report));
    }
}
