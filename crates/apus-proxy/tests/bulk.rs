//! Bulk delete end to end against an in-process cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_removes_what_it_names() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    for container in ["a", "b c"] {
        let a = c
            .call(
                Method::PUT,
                &format!("/v1/AUTH_test/{}", apus_proto::quote(container)),
            )
            .await;
        assert!(a.status.is_success());
    }
    for (container, object) in [("a", "1"), ("a", "2"), ("b c", "caf\u{e9}")] {
        let path = format!(
            "/v1/AUTH_test/{}/{}",
            apus_proto::quote(container),
            apus_proto::quote(object)
        );
        let a = c
            .send(Method::PUT, &path, hdrs(&[]), Bytes::from_static(b"x"))
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    // Objects go before containers, whatever the order given.
    let body = "/a\n/a/1\n/a/2\n/b%20c/caf%C3%A9\n/b%20c\n/a/missing\n";
    let a = c
        .send(
            Method::DELETE,
            "/v1/AUTH_test?bulk-delete",
            hdrs(&[
                ("accept", "application/json"),
                ("content-type", "text/plain"),
            ]),
            Bytes::from(body),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["Response Status"], "200 OK", "{v}");
    assert_eq!(v["Number Deleted"], 5);
    assert_eq!(v["Number Not Found"], 1);
    assert_eq!(v["Errors"], serde_json::json!([]));
    let a = c.call(Method::GET, "/v1/AUTH_test?format=json").await;
    assert_eq!(&a.body[..], b"[]");

    // A container that is not empty cannot go.
    c.call(Method::PUT, "/v1/AUTH_test/full").await;
    c.send(
        Method::PUT,
        "/v1/AUTH_test/full/o",
        hdrs(&[]),
        Bytes::from_static(b"x"),
    )
    .await;
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test?bulk-delete",
            hdrs(&[]),
            Bytes::from_static(b"/full\n"),
        )
        .await;
    let text = String::from_utf8_lossy(&a.body);
    assert!(text.contains("Response Status: 400 Bad Request"), "{text}");
    assert!(text.contains("/full, 409 Conflict"), "{text}");

    // Nothing to delete is a bad request.
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test?bulk-delete",
            hdrs(&[]),
            Bytes::from_static(b"\n\n"),
        )
        .await;
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        text.contains("Response Body: Invalid bulk delete."),
        "{text}"
    );

    // More than 10,000 names: refused before anything is deleted.
    let many: String = (0..10_001).map(|i| format!("/full/{i}\n")).collect();
    let a = c
        .send(
            Method::DELETE,
            "/v1/AUTH_test?bulk-delete",
            hdrs(&[]),
            Bytes::from(many),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        text.contains("Response Status: 413 Request Entity Too Large"),
        "{text}"
    );
    assert!(
        text.contains("Maximum Bulk Deletes: 10000 per request"),
        "{text}"
    );
    let a = c.call(Method::HEAD, "/v1/AUTH_test/full/o").await;
    assert_eq!(a.status, StatusCode::OK);

    // Only newline-separated names are understood.
    let a = c
        .send(
            Method::DELETE,
            "/v1/AUTH_test?bulk-delete",
            hdrs(&[("content-type", "application/json")]),
            Bytes::from_static(b"[]"),
        )
        .await;
    assert!(String::from_utf8_lossy(&a.body).contains("406 Not Acceptable"));

    // /info lists it.
    let a = c.call(Method::GET, "/info").await;
    let info: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(info["bulk_delete"]["max_deletes_per_request"], 10_000);
}

/// A ustar entry: header, body, padding.
fn tar_entry(name: &str, body: &[u8], kind: u8) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[124..135].copy_from_slice(format!("{:011o}", body.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h.extend_from_slice(body);
    h.resize(h.len().div_ceil(512) * 512, 0);
    h
}

fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out: Vec<u8> = entries
        .iter()
        .flat_map(|(n, b)| tar_entry(n, b, b'0'))
        .collect();
    out.extend(vec![0u8; 1024]);
    out
}

