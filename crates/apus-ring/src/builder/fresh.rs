//! Placement of a ring with no replica assigned yet (a new ring, or one
//! whose devices were all replaced): every partition-replica is placed at
//! once, which for a large ring is most of the rebalance.
//!
//! It chooses as the engine does for such a ring (the child with the best
//! key, equal keys in a random order), without the engine's general
//! machinery. While no tier or device has received more
//! partition-replicas than the plan wants, a tier's value is simply what
//! it still wants, so choosing among a tier's children is a scan of their
//! cached keys, and placing a replica re-keys one node per level instead
//! of updating a tournament tree per level. Most tiers take at most one
//! replica of a partition and their children's keys are just what they
//! still want; those hand out their children in shuffled rounds (see
//! `Fresh::next_in_round`) without any scan. All replicas of a partition
//! are split at each tier at once, so the partition's bounds are kept with
//! a few local counts instead of per-partition tier counts.
//!
//! It gives up (the caller then clears the rows and runs the engine) when
//! a tier choosing by key has too many children for scanning to pay, or
//! when a choice would give some tier or device more than the plan wants
//! or leave a partition outside its bounds. When it succeeds, every device
//! holds exactly its planned number of partition-replicas and every
//! partition is within the plan's bounds: nothing is left to balance.

use super::engine::KEY_SHIFT;
use super::plan::{Plan, Tree, DEV_DEPTH};
use super::rng::Rng;
use super::NONE_DEV;

/// Bits of a rank below the key: the tie-breaker and the position.
const TIE_BITS: u32 = 10;
const POS_BITS: u32 = 6;
/// Most children of a tier choosing by key (positions fit `POS_BITS`);
/// rings with wider ones are placed by the engine, whose tournament trees
/// scale.
const MAX_FANOUT: usize = 1 << POS_BITS;
const POS_MASK: i64 = (1 << POS_BITS) - 1;
/// Partitions placed between progress callbacks.
const TICK_EVERY: usize = 4096;

/// Fresh placement did not work out; the engine has to place the ring.
#[derive(Debug)]
pub(super) struct GaveUp;

/// Some child has `need >= 1`, so even a single replica takes the general
/// split.
const REQUIRED: u8 = 1;
/// The node takes at most one replica of a partition and its children's
/// keys are just what they still want: it hands out its children in
/// rounds (see `Fresh::next_in_round`) instead of choosing by rank.
const ROUNDS: u8 = 2;
/// The node's parent chooses by rank, so the node's rank is kept.
const RANKED: u8 = 4;
/// Each child takes at most one replica of a partition.
const DISTINCT: u8 = 8;
/// The node may hold replicas (its `max` is not 0).
const MAY_HOLD: u8 = 16;

/// What a walk down the tree reads and writes of a node, in one place so
/// that a step down touches few cache lines.
#[derive(Clone, Copy, Default)]
struct Node {
    /// Partition-replicas the node still wants.
    rem: i64,
    first_child: u32,
    /// 0 for a device.
    n_children: u16,
    /// For nodes choosing in rounds: the length of the current round and
    /// how much of it was handed out.
    round_len: u16,
    round_at: u16,
    flags: u8,
}

struct Fresh<'a> {
    plan: &'a Plan,
    nodes: Vec<Node>,
    /// Replicas of the current partition given to each node (zero between
    /// splits).
    given: Vec<u32>,
    /// For nodes choosing in rounds: the positions of the children in the
    /// current round, stored where the children are.
    round: Vec<u16>,
    /// Each node's rank among its siblings: its key, a random tie-breaker
    /// and its position, packed so that the largest number is the best
    /// child and says which one it is; `i64::MIN` for nodes that may hold
    /// no replica.
    rank: Vec<i64>,
    /// Fixed-point shift of the keys, as large as the packing allows (it
    /// only matters for keys divided by a spare capacity above one).
    shift: u32,
    /// Fewest replicas of any partition a node must take so that it and
    /// every tier below it reach their minimums.
    need: Vec<u32>,
    /// Children with `need >= 1` of each internal node.
    required: Vec<Vec<u32>>,
    /// Nodes whose key depends on `pending` (`min >= 1`).
    pending_keyed: Vec<u32>,
    /// Partitions still to be placed after the current one.
    pending: i64,
    rng: Rng,
    /// Devices chosen for the current partition.
    chosen: Vec<u32>,
}

