//! The recon cache: after each completed pass a daemon merges its figures
//! into `<recon_cache_path>/<server>.recon`, under the keys Swift's daemons
//! write, for the storage servers' `/recon/*` answers and `swift-recon`.
//!
//! A file is shared by several daemons of a process (and by a daemon run
//! alone with `--once`), so writers are serialised: a process-wide mutex,
//! and an advisory lock on the cache directory across processes. Each
//! write reads the file, merges the update as Swift's `dump_recon_cache`
//! does ([`apus_proto::recon::merge`]) and replaces the file atomically
//! (a temp file in the same directory, renamed over it). A failed write
//! is logged and never stops a daemon.
//!
//! What each daemon writes ([`pass_update`]):
//! - object replicator: `replication_stats`, `replication_time` (minutes),
//!   `replication_last`, `object_replication_time`, `object_replication_last`;
//! - object reconstructor: `object_reconstruction_time` (minutes),
//!   `object_reconstruction_last`;
//! - object auditor: `object_auditor_stats_ALL` (Swift writes it every
//!   `log_time` during a pass; apus at the end of each);
//! - object updater: `object_updater_sweep`, `object_updater_stats`,
//!   `object_updater_last`, and, doing the job of Swift's
//!   `swift-recon-cron`, `async_pending` and `async_pending_last`;
//! - object expirer: `object_expiration_pass`, `expired_last_pass`;
//! - container and account replicators: `replication_stats`,
//!   `replication_time` (seconds), `replication_last`;
//! - container and account auditors: `<type>_auditor_pass_completed` and
//!   the pass's `<type>_audits_{since,passed,failed}`;
//! - container updater: `container_updater_sweep`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apus_proto::recon as rc;
use serde_json::{json, Map, Value};

use crate::stats::PassStats;

/// Writers of this process, one at a time.
static WRITERS: Mutex<()> = Mutex::new(());

/// How long a writer waits for another process's lock before giving up
/// on this update (Swift's `lock_timeout`).
const LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's recon cache directory.
#[derive(Clone, Debug)]
pub struct ReconCache {
    dir: PathBuf,
}

