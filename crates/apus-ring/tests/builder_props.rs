//! Properties of the ring builder: placement, balance, movement,
//! min_part_hours, removal, persistence and determinism.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use apus_ring::builder::{BuilderError, RebalanceProgress, RingBuilder, AUTO_ID};
use apus_ring::Device;
use proptest::prelude::*;

fn dev(region: u32, zone: u32, ip: &str, name: &str, weight: f64) -> Device {
    Device {
        id: AUTO_ID,
        region,
        zone,
        ip: ip.to_string(),
        port: 6200,
        replication_ip: ip.to_string(),
        replication_port: 6200,
        device: name.to_string(),
        weight,
        meta: String::new(),
    }
}

fn quiet() -> impl FnMut(RebalanceProgress) {
    |_| {}
}

/// A cluster: regions of zones of hosts of device weights.
type Spec = Vec<Vec<Vec<Vec<f64>>>>;

fn spec_devices(spec: &Spec) -> Vec<Device> {
    let mut out = Vec::new();
    for (r, zones) in spec.iter().enumerate() {
        for (z, hosts) in zones.iter().enumerate() {
            for (h, weights) in hosts.iter().enumerate() {
                for (d, &w) in weights.iter().enumerate() {
                    let ip = format!("10.{r}.{z}.{h}");
                    out.push(dev(r as u32 + 1, z as u32 + 1, &ip, &format!("sd{d}"), w));
                }
            }
        }
    }
    out
}

fn build(spec: &Spec, part_power: u32, replicas: f64, min_part_hours: u32) -> RingBuilder {
    let mut b = RingBuilder::new(part_power, replicas, min_part_hours).unwrap();
    for d in spec_devices(spec) {
        b.add_dev(d).unwrap();
    }
    b
}

/// Clusters of 1-2 regions, 1-4 zones each, 1-3 hosts each, 1-3 devices
/// each, weights drawn from `weights`.
fn cluster(weights: &'static [f64]) -> impl Strategy<Value = Spec> {
    let device = proptest::sample::select(weights);
    let host = proptest::collection::vec(device, 1..=3);
    let zone = proptest::collection::vec(host, 1..=3);
    let region = proptest::collection::vec(zone, 1..=4);
    proptest::collection::vec(region, 1..=2)
}

/// Clusters of `regions` regions with 6-10 zones each (1-3 hosts of 1-3
/// devices).
fn wide_cluster(weights: &'static [f64], regions: usize) -> impl Strategy<Value = Spec> {
    let device = proptest::sample::select(weights);
    let host = proptest::collection::vec(device, 1..=3);
    let zone = proptest::collection::vec(host, 1..=3);
    let region = proptest::collection::vec(zone, 6..=10);
    proptest::collection::vec(region, regions..=regions)
}

fn device_count(spec: &Spec) -> usize {
    spec.iter().flatten().flatten().map(Vec::len).sum()
}

fn total_weight(spec: &Spec) -> f64 {
    spec.iter().flatten().flatten().flatten().sum()
}

fn max_weight(spec: &Spec) -> f64 {
    spec.iter()
        .flatten()
        .flatten()
        .flatten()
        .copied()
        .fold(0.0, f64::max)
}

fn assignment(b: &RingBuilder) -> Vec<Vec<u16>> {
    b.ring_data().unwrap().replica2part2dev
}

fn check_distinct(b: &RingBuilder, replicas: usize) -> Result<(), TestCaseError> {
    b.validate()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for p in 0..b.parts() as u32 {
        let devs = b.part_devices(p);
        prop_assert_eq!(devs.len(), replicas, "partition {} on {:?}", p, devs);
    }
    Ok(())
}

fn zones_distinct(b: &RingBuilder) -> Result<(), TestCaseError> {
    for p in 0..b.parts() as u32 {
        let devs = b.part_devices(p);
        let zones: BTreeSet<(u32, u32)> = devs
            .iter()
            .map(|&d| {
                let d = b.dev(d).unwrap();
                (d.region, d.zone)
            })
            .collect();
        prop_assert_eq!(
            zones.len(),
            devs.len(),
            "partition {} shares a zone: {:?}",
            p,
            devs
        );
    }
    Ok(())
}

