//! Form uploads (Swift's `formpost` middleware): a browser POSTs a
//! `multipart/form-data` form to `/v1/<account>/<container>[/<prefix>]`
//! and each file in it is stored as `<prefix><file name>`, without a
//! token, when the form carries a valid signature.
//!
//! - The form's fields before a file say what it may do: `max_file_size`,
//!   `max_file_count`, `expires` (a Unix time), `signature` and optionally
//!   `redirect`, `x_delete_at`/`x_delete_after`, `content-type` and
//!   `content-encoding`. A field after a file applies to the files after
//!   it; each value is read up to [`MAX_VALUE_LENGTH`] bytes.
//! - The signature is the HMAC, under one of the account's or container's
//!   `Temp-URL-Key` keys, of `<path>\n<redirect>\n<max_file_size>\n
//!   <max_file_count>\n<expires>`, in hex or as `<digest>:<base64>`, with
//!   one of the allowed digests (the helpers are tempurl's).
//! - Each file part is streamed, as it arrives, as the body of an
//!   authorized PUT to the rest of the pipeline (tempauth stands aside);
//!   the form is read by [`multipart`], a bounded push-driven reader, and
//!   is never whole in memory.
//! - The answer is a 303 to `redirect` with `status` and `message` added
//!   to its query, or, without one, the last upload's status with a short
//!   text body. A bad form is a 400 and a bad signature or an expired
//!   form a 401, both `FormPost: ...`, whatever the redirect.
//!
//! A POST that is not a form with a boundary passes through untouched.

pub mod multipart;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;

use crate::bulk::status_text;
use crate::dlo::util::{build_request, subrequest_headers};
use crate::info::InfoLookup;
use crate::service::{
    env, error_response, text_error, BoxFuture, Env, RelativeLocation, Req, Resp, Service,
    SharedService,
};
use multipart::{parse_disposition, Event, MultipartError, MultipartReader, PartHeaders};

/// The most of a field's value that is kept (Swift's `MAX_VALUE_LENGTH`);
/// the rest is read and dropped.
pub const MAX_VALUE_LENGTH: usize = 4096;

/// After the answer is decided, at most this much of the unread form is
/// still read, so that a browser still sending gets the answer rather
/// than a reset connection, without reading without end.
const DRAIN_LIMIT: usize = 1 << 20;

/// How much of an upload's answer body is kept (it becomes the form's
/// answer when the upload fails).
const MAX_UPLOAD_ANSWER: usize = 64 * 1024;

/// Form fields that mean something to this filter; others are read and
/// forgotten, so a form with many fields holds no more than these.
const KNOWN_FIELDS: &[&str] = &[
    "redirect",
    "max_file_size",
    "max_file_count",
    "expires",
    "signature",
    "x_delete_at",
    "x_delete_after",
    "content-type",
    "content-encoding",
];

/// Swift's `[filter:formpost]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormPostConfig {
    /// Lowercase digest names a signature may use.
    pub allowed_digests: Vec<String>,
}

impl Default for FormPostConfig {
    fn default() -> Self {
        FormPostConfig {
            allowed_digests: crate::tempurl::allowed_digests(&[]).unwrap_or_default(),
        }
    }
}

impl FormPostConfig {
    /// Keeps the supported digests of `configured` (all when it is
    /// empty); `None` when none is left, which Swift refuses to start
    /// with.
    pub fn with_digests(configured: &[String]) -> Option<Self> {
        Some(FormPostConfig {
            allowed_digests: crate::tempurl::allowed_digests(configured)?,
        })
    }
}

/// The `/info` entry for `formpost`.
pub fn info(config: &FormPostConfig) -> serde_json::Value {
    let mut out = serde_json::json!({});
    crate::tempurl::digest_info(&config.allowed_digests, &mut out);
    out
}

pub struct FormPost {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
    config: Arc<FormPostConfig>,
}

impl FormPost {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>, config: FormPostConfig) -> Self {
        FormPost {
            next,
            info,
            config: Arc::new(config),
        }
    }
}

