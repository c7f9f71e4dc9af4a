//! Temporary URLs end to end against an in-process cluster: signatures
//! by account and container keys, expiry, scope, and what is cleaned.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_proxy::tempurl::hmac_hex;
use apus_testkit::Cluster;
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signed(method: &str, path: &str, key: &str, expires: i64, digest: &str) -> String {
    let sig = hmac_hex(digest, key.as_bytes(), method, expires, path, None).unwrap();
    format!("{path}?temp_url_sig={sig}&temp_url_expires={expires}")
}

async fn setup(cluster: &Cluster) -> (Client, Client) {
    let mut owner = Client::new(cluster);
    owner.login("test:tester", "testing").await;
    let a = owner
        .send(
            Method::POST,
            "/v1/AUTH_test",
            hdrs(&[("x-account-meta-temp-url-key", "acctkey")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    for c in ["c", "other"] {
        let a = owner.call(Method::PUT, &format!("/v1/AUTH_test/{c}")).await;
        assert!(a.status.is_success());
    }
    let a = owner
        .send(
            Method::POST,
            "/v1/AUTH_test/c",
            hdrs(&[("x-container-meta-temp-url-key", "contkey")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    let a = owner
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/o",
            hdrs(&[
                ("x-object-meta-secret", "s"),
                ("x-object-meta-public-note", "n"),
            ]),
            Bytes::from_static(b"data"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    // The anonymous client: no token at all.
    (owner, Client::new(cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_url_grants_exactly_what_it_signs() {
    let cluster = Cluster::start().await.unwrap();
    let (_owner, anon) = setup(&cluster).await;
    let expires = now() + 600;

    let a = anon.call(Method::GET, "/v1/AUTH_test/c/o").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    for (key, digest) in [
        ("acctkey", "sha1"),
        ("contkey", "sha256"),
        ("acctkey", "sha512"),
    ] {
        let url = signed("GET", "/v1/AUTH_test/c/o", key, expires, digest);
        let a = anon.call(Method::GET, &url).await;
        assert_eq!(a.status, StatusCode::OK, "{key} {digest}");
        assert_eq!(&a.body[..], b"data");
        // Private metadata is not handed out; public metadata is.
        assert_eq!(a.header("x-object-meta-secret"), "");
        assert_eq!(a.header("x-object-meta-public-note"), "n");
        assert_eq!(
            a.header("content-disposition"),
            "attachment; filename=\"o\"; filename*=UTF-8''o"
        );
        assert!(!a.header("expires").is_empty());
        // A GET signature lets a HEAD through, not a PUT or DELETE.
        let a = anon.call(Method::HEAD, &url).await;
        assert_eq!(a.status, StatusCode::OK);
        let a = anon.call(Method::DELETE, &url).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }

    // A wrong key, an expired URL, another object: all refused alike.
    let bad = [
        signed("GET", "/v1/AUTH_test/c/o", "nope", expires, "sha256"),
        signed("GET", "/v1/AUTH_test/c/o", "acctkey", now() - 10, "sha256"),
        signed("GET", "/v1/AUTH_test/c/o", "acctkey", expires, "sha256").replace("/c/o?", "/c/p?"),
    ];
    for url in bad {
        let a = anon.call(Method::GET, &url).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{url}");
        assert_eq!(&a.body[..], b"401 Unauthorized: Temp URL invalid\n");
    }

    // filename= and inline shape the disposition.
    let url = signed("GET", "/v1/AUTH_test/c/o", "acctkey", expires, "sha256");
    let a = anon
        .call(Method::GET, &format!("{url}&filename=my%20file.txt"))
        .await;
    assert_eq!(
        a.header("content-disposition"),
        "attachment; filename=\"my file.txt\"; filename*=UTF-8''my%20file.txt"
    );
    let a = anon.call(Method::GET, &format!("{url}&inline")).await;
    assert_eq!(a.header("content-disposition"), "inline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_by_signed_url_cannot_point_elsewhere() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let expires = now() + 600;
    let url = signed("PUT", "/v1/AUTH_test/c/new", "contkey", expires, "sha256");
    let a = anon
        .send(
            Method::PUT,
            &url,
            hdrs(&[("x-object-manifest", "other/seg")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        &a.body[..],
        b"The header 'X-Object-Manifest' is not allowed in this tempurl"
    );
    let a = anon
        .send(Method::PUT, &url, hdrs(&[]), Bytes::from_static(b"up"))
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = owner.call(Method::GET, "/v1/AUTH_test/c/new").await;
    assert_eq!(&a.body[..], b"up");

    // A prefix signature covers the objects under it only.
    let sig = hmac_hex(
        "sha256",
        b"acctkey",
        "GET",
        expires,
        "prefix:/v1/AUTH_test/c/n",
        None,
    )
    .unwrap();
    let q = format!("temp_url_sig={sig}&temp_url_expires={expires}&temp_url_prefix=n");
    let a = anon
        .call(Method::GET, &format!("/v1/AUTH_test/c/new?{q}"))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = anon
        .call(Method::GET, &format!("/v1/AUTH_test/c/o?{q}"))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_url_never_grants_more_than_it_says() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let expires = now() + 600;
    let a = owner
        .send(
            Method::PUT,
            "/v1/AUTH_test/other/secret",
            hdrs(&[]),
            Bytes::from_static(b"secret"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);

    // A GET signature is no PUT signature, and COPY is no method a URL
    // can be signed for.
    let get = signed("GET", "/v1/AUTH_test/c/o", "acctkey", expires, "sha256");
    let a = anon
        .send(Method::PUT, &get, hdrs(&[]), Bytes::from_static(b"x"))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let copy = signed("COPY", "/v1/AUTH_test/c/o", "acctkey", expires, "sha256");
    let a = anon
        .send(
            Method::from_bytes(b"COPY").unwrap(),
            &copy,
            hdrs(&[("destination", "c/copied")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // An upload may not point at data elsewhere, by copy or by link.
    let put = signed("PUT", "/v1/AUTH_test/c/new", "contkey", expires, "sha256");
    for header in ["x-copy-from", "x-symlink-target", "x-object-manifest"] {
        let a = anon
            .send(
                Method::PUT,
                &put,
                hdrs(&[(header, "other/secret")]),
                Bytes::new(),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{header}");
    }
    let a = owner.call(Method::GET, "/v1/AUTH_test/c/new").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // Another account's key signs nothing here.
    let mut other = Client::new(&cluster);
    other.login("test2:tester2", "testing2").await;
    let a = other
        .send(
            Method::POST,
            "/v1/AUTH_test2",
            hdrs(&[("x-account-meta-temp-url-key", "theirs")]),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    let theirs = signed("GET", "/v1/AUTH_test/c/o", "theirs", expires, "sha256");
    let a = anon.call(Method::GET, &theirs).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // An IP range limits the client; the range is part of what is signed.
    for (range, status) in [
        ("127.0.0.0/8", StatusCode::OK),
        ("10.0.0.0/8", StatusCode::UNAUTHORIZED),
    ] {
        let sig = hmac_hex(
            "sha256",
            b"acctkey",
            "GET",
            expires,
            "/v1/AUTH_test/c/o",
            Some(range),
        )
        .unwrap();
        let url = format!(
            "/v1/AUTH_test/c/o?temp_url_sig={sig}&temp_url_expires={expires}&temp_url_ip_range={}",
            range.replace('/', "%2F")
        );
        let a = anon.call(Method::GET, &url).await;
        assert_eq!(a.status, status, "{range}");
    }

    // A container key reaches its container only: a manifest there that
    // names a segment elsewhere does not read it.
    let a = owner
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/dlo",
            hdrs(&[("x-object-manifest", "other/sec")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let dlo = signed("GET", "/v1/AUTH_test/c/dlo", "contkey", expires, "sha256");
    let a = anon.call(Method::GET, &dlo).await;
    assert!(!a.body.windows(6).any(|w| w == b"secret"), "{:?}", a.body);
}
