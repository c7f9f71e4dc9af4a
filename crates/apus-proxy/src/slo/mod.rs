//! Static large objects (Swift's `slo` middleware): a manifest listing
//! segment objects (and inline data) is served as their concatenation.
//!
//! - `PUT ?multipart-manifest=put` takes the client's JSON list, checks it
//!   ([`manifest::parse_input`]), HEADs each segment through the rest of
//!   the pipeline (`concurrency` at a time) and checks its etag, size and
//!   range, then stores the manifest with `X-Static-Large-Object: True`,
//!   the large object's etag and size in system metadata, its size as
//!   `swift_bytes` in the content type, and the etag for container
//!   listings as `<manifest md5>; slo_etag=<etag>`. The answer's ETag is
//!   the large object's. Problems are listed in a 400 in the format the
//!   client accepts (plain, json or xml), as Swift lists them.
//! - `GET` and `HEAD` ask the object server to ignore `Range` for a
//!   manifest and to check `If-Match`/`If-None-Match` against the stored
//!   large-object etag. A manifest's answer gets the large object's ETag,
//!   length and `X-Manifest-Etag`; a GET streams the segments one at a
//!   time (nested manifests read as they are reached, at most
//!   [`MAX_NESTING`] deep), each segment checked against the etag and
//!   length its entry recorded. One range gives 206, several a
//!   `multipart/byteranges` 206, an unsatisfiable one 416. A first
//!   segment that cannot be read gives 409 (503 for a server error);
//!   a later failure ends the body early.
//! - `?multipart-manifest=get` reads the manifest itself (as json;
//!   `&format=raw` in the form a client PUTs).
//! - `DELETE ?multipart-manifest=delete` deletes the segments (nested
//!   manifests' included) and then the manifest, answering as a bulk
//!   delete does.
//! - Container listings show a manifest's etag as `hash` and the large
//!   object's as `slo_etag`.
//! - `X-Static-Large-Object` from a client on any other PUT or POST is
//!   refused.
//!
//! - `?heartbeat=on` on a manifest PUT answers 202 at once, sends a space
//!   every `yield_frequency` seconds while the segments are checked, then
//!   the outcome in the accepted format.
//! - `?part-number=N` on a GET or HEAD of a large object answers entry N
//!   alone (206, `X-Parts-Count`), 416 past the last entry.
//!
//! Not yet: `async=yes` deletes (Swift hands the segments to the
//! expirer; `allow_async_delete` is reported false).

pub mod manifest;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use apus_core::conditional::normalize_etag;
use apus_core::range::{
    content_range_value, multipart_body_length, multipart_part_header, multipart_terminator, Range,
};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};

use crate::bulk::{delete_all, out_format, result_body, status_text, Deleted, ToDelete};
use crate::dlo::util::{build_request, object_path, query_param, subrequest_headers};
use crate::segments::{
    segmented_response, Planned, RateLimiter, ReadError, SegmentReader, SegmentSource, Subrequests,
    SyncStream,
};
use crate::service::{
    add_to_header_list, env, error_response, header_str, header_text, set_header, BoxFuture, Req,
    Resp, Service, SharedService,
};
use manifest::{InputSegment, StoredSegment};

use apus_core::Timestamp;

/// The etag of zero bytes: what queue entries record.
const MD5_OF_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";
/// The content type of an expirer queue entry that deletes its object
/// outright (Swift's `ASYNC_DELETE_TYPE`).
const ASYNC_DELETE_TYPE: &str = "application/async-deleted";

const SWIFT_SOURCE: &str = "SLO";
const X_STATIC_LARGE_OBJECT: &str = "x-static-large-object";
const SYSMETA_SLO_ETAG: &str = "x-object-sysmeta-slo-etag";
const SYSMETA_SLO_SIZE: &str = "x-object-sysmeta-slo-size";
const OVERRIDE_ETAG: &str = "x-object-sysmeta-container-update-override-etag";
const ETAG_IS_AT: &str = "x-backend-etag-is-at";
const IGNORE_RANGE: &str = "x-backend-ignore-range-if-metadata-present";

/// A check a filter in front of SLO adds to a manifest PUT, as a request
/// extension (Swift's `swift.callback.slo_manifest_hook`): given the
/// segments about to be stored, the problems it finds, as
/// `(name, reason)`, which refuse the manifest like SLO's own.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct ManifestHook(pub Arc<dyn Fn(&[StoredSegment]) -> Vec<(String, String)> + Send + Sync>);

/// How deeply manifests may nest when read (Swift's limit).
pub const MAX_NESTING: usize = 10;

/// The `slo` settings, with Swift's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SloConfig {
    pub max_manifest_segments: usize,
    pub max_manifest_size: usize,
    pub yield_frequency: u64,
    pub max_get_time: Duration,
    /// Segments smaller than this are rate limited after
    /// `rate_limit_after_segment` of them.
    pub rate_limit_under_size: u64,
    pub rate_limit_after_segment: u64,
    pub rate_limit_segments_per_sec: u64,
    /// Segment HEADs (on PUT) and DELETEs in flight at once.
    pub concurrency: usize,
    pub allow_async_delete: bool,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            max_manifest_segments: manifest::DEFAULT_MAX_MANIFEST_SEGMENTS,
            max_manifest_size: manifest::DEFAULT_MAX_MANIFEST_SIZE,
            yield_frequency: 10,
            max_get_time: Duration::from_secs(86_400),
            rate_limit_under_size: 1024 * 1024,
            rate_limit_after_segment: 10,
            rate_limit_segments_per_sec: 1,
            concurrency: 2,
            allow_async_delete: true,
        }
    }
}

/// The `/info` entry for `slo`, with Swift's keys.
pub fn info(config: &SloConfig) -> serde_json::Value {
    serde_json::json!({
        "max_manifest_segments": config.max_manifest_segments,
        "max_manifest_size": config.max_manifest_size,
        "yield_frequency": config.yield_frequency,
        "min_segment_size": 1,
        "allow_async_delete": config.allow_async_delete,
    })
}

pub struct Slo {
    next: SharedService,
    config: Arc<SloConfig>,
    /// Names the expirer queue's task containers (async deletes).
    hash: apus_core::HashConfig,
}

impl Slo {
    pub fn new(next: SharedService, config: SloConfig, hash: apus_core::HashConfig) -> Self {
        Slo {
            next,
            config: Arc::new(config),
            hash,
        }
    }
}

