//! The container database: one row per object version in `object`, stats
//! per storage policy in `policy_stat`, the container's own row in
//! `container_info` (and Swift's `container_stat` view over both).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use apus_core::Timestamp;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_pickle::Value;

use crate::db::{write_tx, BrokerOptions, Db, Kind, Metadata, SyncPoint};
use crate::encode::{decode_timestamps, encode_timestamps, extract_swift_bytes, RowTimestamps};
use crate::error::{DbError, Result};
use crate::listing::{walk, ListParams, Listing, Query};
use crate::pending;

/// One object row, or an update to merge: Swift's record dict.
///
/// `created_at` holds the data, content-type and metadata timestamps in
/// Swift's encoded form (see [`crate::encode_timestamps`]); an update may
/// instead carry a plain data timestamp there and give the other two in
/// `ctype_timestamp` / `meta_timestamp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    #[serde(rename = "ROWID", default, skip_serializing_if = "Option::is_none")]
    pub rowid: Option<i64>,
    pub name: String,
    pub created_at: String,
    pub size: i64,
    pub content_type: String,
    pub etag: String,
    #[serde(with = "crate::encode::int_bool")]
    pub deleted: bool,
    #[serde(default)]
    pub storage_policy_index: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctype_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_timestamp: Option<String>,
}

impl ObjectRecord {
    /// An object PUT (or POST update) at `timestamp`.
    pub fn put(
        name: &str,
        timestamp: Timestamp,
        size: u64,
        content_type: &str,
        etag: &str,
        storage_policy_index: i64,
    ) -> Self {
        ObjectRecord {
            rowid: None,
            name: name.to_string(),
            created_at: timestamp.internal(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            content_type: content_type.to_string(),
            etag: etag.to_string(),
            deleted: false,
            storage_policy_index,
            ctype_timestamp: None,
            meta_timestamp: None,
        }
    }

    /// An object DELETE at `timestamp` (Swift's tombstone row values).
    pub fn delete(name: &str, timestamp: Timestamp, storage_policy_index: i64) -> Self {
        ObjectRecord {
            deleted: true,
            ..ObjectRecord::put(
                name,
                timestamp,
                0,
                "application/deleted",
                "noetag",
                storage_policy_index,
            )
        }
    }

    /// Sets the content-type and metadata timestamps of an update.
    pub fn with_timestamps(mut self, ctype: Option<Timestamp>, meta: Option<Timestamp>) -> Self {
        self.ctype_timestamp = ctype.map(|t| t.internal());
        self.meta_timestamp = meta.map(|t| t.internal());
        self
    }

    /// The decoded (data, content-type, metadata) timestamps of `created_at`.
    pub fn timestamps(&self) -> Option<RowTimestamps> {
        decode_timestamps(&self.created_at)
    }

    fn to_pickle(&self) -> Vec<Value> {
        let opt = |v: &Option<String>| v.clone().map_or(Value::None, Value::String);
        vec![
            Value::String(self.name.clone()),
            Value::String(self.created_at.clone()),
            Value::I64(self.size),
            Value::String(self.content_type.clone()),
            Value::String(self.etag.clone()),
            Value::I64(i64::from(self.deleted)),
            Value::I64(self.storage_policy_index),
            opt(&self.ctype_timestamp),
            opt(&self.meta_timestamp),
        ]
    }

    fn from_pickle(t: &[Value]) -> Option<Self> {
        Some(ObjectRecord {
            rowid: None,
            name: pending::as_string(t.first())?,
            created_at: pending::as_string(t.get(1))?,
            size: pending::as_int(t.get(2))?,
            content_type: pending::as_string(t.get(3))?,
            etag: pending::as_string(t.get(4))?,
            deleted: pending::as_int(t.get(5))? != 0,
            storage_policy_index: pending::as_int(t.get(6))?,
            ctype_timestamp: pending::as_opt_string(t.get(7))?,
            meta_timestamp: pending::as_opt_string(t.get(8))?,
        })
    }
}

/// A container listing row: Swift's (name, last-modified, size,
/// content_type, etag). `last_modified` is the newest of the data,
/// content-type and metadata timestamps (the metadata one). The content
/// type may still carry a `;swift_bytes=N` parameter for the server to
/// apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectEntry {
    pub name: String,
    pub last_modified: Timestamp,
    pub size: i64,
    pub content_type: String,
    pub etag: String,
}

/// Stats of one storage policy in a container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPolicyStat {
    pub object_count: i64,
    pub bytes_used: i64,
}

