//! Whole objects as streams, the way Swift's proxy handles them: an
//! object's bytes, arriving in pieces of any size, become the k + m
//! fragment archives segment by segment ([`ArchiveEncoder`]); and k
//! archives, arriving in pieces from k sources, become the object again
//! segment by segment ([`ArchiveDecoder`]). Each holds at most about one
//! segment per archive, whatever the object's size.

use crate::header::{FragmentHeader, HEADER_SIZE};
use crate::{EcError, EcScheme};

/// Encodes an object stream into fragment archives: each full
/// `segment_size` bytes, and the shorter tail at the end, is one segment
/// encoded on its own (Swift's `chunk_transformer`).
pub struct ArchiveEncoder {
    scheme: EcScheme,
    segment_size: usize,
    pending: Vec<u8>,
    fragments: Vec<Vec<u8>>,
}

impl ArchiveEncoder {
    pub fn new(scheme: EcScheme, segment_size: usize) -> Result<Self, EcError> {
        if segment_size == 0 {
            return Err(EcError::ZeroSegmentSize);
        }
        Ok(ArchiveEncoder {
            scheme,
            segment_size,
            // Grown as bytes come: a small object never costs a whole
            // segment's buffer.
            pending: Vec::new(),
            fragments: Vec::new(),
        })
    }

