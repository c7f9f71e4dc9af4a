//! Fault scenarios on a real multi-process cluster (four storage nodes and
//! a proxy, see `support::cluster`): handoffs, wiped devices, bit rot,
//! last-write-wins, async pendings, tombstones, expiry, crashes, and a
//! ledger of every acknowledged write checked after convergence.
//! `cargo test --release scenario_` runs exactly these.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use support::cluster::{Kind, MultiCluster, Options, NODES};
use support::{md5_hex, serial};

fn body_of(name: &str) -> Vec<u8> {
    format!("contents of {name} ").repeat(7).into_bytes()
}

fn put(c: &MultiCluster, path: &str, body: &[u8], headers: &[(&str, &str)]) -> u16 {
    c.request("PUT", path, headers, body).0.status
}

fn get(c: &MultiCluster, path: &str) -> (u16, Vec<u8>) {
    let (head, body) = c.request("GET", path, &[], b"");
    (head.status, body)
}

fn get_newest(c: &MultiCluster, path: &str) -> (u16, Vec<u8>) {
    let (head, body) = c.request("GET", path, &[("X-Newest", "true")], b"");
    (head.status, body)
}

/// Node indexes that are not primaries of an object.
fn non_primaries(primaries: &[usize]) -> Vec<usize> {
    (0..NODES).filter(|i| !primaries.contains(i)).collect()
}

fn has_data(c: &MultiCluster, node: usize, container: &str, obj: &str) -> bool {
    c.object_files(node, container, obj)
        .iter()
        .any(|f| f.ends_with(".data"))
}

#[test]
fn scenario_1_handoff_round_trip() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c1", b"", &[]), 201);
    c.stop_node(0);
    let names: Vec<String> = (0..100).map(|i| format!("obj-{i}")).collect();
    for name in &names {
        assert_eq!(
            put(&c, &format!("/c1/{name}"), &body_of(name), &[]),
            201,
            "{name}"
        );
    }
    let account = c.account();
    let on_handoffs = names
        .iter()
        .filter(|n| {
            let (_, prim) = c.primaries(Kind::Object, &account, Some("c1"), Some(n));
            non_primaries(&prim)
                .iter()
                .any(|&h| has_data(&c, h, "c1", n))
        })
        .count();
    assert!(on_handoffs > 0, "some writes must have gone to a handoff");
    c.start_node(0);
    c.run_daemon_everywhere("object-replicator");
    for name in &names {
        let (_, prim) = c.primaries(Kind::Object, &account, Some("c1"), Some(name));
        for &p in &prim {
            assert!(
                has_data(&c, p, "c1", name),
                "{name} missing on primary node {p}"
            );
        }
        for h in non_primaries(&prim) {
            assert!(
                c.object_files(h, "c1", name).is_empty(),
                "{name} still on handoff node {h}"
            );
        }
        assert_eq!(get(&c, &format!("/c1/{name}")), (200, body_of(name)));
    }
}

#[test]
fn scenario_2_wiped_device() {
    let _serial = serial();
    let c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c2", b"", &[]), 201);
    let names: Vec<String> = (0..60).map(|i| format!("o{i}")).collect();
    for name in &names {
        assert_eq!(put(&c, &format!("/c2/{name}"), &body_of(name), &[]), 201);
    }
    let account = c.account();
    let wiped = 1;
    let lost: Vec<&String> = names
        .iter()
        .filter(|n| {
            c.primaries(Kind::Object, &account, Some("c2"), Some(n))
                .1
                .contains(&wiped)
        })
        .collect();
    assert!(!lost.is_empty());
    std::fs::remove_dir_all(c.nodes[wiped].device_path().join("objects")).unwrap();
    assert!(lost.iter().all(|n| !has_data(&c, wiped, "c2", n)));
    c.run_daemon_everywhere("object-replicator");
    for name in lost {
        assert!(has_data(&c, wiped, "c2", name), "{name} not restored");
        let files = c.object_files(wiped, "c2", name);
        let data = std::fs::read(c.object_dir(wiped, "c2", name).join(&files[0])).unwrap();
        assert_eq!(md5_hex(&data), md5_hex(&body_of(name)));
    }
}

