//! Prometheus metrics every server shares: requests counted by the
//! accept loop ([`RequestMetrics`]), a lock-free latency histogram
//! ([`AtomicHistogram`]), the process's own figures ([`ProcessCollector`])
//! and the `/metrics` answer ([`metrics_response`]).
//!
//! There is no global registry: whoever starts a server builds a
//! `prometheus_client` [`Registry`], registers what that server should
//! show, and hands it over in [`ServerMetrics`]. Counting a request costs
//! a few relaxed atomic additions on figures made when the server starts:
//! no lock, no map lookup, no allocation.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{full, Body};

/// The path every apus server answers metrics on.
pub const METRICS_PATH: &str = "/metrics";

/// `Content-Type` of the OpenMetrics text format, sent to scrapers that
/// ask for it in `Accept`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a server does with metrics: counts its requests, and answers
/// `GET /metrics` from a registry (before its handler sees the request,
/// and without counting the scrape).
#[derive(Clone, Debug, Default)]
pub struct ServerMetrics {
    /// Counts every request the server answers.
    pub requests: Option<Arc<RequestMetrics>>,
    /// Answers `GET /metrics` with this registry's figures; `None` leaves
    /// `/metrics` to the handler like any other path.
    pub registry: Option<Arc<Registry>>,
}

/// Which server a figure is about: the `server` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Proxy,
    Account,
    Container,
    Object,
}

impl ServerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Proxy => "proxy",
            ServerKind::Account => "account",
            ServerKind::Container => "container",
            ServerKind::Object => "object",
        }
    }
}

/// The methods counted one by one; any other is `other`.
pub const METHODS: [&str; 10] = [
    "get",
    "head",
    "put",
    "post",
    "delete",
    "copy",
    "options",
    "replicate",
    "update",
    "other",
];

/// Index of `method` in [`METHODS`].
pub fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::PUT => 2,
        Method::POST => 3,
        Method::DELETE => 4,
        Method::OPTIONS => 6,
        _ => match method.as_str() {
            "COPY" => 5,
            "REPLICATE" => 7,
            "UPDATE" => 8,
            _ => 9,
        },
    }
}

/// The status classes, `status_class` label.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index of `status`'s class in [`STATUS_CLASSES`] (600 and above count
/// as 5xx).
pub fn class_index(status: StatusCode) -> usize {
    (usize::from(status.as_u16() / 100)).clamp(1, 5) - 1
}

