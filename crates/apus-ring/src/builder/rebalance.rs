//! The rebalance itself; see the parent module for the outline.

use super::engine::{Engine, Goal, PartTiers};
use super::fresh;
use super::plan::{Plan, Tree, NO_NODE};
use super::rng::Rng;
use super::{row_lengths, BuilderError, RebalanceProgress, RebalanceReport, RingBuilder, NONE_DEV};
use crate::device::Device;

/// Progress callbacks per stage, at most.
const STEPS_PER_STAGE: u64 = 20;
/// Progress callbacks per rebalance beyond which only stage starts and
/// ends are reported (balancing may take many short passes).
const FINE_CALLS: u64 = 120;
/// Replica counts up to which a partition's replicas are compared
/// pairwise rather than counted per tier.
const FEW_REPLICAS: usize = 16;
/// Passes over all partitions looking for balancing moves, at most.
const MAX_BALANCE_PASSES: usize = 4;
/// Rounds of lateral moves (each followed by direct passes), at most.
const MAX_LATERAL_ROUNDS: usize = 24;

/// Reports progress: each stage's start and end, and up to
/// `STEPS_PER_STAGE` steps in between while fewer than `FINE_CALLS` calls
/// were made. A rebalance makes at most a few hundred calls.
struct Reporter<'a> {
    callback: &'a mut dyn FnMut(RebalanceProgress),
    stage: &'static str,
    total: u64,
    next: u64,
    calls: u64,
}

impl<'a> Reporter<'a> {
    fn new(callback: &'a mut dyn FnMut(RebalanceProgress)) -> Self {
        Reporter {
            callback,
            stage: "",
            total: 0,
            next: 0,
            calls: 0,
        }
    }

    fn call(&mut self, done: u64) {
        self.calls += 1;
        (self.callback)(RebalanceProgress {
            stage: self.stage,
            done,
            total: self.total,
        });
    }

    fn start(&mut self, stage: &'static str, total: u64) {
        self.stage = stage;
        self.total = total;
        self.call(0);
        self.next = if self.calls < FINE_CALLS {
            (total / STEPS_PER_STAGE).max(1)
        } else {
            u64::MAX
        };
    }

    fn tick(&mut self, done: u64) {
        if done >= self.next && done < self.total {
            self.call(done);
            self.next = done + (self.total / STEPS_PER_STAGE).max(1);
        }
    }

    fn finish(&mut self) {
        let total = self.total;
        self.call(total);
    }
}

/// One bit per partition.
struct PartSet(Vec<u64>);

impl PartSet {
    fn new(parts: usize) -> Self {
        PartSet(vec![0; parts.div_ceil(64)])
    }
    fn insert(&mut self, p: usize) {
        self.0[p / 64] |= 1 << (p % 64);
    }
    fn contains(&self, p: usize) -> bool {
        self.0[p / 64] & (1 << (p % 64)) != 0
    }
}

/// State shared by the rebalance steps.
struct Work<'b, 'e> {
    rows: &'b mut Vec<Vec<u16>>,
    /// The assignments before this rebalance.
    original: &'b [Vec<u16>],
    held: &'b mut Vec<u32>,
    last_moves: &'b [u8],
    min_part_hours: u32,
    moved: PartSet,
    engine: Engine<'e>,
    tiers: PartTiers,
}

impl Work<'_, '_> {
    fn tree(&self) -> &Tree {
        self.engine.tree
    }

    fn movable(&self, p: usize) -> bool {
        u32::from(self.last_moves[p]) >= self.min_part_hours && !self.moved.contains(p)
    }

    /// Whether replica `r` of `p` already changed in this rebalance, so
    /// moving it again changes no other replica of the partition.
    fn changed(&self, r: usize, p: usize) -> bool {
        self.original.get(r).and_then(|row| row.get(p)) != self.rows[r].get(p)
    }

    fn leaf_of(&self, id: u16) -> u32 {
        if id == NONE_DEV {
            return NO_NODE;
        }
        self.tree()
            .node_of_dev
            .get(usize::from(id))
            .copied()
            .unwrap_or(NO_NODE)
    }

