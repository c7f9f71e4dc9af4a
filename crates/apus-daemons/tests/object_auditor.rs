//! The object auditor on a device with good and damaged objects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use apus_core::Timestamp;
use apus_daemons::{run_once, DaemonContext, ObjectAuditor, ObjectAuditorSettings, Shutdown};
use apus_diskfile::{EcPolicy, FragSelect, Metadata};
use apus_ec::{EcScheme, EcType};
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

// Erasure-coded policy 0: the cluster's only ring, its partitions then
// hold fragment archives.

const SEGMENT: usize = 4096;

fn ec_ctx(c: &Cluster) -> DaemonContext {
    let mut ctx = c.ctx(1);
    ctx.ec_policies = vec![0];
    ctx
}

fn scheme() -> EcScheme {
    EcScheme::new(EcType::IsaLRsVand, 4, 2).unwrap()
}

/// The six archives of a 10,000-byte object: three fragments each.
fn archives() -> Vec<Vec<u8>> {
    let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    scheme().encode_archives(&body, SEGMENT).unwrap()
}

/// Where the second fragment of each archive of [`archives`] starts.
fn second_fragment() -> usize {
    scheme().fragment_size(SEGMENT as u64) as usize
}

/// Stores `bytes` as fragment archive `index` of `a/c/<obj>` on `dev`,
/// with the metadata an object server writes (and `extra` over it); the
/// ETag is the bytes' own, so only the fragment checks can fault them.
#[allow(clippy::too_many_arguments)]
fn put_archive(
    c: &Cluster,
    dev: &str,
    obj: &str,
    t: Timestamp,
    index: u32,
    bytes: &[u8],
    durable: bool,
    extra: &[(&str, &str)],
) -> PathBuf {
    let df = c
        .mgr()
        .ec_diskfile(
            dev,
            c.part(obj),
            "a",
            "c",
            obj,
            &EcPolicy::new(0, 4, 2),
            FragSelect::index(index),
        )
        .unwrap();
    let mut w = df.create(Some(bytes.len() as u64)).unwrap();
    w.write(bytes).unwrap();
    let mut md = Metadata::new();
    md.insert("X-Timestamp", t.internal());
    md.insert("Content-Type", "text/plain");
    md.insert("Content-Length", bytes.len().to_string());
    md.insert("ETag", w.etag());
    md.insert("X-Object-Sysmeta-Ec-Frag-Index", index.to_string());
    md.insert(
        "X-Object-Sysmeta-Ec-Etag",
        "0123456789abcdef0123456789abcdef",
    );
    md.insert("X-Object-Sysmeta-Ec-Content-Length", "10000");
    for (k, v) in extra {
        md.insert(*k, *v);
    }
    let put = w.put(md).unwrap();
    if durable {
        put.commit().unwrap()
    } else {
        put.path().to_path_buf()
    }
}

fn quarantined(c: &Cluster, obj: &str) -> PathBuf {
    let hash = c.hash.hash_path("a", Some("c"), Some(obj));
    c.devices.join("d1/quarantined/objects").join(hash)
}