impl Service for Slo {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let Some([version, account, _container, _object]) = object_path(&req) else {
            if req.method() == Method::GET && is_container_path(&req) {
                return Box::pin(self.container_listing(req));
            }
            return self.next.call(req);
        };
        let mm = query_param(req.uri().query(), "multipart-manifest");
        let method = req.method().clone();
        if method == Method::PUT && mm.as_deref() == Some("put") {
            return Box::pin(self.manifest_put(req, version, account));
        }
        if method == Method::DELETE && mm.as_deref() == Some("delete") {
            return Box::pin(self.manifest_delete(req, version, account));
        }
        if method == Method::GET || method == Method::HEAD {
            return Box::pin(self.get_or_head(req, version, account, mm.as_deref() == Some("get")));
        }
        if req.headers().contains_key(X_STATIC_LARGE_OBJECT) {
            return Box::pin(async {
                error_response(
                    StatusCode::BAD_REQUEST,
                    Some(
                        "X-Static-Large-Object is a reserved header. To create a static large object add query param multipart-manifest=put.",
                    ),
                )
            });
        }
        self.next.call(req)
    }
}

fn is_container_path(req: &Req) -> bool {
    apus_proto::percent_decode_internal(req.uri().path())
        .ok()
        .and_then(|p| apus_proto::split_path(&p, 3, 3, false).ok())
        .is_some()
}

fn text_response(status: StatusCode, content_type: &str, body: String) -> Resp {
    let len = body.len();
    let mut resp = Response::new(apus_http::full(body));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// Python's `quote` of a segment name for messages (`/` kept).
fn quote_name(name: &str) -> String {
    apus_proto::quote(name)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|v| v.trim().parse().ok())
}

/// Swift's `last_modified.strftime('%Y-%m-%dT%H:%M:%S.%f')` of an HTTP date.
fn listing_time(http_date: Option<&str>) -> String {
    let secs = http_date
        .and_then(apus_core::conditional::parse_http_date)
        .unwrap_or_else(|| apus_core::clock::now_secs() as i64);
    apus_core::timestamp::Timestamp::from_secs_f64(secs as f64)
        .map(|t| t.isoformat())
        .unwrap_or_default()
}

impl Slo {
    fn subrequests(
        &self,
        req: &Req,
        version: String,
        account: String,
        agent: &str,
    ) -> Arc<Subrequests> {
        Arc::new(Subrequests {
            next: self.next.clone(),
            env: env(req).subrequest(SWIFT_SOURCE),
            headers: subrequest_headers(req.headers(), agent, &["x-auth-token", "x-open-expired"]),
            version,
            account,
        })
    }

