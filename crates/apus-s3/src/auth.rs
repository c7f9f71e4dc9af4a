//! S3 request authentication: AWS Signature Version 4 (an `Authorization`
//! header or a presigned query) and Version 2 (likewise), as s3api
//! accepts them.
//!
//! Authentication is two pure steps. [`AuthRequest::parse`] reads the
//! method, URI and headers into the access key, the provided signature
//! and the exact string the client must have signed, knowing no secret;
//! it refuses what is malformed. [`verify`] then checks the request's time
//! (clock skew, or a presigned URL's expiry) and recomputes the signature
//! with the secret, comparing in constant time. Between the two, the
//! caller finds the secret through a [`CredentialStore`];
//! [`authenticate`] does all three.
//!
//! Times are whole seconds since the Unix epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::request::Parts;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ErrorCode, S3Error};
use crate::wire::{
    collapse_spaces, format_amz_date, hex, latin1, looks_like_sha256, parse_amz_date, parse_date,
    parse_iso_date, parse_query, percent_decode, percent_encode, py_strip, strip_controls, utf8ish,
};

/// The sub-resources a SigV2 canonical resource keeps (s3api's list).
pub const SIGV2_SUB_RESOURCES: &[&str] = &[
    "acl",
    "cors",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "publicAccessBlock",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// Headers with these prefixes must be signed when present (SigV4).
const MUST_BE_SIGNED: &[&str] = &["x-amz-copy", "x-amz-acl", "x-amz-grant", "x-amz-meta"];

/// The longest a presigned SigV4 URL may live: a week.
pub const MAX_PRESIGNED_EXPIRES: i64 = 604_800;

/// A timestamp from this far on is beyond what Swift can represent.
const TIMESTAMP_LIMIT: i64 = 10_000_000_000;

const SERVICE: &str = "s3";
const TERMINAL: &str = "aws4_request";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What authentication needs from s3api's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The region a SigV4 credential scope must name (`location`).
    pub location: String,
    /// How far, in seconds, a signed request's time may be from ours.
    pub allowable_clock_skew: i64,
    /// Domains under which the host names the bucket (virtual-hosted
    /// style); SigV2 signs the bucket as part of the path.
    pub storage_domains: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            location: "us-east-1".to_string(),
            allowable_clock_skew: 15 * 60,
            storage_domains: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    V2,
    V4,
}

/// Where the signature came: the `Authorization` header or the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthForm {
    Header,
    Query,
}

/// What `x-amz-content-sha256` says of the body, for whatever reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadHash {
    /// No `x-amz-content-sha256` (SigV2, or a presigned URL).
    Absent,
    /// `UNSIGNED-PAYLOAD`: the body is not covered.
    Unsigned,
    /// The body's SHA-256 as the client gave it (lower-cased); a body that
    /// does not hash to it is `XAmzContentSHA256Mismatch`.
    Sha256(String),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: aws-chunked, each chunk signed.
    StreamingSigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: the same, with signed
    /// trailers.
    StreamingSignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked, unsigned chunks,
    /// with trailers.
    StreamingUnsignedTrailer,
}

impl PayloadHash {
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            PayloadHash::StreamingSigned
                | PayloadHash::StreamingSignedTrailer
                | PayloadHash::StreamingUnsignedTrailer
        )
    }
}

/// A secret key. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Secret {
        Secret(secret.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Finds the secret of an access key: tempauth's users (access key
/// `account:user`, secret the user's key), later Keystone's EC2
/// credentials.
pub trait CredentialStore {
    fn secret_for(&self, access_key: &str) -> Option<Secret>;
}

/// When a request's time is checked against ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeRule {
    /// Signed at this time: refused when further than the allowed skew.
    Skew { signed_at: i64, allowed: i64 },
    /// A presigned URL valid until this time.
    Expires { at: i64 },
}

/// A SigV4 credential scope: `date/region/s3/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub date: String,
    pub region: String,
}

impl Scope {
    pub fn to_path(&self) -> String {
        format!("{}/{}/{SERVICE}/{TERMINAL}", self.date, self.region)
    }
}

