//! S3 access control under Swift's `s3_acl = yes` (with
//! `check_bucket_owner = yes`): the user's permissions come from the ACLs
//! of buckets and objects, not from Swift's authorization, which every
//! S3 subrequest overrides.
//!
//! [`get_response`] is the gate every controller's Swift request passes
//! (Swift's `S3AclRequest.get_response` with the controller's ACL
//! handler): it finds which permission the S3 operation needs on which
//! resource (s3api's `ACL_MAP` and handler classes), reads that
//! resource's ACL with a HEAD, and refuses with `AccessDenied` when the
//! user lacks it. A HEAD that is itself the request is sent once and
//! answers both. Creating a bucket or an object stores its ACL (from
//! `x-amz-acl`, `x-amz-grant-*`, or private to the creator).
//!
//! [`handle`] serves `?acl` on buckets and objects (s3api's
//! `S3AclController`).
//!
//! Controllers that need a check of their own call [`check`] with the
//! resource and [`Need`]; a new object's ACL header comes from
//! [`new_object_acl`].

use apus_s3::acl::{self as model, Acl, Owner, Permission, MAX_ACL_XML};
use apus_s3::{ErrorCode, S3Error};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{empty_response, quote, xml_response, S3Api, S3Request, MULTIUPLOAD_SUFFIX};
use crate::service::{header_str, Resp};

/// What an operation requires of the user on a bucket or an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Being its owner (s3api's `OWNER`).
    Owner,
    /// A permission, granted or owned.
    Perm(Permission),
}

/// Which of s3api's ACL handlers applies: the one of the controller the
/// request goes to (Swift's `S3Request.controller`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    /// Service, location, logging, versioning, tagging, object lock.
    Base,
    Bucket,
    Object,
    S3Acl,
    MultiDelete,
    Part,
    Uploads,
    Upload,
}

fn handler(req: &S3Request) -> Handler {
    if req.bucket.is_none() {
        return Handler::Base;
    }
    if req.has_param("acl") {
        return Handler::S3Acl;
    }
    if req.has_param("delete") {
        return Handler::MultiDelete;
    }
    if req.has_param("location") || req.has_param("logging") {
        return Handler::Base;
    }
    if req.has_param("partNumber") {
        return if req.method == Method::PUT {
            Handler::Part
        } else {
            Handler::Object
        };
    }
    if req.has_param("uploadId") {
        return Handler::Upload;
    }
    if req.has_param("uploads") {
        return Handler::Uploads;
    }
    if ["versioning", "tagging", "object-lock"]
        .iter()
        .any(|p| req.has_param(p))
    {
        return Handler::Base;
    }
    if req.key.is_some() {
        Handler::Object
    } else {
        Handler::Bucket
    }
}

/// s3api's `ACL_MAP`: for the client's method, the Swift method and
/// whether it is on an object, the permission to check and whether it is
/// checked on the object (else on its bucket).
fn acl_map(s3: &Method, swift: &Method, object: bool) -> Option<(bool, Need)> {
    use Permission::*;
    let need = match (s3.as_str(), swift.as_str(), object) {
        ("HEAD", "HEAD", false) => (false, Need::Perm(Read)),
        ("GET", "HEAD", false) => (false, Need::Owner),
        ("GET", "GET", false) => (false, Need::Perm(Read)),
        ("PUT", "HEAD", false) => (false, Need::Perm(Write)),
        ("DELETE", "DELETE", false) => (false, Need::Owner),
        ("HEAD", "HEAD", true) => (true, Need::Perm(Read)),
        ("GET", "GET", true) => (true, Need::Perm(Read)),
        ("PUT", "HEAD", true) => (true, Need::Perm(Read)),
        ("DELETE", "HEAD", false) => (false, Need::Perm(Write)),
        ("DELETE", "DELETE", true) => (false, Need::Perm(Write)),
        ("POST", "HEAD", false) => (false, Need::Perm(Write)),
        ("PUT", "POST", false) => (false, Need::Perm(Write)),
        ("DELETE", "GET", false) => (false, Need::Perm(Write)),
        _ => return None,
    };
    Some(need)
}