    async fn manifest_put(&self, req: Req, version: String, account: String) -> Resp {
        let max_size = self.config.max_manifest_size;
        if req.headers().contains_key("x-copy-from") {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                Some("Multipart Manifest PUTs cannot be COPY requests"),
            );
        }
        let too_large = || {
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(&format!("Manifest File > {max_size} bytes")),
            )
        };
        match header_str(req.headers(), "content-length") {
            Some(cl) => match cl.trim().parse::<u64>() {
                Ok(n) if n > max_size as u64 => return too_large(),
                Ok(_) => {}
                Err(_) => {
                    return error_response(StatusCode::BAD_REQUEST, Some("Invalid Content-Length"))
                }
            },
            None => {
                let chunked = header_str(req.headers(), "transfer-encoding")
                    .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
                if !chunked {
                    return error_response(StatusCode::LENGTH_REQUIRED, None);
                }
            }
        }
        let out = out_format(req.headers()).unwrap_or("text/plain");
        let decoded_path = match apus_proto::percent_decode_internal(req.uri().path()) {
            Ok(p) => p,
            Err(_) => {
                return error_response(
                    StatusCode::PRECONDITION_FAILED,
                    Some("Invalid UTF8 or contains NULL"),
                )
            }
        };
        let sub = self.subrequests(&req, version.clone(), account.clone(), "SLO MultipartPUT");
        let (parts, body) = req.into_parts();
        let body = match apus_http::body::collect_limited(body, max_size + 1).await {
            Ok(b) if b.len() > max_size => return too_large(),
            Ok(b) => b,
            Err(e) => {
                tracing::info!(error = %e, "SLO: reading a manifest failed");
                return error_response(StatusCode::REQUEST_TIMEOUT, None);
            }
        };
        let input = match manifest::parse_input(&body, &decoded_path) {
            Ok(i) => i,
            Err(e) => {
                let (text, plain) = e.body();
                return if plain {
                    text_response(StatusCode::BAD_REQUEST, "text/plain", text)
                } else {
                    error_response(StatusCode::BAD_REQUEST, Some(&text))
                };
            }
        };
        let objects = input
            .iter()
            .filter(|s| matches!(s, InputSegment::Object { .. }))
            .count();
        if objects > self.config.max_manifest_segments {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(&format!(
                    "Number of object-backed segments must be <= {}",
                    self.config.max_manifest_segments
                )),
            );
        }

        let heartbeat = query_param(parts.uri.query(), "heartbeat")
            .is_some_and(|v| apus_proto::headers::is_true(&v));
        if !heartbeat {
            return match self.store(sub, input, parts, decoded_path).await {
                PutOutcome::Problems(problems) => {
                    let body = result_body(out, &[], &problems, "upload");
                    text_response(StatusCode::BAD_REQUEST, out, body)
                }
                PutOutcome::EtagMismatch => error_response(StatusCode::UNPROCESSABLE_ENTITY, None),
                PutOutcome::Stored(resp) => resp,
            };
        }
        // Heartbeating: 202 at once, a space every `yield_frequency` while
        // the segments are checked, then the outcome as a bulk-style body.
        let worker = Slo {
            next: self.next.clone(),
            config: self.config.clone(),
            hash: self.hash.clone(),
        };
        let every = Duration::from_secs(self.config.yield_frequency.max(1));
        let work: BoxFuture<'static, PutOutcome> =
            Box::pin(async move { worker.store(sub, input, parts, decoded_path).await });
        let body = stream::unfold(Some((work, true)), move |state| async move {
            let (mut work, first) = state?;
            if first {
                return Some((Bytes::from_static(b" "), Some((work, false))));
            }
            tokio::select! {
                outcome = &mut work => {
                    let text = heartbeat_result(outcome, out).await;
                    Some((Bytes::from(format!("\r\n\r\n{text}")), None))
                }
                () = tokio::time::sleep(every) => Some((Bytes::from_static(b" "), Some((work, false)))),
            }
        });
        let body = SyncStream::new(body.map(|b| Ok(http_body::Frame::data(b))));
        let mut resp = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(body)));
        *resp.status_mut() = StatusCode::ACCEPTED;
        set_header(resp.headers_mut(), "content-type", out);
        resp
    }

    /// Checks the manifest's segments and stores it (the part of a
    /// manifest PUT that a heartbeat covers).
    async fn store(
        &self,
        sub: Arc<Subrequests>,
        input: Vec<InputSegment>,
        mut parts: http::request::Parts,
        decoded_path: String,
    ) -> PutOutcome {
        // HEAD each named object once, a few at a time, in order, through
        // this filter too: a nested manifest's HEAD answers its total.
        let mut unique: Vec<String> = Vec::new();
        for seg in &input {
            if let InputSegment::Object { path, .. } = seg {
                if !unique.contains(path) {
                    unique.push(path.clone());
                }
            }
        }
        let heads: Vec<(String, Resp)> = stream::iter(unique.into_iter().map(|path| {
            let sub = sub.clone();
            async move {
                let full = format!(
                    "/{}/{}/{}",
                    sub.version,
                    sub.account,
                    path.trim_start_matches('/')
                );
                let resp = match build_request(
                    Method::HEAD,
                    &full,
                    None,
                    sub.headers.clone(),
                    sub.env.clone(),
                    apus_http::empty(),
                ) {
                    Ok(r) => self.call(r).await,
                    Err(_) => error_response(StatusCode::BAD_REQUEST, None),
                };
                (path, resp)
            }
        }))
        .buffered(self.config.concurrency.max(1))
        .collect()
        .await;

        let mut problems: Vec<(String, String)> = Vec::new();
        let mut stored = Vec::with_capacity(input.len());
        let mut total: u64 = 0;
        let last_index = input.len().saturating_sub(1);
        for (index, seg) in input.into_iter().enumerate() {
            match seg {
                InputSegment::Data(d) => {
                    total += d.len() as u64;
                    stored.push(StoredSegment::Data(d));
                }
                InputSegment::Object {
                    path,
                    etag,
                    size_bytes,
                    range,
                } => {
                    let Some((_, head)) = heads.iter().find(|(p, _)| *p == path) else {
                        continue;
                    };
                    let name = quote_name(&path);
                    if !head.status().is_success() {
                        problems.push((name, status_text(head.status().as_u16())));
                        continue;
                    }
                    let length = header_u64(head.headers(), "content-length").unwrap_or(0);
                    let head_etag = header_str(head.headers(), "etag")
                        .map(|e| normalize_etag(e).to_string())
                        .unwrap_or_default();
                    let mut seg_range = None;
                    let mut seg_len = length;
                    if let Some(range) = range {
                        match range
                            .ranges_for_length(length)
                            .unwrap_or_default()
                            .as_slice()
                        {
                            [] => problems.push((name.clone(), "Unsatisfiable Range".into())),
                            [(0, end)] if *end == length => {}
                            [(start, end), ..] => {
                                seg_range = Some((*start, end - 1));
                                seg_len = end - start;
                            }
                        }
                    }
                    if seg_len < 1 && index != last_index {
                        problems.push((
                            name.clone(),
                            "Too small; each segment must be at least 1 byte.".into(),
                        ));
                    }
                    if size_bytes.is_some_and(|s| u64::try_from(s).ok() != Some(length)) {
                        problems.push((name.clone(), "Size Mismatch".into()));
                    }
                    if etag.as_deref().is_some_and(|e| e != head_etag) {
                        problems.push((name, "Etag Mismatch".into()));
                    }
                    total += seg_len;
                    stored.push(StoredSegment::Object {
                        name: format!("/{}", path.trim_start_matches('/')),
                        bytes: length,
                        hash: head_etag,
                        content_type: header_str(head.headers(), "content-type")
                            .unwrap_or("")
                            .to_string(),
                        last_modified: listing_time(header_str(head.headers(), "last-modified")),
                        range: seg_range,
                        sub_slo: header_str(head.headers(), X_STATIC_LARGE_OBJECT)
                            .is_some_and(apus_proto::headers::is_true),
                    });
                }
            }
        }
        if let Some(hook) = parts.extensions.get::<ManifestHook>() {
            problems.extend((hook.0)(&stored));
        }
        if !problems.is_empty() {
            return PutOutcome::Problems(problems);
        }
        let slo_etag = manifest::slo_etag(&stored);
        if let Some(client_etag) = header_str(&parts.headers, "etag") {
            if normalize_etag(client_etag) != slo_etag {
                return PutOutcome::EtagMismatch;
            }
        }
        let json = manifest::render_stored(&stored);
        let manifest_etag = format!("{:x}", Md5::digest(json.as_bytes()));
        let headers = &mut parts.headers;
        set_header(headers, SYSMETA_SLO_ETAG, &slo_etag);
        set_header(headers, SYSMETA_SLO_SIZE, &total.to_string());
        set_header(headers, X_STATIC_LARGE_OBJECT, "True");
        set_header(headers, "etag", &manifest_etag);
        let override_etag = match header_str(headers, OVERRIDE_ETAG) {
            Some(v) if !v.is_empty() => {
                let (val, params) = v.split_once(';').map_or((v, None), |(a, b)| (a, Some(b)));
                // A filter that set only parameters (s3api's `s3_etag`)
                // leaves the etag itself to SLO.
                let val = if val.trim().is_empty() {
                    manifest_etag.as_str()
                } else {
                    val
                };
                match params {
                    Some(p) => format!("{val};{p}; slo_etag={slo_etag}"),
                    None => format!("{val}; slo_etag={slo_etag}"),
                }
            }
            _ => format!("{manifest_etag}; slo_etag={slo_etag}"),
        };
        set_header(headers, OVERRIDE_ETAG, &override_etag);
        let content_type = match header_str(headers, "content-type").filter(|c| !c.is_empty()) {
            Some(c) => c.to_string(),
            None => crate::object::guess_content_type(&decoded_path).to_string(),
        };
        set_header(
            headers,
            "content-type",
            &format!("{content_type};swift_bytes={total}"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(json.len()));
        headers.remove("transfer-encoding");
        let mut put_env = parts
            .extensions
            .get::<crate::service::Env>()
            .cloned()
            .unwrap_or_default();
        put_env.content_type_overridden = true;
        parts.extensions.insert(put_env);
        let mut resp = self
            .next
            .call(Req::from_parts(parts, apus_http::full(json)))
            .await;
        if resp.status().is_success() {
            set_header(resp.headers_mut(), "etag", &format!("\"{slo_etag}\""));
        }
        PutOutcome::Stored(resp)
    }
}

