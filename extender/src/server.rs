//! The HTTP API: `POST /filter`, `/prioritize`, `/bind` (under `--path-prefix`), the admin
//! endpoints and `GET /debug/nodes`.

use std::borrow::Cow;
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
use crate::protocol::{self, Candidates, ExtenderArgs, ProtocolError};
use crate::state::State;

mod bind;
mod debug;
mod status;

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
        reserved_on: eval
            .reserved_on
            .map(|i| args.candidates.name(i).to_string()),
        learned_cpu_share: eval.learned_cpu_share,
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

/// Reads the request body into one buffer sized from `Content-Length`, each frame copied in as it
/// arrives and dropped (axum's `to_bytes` would keep every frame and then copy them all into a
/// second buffer). A body declared larger than the limit is refused before any of it is read.
async fn read_body(app: &AppState, request: Request) -> Result<Bytes, String> {
    use http_body_util::BodyExt;
    let limit = app.body_limit;
    let too_large = || format!("request body exceeds the {limit} byte limit (--body-limit)");
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    // A body that arrives in one frame is used as it is, not copied.
    let mut first: Option<Bytes> = None;
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("request body could not be read: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let have = first.as_ref().map_or(0, Bytes::len) + buffer.len();
        if have + data.len() > limit {
            return Err(too_large());
        }
        if first.is_none() && buffer.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(head) = first.take() {
            buffer.reserve_exact(declared.unwrap_or(0).max(head.len() + data.len()));
            buffer.extend_from_slice(&head);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(match first {
        Some(only) => only,
        None => Bytes::from(buffer),
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

/// Where `part` lies in `body`, if it was borrowed from it.
fn span_in(body: &Bytes, part: &(impl AsRef<[u8]> + ?Sized)) -> Option<(usize, usize)> {
    let part = part.as_ref();
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    (start + part.len() <= body.len()).then_some((start, start + part.len()))
}

/// The passing candidates as slices of the request body, comma-separated: whole Node objects in
/// non-cache mode, quoted names in cache mode. Candidates that pass one after another in the
/// request are one slice (the request's own comma lies between them), so a typical answer is a
/// handful of slices rather than one per node. `span(i)` is candidate `i`'s byte range in the
/// body; a candidate without one (a name that had escapes) is written from `owned(i)`.
fn echo_runs(
    body: &Bytes,
    passed: &[usize],
    span: impl Fn(usize) -> Option<(usize, usize)>,
    owned: impl Fn(usize) -> Bytes,
) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = Vec::new();
    let mut run: Option<(usize, usize, usize)> = None; // (first byte, end byte, last index)
    let separate = |out: &mut Vec<Bytes>| {
        if !out.is_empty() {
            out.push(Bytes::from_static(b","));
        }
    };
    let flush = |out: &mut Vec<Bytes>, run: Option<(usize, usize, usize)>| {
        if let Some((first, end, _)) = run {
            separate(out);
            out.push(body.slice(first..end));
        }
    };
    for &i in passed {
        match (span(i), run) {
            (Some((_, end)), Some((first, _, last))) if i == last + 1 => {
                run = Some((first, end, i))
            }
            (Some((start, end)), _) => {
                flush(&mut out, run.take());
                run = Some((start, end, i));
            }
            (None, _) => {
                flush(&mut out, run.take());
                separate(&mut out);
                out.push(owned(i));
            }
        }
    }
    flush(&mut out, run);
    out
}

/// A name's quoted form in the body: a name serde borrowed had no escapes, so its quotes are the
/// bytes on either side of it.
#[allow(clippy::ptr_arg)] // whether the name was borrowed is what matters here
fn quoted_name_span(body: &Bytes, name: &Cow<'_, str>) -> Option<(usize, usize)> {
    let Cow::Borrowed(name) = name else {
        return None;
    };
    let (start, end) = span_in(body, name)?;
    let quoted = start.checked_sub(1)?..end + 1;
    (body.get(quoted.start) == Some(&b'"') && body.get(end) == Some(&b'"'))
        .then_some((quoted.start, quoted.end))
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
    // Rejections per reason, counted here and added to the metric once per reason.
    let mut rejections: smallvec::SmallVec<[(&str, u64); 4]> = smallvec::SmallVec::new();
    for (i, v) in eval.verdicts.iter().enumerate() {
        match v.reason() {
            None => passed.push(i),
            Some(reason) => {
                match rejections.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, n)) => *n += 1,
                    None => rejections.push((reason, 1)),
                }
                messages.push((i, v.message().unwrap_or_default()));
            }
        }
    }
    for (reason, n) in rejections {
        state
            .metrics
            .filter_rejections
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc_by(n);
    }
    let failed: Vec<(&str, &str)> = messages
        .iter()
        .map(|(i, m)| (args.candidates.name(*i), m.as_str()))
        .collect();
    let echoed = match &args.candidates {
        Candidates::Nodes(nodes) => echo_runs(
            body,
            &passed,
            |i| span_in(body, nodes[i].0),
            |i| Bytes::copy_from_slice(nodes[i].0),
        ),
        Candidates::Names(names) => echo_runs(
            body,
            &passed,
            |i| quoted_name_span(body, &names[i]),
            |i| Bytes::from(protocol::json_string(&names[i])),
        ),
    };
    let (prefix, suffix) = match &args.candidates {
        Candidates::Nodes(_) => (protocol::NODES_PREFIX, protocol::nodes_suffix(&failed)),
        Candidates::Names(_) => (protocol::NAMES_PREFIX, protocol::names_suffix(&failed)),
    };
    let mut chunks = Vec::with_capacity(echoed.len() + 2);
    chunks.push(Bytes::from_static(prefix.as_bytes()));
    chunks.extend(echoed);
    chunks.push(Bytes::from(suffix));
    let reply = Reply::Chunks(chunks);
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
    let response = protocol::prioritize_response((0..args.candidates.len()).map(|i| {
        let (name, verbatim) = args.candidates.name_verbatim(i);
        (name, verbatim, eval.scores[i])
    }));
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
    verb: &'static str,
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

/// What probes, Prometheus and operators reach: `/healthz`, `/readyz`, `/metrics`,
/// `/debug/nodes`, the node-heat page (`/`) and its what-if box (`POST /debug/explain`), never
/// the extender API.
pub fn admin_router(app: AppState) -> Router {
    let admin = realload_common::runtime::admin_router(
        app.state.readiness.clone(),
        app.state.metrics.registry.clone(),
    );
    Router::new()
        .route("/", get(status::page))
        .route("/status.js", get(status::script))
        .route("/status.css", get(status::style))
        .route("/debug/nodes", get(debug_nodes))
        .route(
            "/debug/explain",
            post(status::what_if).layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024)),
        )
        .with_state(app)
        .merge(admin)
}

#[cfg(test)]
mod tests;
