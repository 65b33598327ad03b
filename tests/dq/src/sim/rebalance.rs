//! Rebalancing: realload's descheduler (its own plan code over the modelled cluster) and the
//! sigs descheduler's LowNodeUtilization baseline.

use super::*;

impl Sim<'_> {
    pub(super) fn evict(&mut self, pod: usize) {
        if self.t >= 0 {
            self.evictions_per_workload[self.pods[pod].workload] += 1;
        }
        self.release(pod, true);
        self.add("evictions", 1.0);
    }

    /// realload's descheduler plan, its cooldown kept from run to run.
    pub(super) fn realload_deschedule(&mut self) {
        let now = ts(self.t);
        let views: Vec<NodeView> = self
            .scenario
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| NodeView {
                name: node.name.clone(),
                uid: None,
                readings: self.realload.readings[n].clone(),
                allocatable: Allocatable {
                    cpu_millis: node.cpu_m,
                    memory_bytes: node.mem_mi << 20,
                },
                ready: !self.scenario.down(n, self.t),
                unschedulable: self.scenario.cordoned(n, self.t),
                taints: Vec::new(),
                internal_ip: None,
                hostname: None,
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
            })
            .collect();
        let hot: Vec<usize> = (0..views.len())
            .filter(|&n| {
                realload_descheduler::plan::hot_reading(&self.policy, &views[n], now).is_some()
            })
            .collect();
        if hot.is_empty() {
            return;
        }
        let candidates: Vec<k8s_openapi::api::core::v1::Pod> = hot
            .iter()
            .flat_map(|n| self.on_node[*n].iter())
            .map(|&p| self.pod_object(p))
            .collect();
        let node_requests: HashMap<String, Requests> = self
            .scenario
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                (
                    node.name.clone(),
                    Requests {
                        cpu_millis: self.requested[n].0,
                        memory_bytes: self.requested[n].1 << 20,
                    },
                )
            })
            .collect();
        let (replica_sets, deployments) = self.owner_objects();
        let whitelist = realload_common::whitelist::Whitelist::default();
        // the collector's table as published (the descheduler applies its own age rule), or
        // with the oracle each workload's true usage
        let oracle;
        let usage = if self.scenario.usage_oracle {
            let mut table = realload_common::workload::UsageTable {
                updated: Some(now),
                ..Default::default()
            };
            for w in 0..self.scenario.workloads.len() {
                if let Some(r) = self.learned(w) {
                    table.workloads.insert(
                        self.workload_key(w),
                        realload_common::workload::UsageEntry {
                            cpu: r.cpu,
                            memory: r.memory,
                            pods: 1,
                        },
                    );
                }
            }
            oracle = table;
            &oracle
        } else {
            &self.realload.usage_table
        };
        let plan = realload_descheduler::plan::plan(&realload_descheduler::plan::Inputs {
            policy: &self.policy,
            whitelist: &whitelist,
            now,
            nodes: &views,
            candidates: &candidates,
            node_requests: &node_requests,
            replica_sets: &replica_sets,
            deployments: &deployments,
            stateful_sets: &[],
            pdbs: &[],
            last_evictions: &self.realload.last_evictions,
            usage,
        });
        for e in plan.evictions {
            if let Some(id) = e
                .pod
                .strip_prefix('p')
                .and_then(|i| i.parse::<usize>().ok())
                && self.pods.get(id).is_some_and(|p| p.node.is_some())
            {
                self.evict(id);
                self.realload.last_evictions.insert(e.workload_key, now);
            }
        }
    }

    /// A workload as realload names it: its pods' ReplicaSet `<name>-rs` folds into the
    /// Deployment.
    pub(super) fn workload_key(&self, w: usize) -> realload_common::workload::WorkloadKey {
        realload_common::workload::WorkloadKey {
            namespace: "sim".into(),
            kind: "Deployment".into(),
            name: self.scenario.workloads[w].name.clone(),
        }
    }

    pub(super) fn pod_object(&self, id: usize) -> k8s_openapi::api::core::v1::Pod {
        let p = &self.pods[id];
        let w = &self.scenario.workloads[p.workload];
        let node = p.node.map(|n| self.scenario.nodes[n].name.clone());
        let started = ts(p.started()).to_string();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("p{id}"), "namespace": "sim", "uid": format!("p{id}"),
                         "labels": {"app": w.name, "pod-template-hash": "rs"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{}-rs", w.name), "uid": "u", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {
                "cpu": format!("{}m", w.cpu_request_m), "memory": format!("{}Mi", w.mem_request_mi)}}}]},
            "status": {"phase": if self.t >= p.started() { "Running" } else { "Pending" }, "startTime": started,
                       "conditions": [{"type": "Ready", "status": if self.t >= p.started() { "True" } else { "False" }}]}
        }))
        .unwrap_or_default()
    }

    pub(super) fn owner_objects(
        &self,
    ) -> (
        Vec<k8s_openapi::api::apps::v1::ReplicaSet>,
        Vec<k8s_openapi::api::apps::v1::Deployment>,
    ) {
        let mut ready = vec![0usize; self.scenario.workloads.len()];
        for p in self
            .pods
            .iter()
            .filter(|p| p.node.is_some() && self.t >= p.started())
        {
            ready[p.workload] += 1;
        }
        self.scenario
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let rs = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("{}-rs", w.name), "namespace": "sim",
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name, "uid": "d", "controller": true}]}}))
                .unwrap_or_default();
                let dep = serde_json::from_value(serde_json::json!({"metadata": {"name": w.name, "namespace": "sim"},
                    "status": {"readyReplicas": ready[i], "replicas": ready[i]}}))
                .unwrap_or_default();
                (rs, dep)
            })
            .unzip()
    }

    /// The upstream descheduler's LowNodeUtilization, by requests (thresholds 20%, target 50%,
    /// as in its documented example): when some node is under every threshold, pods are evicted
    /// from nodes over any target until they are under it, or the room on the underutilised
    /// nodes is used up.
    pub(super) fn low_node_utilization(&mut self) {
        let (low, target) = (0.20, 0.50);
        let usage = |s: &Sim<'_>, n: usize| {
            let node = &s.scenario.nodes[n];
            let (c, m) = s.requested[n];
            (
                c as f64 / node.cpu_m as f64,
                m as f64 / node.mem_mi as f64,
                s.on_node[n].len() as f64 / 110.0,
            )
        };
        let nodes: Vec<usize> = (0..self.scenario.nodes.len())
            .filter(|&n| self.available(n))
            .collect();
        let under: Vec<usize> = nodes
            .iter()
            .copied()
            .filter(|&n| {
                let (c, m, p) = usage(self, n);
                c < low && m < low && p < low
            })
            .collect();
        if under.is_empty() {
            return;
        }
        let mut room: f64 = under
            .iter()
            .map(|&n| (target - usage(self, n).0) * self.scenario.nodes[n].cpu_m as f64)
            .sum();
        let mut over: Vec<(usize, f64)> = nodes
            .iter()
            .copied()
            .filter_map(|n| {
                let (c, m, p) = usage(self, n);
                (c > target || m > target || p > target).then_some((n, c))
            })
            .collect();
        over.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (n, _) in over {
            let pods: Vec<usize> = self.on_node[n].clone();
            for p in pods {
                let (c, m, pc) = usage(self, n);
                if (c <= target && m <= target && pc <= target) || room <= 0.0 {
                    break;
                }
                room -= self.scenario.workloads[self.pods[p].workload].cpu_request_m as f64;
                self.evict(p);
            }
        }
    }
}
