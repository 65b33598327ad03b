//! The ledger: pods bound to each node that its readings may not cover yet.

use std::sync::Arc;

use jiff::Timestamp;
use realload_common::scoring::BoundPod;

use super::HashMap;

/// The pods bound to one node that its readings may not cover yet.
#[derive(Debug, Clone, Default)]
pub struct NodePods {
    uids: Vec<Arc<str>>,
    pods: Vec<BoundPod>,
}

impl NodePods {
    pub fn pods(&self) -> &[BoundPod] {
        &self.pods
    }
}

/// Pods bound to each node that its newest valid reading may not cover yet, and, while a node is
/// unknown, those bound since it became unknown. Bounded by the binding rate over the longest max
/// age (and by the unknown-node cap), not by cluster size.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub(super) by_node: HashMap<Arc<str>, Arc<NodePods>>,
    node_of: HashMap<Arc<str>, Arc<str>>,
}

impl Ledger {
    pub fn len(&self) -> usize {
        self.node_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.node_of.is_empty()
    }

    pub fn pods_on(&self, node: &str) -> &[BoundPod] {
        self.by_node.get(node).map_or(&[], |p| p.pods())
    }

    pub(super) fn node_of(&self, uid: &str) -> Option<Arc<str>> {
        self.node_of.get(uid).cloned()
    }

    pub(super) fn insert(&mut self, uid: Arc<str>, node: Arc<str>, pod: BoundPod) {
        self.remove(&uid);
        let entry = Arc::make_mut(self.by_node.entry(node.clone()).or_default());
        entry.uids.push(uid.clone());
        entry.pods.push(pod);
        self.node_of.insert(uid, node);
    }

    /// Removes a pod; returns the node it was on.
    pub(super) fn remove(&mut self, uid: &str) -> Option<Arc<str>> {
        let node = self.node_of.remove(uid)?;
        if let Some(entry) = self.by_node.get_mut(&node) {
            let entry = Arc::make_mut(entry);
            if let Some(i) = entry.uids.iter().position(|u| &**u == uid) {
                entry.uids.swap_remove(i);
                entry.pods.swap_remove(i);
            }
            if entry.uids.is_empty() {
                self.by_node.remove(&node);
            }
        }
        Some(node)
    }

    /// Drops the node's pods bound at or before `covered`; true if any was dropped.
    pub(super) fn prune_node(&mut self, node: &str, covered: Timestamp) -> bool {
        let Some(entry) = self.by_node.get_mut(node) else {
            return false;
        };
        if entry.pods.iter().all(|p| p.bound_at > covered) {
            return false;
        }
        let entry = Arc::make_mut(entry);
        let mut i = 0;
        while i < entry.pods.len() {
            if entry.pods[i].bound_at > covered {
                i += 1;
            } else {
                self.node_of.remove(&entry.uids[i]);
                entry.uids.swap_remove(i);
                entry.pods.swap_remove(i);
            }
        }
        if entry.uids.is_empty() {
            self.by_node.remove(node);
        }
        true
    }

    pub(super) fn nodes(&self) -> Vec<Arc<str>> {
        self.by_node.keys().cloned().collect()
    }
}
