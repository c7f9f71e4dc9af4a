//! Temporary URLs (Swift's `tempurl` middleware): a request carrying
//! `temp_url_sig` and `temp_url_expires` is allowed without a token when
//! the signature is the HMAC, under one of the account's or container's
//! `Temp-URL-Key` metadata keys, of `<method>\n<expires>\n<path>`.
//!
//! - The signature is hex (SHA-1, SHA-256 or SHA-512 by its length) or
//!   `<digest>:<base64>`; `temp_url_expires` is a Unix time or an ISO 8601
//!   `%Y-%m-%dT%H:%M:%SZ` time, and must be in the future.
//! - `temp_url_prefix` signs `prefix:/v1/<a>/<c>/<prefix>` for every
//!   object under it; `temp_url_ip_range` adds `ip=<range>` first and
//!   limits the client address. A HEAD is allowed by a GET, PUT or POST
//!   signature too.
//! - A valid request is authorized for its account (account key) or its
//!   container (container key) only, and tempauth leaves it alone.
//!   Writes may not carry `X-Object-Manifest`, `X-Symlink-Target` or
//!   `X-Copy-From` (400). Configured headers are removed both ways
//!   (`x-timestamp`, `x-open-expired` in; `x-object-meta-*` but
//!   `x-object-meta-public-*` out).
//! - A GET or HEAD answer says how to save it: `Content-Disposition` from
//!   `filename`/`inline`, the object's own, or its name; and `Expires`.
//!
//! Anything invalid is a 401 `Temp URL invalid`, saying nothing of why.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::dlo::util::{build_query, parse_query};
use crate::info::InfoLookup;
use crate::service::{
    env_mut, error_response, header_str, set_header, AuthRequest, Authorize, BoxFuture, Grant, Req,
    Resp, Service, SharedService,
};

/// Headers that would let an upload point at data the URL does not grant.
const DISALLOWED_INCOMING: &[&str] = &["x-object-manifest", "x-symlink-target", "x-copy-from"];

/// The digests Swift supports; SHA-1 is deprecated but allowed by default.
const SUPPORTED_DIGESTS: &[&str] = &["sha1", "sha256", "sha512"];
const DEPRECATED_DIGESTS: &[&str] = &["sha1"];

/// Swift's `[filter:tempurl]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempUrlConfig {
    pub methods: Vec<String>,
    pub incoming_remove_headers: Vec<String>,
    pub incoming_allow_headers: Vec<String>,
    pub outgoing_remove_headers: Vec<String>,
    pub outgoing_allow_headers: Vec<String>,
    /// Lowercase digest names, among [`SUPPORTED_DIGESTS`].
    pub allowed_digests: Vec<String>,
}

impl Default for TempUrlConfig {
    fn default() -> Self {
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect();
        TempUrlConfig {
            methods: words("GET HEAD PUT POST DELETE"),
            incoming_remove_headers: words("x-timestamp x-open-expired"),
            incoming_allow_headers: Vec::new(),
            outgoing_remove_headers: words("x-object-meta-*"),
            outgoing_allow_headers: words("x-object-meta-public-*"),
            allowed_digests: words("sha1 sha256 sha512"),
        }
    }
}

impl TempUrlConfig {
    /// Keeps the supported digests of `configured` (all of them when it is
    /// empty), as Swift's `get_allowed_digests`; `None` when none is left.
    pub fn with_digests(mut self, configured: &[String]) -> Option<Self> {
        self.allowed_digests = allowed_digests(configured)?;
        Some(self)
    }
}

/// Swift's `get_allowed_digests`, shared by tempurl and formpost: the
/// supported digests among `configured` (all of them when it is empty),
/// sorted; `None` when none is left.
pub fn allowed_digests(configured: &[String]) -> Option<Vec<String>> {
    let wanted: Vec<String> = if configured.is_empty() {
        SUPPORTED_DIGESTS.iter().map(|d| d.to_string()).collect()
    } else {
        configured.iter().map(|d| d.to_ascii_lowercase()).collect()
    };
    let mut digests: Vec<String> = wanted
        .into_iter()
        .filter(|d| SUPPORTED_DIGESTS.contains(&d.as_str()))
        .collect();
    digests.sort();
    digests.dedup();
    (!digests.is_empty()).then_some(digests)
}

