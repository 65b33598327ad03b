//! Peak memory of parsing one Prometheus `/api/v1/query` answer, for `/usr/bin/time -v`:
//! `target/release/examples/promparse 200000` builds an answer with that many series (labels
//! as node-exporter's carry them), then parses it as the collector does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: failing loudly is right

use std::fmt::Write as _;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let mut body = String::from(r#"{"status":"success","data":{"resultType":"vector","result":["#);
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        write!(
            body,
            r#"{{"metric":{{"instance":"ip-10-{}-{}-{}.ec2.internal:9100","job":"node-exporter","namespace":"monitoring","pod":"node-exporter-{i:06}","service":"node-exporter","endpoint":"metrics","container":"node-exporter"}},"value":[1763773440.123,"0.{:04}"]}}"#,
            i / 65536,
            (i / 256) % 256,
            i % 256,
            i % 10_000
        )
        .unwrap();
    }
    body.push_str("]}}");
    let body = body.into_bytes();
    eprintln!("answer: {} bytes", body.len());
    let series =
        realload_extender::collect::prometheus::parse_query_response(&body, "instance").unwrap();
    eprintln!("series: {}", series.len());
}