/// How a manifest PUT ended.
enum PutOutcome {
    /// Segments that are missing or not as the manifest says (400).
    Problems(Vec<(String, String)>),
    /// The client's ETag is not the large object's (422).
    EtagMismatch,
    /// The manifest PUT's own answer.
    Stored(Resp),
}

/// The last part of a heartbeating PUT's body: the outcome as Swift words
/// it, with the status's title and explanation when there is no body.
async fn heartbeat_result(outcome: PutOutcome, format: &str) -> String {
    let reason = |code: u16| {
        apus_proto::status::reason(code)
            .map(|(t, e)| format!("{t}\n{e}"))
            .unwrap_or_default()
    };
    let text = serde_json::Value::String;
    match outcome {
        PutOutcome::Problems(problems) => result_body(
            format,
            &[
                ("Response Status", text(status_text(400))),
                ("Response Body", text(reason(400))),
            ],
            &problems,
            "upload",
        ),
        PutOutcome::EtagMismatch => result_body(
            format,
            &[
                ("Response Status", text(status_text(422))),
                ("Response Body", text(reason(422))),
            ],
            &[],
            "upload",
        ),
        PutOutcome::Stored(resp) => {
            let code = resp.status().as_u16();
            let mut fields = vec![("Response Status", text(status_text(code)))];
            if resp.status().is_success() {
                let h = resp.headers();
                fields.push((
                    "Etag",
                    text(header_str(h, "etag").unwrap_or("").to_string()),
                ));
                fields.push((
                    "Last Modified",
                    text(header_str(h, "last-modified").unwrap_or("").to_string()),
                ));
            }
            let body = apus_http::body::collect_limited(resp.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            fields.push((
                "Response Body",
                text(String::from_utf8_lossy(&body).into_owned()),
            ));
            result_body(format, &fields, &[], "upload")
        }
    }
}

/// One manifest's entries being walked, with the bytes still wanted of
/// them (`first..=last`, relative to the first entry left).
struct Frame {
    entries: VecDeque<StoredSegment>,
    first: i128,
    last: i128,
    depth: usize,
}

/// Plans the reads of a static large object: its entries in order, nested
/// manifests fetched when reached, only the bytes of one range wanted.
struct SloWalker {
    sub: Arc<Subrequests>,
    frames: Vec<Frame>,
    read_limit: usize,
    rate_limit_under_size: u64,
    limit_after: u64,
    yielded: u64,
    limiter: RateLimiter,
}

impl SloWalker {
    fn new(
        sub: Arc<Subrequests>,
        config: &SloConfig,
        entries: Vec<StoredSegment>,
        first: u64,
        last: u64,
    ) -> Self {
        SloWalker {
            sub,
            frames: vec![Frame {
                entries: entries.into(),
                first: i128::from(first),
                last: i128::from(last),
                depth: 1,
            }],
            read_limit: read_limit(config),
            rate_limit_under_size: config.rate_limit_under_size,
            limit_after: config.rate_limit_after_segment,
            yielded: 0,
            limiter: RateLimiter {
                per_sec: config.rate_limit_segments_per_sec,
                running: None,
            },
        }
    }

    async fn next(&mut self) -> Result<Option<Planned>, ReadError> {
        loop {
            let Some(frame) = self.frames.last_mut() else {
                return Ok(None);
            };
            if frame.last < 0 {
                self.frames.pop();
                continue;
            }
            let Some(entry) = frame.entries.pop_front() else {
                self.frames.pop();
                continue;
            };
            let len = i128::from(entry.length());
            if frame.first >= len {
                frame.first -= len;
                frame.last -= len;
                continue;
            }
            // The wanted bytes of this entry, inclusive.
            let (want_first, want_last) = (frame.first.max(0), frame.last.min(len - 1));
            frame.first = (frame.first - len).max(0);
            frame.last -= len;
            let depth = frame.depth;
            match entry {
                StoredSegment::Data(d) => {
                    let data = Bytes::from(d).slice(want_first as usize..=want_last as usize);
                    return Ok(Some(Planned::Data(data)));
                }
                StoredSegment::Object {
                    name,
                    bytes,
                    hash,
                    range,
                    sub_slo,
                    ..
                } => {
                    let offset = i128::from(range.map_or(0, |r| r.0));
                    let (first, last) = (offset + want_first, offset + want_last);
                    let path = format!(
                        "/{}/{}/{}",
                        self.sub.version,
                        self.sub.account,
                        name.trim_start_matches('/')
                    );
                    if sub_slo {
                        if depth >= MAX_NESTING {
                            return Err(ReadError::Listing(format!(
                                "While processing manifest {path}, max recursion depth was exceeded"
                            )));
                        }
                        let nested = self.fetch_manifest(&path).await?;
                        self.frames.push(Frame {
                            entries: nested.into(),
                            first,
                            last,
                            depth: depth + 1,
                        });
                        continue;
                    }
                    let whole_last = i128::from(bytes) - 1;
                    let small = (last - first + 1) < i128::from(self.rate_limit_under_size);
                    if small {
                        if self.yielded >= self.limit_after {
                            self.limiter.wait().await;
                        } else {
                            self.yielded += 1;
                        }
                    }
                    return Ok(Some(Planned::Object {
                        path,
                        first: (first > 0).then_some(first as u64),
                        last: (last < whole_last).then_some(last as u64),
                        etag: Some(hash).filter(|h| !h.is_empty()),
                        size: Some(bytes),
                    }));
                }
            }
        }
    }

    /// A nested manifest's entries.
    async fn fetch_manifest(&self, path: &str) -> Result<Vec<StoredSegment>, ReadError> {
        fetch_stored(&self.sub, path, None, self.read_limit).await
    }
}

/// The most of a stored manifest read into memory: twice what a PUT may
/// store, so that a manifest written under a larger setting still reads.
fn read_limit(config: &SloConfig) -> usize {
    config
        .max_manifest_size
        .max(manifest::DEFAULT_MAX_MANIFEST_SIZE)
        .saturating_mul(2)
}

/// The entries of the manifest at `path`, read as a manifest.
async fn fetch_stored(
    sub: &Subrequests,
    path: &str,
    version_id: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredSegment>, ReadError> {
    let mut query = "multipart-manifest=get".to_string();
    if let Some(v) = version_id {
        query.push_str(&format!("&version-id={}", crate::dlo::util::quote_query(v)));
    }
    let req = build_request(
        Method::GET,
        path,
        Some(&query),
        sub.headers.clone(),
        sub.env.clone(),
        apus_http::empty(),
    )
    .map_err(|_| ReadError::Listing(format!("bad manifest path {path}")))?;
    let resp = sub.next.call(req).await;
    if !resp.status().is_success() {
        return Err(ReadError::Listing(format!(
            "while fetching {path}, GET of submanifest failed with status {}",
            resp.status().as_u16()
        )));
    }
    let body = apus_http::body::collect_limited(resp.into_body(), limit)
        .await
        .map_err(|e| ReadError::Listing(format!("while fetching {path}: {e}")))?;
    manifest::parse_stored(&body).ok_or_else(|| {
        ReadError::Listing(format!(
            "while fetching {path}, JSON-decoding of submanifest failed"
        ))
    })
}

impl SegmentSource for SloWalker {
    fn next_segment(&mut self) -> BoxFuture<'_, Result<Option<Planned>, ReadError>> {
        Box::pin(self.next())
    }
}

impl Slo {
    async fn get_or_head(
        &self,
        mut req: Req,
        version: String,
        account: String,
        manifest_get: bool,
    ) -> Resp {
        let method = req.method().clone();
        if !manifest_get {
            add_to_header_list(req.headers_mut(), ETAG_IS_AT, "X-Object-Sysmeta-Slo-Etag");
            add_to_header_list(req.headers_mut(), IGNORE_RANGE, "X-Static-Large-Object");
        }
        let orig_headers = req.headers().clone();
        let name = apus_proto::percent_decode_internal(req.uri().path())
            .unwrap_or_else(|_| req.uri().path().to_string());
        let raw =
            manifest_get && query_param(req.uri().query(), "format").as_deref() == Some("raw");
        let part_param = query_param(req.uri().query(), "part-number");
        let version_id = query_param(req.uri().query(), "version-id");
        let sub = self.subrequests(&req, version, account, "SLO MultipartGET");
        let resp = self.next.call(req).await;
        let is_slo = header_str(resp.headers(), X_STATIC_LARGE_OBJECT)
            .is_some_and(apus_proto::headers::is_true);
        if !is_slo {
            return resp;
        }
        if manifest_get {
            return self.manifest_response(resp, raw, &method).await;
        }
        // Swift's `get_valid_part_num`, only for large objects.
        let part_number = match part_param {
            None => None,
            Some(p) => match p.trim().parse::<u64>() {
                Ok(n) if n > 0 && !orig_headers.contains_key(http::header::RANGE) => Some(n),
                Ok(n) if n > 0 => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        Some("Range requests are not supported with part number queries"),
                    )
                }
                _ => {
                    let mut resp = error_response(
                        StatusCode::BAD_REQUEST,
                        Some("Part number must be an integer greater than 0"),
                    );
                    if method == Method::HEAD {
                        *resp.body_mut() = apus_http::empty();
                    }
                    return resp;
                }
            },
        };
        let (parts, body) = resp.into_parts();
        let mut headers = parts.headers;
        let manifest_etag = header_str(&headers, "etag").map(|e| normalize_etag(e).to_string());
        let known_etag = header_str(&headers, SYSMETA_SLO_ETAG).map(str::to_string);
        let known_size = header_u64(&headers, SYSMETA_SLO_SIZE);
        if let Some(me) = &manifest_etag {
            set_header(&mut headers, "x-manifest-etag", me);
        }
        headers.remove(CONTENT_RANGE);
        let status = parts.status.as_u16();
        // Conditions the object server already judged against the large
        // object's etag.
        if matches!(status, 304 | 412) {
            if let Some(e) = &known_etag {
                set_header(&mut headers, "etag", &format!("\"{e}\""));
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            let mut resp = Response::new(apus_http::empty());
            *resp.status_mut() = parts.status;
            *resp.headers_mut() = headers;
            return resp;
        }
        if !parts.status.is_success() {
            return Response::from_parts(parts_with(parts.status, headers), body);
        }
        if method == Method::HEAD && part_number.is_none() {
            if let (Some(e), Some(size)) = (&known_etag, known_size) {
                set_header(&mut headers, "etag", &format!("\"{e}\""));
                headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
                let mut resp = Response::new(apus_http::empty());
                *resp.headers_mut() = headers;
                return resp;
            }
        }
        let entries = if method == Method::HEAD {
            // A HEAD has no body: the manifest is read with a GET.
            fetch_stored(&sub, &name, version_id.as_deref(), read_limit(&self.config)).await
        } else {
            match apus_http::body::collect_limited(body, read_limit(&self.config)).await {
                Ok(b) => manifest::parse_stored(&b)
                    .ok_or_else(|| ReadError::Listing("a manifest is not valid json".into())),
                Err(e) => Err(ReadError::Listing(e.to_string())),
            }
        };
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, path = %name, "SLO: reading a manifest failed");
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some("Unable to load SLO manifest"),
                );
            }
        };
        let size = known_size.unwrap_or_else(|| entries.iter().map(StoredSegment::length).sum());
        let slo_etag = known_etag.unwrap_or_else(|| manifest::slo_etag(&entries));
        set_header(&mut headers, "etag", &format!("\"{slo_etag}\""));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        if known_size.is_none() {
            // The object server judged conditions against the manifest's
            // own etag; judge them again against the large object's.
            let conditions =
                apus_core::conditional::Conditions::from_headers(|n| header_str(&orig_headers, n));
            let last_modified = header_str(&headers, "last-modified")
                .and_then(apus_core::conditional::parse_http_date);
            if let Some(code) = conditions.evaluate(true, Some(&slo_etag), last_modified) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
                return Response::from_parts(
                    parts_with(
                        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
                        headers,
                    ),
                    apus_http::empty(),
                );
            }
        }
        if let Some(n) = part_number {
            set_header(&mut headers, "x-parts-count", &entries.len().to_string());
            let index = usize::try_from(n - 1).unwrap_or(usize::MAX);
            let Some(part) = entries.get(index) else {
                set_header(&mut headers, "content-range", &format!("bytes */{size}"));
                let body = if method == Method::HEAD {
                    String::new()
                } else {
                    "The requested part number is not satisfiable".to_string()
                };
                headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                return Response::from_parts(
                    parts_with(StatusCode::RANGE_NOT_SATISFIABLE, headers),
                    apus_http::full(body),
                );
            };
            let start: u64 = entries[..index].iter().map(StoredSegment::length).sum();
            let end = start + part.length();
            set_header(
                &mut headers,
                "content-range",
                &content_range_value(start, end, size),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(end - start));
            if method == Method::HEAD || end == start {
                return Response::from_parts(
                    parts_with(StatusCode::PARTIAL_CONTENT, headers),
                    apus_http::empty(),
                );
            }
            return self
                .stream(
                    sub,
                    entries,
                    start,
                    end,
                    headers,
                    StatusCode::PARTIAL_CONTENT,
                    name,
                )
                .await;
        }
        if method == Method::HEAD {
            let mut resp = Response::new(apus_http::empty());
            *resp.headers_mut() = headers;
            return resp;
        }
        let ranges = header_str(&orig_headers, "range")
            .and_then(|r| Range::parse(r).ok())
            .and_then(|r| r.ranges_for_length(size));
        match ranges {
            Some(r) if r.is_empty() => {
                let mut resp = error_response(StatusCode::RANGE_NOT_SATISFIABLE, None);
                set_header(
                    resp.headers_mut(),
                    "content-range",
                    &format!("bytes */{size}"),
                );
                set_header(resp.headers_mut(), "accept-ranges", "bytes");
                resp
            }
            Some(r) if r.len() == 1 => {
                let (start, end) = r[0];
                set_header(
                    &mut headers,
                    "content-range",
                    &content_range_value(start, end, size),
                );
                headers.insert(CONTENT_LENGTH, HeaderValue::from(end - start));
                self.stream(
                    sub,
                    entries,
                    start,
                    end,
                    headers,
                    StatusCode::PARTIAL_CONTENT,
                    name,
                )
                .await
            }
            Some(r) => {
                self.stream_multipart(sub, entries, r, size, headers, name)
                    .await
            }
            None if size == 0 => {
                let mut resp = Response::new(apus_http::empty());
                *resp.headers_mut() = headers;
                resp
            }
            None => {
                self.stream(sub, entries, 0, size, headers, StatusCode::OK, name)
                    .await
            }
        }
    }

    /// Streams bytes `[start, end)` of the large object.
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        sub: Arc<Subrequests>,
        entries: Vec<StoredSegment>,
        start: u64,
        end: u64,
        headers: HeaderMap,
        status: StatusCode,
        name: String,
    ) -> Resp {
        let walker = SloWalker::new(
            sub.clone(),
            &self.config,
            entries,
            start,
            end.saturating_sub(1),
        );
        let reader = SegmentReader::new(
            sub,
            Box::new(walker),
            self.config.max_get_time,
            Some(end - start),
            name,
        );
        segmented_response(reader, status, headers, "SLO").await
    }

    /// Streams several ranges as `multipart/byteranges`.
    async fn stream_multipart(
        &self,
        sub: Arc<Subrequests>,
        entries: Vec<StoredSegment>,
        ranges: Vec<(u64, u64)>,
        size: u64,
        mut headers: HeaderMap,
        name: String,
    ) -> Resp {
        let content_type = header_str(&headers, "content-type")
            .unwrap_or("application/octet-stream")
            .to_string();
        let boundary = format!(
            "{:x}",
            Md5::digest(format!("{name}{:?}", std::time::SystemTime::now()).as_bytes())
        );
        let length = multipart_body_length(&boundary, &content_type, &ranges, size);
        set_header(
            &mut headers,
            "content-type",
            &format!("multipart/byteranges;boundary={boundary}"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        let config = self.config.clone();
        let terminator = format!("\r\n{}", multipart_terminator(&boundary));
        let parts = stream::iter(ranges.into_iter().enumerate()).then(move |(i, (start, end))| {
            let sub = sub.clone();
            let entries = entries.clone();
            let config = config.clone();
            let boundary = boundary.clone();
            let content_type = content_type.clone();
            let name = name.clone();
            async move {
                let mut head = String::new();
                if i > 0 {
                    head.push_str("\r\n");
                }
                head.push_str(&multipart_part_header(
                    &boundary,
                    &content_type,
                    start,
                    end,
                    size,
                ));
                let walker = SloWalker::new(sub.clone(), &config, entries, start, end - 1);
                let reader = SegmentReader::new(
                    sub,
                    Box::new(walker),
                    config.max_get_time,
                    Some(end - start),
                    name,
                );
                let head =
                    stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(head)) });
                head.chain(reader_stream(reader))
            }
        });
        let body = parts
            .flatten()
            .chain(stream::once(async move { Ok(Bytes::from(terminator)) }));
        let body = http_body_util::StreamBody::new(SyncStream::new(
            body.map(|r| r.map(http_body::Frame::data)),
        ));
        let mut resp = Response::new(BodyExt::boxed(body));
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        *resp.headers_mut() = headers;
        resp
    }

    /// `?multipart-manifest=get`: the manifest as stored (json), or in the
    /// form a client PUTs (`format=raw`).
    async fn manifest_response(&self, resp: Resp, raw: bool, method: &Method) -> Resp {
        let (mut parts, body) = resp.into_parts();
        if !raw {
            set_header(
                &mut parts.headers,
                "content-type",
                "application/json; charset=utf-8",
            );
            return Response::from_parts(parts, body);
        }
        let limit = read_limit(&self.config);
        let Some(entries) = apus_http::body::collect_limited(body, limit)
            .await
            .ok()
            .and_then(|b| manifest::parse_stored(&b))
        else {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("Unable to load SLO manifest"),
            );
        };
        let json =
            serde_json::Value::Array(entries.iter().map(StoredSegment::to_input_json).collect())
                .to_string();
        set_header(
            &mut parts.headers,
            "etag",
            &format!("{:x}", Md5::digest(json.as_bytes())),
        );
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(json.len()));
        let body = if *method == Method::HEAD {
            apus_http::empty()
        } else {
            apus_http::full(json)
        };
        Response::from_parts(parts, body)
    }

    async fn container_listing(&self, req: Req) -> Resp {
        let resp = self.next.call(req).await;
        crate::service::edit_json_listing(resp, b"slo_etag=", show_slo_etag).await
    }

    async fn manifest_delete(&self, req: Req, version: String, account: String) -> Resp {
        let wants_async = self.config.allow_async_delete
            && query_param(req.uri().query(), "async")
                .is_some_and(|v| apus_proto::headers::is_true(&v));
        if wants_async {
            return self
                .async_delete(req, version, account)
                .await
                .unwrap_or_else(|e| e);
        }
        // Swift answers an unacceptable Accept inside a plain 200 body.
        let format = out_format(req.headers());
        let out = format.unwrap_or("text/plain");
        if format.is_none() {
            let problem = (
                406,
                apus_proto::status::default_body(406, None).unwrap_or_default(),
            );
            let body = result_body(
                out,
                &Deleted::default().fields(Some(problem)),
                &[],
                "delete",
            );
            return text_response(StatusCode::OK, out, body);
        }
        let decoded = match apus_proto::percent_decode_internal(req.uri().path()) {
            Ok(p) => p,
            Err(_) => {
                return error_response(
                    StatusCode::PRECONDITION_FAILED,
                    Some("Invalid UTF8 or contains NULL"),
                )
            }
        };
        let sub = self.subrequests(&req, version, account, "MultipartDELETE");
        let manifest_name = decoded
            .splitn(4, '/')
            .nth(3)
            .map(|rest| format!("/{rest}"))
            .unwrap_or_default();

        // Segments first, then the manifests that list them; a manifest
        // that cannot be read is reported and neither it nor what it
        // lists is deleted.
        // With object versioning, a version of the manifest is deleted
        // (its segments are not versioned).
        let version_id = query_param(req.uri().query(), "version-id");
        let mut items: Vec<ToDelete> = Vec::new();
        let mut problem = None;
        let mut todo: VecDeque<(String, bool, Option<String>)> =
            VecDeque::from([(manifest_name, true, version_id)]);
        while let Some((name, is_manifest, version_id)) = todo.pop_front() {
            if todo.len() > self.config.max_manifest_segments.saturating_mul(10) {
                problem = Some((400, "Too many buffered slo segments to delete.".to_string()));
                break;
            }
            if !is_manifest {
                items.push(ToDelete {
                    name,
                    error: None,
                    version_id,
                });
                continue;
            }
            match self
                .manifest_entries(&sub, &name, version_id.as_deref())
                .await
            {
                Ok(entries) => {
                    for e in entries {
                        if let StoredSegment::Object { name, sub_slo, .. } = e {
                            todo.push_back((name, sub_slo, None));
                        }
                    }
                    todo.push_back((name, false, version_id));
                }
                Err(error) => items.push(ToDelete {
                    name,
                    error: Some(error),
                    version_id: None,
                }),
            }
        }
        let outcome = match problem {
            Some(_) => Deleted::default(),
            None => delete_all(&sub, items, self.config.concurrency, 1000).await,
        };
        let body = result_body(out, &outcome.fields(problem), &outcome.errors, "delete");
        text_response(StatusCode::OK, out, body)
    }

    /// `?multipart-manifest=delete&async=yes`: the segments (all in one
    /// container, none a large object) are queued for the object expirer
    /// to delete, and the manifest is deleted now. The segments stay
    /// listed and counted until the expirer gets to them.
    async fn async_delete(
        &self,
        mut req: Req,
        version: String,
        account: String,
    ) -> Result<Resp, Resp> {
        let decoded = apus_proto::percent_decode_internal(req.uri().path()).map_err(|_| {
            error_response(
                StatusCode::PRECONDITION_FAILED,
                Some("Invalid UTF8 or contains NULL"),
            )
        })?;
        let parts = apus_proto::split_path(&decoded, 4, 4, true)
            .map_err(|_| error_response(StatusCode::BAD_REQUEST, None))?;
        let container = parts[2].clone().unwrap_or_default();
        let object = parts[3].clone().unwrap_or_default();
        let sub = self.subrequests(&req, version.clone(), account.clone(), "SLO");
        let version_id = query_param(req.uri().query(), "version-id");
        let entries = self
            .manifest_entries(
                &sub,
                &format!("/{container}/{object}"),
                version_id.as_deref(),
            )
            .await
            .map_err(|(status, message)| {
                error_response(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    Some(&message),
                )
            })?;
        let mut segments: Vec<(String, String)> = Vec::new();
        for e in entries {
            let StoredSegment::Object { name, sub_slo, .. } = e else {
                continue;
            };
            if sub_slo {
                return Err(error_response(
                    StatusCode::BAD_REQUEST,
                    Some("No segments may be large objects."),
                ));
            }
            let split = apus_proto::split_path(&name, 2, 2, true)
                .ok()
                .and_then(|p| Some((p.first()?.clone()?, p.get(1)?.clone()?)));
            let Some(pair) = split else {
                return Err(error_response(
                    StatusCode::BAD_REQUEST,
                    Some("Invalid segment path"),
                ));
            };
            segments.push(pair);
        }
        if segments.is_empty() {
            // Nothing to queue: just the manifest goes.
            return Ok(self.next.call(req).await);
        }
        let mut containers: Vec<&str> = segments.iter().map(|(c, _)| c.as_str()).collect();
        containers.sort_unstable();
        containers.dedup();
        if containers.len() > 1 {
            let listed = containers
                .iter()
                .map(|c| format!("\"{}\"", apus_proto::quote(c)))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                Some(&format!(
                    "All segments must be in one container. Found segments in {listed}"
                )),
            ));
        }
        let segment_container = containers[0].to_string();
        // The caller must be allowed to delete in both containers.
        let client_env = env(&req);
        if let Some(auth) = client_env.authorize.clone() {
            for c in [&container, &segment_container] {
                let acl = self.container_write_acl(&sub, c).await;
                let check = crate::service::AuthRequest {
                    method: req.method(),
                    path: &decoded,
                    headers: req.headers(),
                    env: &client_env,
                    acl: acl.as_deref(),
                };
                auth.authorize(check).await?;
                if segment_container == container {
                    break;
                }
            }
        }
        let ts =
            match header_str(req.headers(), "x-timestamp").and_then(|t| Timestamp::parse(t).ok()) {
                Some(ts) => ts,
                None => {
                    let now = Timestamp::now();
                    set_header(req.headers_mut(), "x-timestamp", &now.internal());
                    now
                }
            };
        let jobs: Vec<serde_json::Value> = segments
            .iter()
            .map(|(c, o)| {
                serde_json::json!({
                    "name": format!("{}-{account}/{c}/{o}", ts.normal()),
                    "deleted": 0,
                    "created_at": ts.internal(),
                    "etag": MD5_OF_EMPTY,
                    "size": 0,
                    "storage_policy_index": 0,
                    "content_type": ASYNC_DELETE_TYPE,
                })
            })
            .collect();
        let task_container = apus_proto::update::expirer_container(
            &self.hash,
            ts.secs(),
            &account,
            &container,
            &object,
        );
        let mut headers = HeaderMap::new();
        set_header(&mut headers, "content-type", "application/json");
        set_header(&mut headers, "x-backend-storage-policy-index", "0");
        set_header(&mut headers, "x-backend-allow-private-methods", "True");
        let mut enqueue_env = sub.env.clone();
        enqueue_env.authorize = None;
        let path = format!(
            "/v1/{}/{task_container}",
            apus_proto::update::EXPIRER_ACCOUNT
        );
        let enqueue = build_request(
            Method::from_bytes(b"UPDATE")
                .map_err(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR, None))?,
            &path,
            None,
            headers,
            enqueue_env,
            apus_http::full(serde_json::Value::Array(jobs).to_string()),
        )
        .map_err(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR, None))?;
        let resp = self.next.call(enqueue).await;
        if !resp.status().is_success() {
            tracing::error!(
                status = resp.status().as_u16(),
                path = %decoded,
                "SLO: failed to enqueue the segments' async deletes"
            );
            return Err(error_response(StatusCode::SERVICE_UNAVAILABLE, None));
        }
        // Finally the manifest itself.
        Ok(self.next.call(req).await)
    }

    /// The write ACL of `container` in the request's account.
    async fn container_write_acl(&self, sub: &Subrequests, container: &str) -> Option<String> {
        let path = format!("/{}/{}/{container}", sub.version, sub.account);
        let mut env = sub.env.clone();
        env.authorize = None;
        let req = build_request(
            Method::HEAD,
            &path,
            None,
            HeaderMap::new(),
            env,
            apus_http::empty(),
        )
        .ok()?;
        let resp = self.next.call(req).await;
        header_text(resp.headers(), "x-container-write")
    }

    /// A manifest's entries for deleting it: `Err((status, message))` as
    /// Swift words them when it cannot be had or is not a manifest.
    async fn manifest_entries(
        &self,
        sub: &Subrequests,
        name: &str,
        version_id: Option<&str>,
    ) -> Result<Vec<StoredSegment>, (u16, String)> {
        let path = format!(
            "/{}/{}/{}",
            sub.version,
            sub.account,
            name.trim_start_matches('/')
        );
        let mut headers = sub.headers.clone();
        add_to_header_list(&mut headers, IGNORE_RANGE, "X-Static-Large-Object");
        headers.insert(http::header::RANGE, HeaderValue::from_static("bytes=-1"));
        let mut query = "multipart-manifest=get".to_string();
        if let Some(v) = version_id {
            query.push_str(&format!("&version-id={}", crate::dlo::util::quote_query(v)));
        }
        let req = build_request(
            Method::GET,
            &path,
            Some(&query),
            headers,
            sub.env.clone(),
            apus_http::empty(),
        )
        .map_err(|_| (412, "Invalid UTF8 or contains NULL".to_string()))?;
        let resp = sub.next.call(req).await;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            if !header_str(resp.headers(), X_STATIC_LARGE_OBJECT)
                .is_some_and(apus_proto::headers::is_true)
            {
                return Err((400, "Not an SLO manifest".into()));
            }
            let limit = read_limit(&self.config);
            return apus_http::body::collect_limited(resp.into_body(), limit)
                .await
                .ok()
                .and_then(|b| manifest::parse_stored(&b))
                .ok_or((500, "Unable to load SLO manifest".into()));
        }
        Err(match status {
            404 => (404, "SLO manifest not found".into()),
            401 => (401, "401 Unauthorized".into()),
            _ => (500, "Unable to load SLO manifest or segment.".into()),
        })
    }
}

