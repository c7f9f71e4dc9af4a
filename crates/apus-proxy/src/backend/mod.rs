//! Talking to the storage servers: which nodes a partition's request goes
//! to (primaries, then handoffs, skipping error-limited nodes), the
//! concurrent fan-out of a write with a handoff taking over from each
//! failed primary, and Swift's rule for picking the response the client
//! gets from a set of backend answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apus_http::{empty, BackendClient, Body};
use apus_ring::{Device, Ring};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;

use crate::service::{default_body, Resp};

/// Backend bodies larger than this are not buffered (listings stream).
pub const MAX_BUFFERED_BODY: usize = 1 << 20;

/// Counts errors per node; a node with more than the limit within the
/// interval is skipped until the interval has passed since its last error.
pub struct ErrorLimiter {
    limit: u32,
    interval: Duration,
    nodes: Mutex<HashMap<String, (u32, Instant)>>,
}

impl ErrorLimiter {
    pub fn new(limit: u32, interval: Duration) -> Self {
        ErrorLimiter {
            limit,
            interval,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn key(dev: &Device) -> String {
        format!("{}:{}/{}", dev.ip, dev.port, dev.device)
    }

    pub fn is_limited(&self, dev: &Device) -> bool {
        let Ok(mut nodes) = self.nodes.lock() else {
            return false;
        };
        let key = Self::key(dev);
        match nodes.get(&key) {
            Some((_, last)) if last.elapsed() > self.interval => {
                nodes.remove(&key);
                false
            }
            Some((count, _)) => *count > self.limit,
            None => false,
        }
    }

    /// One more error for `dev` (a timeout, a connection failure, a 5xx).
    pub fn error(&self, dev: &Device) {
        if let Ok(mut nodes) = self.nodes.lock() {
            let entry = nodes.entry(Self::key(dev)).or_insert((0, Instant::now()));
            entry.0 = entry.0.saturating_add(1);
            entry.1 = Instant::now();
        }
    }

    /// Takes `dev` out of use at once (507: the drive is gone).
    pub fn limit_now(&self, dev: &Device) {
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.insert(
                Self::key(dev),
                (self.limit.saturating_add(1), Instant::now()),
            );
        }
    }
}

/// The nodes for one partition: primaries in replica order, then up to as
/// many handoffs again (Swift's `request_node_count` of twice the replica
/// count), error-limited nodes left out.
pub struct NodePlan {
    pub partition: u32,
    pub primaries: Vec<Device>,
    pub handoffs: Vec<Device>,
    /// The ring's replica count, for quorum sizes.
    pub replicas: usize,
}

impl NodePlan {
    pub fn new(ring: &Ring, partition: u32, limiter: &ErrorLimiter) -> Self {
        let replicas = ring.replica_count();
        let all_primaries: Vec<Device> = ring.primaries(partition).into_iter().cloned().collect();
        let mut primaries = Vec::with_capacity(all_primaries.len());
        let mut skipped = 0;
        for dev in all_primaries {
            if limiter.is_limited(&dev) {
                skipped += 1;
            } else {
                primaries.push(dev);
            }
        }
        let mut handoffs = Vec::new();
        for dev in ring.handoffs(partition) {
            if handoffs.len() >= replicas + skipped {
                break;
            }
            if !limiter.is_limited(dev) {
                handoffs.push(dev.clone());
            }
        }
        NodePlan {
            partition,
            primaries,
            handoffs,
            replicas,
        }
    }

