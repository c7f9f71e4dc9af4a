//! Fault scenarios on a real multi-process cluster (see `support::cluster`):
//! the edges of the write quorum with primaries killed or stopped, a
//! locked container database, clients that disconnect mid-transfer, and
//! clocks that disagree.
//!
//! The time bounds asserted here are not performance figures: they tell
//! an answer that waited for a stopped node's `node_timeout` from one that
//! did not, with a node timeout large enough for the difference to be
//! plain on a busy machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::cluster::{Kind, MultiCluster, Options, NODES};
use support::{md5_hex, read_head, send_head, serial};

/// The one node of four that is not a primary of a partition (each of the
/// harness's rings has three replicas over four nodes).
fn handoff_of(primaries: &[usize]) -> usize {
    (0..NODES).find(|i| !primaries.contains(i)).unwrap()
}

// ---- quorum edges ----

/// The proxy's node timeout in the quorum scenarios.
const QUORUM_NODE_TIMEOUT: f64 = 15.0;

/// The storage nodes' own node timeout (Swift's default), which bounds a
/// container server's account update to a stopped account server.
const QUORUM_STORAGE_NODE_TIMEOUT: f64 = 3.0;

/// An answer later than this waited for a stopped node's timeout.
const WAITED: Duration = Duration::from_millis(7_500);

/// Every answer comes within the node timeout and this.
const MARGIN: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGKILL: connections are refused at once.
    Kill,
    /// SIGSTOP: connections are accepted and never answered.
    Stop,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    ObjectPut,
    ObjectPost,
    ObjectDelete,
    ContainerPut,
    ContainerDelete,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::ObjectPut,
        Op::ObjectPost,
        Op::ObjectDelete,
        Op::ContainerPut,
        Op::ContainerDelete,
    ];

    fn is_object(self) -> bool {
        matches!(self, Op::ObjectPut | Op::ObjectPost | Op::ObjectDelete)
    }

    /// What Swift answers with `down` of the three primaries down and the
    /// one handoff standing in, and whether that answer comes without
    /// waiting for a stopped node's timeout.
    ///
    /// - A PUT needs two of its three slots written: the handoff stands
    ///   in for one failed primary, so two down is still a success.
    /// - The handoff has no copy of an existing object or container, so
    ///   an object POST it stands in for answers 404 (no `.meta`), and a
    ///   container DELETE 404: one primary down is the limit.
    /// - An object DELETE on the handoff writes a tombstone and answers
    ///   404, which Swift counts as a success when the answers lack a
    ///   quorum otherwise (`status_overrides = {404: 204}`).
    /// - With nodes stopped, an answer that needs a stopped node's slot
    ///   to decide waits for its node timeout.
    fn expected(self, down: usize, fault: Fault) -> (u16, bool) {
        let (status, limit_fast) = match self {
            Op::ObjectPut => (if down <= 2 { 201 } else { 503 }, 2),
            Op::ObjectPost => (if down <= 1 { 202 } else { 503 }, 1),
            Op::ObjectDelete => (if down <= 2 { 204 } else { 503 }, 1),
            Op::ContainerPut => (if down <= 2 { 201 } else { 503 }, 2),
            Op::ContainerDelete => (if down <= 1 { 204 } else { 503 }, 1),
        };
        (status, fault == Fault::Kill || down <= limit_fast)
    }
}

