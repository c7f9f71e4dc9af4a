//! The `.pending` file beside a database and the directory lock guarding it.
//!
//! Updates are appended as `:` + base64(pickle protocol 2 tuple), Swift's
//! format, so a Swift server and apus can share a database directory. The
//! lock is an exclusive `flock` on `<dir>/.lock`, as Swift's
//! `lock_parent_directory` takes it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_pickle::{DeOptions, SerOptions, Value};

use crate::encode::{base64_decode, base64_encode};
use crate::error::{DbError, Result};

/// An exclusive lock on a directory, released on drop.
pub(crate) struct DirLock {
    file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path, timeout: Duration) -> Result<DirLock> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| DbError::io(&path, e))?;
        let start = Instant::now();
        let mut wait = Duration::from_micros(200);
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(DirLock { file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK)
                && err.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(DbError::io(&path, err));
            }
            if start.elapsed() >= timeout {
                return Err(DbError::LockTimeout { path });
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(10));
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor; closing would release it too.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Serializes one record as a pending line (without the leading colon).
pub(crate) fn encode_entry(tuple: Vec<Value>) -> Result<String> {
    let bytes = serde_pickle::value_to_vec(&Value::Tuple(tuple), SerOptions::new().proto_v2())
        .map_err(|e| DbError::Invalid(format!("cannot pickle pending record: {e}")))?;
    Ok(base64_encode(&bytes))
}

/// Decodes the entries of a pending file. Entries that do not decode (a torn
/// final append, garbage) are counted and skipped, as Swift skips them.
pub(crate) fn decode_entries(data: &[u8]) -> (Vec<Vec<Value>>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for chunk in data.split(|&b| b == b':') {
        if chunk.is_empty() {
            continue;
        }
        let decoded = base64_decode(chunk).and_then(|raw| {
            serde_pickle::value_from_slice(&raw, DeOptions::new().decode_strings()).ok()
        });
        match decoded {
            Some(Value::Tuple(items)) | Some(Value::List(items)) => out.push(items),
            _ => bad += 1,
        }
    }
    (out, bad)
}

/// Appends one entry and returns the open file, so the caller can fsync it
/// after releasing the directory lock. `created` tells whether the file was
/// new (its directory entry then needs an fsync of the directory).
pub(crate) fn append(path: &Path, entry: &str) -> Result<(File, bool)> {
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| DbError::io(path, e))?;
    let mut line = Vec::with_capacity(entry.len() + 1);
    line.push(b':');
    line.extend_from_slice(entry.as_bytes());
    file.write_all(&line).map_err(|e| DbError::io(path, e))?;
    Ok((file, !existed))
}

pub(crate) fn size(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(DbError::io(path, e)),
    }
}

/// Reads the whole pending file; `None` when there is none.
pub(crate) fn read_all(path: &Path) -> Result<Option<(File, Vec<u8>)>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DbError::io(path, e)),
    };
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| DbError::io(path, e))?;
    Ok(Some((file, data)))
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| DbError::io(dir, e))?;
    d.sync_all().map_err(|e| DbError::io(dir, e))
}

pub(crate) fn pending_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".pending");
    PathBuf::from(s)
}

// Field conversions for entries written by Swift (Python 2 or 3) or by us.

pub(crate) fn as_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Bytes(b) => String::from_utf8(b.clone()).ok(),
        Value::I64(i) => Some(i.to_string()),
        Value::F64(f) => apus_core::Timestamp::from_secs_f64(*f).map(|t| t.internal()),
        _ => None,
    }
}

pub(crate) fn as_opt_string(v: Option<&Value>) -> Option<Option<String>> {
    match v {
        None | Some(Value::None) => Some(None),
        Some(other) => as_string(Some(other)).map(Some),
    }
}

/// Integers may arrive as ints, bools or strings (Swift's account server
/// passes header values through); Swift's zero-like values count as 0.
pub(crate) fn as_int(v: Option<&Value>) -> Option<i64> {
    match v {
        None | Some(Value::None) => Some(0),
        Some(Value::I64(i)) => Some(*i),
        Some(Value::Bool(b)) => Some(i64::from(*b)),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                Some(0)
            } else {
                s.parse().ok()
            }
        }
        Some(Value::Bytes(b)) => {
            let s = std::str::from_utf8(b).ok()?.trim();
            if s.is_empty() {
                Some(0)
            } else {
                s.parse().ok()
            }
        }
        _ => None,
    }
}
