//! The object replicator: keeps every partition's objects on all of its
//! primary devices, and moves partitions off devices that are not theirs.
//!
//! A pass walks, per storage policy, every local device's
//! `objects[-N]/<partition>` directories. For a partition this device is
//! a primary of, it compares its suffix hashes with each other primary's
//! (`REPLICATE /<dev>/<part>`, answered from the peer's `hashes.pkl`);
//! suffixes that match cost nothing more. For suffixes that differ it
//! offers every object in them in a missing check (see
//! `apus_proto::replication`), then pushes what the peer wants: a data
//! file as a `PUT` streamed from disk with all of its metadata, a
//! tombstone as a `DELETE`, a newer `.meta` as a `POST` carrying its
//! metadata and content-type timestamp, each with
//! `X-Backend-Replication: True` so the peer keeps the timestamps.
//! Finally it asks the peer to rehash those suffixes. A peer that is
//! unreachable or unmounted (507) is replaced by a handoff device, as
//! Swift does, so a partition keeps its copies while a device is out.
//!
//! A partition this device is *not* a primary of (a handoff partition)
//! is pushed the same way to every primary, and removed only once every
//! primary has taken it and nothing was written to it meanwhile. A
//! handoff partition without suffixes is removed at once.
//!
//! Computing local hashes reclaims tombstones older than `reclaim_age`.
//! Every request is bounded by the client's connect and node timeouts;
//! every loop by what is on disk or in the ring.

use std::collections::HashSet;
use std::path::PathBuf;

use apus_diskfile::hashes::get_hashes;
use apus_diskfile::{
    DiskFileConfig, DiskFileError, DiskFileManager, HashTimestamps, OpenOptions, SuffixHashes,
};
use apus_proto::replication::{MissingLine, Wanted, MAX_MISSING_CHECK_BODY};
use apus_ring::{Device, Ring};
use futures_util::StreamExt;

use crate::context::{replication_host, DaemonContext, ServerKind};
use crate::push::{
    blocking, local_partitions, parse_remote_hashes, tombstone_name, Limits, PeerError, Peers,
};
use crate::stats::Stats;
use crate::worker::Worker;

/// Object replicator settings (Swift's `[object-replicator]` names).
#[derive(Clone, Debug)]
pub struct ObjectReplicatorSettings {
    /// Seconds after which tombstones are reclaimed (`reclaim_age`).
    pub reclaim_age: f64,
    /// Partitions replicated at once (`concurrency`).
    pub concurrency: usize,
    /// Objects pushed per second, over all partitions; 0 = unlimited.
    pub objects_per_second: f64,
    /// Object bytes pushed per second; 0 = unlimited. An object's bytes
    /// are booked before it is sent, so the rate holds on average.
    pub bytes_per_second: f64,
    /// Replicate handoff partitions before primary ones
    /// (`handoffs_first`), to drain a device quickly.
    pub handoffs_first: bool,
    /// Bytes of missing-check lines per request (at most
    /// `MAX_MISSING_CHECK_BODY`).
    pub missing_check_batch: usize,
    /// Bytes per read when streaming an object from disk.
    pub disk_chunk_size: usize,
}

impl Default for ObjectReplicatorSettings {
    fn default() -> Self {
        ObjectReplicatorSettings {
            reclaim_age: apus_diskfile::DEFAULT_RECLAIM_AGE,
            concurrency: 1,
            objects_per_second: 0.0,
            bytes_per_second: 0.0,
            handoffs_first: false,
            missing_check_batch: 1024 * 1024,
            disk_chunk_size: 65536,
        }
    }
}

/// The `object-replicator` worker.
#[derive(Debug, Default)]
pub struct ObjectReplicator {
    settings: ObjectReplicatorSettings,
}

impl ObjectReplicator {
    pub fn new(settings: ObjectReplicatorSettings) -> Self {
        ObjectReplicator { settings }
    }

    pub fn settings(&self) -> &ObjectReplicatorSettings {
        &self.settings
    }
}

/// One partition directory of one local device.
struct Job<'r> {
    policy: u32,
    ring: &'r Ring,
    local: &'r Device,
    partition: u32,
    part_dir: PathBuf,
    /// This device is one of the partition's primaries.
    primary: bool,
}