    /// Loads the replica counts of partition `p` into `self.tiers`.
    fn count_part(&mut self, p: usize) {
        self.tiers.clear();
        for r in 0..self.rows.len() {
            if let Some(&id) = self.rows[r].get(p) {
                let leaf = self.leaf_of(id);
                if leaf != NO_NODE {
                    self.tiers.add(self.engine.tree, leaf);
                }
            }
        }
    }

    fn unassign(&mut self, r: usize, p: usize) {
        let id = self.rows[r][p];
        self.rows[r][p] = NONE_DEV;
        if let Some(h) = self.held.get_mut(usize::from(id)) {
            *h = h.saturating_sub(1);
        }
        let leaf = self.leaf_of(id);
        if leaf != NO_NODE {
            self.engine.adjust(leaf, -1);
            self.tiers.remove(self.engine.tree, leaf);
        }
        self.moved.insert(p);
    }

    fn assign(&mut self, r: usize, p: usize, leaf: u32) {
        let id = self.engine.tree.dev_id[leaf as usize];
        self.rows[r][p] = id as u16;
        self.held[id as usize] += 1;
        self.engine.adjust(leaf, 1);
        self.tiers.add(self.engine.tree, leaf);
        self.moved.insert(p);
    }

    /// Unassigns replicas that put more of a partition into some tier than
    /// the plan allows: one per movable partition (most over-filled device
    /// first), and any second replica on the same device.
    fn gather_for_dispersion(&mut self, report: &mut Reporter) {
        let parts = self.last_moves.len();
        report.start("gathering", parts as u64);
        let mut leaves: Vec<u32> = Vec::with_capacity(self.rows.len());
        for p in 0..parts {
            report.tick(p as u64);
            leaves.clear();
            leaves.extend(
                self.rows
                    .iter()
                    .filter_map(|row| row.get(p))
                    .map(|&id| self.leaf_of(id)),
            );
            if self.within_bounds(&leaves) {
                continue;
            }
            self.count_part(p);
            let mut may_move = self.movable(p);
            loop {
                let mut best: Option<(i64, usize)> = None;
                for r in 0..self.rows.len() {
                    let Some(&id) = self.rows[r].get(p) else {
                        continue;
                    };
                    let leaf = self.leaf_of(id);
                    if leaf == NO_NODE {
                        continue;
                    }
                    let doubled = self.tiers.count(leaf) > 1;
                    if !(may_move || doubled)
                        || !self
                            .tiers
                            .over_max(self.engine.tree, self.engine.plan, leaf)
                    {
                        continue;
                    }
                    let deficit = self.engine.val[leaf as usize];
                    if best.is_none_or(|(d, _)| deficit < d) {
                        best = Some((deficit, r));
                    }
                }
                let Some((_, r)) = best else { break };
                self.unassign(r, p);
                may_move = false;
            }
        }
        report.finish();
    }

    /// Whether replicas on `leaves` (`NO_NODE` for unassigned) keep every
    /// tier within its `max`, by comparing ancestors pairwise (cheap for
    /// the few replicas of a partition).
    fn within_bounds(&self, leaves: &[u32]) -> bool {
        let tree = self.engine.tree;
        let max = &self.engine.plan.max;
        for (i, &a) in leaves.iter().enumerate() {
            if a == NO_NODE {
                continue;
            }
            let path = tree.path(a);
            for (level, &node) in path.iter().enumerate() {
                let mut count = 1u32;
                for &b in &leaves[i + 1..] {
                    if b != NO_NODE && tree.path(b)[level] == node {
                        count += 1;
                    }
                }
                if count > max[node as usize] {
                    return false;
                }
            }
        }
        true
    }

