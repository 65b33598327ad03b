//! The Eviction and Binding subresources: PodDisruptionBudget arithmetic as kube-apiserver's
//! disruption controller and eviction REST handler do it, and binding a pod to a node.

use serde_json::{Value, json};

use std::collections::BTreeMap;

use super::{Key, Manager, Store, meta_str, now_string};
use crate::resources;
use crate::selectors::selector_object_matches;
use crate::status::ApiError;

impl Store {
    /// The PodDisruptionBudgets in the pod's namespace whose selector matches it.
    fn pdbs_for(&self, pod: &Value, namespace: &str) -> Vec<Key> {
        let labels = pod.pointer("/metadata/labels");
        if labels.is_none_or(|l| l.as_object().is_none_or(|m| m.is_empty())) {
            return Vec::new();
        }
        self.list(&resources::PDBS, Some(namespace))
            .into_iter()
            .filter(|(_, pdb)| {
                pdb.pointer("/spec/selector")
                    .is_some_and(|sel| selector_object_matches(sel, labels))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The number of pods the PDB's pods' controllers want (the disruption controller's
    /// "expected count"), falling back to the number of matching pods.
    fn expected_count(&self, namespace: &str, pods: &[&Value]) -> i64 {
        let mut controllers: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut without_controller = 0;
        for pod in pods {
            let owner = pod
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| {
                    refs.iter()
                        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                });
            let scale = owner.and_then(|o| {
                let kind = o.get("kind").and_then(Value::as_str)?;
                let name = o.get("name").and_then(Value::as_str)?;
                let key = (namespace.to_string(), name.to_string());
                match kind {
                    "ReplicaSet" => {
                        let rs = self.get(&resources::REPLICASETS, &key)?;
                        // A Deployment's scale is the Deployment's replicas.
                        let deployment = rs
                            .pointer("/metadata/ownerReferences")
                            .and_then(Value::as_array)
                            .and_then(|r| {
                                r.iter().find(|o| {
                                    o.get("kind").and_then(Value::as_str) == Some("Deployment")
                                })
                            })
                            .and_then(|o| o.get("name").and_then(Value::as_str))
                            .and_then(|d| {
                                self.get(
                                    &resources::DEPLOYMENTS,
                                    &(namespace.to_string(), d.to_string()),
                                )
                            });
                        let replicas = deployment
                            .and_then(|d| d.pointer("/spec/replicas"))
                            .or_else(|| rs.pointer("/spec/replicas"))
                            .and_then(Value::as_i64)
                            .unwrap_or(1);
                        Some(((kind.to_string(), name.to_string()), replicas))
                    }
                    "StatefulSet" => {
                        let sts = self.get(&resources::STATEFULSETS, &key)?;
                        Some((
                            (kind.to_string(), name.to_string()),
                            sts.pointer("/spec/replicas")
                                .and_then(Value::as_i64)
                                .unwrap_or(1),
                        ))
                    }
                    _ => None,
                }
            });
            match scale {
                Some((k, replicas)) => {
                    controllers.insert(k, replicas);
                }
                None => without_controller += 1,
            }
        }
        controllers.values().sum::<i64>() + without_controller
    }

    /// Recomputes a PDB's status from the pods, as the disruption controller would.
    pub fn pdb_status(&self, pdb: &Value, namespace: &str) -> Value {
        let selector = pdb.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        let disrupted: Vec<String> = pdb
            .pointer("/status/disruptedPods")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let pods: Vec<&Value> = self
            .list(&resources::PODS, Some(namespace))
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| selector_object_matches(&selector, p.pointer("/metadata/labels")))
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .collect();
        let healthy = pods
            .iter()
            .filter(|p| {
                !disrupted
                    .iter()
                    .any(|d| Some(d.as_str()) == meta_str(p, "name"))
            })
            .filter(|p| {
                p.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count() as i64;
        let expected = self.expected_count(namespace, &pods);
        let scaled = |v: &Value, total: i64| -> i64 {
            match v {
                Value::Number(n) => n.as_i64().unwrap_or(0),
                Value::String(s) => s
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<i64>().ok())
                    .map(|p| (p * total + 99) / 100)
                    .unwrap_or(0),
                _ => 0,
            }
        };
        let desired = if let Some(min) = pdb.pointer("/spec/minAvailable") {
            scaled(min, expected)
        } else if let Some(max) = pdb.pointer("/spec/maxUnavailable") {
            (expected - scaled(max, expected)).max(0)
        } else {
            // Neither set: policy/v1 defaults to minAvailable 1.
            1
        };
        let mut status = pdb.get("status").cloned().unwrap_or(json!({}));
        status["currentHealthy"] = json!(healthy);
        status["desiredHealthy"] = json!(desired);
        status["expectedPods"] = json!(expected);
        status["disruptionsAllowed"] = json!((healthy - desired).max(0));
        status["observedGeneration"] = pdb
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        status
    }

    /// POST pods/eviction: the PDB check, then a graceful delete.
    pub fn evict(
        &mut self,
        key: &Key,
        grace_period: Option<i64>,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let Some(pod) = self.get(&resources::PODS, key).cloned() else {
            return Err(ApiError::not_found(&resources::PODS, &key.1));
        };
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        let terminating = pod.pointer("/metadata/deletionTimestamp").is_some();
        // kube-apiserver's canIgnorePDB: finished, pending or already terminating pods.
        let ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending") || terminating;
        if !ignore_pdb {
            let pdbs = self.pdbs_for(&pod, &key.0);
            if pdbs.len() > 1 {
                return Err(ApiError {
                    code: 500,
                    reason: "InternalError",
                    message: "Internal error occurred: This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                    details: Some(json!({"causes": [{"message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}]})),
                    retry_after: None,
                });
            }
            if let Some(pdb_key) = pdbs.first() {
                let Some(pdb) = self.get(&resources::PDBS, pdb_key).cloned() else {
                    return Err(ApiError::not_found(&resources::PDBS, &pdb_key.1));
                };
                let mut status = self.pdb_status(&pdb, &key.0);
                let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
                if allowed <= 0 {
                    let name = meta_str(&pdb, "name").unwrap_or("");
                    let mut updated = pdb.clone();
                    updated["status"] = status.clone();
                    if !dry_run && updated != pdb {
                        let _ = self.update(
                            resources::PDBS,
                            pdb_key,
                            updated,
                            Some("status"),
                            Manager::Server,
                            false,
                        );
                    }
                    return Err(ApiError {
                        code: 429,
                        reason: "TooManyRequests",
                        message:
                            "Cannot evict pod as it would violate the pod's disruption budget."
                                .into(),
                        details: Some(json!({"causes": [{
                            "reason": "DisruptionBudget",
                            "message": format!("The disruption budget {} needs {} healthy pods and has {} currently",
                                name, status["desiredHealthy"], status["currentHealthy"]),
                        }]})),
                        retry_after: None,
                    });
                }
                if dry_run {
                    return Ok(());
                }
                status["disruptionsAllowed"] = json!(allowed - 1);
                let mut disrupted = status.get("disruptedPods").cloned().unwrap_or(json!({}));
                disrupted[key.1.as_str()] = json!(now_string());
                status["disruptedPods"] = disrupted;
                let mut updated = pdb.clone();
                updated["status"] = status;
                self.update(
                    resources::PDBS,
                    pdb_key,
                    updated,
                    Some("status"),
                    Manager::Server,
                    false,
                )?;
            }
        }
        if dry_run {
            return Ok(());
        }
        self.delete(resources::PODS, key, grace_period, None, None, false)
            .map(|_| ())
    }

    /// POST pods/binding.
    pub fn bind(&mut self, key: &Key, node: &str) -> Result<(), ApiError> {
        let Some(pod) = self.get(&resources::PODS, key).cloned() else {
            return Err(ApiError::not_found(&resources::PODS, &key.1));
        };
        if let Some(current) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError {
                code: 409,
                reason: "Conflict",
                message: format!(
                    "Operation cannot be fulfilled on pods/binding \"{}\": pod {} is already assigned to node \"{}\"",
                    key.1, key.1, current
                ),
                details: Some(json!({"name": key.1, "kind": "pods/binding"})),
                retry_after: None,
            });
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                &resources::PODS,
                &key.1,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let mut new = pod.clone();
        new["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = new
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_string()}));
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        new["status"]["conditions"] = Value::Array(conditions);
        self.store_modified(resources::PODS, key, new, pod);
        Ok(())
    }
}
