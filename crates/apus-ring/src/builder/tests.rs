//! Unit tests of the builder: argument checking and small rebalances.

use super::*;

pub(super) fn dev(region: u32, zone: u32, ip: &str, name: &str, weight: f64) -> Device {
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

fn small_ring(zones: u32, per_zone: u32) -> RingBuilder {
    let mut b = RingBuilder::new(8, 3.0, 1).unwrap();
    for z in 0..zones {
        for d in 0..per_zone {
            b.add_dev(dev(1, z, &format!("10.0.{z}.{d}"), "sda", 100.0))
                .unwrap();
        }
    }
    b
}

#[test]
fn rejects_bad_part_power() {
    assert!(matches!(
        RingBuilder::new(0, 3.0, 1),
        Err(BuilderError::InvalidPartPower(0))
    ));
    assert!(matches!(
        RingBuilder::new(33, 3.0, 1),
        Err(BuilderError::InvalidPartPower(33))
    ));
    assert!(RingBuilder::new(1, 3.0, 1).is_ok());
    assert!(RingBuilder::new(32, 3.0, 1).is_ok());
}

#[test]
fn rejects_bad_replicas_and_hours() {
    assert!(matches!(
        RingBuilder::new(8, 0.5, 1),
        Err(BuilderError::InvalidReplicas(_))
    ));
    assert!(matches!(
        RingBuilder::new(8, f64::NAN, 1),
        Err(BuilderError::InvalidReplicas(_))
    ));
    assert!(matches!(
        RingBuilder::new(8, 3.0, 256),
        Err(BuilderError::InvalidMinPartHours(256))
    ));
    let mut b = RingBuilder::new(8, 3.0, 1).unwrap();
    assert!(b.set_replicas(0.0).is_err());
    assert!(b.set_min_part_hours(1000).is_err());
    assert!(b.set_overload(-0.1).is_err());
    assert!(b.set_overload(f64::INFINITY).is_err());
    b.set_overload(0.1).unwrap();
    assert_eq!(b.overload(), 0.1);
}

#[test]
fn replicas_above_devices_is_an_error() {
    let mut b = small_ring(2, 1);
    let err = b.rebalance(Some(1), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, BuilderError::NotEnoughDevices { devices: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("replica count of 3"), "{err}");
    assert!(!b.ever_rebalanced());
    // Zero-weight devices do not count.
    b.add_dev(dev(1, 9, "10.9.9.9", "sda", 0.0)).unwrap();
    assert!(matches!(
        b.rebalance(Some(1), &mut quiet()),
        Err(BuilderError::NotEnoughDevices { devices: 2, .. })
    ));
    let mut empty = RingBuilder::new(8, 3.0, 1).unwrap();
    assert!(matches!(
        empty.rebalance(None, &mut quiet()),
        Err(BuilderError::NoWeightedDevices)
    ));
}

#[test]
fn absurd_weights_are_an_error() {
    let mut b = RingBuilder::new(4, 1.0, 1).unwrap();
    b.add_dev(dev(1, 1, "10.0.0.1", "sda", f64::MAX)).unwrap();
    b.add_dev(dev(1, 2, "10.0.0.2", "sda", f64::MAX)).unwrap();
    let err = b.rebalance(Some(1), &mut quiet()).unwrap_err();
    assert!(matches!(err, BuilderError::Validation(_)), "{err}");
    assert!(!b.ever_rebalanced());
}

#[test]
fn device_errors() {
    let mut b = small_ring(3, 1);
    assert!(matches!(
        b.set_dev_weight(42, 1.0),
        Err(BuilderError::UnknownDevice(42))
    ));
    assert!(matches!(
        b.remove_dev(42),
        Err(BuilderError::UnknownDevice(42))
    ));
    assert!(matches!(
        b.set_dev_weight(0, -1.0),
        Err(BuilderError::InvalidWeight(_))
    ));
    assert!(matches!(
        b.set_dev_weight(0, f64::NAN),
        Err(BuilderError::InvalidWeight(_))
    ));
    assert!(matches!(
        b.add_dev(dev(1, 1, "10.1.1.1", "sdz", -5.0)),
        Err(BuilderError::InvalidWeight(_))
    ));
    let mut same_id = dev(1, 1, "10.1.1.1", "sdz", 1.0);
    same_id.id = 1;
    assert!(matches!(
        b.add_dev(same_id),
        Err(BuilderError::DuplicateDeviceId(1))
    ));
    let err = b.add_dev(dev(1, 7, "10.0.0.0", "sda", 1.0)).unwrap_err();
    assert!(
        matches!(err, BuilderError::DuplicateDevice { id: 0, .. }),
        "{err}"
    );
    let mut too_big = dev(1, 1, "10.1.1.1", "sdz", 1.0);
    too_big.id = 65535;
    assert!(matches!(
        b.add_dev(too_big),
        Err(BuilderError::InvalidDeviceId(65535))
    ));
    assert!(matches!(
        b.set_dev_info(0, |d| d.zone = 9),
        Err(BuilderError::ImmutableField("zone"))
    ));
    assert!(matches!(
        b.set_dev_info(0, |d| d.device = "sda".into()),
        Ok(())
    ));
    assert!(matches!(
        b.set_dev_info(0, |d| d.ip = "10.0.1.0".into()),
        Err(BuilderError::DuplicateDevice { id: 1, .. })
    ));
    b.remove_dev(2).unwrap();
    assert!(matches!(
        b.set_dev_weight(2, 1.0),
        Err(BuilderError::MarkedForRemoval(2))
    ));
    assert!(matches!(b.ring_data(), Err(BuilderError::NotRebalanced)));
    assert!(matches!(b.validate(), Err(BuilderError::NotRebalanced)));
}

#[test]
fn auto_ids_fill_holes() {
    let mut b = small_ring(4, 1);
    assert_eq!(b.devs().map(|d| d.id).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    b.rebalance(Some(3), &mut quiet()).unwrap();
    b.remove_dev(1).unwrap();
    b.pretend_min_part_hours_passed();
    let report = b.rebalance(Some(3), &mut quiet()).unwrap();
    assert_eq!(report.removed_devices.len(), 1);
    assert_eq!(b.add_dev(dev(1, 5, "10.5.5.5", "sda", 100.0)).unwrap(), 1);
    assert_eq!(b.add_dev(dev(1, 6, "10.6.6.6", "sda", 100.0)).unwrap(), 4);
    let mut explicit = dev(1, 7, "10.7.7.7", "sda", 100.0);
    explicit.id = 10;
    assert_eq!(b.add_dev(explicit).unwrap(), 10);
    assert_eq!(b.add_dev(dev(1, 8, "10.8.8.8", "sda", 100.0)).unwrap(), 5);
}

#[test]
fn first_rebalance_is_valid_and_balanced() {
    let mut b = small_ring(4, 3);
    let mut calls = 0;
    let report = b
        .rebalance(Some(7), &mut |_p: RebalanceProgress| calls += 1)
        .unwrap();
    assert!(calls > 0 && calls < 400, "{calls} progress calls");
    b.validate().unwrap();
    assert_eq!(report.parts_moved, 256 * 3);
    assert!(b.balance() < 1.0, "balance {}", b.balance());
    assert_eq!(b.dispersion(), 0.0);
    for p in 0..256 {
        let devs = b.part_devices(p);
        assert_eq!(devs.len(), 3);
        let mut zones: Vec<u32> = devs.iter().map(|&d| b.dev(d).unwrap().zone).collect();
        zones.sort_unstable();
        zones.dedup();
        assert_eq!(zones.len(), 3, "partition {p} on {devs:?}");
    }
    let ring = b.ring_data().unwrap();
    ring.validate().unwrap();
    assert_eq!(ring.version, Some(b.version()));
}

#[test]
fn zero_weight_drains_and_stays() {
    let mut b = small_ring(4, 2);
    b.rebalance(Some(1), &mut quiet()).unwrap();
    b.set_dev_weight(3, 0.0).unwrap();
    b.rebalance(Some(1), &mut quiet()).unwrap();
    assert_eq!(b.dev_parts(3), 0);
    assert!(b.dev(3).is_some());
    b.validate().unwrap();
}

#[test]
fn fractional_replicas() {
    let mut b = small_ring(4, 2);
    b.set_replicas(2.5).unwrap();
    b.rebalance(Some(1), &mut quiet()).unwrap();
    b.validate().unwrap();
    let ring = b.ring_data().unwrap();
    assert_eq!(ring.replica2part2dev.len(), 3);
    assert_eq!(ring.replica2part2dev[2].len(), 128);
    let total: u32 = b.builder_devs().map(|d| d.parts).sum();
    assert_eq!(total, 256 * 2 + 128);
    b.set_replicas(3.0).unwrap();
    assert!(b.devs_changed());
    b.pretend_min_part_hours_passed();
    let r = b.rebalance(Some(1), &mut quiet()).unwrap();
    assert!(r.parts_moved >= 128);
    b.validate().unwrap();
    assert!(b.balance() < 2.0, "{}", b.balance());
    b.set_replicas(2.0).unwrap();
    b.rebalance(Some(1), &mut quiet()).unwrap();
    b.validate().unwrap();
    assert_eq!(b.ring_data().unwrap().replica_count(), 2);
}

#[test]
fn round_trips_through_bytes() {
    let mut b = small_ring(3, 2);
    let mut bytes = Vec::new();
    b.write_to(&mut bytes).unwrap();
    assert_eq!(RingBuilder::read_from(&bytes[..]).unwrap(), b);
    b.rebalance(Some(5), &mut quiet()).unwrap();
    b.remove_dev(0).unwrap();
    bytes.clear();
    b.write_to(&mut bytes).unwrap();
    let back = RingBuilder::read_from(&bytes[..]).unwrap();
    assert_eq!(back, b);
    back.validate().unwrap();
}

#[test]
fn required_overload_of_lopsided_zones() {
    let mut b = RingBuilder::new(6, 2.0, 1).unwrap();
    for (i, zone) in [1, 1, 1, 2].into_iter().enumerate() {
        b.add_dev(dev(1, zone, &format!("10.0.0.{i}"), "sda", 1.0))
            .unwrap();
    }
    assert!((b.required_overload() - 1.0).abs() < 1e-9);
    b.rebalance(Some(1), &mut quiet()).unwrap();
    assert!(b.dispersion() > 0.0);
    b.set_overload(1.0).unwrap();
    b.pretend_min_part_hours_passed();
    b.rebalance(Some(1), &mut quiet()).unwrap();
    assert_eq!(b.dispersion(), 0.0);
}

/// The decompressed content of a builder file: magic, header JSON and the
/// binary tail.
fn unpack(b: &RingBuilder) -> (serde_json::Value, Vec<u8>) {
    use std::io::Read;
    let mut gz = Vec::new();
    b.write_to(&mut gz).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(&raw[..8], file::MAGIC);
    let len = u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize;
    let header = serde_json::from_slice(&raw[12..12 + len]).unwrap();
    (header, raw[12 + len..].to_vec())
}

fn pack(header: &serde_json::Value, tail: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let json = serde_json::to_vec(header).unwrap();
    let mut raw = file::MAGIC.to_vec();
    raw.extend_from_slice(&(json.len() as u32).to_be_bytes());
    raw.extend_from_slice(&json);
    raw.extend_from_slice(tail);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

fn load_err(bytes: &[u8]) -> String {
    match RingBuilder::read_from(bytes) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rejects_inconsistent_files() {
    let mut b = small_ring(3, 2);
    b.rebalance(Some(1), &mut quiet()).unwrap();
    let (header, tail) = unpack(&b);
    // Untouched, it loads.
    assert_eq!(
        RingBuilder::read_from(&pack(&header, &tail)[..]).unwrap(),
        b
    );

    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut h = header.clone();
        f(&mut h);
        load_err(&pack(&h, &tail))
    };
    assert!(edit(&|h| h["part_power"] = 0.into()).contains("part_power 0"));
    assert!(edit(&|h| h["part_power"] = 33.into()).contains("part_power 33"));
    assert!(edit(&|h| h["replicas"] = 0.5.into()).contains("replicas"));
    assert!(edit(&|h| h["min_part_hours"] = 300.into()).contains("min_part_hours"));
    assert!(edit(&|h| h["overload"] = (-1.0).into()).contains("overload"));
    assert!(edit(&|h| h["devs"][1]["id"] = 4.into()).contains("index 1 has id 4"));
    assert!(edit(&|h| h["devs"][1]["weight"] = (-3.0).into()).contains("weight"));
    assert!(edit(&|h| h["devs"][1]["ip"] = h["devs"][0]["ip"].clone()).contains("share"));
    assert!(edit(&|h| h["format"] = "swift".into()).contains("not supported"));
    assert!(edit(&|h| h["format_version"] = 2.into()).contains("not supported"));
    assert!(edit(&|h| h["replica_lengths"] = serde_json::json!([256, 256])).contains("data after"));
    assert!(
        edit(&|h| h["replica_lengths"] = serde_json::json!([256, 100, 256]))
            .contains("replica rows")
    );
    assert!(edit(&|h| h["last_part_moves_len"] = 0.into()).contains("move ages"));
    assert!(edit(&|h| h["devs"] = serde_json::json!([])).contains("does not exist"));
    // A device removed from the middle leaves its partitions dangling.
    assert!(edit(&|h| h["devs"][2] = serde_json::Value::Null).contains("device 2"));

    // Binary section: an assignment to an unknown device, extra bytes.
    let mut bad = tail.clone();
    bad[6] = 0x33;
    bad[7] = 0x00;
    assert!(load_err(&pack(&header, &bad)).contains("device 51"));
    let mut longer = tail.clone();
    longer.push(0);
    assert!(load_err(&pack(&header, &longer)).contains("data after"));
    assert!(load_err(&pack(&header, &tail[..tail.len() - 1])).contains("truncated"));
}

#[test]
fn huge_lengths_do_not_allocate() {
    let b = small_ring(3, 1);
    let (mut header, _) = unpack(&b);
    // 2^32 partitions claimed, no data: fails as truncated, quickly.
    header["part_power"] = 32.into();
    header["replica_lengths"] = serde_json::json!([1u64 << 32, 1u64 << 32, 1u64 << 32]);
    header["last_part_moves_len"] = (1u64 << 32).into();
    let err = load_err(&pack(&header, &[0, 0, 1, 0]));
    assert!(err.contains("truncated"), "{err}");
    // A header length field far beyond the data.
    use std::io::Write;
    let mut raw = file::MAGIC.to_vec();
    raw.extend_from_slice(&(200u32 << 20).to_be_bytes());
    raw.extend_from_slice(b"{}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let err = load_err(&gz.finish().unwrap());
    assert!(err.contains("truncated"), "{err}");
    // Not a builder file at all (a Swift pickle starts with 0x80).
    assert!(load_err(b"\x80\x02}q\x00").contains("builder file"));
}

#[test]
fn min_part_hours_blocks_then_time_frees() {
    let mut b = small_ring(4, 2);
    let t0 = 1_700_000_000;
    b.rebalance_at(Some(1), t0, &mut quiet()).unwrap();
    b.add_dev(dev(1, 9, "10.9.9.9", "sda", 100.0)).unwrap();
    // Every partition was placed just now: nothing may move yet.
    let r = b.rebalance_at(Some(1), t0 + 60, &mut quiet()).unwrap();
    assert_eq!(r.parts_moved, 0);
    assert_eq!(b.dev_parts(8), 0);
    // An hour later, they may.
    let r = b
        .rebalance_at(Some(1), t0 + 3600 + 60, &mut quiet())
        .unwrap();
    assert!(r.parts_moved > 0);
    assert!(b.dev_parts(8) > 0);
    assert!(b.last_part_moves().contains(&0));
    assert!(b.last_part_moves().iter().any(|&h| h >= 1));
}

#[test]
fn overload_trades_balance_for_dispersion() {
    // Three zones, one of them small: without overload the small zone
    // gets its weight's worth and some partitions have two replicas in a
    // big zone; with enough overload every partition spans three zones.
    let mut b = RingBuilder::new(8, 3.0, 0).unwrap();
    for (zone, n) in [(1, 4), (2, 4), (3, 1)] {
        for i in 0..n {
            b.add_dev(dev(1, zone, &format!("10.0.{zone}.{i}"), "sda", 100.0))
                .unwrap();
        }
    }
    b.rebalance(Some(4), &mut quiet()).unwrap();
    assert!(b.dispersion() > 0.0);
    assert!(b.balance() < 1.0);
    let needed = b.required_overload();
    assert!(needed > 1.0, "{needed}");
    b.set_overload(needed).unwrap();
    b.rebalance(Some(4), &mut quiet()).unwrap();
    assert_eq!(b.dispersion(), 0.0);
    assert!(b.dev_balance(8) > 100.0);
}

#[test]
fn zone_change_restores_dispersion() {
    // Four zones of one device, three replicas; then device 3 joins zone
    // 0: zone 0 weighs twice the others and may hold two replicas of some
    // partitions (weight wins without overload), but no device twice.
    let mut b = RingBuilder::new(8, 3.0, 1).unwrap();
    for zone in 0..4 {
        b.add_dev(dev(1, zone, &format!("10.0.0.{zone}"), "sda", 100.0))
            .unwrap();
    }
    b.rebalance(Some(2), &mut quiet()).unwrap();
    b.set_dev_zone(3, 0).unwrap();
    b.set_overload(10.0).unwrap();
    assert!(b.devs_changed());
    // Right away nothing may move: every partition was just placed.
    let r = b.rebalance(Some(2), &mut quiet()).unwrap();
    assert_eq!(r.parts_moved, 0);
    b.pretend_min_part_hours_passed();
    let r = b.rebalance(Some(2), &mut quiet()).unwrap();
    b.validate().unwrap();
    assert!(r.parts_moved > 0);
    // With enough overload, three zones for three replicas: one each.
    assert_eq!(b.dispersion(), 0.0);
    for p in 0..256 {
        let zones: Vec<u32> = b
            .part_devices(p)
            .iter()
            .map(|&d| b.dev(d).unwrap().zone)
            .collect();
        assert_eq!(zones.iter().filter(|&&z| z == 0).count(), 1, "{zones:?}");
    }
}

/// Runs the fresh placement alone on `b`'s devices, as a first rebalance
/// would, and checks that it places every replica within the plan's
/// bounds and gives every tier and device exactly what the plan wants.
fn check_fresh_placement(b: &RingBuilder, seed: u64) -> Result<(), fresh::GaveUp> {
    let weighted: Vec<&Device> = b.weighted_devs().collect();
    let parts = b.parts() as usize;
    let lengths = row_lengths(parts, b.replicas);
    let total: usize = lengths.iter().sum();
    let tree = plan::Tree::build(&weighted, b.devs.len());
    let plan = plan::Plan::compute(&tree, b.replicas, b.overload, total as u64, &[]).unwrap();
    let mut rows: Vec<Vec<u16>> = lengths.iter().map(|&n| vec![NONE_DEV; n]).collect();
    fresh::place(&tree, &plan, &mut rows, rng::Rng::new(seed), &mut |_| {})?;
    let mut count = vec![0i64; tree.len()];
    let mut here = vec![0u32; tree.len()];
    for p in 0..parts {
        here.fill(0);
        for row in rows.iter().filter(|row| row.len() > p) {
            let leaf = tree.node_of_dev.get(usize::from(row[p])).copied();
            let leaf = leaf.filter(|&l| l != plan::NO_NODE);
            let leaf = leaf.unwrap_or_else(|| panic!("partition {p} unassigned"));
            for n in tree.path(leaf) {
                here[n as usize] += 1;
                count[n as usize] += 1;
            }
        }
        let whole = rows.iter().all(|row| row.len() > p);
        for (n, &held) in here.iter().enumerate().skip(1) {
            assert!(held <= plan.max[n], "partition {p}: node {n} over its max");
            assert!(
                !whole || held >= plan.min[n],
                "partition {p}: node {n} under its min"
            );
        }
    }
    assert_eq!(count[1..], plan.want_parts[1..]);
    Ok(())
}

#[test]
fn fresh_placement_is_exact_and_within_bounds() {
    let mut rng = rng::Rng::new(42);
    let weights = [
        0.5, 1.0, 7.3, 50.0, 100.0, 100.0, 150.0, 200.0, 333.0, 1000.0,
    ];
    for case in 0..300 {
        let replicas = [1.0, 2.0, 2.5, 3.0, 3.0, 3.0, 4.0][rng.below(7) as usize];
        let mut b = RingBuilder::new(2 + rng.below(9) as u32, replicas, 1).unwrap();
        for r in 0..1 + rng.below(5) {
            for z in 0..1 + rng.below(4) {
                for h in 0..1 + rng.below(3) {
                    for d in 0..1 + rng.below(3) {
                        let w = weights[rng.below(weights.len() as u64) as usize];
                        let ip = format!("10.{r}.{z}.{h}");
                        b.add_dev(dev(r as u32, z as u32, &ip, &format!("sd{d}"), w))
                            .unwrap();
                    }
                }
            }
        }
        b.set_overload([0.0, 0.0, 0.01, 0.1, 1.0, 5.0][rng.below(6) as usize])
            .unwrap();
        if (b.weighted_devs().count() as f64) < replicas {
            continue;
        }
        assert!(
            check_fresh_placement(&b, case).is_ok(),
            "case {case} gave up"
        );
    }
}

#[test]
fn wide_tiers_are_placed_by_the_engine() {
    // One host of 70 devices holds every replica: it chooses by key among
    // more children than the fresh placement scans.
    let mut b = RingBuilder::new(12, 3.0, 1).unwrap();
    for d in 0..70 {
        b.add_dev(dev(1, 1, "10.0.0.1", &format!("sd{d}"), 100.0))
            .unwrap();
    }
    assert!(check_fresh_placement(&b, 1).is_err());
    let report = b.rebalance(Some(1), &mut quiet()).unwrap();
    b.validate().unwrap();
    assert_eq!(report.parts_moved, 4096 * 3);
    assert!(b.balance() < 1.0, "balance {}", b.balance());
}

#[test]
fn dispersion_pairwise_matches_tier_counts() {
    let mut rng = rng::Rng::new(5);
    for case in 0..40 {
        let replicas = [2.0, 3.0, 3.0, 4.0, 5.5][rng.below(5) as usize];
        let mut b = RingBuilder::new(7, replicas, 0).unwrap();
        for r in 0..1 + rng.below(2) {
            for z in 0..1 + rng.below(3) {
                for h in 0..1 + rng.below(3) {
                    for d in 0..2 {
                        let w = [50.0, 100.0, 400.0][rng.below(3) as usize];
                        let ip = format!("10.{r}.{z}.{h}");
                        b.add_dev(dev(r as u32, z as u32, &ip, &format!("sd{d}"), w))
                            .unwrap();
                    }
                }
            }
        }
        if (b.weighted_devs().count() as f64) < replicas {
            continue;
        }
        b.rebalance(Some(case), &mut quiet()).unwrap();
        // A device leaving the tree leaves replicas outside it.
        if case % 2 == 0 {
            b.set_dev_weight(0, 0.0).unwrap();
        }
        let weighted: Vec<&Device> = b.weighted_devs().collect();
        let tree = plan::Tree::build(&weighted, b.devs.len());
        let total = b.parts() as f64 * b.replicas;
        let Ok(plan) = plan::Plan::compute(&tree, b.replicas, 0.0, total as u64, &[]) else {
            continue;
        };
        let pairwise = b.compute_dispersion(&tree, &plan);
        let by_tiers = 100.0 * b.dispersion_by_tiers(&tree, &plan) / total;
        assert!(
            (pairwise - by_tiers).abs() < 1e-9,
            "case {case}: {pairwise} vs {by_tiers}"
        );
    }
}
