//! Loopback load harness for `realload-extender serve --snapshot`.
//!
//! For each cluster size it starts the extender on a synthetic snapshot, then drives filter and
//! prioritize over keep-alive HTTP/1.1 connections at a fixed concurrency for a fixed time and
//! reports requests/s, p50 and p99. Its floor is the same harness, in the same run, against a
//! trivial axum handler answering a constant body of the same size.
//!
//! cargo build --release -p realload-extender -p realload-bench
//! target/release/loadgen --extender target/release/realload-extender --sizes 100,1000,5000 --concurrency 32 --seconds 5
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
    concurrency: usize,
    seconds: u64,
    nocache: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        extender: PathBuf::from("target/release/realload-extender"),
        sizes: vec![100, 1_000, 5_000],
        concurrency: 32,
        seconds: 5,
        nocache: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--extender" => args.extender = PathBuf::from(value()),
            "--sizes" => args.sizes = value().split(',').map(|s| s.parse().unwrap()).collect(),
            "--concurrency" => args.concurrency = value().parse().unwrap(),
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

async fn constant_server(body: Bytes) -> SocketAddr {
    // The handler reads the request body, as the extender must: a server that answers without
    // reading a large body closes the connection afterwards, which is not keep-alive.
    let app = axum::Router::new()
        .fallback(move |request: Bytes| {
            let body = body.clone();
            async move {
                drop(request);
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        })
        // the extender's own limit is 64 MiB; axum's default for extractors is 2 MB
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let dir = temp_dir("loadgen", "snapshots");
    println!(
        "| verb | nodes | mode | concurrency | requests | req/s | p50 ms | p99 ms | floor req/s | floor p50 ms | floor p99 ms | req/s ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &size in &args.sizes {
        let spec = Spec::new(size, 0);
        let snapshot = dir.join(format!("cluster-{size}.json"));
        std::fs::write(&snapshot, synth::snapshot(&spec).to_string()).unwrap();
        let addr = free_addr();
        let _server = KillOnDrop(
            Command::new(&args.extender)
                .args([
                    "serve",
                    "--snapshot",
                    snapshot.to_str().unwrap(),
                    "--now",
                    "2026-11-22T01:05:00Z",
                ])
                .args(["--listen", &addr.to_string(), "--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the extender (build it with --release first)"),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "extender did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = Bytes::from(synth::extender_body(&spec, !args.nocache));
        let mode = if args.nocache { "nocache" } else { "cache" };
        for verb in ["filter", "prioritize"] {
            let path = format!("/{verb}");
            let mut sender = connect(addr).await;
            let (_, sample) = once(&mut sender, &path, &body).await;
            drop(sender);
            let real = drive(addr, &path, body.clone(), args.concurrency, args.seconds).await;
            let floor_addr = constant_server(sample).await;
            let floor = drive(
                floor_addr,
                &path,
                body.clone(),
                args.concurrency,
                args.seconds,
            )
            .await;
            println!(
                "| {verb} | {size} | {mode} | {} | {} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2} |",
                args.concurrency,
                real.requests,
                real.rps,
                ms(real.p50),
                ms(real.p99),
                floor.rps,
                ms(floor.p50),
                ms(floor.p99),
                real.rps / floor.rps
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
