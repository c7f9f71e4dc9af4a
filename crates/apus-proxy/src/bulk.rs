//! Bulk operations (Swift's `bulk` middleware).
//!
//! `PUT ?extract-archive=tar|tar.gz|tar.bz2` to an account, container or
//! pseudo-directory stores each regular file of the archive as an object
//! (the first path component is the container when the request names
//! none; containers are created as needed), streaming each file from the
//! request body as it is decompressed and parsed ([`crate::tar`]): the
//! archive is never whole in memory or on disk. Entries with `.` or `..`
//! components are refused; a file cut short by the end of the archive is
//! not stored. Pax `user.meta.*` attributes become object metadata.
//!
//! `?bulk-delete` on a POST
//! or DELETE deletes the objects and containers its body names, one per
//! line (URL-encoded `/container/object` or `/container`, at most
//! `max_deletes_per_request`), objects first, a few at a time, each
//! through the rest of the pipeline with the caller's own rights.
//!
//! The answer is always 200; its body says what happened, in the format
//! the client accepts (plain, json or xml): `Response Status`, `Response
//! Body`, `Number Deleted`, `Number Not Found` and the names that failed
//! with why. A long run sends a space every `yield_frequency` seconds
//! before the result, so that nothing in between times the client out.
//! The deleting is shared with SLO's `?multipart-manifest=delete`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use http_body_util::BodyExt;

use crate::dlo::util::{build_request, query_param, quote_query, subrequest_headers};
use crate::segments::Subrequests;
use crate::service::{env, header_str, BoxFuture, Req, Resp, Service, SharedService};

/// Swift's longest `/container/object` line: the longest names and two
/// slashes.
pub const MAX_PATH_LENGTH: usize = apus_proto::constraints::MAX_OBJECT_NAME_LENGTH
    + apus_proto::constraints::MAX_CONTAINER_NAME_LENGTH
    + 2;

/// The formats results are given in (Swift's `ACCEPTABLE_FORMATS`).
pub const ACCEPTABLE_FORMATS: [&str; 4] = [
    "text/plain",
    "application/json",
    "application/xml",
    "text/xml",
];

/// The `bulk` settings, with Swift's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkConfig {
    pub max_containers_per_extraction: usize,
    pub max_failed_extractions: usize,
    pub max_deletes_per_request: usize,
    pub max_failed_deletes: usize,
    pub yield_frequency: u64,
    pub delete_concurrency: usize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            max_containers_per_extraction: 10_000,
            max_failed_extractions: 1_000,
            max_deletes_per_request: 10_000,
            max_failed_deletes: 1_000,
            yield_frequency: 10,
            delete_concurrency: 2,
        }
    }
}

/// The `/info` entry for `bulk_upload`.
pub fn upload_info(config: &BulkConfig) -> serde_json::Value {
    serde_json::json!({
        "max_containers_per_extraction": config.max_containers_per_extraction,
        "max_failed_extractions": config.max_failed_extractions,
    })
}

/// The `/info` entry for `bulk_delete`.
pub fn delete_info(config: &BulkConfig) -> serde_json::Value {
    serde_json::json!({
        "max_deletes_per_request": config.max_deletes_per_request,
        "max_failed_deletes": config.max_failed_deletes,
    })
}

/// swob's `best_match` of `Accept` among the result formats.
pub(crate) fn out_format(headers: &HeaderMap) -> Option<&'static str> {
    let accept = header_str(headers, "accept").unwrap_or("");
    apus_proto::listing::best_match(accept, &ACCEPTABLE_FORMATS)
        .ok()
        .flatten()
}

