//! The container and account replicators (`container-replicator`,
//! `account-replicator`): one generic [`DbReplicator`] over
//! [`ReplicaBroker`], following Swift's `db_replicator`.
//!
//! For each database on this node's devices: reclaim tombstones older than
//! `reclaim_age` (and remove the database if it is deleted, reclaimable
//! and, for containers, reported to its account); then, for every other
//! primary of its partition, `sync` it: a peer without the database gets a
//! whole copy (`rsync` in the stats, though no rsync is involved), a peer
//! whose hash matches needs nothing, and otherwise the rows past the
//! peer's sync point go out in `merge_items` batches followed by
//! `merge_syncs`. A peer whose drive is unmounted or that cannot be
//! reached has its turn taken by the next handoff. A database on a device
//! that is not one of its primaries (a handoff) is pushed to all primaries
//! and removed once every one of them succeeded and no rows arrived
//! meanwhile.
//!
//! Containers only: copies that disagree on the storage policy settle on
//! the better one (Swift's `cmp_policy_info`, on both ends of a sync), so
//! every copy ends with the same winner. After a container is replicated
//! its rows of another policy than its own (past its
//! `reconciler_sync_point`) are queued for the container reconciler in
//! this node's copy of the `.misplaced_objects` queue container of their
//! hour (see [`crate::reconciler`]); the sync point moves past them once
//! a majority of the peers succeeded. Queue databases written in a pass
//! are pushed to their primaries at its end, and handed-off ones removed
//! only then.
//!
//! Not done (Swift does them): shard-range replication, container-sync's
//! store, and `rsync_then_merge` for far-behind peers (they get row
//! batches, `max_diffs * per_diff` rows per pass).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apus_core::Timestamp;
use apus_db::{
    parse_metadata_json, AccountBroker, BrokerOptions, ContainerBroker, DbError, ObjectRecord,
    PolicyState, ReplicaBroker, ReplicationInfo, SyncPoint,
};
use apus_proto::db_replication::{
    self as proto, PolicyArgs, ReplicateOp, SyncArgs, SyncReply, COMPLETE_COPY,
    COPY_SOURCE_ID_HEADER, REPLICATE_MODE_HEADER,
};
use apus_ring::Device;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::context::{replication_host, DaemonContext, Rings, ServerKind};
use crate::db_walk::{db_hash, for_each_db, remove_db, remove_old_tmp_files, LocalPartition};
use crate::reconciler::{queue_container_name, queue_record, MISPLACED_OBJECTS_ACCOUNT};
use crate::stats::Stats;
use crate::worker::Worker;

/// Largest answer read from a peer (a sync reply carries the metadata).
const MAX_REPLY: usize = 4 * 1024 * 1024;
/// Chunk size of a whole-database copy.
const COPY_CHUNK: usize = 64 * 1024;

/// Tunables; the defaults are Swift's.
#[derive(Clone, Debug)]
pub struct DbReplicatorConfig {
    /// Rows per `merge_items` request.
    pub per_diff: usize,
    /// `merge_items` requests per peer per pass.
    pub max_diffs: usize,
    /// Tombstones and deleted databases older than this are removed.
    pub reclaim_age: Duration,
    /// Databases replicated at once.
    pub concurrency: usize,
    pub databases_per_second: f64,
}

impl Default for DbReplicatorConfig {
    fn default() -> Self {
        DbReplicatorConfig {
            per_diff: 1000,
            max_diffs: 100,
            reclaim_age: Duration::from_secs(7 * 86_400),
            concurrency: 8,
            databases_per_second: 50.0,
        }
    }
}

/// The replicator of databases of type `B`.
pub struct DbReplicator<B> {
    pub config: DbReplicatorConfig,
    _broker: PhantomData<fn() -> B>,
}

pub type ContainerReplicator = DbReplicator<ContainerBroker>;
pub type AccountReplicator = DbReplicator<AccountBroker>;

