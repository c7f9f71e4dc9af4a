//! Swift's default constraints, the metadata check every server repeats
//! (`check_metadata`) and the name-length checks, pure functions over
//! header pairs and names.

/// Largest object a single PUT may store (5 GiB + 2 bytes, Swift's value).
pub const MAX_FILE_SIZE: u64 = 5_368_709_122;
pub const MAX_META_NAME_LENGTH: usize = 128;
pub const MAX_META_VALUE_LENGTH: usize = 256;
pub const MAX_META_COUNT: usize = 90;
pub const MAX_META_OVERALL_SIZE: usize = 4096;
pub const MAX_HEADER_SIZE: usize = 8192;
pub const MAX_OBJECT_NAME_LENGTH: usize = 1024;
pub const MAX_ACCOUNT_NAME_LENGTH: usize = 256;
pub const MAX_CONTAINER_NAME_LENGTH: usize = 256;
/// Accounts whose names start with this are created on first use by the
/// servers themselves (`.expiring_objects`, Swift's default prefix).
pub const AUTO_CREATE_ACCOUNT_PREFIX: &str = ".";

/// A failed constraint: the status and the plain-text body Swift sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {body}")]
pub struct ConstraintError {
    pub status: u16,
    pub body: String,
}

impl ConstraintError {
    pub fn bad_request(body: impl Into<String>) -> Self {
        ConstraintError {
            status: 400,
            body: body.into(),
        }
    }
}

/// What a name-length check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Account,
    Container,
    Object,
}

impl NameKind {
    fn label(self) -> &'static str {
        match self {
            NameKind::Account => "Account",
            NameKind::Container => "Container",
            NameKind::Object => "Object",
        }
    }
}

/// The longest `kind` name allowed in `account`. Like Swift's
/// `get_name_length_limit`, account and container names in an
/// auto-created account may be twice the usual length; object names may
/// not.
pub fn name_length_limit(kind: NameKind, account: &str) -> usize {
    let auto = account.starts_with(AUTO_CREATE_ACCOUNT_PREFIX);
    match kind {
        NameKind::Object => MAX_OBJECT_NAME_LENGTH,
        NameKind::Account if auto => MAX_ACCOUNT_NAME_LENGTH * 2,
        NameKind::Account => MAX_ACCOUNT_NAME_LENGTH,
        NameKind::Container if auto => MAX_CONTAINER_NAME_LENGTH * 2,
        NameKind::Container => MAX_CONTAINER_NAME_LENGTH,
    }
}

/// Swift's name-length checks (the proxy's for all three kinds, the
/// object server's `check_object_creation`): 400 when the decoded `name`
/// has more characters than [`name_length_limit`] allows. Swift measures
/// a Python `str`, so the limit is in characters, not UTF-8 bytes: 1,024
/// `é` (2,048 bytes) is a valid object name.
pub fn check_name_length(kind: NameKind, account: &str, name: &str) -> Result<(), ConstraintError> {
    let limit = name_length_limit(kind, account);
    // Cheap first: a name is never more characters than bytes.
    if name.len() <= limit {
        return Ok(());
    }
    let len = name.chars().count();
    if len <= limit {
        return Ok(());
    }
    Err(ConstraintError::bad_request(format!(
        "{} name length of {len} longer than {limit}",
        kind.label()
    )))
}

/// Swift's `check_metadata` for `target` (`object`, `container`,
/// `account`): header values at most 8 KiB, metadata names non-empty and at
/// most 128 bytes, values at most 256 bytes, at most 90 items and 4096
/// bytes in all (names without the prefix plus values).
pub fn check_metadata<'a, V: AsRef<[u8]> + ?Sized + 'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a V)>,
    target: &str,
) -> Result<(), ConstraintError> {
    let prefix = format!("x-{}-meta-", target.to_ascii_lowercase());
    let mut count = 0usize;
    let mut size = 0usize;
    for (key, value) in headers {
        // Lengths are in bytes, as Swift counts them; object metadata need
        // not be UTF-8.
        let value = value.as_ref();
        if value.len() > MAX_HEADER_SIZE {
            let shown: String = key.chars().take(MAX_META_NAME_LENGTH).collect();
            return Err(ConstraintError::bad_request(format!(
                "Header value too long: {shown}"
            )));
        }
        let is_meta = key
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(&prefix));
        if !is_meta {
            continue;
        }
        let name = &key[prefix.len()..];
        if name.is_empty() {
            return Err(ConstraintError::bad_request(
                "Metadata name cannot be empty",
            ));
        }
        if target != "object" && (value.contains(&0) || std::str::from_utf8(value).is_err()) {
            return Err(ConstraintError::bad_request("Metadata must be valid UTF-8"));
        }
        count += 1;
        size += name.len() + value.len();
        if name.len() > MAX_META_NAME_LENGTH {
            return Err(ConstraintError::bad_request(format!(
                "Metadata name too long: {prefix}{name}"
            )));
        }
        if value.len() > MAX_META_VALUE_LENGTH {
            return Err(ConstraintError::bad_request(format!(
                "Metadata value longer than {MAX_META_VALUE_LENGTH}: {prefix}{name}"
            )));
        }
        if count > MAX_META_COUNT {
            return Err(ConstraintError::bad_request(format!(
                "Too many metadata items; max {MAX_META_COUNT}"
            )));
        }
        if size > MAX_META_OVERALL_SIZE {
            return Err(ConstraintError::bad_request(format!(
                "Total metadata too large; max {MAX_META_OVERALL_SIZE}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_lengths_are_in_characters() {
        let e = |n: usize| "\u{e9}".repeat(n);
        assert!(check_name_length(NameKind::Object, "AUTH_a", &e(1024)).is_ok());
        assert_eq!(
            check_name_length(NameKind::Object, "AUTH_a", &e(1025)),
            Err(ConstraintError::bad_request(
                "Object name length of 1025 longer than 1024"
            ))
        );
        assert!(check_name_length(NameKind::Container, "AUTH_a", &e(256)).is_ok());
        assert_eq!(
            check_name_length(NameKind::Container, "AUTH_a", &e(257)).map_err(|e| e.body),
            Err("Container name length of 257 longer than 256".to_string())
        );
        let account = format!("AUTH_{}", e(252));
        assert_eq!(
            check_name_length(NameKind::Account, &account, &account).map_err(|e| e.body),
            Err("Account name length of 257 longer than 256".to_string())
        );
        // Auto-created accounts allow twice as much, but not for objects.
        assert!(check_name_length(NameKind::Container, ".x", &e(512)).is_ok());
        assert!(check_name_length(NameKind::Container, ".x", &e(513)).is_err());
        assert!(check_name_length(NameKind::Object, ".x", &e(1025)).is_err());
    }

    #[test]
    fn metadata_limits() {
        assert!(check_metadata([("X-Object-Meta-A", "b")], "object").is_ok());
        assert_eq!(
            check_metadata([("X-Object-Meta-", "b")], "object").map_err(|e| e.status),
            Err(400)
        );
        let long = "v".repeat(257);
        assert!(check_metadata([("x-object-meta-a", long.as_str())], "object").is_err());
        let names: Vec<String> = (0..91).map(|i| format!("x-object-meta-{i}")).collect();
        assert!(check_metadata(names.iter().map(|n| (n.as_str(), "v")), "object").is_err());
        assert!(check_metadata(names[..90].iter().map(|n| (n.as_str(), "v")), "object").is_ok());
        let big = "v".repeat(8193);
        assert!(check_metadata([("x-foo", big.as_str())], "object").is_err());
    }
}
