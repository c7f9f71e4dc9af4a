//! The account database: one row per container in `container`, totals in
//! `account_stat`, totals per storage policy in `policy_stat`.
//!
//! Difference from Swift: a container row also holds
//! `apus_stats_timestamp`, when its object count and bytes were read from
//! the container, and a merge keeps the counts (and storage policy) of the
//! record with the newer stats. Swift takes the incoming record's counts
//! whatever their age, so a replica that missed the container's latest
//! report and replicates its old row sets its peers back, and the
//! container, having recorded its counts as reported, never corrects them.
//! Records without the column (Swift's rows and pending entries, older
//! apus ones) count as stats of time zero: two of them merge as in Swift.
//! Swift reads and writes these files unchanged: it names its columns in
//! every insert and select except replication's `SELECT *`, whose extra
//! key its `merge_items` ignores, and its pending loader ignores the extra
//! tuple element. A database opened without the column (made by Swift)
//! gets it added.

use std::collections::BTreeMap;
use std::path::Path;

use apus_core::Timestamp;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_pickle::Value;

use crate::container::{parse_ts_value, ReplicationInfo};
use crate::db::{write_tx, BrokerOptions, Db, Kind, Metadata, SyncPoint};
use crate::error::{DbError, Result};
use crate::listing::{walk, ListParams, Listing, Query};
use crate::pending;

/// A container row of an account, or an update to merge (Swift's record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    #[serde(rename = "ROWID", default, skip_serializing_if = "Option::is_none")]
    pub rowid: Option<i64>,
    pub name: String,
    #[serde(with = "crate::encode::serde_ts")]
    pub put_timestamp: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub delete_timestamp: Timestamp,
    pub object_count: i64,
    pub bytes_used: i64,
    #[serde(with = "crate::encode::int_bool")]
    pub deleted: bool,
    #[serde(default)]
    pub storage_policy_index: i64,
    /// When the counts were read from the container; zero when unknown.
    #[serde(
        rename = "apus_stats_timestamp",
        default,
        with = "crate::encode::serde_ts"
    )]
    pub stats_timestamp: Timestamp,
}

impl ContainerRecord {
    /// An update as the container updater reports it; `deleted` follows
    /// Swift's rule (a delete newer than the put, and no objects).
    pub fn new(
        name: &str,
        put_timestamp: Timestamp,
        delete_timestamp: Timestamp,
        object_count: i64,
        bytes_used: i64,
        storage_policy_index: i64,
    ) -> Self {
        ContainerRecord {
            rowid: None,
            name: name.to_string(),
            put_timestamp,
            delete_timestamp,
            object_count,
            bytes_used,
            deleted: delete_timestamp > put_timestamp && object_count == 0,
            storage_policy_index,
            stats_timestamp: Timestamp::ZERO,
        }
    }

    /// The same report, its counts read from the container at `ts`.
    pub fn with_stats_timestamp(mut self, ts: Timestamp) -> Self {
        self.stats_timestamp = ts;
        self
    }

    fn to_pickle(&self) -> Vec<Value> {
        vec![
            Value::String(self.name.clone()),
            Value::String(self.put_timestamp.internal()),
            Value::String(self.delete_timestamp.internal()),
            Value::I64(self.object_count),
            Value::I64(self.bytes_used),
            Value::I64(i64::from(self.deleted)),
            Value::I64(self.storage_policy_index),
            // Swift's loader reads the first seven elements only.
            Value::String(self.stats_timestamp.internal()),
        ]
    }

