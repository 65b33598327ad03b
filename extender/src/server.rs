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
use realload_common::scoring::{self, FilterVerdict, NEUTRAL_SCORE, NodeAssessment};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::memory::DecisionRecord;
use crate::metrics::ReasonLabel;
use crate::protocol::{self, Candidates, ExtenderArgs, NodeRead, ProtocolError};
use crate::state::State;
use serde_json::value::RawValue;

mod bind;
mod debug;

pub use bind::Binder;
use bind::bind;
use debug::debug_nodes;

pub use crate::evaluate::{Evaluation, Outcome, Verb, evaluate};

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
