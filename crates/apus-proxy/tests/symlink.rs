//! Symlinks end to end against an in-process cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use md5::Digest;
use support::{hdrs, Client};

async fn client(cluster: &Cluster) -> Client {
    let mut c = Client::new(cluster);
    c.login("test:tester", "testing").await;
    for container in ["c", "d"] {
        let a = c
            .call(Method::PUT, &format!("/v1/AUTH_test/{container}"))
            .await;
        assert!(a.status.is_success(), "{}", a.status);
    }
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/d/target",
            hdrs(&[("content-type", "text/x-target")]),
            Bytes::from_static(b"target body"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    c
}

fn link(target: &str) -> http::HeaderMap {
    hdrs(&[("x-symlink-target", target)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_followed_and_show_themselves_on_request() {
    let cluster = Cluster::start().await.unwrap();
    let c = client(&cluster).await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/link",
            link("d/target"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);

    let a = c.call(Method::GET, "/v1/AUTH_test/c/link").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"target body");
    assert_eq!(a.header("content-location"), "/v1/AUTH_test/d/target");
    assert_eq!(a.header("content-type"), "text/x-target");
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/link",
            hdrs(&[("range", "bytes=0-5")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], b"target");

    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/link?symlink=get")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.is_empty());
    assert_eq!(a.header("x-symlink-target"), "d/target");
    assert_eq!(a.header("content-type"), "application/symlink");

    // The listing says where it points.
    let a = c.call(Method::GET, "/v1/AUTH_test/c?format=json").await;
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing[0]["symlink_path"], "/v1/AUTH_test/d/target");
    assert_eq!(listing[0]["hash"], "d41d8cd98f00b204e9800998ecf8427e");

    // POST: applied to the link, answered with where it points.
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/c/link",
            hdrs(&[("x-object-meta-a", "b")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(a.header("location"), "/v1/AUTH_test/d/target");
    let a = c
        .send(
            Method::POST,
            "/v1/AUTH_test/c/link",
            link("d/other"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // COPY follows the link; with ?symlink=get it copies the link.
    let copy = Method::from_bytes(b"COPY").unwrap();
    let a = c
        .send(
            copy.clone(),
            "/v1/AUTH_test/c/link",
            hdrs(&[("destination", "c/copied")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/copied?symlink=get")
        .await;
    assert_eq!(&a.body[..], b"target body");
    let a = c
        .send(
            copy,
            "/v1/AUTH_test/c/link?symlink=get",
            hdrs(&[("destination", "c/link2")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c
        .call(Method::GET, "/v1/AUTH_test/c/link2?symlink=get")
        .await;
    assert_eq!(a.header("x-symlink-target"), "d/target");

    // DELETE removes the link, not the target.
    let a = c.call(Method::DELETE, "/v1/AUTH_test/c/link").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/d/target").await;
    assert_eq!(&a.body[..], b"target body");

    // A dangling link answers the target's 404, saying which.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/dangling",
            link("d/nothing"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/dangling").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.header("content-location"), "/v1/AUTH_test/d/nothing");

    let a = c.call(Method::GET, "/info").await;
    let info: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(info["symlink"]["symloop_max"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_links_and_loops_get_swifts_answers() {
    let cluster = Cluster::start().await.unwrap();
    let c = client(&cluster).await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/l",
            link("d/target"),
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"Symlink requests require a zero byte body");
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/l",
            link("/d/target"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/l",
            link("nocontainer"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    let a = c
        .send(Method::PUT, "/v1/AUTH_test/c/l", link("c/l"), Bytes::new())
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"Symlink cannot target itself");
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/l",
            hdrs(&[
                ("x-symlink-target", "d/target"),
                ("x-symlink-target-account", "a/b"),
            ]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    // Nothing was stored.
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c/l?symlink=get").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // A loop: l1 -> l2 -> l1.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/l1",
            link("c/l2"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/l2",
            link("c/l1"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/l1").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(
        &a.body[..],
        b"Too many levels of symbolic links, maximum allowed is 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_links_pin_their_target() {
    let cluster = Cluster::start().await.unwrap();
    let c = client(&cluster).await;
    let etag = format!("{:x}", md5::Md5::digest(b"target body"));
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/pinned",
            hdrs(&[
                ("x-symlink-target", "d/target"),
                ("x-symlink-target-etag", &etag),
            ]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c
        .call(Method::HEAD, "/v1/AUTH_test/c/pinned?symlink=get")
        .await;
    assert_eq!(a.header("x-symlink-target-etag"), etag);
    assert_eq!(a.header("x-symlink-target-bytes"), "11");
    assert_eq!(a.header("content-type"), "text/x-target");
    let a = c.call(Method::GET, "/v1/AUTH_test/c?format=json").await;
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing[0]["symlink_etag"], etag);
    assert_eq!(listing[0]["symlink_bytes"], 11);

    // The wrong etag, or a target that is not there, is refused.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/bad",
            hdrs(&[
                ("x-symlink-target", "d/target"),
                ("x-symlink-target-etag", "0123"),
            ]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(
        String::from_utf8_lossy(&a.body),
        format!("Object Etag '{etag}' does not match X-Symlink-Target-Etag header '0123'")
    );
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/bad",
            hdrs(&[
                ("x-symlink-target", "d/none"),
                ("x-symlink-target-etag", "0123"),
            ]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(&a.body[..], b"X-Symlink-Target does not exist");

    // The target changes: the static link no longer reads it.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/d/target",
            hdrs(&[]),
            Bytes::from_static(b"new"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c.call(Method::GET, "/v1/AUTH_test/c/pinned").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_are_judged_by_the_target() {
    let cluster = Cluster::start().await.unwrap();
    let c = client(&cluster).await;
    let etag = format!("{:x}", md5::Md5::digest(b"target body"));
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/link",
            link("d/target"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/link",
            hdrs(&[("if-match", &etag)]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"target body");
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/link",
            hdrs(&[("if-match", "not-the-etag")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(a.header("content-location"), "/v1/AUTH_test/d/target");
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c/link",
            hdrs(&[("if-none-match", &etag)]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_format_shows_links_cleanly() {
    let cluster = Cluster::start().await.unwrap();
    let c = client(&cluster).await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/ln",
            link("d/target"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    // Listings are edited as JSON and only then written in the format
    // asked: the link's parameters never leak into `hash`.
    let a = c.call(Method::GET, "/v1/AUTH_test/c?format=xml").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), "application/xml; charset=utf-8");
    let xml = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        xml.contains("<hash>d41d8cd98f00b204e9800998ecf8427e</hash>"),
        "{xml}"
    );
    assert!(!xml.contains("symlink_target"), "{xml}");
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c",
            hdrs(&[("accept", "text/xml")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.header("content-type"), "text/xml; charset=utf-8");
    assert_eq!(a.header("vary"), "Accept");
    let a = c.call(Method::GET, "/v1/AUTH_test/c").await;
    assert_eq!(a.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(&a.body[..], b"ln\n");
    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/c",
            hdrs(&[("accept", "image/png")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_ACCEPTABLE);
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c?format=json").await;
    assert_eq!(a.header("content-type"), "application/json; charset=utf-8");
}
