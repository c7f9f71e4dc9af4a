//! A small HTTP client for the proxy's integration tests, and a look at
//! the devices' files.
#![allow(dead_code)]

use apus_http::{full, BackendClient, Body, ClientConfig};
use apus_testkit::Cluster;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

pub struct Client {
    http: BackendClient,
    pub host: String,
    pub token: Option<String>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Client {
    pub fn new(cluster: &Cluster) -> Self {
        Client {
            http: BackendClient::new(ClientConfig::default()),
            host: cluster.proxy_addr.to_string(),
            token: None,
        }
    }

    pub async fn login(&mut self, user: &str, key: &str) -> String {
        let mut h = HeaderMap::new();
        h.insert("x-auth-user", HeaderValue::from_str(user).unwrap());
        h.insert("x-auth-key", HeaderValue::from_str(key).unwrap());
        let a = self.send(Method::GET, "/auth/v1.0", h, Bytes::new()).await;
        assert_eq!(a.status, StatusCode::OK, "login of {user}");
        self.token = Some(a.header("x-auth-token").to_string());
        a.header("x-storage-url").to_string()
    }

    pub async fn send(
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

    /// Sends `body` as it comes (chunked when it has no length).
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: Body,
    ) -> Answer {
        if let Some(t) = &self.token {
            headers.insert("x-auth-token", HeaderValue::from_str(t).unwrap());
        }
        let resp = self
            .http
            .request(method, &self.host, path, headers, body)
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

    pub async fn call(&self, method: Method, path: &str) -> Answer {
        self.send(method, path, HeaderMap::new(), Bytes::new())
            .await
    }
}

pub fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Every `.data` file under `root` in a `policy_dir` (`objects` for
/// policy 0, `objects-1` for policy 1), in path order.
pub fn data_files(root: &std::path::Path, policy_dir: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, policy_dir: &str, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, policy_dir, out);
            } else if p.extension().is_some_and(|x| x == "data")
                && p.components().any(|c| c.as_os_str() == policy_dir)
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, policy_dir, &mut out);
    out.sort();
    out
}
