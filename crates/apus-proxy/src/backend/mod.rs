//! Talking to the storage servers: which nodes a partition's request goes
//! to (primaries, then handoffs, error-limited nodes last), the concurrent
//! fan-out of a write with a handoff taking over from each failed or slow
//! primary, reads that also ask the next node when one is slow, and
//! Swift's rule for picking the response the client gets from a set of
//! backend answers.
//!
//! A stalled node must cost a request little: every attempt runs as a
//! task of its own, so that a request can go on without a slow node (a
//! read asks the next node after `concurrency_timeout`, a write slot tries
//! a handoff, a write answers `post_quorum_timeout` after its quorum) while
//! the abandoned attempt still runs to its `node_timeout` in the
//! background and charges the node its error. Error-limited nodes are
//! asked last rather than never (see [`limiter`]).

pub mod limiter;
mod read;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apus_http::{empty, BackendClient, Body};
use apus_ring::{Device, Ring};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;

pub use limiter::{Admission, ErrorLimiter, LimiterConfig};

use crate::metrics::{BackendFailure, NodeType};

use crate::service::{default_body, Resp};

/// Backend bodies larger than this are not buffered (listings stream).
pub const MAX_BUFFERED_BODY: usize = 1 << 20;

/// How long the proxy waits for slow nodes before going on without them.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Swift's `concurrency_timeout`: a read that has no answer from a node
    /// after this long also asks the next one (with `concurrent_gets`), and
    /// a write slot also tries its next handoff.
    pub concurrency_timeout: Duration,
    /// Swift's `concurrent_gets`.
    pub concurrent_gets: bool,
    /// Swift's `post_quorum_timeout`: once a quorum of a write's nodes
    /// agree, the others get this long to answer.
    pub post_quorum_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            concurrency_timeout: Duration::from_millis(500),
            concurrent_gets: true,
            post_quorum_timeout: Duration::from_millis(500),
        }
    }
}

/// The nodes for one partition: primaries in replica order, then up to as
/// many handoffs again (Swift's `request_node_count` of twice the replica
/// count); error-limited primaries apart, to be asked last.
pub struct NodePlan {
    pub partition: u32,
    /// Primaries that are not error-limited, or whose probe turn this is.
    pub primaries: Vec<Device>,
    pub handoffs: Vec<Device>,
    /// Error-limited primaries: a read asks them only when the others'
    /// answers decide nothing, a write only when the handoffs run out.
    pub limited: Vec<Device>,
    /// The ring's replica count, for quorum sizes.
    pub replicas: usize,
    /// For each ring position, the primary there when it is in
    /// `primaries` (`None`: error-limited). A write's slot `i` is ring
    /// position `i`, so a stand-in takes the place, and for an
    /// erasure-coded object the fragment index, of the primary it
    /// replaces.
    slots: Vec<Option<usize>>,
}

