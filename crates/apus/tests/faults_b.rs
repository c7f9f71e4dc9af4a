//! Fault scenarios on a real multi-process cluster (see `support::cluster`):
//! torn object files, corrupt container databases and pending files, an
//! object server crashing at each stage of a PUT, a full disk, an
//! unmounted device, and a node added and rebalanced under load.
//! `cargo test --release scenario_` runs these with the others.
//!
//! The tmpfs scenarios mount file systems: they need root (as CI runs
//! them) and fail, not skip, without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::{BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::cluster::{Kind, MultiCluster, Options, NODES};
use support::load::{summarize, Load, LoadConfig, Op, State};
use support::{md5_hex, serial};

/// A body of `len` bytes that differs for every name.
fn body_of(name: &str, len: usize) -> Vec<u8> {
    let seed = format!("{name}:");
    seed.bytes().cycle().take(len).collect()
}

fn put(c: &MultiCluster, path: &str, body: &[u8]) -> u16 {
    c.request("PUT", path, &[], body).0.status
}

fn get(c: &MultiCluster, path: &str) -> (u16, Vec<u8>) {
    let (head, body) = c.request("GET", path, &[], b"");
    (head.status, body)
}

/// Node indexes that are not among `primaries`.
fn non_primaries(c: &MultiCluster, primaries: &[usize]) -> Vec<usize> {
    (0..c.nodes.len())
        .filter(|i| !primaries.contains(i))
        .collect()
}

fn object_primaries(c: &MultiCluster, container: &str, obj: &str) -> (u32, Vec<usize>) {
    c.primaries(Kind::Object, &c.account(), Some(container), Some(obj))
}

/// Names `<prefix>-<n>` whose object primaries include node `node`.
fn names_on(
    c: &MultiCluster,
    container: &str,
    prefix: &str,
    node: usize,
    count: usize,
) -> Vec<String> {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .filter(|name| object_primaries(c, container, name).1.contains(&node))
        .take(count)
        .collect()
}

