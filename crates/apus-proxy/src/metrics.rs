//! The proxy's Prometheus figures beyond what `apus-http` counts for
//! every server: client requests by type (account, container, object,
//! other), storage policy (objects), method and status class, with their
//! whole duration (until the body's last byte) and, for GETs, the time
//! to the first body byte; body bytes by type; and the backend's health:
//! failed and timed-out requests by node type and error-limiting events.
//!
//! Everything a request touches is made when the proxy starts (one slot
//! per policy of the configuration), so counting costs relaxed atomic
//! additions and one small allocation for the body wrapper.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use apus_http::metrics::{
    class_index, encode_counter, method_index, AtomicHistogram, LATENCY_BUCKETS, METHODS,
    STATUS_CLASSES,
};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Frame, SizeHint};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use crate::backend::ErrorLimiter;

/// What a client request is about: the `type` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    Account,
    Container,
    Object,
    /// `/info`, `/auth`, `/healthcheck`, S3 paths and anything else.
    Other,
}

impl RequestType {
    const ALL: [RequestType; 4] = [
        RequestType::Account,
        RequestType::Container,
        RequestType::Object,
        RequestType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Account => "account",
            RequestType::Container => "container",
            RequestType::Object => "object",
            RequestType::Other => "other",
        }
    }

    /// The type of a client path: `/v1/a`, `/v1/a/c`, `/v1/a/c/o...`
    /// (any version segment); anything else is `Other`.
    pub fn of_path(path: &str) -> RequestType {
        let Some(rest) = path.strip_prefix("/v1/") else {
            return RequestType::Other;
        };
        let mut parts = rest.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), None, _) if !a.is_empty() => RequestType::Account,
            (Some(a), Some(""), None) if !a.is_empty() => RequestType::Account,
            (Some(a), Some(c), None) if !a.is_empty() && !c.is_empty() => RequestType::Container,
            (Some(a), Some(c), Some("")) if !a.is_empty() && !c.is_empty() => {
                RequestType::Container
            }
            (Some(a), Some(c), Some(_)) if !a.is_empty() && !c.is_empty() => RequestType::Object,
            _ => RequestType::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The kind of storage node a backend request went to: the `node_type`
/// label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    Account,
    Container,
    Object,
}

impl NodeType {
    const ALL: [NodeType; 3] = [NodeType::Account, NodeType::Container, NodeType::Object];

    fn as_str(self) -> &'static str {
        match self {
            NodeType::Account => "account",
            NodeType::Container => "container",
            NodeType::Object => "object",
        }
    }

    /// The node type of a backend path `/<dev>/<part>/<a>[/<c>[/<o>]]`.
    pub fn of_backend_path(path: &str) -> NodeType {
        match path.trim_start_matches('/').splitn(5, '/').count() {
            0..=3 => NodeType::Account,
            4 => NodeType::Container,
            _ => NodeType::Object,
        }
    }
}

/// The storage policy an object request used, set by the object
/// controller in its response's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyIndex(pub u32);

/// How a backend request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendFailure {
    /// No answer within the node timeout.
    Timeout,
    /// No answer: the connection failed or broke.
    Error,
    /// A 5xx answer.
    ServerError,
}

/// The backend's health figures; kept by the [`ErrorLimiter`], which
/// sees every failure.
#[derive(Debug, Default)]
pub struct BackendFigures {
    /// `[node type][failure]`.
    failures: [[AtomicU64; 3]; 3],
    /// Nodes that went over the error limit.
    limited_errors: AtomicU64,
    /// Nodes limited at once by a 507.
    limited_507: AtomicU64,
}