/// `"<code> <title>"`, swob's status line text.
pub(crate) fn status_text(status: u16) -> String {
    match apus_proto::status::reason(status) {
        Some((title, _)) => format!("{status} {title}"),
        None => status.to_string(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A bulk-style result body (Swift's `get_heartbeat_response_body`):
/// `fields` and the per-name `errors` as json, xml under `root`, or plain
/// text.
pub(crate) fn result_body(
    format: &str,
    fields: &[(&str, serde_json::Value)],
    errors: &[(String, String)],
    root: &str,
) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if format == "application/json" {
        let mut m = serde_json::Map::new();
        for (k, v) in fields {
            m.insert((*k).to_string(), v.clone());
        }
        m.insert(
            "Errors".into(),
            serde_json::Value::Array(
                errors
                    .iter()
                    .map(|(n, s)| serde_json::json!([n, s]))
                    .collect(),
            ),
        );
        return serde_json::Value::Object(m).to_string();
    }
    let mut sorted: Vec<&(&str, serde_json::Value)> = fields.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut out = String::new();
    if format.ends_with("/xml") {
        out.push_str(&format!("<{root}>\n"));
        for (k, v) in sorted {
            let key = k.replace(' ', "_").to_lowercase();
            out.push_str(&format!("<{key}>{}</{key}>\n", xml_escape(&text(v))));
        }
        out.push_str("<errors>\n");
        for (name, status) in errors {
            out.push_str(&format!(
                "<object><name>{}</name><status>{}</status></object>\n",
                xml_escape(name),
                xml_escape(status)
            ));
        }
        out.push_str(&format!("</errors>\n</{root}>\n"));
        return out;
    }
    for (k, v) in sorted {
        out.push_str(&format!("{k}: {}\n", text(v)));
    }
    out.push_str("Errors:\n");
    for (name, status) in errors {
        out.push_str(&format!("{name}, {status}\n"));
    }
    out
}

/// A name to delete (`/container/object` or `/container`), or why it
/// cannot be (`(status, message)`, reported without a request).
pub(crate) struct ToDelete {
    pub name: String,
    pub error: Option<(u16, String)>,
    /// Delete this version of the object (object versioning), not the
    /// object.
    pub version_id: Option<String>,
}

/// What deleting a list of names came to.
#[derive(Default)]
pub(crate) struct Deleted {
    pub deleted: u64,
    pub not_found: u64,
    /// Quoted names and why they were not deleted.
    pub errors: Vec<(String, String)>,
    /// A name failed with a server error (Swift then answers 502).
    pub server_error: bool,
    /// The run stopped at `max_failed` failures.
    pub aborted: bool,
}

impl Deleted {
    /// The result fields Swift reports, with `problem` (status, body)
    /// overriding the outcome when the request itself failed.
    pub(crate) fn fields(
        &self,
        problem: Option<(u16, String)>,
    ) -> Vec<(&'static str, serde_json::Value)> {
        let (status, body) = match problem {
            Some((code, body)) => (status_text(code), body),
            None if self.aborted => (status_text(400), "Max delete failures exceeded".into()),
            None if !self.errors.is_empty() => (
                status_text(if self.server_error { 502 } else { 400 }),
                String::new(),
            ),
            None if self.deleted == 0 && self.not_found == 0 => {
                (status_text(400), "Invalid bulk delete.".into())
            }
            None => (status_text(200), String::new()),
        };
        vec![
            ("Response Status", serde_json::Value::String(status)),
            ("Response Body", serde_json::Value::String(body)),
            ("Number Deleted", serde_json::Value::from(self.deleted)),
            ("Number Not Found", serde_json::Value::from(self.not_found)),
        ]
    }
}

/// Deletes `items` (objects before containers), `concurrency` at a time,
/// through `sub.next`, stopping after `max_failed` failures.
pub(crate) async fn delete_all(
    sub: &Subrequests,
    items: Vec<ToDelete>,
    concurrency: usize,
    max_failed: usize,
) -> Deleted {
    let mut out = Deleted::default();
    let (objects, containers): (Vec<ToDelete>, Vec<ToDelete>) = items
        .into_iter()
        .filter(|i| !i.name.is_empty())
        .partition(|i| i.name.trim_matches('/').contains('/'));
    for group in [objects, containers] {
        let mut todo = Vec::new();
        for item in group {
            match item.error {
                Some((404, _)) => out.not_found += 1,
                Some((_, message)) => out.errors.push((apus_proto::quote(&item.name), message)),
                None => todo.push((item.name, item.version_id)),
            }
        }
        let mut results = stream::iter(todo.into_iter().map(|(name, version_id)| async move {
            let path = format!(
                "/{}/{}/{}",
                sub.version,
                sub.account,
                name.trim_start_matches('/')
            );
            let query = version_id.map(|v| format!("version-id={}", quote_query(&v)));
            let status = match build_request(
                Method::DELETE,
                &path,
                query.as_deref(),
                sub.headers.clone(),
                sub.env.clone(),
                apus_http::empty(),
            ) {
                Ok(r) => sub.next.call(r).await.status().as_u16(),
                Err(_) => 412,
            };
            (name, status)
        }))
        .buffered(concurrency.max(1));
        while let Some((name, status)) = results.next().await {
            match status {
                200..=299 => out.deleted += 1,
                404 => out.not_found += 1,
                _ => {
                    out.server_error |= status >= 500;
                    out.errors
                        .push((apus_proto::quote(&name), status_text(status)));
                }
            }
            if out.errors.len() >= max_failed {
                out.aborted = true;
                // The deletes in flight finish; none start.
                while let Some((_, status)) = results.next().await {
                    if (200..300).contains(&status) {
                        out.deleted += 1;
                    }
                }
                return out;
            }
        }
    }
    out
}

/// A 200 whose body is `work`'s text, after a space every `every` while
/// it runs (Swift's heartbeat: the first is `first`, then spaces, and the
/// result follows `\r\n\r\n` once anything was sent).
pub(crate) fn heartbeat_response(
    format: Option<&'static str>,
    every: Duration,
    first: &'static [u8],
    work: BoxFuture<'static, String>,
) -> Resp {
    let body = stream::unfold(Some((work, false)), move |state| async move {
        let (mut work, sent) = state?;
        tokio::select! {
            text = &mut work => {
                let sep = if sent { "\r\n\r\n" } else { "" };
                Some((Bytes::from(format!("{sep}{text}")), None))
            }
            () = tokio::time::sleep(every) => {
                let chunk = if sent { Bytes::from_static(b" ") } else { Bytes::from_static(first) };
                Some((chunk, Some((work, true))))
            }
        }
    });
    let body = crate::segments::SyncStream::new(body.map(|b| Ok(http_body::Frame::data(b))));
    let mut resp = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(body)));
    if let Some(f) = format {
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(f));
    }
    resp
}

