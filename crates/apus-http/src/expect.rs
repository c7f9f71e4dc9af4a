//! An upload connection that speaks `Expect: 100-continue` the way Swift's
//! proxy does with object servers: send the request head, wait for the
//! server's `100 Continue` (or its final refusal, e.g. 507 or 412) before
//! any body byte, then stream the body chunked or with its declared length
//! and read the final answer. hyper's client cannot wait for the interim
//! response, which is why this lives beside it.
//!
//! A proxy PUT sends the same data to several nodes and learns which ones
//! will take it before reading the client's body, so no data is ever
//! replayed. [`start`] uses a connection for one request and closes it;
//! [`UploadPool::start`] keeps a connection whose answer was cleanly
//! framed for the next request to the same node, as hyper's pool does for
//! other backend requests, which spares every PUT three connects, accepts
//! and closes (and the sockets they leave in TIME_WAIT).
//!
//! An upload to a server of this process that is registered in the
//! pool's [`LocalNodes`] takes no connection at all (see [`crate::local`]).
//!
//! The answer is parsed without I/O ([`parse_response_head`],
//! [`ChunkedDecoder`]), so the parsers can be tested and fuzzed alone.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::local::{LocalHead, LocalNodes, LocalStarted, LocalUpload};

/// Largest response head accepted from a backend.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body kept (backend PUT answers are short texts).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A backend's final answer.
#[derive(Debug, Clone)]
pub struct FinalResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The outcome of sending a request head.
pub enum Started {
    /// The server asked for the body.
    Continue(UploadConn),
    /// The server answered before taking any body.
    Final(FinalResponse),
}

/// An upload in progress to one backend: over a connection, or handed to
/// a server of this process (see [`crate::local`]).
pub struct UploadConn(Conn);

enum Conn {
    Tcp(TcpUpload),
    Local(LocalUpload),
}

/// An upload in progress over a connection.
struct TcpUpload {
    stream: TcpStream,
    /// Bytes read past the `100 Continue` head, kept for the final answer.
    pending: BytesMut,
    chunked: bool,
    node_timeout: Duration,
    /// Where the connection goes back after a cleanly framed answer
    /// (`None`: it is closed after this request), and its key there.
    pool: Option<(UploadPool, String)>,
}

/// A connection waiting in the pool, and since when.
type IdleConn = (TcpStream, Instant);

/// Idle upload connections by node (`ip:port`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct UploadPool {
    idle: Arc<Mutex<HashMap<String, Vec<IdleConn>>>>,
    max_idle_per_host: usize,
    idle_timeout: Duration,
    /// Servers of this process, which take uploads without a socket.
    local: LocalNodes,
}

impl UploadPool {
    /// A pool keeping at most `max_idle_per_host` idle connections per
    /// node, each for at most `idle_timeout` (keep it below the servers'
    /// own idle limit, so a node rarely closes one the pool still holds).
    pub fn new(max_idle_per_host: usize, idle_timeout: Duration) -> Self {
        UploadPool {
            idle: Arc::new(Mutex::new(HashMap::new())),
            max_idle_per_host,
            idle_timeout,
            local: LocalNodes::default(),
        }
    }

    /// Hands uploads to the servers registered in `local` without a
    /// socket when they are for the address one listens on.
    pub fn with_local(mut self, local: LocalNodes) -> Self {
        self.local = local;
        self
    }

    /// How many idle connections the pool holds for `host`.
    pub fn idle_count(&self, host: &str) -> usize {
        self.idle
            .lock()
            .map(|idle| idle.get(host).map_or(0, Vec::len))
            .unwrap_or(0)
    }

    /// The most recently used idle connection to `host` that is still
    /// open: one the node closed reads as end-of-file, and one holding
    /// stray bytes is unusable; both are dropped.
    fn take(&self, host: &str) -> Option<TcpStream> {
        let Ok(mut idle) = self.idle.lock() else {
            return None;
        };
        let conns = idle.get_mut(host)?;
        while let Some((stream, since)) = conns.pop() {
            if since.elapsed() >= self.idle_timeout {
                continue;
            }
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
        None
    }

    fn put(&self, host: String, stream: TcpStream) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let timeout = self.idle_timeout;
        idle.retain(|_, conns| {
            conns.retain(|(_, since)| since.elapsed() < timeout);
            !conns.is_empty()
        });
        let conns = idle.entry(host).or_default();
        if conns.len() < self.max_idle_per_host {
            conns.push((stream, Instant::now()));
        }
    }

