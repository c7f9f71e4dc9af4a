//! DeleteObjects (`POST ?delete`), as Swift's `MultiObjectDeleteController`
//! does it: a `Delete` document of at most 1000 keys (optionally with
//! version ids), which must come with a `Content-MD5` or an
//! `x-amz-checksum-*` that matches it; each key deleted as DeleteObject
//! would (an SLO with its segments), two at a time; and a `DeleteResult`
//! that lists each key as `Deleted` (unless `Quiet`) or as an `Error`
//! with its S3 code. A key that is not there counts as deleted.

use std::fmt::Write as _;

use apus_s3::{ErrorCode, S3Error};
use futures_util::stream::{FuturesOrdered, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use md5::{Digest, Md5};

use super::versioning::query_string;
use super::{esc, xml_body, xml_response, S3Api, S3Request, XMLNS, XML_DECL};
use crate::service::{header_str, Resp};

/// S3's (and Swift's default) largest number of keys in one request.
const MAX_MULTI_DELETE_OBJECTS: usize = 1000;
/// How many keys are deleted at once (Swift's `multi_delete_concurrency`).
const MULTI_DELETE_CONCURRENCY: usize = 2;
/// Swift's longest object name.
const MAX_OBJECT_NAME_LENGTH: usize = 1024;
/// The largest document: twice the longest names of the most keys, but
/// never more than 10 MiB.
const MAX_BODY_SIZE: usize = {
    let slop = 2 * MAX_MULTI_DELETE_OBJECTS * MAX_OBJECT_NAME_LENGTH;
    let cap = 10 * 1024 * 1024;
    if slop < cap {
        slop
    } else {
        cap
    }
};

/// One key to delete, and the version if one was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub key: String,
    pub version: Option<String>,
}

/// A Delete document: whether it asks for quiet answers, and its keys.
/// Its shape is S3's schema: `Delete` holding at most one `Quiet` and
/// one or more `Object`s, each with one `Key` and at most one
/// `VersionId`; anything else is `MalformedXML`. An empty key is
/// `UserKeyMustBeSpecified`; more than 1000 keys `MalformedXML`.
pub(crate) fn parse_delete(doc: &[u8]) -> Result<(bool, Vec<Target>), S3Error> {
    let malformed = || S3Error::new(ErrorCode::MalformedXML);
    let root = apus_s3::xml::parse(doc)?;
    if root.name != "Delete" || !xml_body::no_text(&root) {
        return Err(malformed());
    }
    let mut quiet: Option<bool> = None;
    let mut objects = Vec::new();
    for child in &root.children {
        match child.name.as_str() {
            "Quiet" if quiet.is_none() && child.children.is_empty() => {
                quiet = Some(child.text.eq_ignore_ascii_case("true"))
            }
            "Object" => {
                let keys = child.children_named("Key").count();
                let versions = child.children_named("VersionId").count();
                let valid = keys == 1
                    && versions <= 1
                    && child.children.len() == keys + versions
                    && child.children.iter().all(|c| c.children.is_empty())
                    && xml_body::no_text(child);
                if !valid {
                    return Err(malformed());
                }
                objects.push(child);
            }
            _ => return Err(malformed()),
        }
    }
    if objects.is_empty() {
        return Err(malformed());
    }
    let mut targets = Vec::with_capacity(objects.len());
    for o in objects {
        let key = o.child_text("Key").unwrap_or("");
        if key.is_empty() {
            return Err(S3Error::new(ErrorCode::UserKeyMustBeSpecified));
        }
        targets.push(Target {
            key: key.to_string(),
            // An empty VersionId names no version.
            version: o
                .child_text("VersionId")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        });
    }
    if targets.len() > MAX_MULTI_DELETE_OBJECTS {
        return Err(malformed());
    }
    Ok((quiet.unwrap_or(false), targets))
}

/// What happened to one key: deleted, or S3's error code and message.
type Outcome = Result<(), (String, String)>;