impl<B> DbReplicator<B> {
    pub fn new(config: DbReplicatorConfig) -> Self {
        DbReplicator {
            config,
            _broker: PhantomData,
        }
    }
}

/// The ring a database type lives in.
pub(crate) fn server_kind<B: ReplicaBroker>() -> ServerKind {
    if B::SERVER_TYPE == "container" {
        ServerKind::Container
    } else {
        ServerKind::Account
    }
}

/// `now - secs` as a timestamp (zero if that is before the epoch).
pub(crate) fn ago(now: Timestamp, secs: u64) -> Timestamp {
    Timestamp::from_ticks(now.ticks().saturating_sub(secs.saturating_mul(100_000)), 0)
        .unwrap_or(Timestamp::ZERO)
}

impl<B: ReplicaBroker> Worker for DbReplicator<B> {
    fn name(&self) -> &'static str {
        if B::SERVER_TYPE == "container" {
            "container-replicator"
        } else {
            "account-replicator"
        }
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let ctx = Arc::new(ctx.clone());
        let config = Arc::new(self.config.clone());
        let feed = (B::SERVER_TYPE == "container").then(|| Arc::new(ReconcilerFeed::default()));
        let job = {
            let (ctx, rings, stats, config, feed) = (
                ctx.clone(),
                rings.clone(),
                stats.clone(),
                config.clone(),
                feed.clone(),
            );
            move |lp: LocalPartition, db: PathBuf| {
                let (ctx, rings, stats, config, feed) = (
                    ctx.clone(),
                    rings.clone(),
                    stats.clone(),
                    config.clone(),
                    feed.clone(),
                );
                async move {
                    replicate_db::<B>(&ctx, &rings, &config, &stats, &lp, db, feed.as_ref()).await
                }
            }
        };
        let walked = for_each_db(
            ctx.clone(),
            rings.clone(),
            server_kind::<B>(),
            B::DATADIR,
            self.config.databases_per_second,
            self.config.concurrency,
            job,
        )
        .await;
        if let Some(feed) = feed {
            replicate_reconcilers::<B>(&ctx, &rings, &config, stats, &feed).await;
        }
        walked
    }
}

/// The misplaced-objects queue databases this pass wrote to or found
/// handed off (Swift's `reconciler_containers` / `reconciler_cleanups`).
/// Handed-off queue databases are removed only at the end of the pass,
/// after the ones written to have been pushed to their primaries, so a
/// database is never removed while rows are being merged into it.
#[derive(Default)]
pub(crate) struct ReconcilerFeed {
    /// Queue container name -> where its local database is.
    written: std::sync::Mutex<BTreeMap<String, (LocalPartition, PathBuf)>>,
    /// Handed-off queue databases pushed everywhere, with the max row
    /// they had then.
    cleanups: std::sync::Mutex<Vec<(PathBuf, i64)>>,
}

/// Pushes the queue databases written this pass to their primaries, then
/// removes the handed-off ones that every primary took.
async fn replicate_reconcilers<B: ReplicaBroker>(
    ctx: &DaemonContext,
    rings: &Arc<Rings>,
    config: &DbReplicatorConfig,
    stats: &Stats,
    feed: &Arc<ReconcilerFeed>,
) {
    let written: Vec<(LocalPartition, PathBuf)> = match feed.written.lock() {
        Ok(mut w) => std::mem::take(&mut *w).into_values().collect(),
        Err(_) => Vec::new(),
    };
    for (lp, db) in written {
        replicate_db::<B>(ctx, rings, config, stats, &lp, db, Some(feed)).await;
    }
    let cleanups = match feed.cleanups.lock() {
        Ok(mut c) => std::mem::take(&mut *c),
        Err(_) => Vec::new(),
    };
    for (db, max_row) in cleanups {
        let removed = blocking(move || {
            let broker = ContainerBroker::open(&db, BrokerOptions::default())?;
            if broker.get_replication_info()?.max_row != max_row {
                return Ok(false);
            }
            remove_db(&db).map_err(|e| DbError::Invalid(format!("removing: {e}")))?;
            Ok(true)
        })
        .await;
        match removed {
            Ok(true) => stats.incr("remove"),
            Ok(false) => {}
            Err(e) => {
                stats.incr("failures");
                tracing::error!(error = %e, "cannot remove a handed-off queue database");
            }
        }
    }
}

