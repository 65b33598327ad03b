//! The descheduler against the API simulator at scale: 5,000 nodes and 150,000 pods, 2% of nodes
//! hot. It runs `realload-descheduler --dry-run` as a process and reports its wall time, its peak
//! RSS (VmHWM, sampled from /proc while it runs), the API requests it made and the bytes it
//! listed. The floor for "bytes listed" is one full list of all pods, measured in the same run.
//!
//! cargo build --release -p realload-descheduler -p realload-bench
//! target/release/deschedbench --descheduler target/release/realload-descheduler
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: failing loudly is right

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use realload_apisim::ApiSim;
use realload_bench::synth::{self, Spec};

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let mut binary = PathBuf::from("target/release/realload-descheduler");
    let (mut nodes, mut pods) = (5_000usize, 150_000usize);
    // e.g. `--wrap heaptrack` to profile the descheduler's memory (the RSS is then the wrapper's)
    let mut wrapper: Option<String> = None;
    // `--write-snapshot FILE`: only write the synthetic cluster as a List (for snapshot mode)
    let mut write_snapshot: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--descheduler" => binary = PathBuf::from(it.next().unwrap()),
            "--nodes" => nodes = it.next().unwrap().parse().unwrap(),
            "--pods" => pods = it.next().unwrap().parse().unwrap(),
            "--wrap" => wrapper = Some(it.next().unwrap()),
            "--write-snapshot" => write_snapshot = Some(PathBuf::from(it.next().unwrap())),
            other => panic!("unknown flag {other}"),
        }
    }
    let mut spec = Spec::new(nodes, pods);
    // sample times relative to the real clock: the descheduler runs live
    spec.sampled_at = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(30))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let list = synth::snapshot(&spec);
    if let Some(path) = write_snapshot {
        std::fs::write(&path, list.to_string()).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    let sim = ApiSim::start().await.unwrap();
    // Seeding is not history anyone watches from: keep the store, not a second copy of it.
    sim.set_history_limit(1_000);
    let seeded = sim.seed_list(&list).unwrap();
    drop(list);
    let dir = realload_test_support::temp_dir("deschedbench", "kubeconfig");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();

    // floor: one plain list of every pod, as a naive descheduler would do
    let client = sim.client();
    let all_pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client);
    sim.clear_requests();
    let t = Instant::now();
    let mut token: Option<String> = None;
    loop {
        let mut lp = kube::api::ListParams::default().limit(500);
        if let Some(c) = &token {
            lp = lp.continue_token(c);
        }
        let page = all_pods.list(&lp).await.unwrap();
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    let naive_time = t.elapsed();
    let naive_bytes: usize = sim.requests().iter().map(|r| r.response_bytes).sum();
    sim.clear_requests();

    // The descheduler runs as a child process while this runtime serves the simulator. Its stdout
    // is drained by a thread (a full pipe would stall it) and its RSS sampled by another.
    let started = Instant::now();
    let mut command = match &wrapper {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(&binary);
            c
        }
        None => Command::new(&binary),
    };
    let mut child = command
        .args(["--dry-run", "--output", "json", "--log-level", "warn"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the descheduler (build it with --release first)");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).unwrap();
        out
    });
    let (peak, status) = tokio::task::spawn_blocking(move || {
        let mut peak = 0;
        loop {
            if let Some(kib) = vm_hwm_kib(pid) {
                peak = peak.max(kib);
            }
            if let Some(status) = child.try_wait().unwrap() {
                return (peak, status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let stdout = reader.join().unwrap();
    assert!(status.success(), "the descheduler failed: {status}");
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap_or_default();
    let requests = sim.requests();
    if std::env::var_os("DESCHEDBENCH_LOG").is_some() {
        for r in &requests {
            eprintln!(
                "{} {}?{} {} {}B",
                r.method, r.path, r.query, r.status, r.response_bytes
            );
        }
    }
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    let read = |pick: &dyn Fn(&str) -> bool| -> (usize, usize) {
        requests
            .iter()
            .filter(|r| r.method == "GET" && pick(&r.path))
            .fold((0, 0), |(n, b), r| (n + 1, b + r.response_bytes))
    };
    let (node_lists, node_bytes) = read(&|p| p == "/api/v1/nodes");
    let (pod_lists, pod_bytes) = read(&|p| p.ends_with("/pods"));
    let (other_gets, other_bytes) = read(&|p| p != "/api/v1/nodes" && !p.ends_with("/pods"));
    println!(
        "| cluster | hot nodes | evictions planned | wall time | peak RSS | requests | node lists | pod lists | other GETs | bytes: nodes | bytes: pods | bytes: other | floor: one full pod list |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {nodes} nodes / {pods} pods ({seeded} objects) | {} | {} | {:.0} ms | {:.1} MiB | {} | {node_lists} | {pod_lists} | {other_gets} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB in {:.0} ms |",
        report["hotNodes"].as_array().map_or(0, Vec::len),
        report["evictions"].as_array().map_or(0, Vec::len),
        elapsed.as_secs_f64() * 1000.0,
        peak as f64 / 1024.0,
        requests.len(),
        mib(node_bytes),
        mib(pod_bytes),
        mib(other_bytes),
        mib(naive_bytes),
        naive_time.as_secs_f64() * 1000.0,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
