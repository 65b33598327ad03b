//! The HTTP side: routing kube-apiserver paths, verbs, list/watch, patches and subresources.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::resources::{self, Resource};
use super::selectors::{FieldSelector, LabelSelector};
use super::ssa;
use super::status::{self, ApiError};
use super::store::{EventType, Key, Manager, StoredEvent, now_string};
use super::{FaultAction, RequestRecord, Shared};

struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    Document(Value),
    Target(Target),
}

fn route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["api"] => return Ok(Route::Document(resources::core_versions())),
        ["apis"] => return Ok(Route::Document(resources::group_list())),
        ["version"] => {
            return Ok(Route::Document(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-realload-apisim",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
            })));
        }
        ["apis", g] => {
            return resources::group(g)
                .map(Route::Document)
                .ok_or_else(ApiError::path_not_found);
        }
        ["api", v] => {
            return resources::resource_list("", v)
                .map(Route::Document)
                .ok_or_else(ApiError::path_not_found);
        }
        ["apis", g, v] => {
            return resources::resource_list(g, v)
                .map(Route::Document)
                .ok_or_else(ApiError::path_not_found);
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::path_not_found()),
    };
    let resource = resources::find(group, version, plural).ok_or_else(ApiError::path_not_found)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::path_not_found());
    }
    if let Some(s) = &sub
        && !resource.subresources().contains(&s.as_str())
    {
        return Err(ApiError::path_not_found());
    }
    Ok(Route::Target(Target {
        resource,
        namespace,
        name,
        sub,
    }))
}

#[derive(Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

fn json_response(code: StatusCode, value: &Value) -> (Response, usize) {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let len = bytes.len();
    let response = (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    (response, len)
}

/// The entry point for every request.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query_text = raw_query.unwrap_or_default();
    let query = Query(serde_urlencoded::from_str(&query_text).unwrap_or_default());
    let is_watch = query.flag("watch");

    let mut watch_cut = None;
    match shared.take_fault(&method, &path, &query_text) {
        Some(FaultAction::Status { code, retry_after }) => {
            let e = ApiError::injected(code, retry_after);
            shared.log(RequestRecord::new(
                &method,
                &path,
                &query_text,
                e.code,
                0,
                is_watch,
                true,
            ));
            return e.into_response();
        }
        Some(FaultAction::Drop) => {
            shared.log(RequestRecord::new(
                &method,
                &path,
                &query_text,
                0,
                0,
                is_watch,
                true,
            ));
            let broken = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected drop",
                ))
            });
            return Response::new(Body::from_stream(broken));
        }
        Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultAction::CutWatchAfter(n)) => watch_cut = Some(n),
        None => {}
    }

    let result = match route(&path) {
        Err(e) => Err(e),
        Ok(Route::Document(doc)) if method == Method::GET => {
            Ok(json_response(StatusCode::OK, &doc))
        }
        Ok(Route::Document(_)) => Err(ApiError::method_not_allowed()),
        Ok(Route::Target(target)) => {
            if method == Method::GET && target.name.is_none() && is_watch {
                let response = watch(&shared, &target, &query, watch_cut);
                shared.log(RequestRecord::new(
                    &method,
                    &path,
                    &query_text,
                    200,
                    0,
                    true,
                    false,
                ));
                return response;
            }
            dispatch(&shared, &method, &target, &query, &headers, &body)
        }
    };
    let (response, code, len) = match result {
        Ok((response, len)) => {
            let code = response.status().as_u16();
            (response, code, len)
        }
        Err(e) => {
            let code = e.code;
            (e.into_response(), code, 0)
        }
    };
    shared.log(RequestRecord::new(
        &method,
        &path,
        &query_text,
        code,
        len,
        false,
        false,
    ));
    response
}

