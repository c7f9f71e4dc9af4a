//! Cross-checks with Swift's own brokers (Python): databases written by
//! apus are read by Swift and the other way round, and listings agree.
//!
//! Needs Swift's Python: env `APUS_SWIFT_PYTHON`, by default
//! `$HOME/.cache/swift-ref/swift-venv/bin/python` (made by
//! `scripts/swift-ref.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use apus_db::{
    AccountBroker, BrokerOptions, ContainerBroker, ContainerRecord, ListParams, Listing, Metadata,
    ObjectRecord,
};
use common::*;
use serde_json::{json, Value};

const SCRIPT: &str = r#"
import json, sys
from swift.container.backend import ContainerBroker
from swift.account.backend import AccountBroker

req = json.load(open(sys.argv[1]))
out = {}
mode = req['mode']
if mode == 'read_container':
    b = ContainerBroker(req['path'])
    info = b.get_info()
    out['info'] = {k: info[k] for k in (
        'account', 'container', 'object_count', 'bytes_used', 'hash', 'id',
        'put_timestamp', 'delete_timestamp', 'status_changed_at',
        'storage_policy_index', 'x_container_sync_point1')}
    out['metadata'] = b.metadata
    # The column as stored, and as Swift itself would write that dict.
    out['raw_metadata'] = b.get_raw_metadata()
    out['swift_metadata_json'] = json.dumps(b.metadata)
    out['lists'] = []
    for q in req['queries']:
        rows = b.list_objects_iter(
            q['limit'], q['marker'], q['end_marker'], q['prefix'],
            q['delimiter'], path=q['path'], storage_policy_index=q['spi'],
            reverse=q['reverse'])
        out['lists'].append([list(r) for r in rows])
elif mode == 'read_account':
    b = AccountBroker(req['path'])
    info = b.get_info()
    out['info'] = {k: info[k] for k in (
        'account', 'container_count', 'object_count', 'bytes_used', 'hash',
        'id', 'put_timestamp')}
    out['policy'] = {str(k): v for k, v in b.get_policy_stats().items()}
    out['lists'] = []
    for q in req['queries']:
        rows = b.list_containers_iter(
            q['limit'], q['marker'], q['end_marker'], q['prefix'],
            q['delimiter'], reverse=q['reverse'])
        out['lists'].append([list(r) for r in rows])
elif mode == 'write_container':
    b = ContainerBroker(req['path'], account='AUTH_py', container='pc')
    b.initialize('0000000001.00000', 0)
    for o in req['objects']:
        b.put_object(o['name'], o['ts'], o['size'], o['ct'], o['etag'],
                     deleted=o['deleted'], storage_policy_index=o['spi'],
                     ctype_timestamp=o.get('cts'), meta_timestamp=o.get('mts'))
    b.update_metadata({'X-Container-Meta-Py': ('yes', '0000000002.00000')})
elif mode == 'write_account':
    b = AccountBroker(req['path'], account='AUTH_py')
    b.initialize('0000000001.00000')
    for c in req['containers']:
        # The account server passes header strings through.
        b.put_container(c['name'], c['put'], c['delete'], str(c['count']),
                        str(c['bytes']), c['spi'])
elif mode == 'account_items':
    out['rows'] = AccountBroker(req['path']).get_items_since(-1, 1000)
elif mode == 'account_merge':
    b = AccountBroker(req['path'], account='AUTH_py')
    if req['create']:
        b.initialize('0000000001.00000')
    b.merge_items(req['rows'], req['source'])
    info = b.get_info()
    out['info'] = {k: info[k] for k in (
        'container_count', 'object_count', 'bytes_used', 'hash')}
elif mode == 'account_put':
    b = AccountBroker(req['path'])
    for c in req['containers']:
        b.put_container(c['name'], c['put'], c['delete'], str(c['count']),
                        str(c['bytes']), c['spi'])
    info = b.get_info()
    out['info'] = {k: info[k] for k in (
        'container_count', 'object_count', 'bytes_used', 'hash')}
elif mode == 'info_container':
    info = ContainerBroker(req['path']).get_info()
    out['info'] = {k: info[k] for k in ('object_count', 'bytes_used', 'hash')}
elif mode == 'info_account':
    info = AccountBroker(req['path']).get_info()
    out['info'] = {k: info[k] for k in (
        'container_count', 'object_count', 'bytes_used', 'hash')}
elif mode == 'misc':
    from swift.common.utils import extract_swift_bytes
    from swift.common.utils.timestamp import encode_timestamps, Timestamp
    from swift.common.db import chexor
    out['ct'] = [list(extract_swift_bytes(c)) for c in req['cts']]
    out['ts'] = [encode_timestamps(*[Timestamp(t) for t in trio])
                 for trio in req['trios']]
    out['chexor'] = [chexor(*args) for args in req['chexor']]