/// What a pass shares across its partitions.
struct Pass<'a> {
    ctx: &'a DaemonContext,
    settings: &'a ObjectReplicatorSettings,
    mgr: DiskFileManager,
    stats: &'a Stats,
    limits: Limits,
}

/// Suffixes whose local hash differs from the peer's (one the peer lacks
/// differs; two failed hashes, `None`, compare equal as in Swift).
fn differing(local: &SuffixHashes, remote: &SuffixHashes) -> Vec<String> {
    local
        .iter()
        .filter(|(suffix, hash)| remote.get(*suffix) != Some(*hash))
        .map(|(suffix, _)| suffix.clone())
        .collect()
}

impl Worker for ObjectReplicator {
    fn name(&self) -> &'static str {
        "object-replicator"
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let mut conf = DiskFileConfig::new(ctx.devices.clone(), ctx.hash.clone());
        conf.mount_check = ctx.mount_check;
        conf.reclaim_age = self.settings.reclaim_age;
        let pass = Pass {
            ctx,
            settings: &self.settings,
            mgr: DiskFileManager::new(conf),
            stats,
            limits: Limits::new(
                self.settings.objects_per_second,
                self.settings.bytes_per_second,
            ),
        };
        let mut jobs = Vec::new();
        for policy in ctx.replicated_policies() {
            let Some(ring) = rings.objects.get(&policy) else {
                continue;
            };
            for p in local_partitions(ctx, ring, policy, stats).await {
                jobs.push(Job {
                    policy,
                    ring,
                    primary: !p.positions.is_empty(),
                    local: p.local,
                    partition: p.partition,
                    part_dir: p.part_dir,
                });
            }
        }
        if self.settings.handoffs_first {
            jobs.sort_by_key(|j| j.primary);
        }
        let pass = &pass;
        futures_util::stream::iter(jobs)
            .for_each_concurrent(self.settings.concurrency.max(1), |job| async move {
                pass.stats.incr("partitions");
                if job.primary {
                    pass.update(&job).await;
                } else {
                    pass.revert(&job).await;
                }
            })
            .await;
        Ok(())
    }
}

