//! Talking to Keystone: the proxy's own service token, validation of the
//! tokens clients bring (`GET /v3/auth/tokens` with `X-Subject-Token`),
//! and the bounded cache of what validation said.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apus_http::{BackendClient, ClientConfig};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

use super::{KeystoneConfig, KeystoneIdentity};

/// The largest token document read from Keystone (`?nocatalog` keeps
/// them small).
const MAX_TOKEN_BODY: usize = 1 << 20;
/// The service token is renewed this long before it expires.
const SERVICE_TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// What Keystone said about a token.
#[derive(Clone, Debug)]
pub enum Validation {
    Valid(Arc<KeystoneIdentity>),
    /// Unknown, revoked or expired: the token grants nothing.
    Invalid,
    /// Keystone could not be asked (down, timed out, answered nonsense).
    Unavailable,
}

/// What Keystone said about an S3 request's EC2 credential.
#[derive(Clone, Debug)]
pub enum Ec2Check {
    /// The signature is the credential's; its owner, and its secret when
    /// the service user may read it.
    Valid {
        identity: Arc<KeystoneIdentity>,
        secret: Option<String>,
    },
    /// No such credential, or not its signature.
    Invalid,
    Unavailable,
}

struct CacheEntry {
    until: Instant,
    /// `None`: known to be invalid.
    identity: Option<Arc<KeystoneIdentity>>,
}

/// Validation results by token, each until its own deadline, holding at
/// most `capacity` entries: when full, expired entries go first, then
/// arbitrary ones.
pub struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<String, CacheEntry>>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, CacheEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(result)` for a token validated before and not yet due again.
    pub fn get(&self, token: &str) -> Option<Option<Arc<KeystoneIdentity>>> {
        let mut entries = self.entries();
        match entries.get(token) {
            Some(e) if e.until > Instant::now() => Some(e.identity.clone()),
            Some(_) => {
                entries.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, token: &str, identity: Option<Arc<KeystoneIdentity>>, until: Instant) {
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(token) {
            let now = Instant::now();
            entries.retain(|_, e| e.until > now);
            while entries.len() >= self.capacity {
                let Some(key) = entries.keys().next().cloned() else {
                    break;
                };
                entries.remove(&key);
            }
        }
        entries.insert(token.to_string(), CacheEntry { until, identity });
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `2026-12-07T03:47:10Z`, with or without fractional seconds, or with a
/// `+00:00` offset, as seconds since the epoch.
pub(crate) fn parse_expires_at(value: &str) -> Option<i64> {
    let value = value.trim();
    let base = value
        .strip_suffix('Z')
        .or_else(|| value.strip_suffix("+00:00"))?;
    let base = match base.find('.') {
        Some(dot) if base[dot + 1..].bytes().all(|b| b.is_ascii_digit()) => &base[..dot],
        Some(_) => return None,
        None => base,
    };
    crate::tempurl::parse_iso8601(&format!("{base}Z"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut v = v;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().map(str::to_string)
}

/// The identity and expiry (seconds since the epoch) of a v3 token
/// document; `None` when it lacks a user or an expiry.
pub(crate) fn parse_token(doc: &Value) -> Option<(KeystoneIdentity, i64)> {
    let token = doc.get("token")?;
    let expires = parse_expires_at(token.get("expires_at")?.as_str()?)?;
    let user_id = text(token, &["user", "id"])?;
    let roles = token
        .get("roles")
        .and_then(Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.get("name").and_then(Value::as_str))
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let identity = KeystoneIdentity {
        user_id,
        user_name: text(token, &["user", "name"]).unwrap_or_default(),
        user_domain_id: text(token, &["user", "domain", "id"]),
        user_domain_name: text(token, &["user", "domain", "name"]),
        project_id: text(token, &["project", "id"]),
        project_name: text(token, &["project", "name"]),
        project_domain_id: text(token, &["project", "domain", "id"]),
        project_domain_name: text(token, &["project", "domain", "name"]),
        roles,
        service_roles: Vec::new(),
    };
    Some((identity, expires))
}

/// Where Keystone is: `host:port` and the path its API is under.
fn split_auth_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        return None;
    }
    let host = if host.contains(':') && !host.ends_with(']') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Some((host, path.to_string()))
}

/// An answer from Keystone, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// Validates tokens with Keystone, holding the proxy's service token.
pub struct KeystoneClient {
    config: KeystoneConfig,
    http: BackendClient,
    /// `None` when `auth_url` is not an `http://` address.
    target: Option<(String, String)>,
    /// The service token and when to renew it; the lock is held while a
    /// new one is fetched, so one fetch serves all waiting requests.
    service_token: tokio::sync::Mutex<Option<(String, Instant)>>,
    pub cache: TokenCache,
    /// Validations under way, by token: requests arriving with the same
    /// new token wait for the one answer instead of each asking Keystone
    /// (a client's burst of requests would otherwise be a burst on
    /// Keystone).
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Validation>>>>,
}

