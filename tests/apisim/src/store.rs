//! The simulator's storage: objects per resource, one global resourceVersion counter, an event
//! history for watches, and the write semantics of kube-apiserver (uid, creationTimestamp,
//! generation, optimistic concurrency, graceful pod deletion, finalizers).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::{self, Resource};
use super::ssa;
use super::status::ApiError;

mod deletion;
mod subresources;

pub type Key = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct StoredEvent {
    pub rv: u64,
    pub resource: Resource,
    pub kind: EventType,
    pub object: Arc<Value>,
    /// The object before a MODIFIED change (for selector transitions).
    pub old: Option<Arc<Value>>,
}

pub struct Store {
    pub rv: u64,
    objects: HashMap<Resource, BTreeMap<Key, Value>>,
    history: VecDeque<Arc<StoredEvent>>,
    /// Watches may start from any resourceVersion >= this.
    pub oldest_watchable: u64,
    pub history_limit: usize,
    pub events: broadcast::Sender<Arc<StoredEvent>>,
    uid_counter: u64,
    /// Remove terminating pods at once, as if a kubelet finished them.
    pub instant_pod_termination: bool,
}

/// Who is writing, for `metadata.managedFields`.
#[derive(Debug, Clone, Copy)]
pub enum Manager<'a> {
    /// A create, update or non-apply patch by this field manager: it takes over what it changed.
    Update(&'a str),
    /// A server-side apply: the object already carries the managed fields `ssa::apply` computed.
    Applied,
    /// The server itself (status written by the eviction subresource): ownership unchanged.
    Server,
}

pub fn now_string() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// The key of `namespace/name` (the namespace is ignored for cluster-scoped resources).
pub fn key_for(resource: &Resource, namespace: &str, name: &str) -> Key {
    let ns = if resource.namespaced { namespace } else { "" };
    (ns.to_string(), name.to_string())
}

pub fn key_of(resource: &Resource, object: &Value) -> Key {
    let ns = if resource.namespaced {
        meta_str(object, "namespace")
            .unwrap_or("default")
            .to_string()
    } else {
        String::new()
    };
    (ns, meta_str(object, "name").unwrap_or("").to_string())
}

fn set_meta(object: &mut Value, field: &str, value: Value) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"][field] = value;
}