    /// Takes the next bytes of the object; the fragments of every segment
    /// they complete are appended to `out` (one buffer per fragment
    /// index, k + m of them).
    pub fn push(&mut self, mut data: &[u8], out: &mut [Vec<u8>]) -> Result<(), EcError> {
        self.check_outputs(out)?;
        while !data.is_empty() {
            let room = self.segment_size - self.pending.len();
            if self.pending.is_empty() && data.len() >= self.segment_size {
                // A whole segment in the input: no copy into `pending`.
                let (segment, rest) = data.split_at(self.segment_size);
                self.encode_segment(segment, out)?;
                data = rest;
                continue;
            }
            let take = room.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == self.segment_size {
                let segment = std::mem::take(&mut self.pending);
                self.encode_segment(&segment, out)?;
                self.pending = segment;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Ends the object: encodes the tail segment, if any.
    pub fn finish(mut self, out: &mut [Vec<u8>]) -> Result<(), EcError> {
        self.check_outputs(out)?;
        if !self.pending.is_empty() {
            let segment = std::mem::take(&mut self.pending);
            self.encode_segment(&segment, out)?;
        }
        Ok(())
    }

    fn check_outputs(&self, out: &[Vec<u8>]) -> Result<(), EcError> {
        if out.len() != self.scheme.fragment_count() {
            return Err(EcError::InvalidScheme(format!(
                "{} output buffers for {} fragment archives",
                out.len(),
                self.scheme.fragment_count()
            )));
        }
        Ok(())
    }

    fn encode_segment(&mut self, segment: &[u8], out: &mut [Vec<u8>]) -> Result<(), EcError> {
        self.scheme.encode_into(segment, &mut self.fragments)?;
        for (archive, fragment) in out.iter_mut().zip(&self.fragments) {
            archive.extend_from_slice(fragment);
        }
        Ok(())
    }
}

/// Decodes an object from k (or more) fragment archives of the same
/// object, each arriving in pieces: whenever every source holds a whole
/// fragment, the segment they make is decoded.
pub struct ArchiveDecoder {
    scheme: EcScheme,
    /// The largest fragment a source may send (header included): a
    /// header claiming more is refused rather than buffered.
    max_fragment_len: usize,
    sources: Vec<Vec<u8>>,
}

impl ArchiveDecoder {
    /// A decoder over `sources` archives (at least k, each of a different
    /// fragment index), for segments of at most `segment_size` bytes.
    pub fn new(scheme: EcScheme, segment_size: u64, sources: usize) -> Result<Self, EcError> {
        if segment_size == 0 {
            return Err(EcError::ZeroSegmentSize);
        }
        if sources < scheme.k() {
            return Err(EcError::InsufficientFragments {
                needed: scheme.k(),
                available: sources,
            });
        }
        let max_fragment_len = usize::try_from(scheme.fragment_size(segment_size))
            .map_err(|_| EcError::SegmentTooLarge { len: segment_size })?;
        Ok(ArchiveDecoder {
            scheme,
            max_fragment_len,
            sources: vec![Vec::new(); sources],
        })
    }

    /// How many more bytes source `source` may be given before its
    /// buffer is full (its next fragment is then complete): callers read
    /// no more than this from it, which bounds memory.
    pub fn room(&self, source: usize) -> usize {
        self.sources
            .get(source)
            .map_or(0, |b| self.max_fragment_len.saturating_sub(b.len()))
    }

    /// Adds bytes of source `source`'s archive. More than [`Self::room`]
    /// is an error.
    pub fn push(&mut self, source: usize, data: &[u8]) -> Result<(), EcError> {
        let room = self.room(source);
        let Some(buffer) = self.sources.get_mut(source) else {
            return Err(EcError::InvalidScheme(format!("no source {source}")));
        };
        if data.len() > room {
            return Err(EcError::MalformedFragment {
                position: source,
                reason: "more bytes than one fragment before the segment was decoded",
            });
        }
        buffer.extend_from_slice(data);
        Ok(())
    }

    /// The length of the whole fragment at the front of a source's
    /// buffer, once its header is there.
    fn front_fragment_len(&self, source: usize) -> Result<Option<usize>, EcError> {
        let buffer = &self.sources[source];
        if buffer.len() < HEADER_SIZE {
            return Ok(None);
        }
        let header = FragmentHeader::parse(buffer, source)?;
        let len = HEADER_SIZE as u64
            + u64::from(header.payload_size)
            + u64::from(header.backend_metadata_size);
        match usize::try_from(len) {
            Ok(len) if len <= self.max_fragment_len => Ok(Some(len)),
            _ => Err(EcError::MalformedFragment {
                position: source,
                reason: "fragment larger than the policy's segment size allows",
            }),
        }
    }

    /// The next segment, when every source holds a whole fragment of it;
    /// `None` while some source must be read further.
    pub fn next_segment(&mut self) -> Result<Option<Vec<u8>>, EcError> {
        self.next_with(|scheme, fragments| scheme.decode(fragments))
    }

    /// The next fragment of archive `index` rebuilt from the sources'
    /// fragments of the same segment (how the reconstructor restores a
    /// lost archive), when every source holds a whole fragment; `None`
    /// while some source must be read further.
    pub fn next_rebuilt_fragment(&mut self, index: usize) -> Result<Option<Vec<u8>>, EcError> {
        self.next_with(|scheme, fragments| scheme.reconstruct(fragments, index))
    }

    /// Applies `f` to the front fragment of every source once all are
    /// whole, then drops them from the buffers.
    fn next_with(
        &mut self,
        f: impl FnOnce(&EcScheme, &[&[u8]]) -> Result<Vec<u8>, EcError>,
    ) -> Result<Option<Vec<u8>>, EcError> {
        let mut lens = Vec::with_capacity(self.sources.len());
        for (source, buffer) in self.sources.iter().enumerate() {
            match self.front_fragment_len(source)? {
                Some(len) if buffer.len() >= len => lens.push(len),
                _ => return Ok(None),
            }
        }
        let out = {
            let fragments: Vec<&[u8]> = self
                .sources
                .iter()
                .zip(&lens)
                .map(|(buffer, &len)| &buffer[..len])
                .collect();
            f(&self.scheme, &fragments)?
        };
        for (buffer, len) in self.sources.iter_mut().zip(lens) {
            buffer.drain(..len);
        }
        Ok(Some(out))
    }

    /// Checks that the archives ended together: bytes left in a source
    /// after the last whole segment mean an archive was cut short or too
    /// long.
    pub fn finish(&self) -> Result<(), EcError> {
        match self.sources.iter().position(|b| !b.is_empty()) {
            None => Ok(()),
            Some(position) => Err(EcError::MalformedFragment {
                position,
                reason: "archive ends inside a fragment, or after the others ended",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::EcType;

    /// A deterministic pseudo-random byte stream.
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn schemes() -> Vec<EcScheme> {
        vec![
            EcScheme::new(EcType::LiberasurecodeRsVand, 4, 2).unwrap(),
            EcScheme::new(EcType::IsaLRsVand, 10, 4).unwrap(),
            EcScheme::new(EcType::IsaLRsCauchy, 8, 3).unwrap(),
        ]
    }

    #[test]
    fn streamed_archives_equal_whole_object_encoding() {
        let segment = 4096;
        for scheme in schemes() {
            for len in [0, 1, segment - 1, segment, segment + 1, 3 * segment + 17] {
                let object = bytes(len, len as u64);
                let want = scheme.encode_archives(&object, segment).unwrap();
                for piece in [1, 7, 1000, segment, 3 * segment + 100] {
                    let mut enc = ArchiveEncoder::new(scheme.clone(), segment).unwrap();
                    let mut out = vec![Vec::new(); scheme.fragment_count()];
                    for part in object.chunks(piece) {
                        enc.push(part, &mut out).unwrap();
                    }
                    enc.finish(&mut out).unwrap();
                    assert_eq!(out, want, "{:?} len {len} piece {piece}", scheme.ec_type());
                }
            }
        }
    }

    #[test]
    fn any_k_archives_decode_in_any_pieces() {
        let segment = 4096u64;
        for scheme in schemes() {
            let (k, n) = (scheme.k(), scheme.fragment_count());
            let object = bytes(3 * segment as usize + 999, 7);
            let archives = scheme.encode_archives(&object, segment as usize).unwrap();
            // Data only, parity first, and one more than needed.
            let choices: Vec<Vec<usize>> = vec![
                (0..k).collect(),
                (n - k..n).rev().collect(),
                (0..=k)
                    .map(|i| (i * 5) % n)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            ];
            for chosen in choices {
                for piece in [1usize, 33, 5000] {
                    let mut dec =
                        ArchiveDecoder::new(scheme.clone(), segment, chosen.len()).unwrap();
                    let mut offsets = vec![0usize; chosen.len()];
                    let mut got = Vec::new();
                    loop {
                        let mut progressed = false;
                        for (s, &index) in chosen.iter().enumerate() {
                            let archive = &archives[index];
                            let take = piece.min(dec.room(s)).min(archive.len() - offsets[s]);
                            if take > 0 {
                                dec.push(s, &archive[offsets[s]..offsets[s] + take])
                                    .unwrap();
                                offsets[s] += take;
                                progressed = true;
                            }
                        }
                        while let Some(seg) = dec.next_segment().unwrap() {
                            got.extend(seg);
                        }
                        if !progressed {
                            break;
                        }
                    }
                    dec.finish().unwrap();
                    assert_eq!(
                        got,
                        object,
                        "{:?} {chosen:?} piece {piece}",
                        scheme.ec_type()
                    );
                }
            }
        }
    }

    #[test]
    fn any_k_archives_rebuild_every_other_archive() {
        let segment = 4096u64;
        for scheme in schemes() {
            let (k, n) = (scheme.k(), scheme.fragment_count());
            for len in [0usize, 1, 4095, 3 * 4096 + 999] {
                let object = bytes(len, 11);
                let archives = scheme.encode_archives(&object, segment as usize).unwrap();
                // The last k archives rebuild each of the others, fed in
                // odd-sized pieces.
                let chosen: Vec<usize> = (n - k..n).collect();
                for target in 0..n - k {
                    let mut dec = ArchiveDecoder::new(scheme.clone(), segment, k).unwrap();
                    let mut offsets = vec![0usize; k];
                    let mut rebuilt = Vec::new();
                    loop {
                        let mut progressed = false;
                        for (s, &index) in chosen.iter().enumerate() {
                            let archive = &archives[index];
                            let take = 777.min(dec.room(s)).min(archive.len() - offsets[s]);
                            if take > 0 {
                                dec.push(s, &archive[offsets[s]..offsets[s] + take])
                                    .unwrap();
                                offsets[s] += take;
                                progressed = true;
                            }
                        }
                        while let Some(f) = dec.next_rebuilt_fragment(target).unwrap() {
                            rebuilt.extend(f);
                        }
                        if !progressed {
                            break;
                        }
                    }
                    dec.finish().unwrap();
                    assert_eq!(
                        rebuilt,
                        archives[target],
                        "{:?} len {len}",
                        scheme.ec_type()
                    );
                }
            }
        }
    }

    #[test]
    fn short_long_or_lying_archives_are_errors() {
        let scheme = EcScheme::new(EcType::IsaLRsVand, 4, 2).unwrap();
        let segment = 4096u64;
        let archives = scheme
            .encode_archives(&bytes(5000, 3), segment as usize)
            .unwrap();
        // One archive cut short: the last segment never completes.
        let mut dec = ArchiveDecoder::new(scheme.clone(), segment, 4).unwrap();
        let sent: Vec<&[u8]> = (0..4)
            .map(|s| {
                let a = &archives[s][..];
                if s == 2 {
                    &a[..a.len() - 1]
                } else {
                    a
                }
            })
            .collect();
        let mut at = [0usize; 4];
        let mut segments = 0;
        loop {
            let mut progressed = false;
            for s in 0..4 {
                let take = dec.room(s).min(sent[s].len() - at[s]);
                if take > 0 {
                    dec.push(s, &sent[s][at[s]..at[s] + take]).unwrap();
                    at[s] += take;
                    progressed = true;
                }
            }
            while dec.next_segment().unwrap().is_some() {
                segments += 1;
            }
            if !progressed {
                break;
            }
        }
        assert_eq!(segments, 1);
        assert!(dec.finish().is_err());
        // More than a fragment before the segment can be decoded.
        let mut dec = ArchiveDecoder::new(scheme.clone(), segment, 4).unwrap();
        assert!(dec.push(0, &archives[0]).is_err());
        // Too few sources for the scheme.
        assert!(ArchiveDecoder::new(scheme.clone(), segment, 3).is_err());
        // A segment size smaller than the archive's: its fragments are
        // refused, not buffered.
        let mut dec = ArchiveDecoder::new(scheme.clone(), 1024, 4).unwrap();
        for s in 0..4 {
            dec.push(s, &archives[s][..dec.room(s)]).unwrap();
        }
        assert!(dec.next_segment().is_err());
        // The wrong number of output buffers.
        let mut enc = ArchiveEncoder::new(scheme, 4096).unwrap();
        assert!(enc.push(b"x", &mut [Vec::new()]).is_err());
    }
}
