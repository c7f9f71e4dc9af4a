//! Container and account quotas end to end against an in-process cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};

async fn login(cluster: &Cluster, user: &str, key: &str) -> Client {
    let mut c = Client::new(cluster);
    c.login(user, key).await;
    c
}

async fn put(c: &Client, path: &str, body: &'static [u8]) -> StatusCode {
    c.send(Method::PUT, path, hdrs(&[]), Bytes::from_static(body))
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_quotas_refuse_uploads_past_them() {
    let cluster = Cluster::start().await.unwrap();
    let c = login(&cluster, "test:tester", "testing").await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c",
            hdrs(&[("x-container-meta-quota-bytes", "abc")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"Invalid bytes quota.");
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c",
            hdrs(&[
                ("x-container-meta-quota-bytes", "10"),
                ("x-container-meta-quota-count", "2"),
            ]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    assert_eq!(put(&c, "/v1/AUTH_test/c/big", b"0123456789x").await, 413);
    assert_eq!(put(&c, "/v1/AUTH_test/c/a", b"01234").await, 201);
    assert_eq!(put(&c, "/v1/AUTH_test/c/b", b"0").await, 201);
    // The count is judged by the container's stats, which follow the
    // uploads shortly; wait for them rather than for a fixed time.
    let mut count = String::new();
    for _ in 0..100 {
        count = c
            .call(Method::HEAD, "/v1/AUTH_test/c")
            .await
            .header("x-container-object-count")
            .to_string();
        if count == "2" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(count, "2");
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/third",
            hdrs(&[]),
            Bytes::from_static(b"0"),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(&a.body[..], b"Upload exceeds quota.");
    // Someone who may not write there learns nothing of the quota.
    let other = login(&cluster, "test2:tester2", "testing2").await;
    let a = other
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/third",
            hdrs(&[]),
            Bytes::from_static(b"0"),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_quotas_are_set_by_resellers_and_bind_everyone_else() {
    let cluster = Cluster::start().await.unwrap();
    let owner = login(&cluster, "test:tester", "testing").await;
    let reseller = login(&cluster, "admin:admin", "admin").await;
    let a = owner
        .send(
            Method::POST,
            "/v1/AUTH_test",
            hdrs(&[("x-account-quota-bytes", "10")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = reseller
        .send(
            Method::POST,
            "/v1/AUTH_test",
            hdrs(&[("x-account-quota-bytes", "ten")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = reseller
        .send(
            Method::POST,
            "/v1/AUTH_test",
            hdrs(&[("x-account-quota-bytes", "10")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.status);
    let a = owner.call(Method::HEAD, "/v1/AUTH_test").await;
    assert_eq!(a.header("x-account-quota-bytes"), "10");
    assert_eq!(put(&owner, "/v1/AUTH_test/c", b"").await, 201);
    assert_eq!(
        put(&owner, "/v1/AUTH_test/c/big", b"0123456789x").await,
        413
    );
    assert_eq!(put(&owner, "/v1/AUTH_test/c/ok", b"0123456789").await, 201);
    // The reseller is not bound by it.
    assert_eq!(
        put(&reseller, "/v1/AUTH_test/c/big", b"0123456789x").await,
        201
    );
    let a = reseller
        .send(
            Method::POST,
            "/v1/AUTH_test",
            hdrs(&[("x-remove-account-quota-bytes", "x")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    let a = owner.call(Method::HEAD, "/v1/AUTH_test").await;
    assert_eq!(a.header("x-account-quota-bytes"), "");
}
