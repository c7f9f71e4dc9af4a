//! What an S3 request's body must prove, and the decoder that checks it
//! as the body streams (Swift s3api's `HashingInput`, `StreamingInput`,
//! `ChunkReader` and `ChecksummingInput`).
//!
//! [`plan`] reads the request's headers once, before its signature is
//! checked, as Swift's `S3Request.__init__` does: Content-MD5, the
//! unsupported-feature headers, `x-amz-checksum-*` and `x-amz-trailer`.
//! [`S3Input`] is then fed the raw body bytes (sans I/O, so it can be
//! fuzzed) and gives back the payload: an aws-chunked body is decoded
//! with each chunk's signature and the trailers verified, a signed payload
//! hash is compared when the last byte arrives, and an `x-amz-checksum-*`
//! value (from a header or a trailer) is compared the same way. The
//! caller must not let the last payload bytes reach storage until
//! [`S3Input::is_complete`] says every check passed.

use std::collections::BTreeSet;

use base64::Engine;
use crc::{Crc, Table};
use http::request::Parts;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::auth::{AuthRequest, ChunkSigner, PayloadHash};
use crate::error::{ErrorCode, S3Error};
use crate::wire::hex;

/// AWS refuses a non-final chunk smaller than this.
const MIN_CHUNK_SIZE: u64 = 8192;
/// The longest chunk-header or trailer line read; a chunk header is a hex
/// size and a 64-character signature.
const MAX_LINE: usize = 4096;
/// At most this many trailer lines are read.
const MAX_TRAILERS: usize = 16;

static CRC32: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&crc::CRC_32_ISO_HDLC);
static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&crc::CRC_32_ISCSI);
static CRC64NVME: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&crc::CRC_64_NVME);