/// Swift's `majority_size`.
fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// After a container was replicated: queues its rows of another policy
/// than its own for the container reconciler (Swift's
/// `_post_replicate_hook`), and moves its reconciler sync point past
/// them once a majority of peers has the container.
#[allow(clippy::too_many_arguments)]
async fn feed_reconciler(
    ctx: &DaemonContext,
    rings: &Arc<Rings>,
    config: &DbReplicatorConfig,
    stats: &Stats,
    feed: &Arc<ReconcilerFeed>,
    db: &Path,
    info: &ReplicationInfo,
    responses: &[bool],
) {
    let success = responses.iter().filter(|r| **r).count() >= majority(responses.len());
    let (db2, max_row, per_diff) = (db.to_path_buf(), info.max_row, config.per_diff.max(1));
    let ring_parts = QueueRing::new(ctx, rings);
    let (feed2, stats2) = (feed.clone(), stats.clone());
    let done = blocking(move || {
        let broker = ContainerBroker::open(&db2, BrokerOptions::default())?;
        let point = broker.get_reconciler_sync()?;
        if !broker.has_multiple_policies()? && max_row != point {
            broker.update_reconciler_sync(max_row)?;
            return Ok(());
        }
        let synced = dump_to_reconciler(&broker, point, per_diff, &ring_parts, &feed2, &stats2)?;
        if synced > point && success {
            broker.update_reconciler_sync(synced)?;
        }
        Ok(())
    })
    .await;
    if let Err(e) = done {
        stats.incr("failures");
        tracing::error!(db = %db.display(), error = %e, "cannot queue misplaced objects");
    }
}

/// Where this node keeps queue databases: the container ring's partition
/// of each queue container and a local device for it (Swift's
/// `find_local_handoff_for_part`).
struct QueueRing {
    hash: apus_core::HashConfig,
    rings: Arc<Rings>,
    /// Local devices: (device, path).
    local: Vec<(Device, PathBuf)>,
}

impl QueueRing {
    fn new(ctx: &DaemonContext, rings: &Arc<Rings>) -> Self {
        let local = ctx
            .local_devices(&rings.container, ServerKind::Container)
            .into_iter()
            .filter_map(|d| Some((d.clone(), ctx.device_path(&d.device)?)))
            .collect();
        QueueRing {
            hash: ctx.hash.clone(),
            rings: rings.clone(),
            local,
        }
    }

    /// The queue container's partition and the local device for it: a
    /// primary if this node has one, else a device with weight, else any.
    fn place(&self, queue: &str) -> Option<(u32, &(Device, PathBuf))> {
        let ring = &self.rings.container;
        let part = ring.partition(&self.hash, MISPLACED_OBJECTS_ACCOUNT, Some(queue), None);
        let primaries: Vec<u32> = ring.primaries(part).iter().map(|d| d.id).collect();
        let dev = self
            .local
            .iter()
            .find(|(d, _)| primaries.contains(&d.id))
            .or_else(|| self.local.iter().find(|(d, _)| d.weight > 0.0))
            .or_else(|| self.local.first())?;
        Some((part, dev))
    }
}