pub struct Bulk {
    next: SharedService,
    config: Arc<BulkConfig>,
}

impl Bulk {
    pub fn new(next: SharedService, config: BulkConfig) -> Self {
        Bulk {
            next,
            config: Arc::new(config),
        }
    }
}

impl Service for Bulk {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        if req.method() == Method::PUT {
            if let Some(value) = query_param(req.uri().query(), "extract-archive") {
                return match archive_kind(&value) {
                    Some(kind) => Box::pin(self.extract(req, kind)),
                    None => Box::pin(async {
                        crate::service::error_response(
                            http::StatusCode::BAD_REQUEST,
                            Some("Unsupported archive format"),
                        )
                    }),
                };
            }
        }
        let bulk_delete = query_param(req.uri().query(), "bulk-delete").is_some();
        if bulk_delete && (req.method() == Method::POST || req.method() == Method::DELETE) {
            return Box::pin(self.bulk_delete(req));
        }
        self.next.call(req)
    }
}

/// Why reading the names failed: (status, body).
type Problem = (u16, String);

/// The names a bulk-delete body lists, read line by line as they arrive.
async fn read_names(body: apus_http::Body, max_deletes: usize) -> Result<Vec<ToDelete>, Problem> {
    let mut body = body;
    let mut line = BytesMut::new();
    let mut names = Vec::new();
    let push = |raw: &[u8], names: &mut Vec<ToDelete>| -> Result<(), Problem> {
        let trimmed = String::from_utf8_lossy(raw).trim().to_string();
        if trimmed.is_empty() {
            return Ok(());
        }
        let item = match apus_proto::percent_decode(&trimmed) {
            Ok(name) if !name.contains('\0') => ToDelete {
                name,
                error: None,
                version_id: None,
            },
            _ => ToDelete {
                name: trimmed,
                error: Some((412, status_text(412))),
                version_id: None,
            },
        };
        names.push(item);
        if names.len() > max_deletes {
            return Err((
                413,
                format!("Maximum Bulk Deletes: {max_deletes} per request"),
            ));
        }
        Ok(())
    };
    loop {
        while let Some(nl) = line.iter().position(|b| *b == b'\n') {
            let raw = line.split_to(nl + 1);
            push(&raw[..nl], &mut names)?;
        }
        if line.len() > MAX_PATH_LENGTH * 2 {
            return Err((400, "Invalid File Name".into()));
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    line.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => return Err((499, status_text(499))),
            None => break,
        }
    }
    push(&line, &mut names)?;
    Ok(names)
}

