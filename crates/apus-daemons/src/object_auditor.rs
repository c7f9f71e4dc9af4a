//! The object auditor: reads every object of this node's devices and
//! quarantines the ones whose bytes or metadata went bad, so replication
//! restores a good copy.
//!
//! For each local device and storage policy it walks
//! `objects[-N]/<partition>/<suffix>/<hash>` and opens the object through
//! `apus-diskfile`, which quarantines unreadable metadata, a name that does
//! not hash to its directory and a file whose size differs from its
//! `Content-Length`; it then reads the data through the disk file reader,
//! which quarantines an object whose MD5 differs from its ETag. A
//! quarantined object moves to `<device>/quarantined/objects[-N]/<hash>`
//! and its suffix is invalidated, so the next replication pass sees the
//! copy as missing. As in Swift, a tombstone older than `reclaim_age`
//! gets its suffix invalidated so the replicator's rehash reclaims it.
//!
//! Reading is paced by `files_per_second` and `bytes_per_second` (Swift's
//! defaults: 20 files and 10 MB per second; 0 means unlimited).

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use apus_diskfile::{layout, DiskFileConfig, DiskFileError, DiskFileManager, OpenOptions};

use crate::context::{DaemonContext, ServerKind};
use crate::rate::RateLimiter;
use crate::stats::Stats;
use crate::worker::Worker;

/// Object auditor settings (Swift's `[object-auditor]` names).
#[derive(Clone, Debug)]
pub struct ObjectAuditorSettings {
    /// Objects audited per second; 0 = unlimited.
    pub files_per_second: f64,
    /// Bytes read per second; 0 = unlimited.
    pub bytes_per_second: f64,
    /// Seconds after which a tombstone is due for reclaiming.
    pub reclaim_age: f64,
    /// Bytes per read.
    pub disk_chunk_size: usize,
}

impl Default for ObjectAuditorSettings {
    fn default() -> Self {
        ObjectAuditorSettings {
            files_per_second: 20.0,
            bytes_per_second: 10_000_000.0,
            reclaim_age: apus_diskfile::DEFAULT_RECLAIM_AGE,
            disk_chunk_size: 65536,
        }
    }
}

/// The `object-auditor` worker.
#[derive(Debug, Default)]
pub struct ObjectAuditor {
    settings: ObjectAuditorSettings,
}

impl ObjectAuditor {
    pub fn new(settings: ObjectAuditorSettings) -> Self {
        ObjectAuditor { settings }
    }
}

/// The two limiters, moved into the blocking thread that audits a
/// partition and handed back after it.
struct Limiters {
    files: RateLimiter,
    bytes: RateLimiter,
}

/// Sets the flag when dropped: a pass cut short stops its blocking
/// partition walk at the next object.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

enum Outcome {
    Passed(u64),
    Quarantined(String),
    Error(String),
}

impl Worker for ObjectAuditor {
    fn name(&self) -> &'static str {
        "object-auditor"
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let mut conf = DiskFileConfig::new(ctx.devices.clone(), ctx.hash.clone());
        conf.mount_check = ctx.mount_check;
        conf.reclaim_age = self.settings.reclaim_age;
        let mgr = DiskFileManager::new(conf);
        // Every local device of any object ring, once.
        let mut devices: Vec<String> = Vec::new();
        for ring in rings.objects.values() {
            for dev in ctx.local_devices(ring, ServerKind::Object) {
                if !devices.contains(&dev.device) {
                    devices.push(dev.device.clone());
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let _guard = StopOnDrop(stop.clone());
        let mut limiters = Some(Limiters {
            files: RateLimiter::new(self.settings.files_per_second),
            bytes: RateLimiter::new(self.settings.bytes_per_second),
        });
        for device in devices {
            let Some(dev_path) = ctx.device_path(&device) else {
                tracing::warn!(%device, "skipping missing or unmounted device");
                stats.incr("errors");
                continue;
            };
            for policy in ctx.replicated_policies() {
                let data_dir = dev_path.join(layout::data_dir(policy));
                let dir = data_dir.clone();
                let parts = match tokio::task::spawn_blocking(move || list_partitions(&dir)).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        tracing::error!(dir = %data_dir.display(), error = %e, "cannot list partitions");
                        stats.incr("errors");
                        continue;
                    }
                    Err(_) => continue,
                };
                for partition in parts {
                    let lim = limiters.take().unwrap_or_else(|| Limiters {
                        files: RateLimiter::new(self.settings.files_per_second),
                        bytes: RateLimiter::new(self.settings.bytes_per_second),
                    });
                    let job = PartitionAudit {
                        mgr: mgr.clone(),
                        device: device.clone(),
                        policy,
                        partition,
                        settings: self.settings.clone(),
                        stats: stats.clone(),
                        stop: stop.clone(),
                    };
                    // A panic loses the limiters' state only; new ones follow.
                    limiters = tokio::task::spawn_blocking(move || job.run(lim)).await.ok();
                }
            }
        }
        Ok(())
    }
}