/// Places every replica of `rows` (all unassigned) on the devices of
/// `tree`. On `Err` the rows may be partly filled.
pub(super) fn place(
    tree: &Tree,
    plan: &Plan,
    rows: &mut [Vec<u16>],
    rng: Rng,
    tick: &mut dyn FnMut(u64),
) -> Result<(), GaveUp> {
    let parts = rows.first().map_or(0, Vec::len);
    let mut fresh = Fresh::new(tree, plan, parts, rng)?;
    let mut todo: Vec<u32> = (0..parts as u32).collect();
    fresh.rng.shuffle(&mut todo);
    for (done, &p) in todo.iter().enumerate() {
        if done % TICK_EVERY == 0 {
            tick(done as u64);
        }
        fresh.set_pending((parts - done - 1) as i64);
        let p = p as usize;
        let k = rows.iter().filter(|row| row.len() > p).count();
        fresh.chosen.clear();
        fresh.split(0, k as u32)?;
        // Devices come out grouped by tier; which replica each one is
        // should not depend on where it sits in the tree.
        fresh.rng.shuffle(&mut fresh.chosen);
        let mut chosen = fresh.chosen.iter();
        for row in rows.iter_mut().filter(|row| row.len() > p) {
            let &leaf = chosen.next().ok_or(GaveUp)?;
            row[p] = tree.dev_id[leaf as usize] as u16;
        }
    }
    Ok(())
}

/// Clears rows that `place` gave up on.
pub(super) fn clear(rows: &mut [Vec<u16>]) {
    for row in rows {
        row.fill(NONE_DEV);
    }
}

impl<'a> Fresh<'a> {
    fn new(tree: &'a Tree, plan: &'a Plan, parts: usize, rng: Rng) -> Result<Self, GaveUp> {
        let n = tree.len();
        let mut need = vec![0u32; n];
        let mut below = vec![0u32; n];
        // Children come after their parents: sum bottom-up.
        for node in (0..n).rev() {
            need[node] = plan.min[node].max(below[node]);
            if node > 0 {
                let parent = tree.parent[node] as usize;
                below[parent] = below[parent].saturating_add(need[node]);
            }
        }
        let required = tree
            .internal_nodes()
            .map(|node| {
                tree.children(node)
                    .filter(|&c| need[c as usize] >= 1)
                    .collect()
            })
            .collect();
        // Keys stay within what a node wants plus the minimums set aside
        // for the pending partitions; they must fit in front of the
        // tie-breaker and position.
        let most_min = plan.min.iter().copied().max().unwrap_or(0);
        let wanted = plan
            .want_parts
            .iter()
            .map(|w| w.unsigned_abs())
            .max()
            .unwrap_or(0);
        let bound = u128::from(wanted) + u128::from(most_min) * parts as u128 + 1;
        let bits = 128 - bound.leading_zeros();
        let room = 63 - TIE_BITS - POS_BITS - 1;
        if bits > room {
            return Err(GaveUp);
        }
        let mut nodes = Vec::with_capacity(n);
        for node in 0..n {
            let children = if tree.depth[node] == DEV_DEPTH {
                0..0
            } else {
                tree.children(node as u32)
            };
            let n_children = u16::try_from(children.len()).map_err(|_| GaveUp)?;
            let mut flags = 0;
            if children.clone().any(|c| need[c as usize] >= 1) {
                flags |= REQUIRED;
            }
            if children.clone().all(|c| plan.max[c as usize] <= 1) {
                flags |= DISTINCT;
            }
            let simple_children = children
                .clone()
                .all(|c| plan.min[c as usize] == 0 && plan.max[c as usize] <= 1);
            if n_children > 0 && flags & REQUIRED == 0 && plan.max[node] <= 1 && simple_children {
                flags |= ROUNDS;
            } else if usize::from(n_children) > MAX_FANOUT {
                return Err(GaveUp);
            }
            if plan.max[node] > 0 {
                flags |= MAY_HOLD;
            }
            nodes.push(Node {
                rem: plan.want_parts[node],
                first_child: tree.first_child[node],
                n_children,
                flags,
                ..Node::default()
            });
        }
        for node in 1..n {
            if nodes[tree.parent[node] as usize].flags & ROUNDS == 0 {
                nodes[node].flags |= RANKED;
            }
        }
        let mut fresh = Fresh {
            plan,
            nodes,
            given: vec![0; n],
            round: vec![0; n],
            rank: vec![i64::MIN; n],
            shift: KEY_SHIFT.min(room - bits),
            need,
            required,
            pending_keyed: (1..n as u32)
                .filter(|&c| plan.min[c as usize] >= 1)
                .collect(),
            pending: 0,
            rng,
            chosen: Vec::new(),
        };
        for node in 1..n {
            let flags = fresh.nodes[node].flags;
            if flags & RANKED != 0 && flags & MAY_HOLD != 0 {
                let pos = node as u32 - tree.first_child[tree.parent[node] as usize];
                fresh.rank[node] = i64::from(pos);
                fresh.rerank(node);
            }
        }
        Ok(fresh)
    }

