//! The container reconciler (`container-reconciler`): moves objects that
//! were written under the wrong storage policy into the right one.
//!
//! Two copies of a container created at once with different
//! `X-Storage-Policy` (a split brain) each take objects in their own
//! policy. Container replication settles every copy on one policy (see
//! [`apus_db::cmp_policy_info`]) and queues each row of another policy in
//! the hidden `.misplaced_objects` account: containers named by the hour
//! of the row's newest timestamp ([`queue_container_name`]), one entry per
//! row named `<policy>:/<account>/<container>/<object>`
//! ([`queue_object_name`]) whose etag holds the row's timestamps and whose
//! content type says whether it was a PUT or a DELETE. The names and
//! encodings are Swift's, so either side of a mixed cluster can queue and
//! reconcile.
//!
//! A pass walks the queue (this hour's container first, then the others
//! newest first). For each entry it asks the container's primaries for
//! the policy (the same winner as replication picks, cached 30 seconds);
//! then, through an [`InternalClient`] (the proxy's logic without auth)
//! naming the policy in `X-Backend-Storage-Policy-Index`:
//!
//! - the entry's policy is the container's: nothing to do;
//! - the right policy already has the object (or a tombstone) at least as
//!   new as the entry: only the misplaced copy is removed;
//! - the misplaced copy is at least as new as the entry: it is copied
//!   (bytes and metadata) into the right policy at its own timestamp plus
//!   offset 3, so the copy wins over it, then deleted from the wrong
//!   policy at the entry's timestamp plus offset 1;
//! - a queued DELETE whose object is gone: the right policy gets a
//!   tombstone at the entry's timestamp plus offset 3;
//! - the misplaced copy is missing or older than the entry: retried next
//!   pass, given up once the entry is older than `reclaim_age`.
//!
//! A handled entry is removed from the queue container's primaries at the
//! entry's timestamp plus offset 2; any failure leaves it for the next
//! pass. Queue containers empty and older than `reclaim_age` are deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apus_core::Timestamp;
use apus_db::{cmp_policy_info, decode_timestamps, ObjectRecord, PolicyState};
use apus_http::Body;
use apus_proto::{headers as h, quote};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::context::{device_host, DaemonContext, Rings};
use crate::expirer::InternalClient;
use crate::rate::RateLimiter;
use crate::stats::Stats;
use crate::worker::Worker;

/// The hidden account of the queue (Swift's `MISPLACED_OBJECTS_ACCOUNT`).
pub const MISPLACED_OBJECTS_ACCOUNT: &str = ".misplaced_objects";
/// Queue containers cover this many seconds each.
pub const MISPLACED_OBJECTS_CONTAINER_DIVISOR: u64 = 3600;
/// How long a container's policy, once looked up, is trusted.
const CONTAINER_POLICY_TTL: Duration = Duration::from_secs(30);
/// Cached container policies at most (Swift's LRU cache size).
const POLICY_CACHE_SIZE: usize = 1000;
/// Listing pages are this long (Swift's container listing limit).
const LISTING_LIMIT: usize = 10_000;
/// Listing bodies larger than this are refused.
const MAX_LISTING_BYTES: usize = 32 << 20;
/// Small answers (HEAD, DELETE, errors) are read up to this.
const SMALL_BODY: usize = 1 << 16;

/// What a queue entry asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueOp {
    Put,
    Delete,
}