json.dump(out, open(sys.argv[2], 'w'))
"#;

fn run_swift(dir: &Path, req: Value) -> Value {
    let python = swift_python();
    assert!(
        python.exists(),
        "Swift's Python not found at {} (set APUS_SWIFT_PYTHON or run scripts/swift-ref.sh)",
        python.display()
    );
    let script = dir.join("check.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let req_path = dir.join("req.json");
    let out_path = dir.join("out.json");
    std::fs::write(&req_path, serde_json::to_vec(&req).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&req_path)
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swift python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap()
}

/// A deterministic pseudo-random sequence (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

const NAMES: &[&str] = &[
    "a", "a/", "a//", "a/b", "a/b/", "a/b/c", "a/b0", "a/c", "a-b", "a0", "b", "b/x", "b/x/y",
    "c/é/1", "c/é/2", "c/éa", "c/z", "c/", "d😀", "d😀/x", "été", "été/1", "z", "zz/y/x",
    "\u{7f}x", "é-é", "ée", "/lead", "//", "x-y-z", "x-y", "x",
];

fn queries(rng: &mut Lcg, n: usize, with_path: bool) -> Vec<ListParams> {
    let prefixes: &[Option<&str>] = &[
        None,
        None,
        Some(""),
        Some("a"),
        Some("a/"),
        Some("c/é"),
        Some("é"),
        Some("x-"),
        Some("d😀"),
    ];
    let delims: &[Option<&str>] = &[None, Some("/"), Some("/"), Some("-"), Some("é"), Some("😀")];
    let markers: &[&str] = &["", "", "a/", "a/b", "b", "c/é/1", "c/", "d", "été", "a0"];
    let ends: &[&str] = &["", "", "b/x", "d", "c/é", "zz", "a/b/"];
    let paths: &[Option<&str>] = &[
        None,
        None,
        None,
        Some(""),
        Some("a"),
        Some("a/"),
        Some("c/é"),
        Some("c"),
        Some("a/b"),
        Some("zz"),
    ];
    let limits: &[usize] = &[1, 2, 3, 5, 10_000];
    (0..n)
        .map(|_| ListParams {
            limit: *rng.pick(limits),
            marker: rng.pick(markers).to_string(),
            end_marker: rng.pick(ends).to_string(),
            prefix: rng.pick(prefixes).map(str::to_string),
            delimiter: rng.pick(delims).map(str::to_string),
            path: if with_path {
                rng.pick(paths).map(str::to_string)
            } else {
                None
            },
            reverse: rng.next() & 1 == 0,
            allow_reserved: false,
        })
        .collect()
}

fn query_json(q: &ListParams, spi: i64) -> Value {
    json!({
        "limit": q.limit, "marker": q.marker, "end_marker": q.end_marker,
        "prefix": q.prefix, "delimiter": q.delimiter, "path": q.path,
        "reverse": q.reverse, "spi": spi,
    })
}

#[test]
fn swift_reads_apus_container_and_listings_agree() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    let mut rng = Lcg(7);
    for (i, n) in NAMES.iter().enumerate() {
        let t = 10 + i as u64;
        b.put_object(ObjectRecord::put(
            n,
            ts(t),
            i as u64,
            "text/plain; charset=utf-8",
            "e",
            0,
        ))
        .unwrap();
        if i % 5 == 0 {
            b.put_object(
                ObjectRecord::put(n, ts(t), i as u64, "image/png", "e", 0)
                    .with_timestamps(Some(ts(t + 100)), Some(ts(t + 200))),
            )
            .unwrap();
        }
    }
    b.put_object(ObjectRecord::put("\u{0}reserved", ts(5), 1, "a/b", "e", 0))
        .unwrap();
    b.put_object(ObjectRecord::put("b", ts(300), 1, "a/b", "e", 1))
        .unwrap();
    b.delete_object("a/c", ts(400), 0).unwrap();
    b.delete_object("never-existed", ts(400), 0).unwrap();
    let mut md = Metadata::new();
    md.insert("X-Container-Meta-Rust".into(), ("yes ✓".into(), ts(3)));
    md.insert(
        "X-Container-Read".into(),
        ("caf\u{e9} \u{1f600}, \"q\"\\".into(), ts(3)),
    );
    b.update_metadata(&md, true).unwrap();
    b.flush_pending().unwrap();
    // Leave a few updates in the pending file for Swift to merge.
    b.put_object(ObjectRecord::put("pending-1", ts(500), 11, "a/b", "e", 0))
        .unwrap();
    b.put_object(
        ObjectRecord::put("a", ts(10), 0, "late/type", "e", 0)
            .with_timestamps(Some(ts(600)), Some(ts(601))),
    )
    .unwrap();

    let qs = queries(&mut rng, 600, true);
    let mut req_qs: Vec<Value> = qs.iter().map(|q| query_json(q, 0)).collect();
    req_qs.push(query_json(&ListParams::default(), 1));
    let swift = run_swift(
        dir.path(),
        json!({"mode": "read_container", "path": b.path(), "queries": req_qs}),
    );
    let info = b.get_info().unwrap();
    let si = &swift["info"];
    assert_eq!(si["hash"], info.hash);
    assert_eq!(si["object_count"], info.object_count);
    assert_eq!(si["bytes_used"], info.bytes_used);
    assert_eq!(si["id"], info.id);
    assert_eq!(si["account"], "AUTH_test");
    assert_eq!(si["put_timestamp"], info.put_timestamp.internal());
    assert_eq!(si["storage_policy_index"], 0);
    assert_eq!(si["x_container_sync_point1"], -1);
    assert_eq!(
        swift["metadata"]["X-Container-Meta-Rust"],
        json!(["yes ✓", ts(3).internal()])
    );
    assert_eq!(
        swift["metadata"]["X-Container-Read"],
        json!(["caf\u{e9} \u{1f600}, \"q\"\\", ts(3).internal()])
    );
    // Non-ASCII metadata is stored byte for byte as Swift stores it.
    assert_eq!(swift["raw_metadata"], swift["swift_metadata_json"]);

    let mut all_qs = qs.clone();
    all_qs.push(ListParams::default());
    let (mut nonempty, mut subdirs) = (0, 0);
    for (i, q) in all_qs.iter().enumerate() {
        let spi = if i == qs.len() { 1 } else { 0 };
        let ours: Vec<Value> = b
            .list_objects(q, spi)
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Listing::Item(o) => json!([
                    o.name,
                    o.last_modified.internal(),
                    o.size,
                    o.content_type,
                    o.etag
                ]),
                Listing::Subdir(d) => json!([d, "0", 0, null, ""]),
            })
            .collect();
        nonempty += usize::from(!ours.is_empty());
        subdirs += ours.iter().filter(|r| r[3].is_null()).count();
        assert_eq!(Value::Array(ours), swift["lists"][i], "query {q:?}");
    }
    assert!(nonempty > 150 && subdirs > 20, "{nonempty} {subdirs}");
}

