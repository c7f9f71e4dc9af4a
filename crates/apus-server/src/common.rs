//! Helpers every storage server shares: header access and responses.

// Handlers return early with a ready response; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::borrow::Cow;

use apus_core::Timestamp;
use apus_http::{empty, full, Body};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

/// A request header as text (first value; invalid UTF-8 replaced).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// True when the header is present with a truthy value (`config_true_value`).
pub fn header_true(headers: &HeaderMap, name: &str) -> bool {
    header(headers, name).is_some_and(|v| apus_proto::headers::is_true(&v))
}

/// The request's `X-Timestamp`, as Swift's `valid_timestamp`: 400 with
/// Swift's message when missing or invalid.
pub fn valid_timestamp(headers: &HeaderMap) -> Result<Timestamp, Response<Body>> {
    match header(headers, apus_proto::headers::X_TIMESTAMP) {
        None => Err(text_response(400, "Missing X-Timestamp header")),
        Some(v) => {
            Timestamp::parse(v.trim()).map_err(|_| text_response(400, "Invalid X-Timestamp header"))
        }
    }
}

/// Python's `int()` on a header value: surrounding whitespace, an
/// optional sign, ASCII digits.
pub fn py_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A response with `status` and swob's default body for it (none for 2xx
/// and 3xx).
pub fn status_response(status: u16) -> Response<Body> {
    match apus_proto::status::default_body(status, None) {
        Some(text) => html_response(status, &text),
        None => {
            let mut resp = Response::new(empty());
            *resp.status_mut() = status_code(status);
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
            resp
        }
    }
}

fn html_response(status: u16, text: &str) -> Response<Body> {
    let mut resp = Response::new(full(text.to_string()));
    *resp.status_mut() = status_code(status);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(apus_proto::status::DEFAULT_BODY_CONTENT_TYPE),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    resp
}

/// A `text/plain` response with an explanation, as Swift's servers send
/// for constraint failures.
pub fn text_response(status: u16, text: &str) -> Response<Body> {
    let mut resp = Response::new(full(text.to_string()));
    *resp.status_mut() = status_code(status);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    resp
}

/// 507 naming the drive, as swob's `HTTPInsufficientStorage(drive=...)`.
pub fn insufficient_storage(device: &str) -> Response<Body> {
    let text = apus_proto::status::default_body(507, Some(device)).unwrap_or_default();
    html_response(507, &text)
}

/// Sets a response header, skipping names or values HTTP cannot carry.
pub fn set_header(headers: &mut HeaderMap, name: &str, value: &str) {
    set_header_bytes(headers, name, value.as_bytes());
}

/// [`set_header`] with a value that is bytes (stored object metadata
/// need not be UTF-8).
pub fn set_header_bytes(headers: &mut HeaderMap, name: &str, value: &[u8]) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value),
    ) {
        headers.insert(n, v);
    }
}
