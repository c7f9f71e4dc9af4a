//! The object reconstructor: keeps every fragment archive of an
//! erasure-coded object on the primary of its index, as Swift's does.
//!
//! A pass walks, per EC policy, every local device's `objects-N/<part>`
//! directories. For each partition it does two jobs:
//!
//! - **Revert**: fragments this device holds but is not the primary for
//!   (every fragment of a handoff partition; another index's fragment on a
//!   primary) go to the primary of their index. A missing check (naming
//!   the index in `X-Backend-Ssync-Frag-Index`) asks what that primary
//!   lacks; it gets the archive as a replication PUT, durable at once
//!   unless it was not durable here (`X-Backend-No-Commit`), and newer
//!   metadata as a POST. Once the primary holds an object's fragment, the
//!   local copy is purged; a non-durable one only after
//!   `nondurable_purge_delay`, as in Swift. A handoff's tombstones go to
//!   every primary and are purged once all have them. A handoff partition
//!   left with nothing is removed.
//! - **Sync**: for each index this device is a primary of, the partners
//!   on either side in the ring's order of primaries (Swift's left and
//!   right partners) are compared suffix by suffix (`REPLICATE`, per-index
//!   hashes). For a suffix that differs, this device offers its durable
//!   fragments and tombstones in a missing check naming the partner's
//!   index; for each object the partner lacks, the partner's fragment is
//!   **rebuilt**: `ndata` fragments of the same timestamp are read from
//!   the other primaries (`X-Backend-Fragment-Preferences` pins the
//!   timestamp), decoded segment by segment into the missing archive with
//!   [`apus_ec::ArchiveDecoder`], and streamed as a replication PUT. A
//!   fragment the partner holds non-durable is made durable by its missing
//!   check instead; a tombstone is sent as a DELETE. Every fragment index
//!   thus has two primaries watching it.
//!
//! Computing local hashes reclaims tombstones and non-durable fragments
//! older than `reclaim_age`, as the object server's hashing does. Pushes
//! are paced by `objects_per_second` and `bytes_per_second`. Memory per
//! rebuild is about one fragment per source.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use apus_core::policy::EcParams;
use apus_core::Timestamp;
use apus_diskfile::pickle::Value;
use apus_diskfile::{
    layout, DiskFileConfig, DiskFileError, DiskFileManager, EcPolicy, EcSuffixHash, EcSuffixHashes,
    FragPref, FragSelect, OpenOptions,
};
use apus_ec::{ArchiveDecoder, EcScheme, EcType};
use apus_http::Body;
use apus_proto::ec as pec;
use apus_proto::replication::{MissingLine, Wanted, MAX_MISSING_CHECK_BODY};
use apus_ring::{Device, Ring};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use http::{HeaderValue, Method};
use http_body_util::BodyExt;

use crate::context::{replication_host, DaemonContext, ServerKind};
use crate::push::{
    blocking, local_partitions, metadata_headers, parse_pickled_suffixes, tombstone_name, Limits,
    PeerError, Peers,
};
use crate::stats::Stats;
use crate::worker::Worker;

/// Handoffs tried, in ring order, to hold a rebuilt fragment whose
/// primary is down (Swift's `rebuild_handoff_node_count` default).
const REBUILD_HANDOFF_NODE_COUNT: usize = 2;

/// Object reconstructor settings (Swift's `[object-reconstructor]` names).
#[derive(Clone, Debug)]
pub struct ObjectReconstructorSettings {
    /// Seconds after which tombstones and non-durable fragments are
    /// reclaimed (`reclaim_age`).
    pub reclaim_age: f64,
    /// Seconds a non-durable fragment may still be waiting for its commit
    /// (`commit_window`): not reclaimed before.
    pub commit_window: f64,
    /// Seconds before a reverted non-durable fragment is purged
    /// (`nondurable_purge_delay`).
    pub nondurable_purge_delay: f64,
    /// Partitions processed at once (`concurrency`).
    pub concurrency: usize,
    /// Objects pushed per second; 0 = unlimited.
    pub objects_per_second: f64,
    /// Archive bytes pushed per second; 0 = unlimited.
    pub bytes_per_second: f64,
    /// Revert handoff partitions before syncing primary ones
    /// (`handoffs_first`).
    pub handoffs_first: bool,
    /// Bytes of missing-check lines per request.
    pub missing_check_batch: usize,
    /// Bytes per read when streaming an archive from disk.
    pub disk_chunk_size: usize,
}

impl Default for ObjectReconstructorSettings {
    fn default() -> Self {
        ObjectReconstructorSettings {
            reclaim_age: apus_diskfile::DEFAULT_RECLAIM_AGE,
            commit_window: apus_diskfile::DEFAULT_COMMIT_WINDOW,
            nondurable_purge_delay: 60.0,
            concurrency: 1,
            objects_per_second: 0.0,
            bytes_per_second: 0.0,
            handoffs_first: false,
            missing_check_batch: 1024 * 1024,
            disk_chunk_size: 65536,
        }
    }
}

/// The `object-reconstructor` worker.
#[derive(Debug, Default)]
pub struct ObjectReconstructor {
    settings: ObjectReconstructorSettings,
}