/// A request's authentication, read and canonicalised, before any secret
/// is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub version: SignatureVersion,
    pub form: AuthForm,
    pub access_key: String,
    /// The signature as the client gave it.
    pub signature: String,
    /// What the client must have signed.
    pub string_to_sign: Vec<u8>,
    /// SigV4's canonical request (its hash is in the string to sign).
    pub canonical_request: Option<Vec<u8>>,
    /// SigV4's credential scope, and the `YYYYMMDDTHHMMSSZ` signing time.
    pub scope: Option<Scope>,
    pub amz_date: Option<String>,
    pub payload: PayloadHash,
    /// `x-amz-decoded-content-length` of a streaming (aws-chunked) body.
    pub decoded_content_length: Option<u64>,
    time: TimeRule,
}

/// An authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    pub version: SignatureVersion,
    pub payload: PayloadHash,
    pub decoded_content_length: Option<u64>,
    /// For SigV4, what checks the signatures of an aws-chunked body.
    pub chunk_signer: Option<ChunkSigner>,
}

/// The SigV4 signing key and context that chunk and trailer signatures of
/// a streaming body chain from.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkSigner {
    key: [u8; 32],
    pub amz_date: String,
    pub scope: String,
    /// The request's own signature, which the first chunk's chains from.
    pub seed_signature: String,
}

impl fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSigner")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .field("seed_signature", &self.seed_signature)
            .finish_non_exhaustive()
    }
}

impl ChunkSigner {
    /// The signature of a chunk whose SHA-256 is `chunk_sha256` (hex),
    /// following the chunk (or request) signed `previous`.
    pub fn chunk_signature(&self, previous: &str, chunk_sha256: &str) -> String {
        let sts = self.chunk_string_to_sign(previous, chunk_sha256);
        hex(&hmac_sha256(&self.key, &sts))
    }

    /// What a chunk's signature signs (AWS's `ChunkStringToSign`).
    pub fn chunk_string_to_sign(&self, previous: &str, chunk_sha256: &str) -> Vec<u8> {
        let empty = hex(&Sha256::digest(b""));
        format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{empty}\n{chunk_sha256}",
            self.amz_date, self.scope
        )
        .into_bytes()
    }

    /// Whether `provided` is that signature (constant time).
    pub fn check_chunk(&self, previous: &str, chunk_sha256: &str, provided: &str) -> bool {
        ct_eq(&self.chunk_signature(previous, chunk_sha256), provided)
    }

    /// The signature of a streaming body's trailers, whose canonical form
    /// (`name:value\n`, sorted) hashes to `trailers_sha256`, following the
    /// last chunk's signature `previous`.
    pub fn trailer_signature(&self, previous: &str, trailers_sha256: &str) -> String {
        let sts = self.trailer_string_to_sign(previous, trailers_sha256);
        hex(&hmac_sha256(&self.key, &sts))
    }

    /// What the trailer signature signs.
    pub fn trailer_string_to_sign(&self, previous: &str, trailers_sha256: &str) -> Vec<u8> {
        format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{previous}\n{trailers_sha256}",
            self.amz_date, self.scope
        )
        .into_bytes()
    }

    /// Whether `provided` is that signature (constant time).
    pub fn check_trailer(&self, previous: &str, trailers_sha256: &str, provided: &str) -> bool {
        ct_eq(&self.trailer_signature(previous, trailers_sha256), provided)
    }

    /// A signer with a fixed key, for tests of what consumes signatures.
    #[cfg(test)]
    pub(crate) fn for_tests(seed: &str) -> ChunkSigner {
        ChunkSigner {
            key: [7; 32],
            amz_date: "20261206T000000Z".into(),
            scope: "20261206/us-east-1/s3/aws4_request".into(),
            seed_signature: seed.into(),
        }
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = match Hmac::<Sha1>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 20],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The SigV4 signing key of a secret and scope.
fn signing_key(secret: &[u8], scope: &Scope) -> [u8; 32] {
    let mut k = b"AWS4".to_vec();
    k.extend_from_slice(secret);
    let k = hmac_sha256(&k, scope.date.as_bytes());
    let k = hmac_sha256(&k, scope.region.as_bytes());
    let k = hmac_sha256(&k, SERVICE.as_bytes());
    hmac_sha256(&k, TERMINAL.as_bytes())
}

