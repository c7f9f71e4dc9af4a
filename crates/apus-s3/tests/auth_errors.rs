//! Each way S3 authentication refuses a request, with s3api's code,
//! message and extra elements; AWS's published SigV4 examples; and the
//! XML bodies of signature errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use apus_s3::{
    authenticate, verify, AuthConfig, AuthRequest, CredentialStore, ErrorCode, PayloadHash,
    S3Error, Secret,
};
use http::request::Parts;

const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// 2013-05-24T00:00:00Z, the time of AWS's examples.
const T0: i64 = 1_369_353_600;

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn parse(method: &str, uri: &str, headers: &[(&str, &str)]) -> Result<AuthRequest, S3Error> {
    AuthRequest::parse(&parts(method, uri, headers), &AuthConfig::default())
        .map(|r| r.expect("an S3 request"))
}

fn err(method: &str, uri: &str, headers: &[(&str, &str)]) -> S3Error {
    parse(method, uri, headers).expect_err("refused")
}

const CRED: &str = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";

fn v4_auth(cred: &str, signed: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential={cred},SignedHeaders={signed},Signature=abcd")
}

fn v4_headers(auth: &str) -> Vec<(&'static str, String)> {
    vec![
        ("host", "examplebucket.s3.amazonaws.com".into()),
        ("x-amz-date", "20130524T000000Z".into()),
        ("x-amz-content-sha256", EMPTY_SHA.into()),
        ("authorization", auth.into()),
    ]
}

