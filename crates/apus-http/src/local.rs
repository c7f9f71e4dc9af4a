//! Uploads handed to a storage server in the same process without a
//! socket. `apus serve` runs the proxy and the object servers of a node
//! in one process; every replica a proxy PUT writes to such a server
//! would otherwise cross loopback twice (a copy into the kernel and one
//! out of it), which for a large object costs about as much CPU as
//! storing it. A server that registers in [`LocalNodes`] under the
//! address it listens on receives the proxy's uploads to that address as
//! a [`Request`] whose body is the proxy's own chunks, shared, not
//! copied.
//!
//! The exchange keeps the meaning of the HTTP one (see [`crate::expect`]):
//! the head goes first and the upload waits until the server reads the
//! body (its `100 Continue`) or answers without it; every wait is bounded
//! by the node timeout; a chunked body ends with its trailers. An upload
//! the proxy gives up (drops unfinished) ends the server's body with an
//! error, as a closed connection does, so the server never takes a
//! truncated body for a whole one. A body declared by `Content-Length`
//! ends once that many bytes arrived, as hyper's does.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::body::Body;
use crate::expect::FinalResponse;
use crate::metrics::RequestMetrics;
use crate::server::RemoteAddr;

/// Body frames queued between the proxy and the server: the backpressure
/// a socket's buffers would give.
const QUEUED_FRAMES: usize = 8;

/// A server that takes requests from within its process.
pub trait LocalHandler: Send + Sync + 'static {
    /// Answers `req` as if it had come on a connection.
    fn call_local(
        self: Arc<Self>,
        req: Request<Body>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

#[derive(Clone)]
pub(crate) struct LocalNode {
    handler: Arc<dyn LocalHandler>,
    requests: Option<Arc<RequestMetrics>>,
}

/// The servers of this process by the address they listen on. Cheap to
/// clone; clones share the registrations.
#[derive(Clone, Default)]
pub struct LocalNodes {
    nodes: Arc<RwLock<HashMap<SocketAddr, LocalNode>>>,
}

impl std::fmt::Debug for LocalNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<SocketAddr> = self
            .nodes
            .read()
            .map(|nodes| nodes.keys().copied().collect())
            .unwrap_or_default();
        f.debug_struct("LocalNodes").field("addrs", &addrs).finish()
    }
}

/// Keeps a server registered; dropping it (when the server stops) sends
/// uploads for its address back to the network.
#[must_use = "the server is unregistered when this is dropped"]
pub struct Registration {
    nodes: LocalNodes,
    addr: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut nodes) = self.nodes.nodes.write() {
            nodes.remove(&self.addr);
        }
    }
}

impl LocalNodes {
    /// Registers `handler` as the server listening on `addr`, counting
    /// its requests in `requests` as its accept loop would. An address a
    /// server listens on for every interface (`0.0.0.0`) names no node.
    pub fn register(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn LocalHandler>,
        requests: Option<Arc<RequestMetrics>>,
    ) -> Registration {
        if !addr.ip().is_unspecified() {
            if let Ok(mut nodes) = self.nodes.write() {
                nodes.insert(addr, LocalNode { handler, requests });
            }
        }
        Registration {
            nodes: self.clone(),
            addr,
        }
    }

    /// Whether a server of this process listens on `host` (`ip:port`).
    pub fn contains(&self, host: &str) -> bool {
        self.get(host).is_some()
    }

    fn get(&self, host: &str) -> Option<LocalNode> {
        let nodes = self.nodes.read().ok()?;
        if nodes.is_empty() {
            return None;
        }
        let addr: SocketAddr = host.parse().ok()?;
        nodes.get(&addr).cloned()
    }
}

/// The server registered for `host` and the request target `path` as a
/// URI, or `None`: the request goes to the network.
pub(crate) fn route(nodes: &LocalNodes, host: &str, path: &str) -> Option<(LocalNode, Uri)> {
    let node = nodes.get(host)?;
    let uri: Uri = path.parse().ok()?;
    Some((node, uri))
}

/// Why [`call`] failed.
pub(crate) enum CallError {
    /// No answer's head within the node timeout.
    Timeout,
    /// The server's task ended without an answer.
    Failed(io::Error),
}