/// The `/info` digest keys Swift registers: `allowed_digests`, and
/// `deprecated_digests` when any allowed one is deprecated.
pub(crate) fn digest_info(allowed: &[String], out: &mut serde_json::Value) {
    out["allowed_digests"] = serde_json::json!(allowed);
    let deprecated: Vec<&String> = allowed
        .iter()
        .filter(|d| DEPRECATED_DIGESTS.contains(&d.as_str()))
        .collect();
    if !deprecated.is_empty() {
        out["deprecated_digests"] = serde_json::json!(deprecated);
    }
}

/// The `/info` entry for `tempurl`.
pub fn info(config: &TempUrlConfig) -> serde_json::Value {
    let mut out = serde_json::json!({
        "methods": config.methods,
        "incoming_remove_headers": config.incoming_remove_headers,
        "incoming_allow_headers": config.incoming_allow_headers,
        "outgoing_remove_headers": config.outgoing_remove_headers,
        "outgoing_allow_headers": config.outgoing_allow_headers,
    });
    digest_info(&config.allowed_digests, &mut out);
    out
}

pub struct TempUrl {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
    config: TempUrlConfig,
}

impl TempUrl {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>, config: TempUrlConfig) -> Self {
        TempUrl { next, info, config }
    }
}

/// What the query says of the temporary URL.
#[derive(Default, Debug)]
struct TempUrlParams {
    sig: Option<String>,
    expires: Option<String>,
    prefix: Option<String>,
    filename: Option<String>,
    inline: bool,
    ip_range: Option<String>,
}

impl TempUrlParams {
    /// `parse_qs` keeps the first value of each name.
    fn parse(query: Option<&str>) -> Self {
        let mut p = TempUrlParams::default();
        for (k, v) in parse_query(query) {
            let slot = match k.as_str() {
                "temp_url_sig" => &mut p.sig,
                "temp_url_expires" => &mut p.expires,
                "temp_url_prefix" => &mut p.prefix,
                "filename" => &mut p.filename,
                "temp_url_ip_range" => &mut p.ip_range,
                "inline" => {
                    p.inline = true;
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v);
            }
        }
        p
    }
}

/// Swift's `normalize_temp_url_expires`: the Unix time the URL stops
/// working, 0 when unreadable or already past.
fn normalize_expires(value: &str, now: i64) -> i64 {
    let t = value.trim();
    let parsed = t
        .strip_prefix('+')
        .unwrap_or(t)
        .parse::<i64>()
        .ok()
        .filter(|_| !t.is_empty())
        .or_else(|| parse_iso8601(value));
    match parsed {
        Some(e) if e >= now => e,
        _ => 0,
    }
}

/// `%Y-%m-%dT%H:%M:%SZ` as seconds since the epoch.
pub(crate) fn parse_iso8601(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = value.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 61 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Swift's `extract_digest_and_algorithm`: `(digest, hex signature)`.
pub(crate) fn digest_and_signature(sig: &str) -> Option<(String, String)> {
    if let Some((algo, value)) = sig.split_once(':') {
        // Standard or URL-safe base64, padding optional.
        let value = if (value.contains('-') || value.contains('_'))
            && !(value.contains('+') || value.contains('/'))
        {
            value.replace('-', "+").replace('_', "/")
        } else {
            value.to_string()
        };
        let trimmed = value.trim_end_matches('=');
        if trimmed.len() % 4 == 1
            || !trimmed
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        {
            return None;
        }
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_allow_trailing_bits(true)
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
        );
        let bytes = engine.decode(trimmed).ok()?;
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
        return Some((algo.to_string(), hex));
    }
    if value_is_hex(sig) {
        let algo = match sig.len() {
            40 => "sha1",
            64 => "sha256",
            128 => "sha512",
            _ => return None,
        };
        return Some((algo.to_string(), sig.to_string()));
    }
    None
}