#[test]
fn swift_reads_apus_account_and_listings_agree() {
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    let mut rng = Lcg(11);
    for (i, n) in NAMES.iter().enumerate() {
        let i = i as i64;
        let deleted = i % 7 == 3;
        b.put_container(ContainerRecord::new(
            n,
            ts(10 + i as u64),
            if deleted { ts(20 + i as u64) } else { ts(0) },
            if deleted { 0 } else { i },
            i * 100,
            i % 2,
        ))
        .unwrap();
    }
    b.flush_pending().unwrap();
    // Left in the pending file for Swift, with apus's extra tuple element
    // (the stats timestamp), which Swift's loader ignores.
    b.put_container(
        ContainerRecord::new("pending", ts(50), ts(0), 3, 4, 0).with_stats_timestamp(ts(51)),
    )
    .unwrap();
    let qs = queries(&mut rng, 400, false);
    let req_qs: Vec<Value> = qs.iter().map(|q| query_json(q, 0)).collect();
    let swift = run_swift(
        dir.path(),
        json!({"mode": "read_account", "path": b.path(), "queries": req_qs}),
    );
    // Swift merged the pending entry (its own insert leaves the stats
    // timestamp at the column's default).
    assert_eq!(std::fs::metadata(b.pending_path()).unwrap().len(), 0);
    let row = b.get_container_row("pending").unwrap().unwrap();
    assert_eq!((row.object_count, row.stats_timestamp), (3, ts(0)));
    let info = b.get_info().unwrap();
    let si = &swift["info"];
    assert_eq!(si["hash"], info.hash);
    assert_eq!(si["container_count"], info.container_count);
    assert_eq!(si["object_count"], info.object_count);
    assert_eq!(si["bytes_used"], info.bytes_used);
    assert_eq!(si["id"], info.id);
    for (k, v) in b.get_policy_stats().unwrap() {
        let sp = &swift["policy"][k.to_string()];
        assert_eq!(sp["container_count"], v.container_count);
        assert_eq!(sp["object_count"], v.object_count);
        assert_eq!(sp["bytes_used"], v.bytes_used);
    }
    for (i, q) in qs.iter().enumerate() {
        let ours: Vec<Value> = b
            .list_containers(q)
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Listing::Item(c) => json!([
                    c.name,
                    c.object_count,
                    c.bytes_used,
                    c.put_timestamp.internal(),
                    c.storage_policy_index,
                    0
                ]),
                Listing::Subdir(d) => json!([d, 0, 0, "0", -1, 1]),
            })
            .collect();
        assert_eq!(Value::Array(ours), swift["lists"][i], "query {q:?}");
    }
}

