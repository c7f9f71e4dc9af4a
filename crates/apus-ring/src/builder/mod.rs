//! The ring builder, with `swift-ring-builder`'s semantics.
//!
//! A [`RingBuilder`] holds the devices, the partition assignments and the
//! bookkeeping (`min_part_hours`, devices marked for removal) from which
//! [`RingBuilder::ring_data`] produces the ring that servers load.
//!
//! # Placement
//!
//! Devices form a tree of failure domains: region, zone, host (the IP
//! address, not address and port) and device. The `plan` module derives
//! from the weights and the topology how many replicas of a partition each
//! tier should hold on average (Swift's replica plan: weighted shares,
//! "as unique as possible" shares, and `overload` moving the former
//! towards the latter), hence the fewest and most replicas of any one
//! partition a tier may hold, and how many partition-replicas each device
//! should end up with. A rebalance then
//!
//! 1. unassigns every replica on a device marked for removal or with zero
//!    weight (always, whatever `min_part_hours` says);
//! 2. unassigns one replica of each movable partition that holds more
//!    replicas in some tier than the plan allows (dispersion);
//! 3. places every unassigned replica by walking down the tree: first to
//!    tiers short of their minimum for that partition, otherwise to the
//!    child needing the largest share of its spare capacity, never into a
//!    tier already holding its maximum;
//! 4. moves single replicas of movable partitions from devices holding too
//!    many to devices holding too few, whenever the move keeps the
//!    partition within the plan's bounds: first replicas placed earlier in
//!    this rebalance (moving them again costs nothing), then replicas in
//!    over-full regions, zones and hosts, since leaving a tier needs one
//!    of the few partitions with a replica to spare there, then any;
//! 5. where no single move fits, moves a replica to a device at its target
//!    that can pass another partition on (a chain of two moves), and
//!    undoes such moves that led nowhere.
//!
//! A partition is movable when it has not moved in the last
//! `min_part_hours` hours nor earlier in the same rebalance, so a rebalance
//! moves at most one replica of any partition, except replicas leaving
//! removed or zero-weight devices (a replica placed earlier in the same
//! rebalance may still be placed again: that changes no other replica).
//! Everything is driven by per-node counts and tournament trees (the
//! `engine` module), never by a scan of all devices per partition. When no
//! replica is assigned at all (a new ring), step 3 is all there is to do,
//! and the `fresh` module makes the same choices without the engine's
//! general bookkeeping; the engine places the ring when that cannot give
//! every device its exact share within the bounds (rare) or when a tier
//! choosing by key has more than 64 children. The same seed on the same
//! builder gives the same ring.
//!
//! # Differences from Swift
//!
//! * One rebalance reaches what Swift reaches in several: step 4 moves
//!   replicas straight to where they are wanted instead of gathering them
//!   and hoping, so balance is usually within one partition-replica per
//!   device and adding a device moves about its share.
//! * Zero-weight devices are drained completely in one rebalance, like
//!   removed ones (Swift drains them subject to `min_part_hours`).
//! * The whole numbers of partition-replicas per tier and device round
//!   each exact share down or up (Swift rounds down and hands out the rest
//!   in turn), preferring to round up what a device already holds.
//! * `add_dev` and `set_dev_info` refuse a second device with the same
//!   IP, port and name (Swift's command line does; its builder does not),
//!   and `set_dev_info` bumps the version (the ring changes).
//! * Dispersion counts every partition; with a fractional replica count
//!   Swift only looks at the partitions the last, partial replica covers.
//! * The builder file is apus's own format, not a Python pickle.
//!
//! # File format
//!
//! apus's own, versioned and documented in [`file`](mod@file): one gzip
//! stream holding the magic `APUSRBLD`, a length-prefixed JSON header
//! (`"format": "apus-ring-builder"`, `"format_version": 1`, the settings,
//! the devices by id, the row lengths) and then, in binary, the
//! assignment rows (little-endian u16 device ids) and one byte per
//! partition of move ages. Loading checks every field and length and
//! never panics or allocates ahead of the data.

