//! The object expirer: deletes objects whose `X-Delete-At` has passed,
//! found through the queue in the hidden `.expiring_objects` account
//! (task containers named by time, task objects named
//! `<delete_at>-<account>/<container>/<object>`), so no pass ever walks
//! the objects themselves.
//!
//! The object is deleted through an [`InternalClient`] (a proxy pipeline
//! without auth, as Swift's internal client is) with `X-If-Delete-At`, so
//! an object whose expiry changed meanwhile survives; the queue entry is
//! then removed directly from the task container's servers. A 404 or 412
//! keeps the entry until `reclaim_age` has passed, in case the object
//! shows up late; empty task containers are deleted.
//!
//! Entries of type `application/async-deleted` (queued by SLO's
//! `?multipart-manifest=delete&async=yes`, named with a precise
//! timestamp) delete their object unconditionally at that timestamp; a
//! 404 there means done.

use std::future::Future;
use std::sync::Arc;

use apus_core::{HashConfig, Timestamp};
use apus_proto::update::EXPIRER_ACCOUNT;
use apus_proto::{headers as h, quote};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::context::{device_host, DaemonContext};
use crate::rate::RateLimiter;
use crate::stats::Stats;
use crate::worker::Worker;

/// Listing pages are this long (Swift's container listing limit).
const LISTING_LIMIT: usize = 10_000;
/// Listing bodies larger than this are refused (10,000 JSON entries of
/// at most ~1.5 KiB).
const MAX_LISTING_BYTES: usize = 32 << 20;

/// A request through the cluster's proxy logic, without authentication
/// (Swift's internal client). Paths are `/v1/...`, already quoted.
pub trait InternalClient: Send + Sync + 'static {
    fn call(
        &self,
        method: Method,
        path: String,
        headers: HeaderMap,
        max_body: usize,
    ) -> impl Future<Output = Result<(StatusCode, Bytes), String>> + Send;

    /// A request with a streaming body whose answer streams too (the
    /// container reconciler moves whole objects through it).
    fn send(
        &self,
        req: http::Request<apus_http::Body>,
    ) -> impl Future<Output = http::Response<apus_http::Body>> + Send;
}

/// Settings (Swift's `object-expirer` section).
#[derive(Clone, Debug)]
pub struct ExpirerSettings {
    /// Deletes in flight at once.
    pub concurrency: usize,
    /// Split the queue among this many expirers (0 or 1: one does all).
    pub processes: u64,
    /// Which share this expirer takes, `0..processes`.
    pub process: u64,
    /// How long a task whose object answers 404/412 is retried.
    pub reclaim_age: f64,
    /// Tasks handled per second at most; 0 = unlimited.
    pub tasks_per_second: f64,
}

impl Default for ExpirerSettings {
    fn default() -> Self {
        ExpirerSettings {
            concurrency: 1,
            processes: 0,
            process: 0,
            reclaim_age: 604_800.0,
            tasks_per_second: 0.0,
        }
    }
}

pub struct ObjectExpirer<C: InternalClient> {
    pub settings: ExpirerSettings,
    client: Arc<C>,
}

impl<C: InternalClient> ObjectExpirer<C> {
    pub fn new(settings: ExpirerSettings, client: Arc<C>) -> Self {
        ObjectExpirer { settings, client }
    }
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    #[serde(default)]
    content_type: Option<String>,
}

/// The content type of a queue entry that deletes its object outright
/// (Swift's `ASYNC_DELETE_TYPE`).
pub const ASYNC_DELETE_TYPE: &str = "application/async-deleted";

/// A queue entry parsed: when, and which object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Whole seconds of `timestamp`, for due checks.
    pub delete_at: u64,
    /// The entry's timestamp as written (precise for async deletes).
    pub timestamp: Timestamp,
    pub target: String,
}

/// Parses `<delete_at>-<account>/<container>/<object>` (the time whole
/// seconds, or precise as async-delete entries have it).
pub fn parse_task(name: &str) -> Option<Task> {
    let (at, target) = name.split_once('-')?;
    if at.is_empty() || !at.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let timestamp = Timestamp::parse(at).ok()?;
    let delete_at = timestamp.secs();
    let mut parts = target.splitn(3, '/');
    let (a, c, o) = (parts.next()?, parts.next()?, parts.next()?);
    if a.is_empty() || c.is_empty() || o.is_empty() {
        return None;
    }
    Some(Task {
        delete_at,
        timestamp,
        target: target.to_string(),
    })
}