impl NodePlan {
    pub fn new(ring: &Ring, partition: u32, limiter: &ErrorLimiter) -> Self {
        let replicas = ring.replica_count();
        let mut primaries = Vec::with_capacity(replicas);
        let mut limited = Vec::new();
        let mut slots = Vec::with_capacity(replicas);
        for dev in ring.primaries(partition) {
            match limiter.admit(dev) {
                Admission::Open | Admission::Probe => {
                    slots.push(Some(primaries.len()));
                    primaries.push(dev.clone());
                }
                Admission::Limited => {
                    slots.push(None);
                    limited.push(dev.clone());
                }
            }
        }
        let mut handoffs = Vec::new();
        for dev in ring.handoffs(partition) {
            if handoffs.len() >= replicas + limited.len() {
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
            limited,
            replicas,
            slots,
        }
    }

    /// The primary a write sends slot `i` to first: the one at ring
    /// position `i`, unless it is error-limited.
    pub fn slot(&self, i: usize) -> Option<&Device> {
        self.slots
            .get(i)
            .copied()
            .flatten()
            .and_then(|p| self.primaries.get(p))
    }

    /// The nodes that stand in for failed primaries in writes: handoffs,
    /// then the error-limited primaries.
    pub fn stand_ins(&self) -> impl Iterator<Item = &Device> {
        self.handoffs.iter().chain(self.limited.iter())
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

/// The storage side of the proxy: the HTTP client, the error limiter and
/// the waits for slow nodes.
pub struct Backend {
    pub client: BackendClient,
    /// Kept-alive connections for object uploads (`Expect: 100-continue`),
    /// which hyper's client cannot send.
    pub uploads: apus_http::expect::UploadPool,
    pub limiter: Arc<ErrorLimiter>,
    pub timing: Timing,
}

/// One request to one node, charging the node an error when it cannot be
/// reached, times out or answers 5xx (507 limits it at once), and
/// readmitting an error-limited node that answers. `None` when no answer
/// came.
async fn send_to(
    client: &BackendClient,
    limiter: &Arc<ErrorLimiter>,
    dev: &Device,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Body,
) -> Option<Response<Body>> {
    let host = node_host(dev);
    let waiting = limiter.begin(dev);
    match client.request(method, &host, path, headers, body).await {
        Ok(resp) => {
            waiting.answered();
            let status = resp.status().as_u16();
            if status == 507 {
                limiter
                    .figures()
                    .failed(NodeType::of_backend_path(path), BackendFailure::ServerError);
                limiter.limit_now(dev);
            } else if status >= 500 {
                let node = NodeType::of_backend_path(path);
                limiter.failed(dev, node, BackendFailure::ServerError);
            } else {
                limiter.answered(dev);
            }
            Some(resp)
        }
        Err(e) => {
            drop(waiting);
            let mut cause = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                cause.push_str(": ");
                cause.push_str(&inner.to_string());
                source = inner.source();
            }
            tracing::warn!(node = %host, device = %dev.device, error = %cause, "backend request failed");
            let failure = if e.is_timeout() {
                BackendFailure::Timeout
            } else {
                BackendFailure::Error
            };
            limiter.failed(dev, NodeType::of_backend_path(path), failure);
            None
        }
    }
}

/// What a request that outlives its handler needs to reach nodes: the
/// client and the error limiter (a streaming EC GET asks for replacement
/// fragments while it sends).
#[derive(Clone)]
pub struct NodeSender {
    client: BackendClient,
    limiter: Arc<ErrorLimiter>,
}

impl NodeSender {
    /// [`Backend::send`] with no body.
    pub async fn send(
        &self,
        dev: &Device,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Option<Response<Body>> {
        send_to(
            &self.client,
            &self.limiter,
            dev,
            method,
            path,
            headers,
            empty(),
        )
        .await
    }
}

/// An attempt running as a task of its own: dropping the handle leaves it
/// to finish (and charge its node) in the background.
pub(crate) type Attempt<T> = tokio::task::JoinHandle<T>;

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
        send_to(
            &self.client,
            &self.limiter,
            dev,
            method,
            path,
            headers,
            body,
        )
        .await
    }

    /// A cloneable handle for requests made after the handler returned.
    pub fn sender(&self) -> NodeSender {
        NodeSender {
            client: self.client.clone(),
            limiter: self.limiter.clone(),
        }
    }

    /// [`Backend::send`] with no body, as a task of its own.
    fn spawn_send(
        &self,
        dev: &Device,
        method: Method,
        path: String,
        headers: HeaderMap,
    ) -> Attempt<Option<Response<Body>>> {
        let client = self.client.clone();
        let limiter = self.limiter.clone();
        let dev = dev.clone();
        tokio::spawn(async move {
            send_to(&client, &limiter, &dev, method, &path, headers, empty()).await
        })
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

    /// Swift's `make_requests`: the same request to every primary at once.
    /// Each slot hands its turn to the next unused stand-in (handoffs, then
    /// error-limited primaries) when its node fails (unreachable, 5xx,
    /// 507), and also starts the stand-in when its node has not answered
    /// within `concurrency_timeout`; the slot takes the first answer that
    /// is not a server error. Once a quorum of slots agree (Swift's
    /// `have_quorum`), the rest get `post_quorum_timeout`. Returns one
    /// answer per slot, 503 for those that gave none.
    pub async fn fan_out(
        &self,
        plan: &NodePlan,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers_for: &(dyn Fn(usize) -> HeaderMap + Sync),
    ) -> Vec<NodeResponse> {
        self.fan_out_with_body(plan, method, path, query, headers_for, None)
            .await
    }

    /// [`Backend::fan_out`] with a (small, already read) body sent to each
    /// node.
    pub async fn fan_out_with_body(
        &self,
        plan: &NodePlan,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers_for: &(dyn Fn(usize) -> HeaderMap + Sync),
        body: Option<Bytes>,
    ) -> Vec<NodeResponse> {
        let stand_ins = Mutex::new(plan.stand_ins());
        let slots = plan.replicas.max(1);
        let pending: FuturesUnordered<_> = (0..slots)
            .map(|i| {
                let stand_ins = &stand_ins;
                let method = method.clone();
                let headers = headers_for(i);
                let body = body.clone();
                async move {
                    let first = plan.slot(i);
                    let next = || stand_ins.lock().ok().and_then(|mut s| s.next());
                    let answer = self
                        .hedged_slot(first, next, |dev| {
                            let path = backend_path(dev, plan.partition, path, query);
                            let client = self.client.clone();
                            let limiter = self.limiter.clone();
                            let dev = dev.clone();
                            let method = method.clone();
                            let headers = headers.clone();
                            let body = match &body {
                                Some(b) => apus_http::full(b.clone()),
                                None => empty(),
                            };
                            tokio::spawn(async move {
                                match send_to(&client, &limiter, &dev, method, &path, headers, body)
                                    .await
                                {
                                    Some(resp) => buffer_response(resp).await,
                                    None => unavailable(),
                                }
                            })
                        })
                        .await;
                    (i, answer)
                }
            })
            .collect();
        self.gather(pending, slots, quorum_size(slots)).await
    }

    /// One answer per slot from `pending` (slot index, answer): all of
    /// them, or, once a quorum of one class is in (Swift's `have_quorum`),
    /// those that come within `post_quorum_timeout`; 503 for the others.
    pub(crate) async fn gather<F>(
        &self,
        mut pending: FuturesUnordered<F>,
        slots: usize,
        quorum: usize,
    ) -> Vec<NodeResponse>
    where
        F: std::future::Future<Output = (usize, NodeResponse)>,
    {
        let mut answers: Vec<Option<NodeResponse>> = vec![None; slots];
        while let Some((i, answer)) = pending.next().await {
            if let Some(slot) = answers.get_mut(i) {
                *slot = Some(answer);
            }
            let statuses: Vec<u16> = answers.iter().flatten().map(|a| a.status).collect();
            if have_quorum(&statuses, quorum) {
                break;
            }
        }
        let grace = tokio::time::sleep(self.timing.post_quorum_timeout);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = pending.next() => match next {
                    Some((i, answer)) => {
                        if let Some(slot) = answers.get_mut(i) {
                            *slot = Some(answer);
                        }
                    }
                    None => break,
                },
                _ = &mut grace => break,
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(unavailable))
            .collect()
    }

    /// One write slot: `first` (or, without one, the first stand-in), then
    /// the stand-ins `next` gives, each attempt made by `attempt`. A stand-in
    /// starts when the attempts in flight have all failed, or when the
    /// newest has not answered within `concurrency_timeout`. The slot ends
    /// with the first success, or with its own node's answer if that is not
    /// a server error; a stand-in's other answers (a handoff's 404 for an
    /// object it never had) end it only once nothing else is in flight.
    /// When every node failed, the last failure.
    pub(crate) async fn hedged_slot<'a, T, N, A>(
        &self,
        first: Option<&'a Device>,
        mut next: N,
        attempt: A,
    ) -> T
    where
        T: SlotAnswer + Send + 'static,
        N: FnMut() -> Option<&'a Device>,
        A: Fn(&Device) -> Attempt<T>,
    {
        let mut in_flight = FuturesUnordered::new();
        let start = |dev: &Device, own: bool| {
            futures_util::FutureExt::map(attempt(dev), move |done| {
                (own, done.unwrap_or_else(|_| T::none()))
            })
        };
        match first.or_else(&mut next) {
            Some(dev) => in_flight.push(start(dev, true)),
            None => return T::none(),
        }
        let mut kept: Option<T> = None;
        let mut last_failure = T::none();
        let mut more = true;
        let wait = self.timing.concurrency_timeout;
        let hedge = tokio::time::sleep(wait);
        tokio::pin!(hedge);
        loop {
            tokio::select! {
                done = in_flight.next() => {
                    let Some((own, answer)) = done else {
                        return kept.unwrap_or(last_failure);
                    };
                    if answer.is_final() {
                        if own || answer.is_success() {
                            return answer;
                        }
                        kept.get_or_insert(answer);
                    } else {
                        last_failure = answer;
                    }
                    if in_flight.is_empty() {
                        if let Some(answer) = kept {
                            return answer;
                        }
                        match more.then(&mut next).flatten() {
                            Some(dev) => {
                                in_flight.push(start(dev, false));
                                hedge.as_mut().reset(tokio::time::Instant::now() + wait);
                            }
                            None => return last_failure,
                        }
                    }
                }
                _ = &mut hedge, if more && kept.is_none() => {
                    match next() {
                        Some(dev) => {
                            in_flight.push(start(dev, false));
                            hedge.as_mut().reset(tokio::time::Instant::now() + wait);
                        }
                        None => more = false,
                    }
                }
            }
        }
    }
}

