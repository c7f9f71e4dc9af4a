//! Finding the account and container databases on this node's devices
//! (`<dev>/<accounts|containers>/<part>/<suffix>/<hash>/<hash>.db`), and
//! removing one whole, for the database replicators, auditors and the
//! container updater. Everything here blocks.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apus_ring::{Device, Ring};
use tokio::task::JoinSet;

use crate::context::{DaemonContext, Rings, ServerKind};
use crate::rate::RateLimiter;

/// One partition directory of a local device.
#[derive(Clone, Debug)]
pub struct LocalPartition {
    pub device: Device,
    pub dev_path: PathBuf,
    pub partition: u32,
    pub dir: PathBuf,
}

/// The partition directories under `datadir` of every usable local device
/// of `ring`, device by device. Unusable devices are skipped (and logged).
pub fn local_partitions(
    ctx: &DaemonContext,
    ring: &Ring,
    kind: ServerKind,
    datadir: &str,
) -> Vec<LocalPartition> {
    let mut out = Vec::new();
    for dev in ctx.local_devices(ring, kind) {
        let Some(dev_path) = ctx.device_path(&dev.device) else {
            tracing::warn!(device = %dev.device, "skipping an unusable device");
            continue;
        };
        let Ok(entries) = std::fs::read_dir(dev_path.join(datadir)) else {
            continue;
        };
        let mut parts: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let part = name.to_str()?.parse::<u32>().ok()?;
                Some((part, e.path()))
            })
            .collect();
        parts.sort();
        out.extend(parts.into_iter().map(|(partition, dir)| LocalPartition {
            device: dev.clone(),
            dev_path: dev_path.clone(),
            partition,
            dir,
        }));
    }
    out
}

/// The database files of one partition directory: for each
/// `<suffix>/<hash>/`, `<hash>.db` when it exists.
pub fn dbs_in_partition(part_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(suffixes) = std::fs::read_dir(part_dir) else {
        return out;
    };
    for suffix in suffixes.filter_map(|e| e.ok()) {
        let Ok(hashes) = std::fs::read_dir(suffix.path()) else {
            continue;
        };
        for hash in hashes.filter_map(|e| e.ok()) {
            let name = hash.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let db = hash.path().join(format!("{name}.db"));
            if db.is_file() {
                out.push(db);
            }
        }
    }
    out.sort();
    out
}

/// The hash a database file is named by.
pub fn db_hash(db: &Path) -> Option<&str> {
    db.file_stem().and_then(|s| s.to_str())
}

/// Removes a database's whole hash directory, then its suffix and
/// partition directories if that left them empty (Swift's `delete_db`).
pub fn remove_db(db: &Path) -> std::io::Result<()> {
    let Some(hash_dir) = db.parent() else {
        return Ok(());
    };
    match std::fs::remove_dir_all(hash_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for dir in hash_dir.ancestors().skip(1).take(2) {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
    }
    Ok(())
}

/// Removes `*.tmp` files older than `max_age` beside a database (left by
/// interrupted copies).
pub fn remove_old_tmp_files(db: &Path, max_age: std::time::Duration) {
    let Some(dir) = db.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let is_tmp = e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp"));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if is_tmp && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Runs `f` on every database under `datadir` of this node's devices of
/// `kind`'s ring, at most `per_second` starts a second and `concurrency`
/// at a time, and waits for them all. The walk itself runs on the
/// blocking pool one partition at a time, so memory stays bounded by the
/// largest partition.
pub async fn for_each_db<F, Fut>(
    ctx: Arc<DaemonContext>,
    rings: Arc<Rings>,
    kind: ServerKind,
    datadir: &'static str,
    per_second: f64,
    concurrency: usize,
    f: F,
) -> Result<(), String>
where
    F: Fn(LocalPartition, PathBuf) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let parts = {
        let (ctx, rings) = (ctx.clone(), rings.clone());
        tokio::task::spawn_blocking(move || match rings.ring(kind, 0) {
            Some(ring) => Ok(local_partitions(&ctx, ring, kind, datadir)),
            None => Err(format!("no ring for {kind:?}")),
        })
        .await
        .map_err(|e| format!("walking the devices: {e}"))??
    };
    let mut limiter = RateLimiter::new(per_second);
    let mut tasks = JoinSet::new();
    let concurrency = concurrency.max(1);
    for lp in parts {
        let dir = lp.dir.clone();
        let dbs = tokio::task::spawn_blocking(move || dbs_in_partition(&dir))
            .await
            .unwrap_or_default();
        for db in dbs {
            limiter.acquire(1.0).await;
            while tasks.len() >= concurrency {
                let _ = tasks.join_next().await;
            }
            tasks.spawn(f(lp.clone(), db));
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_databases_and_removes_them_with_empty_parents() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("d1/containers/12");
        let h1 = "00000000000000000000000000000abc";
        let h2 = "11111111111111111111111111111abc";
        for h in [h1, h2] {
            let d = part.join("abc").join(h);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{h}.db")), b"x").unwrap();
        }
        // A hash directory without its database is skipped.
        std::fs::create_dir_all(part.join("abc/22222222222222222222222222222abc")).unwrap();
        let dbs = dbs_in_partition(&part);
        assert_eq!(dbs.len(), 2);
        assert_eq!(db_hash(&dbs[0]), Some(h1));
        remove_db(&dbs[0]).unwrap();
        assert!(part.join("abc").exists());
        remove_db(&dbs[1]).unwrap();
        std::fs::remove_dir(part.join("abc/22222222222222222222222222222abc")).unwrap();
        assert_eq!(dbs_in_partition(&part).len(), 0);
    }
}