    fn from_pickle(t: &[Value]) -> Option<Self> {
        let ts = |v: Option<&Value>| -> Option<Timestamp> {
            let s = pending::as_string(v)?;
            if s.is_empty() {
                return Some(Timestamp::ZERO);
            }
            Timestamp::parse(&s).ok()
        };
        Some(ContainerRecord {
            rowid: None,
            name: pending::as_string(t.first())?,
            put_timestamp: ts(t.get(1))?,
            delete_timestamp: ts(t.get(2))?,
            object_count: pending::as_int(t.get(3))?,
            bytes_used: pending::as_int(t.get(4))?,
            deleted: pending::as_int(t.get(5))? != 0,
            storage_policy_index: pending::as_int(t.get(6))?,
            // Absent from Swift's entries; unreadable counts as unknown.
            stats_timestamp: ts(t.get(7)).unwrap_or(Timestamp::ZERO),
        })
    }
}

/// An account listing row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEntry {
    pub name: String,
    pub object_count: i64,
    pub bytes_used: i64,
    /// Also the container's last-modified time in listings.
    pub put_timestamp: Timestamp,
    pub storage_policy_index: i64,
}

/// Totals of one storage policy in an account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPolicyStat {
    pub container_count: i64,
    pub object_count: i64,
    pub bytes_used: i64,
}

/// The account's own row (`get_info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub account: String,
    #[serde(with = "crate::encode::serde_ts")]
    pub created_at: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub put_timestamp: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub delete_timestamp: Timestamp,
    pub status: String,
    #[serde(with = "crate::encode::serde_ts")]
    pub status_changed_at: Timestamp,
    pub container_count: i64,
    pub object_count: i64,
    pub bytes_used: i64,
    pub hash: String,
    pub id: String,
}

/// An account database on one SQLite file (plus its `.pending` file).
pub struct AccountBroker {
    db: Db,
}

impl AccountBroker {
    pub fn create(
        path: &Path,
        account: &str,
        put_timestamp: Timestamp,
        opts: BrokerOptions,
    ) -> Result<Self> {
        if account.is_empty() {
            return Err(DbError::Invalid(
                "an account database needs an account name".into(),
            ));
        }
        let db = Db::create(path, Kind::Account, opts, |tx, id| {
            tx.execute_batch(ACCOUNT_SCHEMA_SQL)
                .map_err(|e| DbError::sqlite(path, e))?;
            tx.execute(
                "INSERT INTO account_stat (account, created_at, id, put_timestamp, \
                 status_changed_at, container_count) VALUES (?1, ?2, ?3, ?4, ?4, 0)",
                rusqlite::params![
                    account,
                    Timestamp::now().internal(),
                    id,
                    put_timestamp.internal()
                ],
            )
            .map_err(|e| DbError::sqlite(path, e))?;
            Ok(())
        })?;
        Ok(AccountBroker { db })
    }

    /// Opens an existing database, adding the stats timestamp column to
    /// one made by Swift.
    pub fn open(path: &Path, opts: BrokerOptions) -> Result<Self> {
        let db = Db::open(path, Kind::Account, opts)?;
        db.with_conn(|conn| add_stats_column(&db, conn))?;
        Ok(AccountBroker { db })
    }

