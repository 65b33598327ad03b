//! Learning each workload's real usage: per-pod usage from Prometheus (cAdvisor's series), the
//! running pods' owners and requests from the API server, the table into a ConfigMap the
//! extender watches. Nothing is published from a failed or empty measurement: the extender's
//! table then ages out (`workloadUsage.maxAge`) and the hot-spot factors apply again.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use realload_common::objects::pod_requests;
use realload_common::policy::WorkloadUsage;
use realload_common::workload::{PodSample, USAGE_KEY, UsageTable, WorkloadKey, learn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::FIELD_MANAGER;
use super::plan::{MetricResult, Series};
use super::prometheus::PrometheusClient;

/// The label the collector joins `namespace` and `pod` into, so each series has one identity.
pub const POD_LABEL: &str = "realload_pod";
/// Running pods only: pending ones use nothing yet, finished ones nothing any more.
const RUNNING_PODS: &str = "spec.nodeName!=,status.phase=Running";
/// Leaves room under the API server's 1 MiB object limit for metadata and managed fields.
const MAX_PUBLISHED_BYTES: usize = 900 * 1024;

#[derive(Debug, Error)]
pub enum UsageError {
    #[error("Prometheus {what} query failed: {message}")]
    Query { what: &'static str, message: String },
    #[error(
        "the CPU query returned no per-pod series (is cAdvisor, container_cpu_usage_seconds_total, scraped?)"
    )]
    NoSeries,
    #[error("the pod watch has not listed the running pods yet")]
    NotSynced,
    #[error("publishing ConfigMap {name}: {source}")]
    Publish {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What one learning round found.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub table: UsageTable,
    /// Running pods seen, and of them those with a usage sample.
    pub pods: usize,
    pub measured: usize,
    /// Workloads left out to fit the ConfigMap (the fewest-pod ones).
    pub dropped: usize,
}

/// Wraps a per-pod query so each series carries `namespace/pod` in one label.
pub fn pod_query(query: &str) -> String {
    format!(r#"label_join({query}, "{POD_LABEL}", "/", "namespace", "pod")"#)
}

/// Each series' value by its identity (`namespace/pod`). A series without a trustworthy value
/// (NaN, ±Inf, negative) is left out, as if absent.
pub fn trusted_values(series: Vec<Series>) -> HashMap<String, f64> {
    series
        .into_iter()
        .filter_map(|s| {
            let (value, _) = s.sample.ok()?;
            (value.is_finite() && value >= 0.0).then_some((s.identity, value))
        })
        .collect()
}

async fn per_pod(
    prometheus: &PrometheusClient,
    query: &str,
    what: &'static str,
    now: Timestamp,
) -> Result<HashMap<String, f64>, UsageError> {
    match prometheus.query(&pod_query(query), now, POD_LABEL).await {
        MetricResult::Series(series) => Ok(trusted_values(series)),
        MetricResult::Failed(reason) => Err(UsageError::Query {
            what,
            message: reason.as_str().to_string(),
        }),
        MetricResult::PerNode(_) => Err(UsageError::Query {
            what,
            message: "not a Prometheus answer".into(),
        }),
    }
}

/// A running pod as learning needs it: `namespace/name`, its workload (one shared key per
/// workload), its CPU (millis) and memory (bytes) requests.
pub type RunningPod = (String, Arc<WorkloadKey>, u64, u64);

/// The running pods with a controller, kept current by a pod watch (one list at start, then
/// events), so a learning round costs the API server nothing.
///
/// One map, also while the watch (re)lists: every pod the list applies is stamped with the
/// list's number, and at the end of the list the pods it did not stamp are dropped. (A second
/// map for the list being read would double the collector's memory at every relist: about 60
/// MiB at 150,000 pods.)
#[derive(Default)]
pub struct RunningPods {
    state: Mutex<RunningState>,
    synced: AtomicBool,
}

#[derive(Default)]
struct RunningState {
    /// By uid: the pod, and the number of the last list that saw it.
    pods: HashMap<String, (RunningPod, u64)>,
    list: u64,
    listing: bool,
    /// Each workload's key once, shared by its pods.
    keys: HashMap<WorkloadKey, Arc<WorkloadKey>>,
}

impl RunningState {
    fn key(&mut self, key: WorkloadKey) -> Arc<WorkloadKey> {
        if let Some(shared) = self.keys.get(&key) {
            return shared.clone();
        }
        let shared = Arc::new(key.clone());
        self.keys.insert(key, shared.clone());
        shared
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunningPods {
    /// Starts the watch that keeps the set current.
    pub fn watch(
        self: &Arc<Self>,
        client: kube::Client,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(RUNNING_PODS);
        tokio::spawn(
            crate::watch::run_watch(api, config, self.clone(), shutdown).instrument(info_span!(
                "watch",
                resource = "pods",
                purpose = "workload usage"
            )),
        )
    }

    /// Whether the watch has listed every running pod once.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// Every running pod, or `None` until the watch has listed them all.
    pub fn snapshot(&self) -> Option<Vec<RunningPod>> {
        self.synced.load(Ordering::SeqCst).then(|| {
            lock(&self.state)
                .pods
                .values()
                .map(|(pod, _)| pod.clone())
                .collect()
        })
    }

    /// How many distinct workload keys are held (for tests: keys of gone workloads are
    /// dropped at the end of each list).
    pub fn workload_keys(&self) -> usize {
        lock(&self.state).keys.len()
    }

    fn entry(pod: &Pod) -> Option<(String, String, WorkloadKey, u64, u64)> {
        let uid = pod.metadata.uid.clone()?;
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if !running || pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let workload = WorkloadKey::of(pod)?;
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let r = pod_requests(pod);
        Some((uid, name, workload, r.cpu_millis, r.memory_bytes))
    }
}

impl crate::watch::Sink<Pod> for Arc<RunningPods> {
    fn init(&self) {
        let mut state = lock(&self.state);
        state.list += 1;
        state.listing = true;
    }
    fn apply(&self, pod: &Pod) {
        let mut state = lock(&self.state);
        match RunningPods::entry(pod) {
            Some((uid, name, workload, cpu, memory)) => {
                let workload = state.key(workload);
                let list = state.list;
                state
                    .pods
                    .insert(uid, ((name, workload, cpu, memory), list));
            }
            None => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    state.pods.remove(uid);
                }
            }
        }
    }
    fn delete(&self, pod: &Pod) {
        if let Some(uid) = pod.metadata.uid.as_deref() {
            lock(&self.state).pods.remove(uid);
        }
    }
    fn init_done(&self) {
        let mut state = lock(&self.state);
        if state.listing {
            // what the list did not see is gone
            let list = state.list;
            state.pods.retain(|_, (_, seen)| *seen == list);
            state.listing = false;
            // and so are the keys of workloads without pods (held only by the key map)
            state.keys.retain(|_, shared| Arc::strong_count(shared) > 1);
        }
        drop(state);
        self.synced.store(true, Ordering::SeqCst);
    }
    fn failed(&self) {
        // The set is kept as it was while the watch re-lists: learning goes on meanwhile.
    }
}

/// The samples for [`learn`]: each running pod with its usage, where Prometheus has it.
pub fn samples(
    pods: &[RunningPod],
    cpu: &HashMap<String, f64>,
    memory: &HashMap<String, f64>,
) -> Vec<PodSample> {
    pods.iter()
        .map(|(name, workload, cpu_request, memory_request)| PodSample {
            workload: workload.clone(),
            cpu_request_millis: *cpu_request,
            memory_request_bytes: *memory_request,
            cpu_cores: cpu.get(name).copied(),
            memory_bytes: memory.get(name).copied(),
        })
        .collect()
}

/// Drops the workloads measured on the fewest pods until the table fits a ConfigMap.
pub fn fit(table: &mut UsageTable) -> usize {
    let mut dropped = 0;
    // ~80 bytes per entry: estimate first, then trim precisely.
    while table.to_json().len() > MAX_PUBLISHED_BYTES && !table.workloads.is_empty() {
        let excess = table.to_json().len() - MAX_PUBLISHED_BYTES;
        let mut by_pods: Vec<(u32, WorkloadKey)> = table
            .workloads
            .iter()
            .map(|(k, v)| (v.pods, k.clone()))
            .collect();
        by_pods.sort();
        for (_, key) in by_pods.into_iter().take((excess / 80).max(1)) {
            table.workloads.remove(&key);
            dropped += 1;
        }
    }
    dropped
}

/// One learning round: measure, then learn. Publishes nothing.
pub async fn measure(
    prometheus: &PrometheusClient,
    running: &RunningPods,
    usage: &WorkloadUsage,
    now: Timestamp,
) -> Result<Learned, UsageError> {
    let cpu = per_pod(prometheus, &usage.cpu_query, "CPU", now).await?;
    if cpu.is_empty() {
        return Err(UsageError::NoSeries);
    }
    let memory = match &usage.memory_query {
        Some(q) => per_pod(prometheus, q, "memory", now).await?,
        None => HashMap::new(),
    };
    let pods = running.snapshot().ok_or(UsageError::NotSynced)?;
    let samples = samples(&pods, &cpu, &memory);
    let measured = samples
        .iter()
        .filter(|s| s.cpu_cores.is_some() || s.memory_bytes.is_some())
        .count();
    let mut table = learn(&samples, now);
    let dropped = fit(&mut table);
    Ok(Learned {
        table,
        pods: pods.len(),
        measured,
        dropped,
    })
}

/// Writes the table by server-side apply (creating the ConfigMap the first time).
pub async fn publish(
    api: &Api<ConfigMap>,
    name: &str,
    table: &UsageTable,
) -> Result<(), UsageError> {
    let config_map = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "realload",
                "app.kubernetes.io/component": "collector",
                "app.kubernetes.io/managed-by": FIELD_MANAGER,
            },
        },
        "data": BTreeMap::from([(USAGE_KEY, table.to_json())]),
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(&config_map))
        .await
        .map(|_| ())
        .map_err(|source| UsageError::Publish {
            name: name.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use realload_common::workload::UsageEntry;

    fn key(name: &str) -> WorkloadKey {
        WorkloadKey {
            namespace: "ns".into(),
            kind: "Deployment".into(),
            name: name.into(),
        }
    }

    #[test]
    fn samples_join_pods_to_their_series_by_namespace_and_name() {
        let pods = vec![
            ("ns/a-1".to_string(), key("a"), 1000, 1 << 30),
            ("ns/a-2".to_string(), key("a"), 1000, 1 << 30),
        ];
        let cpu = HashMap::from([("ns/a-1".to_string(), 0.5)]);
        let pods: Vec<RunningPod> = pods
            .into_iter()
            .map(|(n, k, c, m)| (n, Arc::new(k), c, m))
            .collect();
        let s = samples(&pods, &cpu, &HashMap::new());
        assert_eq!(s[0].cpu_cores, Some(0.5));
        assert_eq!(s[1].cpu_cores, None);
        assert_eq!(
            pod_query("sum by (namespace, pod) (x)"),
            r#"label_join(sum by (namespace, pod) (x), "realload_pod", "/", "namespace", "pod")"#
        );
    }

    #[test]
    fn the_running_pods_follow_the_watch() {
        use crate::watch::Sink;
        let pod = |uid: &str, phase: &str, owned: bool| -> Pod {
            let mut v = serde_json::json!({"metadata": {"name": format!("api-h1-{uid}"), "namespace": "ns", "uid": uid,
                    "labels": {"pod-template-hash": "h1"}},
                "spec": {"nodeName": "n", "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]},
                "status": {"phase": phase}});
            if owned {
                v["metadata"]["ownerReferences"] = serde_json::json!([{"apiVersion": "apps/v1",
                    "kind": "ReplicaSet", "name": "api-h1", "uid": "rs", "controller": true}]);
            }
            serde_json::from_value(v).unwrap()
        };
        let running = Arc::new(RunningPods::default());
        assert_eq!(
            running.snapshot(),
            None,
            "nothing until the first list is complete"
        );
        running.init();
        running.apply(&pod("a", "Running", true));
        running.apply(&pod("b", "Running", true));
        running.apply(&pod("bare", "Running", false));
        running.init_done();
        let names = |r: &RunningPods| {
            let mut n: Vec<String> = r.snapshot().unwrap().into_iter().map(|p| p.0).collect();
            n.sort();
            n
        };
        assert_eq!(names(&running), ["ns/api-h1-a", "ns/api-h1-b"]);
        let snapshot = running.snapshot().unwrap();
        assert_eq!(*snapshot[0].1, key("api"));
        assert!(
            Arc::ptr_eq(&snapshot[0].1, &snapshot[1].1),
            "one key per workload"
        );
        drop(snapshot);
        assert_eq!(running.workload_keys(), 1);
        // finished, deleted: gone
        running.apply(&pod("a", "Succeeded", true));
        assert_eq!(names(&running), ["ns/api-h1-b"]);
        running.delete(&pod("b", "Running", true));
        assert!(names(&running).is_empty());
        // a re-list replaces the set whole: "d" (missed while the watch was down) is dropped at
        // its end, and learning keeps the old set while it lists
        running.apply(&pod("d", "Running", true));
        running.init();
        running.apply(&pod("c", "Running", true));
        assert_eq!(names(&running), ["ns/api-h1-c", "ns/api-h1-d"]);
        running.init_done();
        assert_eq!(names(&running), ["ns/api-h1-c"]);
        // a workload whose pods are all gone loses its key at the end of the next list
        running.delete(&pod("c", "Running", true));
        running.init();
        running.init_done();
        assert!(names(&running).is_empty());
        assert_eq!(running.workload_keys(), 0);
    }

    #[test]
    fn a_table_too_large_for_a_config_map_loses_its_least_measured_workloads() {
        let mut table = UsageTable {
            updated: Some(Timestamp::UNIX_EPOCH),
            ..UsageTable::default()
        };
        for i in 0..20_000u32 {
            table.workloads.insert(
                key(&format!("workload-with-a-longish-name-{i:05}")),
                UsageEntry {
                    cpu: Some(0.123),
                    memory: Some(0.456),
                    pods: 1 + i % 7,
                },
            );
        }
        let dropped = fit(&mut table);
        assert!(dropped > 0);
        assert!(table.to_json().len() <= MAX_PUBLISHED_BYTES);
        assert_eq!(table.workloads.len() + dropped, 20_000);
        let kept_min = table.workloads.values().map(|e| e.pods).min().unwrap();
        assert!(kept_min > 1, "the one-pod workloads go first");
        let mut small = UsageTable::default();
        small.workloads.insert(
            key("a"),
            UsageEntry {
                cpu: Some(1.0),
                memory: None,
                pods: 1,
            },
        );
        assert_eq!(fit(&mut small), 0);
    }
}
