#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use apus_db::{
    BrokerOptions, ContainerBroker, DbError, ListParams, Listing, Metadata, ObjectRecord,
};
use common::*;

fn put(b: &ContainerBroker, name: &str, t: u64, size: u64) {
    b.put_object(ObjectRecord::put(
        name,
        ts(t),
        size,
        "text/plain",
        "etag",
        0,
    ))
    .unwrap();
}

fn list(b: &ContainerBroker, p: ListParams) -> Vec<String> {
    obj_names(&b.list_objects(&p, 0).unwrap())
}

#[test]
fn create_open_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    let info = b.get_info().unwrap();
    assert_eq!(info.account, "AUTH_test");
    assert_eq!(info.container, "cont");
    assert_eq!(info.put_timestamp, ts(1));
    assert_eq!(info.status_changed_at, ts(1));
    assert_eq!(info.delete_timestamp, tsf("0"));
    assert_eq!(info.object_count, 0);
    assert_eq!(info.hash, "00000000000000000000000000000000");
    assert!(info.id.ends_with("-sda1"), "{}", info.id);
    assert_eq!(info.x_container_sync_point1, -1);
    assert_eq!(info.reported_object_count, 0);
    assert!(b.empty().unwrap());
    assert!(!b.is_deleted().unwrap());

    let again = ContainerBroker::create(b.path(), "a", "c", ts(2), 0, BrokerOptions::default());
    assert!(matches!(again, Err(DbError::AlreadyExists { .. })));
    let (_b2, created) =
        ContainerBroker::create_or_open(b.path(), "a", "c", ts(2), 0, BrokerOptions::default())
            .unwrap();
    assert!(!created);
    let missing = ContainerBroker::open(&dir.path().join("nope.db"), BrokerOptions::default());
    assert!(matches!(missing, Err(DbError::NotFound { .. })));
}

#[test]
fn put_overwrite_delete_stats() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    put(&b, "a", 10, 100);
    put(&b, "b", 10, 50);
    let info = b.get_info().unwrap();
    assert_eq!((info.object_count, info.bytes_used), (2, 150));
    // Overwrite with newer data.
    put(&b, "a", 11, 7);
    let info = b.get_info().unwrap();
    assert_eq!((info.object_count, info.bytes_used), (2, 57));
    // An older update loses.
    put(&b, "a", 9, 1000);
    assert_eq!(b.get_info().unwrap().bytes_used, 57);
    // Delete, then an older put does not resurrect.
    b.delete_object("b", ts(12), 0).unwrap();
    put(&b, "b", 11, 5);
    let info = b.get_info().unwrap();
    assert_eq!((info.object_count, info.bytes_used), (1, 7));
    let row = b.get_object_row("b", 0).unwrap().unwrap();
    assert!(row.deleted);
    assert_eq!(row.content_type, "application/deleted");
    assert_eq!(row.etag, "noetag");
    // Other policies count separately; info shows the container's policy.
    b.put_object(ObjectRecord::put("z", ts(13), 9, "x/y", "e", 1))
        .unwrap();
    let info = b.get_info().unwrap();
    assert_eq!((info.object_count, info.bytes_used), (1, 7));
    let stats = b.get_policy_stats().unwrap();
    assert_eq!(stats[&1].object_count, 1);
    assert_eq!(stats[&1].bytes_used, 9);
    b.delete_object("a", ts(14), 0).unwrap();
    assert_eq!(b.get_info().unwrap().object_count, 0);
    assert!(!b.empty().unwrap(), "policy 1 still has an object");
    b.delete_object("z", ts(14), 1).unwrap();
    assert!(b.empty().unwrap());
}

#[test]
fn hash_is_order_independent_and_tracks_rows() {
    let dir = tempfile::tempdir().unwrap();
    let b1 = container(&dir);
    let dir2 = tempfile::tempdir().unwrap();
    let b2 = container(&dir2);
    put(&b1, "x", 5, 1);
    put(&b1, "y", 6, 1);
    put(&b2, "y", 6, 1);
    put(&b2, "x", 4, 1);
    put(&b2, "x", 5, 1);
    let (h1, h2) = (b1.get_info().unwrap().hash, b2.get_info().unwrap().hash);
    assert_eq!(h1, h2);
    let expected = apus_db::chexor(
        &apus_db::chexor("00000000000000000000000000000000", "x", &ts(5).internal()),
        "y",
        &ts(6).internal(),
    );
    assert_eq!(h1, expected);
}