/// Queues the misplaced rows of `broker` after `point`, batch by batch;
/// returns the last row queued without an error before it.
fn dump_to_reconciler(
    broker: &ContainerBroker,
    point: i64,
    per_diff: usize,
    ring: &QueueRing,
    feed: &ReconcilerFeed,
    stats: &Stats,
) -> Result<i64, DbError> {
    let max_row = broker.get_replication_info()?.max_row;
    let mut misplaced = broker.get_misplaced_since(point, per_diff)?;
    if misplaced.is_empty() {
        return Ok(max_row);
    }
    let info = broker.get_info()?;
    let (account, container) = (info.account, info.container);
    let mut errors = false;
    let mut low_sync = point;
    // Bounded: each batch starts after the last row of the one before.
    while let Some(last) = misplaced.last().and_then(|r| r.rowid) {
        let mut batches: BTreeMap<String, Vec<ObjectRecord>> = BTreeMap::new();
        for row in &misplaced {
            let Some(queue) = queue_container_name(&row.created_at) else {
                tracing::warn!(db = %broker.path().display(), row = %row.name, "row with an unreadable timestamp not queued");
                errors = true;
                continue;
            };
            batches
                .entry(queue)
                .or_default()
                .push(queue_record(row, &account, &container));
        }
        for (queue, rows) in batches {
            let n = rows.len() as u64;
            match merge_into_queue(ring, feed, &queue, rows) {
                Ok(()) => stats.add("misplaced_queued", n),
                Err(e) => {
                    tracing::error!(%queue, error = %e, "cannot queue misplaced objects");
                    errors = true;
                }
            }
        }
        if !errors {
            low_sync = last;
        }
        misplaced = broker.get_misplaced_since(last, per_diff)?;
    }
    Ok(low_sync)
}

/// Merges queue rows into this node's database of the queue container,
/// creating it if need be.
fn merge_into_queue(
    ring: &QueueRing,
    feed: &ReconcilerFeed,
    queue: &str,
    rows: Vec<ObjectRecord>,
) -> Result<(), DbError> {
    let known = feed
        .written
        .lock()
        .ok()
        .and_then(|w| w.get(queue).map(|(_, db)| db.clone()));
    let db = match known {
        Some(db) => db,
        None => {
            let (part, (dev, dev_path)) = ring
                .place(queue)
                .ok_or_else(|| DbError::Invalid("no local container device".into()))?;
            let hash = ring
                .hash
                .hash_path(MISPLACED_OBJECTS_ACCOUNT, Some(queue), None);
            let suffix = hash.get(hash.len().saturating_sub(3)..).unwrap_or(&hash);
            let dir = dev_path
                .join(ContainerBroker::DATADIR)
                .join(part.to_string());
            let db = dir.join(suffix).join(&hash).join(format!("{hash}.db"));
            let put_timestamp = Timestamp::parse(queue).unwrap_or_else(|_| Timestamp::now());
            ContainerBroker::create_or_open(
                &db,
                MISPLACED_OBJECTS_ACCOUNT,
                queue,
                put_timestamp,
                0,
                BrokerOptions::default(),
            )?;
            if let Ok(mut w) = feed.written.lock() {
                let lp = LocalPartition {
                    device: dev.clone(),
                    dev_path: dev_path.clone(),
                    partition: part,
                    dir,
                };
                w.insert(queue.to_string(), (lp, db.clone()));
            }
            db
        }
    };
    let broker = ContainerBroker::open(&db, BrokerOptions::default())?;
    broker.merge_items(rows, None)
}

/// Runs blocking broker work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(DbError::Invalid(format!("blocking task failed: {e}"))))
}

/// What the local checks before replication decided.
enum Prepared<B> {
    Removed,
    Ready {
        broker: Arc<B>,
        info: Box<ReplicationInfo>,
        names: (String, Option<String>),
    },
}