async fn extract(c: &Client, path: &str, kind: &str, body: Vec<u8>) -> serde_json::Value {
    let a = c
        .send(
            Method::PUT,
            &format!("{path}?extract-archive={kind}"),
            hdrs(&[("accept", "application/json"), ("x-object-meta-batch", "7")]),
            Bytes::from(body),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    serde_json::from_slice(&a.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_extracted_into_objects() {
    use std::io::Write;
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;

    // Into the account: the first component names the container.
    let archive = tar(&[
        ("photos/a.jpg", b"AAA"),
        ("photos/sub/b.jpg", b"BB"),
        ("top-level-file", b"ignored"),
    ]);
    let v = extract(&c, "/v1/AUTH_test", "tar", archive).await;
    assert_eq!(v["Response Status"], "201 Created", "{v}");
    assert_eq!(v["Number Files Created"], 2);
    let a = c.call(Method::GET, "/v1/AUTH_test/photos/sub/b.jpg").await;
    assert_eq!(&a.body[..], b"BB");
    assert_eq!(a.header("x-object-meta-batch"), "7");

    // Into a container, gzip and bzip2.
    let archive = tar(&[("x/one", b"1"), ("two", b"22")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&archive).unwrap();
    let v = extract(&c, "/v1/AUTH_test/photos", "tar.gz", gz.finish().unwrap()).await;
    assert_eq!(v["Number Files Created"], 2, "{v}");
    let a = c.call(Method::GET, "/v1/AUTH_test/photos/x/one").await;
    assert_eq!(&a.body[..], b"1");
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&tar(&[("bz/three", b"333")])).unwrap();
    let v = extract(&c, "/v1/AUTH_test/photos", "tar.bz2", bz.finish().unwrap()).await;
    assert_eq!(v["Number Files Created"], 1, "{v}");

    // Entries that climb out are refused; the rest are stored.
    let v = extract(
        &c,
        "/v1/AUTH_test/photos",
        "tar",
        tar(&[("../escape", b"x"), ("ok/fine", b"y")]),
    )
    .await;
    assert_eq!(v["Response Status"], "400 Bad Request", "{v}");
    assert_eq!(
        v["Errors"],
        serde_json::json!([["photos/../escape", "400 Bad Request"]])
    );
    assert_eq!(v["Number Files Created"], 1);
    let a = c.call(Method::GET, "/v1/AUTH_test?format=json").await;
    let containers: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(containers.as_array().unwrap().len(), 1, "{containers}");

    // A truncated archive: the file cut short is not stored.
    let mut cut = tar(&[("c1/whole", b"complete"), ("c1/partial", &[b'p'; 2000])]);
    cut.truncate(512 + 512 + 512 + 700);
    let v = extract(&c, "/v1/AUTH_test", "tar", cut).await;
    assert_eq!(v["Response Status"], "400 Bad Request", "{v}");
    assert_eq!(
        v["Response Body"],
        "Invalid Tar File: unexpected end of data"
    );
    assert_eq!(v["Number Files Created"], 1);
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c1/whole").await;
    assert_eq!(a.status, StatusCode::OK);
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c1/partial").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // Not an archive at all.
    let v = extract(
        &c,
        "/v1/AUTH_test",
        "tar.gz",
        b"plain text, not gzip".to_vec(),
    )
    .await;
    assert_eq!(v["Response Status"], "400 Bad Request", "{v}");
    assert!(
        v["Response Body"]
            .as_str()
            .unwrap()
            .starts_with("Invalid Tar File"),
        "{v}"
    );
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test?extract-archive=zip",
            hdrs(&[]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"Unsupported archive format");
}

/// Sends `data` and reads what comes back within a few seconds.
async fn raw_exchange(stream: &mut tokio::net::TcpStream, data: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(data).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_requests_with_expect_100_continue_get_their_body_read() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    c.call(Method::PUT, "/v1/AUTH_test/e").await;
    c.send(
        Method::PUT,
        "/v1/AUTH_test/e/o",
        hdrs(&[]),
        Bytes::from_static(b"x"),
    )
    .await;
    let body = "/e/o\n/e\n";
    let head = format!(
        "DELETE /v1/AUTH_test?bulk-delete HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nAccept: application/json\r\n\r\n",
        c.token.clone().unwrap(),
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(cluster.proxy_addr)
        .await
        .unwrap();
    // The server asks for the body before it answers.
    let first = raw_exchange(&mut stream, head.as_bytes()).await;
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    let mut answer = raw_exchange(&mut stream, body.as_bytes()).await;
    while !answer.contains("\"Number Deleted\"") {
        use tokio::io::AsyncReadExt;
        let mut more = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut more))
            .await
            .expect("the rest within 10 s")
            .unwrap();
        assert!(n > 0, "connection closed: {answer}");
        answer.push_str(&String::from_utf8_lossy(&more[..n]));
    }
    assert!(answer.contains("\"Number Deleted\":2"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_for_archives_and_copies() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/q",
            hdrs(&[("x-container-meta-quota-bytes", "10")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    // Each file of an archive is an upload of its own, judged as one.
    let v = extract(
        &c,
        "/v1/AUTH_test/q",
        "tar",
        tar(&[("small", b"12345"), ("big", b"0123456789ab")]),
    )
    .await;
    assert_eq!(v["Number Files Created"], 1, "{v}");
    let errors = v["Errors"].to_string();
    assert!(errors.contains("big") && errors.contains("413"), "{v}");
    let a = c.call(Method::GET, "/v1/AUTH_test/q/big").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // A copy into the container is an upload too.
    assert!(c
        .call(Method::PUT, "/v1/AUTH_test/free")
        .await
        .status
        .is_success());
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/free/big",
            hdrs(&[]),
            Bytes::from_static(b"0123456789ab"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/q/copied",
            hdrs(&[("x-copy-from", "free/big")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let a = c
        .send(
            Method::from_bytes(b"COPY").unwrap(),
            "/v1/AUTH_test/free/big",
            hdrs(&[("destination", "q/copied")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let a = c.call(Method::GET, "/v1/AUTH_test/q/copied").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
