//! The public API end to end against an in-process cluster.

use apus_http::{full, BackendClient, Body, ClientConfig};
use apus_testkit::Cluster;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use md5::Digest;

struct Client {
    http: BackendClient,
    host: String,
    token: Option<String>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Client {
    fn new(cluster: &Cluster) -> Self {
        Client {
            http: BackendClient::new(ClientConfig::default()),
            host: cluster.proxy_addr.to_string(),
            token: None,
        }
    }

    #[allow(dead_code)]
    async fn login(&mut self, user: &str, key: &str) -> String {
        let mut h = HeaderMap::new();
        h.insert("x-auth-user", HeaderValue::from_str(user).unwrap());
        h.insert("x-auth-key", HeaderValue::from_str(key).unwrap());
        let a = self.send(Method::GET, "/auth/v1.0", h, Bytes::new()).await;
        assert_eq!(a.status, StatusCode::OK, "login of {user}");
        self.token = Some(a.header("x-auth-token").to_string());
        a.header("x-storage-url").to_string()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Answer {
        if let Some(t) = &self.token {
            headers.insert("x-auth-token", HeaderValue::from_str(t).unwrap());
        }
        if !body.is_empty() || method == Method::PUT {
            headers.insert("content-length", HeaderValue::from(body.len()));
        }
        let b: Body = full(body);
        let resp = self
            .http
            .request(method, &self.host, path, headers, b)
            .await
            .expect("request");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str) -> Answer {
        self.send(method, path, HeaderMap::new(), Bytes::new())
            .await
    }
}

fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_and_object_round_trip() {
    let cluster = Cluster::start().await.unwrap();
    let c = Client::new(&cluster);
    let a = c.call(Method::PUT, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c.call(Method::PUT, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::ACCEPTED);

    let data = Bytes::from_static(b"hello, apus");
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/photos/a/b.txt",
            hdrs(&[("x-object-meta-color", "blue")]),
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let md5 = format!("{:x}", md5::Md5::digest(&data));
    assert_eq!(a.header("etag"), md5);
    let a = c.call(Method::GET, "/v1/AUTH_test/photos/a/b.txt").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, data);
    assert_eq!(a.header("content-type"), "text/plain");
    assert_eq!(a.header("x-object-meta-color"), "blue");

    let a = c
        .send(
            Method::GET,
            "/v1/AUTH_test/photos/a/b.txt",
            hdrs(&[("range", "bytes=7-")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], b"apus");

    let a = c
        .call(Method::GET, "/v1/AUTH_test/photos?format=json")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing[0]["name"], "a/b.txt");
    assert_eq!(listing[0]["bytes"], 11);

    let a = c.call(Method::HEAD, "/v1/AUTH_test").await;
    assert!(a.status.is_success());
    assert_eq!(a.header("x-account-container-count"), "1");

    let a = c.call(Method::DELETE, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = c.call(Method::DELETE, "/v1/AUTH_test/photos/a/b.txt").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/photos/a/b.txt").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = c.call(Method::DELETE, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, "/v1/AUTH_test/photos").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    cluster.stop().await.unwrap();
}
