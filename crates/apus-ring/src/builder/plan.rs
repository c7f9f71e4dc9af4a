//! The failure-domain tree of the weighted devices and the replica plan
//! computed over it.
//!
//! The tree has five levels: the root (the cluster), regions, zones, hosts
//! (a zone's devices sharing an IP) and devices. Nodes are numbered level by
//! level, and the children of a node are consecutive, so a child is
//! `first_child[parent] + position`.
//!
//! The plan assigns every node a *target*: how many replicas of each
//! partition it should hold on average, a real number. It is derived the
//! way `swift-ring-builder` does it:
//!
//! * *weighted*: each device's share of the replicas in proportion to its
//!   weight, no device holding more than one replica of a partition;
//! * *wanted*: the replicas spread as evenly as the topology allows
//!   ("as unique as possible"), each tier taking its weighted share only
//!   within the bounds that full dispersion leaves it;
//! * *target*: weighted moved towards wanted by the overload, as a fraction
//!   of the overload that full dispersion would require.
//!
//! From the target follow the per-partition bounds of a tier (`min` =
//! floor, `max` = ceil) and the integer number of partition-replicas each
//! tier and device should end up with.

use crate::device::Device;

pub(super) const NO_NODE: u32 = u32::MAX;
/// Depth of the device leaves (root 0, region 1, zone 2, host 3).
pub(super) const DEV_DEPTH: u8 = 4;
/// Slack for float comparisons in the plan.
const EPSILON: f64 = 1e-10;

pub(super) struct Tree {
    pub parent: Vec<u32>,
    pub first_child: Vec<u32>,
    pub n_children: Vec<u32>,
    pub depth: Vec<u8>,
    /// Device id of a leaf, `NO_NODE` for tiers.
    pub dev_id: Vec<u32>,
    /// A leaf's weight; a tier's sums its devices'.
    pub weight: Vec<f64>,
    /// Number of devices under the node (1 for a leaf).
    pub n_devices: Vec<u32>,
    /// Leaf of each device id, `NO_NODE` for devices outside the tree.
    pub node_of_dev: Vec<u32>,
    /// First node of each depth; `level_start[5]` is the node count.
    pub level_start: [u32; 6],
    /// Region, zone, host and device node of each leaf (by leaf index
    /// minus `level_start[4]`).
    pub paths: Vec<[u32; 4]>,
}

impl Tree {
    /// Builds the tree over `devs` (the devices with weight). `id_space` is
    /// one more than the largest device id in the builder.
    pub(super) fn build(devs: &[&Device], id_space: usize) -> Tree {
        let mut sorted: Vec<&Device> = devs.to_vec();
        sorted.sort_by(|a, b| {
            (a.region, a.zone, a.ip.as_str(), a.id).cmp(&(b.region, b.zone, b.ip.as_str(), b.id))
        });
        let mut tree = Tree {
            parent: vec![NO_NODE],
            first_child: vec![0],
            n_children: vec![0],
            depth: vec![0],
            dev_id: vec![NO_NODE],
            weight: vec![0.0],
            n_devices: vec![0],
            node_of_dev: vec![NO_NODE; id_space],
            level_start: [0; 6],
            paths: Vec::new(),
        };
        // Node of each (sorted) device at the level being built and above.
        let mut above = vec![0u32; sorted.len()];
        for depth in 1..=DEV_DEPTH {
            tree.level_start[depth as usize] = tree.parent.len() as u32;
            let mut current = vec![0u32; sorted.len()];
            for i in 0..sorted.len() {
                if i > 0 && same_tier(depth, sorted[i - 1], sorted[i]) {
                    current[i] = current[i - 1];
                    continue;
                }
                let parent = above[i];
                let node = tree.parent.len() as u32;
                tree.parent.push(parent);
                tree.first_child.push(0);
                tree.n_children.push(0);
                tree.depth.push(depth);
                tree.dev_id.push(NO_NODE);
                tree.weight.push(0.0);
                tree.n_devices.push(0);
                if tree.n_children[parent as usize] == 0 {
                    tree.first_child[parent as usize] = node;
                }
                tree.n_children[parent as usize] += 1;
                current[i] = node;
            }
            above = current;
        }
        tree.level_start[5] = tree.parent.len() as u32;
        for (i, dev) in sorted.iter().enumerate() {
            let leaf = above[i] as usize;
            tree.dev_id[leaf] = dev.id;
            tree.weight[leaf] = dev.weight;
            tree.n_devices[leaf] = 1;
            if let Some(slot) = tree.node_of_dev.get_mut(dev.id as usize) {
                *slot = leaf as u32;
            }
        }
        for leaf in tree.leaves() {
            let host = tree.parent[leaf as usize];
            let zone = tree.parent[host as usize];
            let region = tree.parent[zone as usize];
            tree.paths.push([region, zone, host, leaf]);
        }
        // Children come after their parents: sum bottom-up.
        for node in (1..tree.parent.len()).rev() {
            let parent = tree.parent[node] as usize;
            tree.weight[parent] += tree.weight[node];
            tree.n_devices[parent] += tree.n_devices[node];
        }
        tree
    }