#[test]
fn content_type_and_metadata_timestamps_resolve_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    b.put_object(ObjectRecord::put("o", ts(10), 5, "text/plain", "e1", 0))
        .unwrap();
    // A POST that changes the content type at t=12 and metadata at t=13.
    b.put_object(
        ObjectRecord::put("o", ts(10), 5, "image/png", "e1", 0)
            .with_timestamps(Some(ts(12)), Some(ts(13))),
    )
    .unwrap();
    let row = b.get_object_row("o", 0).unwrap().unwrap();
    let t = row.timestamps().unwrap();
    assert_eq!((t.data, t.ctype, t.meta), (ts(10), ts(12), ts(13)));
    assert_eq!(row.content_type, "image/png");
    // A late-arriving older-ctype update does not change the content type,
    // but newer data replaces size and etag while keeping the newer ctype.
    b.put_object(ObjectRecord::put("o", ts(11), 8, "text/html", "e2", 0))
        .unwrap();
    let row = b.get_object_row("o", 0).unwrap().unwrap();
    let t = row.timestamps().unwrap();
    assert_eq!((t.data, t.ctype, t.meta), (ts(11), ts(12), ts(13)));
    assert_eq!(row.content_type, "image/png");
    assert_eq!((row.size, row.etag.as_str()), (8, "e2"));
    // Listing's last_modified is the metadata timestamp.
    let l = b.list_objects(&ListParams::default(), 0).unwrap();
    match &l[0] {
        Listing::Item(o) => assert_eq!(o.last_modified, ts(13)),
        other => panic!("{other:?}"),
    }
    // swift_bytes follows the data timestamp, the type follows ctype.
    b.put_object(ObjectRecord::put(
        "o",
        ts(14),
        0,
        "text/x;swift_bytes=99",
        "e3",
        0,
    ))
    .unwrap();
    b.put_object(
        ObjectRecord::put("o", ts(14), 0, "app/y", "e3", 0)
            .with_timestamps(Some(ts(15)), Some(ts(15))),
    )
    .unwrap();
    let row = b.get_object_row("o", 0).unwrap().unwrap();
    assert_eq!(row.content_type, "app/y;swift_bytes=99");
}

#[test]
fn metadata_newest_wins_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    let mut md = Metadata::new();
    md.insert("X-Container-Meta-A".into(), ("1".into(), ts(5)));
    md.insert("X-Container-Meta-B".into(), ("2".into(), ts(5)));
    b.update_metadata(&md, true).unwrap();
    let mut older = Metadata::new();
    older.insert("X-Container-Meta-A".into(), ("old".into(), ts(4)));
    b.update_metadata(&older, true).unwrap();
    assert_eq!(b.metadata().unwrap()["X-Container-Meta-A"].0, "1");
    let mut rm = Metadata::new();
    rm.insert("X-Container-Meta-B".into(), (String::new(), ts(6)));
    b.update_metadata(&rm, true).unwrap();
    let got = b.metadata().unwrap();
    assert_eq!(got["X-Container-Meta-B"], (String::new(), ts(6)));
    // An older value cannot come back over the removal.
    let mut late = Metadata::new();
    late.insert("X-Container-Meta-B".into(), ("2".into(), ts(5)));
    b.update_metadata(&late, true).unwrap();
    assert_eq!(b.metadata().unwrap()["X-Container-Meta-B"].0, "");
    // Reclaim drops removed keys older than the age.
    b.reclaim(ts(7), ts(7)).unwrap();
    let got = b.metadata().unwrap();
    assert!(!got.contains_key("X-Container-Meta-B"));
    assert!(got.contains_key("X-Container-Meta-A"));
    // Limits.
    let mut many = Metadata::new();
    for i in 0..91 {
        many.insert(format!("X-Container-Meta-K{i}"), ("v".into(), ts(8)));
    }
    assert!(matches!(
        b.update_metadata(&many, true),
        Err(DbError::MetadataLimit(_))
    ));
    let mut big = Metadata::new();
    big.insert("X-Container-Meta-Big".into(), ("v".repeat(4094), ts(8)));
    assert!(matches!(
        b.update_metadata(&big, true),
        Err(DbError::MetadataLimit(_))
    ));
    // Raw JSON is Swift's {key: [value, timestamp]} form.
    let raw = b.get_replication_info().unwrap().metadata;
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["X-Container-Meta-A"][1], ts(5).internal());
}

