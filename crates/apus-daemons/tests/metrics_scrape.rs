//! What a scrape of many daemon figures costs: 1,700 daemons make about
//! 10,000 series. Prints the time (run with `--nocapture`); asserts only
//! that every series is there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use apus_daemons::metrics::DaemonMetrics;
use apus_daemons::{PassStats, Stats};
use prometheus_client::registry::Registry;

#[test]
fn ten_thousand_series_scrape() {
    let metrics = DaemonMetrics::new();
    let stats = Stats::new();
    stats.add("objects", 7);
    stats.incr("failures");
    for i in 0..1_700 {
        let name = format!("object-daemon-{i}");
        metrics.record(&PassStats::new(
            &name,
            Duration::from_millis(3),
            true,
            &stats,
        ));
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(metrics.collector("object-")));
    let mut best = Duration::MAX;
    let mut out = String::new();
    for _ in 0..5 {
        out.clear();
        let t = Instant::now();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        best = best.min(t.elapsed());
    }
    let series = out.lines().filter(|l| !l.starts_with('#')).count();
    // passes (2 outcomes), duration, completion time, items (2 counters),
    // errors: 7 per daemon.
    assert_eq!(series, 1_700 * 7);
    eprintln!(
        "scrape of {series} series: {:.2} ms, {} bytes",
        best.as_secs_f64() * 1e3,
        out.len()
    );
}
