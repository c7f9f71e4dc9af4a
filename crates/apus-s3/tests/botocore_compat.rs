//! Requests signed by botocore (the AWS SDK for Python) verify, and stop
//! verifying once one byte of what was signed changes: the path, the
//! query, a signed header, the date or the signature.
//!
//! botocore comes from the reference venv that the README's test command
//! installs (`scripts/swift-ref.sh`); `APUS_SWIFT_PYTHON` names its
//! interpreter. All cases are signed in one Python process at a fixed
//! time; apus's canonical request (SigV4) or string to sign (SigV2) must
//! equal the one botocore signed, byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use apus_s3::{verify, AuthConfig, AuthRequest, ErrorCode, PayloadHash, Secret};
use http::request::Parts;
use serde_json::{json, Value};

const NOW: i64 = 1_716_554_096; // 2024-05-24T12:34:56Z
const REGION: &str = "us-east-1";
const ACCESS: &str = "test:tester";
const SECRET: &str = "testing";

fn python() -> PathBuf {
    let python = match std::env::var_os("APUS_SWIFT_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/swift-ref/swift-venv/bin/python")
        }
    };
    assert!(
        python.exists(),
        "{} not found: run scripts/swift-ref.sh (the README's test command does), \
         or set APUS_SWIFT_PYTHON",
        python.display()
    );
    python
}