    /// Places every unassigned replica, partitions in random order.
    fn place_unassigned(&mut self, report: &mut Reporter) -> Result<(), BuilderError> {
        let parts = self.last_moves.len();
        let mut todo: Vec<u32> = (0..parts)
            .filter(|&p| self.rows.iter().any(|row| row.get(p) == Some(&NONE_DEV)))
            .map(|p| p as u32)
            .collect();
        self.engine.rng.shuffle(&mut todo);
        report.start("placing", todo.len() as u64);
        for (done, &p) in todo.iter().enumerate() {
            report.tick(done as u64);
            self.engine.set_pending(todo.len() - done - 1);
            let p = p as usize;
            self.count_part(p);
            for r in 0..self.rows.len() {
                if self.rows[r].get(p) != Some(&NONE_DEV) {
                    continue;
                }
                let leaf = self
                    .engine
                    .descend(0, &self.tiers, Goal::Place)
                    .or_else(|| self.engine.any_free_device(&self.tiers))
                    .ok_or_else(|| {
                        BuilderError::Validation(format!(
                            "no device left for partition {p} replica {r}"
                        ))
                    })?;
                self.assign(r, p, leaf);
            }
        }
        self.engine.set_pending(0);
        report.finish();
        Ok(())
    }

    /// Evens out devices: direct moves from over-filled to under-filled
    /// devices; when those run out with devices still off target, lateral
    /// moves from over-filled devices to devices at their target open new
    /// direct moves (a chain of two moves where no single move fits).
    fn balance(&mut self, report: &mut Reporter) {
        self.direct_passes(report);
        for _ in 0..MAX_LATERAL_ROUNDS {
            let lacking = self.engine.val[0];
            if lacking == 0 {
                break;
            }
            let mut laterals = self.lateral_pass(report, true);
            if laterals.is_empty() {
                laterals = self.lateral_pass(report, false);
            }
            if laterals.is_empty() {
                break;
            }
            self.direct_passes(report);
            self.undo_idle(&laterals);
            if self.engine.val[0] >= lacking {
                break;
            }
        }
    }

    /// Moves back lateral moves whose receiving device is still over-filled
    /// (nothing moved on from it): they only added churn.
    fn undo_idle(&mut self, laterals: &[(usize, usize, u32, u32)]) {
        for &(r, p, from, to) in laterals.iter().rev() {
            let to_id = self.engine.tree.dev_id[to as usize];
            if u32::from(self.rows[r][p]) != to_id || self.engine.val[to as usize] >= 0 {
                continue;
            }
            // The partition's other replicas have not moved since (the
            // partition was marked moved), so going back is valid.
            self.count_part(p);
            self.unassign(r, p);
            self.assign(r, p, from);
        }
    }

    /// The replicas of `p` on over-filled devices that may move: replicas
    /// that already changed in this rebalance first (moving them again
    /// costs nothing), then the most urgent (see `Engine::leave_rank`);
    /// as `((0 if changed else 1, depth of the widest over-full tier,
    /// rank), replica, leaf)`.
    #[allow(clippy::type_complexity)]
    fn donors(&self, p: usize, out: &mut Vec<((u8, u8, [i64; 4]), usize, u32)>) {
        out.clear();
        let movable = self.movable(p);
        for r in 0..self.rows.len() {
            if let Some(&id) = self.rows[r].get(p) {
                let leaf = self.leaf_of(id);
                if leaf != NO_NODE && self.engine.val[leaf as usize] < 0 {
                    let changed = self.changed(r, p);
                    if !(movable || changed) {
                        continue;
                    }
                    let rank = (
                        u8::from(!changed),
                        self.engine.overfull_depth(leaf),
                        self.engine.leave_rank(leaf),
                    );
                    out.push((rank, r, leaf));
                }
            }
        }
        out.sort_unstable();
    }

