//! Object replication messages: the lines of the missing check, in the
//! form Swift's ssync exchanges them, and how a receiver decides what it
//! wants.
//!
//! A sender offers each object of the suffixes it is syncing as one
//! *missing-check line*:
//!
//! ```text
//! <hash> <ts_data>[ m:<hex delta>[__<hex offset>][,t:<hex delta>[__<hex offset>]]]
//! ```
//!
//! `hash` is the object's 32-hex-digit directory name, `ts_data` the
//! internal form of its data file's (or tombstone's) timestamp. `m:` gives
//! the newest `.meta`'s timestamp and `t:` the content-type timestamp,
//! each as the signed hex difference of its 10-µs ticks from `ts_data`'s
//! (ignoring `ts_data`'s offset), followed by its own offset in hex when it
//! has one. Absent parts equal `ts_data`. Swift also sends `durable:False`
//! for non-durable erasure-coded fragments; it is parsed and kept.
//! Swift URL-quotes the hash and timestamp, which leaves hex digits and
//! internal timestamps unchanged, so no decoding is needed.
//!
//! The receiver answers with one *wanted line* per object it needs
//! something of: `<hash> <flags>` where the flags hold `d` (send the data
//! file or tombstone) and/or `m` (send the metadata of the newest `.meta`).
//! Objects it has in full are not listed.
//!
//! apus carries the exchange over HTTP instead of Swift's `SSYNC` verb:
//! `REPLICATE /<device>/<partition>` with [`X_APUS_MISSING_CHECK`]`: true`,
//! missing-check lines as the request body (at most
//! [`MAX_MISSING_CHECK_BODY`] bytes, one line per object, `\n`-separated),
//! wanted lines as the response body. The updates then travel as ordinary
//! `PUT`/`POST`/`DELETE` requests with `X-Backend-Replication: True`.
//!
//! Parsing is strict: anything that is not a well-formed line is an error,
//! never a panic.

use std::fmt::Write as _;

use apus_core::Timestamp;

/// Marks a `REPLICATE` request as a missing check (an apus extension).
pub const X_APUS_MISSING_CHECK: &str = "x-apus-missing-check";

/// The largest missing-check body a receiver accepts (413 beyond it); a
/// sender splits its offers into bodies below this size.
pub const MAX_MISSING_CHECK_BODY: usize = 4 * 1024 * 1024;

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("line {line}: {what}")]
    Malformed { line: usize, what: String },
}

fn malformed(what: impl Into<String>) -> ReplicationError {
    ReplicationError::Malformed {
        line: 0,
        what: what.into(),
    }
}

fn at_line(e: ReplicationError, line: usize) -> ReplicationError {
    match e {
        ReplicationError::Malformed { what, .. } => ReplicationError::Malformed { line, what },
    }
}

/// One object on offer: its hash and the timestamps that define its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingLine<'a> {
    pub hash: &'a str,
    pub ts_data: Timestamp,
    /// The newest `.meta`'s timestamp; `ts_data` when there is none.
    pub ts_meta: Timestamp,
    /// When the content-type was last set; `ts_data` unless a POST set it.
    pub ts_ctype: Timestamp,
    /// False only for non-durable erasure-coded fragments.
    pub durable: bool,
}