async fn replicate_db<B: ReplicaBroker>(
    ctx: &DaemonContext,
    rings: &Arc<Rings>,
    config: &DbReplicatorConfig,
    stats: &Stats,
    lp: &LocalPartition,
    db: PathBuf,
    feed: Option<&Arc<ReconcilerFeed>>,
) {
    stats.incr("dbs");
    let Some(hash) = db_hash(&db).map(str::to_string) else {
        return;
    };
    let Some(ring) = rings.ring(server_kind::<B>(), 0) else {
        return;
    };
    let now = Timestamp::now();
    let reclaim_secs = config.reclaim_age.as_secs();
    let reclaim_age = config.reclaim_age;
    let prepared = {
        let db = db.clone();
        blocking(move || {
            let opts = BrokerOptions {
                pending_timeout: Duration::from_secs(30),
                ..BrokerOptions::default()
            };
            let broker = B::open(&db, opts)?;
            remove_old_tmp_files(&db, reclaim_age);
            broker.reclaim(
                ago(now, reclaim_secs),
                ago(now, reclaim_secs.saturating_mul(2)),
            )?;
            let info = broker.get_replication_info()?;
            if broker.is_reclaimable(now, reclaim_secs)? && broker.report_up_to_date()? {
                remove_db(&db).map_err(|e| DbError::Invalid(format!("removing: {e}")))?;
                return Ok(Prepared::Removed);
            }
            let names = broker.names()?;
            Ok(Prepared::Ready {
                broker: Arc::new(broker),
                info: Box::new(info),
                names,
            })
        })
        .await
    };
    let (broker, info, (account, container)) = match prepared {
        Ok(Prepared::Removed) => {
            stats.incr("remove");
            return;
        }
        Ok(Prepared::Ready {
            broker,
            info,
            names,
        }) => (broker, *info, names),
        Err(e) => {
            stats.incr("failures");
            if e.is_quarantine_worthy() {
                let db2 = db.clone();
                let moved = tokio::task::spawn_blocking(move || apus_db::quarantine_db(&db2)).await;
                if matches!(moved, Ok(Ok(_))) {
                    stats.incr("quarantined");
                }
            }
            tracing::error!(db = %db.display(), error = %e, "cannot replicate a database");
            return;
        }
    };

    // A database in the wrong partition goes to the right one and away.
    let mut should_be_here = true;
    let mut part = lp.partition;
    let right_part = ring.partition(&ctx.hash, &account, container.as_deref(), None);
    if right_part != part {
        tracing::warn!(db = %db.display(), partition = right_part, "database is in the wrong partition");
        part = right_part;
        should_be_here = false;
    }
    let local_id = lp.device.id;
    let primaries: Vec<Device> = ring.primaries(part).into_iter().cloned().collect();
    let me = primaries.iter().position(|d| d.id == local_id);
    should_be_here &= me.is_some();
    // Each primary starts with the next one in the list (Swift's
    // footnote: no two copies starve a third by only talking together).
    let mut targets: Vec<Device> = match me {
        Some(i) => primaries[i + 1..]
            .iter()
            .chain(&primaries[..i])
            .cloned()
            .collect(),
        None => primaries.clone(),
    };
    let mut handoffs = ring.handoffs(part).filter(|d| d.id != local_id);
    let mut responses = Vec::new();
    let mut i = 0;
    while i < targets.len() {
        let node = targets[i].clone();
        i += 1;
        let outcome = repl_to_node::<B>(
            ctx,
            config,
            stats,
            &broker,
            &info,
            &node,
            part,
            &hash,
            &lp.dev_path,
        )
        .await;
        let ok = match outcome {
            Outcome::Done => true,
            Outcome::Failed => false,
            Outcome::Unavailable => {
                // Bounded: the handoff iterator offers each device once.
                if let Some(h) = handoffs
                    .by_ref()
                    .find(|h| !targets.iter().any(|t| t.id == h.id))
                {
                    targets.push(h.clone());
                }
                false
            }
        };
        stats.incr(if ok { "success" } else { "failures" });
        responses.push(ok);
    }

    let is_queue = account == MISPLACED_OBJECTS_ACCOUNT;
    if let Some(feed) = feed.filter(|_| !is_queue) {
        feed_reconciler(ctx, rings, config, stats, feed, &db, &info, &responses).await;
    }

    if !should_be_here && !responses.is_empty() && responses.iter().all(|r| *r) {
        if let Some(feed) = feed.filter(|_| is_queue) {
            // Queue databases go at the end of the pass (see ReconcilerFeed).
            if let Ok(mut c) = feed.cleanups.lock() {
                c.push((db.clone(), info.max_row));
            }
            return;
        }
        let (broker, db2, max_row) = (broker.clone(), db.clone(), info.max_row);
        let removed = blocking(move || {
            // Rows that arrived during the pushes are not on the peers yet.
            if broker.get_replication_info()?.max_row != max_row {
                return Ok(false);
            }
            remove_db(&db2).map_err(|e| DbError::Invalid(format!("removing: {e}")))?;
            Ok(true)
        })
        .await;
        match removed {
            Ok(true) => stats.incr("remove"),
            Ok(false) => {}
            Err(e) => {
                stats.incr("failures");
                tracing::error!(db = %db.display(), error = %e, "cannot remove a handed-off database");
            }
        }
    }
}

