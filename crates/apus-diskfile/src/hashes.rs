//! Suffix hashes for replication, as Swift computes and caches them.
//!
//! Every write or delete appends the object's suffix to the partition's
//! `hashes.invalid`. [`get_hashes`] folds those invalidations into the
//! cached `hashes.pkl` (a pickled dict `{suffix: md5 hex or None, 'valid':
//! bool, 'updated': float}`), rehashes the invalidated (or explicitly
//! requested) suffixes and writes the cache back, all under the partition's
//! `.lock` exactly as Swift does, so apus and Swift nodes compute and share
//! the same values.
//!
//! A suffix's hash is the MD5 over its hash directories in sorted order of,
//! per directory (after cleaning it): the chosen `.meta`'s
//! `<timestamp>.meta`, the tombstone's `<timestamp>.ts`, the data file's
//! `<timestamp>.data`, and `<content-type timestamp>_ctype` when a `.meta`
//! carries a newer content-type.
//!
//! For an erasure-coded policy a suffix's hash is a dict: one MD5 per
//! fragment index over `<timestamp>` of each fragment archive with that
//! index, and one under the key `None` over the `.meta`, tombstone,
//! `<durable timestamp>.durable` (however durability is marked on disk)
//! and content-type entries. `hashes.pkl` then maps each suffix to such a
//! dict (`{None: md5, 0: md5, ...}`), as Swift's `ECDiskFileManager`
//! writes it; see [`get_hashes_ec`].

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::ec_ondisk::{cleanup_ondisk_files_ec, FragSelect};
use crate::error::{DiskFileError, IoContext, Result};
use crate::fsutil::{list_names, lock_dir, now_secs, random_hex, renamer};
use crate::layout::EcPolicy;
use crate::layout::{data_dir, valid_suffix};
use crate::ondisk::cleanup_ondisk_files;
use crate::pickle::{self, Value};

pub const HASH_FILE: &str = "hashes.pkl";
pub const HASH_INVALIDATIONS_FILE: &str = "hashes.invalid";

/// Suffix → MD5 hex of its contents (`None` when hashing it failed).
pub type SuffixHashes = BTreeMap<String, Option<String>>;

/// An erasure-coded suffix's hashes: fragment index (`None` for the
/// entries common to all fragments) → MD5 hex.
pub type EcSuffixHash = BTreeMap<Option<u32>, String>;

/// Suffix → its per-fragment-index hashes (`None` when not hashed yet).
pub type EcSuffixHashes = BTreeMap<String, Option<EcSuffixHash>>;

/// A suffix's value in `hashes.pkl`: an MD5 hex string (replicated
/// policies) or a dict of them (erasure-coded policies).
pub trait SuffixHashValue: Clone + PartialEq + Sized {
    /// Decodes a stored value; `None` for `None` and anything malformed.
    fn from_pickle(value: Value) -> Option<Self>;
    fn to_pickle(&self) -> Value;
    /// Swift rehashes a suffix whose stored value is false in Python
    /// terms (an empty string or dict) as if it were `None`.
    fn is_falsy(&self) -> bool;
}

impl SuffixHashValue for String {
    fn from_pickle(value: Value) -> Option<Self> {
        value.as_str().map(str::to_string).filter(|h| !h.is_empty())
    }

    fn to_pickle(&self) -> Value {
        Value::Str(self.clone())
    }

    fn is_falsy(&self) -> bool {
        self.is_empty()
    }
}

impl SuffixHashValue for EcSuffixHash {
    fn from_pickle(value: Value) -> Option<Self> {
        let Value::Dict(items) = value else {
            return None;
        };
        let mut out = EcSuffixHash::new();
        for (k, v) in items {
            let key = match k {
                Value::None => None,
                Value::Int(i) => Some(u32::try_from(i).ok()?),
                _ => return None,
            };
            out.insert(key, v.as_str()?.to_string());
        }
        Some(out)
    }

    fn is_falsy(&self) -> bool {
        self.is_empty()
    }

    fn to_pickle(&self) -> Value {
        Value::Dict(
            self.iter()
                .map(|(k, v)| {
                    let key = match k {
                        None => Value::None,
                        Some(i) => Value::Int(i64::from(*i)),
                    };
                    (key, Value::Str(v.clone()))
                })
                .collect(),
        )
    }
}

