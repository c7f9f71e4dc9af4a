//! How an object is cut into segments and how long its fragment archives
//! are. Swift encodes each `ec_object_segment_size` piece of an object on
//! its own (the last piece is whatever remains) and each object server
//! stores the concatenation of one index's fragments: its fragment archive.

use crate::error::EcError;
use crate::header::{FragmentHeader, HEADER_SIZE};
use crate::scheme::EcScheme;

/// pyeclib's `get_segment_info` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub segment_size: u64,
    pub last_segment_size: u64,
    /// Fragment size (header included) for a full segment.
    pub fragment_size: u64,
    pub last_fragment_size: u64,
    pub num_segments: u64,
}

impl EcScheme {
    /// pyeclib's `get_segment_info(data_len, segment_size)`, including its
    /// quirks: a tail shorter than the minimum encode size is folded into
    /// the previous segment, and `data_len` 0 reports 0 segments with a
    /// full segment's sizes. (pyeclib computes in C `int`s; this does not
    /// overflow past 2 GiB.) Swift itself calls it only to learn the
    /// fragment size of a full segment and of a tail; see
    /// [`EcScheme::fragment_archive_size`].
    pub fn segment_info(&self, data_len: u64, segment_size: u64) -> Result<SegmentInfo, EcError> {
        if segment_size == 0 {
            return Err(EcError::ZeroSegmentSize);
        }
        let min = self.min_segment_size();
        let mut num_segments = data_len.div_ceil(segment_size);
        if num_segments == 2 && data_len < segment_size + min {
            num_segments = 1;
        }
        if num_segments == 1 {
            let fragment_size = self.fragment_size(data_len);
            return Ok(SegmentInfo {
                segment_size: data_len,
                last_segment_size: data_len,
                fragment_size,
                last_fragment_size: fragment_size,
                num_segments,
            });
        }
        // With no data, num_segments is 0 and the "last" segment is a
        // whole one: the formula below then yields segment_size.
        let mut last_segment_size =
            (data_len + segment_size).saturating_sub(segment_size * num_segments);
        if last_segment_size < min && num_segments > 0 {
            num_segments -= 1;
            last_segment_size += segment_size;
        }
        Ok(SegmentInfo {
            segment_size,
            last_segment_size,
            fragment_size: self.fragment_size(segment_size),
            last_fragment_size: self.fragment_size(last_segment_size),
            num_segments,
        })
    }

    /// Length of each fragment archive of an object of `object_len` bytes
    /// as Swift writes it (its `X-Backend-Obj-Content-Length`): one full
    /// fragment per whole segment plus the tail's fragment, if any. An
    /// empty object has empty archives.
    pub fn fragment_archive_size(
        &self,
        object_len: u64,
        segment_size: u64,
    ) -> Result<u64, EcError> {
        if segment_size == 0 {
            return Err(EcError::ZeroSegmentSize);
        }
        let whole = object_len / segment_size;
        let tail = object_len % segment_size;
        let tail_fragment = if tail == 0 {
            0
        } else {
            self.fragment_size(tail)
        };
        Ok(whole * self.fragment_size(segment_size) + tail_fragment)
    }

    /// Encodes a whole object Swift's way: each segment separately, the
    /// fragments of one index concatenated. Returns k + m archives.
    pub fn encode_archives(
        &self,
        object: &[u8],
        segment_size: usize,
    ) -> Result<Vec<Vec<u8>>, EcError> {
        if segment_size == 0 {
            return Err(EcError::ZeroSegmentSize);
        }
        let archive_len = self.fragment_archive_size(object.len() as u64, segment_size as u64)?;
        let mut archives: Vec<Vec<u8>> = (0..self.fragment_count())
            .map(|_| Vec::with_capacity(usize::try_from(archive_len).unwrap_or(0)))
            .collect();
        for segment in object.chunks(segment_size) {
            for (archive, fragment) in archives.iter_mut().zip(self.encode(segment)?) {
                archive.extend_from_slice(&fragment);
            }
        }
        Ok(archives)
    }
}

/// Splits a fragment archive into its fragments by reading each header's
/// payload size. Stops with an error at a header that does not parse or a
/// fragment cut short.
pub fn split_archive(archive: &[u8]) -> Result<Vec<&[u8]>, EcError> {
    let mut fragments = Vec::new();
    let mut rest = archive;
    while !rest.is_empty() {
        let position = fragments.len();
        let header = FragmentHeader::parse(rest, position)?;
        let len = HEADER_SIZE as u64
            + u64::from(header.payload_size)
            + u64::from(header.backend_metadata_size);
        let Some(len) = usize::try_from(len).ok().filter(|&l| l <= rest.len()) else {
            return Err(EcError::MalformedFragment {
                position,
                reason: "archive ends inside this fragment",
            });
        };
        let (fragment, tail) = rest.split_at(len);
        fragments.push(fragment);
        rest = tail;
    }
    Ok(fragments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::EcType;

    #[test]
    fn segment_info_matches_pyeclib_samples() {
        // Values printed by pyeclib 1.8.0 for a 4+2 scheme.
        let s = EcScheme::new(EcType::LiberasurecodeRsVand, 4, 2).unwrap();
        assert_eq!(
            s.segment_info(10000, 4096).unwrap(),
            SegmentInfo {
                segment_size: 4096,
                last_segment_size: 1808,
                fragment_size: 1104,
                last_fragment_size: 532,
                num_segments: 3
            }
        );
        assert_eq!(
            s.segment_info(1000, 4096).unwrap(),
            SegmentInfo {
                segment_size: 1000,
                last_segment_size: 1000,
                fragment_size: 330,
                last_fragment_size: 330,
                num_segments: 1
            }
        );
        assert_eq!(s.segment_info(1, 0), Err(EcError::ZeroSegmentSize));
    }

    #[test]
    fn archives_have_the_size_swift_expects_and_split_back() {
        let s = EcScheme::new(EcType::IsaLRsVand, 4, 2).unwrap();
        let object: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let archives = s.encode_archives(&object, 4096).unwrap();
        let expected = s.fragment_archive_size(10_000, 4096).unwrap();
        assert_eq!(expected, 2 * 1104 + 80 + 452);
        for archive in &archives {
            assert_eq!(archive.len() as u64, expected);
        }
        let by_segment: Vec<Vec<&[u8]>> =
            archives.iter().map(|a| split_archive(a).unwrap()).collect();
        let mut decoded = Vec::new();
        for seg in 0..3 {
            let frags: Vec<&[u8]> = by_segment[1..].iter().map(|f| f[seg]).collect();
            decoded.extend(s.decode(&frags).unwrap());
        }
        assert_eq!(decoded, object);
        assert_eq!(s.fragment_archive_size(0, 4096).unwrap(), 0);
        assert!(s
            .encode_archives(&[], 4096)
            .unwrap()
            .iter()
            .all(Vec::is_empty));
        assert!(split_archive(&archives[0][..archives[0].len() - 1]).is_err());
    }
}
