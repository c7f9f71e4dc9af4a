//! The one error type of this crate.

use std::path::{Path, PathBuf};

/// Everything that can go wrong with an account or container database.
///
/// Callers distinguish three families: the database is missing or already
/// there ([`DbError::NotFound`], [`DbError::AlreadyExists`]); the file is
/// damaged and should be quarantined ([`DbError::Corrupt`], see
/// [`DbError::is_quarantine_worthy`]); or the operation failed for a
/// transient or caller-side reason (locks, bad arguments, I/O).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {path} does not exist")]
    NotFound { path: PathBuf },
    #[error("database {path} already exists")]
    AlreadyExists { path: PathBuf },
    /// The file is not a usable database: not SQLite at all, malformed pages
    /// or schema, a missing stat row, or a disk error while reading it.
    #[error("database {path} is corrupt ({reason}): {detail}")]
    Corrupt {
        path: PathBuf,
        reason: &'static str,
        detail: String,
    },
    /// Another process or thread held the lock past the timeout.
    #[error("timed out waiting for the lock on {path}")]
    LockTimeout { path: PathBuf },
    /// A value stored in a row could not be understood (for example a
    /// timestamp that does not parse). The database itself is readable.
    #[error("bad value in {path}: {detail}")]
    BadRow { path: PathBuf, detail: String },
    /// The caller passed something unusable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Metadata over Swift's limits (count or overall size).
    #[error("{0}")]
    MetadataLimit(String),
    #[error("sqlite error on {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

impl DbError {
    /// True when the database file should be moved aside (Swift's
    /// `possibly_quarantine` conditions).
    pub fn is_quarantine_worthy(&self) -> bool {
        matches!(self, DbError::Corrupt { .. })
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DbError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: &'static str, detail: impl Into<String>) -> Self {
        DbError::Corrupt {
            path: path.to_path_buf(),
            reason,
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_row(path: &Path, detail: impl Into<String>) -> Self {
        DbError::BadRow {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// Classifies an SQLite error the way Swift decides on quarantine.
    pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let text = source.to_string();
        let reason = match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt) => Some("malformed database"),
            Some(ErrorCode::NotADatabase) => Some("corrupted database"),
            Some(ErrorCode::SystemIoFailure) => Some("disk error while accessing database"),
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                return DbError::LockTimeout {
                    path: path.to_path_buf(),
                }
            }
            _ => None,
        };
        let reason = reason.or_else(|| {
            if text.contains("malformed database schema")
                || text.contains("database disk image is malformed")
            {
                Some("malformed database")
            } else if text.contains(" is not a database") {
                Some("corrupted database")
            } else if text.contains("disk I/O error") {
                Some("disk error while accessing database")
            } else if text.contains("no such table") || text.contains("no such column") {
                Some("missing table or column")
            } else {
                None
            }
        });
        match reason {
            Some(reason) => DbError::corrupt(path, reason, text),
            None => DbError::Sqlite {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}