/// The algorithms of the `x-amz-checksum-*` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// The lower-case name (`crc32`), as in `x-amz-checksum-crc32` and
    /// `x-amz-sdk-checksum-algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "crc32",
            ChecksumAlgorithm::Crc32c => "crc32c",
            ChecksumAlgorithm::Crc64Nvme => "crc64nvme",
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha256 => "sha256",
        }
    }

    pub fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name())
    }

    /// The algorithm an `x-amz-checksum-<name>` header names.
    pub fn from_header(header: &str) -> Option<ChecksumAlgorithm> {
        let name = header.strip_prefix("x-amz-checksum-")?;
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn digest_size(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    pub fn hasher(self) -> Checksummer {
        match self {
            ChecksumAlgorithm::Crc32 => Checksummer::Crc32(CRC32.digest()),
            ChecksumAlgorithm::Crc32c => Checksummer::Crc32c(CRC32C.digest()),
            ChecksumAlgorithm::Crc64Nvme => Checksummer::Crc64(CRC64NVME.digest()),
            ChecksumAlgorithm::Sha1 => Checksummer::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => Checksummer::Sha256(Sha256::new()),
        }
    }

    /// The raw digest a base64 checksum value holds, when it is canonical
    /// base64 of exactly this algorithm's size (Swift's
    /// `strict_b64decode(exact_size=...)`).
    pub fn decode_value(self, b64: &str) -> Option<Vec<u8>> {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        (raw.len() == self.digest_size()
            && base64::engine::general_purpose::STANDARD.encode(&raw) == b64)
            .then_some(raw)
    }
}

/// A running checksum of one algorithm.
pub enum Checksummer {
    Crc32(crc::Digest<'static, u32, Table<16>>),
    Crc32c(crc::Digest<'static, u32, Table<16>>),
    Crc64(crc::Digest<'static, u64, Table<16>>),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Checksummer {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Checksummer::Crc32(d) | Checksummer::Crc32c(d) => d.update(data),
            Checksummer::Crc64(d) => d.update(data),
            Checksummer::Sha1(h) => h.update(data),
            Checksummer::Sha256(h) => h.update(data),
        }
    }

    /// The digest, big-endian for the CRCs, as S3 encodes them.
    pub fn finalize(self) -> Vec<u8> {
        match self {
            Checksummer::Crc32(d) | Checksummer::Crc32c(d) => d.finalize().to_be_bytes().to_vec(),
            Checksummer::Crc64(d) => d.finalize().to_be_bytes().to_vec(),
            Checksummer::Sha1(h) => h.finalize().to_vec(),
            Checksummer::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// Where the expected checksum comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumSource {
    /// An `x-amz-checksum-*` header: the decoded digest.
    Header(Vec<u8>),
    /// A trailer of an aws-chunked body, declared by `x-amz-trailer`.
    Trailer(String),
}

/// What a request's body must prove, read from its headers.
#[derive(Debug, Clone, Default)]
pub struct InputPlan {
    /// The payload's length: `x-amz-decoded-content-length` of an
    /// aws-chunked body, else `Content-Length`.
    pub payload_length: Option<u64>,
    /// The body is aws-chunked: the trailers to expect, and whether its
    /// chunks are signed.
    pub streaming: Option<StreamingPlan>,
    /// The signed SHA-256 (hex) of a plain body.
    pub sha256: Option<String>,
    /// The checksum to verify.
    pub checksum: Option<(ChecksumAlgorithm, ChecksumSource)>,
    /// Content-MD5 as hex (Swift sends it on as the ETag to check).
    pub content_md5_hex: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingPlan {
    pub trailers: BTreeSet<String>,
    pub signed: bool,
}

impl InputPlan {
    /// Whether the body needs [`S3Input`] at all.
    pub fn needs_input(&self) -> bool {
        self.payload_length.is_some()
            && (self.streaming.is_some() || self.sha256.is_some() || self.checksum.is_some())
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header value with leading and trailing control characters and spaces
/// removed; `None` when nothing is left (Swift's `_header_strip`).
fn header_strip(v: Option<&str>) -> Option<&str> {
    let v = v?.trim_matches(|c: char| c <= ' ');
    (!v.is_empty()).then_some(v)
}

fn invalid_request(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(ErrorCode::InvalidRequest, msg.into())
}

fn not_implemented(msg: &'static str) -> S3Error {
    S3Error::with_message(ErrorCode::NotImplemented, msg)
}

/// Reads what the body must prove from the request's headers, refusing
/// what Swift's `S3Request` refuses before the signature is checked.
/// `multi_delete` says the request is a multi-object delete (`POST
/// ?delete`), whose body checksum is verified like a PUT's.
pub fn plan(parts: &Parts, auth: &AuthRequest, multi_delete: bool) -> Result<InputPlan, S3Error> {
    let mut plan = InputPlan::default();
    if let Some(cl) = parts.headers.get(http::header::CONTENT_LENGTH) {
        let text = cl.to_str().unwrap_or("");
        match text.trim().parse::<i64>() {
            Ok(n) if n >= 0 => plan.payload_length = Some(n as u64),
            _ => return Err(S3Error::invalid_argument("Content-Length", text)),
        }
    }
    if parts.method == http::Method::PUT {
        let conditional = ["if-match", "if-modified-since", "if-unmodified-since"]
            .iter()
            .any(|h| parts.headers.contains_key(*h))
            || header(parts, "if-none-match").is_some_and(|v| v != "*");
        if conditional {
            return Err(not_implemented(
                "Conditional object PUTs are not supported.",
            ));
        }
    }
    if let Some(class) = header(parts, "x-amz-storage-class") {
        if class != "STANDARD" {
            return Err(S3Error::new(ErrorCode::InvalidStorageClass));
        }
    }
    if parts.headers.contains_key("x-amz-mfa") {
        return Err(not_implemented("MFA Delete is not supported."));
    }
    if let Some(sse) = header(parts, "x-amz-server-side-encryption") {
        if sse != "aws:kms" && sse != "AES256" {
            return Err(S3Error::with_message(
                ErrorCode::InvalidArgument,
                "The encryption method specified is not supported",
            )
            .detail("ArgumentName", "x-amz-server-side-encryption")
            .detail("ArgumentValue", sse));
        }
        return Err(not_implemented("Server-side encryption is not supported."));
    }
    if parts
        .headers
        .contains_key("x-amz-website-redirect-location")
    {
        return Err(not_implemented("Website redirection is not supported."));
    }
    if let Some(md5) = header_strip(header(parts, "content-md5")) {
        let valid_alphabet = md5
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
            && md5.len() - md5.trim_end_matches('=').len() <= 2
            && !md5.trim_end_matches('=').is_empty();
        let decoded = valid_alphabet
            .then(|| {
                base64::engine::general_purpose::STANDARD
                    .decode(md5)
                    .ok()
                    .filter(|b| b.len() == 16)
            })
            .flatten();
        match decoded {
            Some(raw) => plan.content_md5_hex = Some(hex(&raw)),
            None => {
                return Err(S3Error::new(ErrorCode::InvalidDigest).detail("ContentMD5", md5));
            }
        }
    }
    if parts.headers.contains_key("x-amz-tagging") {
        return Err(not_implemented("Object tagging is not supported."));
    }

    let streaming = auth.payload.is_streaming();
    if streaming {
        plan.payload_length = auth.decoded_content_length;
    }
    if parts.method == http::Method::PUT || parts.method == http::Method::POST {
        let (checksum, trailer) = checksum_headers(parts)?;
        let verify = parts.method == http::Method::PUT || multi_delete;
        let mut trailers = BTreeSet::new();
        if auth.payload == PayloadHash::StreamingSignedTrailer {
            trailers.insert("x-amz-trailer-signature".to_string());
        }
        if let Some((algo, name)) = &trailer {
            if !streaming {
                return Err(S3Error::new(ErrorCode::MalformedTrailerError));
            }
            trailers.insert(name.clone());
            if verify {
                plan.checksum = Some((*algo, ChecksumSource::Trailer(name.clone())));
            }
        } else if let Some((algo, raw)) = checksum {
            if verify {
                plan.checksum = Some((algo, ChecksumSource::Header(raw)));
            }
        }
        if streaming {
            plan.streaming = Some(StreamingPlan {
                trailers,
                signed: auth.payload != PayloadHash::StreamingUnsignedTrailer,
            });
        }
    } else if streaming {
        plan.streaming = Some(StreamingPlan {
            trailers: BTreeSet::new(),
            signed: true,
        });
    }
    if let PayloadHash::Sha256(expected) = &auth.payload {
        // Errors quote the hash as the client wrote it.
        let given = header(parts, "x-amz-content-sha256").unwrap_or(expected);
        plan.sha256 = Some(given.to_string());
        if plan.payload_length == Some(0) {
            let empty = hex(&Sha256::digest(b""));
            if *expected != empty {
                return Err(sha256_mismatch(given, &empty));
            }
        }
    }
    Ok(plan)
}

type HeaderChecksum = Option<(ChecksumAlgorithm, Vec<u8>)>;
type TrailerChecksum = Option<(ChecksumAlgorithm, String)>;

/// The one `x-amz-checksum-*` header or `x-amz-trailer` a request may
/// carry (Swift's `_validate_checksum_headers`).
fn checksum_headers(parts: &Parts) -> Result<(HeaderChecksum, TrailerChecksum), S3Error> {
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            n.starts_with("x-amz-checksum-")
                && n != "x-amz-checksum-algorithm"
                && n != "x-amz-checksum-type"
        })
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("")))
        .collect();
    if headers
        .iter()
        .any(|(n, _)| ChecksumAlgorithm::from_header(n).is_none())
    {
        return Err(invalid_request(
            "The algorithm type you specified in x-amz-checksum- header is invalid.",
        ));
    }
    let mut names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    names.dedup();
    if headers.len() > 1 {
        return Err(invalid_request(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ));
    }
    let declared = header(parts, "x-amz-trailer").unwrap_or("").trim();
    let trailer_names: Vec<&str> = if declared.is_empty() {
        Vec::new()
    } else {
        declared
            .trim_end_matches(',')
            .split(',')
            .map(str::trim)
            .collect()
    };
    if trailer_names
        .iter()
        .any(|n| ChecksumAlgorithm::from_header(n).is_none())
    {
        return Err(invalid_request(
            "The value specified in the x-amz-trailer header is not supported",
        ));
    }
    if trailer_names.len() > 1 {
        return Err(invalid_request(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ));
    }
    if headers.len() + trailer_names.len() > 1 {
        return Err(invalid_request("Expecting a single x-amz-checksum- header"));
    }
    let mut algo = None;
    let mut from_header = None;
    let mut from_trailer = None;
    if let Some((name, value)) = headers.first() {
        let a = ChecksumAlgorithm::from_header(name).ok_or_else(|| invalid_request(""))?;
        let raw = a
            .decode_value(value)
            .ok_or_else(|| invalid_request(format!("Value for {name} header is invalid.")))?;
        algo = Some(a);
        from_header = Some((a, raw));
    } else if let Some(name) = trailer_names.first() {
        let a = ChecksumAlgorithm::from_header(name).ok_or_else(|| invalid_request(""))?;
        algo = Some(a);
        from_trailer = Some((a, name.to_string()));
    }
    if let Some(sdk) = header(parts, "x-amz-sdk-checksum-algorithm") {
        match algo {
            None => {
                return Err(invalid_request(
                    "x-amz-sdk-checksum-algorithm specified, but no corresponding \
                     x-amz-checksum-* or x-amz-trailer headers were found.",
                ))
            }
            Some(a) if !sdk.eq_ignore_ascii_case(a.name()) => {
                return Err(invalid_request(
                    "Value for x-amz-sdk-checksum-algorithm header is invalid.",
                ))
            }
            Some(_) => {}
        }
    }
    Ok((from_header, from_trailer))
}

fn sha256_mismatch(expected: &str, computed: &str) -> S3Error {
    S3Error::new(ErrorCode::XAmzContentSHA256Mismatch)
        .detail("ClientComputedContentSHA256", expected)
        .detail("S3ComputedContentSHA256", computed)
}

/// Why a body was refused, before it is worded as S3's error (Swift's
/// `S3InputError` family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The body ended early or broke the aws-chunked framing.
    Incomplete,
    Sha256Mismatch {
        expected: String,
        computed: String,
    },
    ChecksumMismatch(ChecksumAlgorithm),
    ChecksumTrailerInvalid(String),
    /// A chunk or trailer signature is wrong; what it should have signed.
    ChunkSignatureMismatch {
        string_to_sign: Vec<u8>,
    },
    /// The chunks carry more or fewer bytes than declared.
    SizeError {
        expected: u64,
        provided: u64,
    },
    ChunkTooSmall {
        chunk: u64,
        size: u64,
    },
    MalformedTrailer,
}

impl InputError {
    /// The S3 error the client gets (Swift's `translate_read_errors`).
    pub fn to_s3(&self, auth: &AuthRequest) -> S3Error {
        match self {
            InputError::Incomplete => S3Error::with_message(
                ErrorCode::IncompleteBody,
                "The request body terminated unexpectedly",
            ),
            InputError::Sha256Mismatch { expected, computed } => {
                sha256_mismatch(expected, computed)
            }
            InputError::ChecksumMismatch(a) => S3Error::with_message(
                ErrorCode::BadDigest,
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    a.name().to_uppercase()
                ),
            ),
            InputError::ChecksumTrailerInvalid(name) => {
                invalid_request(format!("Value for {name} trailing header is invalid."))
            }
            InputError::ChunkSignatureMismatch { string_to_sign } => {
                let mut at_chunk = auth.clone();
                at_chunk.string_to_sign = string_to_sign.clone();
                at_chunk.signature_does_not_match()
            }
            InputError::SizeError { expected, provided } => S3Error::new(ErrorCode::IncompleteBody)
                .detail("NumberBytesExpected", expected.to_string())
                .detail("NumberBytesProvided", provided.to_string()),
            InputError::ChunkTooSmall { chunk, size } => {
                S3Error::new(ErrorCode::InvalidChunkSizeError)
                    .detail("Chunk", chunk.to_string())
                    .detail("BadChunkSize", size.to_string())
            }
            InputError::MalformedTrailer => S3Error::new(ErrorCode::MalformedTrailerError),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading a chunk header line.
    Header,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the final (zero) chunk: trailers, or the closing CRLF.
    Trailers,
    Done,
}

/// The aws-chunked framing of a streaming body.
struct Chunked {
    stage: Stage,
    line: Vec<u8>,
    decoded_length: u64,
    to_read: u64,
    chunk_number: u64,
    last_chunk_size: Option<u64>,
    chunk_size: u64,
    chunk_sha: Sha256,
    chunk_signature: String,
    /// Chunk signatures chain from the request's, then each chunk's.
    signer: Option<ChunkSigner>,
    previous_signature: String,
    all_signatures_valid: bool,
    expected_trailers: BTreeSet<String>,
    trailers: Vec<(String, String)>,
}

/// An S3 body being checked as it streams.
pub struct S3Input {
    chunked: Option<Chunked>,
    sha256: Option<(Sha256, String)>,
    checksum: Option<(Checksummer, ChecksumAlgorithm, ChecksumSource)>,
    expected: u64,
    received: u64,
    complete: bool,
}

impl S3Input {
    /// The checker of a body as `plan` describes it; `signer` checks the
    /// chunk signatures of a signed aws-chunked body.
    pub fn new(plan: &InputPlan, signer: Option<ChunkSigner>) -> S3Input {
        let expected = plan.payload_length.unwrap_or(0);
        let chunked = plan.streaming.as_ref().map(|s| {
            let signer = if s.signed { signer } else { None };
            Chunked {
                stage: Stage::Header,
                line: Vec::new(),
                decoded_length: expected,
                to_read: expected,
                chunk_number: 0,
                last_chunk_size: None,
                chunk_size: 0,
                chunk_sha: Sha256::new(),
                chunk_signature: String::new(),
                previous_signature: signer
                    .as_ref()
                    .map(|s| s.seed_signature.clone())
                    .unwrap_or_default(),
                signer,
                all_signatures_valid: true,
                expected_trailers: s.trailers.clone(),
                trailers: Vec::new(),
            }
        });
        let sha256 = if chunked.is_none() {
            plan.sha256.clone().map(|e| (Sha256::new(), e))
        } else {
            None
        };
        let checksum = plan
            .checksum
            .clone()
            .map(|(algo, source)| (algo.hasher(), algo, source));
        let mut input = S3Input {
            chunked,
            sha256,
            checksum,
            expected,
            received: 0,
            complete: false,
        };
        if input.chunked.is_none() && expected == 0 {
            // Nothing to wait for; the checks ran at planning.
            input.complete = true;
        }
        input
    }

    /// Every byte arrived and every check passed.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Payload bytes not yet decoded.
    pub fn payload_remaining(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// The trailers of an aws-chunked body, once read.
    pub fn trailers(&self) -> &[(String, String)] {
        self.chunked
            .as_ref()
            .map(|c| c.trailers.as_slice())
            .unwrap_or_default()
    }

    /// Takes raw body bytes; appends the payload they carry to `out`.
    pub fn feed(&mut self, mut raw: &[u8], out: &mut Vec<u8>) -> Result<(), InputError> {
        if self.complete {
            // Bytes past the end are not read, as in Swift.
            return Ok(());
        }
        if self.chunked.is_none() {
            if raw.len() as u64 > self.payload_remaining() {
                raw = &raw[..self.payload_remaining() as usize];
            }
            out.extend_from_slice(raw);
            return self.payload(raw, false);
        }
        while !raw.is_empty() && !self.complete {
            let used = self.feed_chunked(raw, out)?;
            raw = &raw[used..];
        }
        Ok(())
    }

    /// The raw body ended.
    pub fn finish(&mut self) -> Result<(), InputError> {
        if self.complete {
            return Ok(());
        }
        match self.chunked.as_mut() {
            None => self.payload(&[], true),
            Some(c) => match c.stage {
                // EOF where the closing CRLF or the trailers may end.
                Stage::Trailers => {
                    if c.line.is_empty() {
                        self.end_trailers()
                    } else {
                        // A trailer line (or the closing CRLF) cut short.
                        Err(InputError::Incomplete)
                    }
                }
                Stage::Done => Ok(()),
                _ => Err(InputError::Incomplete),
            },
        }
    }

    /// Payload bytes through the hash and checksum; at the last byte (or
    /// at `eof`) the values are compared.
    fn payload(&mut self, data: &[u8], eof: bool) -> Result<(), InputError> {
        self.received += data.len() as u64;
        if let Some((h, _)) = self.sha256.as_mut() {
            h.update(data);
        }
        if let Some((c, _, _)) = self.checksum.as_mut() {
            c.update(data);
        }
        if self.received < self.expected && !eof {
            return Ok(());
        }
        let short = self.received < self.expected;
        if let Some((h, expected)) = self.sha256.take() {
            let computed = hex(&h.finalize());
            if short || !computed.eq_ignore_ascii_case(&expected) {
                return Err(InputError::Sha256Mismatch { expected, computed });
            }
        }
        if self.chunked.is_some() {
            // The framing decides when a chunked body is complete.
            return Ok(());
        }
        self.check_checksum(short)?;
        if short {
            return Err(InputError::Incomplete);
        }
        self.complete = true;
        Ok(())
    }

    fn check_checksum(&mut self, short: bool) -> Result<(), InputError> {
        let Some((hasher, algo, source)) = self.checksum.take() else {
            return Ok(());
        };
        let expected = match source {
            ChecksumSource::Header(raw) => raw,
            ChecksumSource::Trailer(name) => {
                let value = self
                    .trailers()
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                algo.decode_value(&value)
                    .ok_or(InputError::ChecksumTrailerInvalid(name))?
            }
        };
        if short || hasher.finalize() != expected {
            return Err(InputError::ChecksumMismatch(algo));
        }
        Ok(())
    }

    /// Reads as much of `raw` as the current stage takes; returns how much.
    fn feed_chunked(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<usize, InputError> {
        let Some(c) = self.chunked.as_mut() else {
            return Ok(raw.len());
        };
        match c.stage {
            Stage::Header => {
                let (used, line) = take_line(&mut c.line, raw)?;
                if let Some(line) = line {
                    c.start_chunk(&line)?;
                }
                Ok(used)
            }
            Stage::Data(left) => {
                let n = (left as usize).min(raw.len());
                let data = &raw[..n];
                if c.signer.is_some() {
                    c.chunk_sha.update(data);
                }
                out.extend_from_slice(data);
                c.to_read -= n as u64;
                let left = left - n as u64;
                c.stage = Stage::Data(left);
                if left == 0 {
                    c.end_chunk_data()?;
                }
                self.payload(data, false)?;
                Ok(n)
            }
            Stage::DataEnd => {
                c.line.push(raw[0]);
                if c.line.len() == 2 {
                    if c.line != b"\r\n" {
                        return Err(InputError::Incomplete);
                    }
                    c.line.clear();
                    c.stage = Stage::Header;
                }
                Ok(1)
            }
            Stage::Trailers => {
                if c.expected_trailers.is_empty() {
                    c.line.push(raw[0]);
                    if c.line.len() == 2 {
                        if c.line != b"\r\n" {
                            return Err(InputError::Incomplete);
                        }
                        self.end_trailers()?;
                    }
                    return Ok(1);
                }
                let (used, line) = take_line(&mut c.line, raw)?;
                if let Some(line) = line {
                    if line == b"\r\n" {
                        self.end_trailers()?;
                    } else {
                        c.trailer_line(&line)?;
                    }
                }
                Ok(used)
            }
            Stage::Done => Ok(raw.len()),
        }
    }

    /// The trailers are read: check them, then the payload's length and
    /// checksum.
    fn end_trailers(&mut self) -> Result<(), InputError> {
        let Some(c) = self.chunked.as_mut() else {
            return Ok(());
        };
        c.check_trailers()?;
        c.stage = Stage::Done;
        if c.to_read > 0 {
            return Err(InputError::SizeError {
                expected: c.decoded_length,
                provided: c.decoded_length - c.to_read,
            });
        }
        self.check_checksum(false)?;
        self.complete = true;
        Ok(())
    }
}

/// Appends `raw` to the partial `line` up to its first LF. Returns the
/// bytes used and the whole line once it ended.
fn take_line(line: &mut Vec<u8>, raw: &[u8]) -> Result<(usize, Option<Vec<u8>>), InputError> {
    let (used, ended) = match memchr_lf(raw) {
        Some(i) => (i + 1, true),
        None => (raw.len(), false),
    };
    line.extend_from_slice(&raw[..used]);
    if line.len() > MAX_LINE {
        return Err(InputError::Incomplete);
    }
    Ok((used, ended.then(|| std::mem::take(line))))
}

fn memchr_lf(raw: &[u8]) -> Option<usize> {
    raw.iter().position(|&b| b == b'\n')
}

/// A chunk size as Python's `int(text, 16)` reads it: optional blanks
/// and `+`, an optional `0x`, hex digits with single underscores between.
fn parse_hex_size(text: &str) -> Option<u64> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let t = t.strip_prefix('+').unwrap_or(t);
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .map(|r| r.strip_prefix('_').unwrap_or(r))
        .unwrap_or(t);
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    let digits: String = t.chars().filter(|&c| c != '_').collect();
    u64::from_str_radix(&digits, 16).ok()
}

impl Chunked {
    fn start_chunk(&mut self, line: &[u8]) -> Result<(), InputError> {
        self.chunk_number += 1;
        let Some(body) = line.strip_suffix(b"\r\n") else {
            return Err(InputError::Incomplete);
        };
        let text = String::from_utf8_lossy(body);
        let (size, params) = text.split_once(';').unwrap_or((&text, ""));
        let size = parse_hex_size(size).ok_or(InputError::Incomplete)?;
        if let Some(last) = self.last_chunk_size {
            if last < MIN_CHUNK_SIZE && size != 0 {
                return Err(InputError::ChunkTooSmall {
                    chunk: self.chunk_number,
                    size: last,
                });
            }
        }
        self.last_chunk_size = Some(size);
        if size > self.to_read {
            return Err(InputError::SizeError {
                expected: self.decoded_length,
                provided: self.decoded_length - self.to_read + size,
            });
        }
        if self.signer.is_some() {
            if params.is_empty() {
                return Err(InputError::Incomplete);
            }
            let (start, sig) = params.split_once('=').unwrap_or((params, ""));
            if start.trim() != "chunk-signature" {
                self.all_signatures_valid = false;
                let sts = self.signer_sts("");
                return Err(InputError::ChunkSignatureMismatch {
                    string_to_sign: sts,
                });
            }
            if sig.contains(';') || sig.trim().is_empty() {
                return Err(InputError::Incomplete);
            }
            self.chunk_signature = sig.trim().to_string();
        }
        self.chunk_size = size;
        self.chunk_sha = Sha256::new();
        self.stage = Stage::Data(size);
        if size == 0 {
            self.end_chunk_data()?;
        }
        Ok(())
    }

    /// A chunk's data is all read: check its signature.
    fn end_chunk_data(&mut self) -> Result<(), InputError> {
        if let Some(signer) = &self.signer {
            let sha = hex(&std::mem::take(&mut self.chunk_sha).finalize());
            let sts = signer.chunk_string_to_sign(&self.previous_signature, &sha);
            let ok = self.all_signatures_valid
                && signer.check_chunk(&self.previous_signature, &sha, &self.chunk_signature);
            self.previous_signature = std::mem::take(&mut self.chunk_signature);
            self.all_signatures_valid &= ok;
            if !ok {
                return Err(InputError::ChunkSignatureMismatch {
                    string_to_sign: sts,
                });
            }
        }
        self.stage = if self.chunk_size == 0 {
            Stage::Trailers
        } else {
            Stage::DataEnd
        };
        Ok(())
    }

    /// The string to sign of a chunk hashing to `sha` (what Swift's
    /// checker last computed, reported in the error).
    fn signer_sts(&self, sha: &str) -> Vec<u8> {
        self.signer
            .as_ref()
            .map(|s| s.chunk_string_to_sign(&self.previous_signature, sha))
            .unwrap_or_default()
    }

    fn trailer_line(&mut self, line: &[u8]) -> Result<(), InputError> {
        if !line.ends_with(b"\r\n") {
            return Err(InputError::Incomplete);
        }
        if self.trailers.len() >= MAX_TRAILERS {
            return Err(InputError::MalformedTrailer);
        }
        let text = String::from_utf8_lossy(line);
        let (key, value) = text.split_once(':').unwrap_or((&text, ""));
        if !self.expected_trailers.contains(&key.to_lowercase()) {
            return Err(InputError::MalformedTrailer);
        }
        let key = key.trim().to_string();
        let value = value.trim().to_string();
        match self.trailers.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.trailers.push((key, value)),
        }
        Ok(())
    }

    fn check_trailers(&mut self) -> Result<(), InputError> {
        if self.expected_trailers.is_empty() {
            return Ok(());
        }
        let wants_signature = self.expected_trailers.contains("x-amz-trailer-signature");
        let signature = self
            .trailers
            .iter()
            .find(|(k, _)| k == "x-amz-trailer-signature")
            .map(|(_, v)| v.clone());
        if wants_signature && signature.is_none() {
            return Err(InputError::Incomplete);
        }
        let keys: BTreeSet<String> = self.trailers.iter().map(|(k, _)| k.clone()).collect();
        if keys != self.expected_trailers {
            return Err(InputError::MalformedTrailer);
        }
        if let (Some(signature), Some(signer)) = (signature, &self.signer) {
            let mut sorted: Vec<&(String, String)> = self
                .trailers
                .iter()
                .filter(|(k, _)| k != "x-amz-trailer-signature")
                .collect();
            sorted.sort_by_key(|(k, _)| k.to_lowercase());
            let mut canonical: String = sorted.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
            if canonical.is_empty() {
                canonical.push('\n');
            }
            let sha = hex(&Sha256::digest(canonical.as_bytes()));
            let sts = signer.trailer_string_to_sign(&self.previous_signature, &sha);
            let ok = self.all_signatures_valid
                && signer.check_trailer(&self.previous_signature, &sha, &signature);
            self.all_signatures_valid &= ok;
            if !ok {
                return Err(InputError::ChunkSignatureMismatch {
                    string_to_sign: sts,
                });
            }
            if self.trailers.len() == 1 {
                return Err(InputError::Incomplete);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b64(raw: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    #[test]
    fn checksums_match_the_published_check_values() {
        // Each catalogue's check value is the checksum of "123456789".
        for (algo, check) in [
            (ChecksumAlgorithm::Crc32, "cbf43926"),
            (ChecksumAlgorithm::Crc32c, "e3069283"),
            (ChecksumAlgorithm::Crc64Nvme, "ae8b14860a799888"),
            (
                ChecksumAlgorithm::Sha1,
                "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
            ),
        ] {
            let mut h = algo.hasher();
            h.update(b"1234");
            h.update(b"56789");
            assert_eq!(hex(&h.finalize()), check, "{algo:?}");
        }
    }

    #[test]
    fn checksum_values_must_be_canonical_base64_of_the_right_size() {
        let a = ChecksumAlgorithm::Crc32;
        assert_eq!(
            a.decode_value("y/Q5Jg=="),
            Some(vec![0xcb, 0xf4, 0x39, 0x26])
        );
        for bad in [
            "y/Q5Jg", "y/Q5Jg=", "y/Q5Jh==", "AAAAAAA=", "y/Q5", "!!!!!!==", "",
        ] {
            assert_eq!(a.decode_value(bad), None, "{bad}");
        }
    }

    fn unsigned_plan(
        len: u64,
        trailers: &[&str],
        checksum: Option<(ChecksumAlgorithm, &str)>,
    ) -> InputPlan {
        InputPlan {
            payload_length: Some(len),
            streaming: Some(StreamingPlan {
                trailers: trailers.iter().map(|s| s.to_string()).collect(),
                signed: false,
            }),
            sha256: None,
            checksum: checksum.map(|(a, t)| (a, ChecksumSource::Trailer(t.to_string()))),
            content_md5_hex: None,
        }
    }

    /// Feeds `raw` split at every position, so that no state depends on
    /// where the transport cut the body.
    fn decode_all_splits(plan: &InputPlan, raw: &[u8]) -> Result<Vec<u8>, InputError> {
        let mut first: Option<Result<Vec<u8>, InputError>> = None;
        for cut in 0..=raw.len() {
            let mut input = S3Input::new(plan, None);
            let mut out = Vec::new();
            let r = input
                .feed(&raw[..cut], &mut out)
                .and_then(|_| input.feed(&raw[cut..], &mut out))
                .and_then(|_| input.finish())
                .map(|_| out);
            match &first {
                None => first = Some(r),
                Some(f) => assert_eq!(f, &r, "cut at {cut}"),
            }
        }
        first.unwrap()
    }

    #[test]
    fn decodes_unsigned_chunks_with_a_checksum_trailer() {
        let body = vec![b'x'; 9000];
        let mut crc = ChecksumAlgorithm::Crc32.hasher();
        crc.update(&body);
        let value = b64(&crc.finalize());
        let mut raw = b"2000\r\n".to_vec();
        raw.extend_from_slice(&body[..8192]);
        raw.extend_from_slice(b"\r\n328\r\n");
        raw.extend_from_slice(&body[8192..]);
        raw.extend_from_slice(format!("\r\n0\r\nx-amz-checksum-crc32:{value}\r\n\r\n").as_bytes());
        let plan = unsigned_plan(
            9000,
            &["x-amz-checksum-crc32"],
            Some((ChecksumAlgorithm::Crc32, "x-amz-checksum-crc32")),
        );
        assert_eq!(decode_all_splits(&plan, &raw).unwrap(), body);

        let wrong = String::from_utf8(raw.clone())
            .unwrap()
            .replace(&value, "AAAAAA==");
        assert_eq!(
            decode_all_splits(&plan, wrong.as_bytes()),
            Err(InputError::ChecksumMismatch(ChecksumAlgorithm::Crc32))
        );
        let invalid = String::from_utf8(raw).unwrap().replace(&value, "nope");
        assert_eq!(
            decode_all_splits(&plan, invalid.as_bytes()),
            Err(InputError::ChecksumTrailerInvalid(
                "x-amz-checksum-crc32".into()
            ))
        );
    }

    #[test]
    fn refuses_broken_framing() {
        let plan = unsigned_plan(5, &[], None);
        assert_eq!(
            decode_all_splits(&plan, b"5\r\nhello\r\n0\r\n\r\n").unwrap(),
            b"hello"
        );
        assert_eq!(
            decode_all_splits(&plan, b"5\r\nhello\r\n0\r\n").unwrap(),
            b"hello"
        );
        // No final zero chunk, a header without CRLF, data without CRLF.
        assert_eq!(
            decode_all_splits(&plan, b"5\r\nhello\r\n"),
            Err(InputError::Incomplete)
        );
        assert_eq!(
            decode_all_splits(&plan, b"5\nhello\r\n0\r\n"),
            Err(InputError::Incomplete)
        );
        assert_eq!(
            decode_all_splits(&plan, b"5\r\nhelloXX0\r\n"),
            Err(InputError::Incomplete)
        );
        assert_eq!(
            decode_all_splits(&plan, b"zz\r\nhello"),
            Err(InputError::Incomplete)
        );
        // More or fewer bytes than declared, and a small chunk not last.
        assert_eq!(
            decode_all_splits(&plan, b"6\r\nhello!\r\n0\r\n"),
            Err(InputError::SizeError {
                expected: 5,
                provided: 6
            })
        );
        assert_eq!(
            decode_all_splits(&plan, b"3\r\nhel\r\n0\r\n\r\n"),
            Err(InputError::SizeError {
                expected: 5,
                provided: 3
            })
        );
        assert_eq!(
            decode_all_splits(&plan, b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"),
            Err(InputError::ChunkTooSmall { chunk: 2, size: 3 })
        );
        let zero_mid = unsigned_plan(5, &[], None);
        assert_eq!(
            decode_all_splits(&zero_mid, b"0\r\n\r\n"),
            Err(InputError::SizeError {
                expected: 5,
                provided: 0
            })
        );
        // A trailer that was not declared.
        let trailing = unsigned_plan(5, &["x-amz-checksum-crc32"], None);
        assert_eq!(
            decode_all_splits(
                &trailing,
                b"5\r\nhello\r\n0\r\nx-amz-checksum-sha1:AAAA\r\n\r\n"
            ),
            Err(InputError::MalformedTrailer)
        );
    }

    #[test]
    fn signed_chunks_chain_their_signatures() {
        let signer = ChunkSigner::for_tests("seed");
        let body = b"hello";
        let sha = hex(&Sha256::digest(body));
        let s1 = signer.chunk_signature("seed", &sha);
        let empty = hex(&Sha256::digest(b""));
        let s2 = signer.chunk_signature(&s1, &empty);
        let raw = format!("5;chunk-signature={s1}\r\nhello\r\n0;chunk-signature={s2}\r\n\r\n");
        let plan = InputPlan {
            payload_length: Some(5),
            streaming: Some(StreamingPlan {
                trailers: BTreeSet::new(),
                signed: true,
            }),
            ..InputPlan::default()
        };
        let run = |raw: &str| {
            let mut input = S3Input::new(&plan, Some(signer.clone()));
            let mut out = Vec::new();
            input
                .feed(raw.as_bytes(), &mut out)
                .and_then(|_| input.finish())
                .map(|_| out)
        };
        assert_eq!(run(&raw).unwrap(), body);
        let tampered = raw.replace("hello", "jello");
        assert!(matches!(
            run(&tampered),
            Err(InputError::ChunkSignatureMismatch { .. })
        ));
        let unsigned = format!("5\r\nhello\r\n0;chunk-signature={s2}\r\n\r\n");
        assert_eq!(run(&unsigned), Err(InputError::Incomplete));
    }

    #[test]
    fn a_plain_body_is_checked_at_its_last_byte() {
        let body = b"some body";
        let plan = InputPlan {
            payload_length: Some(body.len() as u64),
            sha256: Some(hex(&Sha256::digest(body))),
            ..InputPlan::default()
        };
        let mut input = S3Input::new(&plan, None);
        let mut out = Vec::new();
        input.feed(&body[..4], &mut out).unwrap();
        assert!(!input.is_complete());
        input.feed(&body[4..], &mut out).unwrap();
        assert!(input.is_complete());
        assert_eq!(out, body);

        let mut input = S3Input::new(&plan, None);
        let err = input.feed(b"some bodY", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, InputError::Sha256Mismatch { .. }));
        let mut input = S3Input::new(&plan, None);
        input.feed(b"some", &mut Vec::new()).unwrap();
        assert!(matches!(
            input.finish(),
            Err(InputError::Sha256Mismatch { .. })
        ));
    }
}
