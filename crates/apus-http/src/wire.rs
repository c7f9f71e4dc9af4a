//! The two places where the bytes between a client and hyper are changed,
//! because hyper's HTTP/1.1 and Swift's (eventlet's) differ on the wire
//! in ways Swift's clients see:
//!
//! - **Raw non-ASCII bytes in a request target.** eventlet takes
//!   `GET /v1/AUTH_test/café` as sent and Swift decides: valid UTF-8 is a
//!   name like any other, anything else is `412 Invalid UTF8 or contains
//!   NULL`. hyper's parser accepts those bytes but `http::Uri` does not,
//!   and hyper answers a bodiless 400 before any handler runs.
//!   [`TargetEncoder`] percent-encodes each byte of 0x80 and above in the
//!   target of the connection's first request line, which means the same
//!   to every apus server (paths are percent-decoded before use), so the
//!   request reaches the handler and gets Swift's answer.
//!
//!   Only the first request of a connection is changed: it is the only
//!   head whose place in the stream is known without decoding the bodies
//!   before it, and decoding bodies a second time, beside hyper, is how
//!   request smuggling starts. A later request on a kept-alive connection
//!   with raw non-ASCII bytes still gets hyper's 400; clients that send
//!   such bytes (curl, browsers' address bars) open a connection per URL,
//!   and the libraries (Python's, swiftclient, the SDKs) percent-encode.
//!
//! - **`Content-Length: 0` on a 204.** Swift's account and container
//!   servers answer an empty listing `204 No Content` with
//!   `Content-Length: 0`, and clients check it; hyper drops any
//!   `Content-Length` from a 204 (it may not have a body, but the header
//!   is allowed). The server marks such an answer with a header of the
//!   same length, [`ZERO_LENGTH_MARK`], and [`MarkRewriter`] turns its
//!   line into `Content-Length: 0` as hyper writes the head. Same length,
//!   same place: nothing else in the stream moves.
//!
//! - **`x-amz-*` header names in lower case.** hyper title-cases every
//!   header name it writes (Swift's answers are title-cased, and clients
//!   compare), but Swift's s3api writes its `x-amz-*` headers in lower
//!   case, and S3 clients take user metadata names from them as written
//!   (boto3 reports `x-amz-meta-color` as the key `color`). The server
//!   announces an answer carrying such headers, and [`AmzLowercaser`]
//!   lower-cases those names in that answer's head as hyper writes it:
//!   the same length, and only inside the head, never in a body.
//!
//! [`WireIo`] applies all three to a connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The header that stands for `Content-Length: 0` on a 204 until it is
/// on the wire; as long as `Content-Length`, so the rewrite is in place.
pub const ZERO_LENGTH_MARK: &str = "x-apus-cl-zero";

/// The longest request line the encoder looks at; past it, hyper refuses
/// the head anyway (see `limits`).
const MAX_FIRST_LINE: usize = 64 * 1024;

/// Percent-encodes the bytes of 0x80 and above in the target of the first
/// request line it is fed, and passes everything after that line as is.
#[derive(Debug, Default)]
pub struct TargetEncoder {
    state: LineState,
    seen: usize,
    /// Bytes the encoding added (two per encoded byte).
    grown: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Empty lines before the request line (HTTP/1.1 allows them).
    #[default]
    Leading,
    /// The method, up to the space before the target.
    Method,
    Target,
    /// The space after the target, the version, up to the line's end.
    Version,
    Done,
}

impl TargetEncoder {
    pub fn new() -> Self {
        TargetEncoder::default()
    }

    /// Whether the first line is over: every later byte passes unchanged.
    pub fn is_done(&self) -> bool {
        self.state == LineState::Done
    }

    /// How many bytes longer the line is than it was sent.
    pub fn grown(&self) -> usize {
        self.grown
    }

    /// Appends `input` to `out`, encoding as the position in the line
    /// requires.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for (i, &b) in input.iter().enumerate() {
            if self.state == LineState::Done {
                out.extend_from_slice(&input[i..]);
                return;
            }
            self.seen += 1;
            match self.state {
                LineState::Leading if b == b'\r' || b == b'\n' => {}
                LineState::Leading if b == b' ' => self.state = LineState::Target,
                LineState::Leading => self.state = LineState::Method,
                LineState::Method if b == b' ' => self.state = LineState::Target,
                LineState::Method if b == b'\n' => self.state = LineState::Done,
                LineState::Target if b == b' ' => self.state = LineState::Version,
                LineState::Target | LineState::Version if b == b'\n' => {
                    self.state = LineState::Done
                }
                LineState::Target if b >= 0x80 => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.extend_from_slice(&[
                        b'%',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 0xf)],
                    ]);
                    self.grown += 2;
                    continue;
                }
                _ => {}
            }
            out.push(b);
            if self.seen >= MAX_FIRST_LINE {
                self.state = LineState::Done;
            }
        }
    }
}

