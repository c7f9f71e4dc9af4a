//! The result of a mixed run: per op, how many requests succeeded, at
//! what rate and latency, and which failed how; printed as a table for
//! people or as one JSON object for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::histogram::Histogram;
use crate::workload::Op;

const MIB: f64 = 1024.0 * 1024.0;

/// Latency percentiles, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram) -> Latency {
        Latency {
            p50: h.percentile_ms(50.0),
            p90: h.percentile_ms(90.0),
            p99: h.percentile_ms(99.0),
            p99_9: h.percentile_ms(99.9),
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// One op's figures (or all ops', for the total).
#[derive(Clone, Debug, Default)]
pub struct OpSummary {
    /// Requests answered with success.
    pub count: u64,
    /// Body bytes sent (PUT) or received (GET, listings) by those.
    pub bytes: u64,
    pub ops_per_sec: f64,
    /// Mebibytes (2^20 bytes) per second.
    pub mib_per_sec: f64,
    /// Of the successful requests.
    pub latency: Latency,
    /// Requests that failed: an error status, or no answer at all.
    pub errors: u64,
    /// Failures by status code (`"404"`), or `"transport"` for requests
    /// that got no complete answer.
    pub errors_by_status: BTreeMap<String, u64>,
    /// What the first transport failure said, to tell the user why.
    pub first_transport_error: Option<String>,
}

impl OpSummary {
    pub fn new(
        count: u64,
        bytes: u64,
        latency: &Histogram,
        errors_by_status: BTreeMap<String, u64>,
        first_transport_error: Option<String>,
        elapsed_secs: f64,
    ) -> OpSummary {
        let per_sec = |n: f64| {
            if elapsed_secs > 0.0 {
                n / elapsed_secs
            } else {
                0.0
            }
        };
        OpSummary {
            count,
            bytes,
            ops_per_sec: per_sec(count as f64),
            mib_per_sec: per_sec(bytes as f64 / MIB),
            latency: Latency::of(latency),
            errors: errors_by_status.values().sum(),
            errors_by_status,
            first_transport_error,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "bytes": self.bytes,
            "ops_per_sec": round(self.ops_per_sec, 2),
            "mib_per_sec": round(self.mib_per_sec, 3),
            "latency_ms": {
                "p50": round(self.latency.p50, 3),
                "p90": round(self.latency.p90, 3),
                "p99": round(self.latency.p99, 3),
                "p99.9": round(self.latency.p99_9, 3),
                "max": round(self.latency.max, 3),
            },
            "errors": self.errors,
            "errors_by_status": self.errors_by_status,
            "first_transport_error": self.first_transport_error,
        })
    }
}

/// Figures rounded for printing, so JSON readers see `1.234`, not
/// `1.2340000000000002`.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// A whole mixed run.
#[derive(Clone, Debug)]
pub struct Summary {
    /// `swift` or `s3`.
    pub api: String,
    /// The timed part, prefill excluded.
    pub elapsed_secs: f64,
    pub concurrency: usize,
    pub containers: u32,
    /// The mix and sizes as given (normalized).
    pub mix: String,
    pub sizes: String,
    pub prefill: u64,
    /// The ops the mix sends, in [`Op::ALL`] order.
    pub ops: Vec<(Op, OpSummary)>,
    pub total: OpSummary,
    /// GET, HEAD or DELETE draws that found no object to act on, and so
    /// sent nothing (they count towards `--ops`).
    pub skipped: u64,
    /// GET, HEAD or DELETE draws that had to wait for an object another
    /// request held: a sign the prefill was too small for the concurrency.
    pub waited: u64,
    /// Why the run ended before its duration or op count, if it did.
    pub ended_early: Option<String>,
}

impl Summary {
    /// One JSON object (`ops` keyed by op name).
    pub fn to_json(&self) -> Value {
        let ops: serde_json::Map<String, Value> = self
            .ops
            .iter()
            .map(|(op, s)| (op.name().to_string(), s.to_json()))
            .collect();
        json!({
            "api": self.api,
            "elapsed_secs": round(self.elapsed_secs, 3),
            "concurrency": self.concurrency,
            "containers": self.containers,
            "mix": self.mix,
            "sizes": self.sizes,
            "prefill": self.prefill,
            "ops": ops,
            "total": self.total.to_json(),
            "errors": self.total.errors,
            "skipped": self.skipped,
            "waited": self.waited,
            "ended_early": self.ended_early,
        })
    }

