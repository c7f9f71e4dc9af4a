//! Measures object-replicator passes over a device whose objects already
//! sit, identical, on every other primary: what replication costs when
//! there is nothing to do.
//!
//! Usage: `replicator_efficiency [objects (default 100000)] [dir]`. It
//! builds a 3-device, 3-replica ring (every device a primary of every
//! partition) with one in-process object server per device, writes each
//! object to all three devices directly on disk, then runs two passes of
//! `d1`'s replicator: the first finds no `hashes.pkl` anywhere and hashes
//! every suffix on both ends; the second is the steady state. It prints
//! what it measured and asserts nothing. Put `dir` on tmpfs to measure
//! the replicator rather than the disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use apus_daemons::{run_once, ObjectReplicator, Shutdown};
use common::{now, ts, Cluster};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let objects: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 100_000,
    };
    let dir: Option<PathBuf> = args.next().map(PathBuf::from);
    let cluster = Cluster::start(3, 8, dir.as_deref()).await;

    let start = Instant::now();
    let base = now() - 10_000.0;
    std::thread::scope(|s| {
        for dev in ["d1", "d2", "d3"] {
            let c = &cluster;
            s.spawn(move || {
                for i in 0..objects {
                    let t = ts(base + i as f64 / 1000.0);
                    c.write(dev, &format!("obj-{i}"), t, b"efficiency probe", &[]);
                }
            });
        }
    });
    println!(
        "wrote {objects} objects to 3 devices in {:.2}s",
        start.elapsed().as_secs_f64()
    );

    let replicator = ObjectReplicator::default();
    for label in ["first pass (cold hashes)", "second pass (steady)"] {
        let start = Instant::now();
        let pass = run_once(&replicator, &cluster.ctx(1), Shutdown::never()).await;
        println!(
            "{label}: {:.3}s partitions={} suffixes_checked={} requests={} bytes_sent={} objects_pushed={} failures={}",
            start.elapsed().as_secs_f64(),
            pass.count("partitions"),
            pass.count("suffixes_checked"),
            pass.count("requests"),
            pass.count("bytes_sent"),
            pass.count("objects_pushed"),
            pass.count("failures"),
        );
    }
    Ok(())
}
