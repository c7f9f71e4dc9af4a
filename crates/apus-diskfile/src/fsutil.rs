//! Small filesystem helpers with Swift's semantics: directory creation that
//! counts what it made (so exactly those get fsynced), rename with one retry
//! (a cleaner may remove an empty hash dir between mkdir and rename), and
//! the `.lock` file Swift's `lock_path` uses for a directory.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use crate::error::{DiskFileError, IoContext, Result};

/// Creates `path` and its missing parents; returns how many were created.
pub(crate) fn makedirs_count(path: &Path) -> io::Result<usize> {
    if path.is_dir() {
        return Ok(0);
    }
    let mut count = 0;
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            count += makedirs_count(parent)?;
        }
    }
    match fs::create_dir(path) {
        Ok(()) => Ok(count + 1),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(count),
        Err(e) => Err(e),
    }
}

/// fsyncs a directory so the entries just made in it are durable.
pub(crate) fn fsync_dir(path: &Path) -> Result<()> {
    let dir = File::open(path).at(path)?;
    rustix::fs::fsync(&dir).map_err(|e| DiskFileError::io(path, e.into()))
}

/// Renames `from` to `to`, creating `to`'s directory as needed (retrying
/// once), then fsyncs `to`'s directory and every directory newly created.
pub(crate) fn renamer(from: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().unwrap_or(Path::new("/"));
    let mut count = makedirs_count(dir).at(dir)?;
    if let Err(first) = fs::rename(from, to) {
        if first.kind() != io::ErrorKind::NotFound {
            return Err(DiskFileError::io(to, first));
        }
        count += makedirs_count(dir).at(dir)?;
        fs::rename(from, to).at(to)?;
    }
    let mut d = dir;
    for _ in 0..=count {
        fsync_dir(d)?;
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    Ok(())
}

/// Swift's default lock timeout.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// An exclusive lock on a directory, held through `<dir>/.lock` as Swift
/// holds it (so apus and Swift processes exclude each other).
pub(crate) struct DirLock {
    _file: File,
}

pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock> {
    makedirs_count(dir).at(dir)?;
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .at(&path)?;
    let start = Instant::now();
    let mut sleep = Duration::from_millis(1);
    loop {
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(DirLock { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if start.elapsed() > LOCK_TIMEOUT {
                    return Err(DiskFileError::LockTimeout { path });
                }
                std::thread::sleep(sleep);
                sleep = (sleep * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(DiskFileError::io(&path, e.into())),
        }
    }
}

/// 32 random lowercase hex digits (for names that must not collide).
pub(crate) fn random_hex() -> String {
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Lists the names in a directory (non-UTF-8 names are skipped: Swift's
/// names are all ASCII). `Ok(None)` when the directory does not exist.
pub(crate) fn list_names(dir: &Path) -> io::Result<Option<Vec<String>>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(Some(names))
}

/// Removes a file, ignoring any error (Swift's `remove_file`).
pub(crate) fn remove_file(path: &Path) {
    let _ = fs::remove_file(path);
}

/// Seconds since the epoch by apus's clock (see `apus_core::clock`), as a
/// float: what tombstone ages and expiry times are measured against.
pub(crate) fn now_secs() -> f64 {
    apus_core::clock::now_secs()
}
