//! The service: ListBuckets (`GET /`), the account's containers.

use std::fmt::Write as _;

use apus_s3::S3Error;
use http::{HeaderMap, Method, StatusCode};

use super::multi_upload::s3_xml_time;
use super::{esc, read_json, xml_response, S3Api, S3Request, XMLNS, XML_DECL};
use crate::service::Resp;

pub(super) async fn handle(api: &S3Api, req: S3Request) -> Result<Resp, S3Error> {
    if req.method != Method::GET {
        return Err(S3Error::method_not_allowed(req.method.as_str(), "SERVICE"));
    }
    let path = format!("{}?format=json", req.swift_path(None, None));
    let resp = api
        .swift(
            &req,
            Method::GET,
            &path,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await?;
    let status = resp.status();
    let listing = if status == StatusCode::NOT_FOUND {
        // An account never written to has no buckets.
        serde_json::Value::Null
    } else if status.is_success() {
        read_json(resp).await.unwrap_or(serde_json::Value::Null)
    } else if matches!(status.as_u16(), 401 | 403) {
        return Err(S3Error::access_denied("Access Denied."));
    } else {
        return Err(S3Error::new(apus_s3::ErrorCode::InternalError));
    };
    let mut out = format!(
        "{XML_DECL}<ListAllMyBucketsResult xmlns=\"{XMLNS}\">\
         <Owner><ID>{o}</ID><DisplayName>{o}</DisplayName></Owner><Buckets>",
        o = esc(&req.user_id)
    );
    for c in listing.as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = c["name"].as_str().unwrap_or_default();
        // Segment containers (`bucket+segments`) are no buckets.
        if !super::bucket::valid_bucket(name) {
            continue;
        }
        // Only the buckets the user owns (`check_bucket_owner`).
        if !super::acl::bucket_listed(api, &req, name).await? {
            continue;
        }
        let modified = c["last_modified"]
            .as_str()
            .unwrap_or("2009-02-03T16:45:09.000000");
        let _ = write!(
            out,
            "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
            esc(name),
            s3_xml_time(modified)
        );
    }
    out.push_str("</Buckets></ListAllMyBucketsResult>");
    Ok(xml_response(StatusCode::OK, out))
}
