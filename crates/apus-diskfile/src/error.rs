//! The errors callers must tell apart, one kind per HTTP answer the object
//! server gives (Swift's `DiskFile*` exceptions).

use std::io;
use std::path::{Path, PathBuf};

use apus_core::Timestamp;

use crate::Metadata;

#[derive(Debug, thiserror::Error)]
pub enum DiskFileError {
    /// No data file and no tombstone (404).
    #[error("object not found")]
    NotFound,
    /// The newest state is a tombstone (404 with `X-Backend-Timestamp`).
    #[error("object deleted at {}", timestamp.internal())]
    Deleted {
        timestamp: Timestamp,
        metadata: Box<Metadata>,
    },
    /// `X-Delete-At` has passed (404 with `X-Backend-Timestamp`).
    #[error("object expired at {x_delete_at}")]
    Expired {
        x_delete_at: u64,
        metadata: Box<Metadata>,
    },
    /// The object's files were inconsistent and were moved aside (404;
    /// replication restores a good copy).
    #[error("object quarantined to {}: {reason}", to.display())]
    Quarantined { reason: String, to: PathBuf },
    /// The name stored with the object is not the name asked for (the hash
    /// collided or the tree was tampered with).
    #[error("path {asked:?} does not match stored name {stored:?}")]
    Collision { asked: String, stored: String },
    /// The device is missing or not mounted (507).
    #[error("device {device:?} unavailable: {reason}")]
    DeviceUnavailable { device: String, reason: String },
    /// No room for the object or its metadata (507).
    #[error("no space left on device for {}", path.display())]
    DiskFull { path: PathBuf },
    /// The filesystem does not support extended attributes (507).
    #[error("filesystem at {} does not support xattrs", path.display())]
    XattrNotSupported { path: PathBuf },
    /// A file vanished between listing and reading (503).
    #[error("object files changed while being read")]
    StateChanged,
    /// The caller passed metadata the disk file cannot store, e.g. without
    /// a valid `X-Timestamp` (a programming error upstream: 400/500).
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    /// Timed out waiting for a lock on a partition directory.
    #[error("timed out locking {}", path.display())]
    LockTimeout { path: PathBuf },
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = DiskFileError> = std::result::Result<T, E>;

pub(crate) fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl DiskFileError {
    /// Wraps an I/O error on `path`, turning "no space" into `DiskFull`.
    pub(crate) fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        if is_no_space(&source) {
            DiskFileError::DiskFull { path }
        } else {
            DiskFileError::Io { path, source }
        }
    }

    /// The HTTP status Swift's object server answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            DiskFileError::NotFound
            | DiskFileError::Deleted { .. }
            | DiskFileError::Expired { .. }
            | DiskFileError::Quarantined { .. } => 404,
            DiskFileError::DeviceUnavailable { .. }
            | DiskFileError::DiskFull { .. }
            | DiskFileError::XattrNotSupported { .. } => 507,
            DiskFileError::StateChanged => 503,
            DiskFileError::InvalidMetadata(_) => 400,
            DiskFileError::Collision { .. }
            | DiskFileError::LockTimeout { .. }
            | DiskFileError::Io { .. } => 500,
        }
    }
}

pub(crate) trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| DiskFileError::io(path, e))
    }
}
