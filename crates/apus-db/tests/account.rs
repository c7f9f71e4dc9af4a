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

/// A container report whose counts were read at `stats`.
fn report(put_t: u64, del_t: u64, count: i64, bytes: i64, spi: i64, stats: u64) -> ContainerRecord {
    ContainerRecord::new("c", ts(put_t), ts(del_t), count, bytes, spi)
        .with_stats_timestamp(ts(stats))
}

fn row_of(b: &AccountBroker) -> ContainerRecord {
    b.get_container_row("c").unwrap().unwrap()
}

fn totals(b: &AccountBroker) -> (i64, i64, i64) {
    let i = b.get_info().unwrap();
    (i.container_count, i.object_count, i.bytes_used)
}

#[test]
fn newer_stats_win_in_either_arrival_order() {
    let newer = report(10, 0, 3, 600, 1, 30);
    let older = report(12, 0, 0, 0, 0, 20);
    for order in [[&newer, &older], [&older, &newer]] {
        let dir = tempfile::tempdir().unwrap();
        let b = account(&dir);
        for r in order {
            b.put_container(r.clone()).unwrap();
        }
        let row = row_of(&b);
        // Counts and policy from the newer stats, the newest put.
        assert_eq!(
            (row.object_count, row.bytes_used, row.storage_policy_index),
            (3, 600, 1)
        );
        assert_eq!(row.stats_timestamp, ts(30));
        assert_eq!(row.put_timestamp, ts(12));
        assert!(!row.deleted);
        assert_eq!(totals(&b), (1, 3, 600));
        let policies = b.get_policy_stats().unwrap();
        assert_eq!(policies[&1].object_count, 3);
        assert_eq!(policies.get(&0).map_or(0, |p| p.container_count), 0);
    }
}

#[test]
fn equal_or_zero_stats_merge_as_swift() {
    for stats in [0, 25] {
        let dir = tempfile::tempdir().unwrap();
        let b = account(&dir);
        b.put_container(report(10, 0, 3, 600, 0, stats)).unwrap();
        b.put_container(report(9, 0, 1, 5, 0, stats)).unwrap();
        // The record merged last gives the counts; timestamps keep the newest.
        let row = row_of(&b);
        assert_eq!((row.object_count, row.bytes_used), (1, 5), "stats {stats}");
        assert_eq!(row.put_timestamp, ts(10));
        assert_eq!(row.stats_timestamp, ts(stats));
    }
    // A record without stats loses to one with them, and the reverse.
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    b.put_container(report(10, 0, 3, 600, 0, 25)).unwrap();
    b.put_container(report(10, 0, 0, 0, 0, 0)).unwrap();
    assert_eq!(row_of(&b).object_count, 3);
    b.put_container(report(10, 0, 0, 0, 0, 0).with_stats_timestamp(ts(26)))
        .unwrap();
    assert_eq!(row_of(&b).object_count, 0);
}

#[test]
fn timestamps_keep_the_newest_and_deleted_follows_the_kept_counts() {
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    b.put_container(report(10, 0, 3, 600, 0, 30)).unwrap();
    // A deletion whose stats are older: its delete timestamp is kept, but
    // the newer stats say the container holds objects.
    b.put_container(report(10, 15, 0, 0, 0, 20)).unwrap();
    let row = row_of(&b);
    assert_eq!((row.put_timestamp, row.delete_timestamp), (ts(10), ts(15)));
    assert_eq!(row.object_count, 3);
    assert!(!row.deleted);
    assert_eq!(totals(&b), (1, 3, 600));
    // Newer stats saying empty: deleted.
    b.put_container(report(10, 0, 0, 0, 0, 40)).unwrap();
    let row = row_of(&b);
    assert_eq!(row.delete_timestamp, ts(15));
    assert!(row.deleted);
    assert_eq!(totals(&b), (0, 0, 0));
    // A re-creation with older stats undeletes by its put timestamp alone.
    b.put_container(report(50, 0, 0, 0, 0, 35)).unwrap();
    let row = row_of(&b);
    assert_eq!((row.put_timestamp, row.stats_timestamp), (ts(50), ts(40)));
    assert!(!row.deleted);
    assert_eq!(totals(&b), (1, 0, 0));
}

#[test]
fn replication_keeps_the_newer_stats() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (stale, current) = (account(&d1), account(&d2));
    stale.put_container(report(10, 0, 0, 0, 0, 10)).unwrap();
    current.put_container(report(10, 0, 3, 600, 0, 30)).unwrap();
    let stale_id = stale.get_info().unwrap().id;
    let current_id = current.get_info().unwrap().id;
    // The stale copy pushes first: nothing is lost.
    let rows = stale.get_items_since(-1, 10).unwrap();
    assert_eq!(rows[0].stats_timestamp, ts(10));
    current.merge_items(rows, Some(&stale_id)).unwrap();
    assert_eq!(totals(&current), (1, 3, 600));
    // Then the other way: the stale copy catches up.
    let rows = current.get_items_since(-1, 10).unwrap();
    let wire = serde_json::to_value(&rows).unwrap();
    assert_eq!(wire[0]["apus_stats_timestamp"], ts(30).internal());
    let rows: Vec<ContainerRecord> = serde_json::from_value(wire).unwrap();
    stale.merge_items(rows, Some(&current_id)).unwrap();
    assert_eq!(totals(&stale), (1, 3, 600));
    assert_eq!(row_of(&stale).stats_timestamp, ts(30));
    assert_eq!(
        stale.get_replication_info().unwrap().hash,
        current.get_replication_info().unwrap().hash
    );
}

#[test]
fn stats_timestamp_survives_the_pending_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    b.put_container(report(10, 0, 2, 20, 0, 33)).unwrap();
    assert!(std::fs::metadata(b.pending_path()).unwrap().len() > 0);
    let again = AccountBroker::open(b.path(), BrokerOptions::default()).unwrap();
    assert_eq!(row_of(&again).stats_timestamp, ts(33));
}

#[test]
fn a_database_without_the_column_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = account(&dir);
    b.put_container(report(10, 0, 2, 20, 0, 33)).unwrap();
    b.flush_pending().unwrap();
    let path = b.path().to_path_buf();
    drop(b);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE container DROP COLUMN apus_stats_timestamp")
        .unwrap();
    drop(conn);
    let b = AccountBroker::open(&path, BrokerOptions::default()).unwrap();
    // The old row has no stats: any report with stats replaces its counts.
    assert_eq!(row_of(&b).stats_timestamp, ts(0));
    b.put_container(report(10, 0, 5, 50, 0, 1)).unwrap();
    assert_eq!(totals(&b), (1, 5, 50));
    assert_eq!(row_of(&b).stats_timestamp, ts(1));
}