    pub(super) fn len(&self) -> usize {
        self.parent.len()
    }

    pub(super) fn children(&self, node: u32) -> std::ops::Range<u32> {
        let first = self.first_child[node as usize];
        first..first + self.n_children[node as usize]
    }

    /// Nodes with children, in level order (root first).
    pub(super) fn internal_nodes(&self) -> std::ops::Range<u32> {
        0..self.level_start[DEV_DEPTH as usize]
    }

    pub(super) fn leaves(&self) -> std::ops::Range<u32> {
        self.level_start[DEV_DEPTH as usize]..self.level_start[5]
    }

    /// Region, zone, host and device node of leaf `leaf`.
    pub(super) fn path(&self, leaf: u32) -> [u32; 4] {
        self.paths[(leaf - self.level_start[DEV_DEPTH as usize]) as usize]
    }
}

fn same_tier(depth: u8, a: &Device, b: &Device) -> bool {
    match depth {
        1 => a.region == b.region,
        2 => a.region == b.region && a.zone == b.zone,
        3 => a.region == b.region && a.zone == b.zone && a.ip == b.ip,
        _ => false,
    }
}

pub(super) struct Plan {
    /// Replicas of a partition the node should hold on average.
    #[cfg_attr(not(test), allow(dead_code))]
    pub target: Vec<f64>,
    /// Fewest replicas of any partition the node should hold.
    pub min: Vec<u32>,
    /// Most replicas of any partition the node may hold.
    pub max: Vec<u32>,
    /// Partition-replicas the node should hold in all.
    pub want_parts: Vec<i64>,
    /// The most replicas of a partition a node may hold for the partition
    /// to count as fully dispersed (the topology alone decides).
    pub dispersion_max: Vec<f64>,
    pub required_overload: f64,
}

impl Plan {
    pub(super) fn compute(
        tree: &Tree,
        replicas: f64,
        overload: f64,
        total_slots: u64,
        held: &[u32],
    ) -> Result<Plan, String> {
        let weighted = weighted_replicas(tree, replicas);
        let wanted = wanted_replicas(tree, replicas, &weighted)?;
        let required_overload = required_overload(tree, &weighted, &wanted);
        let target = if required_overload <= 0.0 {
            wanted
        } else {
            let fraction = overload.min(required_overload) / required_overload;
            weighted
                .iter()
                .zip(&wanted)
                .map(|(&w, &x)| w + (x - w) * fraction)
                .collect()
        };
        let mut min = Vec::with_capacity(tree.len());
        let mut max = Vec::with_capacity(tree.len());
        for (node, &t) in target.iter().enumerate() {
            let t = t.max(0.0);
            min.push((t + EPSILON).floor() as u32);
            let mut m = (t - EPSILON).ceil().max(0.0) as u32;
            if tree.depth[node] == DEV_DEPTH {
                m = m.min(1);
            }
            max.push(m);
        }
        let mut held_by_node = vec![0u64; tree.len()];
        for leaf in tree.leaves() {
            let id = tree.dev_id[leaf as usize] as usize;
            held_by_node[leaf as usize] = u64::from(held.get(id).copied().unwrap_or(0));
        }
        for node in (1..tree.len()).rev() {
            held_by_node[tree.parent[node] as usize] += held_by_node[node];
        }
        let want_parts = distribute_parts(tree, &target, &held_by_node, total_slots);
        let dispersion_max = topology_bounds(tree, replicas, true);
        Ok(Plan {
            target,
            min,
            max,
            want_parts,
            dispersion_max,
            required_overload,
        })
    }
}