fn invalidated(c: &Cluster, obj: &str) -> bool {
    let hash = c.hash.hash_path("a", Some("c"), Some(obj));
    std::fs::read_to_string(c.part_dir("d1", c.part(obj)).join("hashes.invalid"))
        .unwrap_or_default()
        .lines()
        .any(|l| l == &hash[29..])
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn flip(bytes: &mut [u8], at: usize) {
    bytes[at] ^= 0x5a;
}

#[tokio::test]
async fn healthy_fragment_archives_stay() {
    let c = Cluster::start(4, 4, None).await;
    let t = ts(now() - 100.0);
    let a = archives();
    put_archive(&c, "d1", "durable", t, 1, &a[1], true, &[]);
    put_archive(&c, "d1", "nondurable", t, 4, &a[4], false, &[]);
    // An empty object's archives are empty.
    put_archive(&c, "d1", "empty", t, 0, b"", true, &[]);
    // Older non-durable fragments than the reclaim age: Swift's auditor
    // leaves reclaiming them to the rehash; checked, and left in place.
    let old = put_archive(&c, "d1", "old", ts(now() - 5000.0), 2, &a[2], false, &[]);
    let auditor = ObjectAuditor::new(ObjectAuditorSettings {
        reclaim_age: 1000.0,
        ..unlimited()
    });
    for _ in 0..2 {
        let p = run_once(&auditor, &ec_ctx(&c), Shutdown::never()).await;
        assert!(p.completed, "{p}");
        assert_eq!(p.count("objects_audited"), 4, "{p}");
        assert_eq!(p.count("ec_fragments_audited"), 4, "{p}");
        assert_eq!(p.count("quarantined"), 0, "{p}");
        assert_eq!(p.count("errors"), 0, "{p}");
        assert_eq!(p.count("bytes_read"), 3 * a[1].len() as u64, "{p}");
    }
    for obj in ["durable", "nondurable", "empty", "old"] {
        assert_eq!(names_in(&c.hash_dir("d1", obj)).len(), 1, "{obj}");
    }
    assert!(old.exists());
    assert!(!c.devices.join("d1/quarantined").exists());
}

#[tokio::test]
async fn a_flipped_payload_byte_fails_the_md5() {
    let c = Cluster::start(4, 4, None).await;
    let a = archives();
    let path = put_archive(&c, "d1", "flipped", ts(now() - 100.0), 3, &a[3], true, &[]);
    // In the middle fragment's payload: the headers stay valid.
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start((second_fragment() + 200) as u64))
        .unwrap();
    f.write_all(&[a[3][second_fragment() + 200] ^ 1]).unwrap();
    drop(f);
    let p = run_once(
        &ObjectAuditor::new(unlimited()),
        &ec_ctx(&c),
        Shutdown::never(),
    )
    .await;
    assert_eq!(p.count("quarantined"), 1, "{p}");
    assert_eq!(p.count("ec_quarantined"), 1, "{p}");
    assert_eq!(p.count("errors"), 0, "{p}");
    assert!(!c.hash_dir("d1", "flipped").exists());
    let q = quarantined(&c, "flipped");
    assert_eq!(names_in(&q), [path.file_name().unwrap().to_str().unwrap()]);
    assert!(invalidated(&c, "flipped"));
}

#[tokio::test]
async fn invalid_fragment_headers_are_quarantined() {
    let c = Cluster::start(4, 4, None).await;
    let t = ts(now() - 100.0);
    let a = archives();
    let second = second_fragment();
    let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
    // The second fragment's magic (bytes 59..63 of its header).
    let mut v = a[1].clone();
    flip(&mut v, second + 60);
    bad.push(("magic", v));
    // Its payload size: the metadata checksum no longer matches.
    let mut v = a[1].clone();
    flip(&mut v, second + 4);
    bad.push(("checksum", v));
    // The last fragment is index 2's: a valid header naming another index.
    let mut v = a[1].clone();
    let third = 2 * second;
    v[third..].copy_from_slice(&a[2][third..]);
    bad.push(("index", v));
    // Stored shorter, metadata and ETag agreeing: the last fragment's
    // header promises more than the archive holds.
    let v = a[1][..a[1].len() - 10].to_vec();
    bad.push(("cut", v));
    // Trailing bytes after the last fragment, too few for a header...
    let mut v = a[1].clone();
    v.extend_from_slice(b"tail");
    bad.push(("tail", v));
    // ...or enough for one that is none (Swift's ssync bug wrote request
    // lines into archives).
    let mut v = a[1].clone();
    v.extend_from_slice(&[b'x'; 100]);
    bad.push(("garbage", v));
    for (obj, bytes) in &bad {
        put_archive(&c, "d1", obj, t, 1, bytes, true, &[]);
    }
    put_archive(&c, "d1", "good", t, 1, &a[1], true, &[]);

    let p = run_once(
        &ObjectAuditor::new(unlimited()),
        &ec_ctx(&c),
        Shutdown::never(),
    )
    .await;
    assert_eq!(p.count("ec_fragments_audited"), 7, "{p}");
    assert_eq!(p.count("quarantined"), 6, "{p}");
    assert_eq!(p.count("ec_quarantined"), 6, "{p}");
    assert_eq!(p.count("errors"), 0, "{p}");
    for (obj, _) in &bad {
        assert!(!c.hash_dir("d1", obj).exists(), "{obj} still in place");
        assert!(quarantined(&c, obj).is_dir(), "{obj} not quarantined");
        assert!(invalidated(&c, obj), "{obj}");
    }
    assert!(c.hash_dir("d1", "good").exists());
}

#[tokio::test]
async fn an_archive_cut_short_on_disk_is_quarantined() {
    let c = Cluster::start(4, 4, None).await;
    let a = archives();
    let path = put_archive(
        &c,
        "d1",
        "truncated",
        ts(now() - 100.0),
        5,
        &a[5],
        true,
        &[],
    );
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(a[5].len() as u64 - 1).unwrap();
    drop(f);
    let p = run_once(
        &ObjectAuditor::new(unlimited()),
        &ec_ctx(&c),
        Shutdown::never(),
    )
    .await;
    assert_eq!(p.count("ec_quarantined"), 1, "{p}");
    assert!(quarantined(&c, "truncated").is_dir());
    assert!(!c.hash_dir("d1", "truncated").exists());
}