impl ObjectReconstructor {
    pub fn new(settings: ObjectReconstructorSettings) -> Self {
        ObjectReconstructor { settings }
    }

    pub fn settings(&self) -> &ObjectReconstructorSettings {
        &self.settings
    }
}

/// An EC policy as the reconstructor uses it.
struct EcInfo {
    policy: EcPolicy,
    scheme: EcScheme,
    segment_size: u64,
}

impl EcInfo {
    fn new(index: u32, params: &EcParams) -> Result<EcInfo, String> {
        let ec_type: EcType = params
            .ec_type
            .parse()
            .map_err(|e: apus_ec::EcError| e.to_string())?;
        let scheme = EcScheme::new(ec_type, params.ndata as usize, params.nparity as usize)
            .map_err(|e| e.to_string())?;
        Ok(EcInfo {
            policy: EcPolicy::new(index, params.ndata, params.nparity),
            scheme,
            segment_size: params.segment_size,
        })
    }
}

/// One partition directory of one local device.
struct Job<'r> {
    ec: &'r EcInfo,
    ring: &'r Ring,
    local: &'r Device,
    partition: u32,
    part_dir: PathBuf,
    /// The fragment indexes this device is the primary of (none for a
    /// handoff partition).
    own_indexes: Vec<u32>,
}

impl Job<'_> {
    fn primary_of(&self, frag_index: u32) -> Option<&Device> {
        self.ring
            .primaries(self.partition)
            .get(frag_index as usize)
            .copied()
    }
}

/// One fragment (or tombstone) found on disk that belongs elsewhere.
#[derive(Clone, Debug)]
struct Stray {
    hash: String,
    timestamp: Timestamp,
    /// `None` for a tombstone.
    frag_index: Option<u32>,
    durable: bool,
    meta: Option<Timestamp>,
    ctype: Option<Timestamp>,
}

impl Stray {
    fn offer(&self) -> String {
        MissingLine {
            hash: &self.hash,
            ts_data: self.timestamp,
            ts_meta: self.meta.unwrap_or(self.timestamp),
            ts_ctype: self.ctype.unwrap_or(self.timestamp),
            durable: self.durable,
        }
        .encode()
    }
}

/// What a pass shares across its partitions.
struct Pass<'a> {
    ctx: &'a DaemonContext,
    settings: &'a ObjectReconstructorSettings,
    mgr: DiskFileManager,
    stats: &'a Stats,
    limits: Limits,
}

/// Swift's `get_suffix_delta`: suffixes whose common entries (`None`:
/// tombstones, metadata) or whose `local_index` fragments hash
/// differently from the peer's `remote_index` fragments.
fn suffix_delta(
    local: &EcSuffixHashes,
    local_index: u32,
    remote: &EcSuffixHashes,
    remote_index: u32,
) -> Vec<String> {
    let empty = EcSuffixHash::new();
    local
        .iter()
        .filter(|(suffix, local_sub)| {
            let local_sub = local_sub.as_ref().unwrap_or(&empty);
            let remote_sub = remote
                .get(*suffix)
                .and_then(Option::as_ref)
                .unwrap_or(&empty);
            local_sub.get(&None) != remote_sub.get(&None)
                || local_sub.get(&Some(local_index)) != remote_sub.get(&Some(remote_index))
        })
        .map(|(suffix, _)| suffix.clone())
        .collect()
}

/// An EC partition's pickled `{suffix: {index or None: hash} or None}`.
fn parse_remote_ec_hashes(body: &[u8]) -> Result<EcSuffixHashes, String> {
    use apus_diskfile::hashes::SuffixHashValue;
    parse_pickled_suffixes(body, |v| match v {
        Value::None => Ok(None),
        v => EcSuffixHash::from_pickle(v)
            .map(Some)
            .ok_or_else(|| "suffix hash is not a dict of hashes".to_string()),
    })
}

/// Splits missing-check lines into bodies of at most `limit` bytes (each
/// with at least one line, so the split ends).
fn batches(lines: &[String], limit: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let mut end = start;
        let mut len = 0;
        while let Some(line) = lines.get(end) {
            if end > start && len + line.len() + 1 > limit {
                break;
            }
            len += line.len() + 1;
            end += 1;
        }
        out.push((start, end));
        start = end;
    }
    out
}

impl Worker for ObjectReconstructor {
    fn name(&self) -> &'static str {
        "object-reconstructor"
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let mut conf = DiskFileConfig::new(ctx.devices.clone(), ctx.hash.clone());
        conf.mount_check = ctx.mount_check;
        conf.reclaim_age = self.settings.reclaim_age;
        conf.commit_window = self.settings.commit_window;
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
        let mut infos = Vec::new();
        for (&index, params) in &ctx.ec_params {
            match EcInfo::new(index, params) {
                Ok(info) => infos.push(info),
                Err(e) => {
                    tracing::error!(policy = index, error = %e, "unusable EC policy");
                    stats.incr("failures");
                }
            }
        }
        let mut jobs = Vec::new();
        for info in &infos {
            let policy = info.policy.index;
            let Some(ring) = rings.objects.get(&policy) else {
                continue;
            };
            for p in local_partitions(ctx, ring, policy, stats).await {
                jobs.push(Job {
                    ec: info,
                    ring,
                    local: p.local,
                    partition: p.partition,
                    part_dir: p.part_dir,
                    own_indexes: p.positions,
                });
            }
        }
        if self.settings.handoffs_first {
            jobs.sort_by_key(|j| !j.own_indexes.is_empty());
        }
        let pass = &pass;
        futures_util::stream::iter(jobs)
            .for_each_concurrent(self.settings.concurrency.max(1), |job| async move {
                pass.stats.incr("partitions");
                pass.process(&job).await;
            })
            .await;
        Ok(())
    }
}

