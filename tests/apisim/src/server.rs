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

mod listing;
mod routing;

use listing::{list, watch};
use routing::{Query, Route, Target, route};

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
