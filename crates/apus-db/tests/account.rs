#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use apus_db::{AccountBroker, BrokerOptions, ContainerRecord, ListParams, Listing, Metadata};
use common::*;

fn put(b: &AccountBroker, name: &str, put_t: u64, del_t: u64, count: i64, bytes: i64, spi: i64) {
    b.put_container(ContainerRecord::new(
        name,
        ts(put_t),
        ts(del_t),
        count,
        bytes,
        spi,
    ))
    .unwrap();
}

fn list(b: &AccountBroker, p: ListParams) -> Vec<String> {
    names(&b.list_containers(&p).unwrap(), |c| c.name.clone())
}

#[test]
fn container_rows_and_totals() {
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    let info = b.get_info().unwrap();
    assert_eq!(info.account, "AUTH_test");
    assert_eq!(info.container_count, 0);
    assert_eq!(info.put_timestamp, ts(1));
    assert!(b.empty().unwrap());
    put(&b, "c1", 10, 0, 3, 30, 0);
    put(&b, "c2", 10, 0, 1, 5, 1);
    let info = b.get_info().unwrap();
    assert_eq!(
        (info.container_count, info.object_count, info.bytes_used),
        (2, 4, 35)
    );
    // Counts come from the newest report; timestamps keep the newest.
    put(&b, "c1", 9, 0, 7, 70, 0);
    let row = b.get_container_row("c1").unwrap().unwrap();
    assert_eq!(row.put_timestamp, ts(10));
    assert_eq!(row.object_count, 7);
    let stats = b.get_policy_stats().unwrap();
    assert_eq!(stats[&0].container_count, 1);
    assert_eq!(stats[&0].object_count, 7);
    assert_eq!(stats[&1].bytes_used, 5);
    // Deleted when the delete is newer and there are no objects.
    put(&b, "c1", 10, 11, 2, 20, 0);
    assert!(!b.get_container_row("c1").unwrap().unwrap().deleted);
    put(&b, "c1", 10, 11, 0, 0, 0);
    let row = b.get_container_row("c1").unwrap().unwrap();
    assert!(row.deleted);
    let info = b.get_info().unwrap();
    assert_eq!(
        (info.container_count, info.object_count, info.bytes_used),
        (1, 1, 5)
    );
    assert_eq!(b.get_policy_stats().unwrap()[&0].container_count, 0);
    // An older put report does not undelete, a newer one does.
    put(&b, "c1", 10, 0, 0, 0, 0);
    assert!(b.get_container_row("c1").unwrap().unwrap().deleted);
    put(&b, "c1", 12, 0, 0, 0, 0);
    let row = b.get_container_row("c1").unwrap().unwrap();
    assert!(!row.deleted);
    assert_eq!((row.put_timestamp, row.delete_timestamp), (ts(12), ts(11)));
    assert_eq!(list(&b, ListParams::default()), ["c1", "c2"]);
}

#[test]
fn account_delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    let mut md = Metadata::new();
    md.insert("X-Account-Meta-Color".into(), ("blue".into(), ts(2)));
    b.update_metadata(&md, true).unwrap();
    assert!(!b.is_status_deleted().unwrap());
    b.delete_db(ts(3)).unwrap();
    assert!(b.is_deleted().unwrap());
    assert!(b.is_status_deleted().unwrap());
    assert_eq!(b.metadata().unwrap()["X-Account-Meta-Color"].0, "");
    assert_eq!(b.get_info().unwrap().status, "DELETED");
    b.update_put_timestamp(ts(4)).unwrap();
    // Status stays DELETED until the server resets it; Swift's account
    // server refuses PUTs to a status-deleted account.
    assert!(b.is_deleted().unwrap());
    assert!(!b.is_reclaimable(ts(1000), 100).unwrap());
}

#[test]
fn account_listing_and_replication() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let a = account(&d1);
    let b = account(&d2);
    for (i, n) in ["x", "x-1", "x/1", "x/2/3", "y", "zé", "z\u{1F600}"]
        .iter()
        .enumerate()
    {
        put(&a, n, 10 + i as u64, 0, i as i64, 10 * i as i64, 0);
    }
    put(&b, "only-b", 5, 0, 1, 1, 0);
    put(&b, "x", 100, 0, 42, 42, 0);
    let p = ListParams::default;
    assert_eq!(
        list(
            &a,
            ListParams {
                delimiter: Some("/".into()),
                ..p()
            }
        ),
        ["x", "x-1", "x/ (dir)", "y", "zé", "z😀"]
    );
    assert_eq!(
        list(
            &a,
            ListParams {
                prefix: Some("x/".into()),
                delimiter: Some("/".into()),
                ..p()
            }
        ),
        ["x/1", "x/2/ (dir)"]
    );
    assert_eq!(
        list(
            &a,
            ListParams {
                reverse: true,
                limit: 2,
                marker: "y".into(),
                ..p()
            }
        ),
        ["x/2/3", "x/1"]
    );
    let rows = a.list_containers(&p()).unwrap();
    match &rows[1] {
        Listing::Item(c) => {
            assert_eq!(c.name, "x-1");
            assert_eq!((c.object_count, c.bytes_used), (1, 10));
            assert_eq!(c.put_timestamp, ts(11));
        }
        other => panic!("{other:?}"),
    }
    // Replicate both ways.
    let a_id = a.get_info().unwrap().id;
    let b_id = b.get_info().unwrap().id;
    b.merge_items(a.get_items_since(-1, 100).unwrap(), Some(&a_id))
        .unwrap();
    a.merge_items(b.get_items_since(-1, 100).unwrap(), Some(&b_id))
        .unwrap();
    let (ia, ib) = (
        a.get_replication_info().unwrap(),
        b.get_replication_info().unwrap(),
    );
    assert_eq!(ia.hash, ib.hash);
    assert_eq!(ia.count, 8);
    assert_eq!(ib.count, 8);
    assert_eq!(b.get_sync(&a_id, true).unwrap(), 7);
    // Swift's rule: timestamps keep the newest, counts come from the row
    // merged last (the container updater corrects them later).
    let x = a.get_container_row("x").unwrap().unwrap();
    assert_eq!((x.put_timestamp, x.object_count), (ts(100), 0));
    // Reclaim of deleted container rows.
    put(&a, "gone", 10, 20, 0, 0, 0);
    assert_eq!(a.reclaim(ts(30), ts(0)).unwrap(), 1);
    assert!(a.get_container_row("gone").unwrap().is_none());
}

#[test]
fn pending_file_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    for i in 0..200 {
        put(&b, &format!("c{i:03}"), 10, 0, 1, 2, i % 3);
    }
    let again = AccountBroker::open(b.path(), BrokerOptions::default()).unwrap();
    let info = again.get_info().unwrap();
    assert_eq!(
        (info.container_count, info.object_count, info.bytes_used),
        (200, 200, 400)
    );
    let stats = again.get_policy_stats().unwrap();
    assert_eq!(stats.values().map(|s| s.container_count).sum::<i64>(), 200);
}
