//! Lookups: name → partition → primary devices, then handoffs.
//!
//! The handoff order reproduces Swift's `Ring.get_more_nodes` exactly, so a
//! proxy or replicator of apus and one of Swift agree on where a partition's
//! extra copies go: first devices in regions the primaries do not use, then
//! new zones, then new hosts (IP), then any remaining device, each pass
//! walking the partitions from a start derived from `md5(str(part))`.

use std::collections::HashSet;
use std::path::Path;

use apus_core::hash::{partition_of, HashConfig};
use md5::{Digest, Md5};

use crate::device::Device;
use crate::ringdata::{RingData, RingFileError};

/// A loaded ring, ready for lookups.
#[derive(Clone, Debug)]
pub struct Ring {
    data: RingData,
    /// Counts over devices that have at least one partition assigned: they
    /// let the handoff passes stop once every region/zone/host is used.
    num_regions: usize,
    num_zones: usize,
    num_hosts: usize,
    num_assigned_devs: usize,
}

impl Ring {
    pub fn new(data: RingData) -> Result<Self, RingFileError> {
        data.validate()?;
        if data.replica2part2dev.is_empty() || data.partition_count() == 0 {
            return Err(RingFileError::Invalid(
                "the ring has no partitions assigned".to_string(),
            ));
        }
        let mut assigned = vec![false; data.devs.len()];
        for table in &data.replica2part2dev {
            for &id in table {
                assigned[id as usize] = true;
            }
        }
        let mut regions = HashSet::new();
        let mut zones = HashSet::new();
        let mut hosts = HashSet::new();
        let mut num_assigned_devs = 0;
        for dev in data.devs.iter().flatten() {
            if assigned[dev.id as usize] {
                regions.insert(dev.region_key());
                zones.insert(dev.zone_key());
                hosts.insert(dev.host_key());
                num_assigned_devs += 1;
            }
        }
        Ok(Ring {
            num_regions: regions.len(),
            num_zones: zones.len(),
            num_hosts: hosts.len(),
            num_assigned_devs,
            data,
        })
    }

    pub fn load(path: &Path) -> Result<Self, RingFileError> {
        Ring::new(RingData::load(path)?)
    }

    pub fn data(&self) -> &RingData {
        &self.data
    }

    pub fn part_power(&self) -> u32 {
        self.data.part_power()
    }

    pub fn partition_count(&self) -> u32 {
        self.data.partition_count() as u32
    }

    pub fn replica_count(&self) -> usize {
        self.data.replica_count()
    }

    pub fn devs(&self) -> impl Iterator<Item = &Device> {
        self.data.devs.iter().flatten()
    }

    pub fn dev(&self, id: u32) -> Option<&Device> {
        self.data.devs.get(id as usize).and_then(Option::as_ref)
    }

    /// The partition of `/account[/container[/object]]`.
    pub fn partition(
        &self,
        hash: &HashConfig,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
    ) -> u32 {
        partition_of(
            &hash.hash_path_raw(account, container, object),
            self.data.part_shift,
        )
    }

    /// The partition's devices in replica order; a device holding two
    /// replicas of one partition is listed once.
    pub fn primaries(&self, part: u32) -> Vec<&Device> {
        let mut out: Vec<&Device> = Vec::with_capacity(self.data.replica2part2dev.len());
        for table in &self.data.replica2part2dev {
            if let Some(&id) = table.get(part as usize) {
                if !out.iter().any(|d| d.id == u32::from(id)) {
                    if let Some(dev) = self.dev(u32::from(id)) {
                        out.push(dev);
                    }
                }
            }
        }
        out
    }

