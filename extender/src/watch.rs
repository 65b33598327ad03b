//! The Node and Pod watches that feed the index.
//!
//! An error ends the current watch: the index is marked unsynced (readiness drops), and after a
//! backoff the watch starts over with a full re-list, so "synced" always means a complete list
//! was seen. (kube's own watcher would resume the watch silently, leaving no moment at which
//! readiness could honestly come back.)

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Api;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use std::collections::BTreeMap;
use std::sync::Mutex;

use realload_common::objects::NodeView;
use realload_common::policy::Policy;
use tokio::sync::watch;

use crate::metrics::WatchLabel;
use crate::state::State;

/// Only pods that hold node resources: bound and not finished. Pods leaving this selection
/// (finished, deleted) arrive as deletions.
pub const POD_FIELD_SELECTOR: &str = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed";

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What a watch does with its events.
pub trait Sink<K>: Send + Sync + 'static {
    fn init(&self);
    fn apply(&self, object: &K);
    fn delete(&self, object: &K);
    fn init_done(&self);
    fn failed(&self);
}

struct Nodes(Arc<State>);
struct Pods(Arc<State>);
/// The learned usage ConfigMap: `seen` tells, at the end of a list, whether it exists.
struct Usage {
    state: Arc<State>,
    seen: std::sync::atomic::AtomicBool,
}

impl Sink<Node> for Nodes {
    fn init(&self) {
        self.0.nodes_init();
    }
    fn apply(&self, node: &Node) {
        self.0.apply_node(node);
    }
    fn delete(&self, node: &Node) {
        self.0.delete_node(node);
    }
    fn init_done(&self) {
        self.0.nodes_init_done();
        info!(nodes = self.0.generation().nodes.len(), "node index synced");
    }
    fn failed(&self) {
        self.0
            .metrics
            .watch_restarts
            .get_or_create(&WatchLabel {
                watch: "nodes".into(),
            })
            .inc();
        self.0.mark_unsynced(true, false);
    }
}

impl Sink<Pod> for Pods {
    fn init(&self) {
        self.0.pods_init();
    }
    fn apply(&self, pod: &Pod) {
        self.0.apply_pod(pod);
    }
    fn delete(&self, pod: &Pod) {
        self.0.delete_pod(pod);
    }
    fn init_done(&self) {
        self.0.pods_init_done();
        info!(ledger = self.0.generation().ledger_len, "pod ledger synced");
    }
    fn failed(&self) {
        self.0
            .metrics
            .watch_restarts
            .get_or_create(&WatchLabel {
                watch: "pods".into(),
            })
            .inc();
        self.0.mark_unsynced(false, true);
    }
}

impl Sink<ConfigMap> for Usage {
    fn init(&self) {
        self.seen.store(false, std::sync::atomic::Ordering::SeqCst);
    }
    fn apply(&self, config_map: &ConfigMap) {
        self.seen.store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.apply_usage(config_map);
    }
    fn delete(&self, _: &ConfigMap) {
        info!("workload usage ConfigMap deleted; the hot-spot factors apply");
        self.state.clear_usage();
    }
    fn init_done(&self) {
        if !self.seen.load(std::sync::atomic::Ordering::SeqCst) {
            info!(
                "no workload usage ConfigMap yet; the hot-spot factors apply until the collector publishes one"
            );
            self.state.clear_usage();
        }
    }
    fn failed(&self) {
        // Learning is optional: a failing watch (no RBAC for ConfigMaps, say) keeps the table
        // in force, which ages out after workloadUsage.maxAge, and never costs readiness.
        self.state
            .metrics
            .watch_restarts
            .get_or_create(&WatchLabel {
                watch: "workload-usage".into(),
            })
            .inc();
    }
}