/// How replicating to one peer went.
enum Outcome {
    Done,
    Failed,
    /// The peer's drive is unmounted or the peer is unreachable: a handoff
    /// should take its turn.
    Unavailable,
}

/// A REPLICATE request; `Err` when the peer could not be reached.
async fn send(
    ctx: &DaemonContext,
    stats: &Stats,
    host: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes), apus_http::ClientError> {
    stats.add("bytes_sent", body.len() as u64);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let resp = ctx
        .client
        .request(
            replicate_method(),
            host,
            path,
            headers,
            apus_http::full(body),
        )
        .await?;
    let status = resp.status();
    let body = apus_http::body::collect_limited(resp.into_body(), MAX_REPLY)
        .await
        .unwrap_or_default();
    Ok((status, body))
}

fn replicate_method() -> Method {
    Method::from_bytes(b"REPLICATE").unwrap_or(Method::POST)
}

fn sync_args<B: ReplicaBroker>(info: &ReplicationInfo) -> SyncArgs {
    SyncArgs {
        max_row: info.max_row,
        hash: info.hash.clone(),
        id: info.id.clone(),
        created_at: info.created_at,
        put_timestamp: info.put_timestamp,
        delete_timestamp: info.delete_timestamp,
        metadata: info.metadata.clone(),
        policy: (B::SERVER_TYPE == "container").then_some(PolicyArgs {
            status_changed_at: info.status_changed_at,
            count: info.count,
            storage_policy_index: info.storage_policy_index,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
async fn repl_to_node<B: ReplicaBroker>(
    ctx: &DaemonContext,
    config: &DbReplicatorConfig,
    stats: &Stats,
    broker: &Arc<B>,
    info: &ReplicationInfo,
    node: &Device,
    part: u32,
    hash: &str,
    dev_path: &Path,
) -> Outcome {
    let host = replication_host(node);
    let path = apus_proto::quote(&format!("/{}/{}/{}", node.device, part, hash));
    let body = match ReplicateOp::<B::Item>::Sync(sync_args::<B>(info)).to_json() {
        Ok(b) => b,
        Err(_) => return Outcome::Failed,
    };
    let (status, reply) = match send(ctx, stats, &host, &path, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%host, error = %e, "replication peer unreachable");
            return if e.is_timeout() {
                Outcome::Failed
            } else {
                Outcome::Unavailable
            };
        }
    };
    if status == StatusCode::NOT_FOUND {
        stats.incr("rsync");
        return whole_copy(ctx, stats, broker, info, &host, &path, dev_path, hash).await;
    }
    if status == StatusCode::INSUFFICIENT_STORAGE {
        tracing::warn!(%host, device = %node.device, "remote drive not mounted");
        return Outcome::Unavailable;
    }
    if !status.is_success() {
        tracing::warn!(%host, %status, "bad replication answer");
        return Outcome::Failed;
    }
    let Ok(rinfo) = SyncReply::parse(&reply) else {
        tracing::warn!(%host, "unreadable sync answer");
        return Outcome::Failed;
    };
    if !proto::valid_db_id(&rinfo.id) {
        return Outcome::Failed;
    }
    let local_sync = {
        let (broker, info, rinfo) = (broker.clone(), info.clone(), rinfo.clone());
        blocking(move || absorb_reply(&*broker, &info, &rinfo)).await
    };
    let local_sync = match local_sync {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "applying a sync answer");
            return Outcome::Failed;
        }
    };
    if rinfo.point.max(local_sync) >= info.max_row {
        stats.incr("no_change");
        return Outcome::Done;
    }
    if rinfo.hash == info.hash {
        stats.incr("hashmatch");
        let (broker, point) = (
            broker.clone(),
            SyncPoint {
                remote_id: rinfo.id.clone(),
                sync_point: rinfo.point,
                updated_at: None,
            },
        );
        return match blocking(move || broker.merge_syncs(&[point], false)).await {
            Ok(()) => Outcome::Done,
            Err(_) => Outcome::Failed,
        };
    }
    usync(
        ctx,
        config,
        stats,
        broker,
        info,
        &rinfo,
        rinfo.point.max(local_sync),
        &host,
        &path,
    )
    .await
}

