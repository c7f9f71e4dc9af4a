//! apus-diskfile: object files on local disks, in OpenStack Swift's exact
//! layout, with blocking I/O.
//!
//! It owns everything an object server and the object daemons do to a
//! device directory:
//!
//! - the layout `<devices>/<device>/objects[-N]/<partition>/<suffix>/<hash>/`
//!   holding `<timestamp>.data`, `<timestamp>.meta` (POSTs, with an optional
//!   content-type timestamp delta in the name) and `<timestamp>.ts`
//!   (tombstones), temp files in `<device>/tmp[-N]/`, quarantined objects in
//!   `<device>/quarantined/objects[-N]/<hash>/`, and undelivered container
//!   updates in `<device>/async_pending[-N]/<suffix>/<hash>-<timestamp>`;
//! - object metadata, a pickled dict in the `user.swift.metadata*` xattrs
//!   exactly as Swift writes it ([`metadata`], [`pickle`]), with a spill
//!   file for metadata too large for the filesystem's xattr space (see
//!   [`xattrs`] for the on-disk choice);
//! - Swift's rules for which files make up an object's state and which are
//!   obsolete ([`ondisk`]), POST semantics when opening, tombstones,
//!   expiry, and quarantine of inconsistent objects;
//! - suffix hashes and `hashes.pkl` / `hashes.invalid` for replication
//!   ([`hashes`]), computed as Swift computes them;
//! - device checks (missing or unmounted device → `DeviceUnavailable`, 507);
//! - erasure-coded policies, beside the replicated rules and chosen by the
//!   caller passing an [`EcPolicy`]: fragment archives named
//!   `<timestamp>#<frag_index>[#d].data` (and older nodes' legacy
//!   `<timestamp>.durable` markers), Swift's EC rules for which files make
//!   the object and which are obsolete or reclaimable ([`ec_ondisk`]:
//!   durable fragment sets, fragment index and fragment preferences, the
//!   commit window for non-durable fragments), per-fragment-index suffix
//!   hashes in `hashes.pkl` ([`hashes::get_hashes_ec`]), and
//!   [`EcDiskFile`] ([`ec_diskfile`]): a PUT that writes a non-durable
//!   fragment, a commit that makes it durable, opening by fragment
//!   selection with the durable timestamp and fragments present, purge.
//!   Fragment archive bodies are opaque bytes here.
//!
//! Every write that reports success has been fsynced and renamed into
//! place, with the directories it touched fsynced; a failed or abandoned
//! write leaves no partial file behind.
//!
//! Invariant: this crate does blocking file I/O only. It must never depend
//! on HTTP, tokio, the servers or the proxy; async callers run it on a
//! blocking thread pool. Of apus it depends only on `apus-core`.

pub mod async_pending;
pub mod diskfile;
pub mod ec_diskfile;
pub mod ec_ondisk;
pub mod error;
mod fsutil;
pub mod hashes;
pub mod layout;
pub mod metadata;
pub mod ondisk;
pub mod pickle;
mod pyset;
pub mod xattrs;

pub use async_pending::{read_async_pending, remove_async_pending, AsyncPendingEntry, AsyncUpdate};
pub use diskfile::{
    DiskFile, DiskFileConfig, DiskFileManager, DiskFileReader, DiskFileWriter, FallocateReserve,
    HashTimestamps, OpenDiskFile, OpenOptions, PutStage, DATA_CRC32_KEY, DEFAULT_COMMIT_WINDOW,
    DEFAULT_RECLAIM_AGE, EC_FRAG_INDEX_KEY,
};
pub use ec_diskfile::{
    EcDiskFile, EcDiskFileWriter, EcHashTimestamps, EcOpenDiskFile, EcPutFragment,
};
pub use ec_ondisk::{
    cleanup_ondisk_files_ec, get_ondisk_files_ec, EcOnDiskFiles, FragPref, FragSelect,
};
pub use error::{DiskFileError, Result};
pub use hashes::{
    get_hashes, get_hashes_ec, hash_suffix, hash_suffix_ec, invalidate_hash, quarantine_dir,
    quarantine_file, EcHashesFile, EcSuffixHash, EcSuffixHashes, HashesFile, SuffixHashes,
};
pub use layout::{device_path, EcPolicy, FileKind};
pub use metadata::Metadata;
pub use ondisk::{cleanup_ondisk_files, get_ondisk_files, OnDiskFiles};
pub use xattrs::{read_metadata, write_metadata_xattrs};