/// Each device's replicas by weight, capped at one, the excess of capped
/// devices spread over the others in proportion; tiers sum their devices.
fn weighted_replicas(tree: &Tree, replicas: f64) -> Vec<f64> {
    let mut share = vec![0.0f64; tree.len()];
    let total = tree.weight[0];
    if total <= 0.0 {
        return share;
    }
    let leaves = tree.leaves();
    for leaf in leaves.clone() {
        share[leaf as usize] = (replicas * tree.weight[leaf as usize] / total).min(1.0);
    }
    for _ in 0..=leaves.len() {
        let assigned: f64 = leaves.clone().map(|l| share[l as usize]).sum();
        let remaining = replicas - assigned;
        if remaining < EPSILON {
            break;
        }
        let room: f64 = leaves
            .clone()
            .map(|l| share[l as usize])
            .filter(|&s| s < 1.0)
            .sum();
        if room <= 0.0 {
            break;
        }
        let grow = remaining / room + 1.0;
        for leaf in leaves.clone() {
            let s = &mut share[leaf as usize];
            if *s < 1.0 {
                *s = (*s * grow).min(1.0);
            }
        }
    }
    for node in (1..tree.len()).rev() {
        if tree.depth[node] != DEV_DEPTH {
            continue;
        }
        let mut up = tree.parent[node];
        while up != NO_NODE {
            share[up as usize] += share[node];
            up = tree.parent[up as usize];
        }
    }
    share
}

/// Bounds from the topology alone: the root holds every replica, a child
/// its parent's bound divided by the number of siblings, a device at most
/// one. With `ceil`, the division rounds up (the dispersion yardstick).
fn topology_bounds(tree: &Tree, replicas: f64, ceil: bool) -> Vec<f64> {
    let mut bound = vec![0.0f64; tree.len()];
    bound[0] = replicas;
    for node in 1..tree.len() {
        let parent = tree.parent[node] as usize;
        let mut b = bound[parent] / f64::from(tree.n_children[parent]);
        if ceil {
            b = b.ceil();
        }
        if tree.depth[node] == DEV_DEPTH {
            b = b.min(1.0);
        }
        bound[node] = b;
    }
    bound
}