/// Upper bounds (seconds) of the request latency buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram over fixed buckets that records with three relaxed atomic
/// additions (prometheus-client's own takes a mutex per observation).
/// The sum is kept in nanoseconds.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [f64],
    bounds_ns: Box<[u64]>,
    /// One per bound, then `+Inf`; not cumulative.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram {
            bounds,
            bounds_ns: bounds.iter().map(|b| (b * 1e9) as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self
            .bounds_ns
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(self.bounds_ns.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes this histogram's sample lines.
    pub fn encode_into(&self, encoder: &mut MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder makes the counts cumulative.
        let mut buckets = Vec::with_capacity(self.counts.len());
        let mut total = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            total = total.saturating_add(n);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.encode_into(&mut encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One counter line per label set, for collectors.
pub fn encode_counter(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> Result<(), std::fmt::Error> {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// One gauge line per label set, for collectors.
pub fn encode_gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: V,
) -> Result<(), std::fmt::Error> {
    family.encode_family(labels)?.encode_gauge(&value)
}

struct Cell {
    requests: AtomicU64,
    duration: AtomicHistogram,
}

/// Requests one server answered, by method and status class, with the
/// time until the handler had the response head ready, and the bytes its
/// client connections carried (heads and bodies, as read and written).
pub struct RequestMetrics {
    server: ServerKind,
    /// `method * STATUS_CLASSES.len() + class`.
    cells: Box<[Cell]>,
    received: AtomicU64,
    sent: AtomicU64,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl RequestMetrics {
    pub fn new(server: ServerKind) -> Arc<Self> {
        let cells = (0..METHODS.len() * STATUS_CLASSES.len())
            .map(|_| Cell {
                requests: AtomicU64::new(0),
                duration: AtomicHistogram::new(&LATENCY_BUCKETS),
            })
            .collect();
        Arc::new(RequestMetrics {
            server,
            cells,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }

    pub fn server(&self) -> ServerKind {
        self.server
    }

    /// Counts one answered request.
    pub fn record(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        let i = method_index(method) * STATUS_CLASSES.len() + class_index(status);
        if let Some(cell) = self.cells.get(i) {
            cell.requests.fetch_add(1, Ordering::Relaxed);
            cell.duration.observe(elapsed);
        }
    }

    /// Bytes read from client connections.
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes written to client connections.
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Requests counted for `method` (as in [`METHODS`]) and `class`.
    pub fn requests(&self, method: usize, class: usize) -> u64 {
        self.cells
            .get(method * STATUS_CLASSES.len() + class)
            .map_or(0, |c| c.requests.load(Ordering::Relaxed))
    }

    /// Registers this server's request figures.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

impl Collector for RequestMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let server = self.server.as_str();
        let labels = |i: usize| {
            [
                ("server", server),
                ("method", METHODS[i / STATUS_CLASSES.len()]),
                ("status_class", STATUS_CLASSES[i % STATUS_CLASSES.len()]),
            ]
        };
        // Label sets with no request yet are left out: most of the
        // method-by-class grid is never used.
        let used = || {
            self.cells
                .iter()
                .enumerate()
                .filter(|(_, c)| c.requests.load(Ordering::Relaxed) > 0)
        };
        let mut family = encoder.encode_descriptor(
            "apus_requests",
            "Requests answered, by server, method and status class",
            None,
            MetricType::Counter,
        )?;
        for (i, cell) in used() {
            encode_counter(
                &mut family,
                &labels(i),
                cell.requests.load(Ordering::Relaxed),
            )?;
        }
        let mut family = encoder.encode_descriptor(
            "apus_request_duration_seconds",
            "Time from a request's head until its response head was ready",
            None,
            MetricType::Histogram,
        )?;
        for (i, cell) in used() {
            let labels = labels(i);
            let mut m = family.encode_family(&labels)?;
            cell.duration.encode_into(&mut m)?;
        }
        let bytes = [("server", server)];
        let mut family = encoder.encode_descriptor(
            "apus_received_bytes",
            "Bytes read from client connections (request heads and bodies)",
            None,
            MetricType::Counter,
        )?;
        encode_counter(&mut family, &bytes, self.received.load(Ordering::Relaxed))?;
        let mut family = encoder.encode_descriptor(
            "apus_sent_bytes",
            "Bytes written to client connections (response heads and bodies)",
            None,
            MetricType::Counter,
        )?;
        encode_counter(&mut family, &bytes, self.sent.load(Ordering::Relaxed))?;
        Ok(())
    }
}

/// The process's resident memory and open file descriptors, read from
/// `/proc/self` at each scrape; a figure that cannot be read is left out.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl ProcessCollector {
    /// Resident set size in bytes (`VmRSS` of `/proc/self/status`).
    pub fn resident_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line
            .trim_start_matches("VmRSS:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        kib.checked_mul(1024)
    }

    /// Open file descriptors (entries of `/proc/self/fd`).
    pub fn open_fds() -> Option<u64> {
        let dir = std::fs::read_dir("/proc/self/fd").ok()?;
        // The directory being read holds one descriptor of its own.
        Some((dir.count() as u64).saturating_sub(1))
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(rss) = Self::resident_bytes() {
            let mut m = encoder.encode_descriptor(
                "apus_process_resident_memory_bytes",
                "Resident memory of the process",
                None,
                MetricType::Gauge,
            )?;
            m.encode_gauge(&rss)?;
        }
        if let Some(fds) = Self::open_fds() {
            let mut m = encoder.encode_descriptor(
                "apus_process_open_fds",
                "Open file descriptors of the process",
                None,
                MetricType::Gauge,
            )?;
            m.encode_gauge(&fds)?;
        }
        Ok(())
    }
}

/// A connection that counts the bytes read from and written to it into
/// a server's [`RequestMetrics`] (one relaxed addition per call).
pub struct CountingIo<S> {
    inner: S,
    metrics: Option<Arc<RequestMetrics>>,
}

impl<S> CountingIo<S> {
    pub fn new(inner: S, metrics: Option<Arc<RequestMetrics>>) -> Self {
        CountingIo { inner, metrics }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(m)) = (&res, &this.metrics) {
            m.add_received(buf.filled().len().saturating_sub(before) as u64);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(m)) = (&res, &this.metrics) {
            m.add_sent(*n as u64);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(m)) = (&res, &this.metrics) {
            m.add_sent(*n as u64);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Whether a request is a scrape of the metrics endpoint.
pub fn is_scrape(method: &Method, raw_target: &str) -> bool {
    let path = raw_target.split('?').next().unwrap_or(raw_target);
    (method == Method::GET || method == Method::HEAD) && path == METRICS_PATH
}

/// The registry's figures in the text format the scraper accepts:
/// OpenMetrics when `Accept` names it, Prometheus 0.0.4 otherwise.
pub fn metrics_response(registry: &Registry, headers: &HeaderMap) -> Response<Body> {
    let openmetrics = headers.get_all(ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.contains("application/openmetrics-text"))
    });
    let mut text = String::new();
    let (encoded, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut text, registry),
            OPENMETRICS_CONTENT_TYPE,
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    let mut resp = match encoded {
        Ok(()) => Response::new(full(text)),
        Err(_) => {
            let mut r = Response::new(full("metrics could not be encoded\n"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A handler that answers nothing but 404: what an admin listener serves
/// besides `/metrics` (answered by [`crate::serve_with`] itself).
#[derive(Debug, Default)]
pub struct NotFound;

impl crate::Handler for NotFound {
    async fn call(&self, _req: http::Request<hyper::body::Incoming>) -> Response<Body> {
        let mut r = Response::new(full("Not Found\n"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_methods_index_their_tables() {
        assert_eq!(STATUS_CLASSES[class_index(StatusCode::CREATED)], "2xx");
        assert_eq!(STATUS_CLASSES[class_index(StatusCode::CONTINUE)], "1xx");
        let weird = StatusCode::from_u16(999).unwrap();
        assert_eq!(STATUS_CLASSES[class_index(weird)], "5xx");
        let m = Method::from_bytes(b"REPLICATE").unwrap();
        assert_eq!(METHODS[method_index(&m)], "replicate");
        let m = Method::from_bytes(b"SSYNC").unwrap();
        assert_eq!(METHODS[method_index(&m)], "other");
        assert_eq!(METHODS[method_index(&Method::DELETE)], "delete");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = AtomicHistogram::new(&LATENCY_BUCKETS);
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut reg = Registry::default();
        reg.register("h", "help", h);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("h_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("h_count 3\n"), "{out}");
    }

    #[test]
    fn request_metrics_show_used_cells_only() {
        let m = RequestMetrics::new(ServerKind::Object);
        m.record(&Method::PUT, StatusCode::CREATED, Duration::from_millis(1));
        m.record(&Method::PUT, StatusCode::CREATED, Duration::from_millis(1));
        let mut reg = Registry::default();
        m.register(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains(
                "apus_requests_total{server=\"object\",method=\"put\",status_class=\"2xx\"} 2\n"
            ),
            "{out}"
        );
        assert!(!out.contains("method=\"get\""), "{out}");
    }

    #[test]
    fn process_figures_are_read() {
        assert!(ProcessCollector::resident_bytes().is_some_and(|b| b > 0));
        assert!(ProcessCollector::open_fds().is_some_and(|n| n > 0));
    }
}
