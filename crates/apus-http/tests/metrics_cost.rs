//! What counting one request costs: `RequestMetrics::record` (a counter
//! and a histogram observation) and the byte counters, timed over many
//! calls. Prints the cost per request (run with `--release --nocapture`,
//! or under callgrind for instruction counts); asserts only the totals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use apus_http::metrics::{method_index, ServerKind, STATUS_CLASSES};
use apus_http::RequestMetrics;
use http::{Method, StatusCode};

#[test]
fn counting_a_request_costs_a_few_atomic_additions() {
    let m = RequestMetrics::new(ServerKind::Object);
    let n = 1_000_000u64;
    let t = Instant::now();
    for i in 0..n {
        m.record(
            &Method::PUT,
            StatusCode::CREATED,
            Duration::from_nanos(i % 5_000_000),
        );
        m.add_received(4096 + 200);
        m.add_sent(150);
    }
    let per = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    assert_eq!(m.requests(method_index(&Method::PUT), 1), n);
    assert_eq!(STATUS_CLASSES[1], "2xx");
    eprintln!("one request counted: {per:.1} ns");
}
