//! The disk file manager, object handles, the streaming writer and reader.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use apus_core::{HashConfig, Timestamp};
use md5::{Digest, Md5};
use rustix::fs::FallocateFlags;

use crate::ec_ondisk::{cleanup_ondisk_files_ec, get_ondisk_files_ec, FragSelect};
use crate::error::{DiskFileError, IoContext, Result};
use crate::fsutil::{makedirs_count, now_secs, remove_file, renamer};
use crate::hashes::{self, SuffixHashes};
use crate::layout::{
    self, make_ec_data_filename, make_filename, validate_fragment_index, EcPolicy, FileKind,
};
use crate::metadata::Metadata;
use crate::ondisk::{cleanup_ondisk_files, get_ondisk_files, OnDiskFiles};
use crate::xattrs::{self, spill_path, Stored};

/// Swift's default `reclaim_age`: one week.
pub const DEFAULT_RECLAIM_AGE: f64 = 7.0 * 24.0 * 3600.0;

/// Swift's default `commit_window`: one minute.
pub const DEFAULT_COMMIT_WINDOW: f64 = 60.0;

/// Free space kept in reserve: writes that would leave less fail early with
/// [`DiskFileError::DiskFull`] (Swift's `fallocate_reserve`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FallocateReserve {
    Bytes(u64),
    Percent(f64),
}

/// Settings shared by every disk file of a node.
#[derive(Clone, Debug)]
pub struct DiskFileConfig {
    /// The directory holding the devices (`/srv/node`).
    pub devices: PathBuf,
    /// Require each device to be a mount point (or carry `.ismount`).
    pub mount_check: bool,
    /// Seconds after which tombstones and stray `.meta` files are reclaimed.
    pub reclaim_age: f64,
    pub fallocate_reserve: FallocateReserve,
    /// Swift's `disable_fallocate`: no space is reserved for an object
    /// before its bytes arrive, and `fallocate_reserve` is not checked (a
    /// full disk then fails the write itself, with the same 507).
    pub disable_fallocate: bool,
    /// fdatasync while writing every this many bytes.
    pub bytes_per_sync: u64,
    /// Erasure-coded policies: seconds a non-durable fragment is left
    /// alone, even past the reclaim age, for its commit to arrive
    /// (Swift's `commit_window`).
    pub commit_window: f64,
    /// The cluster's hash path prefix and suffix.
    pub hash: HashConfig,
}

impl DiskFileConfig {
    pub fn new(devices: impl Into<PathBuf>, hash: HashConfig) -> Self {
        DiskFileConfig {
            devices: devices.into(),
            mount_check: true,
            reclaim_age: DEFAULT_RECLAIM_AGE,
            fallocate_reserve: FallocateReserve::Percent(1.0),
            disable_fallocate: false,
            bytes_per_sync: 512 * 1024 * 1024,
            commit_window: DEFAULT_COMMIT_WINDOW,
            hash,
        }
    }
}

/// Entry point: finds devices and hands out [`DiskFile`]s. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DiskFileManager {
    conf: Arc<DiskFileConfig>,
}

impl DiskFileManager {
    pub fn new(conf: DiskFileConfig) -> Self {
        DiskFileManager {
            conf: Arc::new(conf),
        }
    }

    pub fn config(&self) -> &DiskFileConfig {
        &self.conf
    }

    /// The device's path, checked as configured (`DeviceUnavailable` → 507).
    pub fn device_path(&self, device: &str) -> Result<PathBuf> {
        layout::device_path(&self.conf.devices, device, self.conf.mount_check)
    }

    /// The disk file of `/account/container/object` on a device.
    pub fn diskfile(
        &self,
        device: &str,
        partition: u32,
        account: &str,
        container: &str,
        obj: &str,
        policy: u32,
    ) -> Result<DiskFile> {
        let device_path = self.device_path(device)?;
        let hash = self
            .conf
            .hash
            .hash_path(account, Some(container), Some(obj));
        Ok(DiskFile {
            mgr: self.clone(),
            hash_dir: layout::hash_dir_path(&device_path, policy, partition, &hash),
            device_path,
            policy,
            partition,
            name: Some(format!("/{account}/{container}/{obj}")),
            hash,
            ec: None,
        })
    }

    /// The disk file in an existing hash directory (replicator, auditor):
    /// its name comes from its metadata and must hash back to `hash`.
    pub fn diskfile_from_hash(
        &self,
        device: &str,
        partition: u32,
        hash: &str,
        policy: u32,
    ) -> Result<DiskFile> {
        let device_path = self.device_path(device)?;
        Ok(DiskFile {
            mgr: self.clone(),
            hash_dir: layout::hash_dir_path(&device_path, policy, partition, hash),
            device_path,
            policy,
            partition,
            name: None,
            hash: hash.to_string(),
            ec: None,
        })
    }

    /// `<device>/objects[-N]/<partition>`.
    pub fn partition_path(&self, device: &str, partition: u32, policy: u32) -> Result<PathBuf> {
        Ok(layout::partition_path(
            &self.device_path(device)?,
            policy,
            partition,
        ))
    }

