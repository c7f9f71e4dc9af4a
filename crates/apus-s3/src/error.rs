//! S3's error vocabulary: each code with the HTTP status and default
//! message s3api answers with, and the XML error body S3 clients parse.
//!
//! An [`S3Error`] is a code, a message (the code's default unless a more
//! precise one was given) and the extra elements some codes carry
//! (`BucketName`, `Key`, `StringToSign`, ...), written after `RequestId`
//! in the order they were added.

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;

/// The error codes apus answers S3 requests with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    InvalidURI,
    KeyTooLongError,
    MalformedXML,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    MissingSecurityHeader,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NotImplemented,
    PreconditionFailed,
    RequestTimeTooSkewed,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    BrokenMPU,
    IllegalVersioningConfigurationException,
    InvalidBucketState,
    InvalidChunkSizeError,
    InvalidLocationConstraint,
    InvalidObjectState,
    InvalidPartNumber,
    InvalidStorageClass,
    InvalidTargetBucketForLogging,
    InvalidToken,
    MalformedACLError,
    MalformedTrailerError,
    MaxMessageLengthExceeded,
    MissingRequestBodyError,
    NoLoggingStatusForKey,
    NoSuchLifecycleConfiguration,
    NoSuchVersion,
    ObjectLockConfigurationNotFoundError,
    RequestTimeout,
    TooManyBuckets,
    UnexpectedContent,
    UnresolvableGrantByEmailAddress,
    UserKeyMustBeSpecified,
    XAmzContentSHA256Mismatch,
}

