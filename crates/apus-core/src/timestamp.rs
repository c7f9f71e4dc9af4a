//! Swift's `Timestamp`: seconds since the epoch at deca-microsecond
//! precision, plus an optional 64-bit offset that orders internal rewrites of
//! the same client timestamp.
//!
//! Normalized form: `%016.05f`, e.g. `0001402464677.04188` is `1402464677.04188`.
//! Internal form: the normalized form, then `_` and 16 hex digits when the
//! offset is non-zero. Both sort correctly as strings, and `Ord` here agrees.

use std::fmt;

/// Ticks of 10 µs per second.
const TICKS_PER_SEC: u64 = 100_000;
/// Timestamps must be below 10^10 seconds, as Swift's bounds check demands.
const MAX_TICKS_EXCLUSIVE: u64 = 10_000_000_000 * TICKS_PER_SEC;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Deca-microseconds since the epoch.
    ticks: u64,
    offset: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("invalid timestamp {0:?}")]
    Invalid(String),
    #[error("timestamp out of range {0:?}")]
    OutOfRange(String),
}

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp {
        ticks: 0,
        offset: 0,
    };

    /// A timestamp from deca-microsecond ticks; `None` past Swift's bound.
    pub fn from_ticks(ticks: u64, offset: u64) -> Option<Self> {
        (ticks < MAX_TICKS_EXCLUSIVE).then_some(Timestamp { ticks, offset })
    }

    /// A timestamp from float seconds, rounded half-to-even like Swift's.
    pub fn from_secs_f64(secs: f64) -> Option<Self> {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        let ticks = (secs / 1e-5).round_ties_even();
        if ticks >= MAX_TICKS_EXCLUSIVE as f64 {
            return None;
        }
        Some(Timestamp {
            ticks: ticks as u64,
            offset: 0,
        })
    }

    /// Now by apus's clock (see [`crate::clock`]).
    pub fn now() -> Self {
        let since = crate::clock::since_epoch();
        let ticks = since.as_secs() * TICKS_PER_SEC + u64::from(since.subsec_micros() / 10);
        Timestamp {
            ticks: ticks.min(MAX_TICKS_EXCLUSIVE - 1),
            offset: 0,
        }
    }

    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn with_offset(self, offset: u64) -> Self {
        Timestamp { offset, ..self }
    }

    /// Swift's `~Timestamp`: the timestamp that sorts in the opposite
    /// order (object versions are named by it so the newest lists first).
    /// `None` for a timestamp with an offset, which Swift cannot invert.
    pub fn invert(&self) -> Option<Self> {
        (self.offset == 0).then(|| Timestamp {
            ticks: MAX_TICKS_EXCLUSIVE - 1 - self.ticks,
            offset: 0,
        })
    }

    /// Whole seconds, rounded down.
    pub fn secs(&self) -> u64 {
        self.ticks / TICKS_PER_SEC
    }

    /// Whole seconds rounded up: Swift's `ceil()`, used for Last-Modified.
    pub fn ceil_secs(&self) -> u64 {
        self.ticks.div_ceil(TICKS_PER_SEC)
    }

    pub fn as_secs_f64(&self) -> f64 {
        self.ticks as f64 / TICKS_PER_SEC as f64
    }

    /// `1402464677.04188`: what clients see.
    pub fn normal(&self) -> String {
        format!(
            "{:010}.{:05}",
            self.ticks / TICKS_PER_SEC,
            self.ticks % TICKS_PER_SEC
        )
    }

    /// The normalized form, plus `_<16 hex digits>` when there is an offset.
    pub fn internal(&self) -> String {
        if self.offset == 0 {
            self.normal()
        } else {
            format!("{}_{:016x}", self.normal(), self.offset)
        }
    }

    /// Parses Swift's textual forms: a decimal float (as Python's `float()`
    /// accepts it) optionally followed by `_` and at most 16 hex digits.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let invalid = || TimestampError::Invalid(text.to_string());
        let (float_part, hex_part) = match text.split_once('_') {
            Some((f, h)) => (f, Some(h)),
            None => (text, None),
        };
        let offset = match hex_part {
            None => 0,
            Some(h) => {
                if h.is_empty() || h.len() > 16 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid());
                }
                u64::from_str_radix(h, 16).map_err(|_| invalid())?
            }
        };
        let trimmed = float_part.trim();
        if let Some(ticks) = plain_ticks(trimmed) {
            return Ok(Timestamp { ticks, offset: 0 }.with_offset(offset));
        }
        if trimmed.is_empty()
            || !trimmed
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        {
            return Err(invalid());
        }
        let secs: f64 = trimmed.parse().map_err(|_| invalid())?;
        let ts = Timestamp::from_secs_f64(secs)
            .ok_or_else(|| TimestampError::OutOfRange(text.to_string()))?;
        Ok(ts.with_offset(offset))
    }

    /// `1970-01-01T00:00:00.000000`: Swift's listing `last_modified` form.
    pub fn isoformat(&self) -> String {
        let mut out = String::with_capacity(26);
        self.push_isoformat(&mut out);
        out
    }

    /// Appends [`isoformat`](Self::isoformat) to `out`. Listings write it
    /// once per object, where `format!` was most of a page's cost.
    pub fn push_isoformat(&self, out: &mut String) {
        let secs = self.secs();
        let micros = (self.ticks % TICKS_PER_SEC) * 10;
        let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        // Years outside 0..=9999 are out of a Timestamp's range; clamped
        // rather than mis-padded should one ever appear.
        push_digits(out, y.clamp(0, 9999) as u64, 4);
        out.push('-');
        push_digits(out, u64::from(mo), 2);
        out.push('-');
        push_digits(out, u64::from(d), 2);
        out.push('T');
        push_digits(out, rem / 3600, 2);
        out.push(':');
        push_digits(out, (rem % 3600) / 60, 2);
        out.push(':');
        push_digits(out, rem % 60, 2);
        out.push('.');
        push_digits(out, micros, 6);
    }
}

