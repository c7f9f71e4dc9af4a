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