    /// Opens the database, creating it first if there is none; the flag
    /// tells whether this call created it.
    pub fn create_or_open(
        path: &Path,
        account: &str,
        put_timestamp: Timestamp,
        opts: BrokerOptions,
    ) -> Result<(Self, bool)> {
        if !path.exists() {
            match Self::create(path, account, put_timestamp, opts.clone()) {
                Ok(b) => return Ok((b, true)),
                Err(DbError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((Self::open(path, opts)?, false))
    }

    pub fn path(&self) -> &Path {
        &self.db.path
    }

    pub fn pending_path(&self) -> &Path {
        &self.db.pending
    }

    /// Records a container's state as its container server reports it
    /// (durably appended to the pending file before returning).
    pub fn put_container(&self, record: ContainerRecord) -> Result<()> {
        if record.name.is_empty() {
            return Err(DbError::Invalid("container name is empty".into()));
        }
        self.db.put_record(record.to_pickle(), &merge_pending)
    }

    pub fn flush_pending(&self) -> Result<()> {
        self.db.commit_pending_strict(&merge_pending)
    }

    fn commit_pending(&self) -> Result<()> {
        self.db.commit_pending(&merge_pending)
    }

    /// Merges container rows: newest put and delete timestamps win, counts
    /// and storage policy come from the record with the newer stats
    /// timestamp (the update's on a tie, as in Swift), and `deleted` is
    /// recomputed. With `source`, the incoming sync point moves to the
    /// highest ROWID merged.
    pub fn merge_items(&self, items: Vec<ContainerRecord>, source: Option<&str>) -> Result<()> {
        let sync = match source {
            None => None,
            Some(remote) => {
                if items.iter().any(|i| i.rowid.is_none()) {
                    return Err(DbError::Invalid(
                        "merge from a source needs ROWIDs on the items".into(),
                    ));
                }
                Some((
                    remote,
                    items.iter().filter_map(|i| i.rowid).max().unwrap_or(-1),
                ))
            }
        };
        self.db
            .with_conn(|conn| merge_containers(&self.db, conn, items, sync))
    }

    pub fn get_info(&self) -> Result<AccountInfo> {
        self.commit_pending()?;
        self.db.with_conn(|conn| self.info_query(conn))
    }

    fn info_query(&self, conn: &Connection) -> Result<AccountInfo> {
        let db = &self.db;
        let mut stmt = conn
            .prepare_cached(
                "SELECT account, created_at, put_timestamp, delete_timestamp, status, \
                 status_changed_at, container_count, object_count, bytes_used, hash, id \
                 FROM account_stat",
            )
            .map_err(|e| db.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| db.err(e))?;
        let row = rows
            .next()
            .map_err(|e| db.err(e))?
            .ok_or_else(|| DbError::corrupt(&db.path, "missing row in stat table", "no row"))?;
        let s = |i: usize| -> Result<String> {
            row.get::<_, Option<String>>(i)
                .map(Option::unwrap_or_default)
                .map_err(|e| db.err(e))
        };
        let n = |i: usize| -> Result<i64> {
            row.get::<_, Option<i64>>(i)
                .map(Option::unwrap_or_default)
                .map_err(|e| db.err(e))
        };
        let t = |i: usize| -> Result<Timestamp> {
            parse_ts_value(db, row.get(i).map_err(|e| db.err(e))?)
        };
        Ok(AccountInfo {
            account: s(0)?,
            created_at: t(1)?,
            put_timestamp: t(2)?,
            delete_timestamp: t(3)?,
            status: s(4)?,
            status_changed_at: t(5)?,
            container_count: n(6)?,
            object_count: n(7)?,
            bytes_used: n(8)?,
            hash: s(9)?,
            id: s(10)?,
        })
    }

    /// Deleted: status DELETED, or a delete newer than the put and no
    /// containers.
    pub fn is_deleted(&self) -> Result<bool> {
        if !self.db.path.exists() {
            return Ok(true);
        }
        let info = self.get_info()?;
        Ok(info.status == "DELETED"
            || (info.container_count == 0 && info.delete_timestamp > info.put_timestamp))
    }

    /// Only the explicit deletion (status, or delete newer than put).
    pub fn is_status_deleted(&self) -> Result<bool> {
        let info = self.db.with_conn(|conn| self.info_query(conn))?;
        Ok(info.status == "DELETED" || info.delete_timestamp > info.put_timestamp)
    }

    /// No containers that are not deleted.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.get_info()?.container_count == 0)
    }

    pub fn get_policy_stats(&self) -> Result<BTreeMap<i64, AccountPolicyStat>> {
        self.commit_pending()?;
        self.db.with_conn(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT storage_policy_index, container_count, object_count, bytes_used \
                     FROM policy_stat",
                )
                .map_err(|e| self.db.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        AccountPolicyStat {
                            container_count: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                            object_count: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                            bytes_used: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                        },
                    ))
                })
                .map_err(|e| self.db.err(e))?;
            rows.collect::<std::result::Result<BTreeMap<_, _>, _>>()
                .map_err(|e| self.db.err(e))
        })
    }

    /// Lists containers per `params` (`path` is ignored for accounts).
    pub fn list_containers(&self, params: &ListParams) -> Result<Vec<Listing<ContainerEntry>>> {
        self.commit_pending()?;
        let params = ListParams {
            path: None,
            ..params.clone()
        };
        let db = &self.db;
        db.with_conn(|conn| {
            walk(&params, |q: &Query, visit| {
                let mut sql = String::from(
                    "SELECT name, object_count, bytes_used, put_timestamp, storage_policy_index \
                     FROM container WHERE deleted = 0",
                );
                for c in &q.conditions {
                    sql.push_str(" AND ");
                    sql.push_str(c);
                }
                sql.push_str(if q.reverse {
                    " ORDER BY name DESC LIMIT ?"
                } else {
                    " ORDER BY name LIMIT ?"
                });
                let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(q.args.len() + 1);
                for a in &q.args {
                    args.push(a);
                }
                let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
                args.push(&limit);
                let mut stmt = conn.prepare_cached(&sql).map_err(|e| db.err(e))?;
                let mut rows = stmt.query(args.as_slice()).map_err(|e| db.err(e))?;
                while let Some(row) = rows.next().map_err(|e| db.err(e))? {
                    let name = db.row_text(row, 0)?;
                    let entry = ContainerEntry {
                        name: name.to_owned(),
                        object_count: row
                            .get::<_, Option<i64>>(1)
                            .map_err(|e| db.err(e))?
                            .unwrap_or(0),
                        bytes_used: row
                            .get::<_, Option<i64>>(2)
                            .map_err(|e| db.err(e))?
                            .unwrap_or(0),
                        put_timestamp: parse_ts_value(db, row.get(3).map_err(|e| db.err(e))?)?,
                        storage_policy_index: row
                            .get::<_, Option<i64>>(4)
                            .map_err(|e| db.err(e))?
                            .unwrap_or(0),
                    };
                    if !visit(name, entry) {
                        break;
                    }
                }
                Ok(())
            })
        })
    }

    /// Rows with ROWID above `start`, in ROWID order (replication).
    pub fn get_items_since(&self, start: i64, count: usize) -> Result<Vec<ContainerRecord>> {
        self.commit_pending()?;
        let db = &self.db;
        db.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT ROWID, name, put_timestamp, delete_timestamp, object_count, \
                     bytes_used, deleted, storage_policy_index, apus_stats_timestamp \
                     FROM container WHERE ROWID > ? ORDER BY ROWID ASC LIMIT ?",
                )
                .map_err(|e| db.err(e))?;
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            let mut rows = stmt
                .query(rusqlite::params![start, count])
                .map_err(|e| db.err(e))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(|e| db.err(e))? {
                out.push(read_container_row(db, r)?);
            }
            Ok(out)
        })
    }

    pub fn get_container_row(&self, name: &str) -> Result<Option<ContainerRecord>> {
        self.commit_pending()?;
        let db = &self.db;
        db.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT ROWID, name, put_timestamp, delete_timestamp, object_count, \
                     bytes_used, deleted, storage_policy_index, apus_stats_timestamp \
                     FROM container WHERE name = ?",
                )
                .map_err(|e| db.err(e))?;
            let mut rows = stmt.query([name]).map_err(|e| db.err(e))?;
            match rows.next().map_err(|e| db.err(e))? {
                Some(r) => Ok(Some(read_container_row(db, r)?)),
                None => Ok(None),
            }
        })
    }

    pub fn get_replication_info(&self) -> Result<ReplicationInfo> {
        let info = self.get_info()?;
        let (metadata, max_row) = self.db.with_conn(|conn| {
            Ok((
                self.db.raw_metadata(conn)?,
                self.db.max_row(conn, "container")?,
            ))
        })?;
        Ok(ReplicationInfo {
            account: info.account,
            container: String::new(),
            created_at: info.created_at,
            put_timestamp: info.put_timestamp,
            delete_timestamp: info.delete_timestamp,
            status_changed_at: info.status_changed_at,
            count: info.container_count,
            object_count: info.object_count,
            bytes_used: info.bytes_used,
            hash: info.hash,
            id: info.id,
            metadata,
            max_row,
            storage_policy_index: 0,
            shard_max_row: -1,
        })
    }

    pub fn get_sync(&self, remote_id: &str, incoming: bool) -> Result<i64> {
        self.db.get_sync(remote_id, incoming)
    }

    pub fn get_syncs(&self, incoming: bool) -> Result<Vec<SyncPoint>> {
        self.db.get_syncs(incoming)
    }

    pub fn merge_syncs(&self, points: &[SyncPoint], incoming: bool) -> Result<()> {
        self.db.merge_syncs(points, incoming)
    }

    pub fn newid(&self, remote_id: &str) -> Result<()> {
        self.db.newid(remote_id, "")
    }

    /// Removes deleted container rows whose delete_timestamp is older than
    /// `age`, sync rows older than `sync_age` and removed metadata keys.
    pub fn reclaim(&self, age: Timestamp, sync_age: Timestamp) -> Result<u64> {
        self.db.commit_pending_strict(&merge_pending)?;
        self.db.reclaim(age, sync_age)
    }

    pub fn is_reclaimable(&self, now: Timestamp, reclaim_age: u64) -> Result<bool> {
        let info = self.get_info()?;
        let cutoff = Timestamp::from_ticks(now.ticks().saturating_sub(reclaim_age * 100_000), 0)
            .unwrap_or(Timestamp::ZERO);
        Ok(info.container_count == 0
            && cutoff > info.delete_timestamp
            && info.delete_timestamp > info.put_timestamp)
    }

    pub fn metadata(&self) -> Result<Metadata> {
        self.db.metadata()
    }

    pub fn update_metadata(&self, updates: &Metadata, validate: bool) -> Result<()> {
        self.db.update_metadata(updates, validate)
    }

    pub fn delete_db(&self, timestamp: Timestamp) -> Result<()> {
        self.db.delete_db(timestamp)
    }

    pub fn update_put_timestamp(&self, timestamp: Timestamp) -> Result<()> {
        self.db.bump_stat_timestamp("put_timestamp", timestamp)
    }

    pub fn update_status_changed_at(&self, timestamp: Timestamp) -> Result<()> {
        self.db.bump_stat_timestamp("status_changed_at", timestamp)
    }

    pub fn merge_timestamps(
        &self,
        created_at: Timestamp,
        put_timestamp: Timestamp,
        delete_timestamp: Timestamp,
    ) -> Result<()> {
        let before = self.is_deleted()?;
        self.db
            .merge_stat_timestamps(created_at, put_timestamp, delete_timestamp)?;
        if before != self.is_deleted()? {
            self.update_status_changed_at(Timestamp::now())?;
        }
        Ok(())
    }

    pub fn quick_check(&self) -> Result<()> {
        self.db.quick_check()
    }

    /// Runs `f` while holding the database's write lock (replication copies
    /// the file whole under it). Flush the pending file first if it matters.
    pub fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        self.db.locked(f)
    }
}

