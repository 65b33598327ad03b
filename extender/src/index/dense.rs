//! The request side of a generation: every node's cached judgement in a few contiguous arrays.
//!
//! A cache-mode request names up to every node of the cluster. Looking each name up in the map of
//! [`NodeEntry`](super::NodeEntry)s touched two scattered heap objects per node (the key string
//! and the entry), and at 5,000 nodes those cache misses were most of the request's CPU time. Here
//! the names live in one buffer, a hash table maps a name to its index, and the judgements are
//! one array of small slots, so a request walks a few hundred contiguous kilobytes.
//!
//! The writer keeps it in step with its node map ([`Nodes`]); a generation shares it by `Arc`
//! and a change copies the slot array (a memcpy), not the names.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use jiff::Timestamp;
use realload_common::scoring::{Allocatable, Estimates, FilterVerdict, Judgement};
use rustc_hash::FxBuildHasher;

use super::{HashMap, NodeEntry};

/// Node names in one buffer, and a table from name to index. Indices stay valid while a name is
/// indexed; removed names leave a hole until the next compaction.
#[derive(Debug, Clone, Default)]
struct Names {
    buffer: String,
    /// Where each name lies in `buffer`, and its index: one entry holds all a lookup needs
    /// but the bytes to compare.
    table: HashTable<NameRef>,
    /// Indices handed out so far (live names and holes).
    count: u32,
    /// Indices whose name was removed.
    holes: usize,
}

#[derive(Debug, Clone, Copy)]
struct NameRef {
    start: u32,
    len: u32,
    index: u32,
}

fn hash(name: &str) -> u64 {
    FxBuildHasher.hash_one(name)
}

impl Names {
    fn text(buffer: &str, r: NameRef) -> &str {
        &buffer[r.start as usize..(r.start + r.len) as usize]
    }

    fn find(&self, name: &str) -> Option<u32> {
        let len = name.len() as u32;
        self.table
            .find(hash(name), |r| {
                r.len == len && Self::text(&self.buffer, *r) == name
            })
            .map(|r| r.index)
    }

    /// The name's index, adding it if new.
    fn insert(&mut self, name: &str) -> u32 {
        if let Some(i) = self.find(name) {
            return i;
        }
        let r = NameRef {
            start: self.buffer.len() as u32,
            len: name.len() as u32,
            index: self.count,
        };
        self.count += 1;
        self.buffer.push_str(name);
        let buffer = &self.buffer;
        self.table
            .insert_unique(hash(name), r, |r| hash(Self::text(buffer, *r)));
        r.index
    }

    fn remove(&mut self, name: &str) -> Option<u32> {
        let len = name.len() as u32;
        let buffer = &self.buffer;
        let entry = self
            .table
            .find_entry(hash(name), |r| {
                r.len == len && Self::text(buffer, *r) == name
            })
            .ok()?;
        let (r, _) = entry.remove();
        self.holes += 1;
        Some(r.index)
    }
}

/// One node's cached judgement in 40 bytes. The span is kept in whole seconds, rounded inwards,
/// so the cache is never trusted outside the span it was computed for.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    from: i64,
    until: i64,
    /// See [`super::reading_fingerprint`].
    fingerprint: u64,
    unknown_pods: u32,
    /// 0: passes; otherwise 1 + its index in `Dense::verdicts`.
    verdict: u32,
    score: i8,
    known: bool,
    live: bool,
    estimated: Estimates,
    allocatable: Allocatable,
    reading_over: bool,
}

/// The cached judgements of a generation, by node name.
#[derive(Debug, Clone, Default)]
pub struct Dense {
    names: Arc<Names>,
    slots: Vec<Slot>,
    /// The verdicts of nodes that do not pass (few), referenced by their slots.
    verdicts: Vec<FilterVerdict>,
    /// Entries of `verdicts` no slot references any more, for reuse.
    free_verdicts: Vec<u32>,
}

impl Dense {
    /// The node's cached judgement, if it holds at `now`.
    pub fn get(&self, name: &str, now: Timestamp) -> Option<Judgement> {
        self.get_if(name, now, |_| true)
    }

