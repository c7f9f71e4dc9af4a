//! Object versioning (X-Versions-Enabled) end to end against an
//! in-process cluster, and the reserved namespace it keeps versions in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use md5::Digest;
use support::{hdrs, Answer, Client};

async fn setup(cluster: &Cluster) -> Client {
    let mut c = Client::new(cluster);
    c.login("test:tester", "testing").await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c",
            hdrs(&[("x-versions-enabled", "true")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.status);
    c
}

async fn put(c: &Client, path: &str, body: &'static [u8]) -> String {
    let a = c
        .send(
            Method::PUT,
            path,
            hdrs(&[("content-type", "text/x-test")]),
            Bytes::from_static(body),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    a.header("x-object-version-id").to_string()
}

fn json(a: &Answer) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&a.body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `(name, version_id, is_latest, bytes)` of a `?versions` listing.
async fn versions(c: &Client) -> Vec<(String, String, bool, u64)> {
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c?versions&format=json")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    json(&a)
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["version_id"].as_str().unwrap().to_string(),
                i["is_latest"].as_bool().unwrap(),
                i["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_a_version_and_any_version_can_be_read() {
    let cluster = Cluster::start().await.unwrap();
    let c = setup(&cluster).await;
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert_eq!(a.header("x-versions-enabled"), "True");

    let v1 = put(&c, "/v1/AUTH_test/c/o", b"one").await;
    let v2 = put(&c, "/v1/AUTH_test/c/o", b"two!").await;
    assert!(!v1.is_empty() && v1 < v2, "{v1} {v2}");

    let a = c.call(Method::GET, "/v1/AUTH_test/c/o").await;
    assert_eq!(&a.body[..], b"two!");
    assert_eq!(a.header("x-object-version-id"), v2);
    assert_eq!(a.header("content-type"), "text/x-test");
    let a = c
        .call(Method::GET, &format!("/v1/AUTH_test/c/o?version-id={v1}"))
        .await;
    assert_eq!(&a.body[..], b"one");
    assert_eq!(a.header("x-object-version-id"), v1);

    assert_eq!(
        versions(&c).await,
        vec![
            ("o".to_string(), v2.clone(), true, 4),
            ("o".to_string(), v1.clone(), false, 3),
        ]
    );
    // The plain listing shows the current version's size and etag.
    let a = c.call(Method::GET, "/v1/AUTH_test/c?format=json").await;
    let items = json(&a);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["bytes"], 4);
    assert_eq!(items[0]["hash"], format!("{:x}", md5::Md5::digest(b"two!")));
    // The container's bytes include its versions'; the account shows
    // no hidden container.
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert_eq!(a.header("x-container-bytes-used"), "7");
    let a = c.call(Method::GET, "/v1/AUTH_test?format=json").await;
    let names: Vec<String> = json(&a)
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["c"]);

    // Version listings are JSON only.
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c?versions&format=xml")
        .await;
    assert_eq!(a.status, StatusCode::NOT_ACCEPTABLE);
    // A version cannot be changed by POST.
    let a = c
        .call(Method::POST, &format!("/v1/AUTH_test/c/o?version-id={v1}"))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/o?version-id=bogus")
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_a_marker_and_versions_can_be_restored_and_removed() {
    let cluster = Cluster::start().await.unwrap();
    let c = setup(&cluster).await;
    let v1 = put(&c, "/v1/AUTH_test/c/o", b"one").await;
    let a = c.call(Method::DELETE, "/v1/AUTH_test/c/o").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let marker = a.header("x-object-version-id").to_string();
    assert!(marker > v1);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/o").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = c
        .call(
            Method::HEAD,
            &format!("/v1/AUTH_test/c/o?version-id={marker}"),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        versions(&c).await,
        vec![
            ("o".to_string(), marker.clone(), true, 0),
            ("o".to_string(), v1.clone(), false, 3),
        ]
    );

    // PUT ?version-id makes an old version current again.
    let a = c
        .send(
            Method::PUT,
            &format!("/v1/AUTH_test/c/o?version-id={v1}"),
            hdrs(&[("content-length", "0")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/o").await;
    assert_eq!(&a.body[..], b"one");
    assert_eq!(a.header("x-object-version-id"), v1);
    let a = c
        .send(
            Method::PUT,
            &format!("/v1/AUTH_test/c/o?version-id={v1}"),
            hdrs(&[]),
            Bytes::from_static(b"data"),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // Deleting the current version takes the link with it; the versions
    // must all go before the container can.
    let a = c
        .call(
            Method::DELETE,
            &format!("/v1/AUTH_test/c/o?version-id={v1}"),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(a.header("x-object-current-version-id"), "null");
    let a = c.call(Method::GET, "/v1/AUTH_test/c/o").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = c.call(Method::DELETE, "/v1/AUTH_test/c").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = c
        .call(
            Method::DELETE,
            &format!("/v1/AUTH_test/c/o?version-id={marker}"),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(versions(&c).await.is_empty());
    let a = c.call(Method::DELETE, "/v1/AUTH_test/c").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test?format=json").await;
    assert!(json(&a).is_empty(), "{:?}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_from_before_versioning_are_the_null_version() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    let a = c.call(Method::PUT, "/v1/AUTH_test/c").await;
    assert!(a.status.is_success());
    put(&c, "/v1/AUTH_test/c/o", b"old").await;
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/c",
            hdrs(&[("x-versions-enabled", "true")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/o?version-id=null")
        .await;
    assert_eq!(&a.body[..], b"old");
    assert_eq!(a.header("x-object-version-id"), "null");

    // Overwriting keeps it, as a version named by its own timestamp.
    let v2 = put(&c, "/v1/AUTH_test/c/o", b"new").await;
    let listed = versions(&c).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0], ("o".to_string(), v2, true, 3));
    let old = &listed[1].1;
    let a = c
        .call(Method::GET, &format!("/v1/AUTH_test/c/o?version-id={old}"))
        .await;
    assert_eq!(&a.body[..], b"old");
    // The current object is a real version now, not the null one.
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/o?version-id=null")
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // Disabled: writes replace the object in place; versions stay.
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/c",
            hdrs(&[("x-versions-enabled", "false")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert_eq!(a.header("x-versions-enabled"), "False");
    put(&c, "/v1/AUTH_test/c/o", b"plain").await;
    let a = c.call(Method::GET, "/v1/AUTH_test/c/o").await;
    assert_eq!(a.header("x-object-version-id"), "null");
    assert_eq!(versions(&c).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_reach_the_reserved_namespace() {
    let cluster = Cluster::start().await.unwrap();
    let c = setup(&cluster).await;
    put(&c, "/v1/AUTH_test/c/o", b"one").await;
    // A NUL in a client's path is refused, even with the backend's
    // header (the gatekeeper drops it).
    for path in [
        "/v1/AUTH_test/%00versions%00c",
        "/v1/AUTH_test/%00versions%00c/x",
    ] {
        let a = c
            .send(
                Method::GET,
                path,
                hdrs(&[("x-backend-allow-reserved-names", "true")]),
                Bytes::new(),
            )
            .await;
        assert_eq!(a.status, StatusCode::PRECONDITION_FAILED, "{path}");
    }
    // A container on legacy versioning cannot switch to this API.
    let a = c.call(Method::PUT, "/v1/AUTH_test/old").await;
    assert!(a.status.is_success());
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/old",
            hdrs(&[("x-versions-location", "elsewhere")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/old",
            hdrs(&[("x-versions-enabled", "true")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}
