//! Conditional requests with Swift's rules: `If-Match`, `If-None-Match`
//! (ETag lists, `*`, quoted or bare tags), `If-Modified-Since` and
//! `If-Unmodified-Since` against `Last-Modified`, and HTTP dates.
//!
//! Swift compares `Last-Modified` at whole seconds: the object's timestamp
//! rounded *up* ([`crate::Timestamp::ceil_secs`]). Dates are parsed as
//! Python's `email.utils.parsedate` does (RFC 1123, RFC 850 and asctime
//! forms, the time zone ignored); an unparsable date makes its header
//! ignored.

use crate::timestamp::civil_from_days;

/// Strips one pair of surrounding double quotes, as swob's `normalize_etag`.
pub fn normalize_etag(tag: &str) -> &str {
    if tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"') {
        &tag[1..tag.len() - 1]
    } else {
        tag
    }
}

/// An `If-Match` / `If-None-Match` list (swob's `Match`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EtagList {
    tags: Vec<String>,
}

impl EtagList {
    pub fn parse(header: &str) -> Self {
        let mut tags: Vec<String> = Vec::new();
        for tag in header.split(',') {
            let tag = tag.trim();
            if tag.is_empty() {
                continue;
            }
            let t = normalize_etag(tag).to_string();
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        EtagList { tags }
    }

    /// True for `*`, or when `etag` (quoted or not) is in the list.
    pub fn contains(&self, etag: &str) -> bool {
        let etag = normalize_etag(etag);
        self.tags.iter().any(|t| t == "*" || t == etag)
    }

    pub fn has_star(&self) -> bool {
        self.tags.iter().any(|t| t == "*")
    }

    pub fn tags(&self) -> &[String] {
        &self.tags
    }
}

/// The conditional headers of a request, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    pub if_match: Option<EtagList>,
    pub if_none_match: Option<EtagList>,
    /// Seconds since the epoch; `None` when absent or unparsable.
    pub if_modified_since: Option<i64>,
    pub if_unmodified_since: Option<i64>,
}