    /// [`start`] on an idle connection to `host` when the pool has one,
    /// else on a new one that the pool keeps afterwards if its answer
    /// allows. A reused connection that fails before any answer byte
    /// arrives (the node closed it meanwhile) is replaced by a new one
    /// once: no body byte has been sent by then, so nothing is replayed.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        &self,
        host: &str,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        content_length: Option<u64>,
        conn_timeout: Duration,
        node_timeout: Duration,
    ) -> io::Result<Started> {
        let head = Head {
            host,
            method,
            path,
            headers,
            content_length,
            body: None,
            node_timeout,
        };
        self.start_head(&head, conn_timeout).await
    }

    /// Sends `method path` with the whole of a short `body` at once,
    /// without `Expect: 100-continue`, and reads the node's answer: always
    /// [`Started::Final`]. It saves the round trip of the interim answer
    /// where the body costs less to send than to hold back. Pooled as
    /// [`start`](Self::start); a reused connection the node had closed is
    /// replaced once, the body sent again on the new one (the node cannot
    /// have read a request on a connection it had closed).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_with_body(
        &self,
        host: &str,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        conn_timeout: Duration,
        node_timeout: Duration,
    ) -> io::Result<Started> {
        let head = Head {
            host,
            method,
            path,
            headers,
            content_length: Some(body.len() as u64),
            body: Some(body),
            node_timeout,
        };
        self.start_head(&head, conn_timeout).await
    }

    async fn start_head(&self, head: &Head<'_>, conn_timeout: Duration) -> io::Result<Started> {
        let host = head.host;
        let local = LocalHead {
            method: head.method,
            path: head.path,
            host,
            headers: head.headers,
            content_length: head.content_length,
            body: head.body,
            node_timeout: head.node_timeout,
        };
        if let Some(started) = crate::local::start(&self.local, &local).await {
            return started.map(|s| match s {
                LocalStarted::Continue(upload) => {
                    Started::Continue(UploadConn(Conn::Local(upload)))
                }
                LocalStarted::Final(answer) => Started::Final(answer),
            });
        }
        let pool = Some((self.clone(), host.to_string()));
        if let Some(stream) = self.take(host) {
            match start_on(stream, pool.clone(), head).await {
                Err(StartError::BeforeAnswer(_)) => {}
                Err(StartError::Other(e)) => return Err(e),
                Ok(started) => return Ok(started),
            }
        }
        let stream = connect(host, conn_timeout).await?;
        start_on(stream, pool, head)
            .await
            .map_err(StartError::into_io)
    }
}

/// What [`start_on`] sends, and how long it waits for the node.
struct Head<'a> {
    host: &'a str,
    method: &'a Method,
    path: &'a str,
    headers: &'a HeaderMap,
    content_length: Option<u64>,
    /// The whole body, sent with the head (no `Expect`).
    body: Option<&'a [u8]>,
    node_timeout: Duration,
}

/// Why [`start_on`] failed: before the node sent a single byte of an
/// answer (a reused connection the node had closed), or otherwise.
enum StartError {
    BeforeAnswer(io::Error),
    Other(io::Error),
}

impl StartError {
    fn into_io(self) -> io::Error {
        match self {
            StartError::BeforeAnswer(e) | StartError::Other(e) => e,
        }
    }
}

