//! The object controller: GET/HEAD from the first primary that has the
//! object, PUT streamed to every primary at once (handoffs standing in for
//! failed ones) under Swift's write quorum, POST and DELETE fanned out.

mod ec;
mod hasher;

use std::time::Duration;

use apus_core::policy::PolicyKind;

use apus_core::conditional::format_http_date;
use apus_core::Timestamp;
use apus_http::expect::{FinalResponse, Started, UploadConn};
use apus_proto::constraints::{NameKind, MAX_FILE_SIZE};
use apus_proto::headers::is_true;
use apus_ring::Device;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use crate::account::check_metadata;
use crate::app::Ctx;
use crate::backend::{
    assign_update_targets, backend_path, best_index, best_response, best_response_with_overrides,
    have_quorum, node_host, quorum_size, NodePlan, NodeResponse, SlotAnswer,
};
use crate::config::Policy;
use crate::info::ContainerInfo;
use crate::metrics::{BackendFailure, NodeType};
use crate::service::{error_response, header_str, set_header, Req, Resp};
use hasher::{BodyDigest, BodyHasher, PROXY_HASHED_MIN};

/// Request headers never forwarded to object servers as they are.
const HOP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "expect",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "x-auth-token",
    "x-storage-token",
    "x-service-token",
];

/// Python's `int()` of a header value, as a float so that any number of
/// digits is accepted (the callers clamp it): `None` unless it is an
/// optionally signed run of decimal digits.
fn py_int(text: &str) -> Option<f64> {
    let t = text.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<f64>().ok()
}

fn bad_request(body: &str) -> Resp {
    error_response(StatusCode::BAD_REQUEST, Some(body))
}

/// Python's `str.isspace` for the characters of a WSGI string (one per
/// header byte).
fn is_py_space(b: u8) -> bool {
    matches!(b, 0x09..=0x0d | 0x1c..=0x1f | b' ' | 0x85 | 0xa0)
}

fn py_lstrip(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !is_py_space(*b))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Swift's `check_content_type`, run on every object PUT (copies become
/// PUTs): a client's content type may not carry a `swift_*` parameter.
/// SLO appends `swift_bytes=<total size>` to a manifest's content type and
/// container listings report that as the object's size, so a client
/// could otherwise make a listing show any size it likes.
fn check_content_type(headers: &HeaderMap) -> Result<(), Resp> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let swift_param = value
        .as_bytes()
        .split(|b| *b == b';')
        .skip(1)
        .any(|param| py_lstrip(param).starts_with(b"swift_"));
    if swift_param {
        return Err(bad_request(
            "Invalid Content-Type, swift_* is not a valid parameter name.",
        ));
    }
    Ok(())
}

/// Swift's `clean_content_type`, applied to object GET and HEAD answers:
/// a last `swift_bytes` parameter is the listing's business, not the
/// client's. `None` when there is nothing to remove.
fn clean_content_type(value: &[u8]) -> Option<&[u8]> {
    let split = value.iter().rposition(|b| *b == b';')?;
    py_lstrip(&value[split + 1..])
        .starts_with(b"swift_bytes=")
        .then(|| &value[..split])
}

/// Content types by file extension, for PUTs that name none (Python's
/// `mimetypes` answers for the common ones).
pub fn guess_content_type(name: &str) -> &'static str {
    let base = name.rsplit('/').next().unwrap_or(name);
    let Some((_, ext)) = base.rsplit_once('.') else {
        return "application/octet-stream";
    };
    match ext.to_ascii_lowercase().as_str() {
        "txt" | "text" | "log" | "conf" | "ini" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "jpg" | "jpeg" | "jpe" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "ico" => "image/vnd.microsoft.icon",
        "tif" | "tiff" => "image/tiff",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "bz2" => "application/x-bzip2",
        "mp3" => "audio/mpeg",
        "wav" => "audio/x-wav",
        "mp4" => "video/mp4",
        "mpeg" | "mpg" => "video/mpeg",
        "mov" => "video/quicktime",
        "iso" | "img" | "bin" | "exe" | "so" | "o" => "application/octet-stream",
        "sh" => "application/x-sh",
        "py" => "text/x-python",
        "c" | "h" => "text/plain",
        "md" => "text/markdown",
        "doc" => "application/msword",
        "rtf" => "application/rtf",
        _ => "application/octet-stream",
    }
}

