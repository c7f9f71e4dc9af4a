//! Throttling: at most `per_second` units (files, bytes, requests) per
//! second, averaged over a short window so brief bursts are absorbed.

use std::time::Duration;

use tokio::time::Instant;

/// How far behind schedule a limiter may fall before it forgets the debt:
/// after an idle spell it allows this much burst, not an unbounded one
/// (Swift's `rate_buffer`).
const RATE_BUFFER: Duration = Duration::from_secs(1);

/// A pacing limiter: each `acquire(n)` moves the next allowed start by
/// `n / per_second` and sleeps until then.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    next: Option<Instant>,
}

impl RateLimiter {
    /// `per_second <= 0` means unlimited.
    pub fn new(per_second: f64) -> Self {
        RateLimiter {
            per_second,
            next: None,
        }
    }

    pub fn unlimited() -> Self {
        RateLimiter::new(0.0)
    }

    pub fn is_limited(&self) -> bool {
        self.per_second > 0.0 && self.per_second.is_finite()
    }

    /// Waits until `units` more may be spent.
    pub async fn acquire(&mut self, units: f64) {
        if let Some(wait) = self.reserve(units, Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Like [`acquire`](Self::acquire), for a blocking thread (which it
    /// puts to sleep).
    pub fn acquire_blocking(&mut self, units: f64) {
        if let Some(wait) = self.reserve(units, Instant::now()) {
            std::thread::sleep(wait);
        }
    }

    /// Books `units` at `now` and says how long to wait before spending
    /// them.
    fn reserve(&mut self, units: f64, now: Instant) -> Option<Duration> {
        if !self.is_limited() || units <= 0.0 {
            return None;
        }
        let floor = now.checked_sub(RATE_BUFFER).unwrap_or(now);
        let start = match self.next {
            Some(next) if next > floor => next,
            _ => floor,
        };
        let cost = Duration::from_secs_f64((units / self.per_second).min(3600.0));
        self.next = Some(start + cost);
        (start > now).then(|| start - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let mut r = RateLimiter::unlimited();
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(r.reserve(1e9, now), None);
        }
    }

    #[test]
    fn waits_grow_with_the_units_spent() {
        let mut r = RateLimiter::new(10.0);
        let now = Instant::now();
        // The buffer absorbs the first second's worth (and one more)...
        let mut last = None;
        for _ in 0..11 {
            last = r.reserve(1.0, now);
        }
        assert_eq!(last, None);
        // ...then each unit costs a tenth of a second.
        let w1 = r.reserve(1.0, now).expect("must wait");
        let w2 = r.reserve(1.0, now).expect("must wait");
        assert!(w1 < w2, "{w1:?} {w2:?}");
        assert!((w2 - w1).as_secs_f64() > 0.09 && (w2 - w1).as_secs_f64() < 0.11);
    }

    #[test]
    fn idle_time_earns_at_most_the_buffer() {
        let mut r = RateLimiter::new(100.0);
        let start = Instant::now();
        r.reserve(1.0, start);
        let later = start + Duration::from_secs(3600);
        // An hour idle allows one second's worth of burst, not an hour's.
        let mut waited = None;
        for _ in 0..102 {
            waited = r.reserve(1.0, later);
        }
        assert!(waited.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_paces_a_loop() {
        let mut r = RateLimiter::new(50.0);
        let start = Instant::now();
        for _ in 0..150 {
            r.acquire(1.0).await;
        }
        // 150 units at 50/s with a one-second buffer: about two seconds.
        let took = start.elapsed().as_secs_f64();
        assert!((1.9..2.1).contains(&took), "{took}");
    }
}
