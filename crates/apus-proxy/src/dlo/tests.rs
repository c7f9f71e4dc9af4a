use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use super::fake_swift::{header, md5_hex, read_body, request, FakeSwift};
use super::{Dlo, DloConfig};
use crate::service::{Env, Service};

const SEGS: [(&str, &str); 5] = [
    ("seg_01", "aaaaa"),
    ("seg_02", "bbbbb"),
    ("seg_03", "ccccc"),
    ("seg_04", "ddddd"),
    ("seg_05", "eeeee"),
];

fn config() -> DloConfig {
    DloConfig {
        rate_limit_after_segment: 1_000_000,
        ..DloConfig::default()
    }
}

/// Five 5-byte segments in `/v1/AUTH_test/c`, an unrelated object there,
/// and manifests in `/v1/AUTH_test/mancon`.
fn setup() -> (FakeSwift, Dlo) {
    let fake = FakeSwift::new();
    for (name, body) in SEGS {
        fake.put_object(&format!("/v1/AUTH_test/c/{name}"), &[], body.as_bytes());
    }
    fake.put_object(
        "/v1/AUTH_test/c/catpicture.jpg",
        &[],
        b"meow meow meow meow",
    );
    fake.put_object(
        "/v1/AUTH_test/mancon/manifest",
        &[
            ("x-object-manifest", "c/seg"),
            ("x-object-meta-color", "blue"),
        ],
        b"manifest-contents",
    );
    fake.put_object(
        "/v1/AUTH_test/mancon/manifest-no-segments",
        &[("x-object-manifest", "c/noseg_")],
        b"noseg",
    );
    let dlo = Dlo::with_config(Arc::new(fake.clone()), config());
    (fake, dlo)
}

fn full_etag() -> String {
    let etags: String = SEGS.iter().map(|(_, b)| md5_hex(b.as_bytes())).collect();
    format!("\"{}\"", md5_hex(etags.as_bytes()))
}

async fn get(dlo: &Dlo, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, crate::Resp) {
    let resp = dlo.call(request("GET", uri, headers)).await;
    (resp.status(), resp)
}

