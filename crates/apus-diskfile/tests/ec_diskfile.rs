#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Erasure-coded disk files: the two-phase PUT (non-durable fragment, then
//! commit), opening by durability, fragment index and preferences, purge,
//! and fragments written by Swift and apus read by the other.

mod common;

use std::fs;
use std::path::Path;

use apus_core::Timestamp;
use apus_diskfile::{
    DiskFileError, EcDiskFile, EcPolicy, FragPref, FragSelect, Metadata, OpenOptions,
};
use common::*;

fn policy() -> EcPolicy {
    EcPolicy::new(1, 4, 2)
}

fn ec_df(env: &Env, select: FragSelect) -> EcDiskFile {
    env.mgr
        .ec_diskfile("sda", 3, "a", "c", "o", &policy(), select)
        .unwrap()
}

fn frag_metadata(t: &Timestamp, body: &[u8], frag_index: Option<u32>) -> Metadata {
    let mut md = put_metadata(t, body);
    md.insert(
        "X-Object-Sysmeta-Ec-Etag",
        "0123456789abcdef0123456789abcdef",
    );
    if let Some(i) = frag_index {
        md.insert("X-Object-Sysmeta-Ec-Frag-Index", i.to_string());
    }
    md
}

fn put_frag(df: &EcDiskFile, t: &Timestamp, body: &[u8]) -> apus_diskfile::EcPutFragment {
    let mut w = df.create(Some(body.len() as u64)).unwrap();
    w.write(body).unwrap();
    w.put(frag_metadata(t, body, None)).unwrap()
}

fn files(df: &EcDiskFile) -> Vec<String> {
    names(df.hash_dir())
}

fn is_not_found(r: Result<apus_diskfile::EcOpenDiskFile, DiskFileError>) -> bool {
    matches!(r, Err(DiskFileError::NotFound))
}

#[test]
fn put_is_not_durable_until_committed() {
    let env = Env::new();
    let df = ec_df(&env, FragSelect::index(2));
    let t1 = recent(100.0);
    let put = put_frag(&df, &t1, b"fragment two");
    assert_eq!(put.frag_index(), 2);
    assert_eq!(files(&df), [format!("{}#2.data", t1.internal())]);

    // Not durable: not there for an ordinary read...
    assert!(is_not_found(df.open(OpenOptions::default())));
    let any = ec_df(&env, FragSelect::any());
    let listed = any.ondisk_files().unwrap();
    assert_eq!(listed.fragments(), vec![(t1, vec![2])]);
    assert_eq!(listed.durable_timestamp(), None);
    // ...but fragment preferences accept it.
    let prefs = ec_df(&env, FragSelect::prefs(vec![]));
    let open = prefs.open(OpenOptions::default()).unwrap();
    assert_eq!(open.frag_index(), 2);
    assert!(!open.durable());
    assert_eq!(open.durable_timestamp(), None);

    let durable = put.commit().unwrap();
    assert_eq!(files(&df), [format!("{}#2#d.data", t1.internal())]);
    assert_eq!(
        durable,
        df.hash_dir().join(format!("{}#2#d.data", t1.internal()))
    );
    let open = df.open(OpenOptions::default()).unwrap();
    assert!(open.durable());
    assert!(open.validate_metadata());
    assert_eq!(open.durable_timestamp(), Some(t1));
    assert_eq!(open.fragments(), &[(t1, vec![2])]);
    assert_eq!(
        open.inner()
            .metadata()
            .get("X-Object-Sysmeta-Ec-Frag-Index"),
        Some("2")
    );
    assert_eq!(open.inner().content_length(), 12);
    // No temp file left.
    assert!(env.dev().join("tmp-1").read_dir().unwrap().next().is_none());
}

#[test]
fn the_metadata_index_wins_and_is_checked() {
    let env = Env::new();
    let t = recent(10.0);
    let df = ec_df(&env, FragSelect::index(1));
    let mut w = df.create(None).unwrap();
    w.write(b"x").unwrap();
    let put = w.put(frag_metadata(&t, b"x", Some(4))).unwrap();
    assert_eq!(put.frag_index(), 4);

    // No index anywhere, or one beyond the policy: refused, nothing left.
    let any = ec_df(&env, FragSelect::any());
    let mut w = any.create(None).unwrap();
    w.write(b"x").unwrap();
    assert!(matches!(
        w.put(frag_metadata(&recent(5.0), b"x", None)),
        Err(DiskFileError::InvalidMetadata(_))
    ));
    let mut w = any.create(None).unwrap();
    w.write(b"x").unwrap();
    assert!(matches!(
        w.put(frag_metadata(&recent(5.0), b"x", Some(6))),
        Err(DiskFileError::InvalidMetadata(_))
    ));
    assert_eq!(files(&df), [format!("{}#4.data", t.internal())]);
    assert!(env.dev().join("tmp-1").read_dir().unwrap().next().is_none());
    assert!(env
        .mgr
        .ec_diskfile("sda", 3, "a", "c", "o", &policy(), FragSelect::index(6))
        .is_err());
}

