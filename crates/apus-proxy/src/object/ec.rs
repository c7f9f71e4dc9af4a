//! Erasure-coded objects (see [`apus_proto::ec`] for the object servers'
//! side).
//!
//! PUT: the client's body goes through an [`ArchiveEncoder`] segment by
//! segment and each of the k + m fragment archives streams, chunked, to
//! the primary of its fragment index (a handoff standing in for a failed
//! one keeps the index of its slot). The object's MD5, its length and
//! each archive's own MD5 are known only at the end, so they follow the
//! last chunk as HTTP trailers. Once `ndata + 1` servers have taken their
//! fragment (`201`, not yet durable), each of them gets a commit request;
//! `ndata + 1` commits make the client's `201`. A client `Etag` that does
//! not match the body ends every upload unfinished (the servers discard
//! the fragments) and answers `422`.
//!
//! GET: every primary is asked at once; k answers of the same durable
//! timestamp with distinct fragment indexes are decoded through an
//! [`ArchiveDecoder`], each read no further than the decoder has room, so
//! the proxy holds about one fragment per source. A client range is served
//! by decoding from the start and skipping to it. HEAD takes the newest
//! answer. The client sees the object's length and ETag from the EC
//! sysmeta, never the fragments' own.

use std::io;

use apus_core::conditional::{format_http_date, normalize_etag};
use apus_core::policy::EcParams;
use apus_core::range::{content_range_value, Range};
use apus_core::Timestamp;
use apus_ec::{ArchiveDecoder, ArchiveEncoder, EcScheme, EcType};
use apus_http::expect::{self, Started};
use apus_http::Body;
use apus_proto::constraints::MAX_FILE_SIZE;
use apus_proto::ec as pec;
use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};

use super::{bad_request, clean_content_type, Putter, HOP_HEADERS};
use crate::app::Ctx;
use crate::backend::{
    backend_path, best_response, buffer_response, node_host, quorum_size, NodePlan, NodeResponse,
};
use crate::config::Policy;
use crate::service::{error_response, header_str, set_header, Req, Resp};

/// The trailers every fragment PUT ends with.
const TRAILER_NAMES: &str = "Etag, X-Object-Sysmeta-Ec-Etag, X-Object-Sysmeta-Ec-Content-Length";

/// The code a policy names.
pub(crate) fn scheme_of(ec: &EcParams) -> Result<EcScheme, apus_ec::EcError> {
    let ec_type: EcType = ec.ec_type.parse()?;
    EcScheme::new(ec_type, ec.ndata as usize, ec.nparity as usize)
}

fn unavailable() -> Resp {
    error_response(StatusCode::SERVICE_UNAVAILABLE, None)
}

fn client_gone() -> Resp {
    error_response(
        StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        None,
    )
}

