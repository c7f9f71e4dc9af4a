//! Buckets: PUT (create), HEAD, DELETE, GET (ListObjects v1 and v2) and
//! GetBucketLocation. A bucket is a container of the user's account.

use std::fmt::Write as _;

use apus_s3::{ErrorCode, S3Error};
use http::{HeaderMap, Method, StatusCode};

use super::{
    empty_response, esc, quote, read_json, xml_response, S3Api, S3Request, XMLNS, XML_DECL,
};
use crate::service::{set_header, Resp};

/// S3's bucket name rules (s3api's `validate_bucket_name` with
/// `dns_compliant_bucket_names`): 3 to 63 of `a-z 0-9 . -`, starting and
/// ending with a letter or digit, no `..`, `.-` or `-.`, and not an IPv4
/// address.
pub(crate) fn valid_bucket(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    (3..=63).contains(&bytes.len())
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.")
        && bytes
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && !looks_like_ipv4(name)
}

/// Four dot-separated decimal numbers of 0..=255 (leading zeros as
/// Swift's pattern allows them: none but a lone 0).
fn looks_like_ipv4(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// The largest CreateBucketConfiguration read (Swift's
/// `MAX_PUT_BUCKET_BODY_SIZE`).
const MAX_PUT_BUCKET_BODY: usize = 10240;

/// A CreateBucketConfiguration's location must be ours: s3api serves one
/// region. Entities are never expanded, so one standing for the location
/// leaves it empty, which is refused.
fn check_location(doc: &[u8], location: &str) -> Result<(), S3Error> {
    let root = apus_s3::xml::parse_skipping_doctype(doc)?;
    if root.name != "CreateBucketConfiguration" {
        return Err(S3Error::new(ErrorCode::MalformedXML));
    }
    let given = root
        .child_text("LocationConstraint")
        .ok_or_else(|| S3Error::new(ErrorCode::MalformedXML))?;
    if given != location && given != location.to_lowercase() {
        return Err(S3Error::new(ErrorCode::InvalidLocationConstraint));
    }
    Ok(())
}

pub(super) async fn handle(api: &S3Api, mut req: S3Request) -> Result<Resp, S3Error> {
    let bucket = req.bucket_name().to_string();
    match req.method {
        Method::PUT => {
            if !valid_bucket(&bucket) {
                return Err(S3Error::invalid_bucket_name(&bucket));
            }
            if let Some(doc) = super::xml_body::read(&mut req, MAX_PUT_BUCKET_BODY).await? {
                check_location(&doc, &api.config.location)?;
            }
            api.get_response(
                &req,
                Method::PUT,
                Some(&bucket),
                None,
                None,
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await?;
            let mut r = empty_response(StatusCode::OK);
            set_header(r.headers_mut(), "location", &format!("/{bucket}"));
            Ok(r)
        }
        Method::HEAD => {
            api.get_response(
                &req,
                Method::HEAD,
                Some(&bucket),
                None,
                None,
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await?;
            let mut r = empty_response(StatusCode::OK);
            // Swift's answer carries the container HEAD's type.
            set_header(r.headers_mut(), "content-type", "text/plain; charset=utf-8");
            Ok(r)
        }
        Method::DELETE => {
            super::multi_upload::delete_segments_bucket(api, &req).await?;
            api.get_response(
                &req,
                Method::DELETE,
                Some(&bucket),
                None,
                None,
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await?;
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        Method::GET if req.has_param("versions") => {
            super::versioning::list_versions(api, &req).await
        }
        Method::GET => list_objects(api, &req).await,
        _ => Err(S3Error::method_not_allowed(req.method.as_str(), "BUCKET")),
    }
}

/// GetBucketLocation: every bucket is in S3's default region, whose
/// location constraint is empty.
pub(super) async fn location(api: &S3Api, req: S3Request) -> Result<Resp, S3Error> {
    if req.method != Method::GET {
        return Err(S3Error::method_not_allowed(req.method.as_str(), "BUCKET"));
    }
    api.get_response(
        &req,
        Method::HEAD,
        req.bucket.as_deref(),
        None,
        None,
        HeaderMap::new(),
        apus_http::empty(),
    )
    .await?;
    let body = format!("{XML_DECL}<LocationConstraint xmlns=\"{XMLNS}\"/>");
    Ok(xml_response(StatusCode::OK, body))
}

async fn list_objects(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    let bucket = req.bucket_name();
    let v2 = req.param("list-type") == Some("2");
    let max_keys = match req.param("max-keys") {
        None => api.config.max_bucket_listing,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => (n as usize).min(api.config.max_bucket_listing),
            _ => return Err(S3Error::invalid_argument("max-keys", v)),
        },
    };
    let prefix = req.param("prefix").unwrap_or_default();
    let delimiter = req.param("delimiter").unwrap_or_default();
    let url_encode = match req.param("encoding-type") {
        None => false,
        Some("url") => true,
        Some(v) => return Err(S3Error::invalid_argument("encoding-type", v)),
    };
    let marker = if v2 {
        match req.param("continuation-token") {
            Some(t) => {
                use base64::Engine;
                match base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                {
                    Some(m) => m,
                    None => return Err(S3Error::invalid_argument("continuation-token", t)),
                }
            }
            None => req.param("start-after").unwrap_or_default().to_string(),
        }
    } else {
        req.param("marker").unwrap_or_default().to_string()
    };
    let mut query = format!("format=json&limit={}", max_keys + 1);
    for (k, v) in [
        ("prefix", prefix),
        ("delimiter", delimiter),
        ("marker", &marker),
    ] {
        if !v.is_empty() {
            let _ = write!(query, "&{k}={}", quote(v));
        }
    }
    let resp = api
        .get_response(
            req,
            Method::GET,
            Some(bucket),
            None,
            Some(&query),
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await?;
    let listing = read_json(resp).await.unwrap_or(serde_json::Value::Null);
    let mut entries: Vec<serde_json::Value> = listing.as_array().cloned().unwrap_or_default();
    let truncated = entries.len() > max_keys;
    entries.truncate(max_keys);
    let enc = |s: &str| {
        if url_encode {
            esc(&quote(s))
        } else {
            esc(s)
        }
    };
    let mut out = format!(
        "{XML_DECL}<ListBucketResult xmlns=\"{XMLNS}\"><Name>{}</Name><Prefix>{}</Prefix>",
        esc(bucket),
        enc(prefix)
    );
    if v2 {
        if let Some(sa) = req.param("start-after") {
            let _ = write!(out, "<StartAfter>{}</StartAfter>", enc(sa));
        }
        if let Some(t) = req.param("continuation-token") {
            let _ = write!(out, "<ContinuationToken>{}</ContinuationToken>", esc(t));
        }
        let _ = write!(out, "<KeyCount>{}</KeyCount>", entries.len());
    } else {
        let _ = write!(out, "<Marker>{}</Marker>", enc(&marker));
    }
    let last_name = entries
        .last()
        .and_then(|e| e["name"].as_str().or_else(|| e["subdir"].as_str()))
        .unwrap_or_default()
        .to_string();
    if truncated {
        if v2 {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(last_name.as_bytes());
            let _ = write!(
                out,
                "<NextContinuationToken>{}</NextContinuationToken>",
                esc(&token)
            );
        } else if !delimiter.is_empty() {
            let _ = write!(out, "<NextMarker>{}</NextMarker>", enc(&last_name));
        }
    }
    let _ = write!(out, "<MaxKeys>{max_keys}</MaxKeys>");
    if !delimiter.is_empty() {
        let _ = write!(out, "<Delimiter>{}</Delimiter>", enc(delimiter));
    }
    if url_encode {
        out.push_str("<EncodingType>url</EncodingType>");
    }
    let _ = write!(out, "<IsTruncated>{truncated}</IsTruncated>");
    let fetch_owner = !v2 || req.param("fetch-owner") == Some("true");
    for e in &entries {
        if let Some(name) = e["name"].as_str() {
            let _ = write!(
                out,
                "<Contents><Key>{}</Key><LastModified>{}</LastModified>\
                 <ETag>{}</ETag><Size>{}</Size>",
                enc(name),
                super::multi_upload::s3_xml_time(e["last_modified"].as_str().unwrap_or_default()),
                esc(&super::multi_upload::listing_etag(e)),
                e["bytes"].as_u64().unwrap_or(0)
            );
            if fetch_owner {
                let _ = write!(
                    out,
                    "<Owner><ID>{o}</ID><DisplayName>{o}</DisplayName></Owner>",
                    o = esc(&req.user_id)
                );
            }
            out.push_str("<StorageClass>STANDARD</StorageClass></Contents>");
        }
    }
    for e in &entries {
        if let Some(subdir) = e["subdir"].as_str() {
            let _ = write!(
                out,
                "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                enc(subdir)
            );
        }
    }
    out.push_str("</ListBucketResult>");
    Ok(xml_response(StatusCode::OK, out))
}

#[cfg(test)]
mod bucket_name_tests {
    use super::{check_location, valid_bucket};
    use apus_s3::ErrorCode;

    #[test]
    fn a_create_bucket_configuration_names_our_location() {
        let doc = |loc: &str| {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{loc}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        assert!(check_location(doc("us-east-1").as_bytes(), "us-east-1").is_ok());
        let code = |d: &str| check_location(d.as_bytes(), "us-east-1").map_err(|e| e.code);
        assert_eq!(
            code(&doc("eu-west-1")),
            Err(ErrorCode::InvalidLocationConstraint)
        );
        let xxe = "<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\"> ]>\
                   <CreateBucketConfiguration><LocationConstraint>&xxe;</LocationConstraint>\
                   </CreateBucketConfiguration>";
        assert_eq!(code(xxe), Err(ErrorCode::InvalidLocationConstraint));
        assert_eq!(code("<Other/>"), Err(ErrorCode::MalformedXML));
        assert_eq!(
            code("<CreateBucketConfiguration>"),
            Err(ErrorCode::MalformedXML)
        );
    }

    #[test]
    fn bucket_names_follow_s3s_dns_rules() {
        for ok in ["abc", "my-bucket.2024", "a1b", "192.168.1.1a", "10.0.0"] {
            assert!(valid_bucket(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "a_b",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "a-.b",
            "abc.",
            "192.168.1.1",
            "0.0.0.0",
        ] {
            assert!(!valid_bucket(bad), "{bad}");
        }
        assert!(!valid_bucket(&"a".repeat(64)));
        assert!(valid_bucket(&"a".repeat(63)));
    }
}
