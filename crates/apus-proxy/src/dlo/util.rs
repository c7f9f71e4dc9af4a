//! Small request helpers shared by the middleware that issue subrequests
//! (`dlo` and `copy`): query strings, Swift's lenient unquoting, and
//! building a subrequest with an [`Env`].

use apus_http::Body;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Request};

use crate::service::{Env, Req, Resp};

/// The request headers Swift's `make_subrequest` carries over from the
/// client request (besides the ones a middleware passes explicitly).
const CARRIED_HEADERS: [&str; 7] = [
    "user-agent",
    "host",
    "origin",
    "access-control-request-method",
    "x-user-id",
    "x-project-id",
    "referer",
];

/// Percent-decodes `s` as Python's `unquote` does (a `%` not followed by
/// two hex digits stays; `+` stays); bytes that are not UTF-8 become
/// U+FFFD.
pub(crate) fn unquote(s: &str) -> String {
    String::from_utf8_lossy(&unquote_bytes(s, false)).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unquote_bytes(s: &str, plus_is_space: bool) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// Quotes a query-string value: everything but `A-Z a-z 0-9 _ . - ~ /`.
pub(crate) fn quote_query(s: &str) -> String {
    apus_proto::quote(s)
}

/// The `name=value` pairs of a query string, decoded as Python's
/// `parse_qsl(keep_blank_values=True)` does.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                String::from_utf8_lossy(&unquote_bytes(k, true)).into_owned(),
                String::from_utf8_lossy(&unquote_bytes(v, true)).into_owned(),
            )
        })
        .collect()
}

/// The value of query parameter `name` (the last one when repeated, as
/// swob's `params` dict has it).
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    parse_query(query)
        .into_iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Re-encodes decoded query pairs.
pub(crate) fn build_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", quote_query(k), quote_query(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The decoded path of `req` split as `/<version>/<account>/<container>/<object>`,
/// or `None` when it is not an object path.
pub(crate) fn object_path(req: &Req) -> Option<[String; 4]> {
    let decoded = apus_proto::percent_decode_internal(req.uri().path()).ok()?;
    let parts = apus_proto::split_path(&decoded, 4, 4, true).ok()?;
    let mut it = parts.into_iter();
    let v = it.next()??;
    let a = it.next()??;
    let c = it.next()??;
    let o = it.next()??;
    Some([v, a, c, o])
}

/// Headers for a subrequest made on behalf of a client request with
/// `orig` headers: the ones Swift carries over, the user agent marked
/// with `agent_suffix`, and `extra` (copied when present in `orig`).
pub(crate) fn subrequest_headers(
    orig: &HeaderMap,
    agent_suffix: &str,
    extra: &[&str],
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in CARRIED_HEADERS.iter().chain(extra.iter()) {
        if let Some(v) = orig.get(*name) {
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                headers.insert(n, v.clone());
            }
        }
    }
    if !agent_suffix.is_empty() {
        let orig_agent = orig
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let agent = format!("{orig_agent} {agent_suffix}");
        if let Ok(v) = HeaderValue::from_str(agent.trim()) {
            headers.insert(http::header::USER_AGENT, v);
        }
    }
    headers
}

/// Builds a subrequest for the decoded `path` (quoted here) with an
/// already encoded `query` (quoting makes an invalid URI impossible in
/// practice; callers answer 500 if it happens).
pub(crate) fn build_request(
    method: Method,
    path: &str,
    query: Option<&str>,
    headers: HeaderMap,
    env: Env,
    body: Body,
) -> Result<Req, http::Error> {
    let mut uri = apus_proto::quote(path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(q);
    }
    let mut req = Request::builder().method(method).uri(uri).body(body)?;
    *req.headers_mut() = headers;
    req.extensions_mut().insert(env);
    Ok(req)
}

/// The body's length from `Content-Length`, else from an exact size hint.
pub(crate) fn content_length(resp: &Resp) -> Option<u64> {
    match resp.headers().get(http::header::CONTENT_LENGTH) {
        Some(v) => v.to_str().ok()?.trim().parse().ok(),
        None => http_body::Body::size_hint(resp.body()).exact(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoting_like_python() {
        assert_eq!(unquote("c/%C3%A9"), "c/é");
        assert_eq!(unquote("a%2"), "a%2");
        assert_eq!(unquote("a%zz+b"), "a%zz+b");
        assert_eq!(unquote("%"), "%");
        assert_eq!(unquote("%41"), "A");
    }

    #[test]
    fn queries() {
        let q = Some("multipart-manifest=get&a=b+c&flag&x=%2F");
        assert_eq!(query_param(q, "multipart-manifest").as_deref(), Some("get"));
        assert_eq!(query_param(q, "a").as_deref(), Some("b c"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "x").as_deref(), Some("/"));
        assert_eq!(query_param(None, "x"), None);
        let pairs = parse_query(Some("prefix=a%20b&marker=z"));
        assert_eq!(build_query(&pairs), "prefix=a%20b&marker=z");
    }
}
