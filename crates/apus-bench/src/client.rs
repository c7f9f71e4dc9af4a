//! The client side of a run: logging in (Swift v1.0 auth, or S3 keys),
//! sending one request and draining its answer, and request bodies
//! generated as they are sent.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Context as _};
use apus_http::{empty, BackendClient, Body, ClientConfig};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;

use crate::sigv4;

/// The endpoint apus serve answers by default, for each API.
pub const DEFAULT_SWIFT_AUTH: &str = "http://127.0.0.1:8080/auth/v1.0";
pub const DEFAULT_S3_ENDPOINT: &str = "http://127.0.0.1:8080";

/// Which API a run speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Api {
    /// The Swift API, after a v1.0 login.
    Swift,
    /// S3, path-style, every request signed with AWS Signature V4 for
    /// this region.
    S3 { region: String },
}

impl Api {
    pub fn name(&self) -> &'static str {
        match self {
            Api::Swift => "swift",
            Api::S3 { .. } => "s3",
        }
    }
}

/// Where a run sends its requests and as whom.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The v1.0 auth URL (`http://host:port/auth/v1.0`), or with S3 the
    /// endpoint alone (`http://host:port`).
    pub url: String,
    /// The Swift user, or the S3 access key.
    pub user: String,
    /// The Swift key, or the S3 secret key.
    pub key: String,
    pub api: Api,
}

/// How requests are authorized.
enum Auth {
    /// Swift: paths under the storage URL, with the v1.0 token.
    Swift {
        /// The storage URL's path, `/v1/AUTH_test`.
        base: String,
        /// Replaced when the store stops honouring it (see [`Session::call`]).
        token: std::sync::RwLock<HeaderValue>,
        /// Where and as whom to log in again.
        endpoint: Endpoint,
    },
    /// S3: path-style `/bucket/key`, each request signed.
    S3(sigv4::Signer),
}

/// What came back for one request.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// Bytes of response body read.
    pub body_len: u64,
}

/// A logged-in client. Shared by every task of a run.
pub struct Session {
    http: BackendClient,
    host: String,
    auth: Auth,
    /// Times a 401 made it log in again and retry.
    reauthentications: std::sync::atomic::AtomicU64,
}

/// Splits `http://host:port/path` into host and path.
pub fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    Ok((host.to_string(), path.to_string()))
}

impl Session {
    /// Logs in: a v1.0 auth request for Swift; for S3 nothing is sent
    /// (every request carries its own signature).
    pub async fn login(endpoint: &Endpoint, connections: usize) -> anyhow::Result<Session> {
        let http = BackendClient::new(ClientConfig {
            connect_timeout: Duration::from_secs(5),
            node_timeout: Duration::from_secs(120),
            // Idle connections kept for reuse: one per task in flight, so
            // no request waits for a new connection in steady state.
            pool_max_idle_per_host: connections.max(1),
            ..ClientConfig::default()
        });
        let (host, path) = split_url(&endpoint.url)?;
        if let Api::S3 { region } = &endpoint.api {
            if path != "/" {
                bail!(
                    "S3 wants the endpoint alone, e.g. http://127.0.0.1:8080, not {}",
                    endpoint.url
                );
            }
            let signer = sigv4::Signer::new(&endpoint.user, &endpoint.key, region);
            return Ok(Session {
                http,
                host,
                auth: Auth::S3(signer),
                reauthentications: Default::default(),
            });
        }
        let (base, token) = swift_login(&http, &host, &path, endpoint).await?;
        Ok(Session {
            http,
            host,
            auth: Auth::Swift {
                base,
                token: std::sync::RwLock::new(token),
                endpoint: endpoint.clone(),
            },
            reauthentications: Default::default(),
        })
    }