/// What a write slot gets from one attempt.
pub(crate) trait SlotAnswer {
    /// No answer at all (no node left, or the attempt's task failed).
    fn none() -> Self;
    /// Whether this answer can end the slot (anything but a server error).
    fn is_final(&self) -> bool;
    /// Whether the write succeeded on this node.
    fn is_success(&self) -> bool;
}

impl SlotAnswer for NodeResponse {
    fn none() -> Self {
        unavailable()
    }
    fn is_final(&self) -> bool {
        !self.is_server_error()
    }
    fn is_success(&self) -> bool {
        NodeResponse::is_success(self)
    }
}

/// Swift's `have_quorum`: a quorum of answers of one class (2xx, 3xx, 4xx
/// or 5xx).
pub fn have_quorum(statuses: &[u16], quorum: usize) -> bool {
    if statuses.len() < quorum {
        return false;
    }
    [200u16, 300, 400, 500].iter().any(|&hundred| {
        statuses
            .iter()
            .filter(|&&s| s >= hundred && s < hundred + 100)
            .count()
            >= quorum
    })
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
    best_index_with_overrides(responses, quorum, &[])
}

/// [`best_index`] with Swift's `overrides`: when no class has a quorum,
/// the answers whose status `overrides` maps (`(from, to)`) count as the
/// status they map to, and the answer is chosen among the others of the
/// class that then has a quorum. Object DELETEs count 404s as 204s: a
/// node that had no copy answers 404 after writing its tombstone.
pub fn best_index_with_overrides(
    responses: &[NodeResponse],
    quorum: usize,
    overrides: &[(u16, u16)],
) -> Option<usize> {
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    if let Some(i) = quorum_class_best(&statuses, &[], quorum) {
        return Some(i);
    }
    if overrides.is_empty() {
        return None;
    }
    let mut faked = Vec::new();
    let mapped: Vec<u16> = statuses
        .iter()
        .enumerate()
        .map(
            |(i, &s)| match overrides.iter().find(|(from, _)| *from == s) {
                Some(&(_, to)) => {
                    faked.push(i);
                    to
                }
                None => s,
            },
        )
        .collect();
    quorum_class_best(&mapped, &faked, quorum)
}

