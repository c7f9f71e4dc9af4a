//! The object auditor on a device with good and damaged objects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Seek, SeekFrom, Write};

use apus_daemons::{run_once, ObjectAuditor, ObjectAuditorSettings, Shutdown};
use common::{now, ts, Cluster};

fn unlimited() -> ObjectAuditorSettings {
    ObjectAuditorSettings {
        files_per_second: 0.0,
        bytes_per_second: 0.0,
        ..Default::default()
    }
}

#[tokio::test]
async fn quarantines_flipped_and_truncated_objects_and_keeps_good_ones() {
    let c = Cluster::start(4, 4, None).await;
    let t = ts(now() - 100.0);
    let body = vec![b'a'; 200_000];
    for name in ["good", "flipped", "truncated"] {
        c.write("d1", name, t, &body, &[]);
    }
    c.write("d1", "empty", t, b"", &[]);
    let data_path = |name: &str| c.open("d1", name).unwrap().data_path().to_path_buf();
    // Same size, one byte changed: only the MD5 can tell.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(data_path("flipped"))
        .unwrap();
    f.seek(SeekFrom::Start(123_456)).unwrap();
    f.write_all(b"b").unwrap();
    drop(f);
    // One byte short of its Content-Length.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(data_path("truncated"))
        .unwrap();
    f.set_len(199_999).unwrap();
    drop(f);

    let auditor = ObjectAuditor::new(unlimited());
    let p = run_once(&auditor, &c.ctx(1), Shutdown::never()).await;
    assert!(p.completed, "{p}");
    assert_eq!(p.count("objects_audited"), 4, "{p}");
    assert_eq!(p.count("quarantined"), 2, "{p}");
    assert_eq!(p.count("errors"), 0, "{p}");
    assert!(p.count("bytes_read") >= 200_000, "{p}");

    assert!(c.open("d1", "good").is_ok());
    assert!(c.open("d1", "empty").is_ok());
    for name in ["flipped", "truncated"] {
        assert!(!c.hash_dir("d1", name).exists(), "{name} still in place");
        let hash = c.hash.hash_path("a", Some("c"), Some(name));
        let q = c.devices.join("d1/quarantined/objects").join(&hash);
        assert!(q.is_dir(), "{name} not quarantined");
        // Its suffix is due for a rehash, so replication notices.
        let inv = std::fs::read_to_string(c.part_dir("d1", c.part(name)).join("hashes.invalid"))
            .unwrap_or_default();
        assert!(inv.lines().any(|l| l == &hash[29..]), "{name}: {inv:?}");
    }

    // A second pass finds only the good ones.
    let p = run_once(&auditor, &c.ctx(1), Shutdown::never()).await;
    assert_eq!(p.count("objects_audited"), 2, "{p}");
    assert_eq!(p.count("quarantined"), 0, "{p}");
}

#[tokio::test]
async fn unreadable_metadata_is_quarantined() {
    let c = Cluster::start(4, 4, None).await;
    c.write("d1", "meta", ts(now() - 100.0), b"abc", &[]);
    let path = c.open("d1", "meta").unwrap().data_path().to_path_buf();
    xattr_garbage(&path);
    let p = run_once(
        &ObjectAuditor::new(unlimited()),
        &c.ctx(1),
        Shutdown::never(),
    )
    .await;
    assert_eq!(p.count("quarantined"), 1, "{p}");
    assert!(!c.hash_dir("d1", "meta").exists());
}

fn xattr_garbage(path: &std::path::Path) {
    // Bytes that are no pickle, and no checksum to vouch for them.
    let _ = xattr::remove(path, "user.swift.metadata_checksum");
    xattr::set(path, "user.swift.metadata", b"\x80\x02not a pickle").unwrap();
}

#[tokio::test]
async fn old_tombstones_get_their_suffix_invalidated() {
    let c = Cluster::start(4, 4, None).await;
    c.delete("d1", "ancient", ts(now() - 5000.0));
    let part_dir = c.part_dir("d1", c.part("ancient"));
    // Consolidate the write's own invalidation first.
    apus_diskfile::get_hashes(&part_dir, &[], 1e9, 0).unwrap();
    let auditor = ObjectAuditor::new(ObjectAuditorSettings {
        reclaim_age: 1000.0,
        ..unlimited()
    });
    let p = run_once(&auditor, &c.ctx(1), Shutdown::never()).await;
    assert_eq!(p.count("objects_audited"), 1, "{p}");
    let hash = c.hash.hash_path("a", Some("c"), Some("ancient"));
    let inv = std::fs::read_to_string(part_dir.join("hashes.invalid")).unwrap();
    assert_eq!(inv.trim(), &hash[29..]);
}

#[tokio::test]
async fn files_per_second_paces_the_pass() {
    let c = Cluster::start(4, 4, None).await;
    let t = ts(now() - 100.0);
    for i in 0..30 {
        c.write("d1", &format!("o{i}"), t, b"x", &[]);
    }
    let auditor = ObjectAuditor::new(ObjectAuditorSettings {
        files_per_second: 20.0,
        bytes_per_second: 0.0,
        ..Default::default()
    });
    let start = std::time::Instant::now();
    let p = run_once(&auditor, &c.ctx(1), Shutdown::never()).await;
    assert_eq!(p.count("objects_audited"), 30, "{p}");
    // 30 files at 20/s with a one-second burst allowance: about half a second.
    assert!(start.elapsed().as_secs_f64() > 0.4, "{:?}", start.elapsed());
}

#[tokio::test]
async fn erasure_coded_policies_are_not_audited_as_replicas() {
    let c = Cluster::start(4, 4, None).await;
    c.write("d1", "meta", ts(now() - 100.0), b"abc", &[]);
    let path = c.open("d1", "meta").unwrap().data_path().to_path_buf();
    xattr_garbage(&path);
    // What the test above quarantines is left alone when its policy is
    // erasure-coded: a fragment archive is not a replica to check.
    let mut ctx = c.ctx(1);
    ctx.ec_policies = vec![0];
    let p = run_once(&ObjectAuditor::new(unlimited()), &ctx, Shutdown::never()).await;
    assert!(p.completed, "{p}");
    assert_eq!(p.count("quarantined"), 0, "{p}");
    assert!(c.hash_dir("d1", "meta").exists());
}
