//! Where databases live on a device, for everything that moves them as
//! whole files: quarantine.

use std::path::{Path, PathBuf};

/// Moves a damaged database's directory
/// (`<device>/<datadir>/<part>/<suffix>/<hash>/`) to
/// `<device>/quarantined/<datadir>/<hash>` (with a unique suffix if that is
/// taken), as Swift does. Blocking; returns where it went.
pub fn quarantine_db(db_file: &Path) -> std::io::Result<PathBuf> {
    let bad = || std::io::Error::other("not a database in the storage layout");
    let hash_dir = db_file.parent().ok_or_else(bad)?;
    let hash = hash_dir.file_name().ok_or_else(bad)?;
    let datadir_path = hash_dir.ancestors().nth(3).ok_or_else(bad)?;
    let datadir = datadir_path.file_name().ok_or_else(bad)?;
    let device = datadir_path.parent().ok_or_else(bad)?;
    let qdir = device.join("quarantined").join(datadir);
    std::fs::create_dir_all(&qdir)?;
    let mut target = qdir.join(hash);
    if target.exists() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        target = qdir.join(format!(
            "{}-{:x}{:x}",
            hash.to_string_lossy(),
            nanos,
            std::process::id()
        ));
    }
    std::fs::rename(hash_dir, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_moves_the_hash_directory_aside() {
        let dir = tempfile::tempdir().unwrap();
        let hash = "0123456789abcdef0123456789abcdef";
        let hash_dir = dir.path().join("d1/containers/7/def").join(hash);
        std::fs::create_dir_all(&hash_dir).unwrap();
        let db = hash_dir.join(format!("{hash}.db"));
        std::fs::write(&db, b"junk").unwrap();
        let to = quarantine_db(&db).unwrap();
        assert_eq!(to, dir.path().join("d1/quarantined/containers").join(hash));
        assert!(to.join(format!("{hash}.db")).exists());
        assert!(!hash_dir.exists());
        // A second one with the same hash gets a unique name.
        std::fs::create_dir_all(&hash_dir).unwrap();
        std::fs::write(&db, b"junk").unwrap();
        let again = quarantine_db(&db).unwrap();
        assert_ne!(again, to);
        assert!(quarantine_db(Path::new("x.db")).is_err());
    }
}