mod engine;
pub mod file;
mod fresh;
mod plan;
mod rebalance;
mod rng;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::device::Device;
use crate::ringdata::{RingData, MAX_REPLICAS};

/// Device ids are stored as u16 in rings; 0xFFFF marks "unassigned".
pub const MAX_DEV_ID: u32 = 0xFFFE;
/// At most this many devices (ids `0..=MAX_DEV_ID`).
pub const MAX_DEVICES: usize = MAX_DEV_ID as usize + 1;
/// Part powers a builder accepts.
pub const MIN_PART_POWER: u32 = 1;
pub const MAX_PART_POWER: u32 = 32;
/// `min_part_hours` is counted in a saturating byte per partition.
pub const MAX_MIN_PART_HOURS: u32 = 255;
/// `add_dev` picks the lowest free id for a device with this id.
pub const AUTO_ID: u32 = u32::MAX;
/// Swift's stand-in for "infinitely unbalanced" (a device without weight
/// that still holds partitions).
pub const MAX_BALANCE: f64 = 999.99;

pub(crate) const NONE_DEV: u16 = u16::MAX;
/// Most assignment rows a builder can have (whole and fractional).
const MAX_REPLICAS_ROWS: usize = MAX_REPLICAS;

#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    #[error("part power must be between {MIN_PART_POWER} and {MAX_PART_POWER} (was {0})")]
    InvalidPartPower(u32),
    #[error("replicas must be a number from 1 to {MAX_REPLICAS} (was {0})")]
    InvalidReplicas(f64),
    #[error("min_part_hours must be between 0 and {MAX_MIN_PART_HOURS} (was {0})")]
    InvalidMinPartHours(u32),
    #[error("overload must be a non-negative number (was {0})")]
    InvalidOverload(f64),
    #[error("weight must be a non-negative number (was {0})")]
    InvalidWeight(f64),
    #[error("device id {0} is too large (the largest is {MAX_DEV_ID})")]
    InvalidDeviceId(u32),
    #[error("duplicate device id: {0}")]
    DuplicateDeviceId(u32),
    #[error("device {id} already uses {ip}:{port}/{device}")]
    DuplicateDevice {
        id: u32,
        ip: String,
        port: u16,
        device: String,
    },
    #[error("too many devices: a ring holds at most {MAX_DEVICES}")]
    TooManyDevices,
    #[error("no device with id {0}")]
    UnknownDevice(u32),
    #[error("device {0} is marked for removal")]
    MarkedForRemoval(u32),
    #[error("set_dev_info cannot change a device's {0}")]
    ImmutableField(&'static str),
    #[error("there are no devices with weight in this ring")]
    NoWeightedDevices,
    #[error("replica count of {replicas} requires at least that many devices with weight, but there are {devices}")]
    NotEnoughDevices { replicas: f64, devices: usize },
    #[error("the builder has never been rebalanced")]
    NotRebalanced,
    #[error("invalid ring: {0}")]
    Validation(String),
    #[error("cannot access builder file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a valid builder file: {0}")]
    Corrupt(String),
    #[error("builder file is truncated: {0}")]
    Truncated(String),
    #[error("builder file format {0} is not supported")]
    UnsupportedFormat(String),
}

/// A device as the builder keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct BuilderDevice {
    pub dev: Device,
    /// Partition-replicas assigned to the device.
    pub parts: u32,
    /// What the last rebalance's plan wanted beyond what it got (negative
    /// when the device holds more than its share).
    pub parts_wanted: i64,
    /// Removed at the next rebalance (weight already zero).
    pub marked_for_removal: bool,
}

