//! An in-process Kubernetes API server for tests.
//!
//! `kube::Client` talks to it over real HTTP on 127.0.0.1 (a free port), so the code under test
//! runs unchanged. It speaks the wire format closely enough for what realload uses: list
//! (resourceVersion, limit/continue, label and field selectors), watch (events, bookmarks, resume
//! from a resourceVersion, 410 when too old, timeouts, `sendInitialEvents`), get / create / update
//! / delete with optimistic concurrency, JSON merge patch, JSON patch, server-side apply with field
//! ownership, the Eviction subresource with PodDisruptionBudget arithmetic and the Binding
//! subresource, and `Status` errors shaped like kube-apiserver's. What it does not model is listed
//! in `tests/README.md`.
//!
//! Tests control it directly: seed it from a snapshot List, read state back, read the log of
//! requests, and inject latency, error responses, dropped connections and watch disconnects.

pub mod conformance;
pub mod resources;
pub mod selectors;
mod server;
pub mod ssa;
pub mod status;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use resources::Resource;
use store::Store;

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer with this status code and an API-server-shaped `Status` (429 carries `Retry-After`).
    Status { code: u16, retry_after: Option<u32> },
    /// Break the connection instead of answering.
    Drop,
    /// Wait, then serve the request normally.
    Delay(Duration),
    /// Serve a watch, but end its stream after this many events.
    CutWatchAfter(usize),
}

/// A fault rule: which requests it hits, and how often.
#[derive(Debug, Clone)]
pub struct Fault {
    method: Option<Method>,
    path_contains: String,
    query_contains: Option<String>,
    skip: usize,
    times: usize,
    action: FaultAction,
}

impl Fault {
    /// Matches requests whose path contains `path_contains` (and method, if given). By default it
    /// hits the first matching request once and answers 500.
    pub fn on(method: Option<Method>, path_contains: &str) -> Fault {
        Fault {
            method,
            path_contains: path_contains.to_string(),
            query_contains: None,
            skip: 0,
            times: 1,
            action: FaultAction::Status {
                code: 500,
                retry_after: None,
            },
        }
    }

    /// Only requests whose query string contains this (e.g. `watch=true`).
    pub fn with_query(mut self, fragment: &str) -> Fault {
        self.query_contains = Some(fragment.to_string());
        self
    }

    /// Let this many matching requests through first.
    pub fn after(mut self, skip: usize) -> Fault {
        self.skip = skip;
        self
    }

    /// Hit this many matching requests (`usize::MAX` for all).
    pub fn times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }

    pub fn respond(mut self, code: u16) -> Fault {
        self.action = FaultAction::Status {
            code,
            retry_after: None,
        };
        self
    }

    /// 429 throttling with `Retry-After: seconds`.
    pub fn throttle(mut self, seconds: u32) -> Fault {
        self.action = FaultAction::Status {
            code: 429,
            retry_after: Some(seconds),
        };
        self
    }

    pub fn drop_connection(mut self) -> Fault {
        self.action = FaultAction::Drop;
        self
    }

    pub fn delay(mut self, d: Duration) -> Fault {
        self.action = FaultAction::Delay(d);
        self
    }

    pub fn cut_watch_after(mut self, events: usize) -> Fault {
        self.action = FaultAction::CutWatchAfter(events);
        self
    }

    fn matches(&self, method: &Method, path: &str, query: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && path.contains(&self.path_contains)
            && self
                .query_contains
                .as_ref()
                .is_none_or(|q| query.contains(q.as_str()))
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// 0 for a dropped connection.
    pub status: u16,
    /// Bytes of the response body (0 for watches, which stream).
    pub response_bytes: usize,
    pub watch: bool,
    pub injected: bool,
}

impl RequestRecord {
    fn new(
        method: &Method,
        path: &str,
        query: &str,
        status: u16,
        bytes: usize,
        watch: bool,
        injected: bool,
    ) -> Self {
        RequestRecord {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            status,
            response_bytes: bytes,
            watch,
            injected,
        }
    }

    /// A query parameter's (still URL-encoded) value.
    pub fn param(&self, key: &str) -> Option<String> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&self.query)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

