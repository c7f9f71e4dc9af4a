//! Form uploads end to end against an in-process cluster: signed forms
//! store their files (redirecting or not), and every way a form can be
//! wrong is refused as Swift refuses it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_proxy::formpost::{form_signature, FormPostConfig};
use apus_proxy::Pipeline;
use apus_testkit::{Cluster, ClusterOptions};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use support::{hdrs, Answer, Client};

const BOUNDARY: &str = "----WebKitFormBoundaryNcxTqxSlX7t4TDkR";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One part of a form.
enum Item<'a> {
    Field(&'a str, &'a str),
    File {
        name: &'a str,
        filename: &'a str,
        content_type: Option<&'a str>,
        data: &'a [u8],
    },
}

fn file<'a>(filename: &'a str, data: &'a [u8]) -> Item<'a> {
    Item::File {
        name: "file",
        filename,
        content_type: Some("text/plain"),
        data,
    }
}

fn multipart(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend(format!("--{BOUNDARY}\r\n").as_bytes());
        match item {
            Item::Field(name, value) => {
                out.extend(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            Item::File {
                name,
                filename,
                content_type,
                data,
            } => {
                out.extend(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                    )
                    .as_bytes(),
                );
                if let Some(t) = content_type {
                    out.extend(format!("Content-Type: {t}\r\n").as_bytes());
                }
                out.extend(b"\r\n");
                out.extend(*data);
                out.extend(b"\r\n");
            }
        }
    }
    out.extend(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// What a form is signed for.
struct Signed {
    redirect: String,
    max_file_size: u64,
    max_file_count: u64,
    expires: i64,
    signature: String,
}

impl Signed {
    fn new(path: &str, redirect: &str, key: &str) -> Self {
        Signed::with(path, redirect, 1024, 10, now() + 600, key, "sha256")
    }

    fn with(
        path: &str,
        redirect: &str,
        max_file_size: u64,
        max_file_count: u64,
        expires: i64,
        key: &str,
        digest: &str,
    ) -> Self {
        let signature = form_signature(
            digest,
            key.as_bytes(),
            path,
            redirect,
            &max_file_size.to_string(),
            &max_file_count.to_string(),
            &expires.to_string(),
        )
        .unwrap();
        Signed {
            redirect: redirect.to_string(),
            max_file_size,
            max_file_count,
            expires,
            signature,
        }
    }

    /// The signed fields, then `rest`.
    fn form(&self, rest: Vec<Item>) -> Vec<u8> {
        let size = self.max_file_size.to_string();
        let count = self.max_file_count.to_string();
        let expires = self.expires.to_string();
        let mut items = Vec::new();
        if !self.redirect.is_empty() {
            items.push(Item::Field("redirect", &self.redirect));
        }
        items.push(Item::Field("max_file_size", &size));
        items.push(Item::Field("max_file_count", &count));
        items.push(Item::Field("expires", &expires));
        items.push(Item::Field("signature", &self.signature));
        items.extend(rest);
        multipart(&items)
    }
}

fn form_headers() -> HeaderMap {
    hdrs(&[(
        "content-type",
        &format!("multipart/form-data; boundary={BOUNDARY}"),
    )])
}

async fn post(anon: &Client, path: &str, body: Vec<u8>) -> Answer {
    anon.send(Method::POST, path, form_headers(), Bytes::from(body))
        .await
}

/// The owner (logged in) and an anonymous client, with an account key
/// `acctkey`, containers `c` (key `contkey`) and `other` (key
/// `otherkey`), and account `AUTH_test2` keyed `test2key`.
async fn setup(cluster: &Cluster) -> (Client, Client) {
    let mut owner = Client::new(cluster);
    owner.login("test:tester", "testing").await;
    let meta = |name: &str, value: &str| hdrs(&[(name, value)]);
    let a = owner
        .send(
            Method::POST,
            "/v1/AUTH_test",
            meta("x-account-meta-temp-url-key", "acctkey"),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    for (c, key) in [("c", "contkey"), ("other", "otherkey")] {
        let a = owner.call(Method::PUT, &format!("/v1/AUTH_test/{c}")).await;
        assert!(a.status.is_success());
        let a = owner
            .send(
                Method::POST,
                &format!("/v1/AUTH_test/{c}"),
                meta("x-container-meta-temp-url-key", key),
                Bytes::new(),
            )
            .await;
        assert!(a.status.is_success());
    }
    let mut other = Client::new(cluster);
    other.login("test2:tester2", "testing2").await;
    let a = other
        .send(
            Method::POST,
            "/v1/AUTH_test2",
            meta("x-account-meta-temp-url-key", "test2key"),
            Bytes::new(),
        )
        .await;
    assert!(a.status.is_success());
    (owner, Client::new(cluster))
}

async fn stored(owner: &Client, path: &str) -> Option<Answer> {
    let a = owner.call(Method::GET, path).await;
    match a.status {
        StatusCode::OK => Some(a),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET {path}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_form_stores_its_files_and_redirects() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let signed = Signed::new("/v1/AUTH_test/c/up_", "http://example.com/done", "acctkey");
    let body = signed.form(vec![
        file("one.txt", b"Test File\nOne\n"),
        Item::File {
            name: "file2",
            filename: "two.json",
            content_type: Some("application/json"),
            data: b"{\"two\": 2}",
        },
        // An empty file name is a field, not a file.
        Item::File {
            name: "file3",
            filename: "",
            content_type: Some("application/octet-stream"),
            data: b"",
        },
    ]);
    let a = post(&anon, "/v1/AUTH_test/c/up_", body).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{:?}", a.body);
    let location = "http://example.com/done?status=201&message=";
    assert_eq!(a.header("location"), location);
    assert_eq!(
        &a.body[..],
        format!("<html><body><p><a href=\"{location}\">Click to continue...</a></p></body></html>")
            .as_bytes()
    );
    // The files land under the form's prefix with their own types.
    let one = stored(&owner, "/v1/AUTH_test/c/up_one.txt").await.unwrap();
    assert_eq!(&one.body[..], b"Test File\nOne\n");
    assert_eq!(one.header("content-type"), "text/plain");
    let two = stored(&owner, "/v1/AUTH_test/c/up_two.json").await.unwrap();
    assert_eq!(&two.body[..], b"{\"two\": 2}");
    assert_eq!(two.header("content-type"), "application/json");
    let listing = owner.call(Method::GET, "/v1/AUTH_test/c").await;
    assert_eq!(&listing.body[..], b"up_one.txt\nup_two.json\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_redirect_the_answer_is_the_status() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    // A container path without a prefix: names go under it.
    let signed = Signed::new("/v1/AUTH_test/c", "", "acctkey");
    let body = signed.form(vec![file("a.txt", b"aaa"), file("b.txt", b"bbb")]);
    let a = post(&anon, "/v1/AUTH_test/c", body).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(&a.body[..], b"201 Created");
    assert_eq!(a.header("content-type"), "text/plain");
    assert_eq!(a.header("location"), "");
    assert_eq!(
        &stored(&owner, "/v1/AUTH_test/c/a.txt").await.unwrap().body[..],
        b"aaa"
    );
    assert_eq!(
        &stored(&owner, "/v1/AUTH_test/c/b.txt").await.unwrap().body[..],
        b"bbb"
    );

    // No file at all: nothing to do.
    let a = post(&anon, "/v1/AUTH_test/c", signed.form(vec![])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        &a.body[..],
        b"400 Bad Request\r\nFormPost: No Files To Process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_count_is_limited() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let path = "/v1/AUTH_test/c/";
    let signed = Signed::with(
        path,
        "http://x/y?a=b",
        1024,
        2,
        now() + 600,
        "acctkey",
        "sha256",
    );
    let body = signed.form(vec![
        file("1", b"one"),
        file("2", b"two"),
        file("3", b"three"),
    ]);
    let a = post(&anon, path, body).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        a.header("location"),
        "http://x/y?a=b&status=400&message=max%20file%20count%20exceeded"
    );
    assert!(stored(&owner, "/v1/AUTH_test/c/1").await.is_some());
    assert!(stored(&owner, "/v1/AUTH_test/c/2").await.is_some());
    assert!(stored(&owner, "/v1/AUTH_test/c/3").await.is_none());

    // Without a redirect the message is in the body, title-cased.
    let signed = Signed::with(path, "", 1024, 1, now() + 600, "acctkey", "sha256");
    let a = post(
        &anon,
        path,
        signed.form(vec![file("4", b"4"), file("5", b"5")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(stored(&owner, "/v1/AUTH_test/c/4").await.is_some());
    assert!(stored(&owner, "/v1/AUTH_test/c/5").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_expired_forms_are_refused() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let path = "/v1/AUTH_test/c/x_";
    let unauthorized = |a: &Answer, what: &str| {
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            a.header("www-authenticate"),
            "Swift realm=\"unknown\"",
            "{what}"
        );
    };

    let expired = Signed::with(path, "http://r", 1024, 10, now() - 10, "acctkey", "sha256");
    let a = post(&anon, path, expired.form(vec![file("f", b"f")])).await;
    unauthorized(&a, "expired");
    assert_eq!(&a.body[..], b"FormPost: Form Expired");

    let cases = [
        ("wrong key", Signed::new(path, "", "nope")),
        // Another account's key, another container's key.
        ("other account", Signed::new(path, "", "test2key")),
        ("other container", Signed::new(path, "", "otherkey")),
        // Signed for another path.
        (
            "other path",
            Signed::new("/v1/AUTH_test/c/y_", "", "acctkey"),
        ),
    ];
    for (what, signed) in cases {
        let a = post(&anon, path, signed.form(vec![file("f", b"f")])).await;
        unauthorized(&a, what);
        assert_eq!(&a.body[..], b"FormPost: Invalid Signature", "{what}");
    }
    // A field changed after signing.
    let signed = Signed::new(path, "", "acctkey");
    let body = String::from_utf8(signed.form(vec![file("f", b"f")]))
        .unwrap()
        .replace("\r\n1024\r\n", "\r\n999999\r\n");
    let a = post(&anon, path, body.into_bytes()).await;
    unauthorized(&a, "tampered");
    // No signature at all.
    let body = multipart(&[
        Item::Field("max_file_size", "1024"),
        Item::Field("max_file_count", "10"),
        Item::Field("expires", &(now() + 600).to_string()),
        file("f", b"f"),
    ]);
    let a = post(&anon, path, body).await;
    unauthorized(&a, "unsigned");
    // A path naming no container has no keys.
    let signed = Signed::new("/v1/AUTH_test", "", "acctkey");
    let a = post(&anon, "/v1/AUTH_test", signed.form(vec![file("f", b"f")])).await;
    unauthorized(&a, "account path");
    assert!(stored(&owner, "/v1/AUTH_test/c/x_f").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_digest_and_both_encodings_sign() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let path = "/v1/AUTH_test/c/d_";
    let expires = now() + 600;
    for (n, digest) in ["sha1", "sha256", "sha512"].into_iter().enumerate() {
        let hex = Signed::with(path, "", 1024, 10, expires, "acctkey", digest);
        let name = format!("hex{n}");
        let a = post(&anon, path, hex.form(vec![file(&name, b"h")])).await;
        assert_eq!(a.status, StatusCode::CREATED, "{digest} hex");

        let mut b64 = Signed::with(path, "", 1024, 10, expires, "contkey", digest);
        let raw: Vec<u8> = (0..b64.signature.len() / 2)
            .map(|i| u8::from_str_radix(&b64.signature[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        b64.signature = format!(
            "{digest}:{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let name = format!("b64{n}");
        let a = post(&anon, path, b64.form(vec![file(&name, b"b")])).await;
        assert_eq!(a.status, StatusCode::CREATED, "{digest} base64");
    }
    let listing = owner.call(Method::GET, "/v1/AUTH_test/c").await;
    assert_eq!(
        &listing.body[..],
        b"d_b640\nd_b641\nd_b642\nd_hex0\nd_hex1\nd_hex2\n"
    );
    // A digest that is not allowed.
    let mut md5 = Signed::new(path, "", "acctkey");
    md5.signature = "md5:AAAAAAAAAAAAAAAAAAAAAA==".to_string();
    let a = post(&anon, path, md5.form(vec![file("m", b"m")])).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_size_is_limited() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let path = "/v1/AUTH_test/c/";
    let signed = Signed::with(path, "http://r", 5, 10, now() + 600, "acctkey", "sha256");
    let a = post(
        &anon,
        path,
        signed.form(vec![file("ok", b"12345"), file("big", b"123456")]),
    )
    .await;
    // A refusal, not a redirect.
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"FormPost: max_file_size exceeded");
    assert_eq!(a.header("content-type"), "text/plain");
    assert!(stored(&owner, "/v1/AUTH_test/c/ok").await.is_some());
    assert!(stored(&owner, "/v1/AUTH_test/c/big").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_forms_and_other_posts() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let path = "/v1/AUTH_test/c/";
    let signed = Signed::new(path, "http://r", "acctkey");
    let mut body = b"XX".to_vec();
    body.extend(signed.form(vec![file("f", b"f")]));
    let a = post(&anon, path, body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(&a.body[..], b"FormPost: invalid starting boundary");

    // Not a form with a boundary: the request goes on, and tempauth
    // wants a token.
    for content_type in ["multipart/form-data", "text/plain; boundary=x", ""] {
        let a = anon
            .send(
                Method::POST,
                path,
                hdrs(&[("content-type", content_type)]),
                Bytes::from(signed.form(vec![file("f", b"f")])),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{content_type:?}");
        assert!(!String::from_utf8_lossy(&a.body).contains("FormPost"));
    }
    // A plain metadata POST is still the owner's only.
    let a = anon
        .send(
            Method::POST,
            "/v1/AUTH_test/c",
            hdrs(&[("x-container-meta-x", "y")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Fields that must be integers.
    let expires = (now() + 600).to_string();
    for (field, message) in [
        ("max_file_size", "FormPost: max_file_size not an integer"),
        ("max_file_count", "FormPost: max_file_count not an integer"),
        ("expires", "FormPost: expired not an integer"),
        (
            "x_delete_at",
            "FormPost: x_delete_at not an integer: Unix timestamp required.",
        ),
        (
            "x_delete_after",
            "FormPost: x_delete_after not an integer: Number of seconds required.",
        ),
    ] {
        let mut fields = vec![
            ("max_file_size", "10"),
            ("max_file_count", "10"),
            ("expires", expires.as_str()),
        ];
        match fields.iter_mut().find(|(n, _)| *n == field) {
            Some(slot) => slot.1 = "ten",
            None => fields.push((field, "ten")),
        }
        let mut items: Vec<Item> = fields.iter().map(|(n, v)| Item::Field(n, v)).collect();
        items.push(file("f", b"f"));
        let a = post(&anon, path, multipart(&items)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(String::from_utf8_lossy(&a.body), message);
    }
    assert!(stored(&owner, "/v1/AUTH_test/c/f").await.is_none());

    // An upload that fails reports the PUT's status.
    let signed = Signed::new("/v1/AUTH_test/missing/", "http://r", "acctkey");
    let a = post(
        &anon,
        "/v1/AUTH_test/missing/",
        signed.form(vec![file("f", b"f")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), "http://r?status=404&message=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_shape_the_objects() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let path = "/v1/AUTH_test/c/";
    // The container's key signs too.
    let signed = Signed::new(path, "", "contkey");
    let body = signed.form(vec![
        Item::Field("x_delete_after", "3600"),
        file("plain", b"p"),
        Item::File {
            name: "file",
            filename: "untyped",
            content_type: None,
            data: b"u",
        },
        // A field after a file applies to the files after it.
        Item::Field("content-type", "text/html"),
        Item::Field("content-encoding", "gzip"),
        file("html", b"<p>"),
    ]);
    let before = now();
    let a = post(&anon, path, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let plain = stored(&owner, "/v1/AUTH_test/c/plain").await.unwrap();
    assert_eq!(plain.header("content-type"), "text/plain");
    assert_eq!(plain.header("content-encoding"), "");
    let delete_at: i64 = plain.header("x-delete-at").parse().unwrap();
    assert!(
        (before + 3600..=now() + 3600).contains(&delete_at),
        "{delete_at}"
    );
    let untyped = stored(&owner, "/v1/AUTH_test/c/untyped").await.unwrap();
    assert_eq!(untyped.header("content-type"), "application/octet-stream");
    let html = stored(&owner, "/v1/AUTH_test/c/html").await.unwrap();
    assert_eq!(html.header("content-type"), "text/html");
    assert_eq!(html.header("content-encoding"), "gzip");
    assert_eq!(&html.body[..], b"<p>");

    let at = (now() + 7200).to_string();
    let body = signed.form(vec![Item::Field("x_delete_at", &at), file("at", b"a")]);
    let a = post(&anon, path, body).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let obj = stored(&owner, "/v1/AUTH_test/c/at").await.unwrap();
    assert_eq!(obj.header("x-delete-at"), at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_streams_through_in_many_chunks() {
    let cluster = Cluster::start().await.unwrap();
    let (owner, anon) = setup(&cluster).await;
    let path = "/v1/AUTH_test/c/";
    let size = 6 * 1024 * 1024 + 123;
    // Bytes that look like delimiters now and then.
    let data: Vec<u8> = (0..size)
        .map(|i: usize| match i % 9973 {
            0 => b'\r',
            1 => b'\n',
            2 | 3 => b'-',
            _ => (i.wrapping_mul(31) % 251) as u8,
        })
        .collect();
    let signed = Signed::with(path, "", size as u64, 1, now() + 600, "acctkey", "sha512");
    let body = Bytes::from(signed.form(vec![Item::File {
        name: "file",
        filename: "big.bin",
        content_type: Some("application/x-big"),
        data: &data,
    }]));
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..body.len())
        .step_by(7001)
        .map(|i| {
            Ok(http_body::Frame::data(
                body.slice(i..(i + 7001).min(body.len())),
            ))
        })
        .collect();
    let streamed = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(
        futures_util::stream::iter(chunks),
    ));
    let a = anon
        .send_body(Method::POST, path, form_headers(), streamed)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let big = stored(&owner, "/v1/AUTH_test/c/big.bin").await.unwrap();
    assert_eq!(big.header("content-type"), "application/x-big");
    assert_eq!(big.body.len(), size);
    assert!(big.body[..] == data[..], "the stored bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_lists_formpost_with_its_digests() {
    let cluster = Cluster::start().await.unwrap();
    let anon = Client::new(&cluster);
    let a = anon.call(Method::GET, "/info").await;
    let info: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        info["formpost"],
        serde_json::json!({
            "allowed_digests": ["sha1", "sha256", "sha512"],
            "deprecated_digests": ["sha1"],
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_digests_are_the_only_ones_taken() {
    let cluster = Cluster::start_with(ClusterOptions {
        proxy: Box::new(|config| {
            config.formpost = FormPostConfig::with_digests(&["sha512".to_string()]).unwrap();
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let (owner, anon) = setup(&cluster).await;
    let a = anon.call(Method::GET, "/info").await;
    let info: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        info["formpost"],
        serde_json::json!({"allowed_digests": ["sha512"]})
    );
    let path = "/v1/AUTH_test/c/";
    let expires = now() + 600;
    let sha256 = Signed::with(path, "", 10, 1, expires, "acctkey", "sha256");
    let a = post(&anon, path, sha256.form(vec![file("a", b"a")])).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let sha512 = Signed::with(path, "", 10, 1, expires, "acctkey", "sha512");
    let a = post(&anon, path, sha512.form(vec![file("b", b"b")])).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert!(stored(&owner, "/v1/AUTH_test/c/a").await.is_none());
    assert!(stored(&owner, "/v1/AUTH_test/c/b").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_formpost_in_the_pipeline_forms_need_a_token() {
    let cluster = Cluster::start_with(ClusterOptions {
        proxy: Box::new(|config| {
            config.pipeline =
                Pipeline::from_names(&["catch_errors", "tempurl", "tempauth"]).unwrap();
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let (owner, anon) = setup(&cluster).await;
    let a = anon.call(Method::GET, "/info").await;
    let info: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(info.get("formpost").is_none(), "{info}");
    assert!(info.get("tempurl").is_some(), "{info}");
    let signed = Signed::new("/v1/AUTH_test/c/", "", "acctkey");
    let a = post(
        &anon,
        "/v1/AUTH_test/c/",
        signed.form(vec![file("f", b"f")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(stored(&owner, "/v1/AUTH_test/c/f").await.is_none());
}