#[test]
fn delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    let mut md = Metadata::new();
    md.insert("X-Container-Meta-A".into(), ("1".into(), ts(2)));
    md.insert("X-Container-Sysmeta-Sharding".into(), ("x".into(), ts(2)));
    b.update_metadata(&md, false).unwrap();
    put(&b, "o", 3, 1);
    b.delete_db(ts(4)).unwrap();
    assert!(!b.is_deleted().unwrap(), "not deleted while it has objects");
    b.delete_object("o", ts(5), 0).unwrap();
    assert!(b.is_deleted().unwrap());
    let info = b.get_info().unwrap();
    assert_eq!(info.status, "DELETED");
    assert_eq!(info.delete_timestamp, ts(4));
    assert_eq!(info.status_changed_at, ts(4));
    let md = b.metadata().unwrap();
    assert_eq!(md["X-Container-Meta-A"].0, "");
    assert_eq!(md["X-Container-Sysmeta-Sharding"].0, "x");
    // Re-create: a newer PUT.
    b.update_put_timestamp(ts(6)).unwrap();
    b.update_status_changed_at(ts(6)).unwrap();
    b.set_storage_policy_index(2, ts(6)).unwrap();
    assert!(!b.is_deleted().unwrap());
    let info = b.get_info().unwrap();
    assert_eq!(info.put_timestamp, ts(6));
    assert_eq!(info.storage_policy_index, 2);
    // Older put timestamps do not move it back.
    b.update_put_timestamp(ts(5)).unwrap();
    assert_eq!(b.get_info().unwrap().put_timestamp, ts(6));
    b.reported(ts(6), ts(4), 0, 0).unwrap();
    let info = b.get_info().unwrap();
    assert_eq!(info.reported_put_timestamp, ts(6));
    assert_eq!(info.reported_delete_timestamp, ts(4));
    b.set_x_container_sync_points(Some(5), None).unwrap();
    let info = b.get_info().unwrap();
    assert_eq!(
        (info.x_container_sync_point1, info.x_container_sync_point2),
        (5, -1)
    );
}

#[test]
fn pending_file_batches_updates() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    for i in 0..500u64 {
        put(&b, &format!("obj-{i:04}"), 10 + i, i);
    }
    // Nothing merged yet: everything is in the pending file.
    let pending_len = std::fs::metadata(b.pending_path()).unwrap().len();
    assert!(pending_len > 0);
    let fresh = ContainerBroker::open(b.path(), BrokerOptions::default()).unwrap();
    let info = fresh.get_info().unwrap();
    assert_eq!(info.object_count, 500);
    assert_eq!(info.bytes_used, (0..500).sum::<u64>() as i64);
    assert_eq!(std::fs::metadata(b.pending_path()).unwrap().len(), 0);
    // Rows went in as one batch: consecutive ROWIDs.
    let rows = b.get_items_since(-1, 1000).unwrap();
    assert_eq!(rows.len(), 500);
    assert_eq!(rows.last().unwrap().rowid, Some(500));
}

#[test]
fn pending_cap_forces_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BrokerOptions {
        pending_cap: 2_000,
        ..BrokerOptions::default()
    };
    let b =
        ContainerBroker::create(&db_path(&dir, "containers"), "a", "c", ts(1), 0, opts).unwrap();
    for i in 0..100u64 {
        put(&b, &format!("o{i}"), 10, 1);
        assert!(std::fs::metadata(b.pending_path()).unwrap().len() < 2_200);
    }
    assert_eq!(b.get_info().unwrap().object_count, 100);
}

#[test]
fn torn_pending_entries_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    put(&b, "good1", 2, 1);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(b.pending_path())
            .unwrap();
        f.write_all(b":gANYBQAAAGdvb2QyAAAA").unwrap(); // truncated entry
    }
    put(&b, "good2", 3, 1);
    let info = b.get_info().unwrap();
    assert_eq!(info.object_count, 2);
}

#[test]
fn concurrent_writers_stay_correct() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    let path = b.path().to_path_buf();
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Each thread has its own broker, as separate server workers do.
                let b = ContainerBroker::open(&path, BrokerOptions::default()).unwrap();
                for i in 0..60u64 {
                    let name = format!("t{t}-{i}");
                    b.put_object(ObjectRecord::put(&name, ts(100 + i), 10, "a/b", "e", 0))
                        .unwrap();
                    if i % 3 == 0 {
                        b.delete_object(&name, ts(200 + i), 0).unwrap();
                    }
                    if i % 20 == 0 {
                        b.get_info().unwrap();
                    }
                }
            })
        })
        .collect();
    let shared = Arc::new(ContainerBroker::open(&path, BrokerOptions::default()).unwrap());
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = shared.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    s.list_objects(&ListParams::default(), 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads.into_iter().chain(readers) {
        t.join().unwrap();
    }
    let info = b.get_info().unwrap();
    assert_eq!(info.object_count, 6 * 40);
    assert_eq!(info.bytes_used, 6 * 40 * 10);
    let all = b.list_objects(&ListParams::default(), 0).unwrap();
    assert_eq!(all.len(), 240);
}

