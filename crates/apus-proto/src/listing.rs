//! Listing requests as Swift reads them, the same in the storage servers
//! and in the proxy: the query string (swob's `params`), the `limit`
//! parameter (`constrain_req_limit`) and the choice of output format from
//! `format=` or `Accept` (`get_listing_content_type` with swob's
//! `Accept.best_match`).
//!
//! Query strings split as Python 3's `parse_qsl(keep_blank_values=True)`
//! splits them since Python 3.10 (and 3.9.2): pairs are separated by `&`
//! only, `;` is an ordinary character.

use crate::path::unquote_bytes;

/// What is wrong with a listing request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// A parameter is not UTF-8 once decoded: 400.
    #[error("\"{0}\" parameter not valid UTF-8")]
    NotUtf8(String),
    /// `limit` above the maximum: 412.
    #[error("Maximum limit is {0}")]
    LimitTooLarge(usize),
    /// A malformed `Accept` header: 400.
    #[error("Invalid Accept header")]
    BadAccept,
    /// Nothing the client accepts can be offered: 406.
    #[error("Not Acceptable")]
    NotAcceptable,
}

impl ListingError {
    /// The status Swift answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ListingError::NotUtf8(_) | ListingError::BadAccept => 400,
            ListingError::LimitTooLarge(_) => 412,
            ListingError::NotAcceptable => 406,
        }
    }
}

/// The query string as (name, value) pairs, names as text and values as
/// raw bytes, `+` read as a space and `%XX` decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, Vec<u8>)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut pairs = Vec::new();
        for part in query.unwrap_or("").split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = unquote_bytes(&k.replace('+', " "));
            let v = unquote_bytes(&v.replace('+', " "));
            pairs.push((String::from_utf8_lossy(&k).into_owned(), v));
        }
        Query { pairs }
    }

    /// A parameter as UTF-8 (`get_param`): the last value wins, as in
    /// swob's `params` dict.
    pub fn get(&self, name: &str) -> Result<Option<String>, ListingError> {
        match self.pairs.iter().rev().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) => String::from_utf8(v.clone())
                .map(Some)
                .map_err(|_| ListingError::NotUtf8(name.to_string())),
        }
    }

    /// `limit` as Swift's `constrain_req_limit` reads it: digits only,
    /// refused above `max`, `max` when absent or not a number.
    pub fn limit(&self, max: usize) -> Result<usize, ListingError> {
        match self.get("limit")? {
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                match l.parse::<usize>() {
                    Ok(n) if n <= max => Ok(n),
                    _ => Err(ListingError::LimitTooLarge(max)),
                }
            }
            _ => Ok(max),
        }
    }
}

/// XML text content as ElementTree escapes it.
pub fn xml_text(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// An XML attribute value as ElementTree escapes it.
pub fn xml_attr(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#09;"),
            c => out.push(c),
        }
    }
}

pub const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// A listing's output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingFormat {
    Plain,
    Json,
    /// `application/xml` or `text/xml` (the chosen content type).
    Xml(&'static str),
}

impl ListingFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ListingFormat::Plain => "text/plain",
            ListingFormat::Json => "application/json",
            ListingFormat::Xml(ct) => ct,
        }
    }
}

const LISTING_TYPES: [&str; 4] = [
    "text/plain",
    "application/json",
    "application/xml",
    "text/xml",
];

