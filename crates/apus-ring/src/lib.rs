//! apus-ring: Swift-compatible rings.
//!
//! It owns the mapping from names to partitions and from partitions to
//! devices: reading and writing Swift's v1 `*.ring.gz` files ([`ringdata`]),
//! lookups of primaries and handoffs in Swift's exact order ([`lookup`]),
//! the builder with `swift-ring-builder`'s semantics ([`builder`]), the
//! parsing of its device arguments ([`parse`]), and a ring that follows
//! its file as Swift's reloads ([`reload`]).
//!
//! Invariant: pure apart from reading and writing its own files. No async
//! runtime, no HTTP, no SQLite; the servers need only the lookup half and
//! must be able to link it cheaply. Depends on `apus-core` alone among apus
//! crates.

pub mod builder;
pub mod device;
pub mod lookup;
pub mod parse;
pub mod reload;
pub mod ringdata;

pub use device::Device;
pub use lookup::Ring;
pub use reload::ReloadingRing;

pub use ringdata::{RingData, RingFileError};

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes a file so that readers see either the old or the new content:
/// a temp file in the same directory, fsynced, then renamed over the target
/// and the directory fsynced.
pub fn atomic_write<E>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<std::io::Error>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ring".to_string());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        out.flush()?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
