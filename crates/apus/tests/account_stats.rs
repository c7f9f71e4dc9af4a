//! Account statistics on a real multi-process cluster (see
//! `support::cluster`): every account replica must end up reporting what
//! the container holds, even after a replica that missed the container's
//! latest report comes back (restarted, or continued after SIGSTOP) and
//! replicates its old row.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::cluster::{Kind, MultiCluster, Options, NODES};
use support::serial;

/// What one account replica says about the account and one container.
#[derive(Debug, PartialEq, Eq)]
struct Reported {
    /// `X-Account-Object-Count` and `X-Account-Bytes-Used` of a HEAD.
    account: (i64, i64),
    /// The container's row in the listing: count and bytes.
    row: Option<(i64, i64)>,
}

/// Asks node `i`'s account server directly (no proxy, no other replica).
fn reported(c: &MultiCluster, i: usize, part: u32, container: &str) -> Reported {
    let account = c.account();
    let (head, _) = c.direct(i, Kind::Account, part, "HEAD", &format!("/{account}"), &[]);
    assert_eq!(head.status, 204, "HEAD of the account on node {i}");
    let int = |name: &str| -> i64 {
        head.header(name)
            .unwrap_or_else(|| panic!("no {name} from node {i}"))
            .parse()
            .unwrap()
    };
    let totals = (int("x-account-object-count"), int("x-account-bytes-used"));
    let (head, body) = c.direct(
        i,
        Kind::Account,
        part,
        "GET",
        &format!("/{account}?format=json"),
        &[],
    );
    assert_eq!(head.status, 200, "listing of the account on node {i}");
    let rows: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let row = rows.as_array().unwrap().iter().find_map(|r| {
        (r["name"] == container)
            .then(|| (r["count"].as_i64().unwrap(), r["bytes"].as_i64().unwrap()))
    });
    Reported {
        account: totals,
        row,
    }
}

/// How the hung node comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Back {
    /// SIGKILL and a fresh start: the reports queued for it are gone.
    Restarted,
    /// SIGCONT: the reports that timed out wait in the stopped server's
    /// accept queue, their clients gone; it runs some of them and drops
    /// others (about half the runs here), so it may or may not be stale.
    Resumed,
}

/// A stale account replica comes back and replicates its old row: the
/// container's counts survive on every replica.
///
/// The stale node is an account primary but not a primary of the
/// container, so it never reports the container itself: once the
/// container's replicas have recorded their counts as reported, the other
/// account replicas are the only holders of the truth.
fn stale_account_replica(back: Back) {
    let _serial = serial();
    let mut c = MultiCluster::start(Options::default());
    let account = c.account();
    let (apart, account_nodes) = c.primaries(Kind::Account, &account, None, None);
    let (container, container_nodes, stale) = (0..)
        .map(|n| format!("c12-{n}"))
        .find_map(|name| {
            let (_, cnodes) = c.primaries(Kind::Container, &account, Some(&name), None);
            let outside = (0..NODES).find(|i| !cnodes.contains(i))?;
            account_nodes
                .contains(&outside)
                .then_some((name, cnodes, outside))
        })
        .unwrap();
    let live: Vec<usize> = (0..NODES).filter(|&i| i != stale).collect();
    assert_eq!(
        c.request("PUT", &format!("/{container}"), &[], b"")
            .0
            .status,
        201
    );
    let empty = Reported {
        account: (0, 0),
        row: Some((0, 0)),
    };
    for &i in &account_nodes {
        assert_eq!(reported(&c, i, apart, &container), empty, "node {i}");
    }

    c.pause_node(stale);
    let names = ["obj-0", "obj-1", "obj-2"];
    for (n, name) in names.iter().enumerate() {
        let path = format!("/{container}/{name}");
        let body = vec![b'x'; 100 * (n + 1)];
        assert_eq!(c.request("PUT", &path, &[], &body).0.status, 201, "{path}");
    }
    let truth = Reported {
        account: (3, 600),
        row: Some((3, 600)),
    };
    // The container's replicas agree (updates that missed one arrive),
    // then report to the account: the stale replica times out, the other
    // two take the counts, and each container replica records them as
    // reported.
    for daemon in ["object-updater", "container-replicator"] {
        for &i in &live {
            c.run_daemon(i, daemon);
        }
    }
    for &i in &container_nodes {
        assert_eq!(
            c.container_replica_listing(i, &container),
            names,
            "node {i}"
        );
    }
    for &i in &live {
        c.run_daemon(i, "container-updater");
    }
    for &i in account_nodes.iter().filter(|&&i| i != stale) {
        assert_eq!(reported(&c, i, apart, &container), truth, "node {i}");
    }

    match back {
        Back::Restarted => {
            c.kill_node(stale);
            c.start_node(stale);
            assert_eq!(
                reported(&c, stale, apart, &container),
                empty,
                "the stale replica missed the report"
            );
        }
        Back::Resumed => c.resume_node(stale),
    }
    let before_push = reported(&c, stale, apart, &container);
    c.run_daemon(stale, "account-replicator");
    let after_push: Vec<(usize, Reported)> = account_nodes
        .iter()
        .map(|&i| (i, reported(&c, i, apart, &container)))
        .collect();
    // What a converge runs on every node.
    for daemon in [
        "object-replicator",
        "object-updater",
        "container-replicator",
        "container-updater",
        "account-replicator",
        "account-replicator",
    ] {
        c.run_daemon_everywhere(daemon);
    }
    for &i in &account_nodes {
        assert_eq!(
            reported(&c, i, apart, &container),
            truth,
            "node {i} after converging (stale replica: node {stale}, {back:?}, \
             holding {before_push:?}; right after it replicated: {after_push:?})"
        );
    }
    for (i, r) in after_push {
        if i != stale {
            assert_eq!(r, truth, "node {i} right after the stale replica pushed");
        }
    }
}

#[test]
fn scenario_12_account_stats_converge() {
    stale_account_replica(Back::Restarted);
}

#[test]
fn scenario_12_account_stats_converge_after_sigcont() {
    stale_account_replica(Back::Resumed);
}
