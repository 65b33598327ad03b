//! Memory of learning workload usage at scale: `target/release/examples/usagemem 150000 5000`
//! feeds that many running pods (in that many Deployments) through the collector's own pod-watch
//! sink, as its first list would, then runs one learning round as the collector does (parse the
//! CPU and memory answers, join, learn, fit, JSON). It prints the process's resident memory
//! (VmRSS) and its peak (VmHWM) after each phase; the peak is reset between phases
//! (`/proc/self/clear_refs`), so each phase's figure is its own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: failing loudly is right

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use realload_common::workload::learn;
use realload_extender::collect::prometheus::parse_query_response;
use realload_extender::collect::usage::{POD_LABEL, RunningPods, fit, samples, trusted_values};
use realload_extender::watch::Sink;
use serde_json::json;

fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn report(phase: &str) {
    println!(
        "{phase:<44} rss {:>7.1} MiB  peak {:>7.1} MiB",
        status_kib("VmRSS:") as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0
    );
    // reset the peak to the current size, so the next phase's peak is its own
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn pod(i: usize, workloads: usize) -> Pod {
    let w = i % workloads;
    let ns = format!("team-{}", w % 50);
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{w}-7d9f8c6b5-{i:06}"), "namespace": ns,
            "uid": format!("{:08x}-0000-4000-8000-{:012x}", w, i),
            "labels": {"app": format!("svc-{w}"), "pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("svc-{w}-7d9f8c6b5"), "uid": "rs", "controller": true}]},
        "spec": {"nodeName": format!("node-{}", i % 5000), "containers": [{"name": "app",
            "resources": {"requests": {"cpu": format!("{}m", 250 + (w % 16) * 250),
                "memory": format!("{}Mi", 256 + (w % 16) * 256)}}}]},
        "status": {"phase": "Running"}
    }))
    .unwrap()
}

fn answer(names: &[String], per_pod: impl Fn(usize) -> f64) -> String {
    let mut body = String::from(r#"{"status":"success","data":{"resultType":"vector","result":["#);
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        write!(
            body,
            r#"{{"metric":{{"{POD_LABEL}":"{name}"}},"value":[1764590400,"{}"]}}"#,
            per_pod(i)
        )
        .unwrap();
    }
    body.push_str("]}}");
    body
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(150_000);
    let workloads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    println!("{pods} running pods in {workloads} Deployments");
    report("start");

    let running = Arc::new(RunningPods::default());
    running.init();
    for i in 0..pods {
        running.apply(&pod(i, workloads));
    }
    report("first list applied");
    running.init_done();
    report("listed: the live set held between rounds");

    let snapshot = running.snapshot().unwrap();
    let names: Vec<String> = snapshot.iter().map(|p| p.0.clone()).collect();
    let cpu_body = answer(&names, |i| 0.05 + (i % 37) as f64 * 0.01);
    let memory_body = answer(&names, |i| (100 + i % 400) as f64 * 1_048_576.0);
    drop(names);
    println!(
        "answers: {:.1} + {:.1} MB",
        cpu_body.len() as f64 / 1e6,
        memory_body.len() as f64 / 1e6
    );
    report("round: snapshot + both answers in memory");

    let per_pod = |text: &str| -> HashMap<String, f64> {
        trusted_values(parse_query_response(text.as_bytes(), POD_LABEL).unwrap())
    };
    let (cpu, memory) = (per_pod(&cpu_body), per_pod(&memory_body));
    drop((cpu_body, memory_body));
    let at = "2026-12-01T12:00:00Z".parse::<jiff::Timestamp>().unwrap();
    let mut table = learn(&samples(&snapshot, &cpu, &memory), at);
    fit(&mut table);
    let json = table.to_json();
    println!(
        "table: {} workloads, {:.0} KiB",
        table.workloads.len(),
        json.len() as f64 / 1024.0
    );
    report("round: parsed, learned, table written");
    drop((snapshot, cpu, memory, table, json));
    report("after the round (freed, allocator keeps pages)");
}