    /// Moves single replicas of movable partitions from over-filled devices
    /// straight to under-filled ones, within the plan's bounds. Replicas
    /// placed earlier in this rebalance may move again (the partition
    /// still has only that replica changed). Replicas in over-full regions
    /// go first, then those in over-full zones and hosts: leaving a tier
    /// takes a partition with a replica to spare there, and such
    /// partitions should not be used up by moves that could happen
    /// anywhere.
    fn direct_passes(&mut self, report: &mut Reporter) {
        let tree = self.engine.tree;
        for _ in 0..MAX_BALANCE_PASSES {
            if self.direct_pass(report, super::plan::DEV_DEPTH, true) == 0 {
                break;
            }
        }
        for depth in 1..super::plan::DEV_DEPTH {
            let level = tree.level_start[depth as usize]..tree.level_start[depth as usize + 1];
            if level.clone().any(|n| self.engine.net[n as usize] < 0) {
                self.direct_pass(report, depth, false);
            }
        }
        for _ in 0..MAX_BALANCE_PASSES {
            if self.direct_pass(report, super::plan::DEV_DEPTH, false) == 0 {
                break;
            }
        }
    }

    /// One pass over the partitions, moving replicas of devices in tiers
    /// over-full at `depth` or above (with `free`, only replicas that
    /// already changed in this rebalance); returns how many moved.
    fn direct_pass(&mut self, report: &mut Reporter, depth: u8, free: bool) -> usize {
        let parts = self.last_moves.len();
        let mut donors = Vec::with_capacity(self.rows.len());
        let mut moves = 0usize;
        if self.engine.val[0] == 0 {
            return 0;
        }
        report.start("balancing", parts as u64);
        let start = self.engine.rng.below(parts as u64) as usize;
        for offset in 0..parts {
            report.tick(offset as u64);
            if self.engine.val[0] == 0 {
                break;
            }
            let p = (start + offset) % parts;
            if free && !self.moved.contains(p) {
                continue;
            }
            self.donors(p, &mut donors);
            donors.retain(|d| d.0 .1 <= depth && !(free && d.0 .0 == 1));
            if donors.is_empty() {
                continue;
            }
            self.count_part(p);
            for &(_, r, from) in &donors {
                if self.try_move(r, p, from) {
                    moves += 1;
                    break;
                }
            }
        }
        report.finish();
        moves
    }

    /// Moves up to as many replicas as devices lack from over-filled
    /// devices to devices at their target; with `leaving`, only out of the
    /// widest over-full tier above the device (where another device can
    /// usually pass a replica on). Returns the moves as `(replica,
    /// partition, from leaf, to leaf)`.
    fn lateral_pass(
        &mut self,
        report: &mut Reporter,
        leaving: bool,
    ) -> Vec<(usize, usize, u32, u32)> {
        let parts = self.last_moves.len();
        let budget = usize::try_from(self.engine.val[0]).unwrap_or(0);
        let mut donors = Vec::with_capacity(self.rows.len());
        let mut moves = Vec::new();
        report.start("rearranging", parts as u64);
        let start = self.engine.rng.below(parts as u64) as usize;
        for offset in 0..parts {
            report.tick(offset as u64);
            if moves.len() >= budget {
                break;
            }
            let p = (start + offset) % parts;
            self.donors(p, &mut donors);
            if let Some(&((_, depth, _), r, from)) = donors.first() {
                let tier = if leaving && depth < super::plan::DEV_DEPTH {
                    self.engine.ancestor(from, depth)
                } else {
                    NO_NODE
                };
                self.count_part(p);
                if self.try_move_out(r, p, from, Goal::NotOver, tier) {
                    let to = self.leaf_of(self.rows[r][p]);
                    moves.push((r, p, from, to));
                }
            }
        }
        report.finish();
        moves
    }

    /// Moves replica `r` of `p` off device leaf `from` to a device that
    /// wants more, if one can take it without breaking the plan's bounds
    /// for the partition.
    fn try_move(&mut self, r: usize, p: usize, from: u32) -> bool {
        self.try_move_out(r, p, from, Goal::Wanting, NO_NODE)
    }