impl Pass<'_> {
    /// This device's suffix hashes for the partition, rehashing
    /// `recalculate` (and reclaiming old tombstones on the way).
    async fn local_hashes(
        &self,
        job: &Job<'_>,
        recalculate: &[String],
    ) -> Result<SuffixHashes, String> {
        let dir = job.part_dir.clone();
        let recalc = recalculate.to_vec();
        let reclaim_age = self.settings.reclaim_age;
        let policy = job.policy;
        blocking(move || {
            let refs: Vec<&str> = recalc.iter().map(String::as_str).collect();
            get_hashes(&dir, &refs, reclaim_age, policy)
        })
        .await
    }

    fn peers<'p>(&'p self, job: &Job<'_>) -> Peers<'p> {
        Peers {
            ctx: self.ctx,
            stats: self.stats,
            policy: job.policy,
            partition: job.partition,
        }
    }

    /// The peer's suffix hashes for the partition.
    async fn remote_hashes(&self, job: &Job<'_>, node: &Device) -> Result<SuffixHashes, PeerError> {
        let body = self.peers(job).remote_hashes_raw(node, &[]).await?;
        parse_remote_hashes(&body).map_err(PeerError::Failed)
    }

    /// Brings `node` up to date with this device's copy of the partition.
    /// `local` holds this device's hashes and is refreshed when suffixes
    /// are rehashed.
    async fn sync_with(
        &self,
        job: &Job<'_>,
        node: &Device,
        local: &mut SuffixHashes,
    ) -> Result<(), PeerError> {
        let remote = self.remote_hashes(job, node).await?;
        if differing(local, &remote).is_empty() {
            self.stats.incr("hashmatch");
            return Ok(());
        }
        // The cached hashes may be stale: rehash the differing suffixes
        // before paying for a missing check.
        let suffixes = differing(local, &remote);
        *local = self
            .local_hashes(job, &suffixes)
            .await
            .map_err(PeerError::Failed)?;
        let suffixes = differing(local, &remote);
        if suffixes.is_empty() {
            self.stats.incr("hashmatch");
            return Ok(());
        }
        self.stats.add("suffixes_synced", suffixes.len() as u64);
        self.stats.incr("syncs");
        let pushed = self.push_suffixes(job, node, &suffixes).await;
        self.peers(job).invalidate_suffixes(node, &suffixes).await;
        pushed
    }

    /// Offers every object of `suffixes` to `node` and pushes what it wants.
    async fn push_suffixes(
        &self,
        job: &Job<'_>,
        node: &Device,
        suffixes: &[String],
    ) -> Result<(), PeerError> {
        let mgr = self.mgr.clone();
        let device = job.local.device.clone();
        let (partition, policy) = (job.partition, job.policy);
        let sufs = suffixes.to_vec();
        let objects: Vec<(String, HashTimestamps)> = blocking(move || {
            let refs: Vec<&str> = sufs.iter().map(String::as_str).collect();
            mgr.yield_hashes(&device, partition, policy, Some(&refs))
        })
        .await
        .map_err(PeerError::Failed)?;
        let batch_limit = self
            .settings
            .missing_check_batch
            .clamp(1, MAX_MISSING_CHECK_BODY);
        let mut failure = None;
        let mut start = 0;
        while start < objects.len() {
            let mut body = String::new();
            let mut offered = HashSet::new();
            let mut end = start;
            // Each batch takes at least one line, so the loop ends.
            while let Some((hash, ts)) = objects.get(end) {
                let line = MissingLine {
                    hash,
                    ts_data: ts.ts_data,
                    ts_meta: ts.ts_meta.unwrap_or(ts.ts_data),
                    ts_ctype: ts.ts_ctype.unwrap_or(ts.ts_data),
                    durable: true,
                }
                .encode();
                if !body.is_empty() && body.len() + line.len() + 1 > batch_limit {
                    break;
                }
                body.push_str(&line);
                body.push('\n');
                offered.insert(hash.as_str());
                end += 1;
            }
            start = end;
            let wanted = self.peers(job).missing_check(node, body, &[]).await?;
            for (hash, want) in wanted {
                if !offered.contains(hash.as_str()) {
                    continue;
                }
                if let Err(e) = self.push_object(job, node, &hash, want).await {
                    tracing::warn!(node = %replication_host(node), hash, error = %e, "push failed");
                    failure = Some(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends `node` what it wants of one object, as Swift's ssync sender
    /// does: the data (or tombstone), then the newer metadata.
    async fn push_object(
        &self,
        job: &Job<'_>,
        node: &Device,
        hash: &str,
        want: Wanted,
    ) -> Result<(), PeerError> {
        self.limits.objects.lock().await.acquire(1.0).await;
        let mgr = self.mgr.clone();
        let device = job.local.device.clone();
        let (partition, policy) = (job.partition, job.policy);
        let hash_owned = hash.to_string();
        let opened = tokio::task::spawn_blocking(move || {
            let df = mgr.diskfile_from_hash(&device, partition, &hash_owned, policy)?;
            Ok::<_, DiskFileError>(df.open(OpenOptions {
                open_expired: true,
                now: None,
            }))
        })
        .await
        .map_err(|e| PeerError::Failed(e.to_string()))?
        .map_err(|e| PeerError::Failed(e.to_string()))?;
        match opened {
            Ok(open) => {
                let meta = open.metafile_metadata().cloned();
                let name = open.datafile_metadata().name().map(str::to_string);
                let has_newer_meta = open.data_timestamp() != open.timestamp();
                if want.data {
                    self.peers(job)
                        .push_file(node, open, &[], self.settings.disk_chunk_size, &self.limits)
                        .await?;
                }
                if want.meta && has_newer_meta {
                    if let (Some(md), Some(name)) = (meta, name) {
                        self.peers(job).send_post(node, &name, &md, &[]).await?;
                    }
                }
                Ok(())
            }
            Err(DiskFileError::Deleted {
                timestamp,
                metadata,
            }) => {
                if !want.data {
                    return Ok(());
                }
                let name = tombstone_name(self.ctx, &metadata, hash)?;
                self.peers(job)
                    .send_delete(node, name, timestamp, &[])
                    .await
            }
            Err(e) => {
                // Gone or quarantined since it was listed: the next pass
                // sees the new state.
                tracing::info!(hash, error = %e, "object not pushed");
                self.stats.incr("objects_skipped");
                Ok(())
            }
        }
    }

    /// A primary partition: sync with every other primary, a handoff
    /// standing in for one that is unreachable or unmounted.
    async fn update(&self, job: &Job<'_>) {
        let mut local = match self.local_hashes(job, &[]).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(dir = %job.part_dir.display(), error = %e, "cannot hash partition");
                self.stats.incr("failures");
                return;
            }
        };
        self.stats.add("suffixes_checked", local.len() as u64);
        let is_me = |d: &Device| {
            d.device == job.local.device && self.ctx.identity.is_local(d, ServerKind::Object)
        };
        let mut nodes: Vec<&Device> = job
            .ring
            .primaries(job.partition)
            .into_iter()
            .filter(|d| !is_me(d))
            .collect();
        let mut handoffs = job.ring.handoffs(job.partition).filter(|d| !is_me(d));
        // Bounded: at most one ring's worth of stand-ins per partition.
        let mut stand_ins_left = job.ring.replica_count();
        let mut i = 0;
        while let Some(&node) = nodes.get(i) {
            i += 1;
            let synced = self.sync_with(job, node, &mut local).await;
            if synced.is_ok() {
                self.stats.incr("success");
            }
            if let Err(e) = synced {
                self.stats.incr("failures");
                tracing::warn!(
                    node = %replication_host(node), device = %node.device,
                    partition = job.partition, error = %e, "replication failed"
                );
                if e.wants_handoff() && stand_ins_left > 0 {
                    if let Some(h) = handoffs.next() {
                        stand_ins_left -= 1;
                        nodes.push(h);
                    }
                }
            }
        }
    }

    /// A handoff partition: push it to every primary, then remove it if
    /// all of them took it.
    async fn revert(&self, job: &Job<'_>) {
        let mut local = match self.local_hashes(job, &[]).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(dir = %job.part_dir.display(), error = %e, "cannot hash partition");
                self.stats.incr("failures");
                return;
            }
        };
        self.stats.add("suffixes_checked", local.len() as u64);
        if local.is_empty() {
            if self.remove_partition(job).await {
                self.stats.incr("empty_partitions_removed");
            }
            return;
        }
        let mut all_ok = true;
        for node in job.ring.primaries(job.partition) {
            let synced = self.sync_with(job, node, &mut local).await;
            if synced.is_ok() {
                self.stats.incr("success");
            }
            if let Err(e) = synced {
                self.stats.incr("failures");
                tracing::warn!(
                    node = %replication_host(node), device = %node.device,
                    partition = job.partition, error = %e, "handoff push failed"
                );
                all_ok = false;
            }
        }
        if !all_ok {
            return;
        }
        // A write that landed during the push changed the hashes: keep
        // the partition for the next pass rather than lose it.
        match self.local_hashes(job, &[]).await {
            Ok(now) if now == local => {
                if self.remove_partition(job).await {
                    self.stats.incr("handoff_partitions_removed");
                }
            }
            Ok(_) => {
                tracing::info!(dir = %job.part_dir.display(), "handoff changed while pushed; kept")
            }
            Err(e) => {
                tracing::error!(dir = %job.part_dir.display(), error = %e, "cannot rehash partition");
                self.stats.incr("failures");
            }
        }
    }

    async fn remove_partition(&self, job: &Job<'_>) -> bool {
        let dir = job.part_dir.clone();
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await;
        match removed {
            Ok(Ok(())) => {
                tracing::info!(dir = %job.part_dir.display(), "removed partition");
                true
            }
            Ok(Err(e)) => {
                tracing::error!(dir = %job.part_dir.display(), error = %e, "cannot remove partition");
                self.stats.incr("failures");
                false
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_suffixes_follow_swifts_comparison() {
        let local: SuffixHashes = [
            ("abc".to_string(), Some("1".to_string())),
            ("abd".to_string(), Some("2".to_string())),
            ("abe".to_string(), None),
            ("abf".to_string(), None),
        ]
        .into_iter()
        .collect();
        let remote: SuffixHashes = [
            ("abc".to_string(), Some("1".to_string())),
            ("abd".to_string(), Some("3".to_string())),
            ("abe".to_string(), None),
            ("fff".to_string(), Some("9".to_string())),
        ]
        .into_iter()
        .collect();
        assert_eq!(differing(&local, &remote), ["abd", "abf"]);
    }
}
