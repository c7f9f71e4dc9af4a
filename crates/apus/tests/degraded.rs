//! Degraded-node scenarios on a real multi-process cluster (see
//! `support::cluster`): a stalled node, nodes back from a restart. The
//! bounds asserted here are not performance figures but the difference
//! between waiting for a stalled node's `node_timeout` and not waiting for
//! it: the cluster runs with a 20 s node timeout, and every request must
//! be answered well within it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::cluster::{Kind, MultiCluster, Options};
use support::load::{summarize, Load, LoadConfig};
use support::{env_number, serial};

const NODE_TIMEOUT: f64 = 20.0;

/// Half the node timeout: an answer later than this waited for a node.
const WITHIN: Duration = Duration::from_secs(10);

/// Times requests through the proxy and keeps the slowest.
struct Timed<'a> {
    c: &'a MultiCluster,
    slowest: Duration,
    what: String,
}

impl<'a> Timed<'a> {
    fn new(c: &'a MultiCluster) -> Self {
        Timed {
            c,
            slowest: Duration::ZERO,
            what: String::new(),
        }
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let started = Instant::now();
        let (head, body) = self.c.request(method, path, &[], body);
        let took = started.elapsed();
        if took > self.slowest {
            self.slowest = took;
            self.what = format!("{method} {path}");
        }
        assert!(
            took < WITHIN,
            "{method} {path} took {took:?}: it waited for the stalled node"
        );
        (head.status, body)
    }
}

#[test]
fn scenario_10_stalled_node() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options {
        node_timeout: NODE_TIMEOUT,
        ..Options::default()
    });
    assert_eq!(c.request("PUT", "/c10", &[], b"").0.status, 201);
    let account = c.account();
    // The stalled node is a primary of the container, so that container
    // reads and the object servers' container updates meet it too.
    let (_, container_nodes) = c.primaries(Kind::Container, &account, Some("c10"), None);
    let stalled = container_nodes[0];
    c.pause_node(stalled);

    let mut t = Timed::new(&c);
    let names: Vec<String> = (0..24).map(|i| format!("obj-{i}")).collect();
    let mut on_stalled = 0;
    for name in &names {
        let path = format!("/c10/{name}");
        let (_, p) = c.primaries(Kind::Object, &account, Some("c10"), Some(name));
        if p.contains(&stalled) {
            on_stalled += 1;
        }
        assert_eq!(
            t.request("PUT", &path, name.as_bytes()).0,
            201,
            "PUT {name}"
        );
        let (status, body) = t.request("GET", &path, b"");
        assert_eq!(
            (status, body.as_slice()),
            (200, name.as_bytes()),
            "GET {name}"
        );
        assert_eq!(t.request("HEAD", &path, b"").0, 200, "HEAD {name}");
        assert_eq!(t.request("POST", &path, b"").0, 202, "POST {name}");
    }
    assert!(
        on_stalled >= 8,
        "only {on_stalled} objects meet the stalled node"
    );
    for name in &names[..12] {
        let path = format!("/c10/{name}");
        assert_eq!(t.request("DELETE", &path, b"").0, 204, "DELETE {name}");
        assert_eq!(t.request("GET", &path, b"").0, 404, "GET deleted {name}");
    }
    assert_eq!(t.request("GET", "/c10/never-written", b"").0, 404);
    // The listing answers in time; what it holds may lag behind the
    // writes (updates meant for the stalled container replica wait as
    // async pendings), until convergence below.
    assert_eq!(t.request("GET", "/c10", b"").0, 200);
    assert_eq!(t.request("HEAD", "", b"").0, 204);
    assert_eq!(t.request("POST", "/c10", b"").0, 204);
    eprintln!(
        "with node {stalled} stalled: slowest answer {:?} ({})",
        t.slowest, t.what
    );
    c.resume_node(stalled);
    c.converge();
    for i in container_nodes {
        assert_eq!(
            c.container_replica_listing(i, "c10"),
            names[12..],
            "node {i}"
        );
    }
}

#[test]
fn scenario_11_restarted_nodes_are_readmitted() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    assert_eq!(c.request("PUT", "/c11", &[], b"").0.status, 201);
    let account = c.account();
    let (_, p) = c.primaries(Kind::Container, &account, Some("c11"), None);
    // Two of the container's primaries die; requests while they are down
    // error-limit them in the proxy.
    c.kill_node(p[0]);
    c.kill_node(p[1]);
    for i in 0..30 {
        let path = format!("/c11/before-{i}");
        let _ = c.request("PUT", &path, &[], b"x");
        let _ = c.request("GET", "/c11", &[], b"");
    }
    // They come back, and the third goes down: the container can be
    // reached only through the two the proxy has limited.
    c.start_node(p[0]);
    c.start_node(p[1]);
    c.kill_node(p[2]);
    let mut ok = 0;
    for i in 0..20 {
        let path = format!("/c11/after-{i}");
        let put = c.request("PUT", &path, &[], b"after").0.status;
        assert_eq!(put, 201, "PUT {path}");
        let (head, body) = c.request("GET", &path, &[], b"");
        assert_eq!(
            (head.status, body.as_slice()),
            (200, &b"after"[..]),
            "GET {path}"
        );
        ok += 1;
    }
    let (head, _) = c.request("GET", "/c11", &[], b"");
    assert_eq!(head.status, 200, "the container listing");
    assert_eq!(ok, 20);
    c.start_node(p[2]);
}

/// One storage node of four stalled (SIGSTOP) under a PUT/GET load, then
/// resumed: throughput and latency of each phase are printed (a debug
/// build's figures mean little; `APUS_BIN` runs a release binary, and
/// `APUS_STALL_PHASE_SECS` / `APUS_LOAD_THREADS` set the phases' length
/// and the clients). Asserted: no request fails, no read is corrupt, and
/// after convergence every object is as the ledger says.
#[test]
fn scenario_13_stalled_node_under_load() {
    let _serial = serial();
    let phase = Duration::from_secs(env_number("APUS_STALL_PHASE_SECS", 4));
    let threads = env_number("APUS_LOAD_THREADS", 16) as usize;
    let mut c = MultiCluster::start(Options {
        node_timeout: 10.0,
        ..Options::default()
    });
    assert_eq!(c.request("PUT", "/load", &[], b"").0.status, 201);
    let load = Load::start(
        c.proxy_addr,
        c.token(),
        &format!("{}/load", c.account_path),
        LoadConfig {
            threads,
            put_percent: 50,
            delete_percent: 0,
            ..LoadConfig::default()
        },
    );
    std::thread::sleep(phase);
    let paused_at = load.started.elapsed();
    c.pause_node(1);
    std::thread::sleep(phase);
    let resumed_at = load.started.elapsed();
    c.resume_node(1);
    std::thread::sleep(phase);
    let ended_at = load.started.elapsed();
    let report = load.finish();

    let second = Duration::from_secs(1);
    let phases = [
        ("healthy", second.min(paused_at), paused_at),
        ("stalled", paused_at, resumed_at),
        ("resumed", resumed_at, ended_at),
    ];
    for (name, from, to) in phases {
        let s = summarize(&report.window(from, to), (to - from).as_secs_f64());
        eprintln!(
            "{name:8} {:>6} ops {:>8.1}/s  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  errors {}",
            s.ops,
            s.per_second,
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            s.max.as_secs_f64() * 1e3,
            s.errors
        );
        assert_eq!(s.errors, 0, "{name}: failed requests");
    }
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    c.converge();
    c.check_ledger("load", &report.ledger);
}