impl Pass<'_> {
    fn peers<'p>(&'p self, job: &Job<'_>) -> Peers<'p> {
        Peers {
            ctx: self.ctx,
            stats: self.stats,
            policy: job.ec.policy.index,
            partition: job.partition,
        }
    }

    async fn local_hashes(
        &self,
        job: &Job<'_>,
        recalculate: &[String],
    ) -> Result<EcSuffixHashes, String> {
        let mgr = self.mgr.clone();
        let device = job.local.device.clone();
        let (partition, policy) = (job.partition, job.ec.policy);
        let recalc = recalculate.to_vec();
        blocking(move || {
            let refs: Vec<&str> = recalc.iter().map(String::as_str).collect();
            mgr.get_hashes_ec(&device, partition, &policy, &refs)
        })
        .await
    }

    async fn process(&self, job: &Job<'_>) {
        let mut local = match self.local_hashes(job, &[]).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(dir = %job.part_dir.display(), error = %e, "cannot hash partition");
                self.stats.incr("failures");
                return;
            }
        };
        self.stats.add("suffixes_checked", local.len() as u64);
        let reverted_all = self.revert(job).await;
        if job.own_indexes.is_empty() {
            if reverted_all {
                self.remove_if_empty(job).await;
            }
            return;
        }
        let width = job.ec.policy.width();
        for &own in &job.own_indexes {
            // The left and right partners, each once (a 2-wide policy has
            // one partner; a device may be a partner of itself).
            let mut partners = Vec::new();
            for index in [(own + width - 1) % width, (own + 1) % width] {
                if index != own && !partners.contains(&index) {
                    partners.push(index);
                }
            }
            for partner in partners {
                let Some(node) = job.primary_of(partner) else {
                    continue;
                };
                let Err(e) = self.sync(job, own, partner, node, &mut local).await else {
                    continue;
                };
                self.stats.incr("failures");
                tracing::warn!(
                    node = %replication_host(node), device = %node.device,
                    partition = job.partition, frag_index = partner, error = %e,
                    "reconstructor sync failed"
                );
                if e.wants_handoff() {
                    self.sync_stand_in(job, own, partner, &mut local).await;
                }
            }
        }
    }

    /// A partner that is down or unmounted has its fragments rebuilt on a
    /// handoff instead (the first of Swift's `rebuild_handoff_node_count`
    /// handoffs that answers), so the object keeps `ndata + nparity`
    /// fragments meanwhile; the handoff reverts them once the primary is
    /// back.
    async fn sync_stand_in(
        &self,
        job: &Job<'_>,
        own: u32,
        partner: u32,
        local: &mut EcSuffixHashes,
    ) {
        let is_me = |d: &Device| {
            d.device == job.local.device && self.ctx.identity.is_local(d, ServerKind::Object)
        };
        let stand_ins: Vec<&Device> = job
            .ring
            .handoffs(job.partition)
            .filter(|d| !is_me(d))
            .take(REBUILD_HANDOFF_NODE_COUNT)
            .collect();
        for node in stand_ins {
            match self.sync(job, own, partner, node, local).await {
                Ok(()) => {
                    self.stats.incr("handoff_rebuilds");
                    return;
                }
                Err(e) => {
                    self.stats.incr("failures");
                    tracing::warn!(
                        node = %replication_host(node), device = %node.device,
                        partition = job.partition, frag_index = partner, error = %e,
                        "rebuilding on a handoff failed"
                    );
                    if !e.wants_handoff() {
                        return;
                    }
                }
            }
        }
    }

    // ---- sync: rebuild the partners' missing fragments --------------------

    async fn sync(
        &self,
        job: &Job<'_>,
        own: u32,
        partner: u32,
        node: &Device,
        local: &mut EcSuffixHashes,
    ) -> Result<(), PeerError> {
        let peers = self.peers(job);
        let raw = peers.remote_hashes_raw(node, &[]).await?;
        let remote = parse_remote_ec_hashes(&raw).map_err(PeerError::Failed)?;
        let suffixes = suffix_delta(local, own, &remote, partner);
        if suffixes.is_empty() {
            self.stats.incr("hashmatch");
            return Ok(());
        }
        // The cached hashes may be stale: rehash before a missing check.
        *local = self
            .local_hashes(job, &suffixes)
            .await
            .map_err(PeerError::Failed)?;
        let suffixes = suffix_delta(local, own, &remote, partner);
        if suffixes.is_empty() {
            self.stats.incr("hashmatch");
            return Ok(());
        }
        self.stats.add("suffixes_synced", suffixes.len() as u64);
        let mgr = self.mgr.clone();
        let device = job.local.device.clone();
        let (partition, policy) = (job.partition, job.ec.policy);
        let sufs = suffixes.clone();
        let objects = blocking(move || {
            let refs: Vec<&str> = sufs.iter().map(String::as_str).collect();
            mgr.yield_hashes_ec(
                &device,
                partition,
                &policy,
                Some(&refs),
                &FragSelect::index(own),
            )
        })
        .await
        .map_err(PeerError::Failed)?;
        // Only durable fragments are rebuilt from: a non-durable one may
        // still be committed or reclaimed, and its peers may not have it.
        let lines: Vec<(String, String)> = objects
            .iter()
            .filter(|(_, ts)| ts.durable)
            .map(|(hash, ts)| {
                let line = MissingLine {
                    hash,
                    ts_data: ts.ts_data,
                    ts_meta: ts.ts_meta.unwrap_or(ts.ts_data),
                    ts_ctype: ts.ts_ctype.unwrap_or(ts.ts_data),
                    durable: true,
                }
                .encode();
                (hash.clone(), line)
            })
            .collect();
        let index_header = [(pec::X_BACKEND_SSYNC_FRAG_INDEX, partner.to_string())];
        let mut failure = None;
        let texts: Vec<String> = lines.iter().map(|(_, l)| l.clone()).collect();
        for (start, end) in batches(&texts, self.batch_limit()) {
            let body = texts[start..end].join("\n");
            let offered: HashSet<&str> =
                lines[start..end].iter().map(|(h, _)| h.as_str()).collect();
            let wanted = peers.missing_check(node, body, &index_header).await?;
            for (hash, want) in wanted {
                if !offered.contains(hash.as_str()) {
                    continue;
                }
                if let Err(e) = self
                    .push_rebuilt(job, own, partner, node, &hash, want)
                    .await
                {
                    tracing::warn!(node = %replication_host(node), hash, error = %e, "rebuild failed");
                    self.stats.incr("rebuild_failures");
                    failure = Some(e);
                }
            }
        }
        peers.invalidate_suffixes(node, &suffixes).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn batch_limit(&self) -> usize {
        self.settings
            .missing_check_batch
            .clamp(1, MAX_MISSING_CHECK_BODY)
    }

    /// Sends the partner what it wants of one object: its fragment rebuilt
    /// from `ndata` others, newer metadata, or the tombstone.
    async fn push_rebuilt(
        &self,
        job: &Job<'_>,
        own: u32,
        partner: u32,
        node: &Device,
        hash: &str,
        want: Wanted,
    ) -> Result<(), PeerError> {
        self.limits.objects.lock().await.acquire(1.0).await;
        let mgr = self.mgr.clone();
        let device = job.local.device.clone();
        let (partition, policy) = (job.partition, job.ec.policy);
        let hash_owned = hash.to_string();
        let opened = blocking(move || {
            let df = mgr.ec_diskfile_from_hash(
                &device,
                partition,
                &hash_owned,
                &policy,
                FragSelect::index(own),
            )?;
            Ok(df.open(OpenOptions {
                open_expired: true,
                now: None,
            }))
        })
        .await
        .map_err(PeerError::Failed)?;
        let peers = self.peers(job);
        match opened {
            Ok(open) => {
                let open = open.into_inner();
                let md = open.datafile_metadata().clone();
                let meta = open.metafile_metadata().cloned();
                let has_newer_meta = open.data_timestamp() != open.timestamp();
                let Some(name) = md.name().map(str::to_string) else {
                    return Err(PeerError::Failed("fragment archive has no name".into()));
                };
                if want.data {
                    let len = open.content_length();
                    drop(open);
                    self.rebuild(job, partner, node, &name, &md, len).await?;
                }
                if want.meta && has_newer_meta {
                    if let Some(meta) = meta {
                        let extra = [(pec::X_BACKEND_SSYNC_FRAG_INDEX, partner.to_string())];
                        peers.send_post(node, &name, &meta, &extra).await?;
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
                peers.send_delete(node, name, timestamp, &[]).await
            }
            Err(e) => {
                // Gone or quarantined since it was listed: the next pass
                // sees the new state.
                tracing::info!(hash, error = %e, "fragment not rebuilt from");
                self.stats.incr("objects_skipped");
                Ok(())
            }
        }
    }

    /// Rebuilds fragment archive `target` of `name` (at `md`'s timestamp,
    /// `len` bytes like every archive of the object) from `ndata` other
    /// primaries' fragments, streaming it to `node` as it is decoded. A
    /// source that fails or sends a bad fragment is left out and the
    /// rebuild starts again from other sources, while there are enough.
    async fn rebuild(
        &self,
        job: &Job<'_>,
        target: u32,
        node: &Device,
        name: &str,
        md: &apus_diskfile::Metadata,
        len: u64,
    ) -> Result<(), PeerError> {
        let Some(timestamp) = md.timestamp() else {
            return Err(PeerError::Failed(
                "fragment archive has no timestamp".into(),
            ));
        };
        let peers = self.peers(job);
        let mut headers =
            peers.replication_headers(&[(pec::X_BACKEND_SSYNC_FRAG_INDEX, target.to_string())]);
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        metadata_headers(md, &mut headers).map_err(PeerError::Failed)?;
        // The rebuilt archive is the target's, whatever index it came
        // from; its MD5 is its own (the server computes it).
        headers.remove(http::header::ETAG);
        headers.insert(
            pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX,
            HeaderValue::from(target),
        );
        self.limits.bytes.lock().await.acquire(len as f64).await;
        let mut excluded: Vec<usize> = Vec::new();
        let spare = job.ec.policy.width() as usize - job.ec.scheme.k();
        loop {
            let sources = self
                .fetch_sources(job, name, timestamp, target, &excluded)
                .await?;
            let (positions, bodies): (Vec<usize>, Vec<Body>) = sources.into_iter().unzip();
            let decoder =
                ArchiveDecoder::new(job.ec.scheme.clone(), job.ec.segment_size, bodies.len())
                    .map_err(|e| PeerError::Failed(e.to_string()))?;
            let (tx, body) = apus_http::channel(4, Some(len));
            let producer = tokio::spawn(feed_rebuilt(decoder, bodies, target as usize, tx));
            let sent = peers.send_put(node, name, headers.clone(), body, len).await;
            let produced = producer
                .await
                .map_err(|e| PeerError::Failed(e.to_string()))?;
            match produced {
                Ok(()) => {
                    sent?;
                    self.stats.incr("fragments_rebuilt");
                    return Ok(());
                }
                Err(FeedError::Source(i, e)) if excluded.len() < spare => {
                    let position = positions.get(i).copied().unwrap_or(usize::MAX);
                    tracing::warn!(
                        name, source = position, error = %e,
                        "a rebuild source failed; trying others"
                    );
                    self.stats.incr("rebuild_source_errors");
                    excluded.push(position);
                }
                Err(FeedError::Source(_, e) | FeedError::Other(e)) => {
                    return Err(PeerError::Failed(e));
                }
            }
        }
    }

    /// Asks every other primary (but those `excluded`, by ring position)
    /// for its fragment at `timestamp` and keeps `ndata` answers with
    /// distinct indexes, with their ring positions (the rest are dropped
    /// unread).
    async fn fetch_sources(
        &self,
        job: &Job<'_>,
        name: &str,
        timestamp: Timestamp,
        target: u32,
        excluded: &[usize],
    ) -> Result<Vec<(usize, Body)>, PeerError> {
        let peers = self.peers(job);
        let prefs = format!(
            "[{{\"timestamp\": \"{}\", \"exclude\": [{target}]}}]",
            timestamp.internal()
        );
        let primaries = job.ring.primaries(job.partition);
        let requests = primaries
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 != target && !excluded.contains(i))
            .map(|(i, node)| {
                let headers = peers
                    .replication_headers(&[(pec::X_BACKEND_FRAGMENT_PREFERENCES, prefs.clone())]);
                let path = peers.object_path(node, name);
                let host = replication_host(node);
                async move {
                    self.stats.incr("requests");
                    let answer = self
                        .ctx
                        .client
                        .request(Method::GET, &host, &path, headers, apus_http::empty())
                        .await;
                    (i, answer)
                }
            });
        let answers = futures_util::future::join_all(requests).await;
        let want_ts = timestamp.internal();
        let k = job.ec.scheme.k();
        let mut seen = HashSet::new();
        let mut sources = Vec::new();
        for (position, answer) in answers {
            let Ok(answer) = answer else { continue };
            if answer.status() != http::StatusCode::OK {
                continue;
            }
            let h = answer.headers();
            let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
            let same_time = text("x-backend-data-timestamp")
                .or_else(|| text("x-timestamp"))
                .and_then(|t| Timestamp::parse(&t).ok())
                .is_some_and(|t| t.internal() == want_ts);
            let index = text(pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX)
                .and_then(|v| pec::parse_frag_index(&v, job.ec.policy.width()));
            match index {
                Some(i) if same_time && i != target && sources.len() < k && seen.insert(i) => {
                    sources.push((position, answer.into_body()));
                }
                _ => {}
            }
        }
        if sources.len() < k {
            return Err(PeerError::Failed(format!(
                "only {} of the {k} fragments needed to rebuild index {target}",
                sources.len()
            )));
        }
        Ok(sources)
    }

    // ---- revert: send fragments to the primary of their index -------------

    /// Reverts what this device holds but is not the primary for. True
    /// when everything found was reverted (nothing is left to keep).
    async fn revert(&self, job: &Job<'_>) -> bool {
        let strays = match self.strays(job).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(dir = %job.part_dir.display(), error = %e, "cannot list fragments");
                self.stats.incr("failures");
                return false;
            }
        };
        if strays.is_empty() {
            return true;
        }
        // Which strays each primary has now, by position in `strays`.
        let mut held: Vec<usize> = vec![0; strays.len()];
        let mut needed: Vec<usize> = vec![0; strays.len()];
        let mut by_node: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let width = job.ec.policy.width();
        for (i, stray) in strays.iter().enumerate() {
            match stray.frag_index {
                Some(fi) => {
                    by_node.entry(fi).or_default().push(i);
                    needed[i] = 1;
                }
                None => {
                    // A handoff's tombstone goes to every primary.
                    for fi in 0..width {
                        by_node.entry(fi).or_default().push(i);
                    }
                    needed[i] = width as usize;
                }
            }
        }
        for (fi, items) in by_node {
            let Some(node) = job.primary_of(fi) else {
                continue;
            };
            match self.revert_to(job, fi, node, &strays, &items).await {
                Ok(done) => {
                    for i in done {
                        held[i] += 1;
                    }
                }
                Err(e) => {
                    self.stats.incr("failures");
                    tracing::warn!(
                        node = %replication_host(node), device = %node.device,
                        partition = job.partition, frag_index = fi, error = %e,
                        "revert failed"
                    );
                }
            }
        }
        let mut all = true;
        for (i, stray) in strays.iter().enumerate() {
            if held[i] < needed[i] {
                all = false;
                continue;
            }
            match self.purge(job, stray).await {
                Ok(()) => self.stats.incr(if stray.frag_index.is_some() {
                    "fragments_reverted"
                } else {
                    "tombstones_reverted"
                }),
                Err(e) => {
                    all = false;
                    tracing::warn!(hash = %stray.hash, error = %e, "cannot purge a reverted fragment");
                }
            }
        }
        all
    }

    /// The fragments of indexes this device is not the primary for, and
    /// (on a handoff) the tombstones.
    async fn strays(&self, job: &Job<'_>) -> Result<Vec<Stray>, String> {
        let mgr = self.mgr.clone();
        let device = job.local.device.clone();
        let (partition, policy) = (job.partition, job.ec.policy);
        let own = job.own_indexes.clone();
        let part_dir = job.part_dir.clone();
        blocking(move || {
            let mut out = Vec::new();
            let mut suffixes = dir_names(&part_dir)?;
            suffixes.retain(|s| layout::valid_suffix(s));
            suffixes.sort();
            for suffix in suffixes {
                let mut hashes = dir_names(&part_dir.join(&suffix))?;
                hashes.sort();
                for hash in hashes {
                    let Ok(df) = mgr.ec_diskfile_from_hash(
                        &device,
                        partition,
                        &hash,
                        &policy,
                        FragSelect::any(),
                    ) else {
                        continue;
                    };
                    // Reclaim first, as Swift's walk of a partition does:
                    // old tombstones, and non-durable fragments past
                    // reclaim_age whose commit window has passed.
                    let hash_dir = df.hash_dir().to_path_buf();
                    let before = dir_names(&hash_dir)?.len();
                    if let Err(e) = df.as_diskfile().cleanup() {
                        tracing::warn!(dir = %hash_dir.display(), error = %e, "cannot clean up");
                    }
                    if dir_names(&hash_dir)?.len() != before {
                        apus_diskfile::invalidate_hash(&part_dir, &suffix)?;
                    }
                    let Ok(files) = df.ondisk_files() else {
                        continue;
                    };
                    let meta = files.meta.as_ref().map(|m| m.timestamp);
                    let ctype = files.ctype.as_ref().and_then(|c| c.ctype_timestamp);
                    for (timestamp, set) in &files.frag_sets {
                        for f in set {
                            let Some(fi) = f.frag_index else { continue };
                            if own.contains(&fi) {
                                continue;
                            }
                            out.push(Stray {
                                hash: hash.clone(),
                                timestamp: *timestamp,
                                frag_index: Some(fi),
                                durable: f.durable,
                                meta,
                                ctype,
                            });
                        }
                    }
                    if let (Some(ts), true) = (&files.ts, own.is_empty()) {
                        out.push(Stray {
                            hash: hash.clone(),
                            timestamp: ts.timestamp,
                            frag_index: None,
                            durable: true,
                            meta: None,
                            ctype: None,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Offers `items` of `strays` to the primary of index `fi` and pushes
    /// what it lacks; returns the items it holds afterwards.
    async fn revert_to(
        &self,
        job: &Job<'_>,
        fi: u32,
        node: &Device,
        strays: &[Stray],
        items: &[usize],
    ) -> Result<Vec<usize>, PeerError> {
        let peers = self.peers(job);
        let index_header = [(pec::X_BACKEND_SSYNC_FRAG_INDEX, fi.to_string())];
        let lines: Vec<String> = items.iter().map(|&i| strays[i].offer()).collect();
        let mut done = Vec::new();
        for (start, end) in batches(&lines, self.batch_limit()) {
            let body = lines[start..end].join("\n");
            let wanted: HashMap<String, Wanted> = peers
                .missing_check(node, body, &index_header)
                .await?
                .into_iter()
                .collect();
            for &i in &items[start..end] {
                let stray = &strays[i];
                match wanted.get(&stray.hash) {
                    None => done.push(i),
                    Some(want) => match self.push_stray(job, fi, node, stray, *want).await {
                        Ok(()) => done.push(i),
                        Err(e) => {
                            tracing::warn!(
                                node = %replication_host(node), hash = %stray.hash,
                                error = %e, "revert push failed"
                            );
                        }
                    },
                }
            }
        }
        Ok(done)
    }

    /// Sends one stray fragment (as it is on disk) or tombstone.
    async fn push_stray(
        &self,
        job: &Job<'_>,
        fi: u32,
        node: &Device,
        stray: &Stray,
        want: Wanted,
    ) -> Result<(), PeerError> {
        self.limits.objects.lock().await.acquire(1.0).await;
        let mgr = self.mgr.clone();
        let device = job.local.device.clone();
        let (partition, policy) = (job.partition, job.ec.policy);
        let hash = stray.hash.clone();
        let select = FragSelect {
            frag_index: stray.frag_index,
            frag_prefs: Some(vec![FragPref {
                timestamp: stray.timestamp,
                exclude: Vec::new(),
            }]),
        };
        let opened = blocking(move || {
            let df = mgr.ec_diskfile_from_hash(&device, partition, &hash, &policy, select)?;
            Ok(df.open(OpenOptions {
                open_expired: true,
                now: None,
            }))
        })
        .await
        .map_err(PeerError::Failed)?;
        let peers = self.peers(job);
        let index_header = (pec::X_BACKEND_SSYNC_FRAG_INDEX, fi.to_string());
        match opened {
            Ok(open) if stray.frag_index.is_some() => {
                let durable = open.durable();
                let open = open.into_inner();
                if open.data_timestamp() != stray.timestamp {
                    return Err(PeerError::Failed("fragment changed since listed".into()));
                }
                let md = open.datafile_metadata().clone();
                let meta = open.metafile_metadata().cloned();
                let has_newer_meta = open.data_timestamp() != open.timestamp();
                let Some(name) = md.name().map(str::to_string) else {
                    return Err(PeerError::Failed("fragment archive has no name".into()));
                };
                if want.data {
                    let mut extra = vec![index_header.clone()];
                    if !durable {
                        extra.push((pec::X_BACKEND_NO_COMMIT, "True".into()));
                    }
                    peers
                        .push_file(
                            node,
                            open,
                            &extra,
                            self.settings.disk_chunk_size,
                            &self.limits,
                        )
                        .await?;
                }
                if want.meta && has_newer_meta {
                    if let Some(meta) = meta {
                        peers.send_post(node, &name, &meta, &[index_header]).await?;
                    }
                }
                Ok(())
            }
            Err(DiskFileError::Deleted {
                timestamp,
                metadata,
            }) if stray.frag_index.is_none() => {
                if !want.data {
                    return Ok(());
                }
                let name = tombstone_name(self.ctx, &metadata, &stray.hash)?;
                peers
                    .send_delete(node, name, timestamp, &[index_header])
                    .await
            }
            Ok(_) | Err(_) => Err(PeerError::Failed(
                "object changed since it was listed".into(),
            )),
        }
    }

    async fn purge(&self, job: &Job<'_>, stray: &Stray) -> Result<(), String> {
        let mgr = self.mgr.clone();
        let device = job.local.device.clone();
        let (partition, policy) = (job.partition, job.ec.policy);
        let stray = stray.clone();
        let delay = self.settings.nondurable_purge_delay;
        blocking(move || {
            let df = mgr.ec_diskfile_from_hash(
                &device,
                partition,
                &stray.hash,
                &policy,
                FragSelect::any(),
            )?;
            df.purge(stray.timestamp, stray.frag_index, delay, stray.meta)
        })
        .await
    }

    /// Removes a handoff partition left without objects. Each directory
    /// goes only if empty, so an object written meanwhile stays.
    async fn remove_if_empty(&self, job: &Job<'_>) {
        let dir = job.part_dir.clone();
        let removed = blocking(move || {
            let Ok(names) = dir_names(&dir) else {
                return Ok(false);
            };
            for name in &names {
                let path = dir.join(name);
                if layout::valid_suffix(name) {
                    if std::fs::remove_dir(&path).is_err() {
                        return Ok(false);
                    }
                } else if path.is_dir() {
                    return Ok(false);
                }
            }
            for name in names.iter().filter(|n| !layout::valid_suffix(n)) {
                let _ = std::fs::remove_file(dir.join(name));
            }
            Ok(std::fs::remove_dir(&dir).is_ok())
        })
        .await;
        if let Ok(true) = removed {
            tracing::info!(dir = %job.part_dir.display(), "removed reverted handoff partition");
            self.stats.incr("handoff_partitions_removed");
        }
    }
}

/// The names in a directory (none when it is gone).
fn dir_names(dir: &std::path::Path) -> Result<Vec<String>, DiskFileError> {
    let io_error = |e: std::io::Error| DiskFileError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry.map_err(io_error)?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Why a rebuild's stream stopped.
#[derive(Debug)]
enum FeedError {
    /// Source `i` failed or sent what cannot be decoded.
    Source(usize, String),
    /// Anything else (the receiver went away).
    Other(String),
}

impl FeedError {
    fn message(&self) -> &str {
        match self {
            FeedError::Source(_, m) | FeedError::Other(m) => m,
        }
    }
}

/// A decoder error, blamed on the source it names (if any).
fn decode_error(e: apus_ec::EcError) -> FeedError {
    match e.position() {
        Some(i) => FeedError::Source(i, e.to_string()),
        None => FeedError::Other(e.to_string()),
    }
}

/// Feeds `target`'s rebuilt archive into `tx`, reading each source no
/// further than the decoder has room for; an error aborts the body, so
/// the receiving server discards the partial archive.
async fn feed_rebuilt(
    mut decoder: ArchiveDecoder,
    mut sources: Vec<Body>,
    target: usize,
    tx: apus_http::BodySender,
) -> Result<(), FeedError> {
    let mut pending: Vec<Bytes> = vec![Bytes::new(); sources.len()];
    let mut ended = vec![false; sources.len()];
    let result: Result<(), FeedError> = async {
        loop {
            let mut progressed = false;
            for (s, source) in sources.iter_mut().enumerate() {
                while decoder.room(s) > 0 {
                    if pending[s].is_empty() {
                        if ended[s] {
                            break;
                        }
                        match source.frame().await {
                            None => {
                                ended[s] = true;
                                break;
                            }
                            Some(Err(e)) => {
                                return Err(FeedError::Source(s, format!("reading: {e}")))
                            }
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    pending[s] = data;
                                }
                                continue;
                            }
                        }
                    }
                    let take = decoder.room(s).min(pending[s].len());
                    decoder.push(s, &pending[s][..take]).map_err(decode_error)?;
                    pending[s].advance(take);
                    progressed = true;
                }
            }
            while let Some(fragment) = decoder
                .next_rebuilt_fragment(target)
                .map_err(decode_error)?
            {
                progressed = true;
                if tx.send(Bytes::from(fragment)).await.is_err() {
                    return Err(FeedError::Other("the receiver stopped reading".into()));
                }
            }
            if !progressed {
                break;
            }
        }
        if let Some(s) = pending.iter().position(|p| !p.is_empty()) {
            return Err(FeedError::Source(
                s,
                "a fragment archive is longer than the others".into(),
            ));
        }
        decoder.finish().map_err(decode_error)
    }
    .await;
    if let Err(e) = &result {
        tx.abort(std::io::Error::other(e.message().to_string()))
            .await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A suffix and its `(index, hash)` entries.
    type Suffix<'a> = (&'a str, &'a [(Option<u32>, &'a str)]);

    fn hashes(entries: &[Suffix<'_>]) -> EcSuffixHashes {
        entries
            .iter()
            .map(|(suffix, sub)| {
                let sub: EcSuffixHash = sub.iter().map(|(k, v)| (*k, v.to_string())).collect();
                (suffix.to_string(), Some(sub))
            })
            .collect()
    }

    #[test]
    fn suffixes_differ_by_common_entries_or_the_compared_indexes() {
        let local = hashes(&[
            ("aaa", &[(None, "t"), (Some(1), "x")]),
            ("bbb", &[(Some(1), "x")]),
            ("ccc", &[(Some(1), "x")]),
            ("ddd", &[(Some(1), "x")]),
        ]);
        let remote = hashes(&[
            ("aaa", &[(None, "t"), (Some(2), "x")]),
            ("bbb", &[(None, "t"), (Some(2), "x")]),
            ("ccc", &[(Some(2), "y")]),
        ]);
        // aaa matches (index 1 here against index 2 there); bbb differs by
        // a tombstone, ccc by its fragments, ddd is missing there.
        assert_eq!(suffix_delta(&local, 1, &remote, 2), ["bbb", "ccc", "ddd"]);
        assert_eq!(suffix_delta(&local, 1, &remote, 1).len(), 4);
    }

    #[test]
    fn remote_ec_hashes_parse_and_reject_garbage() {
        let dict = Value::Dict(vec![
            (
                Value::Str("abc".into()),
                Value::Dict(vec![
                    (Value::None, Value::Str("t".into())),
                    (Value::Int(3), Value::Str("h".into())),
                ]),
            ),
            (Value::Str("fff".into()), Value::None),
        ]);
        let parsed = parse_remote_ec_hashes(&apus_diskfile::pickle::dumps(&dict)).unwrap();
        let abc = parsed.get("abc").unwrap().as_ref().unwrap();
        assert_eq!(abc.get(&Some(3)).map(String::as_str), Some("h"));
        assert_eq!(abc.get(&None).map(String::as_str), Some("t"));
        assert_eq!(parsed.get("fff"), Some(&None));
        let bad = Value::Dict(vec![(Value::Str("abc".into()), Value::Str("h".into()))]);
        assert!(parse_remote_ec_hashes(&apus_diskfile::pickle::dumps(&bad)).is_err());
        assert!(parse_remote_ec_hashes(b"junk").is_err());
    }

    #[test]
    fn batches_cover_every_line_once_within_the_limit() {
        let lines: Vec<String> = (0..10).map(|i| format!("line-{i}")).collect();
        let b = batches(&lines, 14);
        assert_eq!(b, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]);
        // A line longer than the limit still goes, alone.
        assert_eq!(batches(&lines, 1).len(), 10);
        assert!(batches(&[], 10).is_empty());
    }
}