impl Conditions {
    /// Reads the four headers through `get` (case-insensitive lookup).
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        Conditions {
            if_match: get("if-match").map(EtagList::parse),
            if_none_match: get("if-none-match").map(EtagList::parse),
            if_modified_since: get("if-modified-since").and_then(parse_http_date),
            if_unmodified_since: get("if-unmodified-since").and_then(parse_http_date),
        }
    }

    /// The status a conditional response turns into, if any (swob's order):
    /// 304 for a matching `If-None-Match`, 412 for a failed `If-Match`
    /// (or `If-Match: *` on a missing object: pass `found = false`), 304
    /// for `If-Modified-Since`, 412 for `If-Unmodified-Since`.
    /// `etag` is the entity tag to compare (none for a missing object) and
    /// `last_modified` whole seconds.
    pub fn evaluate(
        &self,
        found: bool,
        etag: Option<&str>,
        last_modified: Option<i64>,
    ) -> Option<u16> {
        let etag = etag.filter(|e| !e.is_empty());
        if let (Some(e), Some(inm)) = (etag, &self.if_none_match) {
            if inm.contains(e) {
                return Some(304);
            }
        }
        if let (Some(e), Some(im)) = (etag, &self.if_match) {
            if !im.contains(e) {
                return Some(412);
            }
        }
        if !found {
            if let Some(im) = &self.if_match {
                if im.has_star() {
                    return Some(412);
                }
            }
        }
        if let (Some(lm), Some(ims)) = (last_modified, self.if_modified_since) {
            if lm <= ims {
                return Some(304);
            }
        }
        if let (Some(lm), Some(ius)) = (last_modified, self.if_unmodified_since) {
            if lm > ius {
                return Some(412);
            }
        }
        None
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTH_NAMES: [&str; 24] = [
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the epoch.
pub fn format_http_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let wd = DAYS[days.rem_euclid(7) as usize];
    format!(
        "{wd}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

fn py_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Parses an HTTP date to seconds since the epoch, accepting what Python's
/// `email.utils.parsedate` accepts and a valid `datetime` can hold; the
/// zone is ignored (read as GMT), as Swift does.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let mut data: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if data.is_empty() {
        return None;
    }
    if data[0].ends_with(',') || DAY_NAMES.contains(&data[0].to_ascii_lowercase().as_str()) {
        data.remove(0);
    } else if let Some(i) = data[0].rfind(',') {
        data[0] = data[0][i + 1..].to_string();
    }
    if data.len() == 3 {
        let stuff: Vec<String> = data[0].split('-').map(str::to_string).collect();
        if stuff.len() == 3 {
            let mut d = stuff;
            d.extend(data[1..].iter().cloned());
            data = d;
        }
    }
    if data.len() == 4 {
        let s = data[3].clone();
        let i = s.find('+').or_else(|| s.find('-'));
        match i {
            Some(i) if i > 0 => {
                data.truncate(3);
                data.push(s[..i].to_string());
                data.push(s[i..].to_string());
            }
            _ => data.push(String::new()),
        }
    }
    if data.len() < 5 {
        return None;
    }
    let mut dd = data[0].clone();
    let mut mm = data[1].to_ascii_lowercase();
    let mut yy = data[2].clone();
    let mut tm = data[3].clone();
    let mut tz = data[4].clone();
    if dd.is_empty() || mm.is_empty() || yy.is_empty() {
        return None;
    }
    if !MONTH_NAMES.contains(&mm.as_str()) {
        std::mem::swap(&mut dd, &mut mm);
        mm = mm.to_ascii_lowercase();
        if !MONTH_NAMES.contains(&mm.as_str()) {
            return None;
        }
    }
    let mut month = MONTH_NAMES.iter().position(|m| *m == mm)? as u32 + 1;
    if month > 12 {
        month -= 12;
    }
    if dd.ends_with(',') {
        dd.pop();
    }
    if yy.find(':').is_some_and(|i| i > 0) {
        std::mem::swap(&mut yy, &mut tm);
    }
    if yy.ends_with(',') {
        yy.pop();
    }
    if yy.is_empty() {
        return None;
    }
    if !yy.as_bytes()[0].is_ascii_digit() {
        std::mem::swap(&mut yy, &mut tz);
    }
    let _ = tz;
    if tm.ends_with(',') {
        tm.pop();
    }
    let parts: Vec<&str> = tm.split(':').collect();
    let (h, mi, s) = match parts.len() {
        2 => (parts[0], parts[1], "0"),
        3 => (parts[0], parts[1], parts[2]),
        1 if tm.contains('.') => {
            let p: Vec<&str> = tm.split('.').collect();
            match p.len() {
                2 => (p[0], p[1], "0"),
                3 => (p[0], p[1], p[2]),
                _ => return None,
            }
        }
        _ => return None,
    };
    let mut year = py_int(&yy)?;
    let day = py_int(&dd)?;
    let (h, mi, s) = (py_int(h)?, py_int(mi)?, py_int(s)?);
    if year < 100 {
        year += if year > 68 { 1900 } else { 2000 };
    }
    if !(1..=9999).contains(&year)
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..60).contains(&s)
        || day < 1
        || day > i64::from(days_in_month(year, month))
    {
        return None;
    }
    let days = days_from_civil(year, month, day as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn etag_lists() {
        let l = EtagList::parse("\"abc\", def ,,");
        assert!(l.contains("abc"));
        assert!(l.contains("\"def\""));
        assert!(!l.contains("xyz"));
        assert!(EtagList::parse("*").contains("anything"));
        assert!(!EtagList::parse("").contains("a"));
        assert_eq!(normalize_etag("\""), "\"");
        assert_eq!(normalize_etag("\"\""), "");
    }

    #[test]
    fn dates_like_python() {
        let t = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(format_http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 +0100",
            "Sun, 06 Nov 1994 08.49.37 GMT",
        ] {
            assert_eq!(parse_http_date(s), Some(t), "{s}");
        }
        assert_eq!(parse_http_date("06 Nov 1994 08:49 +0100"), Some(t - 37));
        assert_eq!(
            parse_http_date("6 november 2001 1:2:3"),
            Some(1_005_008_523)
        );
        assert_eq!(parse_http_date("garbage"), None);
        assert_eq!(parse_http_date("Sun, 31 Feb 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date(""), None);
    }

    #[test]
    fn conditions_in_swob_order() {
        let c = Conditions {
            if_none_match: Some(EtagList::parse("abc")),
            if_match: Some(EtagList::parse("zzz")),
            ..Default::default()
        };
        assert_eq!(c.evaluate(true, Some("abc"), Some(10)), Some(304));
        assert_eq!(c.evaluate(true, Some("xyz"), Some(10)), Some(412));
        let star = Conditions {
            if_match: Some(EtagList::parse("*")),
            ..Default::default()
        };
        assert_eq!(star.evaluate(false, None, None), Some(412));
        assert_eq!(star.evaluate(true, Some("a"), Some(1)), None);
        let ims = Conditions {
            if_modified_since: Some(100),
            ..Default::default()
        };
        assert_eq!(ims.evaluate(true, Some("a"), Some(100)), Some(304));
        assert_eq!(ims.evaluate(true, Some("a"), Some(101)), None);
        let ius = Conditions {
            if_unmodified_since: Some(100),
            ..Default::default()
        };
        assert_eq!(ius.evaluate(true, Some("a"), Some(100)), None);
        assert_eq!(ius.evaluate(true, Some("a"), Some(101)), Some(412));
    }

    proptest! {
        #[test]
        fn date_round_trip(secs in 0i64..253_402_300_799) {
            prop_assert_eq!(parse_http_date(&format_http_date(secs)), Some(secs));
        }

        #[test]
        fn date_parse_never_panics(s in ".{0,40}") {
            let _ = parse_http_date(&s);
        }
    }
}