#[test]
fn a_new_put_cleans_up_only_when_committed() {
    let env = Env::new();
    let df = ec_df(&env, FragSelect::index(0));
    let (t1, t2) = (recent(100.0), recent(50.0));
    put_frag(&df, &t1, b"old").commit().unwrap();
    let put = put_frag(&df, &t2, b"new");
    assert_eq!(
        files(&df),
        [
            format!("{}#0#d.data", t1.internal()),
            format!("{}#0.data", t2.internal())
        ]
    );
    // The old durable fragment is still what a read gets.
    let open = df.open(OpenOptions::default()).unwrap();
    assert_eq!(open.inner().data_timestamp(), t1);
    assert_eq!(open.fragments(), &[(t2, vec![0]), (t1, vec![0])]);
    put.commit().unwrap();
    assert_eq!(files(&df), [format!("{}#0#d.data", t2.internal())]);
}

#[test]
fn commit_of_a_superseded_fragment_succeeds_and_of_a_missing_one_fails() {
    let env = Env::new();
    let df = ec_df(&env, FragSelect::index(3));
    let (t1, t2) = (recent(100.0), recent(50.0));
    let put = put_frag(&df, &t1, b"data");
    df.delete(t2).unwrap();
    assert_eq!(files(&df), [format!("{}.ts", t2.internal())]);
    put.commit().unwrap();
    assert!(matches!(
        df.open(OpenOptions::default()),
        Err(DiskFileError::Deleted { .. })
    ));

    let other = env
        .mgr
        .ec_diskfile("sda", 3, "a", "c", "other", &policy(), FragSelect::any())
        .unwrap();
    assert!(other.commit(t1, 3).is_err());
}

#[test]
fn several_fragments_on_a_handoff_and_preferences() {
    let env = Env::new();
    let t1 = recent(100.0);
    for i in [1, 4] {
        let df = ec_df(&env, FragSelect::index(i));
        put_frag(&df, &t1, format!("frag {i}").as_bytes())
            .commit()
            .unwrap();
    }
    let t2 = recent(50.0);
    put_frag(&ec_df(&env, FragSelect::index(5)), &t2, b"newer");

    // Any durable fragment: the highest index.
    let open = ec_df(&env, FragSelect::any())
        .open(OpenOptions::default())
        .unwrap();
    assert_eq!(open.frag_index(), 4);
    assert_eq!(open.fragments(), &[(t2, vec![5]), (t1, vec![1, 4])]);
    // A specific one.
    let open = ec_df(&env, FragSelect::index(1))
        .open(OpenOptions::default())
        .unwrap();
    assert_eq!(open.frag_index(), 1);
    assert!(is_not_found(
        ec_df(&env, FragSelect::index(2)).open(OpenOptions::default())
    ));
    // Preferences: t1 without 4 gives 1; t2 excluded entirely falls back
    // to the newest remaining timestamp.
    let pref = |t: Timestamp, exclude: Vec<u32>| FragPref {
        timestamp: t,
        exclude,
    };
    let open = ec_df(&env, FragSelect::prefs(vec![pref(t1, vec![4])]))
        .open(OpenOptions::default())
        .unwrap();
    assert_eq!(open.frag_index(), 1);
    let open = ec_df(&env, FragSelect::prefs(vec![pref(t2, vec![5])]))
        .open(OpenOptions::default())
        .unwrap();
    assert_eq!((open.inner().data_timestamp(), open.frag_index()), (t1, 4));
    let open = ec_df(&env, FragSelect::prefs(vec![]))
        .open(OpenOptions::default())
        .unwrap();
    assert_eq!((open.inner().data_timestamp(), open.frag_index()), (t2, 5));
    assert!(!open.durable());
}