/// Whether this expirer (`process` of `processes`) owns a task: the MD5
/// of `<container>/<task>` modulo `processes`, as Swift splits the work.
pub fn owns_task(container: &str, task: &str, processes: u64, process: u64) -> bool {
    if processes <= 1 {
        return true;
    }
    let digest = apus_core::hash::md5_digest(format!("{container}/{task}").as_bytes());
    (u128::from_be_bytes(digest) % u128::from(processes)) as u64 == process
}

impl<C: InternalClient> ObjectExpirer<C> {
    /// Every name in a listing of `path` (paged with markers).
    async fn list(&self, path: &str, stats: &Stats) -> Result<Vec<Entry>, String> {
        let mut out = Vec::new();
        let mut marker = String::new();
        // Bounded: each page must advance the marker.
        loop {
            let url = format!(
                "{path}?format=json&limit={LISTING_LIMIT}&marker={}",
                quote(&marker).replace('/', "%2F").replace('&', "%26")
            );
            let (status, body) = self
                .client
                .call(Method::GET, url, HeaderMap::new(), MAX_LISTING_BYTES)
                .await?;
            stats.incr("listings");
            if status == StatusCode::NOT_FOUND || status == StatusCode::NO_CONTENT {
                return Ok(out);
            }
            if !status.is_success() {
                return Err(format!("listing {path}: {status}"));
            }
            let page: Vec<Entry> =
                serde_json::from_slice(&body).map_err(|e| format!("listing {path}: {e}"))?;
            let Some(last) = page.last().map(|e| e.name.clone()) else {
                return Ok(out);
            };
            if last <= marker {
                return Ok(out);
            }
            let full = page.len() >= LISTING_LIMIT;
            out.extend(page);
            if !full {
                return Ok(out);
            }
            marker = last;
        }
    }
}

impl<C: InternalClient> Worker for ObjectExpirer<C> {
    fn name(&self) -> &'static str {
        "object-expirer"
    }

    async fn run_pass(&self, ctx: &DaemonContext, stats: &Stats) -> Result<(), String> {
        let rings = ctx.load_rings()?;
        let now = Timestamp::now();
        let account_path = format!("/v1/{}", quote(EXPIRER_ACCOUNT));
        let containers: Vec<String> = self
            .list(&account_path, stats)
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let mut limiter = RateLimiter::new(self.settings.tasks_per_second);
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        for container in containers {
            // Task containers are named by time; later ones hold nothing due.
            match container.parse::<u64>() {
                Ok(t) if t <= now.secs() => {}
                _ => continue,
            }
            let container_path = format!("{account_path}/{}", quote(&container));
            let tasks = match self.list(&container_path, stats).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(%container, error = %e, "cannot list task container");
                    stats.incr("errors");
                    continue;
                }
            };
            let mut jobs = JoinSet::new();
            let mut remaining = 0u64;
            for entry in tasks {
                let name = entry.name;
                let is_async = entry.content_type.as_deref() == Some(ASYNC_DELETE_TYPE);
                let Some(task) = parse_task(&name) else {
                    tracing::warn!(%container, task = %name, "unparsable expirer task");
                    stats.incr("errors");
                    remaining += 1;
                    continue;
                };
                if task.delete_at > now.secs()
                    || !owns_task(
                        &container,
                        &name,
                        self.settings.processes,
                        self.settings.process,
                    )
                {
                    remaining += 1;
                    continue;
                }
                limiter.acquire(1.0).await;
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let job = TaskJob {
                    client: self.client.clone(),
                    ctx: ctx.clone(),
                    container_ring: rings.clone(),
                    container: container.clone(),
                    name,
                    task,
                    is_async,
                    reclaim_age: self.settings.reclaim_age,
                    stats: stats.clone(),
                };
                jobs.spawn(async move {
                    let done = job.run().await;
                    drop(permit);
                    done
                });
            }
            while let Some(done) = jobs.join_next().await {
                if !matches!(done, Ok(true)) {
                    remaining += 1;
                }
            }
            if remaining == 0 {
                // Swift deletes emptied task containers; a 409 (not empty
                // after all) is fine.
                let _ = self
                    .client
                    .call(Method::DELETE, container_path, HeaderMap::new(), 1 << 16)
                    .await;
            }
        }
        Ok(())
    }
}

struct TaskJob<C> {
    client: Arc<C>,
    ctx: DaemonContext,
    container_ring: Arc<crate::context::Rings>,
    container: String,
    name: String,
    task: Task,
    is_async: bool,
    reclaim_age: f64,
    stats: Stats,
}

