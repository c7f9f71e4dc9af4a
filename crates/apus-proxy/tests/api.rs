//! The public API end to end against an in-process cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use md5::Digest;
use support::{hdrs, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_and_object_round_trip() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    let a = c.call(Method::PUT, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c.call(Method::PUT, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::ACCEPTED);

    let data = Bytes::from_static(b"hello, apus");
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/photos/a/b.txt",
            hdrs(&[("x-object-meta-color", "blue")]),
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let md5 = format!("{:x}", md5::Md5::digest(&data));
    assert_eq!(a.header("etag"), md5);
    let a = c.call(Method::GET, "/v1/AUTH_test/photos/a/b.txt").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, data);
    assert_eq!(a.header("content-type"), "text/plain");
    assert_eq!(a.header("x-object-meta-color"), "blue");

    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/photos/a/b.txt",
            hdrs(&[("range", "bytes=7-")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], b"apus");

    let a = c.call(Method::PUT, "/v1/AUTH_test/photos/empty").await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("etag"), "d41d8cd98f00b204e9800998ecf8427e");
    let a = c.call(Method::GET, "/v1/AUTH_test/photos/empty").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.is_empty());
    let a = c.call(Method::DELETE, "/v1/AUTH_test/photos/empty").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);

    let a = c
        .call(Method::GET, "/v1/AUTH_test/photos?format=json")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing[0]["name"], "a/b.txt");
    assert_eq!(listing[0]["bytes"], 11);

    let a = c.call(Method::HEAD, "/v1/AUTH_test").await;
    assert!(a.status.is_success());
    assert_eq!(a.header("x-account-container-count"), "1");

    let a = c.call(Method::DELETE, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = c.call(Method::DELETE, "/v1/AUTH_test/photos/a/b.txt").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/photos/a/b.txt").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = c.call(Method::DELETE, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    cluster.stop().await.unwrap();
}

/// Every `.data` file under `root` of the replicated policy 0.
fn replica_data_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    support::data_files(root, "objects")
}

/// Bodies over 64 KiB are hashed once, by the proxy, and each object
/// server checks the CRC-32 of what it stored against the proxy's: the
/// client sees Swift's ETags and 422s all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_keep_their_etags_when_the_proxy_hashes_them() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    assert_eq!(
        c.call(Method::PUT, "/v1/AUTH_test/big").await.status,
        StatusCode::CREATED
    );
    let data: Bytes = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let md5 = format!("{:x}", md5::Md5::digest(&data));

    // A wrong ETag from the client: 422, and no replica keeps anything.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/big/o",
            hdrs(&[("etag", "0123456789abcdef0123456789abcdef")]),
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        c.call(Method::GET, "/v1/AUTH_test/big/o").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(replica_data_files(cluster.devices_root()).is_empty());

    // The right one (quoted, as clients may send it): stored three times.
    let quoted = format!("\"{md5}\"");
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/big/o",
            hdrs(&[("etag", quoted.as_str())]),
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.header("etag"), md5);
    assert_eq!(replica_data_files(cluster.devices_root()).len(), 3);
    let a = c.call(Method::GET, "/v1/AUTH_test/big/o").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("etag"), md5);
    assert!(a.body == data, "the body read back differs");

    // Chunked, with no length at all: the ETag still comes out right, and
    // the container listing has it.
    let (tx, body) = apus_http::channel(4, None);
    let chunks = data.clone();
    let sender = tokio::spawn(async move {
        for piece in chunks.chunks(70_000) {
            if tx.send(Bytes::copy_from_slice(piece)).await.is_err() {
                return;
            }
        }
    });
    let a = c
        .send_body(Method::PUT, "/v1/AUTH_test/big/chunked", hdrs(&[]), body)
        .await;
    sender.await.unwrap();
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.header("etag"), md5);
    let a = c.call(Method::GET, "/v1/AUTH_test/big?format=json").await;
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing[0]["name"], "chunked");
    assert_eq!(listing[0]["hash"], md5.as_str());
    assert_eq!(listing[0]["bytes"], 3_000_000);
    assert_eq!(listing[1]["hash"], md5.as_str());
    cluster.stop().await.unwrap();
}