#[test]
fn replication_round_trip_converges() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let a = container(&d1);
    let b = container(&d2);
    for i in 0..50u64 {
        put(&a, &format!("a{i}"), 10 + i, i);
        put(&b, &format!("b{i}"), 10 + i, i);
    }
    put(&a, "both", 5, 1);
    put(&b, "both", 6, 2);
    b.delete_object("b3", ts(99), 0).unwrap();
    let a_id = a.get_info().unwrap().id;
    let b_id = b.get_info().unwrap().id;
    // Push a -> b in pages, as the replicator does.
    let mut point = b.get_sync(&a_id, true).unwrap();
    assert_eq!(point, -1);
    loop {
        let rows = a.get_items_since(point, 7).unwrap();
        if rows.is_empty() {
            break;
        }
        point = rows.last().unwrap().rowid.unwrap();
        b.merge_items(rows, Some(&a_id)).unwrap();
    }
    assert_eq!(b.get_sync(&a_id, true).unwrap(), point);
    // And b -> a.
    let rows = b.get_items_since(-1, 1000).unwrap();
    a.merge_items(rows, Some(&b_id)).unwrap();
    let (ia, ib) = (
        a.get_replication_info().unwrap(),
        b.get_replication_info().unwrap(),
    );
    assert_eq!(ia.hash, ib.hash);
    assert_eq!(ia.count, ib.count);
    assert_eq!(ia.count, 100);
    assert_eq!(ia.bytes_used, ib.bytes_used);
    assert!(ia.max_row > 0);
    assert_eq!(ia.shard_max_row, -1);
    let row = a.get_object_row("both", 0).unwrap().unwrap();
    assert_eq!(row.size, 2);
    // Sync tables.
    a.merge_syncs(
        &[apus_db::SyncPoint {
            remote_id: "x".into(),
            sync_point: 5,
            updated_at: None,
        }],
        false,
    )
    .unwrap();
    a.merge_syncs(
        &[apus_db::SyncPoint {
            remote_id: "x".into(),
            sync_point: 3,
            updated_at: None,
        }],
        false,
    )
    .unwrap();
    assert_eq!(a.get_sync("x", false).unwrap(), 5);
    assert_eq!(a.get_syncs(false).unwrap().len(), 1);
    // Rows serialize with Swift's keys.
    let rows = a.get_items_since(-1, 1).unwrap();
    let json = serde_json::to_value(&rows[0]).unwrap();
    assert!(json.get("ROWID").is_some());
    assert_eq!(json["deleted"], 0);
}

#[test]
fn reclaim_removes_old_tombstones_only() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    for i in 0..30u64 {
        put(&b, &format!("o{i:02}"), 10, 1);
        b.delete_object(&format!("o{i:02}"), ts(20 + i), 0).unwrap();
    }
    put(&b, "live", 10, 1);
    let n = b.reclaim(ts(35), ts(0)).unwrap();
    assert_eq!(n, 15);
    let rows = b.get_items_since(-1, 1000).unwrap();
    assert_eq!(rows.len(), 16);
    assert_eq!(b.get_info().unwrap().object_count, 1);
    assert!(!b.is_reclaimable(ts(1000), 10).unwrap());
}

#[test]
fn corrupt_files_are_reported_distinctly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = ContainerBroker::open(&path, BrokerOptions::default())
        .err()
        .unwrap();
    assert!(err.is_quarantine_worthy(), "{err}");
    // A real database with a damaged page.
    let b = container(&dir);
    for i in 0..300 {
        put(&b, &format!("name-{i:05}-{}", "x".repeat(100)), 10, 1);
    }
    b.get_info().unwrap();
    let p = b.path().to_path_buf();
    drop(b);
    let mut bytes = std::fs::read(&p).unwrap();
    let len = bytes.len();
    for byte in bytes.iter_mut().take(len).skip(4096) {
        *byte = 0xA5;
    }
    std::fs::write(&p, &bytes).unwrap();
    let res = ContainerBroker::open(&p, BrokerOptions::default()).and_then(|b| {
        b.list_objects(&ListParams::default(), 0)?;
        b.get_info()
    });
    let err = res.expect_err("corruption must be noticed");
    assert!(err.is_quarantine_worthy(), "{err}");
    // Empty file (created by a crash before init) is not a valid DB either.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(ContainerBroker::open(&empty, BrokerOptions::default()).is_err());
}