fn hex_md5(hash: Md5) -> String {
    let digest = hash.finalize();
    let mut out = String::with_capacity(32);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Ctx<'_> {
    /// An EC object PUT once the request has passed the checks every
    /// object PUT does; `headers` holds one set of backend headers per
    /// fragment index (container updates assigned).
    pub(super) async fn ec_put(
        &self,
        req: Req,
        ec: &EcParams,
        plan: &NodePlan,
        mut headers: Vec<HeaderMap>,
        timestamp: Timestamp,
        content_length: Option<u64>,
    ) -> Resp {
        let scheme = match scheme_of(ec) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "EC policy with an unusable code");
                return unavailable();
            }
        };
        let width = scheme.fragment_count();
        let Ok(segment_size) = usize::try_from(ec.segment_size) else {
            return unavailable();
        };
        let mut encoder = match ArchiveEncoder::new(scheme, segment_size) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "EC policy with an unusable segment size");
                return unavailable();
            }
        };
        if plan.replicas != width || headers.len() != width {
            tracing::error!(
                replicas = plan.replicas,
                width,
                "EC object ring does not have one replica per fragment"
            );
            return unavailable();
        }
        let quorum = ec.quorum() as usize;
        let client_etag = header_str(req.headers(), "etag")
            .map(|e| normalize_etag(e.trim()).to_ascii_lowercase())
            .filter(|e| !e.is_empty());
        for (i, h) in headers.iter_mut().enumerate() {
            // The client's ETag is the object's, not an archive's.
            h.remove("etag");
            h.remove("content-md5");
            set_header(h, pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX, &i.to_string());
            set_header(h, pec::X_OBJECT_SYSMETA_EC_SCHEME, &ec.scheme_description());
            set_header(
                h,
                pec::X_OBJECT_SYSMETA_EC_SEGMENT_SIZE,
                &ec.segment_size.to_string(),
            );
            set_header(h, "trailer", TRAILER_NAMES);
        }
        let (putters, early) = self.connect_putters(plan, &headers, None, quorum).await;
        let if_none_match = req.headers().contains_key("if-none-match");
        if if_none_match && early.iter().any(|r| r.status == 412) {
            return error_response(StatusCode::PRECONDITION_FAILED, None);
        }
        if early.iter().any(|r| r.status == 409) {
            return error_response(StatusCode::ACCEPTED, None);
        }
        if putters.len() < quorum {
            tracing::error!(
                connected = putters.len(),
                quorum,
                "EC object PUT: not enough object servers took the upload"
            );
            return unavailable();
        }

        // The body, segment by segment.
        let mut body = req.into_body();
        let mut putters = putters;
        let mut archives = vec![Vec::new(); width];
        let mut archive_md5 = vec![Md5::new(); width];
        let mut object_md5 = Md5::new();
        let mut received: u64 = 0;
        let client_timeout = self.app.config.client_timeout;
        loop {
            let frame = match tokio::time::timeout(client_timeout, body.frame()).await {
                Err(_) => return error_response(StatusCode::REQUEST_TIMEOUT, None),
                Ok(None) => break,
                Ok(Some(Err(_))) => return client_gone(),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            received += data.len() as u64;
            if received > MAX_FILE_SIZE {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some("Your request is too large."),
                );
            }
            if content_length.is_some_and(|len| received > len) {
                return bad_request("Request body longer than Content-Length");
            }
            object_md5.update(&data);
            if let Err(e) = encoder.push(&data, &mut archives) {
                tracing::error!(error = %e, "EC object PUT: encoding failed");
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
            }
            putters = self
                .send_fragments(putters, &mut archives, &mut archive_md5)
                .await;
            if putters.len() < quorum {
                tracing::error!("EC object PUT: lost the write quorum while sending");
                return unavailable();
            }
        }
        if content_length.is_some_and(|len| received < len) {
            return client_gone();
        }
        if let Err(e) = encoder.finish(&mut archives) {
            tracing::error!(error = %e, "EC object PUT: encoding failed");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
        }
        putters = self
            .send_fragments(putters, &mut archives, &mut archive_md5)
            .await;
        if putters.len() < quorum {
            return unavailable();
        }
        let etag = hex_md5(object_md5);
        if client_etag.as_ref().is_some_and(|e| *e != etag) {
            // Dropping the uploads unfinished makes every server discard
            // its fragment.
            drop(putters);
            return error_response(StatusCode::UNPROCESSABLE_ENTITY, None);
        }

        // Ending each archive with its trailers.
        let archive_etags: Vec<String> = archive_md5.into_iter().map(hex_md5).collect();
        let limiter = &self.app.backend.limiter;
        let finishing = putters.into_iter().map(|p| {
            let mut trailers = HeaderMap::new();
            let archive_etag = archive_etags.get(p.index).cloned().unwrap_or_default();
            set_header(&mut trailers, "etag", &archive_etag);
            set_header(&mut trailers, pec::X_OBJECT_SYSMETA_EC_ETAG, &etag);
            set_header(
                &mut trailers,
                pec::X_OBJECT_SYSMETA_EC_CONTENT_LENGTH,
                &received.to_string(),
            );
            let limiter = limiter.clone();
            tokio::spawn(async move {
                match p.conn.finish_with_trailers(&trailers).await {
                    Ok(f) => {
                        if f.status.is_server_error() {
                            limiter.error(&p.dev);
                        }
                        (p.index, p.dev, f.status.as_u16())
                    }
                    Err(e) => {
                        tracing::warn!(device = %p.dev.device, error = %e, "EC object PUT: no answer");
                        limiter.error(&p.dev);
                        (p.index, p.dev, 503)
                    }
                }
            })
        });
        let answers = futures_util::future::join_all(finishing).await;
        let stored: Vec<_> = answers
            .into_iter()
            .flatten()
            .filter(|(_, _, status)| (200..300).contains(status))
            .collect();
        if stored.len() < quorum {
            tracing::error!(
                stored = stored.len(),
                quorum,
                "EC object PUT: too few fragments stored; no commit"
            );
            return unavailable();
        }

        // The commit: each stored fragment made durable.
        let path = self.target.path();
        let cfg = &self.app.config;
        let commits = stored.into_iter().map(|(index, dev, _)| {
            let mut hdrs = headers.get(index).cloned().unwrap_or_default();
            hdrs.remove("trailer");
            set_header(&mut hdrs, pec::X_BACKEND_EC_COMMIT, "yes");
            let bpath = backend_path(&dev, plan.partition, &path, None);
            let limiter = limiter.clone();
            let (conn_timeout, node_timeout) = (cfg.conn_timeout, cfg.node_timeout);
            tokio::spawn(async move {
                let answer = expect::start(
                    &node_host(&dev),
                    &Method::PUT,
                    &bpath,
                    &hdrs,
                    Some(0),
                    conn_timeout,
                    node_timeout,
                )
                .await;
                match answer {
                    Ok(Started::Final(f)) => {
                        if f.status.is_server_error() {
                            limiter.error(&dev);
                        }
                        f.status.is_success()
                    }
                    Ok(Started::Continue(_)) => false,
                    Err(e) => {
                        tracing::warn!(device = %dev.device, error = %e, "EC object PUT: commit failed");
                        limiter.error(&dev);
                        false
                    }
                }
            })
        });
        let committed = futures_util::future::join_all(commits)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(true)))
            .count();
        if committed < quorum {
            tracing::error!(committed, quorum, "EC object PUT: too few commits");
            return unavailable();
        }
        let mut resp = error_response(StatusCode::CREATED, None);
        set_header(resp.headers_mut(), "etag", &etag);
        let lm = format_http_date(timestamp.ceil_secs() as i64);
        set_header(resp.headers_mut(), "last-modified", &lm);
        resp
    }

    /// Sends each putter the archive bytes of its fragment index that the
    /// encoder has produced, dropping those that fail.
    async fn send_fragments(
        &self,
        putters: Vec<Putter>,
        archives: &mut [Vec<u8>],
        hashes: &mut [Md5],
    ) -> Vec<Putter> {
        let pieces: Vec<Bytes> = archives
            .iter_mut()
            .map(|a| Bytes::from(std::mem::take(a)))
            .collect();
        for (hash, piece) in hashes.iter_mut().zip(&pieces) {
            hash.update(piece);
        }
        let sends = putters.into_iter().map(|mut p| {
            let data = pieces.get(p.index).cloned().unwrap_or_default();
            async move {
                match p.conn.send(&data).await {
                    Ok(()) => Some(p),
                    Err(e) => {
                        tracing::warn!(device = %p.dev.device, error = %e, "EC object PUT: send failed");
                        self.app.backend.limiter.error(&p.dev);
                        None
                    }
                }
            }
        });
        futures_util::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// GET or HEAD of an EC object.
    pub(super) async fn ec_get(&self, req: Req, policy: &Policy, ec: &EcParams) -> Resp {
        let scheme = match scheme_of(ec) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "EC policy with an unusable code");
                return unavailable();
            }
        };
        let k = scheme.k();
        let is_head = req.method() == Method::HEAD;
        let plan = self.object_plan(policy);
        let mut headers = self.object_headers(&req, None, policy);
        // Ranges are the object's, not the archives'; conditions compare
        // the object's ETag.
        headers.remove("range");
        headers.remove("if-range");
        set_header(
            &mut headers,
            "x-backend-etag-is-at",
            "X-Object-Sysmeta-Ec-Etag",
        );
        let path = self.target.path();
        let method = if is_head { Method::HEAD } else { Method::GET };
        let asks = plan.primaries.iter().map(|dev| {
            let bpath = backend_path(dev, plan.partition, &path, None);
            let (method, headers) = (method.clone(), headers.clone());
            async move {
                self.app
                    .backend
                    .send(dev, method, &bpath, headers, apus_http::empty())
                    .await
            }
        });
        let answers = futures_util::future::join_all(asks).await;

        // Successes grouped by durable timestamp, newest first.
        let mut found: Vec<(Timestamp, u32, Response<Body>)> = Vec::new();
        let mut others: Vec<NodeResponse> = Vec::new();
        let width = ec.unique_fragments();
        for answer in answers {
            let Some(resp) = answer else {
                others.push(crate::backend::unavailable());
                continue;
            };
            if !resp.status().is_success() {
                others.push(buffer_response(resp).await);
                continue;
            }
            let h = resp.headers();
            let ts = header_str(h, "x-backend-durable-timestamp")
                .or_else(|| header_str(h, "x-backend-timestamp"))
                .or_else(|| header_str(h, "x-timestamp"))
                .and_then(|t| Timestamp::parse(t.trim()).ok());
            let index = header_str(h, pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX)
                .and_then(|i| pec::parse_frag_index(i, width));
            match (ts, index) {
                (Some(ts), Some(index)) => found.push((ts, index, resp)),
                _ => others.push(crate::backend::unavailable()),
            }
        }
        if found.is_empty() {
            let mut resp = best_response(&others, quorum_size(others.len()), "Object GET");
            strip_ec_headers(resp.headers_mut());
            return resp;
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        let needed = if is_head { 1 } else { k };
        let mut chosen: Vec<(u32, Response<Body>)> = Vec::new();
        let mut current: Option<Timestamp> = None;
        for (ts, index, resp) in found {
            if current != Some(ts) {
                if chosen.len() >= needed {
                    break;
                }
                chosen.clear();
                current = Some(ts);
            }
            if !chosen.iter().any(|(i, _)| *i == index) {
                chosen.push((index, resp));
            }
        }
        if chosen.len() < needed {
            tracing::error!(
                fragments = chosen.len(),
                needed,
                "EC object GET: not enough fragments"
            );
            return unavailable();
        }
        chosen.truncate(needed);

        // The client's view of the object.
        let first = &chosen[0].1;
        let Some(length) = header_str(first.headers(), pec::X_OBJECT_SYSMETA_EC_CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            tracing::error!("EC fragment without X-Object-Sysmeta-Ec-Content-Length");
            return unavailable();
        };
        let etag = header_str(first.headers(), pec::X_OBJECT_SYSMETA_EC_ETAG)
            .unwrap_or("")
            .to_string();
        let mut out = first.headers().clone();
        strip_ec_headers(&mut out);
        for name in ["content-length", "etag", "content-range"] {
            out.remove(name);
        }
        for name in HOP_HEADERS {
            out.remove(*name);
        }
        let cleaned = out
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| clean_content_type(v.as_bytes()))
            .and_then(|v| HeaderValue::from_bytes(v).ok());
        if let Some(cleaned) = cleaned {
            out.insert(http::header::CONTENT_TYPE, cleaned);
        }
        if !etag.is_empty() {
            set_header(&mut out, "etag", &etag);
        }
        out.insert("accept-ranges", HeaderValue::from_static("bytes"));

        let mut status = StatusCode::OK;
        let (mut start, mut end) = (0, length);
        let range = header_str(req.headers(), "range")
            .and_then(|r| Range::parse(r).ok())
            .and_then(|r| r.ranges_for_length(length));
        match range.as_deref() {
            Some([]) => {
                let mut resp = error_response(StatusCode::RANGE_NOT_SATISFIABLE, None);
                set_header(
                    resp.headers_mut(),
                    "content-range",
                    &format!("bytes */{length}"),
                );
                return resp;
            }
            // One range: decoded from the start, bytes before it skipped.
            Some([(s, e)]) => {
                status = StatusCode::PARTIAL_CONTENT;
                (start, end) = (*s, *e);
                set_header(
                    &mut out,
                    "content-range",
                    &content_range_value(start, end, length),
                );
            }
            // Several ranges are not served yet: the whole object.
            _ => {}
        }
        out.insert(http::header::CONTENT_LENGTH, HeaderValue::from(end - start));
        if is_head {
            let mut resp = Response::new(apus_http::empty());
            *resp.status_mut() = status;
            *resp.headers_mut() = out;
            return resp;
        }
        let segment_size = ec.segment_size;
        let sources: Vec<Body> = chosen.into_iter().map(|(_, r)| r.into_body()).collect();
        let decoder = match ArchiveDecoder::new(scheme, segment_size, sources.len()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "EC object GET: no decoder");
                return unavailable();
            }
        };
        let (tx, body) = apus_http::body::channel(2, Some(end - start));
        let mut decoding = Decoding {
            leftover: vec![Bytes::new(); sources.len()],
            ended: vec![false; sources.len()],
            decoder,
            sources,
        };
        tokio::spawn(async move {
            let mut at: u64 = 0;
            while at < end {
                let segment = match decoding.next_segment().await {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        tx.abort(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "fragment archives ended before the object",
                        ))
                        .await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "EC object GET: decoding failed");
                        tx.abort(e).await;
                        return;
                    }
                };
                let seg_start = at;
                let seg_end = at + segment.len() as u64;
                at = seg_end;
                if seg_end <= start {
                    continue;
                }
                let from = start.saturating_sub(seg_start) as usize;
                let to = (end.min(seg_end) - seg_start) as usize;
                let mut segment = Bytes::from(segment);
                let piece = segment.split_to(to).split_off(from);
                if tx.send(piece).await.is_err() {
                    return;
                }
            }
        });
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = out;
        resp
    }
}

