//! Counters of one pass of a worker, shared by its concurrent tasks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Counters that tasks of a pass add to concurrently. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl Stats {
    pub fn new() -> Self {
        Stats::default()
    }

    pub fn add(&self, key: &'static str, n: u64) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_insert(0) += n;
        }
    }

    pub fn incr(&self, key: &'static str) {
        self.add(key, 1);
    }

    pub fn get(&self, key: &str) -> u64 {
        self.counts
            .lock()
            .ok()
            .and_then(|c| c.get(key).copied())
            .unwrap_or(0)
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default()
    }
}

/// What one pass did, as printed by `--once` (one JSON line) and logged in
/// continuous mode.
#[derive(Clone, Debug, Serialize)]
pub struct PassStats {
    pub worker: String,
    pub elapsed_secs: f64,
    /// False when the pass was cut short (shutdown) or could not start
    /// (no rings, say).
    pub completed: bool,
    pub counts: BTreeMap<String, u64>,
}

impl PassStats {
    pub fn new(worker: &str, elapsed: Duration, completed: bool, stats: &Stats) -> Self {
        PassStats {
            worker: worker.to_string(),
            elapsed_secs: elapsed.as_secs_f64(),
            completed,
            counts: stats.snapshot(),
        }
    }

    pub fn count(&self, key: &str) -> u64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for PassStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pass {} in {:.3}s",
            self.worker,
            if self.completed { "done" } else { "cut short" },
            self.elapsed_secs
        )?;
        for (k, v) in &self.counts {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_across_clones() {
        let stats = Stats::new();
        let other = stats.clone();
        stats.incr("objects");
        other.add("objects", 4);
        other.incr("failures");
        let pass = PassStats::new("w", Duration::from_millis(1500), true, &stats);
        assert_eq!(pass.count("objects"), 5);
        assert_eq!(pass.count("failures"), 1);
        assert_eq!(pass.count("missing"), 0);
        assert_eq!(
            pass.to_string(),
            "w pass done in 1.500s failures=1 objects=5"
        );
        let json: serde_json::Value = serde_json::from_str(&pass.to_json()).unwrap();
        assert_eq!(json["counts"]["objects"], 5);
    }
}
