//! S3's additional checksums (`x-amz-checksum-<algorithm>`): which one a
//! request names, whether its value is well-formed, and the digest of a
//! body to compare it with.
//!
//! The value is the base64 of the big-endian digest. The CRCs are the
//! reflected forms S3 uses: CRC-32 (ISO-HDLC), CRC-32C (Castagnoli) and
//! CRC-64/NVME, each with an all-ones start and final xor.

use base64::Engine;
use http::HeaderMap;
use sha1::Digest as _;

use crate::error::{ErrorCode, S3Error};

/// One of the checksum algorithms S3 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// The header that carries a value of this algorithm.
    pub fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The algorithm's name as `x-amz-sdk-checksum-algorithm` gives it
    /// (compared without case).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "crc32",
            Algorithm::Crc32c => "crc32c",
            Algorithm::Crc64Nvme => "crc64nvme",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
        }
    }

    pub fn from_header(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.header() == name)
    }

    /// How many bytes the digest has.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    /// The digest of `data`, big-endian.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Crc32 => crc32(&CRC32_TABLE, data).to_be_bytes().to_vec(),
            Algorithm::Crc32c => crc32(&CRC32C_TABLE, data).to_be_bytes().to_vec(),
            Algorithm::Crc64Nvme => crc64nvme(data).to_be_bytes().to_vec(),
            Algorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Algorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }
}

/// The checksum a request's headers ask for: the algorithm and the
/// digest its value decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

impl Expected {
    /// `BadDigest` as S3 answers a body whose checksum is not this one
    /// (the message names the algorithm, and no value is echoed).
    pub fn check(&self, body: &[u8]) -> Result<(), S3Error> {
        if self.algorithm.digest(body) == self.digest {
            return Ok(());
        }
        Err(S3Error::with_message(
            ErrorCode::BadDigest,
            format!(
                "The {} you specified did not match the calculated checksum.",
                self.algorithm.name().to_ascii_uppercase()
            ),
        ))
    }
}

fn invalid_request(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(ErrorCode::InvalidRequest, msg.into())
}

fn too_many(headers_and_trailer: bool) -> S3Error {
    // The two messages differ as S3's do.
    if headers_and_trailer {
        invalid_request("Expecting a single x-amz-checksum- header")
    } else {
        invalid_request(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        )
    }
}

/// Strict base64 of exactly `len` bytes: no stray characters, and the
/// text must be what those bytes encode to.
fn decode_exact(value: &str, len: usize) -> Option<Vec<u8>> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    (b.len() == len).then_some(b)
}

/// The checksum a request's headers name, checked as s3api checks them
/// before reading a body: at most one `x-amz-checksum-*` header or
/// `x-amz-trailer` entry, of a known algorithm, with a well-formed value,
/// agreeing with `x-amz-sdk-checksum-algorithm`. A checksum announced
/// for the trailer is `Ok(None)` here; only a streaming body has
/// trailers, and the caller refuses those it cannot read.
pub fn expected(headers: &HeaderMap) -> Result<Option<Expected>, S3Error> {
    let mut named: Vec<(&str, &str)> = Vec::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n.starts_with("x-amz-checksum-")
            && n != "x-amz-checksum-algorithm"
            && n != "x-amz-checksum-type"
        {
            named.push((n, value.to_str().unwrap_or("")));
        }
    }
    if named
        .iter()
        .any(|(n, _)| Algorithm::from_header(n).is_none())
    {
        return Err(invalid_request(
            "The algorithm type you specified in x-amz-checksum- header is invalid.",
        ));
    }
    if named.len() > 1 {
        return Err(too_many(false));
    }
    let trailer = headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let trailers: Vec<&str> = if trailer.is_empty() {
        Vec::new()
    } else {
        trailer
            .trim_end_matches(',')
            .split(',')
            .map(str::trim)
            .collect()
    };
    if trailers.iter().any(|t| Algorithm::from_header(t).is_none()) {
        return Err(invalid_request(
            "The value specified in the x-amz-trailer header is not supported",
        ));
    }
    if trailers.len() > 1 {
        return Err(too_many(false));
    }
    if named.len() + trailers.len() > 1 {
        return Err(too_many(true));
    }
    let mut found = None;
    let mut algorithm = None;
    if let Some((n, v)) = named.first() {
        let a = Algorithm::from_header(n).ok_or_else(|| too_many(false))?;
        let digest = decode_exact(v, a.digest_len())
            .ok_or_else(|| invalid_request(format!("Value for {n} header is invalid.")))?;
        algorithm = Some(a);
        found = Some(Expected {
            algorithm: a,
            digest,
        });
    } else if let Some(t) = trailers.first() {
        algorithm = Algorithm::from_header(t);
    }
    if let Some(sdk) = headers
        .get("x-amz-sdk-checksum-algorithm")
        .and_then(|v| v.to_str().ok())
    {
        match algorithm {
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
    Ok(found)
}

/// Whether the headers announce a checksum in the trailer.
pub fn has_trailer(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| !t.trim().is_empty())
}