impl Service for FormPost {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        if req.method() == Method::POST {
            if let Some(boundary) = form_boundary(req.headers()) {
                return Box::pin(self.translate(req, boundary));
            }
        }
        self.next.call(req)
    }
}

/// The boundary of a `multipart/form-data` request body, read as Swift
/// reads it: the header as Latin-1 text, the type compared exactly, the
/// boundary re-encoded as UTF-8.
fn form_boundary(headers: &HeaderMap) -> Option<Vec<u8>> {
    let raw = headers.get(http::header::CONTENT_TYPE)?;
    let text: String = raw.as_bytes().iter().map(|b| char::from(*b)).collect();
    let (kind, attrs) = parse_disposition(&text);
    if kind != "multipart/form-data" {
        return None;
    }
    attrs
        .into_iter()
        .find(|(name, _)| name == "boundary")
        .map(|(_, b)| b.into_bytes())
}

/// The hex signature of a form for `path` (what a form generator such as
/// Swift's `swift-form-signature` computes): the HMAC under `key` of
/// `<path>\n<redirect>\n<max_file_size>\n<max_file_count>\n<expires>`.
/// `None` for a digest other than `sha1`, `sha256` or `sha512`.
pub fn form_signature(
    digest: &str,
    key: &[u8],
    path: &str,
    redirect: &str,
    max_file_size: &str,
    max_file_count: &str,
    expires: &str,
) -> Option<String> {
    let message = format!("{path}\n{redirect}\n{max_file_size}\n{max_file_count}\n{expires}");
    crate::tempurl::hmac_hex_of(digest, key, message.as_bytes())
}

/// Python's `int()` of a text: surrounding whitespace, an optional sign,
/// digits with single underscores between them. Values beyond `i128`
/// saturate (Python's are unbounded; no limit here comes near).
pub fn python_int(text: &str) -> Option<i128> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let bytes = digits.as_bytes();
    if bytes.is_empty() || bytes[0] == b'_' || bytes[bytes.len() - 1] == b'_' {
        return None;
    }
    let mut value: i128 = 0;
    let mut prev_underscore = false;
    for &b in bytes {
        if b == b'_' {
            if prev_underscore {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        prev_underscore = false;
        if !b.is_ascii_digit() {
            return None;
        }
        value = value
            .saturating_mul(10)
            .saturating_add(i128::from(b - b'0'));
    }
    Some(if negative { -value } else { value })
}

/// Why a form is refused outright (no redirect is followed).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// 400 `FormPost: <why>`.
    Invalid(String),
    /// 401 `FormPost: <Why>`.
    Unauthorized(&'static str),
    /// The client's body broke off.
    Disconnected,
}

impl Refusal {
    fn invalid(why: &str) -> Self {
        Refusal::Invalid(why.to_string())
    }

    fn response(&self) -> Resp {
        match self {
            Refusal::Invalid(why) => {
                text_error(StatusCode::BAD_REQUEST, &format!("FormPost: {why}"))
            }
            Refusal::Unauthorized(why) => {
                let body = format!("FormPost: {}", apus_proto::title_case(why));
                let mut resp = error_response(StatusCode::UNAUTHORIZED, Some(&body));
                // Swift's answer is built without the request, so its
                // realm is always unknown.
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Swift realm=\"unknown\""),
                );
                resp
            }
            Refusal::Disconnected => error_response(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                None,
            ),
        }
    }
}

/// The form fields read so far (only the [`KNOWN_FIELDS`]).
#[derive(Debug, Default, Clone)]
struct Fields {
    values: Vec<(&'static str, String)>,
}

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Python's `attributes.get(name) or default`: unset and empty alike.
    fn or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.get(name).filter(|v| !v.is_empty()).unwrap_or(default)
    }

    fn set(&mut self, name: &str, value: String) {
        let Some(known) = KNOWN_FIELDS.iter().find(|k| **k == name) else {
            return;
        };
        match self.values.iter_mut().find(|(n, _)| n == known) {
            Some(slot) => slot.1 = value,
            None => self.values.push((known, value)),
        }
    }
}