/// Partition numbers under `objects[-N]`.
fn list_partitions(dir: &Path) -> std::io::Result<Vec<u32>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(p) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            parts.push(p);
        }
    }
    parts.sort_unstable();
    Ok(parts)
}

/// Sorted names in a directory; none when it is gone.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// One partition's audit, run on a blocking thread.
struct PartitionAudit {
    mgr: DiskFileManager,
    device: String,
    policy: u32,
    partition: u32,
    settings: ObjectAuditorSettings,
    stats: Stats,
    stop: Arc<AtomicBool>,
}

impl PartitionAudit {
    fn run(self, mut lim: Limiters) -> Limiters {
        let Ok(part_dir) = self
            .mgr
            .partition_path(&self.device, self.partition, self.policy)
        else {
            return lim;
        };
        for suffix in names(&part_dir) {
            if !layout::valid_suffix(&suffix) {
                continue;
            }
            for hash in names(&part_dir.join(&suffix)) {
                if self.stop.load(Ordering::Relaxed) {
                    return lim;
                }
                lim.files.acquire_blocking(1.0);
                match self.audit(&part_dir, &hash, &mut lim.bytes) {
                    Outcome::Passed(bytes) => {
                        self.stats.add("bytes_read", bytes);
                    }
                    Outcome::Quarantined(reason) => {
                        tracing::error!(
                            device = %self.device, partition = self.partition, hash = %hash,
                            %reason, "object failed audit and was quarantined"
                        );
                        self.stats.incr("quarantined");
                    }
                    Outcome::Error(e) => {
                        tracing::error!(
                            device = %self.device, partition = self.partition, hash = %hash,
                            error = %e, "error auditing object"
                        );
                        self.stats.incr("errors");
                    }
                }
                self.stats.incr("objects_audited");
            }
        }
        lim
    }

    fn audit(&self, part_dir: &Path, hash: &str, bytes: &mut RateLimiter) -> Outcome {
        let df = match self
            .mgr
            .diskfile_from_hash(&self.device, self.partition, hash, self.policy)
        {
            Ok(df) => df,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let open = match df.open(OpenOptions::default()) {
            Ok(open) => open,
            Err(DiskFileError::Quarantined { reason, .. }) => return Outcome::Quarantined(reason),
            Err(DiskFileError::Deleted { timestamp, .. }) => {
                let age = apus_core::Timestamp::now().as_secs_f64() - timestamp.as_secs_f64();
                if age > self.settings.reclaim_age {
                    if let Err(e) =
                        apus_diskfile::invalidate_hash(part_dir, layout::suffix_of(hash))
                    {
                        return Outcome::Error(e.to_string());
                    }
                }
                return Outcome::Passed(0);
            }
            Err(DiskFileError::Expired { .. } | DiskFileError::NotFound) => {
                return Outcome::Passed(0)
            }
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let mut reader = open.reader();
        let mut buf = vec![0u8; self.settings.disk_chunk_size.max(1)];
        let mut read = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Outcome::Passed(read),
                Ok(n) => {
                    read += n as u64;
                    bytes.acquire_blocking(n as f64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.add("bytes_read", read);
                    return if reader.quarantined().is_some() {
                        Outcome::Quarantined(e.to_string())
                    } else {
                        Outcome::Error(e.to_string())
                    };
                }
            }
        }
    }
}
