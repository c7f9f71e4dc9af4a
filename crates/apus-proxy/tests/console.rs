//! The web console's server side through the whole pipeline: its page
//! and assets are served from the binary with a strict content policy,
//! and the cluster state is only for reseller admins, by the same tokens
//! as the API. The page itself is tested in a browser by the `apus`
//! crate's console test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_come_from_the_binary() {
    let cluster = Cluster::start().await.unwrap();
    let anon = Client::new(&cluster);

    let a = anon.call(Method::GET, "/console").await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    // Made absolute on the way out, as Swift does with every Location.
    assert!(
        a.header("location").ends_with("/console/"),
        "{}",
        a.header("location")
    );

    let page = anon.call(Method::GET, "/console/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let csp = page.header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    let html = std::str::from_utf8(&page.body).unwrap();
    assert!(html.contains("console.js") && html.contains("console.css"));
    // Nothing is fetched from elsewhere: no absolute URL in the page.
    assert!(!html.contains("http://") && !html.contains("https://"));

    for (name, kind) in [
        ("console.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let a = anon.call(Method::GET, &format!("/console/{name}")).await;
        assert_eq!(a.status, StatusCode::OK, "{name}");
        assert_eq!(a.header("content-type"), kind, "{name}");
        assert_eq!(a.header("content-length"), a.body.len().to_string());
        assert!(!a.body.is_empty());
        let text = std::str::from_utf8(&a.body).unwrap();
        assert!(!text.contains("https://"), "{name} reaches elsewhere");

        // HEAD: the same head, no body.
        let h = anon.call(Method::HEAD, &format!("/console/{name}")).await;
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.header("content-length"), a.body.len().to_string());
        assert!(h.body.is_empty());

        // Revalidation by ETag.
        let etag = a.header("etag").to_string();
        assert!(etag.starts_with('"'), "{etag}");
        let again = anon
            .send(
                Method::GET,
                &format!("/console/{name}"),
                hdrs(&[("if-none-match", &etag)]),
                Bytes::new(),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert!(again.body.is_empty());
    }

    assert_eq!(
        anon.call(Method::GET, "/console/nothing.js").await.status,
        StatusCode::NOT_FOUND
    );
    let post = anon.call(Method::POST, "/console/").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), "GET, HEAD");
    // A path that only starts like ours is not ours.
    assert_ne!(
        anon.call(Method::GET, "/consoles").await.status,
        StatusCode::OK
    );
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_state_is_for_reseller_admins_only() {
    let cluster = Cluster::start().await.unwrap();

    let anon = Client::new(&cluster);
    assert_eq!(
        anon.call(Method::GET, "/console/api/cluster").await.status,
        StatusCode::UNAUTHORIZED
    );
    let forged = anon
        .send(
            Method::GET,
            "/console/api/cluster",
            hdrs(&[("x-auth-token", "AUTH_tk00000000000000000000000000000000")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    // An account admin is not a reseller admin.
    let mut tester = Client::new(&cluster);
    tester.login("test:tester", "testing").await;
    assert_eq!(
        tester
            .call(Method::GET, "/console/api/cluster")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        tester
            .call(Method::HEAD, "/console/api/cluster")
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Some traffic for the proxy's figures.
    assert_eq!(
        tester.call(Method::PUT, "/v1/AUTH_test/c").await.status,
        StatusCode::CREATED
    );

    let mut admin = Client::new(&cluster);
    admin.login("admin:admin", "admin").await;
    let head = admin.call(Method::HEAD, "/console/api/cluster").await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    let a = admin.call(Method::GET, "/console/api/cluster").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), "application/json; charset=utf-8");
    assert_eq!(a.header("cache-control"), "no-store");
    let state: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(state["time"].as_f64().unwrap() > 1.0e9, "{state}");
    assert!(state["proxy"]["error_limited"].is_array(), "{state}");
    let servers = state["servers"].as_array().unwrap();
    for kind in ["account", "container", "object"] {
        let of_kind: Vec<_> = servers.iter().filter(|s| s["type"] == kind).collect();
        assert!(!of_kind.is_empty(), "no {kind} server in {state}");
        for s in of_kind {
            assert_eq!(s["reachable"], true, "{s}");
        }
    }
    cluster.stop().await.unwrap();
}