/// The marked header line as hyper writes it (it title-cases names), and
/// what goes on the wire instead.
const MARK_LINE: &[u8] = b"\r\nX-Apus-Cl-Zero: 0\r\n";
const FIXED_LINE: &[u8] = b"\r\nContent-Length: 0\r\n";
const _: () = assert!(MARK_LINE.len() == FIXED_LINE.len());

/// Rewrites [`ZERO_LENGTH_MARK`] lines in what is written, as many as the
/// server announced (no more: a body that happens to hold the same bytes
/// is left alone when nothing is announced), across partial writes.
#[derive(Debug, Default)]
pub struct MarkRewriter {
    announced: Arc<AtomicUsize>,
    /// How much of a rewritten line a partial write left out.
    resume_at: Option<usize>,
}

/// One rewritten line in a buffer handed to [`MarkRewriter::written`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// Where the line starts in the buffer (negative: it began in an
    /// earlier write, this many bytes of it were written already).
    start: isize,
}

impl MarkRewriter {
    pub fn new() -> Self {
        MarkRewriter::default()
    }

    /// Where the server announces a marked answer, before handing it to
    /// hyper.
    pub fn announcer(&self) -> Arc<AtomicUsize> {
        self.announced.clone()
    }

    /// Whether `buf` must go through [`MarkRewriter::rewrite`].
    pub fn is_active(&self) -> bool {
        self.resume_at.is_some() || self.announced.load(Ordering::Acquire) > 0
    }

    /// The bytes to write for `buf` (the same length) and the lines
    /// rewritten in them, to pass to [`MarkRewriter::written`].
    pub fn rewrite(&self, buf: &[u8]) -> (Vec<u8>, Vec<Rewrite>) {
        let mut out = buf.to_vec();
        let mut rewrites = Vec::new();
        let mut from = 0;
        if let Some(done) = self.resume_at {
            let rest = &MARK_LINE[done..];
            let n = rest.len().min(out.len());
            if out[..n].eq_ignore_ascii_case(&rest[..n]) {
                out[..n].copy_from_slice(&FIXED_LINE[done..done + n]);
                rewrites.push(Rewrite {
                    start: -(done as isize),
                });
                from = n;
            }
        }
        let mut budget = self.announced.load(Ordering::Acquire);
        while budget > 0 {
            let Some(at) = find_mark(&out[from..]) else {
                break;
            };
            let start = from + at;
            out[start..start + MARK_LINE.len()].copy_from_slice(FIXED_LINE);
            rewrites.push(Rewrite {
                start: start as isize,
            });
            // The line's closing CRLF may open the next marked line.
            from = start + MARK_LINE.len() - 2;
            budget -= 1;
        }
        (out, rewrites)
    }

    /// Records that `n` bytes of a rewritten buffer were written: lines
    /// written whole or in part are done with (a part's rest is expected
    /// first in the next write); lines not reached are found again when
    /// hyper offers those bytes again.
    pub fn written(&mut self, n: usize, rewrites: &[Rewrite]) {
        let n = n as isize;
        let len = MARK_LINE.len() as isize;
        let resumed = self.resume_at.take();
        for r in rewrites {
            if r.start >= n {
                break;
            }
            if r.start >= 0 {
                // A new line: it no longer counts as announced.
                let _ = self
                    .announced
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
            }
            let end = r.start + len;
            if end > n {
                self.resume_at = Some((n - r.start) as usize);
            }
        }
        if rewrites.is_empty() && n == 0 {
            self.resume_at = resumed;
        }
    }
}

/// Lower-cases the names of `x-amz-*` header lines in the heads the
/// server announced, across partial writes.
#[derive(Debug, Default)]
pub struct AmzLowercaser {
    announced: Arc<AtomicUsize>,
    /// The rewritten rest of a head a partial write left out; hyper
    /// offers those bytes again first.
    rest: Vec<u8>,
}

/// What [`AmzLowercaser::rewrite`] did to one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lowered {
    Nothing,
    /// The first bytes were the rest of a head begun earlier.
    Resumed(usize),
    /// A head of this length starts the buffer.
    Head(usize),
}

impl AmzLowercaser {
    pub fn new() -> Self {
        AmzLowercaser::default()
    }

    pub fn announcer(&self) -> Arc<AtomicUsize> {
        self.announced.clone()
    }

    pub fn is_active(&self) -> bool {
        !self.rest.is_empty() || self.announced.load(Ordering::Acquire) > 0
    }