#[test]
fn purge_removes_the_reverted_fragment() {
    let env = Env::new();
    let t1 = recent(100.0);
    let df = ec_df(&env, FragSelect::index(1));
    put_frag(&df, &t1, b"one").commit().unwrap();
    put_frag(&ec_df(&env, FragSelect::index(2)), &t1, b"two");
    let part = env.dev().join("objects-1").join("3");
    fs::write(part.join("hashes.invalid"), b"").unwrap();

    // A fresh non-durable fragment survives a purge with a delay.
    df.purge(t1, Some(2), 60.0, None).unwrap();
    assert_eq!(
        files(&df),
        [
            format!("{}#1#d.data", t1.internal()),
            format!("{}#2.data", t1.internal())
        ]
    );
    df.purge(t1, Some(1), 0.0, None).unwrap();
    assert_eq!(files(&df), [format!("{}#2.data", t1.internal())]);
    df.purge(t1, Some(2), 0.0, None).unwrap();
    assert!(!df.hash_dir().exists());
    let suffix = &df.hash()[29..];
    let invalid = fs::read_to_string(part.join("hashes.invalid")).unwrap();
    assert!(invalid.lines().any(|l| l == suffix), "{invalid:?}");

    // A tombstone and a .meta go by timestamp.
    let t2 = recent(50.0);
    df.delete(t2).unwrap();
    df.purge(t2, None, 0.0, None).unwrap();
    assert!(files(&df).is_empty());
}

#[test]
fn hashes_and_yield_hashes_of_an_ec_partition() {
    let env = Env::new();
    let t1 = recent(100.0);
    let df = ec_df(&env, FragSelect::index(1));
    put_frag(&df, &t1, b"one").commit().unwrap();
    let t2 = recent(50.0);
    put_frag(&df, &t2, b"two");
    let hashes = env.mgr.get_hashes_ec("sda", 3, &policy(), &[]).unwrap();
    let suffix = df.hash()[29..].to_string();
    let h = hashes[&suffix].as_ref().unwrap();
    assert_eq!(
        h.keys().copied().collect::<Vec<_>>(),
        [None, Some(1)],
        "{h:?}"
    );
    let found = env
        .mgr
        .yield_hashes_ec("sda", 3, &policy(), None, &FragSelect::any())
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, df.hash());
    assert_eq!(found[0].1.ts_data, t1);
    assert!(found[0].1.durable);
    let pkl = fs::read(env.dev().join("objects-1/3/hashes.pkl")).unwrap();
    let read = apus_diskfile::EcHashesFile::from_pickle(&pkl);
    assert_eq!(read.suffixes, hashes);
}

fn object_path(env: &Env) -> String {
    env.root.path().to_str().unwrap().to_string()
}

#[test]
fn swift_and_apus_read_each_others_fragments() {
    let env = Env::new();
    fs::create_dir(env.root.path().join("sdb")).unwrap();
    let t1 = recent(100.0);
    let df = ec_df(&env, FragSelect::index(2));
    put_frag(&df, &t1, b"apus fragment").commit().unwrap();
    let t2 = recent(50.0);
    put_frag(&df, &t2, b"newer, not durable");

    let script = r#"
import hashlib
from swift.common.storage_policy import ECStoragePolicy
from swift.obj.diskfile import ECDiskFileManager
from swift.common.utils import Timestamp
root, t1, t2 = sys.argv[1:4]
logging.disable(logging.CRITICAL)
policy = ECStoragePolicy(1, 'ec', ec_type='liberasurecode_rs_vand', ec_ndata=4, ec_nparity=2)
mgr = ECDiskFileManager({'devices': root, 'mount_check': 'false'}, logging.getLogger('t'))
out = {}
df = mgr.get_diskfile('sda', '3', 'a', 'c', 'o', policy=policy)
with df.open():
    md = df.get_metadata()
    out['apus'] = {
        'frag_index': md['X-Object-Sysmeta-Ec-Frag-Index'],
        'durable': df.durable_timestamp.internal,
        'fragments': {ts.internal: f for ts, f in df.fragments.items()},
        # (Swift's reader would check the body as EC fragments and
        # quarantine these test bytes.)
    }
# Swift writes fragment 5 at t1, durable, and fragment 0 at t2, not.
for fi, t, body, commit in ((5, t1, b'swift fragment', True), (0, t2, b'later', False)):
    df = mgr.get_diskfile('sda', '3', 'a', 'c', 'o', policy=policy, frag_index=fi)
    with df.create() as w:
        w.write(body)
        w.put({'X-Timestamp': Timestamp(t).internal, 'Content-Length': str(len(body)),
               'ETag': hashlib.md5(body).hexdigest(), 'X-Object-Sysmeta-Ec-Etag': 'y', 'Content-Type': 'a/b'})
        if commit:
            w.commit(Timestamp(t))
print(json.dumps(out))
"#;
    let out = run_python(
        script,
        &[&object_path(&env), &t1.internal(), &t2.internal()],
    );
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["apus"]["frag_index"], "2");
    assert_eq!(got["apus"]["durable"], t1.internal());
    assert_eq!(
        got["apus"]["fragments"][t1.internal()],
        serde_json::json!([2])
    );
    assert_eq!(
        got["apus"]["fragments"][t2.internal()],
        serde_json::json!([2])
    );

    // Swift's commit cleaned up nothing it should not have; apus reads its
    // fragments.
    let open = ec_df(&env, FragSelect::index(5))
        .open(OpenOptions::default())
        .unwrap();
    assert_eq!(open.durable_timestamp(), Some(t1));
    let mut body = String::new();
    std::io::Read::read_to_string(&mut open.into_inner().reader(), &mut body).unwrap();
    assert_eq!(body, "swift fragment");
    let listed = ec_df(&env, FragSelect::any()).ondisk_files().unwrap();
    assert_eq!(listed.fragments(), vec![(t2, vec![0, 2]), (t1, vec![2, 5])]);
    assert!(Path::new(&df.hash_dir().join(format!("{}#0.data", t2.internal()))).exists());
}

