//! An upload connection that speaks `Expect: 100-continue` the way Swift's
//! proxy does with object servers: send the request head, wait for the
//! server's `100 Continue` (or its final refusal, e.g. 507 or 412) before
//! any body byte, then stream the body chunked or with its declared length
//! and read the final answer. hyper's client cannot wait for the interim
//! response, which is why this lives beside it.
//!
//! Each connection is used for one request and closed: a proxy PUT sends
//! the same data to several nodes and learns which ones will take it
//! before reading the client's body, so no data is ever replayed.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest response head accepted from a backend.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body kept (backend PUT answers are short texts).
const MAX_BODY: usize = 64 * 1024;

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

/// An upload in progress to one backend.
pub struct UploadConn {
    stream: TcpStream,
    /// Bytes read past the `100 Continue` head, kept for the final answer.
    pending: BytesMut,
    chunked: bool,
    node_timeout: Duration,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
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
    let mut stream = timeout(conn_timeout, TcpStream::connect(host))
        .await
        .map_err(|_| timed_out("connect"))??;
    stream.set_nodelay(true)?;
    let expect = content_length != Some(0);
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
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    timeout(node_timeout, stream.write_all(&head))
        .await
        .map_err(|_| timed_out("sending the request head"))??;
    let mut conn = UploadConn {
        stream,
        pending: BytesMut::new(),
        chunked: content_length.is_none(),
        node_timeout,
    };
    if !expect {
        return Ok(Started::Final(conn.read_final().await?));
    }
    let (status, headers, consumed) = conn.read_head().await?;
    if status == StatusCode::CONTINUE {
        let _ = conn.pending.split_to(consumed);
        return Ok(Started::Continue(conn));
    }
    let _ = conn.pending.split_to(consumed);
    let body = conn.read_body(&headers).await.unwrap_or_default();
    Ok(Started::Final(FinalResponse {
        status,
        headers,
        body,
    }))
}

impl UploadConn {
    /// Sends one piece of the body.
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let write = async {
            if self.chunked {
                let size = format!("{:x}\r\n", data.len());
                self.stream.write_all(size.as_bytes()).await?;
                self.stream.write_all(data).await?;
                self.stream.write_all(b"\r\n").await
            } else {
                self.stream.write_all(data).await
            }
        };
        timeout(self.node_timeout, write)
            .await
            .map_err(|_| timed_out("sending the body"))?
    }

    /// Ends the body and reads the final answer.
    pub async fn finish(mut self) -> io::Result<FinalResponse> {
        if self.chunked {
            timeout(self.node_timeout, self.stream.write_all(b"0\r\n\r\n"))
                .await
                .map_err(|_| timed_out("ending the body"))??;
        }
        timeout(self.node_timeout, self.stream.flush())
            .await
            .map_err(|_| timed_out("flushing the body"))??;
        self.read_final().await
    }

    async fn read_final(&mut self) -> io::Result<FinalResponse> {
        loop {
            let (status, headers, consumed) = self.read_head().await?;
            let _ = self.pending.split_to(consumed);
            if status.is_informational() {
                continue;
            }
            let body = self.read_body(&headers).await?;
            return Ok(FinalResponse {
                status,
                headers,
                body,
            });
        }
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
            let mut raw = [httparse::EMPTY_HEADER; 256];
            let mut resp = httparse::Response::new(&mut raw);
            match resp.parse(&self.pending) {
                Ok(httparse::Status::Complete(used)) => {
                    let status = resp
                        .code
                        .and_then(|c| StatusCode::from_u16(c).ok())
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status"))?;
                    let mut headers = HeaderMap::new();
                    for h in resp.headers.iter() {
                        if let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(h.name.as_bytes()),
                            HeaderValue::from_bytes(h.value),
                        ) {
                            headers.append(name, value);
                        }
                    }
                    return Ok((status, headers, used));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            if self.pending.len() > MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response head too large",
                ));
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
    /// (the connection is `close`), keeping at most [`MAX_BODY`] bytes.
    async fn read_body(&mut self, headers: &HeaderMap) -> io::Result<Bytes> {
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = headers
            .get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if let Some(len) = length {
            let len = len.min(MAX_BODY);
            while self.pending.len() < len {
                if self.fill().await? == 0 {
                    break;
                }
            }
            let take = len.min(self.pending.len());
            return Ok(self.pending.split_to(take).freeze());
        }
        if chunked {
            let mut out = BytesMut::new();
            loop {
                let line_end = loop {
                    if let Some(pos) = self.pending.windows(2).position(|w| w == b"\r\n") {
                        break pos;
                    }
                    if self.pending.len() > MAX_HEAD || self.fill().await? == 0 {
                        return Ok(out.freeze());
                    }
                };
                let size_text = String::from_utf8_lossy(&self.pending[..line_end]).to_string();
                let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
                let size = usize::from_str_radix(&size_text, 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
                let _ = self.pending.split_to(line_end + 2);
                if size == 0 {
                    return Ok(out.freeze());
                }
                while self.pending.len() < size + 2 {
                    if self.fill().await? == 0 {
                        return Ok(out.freeze());
                    }
                }
                if out.len() + size <= MAX_BODY {
                    out.extend_from_slice(&self.pending[..size]);
                }
                let _ = self.pending.split_to(size + 2);
            }
        }
        loop {
            if self.pending.len() >= MAX_BODY || self.fill().await? == 0 {
                let take = self.pending.len().min(MAX_BODY);
                return Ok(self.pending.split_to(take).freeze());
            }
        }
    }
}