impl QueueOp {
    /// The content type a queue entry of this operation carries.
    pub fn content_type(self) -> &'static str {
        match self {
            QueueOp::Put => "application/x-put",
            QueueOp::Delete => "application/x-delete",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<QueueOp> {
        match ct {
            "application/x-put" => Some(QueueOp::Put),
            "application/x-delete" => Some(QueueOp::Delete),
            _ => None,
        }
    }
}

/// The queue container of a row: the hour its newest (metadata)
/// timestamp falls in, as whole seconds. `None` when `created_at` is not
/// a row timestamp.
pub fn queue_container_name(created_at: &str) -> Option<String> {
    let meta = decode_timestamps(created_at)?.meta;
    Some(queue_container_at(meta))
}

/// The queue container covering `ts`.
pub fn queue_container_at(ts: Timestamp) -> String {
    let secs = ts.secs();
    (secs / MISPLACED_OBJECTS_CONTAINER_DIVISOR * MISPLACED_OBJECTS_CONTAINER_DIVISOR).to_string()
}

/// A queue entry's name: `<policy>:/<account>/<container>/<object>`.
pub fn queue_object_name(policy_index: i64, account: &str, container: &str, obj: &str) -> String {
    format!("{policy_index}:/{account}/{container}/{obj}")
}

/// The queue row for a misplaced object row of `account/container`: the
/// row's timestamps as both its time and its etag, its operation as the
/// content type, size 0, policy 0 (the queue's own).
pub fn queue_record(row: &ObjectRecord, account: &str, container: &str) -> ObjectRecord {
    let op = if row.deleted {
        QueueOp::Delete
    } else {
        QueueOp::Put
    };
    ObjectRecord {
        rowid: None,
        name: queue_object_name(row.storage_policy_index, account, container, &row.name),
        created_at: row.created_at.clone(),
        size: 0,
        content_type: op.content_type().to_string(),
        etag: row.created_at.clone(),
        deleted: false,
        storage_policy_index: 0,
        ctype_timestamp: None,
        meta_timestamp: None,
    }
}

/// `ts` with its offset raised by `offset`: a time that sorts right after
/// `ts` and before the next tick (Swift's `slightly_later_timestamp`).
pub fn slightly_later(ts: Timestamp, offset: u64) -> Timestamp {
    ts.with_offset(ts.offset().saturating_add(offset))
}

/// A queue entry, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// The policy the misplaced object is in.
    pub policy_index: i64,
    pub account: String,
    pub container: String,
    pub obj: String,
    pub op: QueueOp,
    /// The misplaced row's data timestamp.
    pub q_ts: Timestamp,
    /// When the entry itself was written (its listing's last-modified).
    pub q_record: Timestamp,
}

impl QueueEntry {
    pub fn path(&self) -> String {
        format!("/{}/{}/{}", self.account, self.container, self.obj)
    }
}

/// Parses a queue listing entry (its name, content type, `hash` and
/// `last_modified`), as Swift's `parse_raw_obj` does.
pub fn parse_queue_entry(
    name: &str,
    content_type: &str,
    hash: &str,
    last_modified: &str,
) -> Result<QueueEntry, String> {
    let (policy, path) = name
        .split_once(':')
        .ok_or_else(|| format!("no policy in {name:?}"))?;
    let policy_index: i64 = policy
        .parse()
        .map_err(|_| format!("bad policy in {name:?}"))?;
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("bad path in {name:?}"))?;
    let mut parts = rest.splitn(3, '/');
    let (account, container, obj) = match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(c), Some(o)) if !a.is_empty() && !c.is_empty() && !o.is_empty() => (a, c, o),
        _ => return Err(format!("bad path in {name:?}")),
    };
    let op = QueueOp::from_content_type(content_type)
        .ok_or_else(|| format!("invalid operation type {content_type:?}"))?;
    let q_ts = decode_timestamps(hash)
        .ok_or_else(|| format!("bad timestamp {hash:?}"))?
        .data;
    let q_record = parse_last_modified(last_modified)
        .ok_or_else(|| format!("bad last_modified {last_modified:?}"))?;
    Ok(QueueEntry {
        policy_index,
        account: account.to_string(),
        container: container.to_string(),
        obj: obj.to_string(),
        op,
        q_ts,
        q_record,
    })
}

/// A listing's `last_modified` (`2023-11-14T22:13:20.123450`, UTC) as a
/// timestamp.
pub fn parse_last_modified(text: &str) -> Option<Timestamp> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.')?;
    let mut t = hms.splitn(3, ':');
    let hour: u64 = t.next()?.parse().ok()?;
    let minute: u64 = t.next()?.parse().ok()?;
    let second: u64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || frac.is_empty()
        || frac.len() > 6
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let micros: u64 = format!("{frac:0<6}").parse().ok()?;
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Timestamp::from_secs_f64(secs as f64 + micros as f64 / 1e6)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A container copy's policy state from its HEAD answer (found or not):
/// `None` without a policy header. The object count is not used, as in
/// Swift (the copies are compared by their timestamps alone).
pub fn policy_state_from_headers(headers: &HeaderMap) -> Option<PolicyState> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ts = |name: &str| {
        text(name)
            .and_then(|v| Timestamp::parse(v).ok())
            .unwrap_or(Timestamp::ZERO)
    };
    Some(PolicyState {
        storage_policy_index: text(h::X_BACKEND_STORAGE_POLICY_INDEX)?
            .trim()
            .parse()
            .ok()?,
        put_timestamp: ts("x-backend-put-timestamp"),
        delete_timestamp: ts("x-backend-delete-timestamp"),
        status_changed_at: ts("x-backend-status-changed-at"),
        count: 0,
    })
}

