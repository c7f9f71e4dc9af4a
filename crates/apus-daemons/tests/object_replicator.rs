//! The object replicator against in-process object servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use apus_daemons::{run_once, ObjectReplicator, ObjectReplicatorSettings, PassStats, Shutdown};
use apus_diskfile::{DiskFileError, Metadata};
use common::{now, ts, Cluster};

async fn pass(c: &Cluster, dev: usize, settings: ObjectReplicatorSettings) -> PassStats {
    let r = ObjectReplicator::new(settings);
    let p = run_once(&r, &c.ctx(dev), Shutdown::never()).await;
    assert!(p.completed, "{p}");
    p
}

fn others(c: &Cluster, obj: &str, me: &str) -> Vec<String> {
    c.primaries(obj).into_iter().filter(|d| d != me).collect()
}

#[tokio::test]
async fn primary_pushes_missing_data_newer_tombstones_and_newer_metadata() {
    let c = Cluster::start(4, 4, None).await;
    let base = now() - 1000.0;
    let (t1, t2, t3) = (ts(base), ts(base + 1.0), ts(base + 2.0));

    // A missing object, with user metadata, lands on the other primaries.
    let obj = c.name_where("new", "d1", true);
    c.write(
        "d1",
        &obj,
        t1,
        b"hello world",
        &[("X-Object-Meta-Color", "blue")],
    );
    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("objects_pushed"), 2, "{p}");
    assert_eq!(p.count("failures"), 0, "{p}");
    assert!(p.count("bytes_sent") >= 22, "{p}");
    for dev in others(&c, &obj, "d1") {
        let open = c.open(&dev, &obj).unwrap();
        assert_eq!(open.data_timestamp(), t1);
        assert_eq!(open.metadata().get("X-Object-Meta-Color"), Some("blue"));
        assert_eq!(open.etag(), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));
        assert_eq!(open.content_length(), 11);
    }

    // A newer tombstone replaces their data.
    c.delete("d1", &obj, t2);
    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("tombstones_pushed"), 2, "{p}");
    assert_eq!(p.count("objects_pushed"), 0, "{p}");
    for dev in others(&c, &obj, "d1") {
        match c.open(&dev, &obj) {
            Err(DiskFileError::Deleted { timestamp, .. }) => assert_eq!(timestamp, t2),
            other => panic!("{dev}: {other:?}"),
        }
    }

    // Newer metadata with a newer content-type goes as a POST only.
    let obj2 = c.name_where("meta", "d1", true);
    for dev in c.primaries(&obj2) {
        c.write(&dev, &obj2, t1, b"data", &[("X-Object-Meta-Old", "1")]);
    }
    let mut md = Metadata::new();
    md.insert("X-Timestamp", t3.internal());
    md.insert("X-Object-Meta-New", "2");
    md.insert("Content-Type", "image/png");
    md.insert("Content-Type-Timestamp", t2.internal());
    c.post("d1", &obj2, md);
    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("metas_pushed"), 2, "{p}");
    assert_eq!(p.count("objects_pushed"), 0, "{p}");
    for dev in others(&c, &obj2, "d1") {
        let open = c.open(&dev, &obj2).unwrap();
        assert_eq!(open.data_timestamp(), t1);
        assert_eq!(open.timestamp(), t3);
        assert_eq!(open.content_type(), Some("image/png"));
        assert_eq!(open.content_type_timestamp(), t2);
        assert_eq!(open.metadata().get("X-Object-Meta-New"), Some("2"));
        assert_eq!(open.metadata().get("X-Object-Meta-Old"), None);
    }

    // Now everything matches: a pass sends only the hash requests.
    let p = pass(&c, 1, Default::default()).await;
    for key in [
        "objects_pushed",
        "tombstones_pushed",
        "metas_pushed",
        "bytes_sent",
        "suffixes_synced",
        "failures",
    ] {
        assert_eq!(p.count(key), 0, "{key}: {p}");
    }
    // One REPLICATE per other primary of each of d1's partitions.
    assert_eq!(p.count("requests"), 2 * p.count("partitions"), "{p}");
    assert!(p.count("partitions") >= 1, "{p}");
}

