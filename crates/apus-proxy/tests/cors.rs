//! Cross-origin requests end to end: preflights and the headers on
//! answers, by a container's allowed origins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_say_which_origins_may_use_them() {
    let cluster = Cluster::start().await.unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c",
            hdrs(&[(
                "x-container-meta-access-control-allow-origin",
                "http://ok.example",
            )]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/o",
            hdrs(&[("x-object-meta-color", "red")]),
            Bytes::from_static(b"test"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let anon = Client::new(&cluster);
    let preflight = |origin: &'static str, method: Option<&'static str>| {
        let anon = &anon;
        async move {
            let mut h = vec![("origin", origin)];
            if let Some(m) = method {
                h.push(("access-control-request-method", m));
            }
            anon.send(Method::OPTIONS, "/v1/AUTH_test/c/o", hdrs(&h), Bytes::new())
                .await
        }
    };
    assert_eq!(preflight("http://ok.example", None).await.status, 401);
    assert_eq!(
        preflight("http://evil.example", Some("GET")).await.status,
        401
    );
    let a = preflight("http://ok.example", Some("GET")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("access-control-allow-origin"), "http://ok.example");
    assert!(a.header("access-control-allow-methods").contains("GET"));
    // Not a preflight: the plain OPTIONS answer.
    let a = anon.call(Method::OPTIONS, "/v1/AUTH_test/c/o").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.headers.contains_key("access-control-allow-origin"));

    let get = |origin: &'static str| {
        let c = &c;
        async move {
            c.send(
                Method::GET,
                "/v1/AUTH_test/c/o",
                hdrs(&[("origin", origin)]),
                Bytes::new(),
            )
            .await
        }
    };
    let a = get("http://ok.example").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("access-control-allow-origin"), "http://ok.example");
    let exposed: Vec<&str> = a
        .header("access-control-expose-headers")
        .split(", ")
        .collect();
    assert!(exposed.contains(&"x-object-meta-color"), "{exposed:?}");
    assert!(exposed.contains(&"etag"), "{exposed:?}");
    // Strict mode: another origin gets the object but no CORS headers.
    let a = get("http://evil.example").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.headers.contains_key("access-control-allow-origin"));
}
