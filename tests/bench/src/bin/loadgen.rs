//! Loopback load harness for `realload-extender serve --snapshot`.
//!
//! For each cluster size it starts the extender on a synthetic snapshot, then drives filter and
//! prioritize over keep-alive HTTP/1.1 connections at a fixed concurrency for a fixed time and
//! reports requests/s, p50, p99 and the server's CPU time per request, read from
//! `/proc/PID/task/*/schedstat` before and after the run. The floor runs in the same run, in its
//! own process (this binary with `--floor-server`), measured the same way: an axum handler that
//! reads the request body and answers a constant body of the extender's answer's size; with
//! `--nocache` it also skips the body with serde (`IgnoredAny`), the least a JSON reader does.
//!
//! cargo build --release -p realload-extender -p realload-bench
//! target/release/loadgen --extender target/release/realload-extender --sizes 100,1000,5000 --concurrency 1,2 --seconds 5
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: failing loudly is right

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use realload_bench::synth::{self, Spec};
use realload_test_support::{KillOnDrop, free_addr, temp_dir};
use tokio::net::TcpStream;

struct Args {
    extender: PathBuf,
    sizes: Vec<usize>,
    concurrency: Vec<usize>,
    seconds: u64,
    nocache: bool,
    /// A name for the extender binary in the table (e.g. `old`, `new`).
    label: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        extender: PathBuf::from("target/release/realload-extender"),
        sizes: vec![100, 1_000, 5_000],
        concurrency: vec![1, 2],
        seconds: 5,
        nocache: false,
        label: "realload".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--extender" => args.extender = PathBuf::from(value()),
            "--sizes" => args.sizes = value().split(',').map(|s| s.parse().unwrap()).collect(),
            "--concurrency" => {
                args.concurrency = value().split(',').map(|s| s.parse().unwrap()).collect()
            }
            "--label" => args.label = value(),
            "--seconds" => args.seconds = value().parse().unwrap(),
            "--nocache" => args.nocache = true,
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("connection to {addr} ended: {e:?}");
        }
    });
    sender
}