/// The `.data` file of an object on node `i`, if it has one.
fn data_file(c: &MultiCluster, i: usize, container: &str, obj: &str) -> Option<PathBuf> {
    c.object_files(i, container, obj)
        .into_iter()
        .find(|f| f.ends_with(".data"))
        .map(|f| c.object_dir(i, container, obj).join(f))
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Every file under `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_ending(&path, suffix, out);
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// After convergence: every primary of each object holds exactly its
/// body, no other node holds any file of it, and the proxy serves it.
fn assert_home(c: &MultiCluster, container: &str, objects: &[(String, Vec<u8>)]) {
    for (name, body) in objects {
        let (_, prim) = object_primaries(c, container, name);
        for &p in &prim {
            let path = data_file(c, p, container, name)
                .unwrap_or_else(|| panic!("{name} missing on primary node {p}"));
            assert_eq!(
                md5_hex(&fs::read(&path).unwrap()),
                md5_hex(body),
                "{name} on node {p}"
            );
        }
        for h in non_primaries(c, &prim) {
            assert_eq!(
                c.object_files(h, container, name),
                Vec::<String>::new(),
                "{name} left on non-primary node {h}"
            );
        }
        let (status, got) = get(c, &format!("/{container}/{name}"));
        assert_eq!((status, md5_hex(&got)), (200, md5_hex(body)), "{name}");
    }
}

/// Every replica of `container` lists exactly `names`.
fn assert_listed(c: &MultiCluster, container: &str, names: &BTreeSet<String>) {
    let (_, cprim) = c.primaries(Kind::Container, &c.account(), Some(container), None);
    for n in cprim {
        let listed: BTreeSet<String> = c
            .container_replica_listing(n, container)
            .into_iter()
            .collect();
        assert_eq!(&listed, names, "container replica on node {n}");
    }
}

// ---- extended attributes, as the object files carry their metadata ----

const METADATA_KEY: &str = "user.swift.metadata";
const CHECKSUM_KEY: &str = "user.swift.metadata_checksum";

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: valid C strings; a null buffer of size 0 asks for the size.
    let size = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        return None;
    }
    let mut buf = vec![0u8; size as usize];
    // SAFETY: `buf` has room for `size` bytes.
    let got = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(got >= 0, "getxattr {name} on {}", path.display());
    buf.truncate(got as usize);
    Some(buf)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {name} on {}", path.display());
}

fn remove_xattr(path: &Path, name: &str) {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: valid C strings.
    let rc = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    assert_eq!(rc, 0, "removexattr {name} on {}", path.display());
}

/// Whether an object file carries whole metadata: a pickle whose
/// checksum matches and whose `Content-Length` is the file's size (for a
/// `.data`). Parses just enough of the pickle to find that value.
fn metadata_is_whole(path: &Path) -> bool {
    let Some(pickle) = get_xattr(path, METADATA_KEY) else {
        return false;
    };
    if get_xattr(path, CHECKSUM_KEY).is_some_and(|sum| sum != md5_hex(&pickle).as_bytes()) {
        return false;
    }
    if !path.to_string_lossy().ends_with(".data") {
        return true;
    }
    let size = fs::metadata(path).unwrap().len().to_string();
    let text = String::from_utf8_lossy(&pickle);
    text.contains("Content-Length") && text.contains(&size)
}

// ---- scenario 30 ------------------------------------------------------

/// How an object's files get torn on one node.
#[derive(Clone, Copy, Debug)]
enum Tear {
    /// The `.data` cut to half its length, metadata intact.
    TruncatedData,
    /// The metadata pickle cut short, with a checksum that matches it:
    /// only the unpickler can tell.
    PickleCutShort,
    /// One byte of the pickle changed, the checksum left as it was.
    PickleFlipped,
    /// No metadata xattrs at all.
    NoMetadata,
    /// A zero-length `.data` whose metadata says otherwise.
    EmptyData,
}

const TEARS: [Tear; 5] = [
    Tear::TruncatedData,
    Tear::PickleCutShort,
    Tear::PickleFlipped,
    Tear::NoMetadata,
    Tear::EmptyData,
];

fn tear(path: &Path, how: Tear) {
    let len = fs::metadata(path).unwrap().len();
    let file = || fs::OpenOptions::new().write(true).open(path).unwrap();
    match how {
        Tear::TruncatedData => file().set_len(len / 2).unwrap(),
        Tear::EmptyData => file().set_len(0).unwrap(),
        Tear::PickleCutShort => {
            let pickle = get_xattr(path, METADATA_KEY).unwrap();
            let cut = &pickle[..pickle.len() / 2];
            set_xattr(path, METADATA_KEY, cut);
            set_xattr(path, CHECKSUM_KEY, md5_hex(cut).as_bytes());
        }
        Tear::PickleFlipped => {
            let mut pickle = get_xattr(path, METADATA_KEY).unwrap();
            let at = pickle.len() / 2;
            pickle[at] ^= 0x20;
            set_xattr(path, METADATA_KEY, &pickle);
        }
        Tear::NoMetadata => {
            remove_xattr(path, METADATA_KEY);
            remove_xattr(path, CHECKSUM_KEY);
        }
    }
}

fn quarantined_object(c: &MultiCluster, node: usize, container: &str, obj: &str) -> PathBuf {
    let hash = c.hash.hash_path(&c.account(), Some(container), Some(obj));
    c.nodes[node]
        .device_path()
        .join("quarantined/objects")
        .join(hash)
}

/// Torn object files on one primary: a `.data` cut short, a metadata
/// pickle cut short (checksum matching) or with a flipped byte (checksum
/// stale), no metadata at all, and a zero-length `.data`. As Swift's
/// object server does for each (`DiskFileQuarantined` on open: size
/// against `Content-Length`, metadata that fails its checksum or does not
/// unpickle), the node quarantines the copy on the first GET or HEAD that
/// opens it and answers 404, so the proxy moves on to a good copy: every
/// GET answers 200 with exactly the object's bytes and every HEAD its
/// true ETag, length and metadata. Copies no request touched are
/// quarantined by the object auditor (one each, nothing else). Then
/// replication puts a good copy back on every primary and nowhere else.
#[test]
fn scenario_30_torn_object_files() {
    let _serial = serial();
    let c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c30", b""), 201);
    let mut objects = Vec::new();
    for how in TEARS {
        for way in ["read", "audit"] {
            let name = format!("{way}-{how:?}");
            let body = body_of(&name, 20_000);
            let (h, _) = c.request(
                "PUT",
                &format!("/c30/{name}"),
                &[("X-Object-Meta-Tear", &format!("{how:?}"))],
                &body,
            );
            assert_eq!(h.status, 201, "{name}");
            objects.push((name, body));
        }
    }

    // The read path: the proxy asks the first primary first.
    for (k, how) in TEARS.into_iter().enumerate() {
        let name = format!("read-{how:?}");
        let body = body_of(&name, 20_000);
        let (_, prim) = object_primaries(&c, "c30", &name);
        let bad = prim[0];
        tear(&data_file(&c, bad, "c30", &name).unwrap(), how);
        let path = format!("/c30/{name}");
        let check_get = || {
            let (status, got) = get(&c, &path);
            assert_eq!(status, 200, "GET {name}");
            assert_eq!(
                md5_hex(&got),
                md5_hex(&body),
                "GET {name} served other bytes"
            );
        };
        let check_head = || {
            let (h, _) = c.request("HEAD", &path, &[], b"");
            assert_eq!(h.status, 200, "HEAD {name}");
            assert_eq!(
                h.header("etag").map(|e| e.trim_matches('"')),
                Some(md5_hex(&body).as_str())
            );
            assert_eq!(
                h.header("content-length"),
                Some(body.len().to_string().as_str())
            );
            assert_eq!(
                h.header("x-object-meta-tear"),
                Some(format!("{how:?}").as_str())
            );
        };
        // Half the kinds are first met by a GET, half by a HEAD.
        if k % 2 == 0 {
            check_get();
            check_head();
        } else {
            check_head();
            check_get();
        }
        let q = quarantined_object(&c, bad, "c30", &name);
        wait_until(
            &format!("{name} quarantined on node {bad}"),
            Duration::from_secs(10),
            || q.exists(),
        );
        assert!(
            data_file(&c, bad, "c30", &name).is_none(),
            "{name} still in place on node {bad}"
        );
        let (part, _) = object_primaries(&c, "c30", &name);
        let account = c.account();
        let (h, _) = c.direct(
            bad,
            Kind::Object,
            part,
            "HEAD",
            &format!("/{account}/c30/{name}"),
            &[],
        );
        assert_eq!(h.status, 404, "{name} on node {bad} after quarantine");
        check_get();
    }

    // The auditor finds the ones nobody read.
    let mut torn_on = BTreeSet::new();
    for how in TEARS {
        let name = format!("audit-{how:?}");
        let (_, prim) = object_primaries(&c, "c30", &name);
        tear(&data_file(&c, prim[1], "c30", &name).unwrap(), how);
        torn_on.insert(prim[1]);
    }
    let quarantined: u64 = torn_on
        .iter()
        .map(|&n| {
            let stats = c.run_daemon(n, "object-auditor");
            stats["counts"]["quarantined"].as_u64().unwrap_or(0)
        })
        .sum();
    assert_eq!(
        quarantined,
        TEARS.len() as u64,
        "the auditor quarantines each torn copy, and only those"
    );
    for how in TEARS {
        let name = format!("audit-{how:?}");
        let (_, prim) = object_primaries(&c, "c30", &name);
        assert!(
            quarantined_object(&c, prim[1], "c30", &name).exists(),
            "{name}"
        );
        assert!(data_file(&c, prim[1], "c30", &name).is_none(), "{name}");
    }

    // Replication restores a good copy on every primary.
    c.run_daemon_everywhere("object-replicator");
    c.run_daemon_everywhere("object-replicator");
    assert_home(&c, "c30", &objects);
    let account = c.account();
    for (name, body) in &objects {
        let (part, prim) = object_primaries(&c, "c30", name);
        for p in prim {
            let (h, _) = c.direct(
                p,
                Kind::Object,
                part,
                "HEAD",
                &format!("/{account}/c30/{name}"),
                &[],
            );
            assert_eq!(h.status, 200, "{name} on node {p}");
            assert_eq!(
                h.header("etag").map(|e| e.trim_matches('"')),
                Some(md5_hex(body).as_str())
            );
            assert!(
                h.header("x-object-meta-tear").is_some(),
                "{name}'s metadata on node {p}"
            );
        }
    }
}

// ---- scenario 31 ------------------------------------------------------

fn quarantined_container(c: &MultiCluster, node: usize, container: &str) -> PathBuf {
    let hash = c.hash.hash_path(&c.account(), Some(container), None);
    c.nodes[node]
        .device_path()
        .join("quarantined/containers")
        .join(hash)
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Overwrites `len` bytes of `path` at `offset` with a pattern.
fn scribble(path: &Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom};
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let junk: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8 ^ 0xa5).collect();
    f.write_all(&junk).unwrap();
    f.sync_all().unwrap();
}

/// A damaged container replica and a `.pending` file with garbage in it.
///
/// - One replica's `.db` has every page but the first overwritten: the
///   container auditor's `quick_check` finds it and quarantines it (to
///   `quarantined/containers/<hash>`), as Swift's auditor does.
/// - Another replica's header is overwritten: the container server's next
///   request finds "not a database", answers 5xx and quarantines the
///   database, as Swift's `possibly_quarantine` does.
/// - Meanwhile listings and HEADs through the proxy keep answering from
///   the good replica, objects written meanwhile included.
/// - The container replicator copies the good database whole to the two
///   replicas that lost theirs, and after the updaters every replica lists
///   the same objects.
/// - Garbage appended to a replica's `.pending` (not base64, not a pickle,
///   a pickle that is not a record, a torn entry), between good entries,
///   is skipped as Swift's `_commit_puts` skips it: the replica still
///   answers, lists every object written before and after the garbage, and
///   is not quarantined.
#[test]
fn scenario_31_corrupt_container_db_and_pending() {
    let _serial = serial();
    let c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c31", b""), 201);
    let mut names: BTreeSet<String> = BTreeSet::new();
    for i in 0..20 {
        let name = format!("o{i:02}");
        assert_eq!(put(&c, &format!("/c31/{name}"), &body_of(&name, 100)), 201);
        names.insert(name);
    }
    assert_listed(&c, "c31", &names);
    let account = c.account();
    let (part, cp) = c.primaries(Kind::Container, &account, Some("c31"), None);
    let listing = |c: &MultiCluster| -> BTreeSet<String> {
        let (h, body) = c.request("GET", "/c31", &[], b"");
        assert_eq!(h.status, 200, "listing through the proxy");
        String::from_utf8(body)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };

    // The auditor finds damaged pages.
    let db1 = c.container_db(cp[1], "c31");
    let size = fs::metadata(&db1).unwrap().len();
    assert!(size > 8192, "a database of several pages: {size}");
    scribble(&db1, 4096, (size - 4096) as usize);
    let stats = c.run_daemon(cp[1], "container-auditor");
    assert_eq!(stats["counts"]["quarantined"], 1, "{stats}");
    assert!(quarantined_container(&c, cp[1], "c31").exists());
    assert!(!db1.exists());

    // A request finds a damaged header.
    let db0 = c.container_db(cp[0], "c31");
    scribble(&db0, 0, 100);
    let (h, _) = c.direct(
        cp[0],
        Kind::Container,
        part,
        "GET",
        &format!("/{account}/c31"),
        &[],
    );
    assert!(
        h.status >= 500,
        "a damaged database answers an error, not {}",
        h.status
    );
    wait_until(
        "the damaged database quarantined",
        Duration::from_secs(10),
        || quarantined_container(&c, cp[0], "c31").exists(),
    );
    assert!(!db0.exists());

    // The good replica answers for the container meanwhile.
    assert_eq!(listing(&c), names);
    for i in 0..5 {
        let name = format!("p{i}");
        assert_eq!(put(&c, &format!("/c31/{name}"), &body_of(&name, 100)), 201);
        names.insert(name);
    }
    assert_eq!(listing(&c), names);
    let (h, _) = c.request("HEAD", "/c31", &[], b"");
    assert_eq!(h.status, 204);
    assert_eq!(
        h.header("x-container-object-count"),
        Some(names.len().to_string().as_str())
    );

    // Replication copies the database whole to both.
    let rsyncs: u64 = c
        .run_daemon_everywhere("container-replicator")
        .iter()
        .map(|s| s["counts"]["rsync"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        rsyncs >= 2,
        "whole-database copies to the two replicas that lost theirs: {rsyncs}"
    );
    assert!(db0.exists() && db1.exists());
    c.run_daemon_everywhere("object-updater");
    c.run_daemon_everywhere("container-replicator");
    assert_listed(&c, "c31", &names);

    // Garbage in a pending file, between good entries.
    let victim = cp[2];
    let pending = {
        let mut p = c.container_db(victim, "c31").into_os_string();
        p.push(".pending");
        PathBuf::from(p)
    };
    for i in 0..3 {
        let name = format!("q{i}");
        assert_eq!(put(&c, &format!("/c31/{name}"), &body_of(&name, 100)), 201);
        names.insert(name);
    }
    let mut garbage = b":!!! not base64 !!!".to_vec();
    garbage.extend(format!(":{}", base64(b"not a pickle at all")).bytes());
    garbage.extend(format!(":{}", base64(b"\x80\x02K\x07.")).bytes()); // 7
    garbage.extend(format!(":{}", base64(b"\x80\x02K\x01K\x02\x86q\x00.")).bytes()); // (1, 2)
    garbage.extend(b":gAJYBAAAAG"); // a torn append
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&pending)
        .unwrap()
        .write_all(&garbage)
        .unwrap();
    for i in 3..6 {
        let name = format!("q{i}");
        assert_eq!(put(&c, &format!("/c31/{name}"), &body_of(&name, 100)), 201);
        names.insert(name);
    }
    let listed: BTreeSet<String> = c
        .container_replica_listing(victim, "c31")
        .into_iter()
        .collect();
    assert_eq!(
        listed, names,
        "the replica with garbage in its pending file"
    );
    assert!(!quarantined_container(&c, victim, "c31").exists());
    assert_eq!(
        fs::metadata(&pending).map(|m| m.len()).unwrap_or(0),
        0,
        "the pending file is merged"
    );
    assert_eq!(listing(&c), names);
    c.run_daemon_everywhere("object-updater");
    c.run_daemon_everywhere("container-replicator");
    assert_listed(&c, "c31", &names);
    assert_eq!(
        c.run_daemon(victim, "container-auditor")["counts"]["quarantined"]
            .as_u64()
            .unwrap_or(0),
        0
    );
}

// ---- scenario 32 ------------------------------------------------------

const PUT_POINTS: [&str; 4] = [
    "object-put-before-fsync",
    "object-put-before-rename",
    "object-put-after-rename",
    "object-put-after-container-update",
];

/// Nodes holding a `.data` of the object with exactly `body`.
fn holders(c: &MultiCluster, container: &str, obj: &str, body: &[u8]) -> Vec<usize> {
    (0..c.nodes.len())
        .filter(|&i| {
            data_file(c, i, container, obj)
                .is_some_and(|p| fs::read(p).is_ok_and(|b| md5_hex(&b) == md5_hex(body)))
        })
        .collect()
}

/// No temp file in node `i`'s `tmp/`, and every object file on it carries
/// whole metadata.
fn assert_nothing_partial(c: &MultiCluster, i: usize) {
    let dev = c.nodes[i].device_path();
    let mut tmp = Vec::new();
    files_ending(&dev.join("tmp"), "", &mut tmp);
    assert_eq!(tmp, Vec::<PathBuf>::new(), "temp files left on node {i}");
    let mut files = Vec::new();
    for suffix in [".data", ".meta", ".ts"] {
        files_ending(&dev.join("objects"), suffix, &mut files);
    }
    for f in files {
        assert!(
            metadata_is_whole(&f),
            "{} lacks whole metadata",
            f.display()
        );
    }
}

/// An object server crashing (`abort`) at each stage of a PUT, through the
/// failpoints `APUS_FAILPOINTS` arms: before the data fsync, after it but
/// before the rename into place, after the rename but before the
/// container update, and after the update but before the answer. For each,
/// on a node restarted with the failpoint armed, a PUT of an object whose
/// primaries include it:
/// - the node dies of SIGABRT, at the stage named: before the rename its
///   temp file holds the write and the object's directory nothing; after,
///   the object is in place;
/// - the client gets 201, and two other nodes hold the object durably;
/// - restarted without the failpoint, the node has no temp file and no
///   object file without whole metadata, and serves the object exactly if
///   the crash came after the rename;
/// - every acknowledged object reads back byte-exact.
///
/// With the failpoint armed on two of an object's three primaries, the
/// client gets no 2xx (one durable copy is not a quorum); whatever that
/// copy becomes, reads and the container's replicas agree on it.
///
/// After replication and the updaters, every primary holds each
/// acknowledged object, and every container replica lists exactly them.
#[test]
fn scenario_32_crash_at_each_stage_of_a_put() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c32", b""), 201);
    let account = c.account();
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    for (k, point) in PUT_POINTS.into_iter().enumerate() {
        let victim = k % NODES;
        let name = names_on(&c, "c32", point, victim, 1).remove(0);
        let body = body_of(&name, 300_000);
        c.stop_node(victim);
        let armed = format!("{point}=abort");
        c.start_node_with_env(victim, &[("APUS_FAILPOINTS", &armed)]);
        let status = put(&c, &format!("/c32/{name}"), &body);
        let died = c
            .wait_node_exit(victim, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("node {victim} did not crash at {point}"));
        assert_eq!(died.signal(), Some(libc::SIGABRT), "{point}: {died}");
        assert_eq!(status, 201, "{point}: two primaries wrote it");
        let copies = holders(&c, "c32", &name, &body);
        assert!(
            copies.iter().filter(|&&n| n != victim).count() >= 2,
            "{point}: a 201 needs two durable copies, found {copies:?}"
        );

        // What the crash left, before any restart cleans up.
        let tmp = count_files(&c.nodes[victim].device_path().join("tmp"));
        let in_place = data_file(&c, victim, "c32", &name).is_some();
        if k < 2 {
            assert_eq!(
                (tmp, in_place),
                (1, false),
                "{point}: the write is still a temp file"
            );
        } else {
            assert_eq!(
                (tmp, in_place),
                (0, true),
                "{point}: the object is in place"
            );
        }

        c.start_node(victim);
        assert_nothing_partial(&c, victim);
        let (part, _) = object_primaries(&c, "c32", &name);
        let (h, got) = c.direct(
            victim,
            Kind::Object,
            part,
            "GET",
            &format!("/{account}/c32/{name}"),
            &[],
        );
        if k < 2 {
            assert_eq!(
                h.status, 404,
                "{point}: nothing of the write on node {victim}"
            );
        } else {
            assert_eq!(
                (h.status, md5_hex(&got)),
                (200, md5_hex(&body)),
                "{point} on node {victim}"
            );
        }
        assert_eq!(
            get(&c, &format!("/c32/{name}")),
            (200, body.clone()),
            "{point}"
        );
        acked.push((name, body));
    }
    for (name, body) in &acked {
        assert_eq!(
            get(&c, &format!("/c32/{name}")),
            (200, body.clone()),
            "{name}"
        );
    }

    // Two of three primaries crash: no quorum, no 2xx.
    assert_eq!(put(&c, "/c32-lost", b""), 201);
    let name = "lost".to_string();
    let body = body_of(&name, 300_000);
    let (_, prim) = object_primaries(&c, "c32-lost", &name);
    let doomed = [prim[0], prim[1]];
    for &n in &doomed {
        c.stop_node(n);
        c.start_node_with_env(n, &[("APUS_FAILPOINTS", "object-put-before-rename=abort")]);
    }
    let status = put(&c, &format!("/c32-lost/{name}"), &body);
    for &n in &doomed {
        let died = c.wait_node_exit(n, Duration::from_secs(20));
        assert!(died.is_some(), "node {n} did not crash");
        c.start_node(n);
        assert_nothing_partial(&c, n);
    }
    assert!(
        !(200..300).contains(&status),
        "a PUT with one durable copy got {status}"
    );

    c.converge();
    assert_home(&c, "c32", &acked);
    let names: BTreeSet<String> = acked.iter().map(|(n, _)| n.clone()).collect();
    assert_listed(&c, "c32", &names);
    // The unacknowledged write may live or not, but consistently.
    let (st, got) = get(&c, &format!("/c32-lost/{name}"));
    let exists = match st {
        200 => {
            assert_eq!(md5_hex(&got), md5_hex(&body));
            assert_home(&c, "c32-lost", &[(name.clone(), body.clone())]);
            true
        }
        404 => false,
        other => panic!("GET of the unacknowledged write: {other}"),
    };
    let expected: BTreeSet<String> = if exists {
        BTreeSet::from([name])
    } else {
        BTreeSet::new()
    };
    assert_listed(&c, "c32-lost", &expected);
}

// ---- scenarios 33 and 34 ------------------------------------------------

const MIB: u64 = 1 << 20;

/// Fills the file system of `dir` with `dir/filler`, leaving `leave`
/// bytes free (give or take a page).
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).unwrap();
    let chunk = vec![0x55u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(n) => len += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    f.set_len(len.saturating_sub(leave)).unwrap();
    path
}

/// A PUT straight to node `i`'s object server that offers a body of
/// `len` bytes with `Expect: 100-continue`: the status it answers before
/// taking any of it.
fn direct_put_status(c: &MultiCluster, i: usize, container: &str, obj: &str, len: u64) -> u16 {
    let account = c.account();
    let (part, _) = object_primaries(c, container, obj);
    let node = &c.nodes[i];
    let ts = format!(
        "{:.5}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    );
    let len = len.to_string();
    let conn = support::send_head(
        node.addr(Kind::Object),
        "PUT",
        &format!("/{}/{part}/{account}/{container}/{obj}", node.device),
        &[
            ("X-Timestamp", &ts),
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", &len),
            ("Expect", "100-continue"),
        ],
        Duration::from_secs(30),
    );
    support::read_head(&mut BufReader::new(conn)).status
}

/// A PUT through the proxy with a chunked body (no length known ahead).
fn put_chunked(c: &MultiCluster, path: &str, body: &[u8]) -> u16 {
    let mut conn = std::net::TcpStream::connect(c.proxy_addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "PUT {}{path} HTTP/1.1\r\nHost: proxy\r\nX-Auth-Token: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        c.account_path,
        c.token()
    );
    conn.write_all(head.as_bytes()).unwrap();
    for chunk in body.chunks(64 * 1024) {
        conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        conn.write_all(chunk).unwrap();
        conn.write_all(b"\r\n").unwrap();
    }
    conn.write_all(b"0\r\n\r\n").unwrap();
    support::read_head(&mut BufReader::new(conn)).status
}

fn node_log(c: &MultiCluster, i: usize) -> String {
    fs::read_to_string(c.nodes[i].dir.join("node.log")).unwrap_or_default()
}

/// One device full (a tmpfs of 8 MiB, filled to within 640 KiB).
/// - Its object server refuses a PUT it has no room for with 507 before
///   taking any of the body: its free space minus the size is below the
///   reserve (Swift's `fallocate_reserve`), as Swift's `DiskFileNoSpace`
///   answers.
/// - A chunked upload (no size known) runs into ENOSPC mid-write there:
///   the node answers 507 and keeps nothing of it (no temp file, no
///   `.data`), the other primaries take it, the client gets 201.
/// - PUTs with a length: the proxy gives the full node's turn to a
///   handoff, the client gets 201, a handoff holds the object and the full
///   device nothing of it.
/// - Once the space is back, replication moves every object onto its
///   primaries, the formerly full one included, and off the handoffs.
#[test]
fn scenario_33_disk_full() {
    let _serial = serial();
    let full = 1;
    let c = MultiCluster::start(Options {
        tmpfs: vec![(full, 8 * MIB)],
        ..Options::default()
    });
    assert_eq!(put(&c, "/c33", b""), 201);
    let filler = fill(&c.nodes[full].device_path(), 640 * 1024);
    let names = names_on(&c, "c33", "big", full, 4);
    let dev = c.nodes[full].device_path();

    assert_eq!(direct_put_status(&c, full, "c33", &names[0], MIB), 507);

    let chunked = (names[0].clone(), body_of(&names[0], 2 * MIB as usize));
    assert_eq!(
        put_chunked(&c, &format!("/c33/{}", chunked.0), &chunked.1),
        201
    );
    let log = node_log(&c, full);
    assert!(
        log.contains("no space left on device"),
        "the chunked upload ran out of space on node {full}: {log}"
    );
    assert!(data_file(&c, full, "c33", &chunked.0).is_none());
    assert!(holders(&c, "c33", &chunked.0, &chunked.1).len() >= 2);

    let mut objects = vec![chunked];
    for name in &names[1..] {
        let body = body_of(name, MIB as usize);
        assert_eq!(put(&c, &format!("/c33/{name}"), &body), 201, "{name}");
        assert!(
            data_file(&c, full, "c33", name).is_none(),
            "{name} on the full node"
        );
        let (_, prim) = object_primaries(&c, "c33", name);
        let on_handoff = non_primaries(&c, &prim)
            .into_iter()
            .any(|h| holders(&c, "c33", name, &body).contains(&h));
        assert!(on_handoff, "{name} went to a handoff");
        objects.push((name.clone(), body));
    }
    assert_eq!(
        count_files(&dev.join("tmp")),
        0,
        "temp files on the full device"
    );
    assert_nothing_partial(&c, full);

    fs::remove_file(filler).unwrap();
    c.converge();
    assert_home(&c, "c33", &objects);
    let names: BTreeSet<String> = objects.iter().map(|(n, _)| n.clone()).collect();
    assert_listed(&c, "c33", &names);
}

/// Object-server requests of `method` node `i` logged with `status`.
fn logged_requests(c: &MultiCluster, i: usize, method: &str, status: u16) -> usize {
    let (m, s) = (format!("method={method} "), format!("status={status} "));
    node_log(c, i)
        .lines()
        .filter(|l| l.contains("object-server") && l.contains(&m) && l.contains(&s))
        .count()
}

/// A device unmounted under a node with `mount_check = true` (its devices
/// are tmpfs mounts; one is lazily unmounted, leaving the empty directory
/// beneath).
/// - Its object and container servers answer 507 for that device.
/// - The proxy error-limits it on its first 507: of a series of PUTs and
///   GETs of objects whose primaries include it, exactly one PUT reaches
///   its object server (its request log says so) and no GET does.
/// - Every PUT gets 201 with a handoff holding the object, every GET 200
///   with the object's bytes.
/// - With a device mounted again, replication brings the objects home.
#[test]
fn scenario_34_unmounted_device() {
    let _serial = serial();
    let gone = 2;
    let mut c = MultiCluster::start(Options {
        tmpfs: vec![(gone, 16 * MIB)],
        storage_config: vec![(gone, "mount_check = true".into())],
        log_requests: true,
        // Nothing readmits the device while the scenario runs.
        proxy_config: "error_suppression_interval = 600\nerror_suppression_probe_interval = 600"
            .into(),
        ..Options::default()
    });
    assert_eq!(put(&c, "/c34", b""), 201);
    let names = names_on(&c, "c34", "obj", gone, 8);
    c.unmount_device(gone);

    let account = c.account();
    assert_eq!(direct_put_status(&c, gone, "c34", &names[0], 10), 507);
    let (cpart, _) = c.primaries(Kind::Container, &account, Some("c34"), None);
    let (h, _) = c.direct(
        gone,
        Kind::Container,
        cpart,
        "HEAD",
        &format!("/{account}/c34"),
        &[],
    );
    assert_eq!(h.status, 507, "the container server");
    let (puts_before, gets_before) = (
        logged_requests(&c, gone, "PUT", 507),
        logged_requests(&c, gone, "GET", 507),
    );
    assert_eq!(puts_before, 1, "the direct PUT is logged");

    let mut objects = Vec::new();
    for name in &names {
        let body = body_of(name, 5000);
        assert_eq!(put(&c, &format!("/c34/{name}"), &body), 201, "{name}");
        let (_, prim) = object_primaries(&c, "c34", name);
        let on_handoff = non_primaries(&c, &prim)
            .into_iter()
            .any(|h| holders(&c, "c34", name, &body).contains(&h));
        assert!(on_handoff, "{name} went to a handoff");
        objects.push((name.clone(), body));
    }
    for (name, body) in &objects {
        assert_eq!(
            get(&c, &format!("/c34/{name}")),
            (200, body.clone()),
            "{name}"
        );
    }
    assert_eq!(
        logged_requests(&c, gone, "PUT", 507) - puts_before,
        1,
        "only the first PUT reaches the unmounted device"
    );
    assert_eq!(
        logged_requests(&c, gone, "GET", 507),
        gets_before,
        "no GET reaches it"
    );
    assert_eq!(
        count_files(&c.nodes[gone].device_path()),
        0,
        "nothing was written beneath the mount point"
    );

    c.mount_device(gone, 16 * MIB);
    c.converge();
    assert_home(&c, "c34", &objects);
}

// ---- scenario 35 ------------------------------------------------------

/// GETs `objects` through the proxy in turn until stopped; every answer
/// that is not a 200 with the object's exact bytes, with the time since
/// `t0` it came.
fn read_continuously(
    c: &MultiCluster,
    container: &str,
    objects: &[(String, Vec<u8>)],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    let proxy = c.proxy_addr;
    let token = c.token().to_string();
    let paths: Vec<(String, String)> = objects
        .iter()
        .map(|(n, b)| (format!("{}/{container}/{n}", c.account_path), md5_hex(b)))
        .collect();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut reads = 0;
        let mut failures = Vec::new();
        for (path, want) in paths.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let got = support::request(proxy, "GET", path, &[("X-Auth-Token", &token)], "");
            reads += 1;
            match got {
                Some((200, body)) if md5_hex(body.as_bytes()) == *want => {}
                Some((status, _)) => {
                    failures.push(format!("{path}: {status} at {:?}", t0.elapsed()))
                }
                None => failures.push(format!("{path}: no answer at {:?}", t0.elapsed())),
            }
        }
        (reads, failures)
    })
}

/// A fifth node joins under load: with clients writing, reading and
/// deleting (`support::load`) and a reader going over objects written
/// before, a node is started and every ring rebalanced with its device
/// (one replica of some partitions moves to it) and written over the old
/// ring files.
/// - The proxy notices the new rings by itself (`ring_reload_time`, as
///   Swift's rings reload): new writes land on the new device.
/// - Replicators run on all five nodes while the load goes on. No read of
///   an object written before fails or serves other bytes (new primaries
///   that do not have it yet answer 404 and the proxy asks the next), no
///   GET of the load fails, and none serves a body never written.
/// - Once the load stops and the cluster converges, every object lives
///   exactly on its primaries under the new ring (the new node included,
///   no other node keeping a file of it), reads as the last acknowledged
///   write left it, and every replica of each container (placed by the new
///   container ring) lists exactly the objects that exist.
#[test]
fn scenario_35_node_added_under_load() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options {
        proxy_config: "ring_reload_time = 1".into(),
        ..Options::default()
    });
    assert_eq!(put(&c, "/c35", b""), 201);
    assert_eq!(put(&c, "/load", b""), 201);
    let mut before = Vec::new();
    for i in 0..60 {
        let name = format!("old-{i}");
        let body = body_of(&name, 4096);
        assert_eq!(put(&c, &format!("/c35/{name}"), &body), 201, "{name}");
        before.push((name, body));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = read_continuously(&c, "c35", &before, stop.clone());
    let load = Load::start(
        c.proxy_addr,
        c.token(),
        &format!("{}/load", c.account_path),
        LoadConfig {
            threads: 4,
            names_per_thread: 30,
            ..LoadConfig::default()
        },
    );
    std::thread::sleep(Duration::from_secs(1));

    let new = c.add_node();
    // New writes follow the new ring once the proxy reloads it.
    let mut probes = 0;
    let mut after = Vec::new();
    wait_until("a write on the new node", Duration::from_secs(60), || {
        let name = names_on(&c, "c35", &format!("new-{probes}"), new, 1).remove(0);
        probes += 1;
        let body = body_of(&name, 4096);
        assert_eq!(put(&c, &format!("/c35/{name}"), &body), 201, "{name}");
        let landed = data_file(&c, new, "c35", &name).is_some();
        after.push((name, body));
        landed
    });
    for _ in 0..2 {
        for daemon in [
            "object-replicator",
            "container-replicator",
            "account-replicator",
        ] {
            c.run_daemon_everywhere(daemon);
        }
    }
    let report = load.finish();
    stop.store(true, Ordering::Relaxed);
    let (reads, failures) = reader.join().unwrap();
    let elapsed = report.samples.last().map(|s| s.end).unwrap_or_default();
    let summary = summarize(&report.samples, elapsed.as_secs_f64());
    eprintln!(
        "node added under load: {} operations, {} failed or unanswered, {} stale reads; \
         {reads} reads of older objects; {probes} probe writes",
        summary.ops, summary.errors, report.stale_reads
    );
    assert!(reads > 0);
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "reads of older objects that failed"
    );
    let failed_gets = report
        .samples
        .iter()
        .filter(|s| s.op == Op::Get && s.status != 200 && s.status != 404)
        .count();
    assert_eq!(
        failed_gets, 0,
        "GETs of the load that failed or got no answer"
    );
    assert!(
        report.violations.is_empty(),
        "reads served bodies never written: {:?}",
        report.violations
    );

    c.converge();
    let moved = before
        .iter()
        .filter(|(n, _)| object_primaries(&c, "c35", n).1.contains(&new))
        .count();
    assert!(
        moved > 0,
        "some older objects have the new node as a primary"
    );
    let mut all = before.clone();
    all.extend(after);
    assert_home(&c, "c35", &all);
    assert_listed(&c, "c35", &all.iter().map(|(n, _)| n.clone()).collect());

    let mut existing = BTreeSet::new();
    for (name, states) in &report.ledger {
        let (status, body) = get(&c, &format!("/load/{name}"));
        let got: State = match status {
            200 => Some(md5_hex(&body)),
            404 => None,
            other => panic!("GET {name} after convergence: {other}"),
        };
        assert!(
            states.contains(&got),
            "{name}: {got:?}, the ledger allows {states:?}"
        );
        let (_, prim) = object_primaries(&c, "load", name);
        for h in non_primaries(&c, &prim) {
            assert_eq!(
                c.object_files(h, "load", name),
                Vec::<String>::new(),
                "{name} left on non-primary node {h}"
            );
        }
        if got.is_some() {
            assert_home(&c, "load", &[(name.clone(), body)]);
            existing.insert(name.clone());
        }
    }
    assert_listed(&c, "load", &existing);
}