impl KeystoneClient {
    pub fn new(config: KeystoneConfig) -> Self {
        let http = BackendClient::new(ClientConfig {
            connect_timeout: config.http_timeout,
            node_timeout: config.http_timeout,
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 8,
        });
        let target = split_auth_url(&config.auth_url);
        if target.is_none() {
            tracing::error!(auth_url = %config.auth_url, "keystone: auth_url must be http://host[:port][/path]");
        }
        KeystoneClient {
            cache: TokenCache::new(config.token_cache_size),
            config,
            http,
            target,
            service_token: tokio::sync::Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    async fn send(
        &self,
        method: Method,
        headers: HeaderMap,
        body: Option<Value>,
    ) -> Option<Answer> {
        self.send_to(method, "/v3/auth/tokens?nocatalog", headers, body)
            .await
    }

    /// One request to `<auth_url><api_path>`; `None` when Keystone gave
    /// no complete answer in time.
    async fn send_to(
        &self,
        method: Method,
        api_path: &str,
        headers: HeaderMap,
        body: Option<Value>,
    ) -> Option<Answer> {
        let (host, base) = self.target.as_ref()?;
        let path = format!("{base}{api_path}");
        let mut headers = headers;
        headers.insert("accept", HeaderValue::from_static("application/json"));
        let body = match body {
            Some(v) => {
                let bytes = v.to_string();
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                headers.insert("content-length", HeaderValue::from(bytes.len()));
                apus_http::full(bytes)
            }
            None => apus_http::empty(),
        };
        let exchange = async {
            let resp = self
                .http
                .request(method, host, &path, headers, body)
                .await
                .ok()?;
            let (parts, body) = resp.into_parts();
            let bytes = apus_http::body::collect_limited(body, MAX_TOKEN_BODY)
                .await
                .ok()?;
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Some(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        // A timeout is no answer.
        tokio::time::timeout(self.config.http_timeout, exchange)
            .await
            .ok()
            .flatten()
    }

    /// The proxy's own token, fetched with the service user's password
    /// when there is none or it is about to expire (`renew`: the one we
    /// had was refused).
    async fn service_token(&self, renew: bool) -> Option<String> {
        let mut held = self.service_token.lock().await;
        if let Some((token, renew_at)) = held.as_ref() {
            if !renew && *renew_at > Instant::now() {
                return Some(token.clone());
            }
        }
        *held = None;
        let c = &self.config;
        let body = serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {
                        "name": c.username,
                        "password": c.password,
                        "domain": {"id": c.user_domain_id},
                    }},
                },
                "scope": {"project": {
                    "name": c.project_name,
                    "domain": {"id": c.project_domain_id},
                }},
            }
        });
        let answer = self
            .send(Method::POST, HeaderMap::new(), Some(body))
            .await?;
        if !answer.status.is_success() {
            tracing::error!(status = %answer.status, "keystone: the service user could not get a token");
            return None;
        }
        let token = answer
            .headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())?
            .to_string();
        let left = answer
            .body
            .get("token")
            .and_then(|t| t.get("expires_at"))
            .and_then(Value::as_str)
            .and_then(parse_expires_at)
            .map(|at| Duration::from_secs(at.saturating_sub(unix_now()).max(0) as u64))
            .unwrap_or(self.config.token_cache_time);
        let renew_at = Instant::now() + left.saturating_sub(SERVICE_TOKEN_MARGIN);
        *held = Some((token.clone(), renew_at));
        Some(token)
    }

    /// A request with the service token, renewed once if Keystone
    /// refuses it; `None` when Keystone cannot be asked.
    async fn send_as_service(
        &self,
        method: Method,
        api_path: &str,
        body: Option<Value>,
    ) -> Option<Answer> {
        let mut renew = false;
        loop {
            let service = self.service_token(renew).await?;
            let service = HeaderValue::from_str(&service).ok()?;
            let mut headers = HeaderMap::new();
            headers.insert("x-auth-token", service);
            let answer = self
                .send_to(method.clone(), api_path, headers, body.clone())
                .await?;
            if answer.status == StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            return Some(answer);
        }
    }

    /// Swift's `s3token`: asks Keystone (`POST /v3/s3tokens`) whether an
    /// S3 request's signature was made with the EC2 credential `access`
    /// names, and whose it is; then fetches that credential's secret
    /// (`GET /v3/users/<id>/credentials/OS-EC2/<access>`) so the request's
    /// own checks (and a streaming body's chunk signatures) can run here.
    pub async fn s3_token(&self, access: &str, string_to_sign: &[u8], signature: &str) -> Ec2Check {
        use base64::Engine as _;
        let body = serde_json::json!({"credentials": {
            "access": access,
            "token": base64::engine::general_purpose::URL_SAFE.encode(string_to_sign),
            "signature": signature,
        }});
        let Some(answer) = self
            .send_as_service(Method::POST, "/v3/s3tokens", Some(body))
            .await
        else {
            return Ec2Check::Unavailable;
        };
        match answer.status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                return Ec2Check::Invalid
            }
            _ => return Ec2Check::Unavailable,
        }
        let Some((identity, _)) = parse_token(&answer.body) else {
            return Ec2Check::Unavailable;
        };
        let path = format!(
            "/v3/users/{}/credentials/OS-EC2/{}",
            apus_proto::path::quote(&identity.user_id),
            apus_proto::path::quote(access)
        );
        let secret = match self.send_as_service(Method::GET, &path, None).await {
            Some(a) if a.status == StatusCode::OK => text(&a.body, &["credential", "secret"]),
            _ => None,
        };
        if secret.is_none() {
            tracing::warn!(
                "keystone: the service user may not read EC2 secrets; S3 requests with \
                 streaming (aws-chunked) signatures cannot be checked"
            );
        }
        Ec2Check::Valid {
            identity: Arc::new(identity),
            secret,
        }
    }

    /// What Keystone says about `token`, from the cache when it can; one
    /// question to Keystone however many requests bring the same new
    /// token at once.
    pub async fn validate(&self, token: &str) -> Validation {
        if let Some(cached) = self.cache.get(token) {
            return match cached {
                Some(identity) => Validation::Valid(identity),
                None => Validation::Invalid,
            };
        }
        let cell = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight.entry(token.to_string()).or_default().clone()
        };
        // If the request asking is dropped, the next waiter asks instead.
        let answer = cell
            .get_or_init(|| self.validate_uncached(token))
            .await
            .clone();
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.get(token).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(token);
        }
        answer
    }

    /// Asks Keystone about `token` (cached answers are recorded here).
    async fn validate_uncached(&self, token: &str) -> Validation {
        let Ok(subject) = HeaderValue::from_str(token) else {
            return Validation::Invalid;
        };
        let mut renew = false;
        let answer = loop {
            let Some(service) = self.service_token(renew).await else {
                return Validation::Unavailable;
            };
            let Ok(service) = HeaderValue::from_str(&service) else {
                return Validation::Unavailable;
            };
            let mut headers = HeaderMap::new();
            headers.insert("x-auth-token", service);
            headers.insert("x-subject-token", subject.clone());
            let Some(answer) = self.send(Method::GET, headers, None).await else {
                return Validation::Unavailable;
            };
            // Our own token was refused (revoked, expired early): get a
            // new one and ask once more.
            if answer.status == StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            break answer;
        };
        let now = Instant::now();
        let negative_until = now + self.config.token_cache_time;
        match answer.status {
            StatusCode::OK => match parse_token(&answer.body) {
                Some((identity, expires)) => {
                    let left = expires - unix_now();
                    if left <= 0 {
                        self.cache.insert(token, None, negative_until);
                        return Validation::Invalid;
                    }
                    let keep = Duration::from_secs(left as u64).min(self.config.token_cache_time);
                    let identity = Arc::new(identity);
                    self.cache.insert(token, Some(identity.clone()), now + keep);
                    Validation::Valid(identity)
                }
                None => Validation::Unavailable,
            },
            StatusCode::NOT_FOUND => {
                self.cache.insert(token, None, negative_until);
                Validation::Invalid
            }
            // Refused our own, freshly fetched token: a fault of ours or
            // Keystone's, not the client's (keystonemiddleware's
            // `ServiceError`); nothing is cached.
            _ => Validation::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times_as_keystone_writes_them() {
        assert_eq!(parse_expires_at("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_expires_at("1970-01-01T00:01:00.000000Z"), Some(60));
        assert_eq!(parse_expires_at("1970-01-01T00:01:00+00:00"), Some(60));
        assert_eq!(
            parse_expires_at("2026-12-07T03:47:10.123Z"),
            Some(1_796_615_230)
        );
        assert_eq!(parse_expires_at("1970-01-01T00:01:00"), None);
        assert_eq!(parse_expires_at("1970-01-01T00:01:00.x1Z"), None);
        assert_eq!(parse_expires_at("tomorrow"), None);
    }

    #[test]
    fn token_documents_give_identities() {
        let doc = serde_json::json!({"token": {
            "expires_at": "2030-01-01T00:00:00.000000Z",
            "user": {"id": "u1", "name": "alice", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "p1", "name": "proj", "domain": {"id": "d2", "name": "Other"}},
            "roles": [{"id": "r1", "name": "SwiftOperator"}, {"id": "r2", "name": "member"}],
        }});
        let (id, expires) = parse_token(&doc).unwrap();
        assert_eq!(expires, parse_expires_at("2030-01-01T00:00:00Z").unwrap());
        assert_eq!(id.user_id, "u1");
        assert_eq!(id.user_name, "alice");
        assert_eq!(id.user_domain_id.as_deref(), Some("default"));
        assert_eq!(id.project_id.as_deref(), Some("p1"));
        assert_eq!(id.project_domain_id.as_deref(), Some("d2"));
        assert_eq!(id.roles, ["swiftoperator", "member"]);
        // No project: an unscoped token.
        let doc = serde_json::json!({"token": {
            "expires_at": "2030-01-01T00:00:00Z", "user": {"id": "u1"}}});
        let (id, _) = parse_token(&doc).unwrap();
        assert_eq!(id.project_id, None);
        assert!(id.roles.is_empty());
        // No user or no expiry: not a token we can trust.
        assert!(parse_token(&serde_json::json!({"token": {"user": {"id": "u"}}})).is_none());
        assert!(
            parse_token(&serde_json::json!({"token": {"expires_at": "2030-01-01T00:00:00Z"}}))
                .is_none()
        );
        assert!(parse_token(&serde_json::json!([1, 2])).is_none());
    }

    #[test]
    fn auth_urls() {
        assert_eq!(
            split_auth_url("http://127.0.0.1:5000"),
            Some(("127.0.0.1:5000".into(), String::new()))
        );
        assert_eq!(
            split_auth_url("http://keystone/identity/"),
            Some(("keystone:80".into(), "/identity".into()))
        );
        assert_eq!(split_auth_url("https://keystone:5000"), None);
        assert_eq!(split_auth_url("http:///v3"), None);
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_expired_entries_first() {
        let cache = TokenCache::new(3);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let id = Arc::new(KeystoneIdentity::default());
        cache.insert("old", Some(id.clone()), now);
        cache.insert("a", Some(id.clone()), later);
        cache.insert("b", None, later);
        assert_eq!(cache.len(), 3);
        // Full: the expired entry makes room.
        cache.insert("c", Some(id.clone()), later);
        assert_eq!(cache.len(), 3);
        assert!(cache.get("old").is_none());
        assert!(matches!(cache.get("a"), Some(Some(_))));
        assert!(matches!(cache.get("b"), Some(None)));
        // Full of live entries: one of them goes, never the bound.
        for i in 0..100 {
            cache.insert(&format!("t{i}"), None, later);
            assert!(cache.len() <= 3);
        }
        assert!(matches!(cache.get("t99"), Some(None)));
        // Replacing an entry needs no room.
        cache.insert("t99", Some(id), later);
        assert!(matches!(cache.get("t99"), Some(Some(_))));
        assert_eq!(cache.len(), 3);
    }
}