    /// The node's cached judgement, if it holds at `now` and was computed from inputs with this
    /// fingerprint.
    pub fn get_matching(&self, name: &str, now: Timestamp, fingerprint: u64) -> Option<Judgement> {
        self.get_if(name, now, |slot| slot.fingerprint == fingerprint)
    }

    fn get_if(
        &self,
        name: &str,
        now: Timestamp,
        accept: impl Fn(&Slot) -> bool,
    ) -> Option<Judgement> {
        let slot = self.slots.get(self.names.find(name)? as usize)?;
        let second = now.as_second();
        if !(slot.live && slot.from <= second && second < slot.until && accept(slot)) {
            return None;
        }
        let verdict = match slot.verdict {
            0 => FilterVerdict::Pass,
            v => self.verdicts.get(v as usize - 1)?.clone(),
        };
        Some(Judgement {
            known: slot.known,
            verdict,
            score: i64::from(slot.score),
            unknown_pods: slot.unknown_pods,
            estimated: slot.estimated,
            allocatable: slot.allocatable,
            reading_over: slot.reading_over,
        })
    }

    fn set(
        &mut self,
        name: &str,
        judgement: &Judgement,
        (from, until): (Timestamp, Timestamp),
        fingerprint: u64,
    ) {
        let i = Arc::make_mut(&mut self.names).insert(name) as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, Slot::default());
        }
        let old = self.slots[i].verdict;
        let verdict = match (&judgement.verdict, old) {
            (FilterVerdict::Pass, 0) => 0,
            (FilterVerdict::Pass, old) => {
                self.free_verdicts.push(old - 1);
                0
            }
            (v, 0) => match self.free_verdicts.pop() {
                Some(k) => {
                    self.verdicts[k as usize] = v.clone();
                    k + 1
                }
                None => {
                    self.verdicts.push(v.clone());
                    self.verdicts.len() as u32
                }
            },
            (v, old) => {
                self.verdicts[old as usize - 1] = v.clone();
                old
            }
        };
        // Inwards: the first whole second at or after `from`, the last before `until`.
        let from_second = from.as_second() + i64::from(from.subsec_nanosecond() > 0);
        self.slots[i] = Slot {
            from: from_second,
            until: until.as_second(),
            fingerprint,
            unknown_pods: judgement.unknown_pods,
            verdict,
            score: judgement
                .score
                .clamp(i64::from(i8::MIN), i64::from(i8::MAX)) as i8,
            known: judgement.known,
            live: true,
            estimated: judgement.estimated,
            allocatable: judgement.allocatable,
            reading_over: judgement.reading_over,
        };
    }

    fn remove(&mut self, name: &str) {
        let Some(i) = Arc::make_mut(&mut self.names).remove(name) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(i as usize) {
            if slot.verdict != 0 {
                self.free_verdicts.push(slot.verdict - 1);
            }
            *slot = Slot::default();
        }
    }

    /// Rebuilt from scratch when the holes outnumber the names.
    fn needs_compaction(&self) -> bool {
        self.names.holes > 64 && self.names.holes * 2 >= self.names.count as usize
    }
}

/// The writer's node map together with its dense projection: every change goes through here,
/// so the two never disagree.
#[derive(Debug, Clone, Default)]
pub struct Nodes {
    map: HashMap<Arc<str>, Arc<NodeEntry>>,
    dense: Arc<Dense>,
}

impl Nodes {
    pub fn map(&self) -> &HashMap<Arc<str>, Arc<NodeEntry>> {
        &self.map
    }