/// The policy of the best of several container copies (Swift's
/// `best_policy_index`); `None` for no copies.
pub fn best_policy_index(states: &[PolicyState]) -> Option<i64> {
    let mut sorted: Vec<&PolicyState> = states.iter().collect();
    sorted.sort_by(|a, b| cmp_policy_info(a, b));
    sorted.first().map(|s| s.storage_policy_index)
}

/// Whether this reconciler (`process` of `processes`) owns an object:
/// its path hash modulo `processes`, as Swift splits the work.
pub fn owns_object(hash_hex: &str, processes: u64, process: u64) -> bool {
    if processes == 0 {
        return true;
    }
    match u128::from_str_radix(hash_hex, 16) {
        Ok(n) => (n % u128::from(processes)) as u64 == process,
        Err(_) => false,
    }
}

/// Settings (Swift's `container-reconciler` section).
#[derive(Clone, Debug)]
pub struct ReconcilerSettings {
    /// Entries handled at once.
    pub concurrency: usize,
    /// Split the queue among this many reconcilers (0: one does all).
    pub processes: u64,
    /// Which share this reconciler takes, `0..processes`.
    pub process: u64,
    /// How long an entry whose source cannot be found is retried, and
    /// after how long an empty queue container is deleted (seconds).
    pub reclaim_age: f64,
    /// Entries handled per second at most; 0 = unlimited.
    pub objects_per_second: f64,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        ReconcilerSettings {
            concurrency: 1,
            processes: 0,
            process: 0,
            reclaim_age: 604_800.0,
            objects_per_second: 0.0,
        }
    }
}

type PolicyCache = Mutex<HashMap<(String, String), (Instant, Option<i64>)>>;

pub struct ContainerReconciler<C: InternalClient> {
    pub settings: ReconcilerSettings,
    client: Arc<C>,
    policies: Arc<PolicyCache>,
}