/// The content of `hashes.pkl`: whether it is valid, when it was written
/// (seconds since the epoch) and the suffix hashes.
#[derive(Clone, Debug, PartialEq)]
pub struct HashesFileOf<V> {
    pub valid: bool,
    pub updated: f64,
    pub suffixes: BTreeMap<String, Option<V>>,
}

/// `hashes.pkl` of a replicated policy.
pub type HashesFile = HashesFileOf<String>;

/// `hashes.pkl` of an erasure-coded policy.
pub type EcHashesFile = HashesFileOf<EcSuffixHash>;

impl<V: SuffixHashValue> HashesFileOf<V> {
    /// What a missing or unreadable `hashes.pkl` stands for: every suffix
    /// is rehashed.
    pub fn invalid() -> Self {
        HashesFileOf {
            valid: false,
            updated: -1.0,
            suffixes: BTreeMap::new(),
        }
    }

    /// Decodes `hashes.pkl` as Swift reads it; anything that is not such a
    /// pickle (not a dict, a key that is neither a suffix nor `valid` or
    /// `updated`) reads as [`HashesFileOf::invalid`].
    pub fn from_pickle(data: &[u8]) -> Self {
        let Ok(Value::Dict(items)) = pickle::loads(data) else {
            return Self::invalid();
        };
        let mut out = HashesFileOf {
            valid: true,
            updated: -1.0,
            suffixes: BTreeMap::new(),
        };
        for (k, v) in items {
            let Some(key) = k.as_str() else {
                return Self::invalid();
            };
            match key {
                "valid" => {
                    out.valid = match v {
                        Value::Bool(b) => b,
                        Value::Int(i) => i != 0,
                        _ => false,
                    }
                }
                "updated" => {
                    // A NaN would never equal itself, and get_hashes
                    // writes only after re-reading an equal file.
                    out.updated = match v {
                        Value::Float(f) if !f.is_nan() => f,
                        Value::Int(i) => i as f64,
                        _ => -1.0,
                    }
                }
                s if valid_suffix(s) => {
                    out.suffixes.insert(s.to_string(), V::from_pickle(v));
                }
                _ => return Self::invalid(),
            }
        }
        out
    }

    /// The pickle Swift writes: the suffixes, then `valid` and `updated`.
    pub fn to_pickle(&self) -> Vec<u8> {
        let mut items = Vec::with_capacity(self.suffixes.len() + 2);
        for (suffix, hash) in &self.suffixes {
            let v = match hash {
                Some(h) => h.to_pickle(),
                None => Value::None,
            };
            items.push((Value::Str(suffix.clone()), v));
        }
        items.push((Value::Str("valid".into()), Value::Bool(self.valid)));
        items.push((Value::Str("updated".into()), Value::Float(self.updated)));
        pickle::dumps(&Value::Dict(items))
    }
}

/// Reads a partition's `hashes.pkl` (invalid when missing or unreadable).
pub fn read_hashes<V: SuffixHashValue>(partition_dir: &Path) -> HashesFileOf<V> {
    let mut data = Vec::new();
    let ok = fs::File::open(partition_dir.join(HASH_FILE))
        .and_then(|mut f| f.read_to_end(&mut data))
        .is_ok();
    if !ok {
        return HashesFileOf::invalid();
    }
    HashesFileOf::from_pickle(&data)
}

fn write_hashes<V: SuffixHashValue>(
    partition_dir: &Path,
    hashes: &mut HashesFileOf<V>,
) -> Result<()> {
    hashes.updated = now_secs();
    write_pickle_file(
        &hashes.to_pickle(),
        &partition_dir.join(HASH_FILE),
        partition_dir,
    )
}