fn manager_name(query: &Query, headers: &HeaderMap) -> String {
    query
        .get("fieldManager")
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn dispatch(
    shared: &Shared,
    method: &Method,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Response, usize), ApiError> {
    let resource = target.resource;
    let namespace = || target.namespace.clone().unwrap_or_default();
    let mut store = shared.lock();
    match (method.clone(), &target.name, target.sub.as_deref()) {
        (Method::GET, None, None) => {
            list(&store, target, query).map(|v| json_response(StatusCode::OK, &v))
        }
        (Method::GET, Some(name), None | Some("status")) => {
            let key = (namespace(), name.clone());
            store
                .get(&resource, &key)
                .map(|o| json_response(StatusCode::OK, o))
                .ok_or_else(|| ApiError::not_found(&resource, name))
        }
        (Method::POST, None, None) => {
            if resource.namespaced && target.namespace.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let mut object = parse_body(body)?;
            if resource.namespaced {
                let ns = namespace();
                match object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                {
                    Some(given) if given != ns => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {
                        if !object.get("metadata").is_some_and(Value::is_object) {
                            object["metadata"] = json!({});
                        }
                        object["metadata"]["namespace"] = json!(ns);
                    }
                }
            }
            let manager = manager_name(query, headers);
            store
                .create(resource, object, Manager::Update(&manager), query.dry_run())
                .map(|o| json_response(StatusCode::CREATED, &o))
        }
        (Method::POST, Some(name), Some("eviction")) => {
            let eviction = parse_body(body)?;
            if eviction
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_some_and(|n| n != name)
            {
                return Err(ApiError::bad_request(
                    "name in URL does not match name in Eviction object",
                ));
            }
            let grace = eviction
                .pointer("/deleteOptions/gracePeriodSeconds")
                .and_then(Value::as_i64);
            let dry_run = query.dry_run()
                || eviction
                    .pointer("/deleteOptions/dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|v| v == "All"));
            store.evict(&(namespace(), name.clone()), grace, dry_run)?;
            Ok(json_response(StatusCode::CREATED, &status::success(201)))
        }
        (Method::POST, Some(name), Some("binding")) => {
            let binding = parse_body(body)?;
            let node = binding
                .pointer("/target/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(&resources::PODS, name, "target.name", "must be a node name")
                })?;
            store.bind(&(namespace(), name.clone()), node)?;
            Ok(json_response(StatusCode::CREATED, &status::success(201)))
        }
        (Method::PUT, Some(name), None | Some("status")) => {
            let object = parse_body(body)?;
            let manager = manager_name(query, headers);
            store
                .update(
                    resource,
                    &(namespace(), name.clone()),
                    object,
                    target.sub.as_deref(),
                    Manager::Update(&manager),
                    query.dry_run(),
                )
                .map(|o| json_response(StatusCode::OK, &o))
        }
        (Method::PATCH, Some(name), None | Some("status")) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            let key = (namespace(), name.clone());
            let manager = manager_name(query, headers);
            let current = store.get(&resource, &key).cloned();
            match content_type.as_str() {
                "application/apply-patch+yaml" => {
                    let Some(manager) = query.get("fieldManager") else {
                        return Err(ApiError::apply_without_field_manager());
                    };
                    let text = std::str::from_utf8(body)
                        .map_err(|_| ApiError::bad_request("apply body is not UTF-8"))?;
                    let applied: Value = serde_yaml::from_str(text)
                        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                    if applied.get("apiVersion").and_then(Value::as_str).is_none()
                        || applied.get("kind").and_then(Value::as_str).is_none()
                    {
                        return Err(ApiError::bad_request(
                            "apiVersion and kind must be set in an apply configuration",
                        ));
                    }
                    if applied
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n != name)
                    {
                        return Err(ApiError::bad_request(
                            "the name of the object does not match the name on the URL",
                        ));
                    }
                    let api_version = resource.api_version();
                    let now = now_string();
                    let base = current.clone().unwrap_or_else(|| {
                        let mut meta = json!({"name": name});
                        if resource.namespaced {
                            meta["namespace"] = json!(key.0);
                        }
                        json!({"apiVersion": api_version, "kind": resource.kind, "metadata": meta})
                    });
                    let merged = ssa::apply(
                        &base,
                        &applied,
                        manager,
                        &api_version,
                        query.flag("force"),
                        &now,
                    )
                    .map_err(|conflicts| {
                        let (message, causes) = ssa::conflict_message(&conflicts, &api_version);
                        ApiError {
                            code: 409,
                            reason: "Conflict",
                            message,
                            details: Some(
                                json!({"name": name, "kind": resource.plural, "causes": causes}),
                            ),
                            retry_after: None,
                        }
                    })?;
                    if current.is_none() {
                        let created =
                            store.create(resource, merged, Manager::Applied, query.dry_run())?;
                        return Ok(json_response(StatusCode::CREATED, &created));
                    }
                    store
                        .update(
                            resource,
                            &key,
                            merged,
                            target.sub.as_deref(),
                            Manager::Applied,
                            query.dry_run(),
                        )
                        .map(|o| json_response(StatusCode::OK, &o))
                }
                "application/merge-patch+json"
                | "application/strategic-merge-patch+json"
                | "application/json-patch+json" => {
                    let Some(mut object) = current else {
                        return Err(ApiError::not_found(&resource, name));
                    };
                    let patch = parse_body(body)?;
                    if content_type == "application/json-patch+json" {
                        let ops: json_patch::Patch =
                            serde_json::from_value(patch).map_err(|e| {
                                ApiError::bad_request(format!("invalid JSON patch: {e}"))
                            })?;
                        json_patch::patch(&mut object, &ops).map_err(|e| ApiError {
                            code: 422,
                            reason: "Invalid",
                            message: format!("the server rejected our request due to an error in our request: {e}"),
                            details: None,
                            retry_after: None,
                        })?;
                    } else {
                        // Strategic merge is served as a JSON merge patch: exact for maps
                        // (labels, annotations, status fields), approximate for keyed lists.
                        json_patch::merge(&mut object, &patch);
                    }
                    store
                        .update(
                            resource,
                            &key,
                            object,
                            target.sub.as_deref(),
                            Manager::Update(&manager),
                            query.dry_run(),
                        )
                        .map(|o| json_response(StatusCode::OK, &o))
                }
                other => Err(ApiError::unsupported_media_type(other)),
            }
        }
        (Method::DELETE, Some(name), None) => {
            let options: Value = if body.is_empty() {
                json!({})
            } else {
                parse_body(body)?
            };
            let grace = options
                .get("gracePeriodSeconds")
                .and_then(Value::as_i64)
                .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
            let key = (namespace(), name.clone());
            let deleted = store.delete(
                resource,
                &key,
                grace,
                options
                    .pointer("/preconditions/uid")
                    .and_then(Value::as_str),
                options
                    .pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str),
                query.dry_run(),
            )?;
            let still_there = store.get(&resource, &key).is_some();
            let code = if still_there {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok(json_response(code, &deleted))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

struct Filters {
    labels: LabelSelector,
    fields: FieldSelector,
    namespace: Option<String>,
}

impl Filters {
    fn new(target: &Target, query: &Query) -> Result<Filters, ApiError> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(
            target.resource.kind,
            query.get("fieldSelector").unwrap_or(""),
        )
        .map_err(ApiError::bad_request)?;
        Ok(Filters {
            labels,
            fields,
            namespace: target.namespace.clone(),
        })
    }

    fn matches(&self, object: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| {
            object
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                == Some(ns)
        });
        ns_ok && self.labels.matches(object) && self.fields.matches(object)
    }
}