/// Sends one request to a server of this process and returns its answer
/// as hyper's client would (see the module's notes). The server runs in a
/// task of its own: like a request on a connection, it is carried through
/// even when the caller stops waiting. As over a connection, the node
/// timeout runs from the request's last `progress` (the server taking a
/// piece of its body) until the answer's head.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call(
    node: LocalNode,
    uri: Uri,
    method: http::Method,
    host: &str,
    mut headers: HeaderMap,
    body: Body,
    node_timeout: Duration,
    progress: &crate::client::Progress,
) -> Result<Response<Body>, CallError> {
    if let Ok(host) = HeaderValue::from_str(host) {
        headers.insert(HOST, host);
    }
    // The length headers hyper's client writes: none for an empty body,
    // the length when known, else chunks (none for GET, HEAD, CONNECT).
    if !headers.contains_key(CONTENT_LENGTH)
        && !headers.contains_key(TRANSFER_ENCODING)
        && !http_body::Body::is_end_stream(&body)
    {
        match http_body::Body::size_hint(&body).exact() {
            Some(len) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
            None if !matches!(
                method,
                http::Method::GET | http::Method::HEAD | http::Method::CONNECT
            ) =>
            {
                headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            None => {}
        }
    }
    let head_only = method == http::Method::HEAD;
    let mut answer = spawn_answer(node, method, uri, headers, body);
    let resp = loop {
        let idle = progress.idle();
        if idle >= node_timeout {
            return Err(CallError::Timeout);
        }
        tokio::select! {
            resp = &mut answer => break resp,
            _ = tokio::time::sleep(node_timeout - idle) => {}
        }
    }
    .map_err(|e| CallError::Failed(io::Error::other(format!("local server failed: {e}"))))?;
    let (mut parts, body) = resp.into_parts();
    // The head hyper's server would have written for this answer.
    let status = parts.status;
    let bodiless_status = status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    if !parts.headers.contains_key(CONTENT_LENGTH) && !parts.headers.contains_key(TRANSFER_ENCODING)
    {
        let exact = if http_body::Body::is_end_stream(&body) {
            Some(0)
        } else {
            http_body::Body::size_hint(&body).exact()
        };
        match exact {
            Some(0) if bodiless_status || head_only => {}
            Some(len) if !bodiless_status => {
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
            None if !bodiless_status && !head_only => {
                parts
                    .headers
                    .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            _ => {}
        }
    }
    // What hyper's client would read of it: nothing after a HEAD or a
    // bodiless status, else the body held to its declared length.
    let body = if head_only || bodiless_status {
        crate::body::empty()
    } else {
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let held = HeldToLength {
            inner: body,
            remaining: declared,
        };
        crate::client::with_node_timeout(held.boxed(), node_timeout)
    };
    Ok(Response::from_parts(parts, body))
}

/// Runs `method uri` on `node` in a task of its own, as a request on a
/// connection runs apart from its client, counted as its accept loop
/// would count it; the peer address is `127.0.0.1:0` (there is no socket).
fn spawn_answer(
    node: LocalNode,
    method: http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> JoinHandle<Response<Body>> {
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    req.extensions_mut()
        .insert(RemoteAddr(SocketAddr::from(([127, 0, 0, 1], 0))));
    tokio::spawn(async move {
        let started = Instant::now();
        let method = req.method().clone();
        let resp = node.handler.call_local(req).await;
        if let Some(m) = &node.requests {
            m.record(&method, resp.status(), started.elapsed());
        }
        resp
    })
}

/// A local server's answer body held to its declared length, as hyper's
/// client holds one: an answer that ends short is an error, as a
/// connection closed early is.
struct HeldToLength {
    inner: Body,
    remaining: Option<u64>,
}

impl http_body::Body for HeldToLength {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == Some(0) {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(remaining)) = (frame.data_ref(), self.remaining) {
                    let len = (data.len() as u64).min(remaining);
                    self.remaining = Some(remaining - len);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if self.remaining.is_some_and(|r| r > 0) => {
                self.remaining = Some(0);
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "backend response body ended early",
                ))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == Some(0) || (self.remaining.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => self.inner.size_hint(),
        }
    }
}

/// What [`start`] sends.
pub(crate) struct LocalHead<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a HeaderMap,
    pub content_length: Option<u64>,
    pub body: Option<&'a [u8]>,
    pub node_timeout: Duration,
}

/// The outcome of [`start`].
pub(crate) enum LocalStarted {
    /// The server is reading the body.
    Continue(LocalUpload),
    /// The server answered before reading the body (or had all of it).
    Final(FinalResponse),
}

/// Sends `head` to the server registered for its host, or `None` when no
/// server of this process listens there (or the path is no URI a
/// connection would carry: the network path then answers as it would).
pub(crate) async fn start(
    nodes: &LocalNodes,
    head: &LocalHead<'_>,
) -> Option<io::Result<LocalStarted>> {
    let node = nodes.get(head.host)?;
    let uri: Uri = head.path.parse().ok()?;
    Some(start_on(node, uri, head).await)
}

async fn start_on(node: LocalNode, uri: Uri, head: &LocalHead<'_>) -> io::Result<LocalStarted> {
    let expect = head.content_length != Some(0) && head.body.is_none();
    let mut headers = head.headers.clone();
    for name in [HOST, CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT, CONNECTION] {
        headers.remove(name);
    }
    if let Ok(host) = HeaderValue::from_str(head.host) {
        headers.insert(HOST, host);
    }
    match head.content_length {
        Some(len) => headers.insert(CONTENT_LENGTH, HeaderValue::from(len)),
        None => headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked")),
    };
    if expect {
        headers.insert(EXPECT, HeaderValue::from_static("100-continue"));
    }
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    let (asked_tx, asked_rx) = oneshot::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let body = LocalBody {
        rx,
        asked: Some(asked_tx),
        finished: finished.clone(),
        remaining: head.content_length,
        ended: false,
    };
    let mut answer = spawn_answer(node, head.method.clone(), uri, headers, body.boxed());
    let mut upload = LocalUpload {
        tx: Some(tx),
        finished,
        answer: None,
        chunked: head.content_length.is_none(),
        node_timeout: head.node_timeout,
    };
    if let Some(body) = head.body {
        // A server that answered without reading the body answers anyway,
        // as over a connection, where the body would be sent regardless.
        let _ = upload.send(Bytes::copy_from_slice(body)).await;
    }
    if !expect {
        upload.answer = Some(answer);
        return upload
            .finish(&HeaderMap::new())
            .await
            .map(LocalStarted::Final);
    }
    let first = timeout(head.node_timeout, async {
        tokio::select! {
            biased;
            resp = &mut answer => Some(resp),
            asked = asked_rx => match asked {
                Ok(()) => None,
                // The body was dropped unread: the answer is coming.
                Err(_) => Some((&mut answer).await),
            },
        }
    })
    .await
    .map_err(|_| timed_out("waiting for the answer"))?;
    match first {
        Some(resp) => {
            let resp = resp.map_err(|e| io::Error::other(format!("local server failed: {e}")))?;
            collect(resp, head.node_timeout)
                .await
                .map(LocalStarted::Final)
        }
        None => {
            upload.answer = Some(answer);
            Ok(LocalStarted::Continue(upload))
        }
    }
}

/// An upload in progress to a server of this process.
pub(crate) struct LocalUpload {
    tx: Option<mpsc::Sender<Frame<Bytes>>>,
    finished: Arc<AtomicBool>,
    answer: Option<JoinHandle<Response<Body>>>,
    chunked: bool,
    node_timeout: Duration,
}

impl LocalUpload {
    /// Queues one piece of the body.
    pub(crate) async fn send(&mut self, data: Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| closed("the body was ended"))?;
        timeout(self.node_timeout, tx.send(Frame::data(data)))
            .await
            .map_err(|_| timed_out("sending the body"))?
            .map_err(|_| closed("the server stopped reading the body"))
    }

    /// Ends the body (with `trailers` after a chunked one) and waits for
    /// the answer.
    pub(crate) async fn finish(mut self, trailers: &HeaderMap) -> io::Result<FinalResponse> {
        if !trailers.is_empty() {
            if !self.chunked {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "trailers need a chunked body",
                ));
            }
            if let Some(tx) = &self.tx {
                // A server that stopped reading answers anyway.
                let _ = timeout(
                    self.node_timeout,
                    tx.send(Frame::trailers(trailers.clone())),
                )
                .await
                .map_err(|_| timed_out("ending the body"))?;
            }
        }
        self.finished.store(true, Ordering::Release);
        self.tx = None;
        let answer = self
            .answer
            .take()
            .ok_or_else(|| closed("no answer to wait for"))?;
        let resp = timeout(self.node_timeout, answer)
            .await
            .map_err(|_| timed_out("waiting for the answer"))?
            .map_err(|e| io::Error::other(format!("local server failed: {e}")))?;
        collect(resp, self.node_timeout).await
    }
}

