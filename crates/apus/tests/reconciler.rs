#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The container reconciler end to end on a real multi-process cluster
//! with two storage policies: a container created at once with policy 1
//! on one primary and policy 0 on the others (a split brain) takes
//! objects in both; container replication settles every copy on the
//! policy of the first creation and queues the other policy's rows in
//! `.misplaced_objects`; `apus container-reconciler --once` moves them.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::cluster::{Kind, MultiCluster, Options, NODES};
use support::serial;

const CONTAINER: &str = "split";
const QUEUE: &str = ".misplaced_objects";

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn body_of(name: &str, version: u32) -> Vec<u8> {
    format!("{name} version {version} ")
        .repeat(50 + version as usize)
        .into_bytes()
}

fn put(c: &MultiCluster, name: &str, body: &[u8]) {
    let (head, _) = c.request(
        "PUT",
        &format!("/{CONTAINER}/{name}"),
        &[
            ("Content-Type", "application/x-test"),
            ("X-Object-Meta-Name", name),
        ],
        body,
    );
    assert_eq!(head.status, 201, "PUT {name}");
}

/// A direct container PUT creating the container on node `i` only.
fn create_on(c: &MultiCluster, i: usize, part: u32, policy: u32, timestamp: f64) {
    let account = c.account();
    let (head, _) = c.direct(
        i,
        Kind::Container,
        part,
        "PUT",
        &format!("/{account}/{CONTAINER}"),
        &[
            ("X-Timestamp", &format!("{timestamp:.5}")),
            ("X-Backend-Storage-Policy-Index", &policy.to_string()),
        ],
    );
    assert_eq!(head.status, 201, "container PUT on node {i}");
}

/// The policy each primary's copy of the container has.
fn replica_policies(c: &MultiCluster, primaries: &[usize], part: u32) -> Vec<String> {
    let account = c.account();
    primaries
        .iter()
        .map(|&i| {
            let (head, _) = c.direct(
                i,
                Kind::Container,
                part,
                "HEAD",
                &format!("/{account}/{CONTAINER}"),
                &[],
            );
            head.header("x-backend-storage-policy-index")
                .unwrap_or("none")
                .to_string()
        })
        .collect()
}

/// Every entry of the queue containers of the hours from `since` to now,
/// as each primary of each lists it.
fn queue_entries(c: &MultiCluster, since: f64) -> Vec<String> {
    let mut out = Vec::new();
    let first = (since as u64 - 60) / 3600 * 3600;
    let last = (now_secs() as u64) / 3600 * 3600;
    let mut hour = first;
    while hour <= last {
        let queue = hour.to_string();
        let (part, primaries) = c.primaries(Kind::Container, QUEUE, Some(&queue), None);
        for i in primaries {
            let (head, body) = c.direct(
                i,
                Kind::Container,
                part,
                "GET",
                &format!("/{QUEUE}/{queue}?format=json"),
                &[],
            );
            if head.status == 404 {
                continue;
            }
            assert!(head.status == 200 || head.status == 204, "{}", head.status);
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
            out.extend(
                rows.iter()
                    .map(|r| format!("{queue}/{}", r["name"].as_str().unwrap())),
            );
        }
        hour += 3600;
    }
    out.sort();
    out.dedup();
    out
}

fn has_data(c: &MultiCluster, policy: u32, name: &str) -> bool {
    (0..NODES).any(|i| {
        c.policy_object_files(i, policy, CONTAINER, name)
            .iter()
            .any(|f| f.ends_with(".data"))
    })
}

