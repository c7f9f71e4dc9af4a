//! What the account and container brokers share: opening and creating the
//! SQLite file, the pending file, metadata, sync points, status timestamps
//! and tombstone reclaim.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use apus_core::Timestamp;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_pickle::Value;

use crate::encode::{chexor, uuid4};
use crate::error::{DbError, Result};
use crate::pending::{self, DirLock};

/// Swift's cap on a pending file before updates go straight to the DB.
pub const PENDING_CAP: u64 = 131_072;
/// Rows per reclaim transaction.
pub(crate) const RECLAIM_PAGE_SIZE: i64 = 10_000;
/// Swift's limits on user metadata stored in a database.
pub const MAX_META_COUNT: usize = 90;
pub const MAX_META_OVERALL_SIZE: usize = 4096;

/// Tunables of a broker. The defaults are Swift's.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// How long an SQLite statement waits for a lock held by another
    /// connection (Swift's `BROKER_TIMEOUT`, 25 s).
    pub timeout: Duration,
    /// How long to wait for the directory lock guarding the pending file.
    pub pending_timeout: Duration,
    /// Pending-file size above which updates are merged at once.
    pub pending_cap: u64,
    /// When true, reads go ahead with stale data if the pending file
    /// cannot be flushed (lock busy) instead of failing.
    pub stale_reads_ok: bool,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            timeout: Duration::from_secs(25),
            pending_timeout: Duration::from_secs(10),
            pending_cap: PENDING_CAP,
            stale_reads_ok: false,
        }
    }
}

/// Metadata as stored: name → (value, timestamp). An empty value is a
/// removal that is kept until reclaim so that older values cannot return.
pub type Metadata = BTreeMap<String, (String, Timestamp)>;

/// One row of the `incoming_sync` or `outgoing_sync` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPoint {
    pub remote_id: String,
    pub sync_point: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Container,
    Account,
}

impl Kind {
    /// The table holding the single stat row.
    pub(crate) fn stat_table(self) -> &'static str {
        match self {
            Kind::Container => "container_info",
            Kind::Account => "account_stat",
        }
    }
    /// The table of items this database lists.
    pub(crate) fn items_table(self) -> &'static str {
        match self {
            Kind::Container => "object",
            Kind::Account => "container",
        }
    }
    fn reclaim_column(self) -> &'static str {
        match self {
            Kind::Container => "created_at",
            Kind::Account => "delete_timestamp",
        }
    }
    fn delete_meta_whitelist(self) -> &'static [&'static str] {
        match self {
            Kind::Container => &[
                "x-container-sysmeta-shard-quoted-root",
                "x-container-sysmeta-shard-root",
                "x-container-sysmeta-sharding",
            ],
            Kind::Account => &[],
        }
    }
}

/// Turns pending tuples into items and merges them in one transaction.
pub(crate) type MergeFn<'a> = &'a dyn Fn(&Db, &mut Connection, Vec<Vec<Value>>) -> Result<()>;

pub(crate) struct Db {
    pub(crate) path: PathBuf,
    pub(crate) pending: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) kind: Kind,
    pub(crate) opts: BrokerOptions,
    conn: Mutex<Option<Connection>>,
}

fn register_functions(conn: &Connection, path: &Path) -> Result<()> {
    conn.create_scalar_function(
        "chexor",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let old: String = ctx.get::<Option<String>>(0)?.unwrap_or_default();
            let name: Option<String> = ctx.get(1)?;
            let stamp: String = ctx.get::<Option<String>>(2)?.unwrap_or_default();
            let name = name
                .ok_or_else(|| rusqlite::Error::UserFunctionError("chexor: name is NULL".into()))?;
            Ok(chexor(&old, &name, &stamp))
        },
    )
    .map_err(|e| DbError::sqlite(path, e))
}