#[test]
fn apus_reads_swift_container_with_pending_updates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sw").join("c.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let objects: Vec<Value> = (0..40)
        .map(|i| {
            let mut o = json!({
                "name": format!("o/{i}-ü"), "ts": ts(10 + i).internal(), "size": i,
                "ct": "text/plain", "etag": format!("e{i}"), "deleted": 0, "spi": 0,
            });
            if i % 4 == 0 {
                o["cts"] = json!(ts(100 + i).internal());
                o["mts"] = json!(ts(200 + i).internal());
            }
            if i % 9 == 0 {
                o["deleted"] = json!(1);
                o["ts"] = json!(ts(300 + i).internal());
            }
            o
        })
        .collect();
    run_swift(
        dir.path(),
        json!({"mode": "write_container", "path": path, "objects": objects}),
    );
    assert!(
        std::fs::metadata(format!("{}.pending", path.display()))
            .unwrap()
            .len()
            > 0
    );
    let b = ContainerBroker::open(&path, BrokerOptions::default()).unwrap();
    let info = b.get_info().unwrap();
    assert_eq!(info.account, "AUTH_py");
    assert_eq!(info.object_count, 40 - 5);
    assert_eq!(b.metadata().unwrap()["X-Container-Meta-Py"].0, "yes");
    let row = b.get_object_row("o/4-ü", 0).unwrap().unwrap();
    let t = row.timestamps().unwrap();
    assert_eq!((t.data, t.ctype, t.meta), (ts(14), ts(104), ts(204)));
    // Apus writes more; Swift agrees on the result.
    b.put_object(ObjectRecord::put("from-apus", ts(1000), 5, "a/b", "e", 0))
        .unwrap();
    b.flush_pending().unwrap();
    let info = b.get_info().unwrap();
    let swift = run_swift(dir.path(), json!({"mode": "info_container", "path": path}));
    assert_eq!(swift["info"]["hash"], info.hash);
    assert_eq!(swift["info"]["object_count"], info.object_count);
    assert_eq!(swift["info"]["bytes_used"], info.bytes_used);
}

#[test]
fn apus_reads_swift_account_with_pending_updates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sw").join("a.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let containers: Vec<Value> = (0..30)
        .map(|i| {
            let deleted = i % 6 == 0;
            json!({
                "name": format!("c-{i}-ñ"), "put": ts(10 + i).internal(),
                "delete": if deleted { ts(50 + i).internal() } else { "0".to_string() },
                "count": if deleted { 0 } else { i }, "bytes": i * 10, "spi": i % 2,
            })
        })
        .collect();
    run_swift(
        dir.path(),
        json!({"mode": "write_account", "path": path, "containers": containers}),
    );
    // Opening it adds apus's stats timestamp column.
    let b = AccountBroker::open(&path, BrokerOptions::default()).unwrap();
    let info = b.get_info().unwrap();
    assert_eq!(info.container_count, 25);
    let row = b.get_container_row("c-1-ñ").unwrap().unwrap();
    assert_eq!(row.stats_timestamp, ts(0));
    let swift = run_swift(dir.path(), json!({"mode": "info_account", "path": path}));
    assert_eq!(swift["info"]["hash"], info.hash);
    assert_eq!(swift["info"]["container_count"], info.container_count);
    assert_eq!(swift["info"]["object_count"], info.object_count);
    assert_eq!(swift["info"]["bytes_used"], info.bytes_used);
    // Swift keeps writing to it after the migration.
    b.put_container(
        ContainerRecord::new("c-1-ñ", ts(11), ts(0), 9, 90, 1).with_stats_timestamp(ts(70)),
    )
    .unwrap();
    b.flush_pending().unwrap();
    let more = json!([{"name": "from-swift", "put": ts(80).internal(), "delete": "0",
                       "count": 2, "bytes": 3, "spi": 0}]);
    let swift = run_swift(
        dir.path(),
        json!({"mode": "account_put", "path": path, "containers": more}),
    );
    let info = b.get_info().unwrap();
    assert_eq!(info.container_count, 26);
    assert_eq!(swift["info"]["hash"], info.hash);
    assert_eq!(swift["info"]["object_count"], info.object_count);
    assert_eq!(
        b.get_container_row("from-swift")
            .unwrap()
            .unwrap()
            .stats_timestamp,
        ts(0)
    );
    assert_eq!(
        b.get_container_row("c-1-ñ")
            .unwrap()
            .unwrap()
            .stats_timestamp,
        ts(70)
    );
}