/// True for an object hash: 32 lowercase hex digits (what a receiver may
/// safely use as a directory name).
pub fn valid_hash(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn push_delta(out: &mut String, key: &str, ts: Timestamp, base: Timestamp) {
    let delta = i128::from(ts.ticks()) - i128::from(base.ticks());
    let sign = if delta < 0 { "-" } else { "" };
    let _ = write!(out, "{key}:{sign}{:x}", delta.unsigned_abs());
    if ts.offset() != 0 {
        let _ = write!(out, "__{:x}", ts.offset());
    }
}

impl<'a> MissingLine<'a> {
    /// An offer for an object with only a data file or tombstone.
    pub fn new(hash: &'a str, ts_data: Timestamp) -> Self {
        MissingLine {
            hash,
            ts_data,
            ts_meta: ts_data,
            ts_ctype: ts_data,
            durable: true,
        }
    }

    /// The line, without its newline.
    pub fn encode(&self) -> String {
        let mut out = format!("{} {}", self.hash, self.ts_data.internal());
        let mut extra = String::new();
        if self.ts_meta != self.ts_data {
            push_delta(&mut extra, "m", self.ts_meta, self.ts_data);
            if self.ts_ctype != self.ts_data {
                extra.push(',');
                push_delta(&mut extra, "t", self.ts_ctype, self.ts_data);
            }
        }
        if !self.durable {
            if !extra.is_empty() {
                extra.push(',');
            }
            extra.push_str("durable:False");
        }
        if !extra.is_empty() {
            out.push(' ');
            out.push_str(&extra);
        }
        out
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &'a str) -> Result<Self, ReplicationError> {
        let mut parts = line.split_ascii_whitespace();
        let hash = parts.next().ok_or_else(|| malformed("empty line"))?;
        if !valid_hash(hash) {
            return Err(malformed(format!("bad object hash {hash:?}")));
        }
        let ts = parts.next().ok_or_else(|| malformed("no timestamp"))?;
        let ts_data =
            Timestamp::parse(ts).map_err(|_| malformed(format!("bad timestamp {ts:?}")))?;
        let mut out = MissingLine::new(hash, ts_data);
        if let Some(extra) = parts.next() {
            for item in extra.split(',') {
                // Items without a key are ignored, as Swift ignores them.
                let Some((key, value)) = item.split_once(':') else {
                    continue;
                };
                match key {
                    "m" => out.ts_meta = apply_delta(ts_data, value)?,
                    "t" => out.ts_ctype = apply_delta(ts_data, value)?,
                    "durable" => out.durable = crate::headers::is_true(value),
                    // Unknown keys leave room for later additions.
                    _ if !value.contains(':') => {}
                    _ => return Err(malformed(format!("bad item {item:?}"))),
                }
            }
        }
        if parts.next().is_some() {
            return Err(malformed("too many fields"));
        }
        Ok(out)
    }
}

/// Signed hex of at most 16 digits.
fn parse_signed_hex(s: &str) -> Option<i128> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = i128::from(u64::from_str_radix(digits, 16).ok()?);
    Some(if neg { -v } else { v })
}

/// `<hex delta>[__<hex offset>]` relative to `base`'s ticks.
fn apply_delta(base: Timestamp, value: &str) -> Result<Timestamp, ReplicationError> {
    let bad = || malformed(format!("bad timestamp delta {value:?}"));
    let (delta, offset) = match value.split_once("__") {
        Some((d, o)) => (d, Some(o)),
        None => (value, None),
    };
    let delta = parse_signed_hex(delta).ok_or_else(bad)?;
    let offset = match offset {
        None => 0,
        Some(o) => match parse_signed_hex(o) {
            Some(v) if v >= 0 => v as u64,
            _ => return Err(bad()),
        },
    };
    let ticks = i128::from(base.ticks()) + delta;
    let ticks = u64::try_from(ticks).map_err(|_| bad())?;
    Timestamp::from_ticks(ticks, offset).ok_or_else(bad)
}

/// Parses a missing-check body: one line per object; blank lines are
/// skipped. Errors name the (1-based) line.
pub fn parse_missing_check(body: &str) -> Result<Vec<MissingLine<'_>>, ReplicationError> {
    let mut out = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        out.push(MissingLine::parse(line).map_err(|e| at_line(e, i + 1))?);
    }
    Ok(out)
}

/// What a receiver wants of an object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The data file (or tombstone).
    pub data: bool,
    /// The newest `.meta`'s metadata.
    pub meta: bool,
}

/// The receiver's own state of an object, as it compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalState {
    /// No data file and no tombstone.
    Missing,
    /// A tombstone at this timestamp.
    Deleted(Timestamp),
    /// An erasure-coded fragment at this timestamp that is not durable
    /// yet (nor is anything newer): the offered data at that timestamp is
    /// not wanted again, and no metadata is compared, as in Swift.
    NonDurable(Timestamp),
    /// A data file, with the newest metadata and content-type timestamps
    /// (each at least `ts_data`).
    Present {
        ts_data: Timestamp,
        ts_meta: Timestamp,
        ts_ctype: Timestamp,
    },
}

/// Swift's rule for what a receiver wants of an offered object: the data
/// when its own data or tombstone is older, the metadata when its
/// metadata is older or the offer carries a newer content-type set by a
/// POST; everything when it has nothing. `None` when it is in sync.
pub fn wanted(remote: &MissingLine<'_>, local: LocalState) -> Option<Wanted> {
    let mut want = Wanted::default();
    match local {
        LocalState::Missing => {
            want.data = true;
            want.meta = true;
        }
        LocalState::Deleted(ts_data) | LocalState::NonDurable(ts_data) => {
            want.data = remote.ts_data > ts_data
        }
        LocalState::Present {
            ts_data,
            ts_meta,
            ts_ctype,
        } => {
            want.data = remote.ts_data > ts_data;
            want.meta = remote.ts_meta > ts_meta
                || (remote.ts_ctype > ts_ctype && remote.ts_ctype > remote.ts_data);
        }
    }
    (want.data || want.meta).then_some(want)
}