#[tokio::test]
async fn metadata_must_carry_the_ec_sysmeta_and_the_file_index() {
    let c = Cluster::start(4, 4, None).await;
    let t = ts(now() - 100.0);
    let a = archives();
    // Swift's ECDiskFile.validate_metadata wants a non-empty EC ETag.
    put_archive(
        &c,
        "d1",
        "no-ec-etag",
        t,
        1,
        &a[1],
        true,
        &[("X-Object-Sysmeta-Ec-Etag", "")],
    );
    // Named index 3, while the metadata (and headers) say index 1.
    let path = put_archive(&c, "d1", "renamed", t, 1, &a[1], true, &[]);
    std::fs::rename(
        &path,
        path.with_file_name(format!("{}#3#d.data", t.internal())),
    )
    .unwrap();
    // Unreadable metadata.
    let path = put_archive(&c, "d1", "garbled", t, 1, &a[1], true, &[]);
    xattr_garbage(&path);
    let p = run_once(
        &ObjectAuditor::new(unlimited()),
        &ec_ctx(&c),
        Shutdown::never(),
    )
    .await;
    assert_eq!(p.count("ec_quarantined"), 3, "{p}");
    assert_eq!(p.count("errors"), 0, "{p}");
    for obj in ["no-ec-etag", "renamed", "garbled"] {
        assert!(quarantined(&c, obj).is_dir(), "{obj}");
        assert!(!c.hash_dir("d1", obj).exists(), "{obj}");
    }
}

#[tokio::test]
async fn a_handoff_loses_only_its_bad_archives() {
    let c = Cluster::start(4, 4, None).await;
    let t = ts(now() - 100.0);
    let a = archives();
    let good = put_archive(&c, "d1", "handoff", t, 0, &a[0], true, &[]);
    let flipped = put_archive(&c, "d1", "handoff", t, 1, &a[1], true, &[]);
    let mut bytes = std::fs::read(&flipped).unwrap();
    flip(&mut bytes, 100);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&flipped)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let mut v = a[2].clone();
    flip(&mut v, second_fragment() + 60);
    let bad_header = put_archive(&c, "d1", "handoff", t, 2, &v, false, &[]);

    let p = run_once(
        &ObjectAuditor::new(unlimited()),
        &ec_ctx(&c),
        Shutdown::never(),
    )
    .await;
    assert_eq!(p.count("objects_audited"), 1, "{p}");
    assert_eq!(p.count("ec_fragments_audited"), 3, "{p}");
    assert_eq!(p.count("ec_quarantined"), 2, "{p}");
    assert_eq!(p.count("errors"), 0, "{p}");
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(names_in(&c.hash_dir("d1", "handoff")), [name(&good)]);
    let mut gone = vec![name(&flipped), name(&bad_header)];
    gone.sort();
    assert_eq!(names_in(&quarantined(&c, "handoff")), gone);
    assert!(invalidated(&c, "handoff"));

    // The survivor passes from now on.
    let p = run_once(
        &ObjectAuditor::new(unlimited()),
        &ec_ctx(&c),
        Shutdown::never(),
    )
    .await;
    assert_eq!(p.count("ec_fragments_audited"), 1, "{p}");
    assert_eq!(p.count("quarantined"), 0, "{p}");
    assert!(good.exists());
}

#[tokio::test]
async fn a_replica_named_file_in_an_ec_policy_is_no_archive_to_audit() {
    let c = Cluster::start(4, 4, None).await;
    c.write("d1", "meta", ts(now() - 100.0), b"abc", &[]);
    let path = c.open("d1", "meta").unwrap().data_path().to_path_buf();
    xattr_garbage(&path);
    // `<ts>.data` carries no fragment index: the EC rules do not count it
    // as an object file, so it is not opened (as in Swift).
    let p = run_once(
        &ObjectAuditor::new(unlimited()),
        &ec_ctx(&c),
        Shutdown::never(),
    )
    .await;
    assert!(p.completed, "{p}");
    assert_eq!(p.count("objects_audited"), 1, "{p}");
    assert_eq!(p.count("ec_fragments_audited"), 0, "{p}");
    assert_eq!(p.count("quarantined"), 0, "{p}");
    assert!(c.hash_dir("d1", "meta").exists());
}