/// Replicas placed top-down: each tier spreads its replicas over its
/// children by weight, but no child gets fewer than the floor or more
/// than the ceiling of its even share (unless the children run out of
/// devices), nor more replicas than it has devices.
fn wanted_replicas(tree: &Tree, replicas: f64, weighted: &[f64]) -> Result<Vec<f64>, String> {
    let even = topology_bounds(tree, replicas, false);
    let mut wanted = vec![0.0f64; tree.len()];
    if replicas > f64::from(tree.n_devices[0]) {
        return Err(format!(
            "more replicas ({replicas}) than devices with weight ({})",
            tree.n_devices[0]
        ));
    }
    wanted[0] = replicas;
    let mut spread: Vec<u32> = Vec::new();
    for node in tree.internal_nodes() {
        let children = tree.children(node);
        let total = wanted[node as usize];
        let lo = |c: u32| even[c as usize].floor();
        let hi = |c: u32| even[c as usize].ceil();
        let devices = |c: u32| f64::from(tree.n_devices[c as usize]);
        for c in children.clone() {
            wanted[c as usize] = 0.0;
        }
        spread.clear();
        spread.extend(children.clone());
        let mut remaining = total;
        let mut device_limited = false;
        // Each round pins at least one child to a bound or settles; the
        // cap only guards against float pathologies.
        for _ in 0..(4 * children.len() + 16) {
            let weight: f64 = spread.iter().map(|&c| weighted[c as usize]).sum();
            if spread.is_empty() || weight <= 0.0 {
                break;
            }
            let scale = remaining / weight;
            for &c in &spread {
                let mut r = wanted[c as usize] + weighted[c as usize] * scale;
                if r < lo(c) {
                    r = lo(c);
                } else if r > hi(c) && !device_limited {
                    r = hi(c);
                }
                if r > devices(c) {
                    r = devices(c);
                }
                wanted[c as usize] = r;
            }
            let placed: f64 = children.clone().map(|c| wanted[c as usize]).sum();
            remaining = total - placed;
            spread.clear();
            if remaining < -EPSILON {
                spread.extend(children.clone().filter(|&c| wanted[c as usize] > lo(c)));
            } else if remaining > EPSILON {
                spread.extend(children.clone().filter(|&c| {
                    let w = wanted[c as usize];
                    devices(c) > w && w < hi(c)
                }));
                if spread.is_empty() {
                    device_limited = true;
                    spread.extend(
                        children
                            .clone()
                            .filter(|&c| wanted[c as usize] < devices(c)),
                    );
                }
            } else {
                break;
            }
        }
    }
    Ok(wanted)
}

