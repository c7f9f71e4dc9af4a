//! Rate limits end to end against an in-process cluster. The limits are
//! set so low (one request per 100 s) that a second request would have to
//! wait far past the one-second `max_sleep_time_seconds`, whatever the
//! machine's speed: the tests never depend on timing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use apus_proxy::ratelimit::RateLimitConfig;
use apus_testkit::{Cluster, ClusterOptions};
use bytes::Bytes;
use http::{Method, StatusCode};
use support::{hdrs, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn cluster(ratelimit: RateLimitConfig) -> (Cluster, Client) {
    let cluster = Cluster::start_with(ClusterOptions {
        proxy: Box::new(move |config| {
            config.ratelimit = ratelimit;
            // Object counts as the limits see them: never cached.
            config.recheck_container_existence = Duration::ZERO;
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    (cluster, c)
}

fn strict(config: RateLimitConfig) -> RateLimitConfig {
    RateLimitConfig {
        max_sleep_time_seconds: 1.0,
        ..config
    }
}

async fn put(c: &Client, path: &str) -> StatusCode {
    c.send(Method::PUT, path, hdrs(&[]), Bytes::from_static(b"x"))
        .await
        .status
}

fn rate_limited() -> StatusCode {
    StatusCode::from_u16(498).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_writes_past_the_containers_rate_are_refused_498() {
    let (cluster, c) = cluster(strict(RateLimitConfig {
        container_ratelimits: vec![(1, 0.01)],
        ..RateLimitConfig::default()
    }))
    .await;
    assert_eq!(put(&c, "/v1/AUTH_test/c").await, StatusCode::CREATED);
    assert_eq!(put(&c, "/v1/AUTH_test/other").await, StatusCode::CREATED);
    // An empty container is not limited.
    assert_eq!(put(&c, "/v1/AUTH_test/c/first").await, StatusCode::CREATED);
    // One object: one write per 100 s.
    assert_eq!(put(&c, "/v1/AUTH_test/c/second").await, StatusCode::CREATED);
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/c/third",
            hdrs(&[]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, rate_limited());
    assert_eq!(&a.body[..], b"Slow down");
    for method in [Method::POST, Method::DELETE] {
        let a = c.call(method.clone(), "/v1/AUTH_test/c/first").await;
        assert_eq!(a.status, rate_limited(), "{method}");
    }
    // Reads are not limited, nor is another container.
    let a = c.call(Method::GET, "/v1/AUTH_test/c/first").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(put(&c, "/v1/AUTH_test/other/o").await, StatusCode::CREATED);
    // The refusal carries Swift's reason phrase.
    let token = c.token.clone().unwrap();
    let mut s = TcpStream::connect(&c.host).await.unwrap();
    let req = format!(
        "PUT /v1/AUTH_test/c/raw HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 498 Rate Limited\r\n"),
        "{answer}"
    );
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_writes_and_listings_have_their_own_limits() {
    let (cluster, c) = cluster(strict(RateLimitConfig {
        account_ratelimit: 0.01,
        container_listing_ratelimits: vec![(1, 0.01)],
        ..RateLimitConfig::default()
    }))
    .await;
    assert_eq!(put(&c, "/v1/AUTH_test/c").await, StatusCode::CREATED);
    assert_eq!(put(&c, "/v1/AUTH_test/d").await, rate_limited());
    // Object writes are not the account's container writes.
    assert_eq!(put(&c, "/v1/AUTH_test/c/o").await, StatusCode::CREATED);
    assert_eq!(put(&c, "/v1/AUTH_test/c/p").await, StatusCode::CREATED);
    let a = c.call(Method::GET, "/v1/AUTH_test/c").await;
    assert_eq!(a.status, StatusCode::OK);
    let a = c.call(Method::GET, "/v1/AUTH_test/c").await;
    assert_eq!(a.status, rate_limited());
    // HEAD is not a listing.
    let a = c.call(Method::HEAD, "/v1/AUTH_test/c").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_within_the_max_sleep_wait_their_turn() {
    // Four per second and a minute's patience: a burst is slowed, not
    // refused.
    let (cluster, c) = cluster(RateLimitConfig {
        container_ratelimits: vec![(1, 4.0)],
        ..RateLimitConfig::default()
    })
    .await;
    assert_eq!(put(&c, "/v1/AUTH_test/c").await, StatusCode::CREATED);
    for i in 0..6 {
        assert_eq!(
            put(&c, &format!("/v1/AUTH_test/c/o{i}")).await,
            StatusCode::CREATED
        );
    }
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_accounts_and_info() {
    let (cluster, c) = cluster(strict(RateLimitConfig {
        account_ratelimit: 0.01,
        account_whitelist: vec!["AUTH_test".to_string()],
        account_blacklist: vec!["AUTH_test2".to_string()],
        container_ratelimits: vec![(10, 5.0), (1, 20.0)],
        ..RateLimitConfig::default()
    }))
    .await;
    for name in ["a", "b", "c"] {
        let path = format!("/v1/AUTH_test/{name}");
        assert_eq!(put(&c, &path).await, StatusCode::CREATED);
    }
    let mut other = Client::new(&cluster);
    other.login("test2:tester2", "testing2").await;
    let a = other.call(Method::GET, "/v1/AUTH_test2").await;
    assert_eq!(a.status.as_u16(), 497);
    assert_eq!(&a.body[..], b"Your account has been blacklisted");
    let a = c.call(Method::GET, "/info").await;
    let info: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        info["ratelimit"],
        serde_json::json!({
            "account_ratelimit": 0.01,
            "max_sleep_time_seconds": 1.0,
            "container_ratelimits": [[1, 20.0], [10, 5.0]],
            "container_listing_ratelimits": [],
        })
    );
    cluster.stop().await.unwrap();
}
