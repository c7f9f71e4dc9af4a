//! ACLs (apus-proxy `acl`): container ACL strings and the JSON of
//! `X-Account-Access-Control` never panic. A cleaned ACL has only
//! trimmed, non-empty items, referrers (with a host) only where allowed,
//! and splits into as many referrers and groups as it has items; a
//! version-2 ACL formats to ASCII JSON that parses back to the same ACL.
#![no_main]

use apus_proxy::acl::{
    account_acls_from_sysmeta, check_tempauth_account_acl, clean_acl, format_acl_v2, parse_acl,
    parse_acl_v2, referrer_allowed,
};
use libfuzzer_sys::fuzz_target;

fn check_v1(header: &str, value: &str, referer: Option<&str>) {
    let Ok(cleaned) = clean_acl(header, value) else {
        return;
    };
    let items: Vec<&str> = if cleaned.is_empty() {
        Vec::new()
    } else {
        cleaned.split(',').collect()
    };
    for item in &items {
        assert!(!item.is_empty() && item.trim() == *item, "{cleaned:?}");
        if let Some(host) = item.strip_prefix(".r:") {
            assert!(!header.contains("write"), "{cleaned:?}");
            // As in Swift, `.r:*-` leaves `-` (the `*` is dropped after the
            // check for a leading `-`), so only this much is certain.
            assert!(!host.is_empty() && host != ".", "{cleaned:?}");
        }
    }
    let (referrers, groups) = parse_acl(Some(&cleaned));
    assert_eq!(referrers.len() + groups.len(), items.len());
    let _ = referrer_allowed(referer, &referrers);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (value, referer) = match text.split_once('\n') {
        Some((v, r)) => (v, Some(r)),
        None => (text, None),
    };
    check_v1("X-Container-Read", value, referer);
    check_v1("X-Container-Write", value, referer);
    let (referrers, _) = parse_acl(Some(value));
    let _ = referrer_allowed(referer, &referrers);

    if let Some(acl) = parse_acl_v2(Some(text)) {
        let formatted = format_acl_v2(&acl);
        assert!(formatted.is_ascii(), "{formatted}");
        let again = parse_acl_v2(Some(&formatted)).expect("a formatted ACL parses");
        assert_eq!(format_acl_v2(&again), formatted);
    }
    let _ = account_acls_from_sysmeta(Some(text));
    if check_tempauth_account_acl(text).is_ok() {
        let _ = account_acls_from_sysmeta(Some(text));
    }
});
