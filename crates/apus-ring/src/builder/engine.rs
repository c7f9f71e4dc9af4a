//! The placement engine: the plan's tree with live "how much does this
//! node still want" values, and per-node tournament trees over the
//! children so the roomiest eligible child is found in logarithmic time.
//!
//! A device's value is its deficit: partition-replicas wanted minus held
//! (negative when it holds too many). A tier's value is the sum of the
//! positive deficits of its devices: how many more partition-replicas its
//! under-filled devices could take. A child's key is how many replicas it
//! still needs beyond its minimum per partition (the minimums of the
//! partitions still to be placed are set aside), divided by how many
//! replicas of one partition it may hold beyond that minimum: the share of
//! its spare capacity it still needs. So a tier taking at most one replica
//! per partition is not starved by a big one that fills first, and a tier
//! meant to hold 1.2 replicas per partition takes a second replica of only
//! one partition in five.
//! Equal keys are ordered by a random tie-breaker redrawn whenever the
//! value changes, so equal candidates take turns in a random order.

use super::plan::{Plan, Tree, DEV_DEPTH, NO_NODE};
use super::rng::Rng;

/// A child in its parent's tournament tree; padding leaves hold `EMPTY`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: i64,
    tie: u16,
    pos: u32,
}

const EMPTY: Slot = Slot {
    key: i64::MIN,
    tie: 0,
    pos: u32::MAX,
};
/// Fixed-point shift of keys (value per replica of capacity). Values stay
/// below 2^41 in magnitude (2^32 partitions times 256 replicas, plus as
/// much set aside), so shifted keys fit an i64.
pub(super) const KEY_SHIFT: u32 = 20;

/// What a walk down the tree looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Goal {
    /// Any device, the roomiest first, tiers short of their minimum for
    /// the partition before all others.
    Place,
    /// A device holding fewer partition-replicas than it should.
    Wanting,
    /// A device not holding more than it should.
    NotOver,
}

