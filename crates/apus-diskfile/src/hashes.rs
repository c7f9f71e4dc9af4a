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

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::error::{DiskFileError, IoContext, Result};
use crate::fsutil::{list_names, lock_dir, now_secs, random_hex, renamer};
use crate::layout::{data_dir, valid_suffix};
use crate::ondisk::cleanup_ondisk_files;
use crate::pickle::{self, Value};

pub const HASH_FILE: &str = "hashes.pkl";
pub const HASH_INVALIDATIONS_FILE: &str = "hashes.invalid";

/// Suffix → MD5 hex of its contents (`None` when hashing it failed).
pub type SuffixHashes = BTreeMap<String, Option<String>>;

/// The content of `hashes.pkl`: whether it is valid, when it was written
/// (seconds since the epoch) and the suffix hashes.
#[derive(Clone, Debug, PartialEq)]
pub struct HashesFile {
    pub valid: bool,
    pub updated: f64,
    pub suffixes: SuffixHashes,
}

impl HashesFile {
    /// What a missing or unreadable `hashes.pkl` stands for: every suffix
    /// is rehashed.
    pub fn invalid() -> Self {
        HashesFile {
            valid: false,
            updated: -1.0,
            suffixes: SuffixHashes::new(),
        }
    }

    /// Decodes `hashes.pkl` as Swift reads it; anything that is not such a
    /// pickle (not a dict, a key that is neither a suffix nor `valid` or
    /// `updated`) reads as [`HashesFile::invalid`].
    pub fn from_pickle(data: &[u8]) -> Self {
        let Ok(Value::Dict(items)) = pickle::loads(data) else {
            return HashesFile::invalid();
        };
        let mut out = HashesFile {
            valid: true,
            updated: -1.0,
            suffixes: SuffixHashes::new(),
        };
        for (k, v) in items {
            let Some(key) = k.as_str() else {
                return HashesFile::invalid();
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
                    let hash = v.as_str().map(str::to_string).filter(|h| !h.is_empty());
                    out.suffixes.insert(s.to_string(), hash);
                }
                _ => return HashesFile::invalid(),
            }
        }
        out
    }

    /// The pickle Swift writes: the suffixes, then `valid` and `updated`.
    pub fn to_pickle(&self) -> Vec<u8> {
        let mut items = Vec::with_capacity(self.suffixes.len() + 2);
        for (suffix, hash) in &self.suffixes {
            let v = match hash {
                Some(h) => Value::Str(h.clone()),
                None => Value::None,
            };
            items.push((Value::Str(suffix.clone()), v));
        }
        items.push((Value::Str("valid".into()), Value::Bool(self.valid)));
        items.push((Value::Str("updated".into()), Value::Float(self.updated)));
        pickle::dumps(&Value::Dict(items))
    }
}

fn read_hashes(partition_dir: &Path) -> HashesFile {
    let mut data = Vec::new();
    let ok = fs::File::open(partition_dir.join(HASH_FILE))
        .and_then(|mut f| f.read_to_end(&mut data))
        .is_ok();
    if !ok {
        return HashesFile::invalid();
    }
    HashesFile::from_pickle(&data)
}

fn write_hashes(partition_dir: &Path, hashes: &mut HashesFile) -> Result<()> {
    hashes.updated = now_secs();
    write_pickle_file(
        &hashes.to_pickle(),
        &partition_dir.join(HASH_FILE),
        partition_dir,
    )
}

/// Writes `data` durably at `dest` through a fsynced temp file in `tmp_dir`.
pub(crate) fn write_pickle_file(data: &[u8], dest: &Path, tmp_dir: &Path) -> Result<()> {
    crate::fsutil::makedirs_count(tmp_dir).at(tmp_dir)?;
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

fn consolidate_hashes(partition_dir: &Path) -> Result<HashesFile> {
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

/// Hashes one suffix directory, cleaning its hash dirs on the way.
/// `Ok(None)` when the suffix directory does not exist or ends up empty
/// (it is then removed).
pub fn hash_suffix(suffix_dir: &Path, reclaim_age: f64, policy: u32) -> Result<Option<String>> {
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
            return Ok(None)
        }
        Err(e) => return Err(DiskFileError::io(suffix_dir, e)),
    };
    names.sort();
    let mut md5 = Md5::new();
    for name in names {
        let hash_dir = suffix_dir.join(&name);
        let cleaned = match cleanup_ondisk_files(&hash_dir, reclaim_age) {
            Ok(c) => c,
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
                continue;
            }
            Err(e) => return Err(DiskFileError::io(&hash_dir, e)),
        };
        if cleaned.remaining.is_empty() {
            continue;
        }
        let f = &cleaned.files;
        for info in [&f.meta, &f.ts].into_iter().flatten() {
            md5.update(info.timestamp.internal().as_bytes());
            md5.update(info.ext.as_bytes());
        }
        if let Some(info) = &f.data {
            md5.update(info.timestamp.internal().as_bytes());
            md5.update(info.ext.as_bytes());
        }
        if let Some(ct) = f.ctype.as_ref().and_then(|c| c.ctype_timestamp) {
            md5.update(ct.internal().as_bytes());
            md5.update(b"_ctype");
        }
    }
    match fs::remove_dir(suffix_dir) {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(_) => Ok(Some(apus_core::hash::to_hex(&md5.finalize()))),
    }
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
    if !partition_dir.exists() {
        return Ok(SuffixHashes::new());
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
        let mut orig = consolidate_hashes(partition_dir).unwrap_or_else(|_| HashesFile::invalid());
        let mut hashes;
        if !orig.valid {
            do_listdir = true;
            hashes = HashesFile {
                valid: true,
                updated: -1.0,
                suffixes: SuffixHashes::new(),
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
            .filter(|(_, h)| h.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        for suffix in todo {
            modified = true;
            match hash_suffix(&partition_dir.join(&suffix), reclaim_age, policy) {
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
        if read_hashes(partition_dir) == orig {
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
    crate::fsutil::makedirs_count(&qdir).at(&qdir)?;
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
