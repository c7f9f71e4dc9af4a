//! Erasure-coded objects on disk: Swift's `ECDiskFile` and
//! `ECDiskFileWriter`.
//!
//! A node stores one fragment archive per object (a handoff may hold
//! several indexes for a while). Writing is two-phase, as in Swift: the
//! PUT writes `<ts>#<frag_index>.data`, not yet durable, and leaves older
//! files alone; once the proxy confirms that enough fragments were
//! written, [`EcPutFragment::commit`] renames it to
//! `<ts>#<frag_index>#d.data` (fsyncing the directory) and only then
//! cleans up. A reader opens the durable fragment (or the one a fragment
//! index or fragment preferences select, see [`FragSelect`]) and learns
//! the durable timestamp and every fragment present, which the object
//! server reports as `X-Backend-Durable-Timestamp` and
//! `X-Backend-Fragments`. The reconstructor and ssync remove fragments
//! they reverted with [`EcDiskFile::purge`].
//!
//! The fragment archive's bytes are opaque here; the codec lives
//! elsewhere.

use std::io;
use std::path::{Path, PathBuf};

use apus_core::Timestamp;

use crate::diskfile::{
    DiskFile, DiskFileManager, DiskFileWriter, EcState, OpenDiskFile, OpenOptions, PutStage,
    EC_FRAG_INDEX_KEY,
};
use crate::ec_ondisk::{
    cleanup_ondisk_files_ec, file_older, get_ondisk_files_ec, EcOnDiskFiles, FragPref, FragSelect,
};
use crate::error::{DiskFileError, IoContext, Result};
use crate::fsutil::{fsync_dir, list_names, remove_file};
use crate::hashes::{self, EcSuffixHashes};
use crate::layout::{self, make_ec_data_filename, make_filename, EcPolicy, FileKind};
use crate::metadata::Metadata;
use crate::xattrs::SPILL_SUFFIX;

impl DiskFileManager {
    /// The disk file of `/account/container/object` in an erasure-coded
    /// policy. `select` says which fragment opening it reads and, through
    /// its `frag_index`, which index a PUT writes when the metadata does
    /// not say (`X-Object-Sysmeta-Ec-Frag-Index` wins, as in Swift).
    #[allow(clippy::too_many_arguments)]
    pub fn ec_diskfile(
        &self,
        device: &str,
        partition: u32,
        account: &str,
        container: &str,
        obj: &str,
        policy: &EcPolicy,
        select: FragSelect,
    ) -> Result<EcDiskFile> {
        let df = self.diskfile(device, partition, account, container, obj, policy.index)?;
        EcDiskFile::wrap(df, policy, select)
    }

    /// The EC disk file in an existing hash directory (reconstructor,
    /// auditor, ssync).
    pub fn ec_diskfile_from_hash(
        &self,
        device: &str,
        partition: u32,
        hash: &str,
        policy: &EcPolicy,
        select: FragSelect,
    ) -> Result<EcDiskFile> {
        let df = self.diskfile_from_hash(device, partition, hash, policy.index)?;
        EcDiskFile::wrap(df, policy, select)
    }

    /// One fragment archive of an existing hash directory, named by its
    /// file (`<ts>#<frag_index>[#d].data`), durable or not: opening it
    /// reads exactly that archive (`NotFound` once it is gone or obsolete),
    /// and a quarantine it triggers moves only that file while another
    /// archive of the same timestamp stays in the directory and none older
    /// does (so no older version shows through); otherwise the whole
    /// directory goes, as usual. What the auditor uses to check each
    /// archive a handoff holds.
    pub fn ec_archive_from_hash(
        &self,
        device: &str,
        partition: u32,
        hash: &str,
        policy: &EcPolicy,
        archive: &str,
    ) -> Result<EcDiskFile> {
        let info = layout::parse_ec_filename(archive, Some(policy))
            .filter(|i| i.ext == ".data")
            .ok_or_else(|| {
                DiskFileError::InvalidMetadata(format!("not a fragment archive name: {archive}"))
            })?;
        let index = info.frag_index.unwrap_or_default();
        // Preferences naming the archive's timestamp and excluding every
        // other index select exactly it, durable or not.
        let select = FragSelect::prefs(vec![FragPref {
            timestamp: info.timestamp,
            exclude: (0..policy.width()).filter(|&i| i != index).collect(),
        }]);
        let mut edf = self.ec_diskfile_from_hash(device, partition, hash, policy, select)?;
        if let Some(ec) = edf.df.ec.as_mut() {
            ec.archive = Some(archive.to_string());
        }
        Ok(edf)
    }