/// Opens an existing database with the pragmas every broker connection uses.
fn connect(path: &Path, opts: &BrokerOptions) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| DbError::sqlite(path, e))?;
    conn.busy_timeout(opts.timeout)
        .map_err(|e| DbError::sqlite(path, e))?;
    // Durability: rollback journal (Swift's mode; the .db file alone is a
    // complete replica) with full syncs at every commit.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY; PRAGMA count_changes = OFF;",
    )
    .map_err(|e| DbError::sqlite(path, e))?;
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(|e| DbError::sqlite(path, e))?;
    register_functions(&conn, path)?;
    Ok(conn)
}

/// The device name a database id ends with: `<dev>/<type>s/<part>/<suffix>/<hash>/<hash>.db`.
fn device_name(path: &Path) -> String {
    path.ancestors()
        .nth(5)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) fn new_db_id(path: &Path) -> String {
    format!("{}-{}", uuid4(), device_name(path))
}

pub(crate) fn write_tx<T>(
    conn: &mut Connection,
    path: &Path,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| DbError::sqlite(path, e))?;
    let out = f(&tx)?;
    tx.commit().map_err(|e| DbError::sqlite(path, e))?;
    Ok(out)
}

impl Db {
    pub(crate) fn new(path: &Path, kind: Kind, opts: BrokerOptions) -> Db {
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Db {
            path: path.to_path_buf(),
            pending: pending::pending_path(path),
            dir,
            kind,
            opts,
            conn: Mutex::new(None),
        }
    }

    /// Opens an existing database and checks that it is readable.
    pub(crate) fn open(path: &Path, kind: Kind, opts: BrokerOptions) -> Result<Db> {
        let db = Db::new(path, kind, opts);
        db.with_conn(|conn| db.check_stat_row(conn))?;
        Ok(db)
    }

    fn check_stat_row(&self, conn: &Connection) -> Result<()> {
        let n: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM {}", self.kind.stat_table()),
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if n != 1 {
            return Err(DbError::corrupt(
                &self.path,
                "missing row in stat table",
                format!("{} rows in {}", n, self.kind.stat_table()),
            ));
        }
        Ok(())
    }

