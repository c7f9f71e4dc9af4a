//! Compatibility with Swift 2.38.3 itself: the same files read the same
//! way by apus and by Swift's own code (run through its python).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use apus_diskfile::{
    read_async_pending, read_metadata, remove_async_pending, write_metadata_xattrs, AsyncUpdate,
    Metadata, OpenOptions,
};
use common::*;
use serde_json::Value as Json;

/// Text metadata as JSON (every value here is UTF-8).
fn to_json(md: &Metadata) -> String {
    let map: serde_json::Map<String, Json> = md
        .iter()
        .map(|(k, v)| {
            let v = std::str::from_utf8(v).unwrap();
            (k.to_string(), Json::String(v.to_string()))
        })
        .collect();
    Json::Object(map).to_string()
}

fn from_json(v: &Json) -> Metadata {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn sorted(md: &Metadata) -> BTreeMap<String, Vec<u8>> {
    md.iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sample_metadata() -> Metadata {
    let mut md = Metadata::new();
    md.insert("name", "/AUTH_test/\u{2603}/caf\u{e9} \u{1f600}");
    md.insert("X-Timestamp", "1700000000.12345");
    md.insert("Content-Type", "text/plain; charset=utf-8");
    md.insert("Content-Length", "0");
    md.insert("ETag", "d41d8cd98f00b204e9800998ecf8427e");
    md.insert("X-Object-Meta-Snow\u{2603}", "\u{2744} \u{e9}t\u{e9}");
    md.insert("X-Object-Meta-Empty", "");
    md.insert("X-Object-Meta-Long", "l".repeat(600));
    md.insert("X-Object-Sysmeta-Thing", "v");
    md
}

#[test]
fn metadata_round_trips_through_swift() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("apus-wrote");
    let theirs = dir.path().join("swift-wrote");
    let theirs_old = dir.path().join("swift-wrote-254");
    fs::write(&ours, b"").unwrap();
    let md = sample_metadata();
    write_metadata_xattrs(&ours, &md).unwrap();
    let script = r#"
from swift.obj.diskfile import read_metadata, write_metadata
from swift.common.swob import str_to_wsgi
ours, theirs, theirs_old, expected = sys.argv[1:5]
expected = json.loads(expected)
# What Swift's object server holds in memory: name as text, headers as
# WSGI strings.
swift_form = {(k if k == 'name' else str_to_wsgi(k)):
              (v if k == 'name' else str_to_wsgi(v))
              for k, v in expected.items()}
with open(ours, 'rb') as f:
    got = read_metadata(f)
assert got == swift_form, (got, swift_form)
with open(theirs, 'wb') as f:
    write_metadata(f, swift_form)
with open(theirs_old, 'wb') as f:
    write_metadata(f, swift_form, xattr_size=254)
print('ok')
"#;
    let out = run_python(
        script,
        &[
            ours.to_str().unwrap(),
            theirs.to_str().unwrap(),
            theirs_old.to_str().unwrap(),
            &to_json(&md),
        ],
    );
    assert_eq!(out.trim(), "ok");
    assert_eq!(sorted(&read_metadata(&theirs).unwrap()), sorted(&md));
    assert_eq!(sorted(&read_metadata(&theirs_old).unwrap()), sorted(&md));
}

/// Header values that are not UTF-8: Swift stores the bytes, and reads
/// back what apus wrote as those same bytes (and the other way round),
/// with the pickle byte for byte what Swift writes.
#[test]
fn non_utf8_metadata_round_trips_through_swift() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("apus-wrote");
    let theirs = dir.path().join("swift-wrote");
    fs::write(&ours, b"").unwrap();
    let mut md = Metadata::new();
    md.insert("name", "/AUTH_test/c/caf\u{e9}");
    md.insert("X-Timestamp", "1700000000.12345");
    md.insert("X-Object-Meta-Raw", b"\xff\xfe".to_vec());
    md.insert("X-Object-Meta-Mixed", b"caf\xc3\xa9 \x80!".to_vec());
    md.insert(
        "Content-Disposition",
        b"attachment; filename=\xe9t\xe9".to_vec(),
    );
    write_metadata_xattrs(&ours, &md).unwrap();
    // Keys and values as hex: name as text, the rest as the header bytes.
    let expected: Vec<(String, String)> = md.iter().map(|(k, v)| (k.to_string(), hex(v))).collect();
    let script = r#"
import pickle, xattr
from swift.obj.diskfile import (read_metadata, write_metadata,
                                _encode_metadata, PICKLE_PROTOCOL)
from swift.common.swob import bytes_to_wsgi
ours, theirs, expected = sys.argv[1:4]
expected = json.loads(expected)
# Swift's object server holds the name as text, headers as WSGI strings.
swift_form = {}
for k, v in expected:
    raw = bytes.fromhex(v)
    swift_form[k] = raw.decode('utf8') if k == 'name' else bytes_to_wsgi(raw)
with open(ours, 'rb') as f:
    got = read_metadata(f)
assert got == swift_form, (got, swift_form)
stored = xattr.getxattr(ours, 'user.swift.metadata')
assert stored == pickle.dumps(_encode_metadata(swift_form), PICKLE_PROTOCOL), stored
with open(theirs, 'wb') as f:
    write_metadata(f, swift_form)
print('ok')
"#;
    let out = run_python(
        script,
        &[
            ours.to_str().unwrap(),
            theirs.to_str().unwrap(),
            &serde_json::to_string(&expected).unwrap(),
        ],
    );
    assert_eq!(out.trim(), "ok");
    let back = read_metadata(&theirs).unwrap();
    assert_eq!(back.get_bytes("X-Object-Meta-Raw"), Some(&b"\xff\xfe"[..]));
    assert_eq!(sorted(&back), sorted(&md));
}

