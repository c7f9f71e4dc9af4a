//! `/metrics` of `apus serve`: after a known workload the proxy's
//! counters hold exactly what was sent, every scrape parses as the
//! Prometheus text format, the storage servers show their devices and
//! daemons, and the proxy's client port shows nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{get, login, request, Server};

/// One sample: metric name and labels (sorted) to value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict reader of the Prometheus text format (0.0.4): comment lines
/// are `# HELP` or `# TYPE` of a known type, declared once and before
/// their samples; each sample is `name{k="v",...} value` of a declared
/// family (with the suffixes its type allows), values are floats.
fn parse(text: &str) -> Samples {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Samples::new();
    assert!(text.ends_with('\n'), "no final newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let (kind, rest) = rest.split_once(' ').expect(line);
            let (name, value) = rest.split_once(' ').expect(line);
            assert!(is_name(name), "{line}");
            match kind {
                "HELP" => assert!(!value.is_empty(), "{line}"),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&value),
                        "{line}"
                    );
                    assert!(
                        types.insert(name.to_string(), value.to_string()).is_none(),
                        "declared twice: {line}"
                    );
                }
                _ => panic!("unknown comment {line}"),
            }
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (name_labels, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match name_labels.split_once('{') {
            None => (name_labels, Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect(line);
                (name, parse_labels(body, line))
            }
        };
        assert!(is_name(name), "{line}");
        let family = types
            .iter()
            .find(|(f, t)| {
                let suffixes: &[&str] = match t.as_str() {
                    "counter" => &["", "_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                suffixes.iter().any(|s| name == format!("{f}{s}"))
            })
            .unwrap_or_else(|| panic!("sample of no declared family: {line}"));
        if family.1 == "histogram" && name.ends_with("_bucket") {
            assert!(labels.iter().any(|(k, _)| k == "le"), "{line}");
        }
        let mut sorted = labels;
        sorted.sort();
        assert!(
            samples.insert((name.to_string(), sorted), value).is_none(),
            "duplicate sample {line}"
        );
    }
    samples
}

fn parse_labels(body: &str, line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect(line);
        assert!(is_name(key) && !key.starts_with("__"), "{line}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars
                .next()
                .unwrap_or_else(|| panic!("open label in {line}"));
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    _ => panic!("bad escape in {line}"),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.push((key.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut key: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    key.sort();
    samples.get(&(name.to_string(), key)).copied()
}

/// Scrapes `addr`'s `/metrics`, checking the content type.
fn scrape(addr: SocketAddr) -> Samples {
    let (head, body) = support::exchange(addr, "GET", "/metrics", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(std::str::from_utf8(&body).unwrap())
}

fn banner_addr(banner: &str, label: &str) -> SocketAddr {
    let word = banner
        .split_whitespace()
        .skip_while(|w| *w != label)
        .nth(1)
        .unwrap_or_else(|| panic!("no {label} in {banner}"));
    word.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap()
}

#[test]
fn counters_after_a_known_workload() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, "metrics");
    let proxy = server.wait_ready();
    let banner = fs::read_to_string(&server.stdout).unwrap();
    let admin = banner_addr(&banner, "metrics");
    let object_server = banner_addr(&banner, "object");

    // The workload: a login, a container, 5 PUTs, 3 GETs, 2 DELETEs and
    // a GET of a missing object.
    let (token, account) = login(proxy, "test:tester", "testing");
    let auth = [("X-Auth-Token", token.as_str())];
    let put = request(proxy, "PUT", &format!("{account}/c"), &auth, "");
    assert_eq!(put.map(|r| r.0), Some(201));
    let body = "0123456789".repeat(10);
    for i in 0..5 {
        let r = request(proxy, "PUT", &format!("{account}/c/o{i}"), &auth, &body);
        assert_eq!(r.map(|r| r.0), Some(201));
    }
    let mut sent = 0;
    for i in 0..3 {
        let (status, got) = request(proxy, "GET", &format!("{account}/c/o{i}"), &auth, "").unwrap();
        assert_eq!((status, got.as_str()), (200, body.as_str()));
        sent += got.len();
    }
    for i in 0..2 {
        let r = request(proxy, "DELETE", &format!("{account}/c/o{i}"), &auth, "");
        assert_eq!(r.map(|r| r.0), Some(204));
    }
    let (status, missing) = request(proxy, "GET", &format!("{account}/c/none"), &auth, "").unwrap();
    assert_eq!(status, 404);
    sent += missing.len();

    let m = scrape(admin);
    let req = |method: &str, class: &str| {
        value(
            &m,
            "apus_requests_total",
            &[
                ("server", "proxy"),
                ("method", method),
                ("status_class", class),
            ],
        )
    };
    // The readiness check, the login and 3 GETs.
    assert_eq!(req("get", "2xx"), Some(5.0));
    assert_eq!(req("put", "2xx"), Some(6.0));
    assert_eq!(req("delete", "2xx"), Some(2.0));
    assert_eq!(req("get", "4xx"), Some(1.0));
    assert_eq!(req("head", "2xx"), None);
    let obj = |method: &str, class: &str| {
        value(
            &m,
            "apus_proxy_requests_total",
            &[
                ("type", "object"),
                ("policy", "0"),
                ("method", method),
                ("status_class", class),
            ],
        )
    };
    assert_eq!(obj("put", "2xx"), Some(5.0));
    assert_eq!(obj("get", "2xx"), Some(3.0));
    assert_eq!(obj("delete", "2xx"), Some(2.0));
    assert_eq!(obj("get", "4xx"), Some(1.0));
    let container_put = [
        ("type", "container"),
        ("policy", ""),
        ("method", "put"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        value(&m, "apus_proxy_requests_total", &container_put),
        Some(1.0)
    );
    let obj_bytes = |name: &str| value(&m, name, &[("type", "object")]);
    assert_eq!(
        obj_bytes("apus_proxy_received_body_bytes_total"),
        Some(500.0)
    );
    assert_eq!(
        obj_bytes("apus_proxy_sent_body_bytes_total"),
        Some(sent as f64)
    );
    // Wire bytes include every head: more than the bodies.
    let wire = value(&m, "apus_received_bytes_total", &[("server", "proxy")]).unwrap();
    assert!(wire > 500.0, "{wire}");
    // The histogram counted every finished GET of an object, and the
    // first byte of each.
    let get_2xx = [
        ("type", "object"),
        ("policy", "0"),
        ("method", "get"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        value(&m, "apus_proxy_request_duration_seconds_count", &get_2xx),
        Some(3.0)
    );
    assert_eq!(
        value(
            &m,
            "apus_proxy_first_byte_seconds_count",
            &[("type", "object"), ("policy", "0")]
        ),
        Some(4.0)
    );
    for reason in ["timeout", "error", "server_error"] {
        let labels = [("node_type", "object"), ("reason", reason)];
        assert_eq!(
            value(&m, "apus_proxy_backend_errors_total", &labels),
            Some(0.0)
        );
    }
    assert_eq!(value(&m, "apus_proxy_error_limited_nodes", &[]), Some(0.0));
    assert!(value(&m, "apus_process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(value(&m, "apus_process_open_fds", &[]).unwrap() > 0.0);

    // The object server: 3 replicas of 5 PUTs (other requests, from the
    // daemons, may come and go), its devices, and a daemon's passes once
    // one is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = scrape(object_server);
        let passes = value(
            &s,
            "apus_daemon_passes_total",
            &[("daemon", "object-updater"), ("outcome", "completed")],
        );
        if passes.is_some_and(|p| p >= 1.0) {
            break s;
        }
        assert!(Instant::now() < deadline, "no object-updater pass");
        std::thread::sleep(Duration::from_millis(200));
    };
    let puts = value(
        &s,
        "apus_requests_total",
        &[
            ("server", "object"),
            ("method", "put"),
            ("status_class", "2xx"),
        ],
    );
    assert!(puts.is_some_and(|p| p >= 15.0), "{puts:?}");
    for d in 1..=4 {
        let dev = format!("d{d}");
        let labels = [("server", "object"), ("device", dev.as_str())];
        let cap = value(&s, "apus_device_capacity_bytes", &labels).unwrap();
        let free = value(&s, "apus_device_free_bytes", &labels).unwrap();
        assert!(cap > 0.0 && free <= cap);
        assert_eq!(value(&s, "apus_device_quarantined", &labels), Some(0.0));
        assert!(value(&s, "apus_device_async_pendings", &labels).is_some());
    }
    // Container daemons are shown by the container server only.
    assert!(!s
        .keys()
        .any(|(_, l)| l.iter().any(|(_, v)| v.starts_with("container-"))));

    // The client port does not serve metrics.
    let (status, body) = get(proxy, "/metrics").unwrap();
    assert_ne!(status, 200);
    assert!(!body.contains("apus_"), "{body}");
    assert!(server.terminate().success(), "{}", server.stderr());
}

#[test]
fn the_parser_refuses_what_is_not_the_format() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n";
    assert_eq!(parse(ok).len(), 1);
    for bad in [
        "a 1\n",
        "# TYPE a counter\na{k=\"v} 1\n",
        "# TYPE a gauge\na one\n",
        "# TYPE a gauge\n# TYPE a gauge\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad}");
    }
}
