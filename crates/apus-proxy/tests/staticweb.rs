//! Static websites and virtual hosting end to end against an in-process
//! cluster: index pages, HTML listings, redirects, error pages, directory
//! markers, and `<container>.<account>.<domain>` hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_testkit::{Cluster, ClusterOptions};
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};

async fn site(cluster: &Cluster) -> (Client, Client) {
    let mut owner = Client::new(cluster);
    owner.login("test:tester", "testing").await;
    let a = owner
        .send(
            Method::PUT,
            "/v1/AUTH_test/web",
            hdrs(&[("x-container-read", ".r:*,.rlistings")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    for (name, body, ct) in [
        ("index.html", &b"<p>home</p>"[..], "text/html"),
        ("404error.html", b"<p>no such page</p>", "text/html"),
        ("docs/a.txt", b"a", "text/plain"),
        ("docs/", b"", "application/directory"),
    ] {
        let a = owner
            .send(
                Method::PUT,
                &format!("/v1/AUTH_test/web/{name}"),
                hdrs(&[("content-type", ct)]),
                Bytes::from_static(body),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{name}");
    }
    (owner, Client::new(cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_serves_a_website_to_anonymous_clients() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = site(&cluster).await;
    // Not a website yet: the plain listing (readable by ACL).
    let a = anon.call(Method::GET, "/v1/AUTH_test/web/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.header("content-type").starts_with("text/html"));

    let a = owner
        .send(
            Method::POST,
            "/v1/AUTH_test/web",
            hdrs(&[
                ("x-container-meta-web-index", "index.html"),
                ("x-container-meta-web-listings", "true"),
                ("x-container-meta-web-error", "error.html"),
            ]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());

    // The container without its slash is redirected, absolutely.
    let a = anon.call(Method::GET, "/v1/AUTH_test/web").await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        a.header("location"),
        format!("http://{}/v1/AUTH_test/web/", anon.host)
    );
    let a = anon.call(Method::GET, "/v1/AUTH_test/web/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"<p>home</p>");

    // A directory (its marker counts as missing) lists as HTML.
    let a = anon.call(Method::GET, "/v1/AUTH_test/web/docs/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), "text/html; charset=UTF-8");
    let html = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        html.contains("<title>Listing of /v1/AUTH_test/web/docs/</title>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"./a%2Etxt\">a.txt</a>"), "{html}");
    assert!(html.contains("<a href=\"../\">../</a>"), "{html}");
    let a = anon.call(Method::GET, "/v1/AUTH_test/web/docs").await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);

    // A missing page answers 404 with the site's error page.
    let a = anon.call(Method::GET, "/v1/AUTH_test/web/nowhere").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(&a.body[..], b"<p>no such page</p>");

    // The owner sees the container as storage unless asking for the web.
    let a = owner.call(Method::GET, "/v1/AUTH_test/web/").await;
    assert!(!a.header("content-type").starts_with("text/html"));
    let a = owner
        .send(
            Method::GET,
            "/v1/AUTH_test/web/",
            hdrs(&[("x-web-mode", "true")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(&a.body[..], b"<p>home</p>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_in_the_storage_domain_name_accounts_and_containers() {
    let cluster = Cluster::start_with(ClusterOptions {
        proxy: Box::new(|c| c.domain_remap.storage_domain = vec!["example.com".into()]),
        ..Default::default()
    })
    .await
    .unwrap();
    let (_owner, anon) = site(&cluster).await;
    let get = |host: &'static str, path: &'static str| {
        let anon = &anon;
        async move {
            anon.send(Method::GET, path, hdrs(&[("host", host)]), Bytes::new())
                .await
        }
    };
    let a = get("web.AUTH_test.example.com", "/docs/a.txt").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"a");
    // `-` stands for the reseller prefix's `_`, which hosts cannot have.
    let a = get("auth-test.example.com", "/web/docs/a.txt").await;
    assert_eq!(&a.body[..], b"a");
    let a = get("a.b.c.example.com", "/").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"Bad domain in host header");
}
