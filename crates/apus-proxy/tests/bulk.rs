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
