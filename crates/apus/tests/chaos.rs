//! The chaos soak: clients write, read and delete through the proxy while
//! storage nodes are killed, stopped, paused and have bytes of their
//! object files flipped, one fault at a time, with every daemon running.
//! Then every node comes back, the cluster converges, and the ledger of
//! acknowledged writes is checked: every object as its last acknowledged
//! write left it (or as a write that got no answer may have), every
//! container replica listing exactly the objects that exist, and no read
//! during the soak ever served a body that was never written.
//!
//! `APUS_CHAOS_SECS` sets the soak's length (default 20 s, as CI runs it),
//! `APUS_LOAD_THREADS` the clients; `APUS_BIN` runs a release binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::cluster::{MultiCluster, Options, NODES};
use support::load::{summarize, Load, LoadConfig};
use support::{env_number, random_u64};

/// Flips one byte of one `.data` file on node `i`; false if it has none
/// (or the file went away meanwhile).
fn flip_a_byte(c: &MultiCluster, i: usize, r: u64) -> bool {
    let files = support::data_files(&c.nodes[i].device_path().join("objects"));
    if files.is_empty() {
        return false;
    }
    let file = &files[(r % files.len() as u64) as usize];
    let Ok(mut bytes) = fs::read(file) else {
        return false;
    };
    if bytes.is_empty() {
        return false;
    }
    let at = ((r >> 16) % bytes.len() as u64) as usize;
    bytes[at] ^= 0x5a;
    fs::write(file, bytes).is_ok()
}

#[derive(Default, Debug)]
struct Faults {
    kills: usize,
    stops: usize,
    pauses: usize,
    flips: usize,
}

#[test]
fn scenario_14_chaos_soak() {
    let soak = Duration::from_secs(env_number("APUS_CHAOS_SECS", 20));
    let threads = env_number("APUS_LOAD_THREADS", 8) as usize;
    let mut c = MultiCluster::start(Options {
        daemon_interval: Some(2.0),
        ..Options::default()
    });
    assert_eq!(c.request("PUT", "/chaos", &[], b"").0.status, 201);
    let load = Load::start(
        c.proxy_addr,
        c.token(),
        &format!("{}/chaos", c.account_path),
        LoadConfig {
            threads,
            ..LoadConfig::default()
        },
    );
    let mut faults = Faults::default();
    let started = Instant::now();
    let pause = |r: u64, max_ms: u64| Duration::from_millis(500 + r % max_ms);
    while started.elapsed() < soak {
        std::thread::sleep(pause(random_u64(), 2_500));
        let r = random_u64();
        let node = (r % NODES as u64) as usize;
        match (r >> 8) % 4 {
            0 => {
                c.kill_node(node);
                std::thread::sleep(pause(r >> 16, 2_500));
                c.start_node(node);
                faults.kills += 1;
            }
            1 => {
                c.stop_node(node);
                std::thread::sleep(pause(r >> 16, 1_500));
                c.start_node(node);
                faults.stops += 1;
            }
            2 => {
                c.pause_node(node);
                std::thread::sleep(pause(r >> 16, 4_500));
                c.resume_node(node);
                faults.pauses += 1;
            }
            _ => {
                if flip_a_byte(&c, node, r >> 16) {
                    faults.flips += 1;
                }
            }
        }
    }
    let report = load.finish();
    let elapsed = started.elapsed().as_secs_f64();
    let s = summarize(&report.samples, elapsed);

    // Converge: the auditors find flipped bytes, then replication and
    // the updaters.
    c.run_daemon_everywhere("object-auditor");
    c.converge();
    let (checked, existing) = c.check_ledger("chaos", &report.ledger);
    eprintln!(
        "chaos soak of {elapsed:.0} s: {} operations ({:.1}/s, p99 {:.0} ms), {} failed \
         or unanswered, {} stale reads; faults {faults:?}; {checked} checks after \
         convergence ({} objects exist)",
        s.ops,
        s.per_second,
        s.p99.as_secs_f64() * 1e3,
        s.errors,
        report.stale_reads,
        existing
    );
    assert!(
        report.violations.is_empty(),
        "reads served bodies never written: {:?}",
        report.violations
    );
}