#[test]
fn scenario_3_bit_rot() {
    let _serial = serial();
    let c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c3", b"", &[]), 201);
    let account = c.account();
    let body = body_of("rotting").repeat(50);
    for name in ["read-me", "audit-me"] {
        assert_eq!(put(&c, &format!("/c3/{name}"), &body, &[]), 201);
    }
    let flip = |name: &str| -> usize {
        let (_, prim) = c.primaries(Kind::Object, &account, Some("c3"), Some(name));
        let node = prim[0];
        let dir = c.object_dir(node, "c3", name);
        let data = c
            .object_files(node, "c3", name)
            .into_iter()
            .find(|f| f.ends_with(".data"))
            .unwrap();
        let path = dir.join(data);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0x01;
        // Rewrite in place, keeping the xattrs that hold the metadata.
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&bytes).unwrap();
        f.sync_all().unwrap();
        node
    };
    // Reads: never the corrupted bytes with a 200 and a full body. The
    // read that finds the corruption may end the connection before the
    // last chunk, or, when the whole object is that chunk, before any
    // status line reaches the client.
    flip("read-me");
    for _ in 0..6 {
        let Some((head, got)) = c.try_request("GET", "/c3/read-me", &[], b"") else {
            continue;
        };
        if head.status == 200 && got.len() == body.len() {
            assert_eq!(
                md5_hex(&got),
                md5_hex(&body),
                "a 200 with a full body must be the good data"
            );
        }
    }
    // The auditor finds the other one.
    let bad = flip("audit-me");
    let stats = c.run_daemon(bad, "object-auditor");
    assert_eq!(stats["counts"]["quarantined"], 1, "{stats}");
    let hash = c.hash.hash_path(&account, Some("c3"), Some("audit-me"));
    assert!(c.nodes[bad]
        .device_path()
        .join("quarantined/objects")
        .join(&hash)
        .exists());
    assert!(!has_data(&c, bad, "c3", "audit-me"));
    // Replication restores three good copies of both.
    c.run_daemon_everywhere("object-replicator");
    for name in ["read-me", "audit-me"] {
        let (_, prim) = c.primaries(Kind::Object, &account, Some("c3"), Some(name));
        for p in prim {
            let files = c.object_files(p, "c3", name);
            let data = files
                .iter()
                .find(|f| f.ends_with(".data"))
                .unwrap_or_else(|| panic!("{name} missing on node {p}"));
            let bytes = std::fs::read(c.object_dir(p, "c3", name).join(data)).unwrap();
            assert_eq!(md5_hex(&bytes), md5_hex(&body), "{name} on node {p}");
        }
        assert_eq!(get(&c, &format!("/c3/{name}")), (200, body.clone()));
    }
}

/// Metadata of an object as one primary's object server has it.
fn direct_head(c: &MultiCluster, node: usize, container: &str, obj: &str) -> support::Head {
    let account = c.account();
    let (part, _) = c.primaries(Kind::Object, &account, Some(container), Some(obj));
    c.direct(
        node,
        Kind::Object,
        part,
        "HEAD",
        &format!("/{account}/{container}/{obj}"),
        &[],
    )
    .0
}

