//! apus-db: the account and container databases ("brokers") on SQLite,
//! with OpenStack Swift's schema, so that Swift's own tools can read the
//! files and replicas can be compared with Swift's rolling hash.
//!
//! This crate owns:
//! - the on-disk schema of account and container databases (`object`,
//!   `container`, `policy_stat`, `container_info` + the `container_stat`
//!   view, `account_stat`, `incoming_sync`/`outgoing_sync`, `shard_range`)
//!   and the triggers that keep counts and the `chexor` hash up to date;
//! - the `.pending` file beside each database: updates are appended (in
//!   Swift's pickled/base64 format) and fsynced under a directory lock, then
//!   merged into SQLite in one transaction at the next read, or at once when
//!   the file grows past its cap;
//! - merge rules (newest wins per field for objects, newest put/delete for
//!   containers with the counts of the newer stats timestamp, an apus
//!   column: see `account.rs`), listings with Swift's marker/prefix/delimiter/path/reverse
//!   semantics returned as typed rows, metadata, status (deleted,
//!   re-created), reclaim, and the replication primitives
//!   (`get_items_since`, `merge_items`, sync points, replication info),
//!   behind one [`ReplicaBroker`] trait for both database types.
//!
//! Durability: the journal mode is SQLite's rollback journal (`DELETE`,
//! Swift's choice) so that the `.db` file alone is always a complete copy
//! (replication ships that one file), with `synchronous = FULL`. A write
//! returns only after its pending line has been `fdatasync`ed; the pending
//! file is truncated only after the transaction that merged it committed.
//!
//! Schema note: like Swift 2.38, the `object` table has no separate
//! content-type or metadata timestamp columns; all three timestamps live in
//! `created_at` in Swift's encoded form (`<data>[±<hex>±<hex>]`), so the
//! files stay readable and writable by Swift. Databases from Swift versions
//! before storage policies (no `policy_stat`) are not migrated; they report
//! as `Corrupt` ("missing table or column").
//!
//! Architecture invariant: this crate is blocking and knows nothing of HTTP.
//! It must never depend on HTTP, tokio, the servers or the proxy; servers
//! call it from blocking threads. Formatting listings (JSON/XML/plain) is
//! the servers' job.

mod account;
mod container;
mod db;
mod encode;
mod error;
mod layout;
mod listing;
mod pending;
mod replica;

pub use account::{AccountBroker, AccountInfo, AccountPolicyStat, ContainerEntry, ContainerRecord};
pub use container::{
    ContainerBroker, ContainerInfo, ContainerPolicyStat, ObjectEntry, ObjectRecord, ReplicationInfo,
};
pub use db::{
    parse_metadata_json, validate_metadata, BrokerOptions, Metadata, SyncPoint, MAX_META_COUNT,
    MAX_META_OVERALL_SIZE, PENDING_CAP,
};
pub use encode::{
    chexor, decode_timestamps, encode_timestamps, extract_swift_bytes, RowTimestamps,
};
pub use error::{DbError, Result};
pub use layout::quarantine_db;
pub use listing::{ListParams, Listing, LISTING_LIMIT};
pub use replica::{cmp_policy_info, remote_policy_wins, PolicyState, ReplicaBroker};