/// Writes `data` durably at `dest` through a fsynced temp file in `tmp_dir`.
pub(crate) fn write_pickle_file(data: &[u8], dest: &Path, tmp_dir: &Path) -> Result<()> {
    crate::fsutil::ensure_dir(tmp_dir).at(tmp_dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("tmp")
        .suffix(".tmp")
        .tempfile_in(tmp_dir)
        .at(tmp_dir)?;
    tmp.write_all(data).at(tmp.path())?;
    rustix::fs::fsync(tmp.as_file()).map_err(|e| DiskFileError::io(tmp.path(), e.into()))?;
    let tmp_path = tmp.into_temp_path();
    renamer(&tmp_path, dest)?;
    // Renamed away: nothing left for the guard to delete.
    let _ = tmp_path.keep();
    Ok(())
}

/// Records that `suffix` of the partition changed (Swift's `invalidate_hash`).
pub fn invalidate_hash(partition_dir: &Path, suffix: &str) -> Result<()> {
    let _lock = lock_dir(partition_dir)?;
    let path = partition_dir.join(HASH_INVALIDATIONS_FILE);
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .at(&path)?;
    f.write_all(format!("{suffix}\n").as_bytes()).at(&path)
}

fn consolidate_hashes<V: SuffixHashValue>(partition_dir: &Path) -> Result<HashesFileOf<V>> {
    let _lock = lock_dir(partition_dir)?;
    let mut hashes = read_hashes(partition_dir);
    let inv_path = partition_dir.join(HASH_INVALIDATIONS_FILE);
    let mut text = String::new();
    let found = match fs::File::open(&inv_path) {
        Ok(mut f) => {
            f.read_to_string(&mut text).at(&inv_path)?;
            !text.is_empty()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(DiskFileError::io(&inv_path, e)),
    };
    let mut updated = false;
    for line in text.lines() {
        let suffix = line.trim();
        if valid_suffix(suffix) {
            hashes.suffixes.insert(suffix.to_string(), None);
            updated = true;
        }
    }
    if updated {
        write_hashes(partition_dir, &mut hashes)?;
    }
    if found {
        fs::File::create(&inv_path).at(&inv_path)?;
    }
    Ok(hashes)
}

/// Runs `per_dir` on each hash directory of a suffix in sorted order
/// (quarantining those that turn out not to be listable directories), then
/// removes the suffix directory if it is empty. Returns whether it is
/// still there (a missing suffix directory counts as removed).
fn walk_suffix(
    suffix_dir: &Path,
    policy: u32,
    mut per_dir: impl FnMut(&Path) -> io::Result<()>,
) -> Result<bool> {
    let mut names = match fs::read_dir(suffix_dir) {
        Ok(rd) => {
            let mut v = Vec::new();
            for e in rd {
                let e = e.at(suffix_dir)?;
                if let Ok(n) = e.file_name().into_string() {
                    v.push(n);
                }
            }
            v
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(false)
        }
        Err(e) => return Err(DiskFileError::io(suffix_dir, e)),
    };
    names.sort();
    for name in names {
        let hash_dir = suffix_dir.join(&name);
        match per_dir(&hash_dir) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOTDIR) | Some(libc::ENODATA) | Some(libc::EUCLEAN)
                ) =>
            {
                if let Some(device) = suffix_dir
                    .parent()
                    .and_then(Path::parent)
                    .and_then(Path::parent)
                {
                    let _ = quarantine_dir(device, &hash_dir, policy);
                }
            }
            Err(e) => return Err(DiskFileError::io(&hash_dir, e)),
        }
    }
    match fs::remove_dir(suffix_dir) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(_) => Ok(true),
    }
}

fn update(md5: &mut Md5, parts: &[&str]) {
    for p in parts {
        md5.update(p.as_bytes());
    }
}

/// Hashes one suffix directory, cleaning its hash dirs on the way.
/// `Ok(None)` when the suffix directory does not exist or ends up empty
/// (it is then removed).
pub fn hash_suffix(suffix_dir: &Path, reclaim_age: f64, policy: u32) -> Result<Option<String>> {
    let mut md5 = Md5::new();
    let exists = walk_suffix(suffix_dir, policy, |hash_dir| {
        let cleaned = cleanup_ondisk_files(hash_dir, reclaim_age)?;
        if cleaned.remaining.is_empty() {
            return Ok(());
        }
        let f = &cleaned.files;
        for info in [&f.meta, &f.ts, &f.data].into_iter().flatten() {
            update(&mut md5, &[&info.timestamp.internal(), &info.ext]);
        }
        if let Some(ct) = f.ctype.as_ref().and_then(|c| c.ctype_timestamp) {
            update(&mut md5, &[&ct.internal(), "_ctype"]);
        }
        Ok(())
    })?;
    Ok(exists.then(|| apus_core::hash::to_hex(&md5.finalize())))
}