impl Bulk {
    async fn bulk_delete(&self, req: Req) -> Resp {
        let format = out_format(req.headers());
        let (version, account) = match apus_proto::percent_decode_internal(req.uri().path())
            .ok()
            .and_then(|p| apus_proto::split_path(&p, 2, 3, true).ok())
        {
            Some(parts) => (
                parts[0].clone().unwrap_or_default(),
                parts[1].clone().unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        let sub = Subrequests {
            next: self.next.clone(),
            env: env(&req).subrequest("BD"),
            headers: subrequest_headers(req.headers(), "BulkDelete", &["x-auth-token"]),
            version,
            account,
        };
        let chunked = header_str(req.headers(), "transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let has_length = req.headers().contains_key(http::header::CONTENT_LENGTH);
        let incoming = header_str(req.headers(), "content-type").map(str::to_string);
        let config = self.config.clone();
        let body = req.into_body();
        let format_text = format.unwrap_or("text/plain");
        let problem = if format.is_none()
            || incoming
                .as_deref()
                .is_some_and(|c| !c.is_empty() && !c.starts_with("text/plain"))
        {
            Some((
                406,
                apus_proto::status::default_body(406, None).unwrap_or_default(),
            ))
        } else if sub.account.is_empty() {
            Some((
                404,
                apus_proto::status::default_body(404, None).unwrap_or_default(),
            ))
        } else if !has_length && !chunked {
            Some((
                411,
                apus_proto::status::default_body(411, None).unwrap_or_default(),
            ))
        } else {
            None
        };
        // The names are read before the answer starts: a client that sent
        // `Expect: 100-continue` sends its body only while no final answer
        // has come (as Swift, which answers once it has read them).
        let names = match problem {
            Some(p) => Err(p),
            None => read_names(body, config.max_deletes_per_request).await,
        };
        let work: BoxFuture<'static, String> = Box::pin(async move {
            let (outcome, problem) = match names {
                Ok(items) => (
                    delete_all(
                        &sub,
                        items,
                        config.delete_concurrency,
                        config.max_failed_deletes,
                    )
                    .await,
                    None,
                ),
                Err(p) => (Deleted::default(), Some(p)),
            };
            result_body(
                format_text,
                &outcome.fields(problem),
                &outcome.errors,
                "delete",
            )
        });
        let first: &'static [u8] = if format_text.ends_with("/xml") {
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        } else {
            b" "
        };
        heartbeat_response(
            format,
            Duration::from_secs(self.config.yield_frequency.max(1)),
            first,
            work,
        )
    }
}

/// `?extract-archive=` values and the compression each means.
fn archive_kind(value: &str) -> Option<&'static str> {
    match value.to_lowercase().trim_matches('.') {
        "tar" => Some(""),
        "tar.gz" => Some("gz"),
        "tar.bz2" => Some("bz2"),
        _ => None,
    }
}

/// The object being written from the archive.
struct Upload {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    task: tokio::task::JoinHandle<u16>,
    path: String,
    container: String,
    container_failure: Option<(String, String)>,
}

/// What an extraction has come to so far.
struct Extraction {
    created: u64,
    failed: Vec<(String, String)>,
    server_error: bool,
    containers_seen: std::collections::HashSet<String>,
    containers_created: usize,
}

