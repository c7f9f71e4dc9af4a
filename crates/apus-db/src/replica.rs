//! One interface over both brokers for what replication, auditing and the
//! replication RPC do to any database, so that those are written once and
//! work for accounts and containers alike.

use std::path::Path;

use apus_core::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::account::{AccountBroker, ContainerRecord};
use crate::container::{ContainerBroker, ObjectRecord, ReplicationInfo};
use crate::db::{BrokerOptions, Metadata, SyncPoint};
use crate::error::Result;

/// The state of a container copy that decides which storage policy wins
/// when two copies disagree (Swift's `cmp_policy_info` inputs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyState {
    pub put_timestamp: Timestamp,
    pub delete_timestamp: Timestamp,
    pub status_changed_at: Timestamp,
    pub count: i64,
    pub storage_policy_index: i64,
}

impl PolicyState {
    pub fn of(info: &ReplicationInfo) -> Self {
        PolicyState {
            put_timestamp: info.put_timestamp,
            delete_timestamp: info.delete_timestamp,
            status_changed_at: info.status_changed_at,
            count: info.count,
            storage_policy_index: info.storage_policy_index,
        }
    }

    fn is_deleted(&self) -> bool {
        self.delete_timestamp > self.put_timestamp && self.count == 0
    }

    fn recreated(&self) -> bool {
        self.put_timestamp > self.delete_timestamp && self.delete_timestamp > Timestamp::ZERO
    }
}

/// Which of two container copies has the right storage policy (Swift's
/// `cmp_policy_info`): `Less` when `a` is the better one, `Greater` when
/// `b` is, `Equal` when they tie. A live copy beats a deleted one (two
/// deleted ones: the newest status change); a re-created copy beats one
/// never deleted, and between re-created copies one re-created after the
/// latest delete wins; otherwise the oldest status change (the first
/// creation) wins. Sorting copies by it puts the winner first.
pub fn cmp_policy_info(a: &PolicyState, b: &PolicyState) -> std::cmp::Ordering {
    use std::cmp::Ordering::{Greater, Less};
    let (a_deleted, b_deleted) = (a.is_deleted(), b.is_deleted());
    if a_deleted || b_deleted {
        if !a_deleted {
            return Less;
        }
        if !b_deleted {
            return Greater;
        }
        return b.status_changed_at.cmp(&a.status_changed_at);
    }
    let (a_recreated, b_recreated) = (a.recreated(), b.recreated());
    if a_recreated || b_recreated {
        if !a_recreated {
            return Greater;
        }
        if !b_recreated {
            return Less;
        }
        let last_delete = a.delete_timestamp.max(b.delete_timestamp);
        if a.put_timestamp < last_delete {
            return Greater;
        }
        if b.put_timestamp < last_delete {
            return Less;
        }
    }
    a.status_changed_at.cmp(&b.status_changed_at)
}

/// Whether `remote`'s storage policy should replace `local`'s (Swift's
/// `incorrect_policy_index`): the policies differ and `remote` is the
/// better copy by [`cmp_policy_info`].
pub fn remote_policy_wins(local: &PolicyState, remote: &PolicyState) -> bool {
    local.storage_policy_index != remote.storage_policy_index
        && cmp_policy_info(local, remote) == std::cmp::Ordering::Greater
}

/// A database as replication sees it. Implemented by [`AccountBroker`]
/// and [`ContainerBroker`]; every method blocks.
pub trait ReplicaBroker: Sized + Send + Sync + 'static {
    /// A row as it travels between copies (`get_items_since` /
    /// `merge_items`), with its ROWID.
    type Item: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// Swift's server type (`account`, `container`).
    const SERVER_TYPE: &'static str;
    /// The data directory on each device (`accounts`, `containers`).
    const DATADIR: &'static str;

    fn open(path: &Path, opts: BrokerOptions) -> Result<Self>;
    fn path(&self) -> &Path;
    fn item_rowid(item: &Self::Item) -> Option<i64>;

    fn get_replication_info(&self) -> Result<ReplicationInfo>;
    fn get_items_since(&self, start: i64, count: usize) -> Result<Vec<Self::Item>>;
    fn merge_items(&self, items: Vec<Self::Item>, source: Option<&str>) -> Result<()>;
    fn get_sync(&self, remote_id: &str, incoming: bool) -> Result<i64>;
    fn get_syncs(&self, incoming: bool) -> Result<Vec<SyncPoint>>;
    fn merge_syncs(&self, points: &[SyncPoint], incoming: bool) -> Result<()>;
    fn newid(&self, remote_id: &str) -> Result<()>;
    fn reclaim(&self, age: Timestamp, sync_age: Timestamp) -> Result<u64>;
    fn is_reclaimable(&self, now: Timestamp, reclaim_age: u64) -> Result<bool>;
    fn update_metadata(&self, updates: &Metadata, validate: bool) -> Result<()>;
    fn merge_timestamps(
        &self,
        created_at: Timestamp,
        put_timestamp: Timestamp,
        delete_timestamp: Timestamp,
    ) -> Result<()>;
    fn flush_pending(&self) -> Result<()>;
    fn quick_check(&self) -> Result<()>;
    fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T>;

    /// The account and container names this database belongs under.
    fn names(&self) -> Result<(String, Option<String>)>;

    /// Adopts `remote`'s storage policy when it is the better one
    /// (containers only); true when it changed.
    fn adopt_remote_policy(&self, _local: &ReplicationInfo, _remote: &PolicyState) -> Result<bool> {
        Ok(false)
    }

    /// Whether the account has heard this database's latest state, so a
    /// reclaimable copy may be removed (containers check their reported
    /// stats; accounts always are).
    fn report_up_to_date(&self) -> Result<bool> {
        Ok(true)
    }
}

