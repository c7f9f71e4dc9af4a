//! A ring that follows its file: Swift's `Ring` checks, at most every
//! `reload_time` seconds (15 by default), whether its `*.ring.gz` changed
//! on disk, and loads the new one when it did. That is how a rebalanced
//! ring reaches running proxies: operators copy the new file over the old.
//!
//! [`ReloadingRing::get`] does the same check when it is due, inline, as
//! Swift does: a `stat` of the file, and a load when its modification
//! time, inode or size changed (ring files are written to a temp file and
//! renamed into place, so a new ring is a new inode even within one
//! mtime tick). Between checks, a `get` is an atomic compare, a lock that
//! is almost never contended, and an `Arc` clone.
//!
//! Unlike Swift, a file that fails to load (missing, truncated, invalid)
//! does not fail the requests: the ring in use stays, a warning is logged,
//! and the next check tries again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::time::{Duration, Instant, SystemTime};

use crate::lookup::Ring;
use crate::ringdata::RingFileError;

/// Swift's `DEFAULT_RELOAD_TIME`.
pub const DEFAULT_RELOAD_TIME: Duration = Duration::from_secs(15);

/// What tells one version of a ring file from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    inode: u64,
    len: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        inode: meta.ino(),
        len: meta.len(),
    })
}

#[derive(Debug)]
struct Source {
    path: PathBuf,
    reload_time: Duration,
    /// When the file is next looked at, and what it was at the last look.
    check: Mutex<(Instant, Option<Stamp>)>,
}

/// A [`Ring`] shared by many users, reloaded from its file when that
/// changes (or fixed, for a ring built in memory).
#[derive(Debug)]
pub struct ReloadingRing {
    current: RwLock<Arc<Ring>>,
    source: Option<Source>,
}

impl ReloadingRing {
    /// Loads the ring at `path`; [`get`](Self::get) looks for a newer file
    /// at most every `reload_time`.
    pub fn load(path: &Path, reload_time: Duration) -> Result<Self, RingFileError> {
        // The stamp first: a file replaced between the two is loaded again.
        let seen = stamp(path).ok();
        let ring = Ring::load(path)?;
        Ok(ReloadingRing {
            current: RwLock::new(Arc::new(ring)),
            source: Some(Source {
                path: path.to_path_buf(),
                reload_time,
                check: Mutex::new((Instant::now() + reload_time, seen)),
            }),
        })
    }

    /// A ring that never reloads.
    pub fn fixed(ring: Ring) -> Self {
        ReloadingRing {
            current: RwLock::new(Arc::new(ring)),
            source: None,
        }
    }

    /// The ring file this one follows, if any.
    pub fn path(&self) -> Option<&Path> {
        self.source.as_ref().map(|s| s.path.as_path())
    }

    /// The ring as of now: reloaded first if a check is due and the file
    /// changed.
    pub fn get(&self) -> Arc<Ring> {
        self.get_at(Instant::now())
    }