/// The container's own row (`get_info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub account: String,
    pub container: String,
    #[serde(with = "crate::encode::serde_ts")]
    pub created_at: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub put_timestamp: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub delete_timestamp: Timestamp,
    pub status: String,
    #[serde(with = "crate::encode::serde_ts")]
    pub status_changed_at: Timestamp,
    /// Objects and bytes in the container's storage policy.
    pub object_count: i64,
    pub bytes_used: i64,
    #[serde(with = "crate::encode::serde_ts")]
    pub reported_put_timestamp: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub reported_delete_timestamp: Timestamp,
    pub reported_object_count: i64,
    pub reported_bytes_used: i64,
    pub hash: String,
    pub id: String,
    pub x_container_sync_point1: i64,
    pub x_container_sync_point2: i64,
    pub storage_policy_index: i64,
}

/// What replication compares between two copies of a database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationInfo {
    pub account: String,
    /// Empty for account databases.
    pub container: String,
    #[serde(with = "crate::encode::serde_ts")]
    pub created_at: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub put_timestamp: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub delete_timestamp: Timestamp,
    #[serde(with = "crate::encode::serde_ts")]
    pub status_changed_at: Timestamp,
    /// Objects (container DB) or containers (account DB) not deleted.
    pub count: i64,
    pub object_count: i64,
    pub bytes_used: i64,
    pub hash: String,
    pub id: String,
    /// The raw JSON metadata.
    pub metadata: String,
    /// The highest ROWID ever used in the item table (-1 if none).
    pub max_row: i64,
    pub storage_policy_index: i64,
    /// Containers only; -1 when there are no shard ranges.
    pub shard_max_row: i64,
}

/// A container database on one SQLite file (plus its `.pending` file).
pub struct ContainerBroker {
    db: Db,
}

fn ts_col(db: &Db, row: &rusqlite::Row<'_>, idx: usize) -> Result<Timestamp> {
    let v: rusqlite::types::Value = row.get(idx).map_err(|e| db.err(e))?;
    parse_ts_value(db, v)
}

pub(crate) fn parse_ts_value(db: &Db, v: rusqlite::types::Value) -> Result<Timestamp> {
    use rusqlite::types::Value as V;
    let parsed = match &v {
        V::Null => Some(Timestamp::ZERO),
        V::Integer(i) => u64::try_from(*i)
            .ok()
            .and_then(|s| Timestamp::from_ticks(s.saturating_mul(100_000), 0)),
        V::Real(f) => Timestamp::from_secs_f64(*f),
        V::Text(s) => Timestamp::parse(s).ok(),
        V::Blob(_) => None,
    };
    parsed.ok_or_else(|| DbError::bad_row(&db.path, format!("bad timestamp {v:?}")))
}

