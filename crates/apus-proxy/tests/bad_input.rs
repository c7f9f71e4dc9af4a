//! Bad input through the public API: every constraint at its limit and one
//! past it, malformed ranges, bad paths, oversized headers, truncated and
//! abandoned uploads. Each gets Swift's status code (or a closed
//! connection), the proxy stays up, and no partial object is ever visible.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use support::{hdrs, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup() -> (Cluster, Client) {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    let a = c.call(Method::PUT, "/v1/AUTH_test/c").await;
    assert_eq!(a.status, StatusCode::CREATED);
    (cluster, c)
}

async fn put(c: &Client, path: &str, headers: HeaderMap, body: &'static [u8]) -> StatusCode {
    c.send(Method::PUT, path, headers, Bytes::from_static(body))
        .await
        .status
}

async fn assert_up(c: &Client) {
    let a = c.call(Method::GET, "/healthcheck").await;
    assert_eq!(a.status, StatusCode::OK);
}

/// Sends raw bytes on a fresh connection and returns what came back
/// within a short time (possibly nothing when the server closed it).
async fn raw(c: &Client, request: &[u8], close_after: bool) -> String {
    let mut s = TcpStream::connect(&c.host).await.unwrap();
    s.write_all(request).await.unwrap();
    if close_after {
        let _ = s.shutdown().await;
        drop(s);
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_length_limits() {
    let (cluster, c) = setup().await;
    let ok_obj = format!("/v1/AUTH_test/c/{}", "o".repeat(1024));
    let long_obj = format!("/v1/AUTH_test/c/{}", "o".repeat(1025));
    assert_eq!(
        put(&c, &ok_obj, HeaderMap::new(), b"x").await,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&c, &long_obj, HeaderMap::new(), b"x").await,
        StatusCode::BAD_REQUEST
    );
    let ok_cont = format!("/v1/AUTH_test/{}", "c".repeat(256));
    let long_cont = format!("/v1/AUTH_test/{}", "c".repeat(257));
    assert_eq!(
        c.call(Method::PUT, &ok_cont).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        c.call(Method::PUT, &long_cont).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        c.call(Method::GET, &long_obj).await.status,
        StatusCode::NOT_FOUND
    );
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_limits() {
    let (cluster, c) = setup().await;
    let name_ok = format!("x-object-meta-{}", "n".repeat(128));
    let name_long = format!("x-object-meta-{}", "n".repeat(129));
    let path = "/v1/AUTH_test/c/meta";
    assert_eq!(
        put(&c, path, hdrs(&[(&name_ok, "v")]), b"x").await,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&c, path, hdrs(&[(&name_long, "v")]), b"x").await,
        StatusCode::BAD_REQUEST
    );
    let v_ok = "v".repeat(256);
    let v_long = "v".repeat(257);
    assert_eq!(
        put(&c, path, hdrs(&[("x-object-meta-k", &v_ok)]), b"x").await,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&c, path, hdrs(&[("x-object-meta-k", &v_long)]), b"x").await,
        StatusCode::BAD_REQUEST
    );
    // 90 items are allowed, 91 are not.
    let names: Vec<String> = (0..91).map(|i| format!("x-object-meta-k{i:02}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    assert_eq!(
        put(&c, path, hdrs(&pairs[..90]), b"x").await,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&c, path, hdrs(&pairs), b"x").await,
        StatusCode::BAD_REQUEST
    );
    // 4096 bytes of names and values in all, then one more.
    let value = "v".repeat(256 - 4);
    let names: Vec<String> = (0..16).map(|i| format!("x-object-meta-{i:04}")).collect();
    let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    assert_eq!(put(&c, path, hdrs(&pairs), b"x").await, StatusCode::CREATED);
    pairs.push(("x-object-meta-z", "a"));
    assert_eq!(
        put(&c, path, hdrs(&pairs), b"x").await,
        StatusCode::BAD_REQUEST
    );
    // The object keeps the last metadata that was accepted.
    let a = c.call(Method::HEAD, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-object-meta-0000"), value);
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_listing_limits() {
    let (cluster, c) = setup().await;
    let token = c.token.clone().unwrap();
    let req = format!(
        "PUT /v1/AUTH_test/c/huge HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Length: 5368709123\r\n\r\n"
    );
    let answer = raw(&c, req.as_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let req = format!(
        "PUT /v1/AUTH_test/c/nolength HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(&c, req.as_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert_eq!(
        c.call(Method::GET, "/v1/AUTH_test/c?limit=10000")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.call(Method::GET, "/v1/AUTH_test/c?limit=10001")
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        c.call(Method::GET, "/v1/AUTH_test/c/huge").await.status,
        StatusCode::NOT_FOUND
    );
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ranges() {
    let (cluster, c) = setup().await;
    let path = "/v1/AUTH_test/c/r";
    assert_eq!(
        put(&c, path, HeaderMap::new(), b"0123456789").await,
        StatusCode::CREATED
    );
    let get = |range: &'static str| {
        let c = &c;
        async move {
            c.send(Method::GET, path, hdrs(&[("range", range)]), Bytes::new())
                .await
        }
    };
    for ignored in [
        "parsecs=8-12",
        "bytes=5-2",
        "bytes=",
        "bytes=x-y",
        "bytes=--1",
    ] {
        let a = get(ignored).await;
        assert_eq!(a.status, StatusCode::OK, "{ignored}");
        assert_eq!(&a.body[..], b"0123456789", "{ignored}");
    }
    let a = get("bytes=20-30").await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let a = get("bytes=-3").await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], b"789");
    let a = get("bytes=0-1,4-5").await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert!(a.header("content-type").starts_with("multipart/byteranges"));
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_and_headers() {
    let (cluster, c) = setup().await;
    for path in [
        "/v1/AUTH_test/c/%FF%FE",
        "/v1/AUTH_test/c/a%00b",
        "/v1/AUTH_test/%C3",
    ] {
        let a = c
            .send(Method::PUT, path, HeaderMap::new(), Bytes::new())
            .await;
        assert_eq!(a.status, StatusCode::PRECONDITION_FAILED, "{path}");
        assert_eq!(&a.body[..], b"Invalid UTF8 or contains NULL");
    }
    let big = "v".repeat(8193);
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/c",
            hdrs(&[("x-container-meta-big", &big)]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Far more headers than any client needs: refused, server stays up.
    let token = c.token.clone().unwrap();
    let mut req = format!("GET /v1/AUTH_test/c HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n");
    for i in 0..400 {
        req.push_str(&format!("X-Junk-{i}: {i}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let answer = raw(&c, req.as_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let req = format!(
        "PUT /v1/AUTH_test/c/te HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let answer = raw(&c, req.as_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    let a = c
        .call(Method::from_bytes(b"LICK").unwrap(), "/v1/AUTH_test/c")
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_leave_nothing() {
    let (cluster, c) = setup().await;
    let token = c.token.clone().unwrap();
    // A chunked body that stops before its last chunk.
    let req = format!(
        "PUT /v1/AUTH_test/c/chunky HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwor"
    );
    raw(&c, req.as_bytes(), true).await;
    // A declared length never reached.
    let req = format!(
        "PUT /v1/AUTH_test/c/short HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Length: 1000000\r\n\r\n{}",
        "z".repeat(70_000)
    );
    raw(&c, req.as_bytes(), true).await;
    // Let the proxy and object servers notice the dropped connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for name in ["chunky", "short"] {
        let a = c
            .call(Method::GET, &format!("/v1/AUTH_test/c/{name}"))
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{name}");
    }
    let a = c.call(Method::GET, "/v1/AUTH_test/c?format=json").await;
    assert_eq!(&a.body[..], b"[]");
    // No temp files are left behind on any device.
    for d in 1..=4 {
        let tmp = cluster.device_path(d).join("tmp");
        let left = std::fs::read_dir(&tmp).map(|r| r.count()).unwrap_or(0);
        assert_eq!(left, 0, "temp files left on d{d}");
    }
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

/// Swift's proxy refuses a client content type with a `swift_*`
/// parameter on every PUT (copies included): `swift_bytes` is what SLO
/// sets to make the listing report a manifest's total size, so a client
/// could otherwise make a listing lie about an object's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_content_type_params_refused() {
    let (cluster, c) = setup().await;
    const REFUSAL: &[u8] = b"Invalid Content-Type, swift_* is not a valid parameter name.";
    for ctype in [
        "text/plain;swift_bytes=99999",
        "text/plain; swift_bytes=0",
        "text/plain;charset=utf-8;swift_anything",
    ] {
        let a = c
            .send(
                Method::PUT,
                "/v1/AUTH_test/c/lie",
                hdrs(&[("content-type", ctype)]),
                Bytes::from_static(b"hello"),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{ctype}");
        assert_eq!(&a.body[..], REFUSAL, "{ctype}");
    }
    // An ordinary parameter is kept, in the object and in the listing.
    assert_eq!(
        put(
            &c,
            "/v1/AUTH_test/c/src",
            hdrs(&[("content-type", "text/plain;charset=utf-8")]),
            b"hello"
        )
        .await,
        StatusCode::CREATED
    );
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c/src").await;
    assert_eq!(a.header("content-type"), "text/plain;charset=utf-8");
    // Server-side copies are PUTs too.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/copy",
            hdrs(&[
                ("x-copy-from", "c/src"),
                ("content-type", "text/plain;swift_bytes=5"),
            ]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], REFUSAL);
    let a = c
        .send(
            Method::from_bytes(b"COPY").unwrap(),
            "/v1/AUTH_test/c/src",
            hdrs(&[
                ("destination", "c/copy"),
                ("content-type", "text/plain;swift_bytes=5"),
            ]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], REFUSAL);
    // Swift's POST takes any content type, but the size in the listing
    // only ever comes from the object's data: the listing does not lie.
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/c/src",
            hdrs(&[("content-type", "image/png;swift_bytes=7777")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c/src").await;
    assert_eq!(a.header("content-type"), "image/png");
    let a = c.call(Method::GET, "/v1/AUTH_test/c?format=json").await;
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing.as_array().map(Vec::len), Some(1), "{listing}");
    assert_eq!(listing[0]["name"], "src");
    assert_eq!(listing[0]["bytes"], 5);
    assert_eq!(listing[0]["content_type"], "image/png");
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

/// Swift's name limits count characters of the decoded name, not bytes:
/// `é` is two bytes in UTF-8 but one character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_lengths_count_characters() {
    let (cluster, mut c) = setup().await;
    let e = |n: usize| "%C3%A9".repeat(n);
    let ok_obj = format!("/v1/AUTH_test/c/{}", e(1024));
    let long_obj = format!("/v1/AUTH_test/c/{}", e(1025));
    assert_eq!(
        put(&c, &ok_obj, HeaderMap::new(), b"x").await,
        StatusCode::CREATED
    );
    let a = c.call(Method::GET, &ok_obj).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"x");
    let a = c
        .send(
            Method::PUT,
            &long_obj,
            HeaderMap::new(),
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"Object name length of 1025 longer than 1024");

    let ok_cont = format!("/v1/AUTH_test/{}", e(256));
    let long_cont = format!("/v1/AUTH_test/{}", e(257));
    assert_eq!(
        c.call(Method::PUT, &ok_cont).await.status,
        StatusCode::CREATED
    );
    let a = c.call(Method::PUT, &long_cont).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"Container name length of 257 longer than 256");
    // Swift checks a container's name only when it is created: any other
    // request for a longer one finds nothing.
    for method in [Method::GET, Method::HEAD, Method::POST] {
        let a = c.call(method.clone(), &long_cont).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method}");
    }

    // Accounts: `AUTH_` and 251 `é` is 256 characters.
    c.login("admin:admin", "admin").await;
    let ok_acct = format!("/v1/AUTH_{}", e(251));
    let long_acct = format!("/v1/AUTH_{}", e(252));
    assert_eq!(
        c.call(Method::PUT, &ok_acct).await.status,
        StatusCode::CREATED
    );
    for method in [Method::GET, Method::HEAD, Method::POST] {
        assert!(
            c.call(method.clone(), &ok_acct).await.status.is_success(),
            "{method}"
        );
    }
    for method in [Method::PUT, Method::GET, Method::POST] {
        let a = c.call(method.clone(), &long_acct).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{method}");
        assert_eq!(&a.body[..], b"Account name length of 257 longer than 256");
    }
    assert_eq!(
        c.call(Method::HEAD, &long_acct).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

fn raw_header<'a>(a: &'a support::Answer, name: &str) -> &'a [u8] {
    a.headers.get(name).map(|v| v.as_bytes()).unwrap_or(b"")
}

fn raw_hdrs(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

/// Object metadata is bytes in Swift: values that are not UTF-8 come back
/// exactly as they were sent. Account and container metadata must be
/// UTF-8 (400 otherwise), whichever header carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_bytes_round_trip() {
    let (cluster, c) = setup().await;
    let path = "/v1/AUTH_test/c/raw";
    let a = c
        .send(
            Method::PUT,
            path,
            raw_hdrs(&[
                ("x-object-meta-foo", b"\xff\xfe"),
                ("x-object-meta-mixed", b"caf\xc3\xa9 \x80!"),
                ("content-disposition", b"attachment; filename=\xe9t\xe9"),
            ]),
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    for method in [Method::HEAD, Method::GET] {
        let a = c.call(method.clone(), path).await;
        assert_eq!(a.status, StatusCode::OK, "{method}");
        assert_eq!(raw_header(&a, "x-object-meta-foo"), b"\xff\xfe");
        assert_eq!(raw_header(&a, "x-object-meta-mixed"), b"caf\xc3\xa9 \x80!");
        assert_eq!(
            raw_header(&a, "content-disposition"),
            b"attachment; filename=\xe9t\xe9"
        );
    }
    let a = c
        .send(
            Method::POST,
            path,
            raw_hdrs(&[("x-object-meta-foo", b"\xfe\xff\x80")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = c.call(Method::HEAD, path).await;
    assert_eq!(raw_header(&a, "x-object-meta-foo"), b"\xfe\xff\x80");
    assert!(a.headers.get("x-object-meta-mixed").is_none());

    // Accounts and containers: valid UTF-8 round-trips, the rest is 400
    // whether it is metadata or another header the server keeps.
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/c",
            raw_hdrs(&[("x-container-meta-ok", "caf\u{e9}".as_bytes())]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert_eq!(
        raw_header(&a, "x-container-meta-ok"),
        "caf\u{e9}".as_bytes()
    );
    for (target, name) in [
        ("/v1/AUTH_test/c", "x-container-meta-bad"),
        ("/v1/AUTH_test/c", "x-container-sync-key"),
        ("/v1/AUTH_test/c", "x-container-write"),
        ("/v1/AUTH_test", "x-account-meta-bad"),
    ] {
        let a = c
            .send(
                Method::POST,
                target,
                raw_hdrs(&[(name, b"\xff\xfe")]),
                Bytes::new(),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(&a.body[..], b"Metadata must be valid UTF-8", "{name}");
    }
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert!(a.headers.get("x-container-sync-key").is_none());
    assert!(a.headers.get("x-container-write").is_none());
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_non_ascii_targets_and_empty_answers_as_swift_sends_them() {
    let (cluster, c) = setup().await;
    let token = c.token.clone().unwrap();
    // Raw UTF-8 in the request line names a container like any other…
    let req = format!(
        "PUT /v1/AUTH_test/caf\u{e9} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(&c, req.as_bytes(), false).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let a = c.call(Method::GET, "/v1/AUTH_test/caf%C3%A9").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    // …and raw bytes that are not UTF-8 get Swift's 412.
    let mut req = b"PUT /v1/AUTH_test/\xe9\xff HTTP/1.1\r\nHost: x\r\n".to_vec();
    req.extend_from_slice(
        format!("X-Auth-Token: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let answer = raw(&c, &req, false).await;
    assert!(answer.starts_with("HTTP/1.1 412"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nInvalid UTF8 or contains NULL"),
        "{answer}"
    );
    // An empty container and an account answer 204 with Content-Length: 0.
    for (method, path) in [
        ("GET", "/v1/AUTH_test/caf%C3%A9"),
        ("HEAD", "/v1/AUTH_test/caf%C3%A9"),
    ] {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nConnection: close\r\n\r\n"
        );
        let answer = raw(&c, req.as_bytes(), false).await;
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        assert!(answer.contains("\r\nContent-Length: 0\r\n"), "{answer}");
    }
    assert_up(&c).await;
    cluster.stop().await.unwrap();
}