    /// Every node in the order reads try them.
    pub fn all(&self) -> impl Iterator<Item = &Device> {
        self.primaries.iter().chain(self.handoffs.iter())
    }
}

/// Swift's quorum for replicated data: a majority of the replicas.
pub fn quorum_size(n: usize) -> usize {
    n / 2 + 1
}

/// One backend answer with its body buffered.
#[derive(Clone, Debug)]
pub struct NodeResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl NodeResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the node itself failed (as opposed to answering about the
    /// data): connection errors and timeouts appear as 503 here too.
    pub fn is_server_error(&self) -> bool {
        self.status >= 500
    }
}

/// The backend path of a request: `/<device>/<partition>/<quoted path>`.
pub fn backend_path(dev: &Device, partition: u32, path: &str, query: Option<&str>) -> String {
    let mut out = format!(
        "/{}/{}{}",
        apus_proto::quote(&dev.device),
        partition,
        apus_proto::quote(path)
    );
    if let Some(q) = query {
        if !q.is_empty() {
            out.push('?');
            out.push_str(q);
        }
    }
    out
}

pub fn node_host(dev: &Device) -> String {
    if dev.ip.contains(':') {
        format!("[{}]:{}", dev.ip, dev.port)
    } else {
        format!("{}:{}", dev.ip, dev.port)
    }
}

/// Spreads the update targets `devs` over the per-replica backend headers
/// round-robin, as Swift does: replica `i` names device `i % n` in
/// `<prefix>-host`, `<prefix>-device` (comma-joined when it gets several)
/// and `<prefix>-partition`. Used for container updates of object writes
/// (`x-container`), account updates of container writes (`x-account`) and
/// expiring-object queue updates (`x-delete-at`).
pub fn assign_update_targets(headers: &mut [HeaderMap], devs: &[&Device], part: u32, prefix: &str) {
    let n = headers.len();
    if n == 0 {
        return;
    }
    let mut hosts: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut devices: Vec<Vec<String>> = vec![Vec::new(); n];
    for (i, dev) in devs.iter().enumerate() {
        hosts[i % n].push(node_host(dev));
        devices[i % n].push(dev.device.clone());
    }
    for (i, h) in headers.iter_mut().enumerate() {
        if hosts[i].is_empty() {
            continue;
        }
        crate::service::set_header(h, &format!("{prefix}-partition"), &part.to_string());
        crate::service::set_header(h, &format!("{prefix}-host"), &hosts[i].join(","));
        crate::service::set_header(h, &format!("{prefix}-device"), &devices[i].join(","));
    }
}

/// The storage side of the proxy: the HTTP client and the error limiter.
pub struct Backend {
    pub client: BackendClient,
    pub limiter: ErrorLimiter,
}

impl Backend {
    /// Sends one request and returns the streaming response, or `None` when
    /// the node could not be reached or timed out (the node is charged an
    /// error). 507 and 5xx answers charge the node too.
    pub async fn send(
        &self,
        dev: &Device,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Option<Response<Body>> {
        let host = node_host(dev);
        match self
            .client
            .request(method, &host, path, headers, body)
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if status == 507 {
                    self.limiter.limit_now(dev);
                } else if status >= 500 {
                    self.limiter.error(dev);
                }
                Some(resp)
            }
            Err(e) => {
                let mut cause = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    cause.push_str(": ");
                    cause.push_str(&inner.to_string());
                    source = inner.source();
                }
                tracing::warn!(node = %host, device = %dev.device, error = %cause, "backend request failed");
                self.limiter.error(dev);
                None
            }
        }
    }

    /// Sends one request with no body and buffers the answer (up to
    /// [`MAX_BUFFERED_BODY`]); an unreachable node reads as a 503.
    pub async fn send_buffered(
        &self,
        dev: &Device,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> NodeResponse {
        match self.send(dev, method, path, headers, empty()).await {
            Some(resp) => buffer_response(resp).await,
            None => unavailable(),
        }
    }

    /// Swift's `make_requests`: the same request to every primary at once;
    /// each primary that fails (unreachable, 5xx, 507) hands its turn to
    /// the next unused handoff. Returns one answer per primary slot.
    pub async fn fan_out(
        &self,
        plan: &NodePlan,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers_for: &(dyn Fn(usize) -> HeaderMap + Sync),
    ) -> Vec<NodeResponse> {
        let handoffs = Mutex::new(plan.handoffs.iter());
        let slots = plan.replicas.max(1);
        let primaries: Vec<Option<&Device>> = (0..slots).map(|i| plan.primaries.get(i)).collect();
        let futures = primaries.into_iter().enumerate().map(|(i, first)| {
            let handoffs = &handoffs;
            let method = method.clone();
            async move {
                let mut node = first.or_else(|| handoffs.lock().ok().and_then(|mut h| h.next()));
                let mut last = unavailable();
                while let Some(dev) = node {
                    let path = backend_path(dev, plan.partition, path, query);
                    last = self
                        .send_buffered(dev, method.clone(), &path, headers_for(i))
                        .await;
                    if !last.is_server_error() {
                        return last;
                    }
                    node = handoffs.lock().ok().and_then(|mut h| h.next());
                }
                last
            }
        });
        futures_util::future::join_all(futures).await
    }
}