const fn crc32_table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

const fn crc64_table(poly: u64) -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32_TABLE: [u32; 256] = crc32_table(0xEDB8_8320);
static CRC32C_TABLE: [u32; 256] = crc32_table(0x82F6_3B78);
static CRC64NVME_TABLE: [u64; 256] = crc64_table(0x9A6C_9329_AC4B_C9B5);

fn crc32(table: &[u32; 256], data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn crc64nvme(data: &[u8]) -> u64 {
    let mut c = !0u64;
    for &b in data {
        c = CRC64NVME_TABLE[((c ^ u64::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn crcs_match_their_published_check_values() {
        let check = b"123456789";
        assert_eq!(crc32(&CRC32_TABLE, check), 0xCBF4_3926);
        assert_eq!(crc32(&CRC32C_TABLE, check), 0xE306_9283);
        assert_eq!(crc64nvme(check), 0xAE8B_1486_0A79_9888);
        assert_eq!(crc32(&CRC32_TABLE, b""), 0);
        // Python: base64.b64encode(struct.pack('!I', zlib.crc32(b'test data')))
        assert_eq!(b64(&Algorithm::Crc32.digest(b"test data")), "0wiusg==");
        assert_eq!(
            b64(&Algorithm::Sha256.digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn headers_are_checked_before_the_body() {
        assert_eq!(expected(&HeaderMap::new()).unwrap(), None);
        let good = b64(&Algorithm::Crc32.digest(b"body"));
        let e = expected(&headers(&[("x-amz-checksum-crc32", &good)]))
            .unwrap()
            .unwrap();
        assert_eq!(e.algorithm, Algorithm::Crc32);
        assert!(e.check(b"body").is_ok());
        let err = e.check(b"other").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadDigest);
        assert_eq!(
            err.message,
            "The CRC32 you specified did not match the calculated checksum."
        );

        let err = expected(&headers(&[("x-amz-checksum-md5", "x")])).unwrap_err();
        assert!(err.message.contains("algorithm type"), "{err}");
        let err = expected(&headers(&[("x-amz-checksum-crc32", "not-b64!")])).unwrap_err();
        assert_eq!(
            err.message,
            "Value for x-amz-checksum-crc32 header is invalid."
        );
        let err = expected(&headers(&[
            ("x-amz-checksum-crc32", &good),
            ("x-amz-checksum-sha1", &good),
        ]))
        .unwrap_err();
        assert!(err.message.ends_with("not allowed."), "{err}");
        let err = expected(&headers(&[
            ("x-amz-checksum-crc32", &good),
            ("x-amz-trailer", "x-amz-checksum-sha1"),
        ]))
        .unwrap_err();
        assert_eq!(err.message, "Expecting a single x-amz-checksum- header");
        let err = expected(&headers(&[
            ("x-amz-checksum-crc32", &good),
            ("x-amz-sdk-checksum-algorithm", "SHA1"),
        ]))
        .unwrap_err();
        assert!(err.message.contains("x-amz-sdk-checksum-algorithm"));
        assert!(expected(&headers(&[
            ("x-amz-checksum-crc32", &good),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ]))
        .is_ok());
        // Named for the trailer: nothing to check in the headers.
        let h = headers(&[("x-amz-trailer", "x-amz-checksum-crc32c")]);
        assert_eq!(expected(&h).unwrap(), None);
        assert!(has_trailer(&h));
    }
}