    /// Creates the database under a temporary name and renames it into
    /// place; fails with `AlreadyExists` if another creator won.
    pub(crate) fn create(
        path: &Path,
        kind: Kind,
        opts: BrokerOptions,
        schema: impl FnOnce(&Transaction<'_>, &str) -> Result<()>,
    ) -> Result<Db> {
        let db = Db::new(path, kind, opts);
        if path.exists() {
            return Err(DbError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        std::fs::create_dir_all(&db.dir).map_err(|e| DbError::io(&db.dir, e))?;
        let tmp = db.dir.join(format!("tmp{}.tmp", &uuid4()[..8]));
        let result = (|| -> Result<()> {
            let mut conn = Connection::open(&tmp).map_err(|e| DbError::sqlite(&tmp, e))?;
            // Creating runs many statements; sync once at the end instead.
            conn.execute_batch(
                "PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY; PRAGMA journal_mode = MEMORY;",
            )
            .map_err(|e| DbError::sqlite(&tmp, e))?;
            register_functions(&conn, &tmp)?;
            let id = new_db_id(path);
            write_tx(&mut conn, &tmp, |tx| {
                tx.execute_batch(SYNC_TABLES_SQL)
                    .map_err(|e| DbError::sqlite(&tmp, e))?;
                schema(tx, &id)
            })?;
            drop(conn);
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&tmp)
                .map_err(|e| DbError::io(&tmp, e))?;
            f.sync_all().map_err(|e| DbError::io(&tmp, e))?;
            let _lock = DirLock::acquire(&db.dir, db.opts.pending_timeout)?;
            if path.exists() {
                return Err(DbError::AlreadyExists {
                    path: path.to_path_buf(),
                });
            }
            std::fs::rename(&tmp, path).map_err(|e| DbError::io(path, e))?;
            pending::fsync_dir(&db.dir)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        db.with_conn(|conn| db.check_stat_row(conn))?;
        Ok(db)
    }

    pub(crate) fn err(&self, e: rusqlite::Error) -> DbError {
        DbError::sqlite(&self.path, e)
    }

    /// Column `index` of `row` as text, borrowed from the row rather than
    /// copied: listings read 10,000 rows a page.
    pub(crate) fn row_text<'r>(&self, row: &'r rusqlite::Row<'_>, index: usize) -> Result<&'r str> {
        let value = row.get_ref(index).map_err(|e| self.err(e))?;
        value.as_str().map_err(|e| {
            self.err(rusqlite::Error::FromSqlConversionFailure(
                index,
                value.data_type(),
                Box::new(e),
            ))
        })
    }

    fn guard(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on this broker's connection, opening it if needed. A
    /// connection that saw corruption is dropped.
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut guard = self.guard();
        if guard.is_none() {
            if !self.path.exists() {
                return Err(DbError::NotFound {
                    path: self.path.clone(),
                });
            }
            *guard = Some(connect(&self.path, &self.opts)?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(DbError::NotFound {
                path: self.path.clone(),
            });
        };
        let out = f(conn);
        if let Err(e) = &out {
            if e.is_quarantine_worthy() {
                *guard = None;
            } else if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        out
    }

    /// Appends a record to the pending file (durably), or merges it at once
    /// together with the pending backlog when the file is over its cap.
    pub(crate) fn put_record(&self, tuple: Vec<Value>, merge: MergeFn<'_>) -> Result<()> {
        if !self.path.exists() {
            return Err(DbError::NotFound {
                path: self.path.clone(),
            });
        }
        let entry = pending::encode_entry(tuple.clone())?;
        let lock = DirLock::acquire(&self.dir, self.opts.pending_timeout)?;
        if pending::size(&self.pending)? > self.opts.pending_cap {
            return self.flush_locked(Some(tuple), merge);
        }
        let (file, created) = pending::append(&self.pending, &entry)?;
        if created {
            file.sync_all().map_err(|e| DbError::io(&self.pending, e))?;
            pending::fsync_dir(&self.dir)?;
            drop(lock);
            return Ok(());
        }
        // Sync after unlocking so concurrent writers share the flushes. If a
        // flush consumes our line meanwhile, it commits it (synchronously)
        // before truncating, so the record is durable either way.
        drop(lock);
        file.sync_data().map_err(|e| DbError::io(&self.pending, e))
    }

    /// Merges the pending file (and `extra`) into the database; the
    /// directory lock must be held.
    fn flush_locked(&self, extra: Option<Vec<Value>>, merge: MergeFn<'_>) -> Result<()> {
        let Some((file, data)) = pending::read_all(&self.pending)? else {
            if let Some(extra) = extra {
                return self.with_conn(|conn| merge(self, conn, vec![extra]));
            }
            return Ok(());
        };
        let (mut entries, _bad) = pending::decode_entries(&data);
        entries.extend(extra);
        if !entries.is_empty() {
            self.with_conn(|conn| merge(self, conn, entries))?;
        }
        if !data.is_empty() {
            file.set_len(0).map_err(|e| DbError::io(&self.pending, e))?;
        }
        Ok(())
    }

    /// Flushes the pending file before a read. Lock timeouts are tolerated
    /// when the broker allows stale reads.
    pub(crate) fn commit_pending(&self, merge: MergeFn<'_>) -> Result<()> {
        // An empty (or absent) file needs no lock: updates acknowledged
        // before this read began are already in it or in the database.
        if pending::size(&self.pending)? == 0 {
            return Ok(());
        }
        let res = DirLock::acquire(&self.dir, self.opts.pending_timeout)
            .and_then(|_lock| self.flush_locked(None, merge));
        match res {
            Err(DbError::LockTimeout { .. }) if self.opts.stale_reads_ok => Ok(()),
            other => other,
        }
    }

    /// Like `commit_pending` but never tolerating a timeout.
    pub(crate) fn commit_pending_strict(&self, merge: MergeFn<'_>) -> Result<()> {
        if !self.pending.exists() {
            return Ok(());
        }
        let _lock = DirLock::acquire(&self.dir, self.opts.pending_timeout)?;
        self.flush_locked(None, merge)
    }

    // ---- metadata ----

    pub(crate) fn raw_metadata(&self, conn: &Connection) -> Result<String> {
        let md: Option<String> = conn
            .query_row(
                &format!("SELECT metadata FROM {}", self.kind.stat_table()),
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| {
                DbError::corrupt(&self.path, "missing row in stat table", "no stat row")
            })?;
        Ok(md.unwrap_or_default())
    }

    pub(crate) fn parse_metadata(&self, raw: &str) -> Result<Metadata> {
        parse_metadata_at(&self.path, raw)
    }

    /// The metadata column as Swift writes it, `json.dumps` of the dict:
    /// `{"Key": ["value", "timestamp"], ...}` with Python's separators and
    /// non-ASCII escaped (keys in apus's sorted order).
    pub(crate) fn metadata_json(md: &Metadata) -> String {
        use apus_core::pyjson::push_json_str;
        let mut out = String::from("{");
        for (i, (k, (v, ts))) in md.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_json_str(&mut out, k);
            out.push_str(": [");
            push_json_str(&mut out, v);
            out.push_str(", ");
            push_json_str(&mut out, &ts.internal());
            out.push(']');
        }
        out.push('}');
        out
    }

    pub(crate) fn metadata(&self) -> Result<Metadata> {
        let raw = self.with_conn(|conn| self.raw_metadata(conn))?;
        self.parse_metadata(&raw)
    }

    /// Newest timestamp wins per key; an empty value marks a removal.
    pub(crate) fn update_metadata(&self, updates: &Metadata, validate: bool) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let current = self.metadata()?;
        let any_newer = updates
            .iter()
            .any(|(k, (_, ts))| is_newer(current.get(k), ts));
        if !any_newer {
            return Ok(());
        }
        self.with_conn(|conn| {
            write_tx(conn, &self.path, |tx| {
                let mut md = self.parse_metadata(&self.raw_metadata(tx)?)?;
                for (k, (v, ts)) in updates {
                    let newer = is_newer(md.get(k), ts);
                    if newer {
                        md.insert(k.clone(), (v.clone(), *ts));
                    }
                }
                if validate {
                    validate_metadata(&md)?;
                }
                tx.execute(
                    &format!("UPDATE {} SET metadata = ?", self.kind.stat_table()),
                    [Db::metadata_json(&md)],
                )
                .map_err(|e| self.err(e))?;
                Ok(())
            })
        })
    }

    // ---- status ----

    pub(crate) fn delete_db(&self, ts: Timestamp) -> Result<()> {
        let whitelist = self.kind.delete_meta_whitelist();
        let cleared: Metadata = self
            .metadata()?
            .into_keys()
            .filter(|k| !whitelist.contains(&k.to_lowercase().as_str()))
            .map(|k| (k, (String::new(), ts)))
            .collect();
        self.update_metadata(&cleared, false)?;
        let t = ts.internal();
        self.with_conn(|conn| {
            write_tx(conn, &self.path, |tx| {
                tx.execute(
                    &format!(
                        "UPDATE {} SET delete_timestamp = ?1, status = 'DELETED', \
                         status_changed_at = ?1 WHERE delete_timestamp < ?1",
                        self.kind.stat_table()
                    ),
                    [&t],
                )
                .map_err(|e| self.err(e))?;
                Ok(())
            })
        })
    }

    /// Sets `column` to `ts` when it is newer than the stored value.
    pub(crate) fn bump_stat_timestamp(&self, column: &str, ts: Timestamp) -> Result<()> {
        let t = ts.internal();
        self.with_conn(|conn| {
            write_tx(conn, &self.path, |tx| {
                tx.execute(
                    &format!(
                        "UPDATE {} SET {column} = ?1 WHERE {column} < ?1",
                        self.kind.stat_table()
                    ),
                    [&t],
                )
                .map_err(|e| self.err(e))?;
                Ok(())
            })
        })
    }

    /// Replication: keeps the oldest created_at and the newest put and
    /// delete timestamps of the stat row.
    pub(crate) fn merge_stat_timestamps(
        &self,
        created_at: Timestamp,
        put_timestamp: Timestamp,
        delete_timestamp: Timestamp,
    ) -> Result<()> {
        self.with_conn(|conn| {
            write_tx(conn, &self.path, |tx| {
                tx.execute(
                    &format!(
                        "UPDATE {} SET created_at = MIN(?, created_at), \
                         put_timestamp = MAX(?, put_timestamp), \
                         delete_timestamp = MAX(?, delete_timestamp)",
                        self.kind.stat_table()
                    ),
                    rusqlite::params![
                        created_at.internal(),
                        put_timestamp.internal(),
                        delete_timestamp.internal()
                    ],
                )
                .map_err(|e| self.err(e))?;
                Ok(())
            })
        })
    }

    // ---- replication ----

    pub(crate) fn max_row(&self, conn: &Connection, table: &str) -> Result<i64> {
        let seq: Option<i64> = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ? LIMIT 1",
                [table],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(seq.unwrap_or(-1))
    }

    pub(crate) fn get_sync(&self, remote_id: &str, incoming: bool) -> Result<i64> {
        let table = sync_table(incoming);
        self.with_conn(|conn| {
            let v: Option<i64> = conn
                .query_row(
                    &format!("SELECT sync_point FROM {table} WHERE remote_id = ?"),
                    [remote_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            Ok(v.unwrap_or(-1))
        })
    }

    pub(crate) fn get_syncs(&self, incoming: bool) -> Result<Vec<SyncPoint>> {
        let table = sync_table(incoming);
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT remote_id, sync_point, updated_at FROM {table}"
                ))
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(SyncPoint {
                        remote_id: r.get(0)?,
                        sync_point: r.get(1)?,
                        updated_at: r.get::<_, Option<rusqlite::types::Value>>(2)?.map(
                            |v| match v {
                                rusqlite::types::Value::Integer(i) => i.to_string(),
                                rusqlite::types::Value::Real(f) => f.to_string(),
                                rusqlite::types::Value::Text(s) => s,
                                _ => String::new(),
                            },
                        ),
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))
        })
    }

    pub(crate) fn merge_syncs(&self, points: &[SyncPoint], incoming: bool) -> Result<()> {
        let table = sync_table(incoming);
        self.with_conn(|conn| {
            write_tx(conn, &self.path, |tx| {
                for p in points {
                    upsert_sync(tx, table, &p.remote_id, p.sync_point).map_err(|e| self.err(e))?;
                }
                Ok(())
            })
        })
    }

    /// Gives the database a new id after it was copied from `remote_id`,
    /// recording the copy as an incoming sync up to the last row.
    pub(crate) fn newid(&self, remote_id: &str, extra: &str) -> Result<()> {
        let id = new_db_id(&self.path);
        self.with_conn(|conn| {
            write_tx(conn, &self.path, |tx| {
                tx.execute(
                    &format!("UPDATE {} SET id = ?", self.kind.stat_table()),
                    [&id],
                )
                .map_err(|e| self.err(e))?;
                let last: Option<i64> = tx
                    .query_row(
                        &format!(
                            "SELECT ROWID FROM {} ORDER BY ROWID DESC LIMIT 1",
                            self.kind.items_table()
                        ),
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.err(e))?;
                tx.execute(
                    "INSERT OR REPLACE INTO incoming_sync (sync_point, remote_id) VALUES (?, ?)",
                    rusqlite::params![last.unwrap_or(-1), remote_id],
                )
                .map_err(|e| self.err(e))?;
                if !extra.is_empty() {
                    tx.execute_batch(extra).map_err(|e| self.err(e))?;
                }
                Ok(())
            })
        })
    }

    // ---- reclaim ----

    /// Deletes tombstone rows older than `age` (in pages, one transaction
    /// each), sync rows not updated since `sync_age`, and removed metadata
    /// keys older than `age`. Returns the number of rows reclaimed.
    pub(crate) fn reclaim(&self, age: Timestamp, sync_age: Timestamp) -> Result<u64> {
        let table = self.kind.items_table();
        let col = self.kind.reclaim_column();
        let age_text = age.normal();
        let mut marker = String::new();
        let mut reclaimed = 0u64;
        loop {
            let (done, n) = self.with_conn(|conn| {
                write_tx(conn, &self.path, |tx| {
                    let end: Option<String> = tx
                        .query_row(
                            &format!(
                                "SELECT name FROM {table} WHERE deleted = 1 AND name >= ? \
                                 ORDER BY name LIMIT 1 OFFSET ?"
                            ),
                            rusqlite::params![marker, RECLAIM_PAGE_SIZE],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(|e| self.err(e))?;
                    let base = format!(
                        "DELETE FROM {table} WHERE deleted = 1 AND name >= ?1 AND {col} < ?2"
                    );
                    match end {
                        Some(end) => {
                            let n = tx
                                .execute(
                                    &format!("{base} AND name < ?3"),
                                    rusqlite::params![marker, age_text, end],
                                )
                                .map_err(|e| self.err(e))?;
                            marker = end;
                            Ok((false, n))
                        }
                        None => {
                            let n = tx
                                .execute(&base, rusqlite::params![marker, age_text])
                                .map_err(|e| self.err(e))?;
                            Ok((true, n))
                        }
                    }
                })
            })?;
            reclaimed += n as u64;
            if done {
                break;
            }
        }
        self.with_conn(|conn| {
            write_tx(conn, &self.path, |tx| {
                let sync = sync_age.as_secs_f64();
                for t in ["outgoing_sync", "incoming_sync"] {
                    tx.execute(&format!("DELETE FROM {t} WHERE updated_at < ?"), [sync])
                        .map_err(|e| self.err(e))?;
                }
                let mut md = self.parse_metadata(&self.raw_metadata(tx)?)?;
                let before = md.len();
                md.retain(|_, (v, ts)| !(v.is_empty() && *ts < age));
                if md.len() != before {
                    tx.execute(
                        &format!("UPDATE {} SET metadata = ?", self.kind.stat_table()),
                        [Db::metadata_json(&md)],
                    )
                    .map_err(|e| self.err(e))?;
                }
                Ok(())
            })
        })?;
        Ok(reclaimed)
    }

    /// Runs `f` while holding SQLite's write lock (`BEGIN IMMEDIATE`), so
    /// the file does not change underneath (for copying it whole). Readers
    /// are not blocked.
    pub(crate) fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
            let out = f();
            tx.rollback().map_err(|e| self.err(e))?;
            Ok(out)
        })
    }

