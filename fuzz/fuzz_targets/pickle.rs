//! Pickles (apus-diskfile `pickle`) and what is read through them: object
//! metadata, async pendings and `hashes.pkl`. Any bytes decode or are
//! refused, never a panic or a runaway allocation, and whatever decodes
//! re-encodes to a pickle that decodes to the same thing. The first byte
//! chooses the decoder, so all four share one corpus of pickles.
#![no_main]

use apus_diskfile::pickle::{dumps, loads, Value};
use apus_diskfile::{AsyncUpdate, HashesFile, Metadata};
use libfuzzer_sys::fuzz_target;

/// Equality with floats compared bit for bit, so NaN equals itself.
fn same(a: &Value, b: &Value) -> bool {
    let all =
        |x: &[Value], y: &[Value]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q));
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y))
        | (Value::Tuple(x), Value::Tuple(y))
        | (Value::Set(x), Value::Set(y)) => all(x, y),
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(value) = loads(data) {
                let again = loads(&dumps(&value)).expect("a dumped value loads");
                assert!(same(&value, &again), "{value:?}\n{again:?}");
            }
        }
        1 => {
            if let Ok(md) = Metadata::from_pickle(data) {
                // Like Swift, the reader tells Python 3 pickles by a
                // `_codecs.encode` near the start, which an empty first key
                // (pickled as `bytes()`) pushes out of reach.
                if md.keys().next().is_some_and(|k| !k.is_empty()) {
                    let again = Metadata::from_pickle(&md.to_pickle());
                    assert_eq!(again.as_ref(), Ok(&md));
                }
            }
        }
        2 => {
            if let Ok(update) = AsyncUpdate::from_pickle(data) {
                let again = AsyncUpdate::from_pickle(&update.to_pickle()).expect("re-read");
                assert_eq!(again, update);
            }
        }
        _ => {
            let hashes = HashesFile::from_pickle(data);
            assert_eq!(hashes, hashes.clone());
            assert_eq!(HashesFile::from_pickle(&hashes.to_pickle()), hashes);
        }
    }
});
