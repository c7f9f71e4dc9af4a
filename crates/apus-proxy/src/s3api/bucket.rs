//! Buckets: PUT (create), HEAD, DELETE, GET (ListObjects v1 and v2) and
//! GetBucketLocation. A bucket is a container of the user's account.

use std::fmt::Write as _;

use apus_s3::S3Error;
use http::{HeaderMap, Method, StatusCode};

use super::{
    empty_response, esc, quote, read_json, xml_response, S3Api, S3Request, XMLNS, XML_DECL,
};
use crate::service::{set_header, Resp};

/// S3's bucket name rules (s3api's `validate_bucket_name`, DNS-compliant).
pub(crate) fn valid_bucket(name: &str) -> bool {
    let len_ok = (3..=63).contains(&name.len());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_');
    let ends_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    len_ok && chars_ok && ends_ok && !name.contains("..") && !name.contains(".-")
}

pub(super) async fn handle(api: &S3Api, req: S3Request) -> Result<Resp, S3Error> {
    let bucket = req.bucket_name().to_string();
    match req.method {
        Method::PUT => {
            if !valid_bucket(&bucket) {
                return Err(S3Error::invalid_bucket_name(&bucket));
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
            Ok(empty_response(StatusCode::OK))
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