    /// `PRAGMA quick_check`: Ok if SQLite finds the file sound.
    pub(crate) fn quick_check(&self) -> Result<()> {
        self.with_conn(|conn| {
            let res: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            if res == "ok" {
                Ok(())
            } else {
                Err(DbError::corrupt(&self.path, "malformed database", res))
            }
        })
    }
}

/// Parses metadata in its stored JSON form (`{"key": [value, timestamp]}`),
/// as replication carries it between copies of a database.
pub fn parse_metadata_json(raw: &str) -> Result<Metadata> {
    parse_metadata_at(Path::new("<metadata>"), raw)
}

fn parse_metadata_at(path: &Path, raw: &str) -> Result<Metadata> {
    if raw.is_empty() {
        return Ok(Metadata::new());
    }
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| DbError::bad_row(path, format!("metadata JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(DbError::bad_row(path, "metadata is not an object"));
    };
    let mut out = Metadata::new();
    for (key, entry) in map {
        let bad = || DbError::bad_row(path, format!("metadata entry {key:?}"));
        let serde_json::Value::Array(pair) = entry else {
            return Err(bad());
        };
        let value = match pair.first() {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::Null) | None => String::new(),
            _ => return Err(bad()),
        };
        let ts = match pair.get(1) {
            Some(serde_json::Value::String(s)) => Timestamp::parse(s).map_err(|_| bad())?,
            Some(serde_json::Value::Number(n)) => n
                .as_f64()
                .and_then(Timestamp::from_secs_f64)
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        out.insert(key, (value, ts));
    }
    Ok(out)
}

fn is_newer(current: Option<&(String, Timestamp)>, ts: &Timestamp) -> bool {
    match current {
        None => true,
        Some((_, old)) => ts > old,
    }
}

pub(crate) fn sync_table(incoming: bool) -> &'static str {
    if incoming {
        "incoming_sync"
    } else {
        "outgoing_sync"
    }
}