async fn once(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    body: &Bytes,
) -> (u16, Bytes) {
    sender.ready().await.unwrap();
    let req = hyper::Request::post(path)
        .header("content-type", "application/json")
        .header("host", "127.0.0.1")
        .body(Full::new(body.clone()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

struct Outcome {
    requests: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// `concurrency` keep-alive connections, each sending back to back until the deadline.
async fn drive(
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    concurrency: usize,
    seconds: u64,
) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let body = body.clone();
            let path = path.to_string();
            tokio::spawn(async move {
                let mut sender = connect(addr).await;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (status, answer) = once(&mut sender, &path, &body).await;
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Outcome {
        requests: all.len(),
        rps: all.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

/// CPU time used so far by every thread of a process, from the scheduler's own accounting
/// (nanoseconds, unlike the 10 ms ticks of `/proc/PID/stat`).
fn cpu_time(pid: u32) -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// The floor, as its own process: reads the request body (as any real handler must, or hyper
/// closes the connection), optionally skips it as JSON, and answers `answer`.
async fn floor_server(addr: SocketAddr, answer: Bytes, skip_json: bool) {
    use axum::serve::ListenerExt;
    let app = axum::Router::new()
        .fallback(move |request: Bytes| {
            let answer = answer.clone();
            async move {
                if skip_json {
                    std::hint::black_box(
                        serde_json::from_slice::<serde::de::IgnoredAny>(&request).is_ok(),
                    );
                }
                drop(request);
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    answer,
                )
            }
        })
        // the extender's own limit is 64 MiB; axum's default for extractors is 2 MB
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap()
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, app).await.unwrap();
}

/// Starts a server process and waits until it accepts connections.
async fn start(mut command: Command, addr: SocketAddr) -> KillOnDrop {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the server (build with --release first)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    KillOnDrop(child)
}

/// Drives one server process and measures its CPU time over the run.
async fn measure(
    server: &KillOnDrop,
    addr: SocketAddr,
    path: &str,
    body: &Bytes,
    concurrency: usize,
    seconds: u64,
) -> (Outcome, Duration) {
    let pid = server.0.id();
    let before = cpu_time(pid);
    let outcome = drive(addr, path, body.clone(), concurrency, seconds).await;
    let used = cpu_time(pid).saturating_sub(before);
    let per_request = used / outcome.requests.max(1) as u32;
    (outcome, per_request)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("--floor-server") {
        let addr: SocketAddr = raw[2].parse().unwrap();
        let answer = Bytes::from(std::fs::read(&raw[3]).unwrap());
        floor_server(
            addr,
            answer,
            raw.get(4).map(String::as_str) == Some("--skip-json"),
        )
        .await;
        return;
    }
    let args = parse_args();
    let dir = temp_dir("loadgen", "snapshots");
    let floor_kind = if args.nocache {
        "read + skip JSON + constant"
    } else {
        "read + constant"
    };
    println!("floor: {floor_kind}; CPU is the server process's, per request");
    println!(
        "| server | verb | nodes | mode | body KB | conn | req/s | p50 ms | p99 ms | CPU µs/req | floor req/s | floor p50 ms | floor p99 ms | floor CPU µs/req | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // Builds from before the admin listener have no --admin-listen.
    let help = Command::new(&args.extender)
        .args(["serve", "--help"])
        .output()
        .expect("run the extender");
    let has_admin_listener = String::from_utf8_lossy(&help.stdout).contains("--admin-listen");
    for &size in &args.sizes {
        let spec = Spec::new(size, 0);
        let snapshot = dir.join(format!("cluster-{size}.json"));
        std::fs::write(&snapshot, synth::snapshot(&spec).to_string()).unwrap();
        let addr = free_addr();
        let mut command = Command::new(&args.extender);
        command
            .args([
                "serve",
                "--snapshot",
                snapshot.to_str().unwrap(),
                "--now",
                "2026-11-22T01:05:00Z",
            ])
            .args(["--listen", &addr.to_string(), "--log-level", "warn"]);
        if has_admin_listener {
            command.args(["--admin-listen", &free_addr().to_string()]);
        }
        let server = start(command, addr).await;
        let body = Bytes::from(synth::extender_body(&spec, !args.nocache));
        let mode = if args.nocache { "nocache" } else { "cache" };
        for verb in ["filter", "prioritize"] {
            let path = format!("/{verb}");
            let mut sender = connect(addr).await;
            let (_, sample) = once(&mut sender, &path, &body).await;
            drop(sender);
            let answer = dir.join(format!("answer-{size}-{verb}.json"));
            std::fs::write(&answer, &sample).unwrap();
            let floor_addr = free_addr();
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.args([
                "--floor-server",
                &floor_addr.to_string(),
                answer.to_str().unwrap(),
            ]);
            if args.nocache {
                command.arg("--skip-json");
            }
            let floor_server = start(command, floor_addr).await;
            for &concurrency in &args.concurrency {
                let (real, cpu) =
                    measure(&server, addr, &path, &body, concurrency, args.seconds).await;
                let (floor, floor_cpu) = measure(
                    &floor_server,
                    floor_addr,
                    &path,
                    &body,
                    concurrency,
                    args.seconds,
                )
                .await;
                println!(
                    "| {} | {verb} | {size} | {mode} | {:.0} | {concurrency} | {:.0} | {} | {} | {} | {:.0} | {} | {} | {} | {:.2} |",
                    args.label,
                    body.len() as f64 / 1024.0,
                    real.rps,
                    ms(real.p50),
                    ms(real.p99),
                    us(cpu),
                    floor.rps,
                    ms(floor.p50),
                    ms(floor.p99),
                    us(floor_cpu),
                    cpu.as_secs_f64() / floor_cpu.as_secs_f64().max(1e-9)
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
