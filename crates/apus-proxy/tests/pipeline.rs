//! The pipeline a proxy runs is the one its configuration names, and
//! `/info` shows what runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use apus_proxy::Pipeline;
use apus_testkit::{Cluster, ClusterOptions};
use http::{Method, StatusCode};
use support::Client;

async fn info(c: &Client) -> serde_json::Value {
    let a = c.call(Method::GET, "/info").await;
    assert_eq!(a.status, StatusCode::OK);
    serde_json::from_slice(&a.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_pipeline_authenticates_and_registers_tempauth() {
    let cluster = Cluster::start().await.unwrap();
    let c = Client::new(&cluster);
    let info = info(&c).await;
    assert_eq!(info["tempauth"]["account_acls"], true);
    assert_eq!(info["swift"]["version"], "2.38.3");
    // tempauth runs: no token, no listing.
    let a = c.call(Method::GET, "/v1/AUTH_test").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // healthcheck runs.
    let a = c.call(Method::GET, "/healthcheck").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_without_tempauth_or_healthcheck_runs_without_them() {
    let cluster = Cluster::start_with(ClusterOptions {
        proxy: Box::new(|config| {
            config.pipeline = Pipeline::from_names(&["catch_errors", "proxy-logging"]).unwrap();
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let c = Client::new(&cluster);
    let info = info(&c).await;
    assert!(info.get("tempauth").is_none(), "{info}");
    // Nothing authenticates: the account is open, and /auth is not served.
    let a = c.call(Method::PUT, "/v1/AUTH_test/open").await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c.call(Method::GET, "/auth/v1.0").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // No healthcheck filter: the path goes to the controllers.
    let a = c.call(Method::GET, "/healthcheck").await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    // The required filters still run: gatekeeper strips a client's
    // backend headers, copy serves COPY.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/open/a",
            support::hdrs(&[("x-backend-storage-policy-index", "7")]),
            bytes::Bytes::from_static(b"data"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c
        .send(
            Method::from_bytes(b"COPY").unwrap(),
            "/v1/AUTH_test/open/a",
            support::hdrs(&[("destination", "open/b")]),
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = c.call(Method::GET, "/v1/AUTH_test/open/b").await;
    assert_eq!(&a.body[..], b"data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossdomain_and_read_only_run_when_named() {
    let cluster = Cluster::start_with(ClusterOptions {
        proxy: Box::new(|config| {
            config.pipeline =
                Pipeline::from_names(&["catch_errors", "crossdomain", "tempauth", "read_only"])
                    .unwrap();
            config.read_only.read_only = true;
            config.read_only.allow_deletes = true;
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let mut c = Client::new(&cluster);
    let info = info(&c).await;
    assert!(info.get("crossdomain").is_some(), "{info}");
    assert!(info.get("read_only").is_some(), "{info}");
    let a = c.call(Method::GET, "/crossdomain.xml").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), "application/xml");
    let body = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        body.contains("<allow-access-from domain=\"*\" secure=\"false\" />"),
        "{body}"
    );
    c.login("test:tester", "testing").await;
    let a = c.call(Method::PUT, "/v1/AUTH_test/c").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(&a.body[..], b"Writes are disabled for this account.");
    // Reads, and deletes when allowed, go on.
    let a = c.call(Method::GET, "/v1/AUTH_test").await;
    assert!(a.status.is_success(), "{}", a.status);
    let a = c.call(Method::DELETE, "/v1/AUTH_test/missing").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_check_runs_when_named() {
    let cluster = Cluster::start().await.unwrap();
    let c = Client::new(&cluster);
    assert!(info(&c).await.get("name_check").is_none());
    cluster.stop().await.unwrap();

    let cluster = Cluster::start_with(ClusterOptions {
        proxy: Box::new(|config| {
            config.pipeline =
                Pipeline::from_names(&["catch_errors", "name_check", "tempauth"]).unwrap();
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let mut c = Client::new(&cluster);
    let info = info(&c).await;
    assert_eq!(info["name_check"]["maximum_length"], 255, "{info}");
    c.login("test:tester", "testing").await;
    // Refused before authentication, as Swift places it.
    let anonymous = Client::new(&cluster);
    for (client, path) in [
        (&c, "/v1/AUTH_test/c/%3Cb%3E"),
        (&c, "/v1/AUTH_test/c/../o"),
        (&anonymous, "/v1/AUTH_test/c'"),
    ] {
        let a = client.call(Method::PUT, path).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            String::from_utf8_lossy(&a.body).starts_with("Object/Container/Account name "),
            "{path}: {:?}",
            a.body
        );
    }
    let a = c.call(Method::PUT, "/v1/AUTH_test/fine").await;
    assert_eq!(a.status, StatusCode::CREATED);
    cluster.stop().await.unwrap();
}
