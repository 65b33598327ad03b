//! The HTTP API: `POST /filter`, `/prioritize`, `/bind` (under `--path-prefix`), the admin
//! endpoints and `GET /debug/nodes`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::Pod;
use realload_common::objects::NeutralPod;
use realload_common::policy::Policy;
use realload_common::reading::RawReading;
use realload_common::scoring::{self, Allocatable, FilterVerdict, NEUTRAL_SCORE, NodeAssessment};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::index::Generation;
use crate::memory::DecisionRecord;
use crate::metrics::ReasonLabel;
use crate::protocol::{self, Candidates, ExtenderArgs, NodeRead, ProtocolError};
use crate::state::State;
use serde_json::value::RawValue;

/// Which call kube-scheduler made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Filter,
    Prioritize,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Filter => "filter",
            Verb::Prioritize => "prioritize",
        }
    }
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Judged on the readings.
    Judged,
    /// Too many offered nodes without valid readings: load-awareness suspended for the pod.
    BreakerTripped,
    /// The watches have not listed everything yet: a neutral answer.
    Unsynced,
    /// The pod is exempt: a neutral answer.
    Neutral(NeutralPod),
}

impl Outcome {
    /// The `outcome` label of the request metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Judged => "ok",
            Outcome::BreakerTripped => "breaker",
            Outcome::Unsynced => "unsynced",
            Outcome::Neutral(n) => n.as_str(),
        }
    }
}

/// What the extender decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub outcome: Outcome,
    pub verdicts: Vec<FilterVerdict>,
    pub scores: Vec<i64>,
    /// Candidates without valid readings (0 when the answer is neutral before judging).
    pub unknown: usize,
}

fn neutral(outcome: Outcome, n: usize) -> Evaluation {
    Evaluation {
        outcome,
        verdicts: vec![FilterVerdict::Pass; n],
        scores: vec![NEUTRAL_SCORE; n],
        unknown: 0,
    }
}

fn allocatable_of(node: &protocol::NodeRead<'_>) -> Allocatable {
    Allocatable {
        cpu_millis: node
            .cpu
            .as_deref()
            .and_then(|q| realload_common::quantity::cpu_millis(q).ok())
            .unwrap_or(0),
        memory_bytes: node
            .memory
            .as_deref()
            .and_then(|q| realload_common::quantity::bytes(q).ok())
            .unwrap_or(0),
    }
}

/// The readings a non-cache request carries on one Node, parsed for the policy.
fn carried_readings(policy: &Policy, node: &NodeRead<'_>) -> smallvec::SmallVec<[RawReading; 4]> {
    policy
        .metrics
        .iter()
        .map(|m| {
            RawReading::from_annotation(
                node.annotation(&m.annotation),
                m.format,
                &policy.crane_timezone,
            )
        })
        .collect()
}

/// Judges every candidate of a request against one generation of the index: neutral pods and an
/// unsynced index get neutral answers; otherwise the shared scoring decides.
///
/// The circuit breaker is judged on the nodes kube-scheduler offered: by the filter over its
/// candidates, and by prioritize with the filter's verdict for the same pod (prioritize only sees
/// what realload's own filter let through). A filter call that lets the pod onto unknown nodes
/// counts it against their cap until its binding is seen.
pub fn evaluate(
    state: &State,
    generation: &Generation,
    args: &ExtenderArgs<'_>,
    verb: Verb,
) -> Evaluation {
    let n = args.candidates.len();
    if let Some(exempt) = args.pod.neutral() {
        return neutral(Outcome::Neutral(exempt), n);
    }
    if !generation.synced() {
        state.metrics.unsynced_requests.inc();
        return neutral(Outcome::Unsynced, n);
    }
    let policy = &generation.policy;
    let now = state.clock.now();
    let key = args.pod.key();
    let in_flight = state.memory.in_flight_for(&key);
    let flying = |name: &str| {
        in_flight
            .as_ref()
            .and_then(|m| m.get(name))
            .copied()
            .unwrap_or(0)
    };
    // Judge each candidate as it comes: only the small judgement is kept.
    let judged: Vec<scoring::Judgement> = match &args.candidates {
        Candidates::Names(names) => names
            .iter()
            .map(|name| {
                generation
                    .judge(name, now)
                    .with_in_flight(policy, flying(name))
            })
            .collect(),
        Candidates::Nodes(nodes) => nodes
            .iter()
            .map(|(_, node)| {
                let readings = carried_readings(policy, node);
                let assessment = generation.assess_carried(
                    &node.name,
                    &readings,
                    allocatable_of(node),
                    flying(&node.name),
                    now,
                );
                scoring::judge(policy, &assessment)
            })
            .collect(),
    };
    let offered_unknown = judged.iter().filter(|j| !j.known).count();
    let judge_here =
        || scoring::breaker_trips_for(policy, (offered_unknown, n), generation.fleet());
    let breaker = match verb {
        Verb::Filter => judge_here(),
        Verb::Prioritize => state.memory.breaker_of(&key).unwrap_or_else(judge_here),
    };
    let decision = scoring::decide_judged_with(policy, judged, Some(breaker));
    if verb == Verb::Filter {
        let unknown_passed: smallvec::SmallVec<[Arc<str>; 4]> = if decision.breaker_tripped {
            smallvec::SmallVec::new()
        } else {
            (0..n)
                .filter(|&i| decision.verdicts[i].passes() && !decision.known[i])
                .map(|i| Arc::from(args.candidates.name(i)))
                .collect()
        };
        state
            .memory
            .remember(&key, decision.breaker_tripped, unknown_passed);
    }
    if decision.breaker_tripped {
        state.metrics.breaker_trips.inc();
        warn!(
            pod = %args.pod.display_name(),
            verb = verb.as_str(),
            unknown = decision.unknown,
            candidates = n,
            "circuit breaker: too many offered nodes without valid readings, load-awareness suspended for this pod"
        );
    }
    Evaluation {
        outcome: if decision.breaker_tripped {
            Outcome::BreakerTripped
        } else {
            Outcome::Judged
        },
        verdicts: decision.verdicts,
        scores: decision.scores,
        unknown: decision.unknown,
    }
}