impl Store {
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(65_536);
        Store {
            rv: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            oldest_watchable: 1,
            history_limit: 200_000,
            events,
            uid_counter: 0,
            instant_pod_termination: false,
        }
    }

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        format!("5e1a0000-0000-4000-8000-{:012x}", self.uid_counter)
    }

    fn record(&mut self, resource: Resource, kind: EventType, object: &Value, old: Option<Value>) {
        let event = Arc::new(StoredEvent {
            rv: self.rv,
            resource,
            kind,
            object: Arc::new(object.clone()),
            old: old.map(Arc::new),
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest_watchable = dropped.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.events.send(event);
    }

    /// Forgets all history: watches from any earlier resourceVersion get 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest_watchable = self.rv;
    }

    /// Events after `rv` for `resource`, or Expired when they are no longer kept.
    pub fn events_since(
        &self,
        resource: &Resource,
        rv: u64,
    ) -> Result<Vec<Arc<StoredEvent>>, ApiError> {
        if rv < self.oldest_watchable {
            return Err(ApiError::expired(rv, self.oldest_watchable));
        }
        Ok(self
            .history
            .iter()
            .filter(|e| e.rv > rv && e.resource == *resource)
            .cloned()
            .collect())
    }

    pub fn get(&self, resource: &Resource, key: &Key) -> Option<&Value> {
        self.objects.get(resource).and_then(|m| m.get(key))
    }

    /// All objects of a resource (optionally one namespace), in key order.
    pub fn list(&self, resource: &Resource, namespace: Option<&str>) -> Vec<(&Key, &Value)> {
        self.iter_after(resource, namespace, None).collect()
    }

    /// Objects of a resource (optionally one namespace) in key order, starting after `after`
    /// (a continue token's last key) without walking what comes before it.
    pub fn iter_after<'s>(
        &'s self,
        resource: &Resource,
        namespace: Option<&str>,
        after: Option<&Key>,
    ) -> impl Iterator<Item = (&'s Key, &'s Value)> + 's {
        let namespace = namespace.map(str::to_string);
        use std::ops::Bound;
        let start = match (after, &namespace) {
            (Some(key), Some(ns)) if key.0 < *ns => Bound::Included((ns.clone(), String::new())),
            (Some(key), _) => Bound::Excluded(key.clone()),
            (None, Some(ns)) => Bound::Included((ns.clone(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(move |m| m.range((start.clone(), Bound::Unbounded)))
            .take_while(move |((ns, _), _)| namespace.as_ref().is_none_or(|want| ns == want))
    }

    fn stamp(&mut self, object: &mut Value) {
        self.rv += 1;
        set_meta(object, "resourceVersion", json!(self.rv.to_string()));
    }

    /// Inserts an object as-is apart from server metadata (used to seed from a snapshot).
    pub fn seed(&mut self, resource: Resource, mut object: Value) -> Value {
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        if meta_str(&object, "uid").is_none() {
            let uid = self.next_uid();
            set_meta(&mut object, "uid", json!(uid));
        }
        if meta_str(&object, "creationTimestamp").is_none() {
            set_meta(&mut object, "creationTimestamp", json!(now_string()));
        }
        if resource.namespaced && meta_str(&object, "namespace").is_none() {
            set_meta(&mut object, "namespace", json!("default"));
        }
        if resource.tracks_generation && object.pointer("/metadata/generation").is_none() {
            set_meta(&mut object, "generation", json!(1));
        }
        let key = key_of(&resource, &object);
        let old = self
            .objects
            .get(&resource)
            .and_then(|m| m.get(&key))
            .cloned();
        self.stamp(&mut object);
        self.objects
            .entry(resource)
            .or_default()
            .insert(key, object.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(resource, kind, &object, old);
        object
    }

    pub fn create(
        &mut self,
        resource: Resource,
        mut object: Value,
        manager: Manager<'_>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if meta_str(&object, "name").is_none_or(str::is_empty) {
            match meta_str(&object, "generateName") {
                Some(prefix) if !prefix.is_empty() => {
                    self.uid_counter += 1;
                    let name = format!("{prefix}{:05x}", self.uid_counter);
                    set_meta(&mut object, "name", json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        &resource,
                        "",
                        "metadata.name",
                        "name or generateName is required",
                    ));
                }
            }
        }
        let key = key_of(&resource, &object);
        if self.get(&resource, &key).is_some() {
            return Err(ApiError::already_exists(&resource, &key.1));
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        let uid = self.next_uid();
        set_meta(&mut object, "uid", json!(uid));
        set_meta(&mut object, "creationTimestamp", json!(now_string()));
        if resource.namespaced {
            set_meta(&mut object, "namespace", json!(key.0));
        }
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for server_owned in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
            ] {
                meta.remove(server_owned);
            }
            if !matches!(manager, Manager::Applied) {
                meta.remove("managedFields");
            }
        }
        if resource.tracks_generation {
            set_meta(&mut object, "generation", json!(1));
        }
        if resource.has_status {
            // Status is not writable on create, as with the real registry strategies.
            if resource == resources::PODS {
                object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            } else if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        if let Manager::Update(manager) = manager {
            let empty = json!({"metadata": {}});
            ssa::record_update(
                &empty,
                &mut object,
                manager,
                &resource.api_version(),
                &now_string(),
            );
        }
        if dry_run {
            return Ok(object);
        }
        self.stamp(&mut object);
        self.objects
            .entry(resource)
            .or_default()
            .insert(key, object.clone());
        self.record(resource, EventType::Added, &object, None);
        Ok(object)
    }

    /// Replaces an object (PUT, and the result of patches). `subresource` is `None` or `status`.
    pub fn update(
        &mut self,
        resource: Resource,
        key: &Key,
        mut object: Value,
        subresource: Option<&str>,
        manager: Manager<'_>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let Some(old) = self.get(&resource, key).cloned() else {
            return Err(ApiError::not_found(&resource, &key.1));
        };
        if let Some(sent) = meta_str(&object, "resourceVersion")
            && !sent.is_empty()
            && Some(sent) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::modified(&resource, &key.1));
        }
        if meta_str(&object, "name").is_some_and(|n| n != key.1) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if resource.namespaced && meta_str(&object, "namespace").is_some_and(|n| n != key.0) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut new = match subresource {
            Some("status") => {
                // As kube-apiserver's status strategies: spec and ownerReferences stay, status
                // is taken, and so are annotations, and labels except on apps objects (whose
                // status strategies keep the old labels).
                let mut merged = old.clone();
                merged["status"] = object.get("status").cloned().unwrap_or(Value::Null);
                let mut taken = vec!["annotations"];
                if resource.group != "apps" {
                    taken.push("labels");
                }
                for field in taken {
                    match object.pointer(&format!("/metadata/{field}")) {
                        Some(v) => set_meta(&mut merged, field, v.clone()),
                        None => {
                            if let Some(m) =
                                merged.get_mut("metadata").and_then(Value::as_object_mut)
                            {
                                m.remove(field);
                            }
                        }
                    }
                }
                merged
            }
            _ => {
                if resource.has_status {
                    match old.get("status") {
                        Some(s) => object["status"] = s.clone(),
                        None => {
                            if let Some(m) = object.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                object
            }
        };
        new["apiVersion"] = json!(resource.api_version());
        new["kind"] = json!(resource.kind);
        for kept in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
        ] {
            match old.pointer(&format!("/metadata/{kept}")) {
                Some(v) => set_meta(&mut new, kept, v.clone()),
                None => {
                    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove(kept);
                    }
                }
            }
        }
        if subresource == Some("status") {
            validate_status(&resource, &key.1, &new)?;
        }
        // Spec changes move the generation; on Deployments annotation changes do too (they are
        // copied to the ReplicaSets), but never through the status subresource.
        let annotations_moved = resource.kind == "Deployment"
            && old.pointer("/metadata/annotations") != new.pointer("/metadata/annotations");
        if resource.tracks_generation
            && subresource != Some("status")
            && (old.get("spec") != new.get("spec") || annotations_moved)
        {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            set_meta(&mut new, "generation", json!(generation));
        }
        // managedFields are the server's; a client cannot rewrite them through an update.
        if !matches!(manager, Manager::Applied) {
            match old.pointer("/metadata/managedFields") {
                Some(m) => set_meta(&mut new, "managedFields", m.clone()),
                None => {
                    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("managedFields");
                    }
                }
            }
        }
        if let Manager::Update(manager) = manager {
            ssa::record_update(
                &old,
                &mut new,
                manager,
                &resource.api_version(),
                &now_string(),
            );
        }
        set_meta(
            &mut new,
            "resourceVersion",
            old.pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null),
        );
        if new == old {
            // A no-op write does not move the resourceVersion or notify watchers.
            return Ok(old);
        }
        if dry_run {
            return Ok(new);
        }
        // Finalizers emptied on a terminating object complete its deletion.
        if new.pointer("/metadata/deletionTimestamp").is_some()
            && !has_finalizers(&new)
            && !self.waits_for_kubelet(&resource, &new)
        {
            return Ok(self.remove(resource, key, new));
        }
        Ok(self.store_modified(resource, key, new, old))
    }

    /// Stores a changed object under a new resourceVersion and tells watchers (MODIFIED).
    fn store_modified(
        &mut self,
        resource: Resource,
        key: &Key,
        mut new: Value,
        old: Value,
    ) -> Value {
        self.stamp(&mut new);
        self.objects
            .entry(resource)
            .or_default()
            .insert(key.clone(), new.clone());
        self.record(resource, EventType::Modified, &new, Some(old));
        new
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// The status rules kube-apiserver checks that the project's tests can run into.
fn validate_status(resource: &Resource, name: &str, object: &Value) -> Result<(), ApiError> {
    if resource.group == "apps" {
        let count = |field: &str| {
            object
                .pointer(&format!("/status/{field}"))
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        let (replicas, ready) = (count("replicas"), count("readyReplicas"));
        if ready > replicas {
            return Err(ApiError::invalid(
                resource,
                name,
                "status.readyReplicas",
                &format!("{ready}: cannot be greater than status.replicas"),
            ));
        }
    }
    Ok(())
}