#[tokio::test]
async fn get_manifest_concatenates_segments() {
    let (fake, dlo) = setup();
    let (status, resp) = get(
        &dlo,
        "/v1/AUTH_test/mancon/manifest",
        &[("user-agent", "Soap")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("25"));
    assert_eq!(header(&resp, "etag"), Some(full_etag()));
    assert_eq!(header(&resp, "x-object-manifest").as_deref(), Some("c/seg"));
    assert_eq!(
        header(&resp, "x-object-meta-color").as_deref(),
        Some("blue")
    );
    let (body, failed) = read_body(resp).await;
    assert!(!failed);
    assert_eq!(body, b"aaaaabbbbbcccccdddddeeeee");

    let calls = fake.calls();
    assert_eq!(
        fake.call_lines(),
        vec![
            "GET /v1/AUTH_test/mancon/manifest",
            "GET /v1/AUTH_test/c?format=json&prefix=seg",
            "GET /v1/AUTH_test/c/seg_01?multipart-manifest=get",
            "GET /v1/AUTH_test/c/seg_02?multipart-manifest=get",
            "GET /v1/AUTH_test/c/seg_03?multipart-manifest=get",
            "GET /v1/AUTH_test/c/seg_04?multipart-manifest=get",
            "GET /v1/AUTH_test/c/seg_05?multipart-manifest=get",
        ]
    );
    // the client's request goes on unchanged but for the ignore-range hint
    assert_eq!(calls[0].source, None);
    assert_eq!(
        calls[0]
            .headers
            .get("x-backend-ignore-range-if-metadata-present")
            .unwrap(),
        "X-Object-Manifest"
    );
    assert_eq!(calls[0].headers.get("user-agent").unwrap(), "Soap");
    for call in &calls[1..] {
        assert_eq!(call.source, Some("DLO"));
        assert!(
            call.has_authorize,
            "subrequests keep the authorize callback"
        );
        assert_eq!(
            call.headers.get("user-agent").unwrap(),
            "Soap DLO MultipartGET"
        );
    }
}

#[tokio::test]
async fn head_manifest() {
    let (fake, dlo) = setup();
    let resp = dlo
        .call(request("HEAD", "/v1/AUTH_test/mancon/manifest", &[]))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("25"));
    assert_eq!(header(&resp, "etag"), Some(full_etag()));
    assert_eq!(read_body(resp).await.0, b"");
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn empty_manifest() {
    let (fake, dlo) = setup();
    let resp = dlo
        .call(request(
            "HEAD",
            "/v1/AUTH_test/mancon/manifest-no-segments",
            &[],
        ))
        .await;
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
    assert_eq!(header(&resp, "etag"), Some(format!("\"{}\"", md5_hex(b""))));
    assert_eq!(
        fake.call_lines(),
        vec![
            "HEAD /v1/AUTH_test/mancon/manifest-no-segments",
            "GET /v1/AUTH_test/c?format=json&prefix=noseg_",
        ]
    );
    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest-no-segments", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read_body(resp).await, (vec![], false));
}

#[tokio::test]
async fn passthroughs() {
    let (fake, dlo) = setup();
    let (_, resp) = get(&dlo, "/v1/AUTH_test/c/catpicture.jpg", &[]).await;
    assert_eq!(read_body(resp).await.0, b"meow meow meow meow");

    let (status, resp) = get(
        &dlo,
        "/v1/AUTH_test/mancon/manifest?multipart-manifest=get",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&resp, "etag"),
        Some(format!("\"{}\"", md5_hex(b"manifest-contents")))
    );
    assert_eq!(read_body(resp).await.0, b"manifest-contents");

    // a middleware asking for the stored manifest gets it too
    let mut req = request("GET", "/v1/AUTH_test/mancon/manifest", &[]);
    req.extensions_mut().get_mut::<Env>().unwrap().raw_manifest = true;
    let resp = dlo.call(req).await;
    assert_eq!(read_body(resp).await.0, b"manifest-contents");

    let (status, _) = get(&dlo, "/v1/AUTH_test/gone/404ed", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&dlo, "/info", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(fake.calls().len(), 5);
}

#[tokio::test]
async fn single_ranges_across_segments() {
    let (_fake, dlo) = setup();
    for (range, status, body, content_range) in [
        ("bytes=8-17", 206, &b"bbcccccddd"[..], Some("bytes 8-17/25")),
        ("bytes=10-19", 206, b"cccccddddd", Some("bytes 10-19/25")),
        ("bytes=0-0", 206, b"a", Some("bytes 0-0/25")),
        ("bytes=24-24", 206, b"e", Some("bytes 24-24/25")),
        ("bytes=18-30", 206, b"ddeeeee", Some("bytes 18-24/25")),
        (
            "bytes=-40",
            206,
            b"aaaaabbbbbcccccdddddeeeee",
            Some("bytes 0-24/25"),
        ),
        ("bytes=-3", 206, b"eee", Some("bytes 22-24/25")),
        // several ranges: the whole object
        ("bytes=5-9,15-19", 200, b"aaaaabbbbbcccccdddddeeeee", None),
        // an invalid header is ignored
        ("bytes=9-2", 200, b"aaaaabbbbbcccccdddddeeeee", None),
    ] {
        let (st, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[("range", range)]).await;
        assert_eq!(st.as_u16(), status, "{range}");
        assert_eq!(
            header(&resp, "content-range").as_deref(),
            content_range,
            "{range}"
        );
        assert_eq!(
            header(&resp, "content-length"),
            Some(body.len().to_string()),
            "{range}"
        );
        assert_eq!(header(&resp, "etag"), Some(full_etag()));
        let (got, failed) = read_body(resp).await;
        assert!(!failed, "{range}");
        assert_eq!(got, body, "{range}");
    }
}

#[tokio::test]
async fn range_only_fetches_needed_segments() {
    let (fake, dlo) = setup();
    let (_, resp) = get(
        &dlo,
        "/v1/AUTH_test/mancon/manifest",
        &[("range", "bytes=7-11")],
    )
    .await;
    assert_eq!(read_body(resp).await.0, b"bbbcc");
    let calls = fake.calls();
    assert_eq!(
        fake.call_lines()[2..],
        [
            "GET /v1/AUTH_test/c/seg_02?multipart-manifest=get",
            "GET /v1/AUTH_test/c/seg_03?multipart-manifest=get",
        ]
    );
    assert_eq!(calls[2].headers.get("range").unwrap(), "bytes=2-");
    assert_eq!(calls[3].headers.get("range").unwrap(), "bytes=0-1");
}

#[tokio::test]
async fn unsatisfiable_range() {
    let (_fake, dlo) = setup();
    let (status, resp) = get(
        &dlo,
        "/v1/AUTH_test/mancon/manifest",
        &[("range", "bytes=25-30")],
    )
    .await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&resp, "content-range").as_deref(),
        Some("bytes */25")
    );
    assert_eq!(header(&resp, "accept-ranges").as_deref(), Some("bytes"));
    // HEAD says so too
    let resp = dlo
        .call(request(
            "HEAD",
            "/v1/AUTH_test/mancon/manifest",
            &[("range", "bytes=25-30")],
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // an empty DLO and a suffix range: the whole (empty) object
    let (status, resp) = get(
        &dlo,
        "/v1/AUTH_test/mancon/manifest-no-segments",
        &[("range", "bytes=-5")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
}

#[tokio::test]
async fn conditional_requests_use_the_dlo_etag() {
    let (fake, dlo) = setup();
    let etag = full_etag();
    for (name, value, status) in [
        ("if-match", etag.as_str(), 200),
        ("if-match", "not it", 412),
        ("if-none-match", etag.as_str(), 304),
        ("if-none-match", "not it", 200),
        ("if-match", "*", 200),
        ("if-modified-since", "Fri, 22 Nov 2013 02:42:13 GMT", 304),
        ("if-modified-since", "Fri, 22 Nov 2013 02:42:12 GMT", 200),
        ("if-unmodified-since", "Fri, 22 Nov 2013 02:42:12 GMT", 412),
    ] {
        for method in ["GET", "HEAD"] {
            let resp = dlo
                .call(request(
                    method,
                    "/v1/AUTH_test/mancon/manifest",
                    &[(name, value)],
                ))
                .await;
            assert_eq!(resp.status().as_u16(), status, "{method} {name}: {value}");
            if status != 200 {
                assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
                assert_eq!(header(&resp, "etag"), Some(etag.clone()));
                assert_eq!(read_body(resp).await.0, b"");
            } else if method == "GET" {
                assert_eq!(read_body(resp).await.0, b"aaaaabbbbbcccccdddddeeeee");
            }
        }
    }
    // segment reads never carry the conditions
    for call in fake.calls().iter().filter(|c| c.source.is_some()) {
        for h in [
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
        ] {
            assert!(call.headers.get(h).is_none());
        }
    }
}

#[tokio::test]
async fn first_segment_errors() {
    let (fake, dlo) = setup();
    fake.register("GET /v1/AUTH_test/c/seg_01", 503, &[], b"");
    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&resp, "content-type").as_deref(), Some("text/plain"));

    fake.register("GET /v1/AUTH_test/c/seg_01", 403, &[], b"");
    let (status, _) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn later_segment_errors_cut_the_body() {
    let (fake, dlo) = setup();
    fake.register("GET /v1/AUTH_test/c/seg_02", 403, &[], b"");
    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read_body(resp).await, (b"aaaaa".to_vec(), true));
}

#[tokio::test]
async fn changed_segments_cut_the_body() {
    // content that does not match its etag
    let (fake, dlo) = setup();
    let good = md5_hex(b"bbbbb");
    fake.register(
        "GET /v1/AUTH_test/c/seg_02",
        200,
        &[("etag", &good)],
        b"WRONG",
    );
    let (_, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(header(&resp, "content-length").as_deref(), Some("25"));
    assert_eq!(read_body(resp).await, (b"aaaaaWRONG".to_vec(), true));

    // fewer bytes than its Content-Length
    let (fake, dlo) = setup();
    fake.register(
        "GET /v1/AUTH_test/c/seg_02",
        200,
        &[("etag", &md5_hex(b"bbbb")), ("content-length", "5")],
        b"bbbb",
    );
    let (_, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(read_body(resp).await, (b"aaaaabbbb".to_vec(), true));

    // grown since it was listed: no more than promised is sent
    let (fake, dlo) = setup();
    fake.put_object("/v1/AUTH_test/c/seg_03", &[], &[b'c'; 20]);
    fake.register(
        "GET /v1/AUTH_test/c?format=json&prefix=seg",
        200,
        &[],
        &listing_of(&[
            ("seg_01", 5),
            ("seg_02", 5),
            ("seg_03", 5),
            ("seg_04", 5),
            ("seg_05", 5),
        ]),
    );
    let (_, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(header(&resp, "content-length").as_deref(), Some("25"));
    assert_eq!(
        read_body(resp).await,
        (b"aaaaabbbbbccccccccccccccc".to_vec(), true)
    );
    assert_eq!(
        fake.calls().len(),
        5,
        "nothing read past the promised length"
    );

    // shrunk since it was listed: the body ends short, with an error
    let (fake, dlo) = setup();
    fake.put_object("/v1/AUTH_test/c/seg_03", &[], b"cccc");
    fake.register(
        "GET /v1/AUTH_test/c?format=json&prefix=seg",
        200,
        &[],
        &listing_of(&[
            ("seg_01", 5),
            ("seg_02", 5),
            ("seg_03", 5),
            ("seg_04", 5),
            ("seg_05", 5),
        ]),
    );
    let (_, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(
        read_body(resp).await,
        (b"aaaaabbbbbccccdddddeeeee".to_vec(), true)
    );
}

fn listing_of(entries: &[(&str, u64)]) -> Vec<u8> {
    let v: Vec<_> = entries
        .iter()
        .map(|(n, b)| serde_json::json!({"name": n, "bytes": b, "hash": "x"}))
        .collect();
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn listing_errors() {
    let (fake, dlo) = setup();
    fake.register(
        "GET /v1/AUTH_test/c?format=json&prefix=seg",
        401,
        &[],
        b"nope",
    );
    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(read_body(resp).await.0, b"nope");
    let resp = dlo
        .call(request("HEAD", "/v1/AUTH_test/mancon/manifest", &[]))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
    assert_eq!(read_body(resp).await.0, b"");
    // a missing segment container
    fake.put_object(
        "/v1/AUTH_test/mancon/lost",
        &[("x-object-manifest", "nowhere/seg")],
        b"",
    );
    let (status, _) = get(&dlo, "/v1/AUTH_test/mancon/lost", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn prefix_and_names_are_quoted() {
    let fake = FakeSwift::new();
    fake.put_object("/v1/AUTH_test/c/é 1", &[], b"AAAAA");
    fake.put_object("/v1/AUTH_test/c/é 2", &[], b"BBBBB");
    fake.put_object(
        "/v1/AUTH_test/man/accent",
        &[("x-object-manifest", "c/%C3%A9%20")],
        b"",
    );
    let dlo = Dlo::with_config(Arc::new(fake.clone()), config());
    let (status, resp) = get(&dlo, "/v1/AUTH_test/man/accent", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read_body(resp).await.0, b"AAAAABBBBB");
    let calls = fake.calls();
    assert_eq!(calls[1].query, "format=json&prefix=%C3%A9%20");
    assert_eq!(calls[2].path, "/v1/AUTH_test/c/é 1");
}

#[tokio::test]
async fn many_segments_are_paged_with_markers() {
    let fake = FakeSwift::new();
    fake.generate("/v1/AUTH_test/big", "s", 10_003, 1);
    fake.put_object(
        "/v1/AUTH_test/mancon/big",
        &[("x-object-manifest", "big/s")],
        b"",
    );
    let dlo = Dlo::with_config(Arc::new(fake.clone()), config());
    let expected: Vec<u8> = (0..10_003).map(|n| b'a' + (n % 26) as u8).collect();

    // HEAD only knows the first page: no length, the manifest's etag
    let resp = dlo
        .call(request("HEAD", "/v1/AUTH_test/mancon/big", &[]))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), None);
    assert_eq!(header(&resp, "etag"), Some(format!("\"{}\"", md5_hex(b""))));

    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/big", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), None);
    let (body, failed) = read_body(resp).await;
    assert!(!failed);
    assert_eq!(body.len(), 10_003);
    assert_eq!(body, expected);
    let listings: Vec<String> = fake
        .call_lines()
        .into_iter()
        .filter(|l| l.contains("format=json"))
        .collect();
    assert_eq!(
        listings,
        vec![
            "GET /v1/AUTH_test/big?format=json&prefix=s",
            "GET /v1/AUTH_test/big?format=json&prefix=s",
            "GET /v1/AUTH_test/big?format=json&prefix=s&marker=s009999",
        ]
    );

    // a range inside the first page is served; one that may reach past it
    // is ignored
    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/big", &[("range", "bytes=3-5")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range").as_deref(),
        Some("bytes 3-5/10000")
    );
    assert_eq!(read_body(resp).await.0, b"def");
    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/big", &[("range", "bytes=-5")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&resp, "content-range"), None);
    assert_eq!(read_body(resp).await.0.len(), 10_003);

    // a failing second page cuts the body after the first page's segments
    fake.register(
        "GET /v1/AUTH_test/big?format=json&prefix=s&marker=s009999",
        404,
        &[],
        b"",
    );
    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/big", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (body, failed) = read_body(resp).await;
    assert!(failed);
    assert_eq!(body, expected[..10_000]);
}

#[tokio::test]
async fn max_get_time_cuts_the_body() {
    let (fake, _) = setup();
    fake.delay("/v1/AUTH_test/c/seg_02", Duration::from_millis(200));
    let dlo = Dlo::with_config(
        Arc::new(fake.clone()),
        DloConfig {
            max_get_time: Duration::from_millis(100),
            ..config()
        },
    );
    let (status, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(status, StatusCode::OK);
    // the chunk that arrived late is still sent, then the body is cut
    assert_eq!(read_body(resp).await, (b"aaaaabbb".to_vec(), true));
}

#[tokio::test]
async fn segments_are_rate_limited_after_a_while() {
    let (_fake, dlo) = setup();
    let dlo = Dlo::with_config(
        dlo.next.clone(),
        DloConfig {
            rate_limit_after_segment: 3,
            rate_limit_segments_per_sec: 20,
            ..DloConfig::default()
        },
    );
    let start = std::time::Instant::now();
    let (_, resp) = get(&dlo, "/v1/AUTH_test/mancon/manifest", &[]).await;
    assert_eq!(read_body(resp).await.0, b"aaaaabbbbbcccccdddddeeeee");
    // segments 4 and 5 come at most 20 a second: the 5th waits 50ms
    assert!(start.elapsed() >= Duration::from_millis(45));
}

#[tokio::test]
async fn put_validates_x_object_manifest() {
    let (fake, dlo) = setup();
    let ok = [
        "c/o",
        "c/obj/with/slashes",
        "c/obj/with/trailing/slash/",
        "c/obj/with//multiple///slashes////adjacent",
    ];
    let bad = [
        "",
        "/leading/slash",
        "double//slash",
        "container-only",
        "whole-container/",
        "c/o?short=querystring",
        "c/o?has=a&long-query=string",
    ];
    for value in ok {
        let resp = dlo
            .call(request(
                "PUT",
                "/v1/AUTH_test/c/m",
                &[("x-object-manifest", value)],
            ))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{value}");
    }
    for value in bad {
        let resp = dlo
            .call(request(
                "PUT",
                "/v1/AUTH_test/c/m",
                &[("x-object-manifest", value)],
            ))
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{value}");
        assert_eq!(
            read_body(resp).await.0,
            b"X-Object-Manifest must be in the format container/prefix"
        );
    }
    // only object PUTs are checked
    let before = fake.calls().len();
    let resp = dlo
        .call(request(
            "PUT",
            "/v1/AUTH_test/c",
            &[("x-object-manifest", "/superbogus/?wrong=in&every=way")],
        ))
        .await;
    assert_ne!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(fake.calls().len(), before + 1);
}

#[test]
fn info_entry() {
    assert_eq!(super::info(), serde_json::json!({"max_get_time": 86400}));
}