    /// How many times a 401 made this session log in again.
    pub fn reauthentications(&self) -> u64 {
        self.reauthentications
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Waits before each new try of a login that met a server error or no
/// answer, doubling as python-swiftclient's do: about a minute in all.
/// Swift's tempauth keeps tokens in memcached, and after a burst of
/// memcached timeouts its client leaves the server out for a minute,
/// answering every login 503 meanwhile. Other refusals (401, 403) are
/// final.
#[cfg(not(test))]
const LOGIN_BACKOFF: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
];
/// The same number of tries, quickly.
#[cfg(test)]
const LOGIN_BACKOFF: [Duration; 6] = [Duration::from_millis(10); 6];

/// A v1.0 login: the storage URL's path and the token.
async fn swift_login(
    http: &BackendClient,
    host: &str,
    path: &str,
    endpoint: &Endpoint,
) -> anyhow::Result<(String, HeaderValue)> {
    let mut waits = LOGIN_BACKOFF.iter();
    loop {
        match swift_login_once(http, host, path, endpoint).await {
            Err(LoginError::Transient(e)) => match waits.next() {
                Some(wait) => {
                    eprintln!("{e:#}; trying again in {} s", wait.as_secs_f64());
                    tokio::time::sleep(*wait).await;
                }
                None => return Err(e),
            },
            Err(LoginError::Final(e)) => return Err(e),
            Ok(done) => return Ok(done),
        }
    }
}

/// Why a login failed: worth another try, or not.
enum LoginError {
    Transient(anyhow::Error),
    Final(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for LoginError {
    fn from(e: E) -> Self {
        LoginError::Final(e.into())
    }
}

async fn swift_login_once(
    http: &BackendClient,
    host: &str,
    path: &str,
    endpoint: &Endpoint,
) -> Result<(String, HeaderValue), LoginError> {
    let mut h = HeaderMap::new();
    h.insert(
        "x-auth-user",
        HeaderValue::from_str(&endpoint.user).context("the user is not a header value")?,
    );
    h.insert(
        "x-auth-key",
        HeaderValue::from_str(&endpoint.key).context("the key is not a header value")?,
    );
    let resp = http
        .request(Method::GET, host, path, h, empty())
        .await
        .with_context(|| format!("auth request to {}", endpoint.url))
        .map_err(LoginError::Transient)?;
    if !resp.status().is_success() {
        let e = anyhow::anyhow!("auth at {} failed: {}", endpoint.url, resp.status());
        return Err(if resp.status().is_server_error() {
            LoginError::Transient(e)
        } else {
            LoginError::Final(e)
        });
    }
    let token = resp
        .headers()
        .get("x-auth-token")
        .cloned()
        .context("the auth response has no X-Auth-Token")?;
    let url = resp
        .headers()
        .get("x-storage-url")
        .and_then(|v| v.to_str().ok())
        .context("the auth response has no X-Storage-Url")?
        .to_string();
    // The storage URL's host may be a name this machine cannot
    // resolve (a public name behind a balancer): requests go to the
    // auth URL's host, under the storage URL's path.
    let (_, base) = split_url(&url)?;
    Ok((base, token))
}

impl Session {
    /// Sends `method path` (`/container/object`, or `/bucket/key` in S3,
    /// with any query string) with the body `body()` makes, and reads the
    /// whole response body. An error is a failure to get an answer at all
    /// (connection, timeout, truncated body). A Swift store that answers
    /// 401 to a token it gave (tokens expire; Swift's tempauth keeps them
    /// in memcached, which may lose them) gets one new login and the
    /// request once more, as python-swiftclient does.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: impl Fn() -> Body,
    ) -> anyhow::Result<Reply> {
        let reply = self
            .attempt(method.clone(), path, headers.clone(), body())
            .await?;
        let Auth::Swift {
            token, endpoint, ..
        } = &self.auth
        else {
            return Ok(reply);
        };
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        let (_, auth_path) = split_url(&endpoint.url)?;
        let (_, fresh) = swift_login(&self.http, &self.host, &auth_path, endpoint).await?;
        if let Ok(mut held) = token.write() {
            *held = fresh;
        }
        self.reauthentications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.attempt(method, path, headers, body()).await
    }

    async fn attempt(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: Body,
    ) -> anyhow::Result<Reply> {
        let target = match &self.auth {
            Auth::Swift { base, token, .. } => {
                let token = token
                    .read()
                    .map_err(|_| anyhow::anyhow!("the token lock is poisoned"))?
                    .clone();
                headers.insert("x-auth-token", token);
                format!("{base}{path}")
            }
            Auth::S3(signer) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let date = sigv4::amz_date(now);
                let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
                // `UNSIGNED-PAYLOAD`: the body is left out of the
                // signature, as many SDKs send it over TLS, so the client
                // spends no CPU hashing bodies (nor the server checking a
                // body hash) and the figures measure the store, not SHA-256.
                let authorization = signer.authorization(&sigv4::Request {
                    method: method.as_str(),
                    path: path_only,
                    query,
                    headers: &[
                        ("host", &self.host),
                        ("x-amz-content-sha256", sigv4::UNSIGNED_PAYLOAD),
                        ("x-amz-date", &date),
                    ],
                    payload_hash: sigv4::UNSIGNED_PAYLOAD,
                });
                headers.insert(http::header::HOST, HeaderValue::from_str(&self.host)?);
                headers.insert(
                    "x-amz-content-sha256",
                    HeaderValue::from_static(sigv4::UNSIGNED_PAYLOAD),
                );
                headers.insert("x-amz-date", HeaderValue::from_str(&date)?);
                headers.insert(
                    http::header::AUTHORIZATION,
                    HeaderValue::from_str(&authorization)?,
                );
                path.to_string()
            }
        };
        let resp = self
            .http
            .request(method, &self.host, &target, headers, body)
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut body_len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                body_len += data.len() as u64;
            }
        }
        Ok(Reply { status, body_len })
    }

    /// `PUT path` with a generated body of `len` bytes.
    pub async fn put(&self, path: &str, len: u64) -> anyhow::Result<Reply> {
        self.call(Method::PUT, path, content_length(len), || pattern_body(len))
            .await
    }

    /// A bodiless request.
    pub async fn send(&self, method: Method, path: &str) -> anyhow::Result<Reply> {
        self.call(method, path, HeaderMap::new(), empty).await
    }

    /// Creates a container (bucket), in `policy` when given (Swift only).
    pub async fn create_container(&self, name: &str, policy: Option<&str>) -> anyhow::Result<()> {
        let mut headers = content_length(0);
        if let Some(policy) = policy {
            headers.insert(
                "x-storage-policy",
                HeaderValue::from_str(policy).context("the policy is not a header value")?,
            );
        }
        let reply = self
            .call(Method::PUT, &format!("/{name}"), headers, empty)
            .await
            .with_context(|| format!("creating container {name}"))?;
        if !reply.status.is_success() {
            bail!("creating container {name}: {}", reply.status);
        }
        Ok(())
    }

    /// Deletes a container (bucket); one already gone counts as deleted.
    /// Failures are retried for a few seconds, for the usual one is 409,
    /// "not empty": a store may update a listing only after it has
    /// answered the DELETEs of the objects in it.
    pub async fn delete_container(&self, name: &str) -> anyhow::Result<()> {
        const TRIES: u64 = 8;
        let path = format!("/{name}");
        let mut last = String::new();
        for attempt in 1..=TRIES {
            match self.send(Method::DELETE, &path).await {
                Ok(reply) if reply.status.is_success() || reply.status == StatusCode::NOT_FOUND => {
                    return Ok(())
                }
                Ok(reply) => last = reply.status.to_string(),
                Err(e) => last = format!("{e:#}"),
            }
            if attempt < TRIES {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
        bail!("deleting container {name}: {last}")
    }

    /// The path of a listing of at most `limit` names of `container`, as
    /// JSON in Swift (S3 lists in XML, ListObjectsV2).
    pub fn listing_path(&self, container: &str, limit: u32) -> String {
        match self.auth {
            Auth::Swift { .. } => format!("/{container}?format=json&limit={limit}"),
            Auth::S3(_) => format!("/{container}?list-type=2&max-keys={limit}"),
        }
    }
}

/// A `Content-Length: n` header map.
pub fn content_length(n: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
    h
}

/// What generated bodies are made of, sent slice by slice.
static FILLER: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// A body of `len` bytes generated as it is sent, so even a huge upload
/// needs no memory for its data.
pub fn pattern_body(len: u64) -> Body {
    PatternBody {
        left: len,
        chunk: Bytes::from_static(&FILLER),
    }
    .boxed()
}

struct PatternBody {
    left: u64,
    chunk: Bytes,
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        let (host, path) = split_url("http://127.0.0.1:8080/auth/v1.0").unwrap();
        assert_eq!(
            (host.as_str(), path.as_str()),
            ("127.0.0.1:8080", "/auth/v1.0")
        );
        let (host, path) = split_url("http://s3.local:9000").unwrap();
        assert_eq!((host.as_str(), path.as_str()), ("s3.local:9000", "/"));
        assert!(split_url("https://example.com/auth/v1.0").is_err());
        assert!(split_url("http:///auth").is_err());
    }

    /// A Swift whose tempauth lost the first token it gave: it honours
    /// only the second.
    #[derive(Default)]
    struct ForgetfulSwift {
        logins: std::sync::atomic::AtomicUsize,
        /// Logins answered 503 before any is served.
        unavailable: std::sync::atomic::AtomicUsize,
        /// Every request to the auth path, answered or refused.
        auth_requests: std::sync::atomic::AtomicUsize,
        bodies: std::sync::Mutex<Vec<usize>>,
    }

    impl apus_http::Handler for ForgetfulSwift {
        async fn call(&self, req: http::Request<hyper::body::Incoming>) -> http::Response<Body> {
            use std::sync::atomic::Ordering;
            let mut resp = http::Response::new(empty());
            if req.uri().path() == "/auth/v1.0" {
                self.auth_requests.fetch_add(1, Ordering::SeqCst);
                let busy = self
                    .unavailable
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                if busy.is_ok() {
                    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    return resp;
                }
                if req.headers().get("x-auth-key").is_none_or(|k| k != "k") {
                    *resp.status_mut() = StatusCode::UNAUTHORIZED;
                    return resp;
                }
                let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
                let h = resp.headers_mut();
                h.insert(
                    "x-auth-token",
                    HeaderValue::from_str(&format!("tok{n}")).unwrap(),
                );
                h.insert(
                    "x-storage-url",
                    HeaderValue::from_static("http://swift.example:8080/v1/AUTH_t"),
                );
                return resp;
            }
            // `/locked` refuses every token.
            let honoured = req
                .headers()
                .get("x-auth-token")
                .is_some_and(|t| t == "tok2")
                && req.uri().path() != "/v1/AUTH_t/locked";
            let path_ok = req.uri().path() == "/v1/AUTH_t/c/o";
            let body = req.into_body().collect().await.unwrap().to_bytes();
            self.bodies.lock().unwrap().push(body.len());
            *resp.status_mut() = match (honoured, path_ok) {
                (false, _) => StatusCode::UNAUTHORIZED,
                (true, true) => StatusCode::CREATED,
                (true, false) => StatusCode::NOT_FOUND,
            };
            resp
        }
    }

    /// A [`ForgetfulSwift`] serving on a port of its own, and an endpoint
    /// with the user and key it accepts.
    struct Running {
        swift: std::sync::Arc<ForgetfulSwift>,
        endpoint: Endpoint,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Running {
        async fn start() -> Running {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let swift = std::sync::Arc::new(ForgetfulSwift::default());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(apus_http::serve(listener, swift.clone(), async {
                let _ = stopped.await;
            }));
            let endpoint = Endpoint {
                url: format!("http://{addr}/auth/v1.0"),
                user: "t:u".into(),
                key: "k".into(),
                api: Api::Swift,
            };
            Running {
                swift,
                endpoint,
                stop,
                server,
            }
        }

        async fn stop(self) {
            let _ = self.stop.send(());
            self.server.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_401_logs_in_again_and_sends_the_request_once_more() {
        let running = Running::start().await;
        let (swift, endpoint) = (running.swift.clone(), running.endpoint.clone());
        let session = Session::login(&endpoint, 2).await.unwrap();
        // The first token is refused: a new login, and the whole body again.
        let reply = session.put("/c/o", 100_000).await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(session.reauthentications(), 1);
        assert_eq!(*swift.bodies.lock().unwrap(), vec![100_000, 100_000]);
        // The new token is kept for what follows.
        let reply = session.put("/c/o", 10).await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(session.reauthentications(), 1);
        assert_eq!(swift.logins.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Once only: a 401 that a new login does not cure is the answer.
        let reply = session.send(Method::GET, "/locked").await.unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(session.reauthentications(), 2);
        assert_eq!(swift.bodies.lock().unwrap().len(), 5);
        running.stop().await;
    }

    #[tokio::test]
    async fn a_login_met_by_a_server_error_is_tried_again_and_a_refusal_is_not() {
        use std::sync::atomic::Ordering;
        let running = Running::start().await;
        let (swift, mut endpoint) = (running.swift.clone(), running.endpoint.clone());
        swift.unavailable.store(2, Ordering::SeqCst);
        assert!(Session::login(&endpoint, 1).await.is_ok(), "third try");
        assert_eq!(swift.logins.load(Ordering::SeqCst), 1);

        swift
            .unavailable
            .store(LOGIN_BACKOFF.len() + 1, Ordering::SeqCst);
        let err = Session::login(&endpoint, 1).await.err().unwrap();
        assert!(err.to_string().contains("503"), "{err}");
        assert_eq!(
            swift.unavailable.load(Ordering::SeqCst),
            0,
            "every try made"
        );

        endpoint.key = "wrong".into();
        let before = swift.auth_requests.load(Ordering::SeqCst);
        let err = Session::login(&endpoint, 1).await.err().unwrap();
        assert!(err.to_string().contains("401"), "{err}");
        assert_eq!(
            swift.auth_requests.load(Ordering::SeqCst) - before,
            1,
            "a refusal is not tried again"
        );
        running.stop().await;
    }

    #[tokio::test]
    async fn pattern_bodies_are_as_long_as_asked() {
        for len in [0u64, 1, 65_536, 65_537, 3 << 20] {
            let body = pattern_body(len).collect().await.unwrap().to_bytes();
            assert_eq!(body.len() as u64, len);
            assert!(body.iter().all(|b| *b == b'x'));
        }
    }
}