    /// Suffix hashes of a partition (see [`hashes::get_hashes`]).
    pub fn get_hashes(
        &self,
        device: &str,
        partition: u32,
        policy: u32,
        recalculate: &[&str],
    ) -> Result<SuffixHashes> {
        let part = self.partition_path(device, partition, policy)?;
        hashes::get_hashes(&part, recalculate, self.conf.reclaim_age, policy)
    }

    /// Removes the files in every available device's `tmp` and `tmp-N`
    /// directories last modified before `older_than`, and returns how many
    /// went. A write's temp file is renamed into place or unlinked unless
    /// the process dies mid-write, so these are what crashes left behind.
    /// Swift's replicator removes temp files older than `reclaim_age`; an
    /// object server, sole writer of its devices' temp files, can remove
    /// at startup everything older than itself. Best effort: a device or
    /// file that cannot be read or removed is skipped.
    pub fn remove_stale_temp_files(&self, older_than: SystemTime) -> usize {
        let Ok(devices) = std::fs::read_dir(&self.conf.devices) else {
            return 0;
        };
        let mut removed = 0;
        for device in devices.flatten() {
            let name = device.file_name();
            let Some(device_path) = name.to_str().and_then(|d| self.device_path(d).ok()) else {
                continue;
            };
            let Ok(dirs) = std::fs::read_dir(&device_path) else {
                continue;
            };
            for dir in dirs.flatten() {
                if !is_tmp_dir_name(&dir.file_name().to_string_lossy()) {
                    continue;
                }
                removed += remove_files_older_than(&dir.path(), older_than);
            }
        }
        removed
    }
}

/// `tmp` or `tmp-<policy index>`.
fn is_tmp_dir_name(name: &str) -> bool {
    match name.strip_prefix("tmp") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Removes the regular files directly in `dir` modified before `older_than`.
fn remove_files_older_than(dir: &Path, older_than: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let stale = meta.modified().is_ok_and(|m| m < older_than);
        if meta.is_file() && stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// What replication compares for one object (Swift's `yield_hashes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashTimestamps {
    /// The data file's or tombstone's timestamp.
    pub ts_data: Timestamp,
    /// The newest `.meta`'s timestamp.
    pub ts_meta: Option<Timestamp>,
    /// The newest content-type timestamp, when newer than the data.
    pub ts_ctype: Option<Timestamp>,
}

impl DiskFileManager {
    /// Every object hash in the partition's suffixes (all suffixes when
    /// `suffixes` is `None`), after cleaning each hash dir, with the
    /// timestamps that define its state; hash dirs holding neither data nor
    /// tombstone are skipped, and suffixes found empty are invalidated.
    pub fn yield_hashes(
        &self,
        device: &str,
        partition: u32,
        policy: u32,
        suffixes: Option<&[&str]>,
    ) -> Result<Vec<(String, HashTimestamps)>> {
        let part = self.partition_path(device, partition, policy)?;
        let suffixes: Vec<String> = match suffixes {
            Some(s) => s.iter().map(|s| s.to_string()).collect(),
            None => {
                let mut v: Vec<String> = crate::fsutil::list_names(&part)
                    .at(&part)?
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| layout::valid_suffix(s))
                    .collect();
                v.sort();
                v
            }
        };
        let mut out = Vec::new();
        for suffix in suffixes {
            let sdir = part.join(&suffix);
            let mut hashes = crate::fsutil::list_names(&sdir)
                .unwrap_or_default()
                .unwrap_or_default();
            hashes.sort();
            let mut found = false;
            for hash in hashes {
                let Ok(cleaned) = cleanup_ondisk_files(&sdir.join(&hash), self.conf.reclaim_age)
                else {
                    continue;
                };
                found |= !cleaned.remaining.is_empty();
                let f = &cleaned.files;
                let Some(ts_data) = f.data.as_ref().or(f.ts.as_ref()).map(|i| i.timestamp) else {
                    continue;
                };
                out.push((
                    hash,
                    HashTimestamps {
                        ts_data,
                        ts_meta: f.meta.as_ref().map(|i| i.timestamp),
                        ts_ctype: f.ctype.as_ref().and_then(|i| i.ctype_timestamp),
                    },
                ));
            }
            if !found {
                hashes::invalidate_hash(&part, &suffix)?;
            }
        }
        Ok(out)
    }
}

/// Options for [`DiskFile::open`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Open objects whose `X-Delete-At` has passed (`X-Backend-Replication`).
    pub open_expired: bool,
    /// The time expiry is judged against (seconds); now when `None`.
    pub now: Option<f64>,
}

/// One object's location on one device.
#[derive(Clone, Debug)]
pub struct DiskFile {
    mgr: DiskFileManager,
    device_path: PathBuf,
    policy: u32,
    partition: u32,
    name: Option<String>,
    hash: String,
    hash_dir: PathBuf,
    /// Set for an erasure-coded policy: then the EC rules name, classify
    /// and clean the files (see [`crate::ec_diskfile`]).
    pub(crate) ec: Option<EcState>,
}

