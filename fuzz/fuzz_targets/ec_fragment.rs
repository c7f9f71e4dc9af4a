//! apus-ec's fragment handling: the header parser, decode and reconstruct
//! of arbitrary fragment sets never panic, and for any segment, encoding
//! then losing up to m fragments (and shuffling the rest) decodes back to
//! the segment and rebuilds every lost fragment byte for byte.
#![no_main]

use apus_ec::{EcScheme, EcType, FragmentHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[kind, shape, lost], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let ec_type = EcType::ALL[usize::from(kind) % 3];
    let k = usize::from(shape & 0x07) + 1;
    let m = usize::from((shape >> 3) & 0x03) + 1;
    let Ok(scheme) = EcScheme::new(ec_type, k, m) else {
        return;
    };
    let n = k + m;

    // Arbitrary bytes as a fragment set: pieces cut at lengths taken from
    // the input, so that some pieces are headers a mutation away from
    // valid ones (the seeds are real fragments).
    if kind & 0x80 != 0 {
        let mut pieces = Vec::new();
        let mut input = rest;
        while let Some((&len, tail)) = input.split_first() {
            let len = (usize::from(len) * 4).min(tail.len());
            let (piece, tail) = tail.split_at(len);
            let _ = FragmentHeader::parse(piece, pieces.len());
            pieces.push(piece);
            input = tail;
        }
        let _ = scheme.decode(&pieces);
        for index in [0, n - 1, n] {
            let _ = scheme.reconstruct(&pieces, index);
        }
        return;
    }

    // Round trip: lose the fragments whose bit is set in `lost` (at most
    // m of them), present the rest in rotated order.
    let segment = rest;
    let Ok(fragments) = scheme.encode(segment) else {
        return;
    };
    assert_eq!(fragments.len(), n);
    let mut missing: Vec<usize> = (0..n).filter(|&i| i < 8 && lost & (1 << i) != 0).collect();
    missing.truncate(m);
    let mut survivors: Vec<&[u8]> = (0..n)
        .filter(|i| !missing.contains(i))
        .map(|i| fragments[i].as_slice())
        .collect();
    let turn = usize::from(lost) % survivors.len();
    survivors.rotate_left(turn);
    assert_eq!(scheme.decode(&survivors).as_deref(), Ok(segment));
    for &index in &missing {
        assert_eq!(
            scheme.reconstruct(&survivors, index).as_ref(),
            Ok(&fragments[index])
        );
    }
    // A damaged header byte is either rejected or harmless.
    if let Some(first) = survivors.first().copied() {
        let mut damaged = first.to_vec();
        let at = usize::from(lost) % damaged.len().min(80);
        damaged[at] ^= shape | 1;
        let mut set = survivors.clone();
        set[0] = &damaged;
        let _ = scheme.decode(&set);
    }
});
