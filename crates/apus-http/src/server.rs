//! Serving a [`Handler`] over HTTP/1.1 with hyper.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::body::Body;
use crate::limits::{HeadLimits, PARSE_BUFFER_BYTES, PARSE_MAX_HEADERS};
use crate::metrics::{is_scrape, metrics_response, CountingIo, ServerMetrics};
use crate::wire::{WireIo, ZERO_LENGTH_MARK};

/// Handles one request. The request target is as received (not decoded
/// or normalized; raw non-ASCII bytes in a connection's first request
/// arrive percent-encoded, see [`crate::wire`]), any method is
/// passed through, and the peer's address is in the extensions as
/// [`RemoteAddr`]. Requests whose head breaks the server's
/// [`HeadLimits`] never reach it.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

/// The peer of the connection a request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Connection settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Swift's limits on a request's head (request line, header lines,
    /// header fields).
    pub limits: HeadLimits,
    /// Time allowed to receive a request's headers once it started
    /// (also bounds idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// On shutdown, time given to requests in flight before connections
    /// are dropped.
    pub graceful_timeout: Duration,
    /// Request counting and the `/metrics` answer (none by default).
    pub metrics: ServerMetrics,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: HeadLimits::default(),
            header_read_timeout: Duration::from_secs(60),
            graceful_timeout: Duration::from_secs(30),
            metrics: ServerMetrics::default(),
        }
    }
}

/// Keeps a 204's `Content-Length: 0`, which hyper would drop, by marking
/// it for the connection's [`WireIo`] (see `wire`).
fn keep_zero_length(resp: &mut Response<Body>, announcer: &AtomicUsize) {
    let status = resp.status();
    let headers = resp.headers_mut();
    headers.remove(ZERO_LENGTH_MARK);
    if status == StatusCode::NO_CONTENT && headers.get(CONTENT_LENGTH).is_some_and(|v| v == "0") {
        headers.remove(CONTENT_LENGTH);
        headers.insert(ZERO_LENGTH_MARK, HeaderValue::from_static("0"));
        announcer.fetch_add(1, Ordering::AcqRel);
    }
}

/// [`serve_with`] and the default [`ServerConfig`].
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(listener, handler, shutdown, ServerConfig::default()).await
}

/// Pending connections a listener holds before the kernel drops SYNs.
const LISTEN_BACKLOG: i32 = 4096;

/// Accepts connections on `listener` and serves `handler` on each until
/// `shutdown` completes; then stops accepting, lets requests in flight
/// finish (at most `graceful_timeout`) and returns.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
    config: ServerConfig,
) -> io::Result<()> {
    // std binds with a backlog of 128: a proxy opening a connection per
    // replica for 64 concurrent PUTs overflows it, the kernel drops SYNs
    // and connects wait a second for the retransmit. Linux lets listen()
    // again raise the backlog of a listening socket (capped by somaxconn).
    if let Err(e) = rustix::net::listen(&listener, LISTEN_BACKLOG) {
        tracing::warn!(error = %e, "cannot raise the listen backlog");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        // Swift's servers send `Content-Type`, `X-Object-Meta-Color`; some
        // clients compare header names as sent.
        .title_case_headers(true)
        .max_headers(PARSE_MAX_HEADERS.max(config.limits.max_header_count + 1))
        .max_buf_size(
            PARSE_BUFFER_BYTES
                .max(2 * (config.limits.max_request_line + config.limits.max_header_bytes)),
        )
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let builder = Arc::new(builder);
    let limits = Arc::new(config.limits);
    let requests = config.metrics.requests.clone();
    let registry = config.metrics.registry.clone();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let limits = limits.clone();
        let requests = requests.clone();
        let registry = registry.clone();
        let mut stop_rx = stop_rx.clone();
        conns.spawn(async move {
            let io = WireIo::new(CountingIo::new(stream, requests.clone()));
            let announcer = io.announcer();
            let amz_announcer = io.amz_announcer();
            let growth = io.growth();
            let svc = service_fn(move |mut req: Request<Incoming>| {
                let handler = handler.clone();
                let announcer = announcer.clone();
                let amz_announcer = amz_announcer.clone();
                let requests = requests.clone();
                let registry = registry.clone();
                // Nonzero for the first request only (see `wire`).
                let grown = growth.swap(0, Ordering::AcqRel);
                let refusal = limits.check_grown_request(&req, grown);
                let refused = refusal.map(|r| {
                    tracing::info!(
                        %peer,
                        status = r.status().as_u16(),
                        ?r,
                        "request head refused"
                    );
                    r.response(&limits)
                });
                req.extensions_mut().insert(RemoteAddr(peer));
                async move {
                    let started = requests.as_ref().map(|_| std::time::Instant::now());
                    let method = req.method().clone();
                    let mut resp = match (refused, &registry) {
                        (Some(resp), _) => resp,
                        // Scrapes are answered here and not counted.
                        (None, Some(reg)) if is_scrape(req.method(), req.uri().path()) => {
                            // Collectors may read the disks: off the
                            // async threads.
                            let (reg, headers) = (reg.clone(), req.headers().clone());
                            let answer = tokio::task::spawn_blocking(move || {
                                metrics_response(&reg, &headers)
                            })
                            .await;
                            return Ok(answer.unwrap_or_else(|_| {
                                let mut r = Response::new(crate::body::empty());
                                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                                r
                            }));
                        }
                        (None, _) => handler.call(req).await,
                    };
                    if let (Some(m), Some(t)) = (&requests, started) {
                        m.record(&method, resp.status(), t.elapsed());
                    }
                    keep_zero_length(&mut resp, &announcer);
                    if resp
                        .headers()
                        .keys()
                        .any(|k| k.as_str().starts_with("x-amz-"))
                    {
                        amz_announcer.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = builder.serve_connection(TokioIo::new(io), svc);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = stop_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.graceful_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = conns.len(),
            "graceful shutdown timed out; dropping connections"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    Ok(())
}