    /// Handoff devices for a partition, in Swift's order. The iterator is
    /// finite: it ends after every assigned device has been offered once.
    pub fn handoffs(&self, part: u32) -> Handoffs<'_> {
        let primaries = self.primaries(part);
        let mut used = vec![false; self.data.devs.len()];
        let mut regions = HashSet::new();
        let mut zones = HashSet::new();
        let mut hosts = HashSet::new();
        for dev in &primaries {
            used[dev.id as usize] = true;
            regions.insert(dev.region_key());
            zones.insert(dev.zone_key());
            hosts.insert(dev.host_key());
        }
        let parts = self.data.partition_count();
        let digest = Md5::digest(part.to_string().as_bytes());
        let start = (u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
            .checked_shr(self.data.part_shift)
            .unwrap_or(0) as usize)
            .min(parts.saturating_sub(1));
        let inc = (parts / 65536).max(1);
        Handoffs {
            ring: self,
            walk: PartWalk::new(start, parts, inc),
            stage: Stage::Regions,
            pos: 0,
            replica: 0,
            used_count: primaries.len(),
            used,
            regions,
            zones,
            hosts,
        }
    }
}

/// The order in which Swift visits partitions when looking for handoffs:
/// `start, start+inc, ... < parts`, then `inc - (parts-start) % inc, ... < start`.
#[derive(Clone, Debug)]
struct PartWalk {
    start: usize,
    inc: usize,
    first_len: usize,
    second_from: usize,
    len: usize,
}

impl PartWalk {
    fn new(start: usize, parts: usize, inc: usize) -> Self {
        let first_len = (parts - start).div_ceil(inc);
        let second_from = inc - (parts - start) % inc;
        let second_len = if second_from < start {
            (start - second_from).div_ceil(inc)
        } else {
            0
        };
        PartWalk {
            start,
            inc,
            first_len,
            second_from,
            len: first_len + second_len,
        }
    }