impl<C: InternalClient> ContainerReconciler<C> {
    pub fn new(settings: ReconcilerSettings, client: Arc<C>) -> Self {
        ContainerReconciler {
            settings,
            client,
            policies: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// One entry of a JSON listing (account or container).
#[derive(Deserialize)]
struct Listed {
    name: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    last_modified: Option<String>,
}

/// One page of a listing of `path` after `marker`; `None` when there is
/// nothing there (404 or 204).
async fn list_page<C: InternalClient>(
    client: &C,
    path: &str,
    marker: &str,
) -> Result<Vec<Listed>, String> {
    let url = format!(
        "{path}?format=json&limit={LISTING_LIMIT}&marker={}",
        quote(marker).replace('/', "%2F").replace('&', "%26")
    );
    let (status, body) = client
        .call(Method::GET, url, HeaderMap::new(), MAX_LISTING_BYTES)
        .await?;
    if status == StatusCode::NOT_FOUND || status == StatusCode::NO_CONTENT {
        return Ok(Vec::new());
    }
    if !status.is_success() {
        return Err(format!("listing {path}: {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("listing {path}: {e}"))
}

impl<C: InternalClient> Worker for ContainerReconciler<C> {
    fn name(&self) -> &'static str {
        "container-reconciler"
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let account_path = format!("/v1/{}", quote(MISPLACED_OBJECTS_ACCOUNT));
        // This hour's container first, without waiting for the account
        // to hear of it; then the others, newest first (older ones are
        // expected to be empty).
        let current = queue_container_at(Timestamp::now());
        let mut containers = vec![current.clone()];
        let mut listed = Vec::new();
        let mut marker = String::new();
        // Bounded: each page must move the marker forward.
        loop {
            let page = match list_page(self.client.as_ref(), &account_path, &marker).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list the misplaced objects queue");
                    stats.incr("errors");
                    break;
                }
            };
            stats.incr("listings");
            let full = page.len() >= LISTING_LIMIT;
            let Some(last) = page.last().map(|e| e.name.clone()) else {
                break;
            };
            listed.extend(page.into_iter().map(|e| e.name));
            if !full || last <= marker {
                break;
            }
            marker = last;
        }
        containers.extend(listed.into_iter().rev().filter(|c| *c != current));

        let mut limiter = RateLimiter::new(self.settings.objects_per_second);
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        for container in containers {
            self.reconcile_container(ctx, &rings, stats, &container, &mut limiter, &slots)
                .await;
        }
        Ok(())
    }
}

impl<C: InternalClient> ContainerReconciler<C> {
    async fn reconcile_container(
        &self,
        ctx: &DaemonContext,
        rings: &Arc<Rings>,
        stats: &Stats,
        container: &str,
        limiter: &mut RateLimiter,
        slots: &Arc<Semaphore>,
    ) {
        let container_path = format!(
            "/v1/{}/{}",
            quote(MISPLACED_OBJECTS_ACCOUNT),
            quote(container)
        );
        let mut found = false;
        let mut marker = String::new();
        let mut jobs = JoinSet::new();
        // Bounded: each page must move the marker forward.
        loop {
            let page = match list_page(self.client.as_ref(), &container_path, &marker).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(%container, error = %e, "cannot list a queue container");
                    stats.incr("errors");
                    break;
                }
            };
            stats.incr("listings");
            let full = page.len() >= LISTING_LIMIT;
            let Some(last) = page.last().map(|e| e.name.clone()) else {
                break;
            };
            found = true;
            for raw in page {
                let entry = match parse_queue_entry(
                    &raw.name,
                    raw.content_type.as_deref().unwrap_or(""),
                    raw.hash.as_deref().unwrap_or(""),
                    raw.last_modified.as_deref().unwrap_or(""),
                ) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(%container, entry = %raw.name, error = %e, "invalid queue record");
                        stats.incr("invalid_record");
                        continue;
                    }
                };
                let hash =
                    ctx.hash
                        .hash_path(&entry.account, Some(&entry.container), Some(&entry.obj));
                if !owns_object(&hash, self.settings.processes, self.settings.process) {
                    continue;
                }
                limiter.acquire(1.0).await;
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let job = Job {
                    client: self.client.clone(),
                    ctx: ctx.clone(),
                    rings: rings.clone(),
                    policies: self.policies.clone(),
                    reclaim_age: self.settings.reclaim_age,
                    stats: stats.clone(),
                    queue_container: container.to_string(),
                    queue_name: raw.name,
                    entry,
                };
                jobs.spawn(async move {
                    job.run().await;
                    drop(permit);
                });
            }
            if !full || last <= marker {
                break;
            }
            marker = last;
        }
        while jobs.join_next().await.is_some() {}
        let old = container
            .parse::<f64>()
            .is_ok_and(|t| t < Timestamp::now().as_secs_f64() - self.settings.reclaim_age);
        if old && !found {
            // An old empty queue container goes (a conflict is fine).
            let _ = self
                .client
                .call(Method::DELETE, container_path, HeaderMap::new(), SMALL_BODY)
                .await;
        }
    }
}

/// One queue entry being handled.
struct Job<C> {
    client: Arc<C>,
    ctx: DaemonContext,
    rings: Arc<Rings>,
    policies: Arc<PolicyCache>,
    reclaim_age: f64,
    stats: Stats,
    queue_container: String,
    queue_name: String,
    entry: QueueEntry,
}

/// Headers of a GET answer that are not the object's to carry over.
fn is_transient_header(name: &str) -> bool {
    const SKIP: [&str; 17] = [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "expect",
        "date",
        "last-modified",
        "accept-ranges",
        "content-range",
        "x-timestamp",
        "x-trans-id",
        "x-openstack-request-id",
        "x-put-timestamp",
        "x-newest",
    ];
    SKIP.contains(&name) || name.starts_with("x-backend-")
}

fn backend_timestamp(headers: &HeaderMap) -> Timestamp {
    headers
        .get(h::X_BACKEND_TIMESTAMP)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Timestamp::parse(v).ok())
        .unwrap_or(Timestamp::ZERO)
}

impl<C: InternalClient> Job<C> {
    async fn run(self) {
        let done = self.reconcile().await;
        if done {
            self.pop_queue().await;
            self.stats.incr("success");
        } else {
            self.stats.incr("retry");
        }
        tracing::debug!(
            path = %self.entry.path(),
            q_ts = %self.entry.q_ts,
            policy = self.entry.policy_index,
            done,
            "reconciled"
        );
    }

    fn object_path(&self) -> String {
        format!("/v1{}", quote(&self.entry.path()))
    }

