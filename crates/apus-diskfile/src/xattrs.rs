//! Metadata on object files: Swift's xattrs, and apus's spill file for
//! metadata too large for the filesystem's xattr space.
//!
//! Swift keeps the pickled metadata in `user.swift.metadata`,
//! `user.swift.metadata1`, … (Swift 2.38 writes chunks of up to 65536
//! bytes; older releases wrote 254-byte chunks; both read the same) and its
//! MD5 in `user.swift.metadata_checksum`. apus writes exactly that.
//!
//! # Spill files
//!
//! ext4 keeps all of an inode's xattrs in one block (about 4 KiB), less
//! than an object with Swift's maximal user metadata needs, so setting the
//! xattr fails with `ENOSPC` (`E2BIG` on some filesystems). Then, and for
//! metadata larger than [`SPILL_THRESHOLD`], apus stores the same pickle in
//! a file beside the object file, named `<object file name>.spill` (e.g.
//! `1700000000.00000.data.spill`), and marks the object file with the xattr
//! `user.apus.metadata_spill` holding the pickle's MD5 (hex). The spill
//! file is written in the device's tmp dir, fsynced, and renamed into the
//! hash dir before its owner is, so an object file never appears without
//! its metadata.
//!
//! The name is safe from Swift's cleanup: Swift parses the part before the
//! last dot (`<ts>.data`) as a timestamp, fails, and counts the file as
//! "unexpected", which it logs and keeps, never deletes, and which does
//! not enter suffix hashes. apus removes a spill file together with its
//! owner, and removes orphans (owner gone, and either older than the current
//! state or older than a minute). Swift itself cannot read such an object
//! (it could not have stored it either): it would quarantine it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use rustix::fs::XattrFlags;
use rustix::io::Errno;

use crate::error::{DiskFileError, IoContext, Result};
use crate::layout::parse_filename;
use crate::metadata::Metadata;

pub const METADATA_KEY: &str = "user.swift.metadata";
pub const CHECKSUM_KEY: &str = "user.swift.metadata_checksum";
pub const SPILL_KEY: &str = "user.apus.metadata_spill";
pub const SPILL_SUFFIX: &str = ".spill";
/// Largest xattr chunk written (Swift 2.38's default `xattr_size`).
pub const XATTR_CHUNK: usize = 65536;
/// Metadata pickles larger than this always go to a spill file.
pub const SPILL_THRESHOLD: usize = 65536;

/// The spill file's path for an object file.
pub fn spill_path(object_file: &Path) -> PathBuf {
    let mut s = object_file.as_os_str().to_owned();
    s.push(SPILL_SUFFIX);
    PathBuf::from(s)
}

/// The owner file name of a spill file name, if it is one.
pub fn spill_owner(name: &str) -> Option<&str> {
    let owner = name.strip_suffix(SPILL_SUFFIX)?;
    parse_filename(owner).map(|_| owner)
}

pub(crate) fn md5_hex(data: &[u8]) -> String {
    apus_core::hash::to_hex(&Md5::digest(data))
}

fn chunk_key(i: usize) -> String {
    if i == 0 {
        METADATA_KEY.to_string()
    } else {
        format!("{METADATA_KEY}{i}")
    }
}

/// Reads one xattr; `Ok(None)` when it is absent.
fn get_xattr<F: AsFd>(fd: F, name: &str) -> std::result::Result<Option<Vec<u8>>, Errno> {
    let fd = fd.as_fd();
    loop {
        let size = match rustix::fs::fgetxattr_query(fd, name) {
            Ok(n) => n,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; size.max(1)];
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Why metadata could not be read.
#[derive(Debug)]
pub(crate) enum ReadMetaError {
    /// The file vanished (Swift's `DiskFileStateChanged`).
    Gone,
    NotSupported,
    /// Missing, unparsable or failing its checksum: quarantine material.
    Corrupt(String),
    Io(io::Error),
}

impl ReadMetaError {
    pub(crate) fn into_error(self, path: &Path) -> DiskFileError {
        match self {
            ReadMetaError::Gone => DiskFileError::StateChanged,
            ReadMetaError::NotSupported => DiskFileError::XattrNotSupported {
                path: path.to_path_buf(),
            },
            ReadMetaError::Corrupt(msg) => DiskFileError::InvalidMetadata(msg),
            ReadMetaError::Io(e) => DiskFileError::io(path, e),
        }
    }
}

fn errno_to_read(e: Errno) -> ReadMetaError {
    match e {
        Errno::NOENT => ReadMetaError::Gone,
        Errno::NOTSUP => ReadMetaError::NotSupported,
        e => ReadMetaError::Io(e.into()),
    }
}

/// The raw metadata pickle of an open object file at `path`.
pub(crate) fn read_raw(file: &File, path: &Path) -> std::result::Result<Vec<u8>, ReadMetaError> {
    let mut data = Vec::new();
    let mut i = 0;
    while let Some(chunk) = get_xattr(file, &chunk_key(i)).map_err(errno_to_read)? {
        data.extend_from_slice(&chunk);
        i += 1;
    }
    if data.is_empty() {
        let Some(want) = get_xattr(file, SPILL_KEY).map_err(errno_to_read)? else {
            return Err(ReadMetaError::Corrupt("no metadata".into()));
        };
        let spill = spill_path(path);
        let mut content = Vec::new();
        match File::open(&spill).and_then(|mut f| f.read_to_end(&mut content)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ReadMetaError::Corrupt(format!(
                    "spill file {} missing",
                    spill.display()
                )))
            }
            Err(e) => return Err(ReadMetaError::Io(e)),
        }
        if md5_hex(&content).as_bytes() != want.as_slice() {
            return Err(ReadMetaError::Corrupt(
                "spill file checksum mismatch".into(),
            ));
        }
        return Ok(content);
    }
    if let Some(sum) = get_xattr(file, CHECKSUM_KEY).map_err(errno_to_read)? {
        let computed = md5_hex(&data);
        if sum != computed.as_bytes() {
            return Err(ReadMetaError::Corrupt(format!(
                "metadata checksum mismatch: stored {:?}, computed {computed}",
                String::from_utf8_lossy(&sum)
            )));
        }
    }
    Ok(data)
}