    /// Rewrites `buf` in place (its length unchanged).
    pub fn rewrite(&mut self, buf: &mut [u8]) -> Lowered {
        if !self.rest.is_empty() {
            let k = self.rest.len().min(buf.len());
            if buf[..k].eq_ignore_ascii_case(&self.rest[..k]) {
                buf[..k].copy_from_slice(&self.rest[..k]);
                return Lowered::Resumed(k);
            }
            // Not the bytes left over: nothing to resume.
            self.rest.clear();
        }
        if self.announced.load(Ordering::Acquire) == 0 || !buf.starts_with(b"HTTP/1.") {
            return Lowered::Nothing;
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            // A head that does not fit one buffer is left as written.
            let _ = self
                .announced
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
            return Lowered::Nothing;
        };
        let head_len = end + 4;
        let mut at = 0;
        while let Some(i) = find_ci(&buf[at..head_len], b"\r\nx-amz-") {
            let name_start = at + i + 2;
            let mut j = name_start;
            while j < head_len && buf[j] != b':' && buf[j] != b'\r' {
                buf[j] = buf[j].to_ascii_lowercase();
                j += 1;
            }
            at = j;
        }
        Lowered::Head(head_len)
    }

    /// Records that `n` bytes of the rewritten `buf` were written.
    pub fn written(&mut self, buf: &[u8], n: usize, lowered: Lowered) {
        match lowered {
            Lowered::Nothing => {}
            Lowered::Resumed(k) => {
                self.rest.drain(..n.min(k));
            }
            Lowered::Head(len) => {
                if n == 0 {
                    return;
                }
                let _ = self
                    .announced
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
                if n < len {
                    self.rest = buf[n..len].to_vec();
                }
            }
        }
    }
}

fn find_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Where the mark's line starts in `buf` (names compare without case).
fn find_mark(buf: &[u8]) -> Option<usize> {
    buf.windows(MARK_LINE.len())
        .position(|w| w.eq_ignore_ascii_case(MARK_LINE))
}

/// A connection with the [`TargetEncoder`] on what is read and the
/// [`MarkRewriter`] on what is written.
#[derive(Debug)]
pub struct WireIo<S> {
    inner: S,
    encoder: TargetEncoder,
    /// Encoded bytes that did not fit the caller's buffer yet.
    pending: Vec<u8>,
    pending_from: usize,
    rewriter: MarkRewriter,
    lowercaser: AmzLowercaser,
    grown: Arc<AtomicUsize>,
}