/// What the gate does before (or instead of) a Swift request.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Nothing to check.
    Send,
    /// Check `need` on `container` (and `obj`) with a HEAD first.
    Check {
        container: String,
        obj: Option<String>,
        need: Need,
    },
    /// The request is a HEAD of the resource checked: send it, then check
    /// `need` on what it answers.
    Answer(Need),
    /// Bucket creation: the ACL is set after the container is made.
    CreateBucket,
    /// A new object: WRITE on its bucket, and its ACL stored with it.
    CreateObject,
    /// Initiating a multipart upload: WRITE on the bucket, and the ACL
    /// the object will get kept with the upload until it completes.
    CreateUpload,
    /// Completing a multipart upload: the object gets the ACL kept with
    /// the upload.
    CompleteUpload,
}

/// s3api's `BaseAclHandler._handle_acl`: the check `ACL_MAP` gives, and
/// the answer itself when the Swift request is the HEAD checked. An
/// operation the map does not know is left to the bucket's owner.
fn base_plan(req: &S3Request, swift: &Method, container: &str, obj: Option<&str>) -> Plan {
    if container.is_empty() {
        return Plan::Send;
    }
    let object = obj.is_some_and(|o| !o.is_empty());
    match acl_map(&req.method, swift, object) {
        Some((on_object, need)) if *swift == Method::HEAD && on_object == object => {
            Plan::Answer(need)
        }
        Some((on_object, need)) => Plan::Check {
            container: container.to_string(),
            obj: obj.filter(|_| on_object).map(str::to_string),
            need,
        },
        None => Plan::Check {
            container: container.to_string(),
            obj: None,
            need: Need::Owner,
        },
    }
}

/// The checks of s3api's handler classes for one Swift request.
fn plan(req: &S3Request, swift: &Method, container: Option<&str>, obj: Option<&str>) -> Plan {
    let c = container.unwrap_or_default();
    let obj = obj.filter(|o| !o.is_empty());
    let s3 = &req.method;
    let bucket = req.bucket_name();
    match (handler(req), swift.as_str()) {
        (Handler::Bucket, "PUT") if obj.is_none() => Plan::CreateBucket,
        (Handler::Bucket, "DELETE" | "GET")
            if *s3 == Method::DELETE && c.ends_with(MULTIUPLOAD_SUFFIX) =>
        {
            // Clearing the segments of a deleted bucket depends on the
            // bucket's own check.
            Plan::Send
        }
        (Handler::Bucket, "HEAD") if *s3 == Method::DELETE => {
            base_plan(req, &Method::DELETE, c, obj)
        }
        (Handler::Object, "HEAD") if *s3 == Method::DELETE => Plan::Send,
        (Handler::Object, "PUT") => Plan::CreateObject,
        (Handler::S3Acl, "HEAD") => match base_plan(req, swift, c, obj) {
            Plan::Answer(_) => Plan::Answer(Need::Perm(Permission::ReadAcp)),
            _ => Plan::Send,
        },
        (Handler::MultiDelete, "HEAD") if obj.is_some() => Plan::Send,
        (Handler::MultiDelete, "DELETE") => Plan::Send,
        (Handler::Part, "HEAD") => match c.strip_suffix(MULTIUPLOAD_SUFFIX) {
            Some(base) => Plan::Check {
                container: base.to_string(),
                obj: None,
                need: Need::Perm(Permission::Write),
            },
            None => base_plan(req, swift, c, obj),
        },
        (Handler::Part, _) => Plan::Send,
        (Handler::Uploads, "GET") => base_plan(req, swift, bucket, None),
        (Handler::Uploads, "PUT") => Plan::CreateUpload,
        (Handler::Uploads, _) => Plan::Send,
        (Handler::Upload, "HEAD") => {
            let m = if *s3 == Method::GET {
                Method::GET
            } else {
                Method::HEAD
            };
            match base_plan(req, &m, bucket, None) {
                Plan::Answer(need) => Plan::Check {
                    container: bucket.to_string(),
                    obj: None,
                    need,
                },
                p => p,
            }
        }
        (Handler::Upload, "PUT") => Plan::CompleteUpload,
        (Handler::Upload, _) => Plan::Send,
        _ => base_plan(req, swift, c, obj),
    }
}