/// Drops the fragments' own metadata from an answer for the client.
fn strip_ec_headers(headers: &mut HeaderMap) {
    let drop: Vec<_> = headers
        .keys()
        .filter(|n| {
            let n = n.as_str();
            n.starts_with("x-object-sysmeta-ec-") || n.starts_with("x-backend-")
        })
        .cloned()
        .collect();
    for name in drop {
        headers.remove(name);
    }
}

/// k fragment archives being read and decoded.
struct Decoding {
    decoder: ArchiveDecoder,
    sources: Vec<Body>,
    /// Bytes read from a source beyond what the decoder had room for.
    leftover: Vec<Bytes>,
    ended: Vec<bool>,
}

impl Decoding {
    /// The next decoded segment; `None` once the archives have ended
    /// together.
    async fn next_segment(&mut self) -> io::Result<Option<Vec<u8>>> {
        let bad = |e: apus_ec::EcError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        loop {
            if let Some(segment) = self.decoder.next_segment().map_err(bad)? {
                return Ok(Some(segment));
            }
            let mut progressed = false;
            for s in 0..self.sources.len() {
                let room = self.decoder.room(s);
                if room == 0 {
                    continue;
                }
                if self.leftover[s].is_empty() && !self.ended[s] {
                    match self.sources[s].frame().await {
                        None => self.ended[s] = true,
                        Some(Err(e)) => return Err(e),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                self.leftover[s] = data;
                            }
                        }
                    }
                    progressed = true;
                }
                let take = room.min(self.leftover[s].len());
                if take > 0 {
                    self.decoder
                        .push(s, &self.leftover[s][..take])
                        .map_err(bad)?;
                    self.leftover[s].advance(take);
                    progressed = true;
                }
            }
            if !progressed {
                self.decoder.finish().map_err(bad)?;
                return Ok(None);
            }
        }
    }
}
