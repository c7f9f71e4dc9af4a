//! Bulk operations (Swift's `bulk` middleware): `?bulk-delete` on a POST
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
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body_util::BodyExt;

use crate::dlo::util::{build_request, query_param, subrequest_headers};
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
    pub max_deletes_per_request: usize,
    pub max_failed_deletes: usize,
    pub yield_frequency: u64,
    pub delete_concurrency: usize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            max_deletes_per_request: 10_000,
            max_failed_deletes: 1_000,
            yield_frequency: 10,
            delete_concurrency: 2,
        }
    }
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
                None => todo.push(item.name),
            }
        }
        let mut results = stream::iter(todo.into_iter().map(|name| async move {
            let path = format!(
                "/{}/{}/{}",
                sub.version,
                sub.account,
                name.trim_start_matches('/')
            );
            let status = match build_request(
                Method::DELETE,
                &path,
                None,
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
    let body = crate::dlo::SyncStream::new(body.map(|b| Ok(http_body::Frame::data(b))));
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
            Ok(name) if !name.contains('\0') => ToDelete { name, error: None },
            _ => ToDelete {
                name: trimmed,
                error: Some((412, status_text(412))),
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
        let (version, account) = match apus_proto::percent_decode(req.uri().path())
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
        let work: BoxFuture<'static, String> = Box::pin(async move {
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
            let (outcome, problem) = match problem {
                Some(p) => (Deleted::default(), Some(p)),
                None => match read_names(body, config.max_deletes_per_request).await {
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
                },
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