    /// Recomputes the rank of `node` (which may hold replicas) from what
    /// it still wants, with a new tie-breaker: equal keys take turns in a
    /// random order.
    fn rerank(&mut self, node: usize) {
        let (min, max) = (self.plan.min[node], self.plan.max[node]);
        let mut key = self.nodes[node].rem;
        if min > 0 {
            key -= i64::from(min) * self.pending;
        }
        key <<= self.shift;
        let spare = max.saturating_sub(min);
        if spare > 1 {
            key /= i64::from(spare);
        }
        let pos = self.rank[node] & POS_MASK;
        let tie = (self.rng.next_u64() >> (64 - TIE_BITS)) as i64;
        self.rank[node] = (key << (TIE_BITS + POS_BITS)) | (tie << POS_BITS) | pos;
    }

    fn set_pending(&mut self, pending: i64) {
        if pending == self.pending {
            return;
        }
        self.pending = pending;
        for i in 0..self.pending_keyed.len() {
            self.rerank(self.pending_keyed[i] as usize);
        }
    }

    /// Gives one more partition-replica to `node`, whose parent chooses by
    /// rank.
    fn take(&mut self, node: usize) -> Result<(), GaveUp> {
        let rem = &mut self.nodes[node].rem;
        if *rem <= 0 {
            return Err(GaveUp);
        }
        *rem -= 1;
        if self.nodes[node].flags & RANKED != 0 {
            self.rerank(node);
        }
        Ok(())
    }

    /// The next child of `node` (choosing in rounds) to take a replica,
    /// which it is given.
    ///
    /// Choosing the child that still wants the most, equal ones in a
    /// random order, takes the children in rounds: each round is every
    /// child wanting as much as the most wanting one, in a random order;
    /// after it, they all want one less and join those that wanted that
    /// much. So a round is built once and then handed out in turn, and a
    /// child in it never gets more than it wants.
    fn next_in_round(&mut self, node: usize) -> Result<usize, GaveUp> {
        let Node {
            first_child,
            n_children,
            mut round_len,
            mut round_at,
            ..
        } = self.nodes[node];
        let first = first_child as usize;
        if round_at == round_len {
            let mut most = 0;
            let mut len = 0;
            for c in first..first + usize::from(n_children) {
                let child = self.nodes[c];
                if child.flags & MAY_HOLD == 0 || child.rem < most || child.rem <= 0 {
                    continue;
                }
                if child.rem > most {
                    most = child.rem;
                    len = 0;
                }
                self.round[first + len] = (c - first) as u16;
                len += 1;
            }
            if len == 0 {
                return Err(GaveUp);
            }
            self.rng.shuffle(&mut self.round[first..first + len]);
            round_len = len as u16;
            round_at = 0;
        }
        let c = first + usize::from(self.round[first + usize::from(round_at)]);
        let info = &mut self.nodes[node];
        info.round_len = round_len;
        info.round_at = round_at + 1;
        self.nodes[c].rem -= 1;
        Ok(c)
    }