#[test]
fn a_split_brain_container_ends_up_in_one_policy() {
    let _serial = serial();
    let start = now_secs();
    let mut c = MultiCluster::start(Options {
        two_policies: true,
        ..Options::default()
    });
    // The account exists.
    assert_eq!(c.request("PUT", "/other", &[], b"").0.status, 201);
    let account = c.account();
    let (part, primaries) = c.primaries(Kind::Container, &account, Some(CONTAINER), None);
    let (first, others) = (primaries[0], &primaries[1..]);

    // The first creation, policy 1, reaches one primary only; objects
    // written now go to policy 1 (the only copy that answers).
    let t1 = now_secs();
    create_on(&c, first, part, 1, t1);
    let in_one: Vec<String> = (0..4).map(|i| format!("one-{i}")).collect();
    for name in &in_one {
        put(&c, name, &body_of(name, 1));
    }
    put(&c, "both", &body_of("both", 1));
    for name in in_one.iter().chain([&"both".to_string()]) {
        assert!(has_data(&c, 1, name), "{name} in policy 1");
    }

    // A later creation with policy 0 on the other primaries; with the
    // first one down, objects go to policy 0, one of them a newer version
    // of an object already in policy 1, one deleted again.
    create_on(&c, others[0], part, 0, t1 + 0.5);
    create_on(&c, others[1], part, 0, t1 + 0.5);
    c.stop_node(first);
    let in_zero: Vec<String> = (0..6).map(|i| format!("zero-{i}:x")).collect();
    for name in &in_zero {
        put(&c, name, &body_of(name, 2));
    }
    put(&c, "both", &body_of("both", 2));
    put(&c, "gone", &body_of("gone", 2));
    assert_eq!(
        c.request("DELETE", &format!("/{CONTAINER}/gone"), &[], b"")
            .0
            .status,
        204
    );
    for name in in_zero.iter().chain([&"both".to_string()]) {
        assert!(has_data(&c, 0, name), "{name} in policy 0");
    }
    c.start_node(first);
    assert_eq!(replica_policies(&c, &primaries, part), ["1", "0", "0"]);

    // Replication settles on the first creation's policy everywhere and
    // queues the other policy's rows.
    c.run_daemon_everywhere("object-updater");
    for _ in 0..2 {
        c.run_daemon_everywhere("container-replicator");
    }
    assert_eq!(replica_policies(&c, &primaries, part), ["1", "1", "1"]);
    let queued = queue_entries(&c, start);
    let mut misplaced = in_zero.clone();
    misplaced.extend(["both".to_string(), "gone".to_string()]);
    for name in &misplaced {
        let wanted = format!("0:/{account}/{CONTAINER}/{name}");
        assert!(
            queued.iter().any(|q| q.ends_with(&wanted)),
            "{wanted} not queued: {queued:?}"
        );
    }
    assert!(
        queued.iter().all(|q| q.contains("/0:/")),
        "only policy 0 rows are misplaced: {queued:?}"
    );

    // The reconciler moves them; the cleanup it leaves behind is queued
    // and settled by the next rounds. Bounded: a few rounds at most.
    c.run_daemon_everywhere("container-updater");
    let mut rounds = 0;
    loop {
        let stats = c.run_daemon(0, "container-reconciler");
        assert_eq!(stats["completed"], true, "{stats}");
        if rounds == 0 {
            let count = |k: &str| stats["counts"][k].as_u64().unwrap_or(0);
            assert_eq!(count("copy_success"), in_zero.len() as u64 + 1, "{stats}");
            assert_eq!(count("delete_success"), 1, "{stats}");
            assert_eq!(count("retry"), 0, "{stats}");
        }
        rounds += 1;
        c.run_daemon_everywhere("object-updater");
        c.run_daemon_everywhere("container-replicator");
        let left = queue_entries(&c, start);
        if left.is_empty() {
            break;
        }
        assert!(
            rounds < 4,
            "queue not empty after {rounds} rounds: {left:?}"
        );
    }

    // Copies written to handoffs while a node was down are the object
    // replicator's to settle against the tombstones.
    c.run_daemon_everywhere("object-replicator");

    // Every object reads back byte-exact in policy 1, newest version
    // winning; none is left on policy 0's disks; the deleted one is gone.
    for (name, version) in in_one
        .iter()
        .map(|n| (n.clone(), 1))
        .chain(in_zero.iter().map(|n| (n.clone(), 2)))
        .chain([("both".to_string(), 2)])
    {
        let (head, body) = c.request("GET", &format!("/{CONTAINER}/{name}"), &[], b"");
        assert_eq!(head.status, 200, "{name}");
        assert!(
            body == body_of(&name, version),
            "{name} is not version {version}"
        );
        assert_eq!(head.header("x-object-meta-name"), Some(name.as_str()));
        assert_eq!(head.header("content-type"), Some("application/x-test"));
        assert!(has_data(&c, 1, &name), "{name} has no data in policy 1");
        assert!(
            !has_data(&c, 0, &name),
            "{name} still has data in policy 0: {:?}",
            (0..NODES)
                .map(|i| c.policy_object_files(i, 0, CONTAINER, &name))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(
        c.request("GET", &format!("/{CONTAINER}/gone"), &[], b"")
            .0
            .status,
        404
    );
    assert!(!has_data(&c, 0, "gone") && !has_data(&c, 1, "gone"));
    let (head, listing) = c.request("GET", &format!("/{CONTAINER}"), &[], b"");
    assert_eq!(head.status, 200);
    let mut listed: Vec<String> = String::from_utf8(listing)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    listed.sort();
    let mut expected: Vec<String> = in_one.iter().chain(&in_zero).cloned().collect();
    expected.push("both".into());
    expected.sort();
    assert_eq!(listed, expected);
}