fn with<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn aws_example_get_object_verifies() {
    // AWS's documented example: GET /test.txt with a Range header.
    let auth =
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
                SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
                Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
    let mut h = v4_headers(auth);
    h.push(("range", "bytes=0-9".into()));
    let req = parse("GET", "/test.txt", &with(&h)).unwrap();
    let v = verify(&req, &Secret::new(AWS_SECRET), T0).unwrap();
    assert_eq!(v.access_key, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(v.payload, PayloadHash::Sha256(EMPTY_SHA.into()));
}

#[test]
fn aws_example_presigned_url_verifies() {
    let uri = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
               &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
               &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
               &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    let req = parse("GET", uri, &[("host", "examplebucket.s3.amazonaws.com")]).unwrap();
    assert_eq!(req.payload, PayloadHash::Absent);
    verify(&req, &Secret::new(AWS_SECRET), T0 + 86_400).unwrap();
    let e = verify(&req, &Secret::new(AWS_SECRET), T0 + 86_401).unwrap_err();
    assert_eq!(
        (e.code, &*e.message),
        (ErrorCode::AccessDenied, "Request has expired")
    );
}

#[test]
fn aws_example_chunk_signatures_chain() {
    // AWS's documented aws-chunked PUT of 66560 bytes of 'a'.
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
                SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,\
                Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    let h = [
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("authorization", auth),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
    ];
    let req = parse("PUT", "/examplebucket/chunkObject.txt", &h).unwrap();
    let v = verify(&req, &Secret::new(AWS_SECRET), T0).unwrap();
    assert_eq!(v.payload, PayloadHash::StreamingSigned);
    assert_eq!(v.decoded_content_length, Some(66_560));
    let signer = v.chunk_signer.unwrap();
    use sha2::Digest;
    let hex = |b: &[u8]| {
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let first = signer.chunk_signature(&signer.seed_signature, &hex(&[b'a'; 65_536]));
    assert_eq!(
        first,
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    );
    let second = signer.chunk_signature(&first, &hex(&[b'a'; 1024]));
    assert_eq!(
        second,
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    );
    assert!(signer.check_chunk(
        &second,
        &hex(b""),
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
    ));
}

#[test]
fn not_an_s3_request() {
    let p = parts("GET", "/v1/AUTH_test/c/o", &[("x-auth-token", "t")]);
    assert_eq!(
        AuthRequest::parse(&p, &AuthConfig::default()).unwrap(),
        None
    );
    struct Nobody;
    impl CredentialStore for Nobody {
        fn secret_for(&self, _: &str) -> Option<Secret> {
            None
        }
    }
    assert!(authenticate(&p, &AuthConfig::default(), &Nobody, T0)
        .unwrap()
        .is_none());
    let h = v4_headers(&v4_auth(CRED, "host;x-amz-date"));
    let e = authenticate(
        &parts("GET", "/b", &with(&h)),
        &AuthConfig::default(),
        &Nobody,
        T0,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidAccessKeyId);
    assert_eq!(
        e.detail_text("AWSAccessKeyId"),
        Some("AKIAIOSFODNN7EXAMPLE")
    );
}

#[test]
fn v4_header_malformed() {
    let bad = [
        // No credential, a short credential, an empty access key.
        (
            "AWS4-HMAC-SHA256 SignedHeaders=host,Signature=ab".to_string(),
            ErrorCode::AccessDenied,
        ),
        (
            v4_auth("AK/20130524/us-east-1/s3", "host"),
            ErrorCode::AccessDenied,
        ),
        (
            v4_auth("/20130524/us-east-1/s3/aws4_request", "host"),
            ErrorCode::AccessDenied,
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential={CRED},SignedHeaders=host"),
            ErrorCode::AccessDenied,
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential={CRED},Signature=ab"),
            ErrorCode::AuthorizationHeaderMalformed,
        ),
    ];
    for (auth, code) in bad {
        let h = v4_headers(&auth);
        assert_eq!(err("GET", "/", &with(&h)).code, code, "{auth}");
    }
}

#[test]
fn v4_header_scope() {
    let cases = [
        ("AK/20130525/us-east-1/s3/aws4_request",
         "Invalid credential date \"20130525\". This date is not the same as X-Amz-Date: \"20130524\"."),
        ("AK/20130524/eu-west-1/s3/aws4_request",
         "The authorization header is malformed; the region 'eu-west-1' is wrong; expecting 'us-east-1'"),
        ("AK/20130524/us-east-1/ec2/aws4_request",
         "The authorization header is malformed; incorrect service \"ec2\". This endpoint belongs to \"s3\"."),
        ("AK/20130524/us-east-1/s3/aws5_request",
         "The authorization header is malformed; incorrect terminal \"aws5_request\". This endpoint uses \"aws4_request\"."),
    ];
    for (cred, msg) in cases {
        let h = v4_headers(&v4_auth(cred, "host"));
        let e = err("GET", "/", &with(&h));
        assert_eq!(
            (e.code, &*e.message),
            (ErrorCode::AuthorizationHeaderMalformed, msg)
        );
    }
    let h = v4_headers(&v4_auth("AK/20130524/eu-west-1/s3/aws4_request", "host"));
    assert_eq!(
        err("GET", "/", &with(&h)).detail_text("Region"),
        Some("us-east-1")
    );

    // A configured region in capitals may be given in lower case.
    let config = AuthConfig {
        location: "RegionOne".into(),
        ..AuthConfig::default()
    };
    let h = v4_headers(&v4_auth("AK/20130524/regionone/s3/aws4_request", "host"));
    let req = AuthRequest::parse(&parts("GET", "/", &with(&h)), &config)
        .unwrap()
        .unwrap();
    assert_eq!(req.scope.unwrap().region, "regionone");
}

#[test]
fn v4_header_dates() {
    let auth = v4_auth(CRED, "host");
    let no_date = [
        ("host", "h"),
        ("x-amz-content-sha256", EMPTY_SHA),
        ("authorization", auth.as_str()),
    ];
    let e = err("GET", "/", &no_date);
    assert_eq!(e.code, ErrorCode::AccessDenied);
    assert_eq!(
        e.message,
        "AWS authentication requires a valid Date or x-amz-date header"
    );
    for bad in ["20131324T000000Z", "yesterday", "2013-05-24"] {
        let mut h = no_date.to_vec();
        h.push(("x-amz-date", bad));
        assert_eq!(err("GET", "/", &h).message, e.message, "{bad}");
    }
    // A Date header alone will do, in RFC 1123 form.
    let mut h = no_date.to_vec();
    h.push(("date", "Fri, 24 May 2013 00:00:00 GMT"));
    let req = parse("GET", "/", &h).unwrap();
    assert_eq!(req.amz_date.as_deref(), Some("20130524T000000Z"));
    // Far in the future: skew.
    let mut h = no_date.to_vec();
    h.push(("x-amz-date", "99991231T000000Z"));
    assert_eq!(err("GET", "/", &h).code, ErrorCode::RequestTimeTooSkewed);
    // Skew is checked against now.
    let h = v4_headers(&auth);
    let req = parse("GET", "/", &with(&h)).unwrap();
    req.check_time(T0 + 900).unwrap();
    assert_eq!(
        req.check_time(T0 + 901).unwrap_err().code,
        ErrorCode::RequestTimeTooSkewed
    );
    assert_eq!(
        req.check_time(T0 - 901).unwrap_err().code,
        ErrorCode::RequestTimeTooSkewed
    );
}

#[test]
fn v4_header_payload_hash() {
    let auth = v4_auth(CRED, "host;x-amz-date");
    let base = [
        ("host", "h"),
        ("x-amz-date", "20130524T000000Z"),
        ("authorization", auth.as_str()),
    ];
    let e = err("PUT", "/b/o", &base);
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(
        e.message,
        "Missing required header for this request: x-amz-content-sha256"
    );

    let with_sha = |v: &'static str, more: &[(&'static str, &'static str)]| {
        let mut h = base.to_vec();
        h.push(("x-amz-content-sha256", v));
        h.extend_from_slice(more);
        parse("PUT", "/b/o", &h)
    };
    let e = with_sha("not-a-hash", &[]).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert_eq!(e.detail_text("ArgumentName"), Some("x-amz-content-sha256"));
    assert_eq!(e.detail_text("ArgumentValue"), Some("not-a-hash"));
    assert_eq!(
        with_sha("UNSIGNED-PAYLOAD", &[]).unwrap().payload,
        PayloadHash::Unsigned
    );
    let e = with_sha("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", &[]).unwrap_err();
    assert_eq!(e.code, ErrorCode::MissingContentLength);
    let e = with_sha(
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        &[("x-amz-decoded-content-length", "-1")],
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    let r = with_sha(
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        &[("x-amz-decoded-content-length", "5")],
    )
    .unwrap();
    assert_eq!(
        (r.payload, r.decoded_content_length),
        (PayloadHash::StreamingUnsignedTrailer, Some(5))
    );
    let e = with_sha(
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        &[("x-amz-decoded-content-length", "5")],
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotImplemented);
}

#[test]
fn v4_headers_that_must_be_signed() {
    let mut h = v4_headers(&v4_auth(CRED, "host;x-amz-date"));
    h.push(("x-amz-meta-color", "red".into()));
    let e = err("PUT", "/b/o", &with(&h));
    assert_eq!(e.code, ErrorCode::AccessDenied);
    assert_eq!(
        e.message,
        "There were headers present in the request which were not signed"
    );
    assert_eq!(e.detail_text("HeadersNotSigned"), Some("x-amz-meta-color"));
    // A signed header the request lacks.
    let h = v4_headers(&v4_auth(CRED, "host;x-amz-date;x-amz-meta-gone"));
    assert_eq!(
        err("GET", "/", &with(&h)).code,
        ErrorCode::SignatureDoesNotMatch
    );
}

fn presigned(params: &str) -> String {
    format!("/b/o?{params}")
}

#[test]
fn v4_query_errors() {
    let full = |expires: &str, algo: &str, cred: &str, extra: &str| {
        presigned(&format!(
            "X-Amz-Algorithm={algo}&X-Amz-Credential={cred}&X-Amz-Date=20130524T000000Z\
             {expires}&X-Amz-SignedHeaders=host{extra}"
        ))
    };
    let ok_cred = "AK%2F20130524%2Fus-east-1%2Fs3%2Faws4_request";
    let h = [("host", "h")];
    let q = |expires: &str| full(expires, "AWS4-HMAC-SHA256", ok_cred, "&X-Amz-Signature=ab");
    assert_eq!(err("GET", &q(""), &h).code, ErrorCode::AccessDenied);
    for (expires, msg) in [
        ("&X-Amz-Expires=soon", "X-Amz-Expires should be a number"),
        ("&X-Amz-Expires=-1", "X-Amz-Expires must be non-negative"),
        (
            "&X-Amz-Expires=9223372036854775808",
            "X-Amz-Expires should be a number",
        ),
        (
            "&X-Amz-Expires=604801",
            "X-Amz-Expires must be less than a week (in seconds); that is, the given \
             X-Amz-Expires must be less than 604800 seconds",
        ),
    ] {
        let e = err("GET", &q(expires), &h);
        assert_eq!(
            (e.code, &*e.message),
            (ErrorCode::AuthorizationQueryParametersError, msg)
        );
    }
    assert!(parse("GET", &q("&X-Amz-Expires=604800"), &h).is_ok());
    let e = err(
        "GET",
        &full(
            "&X-Amz-Expires=1",
            "AWS4-HMAC-SHA1",
            ok_cred,
            "&X-Amz-Signature=ab",
        ),
        &h,
    );
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert_eq!(e.detail_text("ArgumentValue"), Some("AWS4-HMAC-SHA1"));
    let e = err(
        "GET",
        &full("&X-Amz-Expires=1", "AWS4-HMAC-SHA256", ok_cred, ""),
        &h,
    );
    assert_eq!(e.code, ErrorCode::AccessDenied);
    let e = err(
        "GET",
        &full(
            "&X-Amz-Expires=1",
            "AWS4-HMAC-SHA256",
            "AK%2F20130524%2Fmars%2Fs3%2Faws4_request",
            "&X-Amz-Signature=ab",
        ),
        &h,
    );
    assert_eq!(e.code, ErrorCode::AuthorizationQueryParametersError);
    assert_eq!(
        e.message,
        "Error parsing the X-Amz-Credential parameter; the region 'mars' is wrong; expecting 'us-east-1'"
    );
    let no_signed_headers = presigned(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20130524T000000Z&X-Amz-Expires=5&X-Amz-Signature=ab",
    );
    assert_eq!(
        err("GET", &no_signed_headers, &h).code,
        ErrorCode::AuthorizationHeaderMalformed
    );
    let req = parse("GET", &q("&X-Amz-Expires=5"), &h).unwrap();
    req.check_time(T0 + 5).unwrap();
    let e = req.check_time(T0 + 6).unwrap_err();
    assert_eq!(
        (e.code, &*e.message),
        (ErrorCode::AccessDenied, "Request has expired")
    );
}

#[test]
fn v2_errors() {
    let e = err(
        "GET",
        "/",
        &[
            ("authorization", "Bearer x"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ],
    );
    assert_eq!(e.code, ErrorCode::AccessDenied);
    let e = err(
        "GET",
        "/",
        &[
            ("authorization", "AWS nocolon"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ],
    );
    assert_eq!(e.code, ErrorCode::AccessDenied);
    let e = err("GET", "/", &[("authorization", "AWS a:b")]);
    assert_eq!(
        e.message,
        "AWS authentication requires a valid Date or x-amz-date header"
    );
    let e = err(
        "GET",
        "/",
        &[("authorization", "AWS a:b"), ("date", "someday")],
    );
    assert_eq!(
        e.message,
        "AWS authentication requires a valid Date or x-amz-date header"
    );
    let req = parse(
        "GET",
        "/",
        &[
            ("authorization", "AWS a:b:c"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ],
    )
    .unwrap();
    assert_eq!(
        (req.access_key.as_str(), req.signature.as_str()),
        ("a:b", "c")
    );
    assert_eq!(
        req.check_time(T0 + 901).unwrap_err().code,
        ErrorCode::RequestTimeTooSkewed
    );

    let e = err(
        "GET",
        "/b?AWSAccessKeyId=a&Signature=s&Expires=2147483648",
        &[],
    );
    assert_eq!(
        e.message,
        "Invalid date (should be seconds since epoch): 2147483648"
    );
    for q in [
        "AWSAccessKeyId=a&Signature=s",
        "AWSAccessKeyId=a&Signature=s&Expires=x",
        "AWSAccessKeyId=a&Expires=5",
    ] {
        assert_eq!(
            err("GET", &format!("/b?{q}"), &[]).code,
            ErrorCode::AccessDenied,
            "{q}"
        );
    }
    let req = parse(
        "GET",
        "/b?AWSAccessKeyId=a&Signature=s&Expires=1369353600",
        &[],
    )
    .unwrap();
    req.check_time(T0).unwrap();
    assert_eq!(
        req.check_time(T0 + 1).unwrap_err().message,
        "Request has expired"
    );
}

#[test]
fn signature_does_not_match_shows_what_was_signed() {
    let req = parse(
        "GET",
        "/b/o?acl",
        &[
            ("authorization", "AWS ak:bad"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ],
    )
    .unwrap();
    let e = verify(&req, &Secret::new("s"), T0).unwrap_err();
    assert_eq!(e.code, ErrorCode::SignatureDoesNotMatch);
    assert_eq!(e.status().as_u16(), 403);
    let xml = e.to_xml(Some("tx1"));
    assert!(xml.contains("<Code>SignatureDoesNotMatch</Code>"), "{xml}");
    assert!(
        xml.contains(
            "<RequestId>tx1</RequestId><AWSAccessKeyId>ak</AWSAccessKeyId>\
         <StringToSign>GET\n\n\nFri, 24 May 2013 00:00:00 GMT\n/b/o?acl</StringToSign>\
         <SignatureProvided>bad</SignatureProvided><StringToSignBytes>47 45 54 0a"
        ),
        "{xml}"
    );

    let h = v4_headers(&v4_auth(CRED, "host;x-amz-date"));
    let req = parse("GET", "/a&b", &with(&h)).unwrap();
    let xml = verify(&req, &Secret::new("s"), T0)
        .unwrap_err()
        .to_xml(None);
    assert!(
        xml.contains("<CanonicalRequest>GET\n/a%26b\n\nhost:examplebucket.s3.amazonaws.com\n"),
        "{xml}"
    );
    assert!(
        xml.contains("<CanonicalRequestBytes>47 45 54 0a 2f"),
        "{xml}"
    );
    assert!(xml.contains("<StringToSign>AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"), "{xml}");
}
