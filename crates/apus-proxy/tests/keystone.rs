//! Keystone authentication through the whole proxy: the `authtoken` and
//! `keystoneauth` filters against a fake Keystone that knows a table of
//! tokens and counts the requests it gets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use apus_proxy::keystone::KeystoneConfig;
use apus_proxy::Pipeline;
use apus_testkit::{Cluster, ClusterOptions};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use support::{hdrs, Answer, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SERVICE_TOKEN: &str = "service-token";
const FUTURE: &str = "2099-01-01T00:00:00.000000Z";
const PAST: &str = "2001-01-01T00:00:00.000000Z";

/// A Keystone v3 that issues the proxy's service token for the right
/// password and validates the tokens in its table.
#[derive(Default)]
struct FakeKeystone {
    tokens: Mutex<HashMap<String, Value>>,
    posts: AtomicUsize,
    gets: AtomicUsize,
    /// How long each token validation takes, in milliseconds.
    validate_delay_ms: AtomicUsize,
}

fn token_doc(
    project: (&str, &str, &str),
    user: (&str, &str, &str),
    roles: &[&str],
    expires: &str,
) -> Value {
    json!({"token": {
        "expires_at": expires,
        "methods": ["password"],
        "user": {"id": user.0, "name": user.1, "domain": {"id": user.2, "name": user.2}},
        "project": {"id": project.0, "name": project.1,
                    "domain": {"id": project.2, "name": project.2}},
        "roles": roles.iter().map(|r| json!({"id": format!("{r}-id"), "name": r})).collect::<Vec<_>>(),
    }})
}

impl FakeKeystone {
    fn add(&self, token: &str, doc: Value) {
        self.tokens.lock().unwrap().insert(token.to_string(), doc);
    }

    async fn start(self: &Arc<Self>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move { me.serve(stream).await });
            }
        });
        addr
    }

    /// One request per connection, answered with `Connection: close`.
    async fn serve(&self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
        if request_line.starts_with("GET /v3/auth/tokens") {
            let ms = self.validate_delay_ms.load(Ordering::SeqCst) as u64;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let (status, extra, doc) = self.answer(&request_line, &headers, &body);
        let text = doc.to_string();
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn answer(
        &self,
        request_line: &str,
        headers: &HashMap<String, String>,
        body: &Value,
    ) -> (&'static str, String, Value) {
        let not_found = (
            "404 Not Found",
            String::new(),
            json!({"error": {"code": 404}}),
        );
        let unauthorized = (
            "401 Unauthorized",
            String::new(),
            json!({"error": {"code": 401}}),
        );
        if request_line.starts_with("POST /v3/auth/tokens") {
            self.posts.fetch_add(1, Ordering::SeqCst);
            let user = &body["auth"]["identity"]["password"]["user"];
            if user["name"] != "swift" || user["password"] != "secret" {
                return unauthorized;
            }
            let doc = token_doc(
                ("svc", "service", "default"),
                ("swift-id", "swift", "default"),
                &["service"],
                FUTURE,
            );
            return (
                "201 Created",
                format!("X-Subject-Token: {SERVICE_TOKEN}\r\n"),
                doc,
            );
        }
        if request_line.starts_with("GET /v3/auth/tokens") {
            self.gets.fetch_add(1, Ordering::SeqCst);
            if headers.get("x-auth-token").map(String::as_str) != Some(SERVICE_TOKEN) {
                return unauthorized;
            }
            let subject = headers.get("x-subject-token").cloned().unwrap_or_default();
            return match self.tokens.lock().unwrap().get(&subject) {
                Some(doc) => ("200 OK", String::new(), doc.clone()),
                None => not_found,
            };
        }
        not_found
    }
}

fn keystone_pipeline() -> Pipeline {
    Pipeline::from_names(&[
        "catch_errors",
        "proxy-logging",
        "cache",
        "tempurl",
        "authtoken",
        "keystoneauth",
        "proxy-server",
    ])
    .unwrap()
}

async fn cluster_with(keystone: KeystoneConfig) -> Cluster {
    Cluster::start_with(ClusterOptions {
        proxy: Box::new(move |config| {
            config.pipeline = keystone_pipeline();
            config.keystone = keystone;
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap()
}

fn keystone_at(addr: SocketAddr) -> KeystoneConfig {
    KeystoneConfig {
        auth_url: format!("http://{addr}"),
        username: "swift".into(),
        password: "secret".into(),
        ..KeystoneConfig::default()
    }
}

async fn as_token(c: &Client, token: &str, method: Method, path: &str) -> Answer {
    as_token_with(c, token, method, path, &[]).await
}

async fn as_token_with(
    c: &Client,
    token: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut h: HeaderMap = hdrs(headers);
    if !token.is_empty() {
        h.insert("x-auth-token", token.parse().unwrap());
    }
    let body = if method == Method::PUT {
        Bytes::from_static(b"data")
    } else {
        Bytes::new()
    };
    c.send(method, path, h, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_tokens_and_rules_through_the_proxy() {
    let ks = Arc::new(FakeKeystone::default());
    let p1 = ("p1", "proj1", "default");
    let p2 = ("p2", "proj2", "default");
    ks.add(
        "alice",
        token_doc(
            p1,
            ("u-alice", "alice", "default"),
            &["SwiftOperator"],
            FUTURE,
        ),
    );
    ks.add(
        "carol",
        token_doc(p1, ("u-carol", "carol", "default"), &["member"], FUTURE),
    );
    ks.add(
        "bob",
        token_doc(p2, ("u-bob", "bob", "default"), &["member"], FUTURE),
    );
    // Same names as bob's, but user and project in another domain.
    ks.add(
        "mallory",
        token_doc(
            ("p9", "proj2", "d2"),
            ("u-m", "bob", "d2"),
            &["member"],
            FUTURE,
        ),
    );
    ks.add(
        "root",
        token_doc(
            ("ops", "ops", "default"),
            ("u-root", "root", "default"),
            &["ResellerAdmin"],
            FUTURE,
        ),
    );
    ks.add(
        "expired",
        token_doc(p1, ("u-alice", "alice", "default"), &["admin"], PAST),
    );
    let addr = ks.start().await;
    let cluster = cluster_with(keystone_at(addr)).await;
    let c = Client::new(&cluster);

    // An operator of the project owns its account.
    let a = as_token(&c, "alice", Method::PUT, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = as_token(&c, "alice", Method::PUT, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = as_token(&c, "alice", Method::GET, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"o\n");
    // Only the service token was fetched, once; each user token was
    // validated once and then came from the cache.
    assert_eq!(ks.posts.load(Ordering::SeqCst), 1);
    assert_eq!(ks.gets.load(Ordering::SeqCst), 1);

    // Without an operator role, or from another project: 403.
    let a = as_token(&c, "carol", Method::GET, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = as_token(&c, "bob", Method::GET, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Nobody deletes their own account.
    let a = as_token(&c, "alice", Method::DELETE, "/v1/AUTH_p1").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // No token, an unknown one, an expired one: anonymous, refused.
    for token in ["", "nonsense", "expired"] {
        let a = as_token(&c, token, Method::GET, "/v1/AUTH_p1/c/o").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "token {token:?}");
        let a = as_token(&c, token, Method::PUT, "/v1/AUTH_p1/c/x").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "token {token:?}");
    }
    // Invalid tokens are remembered too.
    let gets = ks.gets.load(Ordering::SeqCst);
    let a = as_token(&c, "nonsense", Method::GET, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ks.gets.load(Ordering::SeqCst), gets);

    // A reseller admin reaches any account.
    let a = as_token(&c, "root", Method::GET, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::OK);
    let a = as_token(&c, "root", Method::PUT, "/v1/AUTH_p3/c").await;
    assert_eq!(a.status, StatusCode::CREATED);

    // The owner grants another project's user by ids.
    let a = as_token_with(
        &c,
        "alice",
        Method::POST,
        "/v1/AUTH_p1/c",
        &[("x-container-read", "p2:u-bob")],
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = as_token(&c, "bob", Method::GET, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"data");
    let a = as_token(&c, "bob", Method::PUT, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // A member may not set ACLs: the header is ignored or refused.
    let a = as_token_with(
        &c,
        "bob",
        Method::POST,
        "/v1/AUTH_p1/c",
        &[("x-container-read", ".r:*")],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // By names: only for a user and project in the default domain.
    let a = as_token_with(
        &c,
        "alice",
        Method::POST,
        "/v1/AUTH_p1/c",
        &[("x-container-read", "proj2:bob")],
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = as_token(&c, "bob", Method::GET, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::OK);
    let a = as_token(&c, "mallory", Method::GET, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // Referrer rules: anyone reads objects; listings need .rlistings.
    let a = as_token_with(
        &c,
        "alice",
        Method::POST,
        "/v1/AUTH_p1/c",
        &[("x-container-read", ".r:*")],
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = as_token(&c, "", Method::GET, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::OK);
    let a = as_token(&c, "", Method::GET, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = as_token(&c, "nonsense", Method::GET, "/v1/AUTH_p1/c/o").await;
    assert_eq!(a.status, StatusCode::OK);

    // The account records its project's domain, and shows it.
    let a = as_token(&c, "alice", Method::HEAD, "/v1/AUTH_p1").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(a.header("x-account-project-domain-id"), "default");
    assert_eq!(a.header("x-account-sysmeta-project-domain-id"), "");
    // AUTH_p3 was created by the reseller admin: its domain is unknown,
    // so names in its ACLs are not honoured; ids are.
    let a = as_token(&c, "root", Method::HEAD, "/v1/AUTH_p3").await;
    assert_eq!(a.header("x-account-project-domain-id"), "_unknown");
    for (acl, status) in [
        ("proj2:bob", StatusCode::FORBIDDEN),
        ("p2:u-bob", StatusCode::NO_CONTENT),
    ] {
        let a = as_token_with(
            &c,
            "root",
            Method::POST,
            "/v1/AUTH_p3/c",
            &[("x-container-read", acl)],
        )
        .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        // An empty listing: 204 when allowed.
        let a = as_token(&c, "bob", Method::GET, "/v1/AUTH_p3/c").await;
        assert_eq!(a.status, status, "{acl}");
    }

    // Accounts outside our reseller prefix are nobody's but a reseller
    // admin's.
    let a = as_token(&c, "alice", Method::GET, "/v1/OTHER_p1").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = as_token(&c, "", Method::GET, "/v1/OTHER_p1").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Still one service token for everything.
    assert_eq!(ks.posts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_out_of_reach_is_503_for_tokens_only() {
    // A port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cluster = cluster_with(keystone_at(addr)).await;
    let c = Client::new(&cluster);
    let a = as_token(&c, "alice", Method::GET, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    // Without a token there is nothing to ask Keystone.
    let a = as_token(&c, "", Method::GET, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // A Keystone that takes connections and never answers: the request
    // waits no longer than the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let config = KeystoneConfig {
        http_timeout: std::time::Duration::from_millis(300),
        ..keystone_at(addr)
    };
    let cluster = cluster_with(config).await;
    let c = Client::new(&cluster);
    let started = std::time::Instant::now();
    let a = as_token(&c, "alice", Method::GET, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_and_a_wrong_service_password() {
    let ks = Arc::new(FakeKeystone::default());
    let p1 = ("p1", "proj1", "default");
    ks.add(
        "alice",
        token_doc(p1, ("u-alice", "alice", "default"), &["admin"], FUTURE),
    );
    ks.add(
        "glance",
        token_doc(
            ("svc", "service", "default"),
            ("u-glance", "glance", "default"),
            &["service"],
            FUTURE,
        ),
    );
    let addr = ks.start().await;
    let mut config = keystone_at(addr);
    config.reseller_prefixes = vec!["AUTH_".into(), "SERVICE_".into()];
    config.prefix_roles.insert(
        "SERVICE_".into(),
        apus_proxy::keystone::PrefixRoles {
            operator_roles: vec!["admin".into()],
            service_roles: vec!["service".into()],
            project_reader_roles: Vec::new(),
        },
    );
    let cluster = cluster_with(config).await;
    let c = Client::new(&cluster);
    let a = as_token(&c, "alice", Method::PUT, "/v1/SERVICE_p1/c").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = as_token_with(
        &c,
        "alice",
        Method::PUT,
        "/v1/SERVICE_p1/c",
        &[("x-service-token", "glance")],
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    // An invalid service token leaves the caller anonymous.
    let a = as_token_with(
        &c,
        "alice",
        Method::PUT,
        "/v1/AUTH_p1/c",
        &[("x-service-token", "nonsense")],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = as_token(&c, "alice", Method::PUT, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::CREATED);

    // The proxy's own password is wrong: no token can be checked.
    let mut config = keystone_at(addr);
    config.password = "wrong".into();
    let cluster = cluster_with(config).await;
    let c = Client::new(&cluster);
    let a = as_token(&c, "alice", Method::GET, "/v1/AUTH_p1/c").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_delay_auth_decision_a_bad_token_is_refused_at_once() {
    let ks = Arc::new(FakeKeystone::default());
    let addr = ks.start().await;
    let mut config = keystone_at(addr);
    config.delay_auth_decision = false;
    let cluster = cluster_with(config).await;
    let c = Client::new(&cluster);
    for token in ["", "nonsense"] {
        let a = as_token(&c, token, Method::GET, "/v1/AUTH_p1/c/o").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            a.header("www-authenticate"),
            format!("Keystone uri=\"http://{addr}\"")
        );
    }
}

/// Keystone and tempauth side by side, as Swift documents it: Keystone's
/// filters first, over their own reseller prefix (`KEY_`), tempauth after
/// them over `AUTH_`. Each authority decides for its own accounts only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_and_tempauth_side_by_side_with_their_own_prefixes() {
    let ks = Arc::new(FakeKeystone::default());
    ks.add(
        "alice",
        token_doc(
            ("p1", "proj1", "default"),
            ("u-alice", "alice", "default"),
            &["admin"],
            FUTURE,
        ),
    );
    let addr = ks.start().await;
    let keystone = KeystoneConfig {
        reseller_prefixes: vec!["KEY_".into()],
        ..keystone_at(addr)
    };
    let cluster = Cluster::start_with(ClusterOptions {
        proxy: Box::new(move |config| {
            config.pipeline = Pipeline::from_names(&[
                "catch_errors",
                "proxy-logging",
                "cache",
                "authtoken",
                "keystoneauth",
                "tempauth",
                "proxy-server",
            ])
            .unwrap();
            config.keystone = keystone;
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let mut tempauth = Client::new(&cluster);
    tempauth.login("test:tester", "testing").await;
    let tempauth_token = tempauth.token.clone().unwrap();
    let c = Client::new(&cluster);

    // Each user in its own account.
    let put = as_token(&c, "alice", Method::PUT, "/v1/KEY_p1/c").await;
    assert!(
        put.status.is_success(),
        "keystone user, KEY_ account: {}",
        put.status
    );
    let put = as_token(&c, &tempauth_token, Method::PUT, "/v1/AUTH_test/c").await;
    assert!(
        put.status.is_success(),
        "tempauth user, AUTH_ account: {}",
        put.status
    );
    let obj = as_token(&c, "alice", Method::PUT, "/v1/KEY_p1/c/o").await;
    assert_eq!(obj.status, StatusCode::CREATED);

    // Neither in the other's.
    let cross = as_token(&c, "alice", Method::GET, "/v1/AUTH_test/c").await;
    // Each refusal is a 403: the caller was identified (by the other
    // authority), as in Swift.
    assert_eq!(
        cross.status,
        StatusCode::FORBIDDEN,
        "keystone token, tempauth account"
    );
    let cross = as_token(&c, &tempauth_token, Method::GET, "/v1/KEY_p1/c").await;
    assert_eq!(
        cross.status,
        StatusCode::FORBIDDEN,
        "tempauth token, keystone account"
    );
    let anonymous = as_token(&c, "", Method::GET, "/v1/KEY_p1/c/o").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

/// A burst of requests with one new token: Keystone is asked once, and
/// every request gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_a_new_token_share_one_validation() {
    let ks = Arc::new(FakeKeystone::default());
    ks.add(
        "alice",
        token_doc(
            ("p1", "proj1", "default"),
            ("u-alice", "alice", "default"),
            &["SwiftOperator"],
            FUTURE,
        ),
    );
    ks.validate_delay_ms.store(300, Ordering::SeqCst);
    let addr = ks.start().await;
    let cluster = cluster_with(keystone_at(addr)).await;
    let c = Arc::new(Client::new(&cluster));
    let put = as_token(&c, "alice", Method::PUT, "/v1/AUTH_p1/c").await;
    assert!(put.status.is_success(), "{}", put.status);
    assert_eq!(ks.gets.load(Ordering::SeqCst), 1);

    ks.add(
        "alice2",
        token_doc(
            ("p1", "proj1", "default"),
            ("u-alice", "alice", "default"),
            &["SwiftOperator"],
            FUTURE,
        ),
    );
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { as_token(&c, "alice2", Method::HEAD, "/v1/AUTH_p1/c").await })
        })
        .collect();
    for task in burst {
        assert_eq!(task.await.unwrap().status, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        ks.gets.load(Ordering::SeqCst),
        2,
        "eight requests with one new token asked Keystone once"
    );
}