/// What an erasure-coded disk file knows besides the replicated one.
#[derive(Clone, Debug)]
pub(crate) struct EcState {
    pub(crate) policy: EcPolicy,
    pub(crate) select: FragSelect,
    /// Set when this disk file stands for one named fragment archive
    /// (see [`DiskFileManager::ec_archive_from_hash`]): quarantining then
    /// spares the archive's siblings.
    pub(crate) archive: Option<String>,
}

impl DiskFile {
    pub fn hash_dir(&self) -> &Path {
        &self.hash_dir
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn device_path(&self) -> &Path {
        &self.device_path
    }

    pub fn policy(&self) -> u32 {
        self.policy
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// `/account/container/object`, when known.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn partition_dir(&self) -> PathBuf {
        layout::partition_path(&self.device_path, self.policy, self.partition)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.device_path.join(layout::tmp_dir(self.policy))
    }

    pub(crate) fn quarantine(&self, reason: impl Into<String>) -> DiskFileError {
        let reason = reason.into();
        let archive = self.ec.as_ref().and_then(|e| e.archive.as_deref());
        let moved = match archive {
            Some(name) if crate::ec_diskfile::archive_has_siblings(&self.hash_dir, name) => {
                hashes::quarantine_file(&self.device_path, &self.hash_dir.join(name), self.policy)
            }
            _ => hashes::quarantine_dir(&self.device_path, &self.hash_dir, self.policy),
        };
        match moved {
            Ok(to) => DiskFileError::Quarantined { reason, to },
            Err(e) => e,
        }
    }

    /// The classification of the hash directory's current files (by the
    /// replicated rules; see [`crate::EcDiskFile::ondisk_files`] for EC).
    pub fn ondisk_files(&self) -> Result<OnDiskFiles> {
        Ok(get_ondisk_files(&self.list_hash_dir()?))
    }

    /// The hash directory's names, reverse-sorted (none when it does not
    /// exist); a directory that cannot be listed is quarantined.
    pub(crate) fn list_hash_dir(&self) -> Result<Vec<String>> {
        match crate::fsutil::list_names(&self.hash_dir) {
            Ok(Some(mut names)) => {
                names.sort_unstable_by(|a, b| b.cmp(a));
                Ok(names)
            }
            Ok(None) => Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                Err(self.quarantine("expected a directory, found a file"))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::EUCLEAN)) => {
                Err(self.quarantine(format!("failed to list directory: {e}")))
            }
            Err(e) => Err(DiskFileError::io(&self.hash_dir, e)),
        }
    }

    fn read_file_metadata(&self, path: &Path) -> Result<(File, Metadata)> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DiskFileError::StateChanged)
            }
            Err(e) => return Err(DiskFileError::io(path, e)),
        };
        match xattrs::read_metadata_file(&file, path) {
            Ok(md) => Ok((file, md)),
            Err(xattrs::ReadMetaError::Corrupt(msg)) => {
                Err(self.quarantine(format!("bad metadata in {}: {msg}", path.display())))
            }
            Err(e) => Err(e.into_error(path)),
        }
    }

    /// Opens the object's current state: the newest data file with any
    /// newer `.meta` applied. Fails with `NotFound`, `Deleted`, `Expired`,
    /// `Quarantined` (inconsistent files moved aside) and the like.
    pub fn open(&self, opts: OpenOptions) -> Result<OpenDiskFile> {
        let files = match &self.ec {
            None => self.ondisk_files()?,
            Some(ec) => {
                let names = self.list_hash_dir()?;
                get_ondisk_files_ec(&names, Some(&ec.policy), &ec.select).base()
            }
        };
        self.open_files(&files, opts)
    }

    /// Opens the object from an already made classification of its files.
    pub(crate) fn open_files(
        &self,
        files: &OnDiskFiles,
        opts: OpenOptions,
    ) -> Result<OpenDiskFile> {
        let Some(data) = &files.data else {
            if let Some(ts) = &files.ts {
                let path = self.hash_dir.join(&ts.filename);
                return match self.read_file_metadata(&path) {
                    Ok((_, md)) => Err(DiskFileError::Deleted {
                        timestamp: md.timestamp().unwrap_or(ts.timestamp),
                        metadata: Box::new(md),
                    }),
                    Err(DiskFileError::Quarantined { .. }) | Err(DiskFileError::StateChanged) => {
                        Err(DiskFileError::NotFound)
                    }
                    Err(e) => Err(e),
                };
            }
            return Err(DiskFileError::NotFound);
        };
        let data_path = self.hash_dir.join(&data.filename);
        let (file, datafile_md) = self.read_file_metadata(&data_path)?;
        let data_timestamp = match datafile_md.timestamp() {
            Some(t) => t,
            None => return Err(self.quarantine("data file metadata has no valid X-Timestamp")),
        };
        let mut metafile_md = None;
        let metadata = if let Some(meta) = &files.meta {
            let (_, mut meta_md) = self.read_file_metadata(&self.hash_dir.join(&meta.filename))?;
            if let Some(ctype) = files.ctype.as_ref().filter(|c| c.filename != meta.filename) {
                let (_, ct_md) = self.read_file_metadata(&self.hash_dir.join(&ctype.filename))?;
                let ct_ts = ct_md
                    .get("Content-Type-Timestamp")
                    .and_then(|t| Timestamp::parse(t).ok());
                let meta_ct_ts = meta_md
                    .get("Content-Type-Timestamp")
                    .and_then(|t| Timestamp::parse(t).ok());
                if let (Some(ct), Some(ct_ts)) = (ct_md.get_bytes("Content-Type"), ct_ts) {
                    if Some(ct_ts) > meta_ct_ts && ct_ts > data_timestamp {
                        meta_md.insert("Content-Type", ct);
                        meta_md.insert("Content-Type-Timestamp", ct_ts.internal());
                    }
                }
            }
            let mut merged = meta_md.clone();
            for (k, v) in datafile_md.iter() {
                if is_datafile_system_key(k) {
                    merged.insert(k, v);
                }
            }
            meta_md.remove("name");
            let meta_ct_ts = meta_md
                .get("Content-Type-Timestamp")
                .and_then(|t| Timestamp::parse(t).ok());
            if let Some(ct) = datafile_md.get_bytes("Content-Type") {
                let data_newer = match meta_ct_ts {
                    Some(m) => data_timestamp > m,
                    None => true,
                };
                if data_newer {
                    merged.insert("Content-Type", ct);
                    merged.remove("Content-Type-Timestamp");
                }
            }
            metafile_md = Some(meta_md);
            merged
        } else {
            datafile_md.clone()
        };

        // The name must match the one asked for (or hash back to the dir).
        let Some(stored_name) = metadata.name().map(str::to_string) else {
            return Err(self.quarantine("missing name metadata"));
        };
        match &self.name {
            Some(asked) if *asked != stored_name => {
                return Err(DiskFileError::Collision {
                    asked: asked.clone(),
                    stored: stored_name,
                })
            }
            Some(_) => {}
            None => {
                let h =
                    self.mgr
                        .conf
                        .hash
                        .hash_path(stored_name.trim_start_matches('/'), None, None);
                if h != self.hash {
                    return Err(
                        self.quarantine("hash of name in metadata does not match directory")
                    );
                }
            }
        }
        if let Some(raw) = metadata.get_bytes("X-Delete-At") {
            let x = String::from_utf8_lossy(raw);
            match x.trim().parse::<i64>() {
                Ok(at) => {
                    let now = opts.now.unwrap_or_else(now_secs);
                    if (at as f64) <= now && !opts.open_expired {
                        return Err(DiskFileError::Expired {
                            x_delete_at: at.max(0) as u64,
                            metadata: Box::new(metadata),
                        });
                    }
                }
                Err(_) => return Err(self.quarantine(format!("bad X-Delete-At value {x:?}"))),
            }
        }
        let Some(cl) = metadata.get("Content-Length") else {
            return Err(self.quarantine("missing Content-Length in metadata"));
        };
        let Ok(meta_size) = cl.trim().parse::<u64>() else {
            return Err(self.quarantine(format!("bad Content-Length value {cl:?}")));
        };
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Err(self.quarantine(format!("not stat-able: {e}"))),
        };
        if size != meta_size {
            return Err(self.quarantine(format!(
                "metadata Content-Length {meta_size} does not match file size {size}"
            )));
        }
        Ok(OpenDiskFile {
            df: self.clone(),
            file,
            data_path,
            metadata,
            datafile_metadata: datafile_md,
            metafile_metadata: metafile_md,
            data_timestamp,
            content_length: size,
        })
    }

    /// The merged metadata of the object (opens and closes it).
    pub fn read_metadata(&self, opts: OpenOptions) -> Result<Metadata> {
        Ok(self.open(opts)?.metadata)
    }

    /// Starts writing a new `.data` file. `size`, when known, is
    /// preallocated; a disk too full for it fails here with `DiskFull`.
    pub fn create(&self, size: Option<u64>) -> Result<DiskFileWriter> {
        self.writer(size, FileKind::Data)
    }

    fn writer(&self, size: Option<u64>, kind: FileKind) -> Result<DiskFileWriter> {
        if self.name.is_none() {
            return Err(DiskFileError::InvalidMetadata(
                "cannot write an object opened by hash only".into(),
            ));
        }
        let tmp_dir = self.tmp_dir();
        let new_temp = || tempfile::Builder::new().prefix("tmp").tempfile_in(&tmp_dir);
        // The device's tmp dir is made on the first write and almost never
        // missing after: created only when the temp file cannot be.
        let tmp = match new_temp() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                makedirs_count(&tmp_dir).at(&tmp_dir)?;
                new_temp()
            }
            made => made,
        }
        .at(&tmp_dir)?;
        let reserve = self.mgr.conf.fallocate_reserve;
        if kind != FileKind::Tombstone && !self.mgr.conf.disable_fallocate {
            let size = size.unwrap_or(0);
            if !has_free_space(tmp.as_file(), size, reserve, tmp.path())? {
                return Err(DiskFileError::DiskFull {
                    path: tmp_dir.clone(),
                });
            }
            if size > 0 {
                match rustix::fs::fallocate(tmp.as_file(), FallocateFlags::KEEP_SIZE, 0, size) {
                    Ok(()) => {}
                    Err(e)
                        if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {}
                    Err(e) => return Err(DiskFileError::io(tmp.path(), e.into())),
                }
            }
        }
        Ok(DiskFileWriter {
            df: self.clone(),
            tmp: Some(tmp),
            kind,
            size: 0,
            md5: Some(Md5::new()),
            crc: crc32fast::Hasher::new(),
            last_sync: 0,
        })
    }

    /// POST: writes `<X-Timestamp>.meta` (named with the content-type
    /// timestamp delta when `Content-Type-Timestamp` is present).
    pub fn write_metadata(&self, metadata: Metadata) -> Result<PathBuf> {
        self.writer(None, FileKind::Meta)?.put(metadata)
    }

    /// DELETE: writes the tombstone `<timestamp>.ts` and cleans up.
    pub fn delete(&self, timestamp: Timestamp) -> Result<PathBuf> {
        let mut md = Metadata::new();
        md.insert("X-Timestamp", timestamp.internal());
        self.writer(None, FileKind::Tombstone)?.put(md)
    }

    /// Removes obsolete files of this object now.
    pub fn cleanup(&self) -> Result<()> {
        let conf = &self.mgr.conf;
        match &self.ec {
            None => cleanup_ondisk_files(&self.hash_dir, conf.reclaim_age).map(|_| ()),
            Some(_) => cleanup_ondisk_files_ec(
                &self.hash_dir,
                None,
                &FragSelect::any(),
                conf.reclaim_age,
                conf.commit_window,
            )
            .map(|_| ()),
        }
        .at(&self.hash_dir)
    }

    pub(crate) fn partition_dir_path(&self) -> PathBuf {
        self.partition_dir()
    }
}