    pub fn dense(&self) -> Arc<Dense> {
        self.dense.clone()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeEntry>> {
        self.map.get(name)
    }

    fn project(dense: &mut Dense, name: &str, entry: &NodeEntry) {
        match &entry.cached {
            Some(c) => dense.set(name, &c.judgement, (c.from, c.until), c.fingerprint),
            None => dense.remove(name),
        }
    }

    pub fn insert(&mut self, name: Arc<str>, entry: Arc<NodeEntry>) {
        Self::project(Arc::make_mut(&mut self.dense), &name, &entry);
        self.map.insert(name, entry);
    }

    pub fn remove(&mut self, name: &str) {
        if self.map.remove(name).is_some() {
            let dense = Arc::make_mut(&mut self.dense);
            dense.remove(name);
            if dense.needs_compaction() {
                self.rebuild();
            }
        }
    }

    /// Replaces every node at once (a watch relisted, the policy changed).
    pub fn replace(&mut self, map: HashMap<Arc<str>, Arc<NodeEntry>>) {
        self.map = map;
        self.rebuild();
    }

    fn rebuild(&mut self) {
        let mut dense = Dense::default();
        for (name, entry) in &self.map {
            Self::project(&mut dense, name, entry);
        }
        self.dense = Arc::new(dense);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgement(known: bool, score: i64, verdict: FilterVerdict) -> Judgement {
        Judgement {
            known,
            verdict,
            score,
            unknown_pods: if known { 0 } else { 3 },
            estimated: [Some(0.25), None, Some(0.5)].into_iter().collect(),
            allocatable: Allocatable {
                cpu_millis: 8000,
                memory_bytes: 1 << 34,
            },
            reading_over: false,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn judgements_hold_only_inside_their_span_rounded_inwards() {
        let mut d = Dense::default();
        let j = judgement(true, 7, FilterVerdict::Pass);
        d.set(
            "a",
            &j,
            (ts("2026-11-22T01:00:00.5Z"), ts("2026-11-22T01:03:00.5Z")),
            7,
        );
        assert_eq!(
            d.get("a", ts("2026-11-22T01:00:00.7Z")),
            None,
            "inside the first partial second"
        );
        assert_eq!(d.get("a", ts("2026-11-22T01:00:01Z")), Some(j.clone()));
        assert_eq!(d.get("a", ts("2026-11-22T01:02:59.9Z")), Some(j.clone()));
        assert_eq!(
            d.get("a", ts("2026-11-22T01:03:00.2Z")),
            None,
            "the last partial second"
        );
        assert_eq!(d.get("b", ts("2026-11-22T01:01:00Z")), None);
        // unbounded spans
        d.set("b", &j, (Timestamp::MIN, Timestamp::MAX), 8);
        let now = ts("2026-11-22T01:01:00Z");
        assert_eq!(d.get("b", now), Some(j.clone()));
        // the fingerprint of what it was computed from must match, when asked
        assert_eq!(d.get_matching("b", now, 8), Some(j));
        assert_eq!(d.get_matching("b", now, 9), None);
    }

    #[test]
    fn verdicts_names_and_holes_survive_updates_removals_and_compaction() {
        let (from, until) = (Timestamp::MIN, Timestamp::MAX);
        let now = ts("2026-11-22T01:00:00Z");
        let reject = FilterVerdict::reject("cpu-avg-5m", 0.8, 0.93);
        let mut nodes_dense = Dense::default();
        for i in 0..500 {
            let verdict = if i % 3 == 0 {
                reject.clone()
            } else {
                FilterVerdict::Pass
            };
            nodes_dense.set(
                &format!("node-{i}"),
                &judgement(i % 5 != 0, i % 11, verdict),
                (from, until),
                0,
            );
        }
        // flip some verdicts both ways; the verdict list is reused, not grown
        for i in 0..500 {
            let verdict = if i % 3 == 1 {
                reject.clone()
            } else {
                FilterVerdict::Pass
            };
            nodes_dense.set(
                &format!("node-{i}"),
                &judgement(true, 5, verdict),
                (from, until),
                0,
            );
        }
        assert!(
            nodes_dense.verdicts.len() <= 167,
            "{}",
            nodes_dense.verdicts.len()
        );
        for i in (0..500).step_by(2) {
            nodes_dense.remove(&format!("node-{i}"));
        }
        for i in 0..500 {
            let got = nodes_dense.get(&format!("node-{i}"), now);
            if i % 2 == 0 {
                assert_eq!(got, None, "node-{i} was removed");
            } else {
                let want = if i % 3 == 1 {
                    reject.clone()
                } else {
                    FilterVerdict::Pass
                };
                assert_eq!(got, Some(judgement(true, 5, want)), "node-{i}");
            }
        }
        assert!(nodes_dense.needs_compaction());
        // a removed name comes back at a new index
        nodes_dense.set(
            "node-0",
            &judgement(true, 9, FilterVerdict::Pass),
            (from, until),
            0,
        );
        assert_eq!(nodes_dense.get("node-0", now).map(|j| j.score), Some(9));
    }
}
