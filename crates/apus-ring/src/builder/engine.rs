//! The placement engine: the plan's tree with live "how much does this
//! node still want" values, and per-node tournament trees over the
//! children so the roomiest eligible child is found in logarithmic time.
//!
//! A device's value is its deficit: partition-replicas wanted minus held
//! (negative when it holds too many). A tier's value is the sum of the
//! positive deficits of its devices: how many more partition-replicas its
//! under-filled devices could take. Keys pack the value with a 16-bit
//! random tie-breaker that is redrawn whenever the value changes, so equal
//! candidates take turns in a random order.

use super::plan::{Plan, Tree, DEV_DEPTH, NO_NODE};
use super::rng::Rng;

/// `(key, position of the child)`; padding leaves hold `EMPTY`.
type Slot = (i64, u32);
const EMPTY: Slot = (i64::MIN, u32::MAX);
/// Keys at or above this have a value of at least one.
const POSITIVE_KEY: i64 = 1 << 16;

pub(super) struct Engine<'a> {
    pub tree: &'a Tree,
    pub plan: &'a Plan,
    /// Deficit (devices) or sum of positive deficits (tiers), by node.
    pub val: Vec<i64>,
    seg: Vec<Slot>,
    seg_off: Vec<usize>,
    seg_size: Vec<u32>,
    pub rng: Rng,
    bufs: Vec<Vec<u32>>,
}

impl<'a> Engine<'a> {
    /// `held[id]` is how many partition-replicas device `id` holds now.
    pub(super) fn new(tree: &'a Tree, plan: &'a Plan, held: &[u32], rng: Rng) -> Self {
        let n = tree.len();
        let mut val = vec![0i64; n];
        for leaf in tree.leaves() {
            let id = tree.dev_id[leaf as usize] as usize;
            let have = held.get(id).copied().unwrap_or(0);
            val[leaf as usize] = plan.want_parts[leaf as usize] - i64::from(have);
        }
        for node in (1..n).rev() {
            let v = if tree.depth[node] == DEV_DEPTH {
                val[node].max(0)
            } else {
                val[node]
            };
            val[tree.parent[node] as usize] += v;
        }
        let mut seg_off = vec![0usize; n];
        let mut seg_size = vec![0u32; n];
        let mut total = 0usize;
        for node in tree.internal_nodes() {
            let size = tree.n_children[node as usize].max(1).next_power_of_two();
            seg_off[node as usize] = total;
            seg_size[node as usize] = size;
            total += 2 * size as usize;
        }
        let mut engine = Engine {
            tree,
            plan,
            val,
            seg: vec![EMPTY; total],
            seg_off,
            seg_size,
            rng,
            bufs: vec![Vec::new(); DEV_DEPTH as usize],
        };
        for node in tree.internal_nodes() {
            let off = engine.seg_off[node as usize];
            let size = engine.seg_size[node as usize] as usize;
            for (pos, child) in tree.children(node).enumerate() {
                let key = engine.fresh_key(child);
                engine.seg[off + size + pos] = (key, pos as u32);
            }
            for i in (1..size).rev() {
                engine.seg[off + i] = better(engine.seg[off + 2 * i], engine.seg[off + 2 * i + 1]);
            }
        }
        engine
    }

    fn fresh_key(&mut self, node: u32) -> i64 {
        let tie = (self.rng.next_u64() & 0xFFFF) as i64;
        (self.val[node as usize] << 16) + tie
    }

    /// Re-keys `node` in its parent's tournament tree.
    fn rekey(&mut self, node: u32) {
        let parent = self.tree.parent[node as usize];
        if parent == NO_NODE {
            return;
        }
        let key = self.fresh_key(node);
        let off = self.seg_off[parent as usize];
        let size = self.seg_size[parent as usize] as usize;
        let pos = (node - self.tree.first_child[parent as usize]) as usize;
        let mut i = size + pos;
        self.seg[off + i] = (key, pos as u32);
        while i > 1 {
            i /= 2;
            self.seg[off + i] = better(self.seg[off + 2 * i], self.seg[off + 2 * i + 1]);
        }
    }

    /// Records that device leaf `leaf` gained (`+1`) or lost (`-1`) a
    /// partition-replica.
    pub(super) fn adjust(&mut self, leaf: u32, gained: i64) {
        let old = self.val[leaf as usize];
        let new = old - gained;
        self.val[leaf as usize] = new;
        self.rekey(leaf);
        let delta = new.max(0) - old.max(0);
        if delta == 0 {
            return;
        }
        let mut node = self.tree.parent[leaf as usize];
        while node != NO_NODE {
            self.val[node as usize] += delta;
            self.rekey(node);
            node = self.tree.parent[node as usize];
        }
    }

    /// The best child of `node` whose position is not in `excluded`.
    fn best_child(&self, node: u32, excluded: &[u32]) -> Option<Slot> {
        let off = self.seg_off[node as usize];
        let size = self.seg_size[node as usize];
        let seg = &self.seg[off..off + 2 * size as usize];
        let best = best_excluding(seg, 1, 0, size, excluded);
        (best.1 != u32::MAX).then_some(best)
    }

