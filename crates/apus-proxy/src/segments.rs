//! Reading a large object's segments, one at a time, with Swift's checks
//! (its `SegmentedIterable`): a [`SegmentSource`] says which bytes of
//! which segment come next (the container listing of a dynamic large
//! object, page by page, or the entries of a static large object's
//! manifest), and the [`SegmentReader`] fetches them through the rest of
//! the pipeline.
//!
//! Memory stays bounded: one listing page and one chunk of one segment
//! are held at a time; nothing reads ahead of the consumer.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use apus_core::conditional::normalize_etag;
use apus_http::Body;
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use md5::{Digest, Md5};
use tokio::time::Instant;

use crate::dlo::util::{build_request, content_length, quote_query};
use crate::service::{BoxFuture, Env, Resp, SharedService};

/// Swift's `CONTAINER_LISTING_LIMIT`: a page this long may have a
/// successor.
pub(crate) const CONTAINER_LISTING_LIMIT: usize = 10_000;

/// The most of a listing page read into memory (10,000 entries of names
/// up to 1,024 bytes, with their other fields).
pub(crate) const MAX_LISTING_BYTES: usize = 32 * 1024 * 1024;

/// How much of a failed segment's body goes into the log line.
const MAX_ERROR_BODY: usize = 4096;

/// One entry of a container listing, as far as a DLO cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub name: String,
    pub bytes: u64,
    pub hash: String,
}

/// What the subrequests of one DLO request share: where they go, the
/// environment and headers they carry, and the manifest's account.
pub(crate) struct Subrequests {
    pub next: SharedService,
    pub env: Env,
    pub headers: HeaderMap,
    pub version: String,
    pub account: String,
}

impl Subrequests {
    /// One page of the json listing of `container` under `prefix`, after
    /// `marker`; the listing's response when it is not a success.
    pub(crate) async fn listing(
        &self,
        container: &str,
        prefix: &str,
        marker: Option<&str>,
    ) -> Result<Vec<Segment>, Resp> {
        let path = format!("/{}/{}/{}", self.version, self.account, container);
        let mut query = format!("format=json&prefix={}", quote_query(prefix));
        if let Some(m) = marker.filter(|m| !m.is_empty()) {
            query.push_str("&marker=");
            query.push_str(&quote_query(m));
        }
        // Listings carry the token but not X-Open-Expired (segments do).
        let mut headers = self.headers.clone();
        headers.remove("x-open-expired");
        let req = build_request(
            Method::GET,
            &path,
            Some(&query),
            headers,
            self.env.clone(),
            apus_http::empty(),
        )
        .map_err(|_| crate::service::error_response(StatusCode::INTERNAL_SERVER_ERROR, None))?;
        let resp = self.next.call(req).await;
        if !resp.status().is_success() {
            return Err(resp);
        }
        let body = apus_http::body::collect_limited(resp.into_body(), MAX_LISTING_BYTES)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, container, "DLO: reading a segment listing failed");
                crate::service::error_response(StatusCode::INTERNAL_SERVER_ERROR, None)
            })?;
        parse_listing(&body).ok_or_else(|| {
            tracing::error!(container, "DLO: a segment listing is not valid json");
            crate::service::error_response(StatusCode::INTERNAL_SERVER_ERROR, None)
        })
    }
}

/// The entries of a json container listing (`subdir` entries and entries
/// without a name are skipped).
pub(crate) fn parse_listing(body: &[u8]) -> Option<Vec<Segment>> {
    let entries: Vec<serde_json::Value> = serde_json::from_slice(body).ok()?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(name) = entry.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let bytes = entry.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0);
        let hash = entry
            .get("hash")
            .and_then(|h| h.as_str())
            .unwrap_or("")
            .to_string();
        out.push(Segment {
            name: name.to_string(),
            bytes,
            hash,
        });
    }
    Some(out)
}

/// Swift's DLO etag: the md5 of the segments' etags (unquoted) in order.
pub(crate) fn dlo_etag(segments: &[Segment]) -> String {
    let mut md5 = Md5::new();
    for s in segments {
        md5.update(normalize_etag(&s.hash).as_bytes());
    }
    format!("{:x}", md5.finalize())
}

/// Why reading the large object stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// A segment answered with a server error: 503 if nothing was sent.
    Unavailable(String),
    /// A segment is missing, refused, or not what it claims to be: 409
    /// if nothing was sent.
    Segment(String),
    /// A later page of the listing could not be had.
    Listing(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Unavailable(m) | ReadError::Segment(m) | ReadError::Listing(m) => {
                f.write_str(m)
            }
        }
    }
}

