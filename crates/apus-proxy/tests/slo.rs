//! Static large objects end to end against an in-process cluster: what a
//! client uploads as segments and a manifest comes back whole, in ranges,
//! as its manifest, and goes away with its segments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use md5::Digest;
use support::{hdrs, Client};

fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", md5::Md5::digest(data))
}

/// A logged-in client with container `segs` holding three segments
/// (1 MiB of `a`, 1 MiB of `b`, 10 bytes of `c`) and container `c`.
async fn setup(cluster: &Cluster) -> (Client, Vec<Bytes>) {
    let mut c = Client::new(cluster);
    c.login("test:tester", "testing").await;
    for container in ["segs", "c"] {
        let a = c
            .call(Method::PUT, &format!("/v1/AUTH_test/{container}"))
            .await;
        assert!(a.status.is_success());
    }
    let parts = vec![
        Bytes::from(vec![b'a'; 1 << 20]),
        Bytes::from(vec![b'b'; 1 << 20]),
        Bytes::from_static(b"cccccccccc"),
    ];
    for (i, p) in parts.iter().enumerate() {
        let a = c
            .send(
                Method::PUT,
                &format!("/v1/AUTH_test/segs/s{i}"),
                hdrs(&[]),
                p.clone(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    (c, parts)
}

fn manifest_of(parts: &[Bytes]) -> String {
    let entries: Vec<serde_json::Value> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({"path": format!("/segs/s{i}"), "etag": md5_hex(p), "size_bytes": p.len()})
        })
        .collect();
    serde_json::Value::Array(entries).to_string()
}

async fn put_manifest(c: &Client, path: &str, manifest: String) -> support::Answer {
    c.send(
        Method::PUT,
        &format!("{path}?multipart-manifest=put"),
        hdrs(&[("content-type", "video/mp4")]),
        Bytes::from(manifest),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_reads_back_as_its_segments() {
    let cluster = Cluster::start().await.unwrap();
    let (c, parts) = setup(&cluster).await;
    let whole: Vec<u8> = parts.concat();
    let slo_etag = md5_hex(
        parts
            .iter()
            .map(|p| md5_hex(p))
            .collect::<String>()
            .as_bytes(),
    );

    let a = put_manifest(&c, "/v1/AUTH_test/c/big", manifest_of(&parts)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.header("etag"), format!("\"{slo_etag}\""));

    let a = c.call(Method::GET, "/v1/AUTH_test/c/big").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.len(), whole.len());
    assert!(a.body[..] == whole[..], "the body is the segments' bytes");
    assert_eq!(a.header("etag"), format!("\"{slo_etag}\""));
    assert_eq!(a.header("x-static-large-object"), "True");
    assert_eq!(a.header("content-type"), "video/mp4");

    let a = c.call(Method::HEAD, "/v1/AUTH_test/c/big").await;
    assert_eq!(a.header("content-length"), whole.len().to_string());
    assert_eq!(a.header("etag"), format!("\"{slo_etag}\""));
    assert!(!a.header("x-manifest-etag").is_empty());

    // A range across the first segment boundary.
    let from = (1 << 20) - 3;
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/big",
            hdrs(&[("range", &format!("bytes={from}-{}", from + 5))]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], b"aaabbb");
    assert_eq!(
        a.header("content-range"),
        format!("bytes {from}-{}/{}", from + 5, whole.len())
    );
    // The last bytes, in the small segment.
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/big",
            hdrs(&[("range", "bytes=-12")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(&a.body[..], b"bbcccccccccc");
    // Two ranges: multipart/byteranges.
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/big",
            hdrs(&[("range", "bytes=0-1,-2")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert!(a
        .header("content-type")
        .starts_with("multipart/byteranges;boundary="));
    let text = String::from_utf8_lossy(&a.body);
    assert!(text.contains("Content-Range: bytes 0-1/"), "{text}");
    assert!(text.contains("\r\n\r\naa\r\n"), "{text}");
    assert!(text.contains("\r\n\r\ncc\r\n"), "{text}");
    assert_eq!(a.header("content-length"), a.body.len().to_string());
    // Unsatisfiable.
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/big",
            hdrs(&[("range", "bytes=9999999-")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        a.header("content-range"),
        format!("bytes */{}", whole.len())
    );

    // Conditional requests see the large object's etag.
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/big",
            hdrs(&[("if-none-match", &format!("\"{slo_etag}\""))]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/big",
            hdrs(&[("if-match", "\"nope\"")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);

    // The manifest itself, stored and raw.
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/big?multipart-manifest=get")
        .await;
    assert_eq!(a.header("content-type"), "application/json; charset=utf-8");
    let stored: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(stored[0]["name"], "/segs/s0");
    assert_eq!(stored[1]["bytes"], 1 << 20);
    assert_eq!(stored[2]["hash"], md5_hex(&parts[2]));
    let a = c
        .call(
            Method::GET,
            "/v1/AUTH_test/c/big?multipart-manifest=get&format=raw",
        )
        .await;
    let raw: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(raw[0]["path"], "/segs/s0");
    assert_eq!(raw[0]["size_bytes"], 1 << 20);
    assert_eq!(a.header("content-type"), "video/mp4");

    // The listing shows the large object's size and both etags.
    let a = c.call(Method::GET, "/v1/AUTH_test/c?format=json").await;
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing[0]["bytes"], whole.len());
    assert_eq!(listing[0]["slo_etag"], format!("\"{slo_etag}\""));
    assert!(!listing[0]["hash"].as_str().unwrap().contains("slo_etag"));

    // /info says slo runs, with Swift's keys.
    let a = c.call(Method::GET, "/info").await;
    let info: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(info["slo"]["max_manifest_segments"], 1000);
    assert_eq!(info["slo"]["min_segment_size"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_manifests_ranges_and_inline_data() {
    let cluster = Cluster::start().await.unwrap();
    let (c, parts) = setup(&cluster).await;
    // The inner manifest: 4 bytes of s2 and inline "xy".
    let inner = serde_json::json!([
        {"path": "segs/s2", "range": "2-5"},
        {"data": "eHk="}
    ])
    .to_string();
    let a = put_manifest(&c, "/v1/AUTH_test/c/inner", inner).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let outer = serde_json::json!([
        {"path": "segs/s0", "range": "-3"},
        {"path": "c/inner"},
        {"path": "segs/s1", "range": "0-1"}
    ])
    .to_string();
    let a = put_manifest(&c, "/v1/AUTH_test/c/outer", outer).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/outer").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"aaaccccxybb");
    assert_eq!(a.header("content-length"), "11");
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/outer",
            hdrs(&[("range", "bytes=4-8")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(&a.body[..], b"cccxy");
    let _ = parts;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_get_swifts_answers_and_store_nothing() {
    let cluster = Cluster::start().await.unwrap();
    let (c, parts) = setup(&cluster).await;
    let a = put_manifest(&c, "/v1/AUTH_test/c/m", "not json".into()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"Manifest must be valid JSON.\n");
    let a = put_manifest(
        &c,
        "/v1/AUTH_test/c/m",
        serde_json::json!([{"path": "segs/missing"}, {"path": "segs/s0", "etag": "bad"}, {"path": "segs/s1", "size_bytes": 3}]).to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        String::from_utf8_lossy(&a.body),
        "Errors:\nsegs/missing, 404 Not Found\nsegs/s0, Etag Mismatch\nsegs/s1, Size Mismatch\n"
    );
    // The same problems as json.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/m?multipart-manifest=put",
            hdrs(&[("accept", "application/json")]),
            Bytes::from(serde_json::json!([{"path": "segs/missing"}]).to_string()),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["Errors"][0][1], "404 Not Found");
    // Itself as a segment.
    let a = put_manifest(
        &c,
        "/v1/AUTH_test/c/m",
        serde_json::json!([{"path": "/c/m"}]).to_string(),
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&a.body),
        "Index 0: manifest must not include itself as a segment\n"
    );
    // Too large, and too many segments.
    let big = format!("[{}]", vec![r#"{"path": "segs/s0"}"#; 1001].join(","));
    let a = put_manifest(&c, "/v1/AUTH_test/c/m", big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        String::from_utf8_lossy(&a.body),
        "Number of object-backed segments must be <= 1000"
    );
    // A manifest longer than 8 MiB is refused from its Content-Length,
    // before its body is read (sent raw: a client still writing the body
    // may see the connection close before it reads the answer).
    let head = format!(
        "PUT /v1/AUTH_test/c/m?multipart-manifest=put HTTP/1.1\r\nHost: x\r\n\
         X-Auth-Token: {}\r\nContent-Length: {}\r\n\r\n",
        c.token.clone().unwrap(),
        8 * 1024 * 1024 + 1
    );
    let mut stream = tokio::net::TcpStream::connect(cluster.proxy_addr)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    while !answer.contains("Manifest File > 8388608 bytes") {
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
        )
        .await
        .expect("an answer within 10 s")
        .unwrap();
        assert!(n > 0, "closed after {answer:?}");
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A client may not make a plain PUT look like a manifest.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/m",
            hdrs(&[("x-static-large-object", "true")]),
            Bytes::from(manifest_of(&parts)),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // The client's etag must be the large object's.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/m?multipart-manifest=put",
            hdrs(&[("etag", "0123")]),
            Bytes::from(manifest_of(&parts)),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was stored.
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c/m").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_segments_and_manifest_loops_are_conflicts() {
    let cluster = Cluster::start().await.unwrap();
    let (c, parts) = setup(&cluster).await;
    let a = put_manifest(&c, "/v1/AUTH_test/c/big", manifest_of(&parts)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    // The first segment is replaced: the manifest no longer describes it.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/segs/s0",
            hdrs(&[]),
            Bytes::from_static(b"other"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/big").await;
    assert_eq!(a.status, StatusCode::CONFLICT);

    // Two manifests made to point at each other.
    let a = put_manifest(
        &c,
        "/v1/AUTH_test/c/x",
        serde_json::json!([{"path": "segs/s2"}]).to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = put_manifest(
        &c,
        "/v1/AUTH_test/c/y",
        serde_json::json!([{"path": "c/x"}]).to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = put_manifest(
        &c,
        "/v1/AUTH_test/c/x",
        serde_json::json!([{"path": "c/y"}]).to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/x").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    // The server is still there.
    let a = c.call(Method::GET, "/v1/AUTH_test/segs/s2").await;
    assert_eq!(&a.body[..], &parts[2][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_manifest_deletes_its_segments() {
    let cluster = Cluster::start().await.unwrap();
    let (c, parts) = setup(&cluster).await;
    let a = put_manifest(&c, "/v1/AUTH_test/c/big", manifest_of(&parts)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c
        .send(
            Method::DELETE,
            "/v1/AUTH_test/c/big?multipart-manifest=delete",
            hdrs(&[("accept", "application/json")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["Response Status"], "200 OK", "{v}");
    assert_eq!(v["Number Deleted"], 4);
    for path in [
        "/v1/AUTH_test/c/big",
        "/v1/AUTH_test/segs/s0",
        "/v1/AUTH_test/segs/s2",
    ] {
        let a = c.call(Method::HEAD, path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    // A plain object is not a manifest.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/plain",
            hdrs(&[]),
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c
        .call(
            Method::DELETE,
            "/v1/AUTH_test/c/plain?multipart-manifest=delete",
        )
        .await;
    let text = String::from_utf8_lossy(&a.body);
    assert!(text.contains("Response Status: 400 Bad Request"), "{text}");
    assert!(text.contains("/c/plain, Not an SLO manifest"), "{text}");
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c/plain").await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_numbers_address_one_entry() {
    let cluster = Cluster::start().await.unwrap();
    let (c, parts) = setup(&cluster).await;
    let a = put_manifest(&c, "/v1/AUTH_test/c/big", manifest_of(&parts)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let total = parts.iter().map(|p| p.len()).sum::<usize>();

    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/big?part-number=2")
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.body, parts[1]);
    assert_eq!(a.header("x-parts-count"), "3");
    assert_eq!(
        a.header("content-range"),
        format!("bytes {}-{}/{total}", 1 << 20, (2 << 20) - 1)
    );
    let a = c
        .call(Method::HEAD, "/v1/AUTH_test/c/big?part-number=3")
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.header("content-length"), "10");

    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/big?part-number=4")
        .await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(&a.body[..], b"The requested part number is not satisfiable");
    assert_eq!(a.header("content-range"), format!("bytes */{total}"));
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/big?part-number=0")
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        &a.body[..],
        b"Part number must be an integer greater than 0"
    );

    // A copy of one part is that part's bytes.
    let a = c
        .send(
            Method::from_bytes(b"COPY").unwrap(),
            "/v1/AUTH_test/c/big?part-number=1",
            hdrs(&[("destination", "c/first")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/first").await;
    assert_eq!(a.body, parts[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeating_puts_answer_202_then_the_outcome() {
    let cluster = Cluster::start().await.unwrap();
    let (c, parts) = setup(&cluster).await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/hb?multipart-manifest=put&heartbeat=on",
            hdrs(&[]),
            Bytes::from(manifest_of(&parts)),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.header("content-length").is_empty(), "a streamed body");
    let text = String::from_utf8_lossy(&a.body).into_owned();
    let (spaces, outcome) = text.split_once("\r\n\r\n").unwrap();
    assert!(spaces.trim().is_empty(), "{text:?}");
    assert!(
        outcome.lines().any(|l| l == "Response Status: 201 Created"),
        "{outcome}"
    );
    assert!(
        outcome.lines().any(|l| l.starts_with("Etag: \"")),
        "{outcome}"
    );
    assert!(
        outcome.lines().any(|l| l.starts_with("Last Modified: ")),
        "{outcome}"
    );
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c/hb").await;
    assert_eq!(a.header("x-static-large-object"), "True");

    let mut bad: serde_json::Value = serde_json::from_str(&manifest_of(&parts)).unwrap();
    bad.as_array_mut()
        .unwrap()
        .push(serde_json::json!({"path": "segs/none"}));
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/hb2?multipart-manifest=put&heartbeat=on",
            hdrs(&[("accept", "application/json")]),
            Bytes::from(bad.to_string()),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let text = String::from_utf8_lossy(&a.body).into_owned();
    let v: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(v["Response Status"], "400 Bad Request");
    assert_eq!(
        v["Errors"],
        serde_json::json!([["segs/none", "404 Not Found"]])
    );
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c/hb2").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