/// Swift's `get_listing_content_type`: a non-empty `format=` stands in for
/// the `Accept` header (`accept`, its raw value).
pub fn listing_format(query: &Query, accept: Option<&[u8]>) -> Result<ListingFormat, ListingError> {
    let fmt = query.get("format")?.filter(|f| !f.is_empty());
    let accept: Option<String> = match fmt {
        Some(f) => Some(
            match f.to_ascii_lowercase().as_str() {
                "json" => "application/json",
                "xml" => "application/xml",
                _ => "text/plain",
            }
            .to_string(),
        ),
        None => accept.map(|v| String::from_utf8_lossy(v).into_owned()),
    };
    let chosen = best_match(accept.as_deref().unwrap_or(""), &LISTING_TYPES)
        .map_err(|_| ListingError::BadAccept)?;
    match chosen {
        Some("text/plain") => Ok(ListingFormat::Plain),
        Some("application/json") => Ok(ListingFormat::Json),
        Some("application/xml") => Ok(ListingFormat::Xml("application/xml")),
        Some("text/xml") => Ok(ListingFormat::Xml("text/xml")),
        _ => Err(ListingError::NotAcceptable),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b > 0x20 && b != 0x7f && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// A malformed `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadAccept;

/// swob's `Accept.best_match`: the first of `options` the highest-quality
/// media range admits, non-glob ranges first among equals. `Err` for a
/// malformed header.
///
/// A quality that is not a number sorts above every number (`q=nan`) or
/// below (`q=-nan`): Python's sort tolerates keys that do not compare,
/// Rust's sort needs a total order.
pub fn best_match<'a>(header: &str, options: &[&'a str]) -> Result<Option<&'a str>, BadAccept> {
    if header.is_empty() {
        return Ok(options.first().copied());
    }
    // (type, subtype, quality, no globs)
    let mut types: Vec<(String, String, f64, bool)> = Vec::new();
    for item in header.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let (t, s) = media.split_once('/').ok_or(BadAccept)?;
        if !is_token(t) || !is_token(s) {
            return Err(BadAccept);
        }
        let mut q = 1.0;
        let mut seen_q = false;
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (name, value) = p.split_once('=').ok_or(BadAccept)?;
            let (name, value) = (name.trim(), value.trim());
            if !is_token(name) || value.is_empty() {
                return Err(BadAccept);
            }
            if name == "q" {
                if seen_q {
                    return Err(BadAccept);
                }
                seen_q = true;
                q = value.parse::<f64>().map_err(|_| BadAccept)?;
            }
        }
        types.push((t.to_string(), s.to_string(), q, t != "*" && s != "*"));
    }
    // Stable sort, highest quality then no globs first (Python's reverse
    // sort keeps equal items in order).
    types.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)));
    for (t, s, _, _) in &types {
        for opt in options {
            let Some((ot, os)) = opt.split_once('/') else {
                continue;
            };
            let tm = t == "*" || t.eq_ignore_ascii_case(ot);
            let sm = s == "*" || s.eq_ignore_ascii_case(os);
            if tm && sm {
                return Ok(Some(opt));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_best_match() {
        let o = &["text/plain", "application/json", "application/xml"];
        assert_eq!(best_match("", o), Ok(Some("text/plain")));
        assert_eq!(
            best_match("application/json", o),
            Ok(Some("application/json"))
        );
        assert_eq!(best_match("*/*", o), Ok(Some("text/plain")));
        assert_eq!(
            best_match("text/*;q=0.5, application/xml", o),
            Ok(Some("application/xml"))
        );
        assert_eq!(best_match("image/png", o), Ok(None));
        assert!(best_match("garbage", o).is_err());
    }

    #[test]
    fn accept_qualities_that_are_not_numbers_sort_without_a_panic() {
        let mut items = Vec::new();
        for i in 0..40 {
            let q = ["nan", "0.5", "1", "0", "inf", "-inf", "0.25"][i % 7];
            items.push(format!("x{i}/y;q={q}"));
        }
        items.push("text/plain;q=0.1".into());
        let header = items.join(", ");
        assert_eq!(
            best_match(&header, &["text/plain", "application/json"]),
            Ok(Some("text/plain"))
        );
    }

    #[test]
    fn query_parameters_and_limit() {
        let q = Query::parse(Some("limit=10001"));
        assert_eq!(q.limit(10_000), Err(ListingError::LimitTooLarge(10_000)));
        let q = Query::parse(Some("limit=abc"));
        assert_eq!(q.limit(10_000), Ok(10_000));
        let q = Query::parse(Some("prefix=a+b%20c&limit=5&prefix=d"));
        assert_eq!(q.get("prefix"), Ok(Some("d".into())));
        assert_eq!(q.limit(10_000), Ok(5));
        let q = Query::parse(Some("prefix=%ff"));
        assert_eq!(q.get("prefix"), Err(ListingError::NotUtf8("prefix".into())));
        // Python 3's parse_qsl separates pairs by `&` only.
        let q = Query::parse(Some("limit=5;format=json"));
        assert_eq!(q.get("format"), Ok(None));
        assert_eq!(q.get("limit"), Ok(Some("5;format=json".into())));
    }

    #[test]
    fn format_overrides_accept() {
        let f = |query: &str, accept: Option<&str>| {
            listing_format(&Query::parse(Some(query)), accept.map(str::as_bytes))
        };
        assert_eq!(f("format=JSON", Some("text/xml")), Ok(ListingFormat::Json));
        assert_eq!(
            f("format=%78ml", None),
            Ok(ListingFormat::Xml("application/xml"))
        );
        assert_eq!(f("format=csv", Some("image/png")), Ok(ListingFormat::Plain));
        assert_eq!(
            f("format=", Some("text/xml")),
            Ok(ListingFormat::Xml("text/xml"))
        );
        assert_eq!(f("", None), Ok(ListingFormat::Plain));
        assert_eq!(f("", Some("image/png")), Err(ListingError::NotAcceptable));
        assert_eq!(f("", Some("x")), Err(ListingError::BadAccept));
    }
}