/// The parts of a request authentication reads.
struct View<'a> {
    parts: &'a Parts,
    /// Query parameters, decoded, the last of repeated names winning.
    params: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl<'a> View<'a> {
    fn new(parts: &'a Parts) -> View<'a> {
        let query = parts.uri.query().unwrap_or("");
        View {
            parts,
            params: parse_query(query.as_bytes()).into_iter().collect(),
        }
    }

    fn param(&self, name: &str) -> Option<&[u8]> {
        self.params.get(name.as_bytes()).map(Vec::as_slice)
    }

    /// A header's value; repeated headers joined with commas.
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        let mut values = self.parts.headers.get_all(name).iter();
        let first = values.next()?;
        let mut out = first.as_bytes().to_vec();
        for v in values {
            out.push(b',');
            out.extend_from_slice(v.as_bytes());
        }
        Some(out)
    }

    fn method(&self) -> &[u8] {
        self.parts.method.as_str().as_bytes()
    }

    fn raw_path(&self) -> &str {
        self.parts.uri.path()
    }
}

fn invalid_date() -> S3Error {
    S3Error::access_denied("AWS authentication requires a valid Date or x-amz-date header")
}

/// A parsed signing time checked as Swift's timestamps are: not before
/// the epoch, and not beyond what it can represent (blamed on skew).
fn checked_time(t: Option<i64>) -> Result<i64, S3Error> {
    match t {
        None => Err(invalid_date()),
        Some(t) if t < 0 => Err(invalid_date()),
        Some(t) if t >= TIMESTAMP_LIMIT => Err(ErrorCode::RequestTimeTooSkewed.into()),
        Some(t) => Ok(t),
    }
}

impl AuthRequest {
    /// Reads a request's S3 authentication. `Ok(None)`: the request
    /// carries none (no `Authorization` header, no signature in the
    /// query), so it is not an S3 request.
    pub fn parse(parts: &Parts, config: &AuthConfig) -> Result<Option<AuthRequest>, S3Error> {
        let view = View::new(parts);
        let authorization = view.header("authorization");
        let v4 = view.param("X-Amz-Credential").is_some()
            || authorization
                .as_deref()
                .is_some_and(|a| a.starts_with(b"AWS4-HMAC-SHA256 "));
        if v4 {
            if view.param("X-Amz-Credential").is_some() {
                parse_v4_query(&view, config).map(Some)
            } else if let Some(auth) = authorization {
                parse_v4_header(&view, config, &auth).map(Some)
            } else {
                Ok(None)
            }
        } else if view.param("AWSAccessKeyId").is_some() {
            parse_v2_query(&view, config).map(Some)
        } else if let Some(auth) = authorization {
            parse_v2_header(&view, config, &auth).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Checks the request's time: within the allowed skew of `now`, or a
    /// presigned URL not yet expired.
    pub fn check_time(&self, now: i64) -> Result<(), S3Error> {
        match self.time {
            TimeRule::Skew { signed_at, allowed } => {
                if (signed_at - now).abs() > allowed {
                    return Err(ErrorCode::RequestTimeTooSkewed.into());
                }
            }
            TimeRule::Expires { at } => {
                if at < now {
                    return Err(S3Error::access_denied("Request has expired"));
                }
            }
        }
        Ok(())
    }

    /// The signature the request should carry if signed with `secret`.
    pub fn expected_signature(&self, secret: &Secret) -> String {
        match (&self.version, &self.scope) {
            (SignatureVersion::V4, Some(scope)) => hex(&hmac_sha256(
                &signing_key(secret.as_bytes(), scope),
                &self.string_to_sign,
            )),
            _ => base64::engine::general_purpose::STANDARD
                .encode(hmac_sha1(secret.as_bytes(), &self.string_to_sign)),
        }
    }

    /// `SignatureDoesNotMatch`, with what s3api shows the client to help
    /// it find its mistake.
    pub fn signature_does_not_match(&self) -> S3Error {
        let bytes = |b: &[u8]| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut e = S3Error::new(ErrorCode::SignatureDoesNotMatch)
            .detail("AWSAccessKeyId", self.access_key.clone())
            .detail("StringToSign", utf8ish(&self.string_to_sign))
            .detail("SignatureProvided", self.signature.clone())
            .detail("StringToSignBytes", bytes(&self.string_to_sign));
        if let Some(cr) = &self.canonical_request {
            e = e
                .detail("CanonicalRequest", utf8ish(cr))
                .detail("CanonicalRequestBytes", bytes(cr));
        }
        e
    }
}

/// Checks a parsed request's time and signature against `secret`.
pub fn verify(req: &AuthRequest, secret: &Secret, now: i64) -> Result<Verified, S3Error> {
    req.check_time(now)?;
    if !ct_eq(&req.expected_signature(secret), &req.signature) {
        return Err(req.signature_does_not_match());
    }
    let chunk_signer = match (&req.version, &req.scope, &req.amz_date) {
        (SignatureVersion::V4, Some(scope), Some(amz_date)) => Some(ChunkSigner {
            key: signing_key(secret.as_bytes(), scope),
            amz_date: amz_date.clone(),
            scope: scope.to_path(),
            seed_signature: req.signature.clone(),
        }),
        _ => None,
    };
    Ok(Verified {
        access_key: req.access_key.clone(),
        version: req.version,
        payload: req.payload.clone(),
        decoded_content_length: req.decoded_content_length,
        chunk_signer,
    })
}

/// Parses, finds the secret and verifies. `Ok(None)`: not an S3 request.
/// An access key the store does not know is `InvalidAccessKeyId`.
pub fn authenticate(
    parts: &Parts,
    config: &AuthConfig,
    store: &dyn CredentialStore,
    now: i64,
) -> Result<Option<Verified>, S3Error> {
    let Some(req) = AuthRequest::parse(parts, config)? else {
        return Ok(None);
    };
    req.check_time(now)?;
    let Some(secret) = store.secret_for(&req.access_key) else {
        return Err(S3Error::invalid_access_key_id(&req.access_key));
    };
    verify(&req, &secret, now).map(Some)
}

// ---------------------------------------------------------------- SigV4

/// The SigV4 signing time: `X-Amz-Date` (query for a presigned URL, else
/// header), else `Date`.
fn v4_signing_time(view: &View<'_>, query: bool) -> Result<i64, S3Error> {
    let t = if let (true, Some(d)) = (query, view.param("X-Amz-Date")) {
        parse_date(d, parse_amz_date)
    } else {
        match view.header("x-amz-date").filter(|d| !d.is_empty()) {
            Some(d) => parse_date(&d, parse_amz_date),
            None => match view.header("date") {
                Some(d) => parse_date(&d, parse_iso_date),
                None => None,
            },
        }
    };
    checked_time(t)
}

/// `X-Amz-Credential` or `Credential=`: `AK/date/region/service/terminal`.
struct Credential {
    access: String,
    date: String,
    region: String,
    service: String,
    terminal: String,
}

fn parse_credential(text: &str) -> Result<Credential, S3Error> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [access, date, region, service, terminal] if !access.is_empty() => Ok(Credential {
            access: access.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            terminal: terminal.to_string(),
        }),
        _ => Err(S3Error::new(ErrorCode::AccessDenied)),
    }
}