pub(crate) fn upsert_sync(
    tx: &Connection,
    table: &str,
    remote_id: &str,
    point: i64,
) -> rusqlite::Result<()> {
    let n = tx.execute(
        &format!("UPDATE {table} SET sync_point = max(?, sync_point) WHERE remote_id = ?"),
        rusqlite::params![point, remote_id],
    )?;
    if n == 0 {
        tx.execute(
            &format!("INSERT INTO {table} (sync_point, remote_id) VALUES (?, ?)"),
            rusqlite::params![point, remote_id],
        )?;
    }
    Ok(())
}

/// Swift's limits on user metadata (`x-<type>-meta-*` keys with a value).
pub fn validate_metadata(md: &Metadata) -> Result<()> {
    let mut count = 0usize;
    let mut size = 0usize;
    for (key, (value, _)) in md {
        if value.is_empty() {
            continue;
        }
        let lower = key.to_lowercase();
        let stripped = lower
            .strip_prefix("x-account-meta-")
            .or_else(|| lower.strip_prefix("x-container-meta-"));
        if let Some(name) = stripped {
            count += 1;
            size += name.chars().count() + value.chars().count();
        }
    }
    if count > MAX_META_COUNT {
        return Err(DbError::MetadataLimit(format!(
            "Too many metadata items; max {MAX_META_COUNT}"
        )));
    }
    if size > MAX_META_OVERALL_SIZE {
        return Err(DbError::MetadataLimit(format!(
            "Total metadata too large; max {MAX_META_OVERALL_SIZE}"
        )));
    }
    Ok(())
}

