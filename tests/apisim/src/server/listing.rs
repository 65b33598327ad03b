//! List (pages, selectors, continue tokens) and watch (events, bookmarks, resume, timeouts,
//! initial events) as kube-apiserver answers them.

use super::*;

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

pub(super) fn list(
    store: &crate::store::Store,
    target: &Target,
    query: &Query,
) -> Result<Value, ApiError> {
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

pub(super) fn watch(
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