impl ErrorCode {
    /// Every code, for tests and tables.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::AccessDenied,
        ErrorCode::AuthorizationHeaderMalformed,
        ErrorCode::AuthorizationQueryParametersError,
        ErrorCode::BadDigest,
        ErrorCode::BucketAlreadyExists,
        ErrorCode::BucketAlreadyOwnedByYou,
        ErrorCode::BucketNotEmpty,
        ErrorCode::EntityTooLarge,
        ErrorCode::EntityTooSmall,
        ErrorCode::IncompleteBody,
        ErrorCode::InternalError,
        ErrorCode::InvalidAccessKeyId,
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidBucketName,
        ErrorCode::InvalidDigest,
        ErrorCode::InvalidPart,
        ErrorCode::InvalidPartOrder,
        ErrorCode::InvalidRange,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidURI,
        ErrorCode::KeyTooLongError,
        ErrorCode::MalformedXML,
        ErrorCode::MetadataTooLarge,
        ErrorCode::MethodNotAllowed,
        ErrorCode::MissingContentLength,
        ErrorCode::MissingSecurityHeader,
        ErrorCode::NoSuchBucket,
        ErrorCode::NoSuchKey,
        ErrorCode::NoSuchUpload,
        ErrorCode::NotImplemented,
        ErrorCode::PreconditionFailed,
        ErrorCode::RequestTimeTooSkewed,
        ErrorCode::ServiceUnavailable,
        ErrorCode::SignatureDoesNotMatch,
        ErrorCode::SlowDown,
        ErrorCode::BrokenMPU,
        ErrorCode::IllegalVersioningConfigurationException,
        ErrorCode::InvalidBucketState,
        ErrorCode::InvalidChunkSizeError,
        ErrorCode::InvalidLocationConstraint,
        ErrorCode::InvalidObjectState,
        ErrorCode::InvalidPartNumber,
        ErrorCode::InvalidStorageClass,
        ErrorCode::InvalidTargetBucketForLogging,
        ErrorCode::InvalidToken,
        ErrorCode::MalformedACLError,
        ErrorCode::MalformedTrailerError,
        ErrorCode::MaxMessageLengthExceeded,
        ErrorCode::MissingRequestBodyError,
        ErrorCode::NoLoggingStatusForKey,
        ErrorCode::NoSuchLifecycleConfiguration,
        ErrorCode::NoSuchVersion,
        ErrorCode::ObjectLockConfigurationNotFoundError,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyBuckets,
        ErrorCode::UnexpectedContent,
        ErrorCode::UnresolvableGrantByEmailAddress,
        ErrorCode::UserKeyMustBeSpecified,
        ErrorCode::XAmzContentSHA256Mismatch,
    ];

    /// The code as it appears in `<Code>`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            AccessDenied => "AccessDenied",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            BadDigest => "BadDigest",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketNotEmpty => "BucketNotEmpty",
            EntityTooLarge => "EntityTooLarge",
            EntityTooSmall => "EntityTooSmall",
            IncompleteBody => "IncompleteBody",
            InternalError => "InternalError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidArgument => "InvalidArgument",
            InvalidBucketName => "InvalidBucketName",
            InvalidDigest => "InvalidDigest",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidRange => "InvalidRange",
            InvalidRequest => "InvalidRequest",
            InvalidURI => "InvalidURI",
            KeyTooLongError => "KeyTooLongError",
            MalformedXML => "MalformedXML",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            MissingSecurityHeader => "MissingSecurityHeader",
            NoSuchBucket => "NoSuchBucket",
            NoSuchKey => "NoSuchKey",
            NoSuchUpload => "NoSuchUpload",
            NotImplemented => "NotImplemented",
            PreconditionFailed => "PreconditionFailed",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            ServiceUnavailable => "ServiceUnavailable",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            SlowDown => "SlowDown",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            BrokenMPU => "BrokenMPU",
            IllegalVersioningConfigurationException => "IllegalVersioningConfigurationException",
            InvalidBucketState => "InvalidBucketState",
            InvalidChunkSizeError => "InvalidChunkSizeError",
            InvalidLocationConstraint => "InvalidLocationConstraint",
            InvalidObjectState => "InvalidObjectState",
            InvalidPartNumber => "InvalidPartNumber",
            InvalidStorageClass => "InvalidStorageClass",
            InvalidTargetBucketForLogging => "InvalidTargetBucketForLogging",
            InvalidToken => "InvalidToken",
            MalformedACLError => "MalformedACLError",
            MalformedTrailerError => "MalformedTrailerError",
            MaxMessageLengthExceeded => "MaxMessageLengthExceeded",
            MissingRequestBodyError => "MissingRequestBodyError",
            NoLoggingStatusForKey => "NoLoggingStatusForKey",
            NoSuchLifecycleConfiguration => "NoSuchLifecycleConfiguration",
            NoSuchVersion => "NoSuchVersion",
            ObjectLockConfigurationNotFoundError => "ObjectLockConfigurationNotFoundError",
            RequestTimeout => "RequestTimeout",
            TooManyBuckets => "TooManyBuckets",
            UnexpectedContent => "UnexpectedContent",
            UnresolvableGrantByEmailAddress => "UnresolvableGrantByEmailAddress",
            UserKeyMustBeSpecified => "UserKeyMustBeSpecified",
        }
    }

    /// The HTTP status s3api answers the code with.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            AccessDenied | InvalidAccessKeyId | RequestTimeTooSkewed | SignatureDoesNotMatch => {
                StatusCode::FORBIDDEN
            }
            NoSuchBucket | NoSuchKey | NoSuchUpload => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BucketAlreadyExists | BucketAlreadyOwnedByYou | BucketNotEmpty => StatusCode::CONFLICT,
            MissingContentLength => StatusCode::LENGTH_REQUIRED,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ServiceUnavailable | SlowDown => StatusCode::SERVICE_UNAVAILABLE,
            AuthorizationHeaderMalformed
            | AuthorizationQueryParametersError
            | BadDigest
            | EntityTooLarge
            | EntityTooSmall
            | IncompleteBody
            | InvalidArgument
            | InvalidBucketName
            | InvalidDigest
            | InvalidPart
            | InvalidPartOrder
            | InvalidRequest
            | InvalidURI
            | KeyTooLongError
            | MalformedXML
            | MetadataTooLarge
            | MissingSecurityHeader
            | XAmzContentSHA256Mismatch => StatusCode::BAD_REQUEST,
            BrokenMPU => StatusCode::CONFLICT,
            IllegalVersioningConfigurationException => StatusCode::BAD_REQUEST,
            InvalidBucketState => StatusCode::CONFLICT,
            InvalidChunkSizeError => StatusCode::FORBIDDEN,
            InvalidLocationConstraint => StatusCode::BAD_REQUEST,
            InvalidObjectState => StatusCode::FORBIDDEN,
            InvalidPartNumber => StatusCode::RANGE_NOT_SATISFIABLE,
            InvalidStorageClass => StatusCode::BAD_REQUEST,
            InvalidTargetBucketForLogging => StatusCode::BAD_REQUEST,
            InvalidToken => StatusCode::BAD_REQUEST,
            MalformedACLError => StatusCode::BAD_REQUEST,
            MalformedTrailerError => StatusCode::BAD_REQUEST,
            MaxMessageLengthExceeded => StatusCode::BAD_REQUEST,
            MissingRequestBodyError => StatusCode::BAD_REQUEST,
            NoLoggingStatusForKey => StatusCode::BAD_REQUEST,
            NoSuchLifecycleConfiguration => StatusCode::NOT_FOUND,
            NoSuchVersion => StatusCode::NOT_FOUND,
            ObjectLockConfigurationNotFoundError => StatusCode::NOT_FOUND,
            RequestTimeout => StatusCode::BAD_REQUEST,
            TooManyBuckets => StatusCode::BAD_REQUEST,
            UnexpectedContent => StatusCode::BAD_REQUEST,
            UnresolvableGrantByEmailAddress => StatusCode::BAD_REQUEST,
            UserKeyMustBeSpecified => StatusCode::BAD_REQUEST,
        }
    }

    /// The status line's reason phrase: the standard one, except S3's
    /// `503 Slow Down`.
    pub fn reason_phrase(self) -> &'static str {
        match self {
            ErrorCode::SlowDown => "Slow Down",
            other => other.status().canonical_reason().unwrap_or(""),
        }
    }

    /// The message s3api gives when nothing more precise is known.
    pub fn default_message(self) -> &'static str {
        use ErrorCode::*;
        match self {
            AccessDenied => "Access Denied.",
            AuthorizationHeaderMalformed => {
                "The authorization header is malformed; the authorization header requires \
                 three components: Credential, SignedHeaders, and Signature."
            }
            AuthorizationQueryParametersError => "",
            BadDigest => "The Content-MD5 you specified did not match what we received.",
            BucketAlreadyExists => {
                "The requested bucket name is not available. The bucket namespace is shared \
                 by all users of the system. Please select a different name and try again."
            }
            BucketAlreadyOwnedByYou => {
                "Your previous request to create the named bucket succeeded and you already \
                 own it."
            }
            BucketNotEmpty => "The bucket you tried to delete is not empty",
            EntityTooLarge => "Your proposed upload exceeds the maximum allowed object size.",
            EntityTooSmall => {
                "Your proposed upload is smaller than the minimum allowed object size."
            }
            IncompleteBody => {
                "You did not provide the number of bytes specified by the Content-Length \
                 HTTP header"
            }
            InternalError => "We encountered an internal error. Please try again.",
            InvalidAccessKeyId => {
                "The AWS Access Key Id you provided does not exist in our records."
            }
            InvalidArgument => "Invalid Argument.",
            InvalidBucketName => "The specified bucket is not valid.",
            InvalidDigest => "The Content-MD5 you specified was invalid.",
            InvalidPart => {
                "One or more of the specified parts could not be found.  The part may not \
                 have been uploaded, or the specified entity tag may not match the part's \
                 entity tag."
            }
            InvalidPartOrder => {
                "The list of parts was not in ascending order.Parts list must specified in \
                 order by part number."
            }
            InvalidRange => "The requested range cannot be satisfied.",
            InvalidRequest => "Invalid Request.",
            InvalidURI => "Couldn't parse the specified URI.",
            KeyTooLongError => "Your key is too long.",
            MalformedXML => {
                "The XML you provided was not well-formed or did not validate against our \
                 published schema"
            }
            MetadataTooLarge => "Your metadata headers exceed the maximum allowed metadata size.",
            MethodNotAllowed => "The specified method is not allowed against this resource.",
            MissingContentLength => "You must provide the Content-Length HTTP header.",
            MissingSecurityHeader => "Your request was missing a required header.",
            NoSuchBucket => "The specified bucket does not exist.",
            NoSuchKey => "The specified key does not exist.",
            NoSuchUpload => {
                "The specified multipart upload does not exist. The upload ID might be \
                 invalid, or the multipart upload might have been aborted or completed."
            }
            NotImplemented => "Not implemented.",
            PreconditionFailed => "At least one of the preconditions you specified did not hold.",
            RequestTimeTooSkewed => {
                "The difference between the request time and the current time is too large."
            }
            ServiceUnavailable | SlowDown => "Please reduce your request rate.",
            SignatureDoesNotMatch => {
                "The request signature we calculated does not match the signature you \
                 provided. Check your key and signing method."
            }
            XAmzContentSHA256Mismatch => {
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            }
            BrokenMPU => "Multipart upload has broken segment data.",
            IllegalVersioningConfigurationException => "The Versioning configuration specified in the request is invalid.",
            InvalidBucketState => "The request is not valid with the current state of the bucket.",
            InvalidChunkSizeError => "Only the last chunk is allowed to have a size less than 8192 bytes",
            InvalidLocationConstraint => "The specified location constraint is not valid.",
            InvalidObjectState => "The operation is not valid for the current state of the object.",
            InvalidPartNumber => "The requested partnumber is not satisfiable",
            InvalidStorageClass => "The storage class you specified is not valid.",
            InvalidTargetBucketForLogging => "The target bucket for logging does not exist, is not owned by you, or does not have the appropriate grants for the log-delivery group.",
            InvalidToken => "The provided token is malformed or otherwise invalid.",
            MalformedACLError => "The XML you provided was not well-formed or did not validate against our published schema.",
            MalformedTrailerError => "The request contained trailing data that was not well-formed or did not conform to our published schema.",
            MaxMessageLengthExceeded => "Your request was too big.",
            MissingRequestBodyError => "Request body is empty.",
            NoLoggingStatusForKey => "There is no such thing as a logging status sub-resource for a key.",
            NoSuchLifecycleConfiguration => "The lifecycle configuration does not exist. .",
            NoSuchVersion => "The specified version does not exist.",
            ObjectLockConfigurationNotFoundError => "Object Lock configuration does not exist for this bucket",
            RequestTimeout => "Your socket connection to the server was not read from or written to within the timeout period.",
            TooManyBuckets => "You have attempted to create more buckets than allowed.",
            UnexpectedContent => "This request does not support content.",
            UnresolvableGrantByEmailAddress => "The e-mail address you provided does not match any account on record.",
            UserKeyMustBeSpecified => {
                "The bucket POST must contain the specified field name. If it is specified, \
                 please check the order of the fields."
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An S3 error answer: code, message and extra elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// Elements written after `RequestId`, in order: (tag, text).
    pub details: Vec<(&'static str, String)>,
}

impl S3Error {
    /// The code with its default message.
    pub fn new(code: ErrorCode) -> S3Error {
        S3Error {
            code,
            message: Cow::Borrowed(code.default_message()),
            details: Vec::new(),
        }
    }

    /// The code with a more precise message.
    pub fn with_message(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> S3Error {
        S3Error {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds an element after `RequestId`.
    pub fn detail(mut self, tag: &'static str, text: impl Into<String>) -> S3Error {
        self.details.push((tag, text.into()));
        self
    }

    /// The text of the first detail element named `tag`.
    pub fn detail_text(&self, tag: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    pub fn access_denied(message: impl Into<Cow<'static, str>>) -> S3Error {
        S3Error::with_message(ErrorCode::AccessDenied, message)
    }

    /// `InvalidArgument` naming the argument and its value.
    pub fn invalid_argument(name: &str, value: &str) -> S3Error {
        S3Error::new(ErrorCode::InvalidArgument)
            .detail("ArgumentName", name)
            .detail("ArgumentValue", value)
    }

    pub fn no_such_bucket(bucket: &str) -> S3Error {
        S3Error::new(ErrorCode::NoSuchBucket).detail("BucketName", bucket)
    }

    pub fn no_such_key(key: &str) -> S3Error {
        S3Error::new(ErrorCode::NoSuchKey).detail("Key", key)
    }

    pub fn bucket_already_exists(bucket: &str) -> S3Error {
        S3Error::new(ErrorCode::BucketAlreadyExists).detail("BucketName", bucket)
    }

    pub fn bucket_already_owned_by_you(bucket: &str) -> S3Error {
        S3Error::new(ErrorCode::BucketAlreadyOwnedByYou).detail("BucketName", bucket)
    }

    pub fn invalid_bucket_name(bucket: &str) -> S3Error {
        S3Error::new(ErrorCode::InvalidBucketName).detail("BucketName", bucket)
    }

    pub fn method_not_allowed(method: &str, resource_type: &str) -> S3Error {
        S3Error::new(ErrorCode::MethodNotAllowed)
            .detail("Method", method)
            .detail("ResourceType", resource_type)
    }

    pub fn invalid_access_key_id(access_key: &str) -> S3Error {
        S3Error::new(ErrorCode::InvalidAccessKeyId).detail("AWSAccessKeyId", access_key)
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The XML body, with `request_id` (the transaction id) as `RequestId`
    /// when there is one.
    pub fn to_xml(&self, request_id: Option<&str>) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
        element(&mut out, "Code", self.code.as_str());
        element(&mut out, "Message", &self.message);
        if let Some(id) = request_id {
            element(&mut out, "RequestId", id);
        }
        for (tag, text) in &self.details {
            element(&mut out, tag, text);
        }
        out.push_str("</Error>");
        out
    }
}

impl From<ErrorCode> for S3Error {
    fn from(code: ErrorCode) -> S3Error {
        S3Error::new(code)
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for S3Error {}

/// Writes `<tag>text</tag>`; text no XML 1.0 document can hold is
/// replaced whole, as s3api does.
fn element(out: &mut String, tag: &str, text: &str) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    if text.chars().all(xml_char) {
        escape_into(out, text);
    } else {
        out.push_str("(invalid string)");
    }
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// Whether XML 1.0 allows the character in text.
pub fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes text for an XML element (not for attributes: quotes stay).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Quotes stay as they are in text, as lxml writes them and
            // clients compare messages byte for byte.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_name_status_and_message() {
        for &code in ErrorCode::ALL {
            assert_eq!(format!("{code:?}"), code.as_str());
            assert!(code.status().is_client_error() || code.status().is_server_error());
            if code != ErrorCode::AuthorizationQueryParametersError {
                assert!(!code.default_message().is_empty(), "{code}");
            }
        }
        assert_eq!(ErrorCode::SlowDown.reason_phrase(), "Slow Down");
        assert_eq!(ErrorCode::InvalidRange.status().as_u16(), 416);
        assert_eq!(ErrorCode::RequestTimeTooSkewed.status().as_u16(), 403);
    }

    #[test]
    fn body_has_code_message_request_id_then_details() {
        let e = S3Error::no_such_key("a<b>&c\"d'");
        assert_eq!(
            e.to_xml(Some("tx123")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message>\
             <RequestId>tx123</RequestId>\
             <Key>a&lt;b&gt;&amp;c\"d'</Key></Error>"
        );
        let e = S3Error::new(ErrorCode::AccessDenied);
        assert_eq!(
            e.to_xml(None),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
             <Message>Access Denied.</Message></Error>"
        );
    }

    #[test]
    fn text_xml_cannot_hold_is_replaced() {
        let e = S3Error::no_such_key("bad\u{1}key");
        assert!(e.to_xml(None).contains("<Key>(invalid string)</Key>"));
        let e = S3Error::no_such_key("ok\tkey\u{e9}");
        assert!(e.to_xml(None).contains("<Key>ok\tkey\u{e9}</Key>"));
    }

    #[test]
    fn bucket_and_argument_details() {
        let x = S3Error::bucket_already_exists("b").to_xml(None);
        assert!(x.contains("<Code>BucketAlreadyExists</Code>"));
        assert!(x.ends_with("<BucketName>b</BucketName></Error>"));
        let x = S3Error::invalid_argument("X-Amz-Algorithm", "HMAC").to_xml(None);
        assert!(x.ends_with(
            "<ArgumentName>X-Amz-Algorithm</ArgumentName>\
             <ArgumentValue>HMAC</ArgumentValue></Error>"
        ));
        let x = S3Error::method_not_allowed("POST", "OBJECT").to_xml(None);
        assert!(x.contains("<Method>POST</Method><ResourceType>OBJECT</ResourceType>"));
        let x = S3Error::invalid_access_key_id("ak").to_xml(None);
        assert!(x.contains("<AWSAccessKeyId>ak</AWSAccessKeyId>"));
    }
}
