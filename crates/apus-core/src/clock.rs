//! The wall clock apus stamps and ages things by: the system clock, moved
//! by [`OFFSET_VAR`] (`APUS_CLOCK_OFFSET_SECS`) seconds when that is set.
//!
//! The offset is a testing aid. It makes one process of a cluster run
//! ahead of or behind the others, as on a node whose clock drifted,
//! without touching the machine's clock. Every "now" that apus compares
//! with a Swift timestamp comes from here: [`Timestamp::now`] (the
//! proxy's `X-Timestamp`, the rows and stats the servers stamp, the
//! daemons' reclaim and expiry decisions) and [`now_secs`] (the disk
//! files' reclaim and expiry checks). Durations (timeouts, rates) use
//! `Instant`, and the age of a file is its modification time against the
//! system clock, neither of which the offset moves.
//!
//! Reading this one environment variable, once, is the only input
//! apus-core takes from outside its arguments besides the clock itself.
//!
//! [`Timestamp::now`]: crate::Timestamp::now

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable holding the offset in seconds (`300`,
/// `-300`, `0.5`).
pub const OFFSET_VAR: &str = "APUS_CLOCK_OFFSET_SECS";

/// How far apus's clock is moved from the system clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offset {
    /// True when the clock runs ahead (a positive offset).
    pub ahead: bool,
    pub by: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{OFFSET_VAR} must be a number of seconds, such as 300 or -300; it is {0:?}")]
pub struct OffsetError(pub String);

impl Offset {
    /// Parses a number of seconds, optionally signed and fractional.
    pub fn parse(text: &str) -> Result<Offset, OffsetError> {
        let bad = || OffsetError(text.to_string());
        let t = text.trim();
        let secs: f64 = t.parse().map_err(|_| bad())?;
        // Reject what `f64` parses but a number of seconds is not, and
        // offsets beyond any clock (Duration panics on them).
        if !secs.is_finite() || secs.abs() > 1e10 || t.chars().any(|c| c.is_alphabetic()) {
            return Err(bad());
        }
        Ok(Offset {
            ahead: secs > 0.0,
            by: Duration::from_secs_f64(secs.abs()),
        })
    }

    /// `t` moved by this offset (the epoch at the least).
    pub fn apply(self, t: Duration) -> Duration {
        if self.ahead {
            t.saturating_add(self.by)
        } else {
            t.saturating_sub(self.by)
        }
    }
}

/// The offset in the environment: none when unset, an error when it does
/// not parse (`apus` refuses to start then; the clock is not moved).
pub fn offset_from_env() -> Result<Offset, OffsetError> {
    match std::env::var(OFFSET_VAR) {
        Ok(text) => Offset::parse(&text),
        Err(std::env::VarError::NotPresent) => Ok(Offset::default()),
        Err(std::env::VarError::NotUnicode(raw)) => {
            Err(OffsetError(raw.to_string_lossy().into_owned()))
        }
    }
}

/// This process's offset, read from the environment at the first call.
pub fn offset() -> Offset {
    static OFFSET: OnceLock<Offset> = OnceLock::new();
    *OFFSET.get_or_init(|| offset_from_env().unwrap_or_default())
}

/// Time since the Unix epoch by apus's clock.
pub fn since_epoch() -> Duration {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    offset().apply(real)
}

/// Seconds since the Unix epoch by apus's clock, as a float.
pub fn now_secs() -> f64 {
    since_epoch().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_signed_seconds() {
        let ahead = Offset::parse("300").unwrap();
        assert_eq!(
            ahead,
            Offset {
                ahead: true,
                by: Duration::from_secs(300)
            }
        );
        let behind = Offset::parse(" -300.5 ").unwrap();
        assert!(!behind.ahead);
        assert_eq!(behind.by, Duration::from_millis(300_500));
        assert_eq!(Offset::parse("0").unwrap(), Offset::default());
        for bad in ["", "abc", "5m", "nan", "inf", "-inf", "1e300"] {
            assert!(Offset::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn offsets_move_a_time_both_ways() {
        let t = Duration::from_secs(1_000);
        assert_eq!(
            Offset::parse("300").unwrap().apply(t),
            Duration::from_secs(1_300)
        );
        assert_eq!(
            Offset::parse("-300").unwrap().apply(t),
            Duration::from_secs(700)
        );
        // Never before the epoch.
        assert_eq!(Offset::parse("-5000").unwrap().apply(t), Duration::ZERO);
    }
}
