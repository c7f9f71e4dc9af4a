//! The limits Swift's eventlet server puts on a request's head, over raw
//! TCP: a request line of 8,192 bytes or more is 414, a header line of
//! 8,192 bytes or more is 400, more than 65,536 bytes of header lines is
//! 400, more than 200 header fields is 431; each answer closes the
//! connection, and whatever the client pipelined after it is never served.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use apus_http::{full, serve, Body, Handler};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

struct Ok200;

impl Handler for Ok200 {
    async fn call(&self, req: Request<Incoming>) -> Response<Body> {
        Response::new(full(format!("served {}", req.uri().path())))
    }
}

struct Server {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, Arc::new(Ok200), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Sends `request` on a fresh connection and reads until the server
    /// closes it (or 5 s pass, reported as `<open>` at the end).
    async fn raw(&self, request: &[u8]) -> String {
        let mut s = TcpStream::connect(&self.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        if read.is_err() {
            text.push_str("<open>");
        }
        text
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// A request line of exactly `total` bytes, CRLF included.
fn request_line(total: usize) -> String {
    let fixed = "GET /x?q= HTTP/1.1\r\n".len();
    format!("GET /x?q={} HTTP/1.1\r\n", "a".repeat(total - fixed))
}

/// A header line of exactly `total` bytes, CRLF included.
fn header_line(name: &str, total: usize) -> String {
    let fixed = name.len() + ": \r\n".len();
    format!("{name}: {}\r\n", "v".repeat(total - fixed))
}

fn status_line(answer: &str) -> &str {
    answer.split("\r\n").next().unwrap_or("")
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// The answer is a refusal with `status` that closed the connection: one
/// response and nothing after it.
fn assert_refused(answer: &str, status: &str) {
    assert!(
        status_line(answer).starts_with(&format!("HTTP/1.1 {status}")),
        "{}",
        status_line(answer)
    );
    assert!(!answer.contains("served"), "{answer}");
    assert!(!answer.ends_with("<open>"), "connection left open");
}

/// A refusal of ours (not hyper's): it says so in a text body and
/// announces that the connection closes.
fn assert_explained(answer: &str, words: &str) {
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(body(answer).contains(words), "{answer}");
}

#[tokio::test]
async fn request_line_limit_is_414() {
    let srv = Server::start().await;
    let ok = format!("{}Host: x\r\nConnection: close\r\n\r\n", request_line(8191));
    let answer = srv.raw(ok.as_bytes()).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    for total in [8192, 9000, 70_000] {
        // A second request pipelined behind the refused one is not served.
        let req = format!(
            "{}Host: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
            request_line(total)
        );
        let answer = srv.raw(req.as_bytes()).await;
        assert_refused(&answer, "414");
        // Past 65,534 bytes the target is too long for `http::Uri` and
        // hyper answers the same 414 itself, with no body.
        if total < 65_535 {
            assert_explained(&answer, "8191");
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn header_line_limit_is_400() {
    let srv = Server::start().await;
    let ok = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        header_line("X-Long", 8191)
    );
    let answer = srv.raw(ok.as_bytes()).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    for total in [8192, 20_000] {
        let req = format!(
            "GET /x HTTP/1.1\r\nHost: x\r\n{}\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
            header_line("X-Long", total)
        );
        let answer = srv.raw(req.as_bytes()).await;
        assert_refused(&answer, "400 Header Line Too Long");
        assert_explained(&answer, "8191");
    }
    srv.stop().await;
}

#[tokio::test]
async fn header_bytes_limit_is_400() {
    let srv = Server::start().await;
    // Host and Connection lines, then n lines of 1,000 bytes: 65 fit in
    // 65,536 bytes, 66 do not.
    let head = |n: usize| {
        let mut req = String::from("GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..n {
            req.push_str(&header_line(&format!("X-H{i:03}"), 1000));
        }
        req.push_str("\r\n");
        req
    };
    let answer = srv.raw(head(65).as_bytes()).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    let answer = srv.raw(head(66).as_bytes()).await;
    assert_refused(&answer, "400 Headers Too Large");
    assert_explained(&answer, "65536");
    srv.stop().await;
}

#[tokio::test]
async fn header_count_limit_is_431() {
    let srv = Server::start().await;
    // `n` header fields in all, Host and Connection included.
    let head = |n: usize| {
        let mut req = String::from("GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..n - 2 {
            req.push_str(&format!("X-H{i}: v\r\n"));
        }
        req.push_str("\r\n");
        req
    };
    let answer = srv.raw(head(200).as_bytes()).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
    for n in [201, 300, 1000] {
        let answer = srv.raw(head(n).as_bytes()).await;
        assert_refused(&answer, "431 Too many headers");
        assert_explained(&answer, "200");
    }
    srv.stop().await;
}

#[tokio::test]
async fn keep_alive_survives_requests_within_the_limits() {
    let srv = Server::start().await;
    let one = format!(
        "{}Host: x\r\n{}\r\n",
        request_line(8191),
        header_line("X-Long", 8191)
    );
    let req = format!("{one}{one}GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = srv.raw(req.as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 3, "{answer}");
    assert!(answer.ends_with("served /last"), "{answer}");
    srv.stop().await;
}