    /// The table people read.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let attempted = self.total.count + self.total.errors;
        let _ = writeln!(
            out,
            "{} requests in {:.2} s: {}, {} objects, {} concurrent, {} container{}{}",
            attempted,
            self.elapsed_secs,
            self.mix,
            self.sizes,
            self.concurrency,
            self.containers,
            if self.containers == 1 { "" } else { "s" },
            match self.api.as_str() {
                "s3" => ", S3",
                _ => "",
            }
        );
        if let Some(why) = &self.ended_early {
            let _ = writeln!(out, "ended early: {why}");
        }
        let _ = writeln!(
            out,
            "{:<7}{:>9}{:>11}{:>9}{:>9}{:>9}{:>9}{:>10}{:>9}",
            "op", "count", "ops/s", "MiB/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let rows = self
            .ops
            .iter()
            .map(|(op, s)| (op.name(), s))
            .chain([("total", &self.total)]);
        for (name, s) in rows {
            let l = &s.latency;
            let _ = writeln!(
                out,
                "{:<7}{:>9}{:>11.1}{:>9.2}{:>9}{:>9}{:>9}{:>10}{:>9}",
                name,
                s.count,
                s.ops_per_sec,
                s.mib_per_sec,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.max)
            );
        }
        if self.total.errors == 0 {
            let _ = writeln!(out, "errors: none");
        } else {
            let _ = writeln!(out, "errors: {}", self.total.errors);
            for (op, s) in &self.ops {
                for (status, n) in &s.errors_by_status {
                    let what = match status.parse::<u16>().ok().and_then(reason) {
                        Some(reason) => format!("{status} {reason}"),
                        None => status.clone(),
                    };
                    let _ = write!(out, "  {op}: {what} x{n}");
                    match (&s.first_transport_error, status.as_str()) {
                        (Some(first), "transport") => {
                            let _ = writeln!(out, " (first: {first})");
                        }
                        _ => out.push('\n'),
                    }
                }
            }
        }
        if self.skipped > 0 {
            let _ = writeln!(
                out,
                "skipped: {} GET/HEAD/DELETE draws found no object and sent nothing",
                self.skipped
            );
        }
        if self.waited > 0 {
            let _ = writeln!(
                out,
                "waited: {} GET/HEAD/DELETE draws waited for an object another request held \
                 (a larger --prefill avoids it)",
                self.waited
            );
        }
        out
    }
}

/// A latency for the table: 2 decimals below a second, fewer above.
fn ms(value: f64) -> String {
    if value < 1000.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.0}")
    }
}

fn reason(status: u16) -> Option<&'static str> {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample() -> Summary {
        let mut h = Histogram::default();
        for us in [800u64, 1_000, 1_200, 30_000] {
            h.record(Duration::from_micros(us));
        }
        let mut errors = BTreeMap::new();
        errors.insert("503".to_string(), 2);
        errors.insert("transport".to_string(), 1);
        let put = OpSummary::new(4, 4 << 20, &h, errors, Some("refused".into()), 2.0);
        let get = OpSummary::new(4, 0, &h, BTreeMap::new(), None, 2.0);
        let mut all = h.clone();
        all.merge(&h);
        let mut total_errors = BTreeMap::new();
        total_errors.insert("503".to_string(), 2);
        total_errors.insert("transport".to_string(), 1);
        Summary {
            api: "swift".into(),
            elapsed_secs: 2.0,
            concurrency: 4,
            containers: 1,
            mix: "put=1,get=1".into(),
            sizes: "1 MiB".into(),
            prefill: 8,
            ops: vec![(Op::Put, put), (Op::Get, get)],
            total: OpSummary::new(8, 4 << 20, &all, total_errors, None, 2.0),
            skipped: 0,
            waited: 0,
            ended_early: None,
        }
    }

    #[test]
    fn rates_come_from_counts_bytes_and_time() {
        let s = sample();
        let put = &s.ops[0].1;
        assert_eq!(put.ops_per_sec, 2.0);
        assert_eq!(put.mib_per_sec, 2.0);
        assert_eq!(put.errors, 3);
        assert_eq!(put.latency.max, 30.0);
        let empty = OpSummary::new(0, 0, &Histogram::default(), BTreeMap::new(), None, 0.0);
        assert_eq!((empty.ops_per_sec, empty.latency.p99), (0.0, 0.0));
    }

    #[test]
    fn json_has_every_op_and_the_error_breakdown() {
        let v = sample().to_json();
        assert_eq!(v["ops"]["put"]["count"], 4);
        assert_eq!(v["ops"]["put"]["errors_by_status"]["503"], 2);
        assert_eq!(v["ops"]["put"]["errors_by_status"]["transport"], 1);
        assert_eq!(v["ops"]["get"]["errors"], 0);
        assert_eq!(v["ops"]["put"]["latency_ms"]["max"], 30.0);
        assert!(v["ops"]["put"]["latency_ms"]["p99.9"].is_number());
        assert_eq!(v["errors"], 3);
        assert_eq!(v["total"]["count"], 8);
        assert!(v["ops"].get("delete").is_none());
    }

    #[test]
    fn text_names_each_op_and_each_failure() {
        let text = sample().to_text();
        assert!(text.starts_with("11 requests in 2.00 s"), "{text}");
        assert!(text.contains("\nput "), "{text}");
        assert!(text.contains("\nget "), "{text}");
        assert!(text.contains("\ntotal "), "{text}");
        assert!(text.contains("put: 503 Service Unavailable x2"), "{text}");
        assert!(
            text.contains("put: transport x1 (first: refused)"),
            "{text}"
        );
    }
}
