//! What a run does, as the command line spells it: the operation mix
//! (`put=20,get=70,delete=10`), object sizes (`4KiB`, `1KiB-1MiB`,
//! `4KiB:80,1MiB:20`), byte counts and durations. Every parser here is a
//! `FromStr` or a `fn(&str) -> Result<_, String>`, so clap takes them as
//! they are and their messages reach the user unchanged.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One kind of request the mixed workload sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// Write a new object.
    Put,
    /// Read a live object whole.
    Get,
    /// Read a live object's metadata.
    Head,
    /// Delete a live object.
    Delete,
    /// Read a page of a container listing.
    List,
}

impl Op {
    /// Every op, in the order summaries print them.
    pub const ALL: [Op; 5] = [Op::Put, Op::Get, Op::Head, Op::Delete, Op::List];

    /// The name the command line and the summaries use.
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Head => "head",
            Op::Delete => "delete",
            Op::List => "list",
        }
    }

    /// Its position in [`Op::ALL`], for per-op tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether it acts on an object that must already exist.
    pub fn needs_object(self) -> bool {
        matches!(self, Op::Get | Op::Head | Op::Delete)
    }

    fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of the ops: `put=20,get=70,delete=10` sends, on
/// average, 20 PUTs, 70 GETs and 10 DELETEs in every 100 requests. The
/// weights need not add up to 100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 5],
}

impl Mix {
    pub fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }

    /// Whether the mix ever sends `op`.
    pub fn has(&self, op: Op) -> bool {
        self.weight(op) > 0
    }

    /// The ops the mix sends, in [`Op::ALL`] order.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        Op::ALL.into_iter().filter(|op| self.has(*op))
    }

    fn total(&self) -> u64 {
        self.weights.iter().map(|w| u64::from(*w)).sum()
    }

    /// The op a uniformly random `r` draws.
    pub fn pick(&self, r: u64) -> Op {
        // Parsing guarantees a positive total.
        let mut point = r % self.total().max(1);
        for op in Op::ALL {
            let w = u64::from(self.weight(op));
            if point < w {
                return op;
            }
            point -= w;
        }
        Op::Put
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Mix, String> {
        let mut weights = [0u32; 5];
        let mut seen = [false; 5];
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected op=weight, e.g. get=70"))?;
            let name = name.trim().to_ascii_lowercase();
            let op = Op::from_name(&name).ok_or_else(|| {
                format!("unknown op {name:?}: the ops are put, get, head, delete and list")
            })?;
            if seen[op.index()] {
                return Err(format!("{op} is given twice"));
            }
            seen[op.index()] = true;
            weights[op.index()] = weight
                .trim()
                .parse()
                .map_err(|_| format!("{item:?}: the weight must be a whole number"))?;
        }
        let mix = Mix { weights };
        if mix.total() == 0 {
            return Err("the mix sends nothing: give at least one op a positive weight".into());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .ops()
            .map(|op| format!("{op}={}", self.weight(op)))
            .collect();
        f.write_str(&items.join(","))
    }
}

