//! The object updater: replays the container updates that object servers
//! saved as async pendings (`<dev>/async_pending[-N]/...`) because a
//! container server was unreachable.
//!
//! Each saved update goes to every primary container server of its
//! container that has not taken it yet; the ids of those that did are
//! recorded in the file (Swift's `successes`), and the file is removed
//! once all have. Of several updates saved for one object only the newest
//! is sent: the older ones are obsolete and removed. An unreadable file is
//! moved to `<dev>/quarantined/objects/`.

use std::path::Path;
use std::sync::Arc;

use apus_diskfile::{read_async_pending, remove_async_pending, AsyncPendingEntry, AsyncUpdate};
use apus_proto::headers as h;
use apus_proto::update::ContainerUpdate;
use http::{HeaderValue, Method};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::context::{device_host, DaemonContext, Rings};
use crate::rate::RateLimiter;
use crate::stats::Stats;
use crate::worker::Worker;

/// Settings (Swift's `object-updater` section).
#[derive(Clone, Debug)]
pub struct ObjectUpdaterSettings {
    /// Updates sent per second at most; 0 = unlimited.
    pub objects_per_second: f64,
    /// Updates in flight at once.
    pub concurrency: usize,
}

impl Default for ObjectUpdaterSettings {
    fn default() -> Self {
        ObjectUpdaterSettings {
            objects_per_second: 50.0,
            concurrency: 8,
        }
    }
}

pub struct ObjectUpdater {
    pub settings: ObjectUpdaterSettings,
}

impl ObjectUpdater {
    pub fn new(settings: ObjectUpdaterSettings) -> Self {
        ObjectUpdater { settings }
    }
}