    fn get(&self, pos: usize) -> Option<usize> {
        if pos < self.first_len {
            Some(self.start + pos * self.inc)
        } else if pos < self.len {
            Some(self.second_from + (pos - self.first_len) * self.inc)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Regions,
    Zones,
    Hosts,
    Devices,
    Done,
}

/// Iterator over handoff devices; see [`Ring::handoffs`].
pub struct Handoffs<'a> {
    ring: &'a Ring,
    walk: PartWalk,
    stage: Stage,
    pos: usize,
    replica: usize,
    used: Vec<bool>,
    used_count: usize,
    regions: HashSet<u32>,
    zones: HashSet<(u32, u32)>,
    hosts: HashSet<(u32, u32, &'a str)>,
}

impl<'a> Handoffs<'a> {
    fn stage_exhausted(&self) -> bool {
        match self.stage {
            Stage::Regions => self.regions.len() == self.ring.num_regions,
            Stage::Zones => self.zones.len() == self.ring.num_zones,
            Stage::Hosts => self.hosts.len() == self.ring.num_hosts,
            Stage::Devices => self.used_count == self.ring.num_assigned_devs,
            Stage::Done => true,
        }
    }

    fn next_stage(&mut self) {
        self.stage = match self.stage {
            Stage::Regions => Stage::Zones,
            Stage::Zones => Stage::Hosts,
            Stage::Hosts => Stage::Devices,
            Stage::Devices | Stage::Done => Stage::Done,
        };
        self.pos = 0;
        self.replica = 0;
    }

    /// Whether `dev` is a handoff candidate in the current stage.
    fn wanted(&self, dev: &Device) -> bool {
        if self.used[dev.id as usize] {
            return false;
        }
        match self.stage {
            Stage::Regions => !self.regions.contains(&dev.region_key()),
            Stage::Zones => !self.zones.contains(&dev.zone_key()),
            Stage::Hosts => !self.hosts.contains(&dev.host_key()),
            Stage::Devices => true,
            Stage::Done => false,
        }
    }

    fn take(&mut self, dev: &'a Device) {
        self.used[dev.id as usize] = true;
        self.used_count += 1;
        self.regions.insert(dev.region_key());
        self.zones.insert(dev.zone_key());
        self.hosts.insert(dev.host_key());
    }
}

impl<'a> Iterator for Handoffs<'a> {
    type Item = &'a Device;

    fn next(&mut self) -> Option<&'a Device> {
        let tables = &self.ring.data.replica2part2dev;
        loop {
            if self.stage == Stage::Done {
                return None;
            }
            // Swift checks "all used" before each partition of the walk and
            // right after each pick; checking before every step is the same.
            if self.stage_exhausted() {
                self.next_stage();
                continue;
            }
            let Some(handoff_part) = self.walk.get(self.pos) else {
                self.next_stage();
                continue;
            };
            while self.replica < tables.len() {
                let table = &tables[self.replica];
                self.replica += 1;
                let Some(&id) = table.get(handoff_part) else {
                    continue;
                };
                let Some(dev) = self.ring.dev(u32::from(id)) else {
                    continue;
                };
                if self.wanted(dev) {
                    self.take(dev);
                    return Some(dev);
                }
            }
            self.pos += 1;
            self.replica = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: u32, region: u32, zone: u32, ip: &str) -> Option<Device> {
        Some(Device {
            id,
            region,
            zone,
            ip: ip.to_string(),
            port: 6200,
            replication_ip: ip.to_string(),
            replication_port: 6200,
            device: format!("sd{id}"),
            weight: 1.0,
            meta: String::new(),
        })
    }

    /// 8 devices: 2 regions, 2 zones each, 2 hosts... enough for every stage.
    fn ring() -> Ring {
        let devs = vec![
            dev(0, 1, 1, "10.0.0.1"),
            dev(1, 1, 1, "10.0.0.2"),
            dev(2, 1, 2, "10.0.0.3"),
            dev(3, 1, 2, "10.0.0.3"),
            dev(4, 2, 1, "10.0.1.1"),
            dev(5, 2, 2, "10.0.1.2"),
            None,
            dev(7, 2, 2, "10.0.1.2"),
        ];
        let ids = [0u16, 1, 2, 3, 4, 5, 7];
        let parts = 64usize;
        let table = |shift: usize| {
            (0..parts)
                .map(|p| ids[(p * 3 + shift) % ids.len()])
                .collect()
        };
        Ring::new(RingData {
            devs,
            replica2part2dev: vec![table(0), table(2), table(4)],
            part_shift: 26,
            next_part_power: None,
            version: None,
        })
        .unwrap()
    }

    #[test]
    fn handoffs_cover_every_other_device_once() {
        let ring = ring();
        for part in 0..ring.partition_count() {
            let primaries: Vec<u32> = ring.primaries(part).iter().map(|d| d.id).collect();
            let handoffs: Vec<u32> = ring.handoffs(part).map(|d| d.id).collect();
            let mut all: Vec<u32> = primaries.iter().chain(&handoffs).copied().collect();
            all.sort();
            assert_eq!(all, vec![0, 1, 2, 3, 4, 5, 7], "part {part}");
        }
    }

    #[test]
    fn first_handoff_is_in_a_new_region_when_one_exists() {
        let ring = ring();
        for part in 0..ring.partition_count() {
            let regions: HashSet<u32> = ring.primaries(part).iter().map(|d| d.region).collect();
            if regions.len() < 2 {
                let first = ring.handoffs(part).next().unwrap();
                assert!(!regions.contains(&first.region), "part {part}");
            }
        }
    }

    #[test]
    fn walk_matches_python_ranges() {
        // chain(range(start, parts, inc), range(inc - ((parts - start) % inc), start, inc))
        for (start, parts, inc) in [
            (5usize, 16usize, 1usize),
            (8, 262144, 4),
            (3, 262144, 4),
            (0, 8, 1),
            (7, 8, 1),
            (1, 20, 3),
        ] {
            let mut expected: Vec<usize> = (start..parts).step_by(inc).collect();
            expected.extend((inc - (parts - start) % inc..start).step_by(inc));
            let walk = PartWalk::new(start, parts, inc);
            let got: Vec<usize> = (0..).map_while(|i| walk.get(i)).collect();
            assert_eq!(got, expected, "start {start} parts {parts} inc {inc}");
        }
    }
}