/// The quoted name Swift reports, cut at the longest path.
fn reported(path: &str) -> String {
    let cut: String = path.chars().take(MAX_PATH_LENGTH).collect();
    apus_proto::quote(&cut)
}

impl Bulk {
    async fn extract(&self, req: Req, kind: &'static str) -> Resp {
        let format = out_format(req.headers());
        let format_text = format.unwrap_or("text/plain");
        let chunked = header_str(req.headers(), "transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let has_length = req.headers().contains_key(http::header::CONTENT_LENGTH);
        let split = apus_proto::percent_decode_internal(req.uri().path())
            .ok()
            .and_then(|p| apus_proto::split_path(&p, 2, 3, true).ok());
        let (version, account, base) = match &split {
            Some(parts) => (
                parts[0].clone().unwrap_or_default(),
                parts[1].clone().unwrap_or_default(),
                parts.get(2).cloned().flatten().unwrap_or_default(),
            ),
            None => Default::default(),
        };
        // Headers every extracted object gets from the request.
        let mut object_headers = HeaderMap::new();
        for (k, v) in req.headers() {
            let name = k.as_str();
            if name == "x-delete-at"
                || name == "x-delete-after"
                || name.starts_with("x-object-meta-")
            {
                object_headers.append(k.clone(), v.clone());
            }
        }
        let sub = Subrequests {
            next: self.next.clone(),
            env: env(&req).subrequest("EA"),
            headers: subrequest_headers(req.headers(), "BulkExpand", &["x-auth-token"]),
            version,
            account,
        };
        let config = self.config.clone();
        let mut body = req.into_body();
        // Reading the first of the body before answering lets a client
        // that sent `Expect: 100-continue` start sending it.
        let first = body.frame().await;
        let work: BoxFuture<'static, String> = Box::pin(async move {
            let problem = if format.is_none() {
                Some((
                    406,
                    apus_proto::status::default_body(406, None).unwrap_or_default(),
                ))
            } else if !has_length && !chunked {
                Some((
                    411,
                    apus_proto::status::default_body(411, None).unwrap_or_default(),
                ))
            } else if split.is_none() || sub.account.is_empty() {
                Some((
                    404,
                    apus_proto::status::default_body(404, None).unwrap_or_default(),
                ))
            } else {
                None
            };
            let mut state = Extraction {
                created: 0,
                failed: Vec::new(),
                server_error: false,
                containers_seen: Default::default(),
                containers_created: 0,
            };
            let problem = match problem {
                Some(p) => Some(p),
                None => extract_archive(
                    first,
                    &sub,
                    &config,
                    body,
                    kind,
                    base.trim_end_matches('/'),
                    &object_headers,
                    &mut state,
                )
                .await
                .err(),
            };
            let (status, message) = match problem {
                Some((code, text)) => (status_text(code), text),
                None if !state.failed.is_empty() => (
                    status_text(if state.server_error { 502 } else { 400 }),
                    String::new(),
                ),
                None if state.created == 0 => (
                    status_text(400),
                    "Invalid Tar File: No Valid Files".to_string(),
                ),
                None => (status_text(201), String::new()),
            };
            let fields = [
                ("Response Status", serde_json::Value::String(status)),
                ("Response Body", serde_json::Value::String(message)),
                (
                    "Number Files Created",
                    serde_json::Value::from(state.created),
                ),
            ];
            result_body(format_text, &fields, &state.failed, "extract")
        });
        let first: &'static [u8] = if format_text.ends_with("/xml") {
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        } else {
            b" "
        };
        let every = Duration::from_secs(self.config.yield_frequency.max(1));
        heartbeat_response(format, every, first, work)
    }
}

