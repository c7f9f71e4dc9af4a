//! `apus bench` against a live `apus serve`: a mixed run through the
//! Swift API and through S3 reports every op it sent with no errors and
//! leaves no container behind, runs into one named container add to it
//! (as `scripts/bench-scale.sh` fills one), and the fixed suite prints
//! every line `scripts/bench.sh` joins. No test looks at a figure's
//! value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::process::Command;

use support::{exchange, login, Server};

/// Runs `apus bench` with `args`; returns its stdout, failing the test
/// with what it and the server said when it does not succeed.
fn bench(args: &[&str], server: &Server) -> String {
    let out = Command::new(support::apus_bin())
        .arg("bench")
        .args(args)
        .output()
        .expect("run apus bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "apus bench {args:?}: {}\n{stdout}\n{}\nserver: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    stdout
}

/// The names of the containers in test:tester's account.
fn containers(proxy: SocketAddr) -> Vec<String> {
    let (token, account) = login(proxy, "test:tester", "testing");
    let (head, body) = exchange(
        proxy,
        "GET",
        &format!("{account}?format=json"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    match head.status {
        204 => Vec::new(),
        200 => {
            let listing: serde_json::Value = serde_json::from_slice(&body).unwrap();
            listing
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        }
        other => panic!("account GET: {other}"),
    }
}

/// Checks a mixed run's JSON summary: `ops` requests of the three ops,
/// no errors.
fn check_summary(stdout: &str, ops: u64) {
    let summary: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));
    assert_eq!(summary["errors"], 0, "{summary}");
    let skipped = summary["skipped"].as_u64().unwrap();
    let mut answered = 0;
    for op in ["put", "get", "delete"] {
        let figures = &summary["ops"][op];
        let count = figures["count"].as_u64().unwrap_or(0);
        assert!(count > 0, "no {op} in {summary}");
        assert_eq!(figures["errors"], 0, "{op}: {summary}");
        for percentile in ["p50", "p90", "p99", "p99.9", "max"] {
            assert!(
                figures["latency_ms"][percentile].is_number(),
                "{op} {percentile}: {summary}"
            );
        }
        answered += count;
    }
    assert!(summary["ops"].get("head").is_none(), "{summary}");
    // Every draw was sent and answered, or found no object (not expected
    // with a prefill and PUTs in the mix, but not an error either).
    assert_eq!(answered + skipped, ops, "{summary}");
    assert_eq!(summary["total"]["count"], answered, "{summary}");
}

#[test]
fn mixed_runs_report_every_op_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();

    let auth = format!("http://{proxy}/auth/v1.0");
    let stdout = bench(
        &[
            "-A",
            &auth,
            "-U",
            "test:tester",
            "-K",
            "testing",
            "--ops",
            "200",
            "--mix",
            "put=50,get=40,delete=10",
            "--concurrency",
            "4",
            "--containers",
            "2",
            "--json",
        ],
        &server,
    );
    check_summary(&stdout, 200);
    let left = containers(proxy);
    assert!(
        !left.iter().any(|c| c.starts_with("bench-")),
        "left behind: {left:?}"
    );

    // The same through S3, in a bucket of the same account.
    let endpoint = format!("http://{proxy}");
    let stdout = bench(
        &[
            "--s3",
            "-A",
            &endpoint,
            "--ops",
            "100",
            "--mix",
            "put=50,get=40,delete=10",
            "--concurrency",
            "4",
            "--size",
            "1KiB-8KiB",
            "--json",
        ],
        &server,
    );
    check_summary(&stdout, 100);
    let left = containers(proxy);
    assert!(
        !left.iter().any(|c| c.starts_with("bench-")),
        "left behind: {left:?}"
    );
    assert!(server.terminate().success(), "{}", server.stderr());
}

/// The names a listing GET of `query` in `container` returns (objects'
/// `name`, pseudo-directories' `subdir`).
fn listing(proxy: SocketAddr, container: &str, query: &str) -> Vec<String> {
    let (token, account) = login(proxy, "test:tester", "testing");
    let (head, body) = exchange(
        proxy,
        "GET",
        &format!("{account}/{container}?format=json{query}"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(head.status, 200, "{}", String::from_utf8_lossy(&body));
    let entries: serde_json::Value = serde_json::from_slice(&body).unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.get("name")
                .or_else(|| e.get("subdir"))
                .and_then(|n| n.as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn runs_into_one_named_container_add_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();

    let auth = format!("http://{proxy}/auth/v1.0");
    let fill = |first: &str, extra: &[&str]| {
        let mut args = vec![
            "-A",
            &auth,
            "--container",
            "filled",
            "--first-object",
            first,
            "--dirs",
            "10",
            "--ops",
            "30",
            "--concurrency",
            "4",
            "--json",
        ];
        args.extend_from_slice(extra);
        bench(&args, &server)
    };
    fill("0", &["--mix", "put=100", "--keep"]);
    fill("30", &["--mix", "put=100", "--keep"]);
    let names = listing(proxy, "filled", "");
    let want: Vec<String> = {
        let mut w: Vec<String> = (0..60)
            .map(|n| format!("d{}/obj-{n:010}", n % 10))
            .collect();
        w.sort();
        w
    };
    assert_eq!(names, want);
    let dirs = listing(proxy, "filled", "&delimiter=/");
    assert_eq!(dirs, (0..10).map(|i| format!("d{i}/")).collect::<Vec<_>>());
    assert_eq!(
        listing(proxy, "filled", "&prefix=d7/&delimiter=/"),
        [
            "d7/obj-0000000007",
            "d7/obj-0000000017",
            "d7/obj-0000000027",
            "d7/obj-0000000037",
            "d7/obj-0000000047",
            "d7/obj-0000000057"
        ]
    );

    // Without --keep a run deletes what it wrote, and only that: the
    // container and the objects before it stay.
    fill("60", &["--mix", "put=50,get=50"]);
    assert_eq!(listing(proxy, "filled", ""), want);
    assert!(containers(proxy).contains(&"filled".to_string()));
    assert!(server.terminate().success(), "{}", server.stderr());
}

#[test]
fn the_suite_prints_every_line_the_scripts_join() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();

    let auth = format!("http://{proxy}/auth/v1.0");
    let stdout = bench(
        &[
            "suite",
            "-A",
            &auth,
            "--objects",
            "20",
            "--listing",
            "30",
            "--large-mib",
            "1",
            "--concurrency",
            "4",
        ],
        &server,
    );
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        fields[1]
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        lines.push(format!("{} {}", fields[0], fields[2]));
    }
    let mut want = Vec::new();
    for verb in ["put", "get", "head", "delete"] {
        want.push(format!("small_{verb} ops/s"));
        want.push(format!("small_{verb}_p50 ms"));
        want.push(format!("small_{verb}_p99 ms"));
    }
    want.extend(
        [
            "listing_10k_first_json ms",
            "listing_10k_json ms",
            "listing_10k_bytes bytes",
            "large_put MB/s",
            "large_get MB/s",
        ]
        .map(String::from),
    );
    assert_eq!(lines, want, "{stdout}");
    let left = containers(proxy);
    assert!(
        !left.iter().any(|c| c.starts_with("bench-")),
        "left behind: {left:?}"
    );
    assert!(server.terminate().success(), "{}", server.stderr());
}
