//! Storage policies as Swift's `swift.conf` declares them: the
//! `[storage-policy:N]` sections read as Python's `ConfigParser` reads
//! them, and the erasure-coding parameters of a policy.
//!
//! Only the text is handled here; which values are valid (names, one
//! default, a known `ec_type`, the codec's limits) is judged where the
//! node's configuration is resolved.

use thiserror::Error;

/// How a policy stores objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PolicyKind {
    /// Whole copies, as many as the object ring has replicas.
    #[default]
    Replication,
    /// Fragment archives of an erasure code.
    ErasureCoding(EcParams),
}

/// An erasure-coded policy's parameters, Swift's `ec_*` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcParams {
    /// pyeclib's name of the code (`isa_l_rs_vand`, ...).
    pub ec_type: String,
    /// `ec_num_data_fragments`.
    pub ndata: u32,
    /// `ec_num_parity_fragments`.
    pub nparity: u32,
    /// `ec_object_segment_size`: bytes of object per encoded segment.
    pub segment_size: u64,
    /// `ec_duplication_factor`: copies of each fragment index.
    pub duplication_factor: u32,
}

/// Swift's default `ec_object_segment_size`.
pub const DEFAULT_EC_SEGMENT_SIZE: u64 = 1_048_576;

impl EcParams {
    /// Distinct fragment indexes: `ndata + nparity`.
    pub fn unique_fragments(&self) -> u32 {
        self.ndata + self.nparity
    }

    /// The replica count the policy's object ring must have.
    pub fn ring_replicas(&self) -> u32 {
        self.unique_fragments() * self.duplication_factor
    }

    /// Successful fragment writes a PUT needs: `ndata + 1` (the minimum
    /// parity Reed-Solomon needs), per duplicate, as Swift's `quorum`.
    pub fn quorum(&self) -> u32 {
        (self.ndata + 1) * self.duplication_factor
    }

    /// Swift's `ec_scheme_description`, kept in each archive's sysmeta.
    pub fn scheme_description(&self) -> String {
        format!("{} {}+{}", self.ec_type, self.ndata, self.nparity)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyConfError {
    #[error("malformed storage policy section name [{0}]")]
    SectionName(String),
    #[error("[{section}] is defined twice")]
    DuplicateSection { section: String },
    #[error("line {line} of swift.conf is neither a section, an option nor a comment")]
    Syntax { line: usize },
}

/// One `[storage-policy:N]` section: its index and its options (names
/// lowercased, values stripped), in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySection {
    pub index: u32,
    pub options: Vec<(String, String)>,
}

impl PolicySection {
    /// An option's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The `[storage-policy:N]` sections of a `swift.conf` text, ordered by
/// index. Other sections are skipped. As `ConfigParser`: `#` and `;`
/// start comment lines, `key = value` or `key: value`, an indented line
/// continues the previous value, a repeated key keeps its last value.
pub fn storage_policy_sections(text: &str) -> Result<Vec<PolicySection>, PolicyConfError> {
    let mut sections: Vec<PolicySection> = Vec::new();
    let mut seen_names: Vec<String> = Vec::new();
    // The current section: Some(index in `sections`) for a policy one,
    // None for any other (its options are skipped).
    let mut current: Option<Option<usize>> = None;
    let mut last_key: Option<(usize, usize)> = None;
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            // A continuation of the last value (ignored outside a policy).
            if let Some((s, o)) = last_key {
                let value = &mut sections[s].options[o].1;
                if !value.is_empty() {
                    value.push('\n');
                }
                value.push_str(trimmed);
            } else if current.is_none() {
                return Err(PolicyConfError::Syntax { line: n + 1 });
            }
            continue;
        }
        last_key = None;
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            let name = trimmed[1..trimmed.len() - 1].to_string();
            if seen_names.contains(&name) {
                return Err(PolicyConfError::DuplicateSection { section: name });
            }
            seen_names.push(name.clone());
            current = Some(match name.strip_prefix("storage-policy") {
                Some(rest) => {
                    let index = rest
                        .strip_prefix(':')
                        .and_then(|i| i.trim().parse::<u32>().ok())
                        .ok_or_else(|| PolicyConfError::SectionName(name.clone()))?;
                    sections.push(PolicySection {
                        index,
                        options: Vec::new(),
                    });
                    Some(sections.len() - 1)
                }
                None => None,
            });
            continue;
        }
        let Some((key, value)) = split_option(trimmed) else {
            return Err(PolicyConfError::Syntax { line: n + 1 });
        };
        match current {
            None => return Err(PolicyConfError::Syntax { line: n + 1 }),
            Some(None) => {}
            Some(Some(s)) => {
                let options = &mut sections[s].options;
                options.push((key.to_ascii_lowercase(), value.to_string()));
                last_key = Some((s, options.len() - 1));
            }
        }
    }
    sections.sort_by_key(|s| s.index);
    if let Some(pair) = sections.windows(2).find(|w| w[0].index == w[1].index) {
        return Err(PolicyConfError::DuplicateSection {
            section: format!("storage-policy:{}", pair[0].index),
        });
    }
    Ok(sections)
}

/// `key = value` or `key: value`, split at the first delimiter.
fn split_option(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim();
    (!key.is_empty()).then(|| (key, line[at + 1..].trim()))
}

/// Swift's `config_true_value`.
pub fn config_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t" | "y"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn policy_sections_are_read_as_configparser_reads_them() {
        let text = "\
[swift-hash]
swift_hash_path_suffix = s

# the replicated default
[storage-policy:0]
name = gold
aliases = yellow, orange
default = yes

[storage-policy:2]
name = ec42
policy_type = erasure_coding
EC_Type: isa_l_rs_vand
ec_num_data_fragments = 4
ec_num_parity_fragments = 2
ec_num_parity_fragments = 3

[storage-policy:1]
name = silver
deprecated = true
aliases = a,
   b
";
        let s = storage_policy_sections(text).unwrap();
        assert_eq!(s.iter().map(|p| p.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(s[0].get("aliases"), Some("yellow, orange"));
        assert!(config_true(s[0].get("default").unwrap()));
        assert_eq!(s[1].get("aliases"), Some("a,\nb"));
        assert_eq!(s[2].get("ec_type"), Some("isa_l_rs_vand"));
        // The last of a repeated key wins.
        assert_eq!(s[2].get("ec_num_parity_fragments"), Some("3"));
        assert_eq!(s[2].get("missing"), None);
    }

    #[test]
    fn malformed_texts_are_errors() {
        for (text, want) in [
            ("[storage-policy:x]\nname = a\n", "malformed"),
            ("[storage-policy]\nname = a\n", "malformed"),
            ("[storage-policy:1]\n[storage-policy:1]\n", "twice"),
            ("[storage-policy:01]\n[storage-policy:1]\n", "twice"),
            ("name = a\n", "line 1"),
            ("[storage-policy:0]\njust words\n", "line 2"),
        ] {
            let err = storage_policy_sections(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert_eq!(storage_policy_sections("").unwrap(), Vec::new());
    }

    #[test]
    fn ec_arithmetic() {
        let ec = EcParams {
            ec_type: "isa_l_rs_vand".to_string(),
            ndata: 10,
            nparity: 4,
            segment_size: DEFAULT_EC_SEGMENT_SIZE,
            duplication_factor: 2,
        };
        assert_eq!(ec.unique_fragments(), 14);
        assert_eq!(ec.ring_replicas(), 28);
        assert_eq!(ec.quorum(), 22);
        assert_eq!(ec.scheme_description(), "isa_l_rs_vand 10+4");
    }
}