/// Checks a credential's scope against ours; the region may be given in
/// lower case when ours is not (some SDKs lower-case it), and the scope
/// then takes the client's spelling.
fn check_scope(
    cred: &Credential,
    signed_at: i64,
    config: &AuthConfig,
    query: bool,
) -> Result<Scope, S3Error> {
    let date = format_amz_date(signed_at)[..8].to_string();
    let (code, what) = if query {
        (
            ErrorCode::AuthorizationQueryParametersError,
            "Error parsing the X-Amz-Credential parameter;",
        )
    } else {
        (
            ErrorCode::AuthorizationHeaderMalformed,
            "The authorization header is malformed;",
        )
    };
    if cred.date != date {
        return Err(S3Error::with_message(
            code,
            format!(
                "Invalid credential date \"{}\". This date is not the same as X-Amz-Date: \"{date}\".",
                cred.date
            ),
        ));
    }
    let mut region = config.location.clone();
    if cred.region != region {
        let lower = region.to_lowercase();
        if region != lower && cred.region == lower {
            region = lower;
        } else {
            return Err(S3Error::with_message(
                code,
                format!(
                    "{what} the region '{}' is wrong; expecting '{region}'",
                    cred.region
                ),
            )
            .detail("Region", region));
        }
    }
    if cred.service != SERVICE {
        return Err(S3Error::with_message(
            code,
            format!(
                "{what} incorrect service \"{}\". This endpoint belongs to \"{SERVICE}\".",
                cred.service
            ),
        ));
    }
    if cred.terminal != TERMINAL {
        return Err(S3Error::with_message(
            code,
            format!(
                "{what} incorrect terminal \"{}\". This endpoint uses \"{TERMINAL}\".",
                cred.terminal
            ),
        ));
    }
    Ok(Scope { date, region })
}