/// Takes what the peer told us: its metadata, and for containers its
/// status timestamps and (if better) its storage policy. Returns our sync
/// point with the peer.
fn absorb_reply<B: ReplicaBroker>(
    broker: &B,
    info: &ReplicationInfo,
    rinfo: &SyncReply,
) -> Result<i64, DbError> {
    let local_sync = broker.get_sync(&rinfo.id, false)?;
    if B::SERVER_TYPE == "container" {
        if let Some(spi) = rinfo.storage_policy_index {
            let remote = PolicyState {
                put_timestamp: rinfo.put_timestamp,
                delete_timestamp: rinfo.delete_timestamp,
                status_changed_at: rinfo.status_changed_at,
                count: rinfo.count,
                storage_policy_index: spi,
            };
            broker.adopt_remote_policy(info, &remote)?;
        }
        if (info.created_at, info.put_timestamp, info.delete_timestamp)
            != (
                rinfo.created_at,
                rinfo.put_timestamp,
                rinfo.delete_timestamp,
            )
        {
            broker.merge_timestamps(
                rinfo.created_at,
                rinfo.put_timestamp,
                rinfo.delete_timestamp,
            )?;
        }
    }
    if !rinfo.metadata.is_empty() {
        match parse_metadata_json(&rinfo.metadata) {
            Ok(md) => broker.update_metadata(&md, false)?,
            Err(e) => tracing::warn!(error = %e, "peer sent unreadable metadata"),
        }
    }
    Ok(local_sync)
}

/// Sends the rows past `point` in batches, then our incoming sync points;
/// records how far the peer now has our rows.
#[allow(clippy::too_many_arguments)]
async fn usync<B: ReplicaBroker>(
    ctx: &DaemonContext,
    config: &DbReplicatorConfig,
    stats: &Stats,
    broker: &Arc<B>,
    info: &ReplicationInfo,
    rinfo: &SyncReply,
    mut point: i64,
    host: &str,
    path: &str,
) -> Outcome {
    stats.incr("diff");
    let syncs = {
        let broker = broker.clone();
        blocking(move || broker.get_syncs(true)).await
    };
    let Ok(syncs) = syncs else {
        return Outcome::Failed;
    };
    let mut batches = 0;
    loop {
        let (b, per_diff) = (broker.clone(), config.per_diff.max(1));
        let Ok(items) = blocking(move || b.get_items_since(point, per_diff)).await else {
            return Outcome::Failed;
        };
        let Some(last) = items.last().and_then(B::item_rowid) else {
            break;
        };
        if batches >= config.max_diffs {
            // Too far behind for one pass; the rest goes next time.
            stats.incr("diff_capped");
            return Outcome::Failed;
        }
        batches += 1;
        let n = items.len() as u64;
        let op = ReplicateOp::MergeItems {
            items,
            source_id: info.id.clone(),
        };
        let Ok(body) = op.to_json() else {
            return Outcome::Failed;
        };
        match send(ctx, stats, host, path, body).await {
            Ok((s, _)) if s.is_success() => {}
            _ => return Outcome::Failed,
        }
        stats.add("rows_sent", n);
        point = last;
    }
    let points = syncs
        .into_iter()
        .map(|p| proto::SyncPoint {
            remote_id: p.remote_id,
            sync_point: p.sync_point,
        })
        .collect();
    let Ok(body) = ReplicateOp::<B::Item>::MergeSyncs(points).to_json() else {
        return Outcome::Failed;
    };
    match send(ctx, stats, host, path, body).await {
        Ok((s, _)) if s.is_success() => {}
        _ => return Outcome::Failed,
    }
    let (broker, sp) = (
        broker.clone(),
        SyncPoint {
            remote_id: rinfo.id.clone(),
            sync_point: point,
            updated_at: None,
        },
    );
    match blocking(move || broker.merge_syncs(&[sp], false)).await {
        Ok(()) => Outcome::Done,
        Err(_) => Outcome::Failed,
    }
}