pub(super) struct Engine<'a> {
    pub tree: &'a Tree,
    pub plan: &'a Plan,
    /// Deficit (devices) or sum of positive deficits (tiers), by node.
    pub val: Vec<i64>,
    /// Partition-replicas wanted minus held, by node (tiers included).
    pub net: Vec<i64>,
    seg: Vec<Slot>,
    seg_off: Vec<usize>,
    seg_size: Vec<u32>,
    pub rng: Rng,
    bufs: Vec<Vec<u32>>,
    /// Children with `min >= 1` of each internal node (few: their mins add
    /// up to at most the replica count).
    required: Vec<Vec<u32>>,
    /// All nodes with `min >= 1`.
    required_nodes: Vec<u32>,
    /// Partitions still to be placed, whose minimums are set aside.
    pending: i64,
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
        let mut net = val.clone();
        for node in (1..n).rev() {
            net[tree.parent[node] as usize] += net[node];
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
            net,
            seg: vec![EMPTY; total],
            seg_off,
            seg_size,
            rng,
            bufs: vec![Vec::new(); DEV_DEPTH as usize],
            required: vec![Vec::new(); tree.internal_nodes().len()],
            required_nodes: (1..n as u32)
                .filter(|&c| plan.min[c as usize] >= 1)
                .collect(),
            pending: 0,
        };
        for node in tree.internal_nodes() {
            engine.required[node as usize] = tree
                .children(node)
                .filter(|&c| plan.min[c as usize] >= 1)
                .collect();
        }
        for node in tree.internal_nodes() {
            let off = engine.seg_off[node as usize];
            let size = engine.seg_size[node as usize] as usize;
            for (pos, child) in tree.children(node).enumerate() {
                engine.seg[off + size + pos] = engine.fresh_slot(child, pos as u32);
            }
            for i in (1..size).rev() {
                engine.seg[off + i] = better(engine.seg[off + 2 * i], engine.seg[off + 2 * i + 1]);
            }
        }
        engine
    }

    fn fresh_slot(&mut self, node: u32, pos: u32) -> Slot {
        let (min, max) = (self.plan.min[node as usize], self.plan.max[node as usize]);
        Slot {
            key: share_key(self.val[node as usize], min, max, self.pending),
            tie: (self.rng.next_u64() & 0xFFFF) as u16,
            pos,
        }
    }

    /// Re-keys `node` in its parent's tournament tree.
    fn rekey(&mut self, node: u32) {
        let parent = self.tree.parent[node as usize];
        if parent == NO_NODE {
            return;
        }
        let off = self.seg_off[parent as usize];
        let size = self.seg_size[parent as usize] as usize;
        let pos = (node - self.tree.first_child[parent as usize]) as usize;
        let mut i = size + pos;
        self.seg[off + i] = self.fresh_slot(node, pos as u32);
        while i > 1 {
            i /= 2;
            self.seg[off + i] = better(self.seg[off + 2 * i], self.seg[off + 2 * i + 1]);
        }
    }

    /// Sets how many partitions are still to be placed (0 outside the
    /// placement of unassigned replicas) and re-keys the tiers whose keys
    /// depend on it.
    pub(super) fn set_pending(&mut self, pending: usize) {
        let pending = pending as i64;
        if pending == self.pending {
            return;
        }
        self.pending = pending;
        for i in 0..self.required_nodes.len() {
            self.rekey(self.required_nodes[i]);
        }
    }

    /// Records that device leaf `leaf` gained (`+1`) or lost (`-1`) a
    /// partition-replica.
    pub(super) fn adjust(&mut self, leaf: u32, gained: i64) {
        let old = self.val[leaf as usize];
        let new = old - gained;
        self.val[leaf as usize] = new;
        self.rekey(leaf);
        let mut up = leaf;
        while up != NO_NODE {
            self.net[up as usize] -= gained;
            up = self.tree.parent[up as usize];
        }
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
        (best.pos != u32::MAX).then_some(best)
    }

    /// Walks down from `start` to a device, at each level taking the child
    /// with the largest key among those that do not already hold their
    /// `max` replicas of the partition, and backing out of subtrees that
    /// lead nowhere, until it finds a device meeting `goal`.
    pub(super) fn descend(&mut self, start: u32, part: &PartTiers, goal: Goal) -> Option<u32> {
        let mut bufs = std::mem::take(&mut self.bufs);
        let found = self.descend_with(start, part, goal, &mut bufs);
        self.bufs = bufs;
        found
    }

    fn descend_with(
        &self,
        node: u32,
        part: &PartTiers,
        goal: Goal,
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
        if goal == Goal::Place {
            // A tier that needs more replicas of this partition to meet
            // its (and its descendants') minimums comes first.
            let mut urgent: Option<((i64, u16), u32)> = None;
            for &c in self
                .required
                .get(node as usize)
                .map_or(&[][..], Vec::as_slice)
            {
                let pos = c - first;
                let count = part.count(c);
                if excluded.contains(&pos) || self.need(c, part) <= count {
                    continue;
                }
                let key = self.key_of(node, pos);
                if urgent.is_none_or(|(k, _)| key > k) {
                    urgent = Some((key, pos));
                }
            }
            if let Some((_, pos)) = urgent {
                if let Some(leaf) = self.descend_with(first + pos, part, goal, deeper) {
                    return Some(leaf);
                }
                excluded.push(pos);
            }
        }
        let leaves_below = self.tree.depth[node as usize] + 1 == DEV_DEPTH;
        loop {
            let best = self.best_child(node, excluded)?;
            let value = self.val[(first + best.pos) as usize];
            // Children come best first: a failing one ends the search.
            match goal {
                Goal::Wanting if value <= 0 => return None,
                Goal::NotOver if leaves_below && value < 0 => return None,
                _ => {}
            }
            if let Some(leaf) = self.descend_with(first + best.pos, part, goal, deeper) {
                return Some(leaf);
            }
            excluded.push(best.pos);
        }
    }

    /// The stored key and tie-breaker of the child at `pos` of `node`.
    fn key_of(&self, node: u32, pos: u32) -> (i64, u16) {
        let off = self.seg_off[node as usize];
        let size = self.seg_size[node as usize] as usize;
        let slot = self.seg[off + size + pos as usize];
        (slot.key, slot.tie)
    }

    /// Fewest replicas of the partition `node` must hold so that it and
    /// every tier below it reach their `min`, given what it holds now.
    fn need(&self, node: u32, part: &PartTiers) -> u32 {
        let own = self.plan.min[node as usize];
        let Some(required) = self.required.get(node as usize) else {
            return own;
        };
        if required.is_empty() {
            return own;
        }
        let mut total = part.count(node);
        for &c in required {
            let held = part.count(c);
            total += self.need(c, part).max(held) - held;
        }
        own.max(total)
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

    /// The depth of the widest tier above `leaf` holding more than it
    /// should (the leaf's own depth if none): replicas there have to leave
    /// that tier, which only some partitions allow, so they go first.
    pub(super) fn overfull_depth(&self, leaf: u32) -> u8 {
        let mut widest = self.tree.depth[leaf as usize];
        let mut n = self.tree.parent[leaf as usize];
        while n != 0 && n != NO_NODE {
            if self.net[n as usize] < 0 {
                widest = self.tree.depth[n as usize];
            }
            n = self.tree.parent[n as usize];
        }
        widest
    }

    /// The ancestor of `leaf` at `depth` (the leaf itself at its depth).
    pub(super) fn ancestor(&self, leaf: u32, depth: u8) -> u32 {
        let mut n = leaf;
        while n != NO_NODE && self.tree.depth[n as usize] > depth {
            n = self.tree.parent[n as usize];
        }
        n
    }

    /// How urgently a replica on `leaf` should leave: how far over its
    /// share each tier above it is, widest first (0 where not over), then
    /// the device's own deficit. Smaller is more urgent.
    pub(super) fn leave_rank(&self, leaf: u32) -> [i64; DEV_DEPTH as usize] {
        let mut rank = [0i64; DEV_DEPTH as usize];
        rank[DEV_DEPTH as usize - 1] = self.val[leaf as usize];
        let mut n = self.tree.parent[leaf as usize];
        while n != 0 && n != NO_NODE {
            let depth = self.tree.depth[n as usize] as usize;
            rank[depth - 1] = self.net[n as usize].min(0);
            n = self.tree.parent[n as usize];
        }
        rank
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

/// The key of a node with value `val` and per-partition bounds
/// `min..=max` while `pending` partitions are still to be placed (see the
/// module documentation).
fn share_key(val: i64, min: u32, max: u32, pending: i64) -> i64 {
    let mut key = val;
    if min > 0 {
        key -= i64::from(min) * pending;
    }
    key <<= KEY_SHIFT;
    let spare = max.saturating_sub(min);
    if spare > 1 {
        key /= i64::from(spare);
    }
    key
}

fn better(a: Slot, b: Slot) -> Slot {
    if (b.key, b.tie) > (a.key, a.tie) {
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
        for n in tree.path(leaf) {
            match self.nodes.iter().position(|&x| x == n) {
                Some(i) => self.counts[i] += 1,
                None => {
                    self.nodes.push(n);
                    self.counts.push(1);
                }
            }
        }
    }

    pub(super) fn remove(&mut self, tree: &Tree, leaf: u32) {
        for n in tree.path(leaf) {
            if let Some(i) = self.nodes.iter().position(|&x| x == n) {
                self.counts[i] = self.counts[i].saturating_sub(1);
            }
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