pub fn unavailable() -> NodeResponse {
    NodeResponse {
        status: 503,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

/// Reads a backend response's body into memory, up to [`MAX_BUFFERED_BODY`];
/// a body that fails midway or is too large makes the answer a 503.
pub async fn buffer_response(resp: Response<Body>) -> NodeResponse {
    let (parts, mut body) = resp.into_parts();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > MAX_BUFFERED_BODY {
                        return unavailable();
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Err(_) => return unavailable(),
        }
    }
    NodeResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: buf.freeze(),
    }
}

/// Swift's `best_response`: the highest status of the first class (2xx,
/// then 3xx, then 4xx) that a quorum of `replicas` answers share, else 503.
/// Returns the index of the chosen answer, or `None` for the 503.
pub fn best_index(responses: &[NodeResponse], quorum: usize) -> Option<usize> {
    for hundred in [200u16, 300, 400] {
        let class: Vec<(usize, u16)> = responses
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status >= hundred && r.status < hundred + 100)
            .map(|(i, r)| (i, r.status))
            .collect();
        if class.len() >= quorum {
            return class.iter().max_by_key(|(_, s)| *s).map(|(i, _)| *i);
        }
    }
    None
}

/// Builds the client's response from the best of `responses` (see
/// [`best_index`]); hop-by-hop and length headers are recomputed.
pub fn best_response(responses: &[NodeResponse], quorum: usize, server_type: &str) -> Resp {
    match best_index(responses, quorum) {
        Some(i) => node_to_client(&responses[i]),
        None => {
            let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
            tracing::error!(?statuses, "{server_type} returning 503");
            crate::service::error_response(StatusCode::SERVICE_UNAVAILABLE, None)
        }
    }
}