/// Keys of the data file's metadata a POST cannot change.
fn is_datafile_system_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "content-length" | "deleted" | "etag" | "x-static-large-object"
    ) || lower.starts_with("x-object-sysmeta-")
}

fn has_free_space(file: &File, size: u64, reserve: FallocateReserve, path: &Path) -> Result<bool> {
    let st = rustix::fs::fstatvfs(file).map_err(|e| DiskFileError::io(path, e.into()))?;
    let free = st.f_frsize as f64 * st.f_bavail as f64;
    let total = st.f_frsize as f64 * st.f_blocks as f64;
    Ok(match reserve {
        FallocateReserve::Bytes(0) if size == 0 => true,
        FallocateReserve::Bytes(r) => {
            if size == 0 {
                free >= r as f64
            } else {
                free - size as f64 > r as f64
            }
        }
        FallocateReserve::Percent(p) => {
            if total <= 0.0 {
                true
            } else if size == 0 {
                free / total * 100.0 >= p
            } else {
                (free - size as f64) / total * 100.0 > p
            }
        }
    })
}

/// Points of [`DiskFileWriter::put_observed`], in the order a write
/// passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutStage {
    /// The body and metadata are in the temp file, not yet fsynced.
    BeforeFsync,
    /// The temp file is fsynced (and the suffix invalidated), not yet
    /// renamed into the object's directory.
    BeforeRename,
}

