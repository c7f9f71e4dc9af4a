//! Listing parameters (apus-proto `listing`): the query string
//! (`marker`, `end_marker`, `prefix`, `delimiter`, `path`, `limit`,
//! `format`, ...), `limit`, and the negotiation of the output format from
//! `format=` and `Accept`, as the storage servers and the proxy (for the
//! listings it answers itself) read them. Nothing panics; a limit is
//! within the maximum; a negotiated type is one offered; and the servers
//! and the proxy decide the same for the same request.
#![no_main]

use apus_proto::listing::{best_match, Query};
use apus_server::db_common::{self, LISTING_LIMIT};
use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const OFFERED: [&str; 4] = [
    "text/plain",
    "application/json",
    "application/xml",
    "text/xml",
];

fuzz_target!(|data: &[u8]| {
    // The query string, then a newline and the Accept header.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (query_text, accept) = match text.split_once('\n') {
        Some((q, a)) => (q, Some(a)),
        None => (text, None),
    };
    let query = Query::parse(Some(query_text));
    for name in [
        "marker",
        "end_marker",
        "prefix",
        "delimiter",
        "path",
        "format",
        "reverse",
    ] {
        if let Ok(Some(value)) = query.get(name) {
            // What a server hands on to the database is text.
            assert!(std::str::from_utf8(value.as_bytes()).is_ok());
        }
    }
    if let Ok(limit) = query.limit(LISTING_LIMIT) {
        assert!(limit <= LISTING_LIMIT);
    }
    if let Some(accept) = accept {
        if let Ok(Some(chosen)) = best_match(accept, &OFFERED) {
            assert!(OFFERED.contains(&chosen));
        }
    }

    let mut headers = HeaderMap::new();
    if let Some(v) = accept.and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.insert(ACCEPT, v);
    }
    let server = db_common::listing_format(&query, &headers);
    if matches!(query.get("format"), Ok(Some(f)) if !f.is_empty()) {
        assert!(server.is_ok(), "format={:?}", query.get("format"));
    }

    let mut req = http::Request::builder().uri(format!("/v1/AUTH_a?{query_text}"));
    if let Some(v) = headers.get(ACCEPT) {
        req = req.header(ACCEPT, v);
    }
    let Ok(req) = req.body(apus_http::empty()) else {
        return;
    };
    if req.uri().query() != Some(query_text) {
        return;
    }
    match (server, apus_proxy::account::listing_format(&req)) {
        (Ok(s), Ok(p)) => assert_eq!(s, p, "{query_text:?} {accept:?}"),
        (Err(s), Err(p)) => assert_eq!(s.status.as_u16(), p.http_status()),
        (s, p) => panic!("server {s:?}, proxy {p:?} for {query_text:?} {accept:?}"),
    }
});
