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
/// It tries `mkdir` first and climbs only on `ENOENT`: the callers mostly
/// make directories that are not there yet (a new object's hash dir), and
/// one `mkdir` is then the whole cost. See [`ensure_dir`] for directories
/// that are mostly there.
pub(crate) fn makedirs_count(path: &Path) -> io::Result<usize> {
    let made_parents = match fs::create_dir(path) {
        Ok(()) => return Ok(1),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return if path.is_dir() { Ok(0) } else { Err(e) };
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) => makedirs_count(parent)?,
                None => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    match fs::create_dir(path) {
        Ok(()) => Ok(made_parents + 1),
        // Made meanwhile by someone else.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(made_parents),
        Err(e) => Err(e),
    }
}

/// [`makedirs_count`] for a directory that is almost always there (a
/// device's `tmp`, a partition): one `stat` when it is.
pub(crate) fn ensure_dir(path: &Path) -> io::Result<usize> {
    if path.is_dir() {
        return Ok(0);
    }
    makedirs_count(path)
}

/// fsyncs a directory so the entries just made in it are durable.
pub(crate) fn fsync_dir(path: &Path) -> Result<()> {
    let dir = File::open(path).at(path)?;
    rustix::fs::fsync(&dir).map_err(|e| DiskFileError::io(path, e.into()))
}

/// Renames `from` to `to`, creating `to`'s directory when the rename finds
/// it missing (then renaming once more: a cleaner may remove an empty hash
/// dir between mkdir and rename), then fsyncs `to`'s directory and every
/// directory newly created. Returns how many directories it created.
pub(crate) fn renamer(from: &Path, to: &Path) -> Result<usize> {
    let dir = to.parent().unwrap_or(Path::new("/"));
    let mut count = 0;
    let mut tries = 0;
    while let Err(e) = fs::rename(from, to) {
        tries += 1;
        if e.kind() != io::ErrorKind::NotFound || tries > 2 {
            return Err(DiskFileError::io(to, e));
        }
        count += makedirs_count(dir).at(dir)?;
    }
    let mut d = dir;
    for _ in 0..=count {
        fsync_dir(d)?;
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    Ok(count)
}

/// Swift's default lock timeout.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// An exclusive lock on a directory, held through `<dir>/.lock` as Swift
/// holds it (so apus and Swift processes exclude each other).
pub(crate) struct DirLock {
    _file: File,
}

pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock> {
    ensure_dir(dir).at(dir)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makedirs_counts_what_it_made_and_refuses_a_file_in_the_way() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        assert_eq!(makedirs_count(&deep).unwrap(), 3);
        assert!(deep.is_dir());
        assert_eq!(makedirs_count(&deep).unwrap(), 0);
        assert_eq!(ensure_dir(&deep).unwrap(), 0);
        assert_eq!(makedirs_count(&root.path().join("a/b/d")).unwrap(), 1);
        assert_eq!(ensure_dir(&root.path().join("a/e/f")).unwrap(), 2);
        std::fs::write(root.path().join("file"), b"x").unwrap();
        assert!(makedirs_count(&root.path().join("file")).is_err());
        assert!(makedirs_count(&root.path().join("file/sub")).is_err());
    }

    #[test]
    fn renamer_makes_the_missing_directories_and_says_how_many() {
        let root = tempfile::tempdir().unwrap();
        let from = root.path().join("tmp1");
        std::fs::write(&from, b"one").unwrap();
        let to = root.path().join("objects/1/abc/hash/1.data");
        assert_eq!(renamer(&from, &to).unwrap(), 4);
        assert_eq!(std::fs::read(&to).unwrap(), b"one");
        // Into a directory that is there: nothing made.
        let from = root.path().join("tmp2");
        std::fs::write(&from, b"two").unwrap();
        let to = root.path().join("objects/1/abc/hash/2.ts");
        assert_eq!(renamer(&from, &to).unwrap(), 0);
        assert_eq!(std::fs::read(&to).unwrap(), b"two");
        // A source that is gone stays an error, after the bounded retries.
        let gone = root.path().join("never-written");
        assert!(renamer(&gone, &root.path().join("objects/2/x")).is_err());
    }
}