fn take_down(c: &mut MultiCluster, nodes: &[usize], fault: Fault) {
    for &i in nodes {
        match fault {
            Fault::Kill => c.kill_node(i),
            Fault::Stop => c.pause_node(i),
        }
    }
    if fault == Fault::Stop {
        // A SIGSTOP takes effect a moment after kill(2) returns.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !nodes.iter().all(|&i| c.node_is_stopped(i)) {
            assert!(Instant::now() < deadline, "nodes {nodes:?} did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The stopped nodes among `nodes` that are running again: something
/// other than the test continued them (a SIGCONT the kernel sends a
/// process group it finds orphaned, say), so the case did not run with
/// them down.
fn continued(c: &MultiCluster, nodes: &[usize], fault: Fault) -> Vec<usize> {
    if fault != Fault::Stop {
        return Vec::new();
    }
    nodes
        .iter()
        .copied()
        .filter(|&i| !c.node_is_stopped(i))
        .collect()
}

fn bring_back(c: &mut MultiCluster, nodes: &[usize], fault: Fault) {
    for &i in nodes {
        match fault {
            Fault::Kill => c.start_node(i),
            Fault::Stop => c.resume_node(i),
        }
    }
}

/// Nodes holding a file of `ext` (`.data`, `.meta`, `.ts`) for an object.
fn object_copies(c: &MultiCluster, container: &str, obj: &str, ext: &str) -> Vec<usize> {
    (0..NODES)
        .filter(|&i| {
            c.object_files(i, container, obj)
                .iter()
                .any(|f| f.ends_with(ext))
        })
        .collect()
}

/// A container replica's state on node `i`, asked directly: `Some(true)`
/// for a live database, `Some(false)` for a deleted one, `None` for none.
fn container_state(c: &MultiCluster, i: usize, container: &str) -> Option<bool> {
    let account = c.account();
    let (part, _) = c.primaries(Kind::Container, &account, Some(container), None);
    let (head, _) = c.direct(
        i,
        Kind::Container,
        part,
        "HEAD",
        &format!("/{account}/{container}"),
        &[],
    );
    let zero = |name: &str| {
        head.header(name)
            .is_none_or(|v| v.trim_start_matches(['0', '.', '_']).is_empty())
    };
    match head.status {
        204 => Some(true),
        404 if !zero("x-backend-delete-timestamp") => Some(false),
        404 => None,
        other => panic!("HEAD of container {container} on node {i}: {other}"),
    }
}

/// A name (`<prefix>-<n>`) whose partition's one handoff is node `x`.
fn name_with_handoff(
    prefix: &str,
    x: usize,
    locate: impl Fn(&str) -> Vec<usize>,
) -> (String, Vec<usize>) {
    for n in 0.. {
        let name = format!("{prefix}-{n}");
        let primaries = locate(&name);
        if handoff_of(&primaries) == x {
            return (name, primaries);
        }
    }
    unreachable!()
}

/// One case: its name, primaries, and what it found.
struct Outcome {
    what: String,
    status: u16,
    took: Duration,
    /// The nodes that hold the write durably.
    copies: Vec<usize>,
    /// Stopped nodes found running again when the answer came.
    disturbed: Option<Vec<usize>>,
}

/// Creates what a POST or DELETE needs, with every node up, until it lands
/// on exactly the primaries (a node back from a fault may still be left
/// out by the proxy's error limiter for a moment, which would put a copy
/// on the handoff instead). Returns the name and its primaries.
fn prepare(
    c: &MultiCluster,
    op: Op,
    container: &str,
    x: usize,
    label: &str,
) -> (String, Vec<usize>) {
    let account = c.account();
    for attempt in 0..30 {
        let prefix = format!("{label}-a{attempt}");
        if op.is_object() {
            let (obj, p) = name_with_handoff(&prefix, x, |n| {
                c.primaries(Kind::Object, &account, Some(container), Some(n))
                    .1
            });
            let path = format!("/{container}/{obj}");
            if !matches!(op, Op::ObjectPut) {
                let status = c.request("PUT", &path, &[], &[7u8; 1024]).0.status;
                assert_eq!(status, 201, "PUT {path} with every node up");
                let mut placed = object_copies(c, container, &obj, ".data");
                placed.sort_unstable();
                let mut want = p.clone();
                want.sort_unstable();
                if placed != want {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            return (obj, p);
        }
        let (name, p) = name_with_handoff(&prefix, x, |n| {
            c.primaries(Kind::Container, &account, Some(n), None).1
        });
        if matches!(op, Op::ContainerDelete) {
            let status = c.request("PUT", &format!("/{name}"), &[], b"").0.status;
            assert_eq!(status, 201, "PUT container {name} with every node up");
            let on_primaries = p
                .iter()
                .all(|&i| container_state(c, i, &name) == Some(true));
            if !on_primaries || container_state(c, x, &name).is_some() {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        return (name, p);
    }
    panic!("{label}: could not place a copy on exactly the primaries");
}

/// Runs every operation with 0 to 3 of its primaries down by `fault`.
///
/// Asserted for object PUT, POST and DELETE and container PUT and
/// DELETE, each with 0, 1, 2 and 3 of its three primaries down (the one
/// handoff of the 4-node cluster standing in):
/// - the answer is 2xx exactly when a quorum (two) of nodes holds the
///   write durably when it comes: `.data`, `.meta` or `.ts` files for
///   objects, live or deleted databases (asked directly) for containers;
/// - it is the status Swift answers (see [`Op::expected`]);
/// - it comes within the proxy's node timeout and a margin, and well
///   before the node timeout whenever no stopped node's answer is needed.
fn quorum_edges(fault: Fault, tag: &str) {
    let node_timeout = Duration::from_secs_f64(QUORUM_NODE_TIMEOUT);
    let mut c = MultiCluster::start(Options {
        node_timeout: QUORUM_NODE_TIMEOUT,
        storage_node_timeout: Some(QUORUM_STORAGE_NODE_TIMEOUT),
        ..Options::default()
    });
    let account = c.account();
    // The node that stays up through every case: an account primary, and
    // the handoff of every name below, so that with all three primaries
    // of a name down the proxy still finds the account and, for objects,
    // the container.
    let (_, account_nodes) = c.primaries(Kind::Account, &account, None, None);
    let x = account_nodes[0];
    let objects = (0..)
        .map(|n| format!("q{tag}-{n}"))
        .find(|n| {
            let (_, p) = c.primaries(Kind::Container, &account, Some(n), None);
            p.contains(&x)
        })
        .unwrap();
    assert_eq!(
        c.request("PUT", &format!("/{objects}"), &[], b"").0.status,
        201
    );

    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for op in Op::ALL {
        for down in 0..=3 {
            // A case whose stopped nodes were continued behind the test's
            // back is run again under a new name, a bounded number of times.
            let mut run = 0;
            let outcome = loop {
                let label = match run {
                    0 => format!("{op:?}-{down}").to_lowercase(),
                    _ => format!("{op:?}-{down}-r{run}").to_lowercase(),
                };
                let outcome = quorum_case(&mut c, op, down, fault, &objects, x, &label);
                run += 1;
                match &outcome.disturbed {
                    Some(nodes) if run < 3 => {
                        eprintln!(
                            "{fault:?}: {}: nodes {nodes:?} were continued; again",
                            outcome.what
                        );
                    }
                    _ => break outcome,
                }
            };
            if let Some(nodes) = &outcome.disturbed {
                failures.push(format!(
                    "{}: stopped nodes {nodes:?} were continued by something else, {run} times",
                    outcome.what
                ));
            }
            let (want, fast) = op.expected(down, fault);
            let (what, status, took, copies) = (
                &outcome.what,
                outcome.status,
                outcome.took,
                outcome.copies.len(),
            );
            if status != want {
                failures.push(format!("{what}: {status}, Swift answers {want}"));
            }
            if (200..300).contains(&status) != (copies >= 2) {
                failures.push(format!("{what}: {status} with {copies} durable copies"));
            }
            if took > node_timeout + MARGIN {
                failures.push(format!("{what}: answered after {took:?}"));
            }
            if fast && took > WAITED {
                failures.push(format!(
                    "{what}: answered after {took:?}, waiting for a node it did not need"
                ));
            }
            outcomes.push(outcome);
        }
    }
    for o in &outcomes {
        eprintln!(
            "{fault:?}: {:70} {} in {:>6.2} s, {} durable (nodes {:?})",
            o.what,
            o.status,
            o.took.as_secs_f64(),
            o.copies.len(),
            o.copies
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// One case of [`quorum_edges`]: `op` with `down` of its primaries down.
fn quorum_case(
    c: &mut MultiCluster,
    op: Op,
    down: usize,
    fault: Fault,
    objects: &str,
    x: usize,
    label: &str,
) -> Outcome {
    let (name, primaries) = prepare(c, op, objects, x, label);
    let victims: Vec<usize> = primaries[..down].to_vec();
    take_down(c, &victims, fault);
    let started = Instant::now();
    let (status, copies) = match op {
        Op::ObjectPut | Op::ObjectPost | Op::ObjectDelete => {
            let path = format!("/{objects}/{name}");
            let (method, headers, body, ext): (_, &[(&str, &str)], &[u8], _) = match op {
                Op::ObjectPut => ("PUT", &[], &[1u8; 1024], ".data"),
                Op::ObjectPost => ("POST", &[("X-Object-Meta-Edge", "yes")], b"", ".meta"),
                _ => ("DELETE", &[], b"", ".ts"),
            };
            let status = c.request(method, &path, headers, body).0.status;
            (status, object_copies(c, objects, &name, ext))
        }
        Op::ContainerPut | Op::ContainerDelete => {
            let method = if matches!(op, Op::ContainerPut) {
                "PUT"
            } else {
                "DELETE"
            };
            let status = c.request(method, &format!("/{name}"), &[], b"").0.status;
            // Nodes that are down cannot have written anything.
            let want = matches!(op, Op::ContainerPut);
            let copies = (0..NODES)
                .filter(|i| !victims.contains(i))
                .filter(|&i| container_state(c, i, &name) == Some(want))
                .collect();
            (status, copies)
        }
    };
    let took = started.elapsed();
    let continued = continued(c, &victims, fault);
    bring_back(c, &victims, fault);
    Outcome {
        what: format!("{op:?} with {down} down ({name}, primaries {primaries:?})"),
        status,
        took,
        copies,
        disturbed: (!continued.is_empty()).then_some(continued),
    }
}

#[test]
fn scenario_20_quorum_edges_killed_primaries() {
    let _serial = serial();
    quorum_edges(Fault::Kill, "20");
}

#[test]
fn scenario_21_quorum_edges_stopped_primaries() {
    let _serial = serial();
    quorum_edges(Fault::Stop, "21");
}

// ---- a locked container database ----

/// Swift's broker timeout: how long a database request waits for a lock
/// held by another connection before it fails (`LockTimeout`, a 500).
const BROKER_TIMEOUT: Duration = Duration::from_secs(25);

/// Answers meant to come while a lock is held come well before the broker
/// timeout: they did not wait for it, nor for a worker it holds.
const PROMPT: Duration = Duration::from_secs(10);

/// A GET straight to a storage server (`path` from the device on) that
/// may take long: its status.
fn slow_get(addr: SocketAddr, path: &str, timeout: Duration) -> u16 {
    let conn = send_head(addr, "GET", path, &[("Content-Length", "0")], timeout);
    let mut reader = BufReader::new(conn);
    let head = read_head(&mut reader);
    let mut body = Vec::new();
    reader.read_to_end(&mut body).unwrap();
    head.status
}

/// The object names a listing through the proxy holds.
fn proxy_listing(c: &MultiCluster, container: &str) -> (u16, Vec<String>) {
    let (head, body) = c.request("GET", &format!("/{container}"), &[], b"");
    let names = String::from_utf8_lossy(&body)
        .lines()
        .map(str::to_string)
        .collect();
    (head.status, names)
}

/// One container replica's database held exclusively by another process
/// (`BEGIN EXCLUSIVE`, which keeps readers out too) while clients write
/// objects and list the container.
///
/// Asserted while the lock is held:
/// - reads of that container on the locked replica's server wait for the
///   lock and answer Swift's 500 (`LockTimeout`) within the broker
///   timeout (25 s) and a margin;
/// - the object rows sent to the locked replica are recorded at once
///   (they go to the pending file, as in Swift);
/// - meanwhile that node answers its other requests promptly, a burst of
///   reads waiting on the lock notwithstanding: another container's HEAD,
///   the account's HEAD, an object GET (no worker is starved);
/// - through the proxy, every object PUT succeeds and every listing
///   answers 200 promptly, and soon lists every object written.
///
/// After the lock is released, the locked replica lists every object,
/// the rows recorded during the lock included.
#[test]
fn scenario_22_locked_container_database() {
    let _serial = serial();
    let c = MultiCluster::start(Options::default());
    let account = c.account();
    assert_eq!(c.request("PUT", "/locked", &[], b"").0.status, 201);
    let (part, replicas) = c.primaries(Kind::Container, &account, Some("locked"), None);
    // The replica the proxy asks first, so that listings meet the lock.
    let l = replicas[0];
    // Another container, and an object, with copies on the same node.
    let other = (0..)
        .map(|n| format!("other-{n}"))
        .find(|n| {
            c.primaries(Kind::Container, &account, Some(n), None)
                .1
                .contains(&l)
        })
        .unwrap();
    let (other_part, _) = c.primaries(Kind::Container, &account, Some(&other), None);
    assert_eq!(
        c.request("PUT", &format!("/{other}"), &[], b"").0.status,
        201
    );
    let on_l = (0..)
        .map(|n| format!("on-l-{n}"))
        .find(|n| {
            c.primaries(Kind::Object, &account, Some(&other), Some(n))
                .1
                .contains(&l)
        })
        .unwrap();
    let (obj_part, _) = c.primaries(Kind::Object, &account, Some(&other), Some(&on_l));
    let on_l_path = format!("/{other}/{on_l}");
    assert_eq!(c.request("PUT", &on_l_path, &[], b"here").0.status, 201);
    let (account_part, account_nodes) = c.primaries(Kind::Account, &account, None, None);
    let mut names: Vec<String> = (0..5).map(|k| format!("before-{k}")).collect();
    for name in &names {
        let status = c
            .request("PUT", &format!("/locked/{name}"), &[], b"x")
            .0
            .status;
        assert_eq!(status, 201, "PUT {name}");
    }

    let holder = rusqlite::Connection::open(c.container_db(l, "locked")).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // A burst of reads of the locked database, each waiting on the lock.
    let addr = c.nodes[l].addr(Kind::Container);
    let path = format!("/{}/{part}/{account}/locked?format=json", c.nodes[l].device);
    let burst: Vec<_> = (0..24)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let status = slow_get(addr, &path, BROKER_TIMEOUT * 2);
                (status, started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let prompt = |what: &str, took: Duration| {
        assert!(
            took < PROMPT,
            "{what} took {took:?} while node {l}'s container database was locked"
        );
    };
    // The node's other requests.
    let started = Instant::now();
    let (head, _) = c.direct(
        l,
        Kind::Container,
        other_part,
        "HEAD",
        &format!("/{account}/{other}"),
        &[],
    );
    assert_eq!(head.status, 204, "HEAD of another container on node {l}");
    prompt("HEAD of another container", started.elapsed());
    let started = Instant::now();
    let (head, _) = c.direct(
        l,
        Kind::Account,
        account_part,
        "HEAD",
        &format!("/{account}"),
        &[],
    );
    let want = if account_nodes.contains(&l) { 204 } else { 404 };
    assert_eq!(head.status, want, "HEAD of the account on node {l}");
    prompt("HEAD of the account", started.elapsed());
    let started = Instant::now();
    let status = slow_get(
        c.nodes[l].addr(Kind::Object),
        &format!("/{}/{obj_part}/{account}{on_l_path}", c.nodes[l].device),
        PROMPT,
    );
    assert_eq!(status, 200, "GET of an object on node {l}");
    prompt("GET of an object", started.elapsed());
    // An object row sent straight to the locked replica.
    let started = Instant::now();
    let ts = format!(
        "{:.5}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    );
    let (head, _) = c.direct(
        l,
        Kind::Container,
        part,
        "PUT",
        &format!("/{account}/locked/recorded-directly"),
        &[
            ("X-Timestamp", &ts),
            ("X-Size", "1"),
            ("X-Content-Type", "text/plain"),
            ("X-Etag", "d41d8cd98f00b204e9800998ecf8427e"),
            ("X-Backend-Storage-Policy-Index", "0"),
        ],
    );
    assert_eq!(head.status, 201, "an object row for the locked replica");
    prompt("an object row for the locked replica", started.elapsed());

    // Through the proxy, writes and listings go on.
    for k in 0..8 {
        let name = format!("during-{k}");
        let started = Instant::now();
        let status = c
            .request("PUT", &format!("/locked/{name}"), &[], b"y")
            .0
            .status;
        assert_eq!(status, 201, "PUT {name}");
        prompt(&format!("PUT {name}"), started.elapsed());
        names.push(name);
        let started = Instant::now();
        let (status, listed) = proxy_listing(&c, "locked");
        assert_eq!(status, 200, "a listing after {k} PUTs");
        prompt("a listing", started.elapsed());
        assert!(
            names[..5].iter().all(|n| listed.contains(n)),
            "the listing lost objects written before the lock: {listed:?}"
        );
    }
    let complete = eventually(PROMPT, || {
        let (status, listed) = proxy_listing(&c, "locked");
        status == 200 && names.iter().all(|n| listed.contains(n))
    });
    assert!(complete, "no listing held every object written");

    for reader in burst {
        let (status, took) = reader.join().unwrap();
        assert_eq!(status, 500, "a read of the locked database");
        assert!(
            took < BROKER_TIMEOUT + PROMPT,
            "a read of the locked database answered after {took:?}"
        );
    }
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);

    // Rows recorded during the lock are in the replica's pending file; any
    // update an object server had to keep goes out with the updater.
    c.run_daemon_everywhere("object-updater");
    let mut want: Vec<String> = names.clone();
    want.push("recorded-directly".to_string());
    want.sort();
    assert_eq!(c.container_replica_listing(l, "locked"), want);
}

/// Polls `f` until it holds or `within` passes; whether it held.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---- clients that disconnect ----

/// Open file descriptors of a process.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// Every process of the cluster with its open file descriptors: the proxy
/// first, then the nodes in order.
fn fd_counts(c: &MultiCluster) -> Vec<(String, usize)> {
    let mut out = vec![("proxy".to_string(), fd_count(c.proxy_pid()))];
    for i in 0..NODES {
        let pid = c.node_pid(i).expect("node runs");
        out.push((format!("node {i}"), fd_count(pid)));
    }
    out
}

/// Files left in the devices' `tmp/` directories.
fn temp_files(c: &MultiCluster) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for node in &c.nodes {
        if let Ok(entries) = std::fs::read_dir(node.device_path().join("tmp")) {
            out.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    out
}

/// Opens an HTTP/1.1 request to the proxy as the test user (the body, if
/// any, is the caller's to write).
fn open_request(c: &MultiCluster, method: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut conn = TcpStream::connect(c.proxy_addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Auth-Token: {}\r\n",
        c.account_path,
        c.token()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn
}

/// A body that shows where each byte came from.
fn big_body(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// The size of the objects clients drop halfway through uploading.
const BIG: usize = 8 << 20;

/// The size of the object clients drop after reading a little: larger
/// than what the socket buffers between the object server and the client
/// hold, so that every server is mid-stream when the client goes.
const HUGE: usize = 32 << 20;

/// Rounds of one dropped upload and one dropped download.
const ROUNDS: usize = 12;

/// Open descriptors a process may hold beyond its baseline once the
/// dropped requests are cleaned up: keep-alive connections pooled between
/// the proxy and the storage servers (and between the servers, for
/// container updates), which ordinary traffic leaves open for their idle
/// timeout (30 s) and whose number depends on how many requests happened
/// to overlap. A leak of one descriptor per dropped request would exceed
/// it: there are 2 × ROUNDS of them.
const FD_SLACK: usize = 6;

/// Keeps a socket's receive buffer small, so that a reader that stops
/// reading holds up its sender soon.
fn small_receive_buffer(conn: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 16 << 10;
    // SAFETY: a valid socket, and an int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF");
}

/// Clients that disconnect mid-upload and mid-download, through the
/// proxy: ROUNDS times, a PUT of 8 MiB dropped after 4 MiB, once the
/// object servers are writing it (every other one chunked), and a GET of
/// 32 MiB dropped after 64 KiB.
///
/// Asserted afterwards, within a short while: the open file descriptors of
/// the proxy and of every storage node are back at their baseline (taken
/// after the same requests made whole) give or take [`FD_SLACK`]; no
/// temporary file is left in any device's `tmp/`; no interrupted object
/// exists (404, through the proxy and on every node's disk), and the
/// objects written before are intact.
#[test]
fn scenario_23_clients_that_disconnect() {
    let _serial = serial();
    let c = MultiCluster::start(Options::default());
    assert_eq!(c.request("PUT", "/drops", &[], b"").0.status, 201);
    let kept: Vec<(String, Vec<u8>)> = (0..3)
        .map(|k| (format!("kept-{k}"), big_body(BIG, k as u8)))
        .chain([("huge".to_string(), big_body(HUGE, 7))])
        .collect();
    // The same requests, made whole, before the baseline.
    for (name, body) in &kept {
        let path = format!("/drops/{name}");
        assert_eq!(
            c.request("PUT", &path, &[], body).0.status,
            201,
            "PUT {name}"
        );
        let (head, got) = c.request("GET", &path, &[], b"");
        assert_eq!(head.status, 200, "GET {name}");
        assert!(got == *body, "GET {name}: other bytes");
    }
    std::thread::sleep(Duration::from_secs(1));
    let baseline = fd_counts(&c);
    assert!(temp_files(&c).is_empty(), "{:?}", temp_files(&c));

    let half = &kept[0].1[..BIG / 2];
    for round in 0..ROUNDS {
        let name = format!("dropped-{round}");
        let path = format!("/drops/{name}");
        let length = BIG.to_string();
        let clean = eventually(Duration::from_secs(10), || temp_files(&c).is_empty());
        assert!(
            clean,
            "temporary files before round {round}: {:?}",
            temp_files(&c)
        );
        let mut conn = if round % 2 == 0 {
            let mut conn = open_request(&c, "PUT", &path, &[("Content-Length", &length)]);
            conn.write_all(half).unwrap();
            conn
        } else {
            let mut conn = open_request(&c, "PUT", &path, &[("Transfer-Encoding", "chunked")]);
            for chunk in half.chunks(64 << 10) {
                conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .unwrap();
                conn.write_all(chunk).unwrap();
                conn.write_all(b"\r\n").unwrap();
            }
            conn
        };
        conn.flush().unwrap();
        // The object servers are writing it.
        let writing = eventually(Duration::from_secs(10), || !temp_files(&c).is_empty());
        assert!(
            writing,
            "round {round}: no object server is writing the upload"
        );
        drop(conn);

        let mut conn = open_request(&c, "GET", "/drops/huge", &[]);
        small_receive_buffer(&conn);
        let mut reader = BufReader::new(&mut conn);
        let head = read_head(&mut reader);
        assert_eq!(head.status, 200, "GET huge");
        let mut some = vec![0u8; 64 << 10];
        reader.read_exact(&mut some).unwrap();
        drop(reader);
        drop(conn);
    }

    let mut last = Vec::new();
    let settled = eventually(Duration::from_secs(20), || {
        last = fd_counts(&c);
        last.iter()
            .zip(&baseline)
            .all(|((_, now), (_, before))| *now <= before + FD_SLACK)
    });
    eprintln!("open descriptors before: {baseline:?}, after: {last:?}");
    assert!(
        settled,
        "descriptors leaked: before {baseline:?}, after {last:?}"
    );
    let mut left = Vec::new();
    let clean = eventually(Duration::from_secs(20), || {
        left = temp_files(&c);
        left.is_empty()
    });
    assert!(clean, "temporary files left: {left:?}");

    for round in 0..ROUNDS {
        let name = format!("dropped-{round}");
        let (head, _) = c.request("GET", &format!("/drops/{name}"), &[], b"");
        assert_eq!(head.status, 404, "GET {name}");
        for i in 0..NODES {
            let files = c.object_files(i, "drops", &name);
            assert!(files.is_empty(), "{name} on node {i}: {files:?}");
        }
    }
    for (name, body) in &kept {
        let (head, got) = c.request("GET", &format!("/drops/{name}"), &[], b"");
        assert_eq!(head.status, 200, "GET {name}");
        assert!(got == *body, "GET {name}: other bytes");
    }
    let (head, listing) = c.request("GET", "/drops", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&listing),
        "huge\nkept-0\nkept-1\nkept-2\n"
    );
}

// ---- clocks that disagree ----

/// Moves one `apus` process's clock (see `apus_core::clock`).
const CLOCK_OFFSET: &str = "APUS_CLOCK_OFFSET_SECS";

/// An `X-Timestamp` `ago` seconds before now by this machine's clock.
fn timestamp_ago(ago: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    format!("{:.5}", now - ago)
}

/// A name (`<prefix>-<n>`) in `container` whose object primaries satisfy
/// `want`, and the primaries.
fn object_where(
    c: &MultiCluster,
    container: &str,
    prefix: &str,
    want: impl Fn(&[usize]) -> bool,
) -> (String, Vec<usize>) {
    let account = c.account();
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .map(|n| {
            let p = c
                .primaries(Kind::Object, &account, Some(container), Some(&n))
                .1;
            (n, p)
        })
        .find(|(_, p)| want(p))
        .unwrap()
}

/// A GET straight to node `i`'s object server: the status and body.
fn direct_get(c: &MultiCluster, i: usize, container: &str, obj: &str) -> (u16, Vec<u8>) {
    let account = c.account();
    let (part, _) = c.primaries(Kind::Object, &account, Some(container), Some(obj));
    let (head, body) = c.direct(
        i,
        Kind::Object,
        part,
        "GET",
        &format!("/{account}/{container}/{obj}"),
        &[],
    );
    (head.status, body)
}

/// The `(name, hash)` rows node `i`'s replica of `container` lists.
fn replica_rows(c: &MultiCluster, i: usize, container: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = c
        .container_replica_rows(i, container)
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Tombstones `age` seconds old for `obj` in `skew` on `nodes`, written
/// straight to their object servers: a client cannot choose a write's
/// timestamp through the proxy (Swift's `shunt_inbound_x_timestamp`).
fn write_tombstones(c: &MultiCluster, obj: &str, nodes: &[usize], age: f64) {
    let account = c.account();
    let (part, _) = c.primaries(Kind::Object, &account, Some("skew"), Some(obj));
    let ts = timestamp_ago(age);
    for &i in nodes {
        let (head, _) = c.direct(
            i,
            Kind::Object,
            part,
            "DELETE",
            &format!("/{account}/skew/{obj}"),
            &[("X-Timestamp", &ts)],
        );
        assert_eq!(head.status, 404, "a tombstone for {obj} on node {i}");
    }
}

/// Two storage nodes whose clocks disagree with the rest: one 300 s
/// ahead, one 300 s behind (`APUS_CLOCK_OFFSET_SECS`), with the proxy on
/// time and `reclaim_age` 600 s. In Swift the proxy stamps every write,
/// so a node's clock matters only where it compares a timestamp with
/// "now": tombstone reclaim, expiry, the daemons' decisions.
///
/// Asserted:
/// - the later write (by the proxy's timestamps) wins everywhere after
///   convergence, whether the node that missed it runs ahead or behind:
///   one `.data` (or only a tombstone) on every primary, reads give the
///   later write, every container replica lists its ETag;
/// - the node ahead does not reclaim a tombstone 10 s old (it looks
///   310 s old to it, under the 600 s reclaim age);
/// - nothing expires early through the proxy: an object due in 120 s is
///   served although its first primary, the node ahead, takes it for
///   expired (and says so when asked directly), and the expirer, on a
///   node on time, deletes only what is due.
///
/// Swift's behaviour, shown here as the measure of the skew: the node
/// ahead reclaims a tombstone 400 s old (700 s to it) that the others
/// keep, the node behind keeps one 700 s old that the others reclaim, and
/// the node behind still serves an object past its `X-Delete-At` until
/// the expirer deletes it: `reclaim_age` must exceed the worst skew, and
/// clocks belong in sync.
#[test]
fn scenario_24_storage_nodes_with_skewed_clocks() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options {
        reclaim_age: 600.0,
        ..Options::default()
    });
    let (ahead, behind) = (0, 1);
    let on_time: Vec<usize> = (2..NODES).collect();
    for (i, offset) in [(ahead, "300"), (behind, "-300")] {
        c.stop_node(i);
        c.set_node_env(i, CLOCK_OFFSET, offset);
        c.start_node(i);
    }
    assert_eq!(c.request("PUT", "/skew", &[], b"").0.status, 201);
    let both = |p: &[usize]| p.contains(&ahead) && p.contains(&behind);

    // The later write wins, whichever node missed it.
    let mut latest: Vec<(String, Vec<usize>, Option<Vec<u8>>)> = Vec::new();
    for (label, missed) in [("ahead", ahead), ("behind", behind)] {
        let (name, p) = object_where(&c, "skew", &format!("lww-{label}"), both);
        let path = format!("/skew/{name}");
        assert_eq!(c.request("PUT", &path, &[], b"first").0.status, 201);
        c.stop_node(missed);
        let second = format!("second, missed by the node {label}").into_bytes();
        assert_eq!(c.request("PUT", &path, &[], &second).0.status, 201);
        c.start_node(missed);
        latest.push((name, p, Some(second)));

        let (name, p) = object_where(&c, "skew", &format!("gone-{label}"), both);
        let path = format!("/skew/{name}");
        assert_eq!(c.request("PUT", &path, &[], b"first").0.status, 201);
        c.stop_node(missed);
        assert_eq!(c.request("DELETE", &path, &[], b"").0.status, 204);
        c.start_node(missed);
        latest.push((name, p, None));
    }
    c.converge();
    let mut rows = Vec::new();
    for (name, p, body) in &latest {
        let files: Vec<Vec<String>> = p.iter().map(|&i| c.object_files(i, "skew", name)).collect();
        let (status, got) = {
            let (head, got) = c.request(
                "GET",
                &format!("/skew/{name}"),
                &[("X-Newest", "true")],
                b"",
            );
            (head.status, got)
        };
        match body {
            Some(body) => {
                assert!(
                    files
                        .iter()
                        .all(|f| f.len() == 1 && f[0].ends_with(".data") && *f == files[0]),
                    "{name}: primaries {p:?} hold {files:?}"
                );
                assert_eq!((status, &got), (200, body), "GET {name}");
                rows.push((name.clone(), md5_hex(body)));
            }
            None => {
                assert!(
                    files
                        .iter()
                        .all(|f| f.len() == 1 && f[0].ends_with(".ts") && *f == files[0]),
                    "{name}: primaries {p:?} hold {files:?}"
                );
                assert_eq!(status, 404, "GET {name}");
            }
        }
    }
    rows.sort();
    let account = c.account();
    let (_, container_nodes) = c.primaries(Kind::Container, &account, Some("skew"), None);
    for &i in &container_nodes {
        assert_eq!(
            replica_rows(&c, i, "skew"),
            rows,
            "container replica on node {i}"
        );
    }

    // Tombstones: recent ones stay on the node ahead too. The object
    // servers reclaim as they write (as Swift's do), and the replicators
    // as they hash.
    let (recent, recent_p) = object_where(&c, "skew", "recent", |p| p.contains(&ahead));
    let path = format!("/skew/{recent}");
    assert_eq!(c.request("PUT", &path, &[], b"brief").0.status, 201);
    assert_eq!(c.request("DELETE", &path, &[], b"").0.status, 204);
    let (ten, ten_p) = object_where(&c, "skew", "ten-seconds", both);
    write_tombstones(&c, &ten, &ten_p, 10.0);
    let (old, old_p) = object_where(&c, "skew", "400-seconds", |p| {
        p.contains(&ahead) && !p.contains(&behind)
    });
    write_tombstones(&c, &old, &old_p, 400.0);
    let (older, older_p) = object_where(&c, "skew", "700-seconds", |p| {
        p.contains(&behind) && !p.contains(&ahead)
    });
    write_tombstones(&c, &older, &older_p, 700.0);
    c.run_daemon_everywhere("object-replicator");
    c.run_daemon_everywhere("object-auditor");
    c.run_daemon_everywhere("object-replicator");
    let has_ts = |i: usize, name: &str| {
        c.object_files(i, "skew", name)
            .iter()
            .any(|f| f.ends_with(".ts"))
    };
    for (name, p) in [(&recent, &recent_p), (&ten, &ten_p)] {
        for &i in p {
            assert!(
                has_ts(i, name),
                "the recent tombstone of {name} is gone from node {i}"
            );
        }
    }
    for &i in &old_p {
        assert_eq!(
            has_ts(i, &old),
            i != ahead,
            "node {i} and a tombstone 400 s old (700 s to the node ahead)"
        );
    }
    for &i in &older_p {
        assert_eq!(
            has_ts(i, &older),
            i == behind,
            "node {i} and a tombstone 700 s old (400 s to the node behind)"
        );
    }

    // Expiry: nothing expires early through the proxy.
    let (due, due_p) = object_where(&c, "skew", "due-in-120", |p| p[0] == ahead);
    let path = format!("/skew/{due}");
    let status = c
        .request("PUT", &path, &[("X-Delete-After", "120")], b"not yet")
        .0
        .status;
    assert_eq!(status, 201);
    let (late, late_p) = object_where(&c, "skew", "due-in-2", |p| p.contains(&behind));
    let status = c
        .request(
            "PUT",
            &format!("/skew/{late}"),
            &[("X-Delete-After", "2")],
            b"past",
        )
        .0
        .status;
    assert_eq!(status, 201);
    // The node ahead takes the first for expired when asked directly.
    assert_eq!(
        direct_get(&c, ahead, "skew", &due).0,
        404,
        "{due} on the node ahead"
    );
    for &i in due_p.iter().filter(|&&i| i != ahead) {
        assert_eq!(direct_get(&c, i, "skew", &due).0, 200, "{due} on node {i}");
    }
    for _ in 0..3 {
        let (head, body) = c.request("GET", &path, &[], b"");
        assert_eq!(
            (head.status, body.as_slice()),
            (200, &b"not yet"[..]),
            "GET {due}"
        );
        assert_eq!(
            c.request("HEAD", &path, &[], b"").0.status,
            200,
            "HEAD {due}"
        );
    }
    let (head, _) = c.request("GET", &path, &[("X-Newest", "true")], b"");
    assert_eq!(head.status, 200, "GET {due} with X-Newest");
    std::thread::sleep(Duration::from_secs(3));
    for &i in &late_p {
        let want = if i == behind { 200 } else { 404 };
        assert_eq!(
            direct_get(&c, i, "skew", &late).0,
            want,
            "{late} past its time on node {i}"
        );
    }
    c.run_daemon_everywhere("container-updater");
    let stats = c.run_daemon(on_time[0], "object-expirer");
    assert_eq!(stats["counts"]["objects"], 1, "{stats}");
    assert_eq!(
        c.request("GET", &path, &[], b"").0.status,
        200,
        "GET {due} after the expirer"
    );
    assert_eq!(
        c.request("GET", &format!("/skew/{late}"), &[], b"")
            .0
            .status,
        404
    );
    for &i in &late_p {
        assert_eq!(
            direct_get(&c, i, "skew", &late).0,
            404,
            "{late} after the expirer on node {i}"
        );
    }
}

/// A proxy whose clock runs behind or ahead writes after one on time.
/// Swift's rule is that the write with the latest timestamp wins, and the
/// proxy assigns it, so, as in Swift:
/// - a proxy 300 s behind loses to the earlier writes of a proxy on time:
///   its PUT of an existing object is answered 202 (the object servers'
///   409) and changes nothing, its POST and DELETE answer 409;
/// - a proxy 300 s ahead wins over the later writes of a proxy on time,
///   whose PUT is then answered 202 and whose DELETE 409.
///
/// Through it all, reads and the container listing give the write with
/// the latest timestamp, and writes of new names succeed.
#[test]
fn scenario_25_proxy_with_a_skewed_clock() {
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    assert_eq!(c.request("PUT", "/pskew", &[], b"").0.status, 201);
    let get = |c: &MultiCluster| {
        let (head, body) = c.request("GET", "/pskew/o", &[("X-Newest", "true")], b"");
        (head.status, body)
    };
    assert_eq!(c.request("PUT", "/pskew/o", &[], b"on time").0.status, 201);

    c.set_proxy_env(CLOCK_OFFSET, "-300");
    c.restart_proxy();
    assert_eq!(c.request("PUT", "/pskew/o", &[], b"behind").0.status, 202);
    let meta = [("X-Object-Meta-Color", "blue")];
    assert_eq!(c.request("POST", "/pskew/o", &meta, b"").0.status, 409);
    assert_eq!(c.request("DELETE", "/pskew/o", &[], b"").0.status, 409);
    assert_eq!(get(&c), (200, b"on time".to_vec()));
    assert_eq!(
        c.request("PUT", "/pskew/new-behind", &[], b"new").0.status,
        201
    );

    c.set_proxy_env(CLOCK_OFFSET, "300");
    c.restart_proxy();
    assert_eq!(c.request("PUT", "/pskew/o", &[], b"ahead").0.status, 201);

    c.set_proxy_env(CLOCK_OFFSET, "0");
    c.restart_proxy();
    assert_eq!(c.request("PUT", "/pskew/o", &[], b"later").0.status, 202);
    assert_eq!(c.request("DELETE", "/pskew/o", &[], b"").0.status, 409);
    assert_eq!(get(&c), (200, b"ahead".to_vec()));
    let (head, _) = c.request("HEAD", "/pskew/o", &[], b"");
    assert!(head.header("x-object-meta-color").is_none());

    let account = c.account();
    let (_, container_nodes) = c.primaries(Kind::Container, &account, Some("pskew"), None);
    let want = vec![
        ("new-behind".to_string(), md5_hex(b"new")),
        ("o".to_string(), md5_hex(b"ahead")),
    ];
    for i in container_nodes {
        assert_eq!(
            replica_rows(&c, i, "pskew"),
            want,
            "container replica on node {i}"
        );
    }
}