    /// Moves replica `r` of `p` off device leaf `from` to a device meeting
    /// `goal` and outside tier `out` (unless that is `NO_NODE`), if one can
    /// take it without breaking the plan's bounds for the partition.
    fn try_move_out(&mut self, r: usize, p: usize, from: u32, goal: Goal, out: u32) -> bool {
        let tree = self.engine.tree;
        self.tiers.remove(tree, from);
        let anchor = self.engine.anchor(from, &self.tiers);
        let stuck = tree.depth[anchor as usize] == super::plan::DEV_DEPTH
            || (out != NO_NODE && tree.depth[anchor as usize] >= tree.depth[out as usize]);
        let to = if stuck {
            None
        } else {
            self.engine
                .descend(anchor, &self.tiers, goal)
                .filter(|&to| {
                    to != from
                        && (out == NO_NODE
                            || self.engine.ancestor(to, tree.depth[out as usize]) != out)
                })
        };
        self.tiers.add(tree, from);
        match to {
            Some(to) => {
                self.unassign(r, p);
                self.assign(r, p, to);
                true
            }
            None => false,
        }
    }
}

impl RingBuilder {
    pub(super) fn rebalance_impl(
        &mut self,
        seed: Option<u64>,
        now: u64,
        progress: &mut dyn FnMut(RebalanceProgress),
    ) -> Result<RebalanceReport, BuilderError> {
        let mut report = Reporter::new(progress);
        report.start("planning", 1);
        let weighted: Vec<&Device> = self.weighted_devs().collect();
        if weighted.is_empty() {
            return Err(BuilderError::NoWeightedDevices);
        }
        if !weighted.iter().map(|d| d.weight).sum::<f64>().is_finite() {
            return Err(BuilderError::Validation(
                "the devices' weights add up to more than a number can hold".to_string(),
            ));
        }
        if (weighted.len() as f64) < self.replicas {
            return Err(BuilderError::NotEnoughDevices {
                replicas: self.replicas,
                devices: weighted.len(),
            });
        }
        let parts = self.parts() as usize;
        let lengths = row_lengths(parts, self.replicas);
        let total_slots: usize = lengths.iter().sum();
        let tree = Tree::build(&weighted, self.devs.len());
        let held_now: Vec<u32> = self
            .devs
            .iter()
            .map(|b| b.as_ref().map_or(0, |b| b.parts))
            .collect();
        let plan = Plan::compute(
            &tree,
            self.replicas,
            self.overload,
            total_slots as u64,
            &held_now,
        )
        .map_err(BuilderError::Validation)?;
        report.finish();

        let devs_changed = self.devs_changed;
        let old_rows = self.rows.clone();
        self.age_part_moves(now);
        self.resize_rows(&lengths);

        let mut held: Vec<u32> = self
            .devs
            .iter()
            .map(|b| b.as_ref().map_or(0, |b| b.parts))
            .collect();
        let mut moved = PartSet::new(parts);
        // Replicas on devices outside the tree (removed, zero weight) go.
        for row in self.rows.iter_mut() {
            for (p, id) in row.iter_mut().enumerate() {
                if *id != NONE_DEV
                    && tree
                        .node_of_dev
                        .get(usize::from(*id))
                        .is_none_or(|&n| n == NO_NODE)
                {
                    if let Some(h) = held.get_mut(usize::from(*id)) {
                        *h = h.saturating_sub(1);
                    }
                    *id = NONE_DEV;
                    moved.insert(p);
                }
            }
        }

        let seed = seed.unwrap_or_else(Rng::entropy_seed);
        let mut rows = std::mem::take(&mut self.rows);
        let placed_fresh = rows.iter().all(|row| row.iter().all(|&id| id == NONE_DEV))
            && place_fresh(&tree, &plan, &mut rows, seed, &mut report);
        if placed_fresh {
            // Every device got exactly what the plan wants.
            for leaf in tree.leaves() {
                let id = tree.dev_id[leaf as usize] as usize;
                if let Some(h) = held.get_mut(id) {
                    *h = u32::try_from(plan.want_parts[leaf as usize]).unwrap_or(u32::MAX);
                }
            }
        }
        let engine = Engine::new(&tree, &plan, &held, Rng::new(seed));
        let last_moves = std::mem::take(&mut self.last_part_moves);
        let mut work = Work {
            rows: &mut rows,
            original: &old_rows,
            held: &mut held,
            last_moves: &last_moves,
            min_part_hours: self.min_part_hours,
            moved,
            engine,
            tiers: PartTiers::default(),
        };
        let placed = if placed_fresh {
            Ok(())
        } else {
            work.gather_for_dispersion(&mut report);
            let placed = work.place_unassigned(&mut report);
            if placed.is_ok() {
                work.balance(&mut report);
            }
            placed
        };
        let deficits: Vec<(u32, i64)> = tree
            .leaves()
            .map(|l| (tree.dev_id[l as usize], work.engine.val[l as usize]))
            .collect();
        drop(work);
        self.rows = rows;
        self.last_part_moves = last_moves;
        placed?;

        report.start("finishing", 1);
        // Partitions with any replica on another device than before moved
        // now (a replica moved away and back did not).
        for (r, row) in self.rows.iter().enumerate() {
            let before = old_rows.get(r).map_or(&[][..], Vec::as_slice);
            let common = row.len().min(before.len());
            for (p, (id, old)) in row.iter().zip(before).enumerate() {
                if id != old {
                    self.last_part_moves[p] = 0;
                }
            }
            // Slots the row did not have before are all new.
            let tail = common..row.len().min(self.last_part_moves.len());
            if let Some(moves) = self.last_part_moves.get_mut(tail) {
                moves.fill(0);
            }
        }
        for (b, &h) in self.devs.iter_mut().zip(&held) {
            if let Some(b) = b {
                b.parts = h;
                b.parts_wanted = -i64::from(h);
            }
        }
        for (id, deficit) in deficits {
            if let Some(Some(b)) = self.devs.get_mut(id as usize) {
                b.parts_wanted = deficit;
            }
        }
        let mut removed_devices = Vec::new();
        for slot in self.devs.iter_mut() {
            if slot.as_ref().is_some_and(|b| b.marked_for_removal) {
                if let Some(b) = slot.take() {
                    removed_devices.push(b.dev);
                }
            }
        }
        while matches!(self.devs.last(), Some(None)) {
            self.devs.pop();
        }
        let parts_moved = count_changes(&old_rows, &self.rows);
        self.dispersion = Some(self.compute_dispersion(&tree, &plan));
        self.devs_changed = false;
        self.version += 1;
        report.finish();
        Ok(RebalanceReport {
            parts_moved,
            balance: self.balance(),
            dispersion: self.dispersion(),
            removed_devices,
            devs_changed,
            version: self.version,
        })
    }