/// A write in progress: data streams into a temp file in `<device>/tmp`;
/// [`put`](Self::put) publishes it. Dropping the writer without `put`
/// removes the temp file.
#[derive(Debug)]
pub struct DiskFileWriter {
    df: DiskFile,
    tmp: Option<tempfile::NamedTempFile>,
    kind: FileKind,
    size: u64,
    /// `None` once [`without_md5`](DiskFileWriter::without_md5) was called.
    md5: Option<Md5>,
    crc: crc32fast::Hasher,
    last_sync: u64,
}

impl DiskFileWriter {
    fn tmp(&mut self) -> Result<&mut tempfile::NamedTempFile> {
        self.tmp
            .as_mut()
            .ok_or_else(|| DiskFileError::InvalidMetadata("writer already finished".into()))
    }

    /// Appends a chunk of the object's body.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let bytes_per_sync = self.df.mgr.conf.bytes_per_sync;
        let tmp = self.tmp()?;
        tmp.as_file_mut().write_all(chunk).at(tmp.path())?;
        if let Some(md5) = &mut self.md5 {
            md5.update(chunk);
        }
        self.crc.update(chunk);
        self.size += chunk.len() as u64;
        if self.size - self.last_sync >= bytes_per_sync {
            let (from, len) = (self.last_sync, self.size - self.last_sync);
            let tmp = self.tmp()?;
            rustix::fs::fdatasync(tmp.as_file())
                .map_err(|e| DiskFileError::io(tmp.path(), e.into()))?;
            let _ = rustix::fs::fadvise(
                tmp.as_file(),
                from,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::DontNeed,
            );
            self.last_sync = self.size;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.size
    }