/// Hashes one suffix directory of an erasure-coded policy, cleaning its
/// hash dirs on the way (see [`cleanup_ondisk_files_ec`] for
/// `commit_window`): Swift's `ECDiskFileManager._hash_suffix`. `Ok(None)`
/// when the suffix directory does not exist or ends up empty.
pub fn hash_suffix_ec(
    suffix_dir: &Path,
    reclaim_age: f64,
    commit_window: f64,
    policy: &EcPolicy,
) -> Result<Option<EcSuffixHash>> {
    let mut hashers: BTreeMap<Option<u32>, Md5> = BTreeMap::new();
    let exists = walk_suffix(suffix_dir, policy.index, |hash_dir| {
        let cleaned = cleanup_ondisk_files_ec(
            hash_dir,
            Some(policy),
            &FragSelect::any(),
            reclaim_age,
            commit_window,
        )?;
        if cleaned.remaining.is_empty() {
            return Ok(());
        }
        let f = &cleaned.files;
        for info in [&f.meta, &f.ts].into_iter().flatten() {
            let md5 = hashers.entry(None).or_default();
            update(md5, &[&info.timestamp.internal(), &info.ext]);
        }
        for (t, set) in &f.frag_sets {
            for info in set {
                let md5 = hashers.entry(info.frag_index).or_default();
                update(md5, &[&t.internal()]);
            }
        }
        if let Some(t) = f.durable_frag_set {
            let md5 = hashers.entry(None).or_default();
            update(md5, &[&t.internal(), ".durable"]);
        }
        if let Some(ct) = f.ctype.as_ref().and_then(|c| c.ctype_timestamp) {
            let md5 = hashers.entry(None).or_default();
            update(md5, &[&ct.internal(), "_ctype"]);
        }
        Ok(())
    })?;
    Ok(exists.then(|| {
        hashers
            .into_iter()
            .map(|(k, md5)| (k, apus_core::hash::to_hex(&md5.finalize())))
            .collect()
    }))
}

/// Swift's `get_hashes` for one partition directory: returns every suffix's
/// hash, recomputing the invalidated ones and those in `recalculate`, and
/// keeps `hashes.pkl` up to date. A missing partition has no suffixes.
pub fn get_hashes(
    partition_dir: &Path,
    recalculate: &[&str],
    reclaim_age: f64,
    policy: u32,
) -> Result<SuffixHashes> {
    get_hashes_with(partition_dir, recalculate, |suffix_dir| {
        hash_suffix(suffix_dir, reclaim_age, policy)
    })
}

/// [`get_hashes`] for an erasure-coded policy: each suffix's hash is a
/// dict of per-fragment-index hashes (see [`hash_suffix_ec`]), and
/// `hashes.pkl` holds those dicts as Swift's EC policies write them.
pub fn get_hashes_ec(
    partition_dir: &Path,
    recalculate: &[&str],
    reclaim_age: f64,
    commit_window: f64,
    policy: &EcPolicy,
) -> Result<EcSuffixHashes> {
    get_hashes_with(partition_dir, recalculate, |suffix_dir| {
        hash_suffix_ec(suffix_dir, reclaim_age, commit_window, policy)
    })
}

fn get_hashes_with<V: SuffixHashValue>(
    partition_dir: &Path,
    recalculate: &[&str],
    hash_suffix: impl Fn(&Path) -> Result<Option<V>>,
) -> Result<BTreeMap<String, Option<V>>> {
    if !partition_dir.exists() {
        return Ok(BTreeMap::new());
    }
    let recalculate: Vec<&str> = recalculate
        .iter()
        .copied()
        .filter(|s| valid_suffix(s))
        .collect();
    let mut do_listdir = false;
    // Another process rewriting hashes.pkl meanwhile makes us start over;
    // bounded so a pathological race cannot spin forever.
    for _ in 0..100 {
        let mut orig: HashesFileOf<V> =
            consolidate_hashes(partition_dir).unwrap_or_else(|_| HashesFileOf::invalid());
        let mut hashes;
        if !orig.valid {
            do_listdir = true;
            hashes = HashesFileOf {
                valid: true,
                updated: -1.0,
                suffixes: BTreeMap::new(),
            };
            orig = read_hashes(partition_dir);
        } else {
            hashes = orig.clone();
        }
        let mut modified = false;
        if do_listdir {
            for name in list_names(partition_dir)
                .at(partition_dir)?
                .unwrap_or_default()
            {
                if name.len() == 3 {
                    hashes.suffixes.entry(name).or_insert(None);
                }
            }
            modified = true;
        }
        for s in &recalculate {
            hashes.suffixes.insert(s.to_string(), None);
        }
        let todo: Vec<String> = hashes
            .suffixes
            .iter()
            .filter(|(_, h)| !h.as_ref().is_some_and(|h| !h.is_falsy()))
            .map(|(s, _)| s.clone())
            .collect();
        for suffix in todo {
            modified = true;
            match hash_suffix(&partition_dir.join(&suffix)) {
                Ok(Some(h)) => {
                    hashes.suffixes.insert(suffix, Some(h));
                }
                Ok(None) => {
                    hashes.suffixes.remove(&suffix);
                }
                Err(_) => {}
            }
        }
        if !modified {
            return Ok(hashes.suffixes);
        }
        let _lock = lock_dir(partition_dir)?;
        if read_hashes::<V>(partition_dir) == orig {
            write_hashes(partition_dir, &mut hashes)?;
            return Ok(hashes.suffixes);
        }
    }
    Err(DiskFileError::LockTimeout {
        path: partition_dir.join(HASH_FILE),
    })
}