pub(super) async fn handle(api: &S3Api, mut req: S3Request) -> Result<Resp, S3Error> {
    if req.method != Method::POST {
        return Err(S3Error::method_not_allowed(
            req.method.as_str(),
            "MULTI_OBJECT_DELETE",
        ));
    }
    // The checksum headers were validated, and a checksum is verified
    // as the body streams (`apus_s3::input`), before this runs.
    let has_checksum = req
        .headers
        .keys()
        .any(|k| apus_s3::input::ChecksumAlgorithm::from_header(k.as_str()).is_some());
    let md5 = super::obj::content_md5_hex(&req)?;
    let doc = xml_body::read(&mut req, MAX_BODY_SIZE)
        .await?
        .filter(|d| !d.is_empty())
        .ok_or_else(|| S3Error::new(ErrorCode::MissingRequestBodyError))?;
    // The document must be protected by one or the other.
    if md5.is_none() && !has_checksum {
        return Err(S3Error::with_message(
            ErrorCode::InvalidRequest,
            "Missing required header for this request: Content-MD5 OR x-amz-checksum-*",
        ));
    }
    if let Some(expected) = &md5 {
        let got: String = Md5::digest(&doc)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if &got != expected {
            return Err(S3Error::new(ErrorCode::BadDigest).detail(
                "ExpectedDigest",
                req.header("content-md5").unwrap_or("").trim(),
            ));
        }
    }
    let (quiet, targets) = parse_delete(&doc)?;

    let bucket = req.bucket_name().to_string();
    let head = api
        .get_response(
            &req,
            Method::HEAD,
            Some(&bucket),
            None,
            None,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await;
    match head {
        Ok(_) => {}
        Err(e) if e.code == ErrorCode::AccessDenied => {
            // Every key is refused, in a successful answer.
            let denied: Vec<Outcome> = targets
                .iter()
                .map(|_| Err((e.code.as_str().to_string(), e.message.to_string())))
                .collect();
            return Ok(result(&targets, &denied, quiet));
        }
        Err(e) => return Err(e),
    }
    if !api.object_versioning
        && targets
            .iter()
            .any(|t| t.version.as_deref().is_some_and(|v| v != "null"))
    {
        return Err(S3Error::new(ErrorCode::NotImplemented));
    }
    // In order, a few at a time.
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(targets.len());
    let mut next = targets.iter();
    let mut pending = FuturesOrdered::new();
    for t in next.by_ref().take(MULTI_DELETE_CONCURRENCY) {
        pending.push_back(delete_one(api, &req, t));
    }
    while let Some(outcome) = pending.next().await {
        outcomes.push(outcome);
        if let Some(t) = next.next() {
            pending.push_back(delete_one(api, &req, t));
        }
    }
    Ok(result(&targets, &outcomes, quiet))
}

/// The DeleteResult document. The version a target named is echoed with
/// its answer, as S3 does (Swift's own answer leaves it out).
fn result(targets: &[Target], outcomes: &[Outcome], quiet: bool) -> Resp {
    let mut out = format!("{XML_DECL}<DeleteResult xmlns=\"{XMLNS}\">");
    for (t, o) in targets.iter().zip(outcomes) {
        let version = t
            .version
            .as_deref()
            .map(|v| format!("<VersionId>{}</VersionId>", esc(v)))
            .unwrap_or_default();
        match o {
            Ok(()) if quiet => {}
            Ok(()) => {
                let _ = write!(
                    out,
                    "<Deleted><Key>{}</Key>{version}</Deleted>",
                    esc(&t.key)
                );
            }
            Err((code, message)) => {
                let _ = write!(
                    out,
                    "<Error><Key>{}</Key>{version}<Code>{}</Code><Message>{}</Message></Error>",
                    esc(&t.key),
                    esc(code),
                    esc(message)
                );
            }
        }
    }
    out.push_str("</DeleteResult>");
    xml_response(StatusCode::OK, out)
}

async fn delete_one(api: &S3Api, req: &S3Request, t: &Target) -> Outcome {
    let bucket = req.bucket_name();
    let version = t.version.as_deref();
    let fail = |e: S3Error| Err((e.code.as_str().to_string(), e.message.to_string()));
    let mut query = match manifest_delete_query(api, req, &t.key, version).await {
        Ok(q) => q,
        Err(e) if e.code == ErrorCode::NoSuchKey => Vec::new(),
        Err(e) => return fail(e),
    };
    if let Some(v) = version {
        query.push(("version-id", v.to_string()));
        query.push(("symlink", "get".to_string()));
    }
    let manifest = query.iter().any(|(k, _)| *k == "multipart-manifest");
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    let resp = match api
        .get_response(
            req,
            Method::DELETE,
            Some(bucket),
            Some(&t.key),
            Some(&query_string(&query)),
            headers,
            apus_http::empty(),
        )
        .await
    {
        Ok(r) => r,
        Err(e) if e.code == ErrorCode::NoSuchKey => return Ok(()),
        Err(e) => return fail(e),
    };
    if manifest && resp.status() != StatusCode::NO_CONTENT {
        // A synchronous SLO delete reports on its segments.
        return slo_report(resp).await;
    }
    Ok(())
}

/// The outcome an SLO delete's bulk report (JSON) gives: its errors
/// (missing segments are not errors), or a report that cannot be read.
async fn slo_report(resp: Resp) -> Outcome {
    let unexpected = || {
        Err((
            "SLODeleteError".to_string(),
            "Unexpected swift response".to_string(),
        ))
    };
    let Some(report) = super::read_json(resp).await else {
        return unexpected();
    };
    let Some(errors) = report.get("Errors").and_then(|e| e.as_array()) else {
        return unexpected();
    };
    if errors.is_empty() {
        return Ok(());
    }
    let mut lines = vec![report
        .get("Response Status")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .to_string()];
    for e in errors {
        let (name, status) = match e.as_array().map(Vec::as_slice) {
            Some([n, s]) => (
                n.as_str().unwrap_or("").to_string(),
                s.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| s.to_string()),
            ),
            _ => return unexpected(),
        };
        lines.push(format!("{name}: {status}"));
    }
    Err(("SLODeleteError".to_string(), lines.join("\n")))
}