struct Settings {
    watch_timeout: Duration,
    bookmark_interval: Duration,
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<RequestRecord>>,
    settings: Mutex<Settings>,
    watch_kill: tokio::sync::watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide other failures behind poisoning.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn take_fault(&self, method: &Method, path: &str, query: &str) -> Option<FaultAction> {
        let mut faults = lock(&self.faults);
        for fault in faults.iter_mut() {
            if !fault.matches(method, path, query) {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            if fault.times > 0 {
                fault.times = fault.times.saturating_sub(1);
                return Some(fault.action.clone());
            }
        }
        None
    }

    fn log(&self, record: RequestRecord) {
        lock(&self.log).push(record);
    }

    fn default_watch_timeout(&self) -> Duration {
        lock(&self.settings).watch_timeout
    }

    fn bookmark_interval(&self) -> Duration {
        lock(&self.settings).bookmark_interval
    }
}

/// A running simulator. Dropping it stops the server.
pub struct ApiSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for ApiSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ApiSim {
    /// Starts an empty simulator on 127.0.0.1 with a free port. Call inside a Tokio runtime.
    pub async fn start() -> std::io::Result<ApiSim> {
        let (watch_kill, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            settings: Mutex::new(Settings {
                watch_timeout: Duration::from_secs(1800),
                bookmark_interval: Duration::from_secs(60),
            }),
            watch_kill,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "apisim server stopped");
            }
        });
        Ok(ApiSim {
            shared,
            addr,
            server,
        })
    }

    /// Starts a simulator seeded from a snapshot List.
    pub async fn start_with(list: &Value) -> Result<ApiSim, String> {
        let sim = ApiSim::start().await.map_err(|e| e.to_string())?;
        sim.seed_list(list)?;
        Ok(sim)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `kube::Config` pointing at the simulator.
    pub fn config(&self) -> kube::Config {
        let url: http::Uri = match self.url().parse() {
            Ok(u) => u,
            Err(_) => unreachable!("a socket address always forms a valid URI"),
        };
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(30));
        // kube retries 429/503/504 by default (up to 15 times, honouring Retry-After); tests of
        // the simulator want to see each answer as sent.
        config.default_retry = false;
        config
    }

    /// Writes a kubeconfig pointing at the simulator, for binaries run as child processes
    /// (`KUBECONFIG=path`).
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: apisim\n  cluster:\n    server: {url}\ncontexts:\n- name: apisim\n  context:\n    cluster: apisim\n    user: apisim\n    namespace: default\ncurrent-context: apisim\nusers:\n- name: apisim\n  user:\n    token: apisim\n",
            url = self.url()
        );
        std::fs::write(path, text)
    }

    /// A `kube::Client` talking to the simulator.
    pub fn client(&self) -> kube::Client {
        match kube::Client::try_from(self.config()) {
            Ok(c) => c,
            Err(e) => panic!("building a kube client for the simulator failed: {e}"),
        }
    }

    /// Seeds every item of a `List` (a snapshot); items of kinds it does not serve are skipped.
    /// Returns how many were stored.
    pub fn seed_list(&self, list: &Value) -> Result<usize, String> {
        let items = match list.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => vec![list.clone()],
        };
        let mut stored = 0;
        for (i, item) in items.into_iter().enumerate() {
            let kind = item
                .get("kind")
                .and_then(Value::as_str)
                .ok_or(format!("item {i} has no kind"))?;
            let api_version = item.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if let Some(resource) = resources::for_kind(api_version, kind) {
                self.shared.lock().seed(resource, item);
                stored += 1;
            }
        }
        Ok(stored)
    }

    /// Stores (or replaces) one object as-is, notifying watchers.
    pub fn put(&self, object: Value) -> Result<Value, String> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("object has no kind")?;
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let resource =
            resources::for_kind(api_version, kind).ok_or(format!("kind {kind} is not served"))?;
        Ok(self.shared.lock().seed(resource, object))
    }

    /// Changes an object in place through `edit`, like a controller writing it (a MODIFIED event).
    pub fn modify(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<Value, String> {
        let mut store = self.shared.lock();
        let key = store::key_for(&resource, namespace, name);
        let mut object = store
            .get(&resource, &key)
            .cloned()
            .ok_or(format!("{} {namespace}/{name} not found", resource.plural))?;
        edit(&mut object);
        Ok(store.seed(resource, object))
    }

    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let key = store::key_for(&resource, namespace, name);
        self.shared.lock().get(&resource, &key).cloned()
    }

    pub fn get_as<T: DeserializeOwned>(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Option<T> {
        self.get(resource, namespace, name)
            .and_then(|v| serde_json::from_value(v).ok())
    }

    pub fn list(&self, resource: Resource) -> Vec<Value> {
        self.shared
            .lock()
            .list(&resource, None)
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Ends every open watch stream now (clients see the stream close and re-watch).
    pub fn disconnect_watches(&self) {
        self.shared
            .watch_kill
            .send_modify(|generation| *generation += 1);
    }

    /// Forgets the event history: watches and continue tokens from older versions get 410.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// Keep at most this many events for watch resumption.
    pub fn set_history_limit(&self, events: usize) {
        self.shared.lock().history_limit = events;
    }

    /// Server-side watch timeout when the client sends none.
    pub fn set_watch_timeout(&self, d: Duration) {
        lock(&self.shared.settings).watch_timeout = d;
    }

    pub fn set_bookmark_interval(&self, d: Duration) {
        lock(&self.shared.settings).bookmark_interval = d;
    }

    /// Terminating pods are removed at once, as if their kubelet finished them immediately.
    pub fn set_instant_pod_termination(&self, on: bool) {
        self.shared.lock().instant_pod_termination = on;
    }

    /// What kubelets do: removes pods that are terminating. Returns how many.
    pub fn finish_terminating_pods(&self) -> usize {
        self.shared.lock().finish_terminating_pods()
    }

    /// The status a disruption controller would compute for a PDB right now.
    pub fn pdb_status(&self, namespace: &str, name: &str) -> Option<Value> {
        let store = self.shared.lock();
        let pdb = store
            .get(&resources::PDBS, &(namespace.to_string(), name.to_string()))?
            .clone();
        Some(store.pdb_status(&pdb, namespace))
    }
}