/// Makes sure `container` exists: `Ok(true)` when it was created here.
async fn ensure_container(sub: &Subrequests, container: &str) -> Result<bool, u16> {
    let path = format!("/{}/{}/{container}", sub.version, sub.account);
    let call = |method: Method| {
        build_request(
            method,
            &path,
            None,
            sub.headers.clone(),
            sub.env.clone(),
            apus_http::empty(),
        )
    };
    let head = match call(Method::HEAD) {
        Ok(r) => sub.next.call(r).await.status().as_u16(),
        Err(_) => return Err(412),
    };
    if (200..300).contains(&head) {
        return Ok(false);
    }
    if head != 404 {
        return Err(head);
    }
    let put = match call(Method::PUT) {
        Ok(r) => sub.next.call(r).await.status().as_u16(),
        Err(_) => return Err(412),
    };
    if (200..300).contains(&put) {
        Ok(true)
    } else {
        Err(put)
    }
}

/// Streams the archive in `body` into objects under `base`. `Err` ends
/// the whole extraction with (status, body).
#[allow(clippy::too_many_arguments)]
async fn extract_archive(
    mut first: Option<Result<http_body::Frame<Bytes>, std::io::Error>>,
    sub: &Subrequests,
    config: &BulkConfig,
    mut body: apus_http::Body,
    kind: &str,
    base: &str,
    object_headers: &HeaderMap,
    state: &mut Extraction,
) -> Result<(), Problem> {
    let mut decoder =
        crate::tar::Decoder::new(kind).ok_or((400, "Unsupported archive format".to_string()))?;
    let mut reader = crate::tar::TarReader::new();
    let mut upload: Option<Upload> = None;
    let invalid = |e: crate::tar::TarError| (400, format!("Invalid Tar File: {e}"));
    let mut ended = false;
    loop {
        let frame = match first.take() {
            Some(f) => Some(f),
            None => body.frame().await,
        };
        let input = match frame {
            Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
            Some(Err(_)) => {
                abort_upload(&mut upload).await;
                return Err((499, status_text(499)));
            }
            None => Bytes::new(),
        };
        let last = input.is_empty();
        let pieces: Vec<Bytes> = if last {
            vec![Bytes::new()]
        } else {
            (0..input.len())
                .step_by(1024)
                .map(|i| input.slice(i..(i + 1024).min(input.len())))
                .collect()
        };
        for piece in pieces {
            let fed = if last {
                decoder.finish(&mut |b| {
                    reader.push(b);
                    Ok(())
                })
            } else {
                decoder.feed(&piece, &mut |b| {
                    reader.push(b);
                    Ok(())
                })
            };
            if let Err(e) = fed {
                abort_upload(&mut upload).await;
                return Err(invalid(e));
            }
            if last {
                reader.finish();
            }
            loop {
                let event = match reader.next_event() {
                    Ok(Some(e)) => e,
                    Ok(None) => break,
                    Err(e) => {
                        abort_upload(&mut upload).await;
                        return Err(invalid(e));
                    }
                };
                match event {
                    crate::tar::Event::End => {
                        ended = true;
                        break;
                    }
                    crate::tar::Event::File { path, size, pax } => {
                        upload = start_upload(
                            sub,
                            config,
                            base,
                            object_headers,
                            state,
                            path,
                            size,
                            &pax,
                        )
                        .await?;
                    }
                    crate::tar::Event::Data(data) => {
                        if let Some(u) = &upload {
                            // A PUT that already ended leaves the rest unread.
                            let _ = u.tx.send(Ok(data)).await;
                        }
                    }
                    crate::tar::Event::FileEnd => {
                        if let Some(u) = upload.take() {
                            finish_upload(u, state).await?;
                        }
                    }
                }
                if state.failed.len() >= config.max_failed_extractions {
                    return Ok(());
                }
            }
            if ended {
                // What follows the end marker is padding (tar fills its
                // last record): read it, so that a client still sending it
                // is not cut off, but not without bound.
                let mut left: usize = 1 << 20;
                while left > 0 {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            let n = frame.data_ref().map_or(0, |d| d.len());
                            left = left.saturating_sub(n.max(1));
                        }
                        _ => break,
                    }
                }
                return Ok(());
            }
        }
        if last {
            // The archive ended without its end marker: what was
            // complete stays; tar accepts this too.
            abort_upload(&mut upload).await;
            return Ok(());
        }
    }
}