/// Progress of a rebalance, reported a bounded number of times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RebalanceProgress {
    pub stage: &'static str,
    pub done: u64,
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RebalanceReport {
    /// Partition-replicas whose device changed (new replicas included).
    pub parts_moved: usize,
    /// [`RingBuilder::balance`] after the rebalance.
    pub balance: f64,
    /// [`RingBuilder::dispersion`] after the rebalance.
    pub dispersion: f64,
    /// Devices that were marked for removal and are now gone.
    pub removed_devices: Vec<Device>,
    /// Whether devices had changed since the previous rebalance.
    pub devs_changed: bool,
    /// The builder's version after the rebalance.
    pub version: u64,
}

#[derive(Clone, PartialEq)]
pub struct RingBuilder {
    part_power: u32,
    replicas: f64,
    min_part_hours: u32,
    overload: f64,
    version: u64,
    id: String,
    /// Indexed by device id; `None` for ids never used or removed.
    devs: Vec<Option<BuilderDevice>>,
    devs_changed: bool,
    /// `rows[r][p]`: device of replica `r` of partition `p`. Empty until
    /// the first rebalance; only the last row may be shorter.
    rows: Vec<Vec<u16>>,
    /// Hours since each partition last moved (saturating), as of
    /// `last_part_moves_epoch`. Empty until the first rebalance.
    last_part_moves: Vec<u8>,
    /// Unix time the hours in `last_part_moves` are counted from.
    last_part_moves_epoch: u64,
    /// Dispersion as of the last rebalance.
    dispersion: Option<f64>,
}

impl std::fmt::Debug for RingBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBuilder")
            .field("part_power", &self.part_power)
            .field("replicas", &self.replicas)
            .field("min_part_hours", &self.min_part_hours)
            .field("overload", &self.overload)
            .field("version", &self.version)
            .field("id", &self.id)
            .field("devices", &self.devs().count())
            .field("devs_changed", &self.devs_changed)
            .field("rebalanced", &self.ever_rebalanced())
            .field("last_part_moves_epoch", &self.last_part_moves_epoch)
            .field("dispersion", &self.dispersion)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn check_replicas(replicas: f64) -> Result<(), BuilderError> {
    if replicas.is_finite() && (1.0..=MAX_REPLICAS as f64).contains(&replicas) {
        Ok(())
    } else {
        Err(BuilderError::InvalidReplicas(replicas))
    }
}

/// Lengths of the assignment rows for `replicas` over `parts` partitions:
/// one full row per whole replica and, for a fractional replica count, a
/// last row covering that fraction of the partitions (if any).
pub(crate) fn row_lengths(parts: usize, replicas: f64) -> Vec<usize> {
    let whole = replicas.trunc() as usize;
    let mut lengths = vec![parts; whole];
    let tail = (parts as f64 * replicas.fract()) as usize;
    if tail > 0 {
        lengths.push(tail.min(parts));
    }
    lengths
}

fn check_weight(weight: f64) -> Result<(), BuilderError> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(())
    } else {
        Err(BuilderError::InvalidWeight(weight))
    }
}

impl RingBuilder {
    pub fn new(part_power: u32, replicas: f64, min_part_hours: u32) -> Result<Self, BuilderError> {
        if !(MIN_PART_POWER..=MAX_PART_POWER).contains(&part_power) {
            return Err(BuilderError::InvalidPartPower(part_power));
        }
        check_replicas(replicas)?;
        if min_part_hours > MAX_MIN_PART_HOURS {
            return Err(BuilderError::InvalidMinPartHours(min_part_hours));
        }
        Ok(RingBuilder {
            part_power,
            replicas,
            min_part_hours,
            overload: 0.0,
            version: 0,
            id: new_builder_id(),
            devs: Vec::new(),
            devs_changed: false,
            rows: Vec::new(),
            last_part_moves: Vec::new(),
            last_part_moves_epoch: 0,
            dispersion: None,
        })
    }

    pub fn part_power(&self) -> u32 {
        self.part_power
    }