    /// Ages the per-partition move counters by the whole hours since the
    /// epoch and moves the epoch to `now`.
    fn age_part_moves(&mut self, now: u64) {
        let parts = self.parts() as usize;
        if self.last_part_moves.len() != parts {
            self.last_part_moves = vec![0xFF; parts];
        }
        let hours = now.saturating_sub(self.last_part_moves_epoch) / 3600;
        if hours == 0 {
            return;
        }
        let add = hours.min(255) as u8;
        for m in self.last_part_moves.iter_mut() {
            *m = m.saturating_add(add);
        }
        self.last_part_moves_epoch = now;
    }

    /// Brings the rows to `lengths`, dropping replicas beyond them and
    /// adding unassigned slots.
    fn resize_rows(&mut self, lengths: &[usize]) {
        let mut rows = std::mem::take(&mut self.rows);
        let mut drop_ids = |ids: &[u16]| {
            for &id in ids {
                if let Some(Some(b)) = self.devs.get_mut(usize::from(id)) {
                    b.parts = b.parts.saturating_sub(1);
                }
            }
        };
        while rows.len() > lengths.len() {
            if let Some(row) = rows.pop() {
                drop_ids(&row);
            }
        }
        for (r, &len) in lengths.iter().enumerate() {
            if r == rows.len() {
                rows.push(Vec::new());
            }
            let row = &mut rows[r];
            if row.len() > len {
                drop_ids(&row[len..]);
                row.truncate(len);
            } else {
                row.resize(len, NONE_DEV);
            }
        }
        self.rows = rows;
    }