impl<S> WireIo<S> {
    pub fn new(inner: S) -> Self {
        WireIo {
            inner,
            encoder: TargetEncoder::new(),
            pending: Vec::new(),
            pending_from: 0,
            rewriter: MarkRewriter::new(),
            lowercaser: AmzLowercaser::new(),
            grown: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Where the server announces a response marked with
    /// [`ZERO_LENGTH_MARK`].
    pub fn announcer(&self) -> Arc<AtomicUsize> {
        self.rewriter.announcer()
    }

    /// Where the server announces a response with `x-amz-*` headers.
    pub fn amz_announcer(&self) -> Arc<AtomicUsize> {
        self.lowercaser.announcer()
    }

    /// Where the connection tells how many bytes the first request's
    /// target grew by its encoding (taken once, by that request).
    pub fn growth(&self) -> Arc<AtomicUsize> {
        self.grown.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WireIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_from < this.pending.len() {
            let rest = &this.pending[this.pending_from..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pending_from += n;
            if this.pending_from == this.pending.len() {
                this.pending = Vec::new();
                this.pending_from = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.encoder.is_done() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Read at most a third of the room, so the encoded bytes usually
        // fit; the rest waits in `pending`.
        let room = (buf.remaining() / 3).max(1);
        let mut raw = vec![0u8; room];
        let mut raw_buf = ReadBuf::new(&mut raw);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf))?;
        let mut encoded = Vec::with_capacity(raw_buf.filled().len());
        this.encoder.encode(raw_buf.filled(), &mut encoded);
        this.grown.store(this.encoder.grown(), Ordering::Release);
        let n = encoded.len().min(buf.remaining());
        buf.put_slice(&encoded[..n]);
        if n < encoded.len() {
            this.pending = encoded;
            this.pending_from = n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WireIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let marking = this.rewriter.is_active();
        let lowering = this.lowercaser.is_active();
        if !marking && !lowering {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let (mut out, rewrites) = if marking {
            this.rewriter.rewrite(buf)
        } else {
            (buf.to_vec(), Vec::new())
        };
        let lowered = if lowering {
            this.lowercaser.rewrite(&mut out)
        } else {
            Lowered::Nothing
        };
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &out))?;
        this.rewriter.written(n, &rewrites);
        this.lowercaser.written(&out, n, lowered);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.rewriter.is_active() && !this.lowercaser.is_active() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        // hyper encodes a head into one buffer, so a marked line never
        // spans two slices: write the first one alone.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        Pin::new(this).poll_write(cx, first)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn encode_in_pieces(input: &[u8], piece: usize) -> Vec<u8> {
        let mut enc = TargetEncoder::new();
        let mut out = Vec::new();
        for part in input.chunks(piece) {
            enc.encode(part, &mut out);
        }
        out
    }

    #[test]
    fn only_the_first_targets_high_bytes_are_encoded() {
        let input = b"\r\nPUT /v1/a/caf\xc3\xa9/\xff HTTP/1.1\r\nX-Meta: \xc3\xa9\r\n\r\nbody \xff\
GET /v1/\xff HTTP/1.1\r\n";
        let want = b"\r\nPUT /v1/a/caf%C3%A9/%FF HTTP/1.1\r\nX-Meta: \xc3\xa9\r\n\r\nbody \xff\
GET /v1/\xff HTTP/1.1\r\n";
        for piece in [1, 2, 3, 7, input.len()] {
            assert_eq!(encode_in_pieces(input, piece), want.to_vec(), "{piece}");
        }
    }

    #[test]
    fn ascii_requests_pass_unchanged() {
        let input = b"GET /v1/AUTH_test/c%20d?format=json HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(encode_in_pieces(input, 5), input.to_vec());
    }

    fn rewrite_in_pieces(wire: &[u8], announced: usize, piece: usize) -> Vec<u8> {
        let mut rw = MarkRewriter::new();
        rw.announcer().store(announced, Ordering::Release);
        let mut out = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let offered = &wire[at..];
            if !rw.is_active() {
                out.extend_from_slice(offered);
                break;
            }
            let (bytes, rewrites) = rw.rewrite(offered);
            // The socket takes `piece` bytes at a time.
            let n = piece.min(bytes.len());
            out.extend_from_slice(&bytes[..n]);
            rw.written(n, &rewrites);
            at += n;
        }
        out
    }

    #[test]
    fn announced_marks_become_content_length_across_partial_writes() {
        let wire = b"HTTP/1.1 204 No Content\r\nX-Apus-Cl-Zero: 0\r\nDate: x\r\n\r\n\
HTTP/1.1 204 No Content\r\nX-Apus-Cl-Zero: 0\r\n\r\n";
        let want = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nDate: x\r\n\r\n\
HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        for piece in 1..=wire.len() {
            assert_eq!(rewrite_in_pieces(wire, 2, piece), want.to_vec(), "{piece}");
        }
        // One announced: the second line is left as it is.
        let out = rewrite_in_pieces(wire, 1, 10);
        assert_eq!(out.len(), wire.len());
        assert!(out.starts_with(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n"));
        assert!(out.ends_with(b"\r\nX-Apus-Cl-Zero: 0\r\n\r\n"));
    }

    /// What goes on the wire when hyper offers each buffer in turn (a
    /// head, announced or not, then its body) and the socket takes
    /// `piece` bytes a time.
    fn lower_in_pieces(buffers: &[(bool, &[u8])], piece: usize) -> Vec<u8> {
        let mut lc = AmzLowercaser::new();
        let mut out = Vec::new();
        for (announce, wire) in buffers {
            if *announce {
                lc.announcer().fetch_add(1, Ordering::AcqRel);
            }
            let mut at = 0;
            while at < wire.len() {
                let mut bytes = wire[at..].to_vec();
                let lowered = lc.rewrite(&mut bytes);
                let n = piece.min(bytes.len());
                out.extend_from_slice(&bytes[..n]);
                lc.written(&bytes, n, lowered);
                at += n;
            }
        }
        out
    }

    #[test]
    fn amz_names_are_lowered_in_announced_heads_only() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nX-Amz-Meta-Color: Red\r\nX-Auth-Token: T\r\n\
X-Amz-Request-Id: TX\r\n\r\n";
        // A body that looks like a head is still a body.
        let body: &[u8] = b"HTTP/1.1 200 OK\r\nX-Amz-Meta-In-Body: Kept\r\n\r\n";
        let want: &[u8] = b"HTTP/1.1 200 OK\r\nx-amz-meta-color: Red\r\nX-Auth-Token: T\r\n\
x-amz-request-id: TX\r\n\r\n";
        for piece in 1..=head.len() {
            let wire = lower_in_pieces(
                &[(true, head), (false, body), (true, head), (false, body)],
                piece,
            );
            assert_eq!(wire, [want, body, want, body].concat(), "{piece}");
        }
        let wire = lower_in_pieces(
            &[(false, head), (false, body), (true, head), (false, body)],
            5,
        );
        assert_eq!(wire, [head, body, want, body].concat());
    }

    #[test]
    fn nothing_announced_nothing_changed() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n\r\nX-Apus-Cl-Zero: 0\r\n";
        assert_eq!(rewrite_in_pieces(wire, 0, 4), wire.to_vec());
    }
}