/// Python's `int()` of a decimal string: `None` when it is not one.
fn py_int(v: &[u8]) -> Option<i128> {
    let s = py_strip(v);
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.first() == Some(&b'_')
        || digits.last() == Some(&b'_')
        || digits.windows(2).any(|w| w == b"__")
        || !digits.iter().all(|&b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let mut n: i128 = 0;
    for &b in digits.iter().filter(|&&b| b != b'_') {
        // Anything past 2**63 is refused the same way: stop growing.
        n = (n * 10 + i128::from(b - b'0')).min(1 << 70);
    }
    Some(if neg { -n } else { n })
}

/// `x-amz-content-sha256` and, for streaming bodies,
/// `x-amz-decoded-content-length`.
fn payload_hash(
    view: &View<'_>,
    required: bool,
    v4_header: bool,
) -> Result<(PayloadHash, Option<u64>), S3Error> {
    let Some(value) = view
        .header("x-amz-content-sha256")
        .filter(|v| !v.is_empty())
    else {
        if required {
            return Err(S3Error::with_message(
                ErrorCode::InvalidRequest,
                "Missing required header for this request: x-amz-content-sha256",
            ));
        }
        return Ok((PayloadHash::Absent, None));
    };
    let streaming = match value.as_slice() {
        b"UNSIGNED-PAYLOAD" => return Ok((PayloadHash::Unsigned, None)),
        b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Some(PayloadHash::StreamingSigned),
        b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Some(PayloadHash::StreamingSignedTrailer),
        b"STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Some(PayloadHash::StreamingUnsignedTrailer),
        b"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
        | b"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER" => None,
        _ => {
            if !looks_like_sha256(&value) && required {
                return Err(S3Error::with_message(
                    ErrorCode::InvalidArgument,
                    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, \
                     STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, \
                     STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
                )
                .detail("ArgumentName", "x-amz-content-sha256")
                .detail("ArgumentValue", latin1(&value)));
            }
            return Ok((PayloadHash::Sha256(latin1(&value).to_lowercase()), None));
        }
    };
    let decoded = view
        .header("x-amz-decoded-content-length")
        .and_then(|v| py_int(&v));
    let decoded = match decoded {
        None => return Err(ErrorCode::MissingContentLength.into()),
        Some(n) if n < 0 => {
            return Err(S3Error::invalid_argument(
                "x-amz-decoded-content-length",
                &n.to_string(),
            ))
        }
        Some(n) => u64::try_from(n).unwrap_or(u64::MAX),
    };
    match streaming {
        // An aws-chunked body is only understood under a SigV4 header,
        // whose signature the chunks chain from.
        Some(mode) if v4_header => Ok((mode, Some(decoded))),
        Some(_) => Err(S3Error::new(ErrorCode::XAmzContentSHA256Mismatch)
            .detail("ClientComputedContentSHA256", latin1(&value))),
        None => Err(S3Error::with_message(
            ErrorCode::NotImplemented,
            format!("Don't know how to validate {} streams", latin1(&value)),
        )),
    }
}

/// The SigV4 canonical request and the names of the headers signed.
fn canonical_request(
    view: &View<'_>,
    signed: &BTreeSet<String>,
    payload_line: &[u8],
) -> Result<Vec<u8>, S3Error> {
    // Header values, canonicalised, repeated ones joined by commas.
    let mut headers: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, value) in view.parts.headers.iter() {
        let v = collapse_spaces(value.as_bytes());
        headers
            .entry(name.as_str().to_string())
            .and_modify(|e| {
                e.push(b',');
                e.extend_from_slice(&v);
            })
            .or_insert(v);
    }
    for name in headers.keys() {
        if !signed.contains(name) && MUST_BE_SIGNED.iter().any(|p| name.starts_with(p)) {
            return Err(S3Error::access_denied(
                "There were headers present in the request which were not signed",
            )
            .detail("HeadersNotSigned", name.clone()));
        }
    }
    // Boto before 2.9.3 signed the host without its port.
    if headers.get("user-agent").is_some_and(|ua| old_boto(ua)) {
        if let Some(host) = headers.get_mut("host") {
            if let Some(i) = host.iter().position(|&b| b == b':') {
                host.truncate(i);
            }
        }
    }
    let to_sign: Vec<(&String, &Vec<u8>)> = headers
        .iter()
        .filter(|(k, _)| signed.contains(*k))
        .collect();
    if to_sign.len() != signed.len() {
        // A signed header the request lacks: S3 answers this way.
        return Err(ErrorCode::SignatureDoesNotMatch.into());
    }

    let mut cr = Vec::with_capacity(512);
    cr.extend_from_slice(view.method());
    cr.push(b'\n');
    percent_encode(
        &percent_decode(view.raw_path().as_bytes(), false),
        b"/",
        &mut cr,
    );
    cr.push(b'\n');
    let mut first = true;
    for (k, v) in &view.params {
        if k == b"Signature" || k == b"X-Amz-Signature" {
            continue;
        }
        if !first {
            cr.push(b'&');
        }
        first = false;
        percent_encode(k, b"", &mut cr);
        cr.push(b'=');
        percent_encode(v, b"", &mut cr);
    }
    cr.push(b'\n');
    for (k, v) in &to_sign {
        cr.extend_from_slice(k.as_bytes());
        cr.push(b':');
        cr.extend_from_slice(v);
        cr.push(b'\n');
    }
    cr.push(b'\n');
    let names: Vec<&str> = to_sign.iter().map(|(k, _)| k.as_str()).collect();
    cr.extend_from_slice(names.join(";").as_bytes());
    cr.push(b'\n');
    cr.extend_from_slice(payload_line);
    Ok(cr)
}