/// One wanted line, without its newline.
pub fn encode_wanted(hash: &str, want: Wanted) -> String {
    let mut out = format!("{hash} ");
    if want.data {
        out.push('d');
    }
    if want.meta {
        out.push('m');
    }
    out
}

/// Parses one wanted line. A line with no flags wants the data (Swift's
/// rule for receivers that predate metadata-only updates).
pub fn parse_wanted(line: &str) -> Result<(&str, Wanted), ReplicationError> {
    let mut parts = line.split_ascii_whitespace();
    let hash = parts.next().ok_or_else(|| malformed("empty line"))?;
    if !valid_hash(hash) {
        return Err(malformed(format!("bad object hash {hash:?}")));
    }
    let mut want = Wanted::default();
    if let Some(flags) = parts.next() {
        for c in flags.chars() {
            match c {
                'd' => want.data = true,
                'm' => want.meta = true,
                _ => return Err(malformed(format!("bad wanted flags {flags:?}"))),
            }
        }
    } else {
        want.data = true;
    }
    if parts.next().is_some() {
        return Err(malformed("too many fields"));
    }
    Ok((hash, want))
}

/// Parses a missing-check response body.
pub fn parse_wanted_body(body: &str) -> Result<Vec<(&str, Wanted)>, ReplicationError> {
    let mut out = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_wanted(line).map_err(|e| at_line(e, i + 1))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9d41d8cd98f00b204e9800998ecf0abc";

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn data_only_is_hash_and_timestamp() {
        let line = MissingLine::new(H, ts("1380144470.00000"));
        assert_eq!(line.encode(), format!("{H} 1380144470.00000"));
        assert_eq!(MissingLine::parse(&line.encode()).unwrap(), line);
    }

    #[test]
    fn deltas_as_swift_encodes_them() {
        // Swift's test_encode_missing: meta 0x10000 ticks, ctype 0x10 on.
        let t_data = ts("1380144470.00000");
        let mut line = MissingLine::new(H, t_data);
        line.ts_meta = Timestamp::from_ticks(t_data.ticks() + 0x10000, 0).unwrap();
        line.ts_ctype = Timestamp::from_ticks(t_data.ticks() + 0x10, 0).unwrap();
        let enc = line.encode();
        assert_eq!(enc, format!("{H} 1380144470.00000 m:10000,t:10"));
        assert_eq!(MissingLine::parse(&enc).unwrap(), line);
    }

    #[test]
    fn offsets_travel_after_a_double_underscore() {
        let t_data = ts("1380144470.00000").with_offset(2);
        let mut line = MissingLine::new(H, t_data);
        // Same ticks, only the offset differs: delta 0.
        line.ts_meta = ts("1380144470.00000").with_offset(1);
        line.ts_ctype = ts("1380144471.00000").with_offset(0x1f);
        let enc = line.encode();
        assert_eq!(
            enc,
            format!("{H} 1380144470.00000_0000000000000002 m:0__1,t:186a0__1f")
        );
        assert_eq!(MissingLine::parse(&enc).unwrap(), line);
    }

    #[test]
    fn ctype_is_only_sent_with_meta_and_durable_is_kept() {
        let t = ts("1400000000.12345");
        let mut line = MissingLine::new(H, t);
        line.ts_ctype = ts("1400000001");
        line.durable = false;
        assert_eq!(line.encode(), format!("{H} 1400000000.12345 durable:False"));
        let enc = line.encode();
        let back = MissingLine::parse(&enc).unwrap();
        assert!(!back.durable);
        assert_eq!(back.ts_ctype, t);
    }

    #[test]
    fn negative_deltas_round_trip() {
        let t = ts("1400000000.5");
        let mut line = MissingLine::new(H, t);
        line.ts_meta = ts("1400000001");
        line.ts_ctype = ts("1400000000.25");
        let enc = line.encode();
        let back = MissingLine::parse(&enc).unwrap();
        assert_eq!(back, line);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let bad = [
            "",
            "   ",
            "nothex 1400000000.00000",
            H,
            &format!("{} notatime", H),
            &format!("{}A 1400000000.00000", &H[..31]),
            &format!("{H} 1400000000.00000 m:xyz"),
            &format!("{H} 1400000000.00000 m:"),
            &format!("{H} 1400000000.00000 m:1__"),
            &format!("{H} 1400000000.00000 m:1__-1"),
            &format!("{H} 1400000000.00000 m:11111111111111111"),
            &format!("{H} 1400000000.00000 m:-ffffffffffffff"),
            &format!("{H} 1400000000.00000 m:1:2"),
            &format!("{H} 1400000000.00000 m:1 extra"),
            &format!("{H} 9999999999.99999 m:fffffff"),
            &format!("{H} 1400000000.00000_zz"),
        ];
        for line in bad {
            assert!(MissingLine::parse(line).is_err(), "{line:?} parsed");
        }
        // Keyless and unknown items are tolerated, as in Swift.
        let text = format!("{H} 1400000000.00000 junk,x:1,m:a");
        let ok = MissingLine::parse(&text).unwrap();
        assert_eq!(ok.ts_meta.ticks(), ts("1400000000").ticks() + 10);
    }

    #[test]
    fn bodies_name_the_bad_line() {
        let body = format!("{H} 1400000000.00000\n\n{H} 1400000001.00000 m:5\r\n");
        let lines = parse_missing_check(&body).unwrap();
        assert_eq!(lines.len(), 2);
        let body = format!("{H} 1400000000.00000\nbad line\n");
        assert_eq!(
            parse_missing_check(&body),
            Err(ReplicationError::Malformed {
                line: 2,
                what: "bad object hash \"bad\"".into()
            })
        );
    }

    #[test]
    fn wanted_follows_swifts_rules() {
        let t1 = ts("1400000001");
        let t2 = ts("1400000002");
        let t3 = ts("1400000003");
        let mut offer = MissingLine::new(H, t2);
        let all = Wanted {
            data: true,
            meta: true,
        };
        let data = Wanted {
            data: true,
            meta: false,
        };
        let meta = Wanted {
            data: false,
            meta: true,
        };
        assert_eq!(wanted(&offer, LocalState::Missing), Some(all));
        assert_eq!(wanted(&offer, LocalState::Deleted(t1)), Some(data));
        assert_eq!(wanted(&offer, LocalState::Deleted(t2)), None);
        assert_eq!(wanted(&offer, LocalState::Deleted(t3)), None);
        let present = |d, m, c| LocalState::Present {
            ts_data: d,
            ts_meta: m,
            ts_ctype: c,
        };
        assert_eq!(wanted(&offer, present(t2, t2, t2)), None);
        // Swift wants the metadata too (its ts_meta defaults to ts_data);
        // a sender with no newer .meta sends the data only.
        assert_eq!(wanted(&offer, present(t1, t1, t1)), Some(all));
        assert_eq!(wanted(&offer, present(t1, t2, t1)), Some(data));
        offer.ts_meta = t3;
        assert_eq!(wanted(&offer, present(t2, t2, t2)), Some(meta));
        assert_eq!(wanted(&offer, present(t1, t1, t1)), Some(all));
        // A newer content-type alone is worth a POST.
        offer.ts_ctype = t3;
        assert_eq!(
            wanted(&offer, present(t2, ts("1400000004"), t2)),
            Some(meta)
        );
        assert_eq!(wanted(&offer, present(t2, ts("1400000004"), t3)), None);
    }

    #[test]
    fn wanted_lines_round_trip_and_reject_garbage() {
        for want in [
            Wanted {
                data: true,
                meta: false,
            },
            Wanted {
                data: false,
                meta: true,
            },
            Wanted {
                data: true,
                meta: true,
            },
        ] {
            let line = encode_wanted(H, want);
            assert_eq!(parse_wanted(&line).unwrap(), (H, want));
        }
        assert_eq!(
            encode_wanted(
                H,
                Wanted {
                    data: true,
                    meta: true
                }
            ),
            format!("{H} dm")
        );
        // Swift's legacy form: just the hash means the data.
        assert!(parse_wanted(H).unwrap().1.data);
        for bad in ["", "x", &format!("{H} dx"), &format!("{H} d m")] {
            assert!(parse_wanted(bad).is_err(), "{bad:?}");
        }
        let body = format!("{H} d\n{H} m\n");
        assert_eq!(parse_wanted_body(&body).unwrap().len(), 2);
        assert!(parse_wanted_body(&format!("{H} d\n{H} q\n")).is_err());
    }
}