/// A buffered backend answer as a client response.
pub fn node_to_client(node: &NodeResponse) -> Resp {
    let status = StatusCode::from_u16(node.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut headers = node.headers.clone();
    for h in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
    ] {
        headers.remove(h);
    }
    let body = if node.body.is_empty() && status.as_u16() >= 400 {
        Bytes::from(default_body(status))
    } else {
        node.body.clone()
    };
    if !body.is_empty() || !matches!(status.as_u16(), 204 | 304) {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        // swob's default, which Swift's clients see on every answer.
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
    }
    let mut resp = Response::new(apus_http::full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Shared handle used by the controllers.
pub type SharedBackend = Arc<Backend>;

/// Drops hop-by-hop headers from a backend response passed on streaming.
pub fn clean_streaming_headers(headers: &mut HeaderMap) {
    for h in ["connection", "keep-alive", "transfer-encoding"] {
        headers.remove(h);
    }
}

/// Whether a read answer ends the search for a node (Swift's
/// `is_good_source` plus the client errors that no other node would
/// answer differently).
fn final_read_status(status: u16) -> bool {
    status < 500 && status != 404
}

/// `/a/c/o`: only object reads weigh tombstones against data.
fn is_object_path(path: &str) -> bool {
    path.trim_start_matches('/').splitn(3, '/').count() == 3
}

/// The deletion time a 404 reports (`X-Backend-Timestamp`), if any.
fn tombstone_timestamp(headers: &HeaderMap) -> Option<apus_core::Timestamp> {
    headers
        .get("x-backend-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| apus_core::Timestamp::parse(v).ok())
}

/// Whether a good answer's data predates `tombstone`.
fn older_than(headers: &HeaderMap, tombstone: Option<apus_core::Timestamp>) -> bool {
    let Some(tombstone) = tombstone else {
        return false;
    };
    let data = [
        "x-backend-data-timestamp",
        "x-backend-timestamp",
        "x-put-timestamp",
        "x-timestamp",
    ]
    .iter()
    .find_map(|n| headers.get(*n))
    .and_then(|v| v.to_str().ok())
    .and_then(|v| apus_core::Timestamp::parse(v).ok());
    data.is_some_and(|d| d < tombstone)
}

fn timestamp_of(headers: &HeaderMap) -> String {
    for name in ["x-backend-timestamp", "x-timestamp", "x-put-timestamp"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            return v.to_string();
        }
    }
    String::new()
}

/// Compares Swift timestamps as numbers (`1234.56789_0000000000000001`).
fn newer(a: &str, b: &str) -> bool {
    match (
        apus_core::Timestamp::parse(a).ok(),
        apus_core::Timestamp::parse(b).ok(),
    ) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        _ => false,
    }
}

impl Backend {
    /// Swift's `GETorHEAD_base`: asks the primaries in turn (then the
    /// handoffs, but only when some primary failed) until one answers with
    /// the data or a final client error, and streams that answer. When none
    /// does, the best of the answers gathered decides (404 when a quorum of
    /// replicas said so, else 503). With `newest`, every primary is asked
    /// at once and the answer with the latest timestamp wins.
    pub async fn read(
        &self,
        plan: &NodePlan,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: HeaderMap,
        newest: bool,
    ) -> Resp {
        if newest {
            return self.read_newest(plan, method, path, query, headers).await;
        }
        let mut gathered: Vec<NodeResponse> = Vec::new();
        let mut failed = false;
        let objects = is_object_path(path);
        let mut latest_tombstone: Option<apus_core::Timestamp> = None;
        for (i, dev) in plan.all().enumerate() {
            if i >= plan.primaries.len() && !failed {
                break;
            }
            let bpath = backend_path(dev, plan.partition, path, query);
            match self
                .send(dev, method.clone(), &bpath, headers.clone(), empty())
                .await
            {
                Some(resp) => {
                    let status = resp.status().as_u16();
                    if objects && status == 404 {
                        latest_tombstone =
                            latest_tombstone.max(tombstone_timestamp(resp.headers()));
                    }
                    // A copy older than a tombstone already seen is stale
                    // (a node that missed the DELETE): not a source.
                    if objects
                        && (200..300).contains(&status)
                        && older_than(resp.headers(), latest_tombstone)
                    {
                        let _ = buffer_response(resp).await;
                        continue;
                    }
                    if final_read_status(status) {
                        let (mut parts, body) = resp.into_parts();
                        clean_streaming_headers(&mut parts.headers);
                        return Response::from_parts(parts, body);
                    }
                    if status != 404 {
                        failed = true;
                    }
                    gathered.push(buffer_response(resp).await);
                }
                None => {
                    failed = true;
                    gathered.push(unavailable());
                }
            }
        }
        let not_found = gathered.iter().filter(|r| r.status == 404).count();
        if let Some(r) = gathered.iter().find(|r| r.status == 404) {
            if not_found >= quorum_size(plan.replicas) || !failed {
                return node_to_client(r);
            }
        }
        best_response(&gathered, quorum_size(plan.replicas), "read")
    }

    async fn read_newest(
        &self,
        plan: &NodePlan,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> Resp {
        let futures = plan.primaries.iter().map(|dev| {
            let bpath = backend_path(dev, plan.partition, path, query);
            let method = method.clone();
            let headers = headers.clone();
            async move { self.send(dev, method, &bpath, headers, empty()).await }
        });
        let mut answers = futures_util::future::join_all(futures).await;
        if is_object_path(path) {
            // Swift's rule: data older than the newest tombstone is stale.
            let latest = answers
                .iter()
                .flatten()
                .filter(|r| r.status() == 404)
                .filter_map(|r| tombstone_timestamp(r.headers()))
                .max();
            for slot in answers.iter_mut() {
                let stale = slot
                    .as_ref()
                    .is_some_and(|r| r.status().is_success() && older_than(r.headers(), latest));
                if stale {
                    *slot = None;
                }
            }
        }
        let mut best: Option<Response<Body>> = None;
        let mut others: Vec<NodeResponse> = Vec::new();
        for resp in answers.into_iter() {
            let Some(resp) = resp else {
                others.push(unavailable());
                continue;
            };
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                let replace = match &best {
                    None => true,
                    Some(b) => newer(&timestamp_of(resp.headers()), &timestamp_of(b.headers())),
                };
                if replace {
                    best = Some(resp);
                }
            } else {
                others.push(buffer_response(resp).await);
            }
        }
        if let Some(resp) = best {
            let (mut parts, body) = resp.into_parts();
            clean_streaming_headers(&mut parts.headers);
            return Response::from_parts(parts, body);
        }
        if let Some(r) = others.iter().find(|r| r.status == 404) {
            if others.iter().filter(|r| r.status == 404).count() >= quorum_size(plan.replicas) {
                return node_to_client(r);
            }
        }
        best_response(&others, quorum_size(plan.replicas), "read")
    }
}