#[tokio::test]
async fn unchanged_objects_cost_no_per_object_traffic() {
    let c = Cluster::start(4, 4, None).await;
    let base = now() - 1000.0;
    // Identical copies on every primary, written independently.
    let mut parts = std::collections::HashSet::new();
    for i in 0..40 {
        let obj = format!("same{i}");
        if !c.primaries(&obj).iter().any(|d| d == "d1") {
            continue;
        }
        parts.insert(c.part(&obj));
        for dev in c.primaries(&obj) {
            c.write(&dev, &obj, ts(base + i as f64), b"same bytes", &[]);
        }
    }
    assert!(!parts.is_empty());
    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("objects_pushed"), 0, "{p}");
    assert_eq!(p.count("bytes_sent"), 0, "{p}");
    assert_eq!(p.count("suffixes_synced"), 0, "{p}");
    assert_eq!(p.count("partitions"), parts.len() as u64, "{p}");
    assert_eq!(p.count("requests"), 2 * parts.len() as u64, "{p}");
    assert!(p.count("suffixes_checked") > 0, "{p}");
}

#[tokio::test]
async fn handoff_partition_is_pushed_to_every_primary_then_removed() {
    let c = Cluster::start(4, 4, None).await;
    let obj = c.name_where("lost", "d1", false);
    let t1 = ts(now() - 100.0);
    c.write("d1", &obj, t1, b"handed off", &[]);
    let part_dir = c.part_dir("d1", c.part(&obj));
    assert!(part_dir.exists());
    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("objects_pushed"), 3, "{p}");
    assert_eq!(p.count("handoff_partitions_removed"), 1, "{p}");
    assert!(!part_dir.exists());
    for dev in c.primaries(&obj) {
        assert_eq!(c.open(&dev, &obj).unwrap().data_timestamp(), t1, "{dev}");
    }
}

#[tokio::test]
async fn handoff_partition_stays_while_a_primary_is_down() {
    let c = Cluster::start(4, 4, None).await;
    let obj = c.name_where("kept", "d1", false);
    c.write("d1", &obj, ts(now() - 100.0), b"x", &[]);
    let down = c.primaries(&obj)[0].clone();
    std::fs::rename(c.devices.join(&down), c.dir.path().join("away")).unwrap();
    let p = pass(&c, 1, Default::default()).await;
    assert!(p.count("failures") >= 1, "{p}");
    assert_eq!(p.count("handoff_partitions_removed"), 0, "{p}");
    assert!(c.hash_dir("d1", &obj).exists());
}

#[tokio::test]
async fn an_unmounted_primary_is_replaced_by_a_handoff() {
    let c = Cluster::start(4, 4, None).await;
    let obj = c.name_where("sub", "d1", true);
    c.write("d1", &obj, ts(now() - 100.0), b"x", &[]);
    let peers = others(&c, &obj, "d1");
    let down = peers[0].clone();
    std::fs::rename(c.devices.join(&down), c.dir.path().join("away")).unwrap();
    let stand_in = ["d1", "d2", "d3", "d4"]
        .into_iter()
        .find(|d| !c.primaries(&obj).iter().any(|p| p == d))
        .unwrap();
    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("failures"), 1, "{p}");
    assert_eq!(p.count("objects_pushed"), 2, "{p}");
    assert!(c.open(&peers[1], &obj).is_ok());
    assert!(
        c.open(stand_in, &obj).is_ok(),
        "handoff {stand_in} has no copy"
    );
}

#[tokio::test]
async fn tombstones_older_than_reclaim_age_are_reclaimed_not_pushed() {
    let c = Cluster::start(4, 4, None).await;
    let obj = c.name_where("old", "d1", true);
    c.delete("d1", &obj, ts(now() - 5000.0));
    let fresh = c.name_where("fresh", "d1", true);
    c.delete("d1", &fresh, ts(now() - 10.0));
    assert!(c.hash_dir("d1", &obj).exists());
    let settings = ObjectReplicatorSettings {
        reclaim_age: 1000.0,
        ..Default::default()
    };
    let p = pass(&c, 1, settings).await;
    assert!(!c.hash_dir("d1", &obj).exists());
    for dev in others(&c, &obj, "d1") {
        assert!(matches!(c.open(&dev, &obj), Err(DiskFileError::NotFound)));
    }
    // The fresh one is kept and pushed.
    assert!(c.hash_dir("d1", &fresh).exists());
    assert_eq!(p.count("tombstones_pushed"), 2, "{p}");
}