static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Copies the database whole to a peer that lacks it: a snapshot taken
/// under the database's write lock (so it is consistent), streamed from
/// the device's `tmp/`.
#[allow(clippy::too_many_arguments)]
async fn whole_copy<B: ReplicaBroker>(
    ctx: &DaemonContext,
    stats: &Stats,
    broker: &Arc<B>,
    info: &ReplicationInfo,
    host: &str,
    path: &str,
    dev_path: &Path,
    hash: &str,
) -> Outcome {
    let tmp_dir = dev_path.join("tmp");
    let snapshot = tmp_dir.join(format!(
        "{hash}.{}.{}.snapshot",
        std::process::id(),
        SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let taken = {
        let (broker, snapshot) = (broker.clone(), snapshot.clone());
        blocking(move || {
            let io = |e: std::io::Error| DbError::Invalid(format!("snapshot: {e}"));
            std::fs::create_dir_all(&tmp_dir).map_err(io)?;
            broker.flush_pending()?;
            let src = broker.path().to_path_buf();
            broker
                .locked(|| std::fs::copy(&src, &snapshot))?
                .map_err(io)
        })
        .await
    };
    let outcome = match taken {
        Ok(len) => send_file(ctx, stats, &snapshot, len, &info.id, host, path).await,
        Err(e) => {
            tracing::error!(error = %e, "cannot snapshot a database");
            Outcome::Failed
        }
    };
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(snapshot)).await;
    outcome
}

async fn send_file(
    ctx: &DaemonContext,
    stats: &Stats,
    file: &Path,
    len: u64,
    source_id: &str,
    host: &str,
    path: &str,
) -> Outcome {
    let (tx, body) = apus_http::channel(4, Some(len));
    let reader = {
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut f = match std::fs::File::open(&file) {
                Ok(f) => f,
                Err(e) => return tx.blocking_abort(e),
            };
            let mut buf = vec![0u8; COPY_CHUNK];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                            return;
                        }
                    }
                    Err(e) => return tx.blocking_abort(e),
                }
            }
        })
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        REPLICATE_MODE_HEADER,
        HeaderValue::from_static(COMPLETE_COPY),
    );
    match HeaderValue::from_str(source_id) {
        Ok(v) => headers.insert(COPY_SOURCE_ID_HEADER, v),
        Err(_) => return Outcome::Failed,
    };
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    let result = ctx
        .client
        .request(replicate_method(), host, path, headers, body)
        .await;
    let _ = reader.await;
    match result {
        Ok(resp) if resp.status() == StatusCode::CREATED => {
            stats.add("bytes_sent", len);
            Outcome::Done
        }
        Ok(resp) => {
            tracing::warn!(%host, status = %resp.status(), "whole copy refused");
            Outcome::Failed
        }
        Err(e) => {
            tracing::warn!(%host, error = %e, "whole copy failed");
            Outcome::Failed
        }
    }
}