/// What comes next of a large object.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Planned {
    /// Bytes of a segment object: the inclusive range wanted of it, and
    /// the etag and length its manifest recorded, which the object must
    /// still have.
    Object {
        path: String,
        first: Option<u64>,
        last: Option<u64>,
        etag: Option<String>,
        size: Option<u64>,
    },
    /// Bytes held in the manifest itself.
    Data(Bytes),
}

/// Where a [`SegmentReader`] learns what to read next.
pub(crate) trait SegmentSource: Send + Sync {
    fn next_segment(&mut self) -> BoxFuture<'_, Result<Option<Planned>, ReadError>>;
}

/// Swift's rate limiter for segment fetches: at most `per_sec` per
/// second, with up to five seconds of catching up.
pub(crate) struct RateLimiter {
    pub(crate) per_sec: u64,
    pub(crate) running: Option<Instant>,
}

impl RateLimiter {
    pub(crate) async fn wait(&mut self) {
        if self.per_sec == 0 {
            return;
        }
        let step = Duration::from_secs_f64(1.0 / self.per_sec as f64);
        let buffer = Duration::from_secs(5);
        let now = Instant::now();
        let running = match self.running {
            Some(r) if now.saturating_duration_since(r) <= buffer => r,
            _ => now,
        };
        if running > now {
            tokio::time::sleep_until(running).await;
        }
        self.running = Some(running + step);
    }
}

/// Walks the listing of a DLO's segments, page by page, deciding which
/// bytes of which segment are needed for the range `[first_byte, last_byte]`.
pub(crate) struct Walker {
    sub: Arc<Subrequests>,
    container: String,
    prefix: String,
    page: VecDeque<Segment>,
    page_len: usize,
    last_name: Option<String>,
    first_byte: i128,
    last_byte: i128,
    finished: bool,
    yielded: u64,
    limit_after: u64,
    limiter: RateLimiter,
}

impl Walker {
    async fn next(&mut self) -> Result<Option<Planned>, ReadError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            if let Some(seg) = self.page.pop_front() {
                let len = i128::from(seg.bytes);
                if self.first_byte >= len {
                    // none of this segment is wanted
                    self.first_byte = (self.first_byte - len).max(-1);
                    self.last_byte = (self.last_byte - len).max(-1);
                    continue;
                }
                if self.last_byte < 0 {
                    // nothing more is wanted at all
                    self.finished = true;
                    return Ok(None);
                }
                let first = (self.first_byte > 0).then_some(self.first_byte as u64);
                let last = (self.last_byte < len - 1).then_some(self.last_byte as u64);
                self.first_byte = (self.first_byte - len).max(-1);
                self.last_byte = (self.last_byte - len).max(-1);
                if self.yielded >= self.limit_after {
                    self.limiter.wait().await;
                } else {
                    self.yielded += 1;
                }
                let path = format!(
                    "/{}/{}/{}/{}",
                    self.sub.version, self.sub.account, self.container, seg.name
                );
                return Ok(Some(Planned::Object {
                    path,
                    first,
                    last,
                    etag: None,
                    size: None,
                }));
            }
            if self.page_len < CONTAINER_LISTING_LIMIT || self.last_byte < 0 {
                self.finished = true;
                return Ok(None);
            }
            let marker = self.last_name.clone();
            match self
                .sub
                .listing(&self.container, &self.prefix, marker.as_deref())
                .await
            {
                Ok(page) => {
                    self.page_len = page.len();
                    self.last_name = page.last().map(|s| s.name.clone());
                    self.page = page.into();
                }
                Err(resp) => {
                    self.finished = true;
                    return Err(ReadError::Listing(format!(
                        "Got status {} listing container /{}/{}",
                        resp.status().as_u16(),
                        self.sub.account,
                        self.container
                    )));
                }
            }
        }
    }
}

impl SegmentSource for Walker {
    fn next_segment(&mut self) -> BoxFuture<'_, Result<Option<Planned>, ReadError>> {
        Box::pin(self.next())
    }
}

impl Walker {
    /// The walk over a DLO's listing, starting with `first_page`, for the
    /// bytes `[first_byte, last_byte]`, limited as `config` says.
    pub(crate) fn new(
        sub: Arc<Subrequests>,
        config: &crate::dlo::DloConfig,
        container: String,
        prefix: String,
        first_page: Vec<Segment>,
        first_byte: Option<u64>,
        last_byte: Option<i128>,
    ) -> Self {
        let page_len = first_page.len();
        let last_name = first_page.last().map(|s| s.name.clone());
        Walker {
            sub,
            container,
            prefix,
            page: first_page.into(),
            page_len,
            last_name,
            first_byte: first_byte.map_or(0, i128::from),
            last_byte: last_byte.unwrap_or(i128::MAX),
            finished: false,
            yielded: 0,
            limit_after: config.rate_limit_after_segment,
            limiter: RateLimiter {
                per_sec: config.rate_limit_segments_per_sec,
                running: None,
            },
        }
    }
}