/// Moves a hash (or suffix) directory to `<device>/quarantined/objects[-N]/`
/// and invalidates its suffix; returns where it went.
pub fn quarantine_dir(device_path: &Path, from_dir: &Path, policy: u32) -> Result<PathBuf> {
    let base = from_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let qdir = device_path.join("quarantined").join(data_dir(policy));
    let (partition_dir, suffix) = if base.len() == 3 {
        (from_dir.parent(), base.clone())
    } else {
        (
            from_dir.parent().and_then(Path::parent),
            from_dir
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    };
    if let Some(partition_dir) = partition_dir {
        invalidate_hash(partition_dir, &suffix)?;
    }
    crate::fsutil::ensure_dir(&qdir).at(&qdir)?;
    let mut to = qdir.join(&base);
    if let Err(e) = fs::rename(from_dir, &to) {
        if !matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) {
            return Err(DiskFileError::io(from_dir, e));
        }
        to = qdir.join(format!("{base}-{}", random_hex()));
        fs::rename(from_dir, &to).at(from_dir)?;
    }
    Ok(to)
}

/// Moves one file of a hash directory (with its spill file, if any) into
/// `<device>/quarantined/objects[-N]/<hash>/`, next to whatever was
/// quarantined there before, and invalidates its suffix; returns where the
/// file went. Used when a hash directory also holds files worth keeping
/// (another fragment archive of the object); [`quarantine_dir`] otherwise.
pub fn quarantine_file(device_path: &Path, file: &Path, policy: u32) -> Result<PathBuf> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hash_dir = file.parent().unwrap_or(file);
    let hash = hash_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix_dir = hash_dir.parent();
    if let (Some(partition_dir), Some(suffix)) = (
        suffix_dir.and_then(Path::parent),
        suffix_dir.and_then(Path::file_name),
    ) {
        invalidate_hash(partition_dir, &suffix.to_string_lossy())?;
    }
    let qdir = device_path
        .join("quarantined")
        .join(data_dir(policy))
        .join(&hash);
    crate::fsutil::ensure_dir(&qdir).at(&qdir)?;
    let mut to = qdir.join(&name);
    if to.exists() {
        to = qdir.join(format!("{name}-{}", random_hex()));
    }
    fs::rename(file, &to).at(file)?;
    let mut spill = file.as_os_str().to_os_string();
    spill.push(crate::xattrs::SPILL_SUFFIX);
    let mut spill_to = to.as_os_str().to_os_string();
    spill_to.push(crate::xattrs::SPILL_SUFFIX);
    match fs::rename(&spill, &spill_to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(DiskFileError::io(Path::new(&spill), e)),
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_time_that_is_not_a_number_does_not_wedge_get_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path();
        let file = HashesFile {
            valid: true,
            updated: f64::NAN,
            suffixes: SuffixHashes::from([("abc".to_string(), Some("0".repeat(32)))]),
        };
        let decoded = HashesFile::from_pickle(&file.to_pickle());
        assert_eq!(decoded, decoded.clone());
        // Rehashing a suffix compares the file with what was read before
        // writing it back; NaN never compared equal, so it never was.
        fs::write(part.join(HASH_FILE), file.to_pickle()).unwrap();
        assert_eq!(
            get_hashes(part, &["abc"], 604_800.0, 0).unwrap(),
            SuffixHashes::new()
        );
    }
}