/// Swift's `_compute_quorum_response`: the index of the highest status of
/// the first class with a quorum, leaving out the indexes in `avoid` (a
/// class whose statuses are all avoided is passed over).
fn quorum_class_best(statuses: &[u16], avoid: &[usize], quorum: usize) -> Option<usize> {
    for hundred in [200u16, 300, 400] {
        let class: Vec<(usize, u16)> = statuses
            .iter()
            .enumerate()
            .filter(|(_, &s)| s >= hundred && s < hundred + 100)
            .map(|(i, &s)| (i, s))
            .collect();
        if class.len() >= quorum {
            let best = class
                .iter()
                .filter(|(i, _)| !avoid.contains(i))
                .max_by_key(|(_, s)| *s)
                .map(|(i, _)| *i);
            if best.is_some() {
                return best;
            }
        }
    }
    None
}

/// Builds the client's response from the best of `responses` (see
/// [`best_index`]); hop-by-hop and length headers are recomputed.
pub fn best_response(responses: &[NodeResponse], quorum: usize, server_type: &str) -> Resp {
    best_response_with_overrides(responses, quorum, server_type, &[])
}

/// [`best_response`] with Swift's status `overrides` (see
/// [`best_index_with_overrides`]).
pub fn best_response_with_overrides(
    responses: &[NodeResponse],
    quorum: usize,
    server_type: &str,
    overrides: &[(u16, u16)],
) -> Resp {
    match best_index_with_overrides(responses, quorum, overrides) {
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
            HeaderValue::from_static(apus_proto::status::DEFAULT_BODY_CONTENT_TYPE),
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