async fn connect(host: &str, conn_timeout: Duration) -> io::Result<TcpStream> {
    let stream = timeout(conn_timeout, TcpStream::connect(host))
        .await
        .map_err(|_| timed_out("connect"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

fn invalid_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Parses a response head at the start of `buf`: its status, its headers
/// (those that are not valid HTTP are dropped) and its length in bytes, or
/// `None` while the head is incomplete. Malformed heads are errors.
pub fn parse_response_head(buf: &[u8]) -> io::Result<Option<(StatusCode, HeaderMap, usize)>> {
    let mut raw = [httparse::EMPTY_HEADER; 256];
    let mut resp = httparse::Response::new(&mut raw);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid_data(&e.to_string())),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid_data("bad status"))?;
    let mut headers = HeaderMap::new();
    for h in resp.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(Some((status, headers, used)))
}

/// A `Transfer-Encoding: chunked` body decoder that does no I/O: the
/// connection feeds it what it has buffered, and it takes what it can use
/// from the front of that buffer. It keeps the first `limit` body bytes
/// and drops the rest as it goes, so a long chunk is never held whole.
///
/// Like Python's `http.client`, which Swift's proxy reads backend answers
/// with, it skips the two bytes after each chunk's data unchecked and
/// ignores trailers after the last chunk.
#[derive(Debug)]
pub struct ChunkedDecoder {
    body: BytesMut,
    limit: usize,
    state: ChunkState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Waiting for a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(u64),
    /// This many bytes of the line end after a chunk's data are still to
    /// be skipped.
    DataEnd(usize),
    /// The last (empty) chunk has been read.
    Done,
}

impl ChunkedDecoder {
    pub fn new(limit: usize) -> Self {
        ChunkedDecoder {
            body: BytesMut::new(),
            limit,
            state: ChunkState::Size,
        }
    }

    /// Decodes what `buf` holds, removing the bytes it used. `Ok(true)`
    /// once the last chunk has been read; `Ok(false)` when it needs more
    /// bytes. A chunk-size line that is not hex, or longer than a response
    /// head may be, is an error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(true),
                ChunkState::Size => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > MAX_HEAD {
                            return Err(invalid_data("chunk-size line too long"));
                        }
                        return Ok(false);
                    };
                    let size = parse_chunk_size(&buf[..end])?;
                    let _ = buf.split_to(end + 2);
                    self.state = if size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    let data = buf.split_to(n);
                    let room = self.limit.saturating_sub(self.body.len());
                    self.body.extend_from_slice(&data[..n.min(room)]);
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd(2)
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let n = left.min(buf.len());
                    let _ = buf.split_to(n);
                    self.state = if n == left {
                        ChunkState::Size
                    } else {
                        ChunkState::DataEnd(left - n)
                    };
                }
            }
        }
    }

    /// The body decoded so far (at most `limit` bytes).
    pub fn into_body(self) -> Bytes {
        self.body.freeze()
    }
}

/// A chunk-size line: hex digits, then optional `;extensions`.
fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = String::from_utf8_lossy(line);
    let size = text.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(size, 16).map_err(|_| invalid_data("bad chunk size"))
}

/// Writes every part, in order, with as few (vectored) writes as the
/// socket takes.
async fn write_all_parts(stream: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut left = &mut slices[..];
    io::IoSlice::advance_slices(&mut left, 0);
    while !left.is_empty() {
        let n = stream.write_vectored(left).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the connection took no more bytes",
            ));
        }
        io::IoSlice::advance_slices(&mut left, n);
    }
    Ok(())
}

/// Connects to `host` and sends the head of `method path`. With
/// `content_length` of `None` the body is sent chunked. A zero-length
/// body is sent at once, without `Expect`, and the answer read.
pub async fn start(
    host: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    content_length: Option<u64>,
    conn_timeout: Duration,
    node_timeout: Duration,
) -> io::Result<Started> {
    let stream = connect(host, conn_timeout).await?;
    let head = Head {
        host,
        method,
        path,
        headers,
        content_length,
        body: None,
        node_timeout,
    };
    start_on(stream, None, &head)
        .await
        .map_err(StartError::into_io)
}