#[test]
fn scenario_4_last_write_wins() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c4", b"", &[]), 201);
    let account = c.account();

    // Data, metadata and content-type resolve independently.
    let (_, p) = c.primaries(Kind::Object, &account, Some("c4"), Some("meta"));
    assert_eq!(
        put(
            &c,
            "/c4/meta",
            b"version one",
            &[("Content-Type", "text/a")]
        ),
        201
    );
    c.stop_node(p[2]);
    let (h, _) = c.request(
        "POST",
        "/c4/meta",
        &[("X-Object-Meta-Color", "red"), ("Content-Type", "text/b")],
        b"",
    );
    assert_eq!(h.status, 202);
    c.start_node(p[2]);
    c.stop_node(p[0]);
    let (h, _) = c.request("POST", "/c4/meta", &[("X-Object-Meta-Size", "big")], b"");
    assert_eq!(h.status, 202);
    c.start_node(p[0]);

    // A newer PUT on a subset beats the older data everywhere.
    let (_, q) = c.primaries(Kind::Object, &account, Some("c4"), Some("data"));
    assert_eq!(put(&c, "/c4/data", b"old data", &[]), 201);
    c.stop_node(q[1]);
    assert_eq!(put(&c, "/c4/data", b"new data", &[]), 201);
    c.start_node(q[1]);

    // A DELETE beats an older POST.
    let (_, r) = c.primaries(Kind::Object, &account, Some("c4"), Some("gone"));
    assert_eq!(put(&c, "/c4/gone", b"doomed", &[]), 201);
    c.stop_node(r[2]);
    let (h, _) = c.request("POST", "/c4/gone", &[("X-Object-Meta-Late", "yes")], b"");
    assert_eq!(h.status, 202);
    c.start_node(r[2]);
    c.stop_node(r[0]);
    assert_eq!(c.request("DELETE", "/c4/gone", &[], b"").0.status, 204);
    c.start_node(r[0]);

    c.converge();
    for &n in &p {
        let h = direct_head(&c, n, "c4", "meta");
        assert_eq!(h.status, 200, "node {n}");
        assert_eq!(
            h.header("content-type"),
            Some("text/b"),
            "content-type on node {n}"
        );
        assert_eq!(
            h.header("x-object-meta-size"),
            Some("big"),
            "newest metadata on node {n}"
        );
        assert_eq!(
            h.header("x-object-meta-color"),
            None,
            "older metadata on node {n}"
        );
        assert_eq!(
            h.header("etag").map(|e| e.trim_matches('"').to_string()),
            Some(md5_hex(b"version one"))
        );
    }
    for &n in &q {
        let h = direct_head(&c, n, "c4", "data");
        assert_eq!(
            h.header("etag").map(|e| e.trim_matches('"').to_string()),
            Some(md5_hex(b"new data")),
            "node {n}"
        );
    }
    for &n in &r {
        assert_eq!(direct_head(&c, n, "c4", "gone").status, 404, "node {n}");
    }
    assert_eq!(get(&c, "/c4/data"), (200, b"new data".to_vec()));
    assert_eq!(get(&c, "/c4/gone").0, 404);
    let (h, body) = c.request("GET", "/c4/meta", &[], b"");
    assert_eq!(
        (h.status, body.as_slice()),
        (200, b"version one".as_slice())
    );
    assert_eq!(h.header("content-type"), Some("text/b"));
}

#[test]
fn scenario_5_async_pendings() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c5", b"", &[]), 201);
    let account = c.account();
    let (_, cprim) = c.primaries(Kind::Container, &account, Some("c5"), None);
    c.stop_node(cprim[0]);
    c.stop_node(cprim[1]);
    let mut bytes = 0;
    for i in 0..200 {
        let name = format!("p{i:03}");
        let body = body_of(&name);
        bytes += body.len();
        assert_eq!(put(&c, &format!("/c5/{name}"), &body, &[]), 201, "{name}");
    }
    let pendings: usize = (0..4)
        .filter(|&i| c.is_running(i))
        .map(|i| count_files(&c.nodes[i].device_path().join("async_pending")))
        .sum();
    assert!(
        pendings > 0,
        "updates to the stopped container servers must wait on disk"
    );
    c.start_node(cprim[0]);
    c.start_node(cprim[1]);
    c.run_daemon_everywhere("object-updater");
    let expected: Vec<String> = (0..200).map(|i| format!("p{i:03}")).collect();
    for &n in &cprim {
        assert_eq!(
            c.container_replica_listing(n, "c5"),
            expected,
            "container replica on node {n}"
        );
    }
    let left: usize = (0..4)
        .map(|i| count_files(&c.nodes[i].device_path().join("async_pending")))
        .sum();
    assert_eq!(left, 0, "delivered pendings are removed");
    c.run_daemon_everywhere("container-updater");
    let (apart, aprim) = c.primaries(Kind::Account, &account, None, None);
    for &n in &aprim {
        let (h, _) = c.direct(n, Kind::Account, apart, "HEAD", &format!("/{account}"), &[]);
        assert_eq!(
            h.header("x-account-object-count"),
            Some("200"),
            "account replica on node {n}"
        );
        assert_eq!(
            h.header("x-account-bytes-used"),
            Some(bytes.to_string().as_str()),
            "node {n}"
        );
    }
}

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
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

