//! What reaches a handler, and what a client reads back, when the bytes on
//! the connection are unusual: raw non-ASCII targets, 204 answers with
//! `Content-Length: 0`, smuggling attempts and slow clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apus_http::{full, serve_with, Body, Handler, ServerConfig};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Answers by path, and records each request's method, target and body.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, String, Vec<u8>)>>,
}

impl Handler for Recorder {
    async fn call(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().to_string();
        let target = req.uri().to_string();
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let body = body
            .map(|b| b.to_vec())
            .unwrap_or_else(|_| b"<bad body>".to_vec());
        self.seen
            .lock()
            .unwrap()
            .push((method, target.clone(), body.clone()));
        let mut resp = Response::new(full(""));
        match target.as_str() {
            "/empty" => {
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp.headers_mut()
                    .insert("content-length", HeaderValue::from_static("0"));
            }
            "/bare-204" => *resp.status_mut() = StatusCode::NO_CONTENT,
            "/forged" => {
                resp.headers_mut()
                    .insert("x-apus-cl-zero", HeaderValue::from_static("0"));
            }
            _ => {
                // Echo the body, so a client can see it comes back as sent.
                resp = Response::new(full(body));
            }
        }
        resp
    }
}

struct Server {
    addr: String,
    recorder: Arc<Recorder>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: ServerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let recorder = Arc::new(Recorder::default());
        let (tx, rx) = oneshot::channel::<()>();
        let handler = recorder.clone();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            serve_with(listener, handler, stopped, config)
                .await
                .unwrap();
        });
        Server {
            addr,
            recorder,
            stop: Some(tx),
            task,
        }
    }

    fn seen(&self) -> Vec<(String, String, Vec<u8>)> {
        self.recorder.seen.lock().unwrap().clone()
    }

    /// Writes `bytes` on a fresh connection and reads until the server
    /// closes it (bounded).
    async fn exchange(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(&self.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer));
        read.await
            .expect("the server closes the connection")
            .unwrap();
        answer
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap();
    }
}

fn text(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer).into_owned()
}

/// The status lines in an answer holding several responses.
fn statuses(answer: &str) -> Vec<&str> {
    answer
        .split("\r\n")
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .collect()
}