/// The segment being read.
struct Current {
    path: String,
    body: Body,
    /// Running md5 and length, when the whole segment is read and its
    /// etag is known.
    check: Option<(Md5, u64, String, Option<u64>)>,
}

/// Produces the bytes of a DLO (or of one range of it), segment by
/// segment, with Swift's checks: each whole segment must match its own
/// etag and length, the total must match what the response promised,
/// and the whole read must finish within `max_get_time`.
pub(crate) struct SegmentReader {
    sub: Arc<Subrequests>,
    source: Box<dyn SegmentSource>,
    current: Option<Current>,
    /// Bytes still owed to the client, when the response has a length.
    bytes_left: Option<u64>,
    start: Instant,
    max_get_time: Duration,
    /// An error to report on the next read (after the chunk already
    /// handed out).
    pending: Option<ReadError>,
    done: bool,
    /// The manifest's path, for log lines.
    name: String,
}

impl SegmentReader {
    /// Reads what `source` plans, for a response promising
    /// `response_length` bytes, within `max_get_time`. `name` is the
    /// manifest's path, for messages.
    pub(crate) fn new(
        sub: Arc<Subrequests>,
        source: Box<dyn SegmentSource>,
        max_get_time: Duration,
        response_length: Option<u64>,
        name: String,
    ) -> Self {
        SegmentReader {
            sub,
            source,
            current: None,
            bytes_left: response_length,
            start: Instant::now(),
            max_get_time,
            pending: None,
            done: false,
            name,
        }
    }