#[test]
fn listing_basics_with_swift_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    for n in [
        "a",
        "a/",
        "a/b",
        "a/b/c",
        "a/c",
        "a-b",
        "b",
        "b/x",
        "c/é/1",
        "c/é/2",
        "c/z",
        "d\u{1F600}",
        "\u{00e9}t\u{00e9}",
    ] {
        put(&b, n, 5, 1);
    }
    let p = ListParams::default;
    assert_eq!(
        list(&b, p()),
        [
            "a", "a-b", "a/", "a/b", "a/b/c", "a/c", "b", "b/x", "c/z", "c/é/1", "c/é/2", "d😀",
            "été"
        ]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                delimiter: Some("/".into()),
                ..p()
            }
        ),
        ["a", "a-b", "a/ (dir)", "b", "b/ (dir)", "c/ (dir)", "d😀", "été"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                prefix: Some("a/".into()),
                delimiter: Some("/".into()),
                ..p()
            }
        ),
        ["a/", "a/b", "a/b/ (dir)", "a/c"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                path: Some("a".into()),
                ..p()
            }
        ),
        ["a/b", "a/c"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                path: Some("c/".into()),
                ..p()
            }
        ),
        ["c/z"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                path: Some("c/é".into()),
                ..p()
            }
        ),
        ["c/é/1", "c/é/2"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                marker: "b".into(),
                end_marker: "c/z".into(),
                ..p()
            }
        ),
        ["b/x"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                marker: "c/z".into(),
                reverse: true,
                limit: 3,
                ..p()
            }
        ),
        ["b/x", "b", "a/c"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                delimiter: Some("/".into()),
                reverse: true,
                end_marker: "a/".into(),
                ..p()
            }
        ),
        ["été", "d😀", "c/ (dir)", "b/ (dir)", "b"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                marker: "a/".into(),
                delimiter: Some("/".into()),
                limit: 3,
                ..p()
            }
        ),
        ["b", "b/ (dir)", "c/ (dir)"]
    );
    assert_eq!(
        list(
            &b,
            ListParams {
                prefix: Some("é".into()),
                ..p()
            }
        ),
        ["été"]
    );
    assert_eq!(list(&b, ListParams { limit: 2, ..p() }), ["a", "a-b"]);
    assert_eq!(
        list(&b, ListParams { limit: 0, ..p() }),
        Vec::<String>::new()
    );
    // Reserved names are hidden unless asked for.
    put(&b, "\u{0}hidden", 5, 1);
    assert_eq!(list(&b, p()).len(), 13);
    assert_eq!(
        list(
            &b,
            ListParams {
                allow_reserved: true,
                ..p()
            }
        )
        .len(),
        14
    );
    // Other policies are not listed.
    b.put_object(ObjectRecord::put("p1", ts(5), 1, "a/b", "e", 1))
        .unwrap();
    assert!(!list(&b, p()).contains(&"p1".to_string()));
    assert_eq!(obj_names(&b.list_objects(&p(), 1).unwrap()), ["p1"]);
}

#[test]
fn newid_merge_timestamps_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    put(&b, "o1", 5, 1);
    put(&b, "o2", 6, 1);
    b.reported(ts(1), ts(0), 2, 2).unwrap();
    let old_id = b.get_info().unwrap().id;
    b.newid("remote-db").unwrap();
    let info = b.get_info().unwrap();
    assert_ne!(info.id, old_id);
    assert_eq!(info.reported_object_count, 0);
    assert_eq!(b.get_sync("remote-db", true).unwrap(), 2);
    // merge_timestamps keeps oldest created_at and newest put/delete.
    b.merge_timestamps(tsf("0.5"), ts(3), ts(2)).unwrap();
    let info = b.get_info().unwrap();
    assert_eq!(
        (info.created_at, info.put_timestamp, info.delete_timestamp),
        (tsf("0.5"), ts(3), ts(2))
    );
    // The lock blocks writers from other connections, not readers.
    let other = ContainerBroker::open(
        b.path(),
        BrokerOptions {
            timeout: std::time::Duration::from_millis(50),
            ..BrokerOptions::default()
        },
    )
    .unwrap();
    let res = b
        .locked(|| {
            let read = other.get_info().map(|i| i.object_count);
            let write = other.update_put_timestamp(ts(9));
            (read, write)
        })
        .unwrap();
    assert_eq!(res.0.unwrap(), 2);
    assert!(
        matches!(res.1, Err(DbError::LockTimeout { .. })),
        "{:?}",
        res.1
    );
    other.update_put_timestamp(ts(9)).unwrap();
    assert_eq!(b.get_info().unwrap().put_timestamp, ts(9));
}

