//! The bulk-extraction tar reader (apus-proxy `tar`): any bytes are read
//! or refused, never a panic, and reading them in any pieces gives the
//! same files as reading them at once. A file's contents are never
//! longer than its header says.
#![no_main]

use apus_proxy::tar::{read_all, Event, TarReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, archive)) = data.split_first() else {
        return;
    };
    let whole = read_all(archive);
    // The same bytes in pieces of `split + 1`.
    let mut reader = TarReader::new();
    let mut files: Vec<(Vec<u8>, u64, Vec<u8>)> = Vec::new();
    let mut result = Ok(());
    'feed: for piece in archive
        .chunks(usize::from(split) + 1)
        .map(Some)
        .chain([None])
    {
        match piece {
            Some(p) => reader.push(p),
            None => reader.finish(),
        }
        loop {
            match reader.next_event() {
                Ok(None) => break,
                Ok(Some(Event::End)) => break 'feed,
                Ok(Some(Event::File { path, size, .. })) => files.push((path, size, Vec::new())),
                Ok(Some(Event::Data(d))) => {
                    let f = files.last_mut().expect("data belongs to a file");
                    f.2.extend_from_slice(&d);
                    assert!(f.2.len() as u64 <= f.1, "more bytes than the header said");
                }
                Ok(Some(Event::FileEnd)) => {
                    let f = files.last().expect("a file ends after it starts");
                    assert_eq!(f.2.len() as u64, f.1);
                }
                Err(e) => {
                    result = Err(e);
                    break 'feed;
                }
            }
        }
    }
    match (whole, result) {
        (Ok(w), Ok(())) => {
            let pieces: Vec<(Vec<u8>, Vec<u8>)> =
                files.into_iter().map(|(p, _, d)| (p, d)).collect();
            let whole: Vec<(Vec<u8>, Vec<u8>)> = w.into_iter().map(|(p, d, _)| (p, d)).collect();
            assert_eq!(pieces, whole);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("at once: {a:?}, in pieces: {b:?}"),
    }
});