    /// Splits `k` replicas of the current partition over the devices under
    /// `node`: first to children short of their minimums, then one at a
    /// time to the child with the best key that may hold one more.
    fn split(&mut self, mut node: u32, k: u32) -> Result<(), GaveUp> {
        let mut info = self.nodes[node as usize];
        while k == 1 && info.flags & REQUIRED == 0 {
            if info.n_children == 0 {
                self.chosen.push(node);
                return Ok(());
            }
            let c = if info.flags & ROUNDS != 0 {
                self.next_in_round(node as usize)?
            } else {
                // No bounds but the children's own maximums, whose rank is
                // `i64::MIN` when zero.
                let first = info.first_child as usize;
                let ranks = &self.rank[first..first + usize::from(info.n_children)];
                let top = ranks.iter().copied().max().unwrap_or(i64::MIN);
                if top == i64::MIN {
                    return Err(GaveUp);
                }
                let c = first + position(top);
                self.take(c)?;
                c
            };
            node = c as u32;
            info = self.nodes[c];
        }
        if info.n_children == 0 || info.flags & ROUNDS != 0 {
            return Err(GaveUp);
        }
        let first = info.first_child as usize;
        let children = first..first + usize::from(info.n_children);
        if info.flags & (DISTINCT | REQUIRED) == DISTINCT {
            // Each child takes at most one replica: the k best, one by one
            // (a child's new key does not matter once it has one).
            let mut picked = 0u64;
            for _ in 0..k {
                let mut top = i64::MIN;
                for (i, &r) in self.rank[children.clone()].iter().enumerate() {
                    let r = if picked >> i & 1 == 0 { r } else { i64::MIN };
                    top = top.max(r);
                }
                if top == i64::MIN {
                    return Err(GaveUp);
                }
                let pos = position(top);
                picked |= 1 << pos;
                self.take(first + pos)?;
            }
            while picked != 0 {
                let pos = picked.trailing_zeros() as usize;
                picked &= picked - 1;
                self.split((first + pos) as u32, 1)?;
            }
            return Ok(());
        }
        let mut left = k;
        loop {
            let mut urgent = i64::MIN;
            for &c in &self.required[node as usize] {
                let c = c as usize;
                if self.given[c] < self.need[c] {
                    urgent = urgent.max(self.rank[c]);
                }
            }
            if urgent == i64::MIN {
                break;
            }
            let c = first + position(urgent);
            if left == 0 || self.given[c] >= self.plan.max[c] {
                return Err(GaveUp);
            }
            self.take(c)?;
            self.given[c] += 1;
            left -= 1;
        }
        while left > 0 {
            let top = self.rank[children.clone()]
                .iter()
                .zip(&self.given[children.clone()])
                .zip(&self.plan.max[children.clone()])
                .map(|((&r, &g), &m)| if g < m { r } else { i64::MIN })
                .max()
                .unwrap_or(i64::MIN);
            if top == i64::MIN {
                return Err(GaveUp);
            }
            let c = first + position(top);
            self.take(c)?;
            self.given[c] += 1;
            left -= 1;
        }
        for c in children {
            let g = std::mem::take(&mut self.given[c]);
            if g > 0 {
                self.split(c as u32, g)?;
            }
        }
        Ok(())
    }
}

/// The position among its siblings of the node with rank `rank`.
fn position(rank: i64) -> usize {
    (rank & POS_MASK) as usize
}