impl BackendFigures {
    pub fn failed(&self, node: NodeType, failure: BackendFailure) {
        self.failures[node as usize][failure as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn limited(&self, insufficient_storage: bool) {
        let c = if insufficient_storage {
            &self.limited_507
        } else {
            &self.limited_errors
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Failures so far of `node` by `failure`.
    pub fn failures(&self, node: NodeType, failure: BackendFailure) -> u64 {
        self.failures[node as usize][failure as usize].load(Ordering::Relaxed)
    }
}

struct Cell {
    requests: AtomicU64,
    duration: AtomicHistogram,
}

/// One group of cells: a request type and, for objects, a policy.
struct Group {
    kind: RequestType,
    /// `None` for the non-object types and objects of no known policy.
    policy: Option<u32>,
    policy_label: String,
    cells: Box<[Cell]>,
    first_byte: AtomicHistogram,
}

/// The proxy's own figures (see the module's documentation).
pub struct ProxyMetrics {
    /// Account, container, other, object without policy, then one per
    /// policy.
    groups: Box<[Group]>,
    received: [AtomicU64; 4],
    sent: [AtomicU64; 4],
    limiter: OnceLock<Arc<ErrorLimiter>>,
}

impl std::fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyMetrics").finish_non_exhaustive()
    }
}

impl ProxyMetrics {
    /// Figures for a proxy serving `policies` (indexes).
    pub fn new(policies: &[u32]) -> Arc<Self> {
        let group = |kind, policy: Option<u32>| Group {
            kind,
            policy,
            policy_label: policy.map(|p| p.to_string()).unwrap_or_default(),
            cells: (0..METHODS.len() * STATUS_CLASSES.len())
                .map(|_| Cell {
                    requests: AtomicU64::new(0),
                    duration: AtomicHistogram::new(&LATENCY_BUCKETS),
                })
                .collect(),
            first_byte: AtomicHistogram::new(&LATENCY_BUCKETS),
        };
        let mut groups = vec![
            group(RequestType::Account, None),
            group(RequestType::Container, None),
            group(RequestType::Other, None),
            group(RequestType::Object, None),
        ];
        for p in policies {
            groups.push(group(RequestType::Object, Some(*p)));
        }
        Arc::new(ProxyMetrics {
            groups: groups.into(),
            received: Default::default(),
            sent: Default::default(),
            limiter: OnceLock::new(),
        })
    }

    /// The limiter whose figures and limited nodes are shown.
    pub fn attach_limiter(&self, limiter: Arc<ErrorLimiter>) {
        let _ = self.limiter.set(limiter);
    }

    fn group(&self, kind: RequestType, policy: Option<u32>) -> usize {
        match kind {
            RequestType::Account => 0,
            RequestType::Container => 1,
            RequestType::Other => 2,
            RequestType::Object => policy
                .and_then(|p| self.groups.iter().position(|g| g.policy == Some(p)))
                .unwrap_or(3),
        }
    }

    /// Counts a request whose response head is ready, and wraps its body
    /// so the whole duration (and a GET's first byte) is recorded when
    /// the body ends or is dropped.
    pub fn observe(
        self: &Arc<Self>,
        kind: RequestType,
        method: &Method,
        started: Instant,
        resp: http::Response<apus_http::Body>,
    ) -> http::Response<apus_http::Body> {
        let policy = resp.extensions().get::<PolicyIndex>().map(|p| p.0);
        let group = self.group(kind, policy);
        let cell = method_index(method) * STATUS_CLASSES.len() + class_index(resp.status());
        if let Some(c) = self.groups.get(group).and_then(|g| g.cells.get(cell)) {
            c.requests.fetch_add(1, Ordering::Relaxed);
        }
        let is_get = *method == Method::GET;
        resp.map(|body| {
            apus_http::Body::new(Metered {
                inner: body,
                metrics: self.clone(),
                group,
                cell,
                kind: kind.index(),
                started,
                first_byte: is_get,
                done: false,
            })
        })
    }

    /// Wraps a client's request body so its bytes are counted.
    pub fn count_request_body(
        self: &Arc<Self>,
        kind: RequestType,
        body: apus_http::Body,
    ) -> apus_http::Body {
        apus_http::Body::new(CountedBody {
            inner: body,
            metrics: self.clone(),
            kind: kind.index(),
        })
    }

    /// Requests counted for `kind`, `policy` (objects), `method` and
    /// `status`.
    pub fn requests(
        &self,
        kind: RequestType,
        policy: Option<u32>,
        method: &Method,
        status: StatusCode,
    ) -> u64 {
        let cell = method_index(method) * STATUS_CLASSES.len() + class_index(status);
        self.groups
            .get(self.group(kind, policy))
            .and_then(|g| g.cells.get(cell))
            .map_or(0, |c| c.requests.load(Ordering::Relaxed))
    }

    /// Every request counted so far by status class, and the body bytes
    /// of every type.
    pub fn totals(&self) -> RequestTotals {
        let mut t = RequestTotals::default();
        for g in self.groups.iter() {
            for (i, c) in g.cells.iter().enumerate() {
                let n = c.requests.load(Ordering::Relaxed);
                t.requests += n;
                if let Some(slot) = t.by_class.get_mut(i % STATUS_CLASSES.len()) {
                    *slot += n;
                }
            }
        }
        t.bytes_in = self
            .received
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum();
        t.bytes_out = self.sent.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        t
    }

    /// The nodes the attached limiter limits now (`ip:port/device`);
    /// none without a limiter.
    pub fn limited_nodes(&self) -> Vec<String> {
        self.limiter
            .get()
            .map(|l| l.limited_nodes())
            .unwrap_or_default()
    }

    /// Body bytes received from and sent to clients for `kind`.
    pub fn body_bytes(&self, kind: RequestType) -> (u64, u64) {
        let i = kind.index();
        (
            self.received[i].load(Ordering::Relaxed),
            self.sent[i].load(Ordering::Relaxed),
        )
    }
}

/// Client requests and body bytes summed over every type, policy and
/// method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestTotals {
    /// Every request counted.
    pub requests: u64,
    /// Requests by status class, in [`STATUS_CLASSES`] order (1xx to 5xx).
    pub by_class: [u64; 5],
    /// Request body bytes read from clients.
    pub bytes_in: u64,
    /// Response body bytes sent to clients.
    pub bytes_out: u64,
}

impl RequestTotals {
    /// Requests of the status class `class` (`"2xx"`...); 0 for a name
    /// that is not one.
    pub fn class(&self, class: &str) -> u64 {
        STATUS_CLASSES
            .iter()
            .position(|c| *c == class)
            .and_then(|i| self.by_class.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// A response body that records its request's duration when it ends.
struct Metered {
    inner: apus_http::Body,
    metrics: Arc<ProxyMetrics>,
    group: usize,
    cell: usize,
    kind: usize,
    started: Instant,
    /// Still to record the first byte (GETs).
    first_byte: bool,
    done: bool,
}

impl Metered {
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(c) = self
            .metrics
            .groups
            .get(self.group)
            .and_then(|g| g.cells.get(self.cell))
        {
            c.duration.observe(self.started.elapsed());
        }
    }

    fn first_byte(&mut self) {
        if std::mem::take(&mut self.first_byte) {
            if let Some(g) = self.metrics.groups.get(self.group) {
                g.first_byte.observe(self.started.elapsed());
            }
        }
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.first_byte();
                    this.metrics.sent[this.kind].fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {
                // An empty body's first byte is its end.
                this.first_byte();
                this.finish();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.first_byte();
        self.finish();
    }
}

/// A request body whose bytes are counted as they are read.
struct CountedBody {
    inner: apus_http::Body,
    metrics: Arc<ProxyMetrics>,
    kind: usize,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.metrics.received[this.kind].fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Collector for ProxyMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        fn labels(g: &Group, i: usize) -> [(&'static str, &str); 4] {
            [
                ("type", g.kind.as_str()),
                ("policy", g.policy_label.as_str()),
                ("method", METHODS[i / STATUS_CLASSES.len()]),
                ("status_class", STATUS_CLASSES[i % STATUS_CLASSES.len()]),
            ]
        }
        let used = || {
            self.groups.iter().flat_map(|g| {
                g.cells
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.requests.load(Ordering::Relaxed) > 0)
                    .map(move |(i, c)| (g, i, c))
            })
        };
        let mut family = encoder.encode_descriptor(
            "apus_proxy_requests",
            "Client requests the proxy answered, by type, policy (objects), method and status class",
            None,
            MetricType::Counter,
        )?;
        for (g, i, c) in used() {
            encode_counter(
                &mut family,
                &labels(g, i),
                c.requests.load(Ordering::Relaxed),
            )?;
        }
        let mut family = encoder.encode_descriptor(
            "apus_proxy_request_duration_seconds",
            "Time from a client request's head until its response's last byte",
            None,
            MetricType::Histogram,
        )?;
        for (g, i, c) in used() {
            let l = labels(g, i);
            let mut m = family.encode_family(&l)?;
            c.duration.encode_into(&mut m)?;
        }
        let mut family = encoder.encode_descriptor(
            "apus_proxy_first_byte_seconds",
            "Time from a client GET's head until its response's first body byte",
            None,
            MetricType::Histogram,
        )?;
        for g in self.groups.iter().filter(|g| g.first_byte.count() > 0) {
            let l = [
                ("type", g.kind.as_str()),
                ("policy", g.policy_label.as_str()),
            ];
            let mut m = family.encode_family(&l)?;
            g.first_byte.encode_into(&mut m)?;
        }
        for (name, help, values) in [
            (
                "apus_proxy_received_body_bytes",
                "Request body bytes the proxy read from clients, by type",
                &self.received,
            ),
            (
                "apus_proxy_sent_body_bytes",
                "Response body bytes the proxy sent to clients, by type",
                &self.sent,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for t in RequestType::ALL {
                let n = values[t.index()].load(Ordering::Relaxed);
                encode_counter(&mut family, &[("type", t.as_str())], n)?;
            }
        }
        let Some(limiter) = self.limiter.get() else {
            return Ok(());
        };
        let figures = limiter.figures();
        let mut family = encoder.encode_descriptor(
            "apus_proxy_backend_errors",
            "Backend requests that failed, by node type and reason (timeout, error: no answer, server_error: a 5xx)",
            None,
            MetricType::Counter,
        )?;
        for node in NodeType::ALL {
            for (reason, failure) in [
                ("timeout", BackendFailure::Timeout),
                ("error", BackendFailure::Error),
                ("server_error", BackendFailure::ServerError),
            ] {
                encode_counter(
                    &mut family,
                    &[("node_type", node.as_str()), ("reason", reason)],
                    figures.failures(node, failure),
                )?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "apus_proxy_error_limited",
            "Times a node was error-limited, by reason (errors: over the limit, insufficient_storage: a 507)",
            None,
            MetricType::Counter,
        )?;
        encode_counter(
            &mut family,
            &[("reason", "errors")],
            figures.limited_errors.load(Ordering::Relaxed),
        )?;
        encode_counter(
            &mut family,
            &[("reason", "insufficient_storage")],
            figures.limited_507.load(Ordering::Relaxed),
        )?;
        let mut family = encoder.encode_descriptor(
            "apus_proxy_error_limited_nodes",
            "Nodes error-limited or stalled now",
            None,
            MetricType::Gauge,
        )?;
        family.encode_gauge(&limiter.limited_count())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_have_types() {
        assert_eq!(RequestType::of_path("/v1/AUTH_a"), RequestType::Account);
        assert_eq!(RequestType::of_path("/v1/AUTH_a/"), RequestType::Account);
        assert_eq!(RequestType::of_path("/v1/AUTH_a/c"), RequestType::Container);
        assert_eq!(
            RequestType::of_path("/v1/AUTH_a/c/"),
            RequestType::Container
        );
        assert_eq!(
            RequestType::of_path("/v1/AUTH_a/c/o/p"),
            RequestType::Object
        );
        assert_eq!(RequestType::of_path("/info"), RequestType::Other);
        assert_eq!(RequestType::of_path("/v1/"), RequestType::Other);
        assert_eq!(RequestType::of_path("/bucket/key"), RequestType::Other);
    }

    fn answer(status: u16, body: &'static str) -> http::Response<apus_http::Body> {
        let mut resp = http::Response::new(apus_http::full(body));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp
    }

    /// Reads a body to its end, as hyper does when sending it.
    async fn drain(body: apus_http::Body) -> usize {
        use http_body_util::BodyExt;
        body.collect().await.unwrap().to_bytes().len()
    }

    #[tokio::test]
    async fn totals_sum_what_was_observed() {
        let m = ProxyMetrics::new(&[0, 1]);
        assert_eq!(m.totals(), RequestTotals::default());
        let started = Instant::now();
        let cases = [
            (RequestType::Account, Method::GET, 200, "abc"),
            (RequestType::Container, Method::PUT, 201, ""),
            (RequestType::Object, Method::GET, 404, "nope"),
            (RequestType::Object, Method::HEAD, 503, ""),
            (RequestType::Other, Method::GET, 301, "moved"),
            (RequestType::Object, Method::DELETE, 204, ""),
        ];
        let mut sent = 0;
        for (kind, method, status, body) in cases {
            let mut resp = answer(status, body);
            if kind == RequestType::Object {
                resp.extensions_mut().insert(PolicyIndex(1));
            }
            sent += drain(m.observe(kind, &method, started, resp).into_body()).await;
        }
        let upload = m.count_request_body(RequestType::Object, apus_http::full("0123456789"));
        assert_eq!(drain(upload).await, 10);
        let t = m.totals();
        assert_eq!(t.requests, 6);
        assert_eq!(t.by_class, [0, 3, 1, 1, 1]);
        assert_eq!((t.class("2xx"), t.class("5xx"), t.class("x")), (3, 1, 0));
        assert_eq!(sent, 12);
        assert_eq!((t.bytes_in, t.bytes_out), (10, 12));
        assert!(m.limited_nodes().is_empty());
    }

    #[test]
    fn backend_paths_have_node_types() {
        assert_eq!(NodeType::of_backend_path("/sda/1/a"), NodeType::Account);
        assert_eq!(NodeType::of_backend_path("/sda/1/a/c"), NodeType::Container);
        assert_eq!(
            NodeType::of_backend_path("/sda/1/a/c/o/x"),
            NodeType::Object
        );
    }
}