/// The gate of every controller's Swift request under S3 ACLs (Swift's
/// `S3AclRequest.get_response`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn get_response(
    api: &S3Api,
    req: &S3Request,
    method: Method,
    container: Option<&str>,
    obj: Option<&str>,
    query: Option<&str>,
    mut headers: HeaderMap,
    body: apus_http::Body,
) -> Result<Resp, S3Error> {
    match plan(req, &method, container, obj) {
        Plan::Send => {}
        Plan::Check {
            container: c,
            obj: o,
            need,
        } => {
            let head_headers = if o.is_some() {
                headers.clone()
            } else {
                HeaderMap::new()
            };
            check_with(api, req, &c, o.as_deref(), need, head_headers).await?;
        }
        Plan::Answer(need) => {
            let resp = api
                .get_acl_response(req, method, container, obj, query, headers, body)
                .await?;
            let acl = acl_of(resp.headers(), obj.is_some_and(|o| !o.is_empty()))?;
            require(req, &acl, need)?;
            return Ok(resp);
        }
        Plan::CreateBucket => {
            let owner = Owner::user(&req.user_id);
            let acl = Acl::from_headers(s3_headers(req), &owner, None, true)?.unwrap_or_default();
            if !req.account_owner {
                return Err(S3Error::access_denied("Access Denied."));
            }
            // The container first, so that an existing bucket's ACL is
            // never overwritten; then its ACL.
            api.get_acl_response(req, method, container, obj, query, headers, body)
                .await?;
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_static(model::sysmeta_header(false)),
                header_value(&acl.encode())?,
            );
            return api
                .get_acl_response(
                    req,
                    Method::POST,
                    container,
                    None,
                    None,
                    h,
                    apus_http::empty(),
                )
                .await;
        }
        Plan::CreateObject => {
            let c = container.unwrap_or_default();
            let (name, value) = new_object_acl(api, req, c).await?;
            headers.insert(name, value);
        }
        Plan::CreateUpload => {
            let (_, value) = new_object_acl(api, req, req.bucket_name()).await?;
            // Kept on the upload's marker object, not on the segments
            // container that may be made first.
            if obj.is_some_and(|o| !o.is_empty()) {
                headers.insert(HeaderName::from_static(TMP_ACL), value);
            }
        }
        Plan::CompleteUpload => {
            let marker = format!(
                "{}/{}",
                req.key_name(),
                req.param("uploadId").unwrap_or_default()
            );
            let segments = format!("{}{MULTIUPLOAD_SUFFIX}", req.bucket_name());
            let resp = api
                .get_acl_response(
                    req,
                    Method::HEAD,
                    Some(&segments),
                    Some(&marker),
                    None,
                    HeaderMap::new(),
                    apus_http::empty(),
                )
                .await?;
            if let Some(v) = resp.headers().get(TMP_ACL) {
                headers.insert(
                    HeaderName::from_static(model::sysmeta_header(true)),
                    v.clone(),
                );
            }
        }
    }
    api.get_acl_response(req, method, container, obj, query, headers, body)
        .await
}

/// Where an upload keeps the ACL its object will get.
const TMP_ACL: &str = "x-object-sysmeta-s3api-tmpacl";

/// Checks that the user has `need` on the bucket `container` (`obj`
/// `None`) or on one of its objects, and answers the HEAD that read its
/// ACL: `NoSuchBucket`/`NoSuchKey` when it is missing, `AccessDenied`
/// when the user lacks the permission.
pub(crate) async fn check(
    api: &S3Api,
    req: &S3Request,
    container: &str,
    obj: Option<&str>,
    need: Need,
) -> Result<Resp, S3Error> {
    check_with(api, req, container, obj, need, HeaderMap::new()).await
}