impl<C: InternalClient> TaskJob<C> {
    /// Deletes the object and pops the task; true when the task is gone.
    async fn run(self) -> bool {
        let ts = self.task.timestamp;
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&ts.normal()) {
            headers.insert(h::X_TIMESTAMP, v.clone());
            if !self.is_async {
                headers.insert("x-if-delete-at", v);
            }
        }
        if !self.is_async {
            headers.insert(
                "x-backend-clean-expiring-object-queue",
                HeaderValue::from_static("no"),
            );
        }
        let path = format!("/v1/{}", quote(&self.task.target));
        let status = match self
            .client
            .call(Method::DELETE, path, headers, 1 << 16)
            .await
        {
            Ok((status, _)) => status,
            Err(e) => {
                tracing::error!(task = %self.name, error = %e, "expirer delete failed");
                self.stats.incr("errors");
                return false;
            }
        };
        let gone = status.is_success()
            || status == StatusCode::CONFLICT
            || (self.is_async && status == StatusCode::NOT_FOUND);
        let given_up = matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::PRECONDITION_FAILED
        ) && (self.task.delete_at as f64)
            <= Timestamp::now().as_secs_f64() - self.reclaim_age;
        if !gone && !given_up {
            if !matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::PRECONDITION_FAILED
            ) {
                tracing::error!(task = %self.name, status = status.as_u16(), "unexpected response deleting expired object");
            }
            self.stats.incr("errors");
            return false;
        }
        if self.pop_queue().await {
            self.stats.incr("objects");
            true
        } else {
            self.stats.incr("errors");
            false
        }
    }

    /// Removes the task from every primary of its task container; true
    /// when a majority took it (the container replicator does the rest).
    async fn pop_queue(&self) -> bool {
        let ring = &self.container_ring.container;
        let hash: &HashConfig = &self.ctx.hash;
        let part = ring.partition(hash, EXPIRER_ACCOUNT, Some(&self.container), None);
        let nodes = ring.primaries(part);
        let mut ok = 0;
        for node in &nodes {
            let path = quote(&format!(
                "/{}/{part}/{EXPIRER_ACCOUNT}/{}/{}",
                node.device, self.container, self.name
            ));
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&Timestamp::now().internal()) {
                headers.insert(h::X_TIMESTAMP, v);
            }
            headers.insert(h::X_BACKEND_STORAGE_POLICY_INDEX, HeaderValue::from(0));
            match self
                .ctx
                .client
                .request(
                    Method::DELETE,
                    &device_host(node),
                    &path,
                    headers,
                    apus_http::empty(),
                )
                .await
            {
                Ok(resp) => {
                    let status = resp.status();
                    let _ = apus_http::body::collect_limited(resp.into_body(), 1 << 16).await;
                    if status.is_success() || status == StatusCode::NOT_FOUND {
                        ok += 1;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "expirer queue pop failed"),
            }
        }
        ok * 2 > nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_parse_as_the_object_server_names_them() {
        let name =
            apus_proto::update::expirer_task_obj(1_700_000_000, "AUTH_a", "c", "o/with/slashes");
        assert_eq!(
            parse_task(&name),
            Some(Task {
                delete_at: 1_700_000_000,
                timestamp: Timestamp::from_secs_f64(1_700_000_000.0).unwrap(),
                target: "AUTH_a/c/o/with/slashes".into()
            })
        );
        // Async-delete entries carry a precise time (Swift's
        // high-precision task names).
        let task = parse_task("1700000000.12345-a/c/o").unwrap();
        assert_eq!(task.delete_at, 1_700_000_000);
        assert_eq!(task.timestamp.normal(), "1700000000.12345");
        assert_eq!(parse_task("1e9-a/c/o"), None);
        assert_eq!(parse_task("garbage"), None);
        assert_eq!(parse_task("12-a/c"), None);
        assert_eq!(parse_task("x-a/c/o"), None);
        assert_eq!(parse_task("12-a//o"), None);
    }

    #[test]
    fn processes_split_the_tasks_between_them() {
        let names: Vec<String> = (0..300).map(|i| format!("{i}-a/c/o{i}")).collect();
        let mut counts = [0; 3];
        for n in &names {
            let owners: Vec<u64> = (0..3)
                .filter(|&p| owns_task("1700000000", n, 3, p))
                .collect();
            assert_eq!(owners.len(), 1, "{n} must have exactly one owner");
            counts[owners[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
        assert!(names.iter().all(|n| owns_task("c", n, 1, 0)));
    }
}
