//! Runs an in-process test cluster until interrupted and prints its URL:
//! `cargo run -p apus-testkit --example cluster [ADDR:PORT]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let proxy_bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let cluster = apus_testkit::Cluster::start_with(apus_testkit::ClusterOptions {
        proxy_bind,
        ..Default::default()
    })
    .await?;
    println!("{}", cluster.url());
    tokio::signal::ctrl_c().await?;
    cluster.stop().await
}