#[test]
fn swift_opens_what_apus_wrote_and_back() {
    let env = Env::new();
    let root = env.root.path().to_str().unwrap().to_string();
    let obj = "caf\u{e9}/\u{2603}";
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", obj, 0).unwrap();
    let t1 = recent(30.0);
    let t2 = recent(20.0);
    let body = b"hello from apus".repeat(1000);
    let mut w = df.create(Some(body.len() as u64)).unwrap();
    w.write(&body).unwrap();
    let mut md = put_metadata(&t1, &body);
    md.insert("X-Object-Meta-Who", "apus \u{2603}");
    md.insert("X-Object-Sysmeta-Keep", "k");
    w.put(md).unwrap();
    let mut post = Metadata::new();
    post.insert("X-Timestamp", t2.internal());
    post.insert("X-Object-Meta-Posted", "\u{e9}");
    post.insert("Content-Type", "image/gif");
    post.insert("Content-Type-Timestamp", t2.internal());
    df.write_metadata(post).unwrap();
    let ours = df.open(OpenOptions::default()).unwrap();
    let our_md = sorted(ours.metadata());
    let mut our_body = Vec::new();
    ours.reader().read_to_end(&mut our_body).unwrap();
    assert_eq!(our_body, body);

    let t3 = recent(10.0);
    let t4 = recent(5.0);
    let script = r#"
from swift.obj.diskfile import DiskFileManager
from swift.common.storage_policy import POLICIES
from swift.common.swob import wsgi_to_str, str_to_wsgi
from swift.common.utils import md5
root, obj, t3, t4 = sys.argv[1:5]
mgr = DiskFileManager({'devices': root, 'mount_check': 'false'},
                      logging.getLogger())
df = mgr.get_diskfile('sda', '7', 'AUTH_a', 'c', obj, POLICIES[0])
with df.open():
    md = df.get_metadata()
    body = b''.join(df.reader())
seen = {(k if k == 'name' else wsgi_to_str(k)):
        (v if k == 'name' else wsgi_to_str(v)) for k, v in md.items()}
# Swift writes an object of its own, then POSTs to it.
df2 = mgr.get_diskfile('sda', '7', 'AUTH_a', 'c', 'from-swift', POLICIES[0])
payload = b'hello from swift'
with df2.create() as w:
    w.write(payload)
    w.put({'X-Timestamp': t3, 'Content-Type': 'text/plain',
           'Content-Length': str(len(payload)),
           'ETag': md5(payload, usedforsecurity=False).hexdigest(),
           'X-Object-Meta-Who': str_to_wsgi('swift \u2603')})
df2.write_metadata({'X-Timestamp': t4,
                    'X-Object-Meta-Posted': str_to_wsgi('\u00e9'),
                    'Content-Type': 'image/png',
                    'Content-Type-Timestamp': t4})
print(json.dumps({'md': seen, 'body_md5': md5(body, usedforsecurity=False).hexdigest()}))
"#;
    let out = run_python(script, &[&root, obj, &t3.internal(), &t4.internal()]);
    let v: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(v["body_md5"].as_str().unwrap(), md5_hex(&body));
    assert_eq!(sorted(&from_json(&v["md"])), our_md);
    assert_eq!(our_md["Content-Type"], b"image/gif");
    assert_eq!(our_md["X-Object-Meta-Posted"], "\u{e9}".as_bytes());

    let df2 = env
        .mgr
        .diskfile("sda", 7, "AUTH_a", "c", "from-swift", 0)
        .unwrap();
    let theirs = df2.open(OpenOptions::default()).unwrap();
    let md = theirs.metadata().clone();
    assert_eq!(md.get("X-Object-Meta-Posted"), Some("\u{e9}"));
    assert_eq!(md.get("X-Object-Meta-Who"), None, "replaced by the POST");
    assert_eq!(
        theirs.datafile_metadata().get("X-Object-Meta-Who"),
        Some("swift \u{2603}")
    );
    assert_eq!(md.content_type(), Some("image/png"));
    assert_eq!(theirs.content_type_timestamp(), t4);
    assert_eq!(theirs.timestamp(), t4);
    assert_eq!(md.name(), Some("/AUTH_a/c/from-swift"));
    let mut b = String::new();
    theirs.reader().read_to_string(&mut b).unwrap();
    assert_eq!(b, "hello from swift");
}