    /// Number of partitions, `2^part_power`.
    pub fn parts(&self) -> u64 {
        1u64 << self.part_power
    }

    pub fn replicas(&self) -> f64 {
        self.replicas
    }

    pub fn min_part_hours(&self) -> u32 {
        self.min_part_hours
    }

    pub fn overload(&self) -> f64 {
        self.overload
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// A random identifier given at creation and kept in the file.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether devices were added, removed or changed since the last
    /// rebalance.
    pub fn devs_changed(&self) -> bool {
        self.devs_changed
    }

    pub fn ever_rebalanced(&self) -> bool {
        !self.rows.is_empty()
    }

    /// Live devices (including those marked for removal), by id.
    pub fn devs(&self) -> impl Iterator<Item = &Device> {
        self.devs.iter().flatten().map(|b| &b.dev)
    }

    /// Live devices with their builder bookkeeping, by id.
    pub fn builder_devs(&self) -> impl Iterator<Item = &BuilderDevice> {
        self.devs.iter().flatten()
    }

    pub fn dev(&self, id: u32) -> Option<&Device> {
        self.builder_dev(id).map(|b| &b.dev)
    }

    pub fn builder_dev(&self, id: u32) -> Option<&BuilderDevice> {
        self.devs.get(id as usize).and_then(Option::as_ref)
    }

    /// Partition-replicas assigned to device `id` (0 for unknown ids).
    pub fn dev_parts(&self, id: u32) -> u32 {
        self.builder_dev(id).map_or(0, |b| b.parts)
    }

    pub fn is_marked_for_removal(&self, id: u32) -> bool {
        self.builder_dev(id).is_some_and(|b| b.marked_for_removal)
    }

    fn dev_mut(&mut self, id: u32) -> Result<&mut BuilderDevice, BuilderError> {
        self.devs
            .get_mut(id as usize)
            .and_then(Option::as_mut)
            .ok_or(BuilderError::UnknownDevice(id))
    }

    fn changed(&mut self) {
        self.devs_changed = true;
        self.version += 1;
    }

    fn check_address_free(&self, except: Option<u32>, dev: &Device) -> Result<(), BuilderError> {
        for other in self.devs() {
            if Some(other.id) != except
                && other.ip == dev.ip
                && other.port == dev.port
                && other.device == dev.device
            {
                return Err(BuilderError::DuplicateDevice {
                    id: other.id,
                    ip: other.ip.clone(),
                    port: other.port,
                    device: other.device.clone(),
                });
            }
        }
        Ok(())
    }

    /// Adds a device and returns its id. With `dev.id == AUTO_ID` the
    /// lowest unused id is taken. An empty replication IP defaults to the
    /// IP. Rejects duplicate ids, a second device with the same IP, port
    /// and device name, bad weights and more than [`MAX_DEVICES`] devices.
    pub fn add_dev(&mut self, mut dev: Device) -> Result<u32, BuilderError> {
        check_weight(dev.weight)?;
        let id = if dev.id == AUTO_ID {
            match self.devs.iter().position(Option::is_none) {
                Some(hole) => hole as u32,
                None if self.devs.len() < MAX_DEVICES => self.devs.len() as u32,
                None => return Err(BuilderError::TooManyDevices),
            }
        } else {
            dev.id
        };
        if id > MAX_DEV_ID {
            return Err(BuilderError::InvalidDeviceId(id));
        }
        if self.dev(id).is_some() {
            return Err(BuilderError::DuplicateDeviceId(id));
        }
        self.check_address_free(None, &dev)?;
        dev.id = id;
        if dev.replication_ip.is_empty() {
            dev.replication_ip = dev.ip.clone();
        }
        if self.devs.len() <= id as usize {
            self.devs.resize(id as usize + 1, None);
        }
        self.devs[id as usize] = Some(BuilderDevice {
            dev,
            parts: 0,
            parts_wanted: 0,
            marked_for_removal: false,
        });
        self.changed();
        Ok(id)
    }

    fn live_dev_mut(&mut self, id: u32) -> Result<&mut BuilderDevice, BuilderError> {
        let b = self.dev_mut(id)?;
        if b.marked_for_removal {
            return Err(BuilderError::MarkedForRemoval(id));
        }
        Ok(b)
    }

    pub fn set_dev_weight(&mut self, id: u32, weight: f64) -> Result<(), BuilderError> {
        check_weight(weight)?;
        self.live_dev_mut(id)?.dev.weight = weight;
        self.changed();
        Ok(())
    }

    pub fn set_dev_region(&mut self, id: u32, region: u32) -> Result<(), BuilderError> {
        self.live_dev_mut(id)?.dev.region = region;
        self.changed();
        Ok(())
    }

    pub fn set_dev_zone(&mut self, id: u32, zone: u32) -> Result<(), BuilderError> {
        self.live_dev_mut(id)?.dev.zone = zone;
        self.changed();
        Ok(())
    }

    /// Changes a device's addresses, name or meta through `f`. Changing its
    /// id, region, zone or weight this way is an error (they have their own
    /// setters), as is taking another device's IP, port and name.
    pub fn set_dev_info(
        &mut self,
        id: u32,
        f: impl FnOnce(&mut Device),
    ) -> Result<(), BuilderError> {
        let mut dev = self.dev_mut(id)?.dev.clone();
        let before = dev.clone();
        f(&mut dev);
        if dev.id != before.id {
            return Err(BuilderError::ImmutableField("id"));
        }
        if dev.region != before.region {
            return Err(BuilderError::ImmutableField("region"));
        }
        if dev.zone != before.zone {
            return Err(BuilderError::ImmutableField("zone"));
        }
        if dev.weight.to_bits() != before.weight.to_bits() {
            return Err(BuilderError::ImmutableField("weight"));
        }
        self.check_address_free(Some(id), &dev)?;
        self.dev_mut(id)?.dev = dev;
        self.changed();
        Ok(())
    }

    /// Marks a device for removal: its weight becomes zero, the next
    /// rebalance moves all its partitions away and deletes it.
    pub fn remove_dev(&mut self, id: u32) -> Result<(), BuilderError> {
        let b = self.dev_mut(id)?;
        if b.marked_for_removal {
            return Ok(());
        }
        b.marked_for_removal = true;
        b.dev.weight = 0.0;
        self.changed();
        Ok(())
    }

    /// Sets the overload, a fraction (0.1 lets a device take 10% more than
    /// its weight asks for, to improve dispersion).
    pub fn set_overload(&mut self, overload: f64) -> Result<(), BuilderError> {
        if !overload.is_finite() || overload < 0.0 {
            return Err(BuilderError::InvalidOverload(overload));
        }
        self.overload = overload;
        Ok(())
    }

    pub fn set_min_part_hours(&mut self, hours: u32) -> Result<(), BuilderError> {
        if hours > MAX_MIN_PART_HOURS {
            return Err(BuilderError::InvalidMinPartHours(hours));
        }
        self.min_part_hours = hours;
        Ok(())
    }

    /// Changes the replica count; the next rebalance adds or drops
    /// replicas. Fractional counts are allowed (the last replica then
    /// covers only that fraction of the partitions).
    pub fn set_replicas(&mut self, replicas: f64) -> Result<(), BuilderError> {
        check_replicas(replicas)?;
        let parts = self.parts() as usize;
        let old: usize = row_lengths(parts, self.replicas).iter().sum();
        let new: usize = row_lengths(parts, replicas).iter().sum();
        if old != new {
            self.devs_changed = true;
        }
        self.replicas = replicas;
        Ok(())
    }

    /// Lets the next rebalance move any partition, as if `min_part_hours`
    /// had passed since every earlier move.
    pub fn pretend_min_part_hours_passed(&mut self) {
        self.last_part_moves_epoch = 0;
        self.last_part_moves.fill(0xFF);
    }

    /// Seconds until `min_part_hours` have passed since the last rebalance
    /// that moved partitions.
    pub fn min_part_seconds_left(&self) -> u64 {
        let elapsed = unix_now().saturating_sub(self.last_part_moves_epoch);
        (u64::from(self.min_part_hours) * 3600).saturating_sub(elapsed)
    }

    /// Rebalances the ring; see the module documentation. `seed` makes the
    /// result reproducible. Fails without changing anything when no device
    /// has weight or fewer devices have weight than there are replicas.
    pub fn rebalance(
        &mut self,
        seed: Option<u64>,
        progress: &mut dyn FnMut(RebalanceProgress),
    ) -> Result<RebalanceReport, BuilderError> {
        self.rebalance_at(seed, unix_now(), progress)
    }

    /// [`rebalance`](Self::rebalance) as if the clock read `now` (Unix
    /// seconds); for tests and tools that simulate time passing.
    pub fn rebalance_at(
        &mut self,
        seed: Option<u64>,
        now: u64,
        progress: &mut dyn FnMut(RebalanceProgress),
    ) -> Result<RebalanceReport, BuilderError> {
        let mut work = self.clone();
        let report = work.rebalance_impl(seed, now, progress)?;
        *self = work;
        Ok(report)
    }

    /// Checks the assignments: every partition has its replicas on
    /// distinct existing devices, the per-device counts add up, and only
    /// the last replica may cover fewer partitions.
    pub fn validate(&self) -> Result<(), BuilderError> {
        if self.rows.is_empty() {
            return Err(BuilderError::NotRebalanced);
        }
        let parts = self.parts() as usize;
        // Indexed by any u16, so checking a slot is one lookup.
        let mut is_dev = vec![false; 1 << 16];
        for b in self.builder_devs() {
            if let Some(slot) = is_dev.get_mut(b.dev.id as usize) {
                *slot = true;
            }
        }
        let mut counts = vec![0u64; 1 << 16];
        for (r, row) in self.rows.iter().enumerate() {
            if row.len() > parts || (row.len() < parts && r + 1 < self.rows.len()) {
                return Err(BuilderError::Validation(format!(
                    "replica {r} covers {} of {parts} partitions",
                    row.len()
                )));
            }
            for (p, &id) in row.iter().enumerate() {
                if !is_dev[usize::from(id)] {
                    return Err(BuilderError::Validation(format!(
                        "partition {p} replica {r} is not assigned to a device"
                    )));
                }
                counts[usize::from(id)] += 1;
            }
        }
        for b in self.builder_devs() {
            let held = counts.get(b.dev.id as usize).copied().unwrap_or(0);
            if u64::from(b.parts) != held {
                return Err(BuilderError::Validation(format!(
                    "device {} counts {} partition-replicas but holds {held}",
                    b.dev.id, b.parts
                )));
            }
        }
        // The first partition with two replicas on one device: comparing
        // rows pairwise runs through memory in order, which pays for the
        // few replicas rings have.
        let first_double = if self.rows.len() <= 16 {
            let mut first: Option<usize> = None;
            for (i, row) in self.rows.iter().enumerate() {
                for other in &self.rows[..i] {
                    let limit = first.unwrap_or(usize::MAX);
                    let found = row.iter().zip(other).take(limit).position(|(a, b)| a == b);
                    first = found.or(first);
                }
            }
            first.map_or(0..0, |p| p..p + 1)
        } else {
            0..parts
        };
        let mut ids: Vec<u16> = Vec::with_capacity(self.rows.len());
        for p in first_double {
            ids.clear();
            ids.extend(self.rows.iter().filter_map(|row| row.get(p).copied()));
            for (i, id) in ids.iter().enumerate() {
                if ids[..i].contains(id) {
                    return Err(BuilderError::Validation(format!(
                        "partition {p} has two replicas on device {id}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// `parts * replicas / total weight`, or `None` without weight.
    pub fn weight_of_one_part(&self) -> Option<f64> {
        let weight: f64 = self.devs().map(|d| d.weight).sum();
        (weight > 0.0).then(|| self.parts() as f64 * self.replicas / weight)
    }

    fn balance_of(&self, b: &BuilderDevice, per_weight: f64) -> f64 {
        if b.dev.weight == 0.0 {
            if b.parts > 0 {
                MAX_BALANCE
            } else {
                0.0
            }
        } else {
            100.0 * f64::from(b.parts) / (b.dev.weight * per_weight) - 100.0
        }
    }

    /// How far device `id` is from its share by weight, in percent
    /// (positive: more than its share); [`MAX_BALANCE`] for a device
    /// without weight that still holds partitions.
    pub fn dev_balance(&self, id: u32) -> f64 {
        match (self.builder_dev(id), self.weight_of_one_part()) {
            (Some(b), Some(w)) => self.balance_of(b, w),
            _ => 0.0,
        }
    }

    /// The largest [`dev_balance`](Self::dev_balance) in absolute value (0
    /// for a ring without weight).
    pub fn balance(&self) -> f64 {
        let Some(w) = self.weight_of_one_part() else {
            return 0.0;
        };
        self.builder_devs()
            .map(|b| self.balance_of(b, w).abs())
            .fold(0.0, f64::max)
    }

    /// Percentage of partition-replicas placed in a tier that already holds
    /// more replicas of the partition than the topology requires, counting
    /// each partition at its worst tier level; as of the last rebalance.
    pub fn dispersion(&self) -> f64 {
        self.dispersion.unwrap_or(0.0)
    }

    /// The overload that would let every partition be fully dispersed
    /// (0 when no device has weight).
    pub fn required_overload(&self) -> f64 {
        let weighted: Vec<&Device> = self.weighted_devs().collect();
        if weighted.is_empty() {
            return 0.0;
        }
        let tree = plan::Tree::build(&weighted, self.devs.len());
        let parts = self.parts();
        plan::Plan::compute(&tree, self.replicas, self.overload, parts, &[])
            .map_or(0.0, |p| p.required_overload)
    }

    fn weighted_devs(&self) -> impl Iterator<Item = &Device> {
        self.builder_devs()
            .filter(|b| b.dev.weight > 0.0 && !b.marked_for_removal)
            .map(|b| &b.dev)
    }

    /// The ring: devices indexed by id (holes for missing ids) and the
    /// assignments.
    pub fn ring_data(&self) -> Result<RingData, BuilderError> {
        if self.rows.is_empty() {
            return Err(BuilderError::NotRebalanced);
        }
        Ok(RingData {
            devs: self
                .devs
                .iter()
                .map(|b| b.as_ref().map(|b| b.dev.clone()))
                .collect(),
            replica2part2dev: self.rows.clone(),
            part_shift: 32 - self.part_power,
            next_part_power: None,
            version: Some(self.version),
        })
    }

    /// Distinct devices holding `part`, in replica order.
    pub fn part_devices(&self, part: u32) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            if let Some(&id) = row.get(part as usize) {
                let id = u32::from(id);
                if id != u32::from(NONE_DEV) && !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Hours since each partition last moved, as of the last rebalance
    /// (empty before the first).
    pub fn last_part_moves(&self) -> &[u8] {
        &self.last_part_moves
    }

    /// Writes the builder file atomically.
    pub fn save(&self, path: &Path) -> Result<(), BuilderError> {
        crate::atomic_write(path, |w| self.write_to(w))
    }

    pub fn load(path: &Path) -> Result<Self, BuilderError> {
        let file = std::fs::File::open(path)?;
        Self::read_from(std::io::BufReader::new(file))
    }
}

fn new_builder_id() -> String {
    let mut rng = rng::Rng::new(rng::Rng::entropy_seed());
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}