    /// Suffix hashes of an EC partition (see [`hashes::get_hashes_ec`]).
    pub fn get_hashes_ec(
        &self,
        device: &str,
        partition: u32,
        policy: &EcPolicy,
        recalculate: &[&str],
    ) -> Result<EcSuffixHashes> {
        let part = self.partition_path(device, partition, policy.index)?;
        let conf = self.config();
        hashes::get_hashes_ec(
            &part,
            recalculate,
            conf.reclaim_age,
            conf.commit_window,
            policy,
        )
    }

    /// Every object hash in an EC partition's suffixes (all when
    /// `suffixes` is `None`), after cleaning each hash dir with `select`,
    /// with what ssync compares (Swift's `yield_hashes` for EC); hash dirs
    /// holding neither a chosen fragment nor a tombstone are skipped, and
    /// suffixes found empty are invalidated.
    pub fn yield_hashes_ec(
        &self,
        device: &str,
        partition: u32,
        policy: &EcPolicy,
        suffixes: Option<&[&str]>,
        select: &FragSelect,
    ) -> Result<Vec<(String, EcHashTimestamps)>> {
        let part = self.partition_path(device, partition, policy.index)?;
        let conf = self.config();
        let suffixes: Vec<String> = match suffixes {
            Some(s) => s.iter().map(|s| s.to_string()).collect(),
            None => {
                let mut v: Vec<String> = list_names(&part)
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
            let mut hashes = list_names(&sdir).unwrap_or_default().unwrap_or_default();
            hashes.sort();
            let mut found = false;
            for hash in hashes {
                let Ok(cleaned) = cleanup_ondisk_files_ec(
                    &sdir.join(&hash),
                    Some(policy),
                    select,
                    conf.reclaim_age,
                    conf.commit_window,
                ) else {
                    continue;
                };
                found |= !cleaned.remaining.is_empty();
                let f = &cleaned.files;
                let (ts_data, durable) = match (&f.data, &f.ts) {
                    (Some(d), _) => (d.timestamp, d.durable),
                    (None, Some(t)) => (t.timestamp, true),
                    (None, None) => continue,
                };
                out.push((
                    hash,
                    EcHashTimestamps {
                        ts_data,
                        ts_meta: f.meta.as_ref().map(|i| i.timestamp),
                        ts_ctype: f.ctype.as_ref().and_then(|i| i.ctype_timestamp),
                        durable,
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

/// What ssync compares for one EC object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcHashTimestamps {
    /// The chosen fragment's or the tombstone's timestamp.
    pub ts_data: Timestamp,
    pub ts_meta: Option<Timestamp>,
    pub ts_ctype: Option<Timestamp>,
    /// Whether the chosen fragment is durable. Swift reports no durable
    /// flag for a tombstone, which its ssync reads as durable: true here.
    pub durable: bool,
}

/// One object's location on one device, in an erasure-coded policy.
#[derive(Clone, Debug)]
pub struct EcDiskFile {
    df: DiskFile,
}

impl EcDiskFile {
    fn wrap(mut df: DiskFile, policy: &EcPolicy, select: FragSelect) -> Result<EcDiskFile> {
        // Swift's ECDiskFile checks the index against the policy; the
        // preferences' exclusions only need to be whole numbers.
        if select.frag_index.is_some_and(|i| i >= policy.width()) {
            return Err(DiskFileError::InvalidMetadata(format!(
                "fragment index must be less than {} for a {}+{} policy",
                policy.width(),
                policy.ec_ndata,
                policy.ec_nparity
            )));
        }
        df.ec = Some(EcState {
            policy: *policy,
            select,
            archive: None,
        });
        Ok(EcDiskFile { df })
    }

    fn state(&self) -> Result<&EcState> {
        self.df
            .ec
            .as_ref()
            .ok_or_else(|| DiskFileError::InvalidMetadata("not an erasure-coded disk file".into()))
    }

    /// The underlying disk file (paths, name, policy index).
    pub fn as_diskfile(&self) -> &DiskFile {
        &self.df
    }

    pub fn hash_dir(&self) -> &Path {
        self.df.hash_dir()
    }

    pub fn hash(&self) -> &str {
        self.df.hash()
    }

    /// The fragment index this disk file was opened for, if any.
    pub fn frag_index(&self) -> Option<u32> {
        self.df.ec.as_ref().and_then(|e| e.select.frag_index)
    }

    /// The classification of the hash directory's current files by the EC
    /// rules and this disk file's fragment selection: what the object
    /// server reports (durable timestamp, fragments) even when opening
    /// fails with `NotFound`.
    pub fn ondisk_files(&self) -> Result<EcOnDiskFiles> {
        let ec = self.state()?;
        let names = self.df.list_hash_dir()?;
        Ok(get_ondisk_files_ec(&names, Some(&ec.policy), &ec.select))
    }

    /// Opens the selected fragment archive with any newer `.meta` applied
    /// (errors as [`DiskFile::open`]: `NotFound` when no durable fragment
    /// qualifies and no preferences were given, `Deleted`, `Expired`...).
    pub fn open(&self, opts: OpenOptions) -> Result<EcOpenDiskFile> {
        let files = self.ondisk_files()?;
        if let Some(archive) = self.df.ec.as_ref().and_then(|e| e.archive.as_ref()) {
            if files.data.as_ref().map(|d| &d.filename) != Some(archive) {
                return Err(DiskFileError::NotFound);
            }
        }
        let inner = self.df.open_files(&files.base(), opts)?;
        let data = files.data.as_ref();
        Ok(EcOpenDiskFile {
            frag_index: data.and_then(|d| d.frag_index).unwrap_or_default(),
            durable: data.is_some_and(|d| d.durable),
            durable_timestamp: files.durable_timestamp(),
            fragments: files.fragments(),
            inner,
        })
    }

    /// Moves the object aside for `reason` (the whole hash directory, or
    /// only the archive when opened with
    /// [`DiskFileManager::ec_archive_from_hash`] and its siblings may
    /// stay) and returns the `Quarantined` error saying where it went: for
    /// checks made above this layer, such as the fragment headers.
    pub fn quarantine(&self, reason: impl Into<String>) -> DiskFileError {
        self.df.quarantine(reason)
    }

    /// Starts writing a fragment archive (`put` writes it non-durable).
    pub fn create(&self, size: Option<u64>) -> Result<EcDiskFileWriter> {
        self.state()?;
        Ok(EcDiskFileWriter {
            inner: self.df.create(size)?,
        })
    }

    /// POST: writes `<X-Timestamp>.meta` (see [`DiskFile::write_metadata`]).
    pub fn write_metadata(&self, metadata: Metadata) -> Result<PathBuf> {
        self.df.write_metadata(metadata)
    }

    /// DELETE: writes the tombstone and cleans up by the EC rules.
    pub fn delete(&self, timestamp: Timestamp) -> Result<PathBuf> {
        self.df.delete(timestamp)
    }

    /// Removes obsolete files now, by the EC rules.
    pub fn cleanup(&self) -> Result<()> {
        self.df.cleanup()
    }

    /// Makes the fragment `<timestamp>#<frag_index>.data` durable: renames
    /// it to `<timestamp>#<frag_index>#d.data`, fsyncs the directory, then
    /// cleans up (Swift's `ECDiskFileWriter.commit`). When the file is gone
    /// because a newer tombstone or durable fragment made it obsolete, the
    /// commit counts as done. Returns the durable file's path.
    pub fn commit(&self, timestamp: Timestamp, frag_index: u32) -> Result<PathBuf> {
        let ec = self.state()?;
        let dir = self.df.hash_dir();
        let from = dir.join(make_ec_data_filename(&timestamp, frag_index, false));
        let to = dir.join(make_ec_data_filename(&timestamp, frag_index, true));
        // A spill file moves with its owner: linked under the new name
        // first, so the owner always finds it, the old name unlinked after.
        let from_spill = spill_of(&from);
        let to_spill = spill_of(&to);
        let has_spill = from_spill.exists();
        if has_spill {
            remove_file(&to_spill);
            std::fs::hard_link(&from_spill, &to_spill).at(&to_spill)?;
        }
        if let Err(e) = std::fs::rename(&from, &to) {
            if has_spill {
                remove_file(&to_spill);
            }
            if e.kind() == io::ErrorKind::NotFound {
                let mut select = ec.select.clone();
                select.frag_index = Some(frag_index);
                let names = self.df.list_hash_dir()?;
                let files = get_ondisk_files_ec(&names, Some(&ec.policy), &select);
                let superseded = files.ts.as_ref().is_some_and(|t| t.timestamp > timestamp)
                    || files.durable_frag_set.is_some_and(|t| t >= timestamp);
                if superseded {
                    return Ok(to);
                }
            }
            return Err(DiskFileError::io(&from, e));
        }
        fsync_dir(dir)?;
        if has_spill {
            remove_file(&from_spill);
        }
        // Swift relies on the PUT's invalidation; the hash changes with
        // durability, so invalidating again keeps a rehash between PUT and
        // commit from going stale.
        hashes::invalidate_hash(
            &self.df.partition_dir_path(),
            layout::suffix_of(self.hash()),
        )?;
        let _ = self.df.cleanup();
        Ok(to)
    }

    /// Removes the tombstone at `timestamp`, the `.meta` at
    /// `meta_timestamp`, and the fragment `frag_index` at `timestamp`,
    /// durable or not (the non-durable one only when its file is older
    /// than `nondurable_purge_delay` seconds), then the hash directory if
    /// it is empty, and invalidates the suffix: Swift's `ECDiskFile.purge`,
    /// how the reconstructor and ssync drop what they reverted.
    pub fn purge(
        &self,
        timestamp: Timestamp,
        frag_index: Option<u32>,
        nondurable_purge_delay: f64,
        meta_timestamp: Option<Timestamp>,
    ) -> Result<()> {
        let dir = self.df.hash_dir();
        let remove = |name: String| {
            let path = dir.join(name);
            remove_file(&spill_of(&path));
            remove_file(&path);
        };
        remove(make_filename(&timestamp, FileKind::Tombstone, None));
        if let Some(mt) = meta_timestamp {
            remove(make_filename(&mt, FileKind::Meta, None));
        }
        if let Some(fi) = frag_index {
            let nondurable = dir.join(make_ec_data_filename(&timestamp, fi, false));
            if file_older(&nondurable, nondurable_purge_delay) {
                remove(make_ec_data_filename(&timestamp, fi, false));
            }
            remove(make_ec_data_filename(&timestamp, fi, true));
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ENOTEMPTY)
                        || e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(DiskFileError::io(dir, e)),
            }
        }
        hashes::invalidate_hash(
            &self.df.partition_dir_path(),
            layout::suffix_of(self.hash()),
        )
    }
}

/// Whether the hash directory holds, besides the fragment archive `name`,
/// another archive of the same timestamp and none of an older one: then
/// quarantining `name` alone leaves a consistent object behind. False
/// when the directory cannot be listed.
pub(crate) fn archive_has_siblings(hash_dir: &Path, name: &str) -> bool {
    let Some(mine) = layout::parse_ec_filename(name, None) else {
        return false;
    };
    let Ok(Some(names)) = list_names(hash_dir) else {
        return false;
    };
    let mut sibling = false;
    for other in names.iter().filter(|n| n.as_str() != name) {
        let Some(info) = layout::parse_ec_filename(other, None).filter(|i| i.ext == ".data") else {
            continue;
        };
        if info.timestamp < mine.timestamp {
            return false;
        }
        sibling |= info.timestamp == mine.timestamp;
    }
    sibling
}

fn spill_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(SPILL_SUFFIX);
    PathBuf::from(s)
}

/// An opened fragment archive.
#[derive(Debug)]
pub struct EcOpenDiskFile {
    inner: OpenDiskFile,
    frag_index: u32,
    durable: bool,
    durable_timestamp: Option<Timestamp>,
    fragments: Vec<(Timestamp, Vec<u32>)>,
}

impl EcOpenDiskFile {
    /// The opened archive: metadata, reader (the body is the fragment
    /// archive's bytes).
    pub fn inner(&self) -> &OpenDiskFile {
        &self.inner
    }

    pub fn into_inner(self) -> OpenDiskFile {
        self.inner
    }

    /// The index of the fragment archive opened (from its file name).
    pub fn frag_index(&self) -> u32 {
        self.frag_index
    }

    /// Whether the opened archive is durable.
    pub fn durable(&self) -> bool {
        self.durable
    }

    /// The newest durable timestamp (`X-Backend-Durable-Timestamp`).
    pub fn durable_timestamp(&self) -> Option<Timestamp> {
        self.durable_timestamp
    }

    /// Every fragment found, per timestamp, newest first
    /// (`X-Backend-Fragments`).
    pub fn fragments(&self) -> &[(Timestamp, Vec<u32>)] {
        &self.fragments
    }

    /// Swift's `ECDiskFile.validate_metadata`: the data file's metadata has
    /// a non-empty `Content-Length`, fragment index and EC ETag.
    pub fn validate_metadata(&self) -> bool {
        let md = self.inner.datafile_metadata();
        [
            "Content-Length",
            EC_FRAG_INDEX_KEY,
            "X-Object-Sysmeta-Ec-Etag",
        ]
        .iter()
        .all(|k| md.get_bytes(k).is_some_and(|v| !v.is_empty()))
    }
}

/// Writes a fragment archive: stream the bytes with [`write`](Self::write),
/// then [`put`](Self::put) publishes it non-durable. Dropping the writer
/// before `put` leaves nothing behind.
#[derive(Debug)]
pub struct EcDiskFileWriter {
    inner: DiskFileWriter,
}

impl EcDiskFileWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.inner.write(chunk)
    }

    pub fn bytes_written(&self) -> u64 {
        self.inner.bytes_written()
    }

    /// MD5 hex of the archive's bytes so far.
    pub fn etag(&self) -> String {
        // An EC writer always hashes: it never turns MD5 off.
        self.inner.etag().unwrap_or_default()
    }

    /// Publishes `<X-Timestamp>#<frag_index>.data`, not yet durable, with
    /// `metadata` (the fragment index taken from, or added to, its
    /// `X-Object-Sysmeta-Ec-Frag-Index`). Older files stay until the
    /// commit.
    pub fn put(self, metadata: Metadata) -> Result<EcPutFragment> {
        self.put_observed(metadata, |_| {})
    }

    /// [`put`](Self::put) with the failpoint hook of
    /// [`DiskFileWriter::put_observed`].
    pub fn put_observed(
        self,
        metadata: Metadata,
        observe: impl FnMut(PutStage),
    ) -> Result<EcPutFragment> {
        let df = EcDiskFile {
            df: self.inner.disk_file().clone(),
        };
        let done = self.inner.put_inner(metadata, observe)?;
        let Some(frag_index) = done.frag_index else {
            return Err(DiskFileError::InvalidMetadata(
                "fragment archive written without an index".into(),
            ));
        };
        Ok(EcPutFragment {
            df,
            path: done.path,
            timestamp: done.timestamp,
            frag_index,
        })
    }
}

impl io::Write for EcDiskFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut self.inner, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A fragment archive written, awaiting its commit.
#[derive(Debug)]
pub struct EcPutFragment {
    df: EcDiskFile,
    path: PathBuf,
    timestamp: Timestamp,
    frag_index: u32,
}

impl EcPutFragment {
    /// The non-durable file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    pub fn frag_index(&self) -> u32 {
        self.frag_index
    }

    /// Makes the fragment durable (see [`EcDiskFile::commit`]).
    pub fn commit(self) -> Result<PathBuf> {
        self.df.commit(self.timestamp, self.frag_index)
    }
}