fn read_container_row(db: &Db, r: &rusqlite::Row<'_>) -> Result<ContainerRecord> {
    let n = |i: usize| -> Result<i64> {
        r.get::<_, Option<i64>>(i)
            .map(Option::unwrap_or_default)
            .map_err(|e| db.err(e))
    };
    Ok(ContainerRecord {
        rowid: Some(n(0)?),
        name: r.get(1).map_err(|e| db.err(e))?,
        put_timestamp: parse_ts_value(db, r.get(2).map_err(|e| db.err(e))?)?,
        delete_timestamp: parse_ts_value(db, r.get(3).map_err(|e| db.err(e))?)?,
        object_count: n(4)?,
        bytes_used: n(5)?,
        deleted: n(6)? != 0,
        storage_policy_index: n(7)?,
        // Advisory: an unreadable one is unknown, not a broken row.
        stats_timestamp: parse_ts_value(db, r.get(8).map_err(|e| db.err(e))?)
            .unwrap_or(Timestamp::ZERO),
    })
}

/// Adds `apus_stats_timestamp` to the `container` table of a database
/// made by Swift; existing rows read as stats of time zero.
fn add_stats_column(db: &Db, conn: &mut Connection) -> Result<()> {
    fn has_column(conn: &Connection) -> rusqlite::Result<bool> {
        conn.prepare_cached(
            "SELECT 1 FROM pragma_table_info('container') WHERE name = 'apus_stats_timestamp'",
        )?
        .exists([])
    }
    if has_column(conn).map_err(|e| db.err(e))? {
        return Ok(());
    }
    write_tx(conn, &db.path, |tx| {
        // Another connection may have added it meanwhile.
        if !has_column(tx).map_err(|e| db.err(e))? {
            tx.execute_batch(
                "ALTER TABLE container ADD COLUMN apus_stats_timestamp TEXT DEFAULT '0'",
            )
            .map_err(|e| db.err(e))?;
        }
        Ok(())
    })
}