#[test]
fn scenario_6_tombstones() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options {
        reclaim_age: 3.0,
        ..Options::default()
    });
    assert_eq!(put(&c, "/c6", b"", &[]), 201);
    let account = c.account();
    let (_, p) = c.primaries(Kind::Object, &account, Some("c6"), Some("ghost"));
    assert_eq!(put(&c, "/c6/ghost", b"boo", &[]), 201);
    c.stop_node(p[0]);
    assert_eq!(c.request("DELETE", "/c6/ghost", &[], b"").0.status, 204);
    c.start_node(p[0]);
    assert!(
        has_data(&c, p[0], "c6", "ghost"),
        "the returning node still has the old data"
    );
    // Before replication: a read that consults every replica sees the delete.
    assert_eq!(get_newest(&c, "/c6/ghost").0, 404);
    assert_eq!(
        c.request("HEAD", "/c6/ghost", &[("X-Newest", "true")], b"")
            .0
            .status,
        404
    );
    c.run_daemon_everywhere("object-replicator");
    for &n in &p {
        assert!(
            !has_data(&c, n, "c6", "ghost"),
            "data came back on node {n}"
        );
    }
    for _ in 0..5 {
        assert_eq!(get(&c, "/c6/ghost").0, 404);
    }
    c.run_daemon_everywhere("object-updater");
    c.run_daemon_everywhere("container-replicator");
    let (h, listing) = c.request("GET", "/c6?format=json", &[("X-Newest", "true")], b"");
    assert!(h.status == 200 || h.status == 204);
    assert!(!String::from_utf8_lossy(&listing).contains("ghost"));
    // Past reclaim_age the tombstones go too: as in Swift, the auditor
    // marks their suffixes and the replicator's rehash reclaims them.
    std::thread::sleep(std::time::Duration::from_secs(4));
    c.run_daemon_everywhere("object-auditor");
    c.run_daemon_everywhere("object-replicator");
    for n in 0..NODES {
        assert!(
            c.object_files(n, "c6", "ghost").is_empty(),
            "tombstone left on node {n}"
        );
    }
    assert_eq!(get(&c, "/c6/ghost").0, 404);
}

#[test]
fn scenario_7_expiry() {
    let _serial = serial();
    let c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c7", b"", &[]), 201);
    assert_eq!(
        put(&c, "/c7/brief", b"soon gone", &[("X-Delete-After", "1")]),
        201
    );
    assert_eq!(put(&c, "/c7/lasting", b"stays", &[]), 201);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        get(&c, "/c7/brief").0,
        404,
        "expired objects are not served"
    );
    // The queue's task containers reach the hidden account's listing
    // through the container updater, as in Swift.
    c.run_daemon_everywhere("container-updater");
    let stats = c.run_daemon(0, "object-expirer");
    assert_eq!(stats["counts"]["objects"], 1, "{stats}");
    let (h, listing) = c.request("GET", "/c7", &[("X-Newest", "true")], b"");
    assert_eq!(h.status, 200);
    assert_eq!(String::from_utf8_lossy(&listing).trim(), "lasting");
    assert_eq!(get(&c, "/c7/lasting"), (200, b"stays".to_vec()));
}

