//! Latency histograms in fixed memory, in the manner of HdrHistogram:
//! values (microseconds) below 2^[`SUB_BITS`] each have their own bucket,
//! and every power-of-two range above is split into 2^[`SUB_BITS`] equal
//! buckets, so a percentile is never off by more than 1/128 (0.8%) of its
//! value, however many requests are recorded.
//!
//! [`AtomicHistogram`] is what the workers record into, without locks;
//! [`Histogram`] is a copy of it taken to compute percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bits of precision below each power of two.
const SUB_BITS: u32 = 7;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Values are clamped below 2^36 µs (19 hours): no request lasts that long.
const MAX_BITS: u32 = 36;
const LARGEST: u64 = (1 << MAX_BITS) - 1;
/// One group of `SUB_BUCKETS` for the exact values below 2^SUB_BITS, then
/// one per power of two from 2^SUB_BITS up to 2^(MAX_BITS - 1).
const BUCKETS: usize = (MAX_BITS - SUB_BITS + 1) as usize * SUB_BUCKETS;

/// The bucket a value falls in.
fn bucket_of(value: u64) -> usize {
    let value = value.min(LARGEST);
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let power = 63 - value.leading_zeros();
    let shift = power - SUB_BITS;
    let sub = (value >> shift) as usize - SUB_BUCKETS;
    (shift as usize + 1) * SUB_BUCKETS + sub
}

/// The largest value that falls in `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let shift = (bucket / SUB_BUCKETS - 1) as u32;
    let sub = (bucket % SUB_BUCKETS) as u64;
    let low = (SUB_BUCKETS as u64 + sub) << shift;
    low + (1 << shift) - 1
}

/// Microseconds, as the histograms count.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A histogram many tasks record into at once.
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    pub fn record(&self, d: Duration) {
        let us = micros(d);
        self.counts[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    /// What has been recorded so far (a consistent enough copy while
    /// recording goes on: each bucket is read once).
    pub fn snapshot(&self) -> Histogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        Histogram {
            total: counts.iter().sum(),
            counts,
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

/// Recorded latencies, in microseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = micros(d);
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded, exactly.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which `percent`% of the recorded values lie
    /// (0 when nothing was recorded): the top of its bucket, so never an
    /// underestimate, and never above the largest value recorded.
    pub fn percentile(&self, percent: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((percent / 100.0) * self.total as f64).ceil() as u64;
        let rank = rank.clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(bucket).min(self.max);
            }
        }
        self.max
    }

    /// [`Histogram::percentile`] in milliseconds.
    pub fn percentile_ms(&self, percent: f64) -> f64 {
        self.percentile(percent) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = None;
        for value in (0..5_000u64).chain([1 << 20, (1 << 20) + 1, LARGEST, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket < BUCKETS, "{value}");
            assert!(bucket_high(bucket) >= value.min(LARGEST), "{value}");
            if let Some(previous) = last {
                assert!(bucket >= previous, "{value}");
            }
            last = Some(bucket);
        }
        assert_eq!(bucket_of(LARGEST), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), LARGEST);
    }

    #[test]
    fn small_values_are_exact_and_large_ones_within_one_percent() {
        for value in 0..128u64 {
            assert_eq!(bucket_high(bucket_of(value)), value);
        }
        for value in [128u64, 1000, 4321, 99_999, 1_234_567, 60_000_000] {
            let high = bucket_high(bucket_of(value));
            assert!(high >= value);
            assert!(
                (high - value) as f64 <= value as f64 / 128.0,
                "{value}: {high}"
            );
        }
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        // 1 ms to 10 ms in 1 µs steps.
        for us in 1_000..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 9_001);
        assert_eq!(h.max(), 10_000);
        let near = |percent: f64, want: f64| {
            let got = h.percentile(percent) as f64;
            assert!(
                got >= want && got <= want * 1.01,
                "p{percent}: {got}, want {want}"
            );
        };
        near(50.0, 5_500.0);
        near(90.0, 9_100.0);
        near(99.0, 9_910.0);
        near(99.9, 9_991.0);
        assert_eq!(h.percentile(100.0), 10_000);
        near(0.0, 1_000.0);
        assert!((h.percentile_ms(50.0) - 5.5).abs() < 0.06);
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() {
        let mut h = Histogram::default();
        for _ in 0..990 {
            h.record(Duration::from_micros(100));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(250));
        }
        assert_eq!(h.percentile(50.0), 100);
        assert_eq!(h.percentile(99.0), 100);
        let p999 = h.percentile(99.9);
        assert!((250_000..=252_000).contains(&p999), "{p999}");
        assert_eq!(h.percentile(100.0), 250_000);
    }

    #[test]
    fn an_empty_histogram_reads_zero() {
        let h = Histogram::default();
        assert_eq!((h.count(), h.percentile(50.0), h.max()), (0, 0, 0));
    }

    #[test]
    fn atomic_snapshots_and_merges_add_up() {
        let shared = AtomicHistogram::default();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let shared = &shared;
                s.spawn(move || {
                    for i in 0..250 {
                        shared.record(Duration::from_micros(t * 1000 + i));
                    }
                });
            }
        });
        let snap = shared.snapshot();
        assert_eq!(snap.count(), 1000);
        assert_eq!(snap.max(), 3249);
        let mut merged = Histogram::default();
        merged.merge(&snap);
        merged.merge(&snap);
        assert_eq!(merged.count(), 2000);
        assert_eq!(merged.percentile(50.0), snap.percentile(50.0));
        // An hour-long request is clamped, not lost.
        shared.record(Duration::from_secs(100_000));
        assert_eq!(shared.snapshot().count(), 1001);
    }
}