fn merge_pending(db: &Db, conn: &mut Connection, entries: Vec<Vec<Value>>) -> Result<()> {
    let items = entries
        .iter()
        .filter_map(|t| ContainerRecord::from_pickle(t))
        .collect();
    merge_containers(db, conn, items, None)
}

/// A container row as a merge finds it (timestamps as stored).
struct StoredRow {
    put: rusqlite::types::Value,
    delete: rusqlite::types::Value,
    object_count: i64,
    bytes_used: i64,
    storage_policy_index: i64,
    stats: rusqlite::types::Value,
}

fn merge_containers(
    db: &Db,
    conn: &mut Connection,
    items: Vec<ContainerRecord>,
    sync: Option<(&str, i64)>,
) -> Result<()> {
    if items.is_empty() && sync.is_none() {
        return Ok(());
    }
    write_tx(conn, &db.path, |tx| {
        let mut sel = tx
            .prepare_cached(
                "SELECT put_timestamp, delete_timestamp, object_count, bytes_used, \
                 storage_policy_index, apus_stats_timestamp FROM container \
                 WHERE name = ? AND deleted IN (0, 1)",
            )
            .map_err(|e| db.err(e))?;
        let mut del = tx
            .prepare_cached("DELETE FROM container WHERE name = ? AND deleted IN (0, 1)")
            .map_err(|e| db.err(e))?;
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO container (name, put_timestamp, delete_timestamp, object_count, \
                 bytes_used, deleted, storage_policy_index, apus_stats_timestamp) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .map_err(|e| db.err(e))?;
        for item in items {
            let mut rec = item;
            let existing = sel
                .query_row([&rec.name], |r| {
                    Ok(StoredRow {
                        put: r.get(0)?,
                        delete: r.get(1)?,
                        object_count: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                        bytes_used: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                        storage_policy_index: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                        stats: r.get(5)?,
                    })
                })
                .optional()
                .map_err(|e| db.err(e))?;
            if let Some(row) = existing {
                // An unreadable stored timestamp loses to the update's.
                let stored = |v| parse_ts_value(db, v).unwrap_or(Timestamp::ZERO);
                rec.put_timestamp = rec.put_timestamp.max(stored(row.put));
                rec.delete_timestamp = rec.delete_timestamp.max(stored(row.delete));
                let stats = stored(row.stats);
                if stats > rec.stats_timestamp {
                    rec.object_count = row.object_count;
                    rec.bytes_used = row.bytes_used;
                    rec.storage_policy_index = row.storage_policy_index;
                    rec.stats_timestamp = stats;
                }
                rec.deleted = rec.delete_timestamp > rec.put_timestamp && rec.object_count == 0;
            }
            del.execute([&rec.name]).map_err(|e| db.err(e))?;
            ins.execute(rusqlite::params![
                rec.name,
                rec.put_timestamp.internal(),
                rec.delete_timestamp.internal(),
                rec.object_count,
                rec.bytes_used,
                i64::from(rec.deleted),
                rec.storage_policy_index,
                rec.stats_timestamp.internal()
            ])
            .map_err(|e| db.err(e))?;
        }
        if let Some((remote, point)) = sync {
            crate::db::upsert_sync(tx, "incoming_sync", remote, point).map_err(|e| db.err(e))?;
        }
        Ok(())
    })
}