/// Replication between apus and Swift: Swift's `SELECT *` rows of a file
/// apus wrote carry the stats timestamp, and Swift merges apus's rows
/// (which carry it as an extra key) into its own databases.
#[test]
fn swift_replicates_rows_with_stats_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    for (i, name) in ["a", "b/é", "c"].iter().enumerate() {
        let i = i as u64;
        b.put_container(
            ContainerRecord::new(name, ts(10 + i), ts(0), 1 + i as i64, 10, 0)
                .with_stats_timestamp(ts(20 + i)),
        )
        .unwrap();
    }
    b.put_container(ContainerRecord::new("d", ts(5), ts(6), 0, 0, 0))
        .unwrap();
    let ours = b.get_items_since(-1, 1000).unwrap();
    let swift = run_swift(
        dir.path(),
        json!({"mode": "account_items", "path": b.path()}),
    );
    let theirs: Vec<ContainerRecord> = serde_json::from_value(swift["rows"].clone()).unwrap();
    assert_eq!(theirs, ours);
    assert_eq!(theirs[1].stats_timestamp, ts(21));
    assert_eq!(theirs[3].stats_timestamp, ts(0));

    let path = dir.path().join("sw").join("a.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let swift = run_swift(
        dir.path(),
        json!({"mode": "account_merge", "path": path, "create": true,
               "rows": serde_json::to_value(&ours).unwrap(), "source": "apus-id"}),
    );
    let info = b.get_info().unwrap();
    assert_eq!(swift["info"]["hash"], info.hash);
    assert_eq!(swift["info"]["container_count"], info.container_count);
    assert_eq!(swift["info"]["object_count"], info.object_count);
    assert_eq!(swift["info"]["bytes_used"], info.bytes_used);
}

#[test]
fn encodings_match_swift() {
    let dir = tempfile::tempdir().unwrap();
    let cts = [
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain;swift_bytes=5",
        "a/b; x=\"q;r\" ; y",
        "a/b ;  k = v ;swift_bytes=12; z=1",
        "a/b; =x; k=/v; ; ü=ö",
        "a/b;x=\"unterminated",
        "a/b;;;",
        ";swift_bytes=3",
    ];
    let trios = [
        ["1402464677.04188", "1402464677.04188", "1402464677.04188"],
        ["1402464677.04188", "1402464678.04188", "1402464677.04190"],
        [
            "1402464677.04188_000000000000000a",
            "1402464677.04188",
            "1402464677.04189",
        ],
        ["0000000005.00000", "0000000004.00000", "0000000003.00000"],
        [
            "0000000005.00000_0000000000000001",
            "0000000005.00000",
            "0000000005.00000",
        ],
    ];
    let chex = [
        ["00000000000000000000000000000000", "o", "0000000001.00000"],
        ["ffffffffffffffffffffffffffffffff", "é/ü", "1+2-3"],
    ];
    let swift = run_swift(
        dir.path(),
        json!({"mode": "misc", "cts": cts, "trios": trios, "chexor": chex}),
    );
    for (i, ct) in cts.iter().enumerate() {
        let (t, sb) = apus_db::extract_swift_bytes(ct);
        assert_eq!(json!([t, sb]), swift["ct"][i], "{ct:?}");
    }
    for (i, trio) in trios.iter().enumerate() {
        let rt = apus_db::RowTimestamps {
            data: tsf(trio[0]),
            ctype: tsf(trio[1]),
            meta: tsf(trio[2]),
        };
        let enc = apus_db::encode_timestamps(&rt);
        assert_eq!(json!(enc), swift["ts"][i], "{trio:?}");
        let dec = apus_db::decode_timestamps(&enc).unwrap();
        assert_eq!(dec.data, rt.data);
        assert_eq!(dec.ctype.ticks(), rt.ctype.ticks());
        assert_eq!(dec.meta.ticks(), rt.meta.ticks());
    }
    for (i, c) in chex.iter().enumerate() {
        assert_eq!(json!(apus_db::chexor(c[0], c[1], c[2])), swift["chexor"][i]);
    }
}
