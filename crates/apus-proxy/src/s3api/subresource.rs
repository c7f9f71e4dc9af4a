//! The bucket sub-resources Swift's s3api answers without keeping any
//! state for them: `logging` (never enabled), `tagging` (never any tags)
//! and `object-lock` (never configured). Their methods and errors are
//! Swift's `LoggingStatusController`, `TaggingController` and
//! `ObjectLockController`.

use apus_s3::{ErrorCode, S3Error};
use http::{HeaderMap, Method, StatusCode};

use super::{xml_response, S3Api, S3Request, XMLNS, XML_DECL};
use crate::service::Resp;

fn not_implemented() -> S3Error {
    S3Error::with_message(
        ErrorCode::NotImplemented,
        "The requested resource is not implemented",
    )
}

/// GetBucketLogging: the bucket must exist, and its status is always
/// "not logging". PutBucketLogging is not implemented. Neither applies
/// to a key.
pub(super) async fn logging(api: &S3Api, req: S3Request) -> Result<Resp, S3Error> {
    let get = match req.method {
        Method::GET => true,
        Method::PUT => false,
        _ => {
            return Err(S3Error::method_not_allowed(
                req.method.as_str(),
                "LOGGING_STATUS",
            ))
        }
    };
    if req.key.is_some() {
        return Err(S3Error::new(ErrorCode::NoLoggingStatusForKey));
    }
    if !get {
        return Err(S3Error::new(ErrorCode::NotImplemented));
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
    let body = format!("{XML_DECL}<BucketLoggingStatus xmlns=\"{XMLNS}\"/>");
    Ok(xml_response(StatusCode::OK, body))
}

/// Get{Bucket,Object}Tagging: an empty tag set, whatever the bucket or
/// key (Swift looks at neither); tags cannot be set or deleted.
pub(super) fn tagging(req: S3Request) -> Result<Resp, S3Error> {
    match req.method {
        Method::GET => {
            let body = format!("{XML_DECL}<Tagging xmlns=\"{XMLNS}\"><TagSet/></Tagging>");
            Ok(xml_response(StatusCode::OK, body))
        }
        Method::PUT | Method::DELETE => Err(not_implemented()),
        _ => Err(S3Error::method_not_allowed(req.method.as_str(), "TAGGING")),
    }
}

/// GetObjectLockConfiguration: no bucket has one (Swift answers so
/// without looking the bucket up); setting one is not implemented.
pub(super) fn object_lock(req: S3Request) -> Result<Resp, S3Error> {
    match req.method {
        Method::GET => Err(
            S3Error::new(ErrorCode::ObjectLockConfigurationNotFoundError)
                .detail("BucketName", req.bucket_name()),
        ),
        Method::PUT => Err(not_implemented()),
        _ => Err(S3Error::method_not_allowed(
            req.method.as_str(),
            "OBJECT_LOCK",
        )),
    }
}