/// Remembers the request for `/debug/nodes`.
fn record(state: &State, verb: Verb, args: &ExtenderArgs<'_>, eval: &Evaluation) {
    let (passed, best) = match verb {
        Verb::Filter => (
            eval.verdicts.iter().filter(|v| v.passes()).count(),
            Vec::new(),
        ),
        Verb::Prioritize => {
            let top = eval.scores.iter().copied().max().unwrap_or(NEUTRAL_SCORE);
            let best: Vec<usize> = (0..eval.scores.len())
                .filter(|&i| eval.scores[i] == top)
                .collect();
            let named = best
                .iter()
                .take(5)
                .map(|&i| args.candidates.name(i).to_string())
                .collect();
            (best.len(), named)
        }
    };
    state.recent.push(DecisionRecord {
        at: state.clock.now(),
        verb: verb.as_str(),
        pod: args.pod.display_name(),
        outcome: eval.outcome.as_str(),
        candidates: args.candidates.len(),
        unknown: eval.unknown,
        breaker_tripped: eval.outcome == Outcome::BreakerTripped,
        passed,
        best,
    });
}

#[derive(Clone)]
pub struct AppState {
    pub state: Arc<State>,
    pub body_limit: usize,
    /// Set when `--bind`: the client that creates Bindings (None in snapshot mode).
    pub binder: Option<Binder>,
}