#[tokio::test]
async fn a_first_request_may_carry_raw_non_ascii_bytes() {
    let server = Server::start(ServerConfig::default()).await;
    let answer = server
        .exchange(b"PUT /v1/caf\xc3\xa9/\xff\xfe?q=\xe9 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n\xff\xfe\xc3\xa9")
        .await;
    assert!(
        text(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        text(&answer)
    );
    // The handler sees the same bytes percent-encoded; the body is as sent.
    assert_eq!(
        server.seen(),
        vec![(
            "PUT".to_string(),
            "/v1/caf%C3%A9/%FF%FE?q=%E9".to_string(),
            b"\xff\xfe\xc3\xa9".to_vec()
        )]
    );
    server.stop().await;
}

#[tokio::test]
async fn later_requests_on_a_connection_are_not_rewritten() {
    let server = Server::start(ServerConfig::default()).await;
    // The first body holds what looks like a request line with raw bytes;
    // it stays body. The second request's raw bytes get hyper's 400 and
    // end the connection: nothing after it is served.
    let answer = server
        .exchange(
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\nGET /\xff HTTP/1.1\r\n\r\n\
GET /b/\xff HTTP/1.1\r\nHost: x\r\n\r\n\
GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
    let answer = text(&answer);
    assert_eq!(
        statuses(&answer),
        ["HTTP/1.1 200 OK", "HTTP/1.1 400 Bad Request"],
        "{answer}"
    );
    assert_eq!(
        server.seen(),
        vec![(
            "POST".to_string(),
            "/a".to_string(),
            b"GET /\xff HTTP/1.1\r\n\r\n".to_vec()
        )]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_204_keeps_its_content_length_zero() {
    let server = Server::start(ServerConfig::default()).await;
    // Keep-alive: a body holding the mark's bytes is echoed unchanged,
    // before and after marked answers, and a handler cannot forge the mark.
    let mark = "\r\nX-Apus-Cl-Zero: 0\r\n";
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n{mark}\
HEAD /empty HTTP/1.1\r\nHost: x\r\n\r\n\
GET /empty HTTP/1.1\r\nHost: x\r\n\r\n\
GET /bare-204 HTTP/1.1\r\nHost: x\r\n\r\n\
GET /forged HTTP/1.1\r\nHost: x\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{mark}",
        n = mark.len()
    );
    let answer = text(&server.exchange(req.as_bytes()).await);
    let responses: Vec<&str> = answer.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(responses.len(), 6, "{answer}");
    for echo in [responses[0], responses[5]] {
        assert!(echo.starts_with("200 OK\r\n"), "{answer}");
        assert!(echo.contains("Content-Length: 21\r\n"), "{answer}");
        assert!(echo.ends_with(mark), "{answer}");
    }
    for empty in [responses[1], responses[2]] {
        assert!(empty.starts_with("204 No Content\r\n"), "{answer}");
        assert!(empty.contains("\r\nContent-Length: 0\r\n"), "{answer}");
        assert!(!empty.to_ascii_lowercase().contains("x-apus"), "{answer}");
    }
    assert!(responses[3].starts_with("204 No Content\r\n"), "{answer}");
    assert!(!responses[3].contains("Content-Length"), "{answer}");
    assert!(responses[4].starts_with("200 OK\r\n"), "{answer}");
    assert!(
        !responses[4].to_ascii_lowercase().contains("x-apus"),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn smuggling_attempts_are_refused() {
    let server = Server::start(ServerConfig::default()).await;
    // Both framings: whichever a front end believed, the hidden request
    // must not be served as one.
    let answer = server
        .exchange(
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n\
0\r\n\r\nGET /hidden HTTP/1.1\r\n\r\n",
        )
        .await;
    // The chunked framing wins (an empty body) and the connection is
    // closed after the answer, so what follows is never read as a request.
    let answer = text(&answer);
    assert_eq!(statuses(&answer), ["HTTP/1.1 200 OK"], "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert_eq!(
        server.seen(),
        vec![("POST".to_string(), "/a".to_string(), Vec::new())]
    );
    // Two different lengths: refused before the handler.
    let before = server.seen().len();
    let answer = server
        .exchange(
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabcGET /hidden HTTP/1.1\r\n\r\n",
        )
        .await;
    let answer = text(&answer);
    assert_eq!(statuses(&answer), ["HTTP/1.1 400 Bad Request"], "{answer}");
    assert_eq!(server.seen().len(), before);
    // A chunk size that overflows: the body fails, nothing hidden runs.
    let answer = server
        .exchange(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
fffffffffffffffff\r\nGET /hidden HTTP/1.1\r\n\r\n",
        )
        .await;
    // The handler's read of the body fails, and nothing hidden runs.
    let answer = text(&answer);
    assert_eq!(statuses(&answer), ["HTTP/1.1 200 OK"], "{answer}");
    let seen = server.seen();
    assert_eq!(seen.len(), before + 1, "{seen:?}");
    assert_eq!(seen[before].1, "/c");
    assert_eq!(seen[before].2, b"<bad body>");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_dropped() {
    let config = ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = Server::start(config).await;
    // Half a request line with raw bytes, then silence: the connection is
    // closed (the read in `exchange` is bounded) and no handler runs.
    let answer = server.exchange(b"GET /\xc3\xa9").await;
    let answer = text(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(server.seen().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_raw_targets_length_is_judged_as_sent() {
    let server = Server::start(ServerConfig::default()).await;
    // `GET /<n raw bytes> HTTP/1.1\r\n` is n + 16 bytes: Swift takes
    // 8,191 and refuses 8,192, whatever the encoding makes of them.
    for (n, want) in [(8175, "HTTP/1.1 200"), (8176, "HTTP/1.1 414")] {
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(0xe9u8, n));
        req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = text(&server.exchange(&req).await);
        assert!(
            answer.starts_with(want),
            "{n}: {}",
            answer.chars().take(80).collect::<String>()
        );
    }
    server.stop().await;
}
