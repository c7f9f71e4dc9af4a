use std::sync::Arc;

use http::StatusCode;

use super::Copy;
use crate::dlo::fake_swift::{header, md5_hex, read_body, request, FakeSwift, LAST_MODIFIED};
use crate::dlo::{Dlo, DloConfig};
use crate::service::Service;

fn setup() -> (FakeSwift, Copy) {
    let fake = FakeSwift::new();
    fake.put_object(
        "/v1/a/c/o",
        &[
            ("content-type", "text/original"),
            ("content-encoding", "gzip"),
            ("content-disposition", "attachment; filename=myfile"),
            ("x-object-meta-test", "original"),
            ("x-object-sysmeta-test", "original"),
            ("x-object-transient-sysmeta-test", "original"),
            (
                "x-object-sysmeta-container-update-override-etag",
                "etag val",
            ),
            ("x-delete-at", "9999999999"),
            ("x-foo", "Bar"),
        ],
        b"passed",
    );
    let copy = Copy::new(Arc::new(fake.clone()));
    (fake, copy)
}

fn stored(fake: &FakeSwift, path: &str, name: &str) -> Option<String> {
    fake.object_header(path, name)
}

#[tokio::test]
async fn put_with_x_copy_from() {
    let (fake, copy) = setup();
    let resp = copy
        .call(request(
            "PUT",
            "/v1/a/c/o2",
            &[("content-length", "0"), ("x-copy-from", "c/o")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "x-copied-from").as_deref(), Some("c/o"));
    assert_eq!(header(&resp, "x-copied-from-account").as_deref(), Some("a"));
    assert_eq!(
        header(&resp, "x-copied-from-last-modified").as_deref(),
        Some(LAST_MODIFIED)
    );
    assert_eq!(
        header(&resp, "x-object-meta-test").as_deref(),
        Some("original")
    );
    assert_eq!(header(&resp, "x-delete-at").as_deref(), Some("9999999999"));
    assert_eq!(fake.call_lines(), vec!["GET /v1/a/c/o", "PUT /v1/a/c/o2"]);
    let calls = fake.calls();
    for call in &calls {
        assert_eq!(call.source, Some("SSC"));
        assert!(call.has_authorize);
    }
    assert_eq!(calls[0].headers.get("x-newest").unwrap(), "true");
    let put = &calls[1].headers;
    assert_eq!(put.get("etag").unwrap(), &md5_hex(b"passed"));
    assert_eq!(put.get("content-length").unwrap(), "6");
    assert!(put.get("x-copy-from").is_none());
    assert!(put.get("x-timestamp").is_none());
    assert!(put.get("x-backend-timestamp").is_none());
    let (_, body) = fake.object("/v1/a/c/o2").unwrap();
    assert_eq!(&body[..], b"passed");
    for (name, value) in [
        ("content-type", "text/original"),
        ("content-encoding", "gzip"),
        ("content-disposition", "attachment; filename=myfile"),
        ("x-object-meta-test", "original"),
        ("x-object-sysmeta-test", "original"),
        ("x-object-transient-sysmeta-test", "original"),
        (
            "x-object-sysmeta-container-update-override-etag",
            "etag val",
        ),
        ("x-delete-at", "9999999999"),
        ("x-foo", "Bar"),
    ] {
        assert_eq!(
            stored(&fake, "/v1/a/c/o2", name).as_deref(),
            Some(value),
            "{name}"
        );
    }
}

#[tokio::test]
async fn copy_method_with_destination() {
    let (fake, copy) = setup();
    let resp = copy
        .call(request(
            "COPY",
            "/v1/a/c/o",
            &[
                ("destination", "/c2/o%20copy"),
                ("x-object-meta-new", "yes"),
            ],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "x-copied-from").as_deref(), Some("c/o"));
    assert_eq!(
        fake.call_lines(),
        vec!["GET /v1/a/c/o", "PUT /v1/a/c2/o copy"]
    );
    let calls = fake.calls();
    let put = &calls[1].headers;
    assert!(put.get("destination").is_none());
    assert_eq!(
        stored(&fake, "/v1/a/c2/o copy", "x-object-meta-new").as_deref(),
        Some("yes")
    );
    assert_eq!(
        stored(&fake, "/v1/a/c2/o copy", "x-object-meta-test").as_deref(),
        Some("original")
    );

    // across accounts
    let resp = copy
        .call(request(
            "COPY",
            "/v1/a/c/o",
            &[("destination", "c/o"), ("destination-account", "a2")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "x-copied-from-account").as_deref(), Some("a"));
    assert!(fake.object("/v1/a2/c/o").is_some());

    // and the other way round with PUT
    let resp = copy
        .call(request(
            "PUT",
            "/v1/a3/c/o",
            &[("x-copy-from", "/c/o"), ("x-copy-from-account", "a2")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "x-copied-from-account").as_deref(),
        Some("a2")
    );
    assert_eq!(fake.call_lines()[4..], ["GET /v1/a2/c/o", "PUT /v1/a3/c/o"]);
}

#[tokio::test]
async fn names_are_decoded_and_reported_quoted() {
    let fake = FakeSwift::new();
    fake.put_object("/v1/a/c/o o2/é", &[], b"x");
    let copy = Copy::new(Arc::new(fake.clone()));
    let resp = copy
        .call(request(
            "PUT",
            "/v1/a/c/o",
            &[("x-copy-from", "c/o%20o2/%C3%A9")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "x-copied-from").as_deref(),
        Some("c/o%20o2/%C3%A9")
    );
    assert_eq!(fake.calls()[0].path, "/v1/a/c/o o2/é");
}

#[tokio::test]
async fn client_headers_override_and_fresh_metadata() {
    let (fake, copy) = setup();
    let resp = copy
        .call(request(
            "PUT",
            "/v1/a/c/o2",
            &[
                ("x-copy-from", "c/o"),
                ("content-type", "text/not_original"),
                ("x-object-meta-test", "not_original"),
                ("x-foo", "Not Bar"),
            ],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        stored(&fake, "/v1/a/c/o2", "content-type").as_deref(),
        Some("text/not_original")
    );
    assert_eq!(
        stored(&fake, "/v1/a/c/o2", "x-object-meta-test").as_deref(),
        Some("not_original")
    );
    assert_eq!(
        stored(&fake, "/v1/a/c/o2", "x-foo").as_deref(),
        Some("Not Bar")
    );
    assert_eq!(
        stored(&fake, "/v1/a/c/o2", "content-encoding").as_deref(),
        Some("gzip")
    );

    let resp = copy
        .call(request(
            "PUT",
            "/v1/a/c/o3",
            &[
                ("x-copy-from", "c/o"),
                ("x-fresh-metadata", "true"),
                ("x-extra", "Fresh"),
            ],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let p = "/v1/a/c/o3";
    assert_eq!(
        stored(&fake, p, "content-type").as_deref(),
        Some("text/original")
    );
    assert_eq!(stored(&fake, p, "x-extra").as_deref(), Some("Fresh"));
    assert_eq!(
        stored(&fake, p, "x-object-sysmeta-test").as_deref(),
        Some("original")
    );
    assert!(stored(&fake, p, "x-fresh-metadata").is_some());
    for gone in [
        "x-object-meta-test",
        "x-object-transient-sysmeta-test",
        "content-encoding",
        "content-disposition",
        "x-foo",
        "x-delete-at",
    ] {
        assert_eq!(stored(&fake, p, gone), None, "{gone}");
    }
}

#[tokio::test]
async fn ranged_copy_sends_no_etag() {
    let (fake, copy) = setup();
    let resp = copy
        .call(request(
            "COPY",
            "/v1/a/c/o",
            &[("destination", "c1/o"), ("range", "bytes=1-3")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let calls = fake.calls();
    let put = &calls[1].headers;
    assert!(put.get("etag").is_none());
    assert_eq!(put.get("content-length").unwrap(), "3");
    assert!(put
        .get("x-object-sysmeta-container-update-override-etag")
        .is_none());
    assert_eq!(&fake.object("/v1/a/c1/o").unwrap().1[..], b"ass");
}

/// Method, path, headers, expected status and body.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn errors() {
    let (fake, copy) = setup();
    let cases: Vec<Case> = vec![
        (
            "COPY",
            "/v1/a/c/o",
            vec![],
            412,
            "Destination header required",
        ),
        (
            "COPY",
            "/v1/a/c/o",
            vec![("destination", "c_o")],
            412,
            "Destination header must be of the form <container name>/<object name>",
        ),
        (
            "COPY",
            "/v1/a/c/o",
            vec![
                ("destination", "/c/o"),
                ("destination-account", "/i/am/bad"),
            ],
            412,
            "Account name cannot contain slashes",
        ),
        (
            "COPY",
            "/v1/a/c/o",
            vec![("destination", "/c/o"), ("destination-account", "")],
            412,
            "Account name cannot be empty",
        ),
        (
            "PUT",
            "/v1/a/c/o2",
            vec![("x-copy-from", "/c")],
            412,
            "X-Copy-From header must be of the form <container name>/<object name>",
        ),
        (
            "PUT",
            "/v1/a/c/o2",
            vec![("x-copy-from", "c/o"), ("x-copy-from-account", "/i/am/bad")],
            412,
            "Account name cannot contain slashes",
        ),
        (
            "PUT",
            "/v1/a/c/o2",
            vec![("x-copy-from", "c/o"), ("content-length", "10")],
            400,
            "Copy requests require a zero byte body",
        ),
    ];
    for (method, uri, headers, status, body) in cases {
        let resp = copy.call(request(method, uri, &headers)).await;
        assert_eq!(resp.status().as_u16(), status, "{method} {headers:?}");
        assert_eq!(
            read_body(resp).await.0,
            body.as_bytes(),
            "{method} {headers:?}"
        );
    }
    assert!(fake.calls().is_empty());

    // the source's errors are the answer
    let resp = copy
        .call(request(
            "PUT",
            "/v1/a/c/o2",
            &[("x-copy-from", "c/missing")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    fake.register("GET /v1/a/c/broken", 503, &[], b"");
    let resp = copy
        .call(request(
            "COPY",
            "/v1/a/c/broken",
            &[("destination", "c/o2")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(fake.calls().iter().all(|c| c.method != http::Method::PUT));

    // too large
    let copy = Copy::with_max_file_size(Arc::new(fake.clone()), 5);
    let resp = copy
        .call(request("PUT", "/v1/a/c/o2", &[("x-copy-from", "c/o")]))
        .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn passes_other_requests_through() {
    let (fake, copy) = setup();
    let resp = copy
        .call(request("POST", "/v1/a/c/o", &[("x-copy-from", "c/o")]))
        .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = copy
        .call(request("PUT", "/v1/a/c/o9", &[("x-copy-from", "")]))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(fake.call_lines(), vec!["POST /v1/a/c/o", "PUT /v1/a/c/o9"]);
    assert_eq!(fake.calls()[0].source, None);

    fake.register("OPTIONS /v1/a/c/o", 200, &[("allow", "GET, PUT")], b"");
    let resp = copy.call(request("OPTIONS", "/v1/a/c/o", &[])).await;
    assert_eq!(header(&resp, "allow").as_deref(), Some("GET, PUT, COPY"));
}

fn dlo_pipeline() -> (FakeSwift, Copy) {
    let fake = FakeSwift::new();
    fake.put_object("/v1/a/segs/part1", &[], b"aaaaa");
    fake.put_object("/v1/a/segs/part2", &[], b"bbbbb");
    fake.put_object(
        "/v1/a/c/man",
        &[
            ("x-object-manifest", "segs/part"),
            ("content-type", "text/dlo"),
            ("x-object-meta-kind", "manifest"),
        ],
        b"man-contents",
    );
    let dlo = Dlo::with_config(
        Arc::new(fake.clone()),
        DloConfig {
            rate_limit_after_segment: 1000,
            ..DloConfig::default()
        },
    );
    (fake, Copy::new(Arc::new(dlo)))
}

#[tokio::test]
async fn copying_a_dlo_copies_its_content() {
    let (fake, copy) = dlo_pipeline();
    let resp = copy
        .call(request(
            "COPY",
            "/v1/a/c/man",
            &[("destination", "c/copied")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (headers, body) = fake.object("/v1/a/c/copied").unwrap();
    assert_eq!(&body[..], b"aaaaabbbbb");
    assert!(!headers.iter().any(|(k, _)| k == "x-object-manifest"));
    let calls = fake.calls();
    let put = &calls.last().unwrap().headers;
    assert!(
        put.get("etag").is_none(),
        "a DLO's etag is not its content's md5"
    );
    assert_eq!(
        stored(&fake, "/v1/a/c/copied", "content-type").as_deref(),
        Some("text/dlo")
    );
    assert_eq!(
        stored(&fake, "/v1/a/c/copied", "x-object-meta-kind").as_deref(),
        Some("manifest")
    );
}

#[tokio::test]
async fn copying_a_dlo_manifest_with_multipart_manifest_get() {
    let (fake, copy) = dlo_pipeline();
    let resp = copy
        .call(request(
            "COPY",
            "/v1/a/c/man?multipart-manifest=get",
            &[("destination", "c/copied")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let lines = fake.call_lines();
    assert_eq!(
        lines,
        vec![
            "GET /v1/a/c/man?multipart-manifest=get&format=raw",
            "PUT /v1/a/c/copied",
        ]
    );
    let (_, body) = fake.object("/v1/a/c/copied").unwrap();
    assert_eq!(&body[..], b"man-contents");
    assert_eq!(
        stored(&fake, "/v1/a/c/copied", "x-object-manifest").as_deref(),
        Some("segs/part")
    );
    let calls = fake.calls();
    let put = &calls[1].headers;
    assert_eq!(put.get("etag").unwrap(), &md5_hex(b"man-contents"));
}

#[tokio::test]
async fn static_large_object_manifests_keep_their_query() {
    let fake = FakeSwift::new();
    fake.put_object("/v1/a/c/slo", &[("x-static-large-object", "True")], b"[]");
    let copy = Copy::new(Arc::new(fake.clone()));
    let resp = copy
        .call(request(
            "PUT",
            "/v1/a/c/o2?multipart-manifest=get",
            &[("x-copy-from", "c/slo")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        fake.call_lines(),
        vec![
            "GET /v1/a/c/slo?multipart-manifest=get&format=raw",
            "PUT /v1/a/c/o2?multipart-manifest=put",
        ]
    );
    let calls = fake.calls();
    let put = &calls[1].headers;
    assert!(put.get("etag").is_none());
    assert!(put.get("x-static-large-object").is_none());
}

#[tokio::test]
async fn a_dlo_of_unknown_length_is_not_copied() {
    let fake = FakeSwift::new();
    fake.generate("/v1/a/big", "s", 10_001, 1);
    fake.put_object("/v1/a/c/man", &[("x-object-manifest", "big/s")], b"");
    let dlo = Dlo::with_config(
        Arc::new(fake.clone()),
        DloConfig {
            rate_limit_after_segment: 1000,
            ..DloConfig::default()
        },
    );
    let copy = Copy::new(Arc::new(dlo));
    let resp = copy
        .call(request("COPY", "/v1/a/c/man", &[("destination", "c/o2")]))
        .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(fake.calls().iter().all(|c| c.method != http::Method::PUT));
}