fn value_is_hex(s: &str) -> bool {
    s.len().is_multiple_of(2) && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// What a query says of a temporary URL once read as this filter reads
/// it (for tests and fuzzing): the digest named or implied, the signature
/// as lowercase hex, the Unix time it expires (in the future of `now`),
/// and the prefix and IP range it is limited to. `None` when the query is
/// not a usable temporary URL.
pub fn read_query(query: &str, now: i64) -> Option<SignedQuery> {
    let params = TempUrlParams::parse(Some(query));
    let expires = normalize_expires(params.expires.as_deref()?, now);
    if expires == 0 {
        return None;
    }
    let (digest, signature) = digest_and_signature(params.sig.as_deref()?)?;
    Some(SignedQuery {
        digest,
        signature: signature.to_ascii_lowercase(),
        expires,
        prefix: params.prefix,
        ip_range: params.ip_range,
    })
}

/// See [`read_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedQuery {
    pub digest: String,
    pub signature: String,
    pub expires: i64,
    pub prefix: Option<String>,
    pub ip_range: Option<String>,
}

/// Whether `addr` is within a `temp_url_ip_range` value; `None` when the
/// range cannot be read (the URL is then refused).
pub fn ip_allowed(addr: IpAddr, range: &str) -> Option<bool> {
    ip_in_range(addr, range)
}

/// Swift's `get_hmac`: the hex HMAC of `[ip=<range>\n]<method>\n<expires>\n<path>`.
pub fn hmac_hex(
    digest: &str,
    key: &[u8],
    method: &str,
    expires: i64,
    path: &str,
    ip_range: Option<&str>,
) -> Option<String> {
    let mut message = String::new();
    if let Some(ip) = ip_range.filter(|r| !r.is_empty()) {
        message.push_str(&format!("ip={ip}\n"));
    }
    message.push_str(&format!("{method}\n{expires}\n{path}"));
    hmac_hex_of(digest, key, message.as_bytes())
}

/// The hex HMAC of `message` under `key` with `digest` (`sha1`, `sha256`
/// or `sha512`); `None` for another digest.
pub(crate) fn hmac_hex_of(digest: &str, key: &[u8], message: &[u8]) -> Option<String> {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).ok()?;
        m.update(msg);
        Some(m.finalize().into_bytes().to_vec())
    }
    let bytes = match digest {
        "sha1" => mac::<Hmac<sha1::Sha1>>(key, message)?,
        "sha256" => mac::<Hmac<sha2::Sha256>>(key, message)?,
        "sha512" => mac::<Hmac<sha2::Sha512>>(key, message)?,
        _ => return None,
    };
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Comparison whose time does not depend on where the strings differ.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Whether `addr` is in `range` (an address or a network whose host bits
/// are zero, as Python's `ip_network` requires); `None` if unreadable.
fn ip_in_range(addr: IpAddr, range: &str) -> Option<bool> {
    let (net, bits) = match range.split_once('/') {
        Some((n, b)) => (n.parse::<IpAddr>().ok()?, Some(b.parse::<u32>().ok()?)),
        None => (range.parse::<IpAddr>().ok()?, None),
    };
    let (net_bits, addr_bits, width) = match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (u128::from(u32::from(n)), u128::from(u32::from(a)), 32),
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
        (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => {
            // A valid range of the other family: simply not in it.
            let width = if net.is_ipv4() { 32 } else { 128 };
            if bits.is_some_and(|b| b > width) {
                return None;
            }
            return Some(false);
        }
    };
    let bits = bits.unwrap_or(width);
    if bits > width {
        return None;
    }
    let mask: u128 = if bits == 0 {
        0
    } else {
        (u128::MAX << (128 - bits)) >> (128 - width)
    };
    if net_bits & !mask != 0 {
        return None;
    }
    Some(addr_bits & mask == net_bits)
}

fn invalid(method: &Method) -> Resp {
    let mut resp = error_response(
        StatusCode::UNAUTHORIZED,
        Some("401 Unauthorized: Temp URL invalid\n"),
    );
    if method == Method::HEAD {
        *resp.body_mut() = apus_http::empty();
    }
    resp
}

/// Who a valid temporary URL authorizes: its account, or its container.
struct Scope {
    account: String,
    container: Option<String>,
}

impl Authorize for Scope {
    fn authorize<'a>(&'a self, req: AuthRequest<'a>) -> BoxFuture<'a, Result<Grant, Resp>> {
        Box::pin(async move {
            let parts = apus_proto::split_path(req.path, 2, 4, true).ok();
            let allowed = parts.is_some_and(|p| {
                p.get(1).and_then(|a| a.as_deref()) == Some(self.account.as_str())
                    && match &self.container {
                        None => true,
                        Some(c) => p.get(2).and_then(|x| x.as_deref()) == Some(c.as_str()),
                    }
            });
            if allowed {
                Ok(Grant::default())
            } else {
                Err(error_response(StatusCode::UNAUTHORIZED, None))
            }
        })
    }
}

/// `name` matches a pattern list (an entry ending in `*` is a prefix).
fn matches_any(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(&prefix.to_ascii_lowercase()),
        None => name == p.to_ascii_lowercase(),
    })
}