/// Reads an answer's head and at most as much of its body as an answer
/// read from a connection keeps.
async fn collect(resp: Response<Body>, node_timeout: Duration) -> io::Result<FinalResponse> {
    let (parts, mut body) = resp.into_parts();
    let mut kept = BytesMut::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            let room = crate::expect::MAX_BODY - kept.len();
            kept.extend_from_slice(&data[..data.len().min(room)]);
            if kept.len() >= crate::expect::MAX_BODY {
                break;
            }
        }
        Ok::<_, io::Error>(())
    };
    timeout(node_timeout, read)
        .await
        .map_err(|_| timed_out("reading the answer"))??;
    Ok(FinalResponse {
        status: parts.status,
        headers: parts.headers,
        body: kept.freeze(),
    })
}

/// The body a local server reads: the proxy's frames as they come.
struct LocalBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
    /// Told when the server first asks for the body (its `100 Continue`).
    asked: Option<oneshot::Sender<()>>,
    /// Set by the proxy once the body is whole; the queue closing without
    /// it is an upload given up.
    finished: Arc<AtomicBool>,
    /// Bytes still due under a `Content-Length`.
    remaining: Option<u64>,
    ended: bool,
}

impl http_body::Body for LocalBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(asked) = self.asked.take() {
            let _ = asked.send(());
        }
        if self.ended || self.remaining == Some(0) {
            self.ended = true;
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(frame)) => {
                if let (Some(data), Some(remaining)) = (frame.data_ref(), self.remaining) {
                    let len = data.len() as u64;
                    if len > remaining {
                        self.ended = true;
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "body longer than its Content-Length",
                        ))));
                    }
                    self.remaining = Some(remaining - len);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                if !self.finished.load(Ordering::Acquire) || self.remaining.is_some() {
                    // Content-Length bodies end when whole (above), so a
                    // remaining count here is a short one.
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upload ended before its body did",
                    ))));
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

