//! Runs an in-process test cluster until interrupted and prints its URL:
//! `cargo run -p apus-testkit --example cluster`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cluster = apus_testkit::Cluster::start().await?;
    println!("{}", cluster.url());
    tokio::signal::ctrl_c().await?;
    cluster.stop().await
}