fn clean_headers(headers: &mut HeaderMap, remove: &[String], allow: &[String]) {
    let doomed: Vec<_> = headers
        .keys()
        .filter(|k| !matches_any(k.as_str(), allow) && matches_any(k.as_str(), remove))
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(&k);
    }
}

/// Swift's `disposition_format`.
fn disposition(kind: &str, filename: &str) -> String {
    let spaced = apus_proto::quote(filename).replace("%20", " ");
    format!(
        "{kind}; filename=\"{spaced}\"; filename*=UTF-8''{}",
        apus_proto::quote(filename)
    )
}

impl Service for TempUrl {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        if req.method() == Method::OPTIONS {
            return self.next.call(req);
        }
        let params = TempUrlParams::parse(req.uri().query());
        if params.sig.is_none() && params.expires.is_none() {
            return self.next.call(req);
        }
        Box::pin(self.handle(req, params))
    }
}

impl TempUrl {
    async fn handle(&self, mut req: Req, params: TempUrlParams) -> Resp {
        let method = req.method().clone();
        let now = apus_core::clock::since_epoch().as_secs() as i64;
        let expires = params
            .expires
            .as_deref()
            .map(|e| normalize_expires(e, now))
            .unwrap_or(0);
        let sig = params.sig.clone().unwrap_or_default();
        if sig.is_empty() || expires == 0 {
            return invalid(&method);
        }
        let Some((digest, sig)) = digest_and_signature(&sig) else {
            return invalid(&method);
        };
        if !self.config.allowed_digests.contains(&digest) {
            return invalid(&method);
        }
        let allow_root = (method == Method::GET || method == Method::HEAD)
            && params.prefix.as_deref() == Some("");
        let Some((account, container, object)) = self.path_parts(&req, allow_root) else {
            return invalid(&method);
        };
        if let Some(range) = params.ip_range.as_deref().filter(|r| !r.is_empty()) {
            let client = req
                .extensions()
                .get::<apus_http::RemoteAddr>()
                .map(|a| a.0.ip());
            match client.and_then(|c| ip_in_range(c, range)) {
                Some(true) => {}
                _ => return invalid(&method),
            }
        }
        let env = crate::service::env(&req).subrequest("TU");
        let keys = temp_url_keys(self.info.as_ref(), &env, &account, &container).await;
        if keys.is_empty() {
            return invalid(&method);
        }
        let hmac_path = match &params.prefix {
            None => format!("/v1/{account}/{container}/{object}"),
            Some(prefix) => {
                if !object.starts_with(prefix.as_str()) {
                    return invalid(&method);
                }
                format!("prefix:/v1/{account}/{container}/{prefix}")
            }
        };
        let methods: Vec<&str> = if method == Method::HEAD {
            vec!["HEAD", "GET", "POST", "PUT"]
        } else {
            vec![method.as_str()]
        };
        let ip_range = params.ip_range.as_deref();
        let mut scope = None;
        'found: for m in methods {
            for (key, account_scope) in &keys {
                let Some(expected) =
                    hmac_hex(&digest, key.as_bytes(), m, expires, &hmac_path, ip_range)
                else {
                    continue;
                };
                if constant_time_eq(&sig, &expected) {
                    scope = Some(*account_scope);
                    break 'found;
                }
            }
        }
        let Some(account_scope) = scope else {
            return invalid(&method);
        };
        if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
            if let Some(h) = DISALLOWED_INCOMING
                .iter()
                .find(|h| req.headers().contains_key(**h))
            {
                let shown = apus_proto::title_case(h);
                return error_response(
                    StatusCode::BAD_REQUEST,
                    Some(&format!(
                        "The header '{shown}' is not allowed in this tempurl"
                    )),
                );
            }
        }
        clean_headers(
            req.headers_mut(),
            &self.config.incoming_remove_headers,
            &self.config.incoming_allow_headers,
        );
        // The backend's name for the shunted client timestamp goes too.
        if matches_any("x-timestamp", &self.config.incoming_remove_headers) {
            req.headers_mut().remove("x-backend-inbound-x-timestamp");
        }
        let env = env_mut(&mut req);
        env.authorize = Some(Arc::new(Scope {
            account: account.clone(),
            container: (!account_scope).then(|| container.clone()),
        }));
        env.authorize_override = true;
        env.remote_user = vec![".wsgi.tempurl".to_string()];
        // Only the URL's own parameters go on (a version-id, for one, is
        // not part of what was signed).
        let mut query = vec![
            ("temp_url_sig".to_string(), sig.clone()),
            (
                "temp_url_expires".to_string(),
                params.expires.clone().unwrap_or_default(),
            ),
        ];
        if let Some(p) = &params.prefix {
            query.push(("temp_url_prefix".into(), p.clone()));
        }
        if let Some(f) = params.filename.as_ref().filter(|f| !f.is_empty()) {
            query.push(("filename".into(), f.clone()));
        }
        if params.inline {
            query.push(("inline".into(), String::new()));
        }
        let uri = format!("{}?{}", req.uri().path(), build_query(&query));
        match uri.parse() {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return invalid(&method),
        }
        let raw_path = req.uri().path().to_string();
        let mut resp = self.next.call(req).await;
        clean_headers(
            resp.headers_mut(),
            &self.config.outgoing_remove_headers,
            &self.config.outgoing_allow_headers,
        );
        if !(matches!(method, Method::GET | Method::HEAD) && resp.status().is_success()) {
            return resp;
        }
        let h = resp.headers_mut();
        let generated = header_str(h, "x-backend-content-generator") == Some("staticweb");
        if !generated && object.is_empty() {
            return invalid(&method);
        }
        let existing = h.remove(http::header::CONTENT_DISPOSITION);
        let filename = params.filename.as_deref().filter(|f| !f.is_empty());
        let value = if params.inline || generated {
            match filename {
                Some(f) => disposition("inline", f),
                None => "inline".to_string(),
            }
        } else if let Some(f) = filename {
            disposition("attachment", f)
        } else if let Some(e) = existing {
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        } else {
            let decoded = apus_proto::percent_decode_internal(&raw_path).unwrap_or(raw_path);
            let name = decoded
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            disposition("attachment", &name)
        };
        if let Ok(v) = HeaderValue::from_str(&value.replace('\n', "%0A")) {
            h.insert(http::header::CONTENT_DISPOSITION, v);
        }
        set_header(
            h,
            "expires",
            &apus_core::conditional::format_http_date(expires),
        );
        resp
    }

    /// `(account, container, object)` of a request this filter may grant
    /// (an object, of a configured method; the container itself when
    /// `allow_root`).
    fn path_parts(&self, req: &Req, allow_root: bool) -> Option<(String, String, String)> {
        if !self
            .config
            .methods
            .iter()
            .any(|m| m.as_str() == req.method().as_str())
        {
            return None;
        }
        let decoded = apus_proto::percent_decode_internal(req.uri().path()).ok()?;
        let min = if allow_root { 3 } else { 4 };
        let parts = apus_proto::split_path(&decoded, min, 4, true).ok()?;
        let version = parts.first()?.clone()?;
        let account = parts.get(1)?.clone()?;
        let container = parts.get(2)?.clone()?;
        let object = parts.get(3).cloned().flatten().unwrap_or_default();
        if version != "v1" || (!allow_root && object.trim_matches('/').is_empty()) {
            return None;
        }
        Some((account, container, object))
    }
}