/// The account schema, equivalent to Swift 2.38's plus
/// `container.apus_stats_timestamp`, minus the shared sync tables.
const ACCOUNT_SCHEMA_SQL: &str = "
CREATE TABLE container (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    put_timestamp TEXT,
    delete_timestamp TEXT,
    object_count INTEGER,
    bytes_used INTEGER,
    deleted INTEGER DEFAULT 0,
    storage_policy_index INTEGER DEFAULT 0,
    apus_stats_timestamp TEXT DEFAULT '0'
);
CREATE INDEX ix_container_deleted_name ON container (deleted, name);
CREATE TRIGGER container_insert AFTER INSERT ON container BEGIN
    UPDATE account_stat
        SET container_count = container_count + (1 - new.deleted),
            object_count = object_count + new.object_count,
            bytes_used = bytes_used + new.bytes_used,
            hash = chexor(hash, new.name,
                new.put_timestamp || '-' || new.delete_timestamp || '-' ||
                new.object_count || '-' || new.bytes_used);
END;
CREATE TRIGGER container_update BEFORE UPDATE ON container BEGIN
    SELECT RAISE(FAIL, 'UPDATE not allowed; DELETE and INSERT');
END;
CREATE TRIGGER container_delete AFTER DELETE ON container BEGIN
    UPDATE account_stat
        SET container_count = container_count - (1 - old.deleted),
            object_count = object_count - old.object_count,
            bytes_used = bytes_used - old.bytes_used,
            hash = chexor(hash, old.name,
                old.put_timestamp || '-' || old.delete_timestamp || '-' ||
                old.object_count || '-' || old.bytes_used);