    /// Walks down from `start` to a device, at each level taking the child
    /// with the largest key among those that do not already hold their
    /// `max` replicas of the partition, and backing out of subtrees that
    /// lead nowhere. With `positive`, only nodes that still want
    /// partition-replicas qualify.
    pub(super) fn descend(&mut self, start: u32, part: &PartTiers, positive: bool) -> Option<u32> {
        let mut bufs = std::mem::take(&mut self.bufs);
        let found = self.descend_with(start, part, positive, &mut bufs);
        self.bufs = bufs;
        found
    }

    fn descend_with(
        &self,
        node: u32,
        part: &PartTiers,
        positive: bool,
        bufs: &mut [Vec<u32>],
    ) -> Option<u32> {
        if self.tree.depth[node as usize] == DEV_DEPTH {
            return Some(node);
        }
        let (excluded, deeper) = bufs.split_first_mut()?;
        excluded.clear();
        let first = self.tree.first_child[node as usize];
        for (&n, &count) in part.nodes.iter().zip(&part.counts) {
            if self.tree.parent[n as usize] == node && count >= self.plan.max[n as usize] {
                excluded.push(n - first);
            }
        }
        loop {
            let (key, pos) = self.best_child(node, excluded)?;
            if positive && key < POSITIVE_KEY {
                return None;
            }
            if let Some(leaf) = self.descend_with(first + pos, part, positive, deeper) {
                return Some(leaf);
            }
            excluded.push(pos);
        }
    }

    /// Last resort when the plan's bounds leave no room (float edge cases):
    /// any device not holding the partition, fewest bounds broken first,
    /// then the largest deficit.
    pub(super) fn any_free_device(&self, part: &PartTiers) -> Option<u32> {
        let mut best: Option<(u32, i64, u32)> = None;
        for leaf in self.tree.leaves() {
            if part.count(leaf) > 0 {
                continue;
            }
            let mut broken = 0u32;
            let mut n = leaf;
            while n != 0 && n != NO_NODE {
                if part.count(n) >= self.plan.max[n as usize] {
                    broken += 1;
                }
                n = self.tree.parent[n as usize];
            }
            let score = (broken, -self.val[leaf as usize], leaf);
            if best.is_none_or(|b| score < b) {
                best = Some(score);
            }
        }
        best.map(|b| b.2)
    }

    /// The deepest node on the way from `leaf` to the root that would hold
    /// fewer than its `min` replicas of the partition without this replica
    /// (counts in `part` already exclude it); the root if none.
    pub(super) fn anchor(&self, leaf: u32, part: &PartTiers) -> u32 {
        let mut n = leaf;
        while n != 0 && n != NO_NODE {
            if part.count(n) < self.plan.min[n as usize] {
                return n;
            }
            n = self.tree.parent[n as usize];
        }
        0
    }
}

fn better(a: Slot, b: Slot) -> Slot {
    if b.0 > a.0 {
        b
    } else {
        a
    }
}

/// The best leaf under tournament node `i` (covering positions `lo..hi`)
/// outside `excluded`; the stored winner when nothing is excluded there.
fn best_excluding(seg: &[Slot], i: usize, lo: u32, hi: u32, excluded: &[u32]) -> Slot {
    if !excluded.iter().any(|&e| e >= lo && e < hi) {
        return seg[i];
    }
    if hi - lo == 1 {
        return EMPTY;
    }
    let mid = lo + (hi - lo) / 2;
    better(
        best_excluding(seg, 2 * i, lo, mid, excluded),
        best_excluding(seg, 2 * i + 1, mid, hi, excluded),
    )
}

/// How many replicas of one partition each node holds (only nodes holding
/// some are listed).
#[derive(Default)]
pub(super) struct PartTiers {
    nodes: Vec<u32>,
    counts: Vec<u32>,
}

impl PartTiers {
    pub(super) fn clear(&mut self) {
        self.nodes.clear();
        self.counts.clear();
    }

    pub(super) fn count(&self, node: u32) -> u32 {
        self.nodes
            .iter()
            .position(|&n| n == node)
            .map_or(0, |i| self.counts[i])
    }

    /// Counts a replica on device leaf `leaf` in the leaf and its tiers
    /// (not the root).
    pub(super) fn add(&mut self, tree: &Tree, leaf: u32) {
        let mut n = leaf;
        while n != 0 && n != NO_NODE {
            match self.nodes.iter().position(|&x| x == n) {
                Some(i) => self.counts[i] += 1,
                None => {
                    self.nodes.push(n);
                    self.counts.push(1);
                }
            }
            n = tree.parent[n as usize];
        }
    }

    pub(super) fn remove(&mut self, tree: &Tree, leaf: u32) {
        let mut n = leaf;
        while n != 0 && n != NO_NODE {
            if let Some(i) = self.nodes.iter().position(|&x| x == n) {
                self.counts[i] = self.counts[i].saturating_sub(1);
            }
            n = tree.parent[n as usize];
        }
    }

    /// Whether any node on the way up from `leaf` holds more than its
    /// `max` replicas.
    pub(super) fn over_max(&self, tree: &Tree, plan: &Plan, leaf: u32) -> bool {
        let mut n = leaf;
        while n != 0 && n != NO_NODE {
            if self.count(n) > plan.max[n as usize] {
                return true;
            }
            n = tree.parent[n as usize];
        }
        false
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.nodes.iter().copied().zip(self.counts.iter().copied())
    }
}