#[test]
fn scenario_8_crash_mid_put() {
    use std::io::{BufReader, Write};
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c8", b"", &[]), 201);
    let account = c.account();
    let (_, p) = c.primaries(Kind::Object, &account, Some("c8"), Some("big"));
    const SIZE: usize = 64 << 20;
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let mut md5 = Md5::new();
    let len = SIZE.to_string();
    let full = format!("{}/c8/big", c.account_path);
    let tok = c.token().to_string();
    let mut conn = support::send_head(
        c.proxy_addr,
        "PUT",
        &full,
        &[("X-Auth-Token", &tok), ("Content-Length", &len)],
        std::time::Duration::from_secs(120),
    );
    let mut sent = 0;
    let mut killed = false;
    while sent < SIZE {
        if !killed && sent >= SIZE / 2 {
            c.kill_node(p[0]);
            killed = true;
        }
        if conn.write_all(&chunk).is_err() {
            break;
        }
        md5.update(&chunk);
        sent += chunk.len();
    }
    let status = if sent == SIZE {
        support::read_head(&mut BufReader::new(conn)).status
    } else {
        0
    };
    c.start_node(p[0]);
    let tmp = c.nodes[p[0]].device_path().join("tmp");
    assert_eq!(count_files(&tmp), 0, "temp files left after the restart");
    let expected = format!("{:x}", md5.finalize());
    let node_copy = c.object_files(p[0], "c8", "big");
    assert!(
        !node_copy.iter().any(|f| f.ends_with(".data")),
        "the killed node must not hold a partial object: {node_copy:?}"
    );
    let (h, body) = c.request("GET", "/c8/big", &[], b"");
    if status == 201 {
        assert_eq!(h.status, 200);
        assert_eq!(format!("{:x}", Md5::digest(&body)), expected);
        c.run_daemon_everywhere("object-replicator");
        assert!(
            has_data(&c, p[0], "c8", "big"),
            "replication completes the killed node"
        );
    } else {
        assert_eq!(
            h.status, 404,
            "an unacknowledged upload is not served (upload status {status})"
        );
    }
}

#[test]
fn scenario_9_ledger() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c9", b"", &[]), 201);
    // name -> Some(body) when the last acknowledged write was a PUT.
    let mut ledger: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let write = |c: &MultiCluster,
                 ledger: &mut BTreeMap<String, Option<Vec<u8>>>,
                 name: String,
                 body: Vec<u8>| {
        let status = put(c, &format!("/c9/{name}"), &body, &[]);
        if (200..300).contains(&status) {
            ledger.insert(name, Some(body));
        }
    };
    for i in 0..30 {
        write(&c, &mut ledger, format!("a{i}"), body_of(&format!("a{i}")));
    }
    c.stop_node(1);
    for i in 0..30 {
        write(&c, &mut ledger, format!("b{i}"), body_of(&format!("b{i}")));
    }
    for i in 0..10 {
        write(
            &c,
            &mut ledger,
            format!("a{i}"),
            body_of(&format!("a{i} v2")),
        );
    }
    for i in 10..20 {
        let status = c.request("DELETE", &format!("/c9/a{i}"), &[], b"").0.status;
        if (200..300).contains(&status) {
            ledger.insert(format!("a{i}"), None);
        }
    }
    c.start_node(1);
    c.kill_node(2);
    for i in 0..20 {
        write(&c, &mut ledger, format!("c{i}"), body_of(&format!("c{i}")));
    }
    for i in 0..5 {
        let status = c.request("DELETE", &format!("/c9/b{i}"), &[], b"").0.status;
        if (200..300).contains(&status) {
            ledger.insert(format!("b{i}"), None);
        }
    }
    c.start_node(2);
    // And a device wiped on top of it all.
    std::fs::remove_dir_all(c.nodes[3].device_path().join("objects")).ok();
    c.converge();
    let live: Vec<String> = ledger
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    assert!(live.len() > 50);
    for (name, want) in &ledger {
        let (status, body) = get(&c, &format!("/c9/{name}"));
        match want {
            Some(b) => assert_eq!((status, md5_hex(&body)), (200, md5_hex(b)), "{name}"),
            None => assert_eq!(status, 404, "{name} was deleted"),
        }
    }
    let account = c.account();
    let (_, cprim) = c.primaries(Kind::Container, &account, Some("c9"), None);
    for &n in &cprim {
        assert_eq!(
            c.container_replica_listing(n, "c9"),
            live,
            "container replica on node {n}"
        );
    }
    let bytes: usize = ledger.values().flatten().map(|b| b.len()).sum();
    let (apart, aprim) = c.primaries(Kind::Account, &account, None, None);
    for &n in &aprim {
        let (h, _) = c.direct(n, Kind::Account, apart, "HEAD", &format!("/{account}"), &[]);
        assert_eq!(
            h.header("x-account-object-count"),
            Some(live.len().to_string().as_str()),
            "account on node {n}"
        );
        assert_eq!(
            h.header("x-account-bytes-used"),
            Some(bytes.to_string().as_str()),
            "account on node {n}"
        );
    }
}