impl Worker for ObjectUpdater {
    fn name(&self) -> &'static str {
        "object-updater"
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let mgr = ctx.diskfile();
        let mut limiter = RateLimiter::new(self.settings.objects_per_second);
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for device in ctx.device_dirs() {
            if ctx.device_path(&device).is_none() {
                stats.incr("unmounted");
                continue;
            }
            let listing = {
                let (mgr, device) = (mgr.clone(), device.clone());
                tokio::task::spawn_blocking(move || mgr.list_async_pendings(&device)).await
            };
            let entries = match listing {
                Ok(Ok(entries)) => entries,
                Ok(Err(e)) => {
                    tracing::error!(%device, error = %e, "cannot list async pendings");
                    stats.incr("errors");
                    continue;
                }
                Err(e) => return Err(format!("listing task failed: {e}")),
            };
            let mut last_hash: Option<(u32, String)> = None;
            for entry in entries {
                // Entries of one object come newest first: the rest are
                // superseded by the one already handled.
                let key = (entry.policy, entry.hash.clone());
                if last_hash.as_ref() == Some(&key) {
                    let path = entry.path.clone();
                    let _ = tokio::task::spawn_blocking(move || remove_async_pending(&path)).await;
                    stats.incr("unlinks");
                    continue;
                }
                last_hash = Some(key);
                limiter.acquire(1.0).await;
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let job = UpdateJob {
                    ctx: ctx.clone(),
                    rings: rings.clone(),
                    mgr: mgr.clone(),
                    device: device.clone(),
                    entry,
                    stats: stats.clone(),
                };
                tasks.spawn(async move {
                    job.run().await;
                    drop(permit);
                });
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

struct UpdateJob {
    ctx: DaemonContext,
    rings: Arc<Rings>,
    mgr: apus_diskfile::DiskFileManager,
    device: String,
    entry: AsyncPendingEntry,
    stats: Stats,
}

impl UpdateJob {
    async fn run(self) {
        let path = self.entry.path.clone();
        let read = tokio::task::spawn_blocking(move || read_async_pending(&path)).await;
        let mut update = match read {
            Ok(Ok(u)) => u,
            Ok(Err(apus_diskfile::DiskFileError::NotFound)) => return,
            Ok(Err(e)) => {
                tracing::error!(path = %self.entry.path.display(), error = %e, "ERROR Pickle problem, quarantining");
                self.quarantine().await;
                return;
            }
            Err(_) => return,
        };
        self.stats.incr("found");
        // A shard redirect names the container to update instead.
        let (account, container) = match update
            .container_path
            .as_deref()
            .and_then(|p| p.split_once('/'))
        {
            Some((a, c)) => (a.to_string(), c.to_string()),
            None => (update.account.clone(), update.container.clone()),
        };
        let ring = &self.rings.container;
        let part = ring.partition(&self.ctx.hash, &account, Some(&container), None);
        let mut new_successes = false;
        let mut all_ok = true;
        for node in ring.primaries(part) {
            if update.successes.contains(&node.id) {
                continue;
            }
            if self
                .send(&update, &node.device, part, &device_host(node))
                .await
            {
                update.successes.push(node.id);
                new_successes = true;
            } else {
                all_ok = false;
            }
        }
        if all_ok {
            self.stats.incr("successes");
            let path = self.entry.path.clone();
            let _ = tokio::task::spawn_blocking(move || remove_async_pending(&path)).await;
        } else {
            self.stats.incr("failures");
            if new_successes {
                let (mgr, device, policy, path) = (
                    self.mgr.clone(),
                    self.device.clone(),
                    self.entry.policy,
                    self.entry.path.clone(),
                );
                let rewrite = tokio::task::spawn_blocking(move || {
                    mgr.rewrite_async_pending(&device, policy, &path, &update)
                })
                .await;
                if !matches!(rewrite, Ok(Ok(()))) {
                    self.stats.incr("errors");
                }
            }
        }
    }

    /// Sends the update to one container server; true on a 2xx.
    async fn send(&self, update: &AsyncUpdate, device: &str, part: u32, host: &str) -> bool {
        let mut msg =
            ContainerUpdate::new(&update.op, &update.account, &update.container, &update.obj);
        msg.headers = update.headers.clone();
        msg.container_path = update.container_path.clone();
        let mut headers = msg.to_header_map();
        // Queue entries carry policy 0 whatever the object's policy; only
        // updates without one take the policy of the directory.
        if !headers.contains_key(h::X_BACKEND_STORAGE_POLICY_INDEX) {
            headers.insert(
                h::X_BACKEND_STORAGE_POLICY_INDEX,
                HeaderValue::from(self.entry.policy),
            );
        }
        if let Ok(ua) = HeaderValue::from_str(&format!("object-updater {}", std::process::id())) {
            headers.insert(http::header::USER_AGENT, ua);
        }
        let Ok(method) = Method::from_bytes(update.op.as_bytes()) else {
            return false;
        };
        let path = msg.request_path(device, &part.to_string());
        match self
            .ctx
            .client
            .request(method, host, &path, headers, apus_http::empty())
            .await
        {
            Ok(resp) => {
                let status = resp.status();
                let _ = apus_http::body::collect_limited(resp.into_body(), 1 << 16).await;
                if !status.is_success() {
                    tracing::warn!(%host, %device, status = status.as_u16(), "container update refused");
                }
                status.is_success()
            }
            Err(e) => {
                tracing::warn!(%host, %device, error = %e, "container update failed");
                false
            }
        }
    }

    async fn quarantine(&self) {
        self.stats.incr("quarantined");
        let dev = self.ctx.devices.join(&self.device);
        let from = self.entry.path.clone();
        let _ = tokio::task::spawn_blocking(move || quarantine_file(&dev, &from)).await;
    }
}

/// Moves a bad pending file to `<dev>/quarantined/objects/<name>`.
fn quarantine_file(device_path: &Path, from: &Path) -> std::io::Result<()> {
    let dir = device_path.join("quarantined").join("objects");
    std::fs::create_dir_all(&dir)?;
    let name = from.file_name().unwrap_or_default();
    std::fs::rename(from, dir.join(name))
}