/// Parses a byte count: a number, optionally with a fractional part, and
/// a unit. `K`, `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB` are powers of
/// 1024; `KB`, `MB`, `GB`, `TB` powers of 1000 (as `dd` reads them); `B`
/// or nothing is bytes. Units are case-insensitive.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use B, K/KiB, M/MiB, G/GiB, or KB/MB/GB for powers of 1000)"
            ))
        }
    };
    let bad = || format!("{s:?} is not a size, e.g. 4096, 4KiB, 1.5MiB");
    if number.is_empty() {
        return Err(bad());
    }
    if number.contains('.') {
        let value: f64 = number.parse().map_err(|_| bad())?;
        let bytes = (value * multiplier as f64).round();
        // 2^64 as a float: anything at or above it does not fit.
        if bytes >= 18_446_744_073_709_551_616.0 {
            return Err(format!("{s:?} is too large"));
        }
        return Ok(bytes as u64);
    }
    number
        .parse::<u64>()
        .map_err(|_| bad())?
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A byte count for people: `512 B`, `4 KiB`, `1.5 MiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    // 4.00 reads better as 4, 1.50 as 1.5.
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {}", UNITS[unit])
}

/// Parses a duration: a number and a unit, `ms`, `s`, `m` or `h`; a bare
/// number is seconds. `30s`, `1.5m`, `500ms`, `90`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use ms, s, m or h, e.g. 30s)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration, e.g. 30s, 2m, 500ms"))?;
    let seconds = value * seconds_per_unit;
    // A run of more than a year is a typo.
    if seconds <= 0.0 || seconds >= 366.0 * 86_400.0 {
        return Err(format!(
            "{s:?}: a duration must be above zero and under a year"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Sizes from `min` to `max` inclusive, uniformly (one size when equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SizeRange {
    min: u64,
    max: u64,
}

impl SizeRange {
    fn parse(s: &str) -> Result<SizeRange, String> {
        match s.split_once('-') {
            Some((min, max)) => {
                let (min, max) = (parse_bytes(min)?, parse_bytes(max)?);
                if min > max {
                    return Err(format!("{s:?}: the smaller size comes first"));
                }
                Ok(SizeRange { min, max })
            }
            None => {
                let size = parse_bytes(s)?;
                Ok(SizeRange {
                    min: size,
                    max: size,
                })
            }
        }
    }

    fn sample(self, r: u64) -> u64 {
        match (self.max - self.min).checked_add(1) {
            Some(span) => self.min + r % span,
            // The whole u64 range.
            None => r,
        }
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", format_bytes(self.min))
        } else {
            write!(f, "{}-{}", format_bytes(self.min), format_bytes(self.max))
        }
    }
}

/// How big the objects a run writes are: one size (`4KiB`), uniform over
/// a range (`1KiB-1MiB`), or a weighted list of sizes or ranges
/// (`4KiB:80,1MiB:20`, `1KiB-8KiB:90,64MiB:10`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeDist {
    /// Each choice with its weight (all positive).
    choices: Vec<(SizeRange, u32)>,
}

impl SizeDist {
    /// Every object `size` bytes long.
    pub fn fixed(size: u64) -> SizeDist {
        SizeDist {
            choices: vec![(
                SizeRange {
                    min: size,
                    max: size,
                },
                1,
            )],
        }
    }

    /// The size a uniformly random `r` draws (the low 32 bits pick the
    /// choice, the rest the size within it).
    pub fn sample(&self, r: u64) -> u64 {
        let total: u64 = self.choices.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut point = (r & 0xffff_ffff) % total.max(1);
        for (range, weight) in &self.choices {
            let w = u64::from(*weight);
            if point < w {
                return range.sample(r >> 32);
            }
            point -= w;
        }
        0
    }

    /// The largest size it can draw.
    pub fn max(&self) -> u64 {
        self.choices.iter().map(|(r, _)| r.max).max().unwrap_or(0)
    }

    /// The mean size of what it draws.
    pub fn mean(&self) -> u64 {
        let (mut sum, mut weights) = (0u128, 0u128);
        for (range, weight) in &self.choices {
            let middle = (u128::from(range.min) + u128::from(range.max)) / 2;
            sum += middle * u128::from(*weight);
            weights += u128::from(*weight);
        }
        u64::try_from(sum / weights.max(1)).unwrap_or(u64::MAX)
    }
}

impl FromStr for SizeDist {
    type Err = String;

    fn from_str(s: &str) -> Result<SizeDist, String> {
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if items.is_empty() {
            return Err("no size given, e.g. 4KiB".into());
        }
        let mut choices = Vec::new();
        for item in &items {
            let (range, weight) = match item.rsplit_once(':') {
                Some((range, weight)) => {
                    let weight: u32 = weight.trim().parse().map_err(|_| {
                        format!("{item:?}: the weight after ':' must be a whole number")
                    })?;
                    (range, weight)
                }
                None if items.len() == 1 => (*item, 1),
                None => {
                    return Err(format!(
                        "{item:?}: in a list of sizes each needs a weight, e.g. 4KiB:80,1MiB:20"
                    ))
                }
            };
            if weight > 0 {
                choices.push((SizeRange::parse(range)?, weight));
            }
        }
        if choices.is_empty() {
            return Err("every size has weight 0".into());
        }
        Ok(SizeDist { choices })
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(range, _)] = self.choices.as_slice() {
            return write!(f, "{range}");
        }
        let items: Vec<String> = self
            .choices
            .iter()
            .map(|(range, weight)| format!("{range}:{weight}"))
            .collect();
        f.write_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_print_back() {
        let mix: Mix = "put=20,get=70,delete=10".parse().unwrap();
        assert_eq!(mix.weight(Op::Put), 20);
        assert_eq!(mix.weight(Op::Get), 70);
        assert_eq!(mix.weight(Op::Delete), 10);
        assert!(!mix.has(Op::Head) && !mix.has(Op::List));
        assert_eq!(mix.to_string(), "put=20,get=70,delete=10");
        let mix: Mix = " LIST=1 , head=3,put=0".parse().unwrap();
        assert_eq!(mix.ops().collect::<Vec<_>>(), [Op::Head, Op::List]);
        assert_eq!(mix.to_string(), "head=3,list=1");
    }

    #[test]
    fn bad_mixes_say_why() {
        for (text, says) in [
            ("put=20,post=5", "unknown op"),
            ("put", "op=weight"),
            ("put=-1", "whole number"),
            ("put=1.5", "whole number"),
            ("get=1,get=2", "twice"),
            ("put=0,get=0", "nothing"),
            ("", "nothing"),
        ] {
            let err = text.parse::<Mix>().unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_mix_picks_in_proportion_to_its_weights() {
        let mix: Mix = "put=20,get=70,delete=10".parse().unwrap();
        let mut counts = [0u32; 5];
        for r in 0..100 {
            counts[mix.pick(r).index()] += 1;
        }
        assert_eq!(counts, [20, 70, 0, 10, 0]);
        // Every r lands somewhere the mix sends.
        let mix: Mix = "list=3".parse().unwrap();
        assert!((0..50).all(|r| mix.pick(r * 7_919) == Op::List));
        assert_eq!(mix.pick(u64::MAX), Op::List);
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("12B"), Ok(12));
        assert_eq!(parse_bytes("1K"), Ok(1024));
        assert_eq!(parse_bytes("1k"), Ok(1024));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("4kib"), Ok(4096));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_bytes("4KB"), Ok(4000));
        assert_eq!(parse_bytes("1MB"), Ok(1_000_000));
        assert_eq!(parse_bytes(" 8 KiB "), Ok(8192));
        for bad in [
            "",
            "KiB",
            "4 kilobytes",
            "-1",
            "1..5K",
            "4QiB",
            "99999999999T",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn byte_counts_print_for_people() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(4096), "4 KiB");
        assert_eq!(format_bytes(3 << 19), "1.5 MiB");
        assert_eq!(format_bytes(256 << 20), "256 MiB");
        assert_eq!(format_bytes(1 << 40), "1 TiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "0s", "s", "-5s", "5 minutes", "10d", "400000h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_fixed_size_is_always_drawn() {
        let sizes: SizeDist = "4KiB".parse().unwrap();
        assert_eq!(sizes, SizeDist::fixed(4096));
        assert!((0..100u64).all(|r| sizes.sample(r.wrapping_mul(0x9e37_79b9_7f4a_7c15)) == 4096));
        assert_eq!(sizes.to_string(), "4 KiB");
        assert_eq!(sizes.max(), 4096);
    }

    #[test]
    fn a_range_is_drawn_uniformly_within_its_bounds() {
        let sizes: SizeDist = "1KiB-1MiB".parse().unwrap();
        assert_eq!(sizes.to_string(), "1 KiB-1 MiB");
        assert_eq!(sizes.max(), 1 << 20);
        assert_eq!(sizes.mean(), (1024 + (1 << 20)) / 2);
        let mut seen_low_half = false;
        let mut seen_high_half = false;
        let mut x = 1u64;
        for _ in 0..1000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let size = sizes.sample(x);
            assert!((1024..=1 << 20).contains(&size), "{size}");
            seen_low_half |= size < 512 << 10;
            seen_high_half |= size >= 512 << 10;
        }
        assert!(seen_low_half && seen_high_half);
        assert!("1MiB-1KiB".parse::<SizeDist>().is_err());
        // A range may span every u64.
        let all = SizeRange {
            min: 0,
            max: u64::MAX,
        };
        assert_eq!(all.sample(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_weighted_list_is_drawn_in_proportion() {
        let sizes: SizeDist = "4KiB:80,1MiB:20".parse().unwrap();
        assert_eq!(sizes.to_string(), "4 KiB:80,1 MiB:20");
        let mut small = 0;
        for r in 0..100u64 {
            match sizes.sample(r | (r << 32)) {
                4096 => small += 1,
                1_048_576 => {}
                other => panic!("drew {other}"),
            }
        }
        assert_eq!(small, 80);
        assert_eq!(sizes.mean(), (80 * 4096 + 20 * 1_048_576) / 100);
        let sizes: SizeDist = "1K-8K:9, 64MiB:1, 1G:0".parse().unwrap();
        assert_eq!(sizes.max(), 64 << 20);
        assert_eq!(sizes.to_string(), "1 KiB-8 KiB:9,64 MiB:1");
    }

    #[test]
    fn bad_size_lists_say_why() {
        for (text, says) in [
            ("4KiB,1MiB", "needs a weight"),
            ("4KiB:x", "whole number"),
            ("4KiB:0", "weight 0"),
            ("", "no size"),
            ("4XB", "unknown unit"),
        ] {
            let err = text.parse::<SizeDist>().unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