#[test]
fn slo_async_delete_leaves_the_segments_to_the_expirer() {
    let _serial = serial();
    let c = MultiCluster::start(Options::default());
    assert_eq!(put(&c, "/c10", b"", &[]), 201);
    assert_eq!(put(&c, "/c10seg", b"", &[]), 201);
    let mut manifest = Vec::new();
    for (name, data) in [("s1", &b"first"[..]), ("s2", &b"second"[..])] {
        assert_eq!(put(&c, &format!("/c10seg/{name}"), data, &[]), 201);
        manifest.push(serde_json::json!({
            "path": format!("/c10seg/{name}"),
            "etag": md5_hex(data),
            "size_bytes": data.len(),
        }));
    }
    let body = serde_json::Value::Array(manifest).to_string();
    assert_eq!(
        put(&c, "/c10/big?multipart-manifest=put", body.as_bytes(), &[]),
        201
    );
    assert_eq!(get(&c, "/c10/big"), (200, b"firstsecond".to_vec()));
    let (h, _) = c.request(
        "DELETE",
        "/c10/big?multipart-manifest=delete&async=yes",
        &[],
        b"",
    );
    assert_eq!(h.status, 204);
    // The manifest is gone at once; the segments wait for the expirer.
    assert_eq!(get(&c, "/c10/big").0, 404);
    assert_eq!(get(&c, "/c10seg/s1").0, 200);
    c.run_daemon_everywhere("container-updater");
    let stats = c.run_daemon(0, "object-expirer");
    assert_eq!(stats["counts"]["objects"], 2, "{stats}");
    assert_eq!(get_newest(&c, "/c10seg/s1").0, 404);
    assert_eq!(get_newest(&c, "/c10seg/s2").0, 404);
    // Segments in several containers cannot be queued as one job.
    assert_eq!(put(&c, "/c10other", b"", &[]), 201);
    assert_eq!(put(&c, "/c10seg/s3", b"third", &[]), 201);
    assert_eq!(put(&c, "/c10other/s4", b"fourth", &[]), 201);
    let body = serde_json::json!([
        {"path": "/c10seg/s3", "etag": md5_hex(b"third"), "size_bytes": 5},
        {"path": "/c10other/s4", "etag": md5_hex(b"fourth"), "size_bytes": 6},
    ])
    .to_string();
    assert_eq!(
        put(&c, "/c10/two?multipart-manifest=put", body.as_bytes(), &[]),
        201
    );
    let (h, text) = c.request(
        "DELETE",
        "/c10/two?multipart-manifest=delete&async=yes",
        &[],
        b"",
    );
    assert_eq!(h.status, 400);
    assert!(
        String::from_utf8_lossy(&text).starts_with("All segments must be in one container."),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert_eq!(get(&c, "/c10/two").0, 200);
}
