//! S3 bodies (apus-s3 `S3Input`): any bytes as an aws-chunked body with
//! or without a checksum trailer, or as a plain body with a payload hash
//! and checksum, fed in any two pieces. Never a panic; the outcome does
//! not depend on where the body was cut; a body accepted as complete
//! yields exactly the declared number of payload bytes, and never more.
//! Input: byte 0 picks the plan, bytes 1..3 the declared length and the
//! cut, the rest is the body.
#![no_main]

use std::collections::BTreeSet;

use apus_s3::input::{ChecksumAlgorithm, ChecksumSource, InputPlan, S3Input, StreamingPlan};
use libfuzzer_sys::fuzz_target;

fn run(plan: &InputPlan, body: &[u8], cut: usize) -> (Result<(), String>, Vec<u8>, bool) {
    let mut input = S3Input::new(plan, None);
    let mut out = Vec::new();
    let r = input
        .feed(&body[..cut], &mut out)
        .and_then(|_| input.feed(&body[cut..], &mut out))
        .and_then(|_| input.finish())
        .map_err(|e| format!("{e:?}"));
    (r, out, input.is_complete())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let mode = data[0];
    let declared = u64::from(data[1]) * 4;
    let body = &data[3..];
    let cut = usize::from(data[2]) % (body.len() + 1);
    let algo = ChecksumAlgorithm::ALL[usize::from(mode >> 4) % ChecksumAlgorithm::ALL.len()];
    let plan = if mode & 1 == 0 {
        let trailer = algo.header();
        let with_trailer = mode & 2 != 0;
        InputPlan {
            payload_length: Some(declared),
            streaming: Some(StreamingPlan {
                trailers: if with_trailer {
                    BTreeSet::from([trailer.clone()])
                } else {
                    BTreeSet::new()
                },
                signed: false,
            }),
            checksum: with_trailer.then(|| (algo, ChecksumSource::Trailer(trailer))),
            ..InputPlan::default()
        }
    } else {
        InputPlan {
            payload_length: Some(declared),
            sha256: (mode & 2 != 0).then(|| "0".repeat(64)),
            checksum: (mode & 4 != 0)
                .then(|| (algo, ChecksumSource::Header(vec![0; algo.digest_size()]))),
            ..InputPlan::default()
        }
    };
    let (whole, whole_out, whole_complete) = run(&plan, body, body.len());
    let (split, split_out, split_complete) = run(&plan, body, cut);
    assert_eq!(whole, split, "the outcome depends on the cut at {cut}");
    if whole.is_ok() {
        assert_eq!(whole_out, split_out);
        assert_eq!(whole_complete, split_complete);
    }
    assert!(
        whole_out.len() as u64 <= declared,
        "more payload than declared"
    );
    if whole.is_ok() && whole_complete {
        assert_eq!(whole_out.len() as u64, declared, "complete but short");
    }
});