    fn get_at(&self, now: Instant) -> Arc<Ring> {
        if let Some(source) = &self.source {
            let due = match source.check.try_lock() {
                Ok(mut check) => self.check_due(source, &mut check, now),
                Err(TryLockError::Poisoned(p)) => self.check_due(source, &mut p.into_inner(), now),
                // Another thread is checking: use the ring in use.
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(Err(error)) = due {
                tracing::warn!(ring = %source.path.display(), %error, "cannot reload the ring; keeping the one in use");
            }
        }
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Looks at the file now, whatever the time: whether a new ring was
    /// loaded.
    pub fn reload_if_changed(&self) -> Result<bool, RingFileError> {
        let Some(source) = &self.source else {
            return Ok(false);
        };
        let mut check = source.check.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        check.0 = now;
        self.check_due(source, &mut check, now).unwrap_or(Ok(false))
    }

    /// With the check lock held: `None` when no check is due yet.
    fn check_due(
        &self,
        source: &Source,
        check: &mut (Instant, Option<Stamp>),
        now: Instant,
    ) -> Option<Result<bool, RingFileError>> {
        if now < check.0 {
            return None;
        }
        check.0 = now + source.reload_time;
        let seen = match stamp(&source.path) {
            Ok(s) => s,
            Err(e) => return Some(Err(RingFileError::from(e))),
        };
        if check.1 == Some(seen) {
            return Some(Ok(false));
        }
        let ring = match Ring::load(&source.path) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        check.1 = Some(seen);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        Some(Ok(true))
    }
}

impl From<Ring> for ReloadingRing {
    fn from(ring: Ring) -> Self {
        ReloadingRing::fixed(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{RingBuilder, AUTO_ID};
    use crate::Device;

    fn write_ring(path: &Path, devices: u32) {
        let mut b = RingBuilder::new(4, 3.0, 0).unwrap();
        for i in 0..devices {
            b.add_dev(Device {
                id: AUTO_ID,
                region: 1,
                zone: i + 1,
                ip: format!("10.0.0.{}", i + 1),
                port: 6200,
                replication_ip: format!("10.0.0.{}", i + 1),
                replication_port: 6200,
                device: format!("d{i}"),
                weight: 100.0,
                meta: String::new(),
            })
            .unwrap();
        }
        b.rebalance(Some(1), &mut |_| {}).unwrap();
        b.ring_data().unwrap().save(path).unwrap();
    }

    fn devices(ring: &Ring) -> usize {
        ring.devs().count()
    }

    #[test]
    fn reloads_a_changed_file_once_a_check_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.ring.gz");
        write_ring(&path, 3);
        let reload_time = Duration::from_secs(15);
        let ring = ReloadingRing::load(&path, reload_time).unwrap();
        let loaded = Instant::now();
        assert_eq!(devices(&ring.get()), 3);
        write_ring(&path, 4);
        // Not before the check is due...
        assert_eq!(devices(&ring.get_at(loaded)), 3);
        // ...then at once.
        let later = loaded + reload_time + Duration::from_secs(1);
        assert_eq!(devices(&ring.get_at(later)), 4);
        // An unchanged file is not loaded again.
        let before = ring.get_at(later);
        assert!(Arc::ptr_eq(&before, &ring.get_at(later + reload_time * 2)));
    }

    #[test]
    fn reload_if_changed_looks_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.ring.gz");
        write_ring(&path, 3);
        let ring = ReloadingRing::load(&path, Duration::from_secs(3600)).unwrap();
        assert!(!ring.reload_if_changed().unwrap());
        write_ring(&path, 5);
        assert!(ring.reload_if_changed().unwrap());
        assert_eq!(devices(&ring.get()), 5);
        assert!(!ring.reload_if_changed().unwrap());
    }

    #[test]
    fn a_bad_file_keeps_the_ring_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.ring.gz");
        write_ring(&path, 3);
        let ring = ReloadingRing::load(&path, Duration::from_secs(3600)).unwrap();
        std::fs::write(&path, b"not a ring").unwrap();
        assert!(ring.reload_if_changed().is_err());
        assert_eq!(devices(&ring.get()), 3);
        std::fs::remove_file(&path).unwrap();
        assert!(ring.reload_if_changed().is_err());
        assert_eq!(devices(&ring.get()), 3);
        // A good file again is picked up.
        write_ring(&path, 4);
        assert!(ring.reload_if_changed().unwrap());
        assert_eq!(devices(&ring.get()), 4);
    }

    #[test]
    fn fixed_rings_never_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.ring.gz");
        write_ring(&path, 3);
        let ring = ReloadingRing::fixed(Ring::load(&path).unwrap());
        assert!(ring.path().is_none());
        write_ring(&path, 4);
        assert!(!ring.reload_if_changed().unwrap());
        assert_eq!(devices(&ring.get()), 3);
    }
}