    /// The next chunk of the object, `None` at its end.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.done {
            return Ok(None);
        }
        if let Some(err) = self.pending.take() {
            self.finish();
            return Err(err);
        }
        let chunk = match self.raw_chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => {
                self.finish();
                if let Some(left) = self.bytes_left.filter(|l| *l > 0) {
                    return Err(ReadError::Segment(format!(
                        "Expected another {left} bytes for {}; closing connection",
                        self.name
                    )));
                }
                return Ok(None);
            }
            Err(e) => {
                self.finish();
                return Err(e);
            }
        };
        let chunk = match self.bytes_left {
            None => chunk,
            Some(left) if left >= chunk.len() as u64 => {
                self.bytes_left = Some(left - chunk.len() as u64);
                chunk
            }
            Some(left) => {
                self.pending = Some(ReadError::Segment(format!(
                    "Too many bytes for {}; truncating with {} bytes left",
                    self.name,
                    chunk.len() as u64 - left
                )));
                self.bytes_left = Some(0);
                chunk.slice(..left as usize)
            }
        };
        if self.pending.is_none() && self.start.elapsed() > self.max_get_time {
            self.pending = Some(ReadError::Segment(format!(
                "While processing manifest {}, max LO GET time of {}s exceeded",
                self.name,
                self.max_get_time.as_secs()
            )));
        }
        Ok(Some(chunk))
    }

    fn finish(&mut self) {
        self.done = true;
        self.current = None;
    }

    /// The next non-empty chunk of segment data, fetching segments as
    /// needed.
    async fn raw_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(cur) = &mut self.current {
                match cur.body.frame().await {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        if let Some((md5, len, _, _)) = &mut cur.check {
                            md5.update(&data);
                            *len += data.len() as u64;
                        }
                        if data.is_empty() {
                            continue;
                        }
                        return Ok(Some(data));
                    }
                    Some(Err(e)) => {
                        return Err(ReadError::Segment(format!(
                            "While processing manifest {}, error reading {}: {e}",
                            self.name, cur.path
                        )));
                    }
                    None => {
                        let finished = self.current.take();
                        if let Some(Current {
                            path,
                            check: Some((md5, len, etag, expected_len)),
                            ..
                        }) = finished
                        {
                            if Some(len) != expected_len {
                                return Err(ReadError::Segment(format!(
                                    "Bad response length for {path} as part of {}: headers had {}, but response length was actually {len}",
                                    self.name,
                                    expected_len.map_or("None".to_string(), |l| l.to_string()),
                                )));
                            }
                            let actual = format!("{:x}", md5.finalize());
                            if actual != etag {
                                return Err(ReadError::Segment(format!(
                                    "Bad MD5 checksum for {path} as part of {}: headers had {etag}, but object MD5 was actually {actual}",
                                    self.name
                                )));
                            }
                        }
                        continue;
                    }
                }
            }
            match self.source.next_segment().await? {
                None => return Ok(None),
                Some(Planned::Data(bytes)) if bytes.is_empty() => continue,
                Some(Planned::Data(bytes)) => return Ok(Some(bytes)),
                Some(Planned::Object {
                    path,
                    first,
                    last,
                    etag,
                    size,
                }) => self.current = Some(self.fetch(path, first, last, etag, size).await?),
            }
        }
    }

    /// Starts the GET of bytes `[first, last]` of one segment (its stored
    /// bytes, whatever it is), which must still have `expected_etag` and
    /// `expected_size` when given.
    async fn fetch(
        &self,
        path: String,
        first: Option<u64>,
        last: Option<u64>,
        expected_etag: Option<String>,
        expected_size: Option<u64>,
    ) -> Result<Current, ReadError> {
        let mut headers = self.sub.headers.clone();
        let ranged = first.unwrap_or(0) != 0 || last.is_some();
        let first = first.unwrap_or(0);
        if ranged {
            let last = last.map(|l| l.to_string()).unwrap_or_default();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={first}-{last}")) {
                headers.insert(http::header::RANGE, v);
            }
        }
        let req = build_request(
            Method::GET,
            &path,
            Some("multipart-manifest=get"),
            headers,
            self.sub.env.clone(),
            apus_http::empty(),
        )
        .map_err(|_| ReadError::Segment(format!("bad segment path {}", path)))?;
        let resp = self.sub.next.call(req).await;
        let status = resp.status();
        if !status.is_success() {
            let body = apus_http::body::collect_limited(resp.into_body(), MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&body);
            let shown: String = if body.chars().count() <= 60 {
                body.into_owned()
            } else {
                body.chars().take(57).chain("...".chars()).collect()
            };
            let msg = format!(
                "While processing manifest {}, got {} ({shown}) while retrieving {}",
                self.name,
                status.as_u16(),
                path
            );
            if status.is_server_error() {
                return Err(ReadError::Unavailable(msg));
            }
            return Err(ReadError::Segment(msg));
        }
        let etag = resp
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|e| e.replace('"', ""))
            .filter(|e| !e.is_empty());
        let length = content_length(&resp);
        let etag_changed = matches!((&expected_etag, &etag),
            (Some(want), got) if got.as_deref() != Some(normalize_etag(want)));
        let size_changed = !ranged && expected_size.is_some_and(|s| s > 0 && length != Some(s));
        if etag_changed || size_changed {
            return Err(ReadError::Segment(format!(
                "Object segment no longer valid: {path} etag: {} != {} or {} != {}.",
                etag.as_deref().unwrap_or("None"),
                expected_etag.as_deref().unwrap_or("None"),
                length.map_or("None".to_string(), |l| l.to_string()),
                expected_size.map_or("None".to_string(), |l| l.to_string()),
            )));
        }
        let check = match etag {
            Some(etag) if !ranged => Some((Md5::new(), 0, etag, length)),
            _ => None,
        };
        Ok(Current {
            path,
            body: resp.into_body(),
            check,
        })
    }
}

/// The answer that streams `reader` with `status` and `headers`. Its first
/// bytes are read before answering, so that a missing or unreadable first
/// segment is an error status (409; 503 when a server failed), not a cut
/// body. `what` names the large object kind in log lines.
pub(crate) async fn segmented_response(
    mut reader: SegmentReader,
    status: StatusCode,
    headers: HeaderMap,
    what: &'static str,
) -> Resp {
    let peeked = match reader.next_chunk().await {
        Ok(chunk) => chunk,
        Err(err) => {
            tracing::error!(error = %err, what, "a large object's first segment cannot be read");
            return match err {
                ReadError::Unavailable(_) => {
                    let mut resp =
                        crate::service::error_response(StatusCode::SERVICE_UNAVAILABLE, None);
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain"),
                    );
                    resp
                }
                ReadError::Segment(_) | ReadError::Listing(_) => {
                    crate::service::error_response(StatusCode::CONFLICT, None)
                }
            };
        }
    };
    let mut resp = http::Response::new(segment_body(peeked, reader, what));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// The response body: `peeked`, then the rest of the segments. A read