/// The ticks of a timestamp written the usual way: up to 10 digits of
/// seconds, then optionally a dot and up to 5 digits. Read exactly, this
/// is what parsing it as a float and rounding to 5 decimals gives (such
/// a number has at most 15 significant digits, within an `f64`'s exact
/// reach), without the float parse: a listing reads one per object.
/// Anything else (exponents, signs, more digits) is `None`, for the
/// float path.
fn plain_ticks(text: &str) -> Option<u64> {
    let (whole, frac) = match text.split_once('.') {
        Some((whole, frac)) => (whole, frac),
        None => (text, ""),
    };
    if whole.is_empty()
        || whole.len() > 10
        || frac.len() > 5
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = |s: &str| s.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    let scale = 10u64.pow(5 - frac.len() as u32);
    Some(digits(whole) * TICKS_PER_SEC + digits(frac) * scale)
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u64, width: u32) {
    let mut div = 10u64.pow(width.saturating_sub(1));
    while div > 0 {
        out.push(char::from(b'0' + ((n / div) % 10) as u8));
        div /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.internal())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day),
/// after Howard Hinnant's well-known civil-from-days algorithm.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normal_and_internal_forms() {
        let ts = Timestamp::parse("1402464677.04188").unwrap();
        assert_eq!(ts.normal(), "1402464677.04188");
        assert_eq!(ts.internal(), "1402464677.04188");
        let with_offset = Timestamp::parse("1402464677.04188_0000000000000001").unwrap();
        assert_eq!(with_offset.internal(), "1402464677.04188_0000000000000001");
        assert_eq!(with_offset.normal(), "1402464677.04188");
        assert!(with_offset > ts);
        assert_eq!(Timestamp::parse("1").unwrap().normal(), "0000000001.00000");
        assert_eq!(
            Timestamp::parse("1.000004").unwrap().normal(),
            "0000000001.00000"
        );
        assert_eq!(
            Timestamp::parse("1.000006").unwrap().normal(),
            "0000000001.00001"
        );
        assert_eq!(Timestamp::parse("1_a").unwrap().offset(), 10);
    }

    /// The float parse that every form other than the plain one takes.
    fn float_ticks(text: &str) -> Option<u64> {
        Timestamp::from_secs_f64(text.parse().ok()?).map(|t| t.ticks())
    }

    #[test]
    fn plain_forms_read_as_the_float_parse_does() {
        for text in [
            "0",
            "1",
            "1.",
            "1.5",
            "0000000001.00000",
            "1402464677.04188",
            "9999999999.99999",
            "9999999999",
            "0.00001",
        ] {
            assert_eq!(plain_ticks(text), float_ticks(text), "{text}");
        }
        for text in [
            "",
            ".5",
            "1e3",
            "+1",
            "-1",
            "1.000004",
            "12345678901",
            "1.2.3",
        ] {
            assert_eq!(plain_ticks(text), None, "{text} is not plain");
        }
    }

    proptest! {
        #[test]
        fn plain_ticks_agree_with_the_float_parse(
            whole in 0u64..10_000_000_000,
            frac in 0u64..100_000,
            width in 0usize..=5,
            pad in 0usize..=10,
        ) {
            let whole = format!("{whole:0pad$}");
            prop_assume!(whole.len() <= 10);
            let frac = format!("{frac:05}")[..width].to_string();
            for text in [format!("{whole}.{frac}"), whole.clone()] {
                prop_assert_eq!(plain_ticks(&text), float_ticks(&text), "{}", text);
            }
        }
    }

    #[test]
    fn rejects_garbage_and_out_of_range() {
        for bad in [
            "",
            "abc",
            "1_",
            "1_g",
            "1_00000000000000001",
            "1__1",
            "nan",
            "inf",
            "-1",
            "10000000000",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn isoformat_matches_python() {
        assert_eq!(Timestamp::ZERO.isoformat(), "1970-01-01T00:00:00.000000");
        // datetime.utcfromtimestamp(1402464677.04188).isoformat()
        assert_eq!(
            Timestamp::parse("1402464677.04188").unwrap().isoformat(),
            "2014-06-11T05:31:17.041880"
        );
        assert_eq!(
            Timestamp::parse("951782400").unwrap().isoformat(),
            "2000-02-29T00:00:00.000000"
        );
        // The largest timestamp there is, and the last microsecond of a day.
        assert_eq!(
            Timestamp::parse("9999999999.99999").unwrap().isoformat(),
            "2286-11-20T17:46:39.999990"
        );
        assert_eq!(
            Timestamp::parse("86399.99999").unwrap().isoformat(),
            "1970-01-01T23:59:59.999990"
        );
    }

    #[test]
    fn pushed_isoformat_is_the_formatted_one() {
        // Spread over the whole range, against the formatting it replaced.
        let mut secs: u64 = 1;
        while secs < 9_999_999_999 {
            for frac in ["", ".5", ".00001", ".99999"] {
                let ts = Timestamp::parse(&format!("{secs}{frac}")).unwrap();
                let (y, mo, d) = civil_from_days((ts.secs() / 86_400) as i64);
                let rem = ts.secs() % 86_400;
                let micros = (ts.ticks % TICKS_PER_SEC) * 10;
                let want = format!(
                    "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}",
                    rem / 3600,
                    (rem % 3600) / 60,
                    rem % 60
                );
                let mut got = String::from("x");
                ts.push_isoformat(&mut got);
                assert_eq!(got, format!("x{want}"), "{secs}{frac}");
            }
            secs = secs * 7 + 12_345;
        }
    }

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(Timestamp::parse("5.00001").unwrap().ceil_secs(), 6);
        assert_eq!(Timestamp::parse("5").unwrap().ceil_secs(), 5);
    }

    proptest! {
        #[test]
        fn internal_round_trips_and_sorts_as_strings(
            a in 0u64..MAX_TICKS_EXCLUSIVE, ao in 0u64..4,
            b in 0u64..MAX_TICKS_EXCLUSIVE, bo in 0u64..4,
        ) {
            let ta = Timestamp::from_ticks(a, ao).unwrap();
            let tb = Timestamp::from_ticks(b, bo).unwrap();
            prop_assert_eq!(Timestamp::parse(&ta.internal()).unwrap(), ta);
            prop_assert_eq!(ta.cmp(&tb), ta.internal().cmp(&tb.internal()));
        }
    }

    #[test]
    fn inverted_timestamps_sort_backwards_as_swift_s() {
        // Swift: (~Timestamp('1600000000.12345')).internal
        let ts = Timestamp::parse("1600000000.12345").unwrap();
        let inv = ts.invert().unwrap();
        assert_eq!(inv.internal(), "8399999999.87654");
        assert_eq!(inv.invert().unwrap(), ts);
        let later = Timestamp::parse("1600000000.12346").unwrap();
        assert!(later.invert().unwrap() < inv);
        assert_eq!(ts.with_offset(1).invert(), None);
    }
}
