//! The direct node-exporter source (`--source node-exporter`), for clusters without Prometheus:
//! scrape every node's `/metrics`, keep the CPU counters and memory samples in memory, and compute
//! the default metrics' windows from them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::{SignedDuration, Timestamp};
use realload_common::objects::NodeView;
use tracing::debug;

use super::plan::{MetricResult, SkipReason};

/// One scrape's totals: CPU seconds idle and in all modes (summed over CPUs), memory ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrapeSample {
    pub at: Timestamp,
    pub cpu_idle: f64,
    pub cpu_total: f64,
    pub mem_used: Option<f64>,
}

/// Parses node-exporter's text exposition with `prometheus-parse`.
pub fn parse_exposition(text: &str, at: Timestamp) -> Option<ScrapeSample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).ok()?;
    let (mut idle, mut total, mut available, mut mem_total) = (0.0, 0.0, None, None);
    let mut saw_cpu = false;
    for s in &scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        match s.metric.as_str() {
            "node_cpu_seconds_total" => {
                saw_cpu = true;
                total += value;
                if s.labels.get("mode") == Some("idle") {
                    idle += value;
                }
            }
            "node_memory_MemAvailable_bytes" => available = Some(value),
            "node_memory_MemTotal_bytes" => mem_total = Some(value),
            _ => {}
        }
    }
    if !saw_cpu {
        return None;
    }
    let mem_used = match (available, mem_total) {
        (Some(a), Some(t)) if t > 0.0 => Some(1.0 - a / t),
        _ => None,
    };
    Some(ScrapeSample {
        at,
        cpu_idle: idle,
        cpu_total: total,
        mem_used,
    })
}

/// A node's recent scrapes, enough for the longest window (1 hour plus one 5-minute average).
#[derive(Debug, Default, Clone)]
pub struct NodeHistory {
    samples: VecDeque<ScrapeSample>,
}

const KEEP: SignedDuration = SignedDuration::from_mins(66);

impl NodeHistory {
    pub fn push(&mut self, s: ScrapeSample) {
        if let Some(last) = self.samples.back()
            && (s.cpu_total < last.cpu_total || s.cpu_idle < last.cpu_idle)
        {
            // Counter reset (node reboot, exporter restart): older deltas mean nothing now.
            self.samples.clear();
        }
        self.samples.push_back(s);
        while self
            .samples
            .front()
            .is_some_and(|f| s.at.duration_since(f.at) > KEEP)
        {
            self.samples.pop_front();
        }
    }

    /// CPU utilisation between the sample at `end` index and the oldest sample no older than `window` before it.
    fn cpu_avg_ending(&self, end: usize, window: SignedDuration) -> Option<f64> {
        let last = self.samples.get(end)?;
        let first = self
            .samples
            .iter()
            .take(end)
            .find(|s| last.at.duration_since(s.at) <= window)?;
        let d_total = last.cpu_total - first.cpu_total;
        if d_total <= 0.0 {
            return None;
        }
        Some(1.0 - (last.cpu_idle - first.cpu_idle) / d_total)
    }

    fn latest(&self) -> Option<(usize, Timestamp)> {
        self.samples.back().map(|s| (self.samples.len() - 1, s.at))
    }

    /// The value of a default metric now, or why there is none yet.
    pub fn metric(&self, name: &str) -> Result<(f64, Timestamp), SkipReason> {
        let (end, at) = self.latest().ok_or(SkipReason::WarmingUp)?;
        let five = SignedDuration::from_mins(5);
        let value = match name {
            "cpu-avg-5m" => self.cpu_avg_ending(end, five),
            "cpu-max-1h" => (0..=end)
                .filter(|i| at.duration_since(self.samples[*i].at) <= SignedDuration::from_hours(1))
                .filter_map(|i| self.cpu_avg_ending(i, five))
                .reduce(f64::max),
            "cpu-sustained-10m" => (0..=end)
                .filter(|i| at.duration_since(self.samples[*i].at) <= SignedDuration::from_mins(10))
                .filter_map(|i| self.cpu_avg_ending(i, SignedDuration::from_mins(1)))
                .reduce(f64::min),
            "mem-avg-5m" => {
                let recent: Vec<f64> = self
                    .samples
                    .iter()
                    .filter(|s| at.duration_since(s.at) <= five)
                    .filter_map(|s| s.mem_used)
                    .collect();
                (!recent.is_empty()).then(|| recent.iter().sum::<f64>() / recent.len() as f64)
            }
            _ => return Err(SkipReason::Unsupported),
        };
        value.map(|v| (v, at)).ok_or(SkipReason::WarmingUp)
    }
}

pub struct ExporterSource {
    http: Client<HttpConnector, Empty<Bytes>>,
    port: u16,
    timeout: Duration,
    concurrency: usize,
    history: Mutex<HashMap<String, NodeHistory>>,
    /// Scrape this host instead of each node's InternalIP (tests run every "node" on loopback).
    pub host_override: Option<String>,
    /// Added to the wall clock when stamping scrapes: with `--now`, samples are dated on that
    /// clock (deltas between scrapes stay real).
    pub clock_offset: SignedDuration,
}