/// `Boto/2.x.[0-2]` at the start of the user agent (any character
/// between), as s3api matches it.
fn old_boto(ua: &[u8]) -> bool {
    ua.len() >= 10
        && ua.starts_with(b"Boto/2")
        && ua[7].is_ascii_digit()
        && matches!(ua[9], b'0'..=b'2')
}

fn v4_string_to_sign(amz_date: &str, scope: &Scope, canonical: &[u8]) -> Vec<u8> {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.to_path(),
        hex(&Sha256::digest(canonical))
    )
    .into_bytes()
}

// The header and query forms each read these differently; passing them
// one by one keeps the two readers plain.
#[allow(clippy::too_many_arguments)]
fn finish_v4(
    view: &View<'_>,
    form: AuthForm,
    cred: Credential,
    signature: String,
    signed_headers: &str,
    signed_at: i64,
    scope: Scope,
    time: TimeRule,
) -> Result<AuthRequest, S3Error> {
    let header_form = form == AuthForm::Header;
    let (payload, decoded_content_length) = payload_hash(view, header_form, header_form)?;
    let signed: BTreeSet<String> = signed_headers.split(';').map(str::to_string).collect();
    let payload_line = view
        .header("x-amz-content-sha256")
        .unwrap_or_else(|| UNSIGNED_PAYLOAD.as_bytes().to_vec());
    let cr = canonical_request(view, &signed, &payload_line)?;
    let amz_date = format_amz_date(signed_at);
    Ok(AuthRequest {
        version: SignatureVersion::V4,
        form,
        access_key: cred.access,
        signature,
        string_to_sign: v4_string_to_sign(&amz_date, &scope, &cr),
        canonical_request: Some(cr),
        scope: Some(scope),
        amz_date: Some(amz_date),
        payload,
        decoded_content_length,
        time,
    })
}