impl ReplicaBroker for ContainerBroker {
    type Item = ObjectRecord;
    const SERVER_TYPE: &'static str = "container";
    const DATADIR: &'static str = "containers";

    fn open(path: &Path, opts: BrokerOptions) -> Result<Self> {
        ContainerBroker::open(path, opts)
    }
    fn path(&self) -> &Path {
        ContainerBroker::path(self)
    }
    fn item_rowid(item: &ObjectRecord) -> Option<i64> {
        item.rowid
    }
    fn get_replication_info(&self) -> Result<ReplicationInfo> {
        ContainerBroker::get_replication_info(self)
    }
    fn get_items_since(&self, start: i64, count: usize) -> Result<Vec<ObjectRecord>> {
        ContainerBroker::get_items_since(self, start, count)
    }
    fn merge_items(&self, items: Vec<ObjectRecord>, source: Option<&str>) -> Result<()> {
        ContainerBroker::merge_items(self, items, source)
    }
    fn get_sync(&self, remote_id: &str, incoming: bool) -> Result<i64> {
        ContainerBroker::get_sync(self, remote_id, incoming)
    }
    fn get_syncs(&self, incoming: bool) -> Result<Vec<SyncPoint>> {
        ContainerBroker::get_syncs(self, incoming)
    }
    fn merge_syncs(&self, points: &[SyncPoint], incoming: bool) -> Result<()> {
        ContainerBroker::merge_syncs(self, points, incoming)
    }
    fn newid(&self, remote_id: &str) -> Result<()> {
        ContainerBroker::newid(self, remote_id)
    }
    fn reclaim(&self, age: Timestamp, sync_age: Timestamp) -> Result<u64> {
        ContainerBroker::reclaim(self, age, sync_age)
    }
    fn is_reclaimable(&self, now: Timestamp, reclaim_age: u64) -> Result<bool> {
        ContainerBroker::is_reclaimable(self, now, reclaim_age)
    }
    fn update_metadata(&self, updates: &Metadata, validate: bool) -> Result<()> {
        ContainerBroker::update_metadata(self, updates, validate)
    }
    fn merge_timestamps(&self, c: Timestamp, p: Timestamp, d: Timestamp) -> Result<()> {
        ContainerBroker::merge_timestamps(self, c, p, d)
    }
    fn flush_pending(&self) -> Result<()> {
        ContainerBroker::flush_pending(self)
    }
    fn quick_check(&self) -> Result<()> {
        ContainerBroker::quick_check(self)
    }
    fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        ContainerBroker::locked(self, f)
    }
    fn names(&self) -> Result<(String, Option<String>)> {
        let info = self.get_info()?;
        Ok((info.account, Some(info.container)))
    }
    fn adopt_remote_policy(&self, local: &ReplicationInfo, remote: &PolicyState) -> Result<bool> {
        if !remote_policy_wins(&PolicyState::of(local), remote) {
            return Ok(false);
        }
        self.set_storage_policy_index(remote.storage_policy_index, Timestamp::now())?;
        Ok(true)
    }
    fn report_up_to_date(&self) -> Result<bool> {
        let i = self.get_info()?;
        Ok(i.reported_put_timestamp == i.put_timestamp
            && i.reported_delete_timestamp == i.delete_timestamp
            && i.reported_object_count == i.object_count
            && i.reported_bytes_used == i.bytes_used)
    }
}

impl ReplicaBroker for AccountBroker {
    type Item = ContainerRecord;
    const SERVER_TYPE: &'static str = "account";
    const DATADIR: &'static str = "accounts";