/// One object server taking part in a PUT.
struct Putter {
    dev: Device,
    conn: UploadConn,
    /// The replica slot it stands for (an EC policy's fragment index).
    index: usize,
}

/// What one slot of an object PUT's connect phase came to.
enum Connected {
    /// The server sent `100 Continue`: the body goes to it.
    Putter(Putter),
    /// The server answered at once (409, 412, or a zero-length body's final
    /// answer).
    Early(NodeResponse),
    /// No node of the slot took the upload.
    Failed,
}

impl SlotAnswer for Connected {
    fn none() -> Self {
        Connected::Failed
    }
    fn is_final(&self) -> bool {
        !matches!(self, Connected::Failed)
    }
    fn is_success(&self) -> bool {
        match self {
            Connected::Putter(_) => true,
            Connected::Early(n) => n.is_success(),
            Connected::Failed => false,
        }
    }
}

impl Ctx<'_> {
    fn object_name(&self) -> &str {
        self.target.object.as_deref().unwrap_or("")
    }

    /// The policy whose object ring serves this request: the container's,
    /// unless the request names one in `X-Backend-Storage-Policy-Index`
    /// (Swift's object controller takes it; only the cluster's own
    /// requests can carry it, since the gatekeeper strips it from clients'
    /// — the container reconciler moves objects between policies so). A
    /// named policy that does not exist is no policy.
    fn object_policy(&self, info: &ContainerInfo, req: &Req) -> Option<&Policy> {
        if req.headers().contains_key("x-backend-storage-policy-index") {
            return header_str(req.headers(), "x-backend-storage-policy-index")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .and_then(|i| self.app.config.policy(i));
        }
        self.app
            .config
            .policy(info.storage_policy)
            .or_else(|| self.app.config.default_policy())
    }

    fn object_plan(&self, policy: &Policy) -> NodePlan {
        let ring = policy.ring.get();
        let part = ring.partition(
            &self.app.config.hash,
            &self.target.account,
            self.target.container.as_deref(),
            Some(self.object_name()),
        );
        NodePlan::new(&ring, part, &self.app.backend.limiter)
    }

    /// Every client header worth passing on, plus the proxy's own.
    fn object_headers(&self, req: &Req, timestamp: Option<&str>, policy: &Policy) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in req.headers() {
            if !HOP_HEADERS.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, value) in self.base_headers(timestamp) {
            if let Some(name) = name {
                headers.insert(name, value);
            }
        }
        headers.insert(
            "x-backend-storage-policy-index",
            HeaderValue::from(policy.index),
        );
        // Swift's `is_open_expired`: reads and POSTs may reach an object
        // past its X-Delete-At that the expirer has not removed yet.
        let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::POST);
        if reads
            && self.app.config.allow_open_expired
            && header_str(req.headers(), "x-open-expired").is_some_and(is_true)
        {
            headers.insert("x-backend-open-expired", HeaderValue::from_static("true"));
        }
        headers
    }

    pub async fn object(mut self, req: Req) -> Resp {
        let method = req.method().clone();
        let info = self.container_info().await;
        let acl = if method == Method::GET || method == Method::HEAD {
            info.read_acl.clone()
        } else {
            info.write_acl.clone()
        };
        if let Err(denial) = self.authorize(&req, acl.as_deref()).await {
            return denial;
        }
        let Some(policy) = self.object_policy(&info, &req).cloned() else {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, None);
        };
        let mut resp = self.object_for_policy(req, &info, &policy, method).await;
        resp.extensions_mut()
            .insert(crate::metrics::PolicyIndex(policy.index));
        resp
    }

    async fn object_for_policy(
        &mut self,
        req: Req,
        info: &ContainerInfo,
        policy: &Policy,
        method: Method,
    ) -> Resp {
        let policy = policy.clone();
        match method {
            Method::GET | Method::HEAD => match &policy.kind {
                PolicyKind::ErasureCoding(ec) => self.ec_get(req, &policy, ec).await,
                PolicyKind::Replication => self.object_get(req, &policy).await,
            },
            Method::PUT => {
                if !info.exists() {
                    return error_response(StatusCode::NOT_FOUND, None);
                }
                self.object_put(req, &policy).await
            }
            Method::POST => {
                if !info.exists() {
                    return error_response(StatusCode::NOT_FOUND, None);
                }
                self.object_post(req, &policy).await
            }
            Method::DELETE => {
                if !info.exists() {
                    return error_response(StatusCode::NOT_FOUND, None);
                }
                self.object_delete(req, &policy).await
            }
            _ => error_response(StatusCode::METHOD_NOT_ALLOWED, None),
        }
    }

    async fn object_get(&self, req: Req, policy: &Policy) -> Resp {
        let plan = self.object_plan(policy);
        let headers = self.object_headers(&req, None, policy);
        let newest = header_str(req.headers(), "x-newest").is_some_and(is_true);
        let mut resp = self
            .app
            .backend
            .read(
                &plan,
                req.method().clone(),
                &self.target.path(),
                None,
                headers,
                newest,
            )
            .await;
        let cleaned = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| clean_content_type(v.as_bytes()))
            .and_then(|v| HeaderValue::from_bytes(v).ok());
        if let Some(cleaned) = cleaned {
            resp.headers_mut()
                .insert(http::header::CONTENT_TYPE, cleaned);
        }
        let status = resp.status().as_u16();
        if (200..300).contains(&status) || matches!(status, 304 | 412 | 416) {
            resp.headers_mut()
                .insert("accept-ranges", HeaderValue::from_static("bytes"));
            // Object servers quote ETags; Swift's proxy hands them out bare.
            let bare = header_str(resp.headers(), "etag")
                .filter(|e| e.starts_with('"'))
                .map(|e| e.trim_matches('"').to_string());
            if let Some(bare) = bare {
                set_header(resp.headers_mut(), "etag", &bare);
            }
        }
        resp
    }

    /// Swift's `ensure_x_timestamp`: the client's `X-Timestamp` when valid,
    /// else now.
    fn request_timestamp(req: &Req) -> Result<Timestamp, Resp> {
        match header_str(req.headers(), "x-timestamp") {
            Some(text) => Timestamp::parse(text).map_err(|_| {
                bad_request(&format!(
                    "X-Timestamp should be a UNIX timestamp float value; was '{text}'"
                ))
            }),
            None if req.headers().contains_key("x-timestamp") => Err(bad_request(
                "X-Timestamp should be a UNIX timestamp float value",
            )),
            None => Ok(Timestamp::now()),
        }
    }

    /// Swift's `check_delete_headers`: turns `X-Delete-After` into
    /// `X-Delete-At` and refuses times in the past.
    fn delete_headers(req: &mut Req, now: &Timestamp) -> Result<Option<u64>, Resp> {
        let now_secs = now.as_secs_f64();
        if let Some(value) = req.headers().get("x-delete-after") {
            let text = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
            let after = py_int(&text).ok_or_else(|| bad_request("Non-integer X-Delete-After"))?;
            let at = apus_proto::update::normalize_delete_at(now_secs + after);
            let at_secs: f64 = at.parse().unwrap_or(0.0);
            if at_secs <= now_secs {
                return Err(bad_request("X-Delete-After in past"));
            }
            req.headers_mut().remove("x-delete-after");
            set_header(req.headers_mut(), "x-delete-at", &at);
        }
        let Some(value) = req.headers().get("x-delete-at") else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
        let at = py_int(&text).ok_or_else(|| bad_request("Non-integer X-Delete-At"))?;
        let normalized = apus_proto::update::normalize_delete_at(at);
        let at_secs: u64 = normalized.parse().unwrap_or(0);
        let replication = header_str(req.headers(), "x-backend-replication").is_some_and(is_true);
        if (at_secs as f64) <= now_secs && !replication {
            return Err(bad_request("X-Delete-At in past"));
        }
        set_header(req.headers_mut(), "x-delete-at", &normalized);
        Ok(Some(at_secs))
    }

    /// Per object node: which container replica to update and, for objects
    /// that expire, which expiring-objects queue replica.
    fn update_headers(&self, base: &HeaderMap, n: usize, delete_at: Option<u64>) -> Vec<HeaderMap> {
        let mut out = vec![base.clone(); n.max(1)];
        let ring = self.app.config.container_ring.get();
        let account = &self.target.account;
        let container = self.target.container.as_deref().unwrap_or("");
        let part = ring.partition(&self.app.config.hash, account, Some(container), None);
        let containers = ring.primaries(part);
        assign_update_targets(&mut out, &containers, part, "x-container");
        if let Some(at) = delete_at {
            let queue = apus_proto::update::expirer_container(
                &self.app.config.hash,
                at,
                account,
                container,
                self.object_name(),
            );
            let qpart = ring.partition(
                &self.app.config.hash,
                apus_proto::update::EXPIRER_ACCOUNT,
                Some(&queue),
                None,
            );
            let qnodes = ring.primaries(qpart);
            assign_update_targets(&mut out, &qnodes, qpart, "x-delete-at");
            for h in out.iter_mut() {
                set_header(h, "x-delete-at-container", &queue);
            }
        }
        out
    }

    async fn object_put(&self, mut req: Req, policy: &Policy) -> Resp {
        if let Some(inm) = header_str(req.headers(), "if-none-match") {
            if !inm.split(',').any(|t| t.trim() == "*") {
                return bad_request("If-None-Match only supports *");
            }
        } else if req.headers().contains_key("if-none-match") {
            return bad_request("If-None-Match only supports *");
        }
        let detect = header_str(req.headers(), "x-detect-content-type").is_some_and(is_true);
        let has_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| !v.is_empty());
        if detect || !has_type {
            let guessed = guess_content_type(self.object_name());
            set_header(req.headers_mut(), "content-type", guessed);
            req.headers_mut().remove("x-detect-content-type");
        }
        let timestamp = match Self::request_timestamp(&req) {
            Ok(ts) => ts,
            Err(resp) => return resp,
        };
        let content_length = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = req.headers().contains_key(http::header::TRANSFER_ENCODING);
        if let Some(len) = content_length {
            if len > MAX_FILE_SIZE {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some("Your request is too large."),
                );
            }
        }
        if content_length.is_none() && !chunked {
            return error_response(
                StatusCode::LENGTH_REQUIRED,
                Some("Missing Content-Length header."),
            );
        }
        if let Err(resp) = self.check_name_length(NameKind::Object) {
            return resp;
        }
        let delete_at = match Self::delete_headers(&mut req, &timestamp) {
            Ok(at) => at,
            Err(resp) => return resp,
        };
        if req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().is_err() && std::str::from_utf8(v.as_bytes()).is_err())
        {
            return bad_request("Invalid Content-Type");
        }
        if let Err(resp) = check_metadata(req.headers(), "object") {
            return resp;
        }
        // A content type a middleware wrote is not the client's.
        if !self.env.content_type_overridden {
            if let Err(resp) = check_content_type(req.headers()) {
                return resp;
            }
        }
        let ts_text = timestamp.internal();
        let base = self.object_headers(&req, Some(&ts_text), policy);
        let plan = self.object_plan(policy);
        let headers = self.update_headers(&base, plan.replicas, delete_at);
        if let PolicyKind::ErasureCoding(ec) = &policy.kind {
            return self
                .ec_put(req, ec, &plan, headers, timestamp, content_length)
                .await;
        }
        // A large (or unsized) body is hashed here once, not by every
        // replica (see `hasher`); it then goes chunked, to end in trailers.
        let proxy_hashes = content_length.is_none_or(|n| n > PROXY_HASHED_MIN);
        let (headers, backend_length) = if proxy_hashes {
            let mut headers = headers;
            for h in &mut headers {
                set_header(h, apus_proto::headers::X_BACKEND_ETAG_TRAILER, "crc32");
                set_header(h, "trailer", TRAILER_NAMES);
                if let Some(n) = content_length {
                    set_header(
                        h,
                        apus_proto::headers::X_BACKEND_OBJ_CONTENT_LENGTH,
                        &n.to_string(),
                    );
                }
            }
            (headers, None)
        } else {
            (headers, content_length)
        };
        // A short body is read first and goes to each object server with
        // the request's head: no round trip for `100 Continue`, and the
        // answers are final.
        let (req, inline_body) = match content_length {
            Some(n) if n > 0 && !proxy_hashes => {
                let (parts, body) = req.into_parts();
                match self.read_short_body(body, n).await {
                    Ok(bytes) => (Req::from_parts(parts, apus_http::empty()), Some(bytes)),
                    Err(resp) => return resp,
                }
            }
            _ => (req, None),
        };
        let (putters, early) = self
            .connect_putters(
                &plan,
                &headers,
                backend_length,
                inline_body.as_ref(),
                quorum_size(plan.replicas),
            )
            .await;
        let if_none_match = req.headers().contains_key("if-none-match");
        if if_none_match && early.iter().any(|r| r.status == 412) {
            return error_response(StatusCode::PRECONDITION_FAILED, None);
        }
        if early.iter().any(|r| r.status == 409) {
            return error_response(StatusCode::ACCEPTED, None);
        }
        let quorum = quorum_size(plan.replicas);
        // A zero-length or short body is sent with the head: the answers
        // are final.
        let answers_final = content_length == Some(0) || inline_body.is_some();
        if putters.len() < quorum && !answers_final {
            tracing::error!(
                connected = putters.len(),
                quorum,
                "object PUT: not enough object servers took the upload"
            );
            return error_response(StatusCode::SERVICE_UNAVAILABLE, None);
        }
        let client_etag = header_str(req.headers(), "etag")
            .map(|e| apus_core::conditional::normalize_etag(e.trim()).to_ascii_lowercase())
            .filter(|e| !e.is_empty());
        let body = req.into_body();
        let mut hasher = proxy_hashes.then(BodyHasher::start);
        // An inline body went out with the heads already.
        let putters = if inline_body.is_some() {
            putters
        } else {
            match self
                .transfer(body, putters, content_length, quorum, hasher.as_mut())
                .await
            {
                Ok(p) => p,
                Err(resp) => return resp,
            }
        };
        let trailers = match hasher {
            None => None,
            Some(hasher) => {
                let Ok(digest) = hasher.finish().await else {
                    tracing::error!("object PUT: the body's hashing thread failed");
                    return error_response(StatusCode::SERVICE_UNAVAILABLE, None);
                };
                if client_etag.is_some_and(|e| e != digest.etag) {
                    // Dropping the uploads unfinished makes every object
                    // server discard what it was sent.
                    drop(putters);
                    return error_response(StatusCode::UNPROCESSABLE_ENTITY, None);
                }
                Some(digest_trailers(&digest))
            }
        };
        let mut answers: Vec<NodeResponse> = early;
        answers.extend(self.final_answers(putters, quorum, trailers).await);
        let etags: std::collections::BTreeSet<String> = answers
            .iter()
            .filter(|r| r.is_success())
            .filter_map(|r| header_str(&r.headers, "etag").map(|e| e.trim_matches('"').to_string()))
            .collect();
        if etags.len() > 1 {
            tracing::error!(?etags, "object servers returned mismatched etags");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
        }
        let Some(best) = best_index(&answers, quorum) else {
            let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
            tracing::error!(?statuses, "Object PUT returning 503");
            return error_response(StatusCode::SERVICE_UNAVAILABLE, None);
        };
        let chosen = &answers[best];
        let status = StatusCode::from_u16(chosen.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = if chosen.body.is_empty() || status.is_success() {
            error_response(status, None)
        } else {
            error_response(status, Some(&String::from_utf8_lossy(&chosen.body)))
        };
        if status.is_success() {
            if let Some(etag) = etags.iter().next() {
                set_header(resp.headers_mut(), "etag", etag);
            }
            let lm = format_http_date(timestamp.ceil_secs() as i64);
            set_header(resp.headers_mut(), "last-modified", &lm);
        }
        resp
    }

    /// Opens one upload per replica slot, a stand-in (handoff, then an
    /// error-limited primary) replacing any node that cannot be reached or
    /// refuses (5xx, 507), or joining one that has not answered its
    /// `Expect: 100-continue` within `concurrency_timeout`. Answers that
    /// end an upload before it starts (409, 412, 2xx) come back apart. Once
    /// `quorum` slots are settled, the others get `post_quorum_timeout`.
    async fn connect_putters(
        &self,
        plan: &NodePlan,
        headers: &[HeaderMap],
        content_length: Option<u64>,
        inline_body: Option<&Bytes>,
        quorum: usize,
    ) -> (Vec<Putter>, Vec<NodeResponse>) {
        let backend = &self.app.backend;
        let stand_ins = std::sync::Mutex::new(plan.stand_ins());
        let cfg = &self.app.config;
        let path = self.target.path();
        let slots = plan.replicas.max(1);
        let mut pending: FuturesUnordered<_> = (0..slots)
            .map(|i| {
                let stand_ins = &stand_ins;
                let path = &path;
                let hdrs = headers.get(i).cloned().unwrap_or_default();
                async move {
                    let next = || stand_ins.lock().ok().and_then(|mut s| s.next());
                    backend
                        .hedged_slot(plan.slot(i), next, |dev| {
                            let bpath = backend_path(dev, plan.partition, path, None);
                            let limiter = backend.limiter.clone();
                            let uploads = backend.uploads.clone();
                            let dev = dev.clone();
                            let hdrs = hdrs.clone();
                            let inline_body = inline_body.cloned();
                            let (conn_timeout, node_timeout) = (cfg.conn_timeout, cfg.node_timeout);
                            tokio::spawn(async move {
                                let waiting = limiter.begin(&dev);
                                let host = node_host(&dev);
                                let started = match &inline_body {
                                    Some(body) => {
                                        uploads
                                            .start_with_body(
                                                &host,
                                                &Method::PUT,
                                                &bpath,
                                                &hdrs,
                                                body,
                                                conn_timeout,
                                                node_timeout,
                                            )
                                            .await
                                    }
                                    None => {
                                        uploads
                                            .start(
                                                &host,
                                                &Method::PUT,
                                                &bpath,
                                                &hdrs,
                                                content_length,
                                                conn_timeout,
                                                node_timeout,
                                            )
                                            .await
                                    }
                                };
                                if started.is_ok() {
                                    waiting.answered();
                                }
                                match started {
                                    Ok(Started::Continue(conn)) => {
                                        limiter.answered(&dev);
                                        Connected::Putter(Putter { dev, conn, index: i })
                                    }
                                    Ok(Started::Final(f)) => {
                                        let code = f.status.as_u16();
                                        if code == 507 {
                                            limiter.limit_now(&dev);
                                            Connected::Failed
                                        } else if code >= 500 {
                                            limiter.failed(&dev, NodeType::Object, BackendFailure::ServerError);
                                            Connected::Failed
                                        } else {
                                            limiter.answered(&dev);
                                            Connected::Early(final_to_node(f))
                                        }
                                    }
                                    Err(e) => {
                                        tracing::warn!(device = %dev.device, error = %e, "object PUT: connect failed");
                                        limiter.failed(&dev, NodeType::Object, BackendFailure::Error);
                                        Connected::Failed
                                    }
                                }
                            })
                        })
                        .await
                }
            })
            .collect();
        let mut putters = Vec::new();
        let mut early = Vec::new();
        let take = |c: Connected, putters: &mut Vec<Putter>, early: &mut Vec<NodeResponse>| match c
        {
            Connected::Putter(p) => putters.push(p),
            Connected::Early(n) => early.push(n),
            Connected::Failed => {}
        };
        while let Some(c) = pending.next().await {
            take(c, &mut putters, &mut early);
            let statuses: Vec<u16> = early.iter().map(|r| r.status).collect();
            if putters.len() >= quorum || have_quorum(&statuses, quorum) {
                break;
            }
        }
        let grace = tokio::time::sleep(backend.timing.post_quorum_timeout);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = pending.next() => match next {
                    Some(c) => take(c, &mut putters, &mut early),
                    None => break,
                },
                _ = &mut grace => break,
            }
        }
        (putters, early)
    }

    /// Reads a client body of `len` bytes (at most [`PROXY_HASHED_MIN`])
    /// whole, with the answers [`transfer`](Self::transfer) gives when it
    /// stalls, breaks off or is short.
    async fn read_short_body(&self, mut body: apus_http::Body, len: u64) -> Result<Bytes, Resp> {
        let client_timeout: Duration = self.app.config.client_timeout;
        let client_gone = || {
            error_response(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                None,
            )
        };
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut received: u64 = 0;
        loop {
            let frame = match tokio::time::timeout(client_timeout, body.frame()).await {
                Err(_) => return Err(error_response(StatusCode::REQUEST_TIMEOUT, None)),
                Ok(None) => break,
                Ok(Some(Err(_))) => return Err(client_gone()),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            received += data.len() as u64;
            if received > len {
                return Err(bad_request("Request body longer than Content-Length"));
            }
            chunks.push(data);
        }
        if received < len {
            return Err(client_gone());
        }
        Ok(match chunks.len() {
            1 => chunks.swap_remove(0),
            _ => chunks.concat().into(),
        })
    }

    /// Streams the client's body to every putter, dropping those that fail;
    /// fewer than `quorum` left is a 503. A client that stops sending for
    /// `client_timeout` gets 408, one that disconnects or sends less than
    /// it declared, 499.
    async fn transfer(
        &self,
        mut body: apus_http::Body,
        mut putters: Vec<Putter>,
        content_length: Option<u64>,
        quorum: usize,
        mut hasher: Option<&mut BodyHasher>,
    ) -> Result<Vec<Putter>, Resp> {
        let client_timeout: Duration = self.app.config.client_timeout;
        let mut received: u64 = 0;
        loop {
            let frame = match tokio::time::timeout(client_timeout, body.frame()).await {
                Err(_) => return Err(error_response(StatusCode::REQUEST_TIMEOUT, None)),
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    return Err(error_response(
                        StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                        None,
                    ))
                }
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
                return Err(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some("Your request is too large."),
                ));
            }
            if content_length.is_some_and(|len| received > len) {
                return Err(bad_request("Request body longer than Content-Length"));
            }
            if let Some(hasher) = hasher.as_deref_mut() {
                if hasher.feed(&data).await.is_err() {
                    tracing::error!("object PUT: the body's hashing thread failed");
                    return Err(error_response(StatusCode::SERVICE_UNAVAILABLE, None));
                }
            }
            putters = self
                .send_chunk(putters, |_| data.clone(), "object PUT")
                .await;
            if putters.len() < quorum {
                tracing::error!("object PUT: lost the write quorum while sending");
                return Err(error_response(StatusCode::SERVICE_UNAVAILABLE, None));
            }
        }
        if content_length.is_some_and(|len| received < len) {
            return Err(error_response(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                None,
            ));
        }
        Ok(putters)
    }

    /// Ends every upload and gathers the servers' final answers: all of
    /// them, or once a quorum agree, those that come within
    /// `post_quorum_timeout`. A server that never answers is charged its
    /// error in the background.
    async fn final_answers(
        &self,
        putters: Vec<Putter>,
        quorum: usize,
        trailers: Option<HeaderMap>,
    ) -> Vec<NodeResponse> {
        let limiter = &self.app.backend.limiter;
        let slots = putters.len();
        let pending: FuturesUnordered<_> = putters
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let limiter = limiter.clone();
                let trailers = trailers.clone();
                let finish = tokio::spawn(async move {
                    let waiting = limiter.begin(&p.dev);
                    let finished = match &trailers {
                        Some(t) => p.conn.finish_with_trailers(t).await,
                        None => p.conn.finish().await,
                    };
                    match finished {
                        Ok(f) => {
                            waiting.answered();
                            if f.status.is_server_error() {
                                limiter.failed(&p.dev, NodeType::Object, BackendFailure::ServerError);
                            }
                            final_to_node(f)
                        }
                        Err(e) => {
                            tracing::warn!(device = %p.dev.device, error = %e, "object PUT: no answer");
                            limiter.failed(&p.dev, NodeType::Object, BackendFailure::Error);
                            crate::backend::unavailable()
                        }
                    }
                });
                async move { (i, finish.await.unwrap_or_else(|_| crate::backend::unavailable())) }
            })
            .collect();
        self.app.backend.gather(pending, slots, quorum).await
    }

    /// Sends each putter its piece of the body (`piece` maps a putter's
    /// slot to its bytes: the same chunk for every replica, an archive's
    /// bytes for a fragment index), dropping those that fail.
    async fn send_chunk(
        &self,
        putters: Vec<Putter>,
        piece: impl Fn(usize) -> Bytes,
        what: &str,
    ) -> Vec<Putter> {
        let sends = putters.into_iter().map(|mut p| {
            let data = piece(p.index);
            async move {
                match p.conn.send(data).await {
                    Ok(()) => Some(p),
                    Err(e) => {
                        tracing::warn!(device = %p.dev.device, error = %e, "{what}: send failed");
                        self.app.backend.limiter.failed(
                            &p.dev,
                            NodeType::Object,
                            BackendFailure::Error,
                        );
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

    async fn object_post(&self, mut req: Req, policy: &Policy) -> Resp {
        let timestamp = match Self::request_timestamp(&req) {
            Ok(ts) => ts,
            Err(resp) => return resp,
        };
        if let Err(resp) = check_metadata(req.headers(), "object") {
            return resp;
        }
        let delete_at = match Self::delete_headers(&mut req, &timestamp) {
            Ok(at) => at,
            Err(resp) => return resp,
        };
        let ts_text = timestamp.internal();
        let base = self.object_headers(&req, Some(&ts_text), policy);
        let plan = self.object_plan(policy);
        let headers = self.update_headers(&base, plan.replicas, delete_at);
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::POST, &self.target.path(), None, &|i| {
                headers.get(i).cloned().unwrap_or_default()
            })
            .await;
        best_response(&answers, quorum_size(plan.replicas), "Object POST")
    }

    async fn object_delete(&self, req: Req, policy: &Policy) -> Resp {
        let timestamp = match Self::request_timestamp(&req) {
            Ok(ts) => ts,
            Err(resp) => return resp,
        };
        let ts_text = timestamp.internal();
        let base = self.object_headers(&req, Some(&ts_text), policy);
        let plan = self.object_plan(policy);
        let headers = self.update_headers(&base, plan.replicas, None);
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::DELETE, &self.target.path(), None, &|i| {
                headers.get(i).cloned().unwrap_or_default()
            })
            .await;
        // A node without a copy writes its tombstone and answers 404; like
        // Swift, count those as deleted when the answers lack a quorum.
        best_response_with_overrides(
            &answers,
            quorum_size(plan.replicas),
            "Object DELETE",
            &[(404, 204)],
        )
    }
}

/// The trailers a proxy-hashed upload ends with.
const TRAILER_NAMES: &str = "Etag, X-Backend-Body-Crc32";

fn digest_trailers(digest: &BodyDigest) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    set_header(&mut trailers, "etag", &digest.etag);
    set_header(
        &mut trailers,
        apus_proto::headers::X_BACKEND_BODY_CRC32,
        &digest.crc32_hex(),
    );
    trailers
}

fn final_to_node(f: FinalResponse) -> NodeResponse {
    NodeResponse {
        status: f.status.as_u16(),
        headers: f.headers,
        body: f.body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctype(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(v).unwrap(),
        );
        h
    }

    #[test]
    fn swift_parameters_are_refused() {
        for bad in [
            "text/plain;swift_bytes=1",
            "text/plain; \tswift_bytes=1",
            "a/b;charset=x;swift_",
        ] {
            assert!(check_content_type(&ctype(bad)).is_err(), "{bad}");
        }
        for good in [
            "text/plain",
            "swift_bytes=1",
            "text/plain;charset=utf-8",
            "text/plain;x=swift_bytes",
        ] {
            assert!(check_content_type(&ctype(good)).is_ok(), "{good}");
        }
        assert!(check_content_type(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn only_a_last_swift_bytes_is_cleaned() {
        assert_eq!(
            clean_content_type(b"text/plain;swift_bytes=5"),
            Some(&b"text/plain"[..])
        );
        assert_eq!(
            clean_content_type(b"a/b;charset=x; swift_bytes=5"),
            Some(&b"a/b;charset=x"[..])
        );
        assert_eq!(clean_content_type(b"a/b;swift_bytes=5;charset=x"), None);
        assert_eq!(clean_content_type(b"text/plain"), None);
    }
}