/// Runs a watch until shutdown: list, then watch; on any error, report, back off, start over.
pub async fn run_watch<K, S>(
    api: Api<K>,
    config: watcher::Config,
    sink: S,
    shutdown: CancellationToken,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    S: Sink<K>,
{
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut stream = watcher::watcher(api.clone(), config.clone()).boxed();
        let failure = loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                Some(Ok(Event::Init)) => sink.init(),
                Some(Ok(Event::InitApply(o) | Event::Apply(o))) => sink.apply(&o),
                Some(Ok(Event::Delete(o))) => sink.delete(&o),
                Some(Ok(Event::InitDone)) => {
                    sink.init_done();
                    backoff = BACKOFF_MIN;
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the watch stream ended".to_string(),
            }
        };
        sink.failed();
        warn!(error = %failure, retry_in = ?backoff, "watch failed; re-listing after a backoff");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

pub fn spawn_node_watch(
    state: Arc<State>,
    client: kube::Client,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    spawn_node_sink(Nodes(state), client, shutdown)
}

fn spawn_node_sink<S: Sink<Node>>(
    sink: S,
    client: kube::Client,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Node> = Api::all(client);
    tokio::spawn(
        run_watch(api, watcher::Config::default(), sink, shutdown)
            .instrument(info_span!("watch", resource = "nodes")),
    )
}

/// The Nodes the collector works on: each one's view, by name, fed by a node watch.
pub struct NodeStore {
    policy: Mutex<Arc<Policy>>,
    nodes: Mutex<BTreeMap<String, NodeView>>,
    pending: Mutex<Option<BTreeMap<String, NodeView>>>,
    synced: watch::Sender<bool>,
}

impl NodeStore {
    pub fn new(policy: Arc<Policy>) -> Arc<NodeStore> {
        Arc::new(NodeStore {
            policy: Mutex::new(policy),
            nodes: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(None),
            synced: watch::Sender::new(false),
        })
    }

    /// Starts the node watch that keeps this store current.
    pub fn watch(
        self: &Arc<Self>,
        client: kube::Client,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        spawn_node_sink(self.clone(), client, shutdown)
    }

    /// Waits until the watch has listed every Node.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as the store, which the caller holds.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Every Node, sorted by name.
    pub fn nodes(&self) -> Vec<NodeView> {
        lock(&self.nodes).values().cloned().collect()
    }

    /// Re-reads every view for a new policy (its metrics name the annotations to parse).
    pub fn set_policy(&self, policy: Arc<Policy>) {
        for view in lock(&self.nodes).values_mut() {
            view.reparse(&policy);
        }
        *lock(&self.policy) = policy;
    }

    fn view(&self, node: &Node) -> NodeView {
        NodeView::from_node(node, &lock(&self.policy))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sink<Node> for Arc<NodeStore> {
    fn init(&self) {
        *lock(&self.pending) = Some(BTreeMap::new());
    }
    fn apply(&self, node: &Node) {
        let view = self.view(node);
        if let Some(p) = lock(&self.pending).as_mut() {
            p.insert(view.name.clone(), view.clone());
        }
        lock(&self.nodes).insert(view.name.clone(), view);
    }
    fn delete(&self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            lock(&self.nodes).remove(name);
            if let Some(p) = lock(&self.pending).as_mut() {
                p.remove(name);
            }
        }
    }
    fn init_done(&self) {
        if let Some(p) = lock(&self.pending).take() {
            *lock(&self.nodes) = p;
        }
        info!(nodes = lock(&self.nodes).len(), "node list synced");
        self.synced.send_replace(true);
    }
    fn failed(&self) {
        self.synced.send_replace(false);
    }
}

pub fn spawn_pod_watch(
    state: Arc<State>,
    client: kube::Client,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(POD_FIELD_SELECTOR);
    tokio::spawn(
        run_watch(api, config, Pods(state), shutdown)
            .instrument(info_span!("watch", resource = "pods")),
    )
}

/// Watches the learned usage ConfigMap `name` in `namespace` (only it: a field selector on its
/// name, so the extender needs read access to ConfigMaps in its own namespace alone).
pub fn spawn_usage_watch(
    state: Arc<State>,
    client: kube::Client,
    namespace: &str,
    name: &str,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let sink = Usage {
        state,
        seen: std::sync::atomic::AtomicBool::new(false),
    };
    tokio::spawn(
        run_watch(api, config, sink, shutdown).instrument(info_span!(
            "watch",
            resource = "configmaps",
            namespace = %namespace,
            name = %name
        )),
    )
}