/// What an upload's PUT answered.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

/// One file being streamed into its PUT.
struct Upload {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    task: tokio::task::JoinHandle<Answer>,
    received: u64,
    max_file_size: i128,
}

impl Upload {
    fn exceeded(&self) -> bool {
        i128::from(self.received) > self.max_file_size
    }

    /// Ends the PUT with an error, so that nothing partial is stored.
    async fn abort(self) {
        let _ = self
            .tx
            .send(Err(std::io::Error::other("max_file_size exceeded")))
            .await;
        drop(self.tx);
        let _ = self.task.await;
    }

    /// Ends the body and waits for the PUT's answer.
    async fn finish(self) -> Answer {
        drop(self.tx);
        self.task.await.unwrap_or_else(|_| Answer {
            status: 500,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        })
    }
}

/// The part being read.
enum Part {
    /// Nothing to keep (a part without a name, or a file after the
    /// upload ended early).
    Skipped,
    /// A field: its lowercase name and the start of its value.
    Field {
        name: String,
        value: Vec<u8>,
    },
    File(Upload),
}

/// How a form's reading ended, short of a [`Refusal`]: the status and
/// message to report.
struct Outcome {
    status: u16,
    message: &'static str,
}

/// One form's translation into uploads.
struct Translation<'a> {
    filter: &'a FormPost,
    /// The decoded request path, what was signed.
    path: String,
    keys: Vec<String>,
    /// Headers every upload carries.
    headers: HeaderMap,
    env: Env,
    fields: Fields,
    file_count: i128,
    last: Option<Answer>,
}