/// Sends the head on `stream` and reads the node's first answer. With a
/// `pool` the connection asks to be kept alive and goes back to the pool
/// after a cleanly framed final answer.
async fn start_on(
    mut stream: TcpStream,
    pool: Option<(UploadPool, String)>,
    head: &Head<'_>,
) -> Result<Started, StartError> {
    let Head {
        host,
        method,
        path,
        headers,
        content_length,
        body,
        node_timeout,
    } = *head;
    let expect = content_length != Some(0) && body.is_none();
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    head.extend_from_slice(host.as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "expect" | "connection"
        ) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match content_length {
        Some(len) => head.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes()),
        None => head.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if expect {
        head.extend_from_slice(b"Expect: 100-continue\r\n");
    }
    if pool.is_none() {
        head.extend_from_slice(b"Connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    // Until the first answer byte, a failure may be a reused connection
    // the node had already closed.
    let before_answer = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => StartError::BeforeAnswer(e),
        _ => StartError::Other(e),
    };
    timeout(
        node_timeout,
        write_all_parts(&mut stream, &[&head, body.unwrap_or_default()]),
    )
    .await
    .map_err(|_| StartError::Other(timed_out("sending the request head")))?
    .map_err(before_answer)?;
    let mut conn = TcpUpload {
        stream,
        pending: BytesMut::new(),
        chunked: content_length.is_none(),
        node_timeout,
        pool,
    };
    if !expect {
        conn.fill_first().await.map_err(before_answer)?;
        let answer = conn.read_final().await.map_err(StartError::Other)?;
        return Ok(Started::Final(answer));
    }
    conn.fill_first().await.map_err(before_answer)?;
    let (status, headers, consumed) = conn.read_head().await.map_err(StartError::Other)?;
    if status == StatusCode::CONTINUE {
        let _ = conn.pending.split_to(consumed);
        return Ok(Started::Continue(UploadConn(Conn::Tcp(conn))));
    }
    let _ = conn.pending.split_to(consumed);
    // Refused before the body: the node may still expect it, so this
    // connection is not reused.
    let (body, _) = conn.read_body(&headers).await.unwrap_or_default();
    Ok(Started::Final(FinalResponse {
        status,
        headers,
        body,
    }))
}

impl UploadConn {
    /// Sends one piece of the body. A server of this process gets the
    /// bytes themselves, shared, not a copy: for a large upload to three
    /// replicas a copy each would be three more passes over the body.
    pub async fn send(&mut self, data: Bytes) -> io::Result<()> {
        match &mut self.0 {
            Conn::Tcp(conn) => conn.send(&data).await,
            Conn::Local(upload) => upload.send(data).await,
        }
    }

    /// Ends the body and reads the final answer.
    pub async fn finish(self) -> io::Result<FinalResponse> {
        self.finish_with_trailers(&HeaderMap::new()).await
    }

    /// Ends the body with `trailers` after the last chunk and reads the
    /// final answer. A body sent with a `Content-Length` cannot carry
    /// trailers: asking for any is an error.
    pub async fn finish_with_trailers(self, trailers: &HeaderMap) -> io::Result<FinalResponse> {
        match self.0 {
            Conn::Tcp(conn) => conn.finish_with_trailers(trailers).await,
            Conn::Local(upload) => upload.finish(trailers).await,
        }
    }

    /// Whether the upload goes to a server of this process.
    pub fn is_local(&self) -> bool {
        matches!(self.0, Conn::Local(_))
    }
}

impl TcpUpload {
    async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let write = async {
            if self.chunked {
                // One write for the chunk's size line, its bytes and its
                // end: with Nagle off, three would be three segments.
                let size = format!("{:x}\r\n", data.len());
                write_all_parts(&mut self.stream, &[size.as_bytes(), data, b"\r\n"]).await
            } else {
                self.stream.write_all(data).await
            }
        };
        timeout(self.node_timeout, write)
            .await
            .map_err(|_| timed_out("sending the body"))?
    }

    async fn finish_with_trailers(mut self, trailers: &HeaderMap) -> io::Result<FinalResponse> {
        if self.chunked {
            let mut end = b"0\r\n".to_vec();
            for (name, value) in trailers {
                end.extend_from_slice(name.as_str().as_bytes());
                end.extend_from_slice(b": ");
                end.extend_from_slice(value.as_bytes());
                end.extend_from_slice(b"\r\n");
            }
            end.extend_from_slice(b"\r\n");
            timeout(self.node_timeout, self.stream.write_all(&end))
                .await
                .map_err(|_| timed_out("ending the body"))??;
        } else if !trailers.is_empty() {
            return Err(invalid_data("trailers need a chunked body"));
        }
        timeout(self.node_timeout, self.stream.flush())
            .await
            .map_err(|_| timed_out("flushing the body"))??;
        self.read_final().await
    }

    /// Reads the final answer; a connection from a pool goes back to it
    /// when the answer was framed by its length, read whole with nothing
    /// after it, and did not ask to close.
    async fn read_final(mut self) -> io::Result<FinalResponse> {
        loop {
            let (status, headers, consumed) = self.read_head().await?;
            let _ = self.pending.split_to(consumed);
            if status.is_informational() {
                continue;
            }
            let (body, framed) = self.read_body(&headers).await?;
            let close = headers
                .get(http::header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
            if framed && !close && self.pending.is_empty() {
                if let Some((pool, host)) = self.pool.take() {
                    pool.put(host, self.stream);
                }
            }
            return Ok(FinalResponse {
                status,
                headers,
                body,
            });
        }
    }

    /// Waits for the first bytes of the node's answer; end-of-file before
    /// any is an error.
    async fn fill_first(&mut self) -> io::Result<()> {
        if self.fill().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before an answer",
            ));
        }
        Ok(())
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut buf = [0u8; 8192];
        let n = timeout(self.node_timeout, self.stream.read(&mut buf))
            .await
            .map_err(|_| timed_out("waiting for the answer"))??;
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// Parses a response head from the buffered bytes, reading more as
    /// needed. Returns the status, headers and how many bytes it used.
    async fn read_head(&mut self) -> io::Result<(StatusCode, HeaderMap, usize)> {
        loop {
            if let Some(head) = parse_response_head(&self.pending)? {
                return Ok(head);
            }
            if self.pending.len() > MAX_HEAD {
                return Err(invalid_data("response head too large"));
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before an answer",
                ));
            }
        }
    }

    /// Reads a short response body: by Content-Length, chunked, or to EOF
    /// (the connection is `close`), keeping at most [`MAX_BODY`] bytes;
    /// also says whether it was a whole body framed by Content-Length, the
    /// only kind after which the connection is reused.
    async fn read_body(&mut self, headers: &HeaderMap) -> io::Result<(Bytes, bool)> {
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = headers
            .get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if let Some(declared) = length {
            let len = declared.min(MAX_BODY);
            while self.pending.len() < len {
                if self.fill().await? == 0 {
                    break;
                }
            }
            let take = len.min(self.pending.len());
            let whole = take == declared;
            return Ok((self.pending.split_to(take).freeze(), whole));
        }
        if chunked {
            let mut decoder = ChunkedDecoder::new(MAX_BODY);
            while !decoder.decode(&mut self.pending)? {
                if self.fill().await? == 0 {
                    break;
                }
            }
            return Ok((decoder.into_body(), false));
        }
        loop {
            if self.pending.len() >= MAX_BODY || self.fill().await? == 0 {
                let take = self.pending.len().min(MAX_BODY);
                return Ok((self.pending.split_to(take).freeze(), false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Answers one connection with `answer` and closes it.
    async fn one_answer(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(answer).await;
        });
        addr
    }

    async fn final_answer(answer: &'static [u8]) -> io::Result<FinalResponse> {
        let addr = one_answer(answer).await;
        let t = Duration::from_secs(5);
        match start(
            &addr,
            &Method::PUT,
            "/d/1/a/c/o",
            &HeaderMap::new(),
            Some(0),
            t,
            t,
        )
        .await?
        {
            Started::Final(resp) => Ok(resp),
            Started::Continue(_) => panic!("no body was offered"),
        }
    }

    /// Answers every request on every connection it accepts with
    /// `answer` (whose framing decides whether the client may reuse it),
    /// closing a connection after `per_conn` answers; counts accepts.
    async fn answering_server(
        answer: &'static [u8],
        per_conn: usize,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counted = accepts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut answered = 0;
                    let mut buf = [0u8; 4096];
                    while answered < per_conn {
                        let Ok(n) = sock.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        // Zero-length requests: one answer per head.
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if sock.write_all(answer).await.is_err() {
                                return;
                            }
                            answered += 1;
                        }
                    }
                });
            }
        });
        (addr, accepts)
    }

    async fn pooled_put(pool: &UploadPool, addr: &str) -> FinalResponse {
        let t = Duration::from_secs(5);
        match pool
            .start(
                addr,
                &Method::PUT,
                "/d/1/a/c/o",
                &HeaderMap::new(),
                Some(0),
                t,
                t,
            )
            .await
            .unwrap()
        {
            Started::Final(resp) => resp,
            Started::Continue(_) => panic!("no body was offered"),
        }
    }

    #[tokio::test]
    async fn a_pool_reuses_a_connection_whose_answer_was_framed() {
        use std::sync::atomic::Ordering;
        let (addr, accepts) =
            answering_server(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 100).await;
        let pool = UploadPool::new(4, Duration::from_secs(30));
        for _ in 0..5 {
            let resp = pooled_put(&pool, &addr).await;
            assert_eq!(resp.status, StatusCode::CREATED);
            assert_eq!(&resp.body[..], b"ok");
            assert_eq!(pool.idle_count(&addr), 1);
        }
        assert_eq!(accepts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_pool_keeps_no_connection_the_node_closes_or_leaves_unframed() {
        use std::sync::atomic::Ordering;
        let pool = UploadPool::new(4, Duration::from_secs(30));
        // Longer than what is kept of a body: not read whole.
        let mut long = format!(
            "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 10
        )
        .into_bytes();
        long.resize(long.len() + MAX_BODY + 10, b'x');
        for answer in [
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            long,
        ] {
            let answer: &'static [u8] = Box::leak(answer.into_boxed_slice());
            let (addr, accepts) = answering_server(answer, 100).await;
            let _ = pooled_put(&pool, &addr).await;
            assert_eq!(
                pool.idle_count(&addr),
                0,
                "{}",
                String::from_utf8_lossy(&answer[..60])
            );
            let _ = pooled_put(&pool, &addr).await;
            assert_eq!(accepts.load(Ordering::SeqCst), 2);
        }
    }

    /// A node that closes an idle connection (its keep-alive limit) costs
    /// the next request nothing: the pool opens a new connection.
    #[tokio::test]
    async fn a_connection_the_node_closed_while_idle_is_replaced() {
        use std::sync::atomic::Ordering;
        let (addr, accepts) =
            answering_server(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 1).await;
        let pool = UploadPool::new(4, Duration::from_secs(30));
        for round in 1..=3 {
            let resp = pooled_put(&pool, &addr).await;
            assert_eq!(resp.status, StatusCode::NO_CONTENT);
            assert_eq!(accepts.load(Ordering::SeqCst), round);
            // Let the server's close arrive before the next request.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Trailers after a chunked body reach a hyper server as a trailers
    /// frame (hyper needs no `Trailer` request header for that).
    #[tokio::test]
    async fn trailers_reach_a_hyper_server() {
        use http_body_util::BodyExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let collected = req.into_body().collect().await?;
                    let trailers = collected.trailers().cloned().unwrap_or_default();
                    let body = collected.to_bytes();
                    let mut resp = http::Response::new(http_body_util::Full::new(body));
                    *resp.status_mut() = StatusCode::CREATED;
                    for (name, value) in &trailers {
                        let echoed = format!("got-{}", name.as_str());
                        resp.headers_mut().insert(
                            HeaderName::from_bytes(echoed.as_bytes()).unwrap(),
                            value.clone(),
                        );
                    }
                    Ok::<_, hyper::Error>(resp)
                },
            );
            let io = hyper_util::rt::TokioIo::new(sock);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
        let t = Duration::from_secs(5);
        let Started::Continue(mut conn) =
            start(&addr, &Method::PUT, "/o", &HeaderMap::new(), None, t, t)
                .await
                .unwrap()
        else {
            panic!("no 100 Continue");
        };
        conn.send(Bytes::from_static(b"abc")).await.unwrap();
        conn.send(Bytes::from_static(b"def")).await.unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("etag", HeaderValue::from_static("x1"));
        trailers.insert("x-object-sysmeta-ec-etag", HeaderValue::from_static("y2"));
        let resp = conn.finish_with_trailers(&trailers).await.unwrap();
        assert_eq!(resp.status, StatusCode::CREATED);
        assert_eq!(&resp.body[..], b"abcdef");
        assert_eq!(resp.headers["got-etag"], "x1");
        assert_eq!(resp.headers["got-x-object-sysmeta-ec-etag"], "y2");
    }

    /// A short body goes with the head, with no `Expect`, and the answer
    /// is final; the connection goes back to the pool for the next one.
    #[tokio::test]
    async fn a_short_body_goes_with_its_head_on_a_pooled_connection() {
        use http_body_util::BodyExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepts);
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let expect = req.headers().contains_key("expect");
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut resp = http::Response::new(http_body_util::Full::new(body));
                        *resp.status_mut() = StatusCode::CREATED;
                        resp.headers_mut().insert(
                            "got-expect",
                            HeaderValue::from_static(if expect { "yes" } else { "no" }),
                        );
                        Ok::<_, hyper::Error>(resp)
                    },
                );
                let io = hyper_util::rt::TokioIo::new(sock);
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service),
                );
            }
        });
        let pool = UploadPool::new(4, Duration::from_secs(30));
        let t = Duration::from_secs(5);
        for body in [&b"first body"[..], &b"second"[..]] {
            let started = pool
                .start_with_body(&addr, &Method::PUT, "/o", &HeaderMap::new(), body, t, t)
                .await
                .unwrap();
            let Started::Final(resp) = started else {
                panic!("a body sent with its head asked for 100 Continue");
            };
            assert_eq!(resp.status, StatusCode::CREATED);
            assert_eq!(&resp.body[..], body);
            assert_eq!(resp.headers["got-expect"], "no");
            assert_eq!(pool.idle_count(&addr), 1);
        }
        assert_eq!(accepts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_chunk_size_at_the_limit_of_the_type_is_no_panic() {
        let resp = final_answer(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc",
        )
        .await
        .unwrap();
        assert_eq!(resp.status, StatusCode::CREATED);
        assert_eq!(&resp.body[..], b"abc");
    }

    fn decode_in_pieces(wire: &[u8], piece: usize, limit: usize) -> io::Result<(bool, Bytes)> {
        let mut decoder = ChunkedDecoder::new(limit);
        let mut buf = BytesMut::new();
        let mut done = false;
        for part in wire.chunks(piece.max(1)) {
            buf.extend_from_slice(part);
            done = decoder.decode(&mut buf)?;
            if done {
                break;
            }
        }
        Ok((done, decoder.into_body()))
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces_up_to_the_limit() {
        let wire = b"3;ext=1\r\nabc\r\n A \r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
        for piece in 1..wire.len() {
            let (done, body) = decode_in_pieces(wire, piece, 100).unwrap();
            assert!(done);
            assert_eq!(&body[..], b"abc0123456789");
            let (_, body) = decode_in_pieces(wire, piece, 5).unwrap();
            assert_eq!(&body[..], b"abc01");
        }
        assert!(decode_in_pieces(b"x\r\n", 4, 10).is_err());
        assert!(decode_in_pieces(b"10000000000000000\r\n", 4, 10).is_err());
        let long_line = vec![b'1'; MAX_HEAD + 1];
        assert!(decode_in_pieces(&long_line, 4096, 10).is_err());
    }

    #[test]
    fn response_heads_parse_without_io() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-A: b\r\n\r\nrest";
        let (status, _, used) = parse_response_head(wire).unwrap().unwrap();
        assert_eq!((status, used), (StatusCode::CONTINUE, 25));
        let (status, headers, used) = parse_response_head(&wire[25..]).unwrap().unwrap();
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers.get("x-a").unwrap(), "b");
        assert_eq!(&wire[25 + used..], b"rest");
        assert!(parse_response_head(&wire[..20]).unwrap().is_none());
        assert!(parse_response_head(b"HTTP/1.1 999x\r\n\r\n").is_err());
    }
}