/// The `Temp-URL-Key` metadata that may sign for a container, Swift's
/// `get_tempurl_keys_from_metadata` of the account, then the container:
/// `(key, is an account key)`. Shared by tempurl and formpost.
pub(crate) async fn temp_url_keys(
    info: &dyn InfoLookup,
    env: &crate::service::Env,
    account: &str,
    container: &str,
) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let a = info.account_info(env, account).await;
    for name in [
        "x-account-meta-temp-url-key",
        "x-account-meta-temp-url-key-2",
    ] {
        if let Some(k) = crate::service::header_text(&a.headers, name) {
            out.push((k, true));
        }
    }
    let c = info.container_info(env, account, container).await;
    for name in [
        "x-container-meta-temp-url-key",
        "x-container-meta-temp-url-key-2",
    ] {
        if let Some(k) = crate::service::header_text(&c.headers, name) {
            out.push((k, false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_swift_s() {
        // swift.common.digest.get_hmac('GET', '/v1/a/c/o', 1700000000, 'key', 'sha256')
        assert_eq!(
            hmac_hex("sha256", b"key", "GET", 1_700_000_000, "/v1/a/c/o", None).unwrap(),
            "0e0dfb378fbece5568d9b999f5d0cb4ae3cd6864c7842e94326e6035b00234ce"
        );
    }

    #[test]
    fn signatures_are_read_in_hex_or_base64() {
        let hex = "0".repeat(40);
        assert_eq!(
            digest_and_signature(&hex),
            Some(("sha1".to_string(), hex.clone()))
        );
        assert_eq!(digest_and_signature(&"0".repeat(41)), None);
        assert_eq!(digest_and_signature("zz"), None);
        assert_eq!(
            digest_and_signature("sha256:AAEC"),
            Some(("sha256".into(), "000102".into()))
        );
        // URL-safe alphabet and missing padding are both fine.
        assert_eq!(
            digest_and_signature("sha512:-_8"),
            Some(("sha512".into(), "fbff".into()))
        );
        assert_eq!(digest_and_signature("sha512:A"), None);
        assert_eq!(digest_and_signature("sha512:A*AA"), None);
    }

    #[test]
    fn expiry_is_a_unix_time_or_iso_8601() {
        assert_eq!(normalize_expires("200", 100), 200);
        assert_eq!(normalize_expires("99", 100), 0);
        assert_eq!(normalize_expires("x", 100), 0);
        assert_eq!(
            normalize_expires("2030-01-01T00:00:00Z", 100),
            1_893_456_000
        );
        assert_eq!(normalize_expires("2030-02-30T00:00:00Z", 100), 0);
    }

    #[test]
    fn ip_ranges_are_networks() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(ip_in_range(a, "10.1.2.3"), Some(true));
        assert_eq!(ip_in_range(a, "10.1.0.0/16"), Some(true));
        assert_eq!(ip_in_range(a, "10.2.0.0/16"), Some(false));
        // Host bits set: Python's ip_network refuses it.
        assert_eq!(ip_in_range(a, "10.1.2.3/16"), None);
        assert_eq!(ip_in_range(a, "::1"), Some(false));
        assert_eq!(ip_in_range(a, "bogus"), None);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_in_range(v6, "2001:db8::/32"), Some(true));
    }

    #[test]
    fn headers_are_cleaned_by_pattern() {
        let mut h = HeaderMap::new();
        for n in ["x-object-meta-secret", "x-object-meta-public-ok", "etag"] {
            h.insert(
                http::HeaderName::from_static(n),
                HeaderValue::from_static("v"),
            );
        }
        let c = TempUrlConfig::default();
        clean_headers(
            &mut h,
            &c.outgoing_remove_headers,
            &c.outgoing_allow_headers,
        );
        assert!(!h.contains_key("x-object-meta-secret"));
        assert!(h.contains_key("x-object-meta-public-ok"));
        assert!(h.contains_key("etag"));
    }

    #[test]
    fn dispositions_quote_as_swift_does() {
        assert_eq!(
            disposition("attachment", "a b\u{e9}.txt"),
            "attachment; filename=\"a b%C3%A9.txt\"; filename*=UTF-8''a%20b%C3%A9.txt"
        );
    }
}
