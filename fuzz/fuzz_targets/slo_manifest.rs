//! SLO manifests (apus-proxy `slo::manifest`): what a client PUTs and
//! what is stored. Any bytes are accepted or refused, never a panic. An
//! accepted PUT manifest names objects as `container/object` with at most
//! one range, and inline data is never empty; a refusal lists at least
//! one problem. A stored manifest that reads is written back so that it
//! reads the same, with the same length and etag.
#![no_main]

use apus_proxy::slo::manifest::{self, InputError, InputSegment, StoredSegment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match manifest::parse_input(data, "/v1/AUTH_test/c/manifest") {
        Ok(segments) => {
            for s in &segments {
                match s {
                    InputSegment::Object { path, range, .. } => {
                        assert!(path.trim_matches('/').contains('/'));
                        assert!(range.as_ref().is_none_or(|r| r.specs.len() == 1));
                    }
                    InputSegment::Data(d) => assert!(!d.is_empty()),
                }
            }
        }
        Err(InputError::Problems(p)) => assert!(!p.is_empty()),
        Err(_) => {}
    }
    if let Some(entries) = manifest::parse_stored(data) {
        let again = manifest::parse_stored(manifest::render_stored(&entries).as_bytes())
            .expect("a rendered manifest reads");
        assert_eq!(again, entries);
        let total = |e: &[StoredSegment]| e.iter().fold(0u64, |t, s| t.saturating_add(s.length()));
        assert_eq!(total(&again), total(&entries));
        assert_eq!(manifest::slo_etag(&again), manifest::slo_etag(&entries));
    }
});