impl ContainerBroker {
    /// Creates a new container database at `path`.
    pub fn create(
        path: &Path,
        account: &str,
        container: &str,
        put_timestamp: Timestamp,
        storage_policy_index: i64,
        opts: BrokerOptions,
    ) -> Result<Self> {
        if account.is_empty() || container.is_empty() {
            return Err(DbError::Invalid(
                "a container database needs an account and a container name".into(),
            ));
        }
        let db = Db::create(path, Kind::Container, opts, |tx, id| {
            tx.execute_batch(CONTAINER_SCHEMA_SQL)
                .map_err(|e| DbError::sqlite(path, e))?;
            tx.execute(
                "INSERT INTO policy_stat (storage_policy_index) VALUES (?)",
                [storage_policy_index],
            )
            .map_err(|e| DbError::sqlite(path, e))?;
            tx.execute(
                "INSERT INTO container_info (account, container, created_at, id, \
                 put_timestamp, status_changed_at, storage_policy_index) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                rusqlite::params![
                    account,
                    container,
                    Timestamp::now().internal(),
                    id,
                    put_timestamp.internal(),
                    storage_policy_index
                ],
            )
            .map_err(|e| DbError::sqlite(path, e))?;
            Ok(())
        })?;
        Ok(ContainerBroker { db })
    }

    /// Opens an existing container database; `Corrupt` if it is unreadable.
    pub fn open(path: &Path, opts: BrokerOptions) -> Result<Self> {
        Ok(ContainerBroker {
            db: Db::open(path, Kind::Container, opts)?,
        })
    }

    /// A broker for recording object rows ([`ContainerBroker::put_object`],
    /// [`ContainerBroker::delete_object`]) that does not read the database
    /// first: only the file's existence is checked, and the rows go to the
    /// pending file, as Swift's container server records the object
    /// server's updates. Another connection's lock on the database (a
    /// long merge, a replication, a stuck process) then holds up no
    /// update below the pending cap; damage is found by the next read.
    pub fn open_for_updates(path: &Path, opts: BrokerOptions) -> Result<Self> {
        if !path.exists() {
            return Err(DbError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Ok(ContainerBroker {
            db: Db::new(path, Kind::Container, opts),
        })
    }

    /// Opens the database, creating it first if there is none. The flag
    /// tells whether this call created it.
    pub fn create_or_open(
        path: &Path,
        account: &str,
        container: &str,
        put_timestamp: Timestamp,
        storage_policy_index: i64,
        opts: BrokerOptions,
    ) -> Result<(Self, bool)> {
        if !path.exists() {
            match Self::create(
                path,
                account,
                container,
                put_timestamp,
                storage_policy_index,
                opts.clone(),
            ) {
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

    // ---- writes ----

    /// Records an object update. It is appended to the pending file and
    /// synced to disk before this returns; it reaches the object table at the
    /// next read or flush (or at once when the pending file is over its cap).
    pub fn put_object(&self, record: ObjectRecord) -> Result<()> {
        if record.name.is_empty() {
            return Err(DbError::Invalid("object name is empty".into()));
        }
        if decode_timestamps(&record.created_at).is_none() {
            return Err(DbError::Invalid(format!(
                "bad timestamp {:?}",
                record.created_at
            )));
        }
        for t in [&record.ctype_timestamp, &record.meta_timestamp]
            .into_iter()
            .flatten()
        {
            Timestamp::parse(t).map_err(|_| DbError::Invalid(format!("bad timestamp {t:?}")))?;
        }
        self.db.put_record(record.to_pickle(), &merge_pending)
    }

    /// Records an object deletion (a tombstone row).
    pub fn delete_object(
        &self,
        name: &str,
        timestamp: Timestamp,
        storage_policy_index: i64,
    ) -> Result<()> {
        self.put_object(ObjectRecord::delete(name, timestamp, storage_policy_index))
    }

    /// Merges the pending file into the database now.
    pub fn flush_pending(&self) -> Result<()> {
        self.db.commit_pending_strict(&merge_pending)
    }

    fn commit_pending(&self) -> Result<()> {
        self.db.commit_pending(&merge_pending)
    }

    /// Merges rows (from the pending file, or from a replica) with
    /// newest-wins per field. With `source`, the incoming sync point for that
    /// remote database moves to the last item's ROWID.
    pub fn merge_items(&self, items: Vec<ObjectRecord>, source: Option<&str>) -> Result<()> {
        let sync = match source {
            Some(remote) => {
                let last = items.last().map(|i| i.rowid);
                match last {
                    None => None,
                    Some(Some(row)) => Some((remote, row)),
                    Some(None) => {
                        return Err(DbError::Invalid(
                            "merge from a source needs ROWIDs on the items".into(),
                        ))
                    }
                }
            }
            None => None,
        };
        self.db
            .with_conn(|conn| merge_objects(&self.db, conn, items, sync))
    }

    // ---- reads ----

    pub fn get_info(&self) -> Result<ContainerInfo> {
        self.commit_pending()?;
        self.db.with_conn(|conn| self.info_query(conn))
    }

    fn info_query(&self, conn: &Connection) -> Result<ContainerInfo> {
        let db = &self.db;
        let mut stmt = conn
            .prepare_cached(
                "SELECT account, container, created_at, put_timestamp, delete_timestamp, \
                 status, status_changed_at, object_count, bytes_used, \
                 reported_put_timestamp, reported_delete_timestamp, reported_object_count, \
                 reported_bytes_used, hash, id, x_container_sync_point1, \
                 x_container_sync_point2, storage_policy_index FROM container_stat",
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
        Ok(ContainerInfo {
            account: s(0)?,
            container: s(1)?,
            created_at: ts_col(db, row, 2)?,
            put_timestamp: ts_col(db, row, 3)?,
            delete_timestamp: ts_col(db, row, 4)?,
            status: s(5)?,
            status_changed_at: ts_col(db, row, 6)?,
            object_count: n(7)?,
            bytes_used: n(8)?,
            reported_put_timestamp: ts_col(db, row, 9)?,
            reported_delete_timestamp: ts_col(db, row, 10)?,
            reported_object_count: n(11)?,
            reported_bytes_used: n(12)?,
            hash: s(13)?,
            id: s(14)?,
            x_container_sync_point1: n(15)?,
            x_container_sync_point2: n(16)?,
            storage_policy_index: n(17)?,
        })
    }

    /// Deleted: a delete newer than the last PUT and no objects (in the
    /// container's policy).
    pub fn is_deleted(&self) -> Result<bool> {
        if !self.db.path.exists() {
            return Ok(true);
        }
        let info = self.get_info()?;
        Ok(info.object_count == 0 && info.delete_timestamp > info.put_timestamp)
    }

    /// No objects in any storage policy.
    pub fn empty(&self) -> Result<bool> {
        self.commit_pending()?;
        self.db.with_conn(|conn| {
            let max: Option<i64> = conn
                .query_row("SELECT max(object_count) FROM policy_stat", [], |r| {
                    r.get(0)
                })
                .map_err(|e| self.db.err(e))?;
            Ok(max.unwrap_or(0) == 0)
        })
    }

    /// Stats per storage policy present in the container.
    pub fn get_policy_stats(&self) -> Result<BTreeMap<i64, ContainerPolicyStat>> {
        self.commit_pending()?;
        self.db.with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT storage_policy_index, object_count, bytes_used FROM policy_stat")
                .map_err(|e| self.db.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        ContainerPolicyStat {
                            object_count: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                            bytes_used: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                        },
                    ))
                })
                .map_err(|e| self.db.err(e))?;
            rows.collect::<std::result::Result<BTreeMap<_, _>, _>>()
                .map_err(|e| self.db.err(e))
        })
    }

    pub fn storage_policy_index(&self) -> Result<i64> {
        self.db.with_conn(|conn| {
            conn.query_row("SELECT storage_policy_index FROM container_info", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.db.err(e))
        })
    }

    /// Lists objects of `storage_policy_index` per `params`.
    pub fn list_objects(
        &self,
        params: &ListParams,
        storage_policy_index: i64,
    ) -> Result<Vec<Listing<ObjectEntry>>> {
        self.commit_pending()?;
        let db = &self.db;
        db.with_conn(|conn| {
            walk(params, |q: &Query, visit| {
                let mut sql = String::from(
                    "SELECT name, created_at, size, content_type, etag FROM object WHERE deleted = 0 AND storage_policy_index = ?",
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
                let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(q.args.len() + 2);
                args.push(&storage_policy_index);
                for a in &q.args {
                    args.push(a);
                }
                let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
                args.push(&limit);
                let mut stmt = conn.prepare_cached(&sql).map_err(|e| db.err(e))?;
                let mut rows = stmt.query(args.as_slice()).map_err(|e| db.err(e))?;
                while let Some(row) = rows.next().map_err(|e| db.err(e))? {
                    let name = db.row_text(row, 0)?;
                    let created = db.row_text(row, 1)?;
                    let ts = decode_timestamps(created).ok_or_else(|| {
                        DbError::bad_row(&db.path, format!("created_at {created:?} of {name:?}"))
                    })?;
                    let entry = ObjectEntry {
                        name: name.to_owned(),
                        last_modified: ts.meta,
                        size: row.get::<_, Option<i64>>(2).map_err(|e| db.err(e))?.unwrap_or(0),
                        content_type: row
                            .get::<_, Option<String>>(3)
                            .map_err(|e| db.err(e))?
                            .unwrap_or_default(),
                        etag: row
                            .get::<_, Option<String>>(4)
                            .map_err(|e| db.err(e))?
                            .unwrap_or_default(),
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
    pub fn get_items_since(&self, start: i64, count: usize) -> Result<Vec<ObjectRecord>> {
        self.rows_since(start, count, false)
    }

    /// Rows with ROWID above `start` whose storage policy is not the
    /// container's, in ROWID order, at most `count` (Swift's
    /// `get_misplaced_since`: what the container replicator hands to the
    /// container reconciler).
    pub fn get_misplaced_since(&self, start: i64, count: usize) -> Result<Vec<ObjectRecord>> {
        self.rows_since(start, count, true)
    }

    fn rows_since(&self, start: i64, count: usize, misplaced: bool) -> Result<Vec<ObjectRecord>> {
        self.commit_pending()?;
        let db = &self.db;
        let sql = if misplaced {
            "SELECT ROWID, name, created_at, size, content_type, etag, deleted, \
             storage_policy_index FROM object WHERE ROWID > ? \
             AND storage_policy_index != \
             (SELECT storage_policy_index FROM container_info LIMIT 1) \
             ORDER BY ROWID ASC LIMIT ?"
        } else {
            "SELECT ROWID, name, created_at, size, content_type, etag, deleted, \
             storage_policy_index FROM object WHERE ROWID > ? ORDER BY ROWID ASC LIMIT ?"
        };
        db.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(|e| db.err(e))?;
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(rusqlite::params![start, count], |r| {
                    Ok(ObjectRecord {
                        rowid: Some(r.get(0)?),
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                        size: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                        content_type: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        etag: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                        deleted: r.get::<_, Option<i64>>(6)?.unwrap_or(0) != 0,
                        storage_policy_index: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                        ctype_timestamp: None,
                        meta_timestamp: None,
                    })
                })
                .map_err(|e| db.err(e))?;
            rows.collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| db.err(e))
        })
    }

    /// The highest ROWID up to which misplaced rows have been handed to
    /// the reconciler (-1: none yet).
    pub fn get_reconciler_sync(&self) -> Result<i64> {
        let db = &self.db;
        db.with_conn(|conn| {
            conn.query_row(
                "SELECT reconciler_sync_point FROM container_info LIMIT 1",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(|v| v.flatten().unwrap_or(-1))
            .map_err(|e| db.err(e))
        })
    }

    pub fn update_reconciler_sync(&self, point: i64) -> Result<()> {
        self.db.with_conn(|conn| {
            write_tx(conn, &self.db.path, |tx| {
                tx.execute(
                    "UPDATE container_info SET reconciler_sync_point = ?",
                    [point],
                )
                .map_err(|e| self.db.err(e))?;
                Ok(())
            })
        })
    }

    /// Whether rows of more than one storage policy have ever been counted
    /// here (more than one `policy_stat` row).
    pub fn has_multiple_policies(&self) -> Result<bool> {
        self.commit_pending()?;
        let db = &self.db;
        db.with_conn(|conn| {
            conn.query_row("SELECT COUNT(*) FROM policy_stat", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 1)
            .map_err(|e| db.err(e))
        })
    }

    pub fn get_replication_info(&self) -> Result<ReplicationInfo> {
        let info = self.get_info()?;
        let (metadata, max_row, shard_max_row) = self.db.with_conn(|conn| {
            Ok((
                self.db.raw_metadata(conn)?,
                self.db.max_row(conn, "object")?,
                self.db.max_row(conn, "shard_range")?,
            ))
        })?;
        Ok(ReplicationInfo {
            account: info.account,
            container: info.container,
            created_at: info.created_at,
            put_timestamp: info.put_timestamp,
            delete_timestamp: info.delete_timestamp,
            status_changed_at: info.status_changed_at,
            count: info.object_count,
            object_count: info.object_count,
            bytes_used: info.bytes_used,
            hash: info.hash,
            id: info.id,
            metadata,
            max_row,
            storage_policy_index: info.storage_policy_index,
            shard_max_row,
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

    /// Re-ids a database copied whole from `remote_id` and clears the
    /// reported stats so the account hears from this copy.
    pub fn newid(&self, remote_id: &str) -> Result<()> {
        self.db.newid(
            remote_id,
            "UPDATE container_info SET reported_put_timestamp = 0, \
             reported_delete_timestamp = 0, reported_object_count = 0, reported_bytes_used = 0",
        )
    }

    /// Removes tombstones older than `age`, sync rows older than `sync_age`
    /// and removed metadata keys older than `age`; returns rows removed.
    pub fn reclaim(&self, age: Timestamp, sync_age: Timestamp) -> Result<u64> {
        self.db.commit_pending_strict(&merge_pending)?;
        self.db.reclaim(age, sync_age)
    }

    /// Deleted longer ago than `reclaim_age` seconds and empty.
    pub fn is_reclaimable(&self, now: Timestamp, reclaim_age: u64) -> Result<bool> {
        let info = self.get_info()?;
        let cutoff = Timestamp::from_ticks(now.ticks().saturating_sub(reclaim_age * 100_000), 0)
            .unwrap_or(Timestamp::ZERO);
        Ok(cutoff > info.delete_timestamp
            && info.delete_timestamp > info.put_timestamp
            && self.empty()?)
    }

    // ---- metadata and status ----

    /// Stored metadata, including removed keys (empty values).
    pub fn metadata(&self) -> Result<Metadata> {
        self.db.metadata()
    }

    /// Applies updates where their timestamp is newer; an empty value
    /// removes a key. With `validate`, Swift's count and size limits are
    /// checked on the result inside the same transaction.
    pub fn update_metadata(&self, updates: &Metadata, validate: bool) -> Result<()> {
        self.db.update_metadata(updates, validate)
    }

    /// Marks the container deleted at `timestamp` and clears its metadata.
    pub fn delete_db(&self, timestamp: Timestamp) -> Result<()> {
        self.db.delete_db(timestamp)
    }

    pub fn update_put_timestamp(&self, timestamp: Timestamp) -> Result<()> {
        self.db.bump_stat_timestamp("put_timestamp", timestamp)
    }

    pub fn update_status_changed_at(&self, timestamp: Timestamp) -> Result<()> {
        self.db.bump_stat_timestamp("status_changed_at", timestamp)
    }

    /// Changes the container's policy (Swift allows it on re-creation).
    pub fn set_storage_policy_index(&self, index: i64, timestamp: Timestamp) -> Result<()> {
        let t = timestamp.internal();
        self.db.with_conn(|conn| {
            write_tx(conn, &self.db.path, |tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO policy_stat (storage_policy_index) VALUES (?)",
                    [index],
                )
                .map_err(|e| self.db.err(e))?;
                tx.execute(
                    "UPDATE container_info SET storage_policy_index = ?1, \
                     status_changed_at = MAX(?2, status_changed_at) \
                     WHERE storage_policy_index <> ?1",
                    rusqlite::params![index, t],
                )
                .map_err(|e| self.db.err(e))?;
                Ok(())
            })
        })
    }

    /// Records what was last reported to the account.
    pub fn reported(
        &self,
        put_timestamp: Timestamp,
        delete_timestamp: Timestamp,
        object_count: i64,
        bytes_used: i64,
    ) -> Result<()> {
        self.db.with_conn(|conn| {
            write_tx(conn, &self.db.path, |tx| {
                tx.execute(
                    "UPDATE container_info SET reported_put_timestamp = ?, \
                     reported_delete_timestamp = ?, reported_object_count = ?, \
                     reported_bytes_used = ?",
                    rusqlite::params![
                        put_timestamp.internal(),
                        delete_timestamp.internal(),
                        object_count,
                        bytes_used
                    ],
                )
                .map_err(|e| self.db.err(e))?;
                Ok(())
            })
        })
    }

    /// Container-sync progress markers; `None` leaves one unchanged.
    pub fn set_x_container_sync_points(&self, p1: Option<i64>, p2: Option<i64>) -> Result<()> {
        self.db.with_conn(|conn| {
            write_tx(conn, &self.db.path, |tx| {
                if let Some(p) = p1 {
                    tx.execute("UPDATE container_info SET x_container_sync_point1 = ?", [p])
                        .map_err(|e| self.db.err(e))?;
                }
                if let Some(p) = p2 {
                    tx.execute("UPDATE container_info SET x_container_sync_point2 = ?", [p])
                        .map_err(|e| self.db.err(e))?;
                }
                Ok(())
            })
        })
    }

    /// Replication: keeps the oldest created_at and newest put/delete
    /// timestamps; status_changed_at moves to now if deletion flips.
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

    /// SQLite's `PRAGMA quick_check` (for the auditor).
    pub fn quick_check(&self) -> Result<()> {
        self.db.quick_check()
    }

    /// Runs `f` while holding the database's write lock (replication copies
    /// the file whole under it). Flush the pending file first if it matters.
    pub fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        self.db.locked(f)
    }
}

fn merge_pending(db: &Db, conn: &mut Connection, entries: Vec<Vec<Value>>) -> Result<()> {
    let items = entries
        .iter()
        .filter_map(|t| ObjectRecord::from_pickle(t))
        .collect();
    merge_objects(db, conn, items, None)
}

/// An update being merged; `data_timestamp` keeps its original created_at
/// so that merging it twice (with the DB row, then a duplicate) starts from
/// the same place, as Swift does.
struct Pending {
    rec: ObjectRecord,
    data_timestamp: String,
}

fn split_ct(ct: &str) -> (String, Option<String>) {
    let (ct, swift_bytes) = extract_swift_bytes(ct);
    (ct.into_owned(), swift_bytes)
}

/// Applies newer fields of `existing` onto `item`. Returns true when the
/// item has anything newer than `existing` (so it must replace it).
fn update_from_existing(item: &mut Pending, existing: Option<&mut ObjectRecord>) -> Option<bool> {
    let mut ts = decode_timestamps(&item.data_timestamp)?;
    if let Some(c) = &item.rec.ctype_timestamp {
        let c = Timestamp::parse(c).ok()?;
        ts.ctype = c;
        ts.meta = c;
    }
    if let Some(m) = &item.rec.meta_timestamp {
        ts.meta = Timestamp::parse(m).ok()?;
    }
    let Some(existing) = existing else {
        item.rec.created_at = encode_timestamps(&ts);
        return Some(true);
    };
    // An unreadable stored row loses to anything.
    let rec_ts =
        decode_timestamps(&existing.created_at).unwrap_or(RowTimestamps::same(Timestamp::ZERO));
    let (item_ct, mut item_sb) = split_ct(&item.rec.content_type);
    let (ex_ct, ex_sb) = split_ct(&existing.content_type);
    item.rec.content_type = item_ct;
    let mut newer = [true; 3];
    if rec_ts.data >= ts.data {
        item.rec.size = existing.size;
        item.rec.etag = existing.etag.clone();
        item.rec.deleted = existing.deleted;
        item_sb = ex_sb.clone();
        ts.data = rec_ts.data;
        newer[0] = false;
    }
    if rec_ts.ctype >= ts.ctype {
        item.rec.content_type = ex_ct.clone();
        ts.ctype = rec_ts.ctype;
        newer[1] = false;
    }
    if rec_ts.meta >= ts.meta {
        ts.meta = rec_ts.meta;
        newer[2] = false;
    }
    item.rec.created_at = encode_timestamps(&ts);
    if let Some(sb) = item_sb {
        item.rec.content_type.push_str(";swift_bytes=");
        item.rec.content_type.push_str(&sb);
    }
    existing.content_type = match ex_sb {
        Some(sb) => format!("{ex_ct};swift_bytes={sb}"),
        None => ex_ct,
    };
    Some(newer.iter().any(|n| *n))
}

const CHUNK: usize = 500;

pub(crate) fn merge_objects(
    db: &Db,
    conn: &mut Connection,
    items: Vec<ObjectRecord>,
    sync: Option<(&str, i64)>,
) -> Result<()> {
    if items.is_empty() && sync.is_none() {
        return Ok(());
    }
    write_tx(conn, &db.path, |tx| {
        // Existing rows for the names in this batch, keyed by (name, policy).
        let mut records: HashMap<(String, i64), ObjectRecord> = HashMap::new();
        for chunk in items.chunks(CHUNK) {
            let sql = format!(
                "SELECT name, created_at, size, content_type, etag, deleted, storage_policy_index \
                 FROM object WHERE deleted IN (0, 1) AND name IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut stmt = tx.prepare(&sql).map_err(|e| db.err(e))?;
            let rows = stmt
                .query_map(
                    rusqlite::params_from_iter(chunk.iter().map(|i| i.name.as_str())),
                    |r| {
                        Ok(ObjectRecord {
                            rowid: None,
                            name: r.get(0)?,
                            created_at: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                            size: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                            content_type: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                            etag: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                            deleted: r.get::<_, Option<i64>>(5)?.unwrap_or(0) != 0,
                            storage_policy_index: r.get::<_, Option<i64>>(6)?.unwrap_or(0),
                            ctype_timestamp: None,
                            meta_timestamp: None,
                        })
                    },
                )
                .map_err(|e| db.err(e))?;
            for row in rows {
                let row = row.map_err(|e| db.err(e))?;
                records.insert((row.name.clone(), row.storage_policy_index), row);
            }
        }
        let mut to_delete: Vec<(String, i64)> = Vec::new();
        let mut deleting: std::collections::HashSet<(String, i64)> = Default::default();
        let mut order: Vec<(String, i64)> = Vec::new();
        let mut to_add: HashMap<(String, i64), Pending> = HashMap::new();
        for rec in items {
            let ident = (rec.name.clone(), rec.storage_policy_index);
            let mut item = Pending {
                data_timestamp: rec.created_at.clone(),
                rec,
            };
            let mut existing = records.get(&ident).cloned();
            let Some(newer) = update_from_existing(&mut item, existing.as_mut()) else {
                continue; // unparsable timestamps: nothing sane to merge
            };
            if !newer {
                continue;
            }
            if records.contains_key(&ident) && deleting.insert(ident.clone()) {
                to_delete.push(ident.clone());
            }
            match to_add.get_mut(&ident) {
                Some(prev) => {
                    let _ = update_from_existing(&mut item, Some(&mut prev.rec));
                    *prev = item;
                }
                None => {
                    order.push(ident.clone());
                    to_add.insert(ident, item);
                }
            }
        }
        {
            let mut del = tx
                .prepare_cached(
                    "DELETE FROM object WHERE deleted IN (0, 1) AND name = ? AND storage_policy_index = ?",
                )
                .map_err(|e| db.err(e))?;
            for (name, spi) in &to_delete {
                del.execute(rusqlite::params![name, spi])
                    .map_err(|e| db.err(e))?;
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO object (name, created_at, size, content_type, etag, deleted, \
                     storage_policy_index) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .map_err(|e| db.err(e))?;
            for ident in &order {
                if let Some(p) = to_add.get(ident) {
                    let r = &p.rec;
                    ins.execute(rusqlite::params![
                        r.name,
                        r.created_at,
                        r.size,
                        r.content_type,
                        r.etag,
                        i64::from(r.deleted),
                        r.storage_policy_index
                    ])
                    .map_err(|e| db.err(e))?;
                }
            }
        }
        if let Some((remote, point)) = sync {
            crate::db::upsert_sync(tx, "incoming_sync", remote, point).map_err(|e| db.err(e))?;
        }
        Ok(())
    })
}

/// Looks up one object row by name and policy (tests and tools).
impl ContainerBroker {
    pub fn get_object_row(
        &self,
        name: &str,
        storage_policy_index: i64,
    ) -> Result<Option<ObjectRecord>> {
        self.commit_pending()?;
        self.db.with_conn(|conn| {
            conn.query_row(
                "SELECT ROWID, name, created_at, size, content_type, etag, deleted, \
                 storage_policy_index FROM object WHERE name = ? AND storage_policy_index = ?",
                rusqlite::params![name, storage_policy_index],
                |r| {
                    Ok(ObjectRecord {
                        rowid: Some(r.get(0)?),
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                        size: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                        content_type: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        etag: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                        deleted: r.get::<_, Option<i64>>(6)?.unwrap_or(0) != 0,
                        storage_policy_index: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                        ctype_timestamp: None,
                        meta_timestamp: None,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db.err(e))
        })
    }
}

/// The container schema, equivalent to Swift 2.38's (same tables, columns,
/// index names, view and trigger behaviour), minus the sync tables that
/// both database types share.
const CONTAINER_SCHEMA_SQL: &str = "
CREATE TABLE object (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    created_at TEXT,
    size INTEGER,
    content_type TEXT,
    etag TEXT,
    deleted INTEGER DEFAULT 0,
    storage_policy_index INTEGER DEFAULT 0
);
CREATE INDEX ix_object_deleted_name ON object (deleted, name);
CREATE TRIGGER object_update BEFORE UPDATE ON object BEGIN
    SELECT RAISE(FAIL, 'UPDATE not allowed; DELETE and INSERT');
END;
CREATE TABLE policy_stat (
    storage_policy_index INTEGER PRIMARY KEY,
    object_count INTEGER DEFAULT 0,
    bytes_used INTEGER DEFAULT 0
);
CREATE TRIGGER object_insert_policy_stat AFTER INSERT ON object BEGIN
    INSERT OR IGNORE INTO policy_stat (storage_policy_index, object_count, bytes_used)
        VALUES (new.storage_policy_index, 0, 0);
    UPDATE policy_stat
        SET object_count = object_count + (1 - new.deleted),
            bytes_used = bytes_used + new.size
        WHERE storage_policy_index = new.storage_policy_index;
    UPDATE container_info SET hash = chexor(hash, new.name, new.created_at);
END;
CREATE TRIGGER object_delete_policy_stat AFTER DELETE ON object BEGIN
    UPDATE policy_stat
        SET object_count = object_count - (1 - old.deleted),
            bytes_used = bytes_used - old.size
        WHERE storage_policy_index = old.storage_policy_index;
    UPDATE container_info SET hash = chexor(hash, old.name, old.created_at);
END;
CREATE TABLE container_info (
    account TEXT,
    container TEXT,
    created_at TEXT,
    put_timestamp TEXT DEFAULT '0',
    delete_timestamp TEXT DEFAULT '0',
    reported_put_timestamp TEXT DEFAULT '0',
    reported_delete_timestamp TEXT DEFAULT '0',
    reported_object_count INTEGER DEFAULT 0,
    reported_bytes_used INTEGER DEFAULT 0,
    hash TEXT default '00000000000000000000000000000000',
    id TEXT,
    status TEXT DEFAULT '',
    status_changed_at TEXT DEFAULT '0',
    metadata TEXT DEFAULT '',
    x_container_sync_point1 INTEGER DEFAULT -1,
    x_container_sync_point2 INTEGER DEFAULT -1,
    storage_policy_index INTEGER DEFAULT 0,
    reconciler_sync_point INTEGER DEFAULT -1
);
CREATE VIEW container_stat AS
    SELECT ci.account, ci.container, ci.created_at, ci.put_timestamp,
        ci.delete_timestamp, ci.reported_put_timestamp,
        ci.reported_delete_timestamp, ci.reported_object_count,
        ci.reported_bytes_used, ci.hash, ci.id, ci.status,
        ci.status_changed_at, ci.metadata, ci.x_container_sync_point1,
        ci.x_container_sync_point2, ci.reconciler_sync_point,
        ci.storage_policy_index,
        coalesce(ps.object_count, 0) AS object_count,
        coalesce(ps.bytes_used, 0) AS bytes_used
    FROM container_info ci LEFT JOIN policy_stat ps
    ON ci.storage_policy_index = ps.storage_policy_index;
CREATE TRIGGER container_stat_update INSTEAD OF UPDATE ON container_stat BEGIN
    UPDATE container_info SET
        account = NEW.account, container = NEW.container,
        created_at = NEW.created_at, put_timestamp = NEW.put_timestamp,
        delete_timestamp = NEW.delete_timestamp,
        reported_put_timestamp = NEW.reported_put_timestamp,
        reported_delete_timestamp = NEW.reported_delete_timestamp,
        reported_object_count = NEW.reported_object_count,
        reported_bytes_used = NEW.reported_bytes_used,
        hash = NEW.hash, id = NEW.id, status = NEW.status,
        status_changed_at = NEW.status_changed_at, metadata = NEW.metadata,
        x_container_sync_point1 = NEW.x_container_sync_point1,
        x_container_sync_point2 = NEW.x_container_sync_point2,
        storage_policy_index = NEW.storage_policy_index,
        reconciler_sync_point = NEW.reconciler_sync_point;
END;
CREATE TABLE shard_range (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    timestamp TEXT,
    lower TEXT,
    upper TEXT,
    object_count INTEGER DEFAULT 0,
    bytes_used INTEGER DEFAULT 0,
    meta_timestamp TEXT,
    deleted INTEGER DEFAULT 0,
    state INTEGER,
    state_timestamp TEXT,
    epoch TEXT,
    reported INTEGER DEFAULT 0,
    tombstones INTEGER DEFAULT -1
);
CREATE TRIGGER shard_range_update BEFORE UPDATE ON shard_range BEGIN
    SELECT RAISE(FAIL, 'UPDATE not allowed; DELETE and INSERT');
END;
";