END;
CREATE TRIGGER container_insert_ps AFTER INSERT ON container BEGIN
    INSERT OR IGNORE INTO policy_stat
        (storage_policy_index, container_count, object_count, bytes_used)
        VALUES (new.storage_policy_index, 0, 0, 0);
    UPDATE policy_stat
        SET container_count = container_count + (1 - new.deleted),
            object_count = object_count + new.object_count,
            bytes_used = bytes_used + new.bytes_used
        WHERE storage_policy_index = new.storage_policy_index;
END;
CREATE TRIGGER container_delete_ps AFTER DELETE ON container BEGIN
    UPDATE policy_stat
        SET container_count = container_count - (1 - old.deleted),
            object_count = object_count - old.object_count,
            bytes_used = bytes_used - old.bytes_used
        WHERE storage_policy_index = old.storage_policy_index;
END;
CREATE TABLE account_stat (
    account TEXT,
    created_at TEXT,
    put_timestamp TEXT DEFAULT '0',
    delete_timestamp TEXT DEFAULT '0',
    container_count INTEGER,
    object_count INTEGER DEFAULT 0,
    bytes_used INTEGER DEFAULT 0,
    hash TEXT default '00000000000000000000000000000000',
    id TEXT,
    status TEXT DEFAULT '',
    status_changed_at TEXT DEFAULT '0',
    metadata TEXT DEFAULT ''
);
CREATE TABLE policy_stat (
    storage_policy_index INTEGER PRIMARY KEY,
    container_count INTEGER DEFAULT 0,
    object_count INTEGER DEFAULT 0,
    bytes_used INTEGER DEFAULT 0
);
";
