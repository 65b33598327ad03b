//! Deletion as kube-apiserver does it: graceful pod deletion (a pod on a node stays terminating
//! until its kubelet confirms), finalizers, and the tests' stand-in for the kubelet.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{EventType, Key, Store, has_finalizers, meta_str, set_meta};
use crate::resources::{self, Resource};
use crate::status::ApiError;

impl Store {
    /// A bound, non-terminal pod terminates gracefully: a kubelet has to finish it.
    pub(super) fn waits_for_kubelet(&self, resource: &Resource, object: &Value) -> bool {
        *resource == resources::PODS
            && !self.instant_pod_termination
            && object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            && !matches!(
                object.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
    }

    pub(super) fn remove(&mut self, resource: Resource, key: &Key, mut last: Value) -> Value {
        if let Some(m) = self.objects.get_mut(&resource) {
            m.remove(key);
        }
        self.stamp(&mut last);
        self.record(resource, EventType::Deleted, &last, None);
        last
    }

    /// DELETE: immediate, or graceful (deletionTimestamp set) for bound pods and objects with
    /// finalizers. Returns the object as the API server does.
    pub fn delete(
        &mut self,
        resource: Resource,
        key: &Key,
        grace_period: Option<i64>,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let Some(old) = self.get(&resource, key).cloned() else {
            return Err(ApiError::not_found(&resource, &key.1));
        };
        if let Some(uid) = precondition_uid
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                &resource,
                &key.1,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = precondition_rv
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::modified(&resource, &key.1));
        }
        if dry_run {
            return Ok(old);
        }
        let has_finalizers = has_finalizers(&old);
        let grace = grace_period.unwrap_or_else(|| {
            old.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        let graceful = self.waits_for_kubelet(&resource, &old) && grace > 0;
        if !(graceful || has_finalizers) {
            return Ok(self.remove(resource, key, old));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut new = old.clone();
        let when = if graceful {
            Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or_else(|_| Timestamp::now())
        } else {
            Timestamp::now()
        };
        set_meta(
            &mut new,
            "deletionTimestamp",
            json!(when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        set_meta(
            &mut new,
            "deletionGracePeriodSeconds",
            json!(if graceful { grace } else { 0 }),
        );
        Ok(self.store_modified(resource, key, new, old))
    }

    /// What a kubelet does for terminating pods: removes them. Returns how many.
    pub fn finish_terminating_pods(&mut self) -> usize {
        let keys: Vec<Key> = self
            .list(&resources::PODS, None)
            .into_iter()
            .filter(|(_, p)| p.pointer("/metadata/deletionTimestamp").is_some())
            .filter(|(_, p)| !has_finalizers(p))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            if let Some(last) = self.get(&resources::PODS, key).cloned() {
                self.remove(resources::PODS, key, last);
            }
        }
        keys.len()
    }
}