/// Reads and decodes the metadata of an open object file.
pub(crate) fn read_metadata_file(
    file: &File,
    path: &Path,
) -> std::result::Result<Metadata, ReadMetaError> {
    let raw = read_raw(file, path)?;
    Metadata::from_pickle(&raw)
        .map_err(|e| ReadMetaError::Corrupt(format!("metadata does not unpickle: {e}")))
}

/// Reads an object file's metadata (xattrs or spill file) by path.
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(DiskFileError::NotFound),
        Err(e) => return Err(DiskFileError::io(path, e)),
    };
    read_metadata_file(&file, path).map_err(|e| e.into_error(path))
}

/// Where the metadata went.
#[derive(Debug)]
pub(crate) enum Stored {
    Xattrs,
    /// The caller must put this pickle in the spill file before publishing
    /// the object file.
    Spill(Vec<u8>),
}

fn set_xattr<F: AsFd>(fd: F, name: &str, value: &[u8]) -> std::result::Result<(), Errno> {
    rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty())
}

/// Writes `pickled` into Swift's xattrs on `file`, or marks the file for a
/// spill when the xattrs do not fit.
pub(crate) fn write_raw(file: &File, path: &Path, pickled: &[u8]) -> Result<Stored> {
    let not_supported = || DiskFileError::XattrNotSupported {
        path: path.to_path_buf(),
    };
    if pickled.len() <= SPILL_THRESHOLD {
        let mut result = Ok(());
        for (i, chunk) in pickled.chunks(XATTR_CHUNK).enumerate() {
            result = set_xattr(file, &chunk_key(i), chunk);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = set_xattr(file, CHECKSUM_KEY, md5_hex(pickled).as_bytes());
        }
        match result {
            Ok(()) => return Ok(Stored::Xattrs),
            Err(Errno::NOTSUP) => return Err(not_supported()),
            Err(Errno::NOSPC) | Err(Errno::TOOBIG) | Err(Errno::RANGE) => {}
            Err(e) => return Err(DiskFileError::io(path, e.into())),
        }
    }
    // Spill: clear whatever part was written, then mark the file.
    for i in 0..pickled.len().div_ceil(XATTR_CHUNK).max(1) {
        let _ = rustix::fs::fremovexattr(file, chunk_key(i).as_str());
    }
    let _ = rustix::fs::fremovexattr(file, CHECKSUM_KEY);
    match set_xattr(file, SPILL_KEY, md5_hex(pickled).as_bytes()) {
        Ok(()) => Ok(Stored::Spill(pickled.to_vec())),
        Err(Errno::NOTSUP) => Err(not_supported()),
        Err(e) => Err(DiskFileError::io(path, e.into())),
    }
}

/// Writes a spill pickle to a fsynced temp file in `tmp_dir`.
pub(crate) fn write_spill_tmp(tmp_dir: &Path, pickled: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix("tmp")
        .suffix(SPILL_SUFFIX)
        .tempfile_in(tmp_dir)
        .at(tmp_dir)?;
    tmp.write_all(pickled).at(tmp.path())?;
    rustix::fs::fsync(tmp.as_file()).map_err(|e| DiskFileError::io(tmp.path(), e.into()))?;
    Ok(tmp)
}

/// Writes metadata to an existing file's xattrs (no spill); for tests and
/// tools that build trees by hand.
pub fn write_metadata_xattrs(path: &Path, metadata: &Metadata) -> Result<()> {
    let file = File::options().append(true).open(path).at(path)?;
    match write_raw(&file, path, &metadata.to_pickle())? {
        Stored::Xattrs => Ok(()),
        Stored::Spill(_) => Err(DiskFileError::DiskFull {
            path: path.to_path_buf(),
        }),
    }
}
