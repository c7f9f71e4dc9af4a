//! The daemons' Prometheus figures: each pass a worker finishes
//! ([`crate::run_once`]) is recorded in a [`DaemonMetrics`] shared by
//! the node's daemons, and each storage server shows the daemons of its
//! kind ([`DaemonMetrics::collector`]): `object-*` daemons with the object
//! server, `container-*` with the container server, `account-*` with the
//! account server. A pass is recorded once, so the cost is a lock per
//! pass, never per item.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use apus_http::metrics::{encode_counter, encode_gauge};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use crate::stats::PassStats;

/// What the passes of one daemon added up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaemonFigures {
    pub passes_completed: u64,
    pub passes_incomplete: u64,
    /// Seconds the last pass (completed or not) took.
    pub last_pass_seconds: f64,
    /// Unix time the last completed pass ended (0: none yet).
    pub last_completed_unix: f64,
    /// Every counter of every pass, added up.
    pub counts: BTreeMap<String, u64>,
    /// The counters that name failures (see [`is_error_counter`]), added up.
    pub errors: u64,
}

/// Whether a pass counter counts failures: `errors`, `failures` and
/// names ending `_failed`, `_failures` or `_errors`.
pub fn is_error_counter(name: &str) -> bool {
    name == "errors"
        || name == "failures"
        || name.ends_with("_failed")
        || name.ends_with("_failures")
        || name.ends_with("_errors")
}

/// The passes of a node's daemons, by daemon name.
#[derive(Debug, Default)]
pub struct DaemonMetrics {
    daemons: Mutex<BTreeMap<String, DaemonFigures>>,
}

impl DaemonMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(DaemonMetrics::default())
    }

    /// Adds one pass.
    pub fn record(&self, pass: &PassStats) {
        let Ok(mut daemons) = self.daemons.lock() else {
            return;
        };
        let f = match daemons.get_mut(pass.worker.as_str()) {
            Some(f) => f,
            None => daemons.entry(pass.worker.clone()).or_default(),
        };
        if pass.completed {
            f.passes_completed += 1;
            f.last_completed_unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
        } else {
            f.passes_incomplete += 1;
        }
        f.last_pass_seconds = pass.elapsed_secs;
        for (k, v) in &pass.counts {
            if is_error_counter(k) {
                f.errors = f.errors.saturating_add(*v);
            }
            match f.counts.get_mut(k.as_str()) {
                Some(n) => *n = n.saturating_add(*v),
                None => {
                    f.counts.insert(k.clone(), *v);
                }
            }
        }
    }

    /// One daemon's figures so far.
    pub fn figures(&self, daemon: &str) -> Option<DaemonFigures> {
        self.daemons.lock().ok()?.get(daemon).cloned()
    }

    /// The figures of the daemons whose names start with `prefix`
    /// (`"object-"`, say), for one server's registry.
    pub fn collector(self: &Arc<Self>, prefix: &'static str) -> DaemonCollector {
        DaemonCollector {
            metrics: self.clone(),
            prefix,
        }
    }
}

/// The figures of some of a node's daemons, encoded at scrape time.
#[derive(Debug)]
pub struct DaemonCollector {
    metrics: Arc<DaemonMetrics>,
    prefix: &'static str,
}

impl Collector for DaemonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A copy, so the lock is not held while encoding.
        let daemons: Vec<(String, DaemonFigures)> = match self.metrics.daemons.lock() {
            Ok(d) => d
                .iter()
                .filter(|(name, _)| name.starts_with(self.prefix))
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect(),
            Err(_) => return Ok(()),
        };
        let mut family = encoder.encode_descriptor(
            "apus_daemon_passes",
            "Passes a daemon ran, by outcome (completed, or cut short or failed)",
            None,
            MetricType::Counter,
        )?;
        for (name, f) in &daemons {
            for (outcome, n) in [
                ("completed", f.passes_completed),
                ("incomplete", f.passes_incomplete),
            ] {
                encode_counter(
                    &mut family,
                    &[("daemon", name.as_str()), ("outcome", outcome)],
                    n,
                )?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "apus_daemon_last_pass_duration_seconds",
            "How long the daemon's last pass took",
            None,
            MetricType::Gauge,
        )?;
        for (name, f) in &daemons {
            encode_gauge(
                &mut family,
                &[("daemon", name.as_str())],
                f.last_pass_seconds,
            )?;
        }
        let mut family = encoder.encode_descriptor(
            "apus_daemon_last_completed_pass_timestamp_seconds",
            "Unix time the daemon's last completed pass ended (0: none yet)",
            None,
            MetricType::Gauge,
        )?;
        for (name, f) in &daemons {
            encode_gauge(
                &mut family,
                &[("daemon", name.as_str())],
                f.last_completed_unix,
            )?;
        }
        let mut family = encoder.encode_descriptor(
            "apus_daemon_items",
            "What the daemon's passes counted (partitions, objects, successes...), by counter",
            None,
            MetricType::Counter,
        )?;
        for (name, f) in &daemons {
            for (counter, n) in &f.counts {
                encode_counter(
                    &mut family,
                    &[("daemon", name.as_str()), ("counter", counter.as_str())],
                    *n,
                )?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "apus_daemon_errors",
            "Failures the daemon's passes counted (the sum of its failure counters)",
            None,
            MetricType::Counter,
        )?;
        for (name, f) in &daemons {
            encode_counter(&mut family, &[("daemon", name.as_str())], f.errors)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    use crate::stats::Stats;

    #[test]
    fn passes_add_up_and_errors_are_picked_out() {
        let m = DaemonMetrics::new();
        let stats = Stats::new();
        stats.add("objects", 3);
        stats.incr("failures");
        stats.incr("copy_failed");
        m.record(&PassStats::new(
            "object-auditor",
            Duration::from_millis(5),
            true,
            &stats,
        ));
        m.record(&PassStats::new(
            "object-auditor",
            Duration::from_millis(7),
            false,
            &stats,
        ));
        let f = m.figures("object-auditor").unwrap();
        assert_eq!((f.passes_completed, f.passes_incomplete), (1, 1));
        assert_eq!(f.counts["objects"], 6);
        assert_eq!(f.errors, 4);
        assert!((f.last_pass_seconds - 0.007).abs() < 1e-9);
        assert!(f.last_completed_unix > 0.0);

        let mut reg = prometheus_client::registry::Registry::default();
        reg.register_collector(Box::new(m.collector("object-")));
        reg.register_collector(Box::new(m.collector("container-")));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).unwrap();
        assert!(out.contains(
            "apus_daemon_passes_total{daemon=\"object-auditor\",outcome=\"completed\"} 1\n"
        ));
        assert!(out.contains(
            "apus_daemon_items_total{daemon=\"object-auditor\",counter=\"objects\"} 6\n"
        ));
        assert!(out.contains("apus_daemon_errors_total{daemon=\"object-auditor\"} 4\n"));
    }
}