/// Every file under `dir`, relative, except lock files and the hash cache.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".lock" || name == "hashes.pkl" {
                continue;
            }
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn suffix_hashes_match_swift() {
    let env = Env::new();
    let mgr = &env.mgr;
    let obj_df = |o: &str| mgr.diskfile("sda", 7, "AUTH_a", "c", o, 0).unwrap();
    let put = |o: &str, t: &apus_core::Timestamp| {
        let mut w = obj_df(o).create(None).unwrap();
        w.write(o.as_bytes()).unwrap();
        w.put(put_metadata(t, o.as_bytes())).unwrap();
    };
    let post = |o: &str, t: &apus_core::Timestamp, ctype: bool| {
        let mut m = Metadata::new();
        m.insert("X-Timestamp", t.internal());
        m.insert("X-Object-Meta-X", "y");
        if ctype {
            m.insert("Content-Type", "text/x");
            m.insert("Content-Type-Timestamp", t.internal());
        }
        obj_df(o).write_metadata(m).unwrap();
    };
    for i in 0..40 {
        put(&format!("plain-{i}"), &recent(100.0 + f64::from(i)));
    }
    put("with-meta", &recent(50.0));
    post("with-meta", &recent(40.0), false);
    put("with-ctype", &recent(50.0));
    post("with-ctype", &recent(40.0), true);
    post("with-ctype", &recent(30.0), false);
    put("deleted", &recent(50.0));
    obj_df("deleted").delete(recent(45.0)).unwrap();
    // Hand-made leftovers: an old tombstone and an old stray .meta (both
    // reclaimable), an unexpected file and a .data with an offset.
    let old = obj_df("old-ts");
    fs::create_dir_all(old.hash_dir()).unwrap();
    fs::write(old.hash_dir().join("1000000000.00000.ts"), b"").unwrap();
    let stray = obj_df("stray-meta");
    fs::create_dir_all(stray.hash_dir()).unwrap();
    fs::write(stray.hash_dir().join("1000000000.00000.meta"), b"").unwrap();
    fs::write(obj_df("plain-1").hash_dir().join("junk"), b"").unwrap();
    let off = obj_df("offset");
    fs::create_dir_all(off.hash_dir()).unwrap();
    fs::write(
        off.hash_dir()
            .join(format!("{}.data", recent(20.0).with_offset(5).internal())),
        b"",
    )
    .unwrap();

    // Swift works on an identical copy.
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(env.dev())
        .arg(env.root.path().join("sdb"))
        .status()
        .unwrap();
    assert!(status.success());

    let ours = mgr.get_hashes("sda", 7, 0, &[]).unwrap();
    assert!(ours.len() > 10);
    let script = r#"
from swift.obj.diskfile import DiskFileManager, read_hashes
from swift.common.storage_policy import POLICIES
root = sys.argv[1]
mgr = DiskFileManager({'devices': root, 'mount_check': 'false'},
                      logging.getLogger())
theirs = mgr.get_hashes('sdb', '7', [], POLICIES[0])
# Swift reading the hashes.pkl apus wrote.
cached = read_hashes(os.path.join(root, 'sda', 'objects', '7'))
yielded = {h: {k: v.internal for k, v in d.items() if k != 'durable'}
           for h, d in mgr.yield_hashes('sdb', '7', POLICIES[0])}
print(json.dumps({'theirs': theirs, 'cached': cached, 'yielded': yielded}))
"#;
    let out = run_python(script, &[env.root.path().to_str().unwrap()]);
    let v: Json = serde_json::from_str(&out).unwrap();
    let as_map = |j: &Json| -> BTreeMap<String, Option<String>> {
        j.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.len() == 3)
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
            .collect()
    };
    assert_eq!(
        as_map(&v["theirs"]),
        ours,
        "suffix hashes differ from Swift's"
    );
    assert_eq!(as_map(&v["cached"]), ours);
    assert_eq!(v["cached"]["valid"], Json::Bool(true));
    // Both cleaned the same files away.
    assert_eq!(
        tree(&env.dev().join("objects")),
        tree(&env.root.path().join("sdb/objects"))
    );
    // The per-object timestamps replication compares agree too.
    let yielded = mgr.yield_hashes("sda", 7, 0, None).unwrap();
    assert!(yielded.len() > 40);
    let theirs = v["yielded"].as_object().unwrap();
    assert_eq!(theirs.len(), yielded.len());
    for (hash, t) in &yielded {
        let s = &theirs[hash.as_str()];
        assert_eq!(s["ts_data"], t.ts_data.internal(), "{hash}");
        assert_eq!(
            s.get("ts_meta").and_then(Json::as_str),
            t.ts_meta.map(|t| t.internal()).as_deref()
        );
        assert_eq!(
            s.get("ts_ctype").and_then(Json::as_str),
            t.ts_ctype.map(|t| t.internal()).as_deref()
        );
    }
    assert!(yielded.iter().any(|(_, t)| t.ts_ctype.is_some()));
    // apus reads the hashes.pkl Swift wrote.
    assert_eq!(mgr.get_hashes("sdb", 7, 0, &[]).unwrap(), ours);
    // Recalculating a suffix on request gives the same answer.
    let suffix = ours.keys().next().unwrap().clone();
    assert_eq!(
        mgr.get_hashes("sda", 7, 0, &[suffix.as_str()]).unwrap(),
        ours
    );
}

