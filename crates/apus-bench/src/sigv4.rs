//! AWS Signature Version 4 in its header form (`Authorization:
//! AWS4-HMAC-SHA256 ...`), just enough to sign the benchmark's S3
//! requests: canonical request, string to sign, signing key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The `x-amz-content-sha256` value that leaves the body out of the
/// signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "s3";
const TERMINAL: &str = "aws4_request";

/// Signs requests for one access key in one region.
pub struct Signer {
    access_key: String,
    secret: String,
    region: String,
}

/// One request as the signature sees it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path exactly as sent (already URI-encoded): S3 signs it as is.
    pub path: &'a str,
    /// The query string as sent (`a=1&b`, components already URI-encoded),
    /// or empty.
    pub query: &'a str,
    /// The headers to sign, names in lower case. They must include `host`
    /// and `x-amz-date`, whose value is the signing time.
    pub headers: &'a [(&'a str, &'a str)],
    /// The `x-amz-content-sha256` value: the body's hex SHA-256 or
    /// [`UNSIGNED_PAYLOAD`].
    pub payload_hash: &'a str,
}

impl Signer {
    pub fn new(access_key: &str, secret: &str, region: &str) -> Signer {
        Signer {
            access_key: access_key.to_string(),
            secret: secret.to_string(),
            region: region.to_string(),
        }
    }

    /// The `Authorization` header value for `req`.
    pub fn authorization(&self, req: &Request<'_>) -> String {
        let amz_date = req
            .headers
            .iter()
            .find(|(k, _)| *k == "x-amz-date")
            .map(|(_, v)| *v)
            .unwrap_or_default();
        let date = amz_date.get(..8).unwrap_or_default();
        let scope = format!("{date}/{}/{SERVICE}/{TERMINAL}", self.region);
        let (canonical, signed_headers) = canonical_request(req);
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(&self.secret, date, &self.region);
        let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        )
    }
}

/// The canonical request and its signed-headers list.
fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(&str, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (*k, v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let mut canonical_headers = String::new();
    for (k, v) in &headers {
        canonical_headers.push_str(k);
        canonical_headers.push(':');
        canonical_headers.push_str(v);
        canonical_headers.push('\n');
    }
    let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let signed = signed.join(";");
    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical = format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{signed}\n{}",
        req.method,
        canonical_query(req.query),
        req.payload_hash
    );
    (canonical, signed)
}

/// `b=2&a` becomes `a=&b=2`: pairs sorted, every key given a value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: the error cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), "s3"), "aws4_request")`.
fn signing_key(secret: &str, date: &str, region: &str) -> [u8; 32] {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, region.as_bytes());
    let k = hmac_sha256(&k, SERVICE.as_bytes());
    hmac_sha256(&k, TERMINAL.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC), the `x-amz-date` format.
pub fn amz_date(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `GET /test.txt` example of AWS's "Signature Calculations for the
    /// Authorization Header" page (botocore signs it the same way).
    #[test]
    fn aws_documented_get_example() {
        let signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let auth = signer.authorization(&Request {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", empty_sha),
                ("x-amz-date", "20130524T000000Z"),
            ],
            payload_hash: empty_sha,
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// A request as the benchmark sends it, headers given out of order;
    /// the signature is botocore's (`SigV4Auth`, service s3) for the same
    /// request.
    #[test]
    fn unsigned_payload_put_matches_botocore() {
        let signer = Signer::new("test:tester", "testing", "us-east-1");
        let auth = signer.authorization(&Request {
            method: "PUT",
            path: "/bench-1/obj-00000001",
            query: "",
            headers: &[
                ("x-amz-date", "20261206T174000Z"),
                ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
                ("host", "127.0.0.1:8080"),
            ],
            payload_hash: UNSIGNED_PAYLOAD,
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=test:tester/20261206/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=7df8a72cbff8c761dc52f39f4c7b928e0ac476777553de0d0b623a6c92cd9e5f"
        );
    }

    #[test]
    fn query_is_sorted_and_valued() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("uploads"), "uploads=");
        assert_eq!(
            canonical_query("prefix=a&delimiter=%2F&acl"),
            "acl=&delimiter=%2F&prefix=a"
        );
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_868_799), "20000229T235959Z");
        assert_eq!(amz_date(1_796_578_800), "20261206T174000Z");
    }
}