/// error ends the body with an error, which makes the server cut the
/// connection.
pub(crate) fn segment_body(
    peeked: Option<Bytes>,
    reader: SegmentReader,
    what: &'static str,
) -> apus_http::Body {
    let stream = futures_util::stream::unfold(
        (peeked, reader, false),
        move |(peeked, mut reader, failed)| async move {
            if failed {
                return None;
            }
            if let Some(chunk) = peeked {
                return Some((Ok(Frame::data(chunk)), (None, reader, false)));
            }
            match reader.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(Frame::data(chunk)), (None, reader, false))),
                Ok(None) => None,
                Err(err) => {
                    tracing::error!(error = %err, what, "ending a large object's body early");
                    Some((Err(io::Error::other(err.to_string())), (None, reader, true)))
                }
            }
        },
    );
    StreamBody::new(SyncStream::new(stream)).boxed()
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, io::Error>> + Send>>;

/// Makes a `Send` stream usable where `Sync` is required: it is only
/// ever polled through `&mut`, so the mutex is never locked.
pub(crate) struct SyncStream(Mutex<FrameStream>);

impl SyncStream {
    pub(crate) fn new(
        stream: impl Stream<Item = Result<Frame<Bytes>, io::Error>> + Send + 'static,
    ) -> Self {
        SyncStream(Mutex::new(Box::pin(stream)))
    }
}

impl Stream for SyncStream {
    type Item = Result<Frame<Bytes>, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(stream) => stream.as_mut().poll_next(cx),
            Err(poisoned) => poisoned.into_inner().as_mut().poll_next(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(name: &str, bytes: u64) -> Segment {
        Segment {
            name: name.into(),
            bytes,
            hash: String::new(),
        }
    }

    struct Nothing;
    impl crate::service::Service for Nothing {
        fn call(&self, _req: crate::service::Req) -> crate::service::BoxFuture<'_, Resp> {
            Box::pin(async { crate::service::error_response(StatusCode::NOT_FOUND, None) })
        }
    }

    fn walker(segs: Vec<Segment>, first: i128, last: i128) -> Walker {
        Walker {
            sub: Arc::new(Subrequests {
                next: Arc::new(Nothing),
                env: Env::default(),
                headers: HeaderMap::new(),
                version: "v1".into(),
                account: "a".into(),
            }),
            container: "c".into(),
            prefix: "s".into(),
            page_len: segs.len(),
            page: segs.into(),
            last_name: None,
            first_byte: first,
            last_byte: last,
            finished: false,
            yielded: 0,
            limit_after: 0,
            limiter: RateLimiter {
                per_sec: 0,
                running: None,
            },
        }
    }

    async fn plan(
        segs: Vec<Segment>,
        first: i128,
        last: i128,
    ) -> Vec<(String, Option<u64>, Option<u64>)> {
        let mut w = walker(segs, first, last);
        let mut out = Vec::new();
        while let Some(p) = w.next().await.unwrap() {
            let Planned::Object {
                path, first, last, ..
            } = p
            else {
                panic!("a DLO has no inline data");
            };
            out.push((path.rsplit('/').next().unwrap().to_string(), first, last));
        }
        out
    }

    #[tokio::test]
    async fn walker_picks_the_bytes_of_a_range() {
        let segs = || vec![seg("s1", 5), seg("s2", 5), seg("s3", 5)];
        assert_eq!(
            plan(segs(), 0, i128::MAX).await,
            vec![
                ("s1".into(), None, None),
                ("s2".into(), None, None),
                ("s3".into(), None, None)
            ]
        );
        assert_eq!(
            plan(segs(), 3, 11).await,
            vec![
                ("s1".into(), Some(3), None),
                ("s2".into(), None, None),
                ("s3".into(), None, Some(1))
            ]
        );
        assert_eq!(plan(segs(), 5, 9).await, vec![("s2".into(), None, None)]);
        assert_eq!(
            plan(segs(), 14, 14).await,
            vec![("s3".into(), Some(4), None)]
        );
        // a leading empty segment is skipped, a later one read
        assert_eq!(
            plan(vec![seg("e0", 0), seg("s1", 2), seg("e1", 0)], 0, i128::MAX).await,
            vec![("s1".into(), None, None), ("e1".into(), None, None)]
        );
    }

    #[test]
    fn etag_of_segments() {
        let segs = vec![
            Segment {
                name: "a".into(),
                bytes: 1,
                hash: "\"abc\"".into(),
            },
            Segment {
                name: "b".into(),
                bytes: 1,
                hash: "def".into(),
            },
        ];
        let mut md5 = Md5::new();
        md5.update(b"abcdef");
        assert_eq!(dlo_etag(&segs), format!("{:x}", md5.finalize()));
        assert!(parse_listing(b"not json").is_none());
        assert_eq!(
            parse_listing(br#"[{"name":"x","bytes":3,"hash":"h"},{"subdir":"d/"}]"#),
            Some(vec![Segment {
                name: "x".into(),
                bytes: 3,
                hash: "h".into()
            }])
        );
    }
}