#[test]
fn swift_ignores_spill_files() {
    let env = Env::new();
    let df = env.mgr.diskfile("sda", 7, "AUTH_a", "c", "o", 0).unwrap();
    let mut w = df.create(None).unwrap();
    w.write(b"x").unwrap();
    let mut md = put_metadata(&recent(10.0), b"x");
    md.insert("X-Object-Sysmeta-Huge", "h".repeat(70_000));
    let p = w.put(md).unwrap();
    let spill = apus_diskfile::xattrs::spill_path(&p);
    assert!(spill.exists());
    let script = r#"
from swift.obj.diskfile import DiskFileManager
mgr = DiskFileManager({'devices': '/', 'mount_check': 'false'},
                      logging.getLogger())
res = mgr.cleanup_ondisk_files(sys.argv[1])
print(json.dumps({'files': res['files'], 'data': os.path.basename(res['data_file'])}))
"#;
    let out = run_python(script, &[df.hash_dir().to_str().unwrap()]);
    let v: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"], p.file_name().unwrap().to_str().unwrap());
    assert_eq!(v["files"].as_array().unwrap().len(), 2);
    assert!(
        spill.exists(),
        "Swift's cleanup must not remove a spill file"
    );
}

#[test]
fn async_pendings_both_ways() {
    let env = Env::new();
    let update = AsyncUpdate {
        op: "PUT".into(),
        account: "AUTH_a".into(),
        container: "c\u{e9}".into(),
        obj: "o/\u{2603}".into(),
        headers: vec![
            ("X-Size".into(), "12".into()),
            ("X-Content-Type".into(), "text/plain".into()),
            ("X-Etag".into(), md5_hex(b"hello world!")),
            ("X-Timestamp".into(), "1700000000.00000".into()),
            ("X-Object-Meta-Note".into(), "\u{2603}".into()),
        ],
        db_state: Some("unsharded".into()),
        container_path: None,
        successes: vec![2, 5],
    };
    let t = ts(1_700_000_000.0);
    let path = env.mgr.write_async_pending("sda", 0, &update, t).unwrap();
    let hash = hash_config().hash_path("AUTH_a", Some("c\u{e9}"), Some("o/\u{2603}"));
    assert_eq!(
        path,
        env.dev()
            .join("async_pending")
            .join(&hash[29..])
            .join(format!("{hash}-{}", t.internal()))
    );
    assert!(env.tmp_entries().is_empty());

    let script = r#"
import pickle
from swift.common.utils.pickle import unpickle
from swift.common.swob import wsgi_to_str, str_to_wsgi
from swift.common.header_key_dict import HeaderKeyDict
from swift.obj.diskfile import DiskFileManager
from swift.common.storage_policy import POLICIES
path, root = sys.argv[1:3]
with open(path, 'rb') as f:
    data = f.read()
d = unpickle(data)
assert pickle.loads(data) == d
d['headers'] = {wsgi_to_str(k): wsgi_to_str(v) for k, v in d['headers'].items()}
# Swift saving an update of its own, policy 1 layout but policy 0 object.
class Logger(logging.LoggerAdapter):
    def increment(self, *a, **kw):
        pass
mgr = DiskFileManager({'devices': root, 'mount_check': 'false'},
                      Logger(logging.getLogger(), {}))
hdrs = HeaderKeyDict({'x-size': '3', 'x-timestamp': '1700000001.00000',
                      'x-content-type': str_to_wsgi('text/\u00e9')})
mgr.pickle_async_update('sda', 'AUTH_b', 'c2', 'o2',
                        {'op': 'DELETE', 'account': 'AUTH_b',
                         'container': 'c2', 'obj': 'o2', 'headers': hdrs,
                         'db_state': None},
                        '1700000001.00000', POLICIES[0])
print(json.dumps(d))
"#;
    let out = run_python(
        script,
        &[path.to_str().unwrap(), env.root.path().to_str().unwrap()],
    );
    let v: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(v["op"], "PUT");
    assert_eq!(v["successes"], serde_json::json!([2, 5]));
    assert_eq!(v["container"], "c\u{e9}");
    assert_eq!(v["obj"], "o/\u{2603}");
    assert_eq!(v["db_state"], "unsharded");
    assert_eq!(v["headers"]["X-Object-Meta-Note"], "\u{2603}");
    assert_eq!(v["headers"].as_object().unwrap().len(), 5);

    let entries = env.mgr.list_async_pendings("sda").unwrap();
    assert_eq!(entries.len(), 2);
    let theirs = entries
        .iter()
        .find(|e| e.timestamp == "1700000001.00000")
        .unwrap();
    let u = read_async_pending(&theirs.path).unwrap();
    assert_eq!(u.op, "DELETE");
    assert_eq!(u.account, "AUTH_b");
    assert_eq!(u.obj, "o2");
    assert_eq!(u.db_state, None);
    let mut h = u.headers.clone();
    h.sort();
    assert_eq!(
        h,
        [
            ("X-Content-Type".to_string(), "text/\u{e9}".to_string()),
            ("X-Size".to_string(), "3".to_string()),
            ("X-Timestamp".to_string(), "1700000001.00000".to_string()),
        ]
    );
    let mine = entries.iter().find(|e| e.path == path).unwrap();
    assert_eq!(read_async_pending(&mine.path).unwrap(), update);
    for e in &entries {
        remove_async_pending(&e.path).unwrap();
    }
    assert!(env.mgr.list_async_pendings("sda").unwrap().is_empty());
}
