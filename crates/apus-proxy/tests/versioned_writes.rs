//! Legacy versioning (X-Versions-Location, X-History-Location) end to end
//! against an in-process cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};

async fn setup(cluster: &Cluster, header: &str) -> Client {
    let mut c = Client::new(cluster);
    c.login("test:tester", "testing").await;
    let a = c.call(Method::PUT, "/v1/AUTH_test/versions").await;
    assert!(a.status.is_success());
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c",
            hdrs(&[(header, "versions")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.status);
    c
}

async fn put(c: &Client, body: &'static [u8]) {
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/obj",
            hdrs(&[("x-object-meta-v", std::str::from_utf8(body).unwrap())]),
            Bytes::from_static(body),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
}

async fn versions(c: &Client) -> Vec<(String, String)> {
    let a = c
        .call(Method::GET, "/v1/AUTH_test/versions?format=json")
        .await;
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["content_type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_mode_keeps_versions_and_pops_them_on_delete() {
    let cluster = Cluster::start().await.unwrap();
    let c = setup(&cluster, "x-versions-location").await;
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert_eq!(a.header("x-versions-location"), "versions");
    assert_eq!(a.header("x-history-location"), "");

    put(&c, b"one").await;
    put(&c, b"two").await;
    put(&c, b"three").await;
    let v = versions(&c).await;
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].0.starts_with("003obj/"), "{v:?}");
    let a = c
        .call(Method::GET, &format!("/v1/AUTH_test/versions/{}", v[0].0))
        .await;
    assert_eq!(&a.body[..], b"one");
    assert_eq!(a.header("x-object-meta-v"), "one");

    // Each DELETE brings the previous version back.
    let a = c.call(Method::DELETE, "/v1/AUTH_test/c/obj").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/obj").await;
    assert_eq!(&a.body[..], b"two");
    assert_eq!(a.header("x-object-meta-v"), "two");
    let a = c.call(Method::DELETE, "/v1/AUTH_test/c/obj").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/obj").await;
    assert_eq!(&a.body[..], b"one");
    assert!(versions(&c).await.is_empty());
    let a = c.call(Method::DELETE, "/v1/AUTH_test/c/obj").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/obj").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // Removing the location stops versioning.
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/c",
            hdrs(&[("x-remove-versions-location", "x")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert_eq!(a.header("x-versions-location"), "");
    put(&c, b"four").await;
    put(&c, b"five").await;
    assert!(versions(&c).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_mode_keeps_versions_and_delete_markers() {
    let cluster = Cluster::start().await.unwrap();
    let c = setup(&cluster, "x-history-location").await;
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert_eq!(a.header("x-history-location"), "versions");
    put(&c, b"one").await;
    put(&c, b"two").await;
    let a = c.call(Method::DELETE, "/v1/AUTH_test/c/obj").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/obj").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let v = versions(&c).await;
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[2].1, "application/x-deleted;swift_versions_deleted=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_locations_are_refused() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c",
            hdrs(&[("x-versions-location", "a/b")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c",
            hdrs(&[("x-versions-location", "a"), ("x-history-location", "b")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        &a.body[..],
        b"Only one of X-Versions-Location or X-History-Location may be specified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_in_headers_may_be_raw_utf8() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    let versions = "v\u{e9}rsions";
    let a = c
        .call(
            Method::PUT,
            &format!("/v1/AUTH_test/{}", apus_proto::quote(versions)),
        )
        .await;
    assert!(a.status.is_success());
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c",
            hdrs(&[("x-versions-location", versions)]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.status);
    let object = format!("/v1/AUTH_test/c/{}", apus_proto::quote("obj\u{2603}"));
    for body in [&b"one"[..], b"two"] {
        let a = c
            .send(Method::PUT, &object, hdrs(&[]), Bytes::from_static(body))
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    let a = c
        .call(
            Method::GET,
            &format!("/v1/AUTH_test/{}?format=json", apus_proto::quote(versions)),
        )
        .await;
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 1, "{listing}");
    assert!(listing[0]["name"]
        .as_str()
        .unwrap()
        .starts_with("006obj\u{2603}/"));

    // A symlink to a target named in raw UTF-8.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/link",
            hdrs(&[("x-symlink-target", "c/obj\u{2603}")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/link").await;
    assert_eq!(&a.body[..], b"two");
}
