//! Temporary URL queries (apus-proxy `tempurl`): any query string is read
//! or refused, never a panic. A query read has a supported-looking digest
//! name, a signature of whole hex bytes, and an expiry not in the past;
//! an IP range either reads or is refused, for both address families.
#![no_main]

use apus_proxy::tempurl::{ip_allowed, read_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let now = 1_700_000_000;
    if let Some(q) = read_query(query, now) {
        assert!(q.expires >= now);
        assert!(q.signature.len() % 2 == 0);
        assert!(q.signature.bytes().all(|b| b.is_ascii_hexdigit()));
        if !query.contains(':') {
            assert!(matches!(q.digest.as_str(), "sha1" | "sha256" | "sha512"));
        }
        if let Some(range) = &q.ip_range {
            for addr in ["127.0.0.1", "::1"] {
                let _ = ip_allowed(addr.parse().expect("an address"), range);
            }
        }
    }
});