fn sign_all(cases: &[Value]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sign_with_botocore.py");
    let mut child = Command::new(python())
        .arg(script)
        .args([&NOW.to_string(), REGION, ACCESS, SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "botocore signing failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A request as sent: method, target, headers (text read as ISO-8859-1).
#[derive(Clone, Debug)]
struct Sent {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Sent {
    fn from_json(v: &Value) -> Sent {
        Sent {
            method: v["method"].as_str().unwrap().to_string(),
            target: v["target"].as_str().unwrap().to_string(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let value = h[1].as_str().unwrap().chars().map(|c| c as u8).collect();
                    (h[0].as_str().unwrap().to_ascii_lowercase(), value)
                })
                .collect(),
        }
    }

    fn parts(&self) -> Parts {
        let mut b = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.target.as_str());
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), http::HeaderValue::from_bytes(v).unwrap());
        }
        b.body(()).unwrap().into_parts().0
    }

    fn header_mut(&mut self, name: &str) -> Option<&mut Vec<u8>> {
        self.headers
            .iter_mut()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn config() -> AuthConfig {
    AuthConfig {
        storage_domains: vec!["s3.example.com".to_string()],
        ..AuthConfig::default()
    }
}

fn check(sent: &Sent) -> Result<apus_s3::Verified, apus_s3::S3Error> {
    let req = AuthRequest::parse(&sent.parts(), &config())?.expect("an S3 request");
    verify(&req, &Secret::new(SECRET), NOW)
}

fn flip_last_hex_or_char(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let last = chars.last_mut().unwrap();
    *last = if *last == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

/// Changes one byte of the value of query parameter `name` in a target.
fn change_param(target: &str, name: &str) -> Option<String> {
    let (path, query) = target.split_once('?')?;
    let mut changed = false;
    let fields: Vec<String> = query
        .split('&')
        .map(|f| match f.split_once('=') {
            Some((k, v)) if k == name && !changed => {
                changed = true;
                format!("{k}={}", flip_last_hex_or_char(v))
            }
            _ => f.to_string(),
        })
        .collect();
    changed.then(|| format!("{path}?{}", fields.join("&")))
}

fn cases() -> Vec<Value> {
    let keys = [
        "/bucket/plain",
        "/bucket/with%20space",
        "/bucket/caf%C3%A9%20%E2%82%AC",
        "/bucket/a%2Bb",
        "/bucket/100%25",
        "/bucket/tilde~key",
        "/bucket//double//slashes/",
        "/bucket/sym%21%24%26%27%28%29%2A%2C%3B%3D%40",
        "/",
    ];
    let mut cases = Vec::new();
    for key in keys {
        for sig in ["v4", "v4-query", "v2", "v2-query"] {
            cases.push(json!({"sig": sig, "method": "GET", "path": key}));
        }
    }
    for sig in ["v4", "v4-query", "v2", "v2-query"] {
        // Sub-resources, empty values, encoded values, extra params.
        cases.push(json!({"sig": sig, "method": "GET", "path": "/bucket",
            "query": "acl&versionId=abc&prefix=a%2Fb&empty="}));
        cases.push(json!({"sig": sig, "method": "GET", "path": "/bucket/obj",
            "params": {"response-content-type": "text/plain; x=y",
                       "list-type": "2", "max-keys": "10", "z": ""}}));
        cases.push(json!({"sig": sig, "method": "GET", "path": "/bucket",
            "query": "uploads&delimiter=%2F&encoding-type=url"}));
        // Bodies, metadata, headers needing trimming.
        cases.push(json!({"sig": sig, "method": "PUT", "path": "/bucket/obj",
            "body": "hello world",
            "headers": {"Content-Type": "text/plain", "Content-MD5": "XrY7u+Ae7tCTyyK7j1rNww==",
                        "x-amz-meta-Color": "  blue   and\tgreen ",
                        "X-Amz-Meta-Empty": "", "x-amz-acl": "private"}}));
        cases.push(
            json!({"sig": sig, "method": "DELETE", "path": "/bucket/obj",
            "query": "uploadId=2~abc-DEF_1.x"}),
        );
        cases.push(json!({"sig": sig, "method": "HEAD", "path": "/bucket/obj",
            "headers": {"Range": "bytes=0-9", "If-None-Match": "\"abc\""}}));
    }
    // SigV4 with an unsigned payload, and a POST with a body.
    cases.push(json!({"sig": "v4", "method": "PUT", "path": "/bucket/big",
        "body": "data", "unsigned_payload": true}));
    cases.push(json!({"sig": "v4", "method": "POST", "path": "/bucket",
        "query": "delete", "body": "<Delete></Delete>",
        "headers": {"Content-Type": "application/xml"}}));
    // Longest presigned life.
    cases.push(json!({"sig": "v4-query", "method": "GET", "path": "/bucket/o", "expires": 604800}));
    // SigV2 with the bucket in the host.
    for sig in ["v2", "v2-query"] {
        cases.push(json!({"sig": sig, "method": "GET", "path": "/key%20x",
            "host": "bkt.s3.example.com:8080", "auth_path": "/bkt/key%20x"}));
    }
    cases
}

#[test]
fn botocore_signed_requests_verify_and_tampering_fails() {
    let cases = cases();
    let signed = sign_all(&cases);
    assert_eq!(signed.len(), cases.len());
    let mut checked = 0;
    for (case, out) in cases.iter().zip(&signed) {
        let sig = case["sig"].as_str().unwrap();
        let sent = Sent::from_json(out);
        let what = format!("{case} sent as {sent:?}");

        // What apus signs is what botocore signed.
        let req = AuthRequest::parse(&sent.parts(), &config())
            .unwrap_or_else(|e| panic!("{what}: {e:?}"))
            .unwrap();
        let ours = if sig.starts_with("v4") {
            req.canonical_request.clone().unwrap()
        } else {
            req.string_to_sign.clone()
        };
        assert_eq!(
            String::from_utf8_lossy(&ours),
            out["signed"].as_str().unwrap(),
            "{what}"
        );
        let verified = check(&sent).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(verified.access_key, ACCESS);
        if sig == "v4" {
            let body = case["body"].as_str().unwrap_or("");
            if case["unsigned_payload"].as_bool() == Some(true) {
                assert_eq!(verified.payload, PayloadHash::Unsigned, "{what}");
            } else {
                use sha2::Digest;
                let want = sha2::Sha256::digest(body.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>();
                assert_eq!(verified.payload, PayloadHash::Sha256(want), "{what}");
            }
        }

        // Unsigned extra headers change nothing.
        let mut extra = sent.clone();
        extra
            .headers
            .push(("x-unsigned-extra".into(), b"whatever".to_vec()));
        extra.headers.push(("accept".into(), b"*/*".to_vec()));
        check(&extra).unwrap_or_else(|e| panic!("{what} with extra headers: {e:?}"));

        let mut tampered: Vec<(&str, Sent)> = Vec::new();
        // One byte of the path.
        let mut t = sent.clone();
        let (path, rest) = match t.target.split_once('?') {
            Some((p, q)) => (p.to_string(), format!("?{q}")),
            None => (t.target.clone(), String::new()),
        };
        t.target = format!("{path}x{rest}");
        tampered.push(("path", t));
        // One byte of the signature.
        let mut t = sent.clone();
        if sig.ends_with("query") {
            let name = if sig == "v4-query" {
                "X-Amz-Signature"
            } else {
                "Signature"
            };
            t.target = change_param(&t.target, name).unwrap();
        } else {
            let auth = t.header_mut("authorization").unwrap();
            let last = auth.len() - 2; // before a base64 '=' or the last hex digit
            auth[last] = if auth[last] == b'A' { b'B' } else { b'A' };
        }
        tampered.push(("signature", t));
        // The date.
        let mut t = sent.clone();
        match sig {
            "v4" => {
                let d = t.header_mut("x-amz-date").unwrap();
                d[14] = if d[14] == b'0' { b'1' } else { b'0' };
            }
            "v4-query" => t.target = change_param(&t.target, "X-Amz-Date").unwrap(),
            "v2" => {
                let d = t.header_mut("date").unwrap();
                let i = d.len() - 5; // last digit of the seconds
                d[i] = if d[i] == b'0' { b'1' } else { b'0' };
            }
            _ => t.target = change_param(&t.target, "Expires").unwrap(),
        }
        tampered.push(("date", t));
        // The query: SigV4 signs all of it, SigV2 only sub-resources.
        let mut t = sent.clone();
        if sig.starts_with("v4") {
            t.target = if t.target.contains('?') {
                format!("{}&added=1", t.target)
            } else {
                format!("{}?added=1", t.target)
            };
            tampered.push(("query", t));
        } else if let Some(changed) = change_param(&t.target, "versionId") {
            t.target = changed;
            tampered.push(("sub-resource", t));
        } else {
            let mut u = sent.clone();
            u.target = if u.target.contains('?') {
                format!("{}&not-a-subresource=1", u.target)
            } else {
                format!("{}?not-a-subresource=1", u.target)
            };
            check(&u).unwrap_or_else(|e| panic!("{what} with an unsigned param: {e:?}"));
        }
        // A signed header: the host under SigV4, the content type or an
        // x-amz- header under SigV2.
        let mut t = sent.clone();
        let name = if sig.starts_with("v4") {
            "host"
        } else if t.header_mut("content-type").is_some() {
            "content-type"
        } else {
            ""
        };
        if !name.is_empty() {
            t.header_mut(name).unwrap().push(b'x');
            tampered.push(("signed header", t));
        }
        if sig.starts_with("v2") {
            let mut t = sent.clone();
            t.headers.push(("x-amz-meta-new".into(), b"1".to_vec()));
            tampered.push(("added x-amz header", t));
        }
        // The method.
        let mut t = sent.clone();
        t.method = if t.method == "GET" { "HEAD" } else { "GET" }.into();
        tampered.push(("method", t));

        for (change, t) in tampered {
            let err = check(&t).expect_err(&format!("{change} changed: {what}"));
            assert!(
                matches!(
                    err.code,
                    ErrorCode::SignatureDoesNotMatch
                        | ErrorCode::AccessDenied
                        | ErrorCode::AuthorizationQueryParametersError
                        | ErrorCode::AuthorizationHeaderMalformed
                ),
                "{change} changed: {what}: {err:?}"
            );
            checked += 1;
        }

        // Another secret.
        let req = AuthRequest::parse(&sent.parts(), &config())
            .unwrap()
            .unwrap();
        let err = verify(&req, &Secret::new("other"), NOW).unwrap_err();
        assert_eq!(err.code, ErrorCode::SignatureDoesNotMatch);
    }
    assert!(checked > 5 * cases.len(), "{checked}");
}

#[test]
fn presigned_urls_expire_and_signed_times_skew() {
    let cases = vec![
        json!({"sig": "v4-query", "method": "GET", "path": "/b/o", "expires": 60}),
        json!({"sig": "v2-query", "method": "GET", "path": "/b/o", "expires": 60}),
        json!({"sig": "v4", "method": "GET", "path": "/b/o"}),
        json!({"sig": "v2", "method": "GET", "path": "/b/o"}),
    ];
    let signed = sign_all(&cases);
    let secret = Secret::new(SECRET);
    for (case, out) in cases.iter().zip(&signed) {
        let sent = Sent::from_json(out);
        let req = AuthRequest::parse(&sent.parts(), &config())
            .unwrap()
            .unwrap();
        if case["sig"].as_str().unwrap().ends_with("query") {
            verify(&req, &secret, NOW + 60).unwrap();
            let err = verify(&req, &secret, NOW + 61).unwrap_err();
            assert_eq!(err.code, ErrorCode::AccessDenied);
            assert_eq!(err.message, "Request has expired");
        } else {
            verify(&req, &secret, NOW + 900).unwrap();
            verify(&req, &secret, NOW - 900).unwrap();
            for now in [NOW + 901, NOW - 901] {
                let err = verify(&req, &secret, now).unwrap_err();
                assert_eq!(err.code, ErrorCode::RequestTimeTooSkewed, "{case}");
            }
        }
    }
}