/// Ends an upload in progress with an error, so nothing partial is stored.
async fn abort_upload(upload: &mut Option<Upload>) {
    if let Some(u) = upload.take() {
        let _ =
            u.tx.send(Err(std::io::Error::other(
                "the archive ended inside this file",
            )))
            .await;
        drop(u.tx);
        let _ = u.task.await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn start_upload(
    sub: &Subrequests,
    config: &BulkConfig,
    base: &str,
    object_headers: &HeaderMap,
    state: &mut Extraction,
    raw_path: Vec<u8>,
    size: u64,
    pax: &[(String, String)],
) -> Result<Option<Upload>, Problem> {
    let lossy = String::from_utf8_lossy(&raw_path).into_owned();
    let Ok(mut path) = String::from_utf8(raw_path) else {
        state.failed.push((reported(&lossy), status_text(412)));
        return Ok(None);
    };
    if let Some(rest) = path.strip_prefix("./") {
        path = rest.to_string();
    }
    let mut path = path.trim_start_matches('/').to_string();
    if !base.is_empty() {
        path = format!("{base}/{path}");
    }
    if !path.contains('/') {
        // A file at the top of an archive extracted into an account.
        return Ok(None);
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        state.failed.push((reported(&path), status_text(400)));
        return Ok(None);
    }
    if path.contains('\0') {
        state.failed.push((reported(&path), status_text(412)));
        return Ok(None);
    }
    if size > apus_proto::constraints::MAX_FILE_SIZE {
        state.failed.push((reported(&path), status_text(413)));
        return Ok(None);
    }
    let container = path.split('/').next().unwrap_or("").to_string();
    let mut container_failure = None;
    if !state.containers_seen.contains(&container) {
        match ensure_container(sub, &container).await {
            Ok(true) => {
                state.containers_created += 1;
                if state.containers_created > config.max_containers_per_extraction {
                    return Err((
                        400,
                        format!(
                            "More than {} containers to create from tar.",
                            config.max_containers_per_extraction
                        ),
                    ));
                }
            }
            Ok(false) => {}
            Err(401) => {
                return Err((
                    401,
                    apus_proto::status::default_body(401, None).unwrap_or_default(),
                ))
            }
            Err(code) => {
                let cont_path = format!("/{}/{}/{container}", sub.version, sub.account);
                container_failure = Some((reported(&cont_path), status_text(code)));
            }
        }
    }
    let mut headers = sub.headers.clone();
    for (k, v) in object_headers {
        headers.append(k.clone(), v.clone());
    }
    for (key, value) in pax {
        if let Some(name) = crate::tar::pax_key_to_header(key) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
    }
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(size));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let stream = stream::poll_fn(move |cx| rx.poll_recv(cx)).map(|r| r.map(http_body::Frame::data));
    let body = BodyExt::boxed(http_body_util::StreamBody::new(
        crate::segments::SyncStream::new(stream),
    ));
    let destination = format!("/{}/{}/{path}", sub.version, sub.account);
    let next = sub.next.clone();
    let task = match build_request(
        Method::PUT,
        &destination,
        None,
        headers,
        sub.env.clone(),
        body,
    ) {
        Ok(req) => tokio::spawn(async move { next.call(req).await.status().as_u16() }),
        Err(_) => tokio::spawn(async { 412 }),
    };
    Ok(Some(Upload {
        tx,
        task,
        path,
        container,
        container_failure,
    }))
}

async fn finish_upload(u: Upload, state: &mut Extraction) -> Result<(), Problem> {
    drop(u.tx);
    let status = u.task.await.unwrap_or(500);
    state.containers_seen.insert(u.container);
    if (200..300).contains(&status) {
        state.created += 1;
        return Ok(());
    }
    if let Some(f) = u.container_failure {
        state.failed.push(f);
    }
    state.failed.push((reported(&u.path), status_text(status)));
    if status == 401 {
        return Err((
            401,
            apus_proto::status::default_body(401, None).unwrap_or_default(),
        ));
    }
    state.server_error |= status >= 500;
    Ok(())
}