async fn check_with(
    api: &S3Api,
    req: &S3Request,
    container: &str,
    obj: Option<&str>,
    need: Need,
    headers: HeaderMap,
) -> Result<Resp, S3Error> {
    // An object's version is checked as that version.
    let query = match (obj, req.param("versionId")) {
        (Some(_), Some(v)) => Some(format!("version-id={}", quote(v))),
        _ => None,
    };
    let resp = api
        .get_acl_response(
            req,
            Method::HEAD,
            Some(container),
            obj,
            query.as_deref(),
            headers,
            apus_http::empty(),
        )
        .await?;
    let acl = acl_of(resp.headers(), obj.is_some())?;
    require(req, &acl, need)?;
    Ok(resp)
}

/// Whether the user has `need` under `acl`. A bucket or object without
/// an S3 ACL (written through the Swift API) has no S3 owner; Swift would
/// refuse it (`allow_no_owner = false`), but the account's owners reach
/// it through the Swift API anyway, so they reach it through S3 too, and
/// an object written through Swift reads back through S3.
fn require(req: &S3Request, acl: &Acl, need: Need) -> Result<(), S3Error> {
    let user_id = req.user_id.as_str();
    if acl.owner.id.is_none() && req.account_owner {
        return Ok(());
    }
    let ok = match need {
        Need::Owner => acl.is_owner(user_id),
        Need::Perm(p) => acl.allows(user_id, p),
    };
    if ok {
        Ok(())
    } else {
        Err(S3Error::access_denied("Access Denied."))
    }
}

/// The ACL header of an object the user creates in `bucket` (after
/// checking WRITE on the bucket): from the request's `x-amz-acl` or
/// `x-amz-grant-*` headers, else private, with the user as owner.
pub(crate) async fn new_object_acl(
    api: &S3Api,
    req: &S3Request,
    bucket: &str,
) -> Result<(HeaderName, HeaderValue), S3Error> {
    let resp = check(api, req, bucket, None, Need::Perm(Permission::Write)).await?;
    let bucket_acl = acl_of(resp.headers(), false)?;
    let me = Owner::user(&req.user_id);
    let acl =
        Acl::from_headers(s3_headers(req), &bucket_acl.owner, Some(&me), true)?.unwrap_or_default();
    Ok((
        HeaderName::from_static(model::sysmeta_header(true)),
        header_value(&acl.encode())?,
    ))
}

