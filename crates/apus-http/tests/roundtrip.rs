//! The server and the client against each other on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use apus_http::body::collect_limited;
use apus_http::{channel, full, serve, BackendClient, Body, ClientConfig, Handler};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Echo;

impl Handler for Echo {
    async fn call(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let method = req.method().to_string();
        let nheaders = req.headers().len();
        match path.as_str() {
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Response::new(full("late"))
            }
            "/abort" => {
                let (tx, body) = channel(2, Some(10));
                tokio::spawn(async move {
                    let _ = tx.send(Bytes::from_static(b"12345")).await;
                    tx.abort(std::io::Error::other("disk said no")).await;
                });
                let mut resp = Response::new(body);
                resp.headers_mut()
                    .insert("content-length", HeaderValue::from_static("10"));
                resp
            }
            _ => {
                // Stream the request body back through a bounded channel.
                let (tx, body) = channel(4, None);
                let mut incoming = req.into_body();
                tokio::spawn(async move {
                    while let Some(frame) = incoming.frame().await {
                        match frame {
                            Ok(f) => {
                                if let Ok(d) = f.into_data() {
                                    if tx.send(d).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e) => return tx.abort(std::io::Error::other(e)).await,
                        }
                    }
                });
                let mut resp = Response::new(body);
                let h = resp.headers_mut();
                h.insert("x-path", HeaderValue::from_str(&path).unwrap());
                h.insert("x-method", HeaderValue::from_str(&method).unwrap());
                h.insert("x-headers", HeaderValue::from(nheaders));
                resp
            }
        }
    }
}

async fn start() -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, Arc::new(Echo), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, tx, task)
}

#[tokio::test]
async fn streams_both_ways_with_many_headers_any_method_and_raw_paths() {
    let (addr, stop, task) = start().await;
    let client = BackendClient::new(ClientConfig::default());
    // 198 headers, then Host and Transfer-Encoding: the most Swift accepts.
    let mut headers = HeaderMap::new();
    for i in 0..198 {
        headers.insert(
            http::HeaderName::from_bytes(format!("x-object-meta-h{i}").as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
    }
    // A 4 MiB body produced chunk by chunk.
    let (tx, body) = channel(2, None);
    tokio::spawn(async move {
        for i in 0..64u8 {
            if tx.send(Bytes::from(vec![i; 65536])).await.is_err() {
                return;
            }
        }
    });
    let resp = client
        .request(
            Method::from_bytes(b"REPLICATE").unwrap(),
            &addr,
            "/sda/1/a%20b/c/o%2Fx//y",
            headers,
            body,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-path"], "/sda/1/a%20b/c/o%2Fx//y");
    assert_eq!(resp.headers()["x-method"], "REPLICATE");
    assert!(
        resp.headers()["x-headers"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            >= 198
    );
    let data = collect_limited(resp.into_body(), 8 << 20).await.unwrap();
    assert_eq!(data.len(), 64 * 65536);
    assert!(data
        .chunks(65536)
        .enumerate()
        .all(|(i, c)| c.iter().all(|b| *b == i as u8)));

    // The pooled connection is reused for a second request.
    let resp = client
        .request(Method::GET, &addr, "/x", HeaderMap::new(), full("hi"))
        .await
        .unwrap();
    assert_eq!(collect_limited(resp.into_body(), 10).await.unwrap(), "hi");
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn node_timeout_and_aborted_bodies() {
    let (addr, stop, task) = start().await;
    let client = BackendClient::new(ClientConfig {
        node_timeout: Duration::from_millis(100),
        ..Default::default()
    });
    let err = client
        .request(
            Method::GET,
            &addr,
            "/slow",
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    let resp = client
        .request(
            Method::GET,
            &addr,
            "/abort",
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(collect_limited(resp.into_body(), 100).await.is_err());

    // Nobody listening: a connect error, quickly.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let err = client
        .request(
            Method::GET,
            &dead_addr,
            "/",
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, apus_http::ClientError::Connect { .. }),
        "{err}"
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let (addr, stop, task) = start().await;
    let client = BackendClient::new(ClientConfig::default());
    let c2 = client.clone();
    let a2 = addr.clone();
    let inflight = tokio::spawn(async move {
        c2.request(
            Method::GET,
            &a2,
            "/slow",
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let resp = inflight.await.unwrap().unwrap();
    assert_eq!(collect_limited(resp.into_body(), 10).await.unwrap(), "late");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