#[test]
fn a_spill_file_follows_its_fragment_through_the_commit() {
    let env = Env::new();
    let df = ec_df(&env, FragSelect::index(3));
    let t1 = recent(100.0);
    let mut md = frag_metadata(&t1, b"body", None);
    // Beyond what any xattr space holds: always spilled.
    let big = "b".repeat(70_000);
    md.insert("X-Object-Meta-Big", big.as_str());
    let mut w = df.create(None).unwrap();
    w.write(b"body").unwrap();
    let put = w.put(md).unwrap();
    let nondurable = format!("{}#3.data", t1.internal());
    assert_eq!(
        files(&df),
        [nondurable.clone(), format!("{nondurable}.spill")]
    );
    put.commit().unwrap();
    let durable = format!("{}#3#d.data", t1.internal());
    assert_eq!(files(&df), [durable.clone(), format!("{durable}.spill")]);
    let open = df.open(OpenOptions::default()).unwrap();
    assert_eq!(
        open.inner().metadata().get("X-Object-Meta-Big"),
        Some(big.as_str())
    );
    // Purging the fragment takes its spill too.
    df.purge(t1, Some(3), 0.0, None).unwrap();
    assert!(!df.hash_dir().exists());
}

#[test]
fn one_archive_by_name_quarantines_alone_only_beside_a_sibling() {
    let env = Env::new();
    let t1 = recent(200.0);
    let t2 = recent(100.0);
    put_frag(&ec_df(&env, FragSelect::index(1)), &t2, b"one")
        .commit()
        .unwrap();
    put_frag(&ec_df(&env, FragSelect::index(2)), &t2, b"two");
    let any = ec_df(&env, FragSelect::any());
    let hash = any.hash().to_string();
    let named = |name: &str| {
        env.mgr
            .ec_archive_from_hash("sda", 3, &hash, &policy(), name)
            .unwrap()
    };
    let one = format!("{}#1#d.data", t2.internal());
    let two = format!("{}#2.data", t2.internal());
    let open = named(&two).open(OpenOptions::default()).unwrap();
    assert_eq!(open.frag_index(), 2);
    assert_eq!(open.inner().data_path(), any.hash_dir().join(&two));
    assert!(is_not_found(
        named(&format!("{}#3.data", t2.internal())).open(OpenOptions::default())
    ));
    assert!(env
        .mgr
        .ec_archive_from_hash("sda", 3, &hash, &policy(), "junk")
        .is_err());

    // With a sibling of its timestamp left, the archive goes alone.
    let qdir = env.dev().join("quarantined/objects-1").join(&hash);
    match named(&two).quarantine("bad") {
        DiskFileError::Quarantined { to, .. } => assert_eq!(to, qdir.join(&two)),
        e => panic!("{e}"),
    }
    assert_eq!(files(&any), std::slice::from_ref(&one));
    // An older archive would show through: the directory goes whole.
    let old = format!("{}#0#d.data", t1.internal());
    fs::write(any.hash_dir().join(&old), b"old").unwrap();
    fs::write(any.hash_dir().join(&two), b"two again").unwrap();
    match named(&two).quarantine("bad") {
        DiskFileError::Quarantined { to, .. } => {
            assert!(to.starts_with(env.dev().join("quarantined/objects-1")));
            assert_ne!(to, qdir);
            let mut moved = names(&to);
            moved.sort();
            assert_eq!(moved, [old, one, two]);
        }
        e => panic!("{e}"),
    }
    assert!(!any.hash_dir().exists());
}