fn closed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::{Started, UploadPool};
    use http::{Method, StatusCode};
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the test server saw of a request.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        headers: HeaderMap,
        body: Vec<u8>,
        /// Where each piece of the body was in memory, to tell a shared
        /// piece from a copy.
        piece_addresses: Vec<usize>,
        trailers: Option<HeaderMap>,
        /// How the body ended: `Ok` whole, `Err` with an error.
        ended: Option<Result<(), String>>,
    }

    /// Reads the whole body (unless `refuse` is set: answers 507 without
    /// it) and answers 201 with what it read.
    struct Recorder {
        refuse: bool,
        seen: Mutex<Option<tokio::sync::oneshot::Sender<Seen>>>,
    }

    impl Recorder {
        fn new(refuse: bool) -> (Arc<Self>, tokio::sync::oneshot::Receiver<Seen>) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let recorder = Recorder {
                refuse,
                seen: Mutex::new(Some(tx)),
            };
            (Arc::new(recorder), rx)
        }
    }

    impl LocalHandler for Recorder {
        fn call_local(
            self: Arc<Self>,
            req: Request<Body>,
        ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
            Box::pin(async move {
                let (parts, mut body) = req.into_parts();
                let mut seen = Seen {
                    headers: parts.headers,
                    ..Seen::default()
                };
                let status = if self.refuse {
                    StatusCode::INSUFFICIENT_STORAGE
                } else {
                    loop {
                        match body.frame().await {
                            None => {
                                seen.ended = Some(Ok(()));
                                break;
                            }
                            Some(Err(e)) => {
                                seen.ended = Some(Err(e.to_string()));
                                break;
                            }
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) => {
                                    seen.piece_addresses.push(data.as_ptr() as usize);
                                    seen.body.extend_from_slice(&data);
                                }
                                Err(frame) => seen.trailers = frame.into_trailers().ok(),
                            },
                        }
                    }
                    StatusCode::CREATED
                };
                let answer = format!("{} bytes", seen.body.len());
                if let Some(tx) = self.seen.lock().unwrap().take() {
                    let _ = tx.send(seen);
                }
                let mut resp = Response::new(crate::body::full(answer));
                *resp.status_mut() = status;
                resp
            })
        }
    }

    const T: Duration = Duration::from_secs(5);

    fn local_pool(addr: &str, handler: Arc<dyn LocalHandler>) -> (UploadPool, Registration) {
        let nodes = LocalNodes::default();
        let registration = nodes.register(addr.parse().unwrap(), handler, None);
        (
            UploadPool::new(4, Duration::from_secs(30)).with_local(nodes),
            registration,
        )
    }

    async fn start(pool: &UploadPool, content_length: Option<u64>) -> Started {
        pool.start(
            "127.0.0.1:6200",
            &Method::PUT,
            "/d1/7/a/c/o",
            &HeaderMap::new(),
            content_length,
            T,
            T,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_chunked_upload_reaches_a_local_server_with_its_trailers() {
        let (recorder, seen) = Recorder::new(false);
        let (pool, _registration) = local_pool("127.0.0.1:6200", recorder);
        let Started::Continue(mut conn) = start(&pool, None).await else {
            panic!("the local server did not ask for the body");
        };
        assert!(conn.is_local());
        let first = Bytes::from_static(b"abc");
        conn.send(first.clone()).await.unwrap();
        conn.send(Bytes::from_static(b"defg")).await.unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("etag", HeaderValue::from_static("e1"));
        let answer = conn.finish_with_trailers(&trailers).await.unwrap();
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(&answer.body[..], b"7 bytes");
        let seen = seen.await.unwrap();
        assert_eq!(seen.body, b"abcdefg");
        assert_eq!(
            seen.piece_addresses.first(),
            Some(&(first.as_ptr() as usize)),
            "the server got the proxy's bytes, not a copy"
        );
        assert_eq!(seen.ended, Some(Ok(())));
        assert_eq!(seen.trailers.unwrap()["etag"], "e1");
        assert_eq!(seen.headers["transfer-encoding"], "chunked");
        assert_eq!(seen.headers["expect"], "100-continue");
        assert_eq!(seen.headers["host"], "127.0.0.1:6200");
    }

    #[tokio::test]
    async fn a_local_refusal_before_the_body_is_the_final_answer() {
        let (recorder, _seen) = Recorder::new(true);
        let (pool, _registration) = local_pool("127.0.0.1:6200", recorder);
        let Started::Final(answer) = start(&pool, Some(100)).await else {
            panic!("a refusal asked for the body");
        };
        assert_eq!(answer.status, StatusCode::INSUFFICIENT_STORAGE);
    }

    /// An upload the proxy drops unfinished must never read as a whole
    /// body: the server would store a truncated object.
    #[tokio::test]
    async fn an_upload_given_up_ends_the_local_body_with_an_error() {
        for declared in [None, Some(10)] {
            let (recorder, seen) = Recorder::new(false);
            let (pool, _registration) = local_pool("127.0.0.1:6200", recorder);
            let Started::Continue(mut conn) = start(&pool, declared).await else {
                panic!("the local server did not ask for the body");
            };
            conn.send(Bytes::from_static(b"12345")).await.unwrap();
            drop(conn);
            let seen = seen.await.unwrap();
            assert_eq!(seen.body, b"12345");
            assert!(
                matches!(seen.ended, Some(Err(_))),
                "{declared:?}: {:?}",
                seen.ended
            );
        }
    }

    #[tokio::test]
    async fn a_local_body_is_held_to_its_content_length() {
        let (recorder, seen) = Recorder::new(false);
        let (pool, _registration) = local_pool("127.0.0.1:6200", recorder);
        let Started::Continue(mut conn) = start(&pool, Some(4)).await else {
            panic!("the local server did not ask for the body");
        };
        conn.send(Bytes::from_static(b"123456")).await.unwrap();
        let _ = conn.finish().await;
        let seen = seen.await.unwrap();
        assert!(seen.body.is_empty());
        assert!(matches!(seen.ended, Some(Err(_))), "{:?}", seen.ended);
        // A short one is finished with an error too.
        let (recorder, seen) = Recorder::new(false);
        let (pool, _registration) = local_pool("127.0.0.1:6200", recorder);
        let Started::Continue(mut conn) = start(&pool, Some(4)).await else {
            panic!("the local server did not ask for the body");
        };
        conn.send(Bytes::from_static(b"12")).await.unwrap();
        let _ = conn.finish().await;
        assert!(matches!(seen.await.unwrap().ended, Some(Err(_))));
    }

    #[tokio::test]
    async fn a_short_body_goes_whole_with_its_head_to_a_local_server() {
        let (recorder, seen) = Recorder::new(false);
        let (pool, _registration) = local_pool("127.0.0.1:6200", recorder);
        let started = pool
            .start_with_body(
                "127.0.0.1:6200",
                &Method::PUT,
                "/d1/7/a/c/o",
                &HeaderMap::new(),
                b"short body",
                T,
                T,
            )
            .await
            .unwrap();
        let Started::Final(answer) = started else {
            panic!("a body sent with its head asked for 100 Continue");
        };
        assert_eq!(answer.status, StatusCode::CREATED);
        let seen = seen.await.unwrap();
        assert_eq!(seen.body, b"short body");
        assert_eq!(seen.ended, Some(Ok(())));
        assert_eq!(seen.headers["content-length"], "10");
        assert!(!seen.headers.contains_key("expect"));
    }

    /// Once a server is unregistered (it stopped), uploads for its
    /// address go over the network again; a wildcard address names no
    /// node at all.
    #[tokio::test]
    async fn uploads_go_to_the_network_for_servers_not_registered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock
                        .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\ntcp")
                        .await;
                });
            }
        });
        let (recorder, _seen) = Recorder::new(true);
        let nodes = LocalNodes::default();
        let pool = UploadPool::new(4, Duration::from_secs(30)).with_local(nodes.clone());
        let host = addr.to_string();
        let put = || async {
            match pool
                .start(&host, &Method::PUT, "/o", &HeaderMap::new(), Some(0), T, T)
                .await
                .unwrap()
            {
                Started::Final(answer) => answer.status,
                Started::Continue(_) => panic!("no body was offered"),
            }
        };
        let registration = nodes.register(addr, recorder.clone(), None);
        assert!(nodes.contains(&host));
        assert_eq!(put().await, StatusCode::INSUFFICIENT_STORAGE);
        drop(registration);
        assert!(!nodes.contains(&host));
        assert_eq!(put().await, StatusCode::ACCEPTED);
        let wildcard = SocketAddr::from(([0, 0, 0, 0], addr.port()));
        let _registration = nodes.register(wildcard, recorder, None);
        assert!(!nodes.contains(&wildcard.to_string()));
        assert_eq!(put().await, StatusCode::ACCEPTED);
    }

    /// Answers by path, the way the backend client's callers see servers.
    struct Answers;

    impl LocalHandler for Answers {
        fn call_local(
            self: Arc<Self>,
            req: Request<Body>,
        ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let got = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let seen = |name: http::HeaderName| {
                    parts
                        .headers
                        .get(&name)
                        .map_or("-".to_string(), |v| v.to_str().unwrap().to_string())
                };
                let mut resp = match parts.uri.path() {
                    "/echo" => Response::new(crate::body::full(format!(
                        "{} cl={} te={} host={} body={}",
                        parts.method,
                        seen(CONTENT_LENGTH),
                        seen(TRANSFER_ENCODING),
                        seen(HOST),
                        String::from_utf8_lossy(&got)
                    ))),
                    "/no-content" => {
                        let mut r = Response::new(crate::body::empty());
                        *r.status_mut() = http::StatusCode::NO_CONTENT;
                        r
                    }
                    "/short" => {
                        let mut r = Response::new(crate::body::full("abc"));
                        r.headers_mut()
                            .insert(CONTENT_LENGTH, HeaderValue::from_static("10"));
                        r
                    }
                    "/stream" => {
                        let (tx, body) = crate::body::channel(2, None);
                        tokio::spawn(async move {
                            let _ = tx.send(Bytes::from_static(b"one ")).await;
                            let _ = tx.send(Bytes::from_static(b"two")).await;
                        });
                        Response::new(body)
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        Response::new(crate::body::empty())
                    }
                };
                resp.headers_mut().insert(
                    "x-seen-method",
                    HeaderValue::from_str(parts.method.as_str()).unwrap(),
                );
                resp
            })
        }
    }

    async fn text(resp: Response<Body>) -> io::Result<String> {
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The backend client's requests to a registered server carry the
    /// heads hyper would have written both ways.
    #[tokio::test]
    async fn backend_requests_reach_a_local_server_with_the_heads_of_a_connection() {
        let nodes = LocalNodes::default();
        let _registration =
            nodes.register("127.0.0.1:6201".parse().unwrap(), Arc::new(Answers), None);
        let client = crate::BackendClient::new(crate::ClientConfig {
            node_timeout: Duration::from_millis(1500),
            ..crate::ClientConfig::default()
        })
        .with_local(nodes);
        let host = "127.0.0.1:6201";
        let send = |method: Method, path: &'static str, body: Body| {
            client.request(method, host, path, HeaderMap::new(), body)
        };

        let resp = send(Method::GET, "/echo", crate::body::empty())
            .await
            .unwrap();
        let expected = "GET cl=- te=- host=127.0.0.1:6201 body=";
        assert_eq!(
            resp.headers()["content-length"],
            &expected.len().to_string()
        );
        assert_eq!(text(resp).await.unwrap(), expected);
        let resp = send(Method::PUT, "/echo", crate::body::full("abc"))
            .await
            .unwrap();
        assert_eq!(
            text(resp).await.unwrap(),
            "PUT cl=3 te=- host=127.0.0.1:6201 body=abc"
        );
        let (tx, streamed) = crate::body::channel(1, None);
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"xyz")).await;
        });
        let resp = send(Method::POST, "/echo", streamed).await.unwrap();
        assert_eq!(
            text(resp).await.unwrap(),
            "POST cl=- te=chunked host=127.0.0.1:6201 body=xyz"
        );
        // HEAD: the length of what a GET would send, and no body.
        let resp = send(Method::HEAD, "/echo", crate::body::empty())
            .await
            .unwrap();
        let expected = "HEAD cl=- te=- host=127.0.0.1:6201 body=";
        assert_eq!(
            resp.headers()["content-length"],
            &expected.len().to_string()
        );
        assert_eq!(text(resp).await.unwrap(), "");
        let resp = send(Method::DELETE, "/no-content", crate::body::empty())
            .await
            .unwrap();
        assert_eq!(resp.status(), http::StatusCode::NO_CONTENT);
        assert!(!resp.headers().contains_key("content-length"));
        let resp = send(Method::GET, "/stream", crate::body::empty())
            .await
            .unwrap();
        assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        assert_eq!(text(resp).await.unwrap(), "one two");
        // An answer shorter than it said is an error, as a connection
        // closed early is.
        let resp = send(Method::GET, "/short", crate::body::empty())
            .await
            .unwrap();
        assert!(text(resp).await.is_err());
        // No answer within the node timeout.
        let err = send(Method::GET, "/slow", crate::body::empty())
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }

    /// The node timeout runs from the request's last progress, as over a
    /// connection: a body that keeps coming is not cut off, an answer
    /// that never comes is.
    #[tokio::test]
    async fn a_local_request_whose_body_keeps_coming_is_not_timed_out() {
        let nodes = LocalNodes::default();
        let _registration =
            nodes.register("127.0.0.1:6202".parse().unwrap(), Arc::new(Answers), None);
        let client = crate::BackendClient::new(crate::ClientConfig {
            node_timeout: Duration::from_millis(1000),
            ..crate::ClientConfig::default()
        })
        .with_local(nodes);
        let (tx, body) = crate::body::channel(1, None);
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = tx.send(Bytes::from_static(b"x")).await;
            }
        });
        let resp = client
            .request(
                Method::POST,
                "127.0.0.1:6202",
                "/echo",
                HeaderMap::new(),
                body,
            )
            .await
            .unwrap();
        assert!(text(resp).await.unwrap().ends_with("body=xxxxx"));
    }
}
