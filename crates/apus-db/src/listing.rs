//! The listing walk shared by container and account listings: Swift's
//! marker/end_marker/prefix/delimiter/path/reverse semantics over names
//! compared as UTF-8 bytes (SQLite's BINARY collation).

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::ToSql;

use crate::error::Result;

/// Swift's maximum listing length.
pub const LISTING_LIMIT: usize = 10_000;

/// What to list. Empty `marker`/`end_marker` mean no bound; `prefix`,
/// `delimiter` and `path` distinguish absent (`None`) from empty, as Swift
/// does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListParams {
    pub limit: usize,
    pub marker: String,
    pub end_marker: String,
    pub prefix: Option<String>,
    pub delimiter: Option<String>,
    /// Container listings only: list the direct children of this pseudo
    /// directory (sets prefix to `path/` and delimiter to `/`, and leaves
    /// out deeper names without rolling them up).
    pub path: Option<String>,
    pub reverse: bool,
    /// Include names starting with the reserved byte `\x00`.
    pub allow_reserved: bool,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            limit: LISTING_LIMIT,
            marker: String::new(),
            end_marker: String::new(),
            prefix: None,
            delimiter: None,
            path: None,
            reverse: false,
            allow_reserved: false,
        }
    }
}

/// One listing entry: an item, or a pseudo directory rolled up by the
/// delimiter (its name ends with the delimiter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing<T> {
    Item(T),
    Subdir(String),
}

/// A text argument bound as raw bytes, so bounds need not be valid UTF-8.
pub(crate) enum Arg {
    Text(Vec<u8>),
}

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let Arg::Text(b) = self;
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(b)))
    }
}

/// The smallest byte string greater than every string starting with `s`
/// (`s` non-empty): its last byte plus one. UTF-8 never contains 0xff, so no
/// carry is ever needed for names; the carry is handled anyway.
pub(crate) fn after_prefix(s: &[u8]) -> Vec<u8> {
    let mut out = s.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return out;
        }
    }
    // All 0xff: nothing sorts after every extension; an unreachable bound.
    vec![0xff; s.len() + 1]
}

/// What a table-specific fetcher needs to run one query.
pub(crate) struct Query {
    /// SQL conditions (with `?` placeholders) and their arguments.
    pub conditions: Vec<&'static str>,
    pub args: Vec<Arg>,
    pub reverse: bool,
    pub limit: usize,
}

/// Runs Swift's listing algorithm. `fetch` runs one query and hands each
/// row's name (borrowed from the row) and value to the visitor until it
/// returns false.
pub(crate) fn walk<T>(
    params: &ListParams,
    mut fetch: impl FnMut(&Query, &mut dyn FnMut(&str, T) -> bool) -> Result<()>,
) -> Result<Vec<Listing<T>>> {
    let limit = params.limit;
    let reverse = params.reverse;
    let (mut marker, mut end_marker) = if reverse {
        (
            params.end_marker.as_bytes().to_vec(),
            params.marker.as_bytes().to_vec(),
        )
    } else {
        (
            params.marker.as_bytes().to_vec(),
            params.end_marker.as_bytes().to_vec(),
        )
    };
    let mut prefix: Option<Vec<u8>> = params.prefix.as_ref().map(|p| p.as_bytes().to_vec());
    let mut delimiter: Vec<u8> = params
        .delimiter
        .as_ref()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    let mut path: Option<Vec<u8>> = None;
    if let Some(p) = &params.path {
        let mut pfx = p.trim_end_matches('/').as_bytes().to_vec();
        if !p.is_empty() {
            pfx.push(b'/');
        }
        path = Some(pfx.clone());
        prefix = Some(pfx);
        delimiter = b"/".to_vec();
    } else if !delimiter.is_empty() && prefix.as_deref().unwrap_or(&[]).is_empty() {
        prefix = Some(Vec::new());
    }
    let end_prefix = prefix
        .as_ref()
        .filter(|p| !p.is_empty())
        .map(|p| after_prefix(p));
    let pfx: &[u8] = prefix.as_deref().unwrap_or(b"");
    let orig_marker = marker.clone();
    let mut delim_force_gte = false;
    let mut results: Vec<Listing<T>> = Vec::new();

    while results.len() < limit {
        let mut q = Query {
            conditions: Vec::new(),
            args: Vec::new(),
            reverse,
            limit: limit - results.len(),
        };
        match &end_prefix {
            Some(ep) if end_marker.is_empty() || end_marker >= *ep => {
                q.conditions.push("name < ?");
                q.args.push(Arg::Text(ep.clone()));
            }
            _ if !end_marker.is_empty() => {
                q.conditions.push("name < ?");
                q.args.push(Arg::Text(end_marker.clone()));
            }
            _ => {}
        }
        if delim_force_gte {
            q.conditions.push("name >= ?");
            q.args.push(Arg::Text(marker.clone()));
            delim_force_gte = false;
        } else if !marker.is_empty() && (pfx.is_empty() || marker.as_slice() >= pfx) {
            q.conditions.push("name > ?");
            q.args.push(Arg::Text(marker.clone()));
        } else if !pfx.is_empty() {
            q.conditions.push("name >= ?");
            q.args.push(Arg::Text(pfx.to_vec()));
        }
        if !params.allow_reserved {
            q.conditions.push("name >= ?");
            q.args.push(Arg::Text(vec![1]));
        }

        if prefix.is_none() || delimiter.is_empty() {
            fetch(&q, &mut |_name, row| {
                results.push(Listing::Item(row));
                true
            })?;
            return Ok(results);
        }

        let mut rowcount = 0usize;
        let mut stop = false;
        fetch(&q, &mut |name, row| {
            rowcount += 1;
            let nb = name.as_bytes();
            if reverse {
                end_marker = nb.to_vec();
            } else {
                marker = nb.to_vec();
            }
            if results.len() >= limit {
                stop = true;
                return false;
            }
            let end = nb
                .get(pfx.len()..)
                .and_then(|rest| find(rest, &delimiter))
                .map(|i| i + pfx.len());
            let skip_to = |end: usize| -> Vec<u8> {
                let mut m = nb[..end].to_vec();
                m.extend_from_slice(&after_prefix(&delimiter));
                m
            };
            if let Some(path) = &path {
                if nb == path.as_slice() {
                    return true;
                }
                if let Some(end) = end {
                    if nb.len() > end + delimiter.len() {
                        if reverse {
                            end_marker = nb[..end + delimiter.len()].to_vec();
                        } else {
                            marker = skip_to(end);
                        }
                        return false;
                    }
                }
            } else if let Some(end) = end {
                let dir = &nb[..end + delimiter.len()];
                if reverse {
                    end_marker = dir.to_vec();
                } else {
                    marker = skip_to(end);
                    delim_force_gte = true;
                }
                if dir != orig_marker.as_slice() {
                    // `dir` ends at a delimiter boundary of a valid name.
                    results.push(Listing::Subdir(String::from_utf8_lossy(dir).into_owned()));
                }
                return false;
            }
            results.push(Listing::Item(row));
            true
        })?;
        if stop || rowcount == 0 {
            break;
        }
    }
    Ok(results)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
