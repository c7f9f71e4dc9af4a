//! RFC-compliant (quoted) ETags by account or container flag, end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_are_quoted_where_the_owner_asks() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    assert!(c
        .call(Method::PUT, "/v1/AUTH_test/c")
        .await
        .status
        .is_success());
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/o",
            hdrs(&[]),
            Bytes::from_static(b"test"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let bare = "098f6bcd4621d373cade4e832627b4f6";
    async fn etag(c: &Client) -> String {
        c.call(Method::HEAD, "/v1/AUTH_test/c/o")
            .await
            .header("etag")
            .to_string()
    }
    assert_eq!(etag(&c).await, bare);
    let post = |path: &'static str, name: &'static str, value: &'static str| {
        let c = &c;
        async move {
            let a = c
                .send(Method::POST, path, hdrs(&[(name, value)]), Bytes::new())
                .await;
            assert_eq!(a.status, StatusCode::NO_CONTENT);
        }
    };
    post("/v1/AUTH_test", "x-account-rfc-compliant-etags", "true").await;
    assert_eq!(etag(&c).await, format!("\"{bare}\""));
    let a = c.call(Method::HEAD, "/v1/AUTH_test").await;
    assert_eq!(a.header("x-account-rfc-compliant-etags"), "True");
    // The container's flag wins over the account's.
    post(
        "/v1/AUTH_test/c",
        "x-container-rfc-compliant-etags",
        "false",
    )
    .await;
    assert_eq!(etag(&c).await, bare);
    post(
        "/v1/AUTH_test/c",
        "x-remove-container-rfc-compliant-etags",
        "x",
    )
    .await;
    assert_eq!(etag(&c).await, format!("\"{bare}\""));
}