    /// MD5 hex of the bytes written so far (the object's ETag once done);
    /// `None` for a writer that does not hash them.
    pub fn etag(&self) -> Option<String> {
        let md5 = self.md5.clone()?;
        Some(apus_core::hash::to_hex(&md5.finalize()))
    }

    /// CRC-32 of the bytes written so far: what the data file will carry
    /// as its stored checksum.
    pub fn crc32(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// A writer that does not hash the body with MD5, for a caller that
    /// knows the ETag already and checks the bytes by [`crc32`](Self::crc32)
    /// against the sender's instead (MD5 costs ten times as much CPU).
    /// Only before the first write: an error after it.
    pub fn without_md5(mut self) -> Result<Self> {
        if self.size > 0 {
            return Err(DiskFileError::InvalidMetadata(
                "MD5 can only be turned off before the first write".into(),
            ));
        }
        self.md5 = None;
        Ok(self)
    }

    /// Publishes the file: stores `metadata` (plus `name`), fsyncs, renames
    /// it to `<hash_dir>/<X-Timestamp><ext>`, fsyncs the directories, then
    /// removes files the new one makes obsolete. Returns the final path.
    pub fn put(self, metadata: Metadata) -> Result<PathBuf> {
        self.put_observed(metadata, |_| {})
    }

    /// [`put`](Self::put), calling `observe` as it reaches each
    /// [`PutStage`] (the object server's failpoints hook in here).
    pub fn put_observed(
        self,
        metadata: Metadata,
        observe: impl FnMut(PutStage),
    ) -> Result<PathBuf> {
        self.put_inner(metadata, observe).map(|done| done.path)
    }

    pub(crate) fn put_inner(
        mut self,
        mut metadata: Metadata,
        mut observe: impl FnMut(PutStage),
    ) -> Result<PutDone> {
        let ts = metadata
            .get("X-Timestamp")
            .ok_or_else(|| DiskFileError::InvalidMetadata("missing X-Timestamp".into()))
            .and_then(|t| {
                Timestamp::parse(t)
                    .map_err(|e| DiskFileError::InvalidMetadata(format!("bad X-Timestamp: {e}")))
            })?;
        let ctype_ts = match (self.kind, metadata.get("Content-Type-Timestamp")) {
            (FileKind::Meta, Some(t)) if !t.is_empty() => {
                Some(Timestamp::parse(t).map_err(|e| {
                    DiskFileError::InvalidMetadata(format!("bad Content-Type-Timestamp: {e}"))
                })?)
            }
            _ => None,
        };
        let df = self.df.clone();
        // An EC fragment archive is named with its index: the metadata's
        // X-Object-Sysmeta-Ec-Frag-Index, else the disk file's.
        let frag_index = match (&df.ec, self.kind) {
            (Some(ec), FileKind::Data) => Some(ec_frag_index(ec, &mut metadata)?),
            _ => None,
        };
        if let Some(name) = &df.name {
            metadata.insert("name", name.clone());
        }
        if self.kind == FileKind::Data {
            // Always what this writer saw: a value arriving with the
            // metadata (from a peer, or copied from another object) would
            // describe someone else's bytes.
            metadata.insert(
                DATA_CRC32_KEY,
                format!("{:08x}", self.crc.clone().finalize()),
            );
        }
        let filename = match frag_index {
            Some(i) => make_ec_data_filename(&ts, i, false),
            None => make_filename(&ts, self.kind, ctype_ts.as_ref()),
        };
        let target = df.hash_dir.join(filename);
        let tmp = self.tmp()?;
        let tmp_path = tmp.path().to_path_buf();
        let stored = xattrs::write_raw(tmp.as_file(), &tmp_path, &metadata.to_pickle())?;
        observe(PutStage::BeforeFsync);
        rustix::fs::fsync(tmp.as_file()).map_err(|e| DiskFileError::io(&tmp_path, e.into()))?;
        let spill_tmp = match &stored {
            Stored::Spill(bytes) => Some(xattrs::write_spill_tmp(&df.tmp_dir(), bytes)?),
            Stored::Xattrs => None,
        };
        hashes::invalidate_hash(&df.partition_dir(), layout::suffix_of(&df.hash))?;
        if let Some(spill) = spill_tmp {
            let spill = spill.into_temp_path();
            renamer(&spill, &spill_path(&target))?;
            let _ = spill.keep();
        }
        let Some(tmp) = self.tmp.take() else {
            return Err(DiskFileError::InvalidMetadata(
                "writer already finished".into(),
            ));
        };
        observe(PutStage::BeforeRename);
        let tmp = tmp.into_temp_path();
        let made_dirs = match renamer(&tmp, &target) {
            Ok(made) => made,
            Err(e) => {
                if matches!(stored, Stored::Spill(_)) {
                    remove_file(&spill_path(&target));
                }
                return Err(e);
            }
        };
        let _ = tmp.keep();
        if matches!(stored, Stored::Xattrs) && made_dirs == 0 {
            // A same-timestamp rewrite must not leave an old spill behind
            // (a directory just made holds none).
            remove_file(&spill_path(&target));
        }
        if frag_index.is_none() {
            // A fragment's cleanup waits for its commit.
            let _ = df.cleanup();
        }
        Ok(PutDone {
            path: target,
            timestamp: ts,
            frag_index,
        })
    }
}

/// What a finished put wrote.
pub(crate) struct PutDone {
    pub(crate) path: PathBuf,
    pub(crate) timestamp: Timestamp,
    pub(crate) frag_index: Option<u32>,
}

/// The fragment index of an EC PUT: the metadata's (canonical) or the
/// disk file's, validated against the policy and stored in the metadata.
fn ec_frag_index(ec: &EcState, metadata: &mut Metadata) -> Result<u32> {
    let text = match metadata.get(EC_FRAG_INDEX_KEY) {
        Some(t) => t.to_string(),
        None => match ec.select.frag_index {
            Some(i) => i.to_string(),
            None => {
                return Err(DiskFileError::InvalidMetadata(
                    "no fragment index for an erasure-coded data file".into(),
                ))
            }
        },
    };
    let index = validate_fragment_index(&text, Some(&ec.policy))
        .ok_or_else(|| DiskFileError::InvalidMetadata(format!("bad fragment index {text:?}")))?;
    metadata.insert(EC_FRAG_INDEX_KEY, index.to_string());
    Ok(index)
}

/// The metadata key holding an EC fragment archive's index.
pub const EC_FRAG_INDEX_KEY: &str = "X-Object-Sysmeta-Ec-Frag-Index";

/// The data file's metadata key holding the CRC-32 (IEEE, as 8 lowercase
/// hex digits) of the bytes the writer stored, apus's own addition to
/// Swift's keys. A whole-object read checks it instead of the MD5: it
/// catches the same bit rot and torn files at about ten times MD5's speed,
/// which is what lets one GET stream run faster than one core can hash
/// MD5. The auditor still checks the MD5 against the ETag as well. Swift
/// ignores the key (it is neither user metadata nor sysmeta, so it is
/// never sent to a client), and files without it (written by Swift, or by
/// older apus) are checked by MD5 as before.
pub const DATA_CRC32_KEY: &str = "X-Apus-Data-Crc32";

impl DiskFileWriter {
    pub(crate) fn disk_file(&self) -> &DiskFile {
        &self.df
    }
}

impl Write for DiskFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        DiskFileWriter::write(self, buf).map_err(|e| match e {
            DiskFileError::Io { source, .. } => source,
            other => io::Error::other(other),
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An opened object: its metadata and the data file, ready to be read.
#[derive(Debug)]
pub struct OpenDiskFile {
    df: DiskFile,
    file: File,
    data_path: PathBuf,
    metadata: Metadata,
    datafile_metadata: Metadata,
    metafile_metadata: Option<Metadata>,
    data_timestamp: Timestamp,
    content_length: u64,
}

impl OpenDiskFile {
    /// The merged metadata the object server answers with.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The metadata stored with the data file (the PUT's).
    pub fn datafile_metadata(&self) -> &Metadata {
        &self.datafile_metadata
    }

    /// The newest `.meta`'s metadata (the last POST's), without `name`.
    pub fn metafile_metadata(&self) -> Option<&Metadata> {
        self.metafile_metadata.as_ref()
    }

    /// The newest of the data and `.meta` timestamps.
    pub fn timestamp(&self) -> Timestamp {
        self.metadata.timestamp().unwrap_or(self.data_timestamp)
    }

    pub fn data_timestamp(&self) -> Timestamp {
        self.data_timestamp
    }

    pub fn content_type(&self) -> Option<&str> {
        self.metadata.content_type()
    }

    /// When the content-type was last set (the data file's timestamp unless
    /// a POST changed it).
    pub fn content_type_timestamp(&self) -> Timestamp {
        self.metadata
            .get("Content-Type-Timestamp")
            .and_then(|t| Timestamp::parse(t).ok())
            .unwrap_or(self.data_timestamp)
    }

    pub fn content_length(&self) -> u64 {
        self.content_length
    }

    pub fn etag(&self) -> Option<&str> {
        self.metadata.etag()
    }

    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// The body, as a stream that checks its integrity when read through:
    /// by the data file's CRC-32 when it has one, else by the MD5 against
    /// the ETag.
    pub fn reader(self) -> DiskFileReader {
        let crc = self.stored_crc32();
        let md5 = crc.is_none();
        self.reader_checking(md5, crc)
    }

    /// [`reader`](Self::reader) for the auditor: checks the MD5 against
    /// the ETag always, and the CRC-32 as well when there is one, so a
    /// stored checksum that disagrees with the ETag is caught too.
    pub fn auditing_reader(self) -> DiskFileReader {
        let crc = self.stored_crc32();
        self.reader_checking(true, crc)
    }

    /// The data file's [`DATA_CRC32_KEY`], when present and well formed.
    fn stored_crc32(&self) -> Option<u32> {
        let text = self.datafile_metadata.get(DATA_CRC32_KEY)?;
        (text.len() == 8)
            .then(|| u32::from_str_radix(text, 16).ok())
            .flatten()
    }

    fn reader_checking(self, md5: bool, crc: Option<u32>) -> DiskFileReader {
        let etag = match md5 {
            true => self.metadata.etag().map(|e| e.to_ascii_lowercase()),
            false => None,
        };
        let expect = Expected { md5, etag, crc };
        DiskFileReader {
            df: self.df,
            file: self.file,
            size: self.content_length,
            pos: 0,
            check: Some(Check::new(&expect)),
            expect,
            quarantined: None,
        }
    }
}

/// What a sequential read from offset 0 must come to.
#[derive(Debug)]
struct Expected {
    /// Whether to hash with MD5 (and compare with `etag` when there is one).
    md5: bool,
    etag: Option<String>,
    crc: Option<u32>,
}

/// The running checksums of a sequential read.
#[derive(Debug)]
struct Check {
    md5: Option<Md5>,
    crc: Option<crc32fast::Hasher>,
}

impl Check {
    fn new(expect: &Expected) -> Check {
        Check {
            md5: expect.md5.then(Md5::new),
            crc: expect.crc.map(|_| crc32fast::Hasher::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(md5) = &mut self.md5 {
            md5.update(bytes);
        }
        if let Some(crc) = &mut self.crc {
            crc.update(bytes);
        }
    }

    /// Why the bytes hashed do not match `expect`, if they do not.
    fn mismatch(self, expect: &Expected) -> Option<String> {
        if let (Some(crc), Some(want)) = (self.crc, expect.crc) {
            let got = crc.finalize();
            if got != want {
                return Some(format!(
                    "stored CRC-32 {want:08x} and file's {got:08x} do not match"
                ));
            }
        }
        if let (Some(md5), Some(etag)) = (self.md5, &expect.etag) {
            let got = apus_core::hash::to_hex(&md5.finalize());
            if *etag != got {
                return Some(format!("ETag {etag} and file's md5 {got} do not match"));
            }
        }
        None
    }
}

/// Streams an object's body. `Read + Seek` for ranges.
///
/// Read sequentially from offset 0, it hashes what it returns; the read
/// that reaches the end compares the checksum (see
/// [`OpenDiskFile::reader`]) with the stored one and, on a
/// mismatch (or a file that shrank or grew), quarantines the object and
/// returns an error *instead of* the final bytes, so a caller streaming the
/// body never completes a response with bad data. Any seek away from the
/// sequential position stops the check (seeking back to 0 restarts it).
#[derive(Debug)]
pub struct DiskFileReader {
    df: DiskFile,
    file: File,
    size: u64,
    pos: u64,
    check: Option<Check>,
    expect: Expected,
    quarantined: Option<PathBuf>,
}

impl DiskFileReader {
    pub fn content_length(&self) -> u64 {
        self.size
    }

    /// Where the object was quarantined to, if reading found it corrupt.
    pub fn quarantined(&self) -> Option<&Path> {
        self.quarantined.as_deref()
    }

    fn fail(&mut self, reason: String) -> io::Error {
        let err = self.df.quarantine(reason);
        if let DiskFileError::Quarantined { to, .. } = &err {
            self.quarantined = Some(to.clone());
        }
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

impl Read for DiskFileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(q) = &self.quarantined {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                DiskFileError::Quarantined {
                    reason: "object failed its integrity check".into(),
                    to: q.clone(),
                },
            ));
        }
        let n = match self.file.read(buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                return Err(self.fail(format!("read error: {e}")))
            }
            Err(e) => return Err(e),
        };
        self.pos += n as u64;
        if let Some(check) = &mut self.check {
            check.update(&buf[..n]);
            if self.pos >= self.size || n == 0 {
                let Some(check) = self.check.take() else {
                    return Ok(n);
                };
                if self.pos != self.size {
                    return Err(self.fail(format!(
                        "bytes read {} do not match metadata size {}",
                        self.pos, self.size
                    )));
                }
                if let Some(reason) = check.mismatch(&self.expect) {
                    return Err(self.fail(reason));
                }
            }
        }
        Ok(n)
    }
}

impl Seek for DiskFileReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = self.file.seek(pos)?;
        if new != self.pos || self.check.is_none() {
            self.check = (new == 0).then(|| Check::new(&self.expect));
        }
        self.pos = new;
        Ok(new)
    }
}