const CONTINUE_TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn list(store: &super::store::Store, target: &Target, query: &Query) -> Result<Value, ApiError> {
    let filters = Filters::new(target, query)?;
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    // Continue token: "<list resourceVersion>/<namespace>/<name>" of the last item returned.
    let (list_rv, after): (u64, Option<Key>) = match query.get("continue").filter(|c| !c.is_empty())
    {
        Some(token) => {
            let mut parts = token.splitn(3, '/');
            let rv = parts.next().and_then(|r| r.parse::<u64>().ok());
            let (Some(rv), Some(ns), Some(name)) = (rv, parts.next(), parts.next()) else {
                return Err(ApiError::bad_request(format!(
                    "continue key is not valid: {token:?}"
                )));
            };
            if rv < store.oldest_watchable {
                return Err(ApiError {
                    code: 410,
                    reason: "Expired",
                    message: CONTINUE_TOO_OLD.into(),
                    details: None,
                    retry_after: None,
                });
            }
            (rv, Some((ns.to_string(), name.to_string())))
        }
        None => (store.rv, None),
    };
    let mut matching = store
        .iter_after(
            &target.resource,
            target.namespace.as_deref(),
            after.as_ref(),
        )
        .filter(|(_, o)| filters.matches(o));
    let page_items: Vec<(&Key, &Value)> = matching.by_ref().take(limit).collect();
    // As kube-apiserver: remainingItemCount only for lists without selectors; with selectors,
    // only whether there is more (and the scan stops at the first further match).
    let selected = ["labelSelector", "fieldSelector"]
        .iter()
        .any(|k| query.get(k).is_some_and(|v| !v.is_empty()));
    let remaining = if selected {
        usize::from(matching.next().is_some())
    } else {
        matching.count()
    };
    let page: Vec<Value> = page_items
        .iter()
        .map(|(_, o)| {
            let mut item = (*o).clone();
            if let Some(m) = item.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            item
        })
        .collect();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if remaining > 0
        && let Some((last_key, _)) = page_items.last()
    {
        metadata["continue"] = json!(format!("{}/{}/{}", list_rv, last_key.0, last_key.1));
        if !selected {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(json!({
        "kind": target.resource.list_kind(),
        "apiVersion": target.resource.api_version(),
        "metadata": metadata,
        "items": page,
    }))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Translates a stored event for a filtered watch: objects moving into the selection are ADDED,
/// objects moving out are DELETED, as the API server's filtered watches do.
fn translate(event: &StoredEvent, filters: &Filters) -> Option<&'static str> {
    let now = filters.matches(&event.object);
    match event.kind {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => now.then_some("DELETED"),
        EventType::Modified => {
            let before = event.old.as_ref().is_some_and(|o| filters.matches(o));
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    }
}

fn watch(
    shared: &Arc<Shared>,
    target: &Target,
    query: &Query,
    cut_after: Option<usize>,
) -> Response {
    let filters = match Filters::new(target, query) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let resource = target.resource;
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_else(|| shared.default_watch_timeout());
    let requested_rv = query.get("resourceVersion").unwrap_or("");

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1024);
    let mut initial: Vec<Bytes> = Vec::new();
    let (mut live, start_rv) = {
        let store = shared.lock();
        let live = store.events.subscribe();
        let start_rv;
        if send_initial || requested_rv.is_empty() || requested_rv == "0" {
            for (_, object) in store.list(&resource, target.namespace.as_deref()) {
                if filters.matches(object) {
                    initial.push(event_line("ADDED", object));
                }
            }
            start_rv = store.rv;
            if send_initial && bookmarks {
                initial.push(event_line(
                    "BOOKMARK",
                    &json!({"kind": resource.kind, "apiVersion": resource.api_version(),
                            "metadata": {"resourceVersion": start_rv.to_string(),
                                         "annotations": {"k8s.io/initial-events-end": "true"}}}),
                ));
            }
        } else {
            let Ok(rv) = requested_rv.parse::<u64>() else {
                return ApiError::bad_request(format!("invalid resource version {requested_rv:?}"))
                    .into_response();
            };
            match store.events_since(&resource, rv) {
                Ok(events) => {
                    for e in &events {
                        if let Some(kind) = translate(e, &filters) {
                            initial.push(event_line(kind, &e.object));
                        }
                    }
                    start_rv = events
                        .last()
                        .map_or(rv.max(store.oldest_watchable), |e| e.rv);
                }
                Err(e) => {
                    // The watch cache answers 200 and a single ERROR event carrying the 410 Status.
                    initial.push(event_line("ERROR", &e.status_body()));
                    let body =
                        futures::stream::iter(initial.into_iter().map(Ok::<Bytes, std::io::Error>));
                    return (
                        [(header::CONTENT_TYPE, "application/json")],
                        Body::from_stream(body),
                    )
                        .into_response();
                }
            }
        }
        (live, start_rv)
    };
    let mut kill = shared.watch_kill.subscribe();
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut sent = 0usize;
        let over = |sent: usize| cut_after.is_some_and(|n| sent >= n);
        for line in initial {
            if over(sent) || tx.send(Ok(line)).await.is_err() {
                return;
            }
            sent += 1;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark_tick = tokio::time::interval(shared.bookmark_interval());
        bookmark_tick.tick().await;
        let mut last_rv = start_rv;
        loop {
            if over(sent) {
                return;
            }
            tokio::select! {
                _ = &mut deadline => return,
                _ = kill.changed() => return,
                _ = bookmark_tick.tick(), if bookmarks => {
                    let rv = shared.lock().rv.max(last_rv);
                    let line = event_line("BOOKMARK", &json!({"kind": resource.kind, "apiVersion": resource.api_version(),
                                                              "metadata": {"resourceVersion": rv.to_string()}}));
                    if tx.send(Ok(line)).await.is_err() { return; }
                }
                event = live.recv() => {
                    let event = match event {
                        Ok(e) => e,
                        // Too slow to keep up: end the watch, the client resumes from its last version.
                        Err(_) => return,
                    };
                    if event.rv <= last_rv || event.resource != resource {
                        continue;
                    }
                    last_rv = event.rv;
                    if let Some(kind) = translate(&event, &filters) {
                        if tx.send(Ok(event_line(kind, &event.object))).await.is_err() {
                            return;
                        }
                        sent += 1;
                    }
                }
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