/// The query that deletes `key` (or its `version`) whole: an SLO's
/// manifest with its segments (asynchronously when it came from a
/// multipart upload), anything else as it is (Swift's
/// `gen_multipart_manifest_delete_query`). A missing key is `NoSuchKey`.
pub(crate) async fn manifest_delete_query(
    api: &S3Api,
    req: &S3Request,
    key: &str,
    version: Option<&str>,
) -> Result<Vec<(&'static str, String)>, S3Error> {
    let mut query = vec![("symlink", "get".to_string())];
    if let Some(v) = version {
        query.push(("version-id", v.to_string()));
    }
    let head = api
        .get_response(
            req,
            Method::HEAD,
            req.bucket.as_deref(),
            Some(key),
            Some(&query_string(&query)),
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await?;
    let h = head.headers();
    if !header_str(h, "x-static-large-object").is_some_and(apus_proto::headers::is_true) {
        return Ok(Vec::new());
    }
    let mut q = vec![("multipart-manifest", "delete".to_string())];
    if header_str(h, "x-object-sysmeta-s3api-etag").is_some_and(|e| !e.is_empty()) {
        q.push(("async", "on".to_string()));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn doc(body: &str) -> Vec<u8> {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete xmlns=\"{XMLNS}\">{body}</Delete>"
        )
        .into_bytes()
    }

    #[test]
    fn delete_documents_give_quiet_and_targets() {
        let (quiet, targets) = parse_delete(&doc("<Object><Key>a</Key></Object>\
             <Quiet>TRUE</Quiet>\
             <Object><VersionId>1700000000.00000</VersionId><Key>b&amp;c</Key></Object>\
             <Object><Key>\u{2603}</Key><VersionId></VersionId></Object>"))
        .unwrap();
        assert!(quiet);
        assert_eq!(
            targets,
            [
                Target {
                    key: "a".into(),
                    version: None
                },
                Target {
                    key: "b&c".into(),
                    version: Some("1700000000.00000".into())
                },
                Target {
                    key: "\u{2603}".into(),
                    version: None
                },
            ]
        );
        let (quiet, _) =
            parse_delete(&doc("<Quiet>false</Quiet><Object><Key>a</Key></Object>")).unwrap();
        assert!(!quiet);
        // Without a namespace too, as Swift's own tests send it.
        assert!(parse_delete(b"<Delete><Object><Key>a</Key></Object></Delete>").is_ok());
    }

    #[test]
    fn delete_documents_outside_the_schema_are_refused() {
        for bad in [
            "",
            "<Quiet>true</Quiet>",
            "<Quiet>true</Quiet><Quiet>true</Quiet><Object><Key>a</Key></Object>",
            "<Object></Object>",
            "<Object><Key>a</Key><Key>b</Key></Object>",
            "<Object><Key>a</Key><VersionId>1</VersionId><VersionId>2</VersionId></Object>",
            "<Object><Key>a</Key><Other/></Object>",
            "<Object><Key><b/></Key></Object>",
            "<Object>x<Key>a</Key></Object>",
            "<Other/><Object><Key>a</Key></Object>",
        ] {
            let err = parse_delete(&doc(bad)).unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedXML, "{bad}");
        }
        let err = parse_delete(b"<Remove><Object><Key>a</Key></Object></Remove>").unwrap_err();
        assert_eq!(err.code, ErrorCode::MalformedXML);
        let err = parse_delete(&doc("<Object><Key></Key></Object>")).unwrap_err();
        assert_eq!(err.code, ErrorCode::UserKeyMustBeSpecified);
        let many = "<Object><Key>k</Key></Object>".repeat(MAX_MULTI_DELETE_OBJECTS + 1);
        assert_eq!(
            parse_delete(&doc(&many)).unwrap_err().code,
            ErrorCode::MalformedXML
        );
        let most = "<Object><Key>k</Key></Object>".repeat(MAX_MULTI_DELETE_OBJECTS);
        assert_eq!(parse_delete(&doc(&most)).unwrap().1.len(), 1000);
        assert_eq!(MAX_BODY_SIZE, 2_048_000);
    }

    #[tokio::test]
    async fn results_list_deleted_and_errors_in_order() {
        let targets = vec![
            Target {
                key: "a<".into(),
                version: None,
            },
            Target {
                key: "b".into(),
                version: Some("1.0".into()),
            },
            Target {
                key: "c".into(),
                version: None,
            },
        ];
        let outcomes: Vec<Outcome> = vec![
            Ok(()),
            Err(("AccessDenied".into(), "Access Denied.".into())),
            Ok(()),
        ];
        let (t, o) = (&targets, &outcomes);
        let body = |quiet| async move {
            let resp = result(t, o, quiet);
            assert_eq!(resp.status(), StatusCode::OK);
            let b = apus_http::body::collect_limited(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        };
        assert_eq!(
            body(false).await,
            format!(
                "{XML_DECL}<DeleteResult xmlns=\"{XMLNS}\">\
                 <Deleted><Key>a&lt;</Key></Deleted>\
                 <Error><Key>b</Key><VersionId>1.0</VersionId><Code>AccessDenied</Code>\
                 <Message>Access Denied.</Message></Error>\
                 <Deleted><Key>c</Key></Deleted></DeleteResult>"
            )
        );
        let quiet = body(true).await;
        assert!(!quiet.contains("Deleted"));
        assert!(quiet.contains("<Error><Key>b</Key>"));
    }
}