impl FormPost {
    async fn translate(&self, req: Req, boundary: Vec<u8>) -> Resp {
        let path = apus_proto::percent_decode_internal(req.uri().path()).unwrap_or_default();
        let keys = match signing_container(&path) {
            Some((account, container)) => {
                let env = env(&req).subrequest("FP");
                crate::tempurl::temp_url_keys(self.info.as_ref(), &env, account, container)
                    .await
                    .into_iter()
                    .map(|(key, _)| key)
                    .collect()
            }
            None => Vec::new(),
        };
        let mut sub_env = env(&req).subrequest("FP");
        sub_env.authorize = None;
        sub_env.authorize_override = true;
        sub_env.remote_user = vec![".wsgi.pre_authed".to_string()];
        let mut headers = subrequest_headers(req.headers(), "FormPost", &[]);
        headers.insert(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let mut t = Translation {
            filter: self,
            path,
            keys,
            headers,
            env: sub_env,
            fields: Fields::default(),
            file_count: 0,
            last: None,
        };
        let mut body = req.into_body();
        let mut input_ended = false;
        let result = t.read_form(&boundary, &mut body, &mut input_ended).await;
        if !input_ended && !matches!(result, Err(Refusal::Disconnected)) {
            drain(&mut body).await;
        }
        match result {
            Ok(outcome) => t.answer(outcome),
            Err(refusal) => refusal.response(),
        }
    }
}

/// `(account, container)` when the path can be signed for (Swift's
/// `_get_keys`: `/<version>/<account>/<container>[/...]`); `None` leaves
/// the form without keys, so any file in it is refused.
fn signing_container(path: &str) -> Option<(&str, &str)> {
    let mut parts = path.splitn(5, '/');
    let (Some(""), Some(version), Some(account), Some(container)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if !matches!(version, "v1" | "v1.0") || account.is_empty() || container.is_empty() {
        return None;
    }
    Some((account, container))
}

/// Reads and drops up to [`DRAIN_LIMIT`] more bytes of the body.
async fn drain(body: &mut apus_http::Body) {
    let mut left = DRAIN_LIMIT;
    while left > 0 {
        match body.frame().await {
            Some(Ok(frame)) => {
                let n = frame.data_ref().map_or(0, |d| d.len());
                left = left.saturating_sub(n.max(1));
            }
            _ => break,
        }
    }
}

/// A header value from text that may hold bytes a header cannot:
/// control characters are percent-encoded.
fn lenient_header_value(text: &str) -> HeaderValue {
    if let Ok(v) = HeaderValue::from_bytes(text.as_bytes()) {
        return v;
    }
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_control() {
            escaped.push_str(&format!("%{:02X}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    HeaderValue::from_bytes(escaped.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Translation<'_> {
    /// Reads the whole form, uploading its files.
    async fn read_form(
        &mut self,
        boundary: &[u8],
        body: &mut apus_http::Body,
        input_ended: &mut bool,
    ) -> Result<Outcome, Refusal> {
        let mut reader = MultipartReader::new(boundary).map_err(reader_refusal)?;
        let mut part = Part::Skipped;
        let mut outcome = None;
        loop {
            let event = match reader.next_event() {
                Ok(Some(event)) => event,
                Ok(None) if *input_ended => break,
                Ok(None) => {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                reader.feed(&data);
                            }
                        }
                        Some(Err(_)) => {
                            if let Part::File(upload) = part {
                                upload.abort().await;
                            }
                            return Err(Refusal::Disconnected);
                        }
                        None => {
                            *input_ended = true;
                            reader.finish();
                        }
                    }
                    continue;
                }
                Err(e) => {
                    if let Part::File(upload) = part {
                        upload.abort().await;
                    }
                    return Err(reader_refusal(e));
                }
            };
            match event {
                Event::PartStart(headers) => match self.start_part(&headers).await? {
                    Ok(p) => part = p,
                    Err(stop) => {
                        outcome = Some(stop);
                        break;
                    }
                },
                Event::Data(data) => {
                    if let Some(stop) = self.part_data(&mut part, data).await? {
                        outcome = Some(stop);
                        break;
                    }
                }
                Event::PartEnd => {
                    let done = std::mem::replace(&mut part, Part::Skipped);
                    if let Some(stop) = self.end_part(done).await? {
                        outcome = Some(stop);
                        break;
                    }
                }
                Event::End => break,
            }
        }
        if let Part::File(upload) = part {
            // Stopped inside a file (its PUT failed): nothing waits for it.
            upload.abort().await;
        }
        Ok(match outcome {
            Some(o) => o,
            None => match &self.last {
                Some(answer) => Outcome {
                    status: answer.status,
                    message: "",
                },
                None => Outcome {
                    status: 400,
                    message: "no files to process",
                },
            },
        })
    }

    /// A new part: a file starts its upload, a field starts its value.
    /// `Ok(Err(_))` stops the form with that outcome.
    async fn start_part(
        &mut self,
        headers: &PartHeaders,
    ) -> Result<Result<Part, Outcome>, Refusal> {
        let (disposition, attrs) =
            parse_disposition(headers.get("content-disposition").unwrap_or(""));
        let attr = |name: &str| {
            attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let filename = attr("filename").filter(|f| !f.is_empty());
        match (disposition.as_str(), filename) {
            ("form-data", Some(filename)) => {
                self.file_count += 1;
                let max_count = python_int(self.fields.or("max_file_count", "0"))
                    .ok_or_else(|| Refusal::invalid("max_file_count not an integer"))?;
                if self.file_count > max_count {
                    return Ok(Err(Outcome {
                        status: 400,
                        message: "max file count exceeded",
                    }));
                }
                let mut fields = self.fields.clone();
                if fields.get("content-type").is_none() {
                    if let Some(t) = headers.get("content-type") {
                        let t = if t.is_empty() {
                            "application/octet-stream"
                        } else {
                            t
                        };
                        fields.set("content-type", t.to_string());
                    }
                }
                if fields.get("content-encoding").is_none() {
                    if let Some(e) = headers.get("content-encoding") {
                        fields.set("content-encoding", e.to_string());
                    }
                }
                Ok(Ok(Part::File(self.start_upload(&fields, filename)?)))
            }
            _ => Ok(Ok(match attr("name") {
                Some(name) => Part::Field {
                    name: name.to_lowercase(),
                    value: Vec::new(),
                },
                None => Part::Skipped,
            })),
        }
    }

    /// Checks the form's fields for one file and starts its PUT (Swift's
    /// `_perform_subrequest`, in its order of checks).
    fn start_upload(&self, fields: &Fields, filename: &str) -> Result<Upload, Refusal> {
        if self.keys.is_empty() {
            return Err(Refusal::Unauthorized("invalid signature"));
        }
        let max_file_size = python_int(fields.or("max_file_size", "0"))
            .ok_or_else(|| Refusal::invalid("max_file_size not an integer"))?;
        let mut headers = self.headers.clone();
        let mut path = self.path.clone();
        if !path.ends_with('/') && path.matches('/').count() < 4 {
            path.push('/');
        }
        path.push_str(filename);
        if let Some(v) = fields.get("x_delete_at") {
            let at = python_int(v).ok_or_else(|| {
                Refusal::invalid("x_delete_at not an integer: Unix timestamp required.")
            })?;
            headers.insert("x-delete-at", lenient_header_value(&at.to_string()));
        }
        if let Some(v) = fields.get("x_delete_after") {
            let after = python_int(v).ok_or_else(|| {
                Refusal::invalid("x_delete_after not an integer: Number of seconds required.")
            })?;
            headers.insert("x-delete-after", lenient_header_value(&after.to_string()));
        }
        if let Some(t) = fields.get("content-type") {
            let t = if t.is_empty() {
                "application/octet-stream"
            } else {
                t
            };
            headers.insert(http::header::CONTENT_TYPE, lenient_header_value(t));
        }
        if let Some(e) = fields.get("content-encoding") {
            headers.insert(http::header::CONTENT_ENCODING, lenient_header_value(e));
        }
        let expires = python_int(fields.or("expires", "0"))
            .ok_or_else(|| Refusal::invalid("expired not an integer"))?;
        if expired(expires, apus_core::clock::since_epoch()) {
            return Err(Refusal::Unauthorized("form expired"));
        }
        self.check_signature(fields)?;
        Ok(self.spawn_put(&path, headers, max_file_size))
    }

    fn check_signature(&self, fields: &Fields) -> Result<(), Refusal> {
        let bad = Refusal::Unauthorized("invalid signature");
        let (digest, signature) =
            crate::tempurl::digest_and_signature(fields.get("signature").unwrap_or(""))
                .ok_or(bad.clone())?;
        if !self.filter.config.allowed_digests.contains(&digest) {
            return Err(bad);
        }
        // Every key is tried, so the time taken says nothing of which
        // one matched.
        let mut valid = false;
        for key in &self.keys {
            if let Some(expected) = form_signature(
                &digest,
                key.as_bytes(),
                &self.path,
                fields.or("redirect", ""),
                fields.or("max_file_size", "0"),
                fields.or("max_file_count", "0"),
                fields.or("expires", "0"),
            ) {
                valid |= crate::tempurl::constant_time_eq(&expected, &signature);
            }
        }
        if valid {
            Ok(())
        } else {
            Err(bad)
        }
    }

    /// Starts the PUT of `path`, whose body is what the upload is sent.
    fn spawn_put(&self, path: &str, headers: HeaderMap, max_file_size: i128) -> Upload {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|r| r.map(http_body::Frame::data));
        let body = BodyExt::boxed(http_body_util::StreamBody::new(
            crate::segments::SyncStream::new(stream),
        ));
        let next = self.filter.next.clone();
        let request = build_request(Method::PUT, path, None, headers, self.env.clone(), body);
        let task = tokio::spawn(async move {
            let resp = match request {
                Ok(req) => next.call(req).await,
                Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
            };
            let (parts, body) = resp.into_parts();
            let body = apus_http::body::collect_limited(body, MAX_UPLOAD_ANSWER)
                .await
                .unwrap_or_default();
            Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }
        });
        Upload {
            tx,
            task,
            received: 0,
            max_file_size,
        }
    }

    /// Bytes of the current part: a file's go to its PUT, a field's are
    /// kept up to [`MAX_VALUE_LENGTH`].
    async fn part_data(
        &mut self,
        part: &mut Part,
        data: Bytes,
    ) -> Result<Option<Outcome>, Refusal> {
        match part {
            Part::Skipped => {}
            Part::Field { value, .. } => {
                let room = MAX_VALUE_LENGTH.saturating_sub(value.len());
                value.extend_from_slice(&data[..data.len().min(room)]);
            }
            Part::File(upload) => {
                upload.received = upload.received.saturating_add(data.len() as u64);
                if upload.exceeded() {
                    if let Part::File(upload) = std::mem::replace(part, Part::Skipped) {
                        upload.abort().await;
                    }
                    return Err(Refusal::invalid("max_file_size exceeded"));
                }
                if upload.tx.send(Ok(data)).await.is_err() {
                    // The PUT answered before taking the whole file.
                    if let Part::File(upload) = std::mem::replace(part, Part::Skipped) {
                        return Ok(self.record(upload.finish().await));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The end of a part: a file's PUT is finished, a field is kept.
    async fn end_part(&mut self, part: Part) -> Result<Option<Outcome>, Refusal> {
        match part {
            Part::Skipped => Ok(None),
            Part::Field { name, value } => {
                let text = String::from_utf8_lossy(&value);
                let trimmed = text.trim_end_matches(['\r', '\n', '-']);
                self.fields.set(&name, trimmed.to_string());
                Ok(None)
            }
            Part::File(upload) => {
                if upload.exceeded() {
                    upload.abort().await;
                    return Err(Refusal::invalid("max_file_size exceeded"));
                }
                Ok(self.record(upload.finish().await))
            }
        }
    }

    /// Keeps an upload's answer; a failure stops the form.
    fn record(&mut self, answer: Answer) -> Option<Outcome> {
        let status = answer.status;
        self.last = Some(answer);
        (!(200..300).contains(&status)).then_some(Outcome {
            status,
            message: "",
        })
    }

    /// The answer to the form: a redirect when it named one, else the
    /// status as text (or the failed upload's own answer).
    fn answer(self, outcome: Outcome) -> Resp {
        let Outcome { status, message } = outcome;
        let mut headers = HeaderMap::new();
        if let Some(last) = &self.last {
            for (name, value) in &last.headers {
                if name.as_str().starts_with("access-control") {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let redirect = self.fields.or("redirect", "");
        let body: Bytes = if redirect.is_empty() {
            let mut text = status_text(status);
            if !message.is_empty() {
                text.push_str("\r\nFormPost: ");
                text.push_str(&apus_proto::title_case(message));
            }
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            match self.last {
                Some(last) if !code.is_success() && !last.body.is_empty() => last.body,
                _ => Bytes::from(text),
            }
        } else {
            let location = redirect_location(redirect, status, message);
            let body = format!(
                "<html><body><p><a href=\"{location}\">Click to continue...</a></p></body></html>"
            );
            headers.insert(http::header::LOCATION, lenient_header_value(&location));
            Bytes::from(body)
        };
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let mut resp = Response::new(apus_http::full(body));
        *resp.headers_mut() = headers;
        if redirect.is_empty() {
            *resp.status_mut() = code;
        } else {
            *resp.status_mut() = StatusCode::SEE_OTHER;
            // The redirect goes out as the form gave it.
            resp.extensions_mut().insert(RelativeLocation);
        }
        resp
    }
}

/// `redirect` with `status` and `message` added to its query.
fn redirect_location(redirect: &str, status: u16, message: &str) -> String {
    let joiner = if redirect.contains('?') { '&' } else { '?' };
    format!(
        "{redirect}{joiner}status={}&message={}",
        apus_proto::quote(&status.to_string()),
        apus_proto::quote(message)
    )
}

/// Swift compares `expires` with the current time as a float: a form
/// expiring this very second is still good only at its first instant.
fn expired(expires: i128, now: std::time::Duration) -> bool {
    let secs = i128::from(now.as_secs());
    expires < secs || (expires == secs && now.subsec_nanos() > 0)
}

fn reader_refusal(e: MultipartError) -> Refusal {
    match e {
        MultipartError::InvalidStart | MultipartError::BoundaryTooLong => {
            Refusal::invalid("invalid starting boundary")
        }
        MultipartError::HeadersTooLong => Refusal::invalid("part headers too long"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_as_python_reads_them() {
        assert_eq!(python_int("42"), Some(42));
        assert_eq!(python_int(" -7 "), Some(-7));
        assert_eq!(python_int("+1_000"), Some(1000));
        assert_eq!(python_int("1__0"), None);
        assert_eq!(python_int("_1"), None);
        assert_eq!(python_int("1_"), None);
        assert_eq!(python_int(""), None);
        assert_eq!(python_int("-"), None);
        assert_eq!(python_int("1.5"), None);
        assert_eq!(python_int("0x10"), None);
        assert_eq!(python_int(&"9".repeat(60)), Some(i128::MAX));
    }

    #[test]
    fn only_multipart_forms_with_a_boundary_are_taken() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(v).unwrap(),
            );
            h
        };
        assert_eq!(
            form_boundary(&h("multipart/form-data; boundary=----x")),
            Some(b"----x".to_vec())
        );
        assert_eq!(
            form_boundary(&h("multipart/form-data; boundary=\"a b\"")),
            Some(b"a b".to_vec())
        );
        assert_eq!(form_boundary(&h("multipart/form-data")), None);
        assert_eq!(form_boundary(&h("Multipart/Form-Data; boundary=x")), None);
        assert_eq!(form_boundary(&h("text/plain; boundary=x")), None);
        assert_eq!(form_boundary(&HeaderMap::new()), None);
    }

    #[test]
    fn signing_paths_name_a_container() {
        assert_eq!(signing_container("/v1/a/c"), Some(("a", "c")));
        assert_eq!(signing_container("/v1/a/c/pre/fix"), Some(("a", "c")));
        assert_eq!(signing_container("/v1.0/a/c/"), Some(("a", "c")));
        assert_eq!(signing_container("/v1/a"), None);
        assert_eq!(signing_container("/v1/a/"), None);
        assert_eq!(signing_container("/v2/a/c"), None);
        assert_eq!(signing_container("v1/a/c"), None);
        assert_eq!(signing_container("/v1//c"), None);
    }

    #[test]
    fn redirects_carry_the_outcome() {
        assert_eq!(
            redirect_location("http://x", 201, ""),
            "http://x?status=201&message="
        );
        assert_eq!(
            redirect_location("http://x?a=b", 400, "max file count exceeded"),
            "http://x?a=b&status=400&message=max%20file%20count%20exceeded"
        );
    }

    #[test]
    fn expiry_compares_with_the_clock_s_fraction() {
        let at = |s, n| std::time::Duration::new(s, n);
        assert!(!expired(100, at(99, 999)));
        assert!(!expired(100, at(100, 0)));
        assert!(expired(100, at(100, 1)));
        assert!(expired(-1, at(0, 0)));
    }

    #[test]
    fn fields_keep_only_what_the_filter_reads() {
        let mut f = Fields::default();
        f.set("redirect", "a".into());
        f.set("redirect", "b".into());
        f.set("unrelated", "x".into());
        f.set("max_file_size", String::new());
        assert_eq!(f.get("redirect"), Some("b"));
        assert_eq!(f.get("unrelated"), None);
        assert_eq!(f.or("max_file_size", "0"), "0");
        assert_eq!(f.values.len(), 2);
    }

    #[test]
    fn control_characters_never_reach_a_header() {
        assert_eq!(lenient_header_value("a\r\nb").to_str().unwrap(), "a%0D%0Ab");
        assert_eq!(
            lenient_header_value("text/plain").to_str().unwrap(),
            "text/plain"
        );
    }
}
