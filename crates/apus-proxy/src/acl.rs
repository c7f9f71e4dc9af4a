//! Swift's ACL formats.
//!
//! Container ACLs (`X-Container-Read`, `X-Container-Write`) are the
//! "version 1" format: comma-separated items, each a group name (which
//! auth systems match against the caller's groups, so also `account` or
//! `account:user`), `.rlistings`, or a referrer designation `.r:[-]host`
//! (`.r:*` any referrer, `.r:.example.com` a domain, a leading `-`
//! denies). Referrers are not allowed in write ACLs.
//!
//! Account ACLs (`X-Account-Access-Control`, stored as the account's
//! `X-Account-Sysmeta-Core-Access-Control`) are the "version 2" format: a
//! JSON object; tempauth knows the keys `admin`, `read-write` and
//! `read-only`, each a list of group names.

use std::fmt::Write as _;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// Validates and normalizes a version-1 ACL header value as Swift's
/// `clean_acl` does: items are trimmed, empty items dropped, the referrer
/// designators `.ref`, `.referer`, `.referrer` shortened to `.r`, and a
/// leading `*` of a domain dropped (`.r:*.example.com` → `.r:.example.com`).
///
/// `Err` carries the text Swift puts in its 400 body.
pub fn clean_acl(header_name: &str, value: &str) -> Result<String, String> {
    let name = header_name.to_ascii_lowercase();
    let mut items: Vec<String> = Vec::new();
    for raw in value.split(',') {
        let raw = py_strip(raw);
        if raw.is_empty() {
            continue;
        }
        let Some((first, second)) = raw.split_once(':') else {
            items.push(raw.to_string());
            continue;
        };
        let first = py_strip(first);
        let mut second = py_strip(second);
        if first.is_empty() || !first.starts_with('.') {
            items.push(raw.to_string());
        } else if matches!(first, ".r" | ".ref" | ".referer" | ".referrer") {
            if name.contains("write") {
                return Err(format!(
                    "Referrers not allowed in write ACL: {}",
                    py_repr(raw)
                ));
            }
            let mut negate = false;
            if let Some(rest) = second.strip_prefix('-') {
                negate = true;
                second = py_strip(rest);
            }
            if second != "*" {
                if let Some(rest) = second.strip_prefix('*') {
                    second = py_strip(rest);
                }
            }
            if second.is_empty() || second == "." {
                return Err(format!(
                    "No host/domain value after referrer designation in ACL: {}",
                    py_repr(raw)
                ));
            }
            items.push(format!(".r:{}{}", if negate { "-" } else { "" }, second));
        } else {
            return Err(format!(
                "Unknown designator {} in ACL: {}",
                py_repr(first),
                py_repr(raw)
            ));
        }
    }
    Ok(items.join(","))
}

/// Splits a (cleaned) version-1 ACL into its referrer designations
/// (without `.r:`) and its groups (percent-decoded), as Swift's
/// `parse_acl` does.
pub fn parse_acl(acl: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut referrers = Vec::new();
    let mut groups = Vec::new();
    if let Some(acl) = acl {
        if acl.is_empty() {
            return (referrers, groups);
        }
        for item in acl.split(',') {
            match item.strip_prefix(".r:") {
                Some(r) => referrers.push(r.to_string()),
                None => groups.push(unquote(item)),
            }
        }
    }
    (referrers, groups)
}

/// Whether a request with this `Referer` header passes the referrer
/// designations of an ACL (as [`parse_acl`] returns them). They apply in
/// order, so a later `-host` revokes what an earlier `*` granted.
pub fn referrer_allowed(referrer: Option<&str>, referrer_acl: &[String]) -> bool {
    let mut allow = false;
    if referrer_acl.is_empty() {
        return false;
    }
    let rhost = referrer
        .and_then(url_hostname)
        .unwrap_or_else(|| "unknown".to_string());
    for mhost in referrer_acl {
        if let Some(denied) = mhost.strip_prefix('-') {
            if denied == rhost || (denied.starts_with('.') && rhost.ends_with(denied)) {
                allow = false;
            }
        } else if mhost == "*"
            || *mhost == rhost
            || (mhost.starts_with('.') && rhost.ends_with(mhost.as_str()))
        {
            allow = true;
        }
    }
    allow
}

