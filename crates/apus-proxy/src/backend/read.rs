//! Reads: Swift's `GETorHEAD_base`, with `concurrent_gets`, and the
//! `X-Newest` read that asks every primary.
//!
//! Differences from Swift, on purpose:
//! - Handoffs are asked only once a primary has failed, is error-limited
//!   or is slow (Swift asks them after primary 404s too).
//! - Error-limited primaries are asked last instead of never: a read
//!   answers 404 or 503 only when the answers it has justify it.
//! - A read whose answers already decide it (a quorum of 404s) does not
//!   wait for a slow node it has moved on from.

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, Method, Response};

use apus_core::Timestamp;
use apus_ring::Device;

use super::{
    backend_path, best_response, buffer_response, clean_streaming_headers, node_to_client,
    quorum_size, unavailable, Backend, NodePlan, NodeResponse,
};
use crate::service::Resp;
use apus_http::Body;

/// Which list of a plan a node came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Primary,
    Handoff,
    Limited,
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
fn tombstone_timestamp(headers: &HeaderMap) -> Option<Timestamp> {
    headers
        .get("x-backend-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Timestamp::parse(v).ok())
}

/// Whether a good answer's data predates `tombstone`.
fn older_than(headers: &HeaderMap, tombstone: Option<Timestamp>) -> bool {
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
    .and_then(|v| Timestamp::parse(v).ok());
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
    match (Timestamp::parse(a).ok(), Timestamp::parse(b).ok()) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Which node a read asks next.
struct Cursor<'a> {
    plan: &'a NodePlan,
    primaries: usize,
    handoffs: usize,
    limited: usize,
}

impl<'a> Cursor<'a> {
    /// The next node: primaries first; handoffs once `handoffs_open`;
    /// error-limited primaries only as a `last_resort`.
    fn next(&mut self, handoffs_open: bool, last_resort: bool) -> Option<(&'a Device, Role)> {
        if let Some(dev) = self.plan.primaries.get(self.primaries) {
            self.primaries += 1;
            return Some((dev, Role::Primary));
        }
        if handoffs_open {
            if let Some(dev) = self.plan.handoffs.get(self.handoffs) {
                self.handoffs += 1;
                return Some((dev, Role::Handoff));
            }
        }
        if last_resort {
            if let Some(dev) = self.plan.limited.get(self.limited) {
                self.limited += 1;
                return Some((dev, Role::Limited));
            }
        }
        None
    }

    /// Whether a node other than an error-limited one is left to ask.
    fn has_next(&self, handoffs_open: bool) -> bool {
        self.primaries < self.plan.primaries.len()
            || (handoffs_open && self.handoffs < self.plan.handoffs.len())
    }
}

impl Backend {
    /// Swift's `GETorHEAD_base`: asks the primaries in turn (then the
    /// handoffs, once a primary failed, is error-limited or slow) until
    /// one answers with the data or a final client error, and streams that
    /// answer. With `concurrent_gets`, a node that has not answered within
    /// `concurrency_timeout` is joined by the next one and the first good
    /// answer wins. When none answers so, the best of the answers gathered
    /// decides (404 when a quorum of replicas said so, else 503), after
    /// the error-limited primaries, if any, were asked too. With
    /// `newest`, every primary is asked at once and the answer with the
    /// latest timestamp wins.
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
        let objects = is_object_path(path);
        let quorum = quorum_size(plan.replicas);
        let mut cursor = Cursor {
            plan,
            primaries: 0,
            handoffs: 0,
            limited: 0,
        };
        // Set once a primary failed, was left out, or was slow to answer.
        let mut failed = !plan.limited.is_empty();
        let mut gathered: Vec<NodeResponse> = Vec::new();
        let mut not_found = 0usize;
        let mut latest_tombstone: Option<Timestamp> = None;
        let mut in_flight = FuturesUnordered::new();
        let start = |dev: &Device, role: Role, generation: u32| {
            let bpath = backend_path(dev, plan.partition, path, query);
            self.spawn_send(dev, method.clone(), bpath, headers.clone())
                .map(move |joined| (role, generation, joined.ok().flatten()))
        };
        let concurrency = self.timing.concurrency_timeout;
        let hedge = tokio::time::sleep(concurrency);
        tokio::pin!(hedge);
        // Attempts in flight that the read has not moved on from: those
        // started in the current generation, which the hedge timer ends.
        let mut generation = 0u32;
        let mut fresh = 0usize;
        let mut want_next = true;
        loop {
            let decided = not_found >= quorum;
            if want_next || in_flight.is_empty() {
                want_next = false;
                let last_resort = in_flight.is_empty() && !decided;
                if let Some((dev, role)) = cursor.next(failed, last_resort) {
                    in_flight.push(start(dev, role, generation));
                    fresh += 1;
                    hedge
                        .as_mut()
                        .reset(tokio::time::Instant::now() + concurrency);
                }
            }
            if in_flight.is_empty() {
                break;
            }
            // A quorum of 404s, no node left to ask and only nodes the read
            // moved on from in flight: they cannot change the answer.
            if decided && fresh == 0 && !cursor.has_next(failed) {
                break;
            }
            tokio::select! {
                done = in_flight.next() => {
                    let Some((role, started_in, answer)) = done else { continue };
                    if started_in == generation {
                        fresh -= 1;
                    }
                    want_next = true;
                    let Some(resp) = answer else {
                        failed = true;
                        gathered.push(unavailable());
                        continue;
                    };
                    let status = resp.status().as_u16();
                    if objects && status == 404 {
                        latest_tombstone = latest_tombstone.max(tombstone_timestamp(resp.headers()));
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
                    if status == 404 {
                        // A handoff's 404 says only that it has nothing,
                        // unless it holds a tombstone (Swift's
                        // `is_useful_response`).
                        let authoritative = role != Role::Handoff
                            || resp.headers().contains_key("x-backend-timestamp");
                        if !authoritative {
                            let _ = buffer_response(resp).await;
                            continue;
                        }
                        not_found += 1;
                    } else {
                        failed = true;
                    }
                    gathered.push(buffer_response(resp).await);
                }
                _ = &mut hedge, if self.timing.concurrent_gets && fresh > 0 => {
                    // The nodes in flight are slow: move on, handoffs
                    // included, leaving them to answer if they can.
                    failed = true;
                    generation += 1;
                    fresh = 0;
                    want_next = true;
                }
            }
        }
        if let Some(r) = gathered.iter().find(|r| r.status == 404) {
            if not_found >= quorum || !failed {
                return node_to_client(r);
            }
        }
        best_response(&gathered, quorum, "read")
    }

    /// Every primary at once (the error-limited ones too when the others
    /// are fewer than a quorum); the answer with the latest timestamp wins.
    /// Once a quorum has answered, the others get `post_quorum_timeout`.
    async fn read_newest(
        &self,
        plan: &NodePlan,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> Resp {
        let quorum = quorum_size(plan.replicas);
        let mut nodes: Vec<&Device> = plan.primaries.iter().collect();
        if nodes.len() < quorum {
            nodes.extend(plan.limited.iter());
        }
        let mut pending: FuturesUnordered<_> = nodes
            .iter()
            .map(|dev| {
                let bpath = backend_path(dev, plan.partition, path, query);
                self.spawn_send(dev, method.clone(), bpath, headers.clone())
                    .map(|joined| joined.ok().flatten())
            })
            .collect();
        let mut answers: Vec<Option<Response<Body>>> = Vec::new();
        while answers.len() < quorum {
            match pending.next().await {
                Some(answer) => answers.push(answer),
                None => break,
            }
        }
        let grace = tokio::time::sleep(self.timing.post_quorum_timeout);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = pending.next() => match next {
                    Some(answer) => answers.push(answer),
                    None => break,
                },
                _ = &mut grace => break,
            }
        }
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
            if others.iter().filter(|r| r.status == 404).count() >= quorum {
                return node_to_client(r);
            }
        }
        best_response(&others, quorum, "read")
    }
}