fn parse_v4_header(
    view: &View<'_>,
    config: &AuthConfig,
    auth: &[u8],
) -> Result<AuthRequest, S3Error> {
    let date_given = |name| view.header(name).is_some_and(|v| !v.is_empty());
    if !date_given("date") && !date_given("x-amz-date") {
        return Err(invalid_date());
    }
    let signed_at = v4_signing_time(view, false)?;

    let auth = utf8ish(auth);
    let after = |key: &str| -> String {
        auth.split_once(key)
            .map(|(_, rest)| rest.split(',').next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let cred = parse_credential(&after("Credential="))?;
    let signature = after("Signature=");
    if signature.is_empty() {
        return Err(ErrorCode::AccessDenied.into());
    }
    let signed_headers = after("SignedHeaders=");
    if signed_headers.is_empty() {
        return Err(ErrorCode::AuthorizationHeaderMalformed.into());
    }
    let scope = check_scope(&cred, signed_at, config, false)?;
    let time = TimeRule::Skew {
        signed_at,
        allowed: config.allowable_clock_skew,
    };
    finish_v4(
        view,
        AuthForm::Header,
        cred,
        signature,
        &signed_headers,
        signed_at,
        scope,
        time,
    )
}

fn parse_v4_query(view: &View<'_>, config: &AuthConfig) -> Result<AuthRequest, S3Error> {
    let signed_at = v4_signing_time(view, true)?;
    let expires = match view.param("X-Amz-Expires") {
        None => return Err(ErrorCode::AccessDenied.into()),
        Some(v) => v,
    };
    let bad = |msg: &'static str| {
        S3Error::with_message(ErrorCode::AuthorizationQueryParametersError, msg)
    };
    let expires = match py_int(expires) {
        None => return Err(bad("X-Amz-Expires should be a number")),
        Some(n) if n < 0 => return Err(bad("X-Amz-Expires must be non-negative")),
        Some(n) if n >= 1 << 63 => return Err(bad("X-Amz-Expires should be a number")),
        Some(n) if n > i128::from(MAX_PRESIGNED_EXPIRES) => {
            return Err(bad(
                "X-Amz-Expires must be less than a week (in seconds); that is, the given \
                 X-Amz-Expires must be less than 604800 seconds",
            ))
        }
        Some(n) => n as i64,
    };

    let algorithm = view.param("X-Amz-Algorithm");
    if algorithm != Some(ALGORITHM.as_bytes()) {
        return Err(S3Error::invalid_argument(
            "X-Amz-Algorithm",
            &algorithm.map(utf8ish).unwrap_or_default(),
        ));
    }
    let cred = parse_credential(
        &view
            .param("X-Amz-Credential")
            .map(utf8ish)
            .unwrap_or_default(),
    )?;
    let signature = match view.param("X-Amz-Signature") {
        Some(s) if !s.is_empty() => utf8ish(s),
        _ => return Err(ErrorCode::AccessDenied.into()),
    };
    let Some(signed_headers) = view.param("X-Amz-SignedHeaders").map(utf8ish) else {
        return Err(ErrorCode::AuthorizationHeaderMalformed.into());
    };
    let scope = check_scope(&cred, signed_at, config, true)?;
    let time = TimeRule::Expires {
        at: signed_at + expires,
    };
    finish_v4(
        view,
        AuthForm::Query,
        cred,
        signature,
        &signed_headers,
        signed_at,
        scope,
        time,
    )
}

// ---------------------------------------------------------------- SigV2

/// The bucket a virtual-hosted request names in its `Host`, if the host
/// is under one of `config`'s storage domains (Swift's `parse_host`).
pub fn host_bucket(parts: &Parts, config: &AuthConfig) -> Option<String> {
    bucket_in_host(&View::new(parts), config)
}

/// The bucket a virtual-hosted request names in its host, if the host is
/// under one of the storage domains.
fn bucket_in_host(view: &View<'_>, config: &AuthConfig) -> Option<String> {
    let host = view
        .header("host")
        .map(|h| latin1(&h))
        .or_else(|| view.parts.uri.authority().map(|a| a.as_str().to_string()))?;
    let host = match host.rsplit_once(':') {
        Some((name, _)) => name.to_string(),
        None => host,
    };
    config.storage_domains.iter().find_map(|domain| {
        let domain = if domain.starts_with('.') {
            domain.clone()
        } else {
            format!(".{domain}")
        };
        host.strip_suffix(domain.as_str()).map(str::to_string)
    })
}

/// The SigV2 string to sign. `date_line` is the `Date` line: the header
/// form's date (empty when `x-amz-date` is given) or the query's
/// `Expires`; `None` leaves the line out.
fn v2_string_to_sign(view: &View<'_>, config: &AuthConfig, date_line: Option<Vec<u8>>) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = vec![view.method().to_vec()];
    for name in ["content-md5", "content-type"] {
        lines.push(
            view.header(name)
                .map(|v| strip_controls(&v).to_vec())
                .unwrap_or_default(),
        );
    }
    let mut amz: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (name, value) in view.parts.headers.iter() {
        if !name.as_str().starts_with("x-amz-") {
            continue;
        }
        let v = py_strip(value.as_bytes());
        amz.entry(name.as_str().as_bytes().to_vec())
            .and_modify(|e| {
                e.push(b',');
                e.extend_from_slice(v);
            })
            .or_insert_with(|| v.to_vec());
    }
    if let Some(line) = date_line {
        lines.push(line);
    }
    for (k, v) in &amz {
        let mut line = k.clone();
        line.push(b':');
        line.extend_from_slice(v);
        lines.push(line);
    }
    let mut resource = Vec::new();
    if let Some(bucket) = bucket_in_host(view, config) {
        resource.push(b'/');
        resource.extend_from_slice(bucket.as_bytes());
    }
    resource.extend_from_slice(view.raw_path().as_bytes());
    let subs: Vec<Vec<u8>> = view
        .params
        .iter()
        .filter(|(k, _)| {
            SIGV2_SUB_RESOURCES
                .iter()
                .any(|s| s.as_bytes() == k.as_slice())
        })
        .map(|(k, v)| {
            let mut s = k.clone();
            if !v.is_empty() {
                s.push(b'=');
                s.extend_from_slice(v);
            }
            s
        })
        .collect();
    if !subs.is_empty() {
        resource.push(b'?');
        resource.extend_from_slice(&subs.join(&b'&'));
    }
    lines.push(resource);
    lines.join(&b'\n')
}

fn parse_v2_header(
    view: &View<'_>,
    config: &AuthConfig,
    auth: &[u8],
) -> Result<AuthRequest, S3Error> {
    let date = view.header("date");
    let amz_date = view.header("x-amz-date");
    let blank = |d: &Option<Vec<u8>>| !matches!(d, Some(d) if !d.is_empty());
    if blank(&date) && blank(&amz_date) {
        return Err(invalid_date());
    }
    let signed_at = match amz_date.as_ref().or(date.as_ref()) {
        Some(d) => checked_time(parse_date(d, parse_iso_date))?,
        None => return Err(invalid_date()),
    };

    let auth = utf8ish(auth);
    let Some(rest) = auth.strip_prefix("AWS ") else {
        return Err(ErrorCode::AccessDenied.into());
    };
    let Some((access, signature)) = rest.rsplit_once(':') else {
        return Err(ErrorCode::AccessDenied.into());
    };
    let date_line = if amz_date.is_some() {
        Some(Vec::new())
    } else {
        date
    };
    Ok(AuthRequest {
        version: SignatureVersion::V2,
        form: AuthForm::Header,
        access_key: access.to_string(),
        signature: signature.to_string(),
        string_to_sign: v2_string_to_sign(view, config, date_line),
        canonical_request: None,
        scope: None,
        amz_date: None,
        payload: payload_hash(view, false, false)?.0,
        decoded_content_length: None,
        time: TimeRule::Skew {
            signed_at,
            allowed: config.allowable_clock_skew,
        },
    })
}

fn parse_v2_query(view: &View<'_>, config: &AuthConfig) -> Result<AuthRequest, S3Error> {
    let expires_text = view.param("Expires").unwrap_or_default();
    let expires = std::str::from_utf8(py_strip(expires_text))
        .ok()
        .and_then(|s| s.replace('_', "").parse::<f64>().ok())
        .filter(|e| e.is_finite() && *e >= 0.0 && *e < TIMESTAMP_LIMIT as f64);
    let Some(expires) = expires else {
        return Err(ErrorCode::AccessDenied.into());
    };
    if expires >= 2f64.powi(31) {
        return Err(S3Error::access_denied(format!(
            "Invalid date (should be seconds since epoch): {}",
            utf8ish(expires_text)
        )));
    }
    let access = view
        .param("AWSAccessKeyId")
        .map(utf8ish)
        .unwrap_or_default();
    let signature = view.param("Signature").map(utf8ish).unwrap_or_default();
    if access.is_empty() || signature.is_empty() || expires_text.is_empty() {
        return Err(ErrorCode::AccessDenied.into());
    }
    Ok(AuthRequest {
        version: SignatureVersion::V2,
        form: AuthForm::Query,
        access_key: access,
        signature,
        string_to_sign: v2_string_to_sign(view, config, Some(expires_text.to_vec())),
        canonical_request: None,
        scope: None,
        amz_date: None,
        payload: payload_hash(view, false, false)?.0,
        decoded_content_length: None,
        // Expired once now is past it: a whole-second `now` is past a
        // fractional expiry from the next second on.
        time: TimeRule::Expires {
            at: expires.floor() as i64,
        },
    })
}