    /// Swift's dispersion: for each partition, the replicas beyond what
    /// the topology requires at its worst tier level, over all replicas.
    pub(super) fn compute_dispersion(&self, tree: &Tree, plan: &Plan) -> f64 {
        let parts = self.parts() as usize;
        let total = parts as f64 * self.replicas;
        if total <= 0.0 {
            return 0.0;
        }
        if self.rows.len() > FEW_REPLICAS {
            return 100.0 * self.dispersion_by_tiers(tree, plan) / total;
        }
        let mut at_risk = 0.0f64;
        let mut paths = [[0u32; 4]; FEW_REPLICAS];
        for p in 0..parts {
            let mut n = 0;
            let mut off_tree = 0u32;
            for row in &self.rows {
                if let Some(&id) = row.get(p) {
                    match tree.node_of_dev.get(usize::from(id)) {
                        Some(&leaf) if leaf != NO_NODE => {
                            paths[n] = tree.path(leaf);
                            n += 1;
                        }
                        _ => off_tree += 1,
                    }
                }
            }
            let paths = &paths[..n];
            // Replicas in distinct regions are one per tier at every level,
            // and the topology allows every tier at least one.
            let distinct = (1..n).all(|i| paths[..i].iter().all(|q| q[0] != paths[i][0]));
            if distinct && off_tree == 0 {
                continue;
            }
            let mut by_level = [0.0f64; 5];
            by_level[1] = f64::from(off_tree);
            for level in 0..4 {
                for (i, path) in paths.iter().enumerate() {
                    let node = path[level];
                    // Each tier once, where it first appears.
                    if paths[..i].iter().any(|q| q[level] == node) {
                        continue;
                    }
                    let count = paths[i..].iter().filter(|q| q[level] == node).count();
                    let excess = count as f64 - plan.dispersion_max[node as usize];
                    if excess > 0.0 {
                        by_level[level + 1] += excess;
                    }
                }
            }
            at_risk += by_level.iter().copied().fold(0.0, f64::max);
        }
        100.0 * at_risk / total
    }

    /// The replicas at risk as in `compute_dispersion`, counted per tier
    /// (for many replicas, where comparing them pairwise would not pay).
    pub(super) fn dispersion_by_tiers(&self, tree: &Tree, plan: &Plan) -> f64 {
        let mut tiers = PartTiers::default();
        let mut at_risk = 0.0f64;
        for p in 0..self.parts() as usize {
            tiers.clear();
            let mut off_tree = 0u32;
            for row in &self.rows {
                if let Some(&id) = row.get(p) {
                    match tree.node_of_dev.get(usize::from(id)) {
                        Some(&leaf) if leaf != NO_NODE => tiers.add(tree, leaf),
                        _ => off_tree += 1,
                    }
                }
            }
            let mut by_level = [0.0f64; 5];
            by_level[1] = f64::from(off_tree);
            for (node, count) in tiers.iter() {
                let excess = f64::from(count) - plan.dispersion_max[node as usize];
                if excess > 0.0 {
                    by_level[tree.depth[node as usize] as usize] += excess;
                }
            }
            at_risk += by_level.iter().copied().fold(0.0, f64::max);
        }
        at_risk
    }
}

/// Places a ring with no replica assigned by the fresh placement; on
/// giving up, leaves the rows unassigned again and returns `false`.
fn place_fresh(
    tree: &Tree,
    plan: &Plan,
    rows: &mut [Vec<u16>],
    seed: u64,
    report: &mut Reporter,
) -> bool {
    let parts = rows.first().map_or(0, Vec::len);
    report.start("placing", parts as u64);
    let placed = fresh::place(tree, plan, rows, Rng::new(seed), &mut |done| {
        report.tick(done)
    });
    if placed.is_err() {
        fresh::clear(rows);
        return false;
    }
    report.finish();
    true
}

fn count_changes(old: &[Vec<u16>], new: &[Vec<u16>]) -> usize {
    new.iter()
        .enumerate()
        .map(|(r, row)| {
            let before = old.get(r).map_or(&[][..], Vec::as_slice);
            let same = row.iter().zip(before).filter(|(a, b)| a == b).count();
            row.len() - same
        })
        .sum()
}
