//! S3 request authentication (apus-s3): any method, URI and headers are
//! read or refused, never a panic. Input: first line the method, second
//! the request target, then `name: value` header lines. A request read
//! verifies or is refused against any secret and time, and a SigV4 one
//! has a canonical request whose hash its string to sign ends with.
#![no_main]

use apus_s3::{verify, AuthConfig, AuthRequest, Secret, SignatureVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let method = lines.next().unwrap_or_default();
    let target = lines.next().unwrap_or_default();
    let mut b = http::Request::builder()
        .method(http::Method::from_bytes(method).unwrap_or(http::Method::GET))
        .uri(http::Uri::try_from(target).unwrap_or_else(|_| http::Uri::from_static("/")));
    for line in lines {
        let Some(i) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..i]),
            http::HeaderValue::from_bytes(&line[i + 1..]),
        ) else {
            continue;
        };
        b = b.header(name, value);
    }
    let Ok(req) = b.body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();
    for config in [
        AuthConfig::default(),
        AuthConfig {
            location: "RegionOne".into(),
            allowable_clock_skew: 0,
            storage_domains: vec!["s3.example.com".into(), ".x".into()],
        },
    ] {
        if let Ok(Some(r)) = AuthRequest::parse(&parts, &config) {
            if r.version == SignatureVersion::V4 {
                assert!(r.canonical_request.is_some() && r.scope.is_some());
            }
            for now in [0, 1_700_000_000, i64::MAX / 4] {
                if let Err(e) = verify(&r, &Secret::new("secret"), now) {
                    let _ = e.to_xml(Some("tx"));
                }
            }
        }
    }
});
