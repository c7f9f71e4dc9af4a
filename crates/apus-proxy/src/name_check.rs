//! Name checks (Swift's `name_check` middleware): a request whose decoded
//! path holds a forbidden character, is longer than `maximum_length`
//! bytes, or matches `forbidden_regexp` is refused `400` with Swift's
//! explanation, before anything else looks at it. Not in the default
//! pipeline (nor in Swift's); a configured pipeline names it.
//!
//! The path is checked as Swift's WSGI sees it: percent-decoded bytes,
//! each byte one character, so lengths count bytes and the expression
//! runs over bytes (`.` matches any byte but a newline).

use http::StatusCode;
use regex::bytes::{Regex, RegexBuilder};

use crate::service::{error_response, BoxFuture, Req, Resp, Service, SharedService};

/// Swift's defaults.
pub const DEFAULT_FORBIDDEN_CHARS: &str = "'\"`<>";
pub const DEFAULT_MAXIMUM_LENGTH: usize = 255;
/// `.` and `..` as a path segment.
pub const DEFAULT_FORBIDDEN_REGEXP: &str = r"/\./|/\.\./|/\.$|/\.\.$";

/// Swift's `[filter:name_check]` settings.
#[derive(Clone, Debug)]
pub struct NameCheckConfig {
    pub forbidden_chars: String,
    pub maximum_length: usize,
    /// The expression as configured (shown in `/info` and refusals);
    /// empty checks nothing.
    pub forbidden_regexp: String,
    compiled: Option<Regex>,
}

impl NameCheckConfig {
    /// Settings with `forbidden_regexp` compiled; an error explains an
    /// expression that does not compile.
    pub fn new(
        forbidden_chars: &str,
        maximum_length: usize,
        forbidden_regexp: &str,
    ) -> Result<Self, String> {
        let compiled = if forbidden_regexp.is_empty() {
            None
        } else {
            let re = RegexBuilder::new(forbidden_regexp)
                .unicode(false)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("forbidden_regexp {forbidden_regexp:?}: {e}"))?;
            Some(re)
        };
        Ok(NameCheckConfig {
            forbidden_chars: forbidden_chars.to_string(),
            maximum_length,
            forbidden_regexp: forbidden_regexp.to_string(),
            compiled,
        })
    }

    /// Why `path` (decoded bytes) is refused, in Swift's words.
    pub fn refusal(&self, path: &[u8]) -> Option<String> {
        let forbidden = self.forbidden_chars.as_bytes();
        if path.iter().any(|b| forbidden.contains(b)) {
            return Some(format!(
                "Object/Container/Account name contains forbidden chars from {}",
                self.forbidden_chars
            ));
        }
        if path.len() > self.maximum_length {
            return Some(format!(
                "Object/Container/Account name longer than the allowed maximum {}",
                self.maximum_length
            ));
        }
        if self.compiled.as_ref().is_some_and(|re| re.is_match(path)) {
            return Some(format!(
                "Object/Container/Account name contains a forbidden substring from regular expression {}",
                self.forbidden_regexp
            ));
        }
        None
    }
}

impl Default for NameCheckConfig {
    fn default() -> Self {
        let compiled = RegexBuilder::new(DEFAULT_FORBIDDEN_REGEXP)
            .unicode(false)
            .build()
            .ok();
        NameCheckConfig {
            forbidden_chars: DEFAULT_FORBIDDEN_CHARS.to_string(),
            maximum_length: DEFAULT_MAXIMUM_LENGTH,
            forbidden_regexp: DEFAULT_FORBIDDEN_REGEXP.to_string(),
            compiled,
        }
    }
}

impl PartialEq for NameCheckConfig {
    fn eq(&self, other: &Self) -> bool {
        self.forbidden_chars == other.forbidden_chars
            && self.maximum_length == other.maximum_length
            && self.forbidden_regexp == other.forbidden_regexp
    }
}

/// The `/info` entry.
pub fn info(config: &NameCheckConfig) -> serde_json::Value {
    serde_json::json!({
        "forbidden_chars": config.forbidden_chars,
        "maximum_length": config.maximum_length,
        "forbidden_regexp": config.forbidden_regexp,
    })
}

pub struct NameCheck {
    next: SharedService,
    config: NameCheckConfig,
}

impl NameCheck {
    pub fn new(next: SharedService, config: NameCheckConfig) -> Self {
        NameCheck { next, config }
    }
}

impl Service for NameCheck {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let path = apus_proto::path::unquote_bytes(req.uri().path());
        match self.config.refusal(&path) {
            Some(why) => {
                Box::pin(async move { error_response(StatusCode::BAD_REQUEST, Some(&why)) })
            }
            None => self.next.call(req),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn swifts_defaults_refuse_quotes_long_paths_and_dot_segments() {
        let c = NameCheckConfig::default();
        let refused = |p: &str| c.refusal(&apus_proto::path::unquote_bytes(p));
        assert_eq!(refused("/v1/a/c/o"), None);
        assert_eq!(refused("/v1/a/c/o.txt/..x/.y"), None);
        for p in [
            "/v1/a/c/o'",
            "/v1/a/c/%3Cscript%3E",
            "/v1/a/c%22/o",
            "/v1/a/`c`",
        ] {
            assert_eq!(
                refused(p).unwrap(),
                "Object/Container/Account name contains forbidden chars from '\"`<>",
                "{p}"
            );
        }
        let long = format!("/v1/a/c/{}", "o".repeat(255 - 8));
        assert_eq!(refused(&long), None);
        assert_eq!(
            refused(&format!("{long}o")).unwrap(),
            "Object/Container/Account name longer than the allowed maximum 255"
        );
        // Bytes, not characters: each é is two.
        let accented = format!("/v1/a/c/{}", "%C3%A9".repeat(123));
        assert_eq!(refused(&accented), None);
        assert!(refused(&format!("{accented}%C3%A9")).is_some());
        for p in [
            "/v1/a/./o",
            "/v1/a/c/../o",
            "/v1/a/c/.",
            "/v1/a/c/..",
            "/v1/a/c/%2E%2E",
        ] {
            assert_eq!(
                refused(p).unwrap(),
                format!(
                    "Object/Container/Account name contains a forbidden substring from regular expression {DEFAULT_FORBIDDEN_REGEXP}"
                ),
                "{p}"
            );
        }
    }

    #[test]
    fn settings_replace_the_defaults() {
        let c = NameCheckConfig::new("#", 20, "").unwrap();
        assert!(c.refusal(b"/v1/a/c/#").is_some());
        assert_eq!(c.refusal(b"/v1/a/c/0123456789ab"), None);
        assert_eq!(c.refusal(b"/v1/a/c/<..>"), None);
        assert!(c.refusal(b"/v1/a/c/0123456789abc").is_some());
        let c = NameCheckConfig::new("", 1000, "(?i)/secret").unwrap();
        assert!(c.refusal(b"/v1/a/SeCrEt/o").is_some());
        // Any byte, UTF-8 or not, can be matched.
        let c = NameCheckConfig::new("", 1000, r"\xff").unwrap();
        assert!(c.refusal(b"/v1/a/\xff").is_some());
        assert!(NameCheckConfig::new("", 1, "(").is_err());
    }
}