impl ReconCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ReconCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Merges `update` into the cache file `file` (blocking).
    pub fn dump(&self, file: &str, update: Map<String, Value>) -> io::Result<()> {
        let _guard = WRITERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        fs::create_dir_all(&self.dir)?;
        let dir = fs::File::open(&self.dir)?;
        lock_exclusive(&dir)?;
        let path = self.dir.join(file);
        let mut entry = match fs::read_to_string(&path) {
            Ok(text) => rc::parse_entry(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(e),
        };
        rc::merge(&mut entry, update);
        let tmp = self.dir.join(format!(".{file}.{}.tmp", std::process::id()));
        let written =
            fs::write(&tmp, rc::entry_text(&entry)).and_then(|()| fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        // The directory lock goes with `dir`.
        written
    }
}

/// An exclusive advisory lock on `dir`, waiting at most [`LOCK_TIMEOUT`].
fn lock_exclusive(dir: &fs::File) -> io::Result<()> {
    use rustix::fs::{flock, FlockOperation};
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match flock(dir, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "recon cache is locked by another process",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a pass of `pass.worker` adds to the cache: the file and the
/// update, or `None` for a daemon Swift keeps no recon figures of (the
/// container reconciler) or a pass that did not complete. `now` is the
/// pass's end (seconds since the epoch).
pub fn pass_update(pass: &PassStats, now: f64) -> Option<(&'static str, Map<String, Value>)> {
    if !pass.completed {
        return None;
    }
    let c = |k: &str| pass.count(k);
    let secs = pass.elapsed_secs;
    let start = now - secs;
    let update = match pass.worker.as_str() {
        "object-replicator" => {
            let minutes = secs / 60.0;
            (
                rc::OBJECT_FILE,
                json!({
                    "replication_stats": {
                        "attempted": c("partitions"),
                        "failure": c("failures"),
                        "hashmatch": c("hashmatch"),
                        "remove": c("handoff_partitions_removed") + c("empty_partitions_removed"),
                        "rsync": c("syncs"),
                        "success": c("success"),
                        "suffix_count": c("suffixes_checked"),
                        "suffix_hash": c("suffixes_synced"),
                        "suffix_sync": c("suffixes_synced"),
                        "failure_nodes": {},
                    },
                    "replication_time": minutes,
                    "replication_last": now,
                    "object_replication_time": minutes,
                    "object_replication_last": now,
                }),
            )
        }
        "object-reconstructor" => (
            rc::OBJECT_FILE,
            json!({
                "object_reconstruction_time": secs / 60.0,
                "object_reconstruction_last": now,
                // Not in per-disk worker mode: no per-disk figures.
                "object_reconstruction_per_disk": {},
            }),
        ),
        "object-auditor" => {
            let audited = c("objects_audited") + c("ec_fragments_audited");
            (
                rc::OBJECT_FILE,
                json!({
                    "object_auditor_stats_ALL": {
                        "errors": c("errors"),
                        "passes": audited.saturating_sub(c("quarantined") + c("errors")),
                        "quarantined": c("quarantined"),
                        "bytes_processed": c("bytes_read"),
                        "start_time": start,
                        "audit_time": secs,
                    },
                }),
            )
        }
        "object-updater" => (
            rc::OBJECT_FILE,
            json!({
                "object_updater_sweep": secs,
                // apus keeps no tracker of the oldest failed updates:
                // these are the figures of an empty one.
                "object_updater_stats": {
                    "failures_account_container_count": 0,
                    "failures_oldest_timestamp": null,
                    "failures_oldest_timestamp_account_containers": {
                        "oldest_count": 0,
                        "oldest_entries": [],
                    },
                    "failures_oldest_timestamp_age": null,
                    "tracker_memory_usage": 0,
                },
                "object_updater_last": now,
            }),
        ),
        "object-expirer" => (
            rc::OBJECT_FILE,
            json!({
                "object_expiration_pass": secs,
                "expired_last_pass": c("objects"),
            }),
        ),
        "container-replicator" | "account-replicator" => {
            let file = if pass.worker.starts_with("container") {
                rc::CONTAINER_FILE
            } else {
                rc::ACCOUNT_FILE
            };
            (
                file,
                json!({
                    "replication_stats": {
                        "attempted": c("dbs"),
                        "success": c("success"),
                        "failure": c("failures"),
                        "ts_repl": 0,
                        "no_change": c("no_change"),
                        "hashmatch": c("hashmatch"),
                        "rsync": c("rsync"),
                        "diff": c("diff"),
                        "remove": c("remove"),
                        "empty": 0,
                        "remote_merge": 0,
                        "start": start,
                        "diff_capped": c("diff_capped"),
                        "deferred": 0,
                        "failure_nodes": {},
                    },
                    "replication_time": secs,
                    "replication_last": now,
                }),
            )
        }
        "container-auditor" | "account-auditor" => {
            let (file, t) = if pass.worker.starts_with("container") {
                (rc::CONTAINER_FILE, "container")
            } else {
                (rc::ACCOUNT_FILE, "account")
            };
            let mut m = Map::new();
            m.insert(format!("{t}_auditor_pass_completed"), json!(secs));
            m.insert(format!("{t}_audits_since"), json!(start));
            m.insert(format!("{t}_audits_passed"), json!(c("passes")));
            m.insert(format!("{t}_audits_failed"), json!(c("failures")));
            (file, Value::Object(m))
        }
        "container-updater" => (
            rc::CONTAINER_FILE,
            json!({ "container_updater_sweep": secs }),
        ),
        _ => return None,
    };
    match update {
        (file, Value::Object(m)) => Some((file, m)),
        _ => None,
    }
}

/// Async pendings waiting on the devices under `devices`, counted as
/// Swift's `swift-recon-cron` counts them: the entries of every
/// directory inside each device's `async_pending` and `async_pending-N`.
/// What cannot be listed counts nothing.
pub fn async_pending_count(devices: &Path) -> u64 {
    let list = |p: &Path| -> Vec<fs::DirEntry> {
        fs::read_dir(p)
            .map(|rd| rd.filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    let mut count = 0u64;
    for device in list(devices) {
        let dpath = device.path();
        if !dpath.is_dir() {
            continue;
        }
        for dir in list(&dpath) {
            let name = dir.file_name();
            let name = name.to_string_lossy();
            if !(name == "async_pending" || name.starts_with("async_pending-")) {
                continue;
            }
            for suffix in list(&dir.path()) {
                let spath = suffix.path();
                if spath.is_dir() {
                    count += list(&spath).len() as u64;
                }
            }
        }
    }
    count
}

/// Writes what `pass` adds to the cache (the object updater's pass adds
/// the async pending count of `devices` too). Blocking; errors are logged.
pub fn record_pass(cache: &ReconCache, devices: &Path, pass: &PassStats) {
    let now = apus_core::clock::now_secs();
    let Some((file, mut update)) = pass_update(pass, now) else {
        return;
    };
    if pass.worker == "object-updater" {
        update.insert("async_pending".into(), json!(async_pending_count(devices)));
        update.insert("async_pending_last".into(), json!(now));
    }
    if let Err(e) = cache.dump(file, update) {
        tracing::warn!(
            worker = %pass.worker, file, dir = %cache.dir().display(), error = %e,
            "cannot write the recon cache"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pass(worker: &str, secs: f64, counts: &[(&str, u64)]) -> PassStats {
        PassStats {
            worker: worker.into(),
            elapsed_secs: secs,
            completed: true,
            counts: counts
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn read(cache: &ReconCache, file: &str) -> Value {
        let text = fs::read_to_string(cache.dir().join(file)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn object_replicator_keys_are_what_swift_recon_reads() {
        let p = pass(
            "object-replicator",
            90.0,
            &[
                ("partitions", 10),
                ("failures", 1),
                ("success", 19),
                ("hashmatch", 15),
            ],
        );
        let (file, m) = pass_update(&p, 1000.0).unwrap();
        assert_eq!(file, "object.recon");
        let v = Value::Object(m);
        assert_eq!(v["replication_time"], json!(1.5));
        assert_eq!(v["object_replication_time"], json!(1.5));
        assert_eq!(v["replication_last"], json!(1000.0));
        assert_eq!(v["object_replication_last"], json!(1000.0));
        let s = &v["replication_stats"];
        assert_eq!(s["attempted"], json!(10));
        assert_eq!(s["failure"], json!(1));
        assert_eq!(s["success"], json!(19));
        assert_eq!(s["hashmatch"], json!(15));
        assert_eq!(s["failure_nodes"], json!({}));
    }

    #[test]
    fn each_daemon_writes_its_own_file_and_keys() {
        let keys = |worker: &str| {
            let (file, m) = pass_update(&pass(worker, 2.0, &[]), 10.0).unwrap();
            (file, m.keys().cloned().collect::<Vec<_>>())
        };
        assert_eq!(
            keys("account-replicator"),
            (
                "account.recon",
                vec![
                    "replication_last".into(),
                    "replication_stats".into(),
                    "replication_time".into()
                ]
            )
        );
        assert_eq!(
            keys("container-auditor"),
            (
                "container.recon",
                vec![
                    "container_auditor_pass_completed".into(),
                    "container_audits_failed".into(),
                    "container_audits_passed".into(),
                    "container_audits_since".into(),
                ]
            )
        );
        assert_eq!(
            keys("container-updater"),
            ("container.recon", vec!["container_updater_sweep".into()])
        );
        assert_eq!(
            keys("object-expirer"),
            (
                "object.recon",
                vec!["expired_last_pass".into(), "object_expiration_pass".into()]
            )
        );
        assert_eq!(keys("object-auditor").1, vec!["object_auditor_stats_ALL"]);
        assert_eq!(
            keys("object-updater").1,
            vec![
                "object_updater_last",
                "object_updater_stats",
                "object_updater_sweep"
            ]
        );
        assert!(pass_update(&pass("container-reconciler", 1.0, &[]), 1.0).is_none());
        let mut cut = pass("object-replicator", 1.0, &[]);
        cut.completed = false;
        assert!(pass_update(&cut, 1.0).is_none());
    }

    #[test]
    fn daemons_sharing_a_file_keep_each_others_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReconCache::new(dir.path().join("recon"));
        let devices = dir.path().join("devices");
        // Two async pendings on d1 (policy 0 and 1), one on d2, a stray file.
        for p in [
            "d1/async_pending/abc/f1",
            "d1/async_pending-1/def/f2",
            "d2/async_pending/abc/f3",
            "d2/objects/abc/f4",
        ] {
            let path = devices.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        }
        fs::write(devices.join("not-a-device"), "").unwrap();
        assert_eq!(async_pending_count(&devices), 3);
        assert_eq!(async_pending_count(&dir.path().join("missing")), 0);

        record_pass(
            &cache,
            &devices,
            &pass("object-replicator", 60.0, &[("partitions", 4)]),
        );
        record_pass(&cache, &devices, &pass("object-updater", 3.0, &[]));
        record_pass(&cache, &devices, &pass("container-updater", 5.0, &[]));
        let obj = read(&cache, "object.recon");
        assert_eq!(obj["replication_time"], json!(1.0));
        assert_eq!(obj["replication_stats"]["attempted"], json!(4));
        assert_eq!(obj["object_updater_sweep"], json!(3.0));
        assert_eq!(obj["async_pending"], json!(3));
        assert!(obj["async_pending_last"].as_f64().unwrap() > 1.6e9);
        assert_eq!(
            read(&cache, "container.recon"),
            json!({"container_updater_sweep": 5.0})
        );

        // A second replicator pass replaces its own figures only.
        record_pass(
            &cache,
            &devices,
            &pass("object-replicator", 120.0, &[("partitions", 7)]),
        );
        let obj = read(&cache, "object.recon");
        assert_eq!(obj["replication_time"], json!(2.0));
        assert_eq!(obj["replication_stats"]["attempted"], json!(7));
        assert_eq!(obj["async_pending"], json!(3));
        // One line, sorted keys, no temp files left behind.
        let text = fs::read_to_string(cache.dir().join("object.recon")).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("{\"async_pending\": 3, \"async_pending_last\": "));
        let names: Vec<String> = fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_torn_file_is_rewritten_and_concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReconCache::new(dir.path());
        fs::write(dir.path().join("object.recon"), "{\"half\": ").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        let mut m = Map::new();
                        m.insert(format!("key_{i}"), json!(j));
                        cache.dump("object.recon", m).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let v = read(&cache, "object.recon");
        let m = v.as_object().unwrap();
        assert_eq!(m.len(), 8);
        for i in 0..8 {
            assert_eq!(m[&format!("key_{i}")], json!(9));
        }
    }
}