/// Whether the service listing shows the bucket `name` to the user
/// (`check_bucket_owner`): only to its owner.
pub(crate) async fn bucket_listed(
    api: &S3Api,
    req: &S3Request,
    name: &str,
) -> Result<bool, S3Error> {
    if !api.s3_acl {
        return Ok(true);
    }
    match check(api, req, name, None, Need::Owner).await {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.code, ErrorCode::AccessDenied | ErrorCode::NoSuchBucket) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A bucket PUT Swift accepted (202) names an existing container: the
/// user's own unless its ACL says another owner (s3api's
/// `_bucket_put_accepted_error`).
pub(crate) async fn bucket_put_accepted_error(
    api: &S3Api,
    req: &S3Request,
    bucket: &str,
) -> S3Error {
    let path = req.swift_path(Some(bucket), None);
    let owner = match api
        .swift(
            req,
            Method::HEAD,
            &path,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
    {
        Ok(resp) => stored_acl(resp.headers(), false).and_then(|v| {
            serde_json::from_str::<serde_json::Value>(v)
                .ok()
                .and_then(|j| j.get("Owner").and_then(|o| o.as_str()).map(str::to_string))
        }),
        Err(_) => None,
    };
    match owner {
        Some(o) if o != req.user_id => S3Error::bucket_already_exists(bucket),
        _ => S3Error::bucket_already_owned_by_you(bucket),
    }
}

/// The stored ACL value in a Swift answer's headers.
fn stored_acl(headers: &HeaderMap, object: bool) -> Option<&str> {
    header_str(headers, model::sysmeta_header(object))
        .or_else(|| header_str(headers, model::legacy_sysmeta_header(object)))
}

/// The ACL of the bucket or object a Swift answer describes; one without
/// a stored ACL has no owner.
fn acl_of(headers: &HeaderMap, object: bool) -> Result<Acl, S3Error> {
    Acl::decode(stored_acl(headers, object).unwrap_or_default()).map_err(|_| {
        S3Error::with_message(ErrorCode::InternalError, "the stored ACL cannot be read")
    })
}

fn header_value(v: &str) -> Result<HeaderValue, S3Error> {
    HeaderValue::from_str(v).map_err(|_| S3Error::new(ErrorCode::InternalError))
}

/// The client's headers, as text.
fn s3_headers(req: &S3Request) -> impl Iterator<Item = (&str, &str)> {
    req.headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
}

/// `?acl` on a bucket or an object (s3api's `S3AclController`).
pub(super) async fn handle(api: &S3Api, mut req: S3Request) -> Result<Resp, S3Error> {
    let bucket = req.bucket_name().to_string();
    let key = req.key.clone();
    match req.method {
        Method::GET => {
            let resp = check(
                api,
                &req,
                &bucket,
                key.as_deref(),
                Need::Perm(Permission::ReadAcp),
            )
            .await?;
            let acl = acl_of(resp.headers(), key.is_some())?;
            Ok(xml_response(StatusCode::OK, acl.to_xml()))
        }
        Method::PUT => {
            let body = read_acl_body(&mut req).await?;
            match &key {
                None => {
                    let resp =
                        check(api, &req, &bucket, None, Need::Perm(Permission::WriteAcp)).await?;
                    let current = acl_of(resp.headers(), false)?;
                    let acl = requested_acl(&req, body, &current.owner, None)?;
                    // A new ACL never changes the owner.
                    require_same_owner(&current, &acl)?;
                    let mut h = HeaderMap::new();
                    h.insert(
                        HeaderName::from_static(model::sysmeta_header(false)),
                        header_value(&acl.encode())?,
                    );
                    api.get_acl_response(
                        &req,
                        Method::POST,
                        Some(&bucket),
                        None,
                        None,
                        h,
                        apus_http::empty(),
                    )
                    .await?;
                }
                Some(k) => {
                    let b_resp = api
                        .get_acl_response(
                            &req,
                            Method::HEAD,
                            Some(&bucket),
                            None,
                            None,
                            HeaderMap::new(),
                            apus_http::empty(),
                        )
                        .await?;
                    let bucket_acl = acl_of(b_resp.headers(), false)?;
                    let o_resp = check(
                        api,
                        &req,
                        &bucket,
                        Some(k),
                        Need::Perm(Permission::WriteAcp),
                    )
                    .await?;
                    let current = acl_of(o_resp.headers(), true)?;
                    let acl = requested_acl(&req, body, &bucket_acl.owner, Some(&current.owner))?;
                    require_same_owner(&current, &acl)?;
                    // Object sysmeta changes only with a new copy of the
                    // object, so it is copied onto itself.
                    let mut h = HeaderMap::new();
                    h.insert(
                        HeaderName::from_static("x-copy-from"),
                        header_value(&quote(&format!("/{bucket}/{k}")))?,
                    );
                    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
                    h.insert(
                        HeaderName::from_static(model::sysmeta_header(true)),
                        header_value(&acl.encode())?,
                    );
                    api.get_acl_response(
                        &req,
                        Method::PUT,
                        Some(&bucket),
                        Some(k),
                        None,
                        h,
                        apus_http::empty(),
                    )
                    .await?;
                }
            }
            Ok(empty_response(StatusCode::OK))
        }
        _ => Err(S3Error::method_not_allowed(req.method.as_str(), "S3_ACL")),
    }
}

fn require_same_owner(current: &Acl, new: &Acl) -> Result<(), S3Error> {
    match &new.owner.id {
        Some(id) if current.is_owner(id) => Ok(()),
        _ => Err(S3Error::access_denied("Access Denied.")),
    }
}

/// The ACL a PUT `?acl` asks for: from its headers, or else from its
/// `AccessControlPolicy` body, never both (s3api's `get_acl`).
fn requested_acl(
    req: &S3Request,
    body: Option<Bytes>,
    bucket_owner: &Owner,
    object_owner: Option<&Owner>,
) -> Result<Acl, S3Error> {
    match Acl::from_headers(s3_headers(req), bucket_owner, object_owner, false)? {
        Some(_) if body.is_some() => Err(S3Error::new(ErrorCode::UnexpectedContent)),
        Some(acl) => Ok(acl),
        None => {
            let Some(body) = body else {
                return Err(S3Error::new(ErrorCode::MissingSecurityHeader)
                    .detail("MissingHeaderName", "x-amz-acl"));
            };
            let root = apus_s3::xml::parse_skipping_doctype(&body)
                .map_err(|_| S3Error::new(ErrorCode::MalformedACLError))?;
            Acl::from_xml(&root)
        }
    }
}

/// The request's XML body, at most [`MAX_ACL_XML`] bytes (a larger one
/// is `MalformedXML`); `None` when it is empty.
async fn read_acl_body(req: &mut S3Request) -> Result<Option<Bytes>, S3Error> {
    let declared = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_ACL_XML as u64) {
        return Err(S3Error::new(ErrorCode::MalformedXML));
    }
    let body = req.take_body();
    let bytes = match apus_http::body::collect_limited(body, MAX_ACL_XML).await {
        Ok(b) => b,
        Err(e) => {
            if let Some(fault) = req.body_fault.take() {
                return Err(fault);
            }
            if e.kind() == std::io::ErrorKind::InvalidData {
                return Err(S3Error::new(ErrorCode::MalformedXML));
            }
            return Err(S3Error::new(ErrorCode::IncompleteBody));
        }
    };
    Ok((!bytes.is_empty()).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    fn req(method: Method, bucket: Option<&str>, key: Option<&str>, query: &str) -> S3Request {
        S3Request {
            method,
            headers: HeaderMap::new(),
            params: super::super::query_params(Some(query)),
            bucket: bucket.map(str::to_string),
            key: key.map(str::to_string),
            account: "AUTH_test".into(),
            user_id: "test:tester".into(),
            account_owner: true,
            ext: http::Extensions::new(),
            body: None,
            body_fault: Default::default(),
        }
    }

    fn check(c: &str, o: Option<&str>, need: Need) -> Plan {
        Plan::Check {
            container: c.into(),
            obj: o.map(str::to_string),
            need,
        }
    }

    #[test]
    fn the_map_is_s3api_acl_map() {
        let m = |s: Method, w: Method, o| acl_map(&s, &w, o);
        assert_eq!(
            m(Method::HEAD, Method::HEAD, false),
            Some((false, Need::Perm(Read)))
        );
        assert_eq!(
            m(Method::GET, Method::HEAD, false),
            Some((false, Need::Owner))
        );
        assert_eq!(
            m(Method::DELETE, Method::DELETE, false),
            Some((false, Need::Owner))
        );
        assert_eq!(
            m(Method::DELETE, Method::DELETE, true),
            Some((false, Need::Perm(Write)))
        );
        assert_eq!(
            m(Method::PUT, Method::HEAD, true),
            Some((true, Need::Perm(Read)))
        );
        assert_eq!(m(Method::POST, Method::POST, true), None);
    }

    #[test]
    fn objects_are_checked_as_s3api_object_handler() {
        let p = |m: Method, sw: Method| {
            plan(&req(m, Some("b"), Some("k"), ""), &sw, Some("b"), Some("k"))
        };
        assert_eq!(
            p(Method::GET, Method::GET),
            check("b", Some("k"), Need::Perm(Read))
        );
        assert_eq!(
            p(Method::HEAD, Method::HEAD),
            Plan::Answer(Need::Perm(Read))
        );
        assert_eq!(p(Method::PUT, Method::PUT), Plan::CreateObject);
        assert_eq!(
            p(Method::DELETE, Method::DELETE),
            check("b", None, Need::Perm(Write))
        );
        assert_eq!(p(Method::DELETE, Method::HEAD), Plan::Send);
        // What the map does not know is left to the bucket's owner.
        assert_eq!(p(Method::POST, Method::POST), check("b", None, Need::Owner));
        // A copy's source: READ on it, answered by its own HEAD.
        let copy = req(Method::PUT, Some("b"), Some("k"), "");
        assert_eq!(
            plan(&copy, &Method::HEAD, Some("src"), Some("o")),
            Plan::Answer(Need::Perm(Read))
        );
    }

    #[test]
    fn buckets_are_checked_as_s3api_bucket_handler() {
        let p = |m: Method, sw: Method, c: &str, q: &str| {
            plan(&req(m, Some("b"), None, q), &sw, Some(c), None)
        };
        assert_eq!(p(Method::PUT, Method::PUT, "b", ""), Plan::CreateBucket);
        assert_eq!(
            p(Method::HEAD, Method::HEAD, "b", ""),
            Plan::Answer(Need::Perm(Read))
        );
        assert_eq!(
            p(Method::GET, Method::GET, "b", ""),
            check("b", None, Need::Perm(Read))
        );
        assert_eq!(
            p(Method::DELETE, Method::DELETE, "b", ""),
            check("b", None, Need::Owner)
        );
        assert_eq!(
            p(Method::DELETE, Method::HEAD, "b", ""),
            check("b", None, Need::Owner)
        );
        assert_eq!(
            p(Method::DELETE, Method::DELETE, "b+segments", ""),
            Plan::Send
        );
        assert_eq!(p(Method::DELETE, Method::GET, "b+segments", ""), Plan::Send);
        // GetBucketLocation: the owner's only.
        assert_eq!(
            p(Method::GET, Method::HEAD, "b", "location"),
            Plan::Answer(Need::Owner)
        );
        // The service's own account request has nothing to check.
        let service = req(Method::GET, None, None, "");
        assert_eq!(plan(&service, &Method::GET, None, None), Plan::Send);
    }

    #[test]
    fn multipart_and_multi_delete_follow_their_handlers() {
        let md = req(Method::POST, Some("b"), None, "delete");
        assert_eq!(
            plan(&md, &Method::HEAD, Some("b"), None),
            Plan::Answer(Need::Perm(Write))
        );
        assert_eq!(plan(&md, &Method::HEAD, Some("b"), Some("k")), Plan::Send);
        assert_eq!(plan(&md, &Method::DELETE, Some("b"), Some("k")), Plan::Send);
        let init = req(Method::POST, Some("b"), Some("k"), "uploads");
        assert_eq!(
            plan(&init, &Method::PUT, Some("b+segments"), Some("k/id")),
            Plan::CreateUpload
        );
        let list = req(Method::GET, Some("b"), None, "uploads");
        assert_eq!(
            plan(&list, &Method::GET, Some("b+segments"), None),
            check("b", None, Need::Perm(Read))
        );
        let complete = req(Method::POST, Some("b"), Some("k"), "uploadId=id");
        assert_eq!(
            plan(&complete, &Method::HEAD, Some("b+segments"), Some("k/id")),
            check("b", None, Need::Perm(Write))
        );
        assert_eq!(
            plan(&complete, &Method::PUT, Some("b"), Some("k")),
            Plan::CompleteUpload
        );
        let parts = req(Method::GET, Some("b"), Some("k"), "uploadId=id");
        assert_eq!(
            plan(&parts, &Method::HEAD, Some("b+segments"), Some("k/id")),
            check("b", None, Need::Perm(Read))
        );
        let part = req(
            Method::PUT,
            Some("b"),
            Some("k"),
            "partNumber=1&uploadId=id",
        );
        assert_eq!(
            plan(&part, &Method::HEAD, Some("b+segments"), Some("k/id")),
            check("b", None, Need::Perm(Write))
        );
        assert_eq!(
            plan(&part, &Method::PUT, Some("b+segments"), Some("k/id/1")),
            Plan::Send
        );
    }
}