/// The largest relative increase any device needs, from its weighted share
/// to its wanted share, for full dispersion.
fn required_overload(tree: &Tree, weighted: &[f64], wanted: &[f64]) -> f64 {
    tree.leaves()
        .map(|l| {
            let (w, x) = (weighted[l as usize], wanted[l as usize]);
            if w > 0.0 {
                (x - w) / w
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

/// Splits the partition-replicas over the tree top-down. Every node gets
/// the floor or the ceiling of its exact share (its target scaled to the
/// total), so no device or tier is off by a whole partition-replica and a
/// tier whose share is a whole number gets exactly that. Which siblings
/// round up is decided by what they hold now (`held`, by node): those
/// holding at least the ceiling first, so recomputing the plan after a
/// small change does not shuffle roundings around; then the largest
/// fractions.
fn distribute_parts(tree: &Tree, target: &[f64], held: &[u64], total: u64) -> Vec<i64> {
    const SNAP: f64 = 1e-6;
    let mut want = vec![0i64; tree.len()];
    want[0] = total as i64;
    let sum: f64 = tree.leaves().map(|l| target[l as usize].max(0.0)).sum();
    let scale = if sum > 0.0 { total as f64 / sum } else { 0.0 };
    let mut order: Vec<(bool, f64, u32)> = Vec::new();
    for node in tree.internal_nodes() {
        let budget = want[node as usize];
        let children = tree.children(node);
        let mut given = 0i64;
        order.clear();
        for c in children.clone() {
            let exact = target[c as usize].max(0.0) * scale;
            let mut lo = exact.floor();
            if exact - lo > 1.0 - SNAP {
                lo += 1.0;
            }
            let lo = lo as i64;
            want[c as usize] = lo;
            given += lo;
            let frac = exact - lo as f64;
            if frac > SNAP {
                let holds_more = held[c as usize] as i64 > lo;
                order.push((holds_more, frac, c));
            }
        }
        order.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut left = budget - given;
        for &(_, _, c) in &order {
            if left <= 0 {
                break;
            }
            want[c as usize] += 1;
            left -= 1;
        }
        // Only float trouble gets here: settle the difference anywhere.
        let n = i64::from(tree.n_children[node as usize].max(1));
        let first = tree.first_child[node as usize];
        let mut i = 0i64;
        while left != 0 && i < 4 * n + budget.abs() + 4 {
            let c = (first + (i % n) as u32) as usize;
            if left > 0 {
                want[c] += 1;
                left -= 1;
            } else if want[c] > 0 {
                want[c] -= 1;
                left += 1;
            }
            i += 1;
        }
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: u32, region: u32, zone: u32, ip: &str, weight: f64) -> Device {
        Device {
            id,
            region,
            zone,
            ip: ip.to_string(),
            port: 6200,
            replication_ip: ip.to_string(),
            replication_port: 6200,
            device: format!("d{id}"),
            weight,
            meta: String::new(),
        }
    }

    #[test]
    fn tree_groups_hosts_by_ip() {
        let devs = [
            dev(0, 1, 1, "10.0.0.1", 1.0),
            dev(1, 1, 1, "10.0.0.1", 1.0),
            dev(2, 1, 2, "10.0.0.2", 1.0),
            dev(3, 2, 1, "10.0.1.1", 2.0),
        ];
        let refs: Vec<&Device> = devs.iter().collect();
        let tree = Tree::build(&refs, 4);
        assert_eq!(tree.n_children[0], 2);
        assert_eq!(tree.level_start, [0, 1, 3, 6, 9, 13]);
        assert_eq!(tree.weight[0], 5.0);
        let leaf = tree.node_of_dev[1];
        let host = tree.parent[leaf as usize];
        assert_eq!(tree.n_children[host as usize], 2);
    }

    #[test]
    fn plan_of_unequal_regions() {
        // Region 1 weighs twice region 2: with three replicas and no
        // overload, two replicas go to region 1 and one to region 2.
        let devs = [
            dev(0, 1, 1, "10.0.0.1", 1.0),
            dev(1, 1, 2, "10.0.0.2", 1.0),
            dev(2, 1, 3, "10.0.0.3", 1.0),
            dev(3, 1, 4, "10.0.0.4", 1.0),
            dev(4, 2, 1, "10.0.1.1", 1.0),
            dev(5, 2, 2, "10.0.1.2", 1.0),
        ];
        let refs: Vec<&Device> = devs.iter().collect();
        let tree = Tree::build(&refs, 6);
        let plan = Plan::compute(&tree, 3.0, 0.0, 192, &[]).unwrap();
        let r1 = 1usize;
        assert!((plan.target[r1] - 2.0).abs() < 1e-9);
        assert_eq!((plan.min[r1], plan.max[r1]), (2, 2));
        assert_eq!(plan.want_parts[r1], 128);
        let total: i64 = tree.leaves().map(|l| plan.want_parts[l as usize]).sum();
        assert_eq!(total, 192);
    }

    #[test]
    fn overload_moves_targets_towards_dispersion() {
        // Two zones, 3:1 by weight, two replicas: weighted 1.5/0.5, fully
        // dispersed 1/1, which needs 100% overload on the small zone.
        let devs = [
            dev(0, 1, 1, "a", 1.0),
            dev(1, 1, 1, "b", 1.0),
            dev(2, 1, 1, "c", 1.0),
            dev(3, 1, 2, "d", 1.0),
        ];
        let refs: Vec<&Device> = devs.iter().collect();
        let tree = Tree::build(&refs, 4);
        let no = Plan::compute(&tree, 2.0, 0.0, 32, &[]).unwrap();
        assert!((no.required_overload - 1.0).abs() < 1e-9);
        let zone2 = 3usize;
        assert!((no.target[zone2] - 0.5).abs() < 1e-9);
        let half = Plan::compute(&tree, 2.0, 0.5, 32, &[]).unwrap();
        assert!((half.target[zone2] - 0.75).abs() < 1e-9);
        let full = Plan::compute(&tree, 2.0, 2.0, 32, &[]).unwrap();
        assert!((full.target[zone2] - 1.0).abs() < 1e-9);
        assert_eq!(full.min[zone2], 1);
    }
}