#[tokio::test]
async fn concurrency_and_rate_limits_still_sync_everything() {
    let c = Cluster::start(4, 4, None).await;
    let base = now() - 1000.0;
    let mut expected = 0;
    for i in 0..12 {
        let obj = format!("many{i}");
        if c.primaries(&obj).iter().any(|d| d == "d1") {
            expected += 2;
        } else {
            expected += 3;
        }
        c.write("d1", &obj, ts(base + i as f64), b"payload", &[]);
    }
    let settings = ObjectReplicatorSettings {
        concurrency: 4,
        objects_per_second: 1000.0,
        bytes_per_second: 1_000_000.0,
        handoffs_first: true,
        missing_check_batch: 1,
        ..Default::default()
    };
    let p = pass(&c, 1, settings).await;
    assert_eq!(p.count("objects_pushed"), expected, "{p}");
    assert_eq!(p.count("failures"), 0, "{p}");
    for i in 0..12 {
        let obj = format!("many{i}");
        for dev in c.primaries(&obj) {
            assert!(c.open(&dev, &obj).is_ok(), "{obj} on {dev}");
        }
    }
}

#[tokio::test]
async fn a_missing_object_gets_its_data_then_its_metadata_and_expired_ones_travel_too() {
    let c = Cluster::start(4, 4, None).await;
    let base = now() - 1000.0;
    let (t1, t2) = (ts(base), ts(base + 5.0));
    let obj = c.name_where("both", "d1", true);
    c.write("d1", &obj, t1, b"body", &[("X-Object-Meta-A", "1")]);
    let mut md = Metadata::new();
    md.insert("X-Timestamp", t2.internal());
    md.insert("X-Object-Meta-B", "2");
    c.post("d1", &obj, md);
    // Already expired, but replication must keep it until the expirer acts.
    let expired = c.name_where("expired", "d1", true);
    let past = format!("{}", (base - 10.0) as u64);
    c.write("d1", &expired, t1, b"old", &[("X-Delete-At", &past)]);

    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("failures"), 0, "{p}");
    assert_eq!(p.count("objects_pushed"), 4, "{p}");
    assert_eq!(p.count("metas_pushed"), 2, "{p}");
    for dev in others(&c, &obj, "d1") {
        let open = c.open(&dev, &obj).unwrap();
        assert_eq!(open.data_timestamp(), t1);
        assert_eq!(open.timestamp(), t2);
        assert_eq!(open.metadata().get("X-Object-Meta-B"), Some("2"));
        assert_eq!(open.datafile_metadata().get("X-Object-Meta-A"), Some("1"));
    }
    for dev in others(&c, &expired, "d1") {
        let open = c.open(&dev, &expired).unwrap();
        assert_eq!(open.metadata().get("X-Delete-At"), Some(past.as_str()));
    }
    // And the next pass finds nothing to do.
    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("bytes_sent"), 0, "{p}");
}

#[tokio::test]
async fn a_corrupt_local_copy_is_never_stored_by_a_peer() {
    use std::io::{Seek, SeekFrom, Write};
    let c = Cluster::start(4, 4, None).await;
    let obj = c.name_where("rot", "d1", true);
    c.write("d1", &obj, ts(now() - 100.0), &[b'z'; 300_000], &[]);
    let path = c.open("d1", &obj).unwrap().data_path().to_path_buf();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(299_000)).unwrap();
    f.write_all(b"y").unwrap();
    drop(f);
    let p = pass(&c, 1, Default::default()).await;
    assert_eq!(p.count("objects_pushed"), 0, "{p}");
    assert!(p.count("failures") >= 1, "{p}");
    for dev in others(&c, &obj, "d1") {
        assert!(c.open(&dev, &obj).is_err(), "{dev} stored a corrupt copy");
    }
    // Reading it found the damage and moved it aside.
    assert!(!c.hash_dir("d1", &obj).exists());
}

#[tokio::test]
async fn erasure_coded_policies_are_left_to_the_reconstructor() {
    let c = Cluster::start(4, 4, None).await;
    let obj = c.name_where("lost", "d1", false);
    c.write("d1", &obj, ts(now() - 100.0), b"handed off", &[]);
    let part_dir = c.part_dir("d1", c.part(&obj));
    // The same handoff as above, but its policy is erasure-coded: the
    // replicator neither pushes nor removes it.
    let mut ctx = c.ctx(1);
    ctx.ec_policies = vec![0];
    let p = run_once(
        &ObjectReplicator::new(Default::default()),
        &ctx,
        Shutdown::never(),
    )
    .await;
    assert!(p.completed, "{p}");
    assert_eq!(p.count("objects_pushed"), 0, "{p}");
    assert_eq!(p.count("handoff_partitions_removed"), 0, "{p}");
    assert!(part_dir.exists());
    for dev in others(&c, &obj, "d1") {
        assert!(c.open(&dev, &obj).is_err(), "{dev}");
    }
}