fn parts_with(status: StatusCode, headers: HeaderMap) -> http::response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    parts
}

/// A reader's chunks as a stream; a read error ends it with an error.
fn reader_stream(
    reader: SegmentReader,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    stream::unfold((reader, false), |(mut reader, failed)| async move {
        if failed {
            return None;
        }
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), (reader, false))),
            Ok(None) => None,
            Err(err) => {
                tracing::error!(error = %err, "SLO: ending the response body early");
                Some((Err(std::io::Error::other(err.to_string())), (reader, true)))
            }
        }
    })
}

/// Moves a listing entry's `slo_etag` parameter out of its `hash`;
/// `false` when it has none.
fn show_slo_etag(item: &mut serde_json::Value) -> bool {
    let Some(hash) = item
        .get("hash")
        .and_then(|h| h.as_str())
        .map(str::to_string)
    else {
        return false;
    };
    let mut params = hash.split(';');
    let etag = params.next().unwrap_or("").trim().to_string();
    let mut rest = String::new();
    let mut slo_etag = None;
    for p in params {
        let p = p.trim();
        match p.strip_prefix("slo_etag=") {
            Some(v) => slo_etag = Some(v.to_string()),
            None if !p.is_empty() => {
                rest.push_str("; ");
                rest.push_str(p);
            }
            None => {}
        }
    }
    match (slo_etag, item.as_object_mut()) {
        (Some(v), Some(obj)) => {
            obj.insert(
                "slo_etag".into(),
                serde_json::Value::String(format!("\"{v}\"")),
            );
            obj.insert(
                "hash".into(),
                serde_json::Value::String(format!("{etag}{rest}")),
            );
            true
        }
        _ => false,
    }
}