/// The sync tables both database types carry, with their `updated_at`
/// maintenance.
const SYNC_TABLES_SQL: &str = "
CREATE TABLE outgoing_sync (
    remote_id TEXT UNIQUE,
    sync_point INTEGER,
    updated_at TEXT DEFAULT 0
);
CREATE TABLE incoming_sync (
    remote_id TEXT UNIQUE,
    sync_point INTEGER,
    updated_at TEXT DEFAULT 0
);
CREATE TRIGGER outgoing_sync_insert AFTER INSERT ON outgoing_sync BEGIN
    UPDATE outgoing_sync SET updated_at = STRFTIME('%s', 'NOW') WHERE ROWID = new.ROWID;
END;
CREATE TRIGGER outgoing_sync_update AFTER UPDATE ON outgoing_sync BEGIN
    UPDATE outgoing_sync SET updated_at = STRFTIME('%s', 'NOW') WHERE ROWID = new.ROWID;
END;
CREATE TRIGGER incoming_sync_insert AFTER INSERT ON incoming_sync BEGIN
    UPDATE incoming_sync SET updated_at = STRFTIME('%s', 'NOW') WHERE ROWID = new.ROWID;
END;
CREATE TRIGGER incoming_sync_update AFTER UPDATE ON incoming_sync BEGIN
    UPDATE incoming_sync SET updated_at = STRFTIME('%s', 'NOW') WHERE ROWID = new.ROWID;
END;
";