/// The host part of a URL, lower-cased, as Python's
/// `urlparse(url).hostname` gives it; `None` for relative references and
/// URLs without a host.
fn url_hostname(url: &str) -> Option<String> {
    let mut rest = url;
    if let Some(i) = url.find(':') {
        let scheme = &url[..i];
        if i > 0
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            rest = &url[i + 1..];
        }
    }
    let after = rest.strip_prefix("//")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let netloc = &after[..end];
    let hostinfo = match netloc.rfind('@') {
        Some(at) => &netloc[at + 1..],
        None => netloc,
    };
    let host = if let Some(open) = hostinfo.find('[') {
        let inner = &hostinfo[open + 1..];
        match inner.find(']') {
            Some(close) => &inner[..close],
            None => inner,
        }
    } else {
        match hostinfo.find(':') {
            Some(colon) => &hostinfo[..colon],
            None => hostinfo,
        }
    };
    if host.is_empty() {
        None
    } else {
        Some(host.to_lowercase())
    }
}

/// A JSON object with its keys in input order (a later duplicate replaces
/// the value but keeps the first position), as Python's `json.loads`
/// builds a dict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AclObject(pub Vec<(String, Value)>);

impl AclObject {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct ObjectOrOther(Option<AclObject>);

impl<'de> Deserialize<'de> for ObjectOrOther {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ObjectOrOther;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectOrOther, A::Error> {
                let mut entries: Vec<(String, Value)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    match entries.iter_mut().find(|(ek, _)| *ek == k) {
                        Some(entry) => entry.1 = v,
                        None => entries.push((k, v)),
                    }
                }
                Ok(ObjectOrOther(Some(AclObject(entries))))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ObjectOrOther, A::Error> {
                while seq.next_element::<Value>()?.is_some() {}
                Ok(ObjectOrOther(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ObjectOrOther, E> {
                Ok(ObjectOrOther(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ObjectOrOther, E> {
                Ok(ObjectOrOther(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ObjectOrOther, E> {
                Ok(ObjectOrOther(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ObjectOrOther, E> {
                Ok(ObjectOrOther(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<ObjectOrOther, E> {
                Ok(ObjectOrOther(None))
            }
            fn visit_unit<E>(self) -> Result<ObjectOrOther, E> {
                Ok(ObjectOrOther(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a version-2 ACL (Swift's `parse_acl(version=2)`): `None` when
/// absent, not JSON or not a JSON object; an empty object for `""`.
pub fn parse_acl_v2(data: Option<&str>) -> Option<AclObject> {
    let data = data?;
    if data.is_empty() {
        return Some(AclObject::default());
    }
    serde_json::from_str::<ObjectOrOther>(data).ok()?.0
}

/// Formats a version-2 ACL as Swift's `format_acl(version=2)`: compact
/// JSON, keys sorted, everything outside printable ASCII escaped.
pub fn format_acl_v2(acl: &AclObject) -> String {
    let mut entries: Vec<&(String, Value)> = acl.0.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from("{");
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(k));
        out.push(':');
        write_json(&mut out, v);
    }
    out.push('}');
    out
}

fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&json_string(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(k));
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_json(out, v);
                }
            }
            out.push('}');
        }
    }
}

/// A JSON string literal in pure ASCII, as Python's `json.dumps` with
/// its default `ensure_ascii` writes it.
pub use apus_core::pyjson::json_str as json_string;

/// The groups an account ACL grants each level to, as Swift's
/// `acls_from_account_info` reads them from the account's sysmeta.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountAcls {
    pub admin: Vec<String>,
    pub read_write: Vec<String>,
    pub read_only: Vec<String>,
}

/// The account ACLs stored in `X-Account-Sysmeta-Core-Access-Control`;
/// `None` when unset, unparsable or granting nothing.
pub fn account_acls_from_sysmeta(data: Option<&str>) -> Option<AccountAcls> {
    let acl = parse_acl_v2(data)?;
    let list = |key: &str| -> Vec<String> {
        match acl.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let acls = AccountAcls {
        admin: list("admin"),
        read_write: list("read-write"),
        read_only: list("read-only"),
    };
    if acls.admin.is_empty() && acls.read_write.is_empty() && acls.read_only.is_empty() {
        return None;
    }
    Some(acls)
}

/// The keys tempauth understands in an account ACL.
pub const TEMPAUTH_ACCOUNT_ACL_KEYS: [&str; 3] = ["admin", "read-write", "read-only"];

/// Checks an `X-Account-Access-Control` value against tempauth's rules;
/// `Err` is the description Swift puts after
/// `X-Account-Access-Control invalid: `.
pub fn check_tempauth_account_acl(data: &str) -> Result<(), String> {
    let Some(acl) = parse_acl_v2(Some(data)) else {
        return Err(format!("Syntax error in input ({})", py_repr(data)));
    };
    for (key, _) in &acl.0 {
        if !TEMPAUTH_ACCOUNT_ACL_KEYS.contains(&key.as_str()) {
            return Err(format!("Key {} not recognized", json_string(key)));
        }
    }
    for key in TEMPAUTH_ACCOUNT_ACL_KEYS {
        let Some(value) = acl.get(key) else {
            continue;
        };
        let Value::Array(items) = value else {
            return Err(format!("Value for key {} must be a list", json_string(key)));
        };
        if items.iter().any(|v| !v.is_string()) {
            return Err(format!(
                "Elements of {} list must be strings",
                json_string(key)
            ));
        }
    }
    Ok(())
}

/// Python's `str.strip()` (Unicode whitespace at both ends).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Python's `repr()` of a string, which Swift's ACL error messages quote
/// values with.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || (c != ' ' && c.is_whitespace()) => {
                let n = c as u32;
                let _ = if n < 0x100 {
                    write!(out, "\\x{n:02x}")
                } else if n < 0x10000 {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Python's `urllib.parse.unquote`: `%XX` decoded, invalid UTF-8 replaced.
fn unquote(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(v: &str) -> Result<String, String> {
        clean_acl("header", v)
    }

    #[test]
    fn clean_acl_normalizes_like_swift() {
        for (input, want) in [
            (".r:*", ".r:*"),
            (".r:specific.host", ".r:specific.host"),
            (".r:.ending.with", ".r:.ending.with"),
            (".r:*.ending.with", ".r:.ending.with"),
            (".r:-*.ending.with", ".r:-.ending.with"),
            (".r:one,.r:two", ".r:one,.r:two"),
            (".r:*,.r:-specific.host", ".r:*,.r:-specific.host"),
            (".r:*,.r:-.ending.with", ".r:*,.r:-.ending.with"),
            (".r:one,.r:-two", ".r:one,.r:-two"),
            (
                ".r:one,.r:-two,account,account:user",
                ".r:one,.r:-two,account,account:user",
            ),
            ("TEST_account", "TEST_account"),
            (".ref:*", ".r:*"),
            (".referer:*", ".r:*"),
            (".referrer:*", ".r:*"),
            (
                " .r : one , ,, .r:two , .r : - three ",
                ".r:one,.r:two,.r:-three",
            ),
            ("bob, sue", "bob,sue"),
            ("bob , sue", "bob,sue"),
            ("bob,,,sue", "bob,sue"),
            (".referrer : *", ".r:*"),
            (".r:*, .rlistings", ".r:*,.rlistings"),
            ("", ""),
        ] {
            assert_eq!(clean(input).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn clean_acl_rejects_like_swift() {
        for bad in [
            ".unknown:test",
            ".r:",
            ".r:*.",
            ".r : * . ",
            ".r:-*.",
            ".r : - * . ",
            " .r : ",
            "user , .r : ",
            ".r:-",
            " .r : - ",
            "user , .r : - ",
        ] {
            assert!(clean(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            clean_acl("write-header", ".r:r"),
            Err("Referrers not allowed in write ACL: '.r:r'".to_string())
        );
        assert_eq!(
            clean_acl("X-Container-Write", "a, .r:*"),
            Err("Referrers not allowed in write ACL: '.r:*'".to_string())
        );
        assert_eq!(
            clean(".r:"),
            Err("No host/domain value after referrer designation in ACL: '.r:'".to_string())
        );
        assert_eq!(
            clean(".unknown:test"),
            Err("Unknown designator '.unknown' in ACL: '.unknown:test'".to_string())
        );
    }

    #[test]
    fn parse_acl_splits_referrers_and_groups() {
        let p = |s: Option<&str>| parse_acl(s);
        let v = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(p(None), (vec![], vec![]));
        assert_eq!(p(Some("")), (vec![], vec![]));
        assert_eq!(p(Some(".r:ref1")), (v(&["ref1"]), vec![]));
        assert_eq!(p(Some(".r:-ref1")), (v(&["-ref1"]), vec![]));
        assert_eq!(p(Some("account:user")), (vec![], v(&["account:user"])));
        assert_eq!(
            p(Some(
                "acc1,acc2:usr2,.r:ref3,acc3,acc4:usr4,.r:ref5,.r:-ref6"
            )),
            (
                v(&["ref3", "ref5", "-ref6"]),
                v(&["acc1", "acc2:usr2", "acc3", "acc4:usr4"])
            )
        );
        assert_eq!(p(Some("a%20b,c%zz")), (vec![], v(&["a b", "c%zz"])));
    }

    #[test]
    fn referrer_allowed_like_swift() {
        let acl = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!referrer_allowed(Some("host"), &[]));
        assert!(referrer_allowed(None, &acl(&["*"])));
        assert!(referrer_allowed(Some(""), &acl(&["*"])));
        assert!(!referrer_allowed(None, &acl(&["specific.host"])));
        assert!(!referrer_allowed(Some(""), &acl(&["specific.host"])));
        for r in [
            "http://www.example.com/index.html",
            "http://user@www.example.com/index.html",
            "http://user:pass@www.example.com/index.html",
            "http://www.example.com:8080/index.html",
            "http://user@www.example.com:8080/index.html",
            "http://user:pass@www.example.com:8080/index.html",
            "http://user:pass@www.example.com:8080",
            "http://www.example.com",
            "HTTP://WWW.Example.COM/x",
        ] {
            assert!(referrer_allowed(Some(r), &acl(&[".example.com"])), "{r}");
        }
        assert!(!referrer_allowed(
            Some("http://thief.example.com"),
            &acl(&[".example.com", "-thief.example.com"])
        ));
        assert!(!referrer_allowed(
            Some("http://thief.example.com"),
            &acl(&["*", "-thief.example.com"])
        ));
        assert!(referrer_allowed(
            Some("http://www.example.com"),
            &acl(&[".other.com", "www.example.com"])
        ));
        assert!(referrer_allowed(
            Some("http://www.example.com"),
            &acl(&["-.example.com", "www.example.com"])
        ));
        assert!(!referrer_allowed(
            Some("www.example.com"),
            &acl(&[".example.com"])
        ));
        assert!(!referrer_allowed(
            Some("../index.html"),
            &acl(&[".example.com"])
        ));
        assert!(referrer_allowed(Some("www.example.com"), &acl(&["*"])));
    }

    #[test]
    fn v2_parse_and_format() {
        assert_eq!(parse_acl_v2(None), None);
        assert_eq!(parse_acl_v2(Some("")), Some(AclObject::default()));
        assert_eq!(parse_acl_v2(Some("{}")), Some(AclObject::default()));
        assert_eq!(parse_acl_v2(Some("{ }")), Some(AclObject::default()));
        for bad in ["[\"array\"]", "null", "\"some_string\"", "123", "nope", " "] {
            assert_eq!(parse_acl_v2(Some(bad)), None, "{bad}");
        }
        let a = parse_acl_v2(Some(r#"{"b":"foo","a":1,"b":"bar"}"#)).unwrap();
        assert_eq!(a.0[0].0, "b");
        assert_eq!(a.get("b"), Some(&Value::String("bar".into())));
        assert_eq!(format_acl_v2(&a), r#"{"a":1,"b":"bar"}"#);
        let a = parse_acl_v2(Some(
            r#"{"referrers": ["c.com", "-x.c.com"], "groups": ["a", "b"]}"#,
        ))
        .unwrap();
        assert_eq!(
            format_acl_v2(&a),
            r#"{"groups":["a","b"],"referrers":["c.com","-x.c.com"]}"#
        );
        let a = parse_acl_v2(Some(
            "{\"read-only\": [\"\u{e1}\", \"\u{1F600}\", \"q\\\"\"]}",
        ))
        .unwrap();
        assert_eq!(
            format_acl_v2(&a),
            r#"{"read-only":["\u00e1","\ud83d\ude00","q\""]}"#
        );
    }

    #[test]
    fn v2_numbers_format_back_to_themselves() {
        for json in [
            r#"{"n":212671288888.7714225534253}"#,
            r#"{"n":212671288888.77142}"#,
            r#"{"n":0.1}"#,
            r#"{"n":1e-7}"#,
        ] {
            let a = parse_acl_v2(Some(json)).unwrap();
            let formatted = format_acl_v2(&a);
            assert_eq!(
                format_acl_v2(&parse_acl_v2(Some(&formatted)).unwrap()),
                formatted
            );
        }
        let a = parse_acl_v2(Some(r#"{"n":212671288888.77142}"#)).unwrap();
        assert_eq!(format_acl_v2(&a), r#"{"n":212671288888.77142}"#);
    }

    #[test]
    fn account_acls_from_sysmeta_like_swift() {
        assert_eq!(account_acls_from_sysmeta(None), None);
        assert_eq!(account_acls_from_sysmeta(Some("{}")), None);
        assert_eq!(account_acls_from_sysmeta(Some("bad")), None);
        assert_eq!(
            account_acls_from_sysmeta(Some(r#"{"VERSION":1,"admin":["a","b"]}"#)),
            Some(AccountAcls {
                admin: vec!["a".into(), "b".into()],
                ..Default::default()
            })
        );
        assert_eq!(
            account_acls_from_sysmeta(Some(
                r#"{"VERSION":1,"admin":["a","b"],"read-write":["c"],"read-only":[]}"#
            )),
            Some(AccountAcls {
                admin: vec!["a".into(), "b".into()],
                read_write: vec!["c".into()],
                read_only: vec![],
            })
        );
    }

    #[test]
    fn tempauth_account_acl_checks() {
        assert_eq!(
            check_tempauth_account_acl(r#"{"read-only": ["á", "b"]}"#),
            Ok(())
        );
        for ok in ["{}", "", "{ }"] {
            assert_eq!(check_tempauth_account_acl(ok), Ok(()));
        }
        assert_eq!(
            check_tempauth_account_acl("syntactically invalid"),
            Err("Syntax error in input ('syntactically invalid')".to_string())
        );
        assert_eq!(
            check_tempauth_account_acl(r#"{"other-auth-system":["valid"]}"#),
            Err("Key \"other-auth-system\" not recognized".to_string())
        );
        assert_eq!(
            check_tempauth_account_acl(r#"{"zz":1,"aa":2}"#),
            Err("Key \"zz\" not recognized".to_string())
        );
        assert_eq!(
            check_tempauth_account_acl(r#"{"read-write":["fine"],"admin":"should be a list"}"#),
            Err("Value for key \"admin\" must be a list".to_string())
        );
        assert_eq!(
            check_tempauth_account_acl(r#"{"read-only": ["a", 99]}"#),
            Err("Elements of \"read-only\" list must be strings".to_string())
        );
        assert_eq!(
            check_tempauth_account_acl(r#"["read-only"]"#),
            Err("Syntax error in input ('[\"read-only\"]')".to_string())
        );
    }

    #[test]
    fn py_repr_quotes_like_python() {
        assert_eq!(py_repr("abc"), "'abc'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("a\nb\u{1}"), "'a\\nb\\x01'");
    }
}