    fn open(path: &Path, opts: BrokerOptions) -> Result<Self> {
        AccountBroker::open(path, opts)
    }
    fn path(&self) -> &Path {
        AccountBroker::path(self)
    }
    fn item_rowid(item: &ContainerRecord) -> Option<i64> {
        item.rowid
    }
    fn get_replication_info(&self) -> Result<ReplicationInfo> {
        AccountBroker::get_replication_info(self)
    }
    fn get_items_since(&self, start: i64, count: usize) -> Result<Vec<ContainerRecord>> {
        AccountBroker::get_items_since(self, start, count)
    }
    fn merge_items(&self, items: Vec<ContainerRecord>, source: Option<&str>) -> Result<()> {
        AccountBroker::merge_items(self, items, source)
    }
    fn get_sync(&self, remote_id: &str, incoming: bool) -> Result<i64> {
        AccountBroker::get_sync(self, remote_id, incoming)
    }
    fn get_syncs(&self, incoming: bool) -> Result<Vec<SyncPoint>> {
        AccountBroker::get_syncs(self, incoming)
    }
    fn merge_syncs(&self, points: &[SyncPoint], incoming: bool) -> Result<()> {
        AccountBroker::merge_syncs(self, points, incoming)
    }
    fn newid(&self, remote_id: &str) -> Result<()> {
        AccountBroker::newid(self, remote_id)
    }
    fn reclaim(&self, age: Timestamp, sync_age: Timestamp) -> Result<u64> {
        AccountBroker::reclaim(self, age, sync_age)
    }
    fn is_reclaimable(&self, now: Timestamp, reclaim_age: u64) -> Result<bool> {
        AccountBroker::is_reclaimable(self, now, reclaim_age)
    }
    fn update_metadata(&self, updates: &Metadata, validate: bool) -> Result<()> {
        AccountBroker::update_metadata(self, updates, validate)
    }
    fn merge_timestamps(&self, c: Timestamp, p: Timestamp, d: Timestamp) -> Result<()> {
        AccountBroker::merge_timestamps(self, c, p, d)
    }
    fn flush_pending(&self) -> Result<()> {
        AccountBroker::flush_pending(self)
    }
    fn quick_check(&self) -> Result<()> {
        AccountBroker::quick_check(self)
    }
    fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        AccountBroker::locked(self, f)
    }
    fn names(&self) -> Result<(String, Option<String>)> {
        Ok((self.get_info()?.account, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(s).unwrap()
    }

    fn state(put: f64, del: f64, changed: f64, count: i64, spi: i64) -> PolicyState {
        PolicyState {
            put_timestamp: ts(put),
            delete_timestamp: if del == 0.0 { Timestamp::ZERO } else { ts(del) },
            status_changed_at: ts(changed),
            count,
            storage_policy_index: spi,
        }
    }

    /// Every ordered pair of 36 container states: put 10 or 20, delete
    /// 0, 15 or 25, status change 10, 20 or 30, count 0 or 1 (in that
    /// nesting, count innermost). The expected table was computed with
    /// Swift 2.38.3's `swift.container.reconciler.cmp_policy_info`
    /// (`<` for -1, `=` for 0, `>` for 1), row by row.
    #[test]
    fn cmp_policy_info_matches_swift_on_every_pair() {
        use std::cmp::Ordering;
        let expected: String = [
            "==<<<<<=<<<<<=<<<<==<<<<>>>>>><=<<<<==<<<<<=<<<<<=<<<<==<<<<>>>>>><=<<<<",
            ">>==<<<><=<<<><=<<>>==<<>>>>>><><=<<>>==<<<><=<<<><=<<>>==<<>>>>>><><=<<",
            ">>>>==<><><=<><><=>>>>==>>>>>><><><=>>>>==<><><=<><><=>>>>==>>>>>><><><=",
            ">>>>>>=>>>>>=>>>>>>>>>>>>>>>>>=>>>>>==<<<<<=<<<<<=<<<<==<<<<>>>>>><=<<<<",
            ">>>>>><>=>>><>=>>>>>>>>>>>>>>><>=>>>>>==<<<><=<<<><=<<>>==<<>>>>>><><=<<",
            ">>>>>><><>=><><>=>>>>>>>>>>>>><><>=>>>>>==<><><=<><><=>>>>==>>>>>><><><=",
            ">>>>>>=>>>>>=>>>>>>>>>>>>>>>>>=>>>>>==<<<<<=<<<<<=<<<<==<<<<>>>>>><=<<<<",
            ">>>>>><>=>>><>=>>>>>>>>>>>>>>><>=>>>>>==<<<><=<<<><=<<>>==<<>>>>>><><=<<",
            ">>>>>><><>=><><>=>>>>>>>>>>>>><><>=>>>>>==<><><=<><><=>>>>==>>>>>><><><=",
            "==<<<<<=<<<<<=<<<<==<<<<>>>>>><=<<<<==<<<<<=<<<<<=<<<<==<<<<>>>>>><=<<<<",
            ">>==<<<><=<<<><=<<>>==<<>>>>>><><=<<>>==<<<><=<<<><=<<>>==<<>>>>>><><=<<",
            ">>>>==<><><=<><><=>>>>==>>>>>><><><=>>>>==<><><=<><><=>>>>==>>>>>><><><=",
            "<<<<<<<<<<<<<<<<<<<<<<<<==<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<==<<<<<<<<<<",
            "<<<<<<<<<<<<<<<<<<<<<<<<>>==<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<>>==<<<<<<<<",
            "<<<<<<<<<<<<<<<<<<<<<<<<>>>>==<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<>>>>==<<<<<<",
            ">>>>>>=>>>>>=>>>>>>>>>>>>>>>>>=>>>>>==<<<<<=<<<<<=<<<<==<<<<>>>>>><=<<<<",
            ">>>>>><>=>>><>=>>>>>>>>>>>>>>><>=>>>>>==<<<><=<<<><=<<>>==<<>>>>>><><=<<",
            ">>>>>><><>=><><>=>>>>>>>>>>>>><><>=>>>>>==<><><=<><><=>>>>==>>>>>><><><=",
        ]
        .concat();
        let mut states = Vec::new();
        for put in [10.0, 20.0] {
            for del in [0.0, 15.0, 25.0] {
                for changed in [10.0, 20.0, 30.0] {
                    for count in [0, 1] {
                        states.push(state(put, del, changed, count, 0));
                    }
                }
            }
        }
        let mut got = String::new();
        for a in &states {
            for b in &states {
                got.push(match cmp_policy_info(a, b) {
                    Ordering::Less => '<',
                    Ordering::Equal => '=',
                    Ordering::Greater => '>',
                });
            }
        }
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.chars().zip(expected.chars()).enumerate() {
            assert_eq!(g, e, "{:?} vs {:?}", states[i / 36], states[i % 36]);
        }
    }

    #[test]
    fn the_first_creation_wins_between_live_copies() {
        let older = state(10.0, 0.0, 10.0, 0, 1);
        let newer = state(20.0, 0.0, 20.0, 0, 2);
        assert!(remote_policy_wins(&newer, &older));
        assert!(!remote_policy_wins(&older, &newer));
        assert!(!remote_policy_wins(&older, &state(5.0, 0.0, 5.0, 0, 1)));
    }

    #[test]
    fn a_live_copy_beats_a_deleted_one_and_recreation_beats_creation() {
        let deleted = state(10.0, 15.0, 15.0, 0, 1);
        let live = state(20.0, 0.0, 20.0, 3, 2);
        assert!(remote_policy_wins(&deleted, &live));
        assert!(!remote_policy_wins(&live, &deleted));
        let recreated = state(30.0, 15.0, 30.0, 0, 3);
        let original = state(5.0, 0.0, 5.0, 0, 1);
        assert!(remote_policy_wins(&original, &recreated));
        assert!(!remote_policy_wins(&recreated, &original));
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn rows_read_as_swift_sends_them() {
        // Swift's get_items_since gives SQLite's 0/1 flags and text
        // timestamps; old rows may hold numbers.
        let acct: ContainerRecord = serde_json::from_str(
            r#"{"ROWID": 7, "name": "c", "put_timestamp": "1700000000.00000",
                "delete_timestamp": "0", "object_count": 2, "bytes_used": 9,
                "deleted": 0, "storage_policy_index": 1}"#,
        )
        .unwrap();
        assert_eq!(acct.rowid, Some(7));
        assert!(!acct.deleted);
        assert_eq!(acct.delete_timestamp, Timestamp::ZERO);
        // Swift's rows have no stats timestamp: unknown, time zero.
        assert_eq!(acct.stats_timestamp, Timestamp::ZERO);
        let back = serde_json::to_value(&acct).unwrap();
        assert_eq!(back["deleted"], 0);
        let numeric: ContainerRecord = serde_json::from_str(
            r#"{"name": "c", "put_timestamp": 1700000000, "delete_timestamp": 0.0,
                "object_count": 0, "bytes_used": 0, "deleted": true}"#,
        )
        .unwrap();
        assert!(numeric.deleted);
        assert_eq!(numeric.put_timestamp.normal(), "1700000000.00000");
        let obj: ObjectRecord = serde_json::from_str(
            r#"{"ROWID": 3, "name": "o", "created_at": "1700000000.00000",
                "size": 1, "content_type": "text/plain", "etag": "e",
                "deleted": 1, "storage_policy_index": 0}"#,
        )
        .unwrap();
        assert!(obj.deleted);
        assert!(serde_json::from_str::<ContainerRecord>(r#"{"name": 1}"#).is_err());
    }
}