    async fn object_request(
        &self,
        method: Method,
        policy: i64,
        extra: HeaderMap,
        body: Body,
    ) -> Result<Response<Body>, String> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        let path = self.object_path();
        *req.uri_mut() = path
            .parse()
            .map_err(|e| format!("bad path {path:?}: {e}"))?;
        *req.headers_mut() = extra;
        req.headers_mut()
            .insert(h::X_BACKEND_STORAGE_POLICY_INDEX, HeaderValue::from(policy));
        Ok(self.client.send(req).await)
    }

    /// Handles the entry; true when it may leave the queue.
    async fn reconcile(&self) -> bool {
        let e = &self.entry;
        let path = e.path();
        let Some(policy) = self.container_policy_index().await else {
            tracing::info!(%path, "unable to determine the destination policy");
            self.stats.incr("unavailable_container");
            return false;
        };
        if policy == e.policy_index {
            self.stats.incr("noop_object");
            return true;
        }
        for p in [e.policy_index, policy] {
            let known = u32::try_from(p).is_ok_and(|p| self.rings.objects.contains_key(&p));
            if !known {
                tracing::warn!(%path, policy = p, "no object ring for a policy; entry kept");
                self.stats.incr("unknown_policy");
                return false;
            }
        }

        // What the right policy already has.
        let dest = match self
            .object_request(Method::HEAD, policy, HeaderMap::new(), apus_http::empty())
            .await
        {
            Ok(r) if r.status().as_u16() < 500 => r,
            Ok(r) => {
                tracing::warn!(%path, status = %r.status(), "unable to check the destination");
                self.stats.incr("unavailable_destination");
                return false;
            }
            Err(err) => {
                tracing::warn!(%path, error = %err, "unable to check the destination");
                self.stats.incr("unavailable_destination");
                return false;
            }
        };
        let dest_ts = backend_timestamp(dest.headers());
        drop(dest);
        if dest_ts >= e.q_ts {
            self.stats.incr("found_object");
            return self.throw_tombstones().await;
        }

        self.stats.incr("misplaced_object");
        let source = match self
            .object_request(
                Method::GET,
                e.policy_index,
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await
        {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(%path, error = %err, "unable to read the misplaced object");
                self.stats.incr("unavailable_source");
                return false;
            }
        };
        let status = source.status();
        let source_ts = if status.as_u16() < 500 {
            backend_timestamp(source.headers())
        } else {
            Timestamp::ZERO
        };
        if status == StatusCode::NOT_FOUND && e.op == QueueOp::Delete {
            drop(source);
            return self.ensure_tombstone(policy).await;
        }
        self.ensure_object(policy, source, source_ts).await
    }

    /// Copies a source at least as new as the entry into `policy`, then
    /// removes it from the wrong one.
    async fn ensure_object(
        &self,
        policy: i64,
        source: Response<Body>,
        source_ts: Timestamp,
    ) -> bool {
        let e = &self.entry;
        let path = e.path();
        if !source.status().is_success() || source_ts < e.q_ts {
            let status = source.status();
            drop(source);
            if e.q_ts.as_secs_f64() < Timestamp::now().as_secs_f64() - self.reclaim_age {
                tracing::error!(%path, q_ts = %e.q_ts, policy = e.policy_index,
                    "misplaced object was not available and has expired; giving up");
                self.stats.incr("lost_source");
                return true;
            }
            tracing::warn!(%path, q_ts = %e.q_ts, policy = e.policy_index, %status,
                source_ts = %source_ts, "misplaced object unavailable; will retry");
            self.stats.incr("unavailable_source");
            return false;
        }
        let put_ts = slightly_later(source_ts.max(e.q_ts), 3);
        let (parts, body) = source.into_parts();
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if !is_transient_header(name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&put_ts.internal()) {
            headers.insert(HeaderName::from_static(h::X_TIMESTAMP), v);
        }
        match self
            .object_request(Method::PUT, policy, headers, body)
            .await
        {
            Ok(resp) if resp.status().is_success() => {
                self.stats.incr("copy_success");
            }
            Ok(resp) => {
                tracing::warn!(%path, from = e.policy_index, to = policy,
                    status = %resp.status(), "moving a misplaced object failed");
                self.stats.incr("copy_failed");
                return false;
            }
            Err(err) => {
                tracing::warn!(%path, error = %err, "moving a misplaced object failed");
                self.stats.incr("copy_failed");
                return false;
            }
        }
        self.throw_tombstones().await
    }

    /// A queued DELETE whose object is gone: the right policy gets the
    /// tombstone too.
    async fn ensure_tombstone(&self, policy: i64) -> bool {
        let ts = slightly_later(self.entry.q_ts, 3);
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&ts.internal()) {
            headers.insert(HeaderName::from_static(h::X_TIMESTAMP), v);
        }
        match self
            .object_request(Method::DELETE, policy, headers, apus_http::empty())
            .await
        {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                self.stats.incr("delete_success");
            }
            Ok(r) => {
                tracing::warn!(path = %self.entry.path(), status = %r.status(), "delete in the right policy failed");
                self.stats.incr("delete_failed");
                return false;
            }
            Err(err) => {
                tracing::warn!(path = %self.entry.path(), error = %err, "delete in the right policy failed");
                self.stats.incr("delete_failed");
                return false;
            }
        }
        self.throw_tombstones().await
    }

    /// Deletes the misplaced copy at the entry's time plus offset 1.
    async fn throw_tombstones(&self) -> bool {
        let ts = slightly_later(self.entry.q_ts, 1);
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&ts.internal()) {
            headers.insert(HeaderName::from_static(h::X_TIMESTAMP), v);
        }
        match self
            .object_request(
                Method::DELETE,
                self.entry.policy_index,
                headers,
                apus_http::empty(),
            )
            .await
        {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                self.stats.incr("cleanup_success");
                true
            }
            Ok(r) => {
                tracing::warn!(path = %self.entry.path(), status = %r.status(),
                    policy = self.entry.policy_index, "misplaced copy not cleaned up");
                self.stats.incr("cleanup_failed");
                false
            }
            Err(err) => {
                tracing::warn!(path = %self.entry.path(), error = %err, "misplaced copy not cleaned up");
                self.stats.incr("cleanup_failed");
                false
            }
        }
    }

    /// The container's policy by its primaries (a majority must answer),
    /// cached for [`CONTAINER_POLICY_TTL`].
    async fn container_policy_index(&self) -> Option<i64> {
        let key = (self.entry.account.clone(), self.entry.container.clone());
        if let Ok(cache) = self.policies.lock() {
            if let Some((at, policy)) = cache.get(&key) {
                if at.elapsed() < CONTAINER_POLICY_TTL {
                    return *policy;
                }
            }
        }
        let policy = self.direct_container_policy_index().await;
        if let Ok(mut cache) = self.policies.lock() {
            if cache.len() >= POLICY_CACHE_SIZE {
                cache.retain(|_, (at, _)| at.elapsed() < CONTAINER_POLICY_TTL);
                if cache.len() >= POLICY_CACHE_SIZE {
                    cache.clear();
                }
            }
            cache.insert(key, (Instant::now(), policy));
        }
        policy
    }

    async fn direct_container_policy_index(&self) -> Option<i64> {
        let (a, c) = (&self.entry.account, &self.entry.container);
        let ring = &self.rings.container;
        let part = ring.partition(&self.ctx.hash, a, Some(c), None);
        let nodes = ring.primaries(part);
        let mut heads = JoinSet::new();
        for node in &nodes {
            let (client, host) = (self.ctx.client.clone(), device_host(node));
            let path = quote(&format!("/{}/{part}/{a}/{c}", node.device));
            heads.spawn(async move {
                let resp = client
                    .request(
                        Method::HEAD,
                        &host,
                        &path,
                        HeaderMap::new(),
                        apus_http::empty(),
                    )
                    .await
                    .ok()?;
                let status = resp.status();
                let headers = resp.headers().clone();
                let _ = apus_http::body::collect_limited(resp.into_body(), SMALL_BODY).await;
                (status.is_success() || status == StatusCode::NOT_FOUND).then_some(headers)
            });
        }
        let mut states = Vec::new();
        let mut answered = 0;
        while let Some(done) = heads.join_next().await {
            if let Ok(Some(headers)) = done {
                answered += 1;
                // An answer without a policy is a copy we cannot judge.
                states.push(policy_state_from_headers(&headers)?);
            }
        }
        if answered < nodes.len() / 2 + 1 {
            return None;
        }
        best_policy_index(&states)
    }

    /// Removes the entry from the queue container's primaries at the
    /// entry's time plus offset 2; a copy that missed it is retried with
    /// the entry next pass.
    async fn pop_queue(&self) {
        let ts = slightly_later(self.entry.q_record.max(self.entry.q_ts), 2);
        let ring = &self.rings.container;
        let part = ring.partition(
            &self.ctx.hash,
            MISPLACED_OBJECTS_ACCOUNT,
            Some(&self.queue_container),
            None,
        );
        let mut deletes = JoinSet::new();
        for node in ring.primaries(part) {
            let path = quote(&format!(
                "/{}/{part}/{MISPLACED_OBJECTS_ACCOUNT}/{}/{}",
                node.device, self.queue_container, self.queue_name
            ));
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&ts.internal()) {
                headers.insert(HeaderName::from_static(h::X_TIMESTAMP), v);
            }
            headers.insert(h::X_BACKEND_STORAGE_POLICY_INDEX, HeaderValue::from(0));
            let (client, host) = (self.ctx.client.clone(), device_host(node));
            deletes.spawn(async move {
                match client
                    .request(Method::DELETE, &host, &path, headers, apus_http::empty())
                    .await
                {
                    Ok(resp) => {
                        let _ =
                            apus_http::body::collect_limited(resp.into_body(), SMALL_BODY).await;
                    }
                    Err(e) => tracing::warn!(%host, error = %e, "reconciler queue pop failed"),
                }
            });
        }
        while deletes.join_next().await.is_some() {}
        self.stats.incr("pop_queue");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    // Expected values below were computed with Swift 2.38.3's
    // swift.container.reconciler functions (get_reconciler_container_name,
    // get_reconciler_obj_name, slightly_later_timestamp, parse_raw_obj,
    // best_policy_index) and swift.common.utils.encode_timestamps.

    #[test]
    fn queue_containers_are_named_by_the_hour_of_the_newest_timestamp() {
        assert_eq!(
            queue_container_name("1700003599.99999").as_deref(),
            Some("1700002800")
        );
        // encode_timestamps(1700000000.5, 1700000001, 1700003600.25)
        let encoded = "1700000000.50000+c350+15740508";
        let decoded = decode_timestamps(encoded).unwrap();
        assert_eq!(decoded.meta, ts("1700003600.25"));
        assert_eq!(queue_container_name(encoded).as_deref(), Some("1700002800"));
        assert_eq!(
            queue_container_name("1700000000.50000_0000000000000003").as_deref(),
            Some("1699999200")
        );
        assert_eq!(
            queue_container_name("1700000000.00000_000000000000000a").as_deref(),
            Some("1699999200")
        );
        assert_eq!(queue_container_name("garbage"), None);
    }

    #[test]
    fn queue_entries_are_named_policy_colon_path() {
        assert_eq!(
            queue_object_name(1, "AUTH_a", "c", "o/with:colon \u{e9}"),
            "1:/AUTH_a/c/o/with:colon \u{e9}"
        );
        let row = ObjectRecord::put("o", ts("1700000000.50000"), 12, "text/plain", "abc", 1);
        let q = queue_record(&row, "AUTH_a", "c");
        assert_eq!(q.name, "1:/AUTH_a/c/o");
        assert_eq!(q.created_at, "1700000000.50000");
        assert_eq!(q.etag, "1700000000.50000");
        assert_eq!(q.content_type, "application/x-put");
        assert_eq!((q.size, q.deleted, q.storage_policy_index), (0, false, 0));
        let gone = ObjectRecord::delete("o", ts("1700000001"), 2);
        let q = queue_record(&gone, "AUTH_a", "c");
        assert_eq!(q.name, "2:/AUTH_a/c/o");
        assert_eq!(q.content_type, "application/x-delete");
        assert!(!q.deleted);
    }

    #[test]
    fn slightly_later_adds_to_the_offset() {
        let t = ts("1700000000.12345");
        assert_eq!(
            slightly_later(t, 1).internal(),
            "1700000000.12345_0000000000000001"
        );
        assert_eq!(
            slightly_later(t, 3).internal(),
            "1700000000.12345_0000000000000003"
        );
        assert_eq!(
            slightly_later(t.with_offset(2), 3).internal(),
            "1700000000.12345_0000000000000005"
        );
        assert_eq!(
            slightly_later(ts("1700000000.12345_0000000000000002"), 2).internal(),
            "1700000000.12345_0000000000000004"
        );
        assert!(slightly_later(t, 1) > t && slightly_later(t, 1) < slightly_later(t, 2));
    }

    #[test]
    fn queue_entries_parse_as_swift_parses_them() {
        // parse_raw_obj({'name': '3:/AUTH_a/c/o/x:y', 'hash':
        // encode_timestamps(1700000000.5, 1700000000.5, 1700000002),
        // 'content_type': 'application/x-delete',
        // 'last_modified': '2023-11-14T22:13:22.123450'})
        let hash = "1700000000.50000+0+249f0";
        assert_eq!(decode_timestamps(hash).unwrap().meta, ts("1700000002"));
        let e = parse_queue_entry(
            "3:/AUTH_a/c/o/x:y",
            "application/x-delete",
            hash,
            "2023-11-14T22:13:22.123450",
        )
        .unwrap();
        assert_eq!(
            e,
            QueueEntry {
                policy_index: 3,
                account: "AUTH_a".into(),
                container: "c".into(),
                obj: "o/x:y".into(),
                op: QueueOp::Delete,
                q_ts: ts("1700000000.50000"),
                q_record: ts("1700000002.12345"),
            }
        );
        assert_eq!(e.path(), "/AUTH_a/c/o/x:y");
        let put = parse_queue_entry(
            "0:/a/c/o",
            "application/x-put",
            "1700000000.00000",
            "2023-11-14T22:13:20.000000",
        )
        .unwrap();
        assert_eq!(put.op, QueueOp::Put);
        assert_eq!(put.q_record, ts("1700000000"));
        for (name, ct) in [
            ("0:/a/c/o", "text/plain"),
            ("x:/a/c/o", "application/x-put"),
            ("0/a/c/o", "application/x-put"),
            ("0:/a/c", "application/x-put"),
            ("0:a/c/o", "application/x-put"),
            ("0://c/o", "application/x-put"),
            ("0:/a//o", "application/x-put"),
        ] {
            assert!(
                parse_queue_entry(name, ct, "1700000000.00000", "2023-11-14T22:13:20.000000")
                    .is_err(),
                "{name} {ct}"
            );
        }
        assert!(parse_queue_entry(
            "0:/a/c/o",
            "application/x-put",
            "zz",
            "2023-11-14T22:13:20.0"
        )
        .is_err());
        assert_eq!(
            parse_last_modified("1970-01-01T00:00:00.000000"),
            Some(Timestamp::ZERO)
        );
        assert_eq!(parse_last_modified("2023-11-14 22:13:20.000000"), None);
        assert_eq!(parse_last_modified("2023-13-14T22:13:20.000000"), None);
    }

    fn state(spi: i64, put: &str, del: &str, changed: &str) -> PolicyState {
        let mut h = HeaderMap::new();
        h.insert(
            h::X_BACKEND_STORAGE_POLICY_INDEX,
            spi.to_string().parse().unwrap(),
        );
        for (name, v) in [
            ("x-backend-put-timestamp", put),
            ("x-backend-delete-timestamp", del),
            ("x-backend-status-changed-at", changed),
        ] {
            if !v.is_empty() {
                h.insert(name, v.parse().unwrap());
            }
        }
        policy_state_from_headers(&h).unwrap()
    }

    #[test]
    fn the_best_copy_decides_the_policy_as_in_swift() {
        let first = state(1, "0000000010.00000", "", "0000000010.00000");
        let second = state(0, "0000000020.00000", "", "0000000020.00000");
        // A copy that answers with no timestamps at all (Swift: the
        // answer of a server without the database) sorts first.
        let blank = state(2, "", "", "");
        assert_eq!(
            best_policy_index(&[first.clone(), second.clone(), blank]),
            Some(2)
        );
        assert_eq!(best_policy_index(&[first, second.clone()]), Some(1));
        let deleted = state(
            1,
            "0000000010.00000",
            "0000000015.00000",
            "0000000015.00000",
        );
        assert_eq!(best_policy_index(&[second, deleted]), Some(0));
        assert_eq!(best_policy_index(&[]), None);
        assert!(policy_state_from_headers(&HeaderMap::new()).is_none());
    }

    #[test]
    fn processes_split_the_objects_between_them() {
        let hashes: Vec<String> = (0..300)
            .map(|i| {
                apus_core::HashConfig::new("p", "s").hash_path(
                    "a",
                    Some("c"),
                    Some(&format!("o{i}")),
                )
            })
            .collect();
        let mut counts = [0; 3];
        for h in &hashes {
            let owners: Vec<u64> = (0..3).filter(|&p| owns_object(h, 3, p)).collect();
            assert_eq!(owners.len(), 1);
            counts[owners[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
        assert!(hashes.iter().all(|h| owns_object(h, 0, 0)));
    }
}
