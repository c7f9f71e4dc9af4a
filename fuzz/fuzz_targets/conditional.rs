//! Conditional requests (apus-core `conditional`): ETag lists and HTTP
//! dates parse or are ignored, never a panic. A parsed date formats back
//! to the same second, every listed tag matches its quoted form, and a
//! request's conditions evaluate to nothing, 304 or 412.
#![no_main]

use apus_core::conditional::{format_http_date, parse_http_date, Conditions, EtagList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(secs) = parse_http_date(text) {
        let formatted = format_http_date(secs);
        assert_eq!(parse_http_date(&formatted), Some(secs), "{formatted}");
    }
    let list = EtagList::parse(text);
    for tag in list.tags() {
        assert!(list.contains(&format!("\"{tag}\"")), "{tag:?}");
    }
    // Lines are If-Match, If-None-Match, If-Modified-Since,
    // If-Unmodified-Since, then the object's ETag and Last-Modified.
    let mut lines = text.split('\n');
    let mut next = || lines.next().filter(|l| !l.is_empty());
    let (im, inm, ims, ius) = (next(), next(), next(), next());
    let etag = next();
    let last_modified = next().and_then(parse_http_date);
    let conditions = Conditions::from_headers(|name| match name {
        "if-match" => im,
        "if-none-match" => inm,
        "if-modified-since" => ims,
        "if-unmodified-since" => ius,
        _ => None,
    });
    for found in [false, true] {
        let status = conditions.evaluate(found, etag, last_modified);
        assert!(matches!(status, None | Some(304) | Some(412)), "{status:?}");
    }
});