#[derive(Clone)]
pub struct Binder {
    pub client: Option<kube::Client>,
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn read_body(app: &AppState, request: Request) -> Result<axum::body::Bytes, String> {
    axum::body::to_bytes(request.into_body(), app.body_limit)
        .await
        .map_err(|_| {
            format!(
                "request body exceeds the {} byte limit (--body-limit) or could not be read",
                app.body_limit
            )
        })
}

/// A response body: one string, or chunks that reference the request's bytes (the echoed
/// Node objects of a non-cache filter answer are never copied).
pub enum Reply {
    Text(String),
    Chunks(Vec<Bytes>),
}

impl Reply {
    pub fn len(&self) -> usize {
        match self {
            Reply::Text(t) => t.len(),
            Reply::Chunks(c) => c.iter().map(Bytes::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_body(self) -> Body {
        match self {
            Reply::Text(t) => Body::from(t),
            Reply::Chunks(c) => Body::from_stream(futures::stream::iter(
                c.into_iter().map(Ok::<_, std::io::Error>),
            )),
        }
    }
}

/// The passing Nodes as slices of the request body, comma-separated. Nodes that pass one after
/// another in the request are one slice (the request's own comma lies between them), so a typical
/// answer is a handful of chunks rather than two per Node.
fn echo_runs(body: &Bytes, nodes: &[(&RawValue, NodeRead<'_>)], passed: &[usize]) -> Vec<Bytes> {
    let base = body.as_ptr() as usize;
    // Where a Node lies in the body (always, as the parser borrows; checked all the same).
    let span = |raw: &str| {
        let start = (raw.as_ptr() as usize).checked_sub(base)?;
        (start + raw.len() <= body.len()).then_some((start, start + raw.len()))
    };
    let mut out: Vec<Bytes> = Vec::new();
    let mut run: Option<(usize, usize, usize)> = None; // (first byte, end byte, last index)
    let flush = |out: &mut Vec<Bytes>, run: Option<(usize, usize, usize)>| {
        if let Some((first, end, _)) = run {
            if !out.is_empty() {
                out.push(Bytes::from_static(b","));
            }
            out.push(body.slice(first..end));
        }
    };
    for &i in passed {
        let Some((raw, _)) = nodes.get(i) else {
            continue; // indices come from the same request; never out of range
        };
        let raw = raw.get();
        match (span(raw), run) {
            (Some((_, end)), Some((first, _, last))) if i == last + 1 => {
                run = Some((first, end, i))
            }
            (Some((start, end)), _) => {
                flush(&mut out, run.take());
                run = Some((start, end, i));
            }
            (None, _) => {
                flush(&mut out, run.take());
                if !out.is_empty() {
                    out.push(Bytes::from_static(b","));
                }
                out.push(Bytes::copy_from_slice(raw.as_bytes()));
            }
        }
    }
    flush(&mut out, run);
    out
}

/// A filter request body in, the status and response body out (the handler's whole work,
/// without HTTP; benchmarks call it directly). One generation answers the whole request: the
/// annotation keys read from the body and the judgement come from the same policy.
pub fn filter_body(state: &State, body: &Bytes, started: Instant) -> (StatusCode, Reply) {
    let generation = state.generation();
    let keys = generation.policy.annotation_keys();
    let args = match protocol::parse_args(body, &keys) {
        Ok(a) => a,
        Err(e) => {
            let (status, text) = bad_request(
                state,
                "filter",
                started,
                &e,
                protocol::filter_error(&format!("realload: {e}")),
            );
            return (status, Reply::Text(text));
        }
    };
    let eval = evaluate(state, &generation, &args, Verb::Filter);
    record(state, Verb::Filter, &args, &eval);
    let mut passed = Vec::with_capacity(args.candidates.len());
    let mut messages: Vec<(usize, String)> = Vec::new();
    for (i, v) in eval.verdicts.iter().enumerate() {
        match v.reason() {
            None => passed.push(i),
            Some(reason) => {
                state
                    .metrics
                    .filter_rejections
                    .get_or_create(&ReasonLabel {
                        reason: reason.to_string(),
                    })
                    .inc();
                messages.push((i, v.message().unwrap_or_default()));
            }
        }
    }
    let failed: Vec<(&str, &str)> = messages
        .iter()
        .map(|(i, m)| (args.candidates.name(*i), m.as_str()))
        .collect();
    let reply = match &args.candidates {
        Candidates::Nodes(nodes) => {
            let mut chunks = vec![Bytes::from_static(protocol::NODES_PREFIX.as_bytes())];
            chunks.extend(echo_runs(body, nodes, &passed));
            chunks.push(Bytes::from(protocol::nodes_suffix(&failed)));
            Reply::Chunks(chunks)
        }
        Candidates::Names(_) => Reply::Text(protocol::filter_response(
            &args.candidates,
            &passed,
            &failed,
        )),
    };
    debug!(pod = %args.pod.display_name(), candidates = args.candidates.len(), passed = passed.len(), outcome = eval.outcome.as_str(), "filter");
    state.metrics.request(
        "filter",
        eval.outcome.as_str(),
        started.elapsed().as_secs_f64(),
    );
    (StatusCode::OK, reply)
}

/// A prioritize request body in, the status and response body out; one generation, as for
/// [`filter_body`].
pub fn prioritize_body(state: &State, body: &[u8], started: Instant) -> (StatusCode, String) {
    let generation = state.generation();
    let keys = generation.policy.annotation_keys();
    let args = match protocol::parse_args(body, &keys) {
        Ok(a) => a,
        Err(e) => {
            return bad_request(
                state,
                "prioritize",
                started,
                &e,
                protocol::bind_response(&format!("realload: {e}")),
            );
        }
    };
    let eval = evaluate(state, &generation, &args, Verb::Prioritize);
    record(state, Verb::Prioritize, &args, &eval);
    let response = protocol::prioritize_response(
        (0..args.candidates.len()).map(|i| (args.candidates.name(i), eval.scores[i])),
    );
    debug!(pod = %args.pod.display_name(), candidates = args.candidates.len(), outcome = eval.outcome.as_str(), "prioritize");
    state.metrics.request(
        "prioritize",
        eval.outcome.as_str(),
        started.elapsed().as_secs_f64(),
    );
    (StatusCode::OK, response)
}

async fn filter(AxumState(app): AxumState<AppState>, request: Request) -> Response {
    let started = Instant::now();
    match read_body(&app, request).await {
        Ok(body) => {
            let (status, reply) = filter_body(&app.state, &body, started);
            // The length is known, so the echo goes out with Content-Length, not chunked.
            let length = header::HeaderValue::from(reply.len());
            (
                status,
                [
                    (
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    ),
                    (header::CONTENT_LENGTH, length),
                ],
                reply.into_body(),
            )
                .into_response()
        }
        Err(e) => {
            app.state
                .metrics
                .request("filter", "bad_request", started.elapsed().as_secs_f64());
            json(StatusCode::PAYLOAD_TOO_LARGE, protocol::filter_error(&e))
        }
    }
}

async fn prioritize(AxumState(app): AxumState<AppState>, request: Request) -> Response {
    let started = Instant::now();
    match read_body(&app, request).await {
        Ok(body) => {
            let (status, text) = prioritize_body(&app.state, &body, started);
            json(status, text)
        }
        Err(e) => {
            app.state
                .metrics
                .request("prioritize", "bad_request", started.elapsed().as_secs_f64());
            json(StatusCode::PAYLOAD_TOO_LARGE, protocol::bind_response(&e))
        }
    }
}

fn bad_request(
    state: &State,
    verb: &str,
    started: Instant,
    e: &ProtocolError,
    body: String,
) -> (StatusCode, String) {
    warn!(verb, error = %e, "rejected a malformed request");
    state
        .metrics
        .request(verb, "bad_request", started.elapsed().as_secs_f64());
    (StatusCode::BAD_REQUEST, body)
}

async fn bind(AxumState(app): AxumState<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let body = match read_body(&app, request).await {
        Ok(b) => b,
        Err(e) => return json(StatusCode::PAYLOAD_TOO_LARGE, protocol::bind_response(&e)),
    };
    let args = match protocol::parse_bind(&body) {
        Ok(a) => a,
        Err(e) => {
            let (status, text) = bad_request(
                &app.state,
                "bind",
                started,
                &e,
                protocol::bind_response(&format!("realload: {e}")),
            );
            return json(status, text);
        }
    };
    let client = app.binder.as_ref().and_then(|b| b.client.clone());
    let Some(client) = client else {
        app.state
            .metrics
            .request("bind", "error", started.elapsed().as_secs_f64());
        return json(
            StatusCode::OK,
            protocol::bind_response(
                "realload: snapshot mode writes nothing to a cluster, the pod was not bound",
            ),
        );
    };
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, &args.pod_namespace);
    // Read the pod first: its requests are what the hot-spot estimate adds.
    let pod = pods.get(&args.pod_name).await.ok();
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": args.pod_name, "namespace": args.pod_namespace, "uid": args.pod_uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": args.node},
    });
    let result = pods
        .create_subresource::<serde_json::Value, serde_json::Value>(
            "binding",
            &args.pod_name,
            &kube::api::PostParams::default(),
            &binding,
        )
        .await;
    match result {
        Ok(_) => {
            let uid = pod
                .as_ref()
                .and_then(|p| p.metadata.uid.clone())
                .unwrap_or(args.pod_uid.clone());
            app.state.record_binding(&uid, &args.node, pod.as_ref());
            info!(pod = %format!("{}/{}", args.pod_namespace, args.pod_name), node = %args.node, "bound");
            app.state
                .metrics
                .request("bind", "ok", started.elapsed().as_secs_f64());
            json(StatusCode::OK, protocol::bind_response(""))
        }
        Err(e) => {
            warn!(pod = %args.pod_name, node = %args.node, error = %e, "binding failed");
            app.state
                .metrics
                .request("bind", "error", started.elapsed().as_secs_f64());
            json(
                StatusCode::OK,
                protocol::bind_response(&format!("realload: binding failed: {e}")),
            )
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DebugNode {
    name: String,
    known: bool,
    ready: bool,
    unschedulable: bool,
    readings: Vec<crate::explain::ReadingCell>,
    hotspot_cpu: f64,
    hotspot_memory: f64,
    ledger_pods: usize,
    /// For an unknown node: since when, and the pods placed since (in flight included).
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_since: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_pods: Option<u32>,
    in_flight: u32,
    filter: FilterVerdict,
    filter_message: Option<String>,
    score: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DebugIndex {
    now: jiff::Timestamp,
    synced: bool,
    generation: u64,
    unknown_nodes: usize,
    unknown_pod_cap: u32,
    /// Whether the breaker would trip if every indexed node were offered. Each request judges
    /// it on its own candidates: see `recentDecisions`.
    breaker_over_all_nodes: bool,
    /// Of the recent decisions, how many had the breaker tripped.
    recent_breaker_trips: usize,
    ledger_pods: usize,
    in_flight_pods: usize,
    recent_decisions: Vec<DecisionRecord>,
    nodes: Vec<DebugNode>,
}

/// `GET /debug/nodes`: every indexed node as filter and prioritize would judge it with all
/// indexed nodes as candidates, and the last decisions actually made, request by request.
async fn debug_nodes(AxumState(app): AxumState<AppState>) -> Response {
    let state = &app.state;
    let generation = state.generation();
    let policy = &generation.policy;
    let now = state.clock.now();
    let in_flight = state.memory.in_flight();
    let mut names: Vec<&Arc<str>> = generation.nodes.keys().collect();
    names.sort();
    let flying = |n: &str| in_flight.get(n).copied().unwrap_or(0);
    let assessments: Vec<NodeAssessment> = names
        .iter()
        .map(|n| generation.assess(n, flying(n), now))
        .collect();
    let decision = scoring::decide(policy, &assessments);
    let nodes = names
        .iter()
        .zip(&assessments)
        .enumerate()
        .map(|(i, (name, a))| {
            let view = generation.nodes.get(*name).map(|e| &e.view);
            DebugNode {
                name: name.to_string(),
                known: a.known,
                ready: view.is_some_and(|v| v.ready),
                unschedulable: view.is_some_and(|v| v.unschedulable),
                readings: crate::explain::reading_cells(policy, a),
                hotspot_cpu: a.hotspot.cpu,
                hotspot_memory: a.hotspot.memory,
                ledger_pods: generation.pods_on(name).len(),
                unknown_since: a.unknown_since,
                unknown_pods: (!a.known).then_some(a.unknown_pods),
                in_flight: flying(name),
                filter_message: decision.verdicts[i].message(),
                filter: decision.verdicts[i].clone(),
                score: decision.scores[i],
            }
        })
        .collect();
    let recent = state.recent.list();
    let body = DebugIndex {
        now,
        synced: generation.synced(),
        generation: generation.id,
        unknown_nodes: decision.unknown,
        unknown_pod_cap: policy.guards.unknown_pod_cap,
        breaker_over_all_nodes: decision.breaker_tripped,
        recent_breaker_trips: recent.iter().filter(|r| r.breaker_tripped).count(),
        ledger_pods: generation.ledger_len,
        in_flight_pods: state.memory.len(),
        recent_decisions: recent,
        nodes,
    };
    match serde_json::to_string(&body) {
        Ok(text) => json(StatusCode::OK, text),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            protocol::bind_response(&e.to_string()),
        ),
    }
}

/// The verbs served under the path prefix (`filterVerb`, `prioritizeVerb`, `bindVerb`).
pub const ROUTES: [&str; 3] = ["filter", "prioritize", "bind"];

/// Adds the plain-text 404 a listener answers for any other path.
pub fn with_not_found(router: Router) -> Router {
    router.fallback(|| async { (StatusCode::NOT_FOUND, Body::from("not found\n")) })
}

/// The extender API kube-scheduler calls (client-certificate auth applies here). `path_prefix`
/// is `""` or like `/scheduler`.
pub fn api_router(app: AppState, path_prefix: &str) -> Router {
    let prefix = path_prefix.trim_end_matches('/');
    let mut api = Router::new()
        .route(&format!("{prefix}/{}", ROUTES[0]), post(filter))
        .route(&format!("{prefix}/{}", ROUTES[1]), post(prioritize));
    if app.binder.is_some() {
        api = api.route(&format!("{prefix}/{}", ROUTES[2]), post(bind));
    }
    api.with_state(app)
}

/// What probes, Prometheus and operators reach: `/healthz`, `/readyz`, `/metrics` and
/// `/debug/nodes`, never the extender API.
pub fn admin_router(app: AppState) -> Router {
    let admin = realload_common::runtime::admin_router(
        app.state.readiness.clone(),
        app.state.metrics.registry.clone(),
    );
    Router::new()
        .route("/debug/nodes", get(debug_nodes))
        .with_state(app)
        .merge(admin)
}

#[cfg(test)]
mod tests;