/// (replica, partition) slots whose device differs.
fn changed_slots(a: &[Vec<u16>], b: &[Vec<u16>]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (r, row) in b.iter().enumerate() {
        for (p, id) in row.iter().enumerate() {
            if a.get(r).and_then(|old| old.get(p)) != Some(id) {
                out.push((r, p));
            }
        }
    }
    out
}

/// Builds `spec` at part power 12, rebalances, lets min_part_hours pass,
/// adds a device and rebalances once; returns (moved, ideal, balance).
/// Rejects clusters where some zone's share exceeds `max_zone_share`
/// replicas or a region's share crosses a whole number.
fn add_one_device(
    spec: &Spec,
    new_weight: f64,
    where_to: proptest::sample::Index,
    new_zone: bool,
    seed: u64,
    max_zone_share: f64,
) -> Result<(f64, f64, f64), TestCaseError> {
    let replicas = 3.0;
    let part_power = 12;
    let w = total_weight(spec);
    let zone_weights: Vec<f64> = spec
        .iter()
        .flatten()
        .map(|z| z.iter().flatten().sum::<f64>())
        .collect();
    let heaviest = zone_weights.iter().copied().fold(0.0, f64::max);
    prop_assume!(replicas * (heaviest + new_weight) / (w + new_weight) <= max_zone_share);
    prop_assume!(replicas * heaviest / w <= max_zone_share);
    let mut b = build(spec, part_power, replicas, 1);
    b.rebalance(Some(seed), &mut quiet()).unwrap();
    b.pretend_min_part_hours_passed();
    let before = assignment(&b);
    let zones: Vec<(u32, u32)> = b
        .devs()
        .map(|d| (d.region, d.zone))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (region, zone) = zones[where_to.index(zones.len())];
    let zone = if new_zone { 99 } else { zone };
    for (i, rw) in spec
        .iter()
        .map(|r| r.iter().flatten().flatten().sum::<f64>())
        .enumerate()
    {
        let share = replicas * rw / w;
        let grown = if i as u32 + 1 == region {
            rw + new_weight
        } else {
            rw
        };
        let new_share = replicas * grown / (w + new_weight);
        prop_assume!(share.floor() == new_share.floor() && share.ceil() == new_share.ceil());
    }
    b.add_dev(dev(region, zone, "192.168.0.1", "sdnew", new_weight))
        .unwrap();
    let report = b.rebalance(Some(seed ^ 1), &mut quiet()).unwrap();
    check_distinct(&b, 3)?;
    prop_assert_eq!(
        changed_slots(&before, &assignment(&b)).len(),
        report.parts_moved
    );
    let ideal = f64::from(1u32 << part_power) * replicas * new_weight / (w + new_weight);
    Ok((report.parts_moved as f64, ideal, report.balance))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// 1. Every partition gets `replicas` distinct devices, and too few
    ///    devices is an error.
    #[test]
    fn replicas_on_distinct_devices(
        spec in cluster(&[0.5, 1.0, 3.0, 100.0]),
        part_power in 6u32..=9,
        replicas in 1usize..=4,
        seed in any::<u64>(),
    ) {
        let mut b = build(&spec, part_power, replicas as f64, 1);
        let n = device_count(&spec);
        match b.rebalance(Some(seed), &mut quiet()) {
            Ok(_) => {
                prop_assert!(n >= replicas);
                check_distinct(&b, replicas)?;
            }
            Err(BuilderError::NotEnoughDevices { devices, .. }) => {
                prop_assert!(n < replicas);
                prop_assert_eq!(devices, n);
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        }
    }

    /// 2. With as many zones as replicas, no two replicas share a zone: in
    ///    one region with any weights once overload allows it, and in
    ///    symmetric clusters of equal weights without overload.
    #[test]
    fn replicas_in_distinct_zones(
        zones in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(
                proptest::sample::select(&[50.0, 100.0, 400.0][..]), 1..=3), 1..=3),
            3..=6),
        regions in 1usize..=2,
        part_power in 6u32..=9,
        seed in any::<u64>(),
    ) {
        let replicas = 3;
        let mut lopsided = build(&vec![zones.clone()], part_power, replicas as f64, 1);
        lopsided.set_overload(100.0).unwrap();
        lopsided.rebalance(Some(seed), &mut quiet()).unwrap();
        check_distinct(&lopsided, replicas)?;
        zones_distinct(&lopsided)?;
        prop_assert_eq!(lopsided.dispersion(), 0.0);

        let even_zone: Vec<Vec<f64>> = vec![vec![100.0; 2]; 2];
        let even: Spec = vec![vec![even_zone; zones.len().div_ceil(regions)]; regions];
        let mut b = build(&even, part_power, replicas as f64, 1);
        b.rebalance(Some(seed), &mut quiet()).unwrap();
        check_distinct(&b, replicas)?;
        zones_distinct(&b)?;
    }

    /// 3. Balance within 1% when every device gets at least ~128
    ///    partition-replicas and no device's share exceeds one replica.
    #[test]
    fn balanced_when_weights_allow(
        spec in cluster(&[100.0, 150.0, 200.0]),
        equal in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let spec: Spec = if equal {
            spec.iter().map(|r| r.iter().map(|z| z.iter().map(|h| vec![100.0; h.len()]).collect()).collect()).collect()
        } else {
            spec
        };
        let n = device_count(&spec);
        let replicas = 3.0;
        let part_power = 10;
        let slots = replicas * f64::from(1u32 << part_power);
        let w = total_weight(&spec);
        let min_weight = spec.iter().flatten().flatten().flatten().copied().fold(f64::MAX, f64::min);
        prop_assume!(n >= 3 && replicas * max_weight(&spec) / w <= 1.0);
        prop_assume!(slots * min_weight / w >= 100.0);
        let mut b = build(&spec, part_power, replicas, 1);
        b.rebalance(Some(seed), &mut quiet()).unwrap();
        check_distinct(&b, 3)?;
        prop_assert!(b.balance() < 1.0, "balance {} with {} devices", b.balance(), n);
    }

    /// 4. Adding a device of weight w to total weight W moves about
    ///    parts * replicas * w / (W + w) partition-replicas (within 5%), in
    ///    one rebalance, in "normal" clusters: one region, no zone weighing
    ///    enough to want more than 0.9 replicas of a partition. (Near a
    ///    whole replica, few partitions may gain a replica in the new
    ///    device's zone, and part of its share can only arrive through a
    ///    second move; when a tier's share crosses a whole number, the plan
    ///    changes how many replicas of a partition it may hold.)
    #[test]
    fn adding_a_device_moves_its_share(
        spec in wide_cluster(&[100.0, 200.0], 1),
        new_weight in proptest::sample::select(&[100.0, 150.0, 200.0][..]),
        where_to in any::<proptest::sample::Index>(),
        new_zone in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (moved, ideal, balance) = add_one_device(&spec, new_weight, where_to, new_zone, seed, 0.9)?;
        prop_assert!(
            (moved - ideal).abs() <= 0.05 * ideal,
            "moved {} for an ideal of {:.1} (balance {:.2})", moved, ideal, balance
        );
        prop_assert!(balance < 1.0, "balance {}", balance);
    }

    /// 4b. The same with two regions (no region's share crossing a whole
    ///     number): a partition can only leave a region where it has a
    ///     replica to spare, so some replicas take two moves; still within
    ///     10%, and balanced within 2%.
    #[test]
    fn adding_a_device_to_two_regions(
        spec in wide_cluster(&[100.0, 200.0], 2),
        new_weight in proptest::sample::select(&[100.0, 150.0, 200.0][..]),
        where_to in any::<proptest::sample::Index>(),
        new_zone in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (moved, ideal, balance) = add_one_device(&spec, new_weight, where_to, new_zone, seed, 0.9)?;
        prop_assert!(
            (moved - ideal).abs() <= 0.10 * ideal,
            "moved {} for an ideal of {:.1} (balance {:.2})", moved, ideal, balance
        );
        prop_assert!(balance < 2.0, "balance {}", balance);
    }

    /// 5. min_part_hours: a partition moved by one rebalance is not moved
    ///    by the next one within the hour (unless its device is removed),
    ///    and no rebalance moves two replicas of a partition.
    #[test]
    fn min_part_hours_holds(
        spec in cluster(&[100.0, 200.0]),
        part_power in 6u32..=9,
        change in 0u8..4,
        victim in any::<proptest::sample::Index>(),
        seed in any::<u64>(),
    ) {
        prop_assume!(device_count(&spec) >= 4);
        let mut b = build(&spec, part_power, 3.0, 1);
        b.rebalance(Some(seed), &mut quiet()).unwrap();
        b.pretend_min_part_hours_passed();
        // First change: a new device.
        let first = assignment(&b);
        b.add_dev(dev(1, 1, "192.168.0.1", "sdnew", 200.0)).unwrap();
        b.rebalance(Some(seed ^ 1), &mut quiet()).unwrap();
        let second = assignment(&b);
        let moved_first: BTreeSet<usize> = changed_slots(&first, &second).into_iter().map(|(_, p)| p).collect();
        let mut per_part: BTreeMap<usize, usize> = BTreeMap::new();
        for (_, p) in changed_slots(&first, &second) {
            *per_part.entry(p).or_default() += 1;
        }
        prop_assert!(per_part.values().all(|&n| n == 1), "a partition moved twice");

        // Second change, right away.
        let ids: Vec<u32> = b.devs().map(|d| d.id).collect();
        let victim = ids[victim.index(ids.len())];
        let mut removed = None;
        match change {
            0 => { b.add_dev(dev(2, 7, "192.168.0.2", "sdx", 300.0)).unwrap(); }
            1 => { b.set_dev_weight(victim, b.dev(victim).unwrap().weight * 2.0).unwrap(); }
            2 => { b.set_dev_weight(victim, 0.0).unwrap(); removed = Some(victim); }
            _ => { b.remove_dev(victim).unwrap(); removed = Some(victim); }
        }
        if b.devs().filter(|d| d.weight > 0.0).count() < 3 {
            return Ok(());
        }
        b.rebalance(Some(seed ^ 2), &mut quiet()).unwrap();
        let third = assignment(&b);
        check_distinct(&b, 3)?;
        let mut per_part: BTreeMap<usize, usize> = BTreeMap::new();
        for (r, p) in changed_slots(&second, &third) {
            let from = second[r][p] as u32;
            if Some(from) == removed {
                continue;
            }
            prop_assert!(!moved_first.contains(&p), "partition {} moved again within min_part_hours", p);
            *per_part.entry(p).or_default() += 1;
        }
        prop_assert!(per_part.values().all(|&n| n == 1), "a partition moved twice");
    }

    /// 6. A removed device ends up with no partitions and out of the ring;
    ///    a zero-weight device is drained but kept.
    #[test]
    fn removed_devices_leave(
        spec in cluster(&[100.0, 200.0]),
        part_power in 6u32..=9,
        victim in any::<proptest::sample::Index>(),
        drained in any::<proptest::sample::Index>(),
        seed in any::<u64>(),
    ) {
        prop_assume!(device_count(&spec) >= 5);
        let mut b = build(&spec, part_power, 3.0, 24);
        b.rebalance(Some(seed), &mut quiet()).unwrap();
        let ids: Vec<u32> = b.devs().map(|d| d.id).collect();
        let victim = ids[victim.index(ids.len())];
        let drained = ids[drained.index(ids.len())];
        b.remove_dev(victim).unwrap();
        prop_assert!(b.is_marked_for_removal(victim));
        if drained != victim {
            b.set_dev_weight(drained, 0.0).unwrap();
        }
        let report = b.rebalance(Some(seed), &mut quiet()).unwrap();
        check_distinct(&b, 3)?;
        prop_assert_eq!(report.removed_devices.len(), 1);
        prop_assert_eq!(report.removed_devices[0].id, victim);
        prop_assert!(b.dev(victim).is_none());
        prop_assert_eq!(b.dev_parts(victim), 0);
        let ring = b.ring_data().unwrap();
        prop_assert!(ring.devs.get(victim as usize).is_none_or(Option::is_none));
        prop_assert!(ring.replica2part2dev.iter().flatten().all(|&d| u32::from(d) != victim));
        if drained != victim {
            prop_assert!(b.dev(drained).is_some());
            prop_assert_eq!(b.dev_parts(drained), 0);
            prop_assert!(ring.replica2part2dev.iter().flatten().all(|&d| u32::from(d) != drained));
        }
    }

    /// 8. The same seed on the same builder gives the same ring.
    #[test]
    fn same_seed_same_ring(
        spec in cluster(&[1.0, 2.0, 3.0]),
        part_power in 6u32..=9,
        seed in any::<u64>(),
    ) {
        prop_assume!(device_count(&spec) >= 3);
        let mut a = build(&spec, part_power, 3.0, 1);
        let mut b = a.clone();
        a.rebalance(Some(seed), &mut quiet()).unwrap();
        b.rebalance(Some(seed), &mut quiet()).unwrap();
        prop_assert_eq!(assignment(&a), assignment(&b));
        a.add_dev(dev(1, 1, "192.168.0.1", "sdnew", 2.0)).unwrap();
        b.add_dev(dev(1, 1, "192.168.0.1", "sdnew", 2.0)).unwrap();
        a.pretend_min_part_hours_passed();
        b.pretend_min_part_hours_passed();
        a.rebalance(Some(seed), &mut quiet()).unwrap();
        b.rebalance(Some(seed), &mut quiet()).unwrap();
        prop_assert_eq!(assignment(&a), assignment(&b));
        prop_assert_eq!(a.last_part_moves(), b.last_part_moves());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// 7. Save and load give back the same builder; random byte flips give
    ///    an error or (for bytes outside the content, such as the gzip
    ///    header's timestamp) the same builder, never a panic or another
    ///    builder.
    #[test]
    fn save_load_round_trip(
        spec in cluster(&[1.0, 2.0]),
        part_power in 4u32..=7,
        rebalanced in any::<bool>(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..=255), 1..=3),
        seed in any::<u64>(),
    ) {
        prop_assume!(device_count(&spec) >= 3);
        let mut b = build(&spec, part_power, 3.0, 1);
        if rebalanced {
            b.rebalance(Some(seed), &mut quiet()).unwrap();
            b.remove_dev(0).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.builder");
        b.save(&path).unwrap();
        let back = RingBuilder::load(&path).unwrap();
        prop_assert_eq!(&back, &b);
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, xor) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if let Ok(other) = RingBuilder::read_from(&bytes[..]) {
            prop_assert_eq!(&other, &b);
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let spec: Spec = vec![vec![vec![vec![1.0, 1.0]]; 3]];
    let mut b = build(&spec, 5, 3.0, 1);
    b.rebalance(Some(1), &mut quiet()).unwrap();
    let mut bytes = Vec::new();
    b.write_to(&mut bytes).unwrap();
    assert_eq!(RingBuilder::read_from(&bytes[..]).unwrap(), b);
    for cut in 0..bytes.len() {
        assert!(
            RingBuilder::read_from(&bytes[..cut]).is_err(),
            "cut at {cut} of {} accepted",
            bytes.len()
        );
    }
    let err = RingBuilder::load(std::path::Path::new("/nonexistent/x.builder")).unwrap_err();
    assert!(matches!(err, BuilderError::Io(_)), "{err}");
}

#[test]
fn every_single_byte_flip_is_caught_or_harmless() {
    let spec: Spec = vec![vec![vec![vec![1.0, 2.0]]; 3]];
    let mut b = build(&spec, 4, 3.0, 1);
    b.rebalance(Some(1), &mut quiet()).unwrap();
    let mut bytes = Vec::new();
    b.write_to(&mut bytes).unwrap();
    for i in 0..bytes.len() {
        for xor in [0x01u8, 0x80, 0xFF] {
            let mut copy = bytes.clone();
            copy[i] ^= xor;
            if let Ok(other) = RingBuilder::read_from(&copy[..]) {
                assert_eq!(other, b, "flip {xor:#x} at {i} gave another builder");
            }
        }
    }
}

/// 4 regions x 5 zones, 50 hosts, 20 devices each (1000 devices).
fn big_cluster(part_power: u32, mixed: bool) -> RingBuilder {
    let mut b = RingBuilder::new(part_power, 3.0, 1).unwrap();
    for host in 0..50u32 {
        let region = host % 4;
        let zone = (host / 4) % 5;
        for d in 0..20u32 {
            let weight = if mixed {
                100.0 + f64::from((host * 7 + d * 13) % 5) * 50.0
            } else {
                100.0
            };
            b.add_dev(dev(
                region,
                zone,
                &format!("10.{region}.{zone}.{host}"),
                &format!("sd{d}"),
                weight,
            ))
            .unwrap();
        }
    }
    b
}

/// Two regions of unequal zones, one zone's share near a whole replica.
fn lopsided_cluster(part_power: u32) -> RingBuilder {
    let mut b = RingBuilder::new(part_power, 3.0, 1).unwrap();
    let zones: [(u32, u32, usize, f64); 7] = [
        (1, 1, 12, 100.0),
        (1, 2, 9, 200.0),
        (1, 3, 4, 150.0),
        (2, 1, 20, 200.0),
        (2, 2, 3, 100.0),
        (2, 3, 7, 300.0),
        (2, 4, 5, 100.0),
    ];
    for (region, zone, hosts, weight) in zones {
        for h in 0..hosts {
            for d in 0..12u32 {
                let ip = format!("10.{region}.{zone}.{h}");
                let w = weight + f64::from(d % 3) * 25.0;
                b.add_dev(dev(region, zone, &ip, &format!("sd{d}"), w))
                    .unwrap();
            }
        }
    }
    b
}

#[test]
fn timing_lopsided_ring() {
    let part_power = if cfg!(debug_assertions) { 12 } else { 18 };
    let mut b = lopsided_cluster(part_power);
    let t = Instant::now();
    let r = b.rebalance(Some(1), &mut quiet()).unwrap();
    let fresh = t.elapsed();
    b.validate().unwrap();
    b.pretend_min_part_hours_passed();
    for i in 0..10u32 {
        b.add_dev(dev(2, 1, &format!("10.9.9.{i}"), "sdx", 400.0))
            .unwrap();
    }
    let t = Instant::now();
    let r2 = b.rebalance(Some(2), &mut quiet()).unwrap();
    let again = t.elapsed();
    b.validate().unwrap();
    println!(
        "lopsided part_power {part_power}, {} devices: fresh {fresh:?} (balance {:.3}, dispersion {:.3}); \
         +10 devices {again:?} (moved {}, balance {:.3}, dispersion {:.3})",
        b.devs().count(), r.balance, r.dispersion, r2.parts_moved, r2.balance, r2.dispersion
    );
}

#[test]
fn timing_large_ring() {
    let part_power = if cfg!(debug_assertions) { 14 } else { 18 };
    for mixed in [false, true] {
        let mut b = big_cluster(part_power, mixed);
        let t = Instant::now();
        let r = b.rebalance(Some(1), &mut quiet()).unwrap();
        let fresh = t.elapsed();
        b.validate().unwrap();
        let balance1 = b.balance();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.builder");
        let t = Instant::now();
        b.save(&path).unwrap();
        let saved = t.elapsed();
        let t = Instant::now();
        assert_eq!(RingBuilder::load(&path).unwrap(), b);
        let loaded = t.elapsed();
        println!(
            "part_power {part_power}: save {saved:?}, load {loaded:?}, {} bytes",
            std::fs::metadata(&path).unwrap().len()
        );
        for i in 0..10u32 {
            b.add_dev(dev(i % 4, i % 5, &format!("10.9.9.{i}"), "sdx", 100.0))
                .unwrap();
        }
        b.pretend_min_part_hours_passed();
        let t = Instant::now();
        let r2 = b.rebalance(Some(2), &mut quiet()).unwrap();
        let again = t.elapsed();
        b.validate().unwrap();
        println!(
            "part_power {part_power} mixed={mixed}: fresh {fresh:?} (moved {}, balance {:.3}, dispersion {:.3}); \
             +10 devices {again:?} (moved {}, balance {:.3}, dispersion {:.3})",
            r.parts_moved, balance1, r.dispersion, r2.parts_moved, r2.balance, r2.dispersion
        );
    }
}