#[test]
fn object_rows_are_recorded_while_another_connection_holds_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    put(&b, "before", 5, 1);
    let path = b.path().to_path_buf();
    drop(b);
    // Another process holds the database exclusively (no readers either).
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let opts = BrokerOptions {
        timeout: std::time::Duration::from_millis(200),
        ..BrokerOptions::default()
    };
    // Reads wait for the lock, and give up after the timeout.
    let read = ContainerBroker::open(&path, opts.clone()).and_then(|b| b.get_info());
    assert!(matches!(read, Err(DbError::LockTimeout { .. })), "{read:?}");
    // Object rows only go to the pending file, as in Swift's put_object:
    // the lock does not hold them up.
    let started = std::time::Instant::now();
    let w = ContainerBroker::open_for_updates(&path, opts.clone()).unwrap();
    put(&w, "during", 10, 1);
    w.delete_object("before", ts(11), 0).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
    let missing = ContainerBroker::open_for_updates(&dir.path().join("nope.db"), opts);
    assert!(matches!(missing, Err(DbError::NotFound { .. })));

    holder.execute_batch("COMMIT").unwrap();
    let r = ContainerBroker::open(&path, BrokerOptions::default()).unwrap();
    assert_eq!(list(&r, ListParams::default()), ["during"]);
}

fn put_in(b: &ContainerBroker, name: &str, t: u64, policy: i64) {
    b.put_object(ObjectRecord::put(
        name,
        ts(t),
        1,
        "text/plain",
        "etag",
        policy,
    ))
    .unwrap();
}

#[test]
fn misplaced_rows_are_those_of_another_policy_after_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    assert!(b.get_misplaced_since(-1, 10).unwrap().is_empty());
    assert!(!b.has_multiple_policies().unwrap());
    put_in(&b, "a", 2, 0);
    put_in(&b, "b", 3, 1);
    put_in(&b, "c", 4, 0);
    b.delete_object("d", ts(5), 2).unwrap();
    put_in(&b, "e", 6, 1);
    assert!(b.has_multiple_policies().unwrap());
    let rows = b.get_misplaced_since(-1, 10).unwrap();
    let names: Vec<(&str, i64, bool)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.storage_policy_index, r.deleted))
        .collect();
    assert_eq!(names, [("b", 1, false), ("d", 2, true), ("e", 1, false)]);
    assert!(rows.windows(2).all(|w| w[0].rowid < w[1].rowid));
    assert_eq!(rows[0].created_at, ts(3).internal());
    // After a row, and limited.
    let after_b = b.get_misplaced_since(rows[0].rowid.unwrap(), 1).unwrap();
    assert_eq!(after_b.len(), 1);
    assert_eq!(after_b[0].name, "d");
    // What is misplaced follows the container's policy.
    b.set_storage_policy_index(1, ts(7)).unwrap();
    let names: Vec<String> = b
        .get_misplaced_since(-1, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "c", "d"]);
    // Rows are kept per name and policy, as in Swift: the same name in
    // the container's policy leaves the other policy's row misplaced,
    // and a newer row replaces the old one of its policy (a new ROWID).
    put_in(&b, "a", 8, 1);
    put_in(&b, "c", 9, 0);
    let names: Vec<String> = b
        .get_misplaced_since(-1, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "d", "c"]);
}

#[test]
fn the_reconciler_sync_point_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let b = container(&dir);
    assert_eq!(b.get_reconciler_sync().unwrap(), -1);
    b.update_reconciler_sync(42).unwrap();
    assert_eq!(b.get_reconciler_sync().unwrap(), 42);
    drop(b);
    let b = ContainerBroker::open(&db_path(&dir, "containers"), BrokerOptions::default()).unwrap();
    assert_eq!(b.get_reconciler_sync().unwrap(), 42);
    // Replication's view is untouched by it.
    assert_eq!(b.get_replication_info().unwrap().max_row, -1);
}
