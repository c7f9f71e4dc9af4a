//! Request paths and names (apus-proto `path`, the storage servers'
//! `parse_path`): decoding, `split_path` and quoting never panic.
//! A decoded path is non-empty UTF-8 without NUL and survives a quote and
//! decode round trip; `split_path` gives exactly the segments the path is
//! made of, and accepts every well-formed path.
#![no_main]

use apus_proto::path::{percent_decode, quote, split_path, title_case, validate_device_partition};
use apus_server::db_common;
use libfuzzer_sys::fuzz_target;

fn check_quote(s: &str) {
    let quoted = quote(s);
    assert!(quoted
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-~/%".contains(&b)));
    if !s.is_empty() && !s.contains('\0') {
        assert_eq!(percent_decode(&quoted).as_deref(), Ok(s), "{quoted}");
    }
}

fn check_split(path: &str, minsegs: usize, maxsegs: usize, rest: bool) {
    let result = split_path(path, minsegs, maxsegs, rest);
    if let Ok(segs) = &result {
        assert_eq!(segs.len(), maxsegs);
        let present: Vec<&str> = segs.iter().map_while(|s| s.as_deref()).collect();
        assert!(
            segs[present.len()..].iter().all(Option::is_none),
            "{segs:?}"
        );
        assert!(present.len() >= minsegs);
        let last = present.len() - 1;
        for (i, seg) in present.iter().enumerate() {
            if i < last || i < minsegs {
                assert!(!seg.is_empty(), "{path:?} {segs:?}");
            }
            if i < last || !rest {
                assert!(!seg.contains('/'), "{path:?} {segs:?}");
            }
        }
        let rebuilt = format!("/{}", present.join("/"));
        assert!(
            rebuilt == path || (!rest && format!("{rebuilt}/") == path),
            "{path:?} {segs:?}"
        );
    }
    // A path of `minsegs..=maxsegs` non-empty segments always splits.
    if let Some(body) = path.strip_prefix('/') {
        let parts: Vec<&str> = body.split('/').collect();
        if parts.iter().all(|p| !p.is_empty()) && (minsegs..=maxsegs).contains(&parts.len()) {
            let segs = result.unwrap_or_else(|e| panic!("{path:?}: {e}"));
            for (i, seg) in segs.iter().enumerate() {
                assert_eq!(seg.as_deref(), parts.get(i).copied());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses split_path's arguments, the rest is the path.
    let Some((&args, raw)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(raw) else {
        return;
    };
    let minsegs = 1 + usize::from(args & 3);
    let maxsegs = minsegs + usize::from((args >> 2) & 3);
    let rest = args & 0x10 != 0;

    check_quote(raw);
    check_split(raw, minsegs, maxsegs, rest);
    if let Ok(decoded) = percent_decode(raw) {
        assert!(!decoded.is_empty() && !decoded.contains('\0'));
        check_quote(&decoded);
        check_split(&decoded, minsegs, maxsegs, rest);
        let _ = db_common::parse_path(&decoded, minsegs, maxsegs, rest);
    }
    if let Ok(decoded) = db_common::decode_path(raw, "Invalid UTF8") {
        // The servers allow NUL (reserved names) but agree otherwise.
        if !decoded.contains('\0') {
            assert_eq!(percent_decode(raw).as_deref(), Ok(decoded.as_str()));
        }
        if let Ok(p) = db_common::parse_path(&decoded, 3, 5, true) {
            assert!(validate_device_partition(&p.device, &p.partition).is_ok());
            assert!(!p.account.is_empty());
        }
    }
    let (device, partition) = raw.split_once('\n').unwrap_or((raw, ""));
    let _ = validate_device_partition(device, partition);
    let titled = title_case(raw);
    if raw.is_ascii() {
        assert!(titled.eq_ignore_ascii_case(raw));
    }
});