impl ExporterSource {
    pub fn new(port: u16, timeout: Duration, concurrency: usize) -> Self {
        ExporterSource {
            http: Client::builder(TokioExecutor::new()).build_http(),
            port,
            timeout,
            concurrency: concurrency.max(1),
            history: Mutex::new(HashMap::new()),
            host_override: None,
            clock_offset: SignedDuration::ZERO,
        }
    }

    async fn scrape_one(&self, host: &str) -> Option<ScrapeSample> {
        let uri = format!("http://{}:{}/metrics", host, self.port);
        let request = hyper::Request::get(uri).body(Empty::new()).ok()?;
        let fetch = async {
            let response = self.http.request(request).await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some(String::from_utf8_lossy(&body).into_owned())
        };
        let text = tokio::time::timeout(self.timeout, fetch).await.ok()??;
        let at = Timestamp::now()
            .checked_add(self.clock_offset)
            .unwrap_or_else(|_| Timestamp::now());
        parse_exposition(&text, at)
    }

    /// Scrapes every node (bounded concurrency) and records the samples.
    pub async fn scrape(&self, nodes: &[NodeView]) {
        let targets: Vec<(String, Option<String>)> = nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    self.host_override.clone().or_else(|| n.internal_ip.clone()),
                )
            })
            .collect();
        let results: Vec<(String, Option<ScrapeSample>)> = futures::stream::iter(targets)
            .map(|(name, host)| async move {
                let sample = match host {
                    Some(h) => self.scrape_one(&h).await,
                    None => None,
                };
                (name, sample)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        for (name, sample) in results {
            match sample {
                Some(s) => history.entry(name).or_default().push(s),
                None => debug!(node = %name, "node-exporter scrape failed"),
            }
        }
        history.retain(|name, _| nodes.iter().any(|n| &n.name == name));
    }

    /// The metric for every node, from the scrapes so far.
    pub fn result(&self, metric: &str, nodes: &[NodeView]) -> MetricResult {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        MetricResult::PerNode(
            nodes
                .iter()
                .map(|n| {
                    let v = history
                        .get(&n.name)
                        .map_or(Err(SkipReason::QueryFailed), |h| h.metric(metric));
                    (n.name.clone(), v)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_763_773_200 + secs).unwrap()
    }

    fn sample(secs: i64, idle: f64, total: f64) -> ScrapeSample {
        ScrapeSample {
            at: at(secs),
            cpu_idle: idle,
            cpu_total: total,
            mem_used: Some(0.5),
        }
    }

    #[test]
    fn parses_node_exporter_text() {
        let text = "# HELP node_cpu_seconds_total Seconds.\n# TYPE node_cpu_seconds_total counter\n\
            node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 100\nnode_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 50\n\
            node_cpu_seconds_total{cpu=\"1\",mode=\"idle\"} 120\nnode_cpu_seconds_total{cpu=\"1\",mode=\"system\"} 30\n\
            # TYPE node_memory_MemAvailable_bytes gauge\nnode_memory_MemAvailable_bytes 2.5e+09\n\
            # TYPE node_memory_MemTotal_bytes gauge\nnode_memory_MemTotal_bytes 1e+10\n";
        let s = parse_exposition(text, at(0)).unwrap();
        assert_eq!((s.cpu_idle, s.cpu_total), (220.0, 300.0));
        assert_eq!(s.mem_used, Some(0.75));
        assert!(parse_exposition("# nothing here\n", at(0)).is_none());
    }

    #[test]
    fn windows_from_counter_deltas() {
        let mut h = NodeHistory::default();
        assert_eq!(h.metric("cpu-avg-5m"), Err(SkipReason::WarmingUp));
        // 10 CPU-seconds per 10 s elapsed (one core); busy share rises from 20% to 60%
        let mut idle = 0.0;
        let mut total = 0.0;
        for i in 0..=60 {
            let busy = if i < 30 { 0.2 } else { 0.6 };
            h.push(sample(i * 10, idle, total));
            idle += 10.0 * (1.0 - busy);
            total += 10.0;
        }
        let (avg, t) = h.metric("cpu-avg-5m").unwrap();
        assert_eq!(t, at(600));
        assert!((avg - 0.6).abs() < 1e-9, "{avg}");
        let (sustained, _) = h.metric("cpu-sustained-10m").unwrap();
        assert!(
            (sustained - 0.2).abs() < 1e-9,
            "the lowest 1-minute average in 10 minutes: {sustained}"
        );
        let (max, _) = h.metric("cpu-max-1h").unwrap();
        assert!((max - 0.6).abs() < 1e-9);
        assert_eq!(h.metric("mem-avg-5m").unwrap().0, 0.5);
        assert_eq!(h.metric("gpu-avg-5m"), Err(SkipReason::Unsupported));
    }

    #[test]
    fn counter_resets_start_over() {
        let mut h = NodeHistory::default();
        h.push(sample(0, 100.0, 200.0));
        h.push(sample(10, 105.0, 210.0));
        assert!(h.metric("cpu-avg-5m").is_ok());
        h.push(sample(20, 1.0, 2.0)); // rebooted
        assert_eq!(h.metric("cpu-avg-5m"), Err(SkipReason::WarmingUp));
        h.push(sample(30, 6.0, 12.0));
        assert!((h.metric("cpu-avg-5m").unwrap().0 - 0.5).abs() < 1e-9);
    }
}
