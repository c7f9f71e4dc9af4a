//! A streaming reader of tar archives (ustar, GNU long names, pax
//! headers), optionally gzip- or bzip2-compressed, for bulk extraction:
//! bytes go in as they arrive, and out come the archive's entries and
//! their contents, a piece at a time. Nothing is held beyond one header
//! block and what the caller has not taken yet, so an archive of any size
//! streams in bounded memory. Pure: no I/O.

use std::io::Write;

use bytes::{Buf, Bytes, BytesMut};

const BLOCK: usize = 512;
/// The longest name or pax header block read into memory.
const MAX_META: u64 = 1024 * 1024;

/// Why an archive cannot be read (Swift answers `Invalid Tar File: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarError(pub String);

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the reader found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A regular file starts: its name (raw bytes), length, and the pax
    /// records that came with it.
    File {
        path: Vec<u8>,
        size: u64,
        pax: Vec<(String, String)>,
    },
    /// Some of the current file's bytes.
    Data(Bytes),
    /// The current file is complete.
    FileEnd,
    /// The end of the archive.
    End,
}

#[derive(Debug)]
enum State {
    Header,
    /// Skipping `left` bytes (an entry that is not a regular file, or
    /// padding).
    Skip {
        left: u64,
    },
    /// Reading `left` bytes of a long name or pax block into `meta`.
    Meta {
        kind: u8,
        left: u64,
        pad: u64,
    },
    /// Passing `left` bytes of file content, then `pad` bytes.
    Content {
        left: u64,
        pad: u64,
    },
    Done,
}

/// The push-driven tar reader.
#[derive(Debug)]
pub struct TarReader {
    buf: BytesMut,
    state: State,
    meta: Vec<u8>,
    long_name: Option<Vec<u8>>,
    pax: Vec<(String, String)>,
    global_pax: Vec<(String, String)>,
    finished_input: bool,
}

impl Default for TarReader {
    fn default() -> Self {
        Self::new()
    }
}

fn octal(field: &[u8]) -> Result<u64, TarError> {
    // GNU base-256 for large values.
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            let mut v: u64 = u64::from(first & 0x7f);
            for &b in &field[1..] {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or_else(|| TarError("size out of range".into()))?;
            }
            return Ok(v);
        }
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .filter(|b| *b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    let mut v: u64 = 0;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return Err(TarError("invalid header".into()));
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| TarError("size out of range".into()))?;
    }
    Ok(v)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The records of a pax extended header: `<len> <key>=<value>\n`.
fn parse_pax(data: &[u8]) -> Result<Vec<(String, String)>, TarError> {
    let bad = || TarError("invalid pax header".into());
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let space = rest.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|b| *b == b'=').ok_or_else(bad)?;
        out.push((
            String::from_utf8_lossy(&record[..eq]).into_owned(),
            String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
        ));
        rest = &rest[len..];
    }
    Ok(out)
}

impl TarReader {
    pub fn new() -> Self {
        TarReader {
            buf: BytesMut::new(),
            state: State::Header,
            meta: Vec::new(),
            long_name: None,
            pax: Vec::new(),
            global_pax: Vec::new(),
            finished_input: false,
        }
    }

    /// Adds bytes of the (uncompressed) archive.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Says no more bytes will come.
    pub fn finish(&mut self) {
        self.finished_input = true;
    }

    /// The next event, `Ok(None)` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, TarError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(Some(Event::End)),
                State::Skip { left } => {
                    let n = (*left).min(self.buf.len() as u64);
                    self.buf.advance(n as usize);
                    *left -= n;
                    if *left > 0 {
                        return self.need_more();
                    }
                    self.state = State::Header;
                }
                State::Content { left, pad } => {
                    if *left == 0 {
                        let pad = *pad;
                        self.state = State::Skip { left: pad };
                        return Ok(Some(Event::FileEnd));
                    }
                    if self.buf.is_empty() {
                        return self.need_more();
                    }
                    let n = (*left).min(self.buf.len() as u64) as usize;
                    *left -= n as u64;
                    return Ok(Some(Event::Data(self.buf.split_to(n).freeze())));
                }
                State::Meta { kind, left, pad } => {
                    let n = (*left).min(self.buf.len() as u64) as usize;
                    self.meta.extend_from_slice(&self.buf.split_to(n));
                    *left -= n as u64;
                    if *left > 0 {
                        return self.need_more();
                    }
                    let (kind, pad) = (*kind, *pad);
                    let meta = std::mem::take(&mut self.meta);
                    match kind {
                        b'L' => self.long_name = Some(cstr(&meta).to_vec()),
                        b'x' => self.pax = parse_pax(&meta)?,
                        _ => self.global_pax = parse_pax(&meta)?,
                    }
                    self.state = State::Skip { left: pad };
                }
                State::Header => {
                    if self.buf.is_empty() && self.finished_input {
                        // No end marker, but nothing cut short either.
                        self.state = State::Done;
                        continue;
                    }
                    if self.buf.len() < BLOCK {
                        return self.need_more();
                    }
                    let block = self.buf.split_to(BLOCK);
                    if block.iter().all(|b| *b == 0) {
                        // The end-of-archive marker; what follows is padding.
                        self.state = State::Done;
                        continue;
                    }
                    let stored: u64 = octal(&block[148..156])?;
                    let sum: u64 = block
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            if (148..156).contains(&i) {
                                32
                            } else {
                                u64::from(*b)
                            }
                        })
                        .sum();
                    if stored != sum {
                        return Err(TarError("bad checksum".into()));
                    }
                    let size = octal(&block[124..136])?;
                    let kind = block[156];
                    let pad = padding(size);
                    match kind {
                        b'L' | b'x' | b'g' => {
                            if size > MAX_META {
                                return Err(TarError("header block too large".into()));
                            }
                            self.state = State::Meta {
                                kind,
                                left: size,
                                pad,
                            };
                        }
                        b'0' | 0 | b'7' => {
                            let ustar = &block[257..262] == b"ustar";
                            let mut path = match self.long_name.take() {
                                Some(n) => n,
                                None if ustar && block[345] != 0 => {
                                    let mut p = cstr(&block[345..500]).to_vec();
                                    p.push(b'/');
                                    p.extend_from_slice(cstr(&block[..100]));
                                    p
                                }
                                None => cstr(&block[..100]).to_vec(),
                            };
                            let mut pax = self.global_pax.clone();
                            for (k, v) in std::mem::take(&mut self.pax) {
                                if k == "path" {
                                    path = v.clone().into_bytes();
                                }
                                pax.retain(|(key, _)| *key != k);
                                pax.push((k, v));
                            }
                            let size = pax
                                .iter()
                                .find(|(k, _)| k == "size")
                                .and_then(|(_, v)| v.parse().ok())
                                .unwrap_or(size);
                            self.state = State::Content {
                                left: size,
                                pad: padding(size),
                            };
                            return Ok(Some(Event::File { path, size, pax }));
                        }
                        _ => {
                            // Directories, links, devices: nothing to store.
                            self.long_name = None;
                            self.pax.clear();
                            self.state = State::Skip {
                                left: size.saturating_add(pad),
                            };
                        }
                    }
                }
            }
        }
    }

    fn need_more(&self) -> Result<Option<Event>, TarError> {
        if self.finished_input {
            return Err(TarError("unexpected end of data".into()));
        }
        Ok(None)
    }
}

/// Undoes the archive's compression as bytes arrive.
pub enum Decoder {
    Plain,
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Bzip2(Box<bzip2::write::BzDecoder<Vec<u8>>>),
}

/// Input is fed in slices this long, so that one call never inflates to
/// more than about a megabyte (deflate expands at most ~1,032 times).
const FEED: usize = 1024;

impl Decoder {
    /// `""`, `"gz"` or `"bz2"`, as Swift names them.
    pub fn new(kind: &str) -> Option<Self> {
        match kind {
            "" => Some(Decoder::Plain),
            "gz" => Some(Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(
                Vec::new(),
            )))),
            "bz2" => Some(Decoder::Bzip2(Box::new(bzip2::write::BzDecoder::new(
                Vec::new(),
            )))),
            _ => None,
        }
    }

    /// Decodes a piece of the input, handing each piece of output to `out`.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut dyn FnMut(&[u8]) -> Result<(), TarError>,
    ) -> Result<(), TarError> {
        let err = |e: std::io::Error| TarError(format!("{e}"));
        match self {
            Decoder::Plain => out(input),
            Decoder::Gzip(d) => {
                for piece in input.chunks(FEED) {
                    d.write_all(piece).map_err(err)?;
                    let produced = std::mem::take(d.get_mut());
                    out(&produced)?;
                }
                Ok(())
            }
            Decoder::Bzip2(d) => {
                for piece in input.chunks(FEED) {
                    d.write_all(piece).map_err(err)?;
                    let produced = std::mem::take(d.get_mut());
                    out(&produced)?;
                }
                Ok(())
            }
        }
    }

    /// The end of the input: what the decoder still held.
    pub fn finish(
        &mut self,
        out: &mut dyn FnMut(&[u8]) -> Result<(), TarError>,
    ) -> Result<(), TarError> {
        let err = |e: std::io::Error| TarError(format!("{e}"));
        match self {
            Decoder::Plain => Ok(()),
            Decoder::Gzip(d) => {
                d.try_finish().map_err(err)?;
                let produced = std::mem::take(d.get_mut());
                out(&produced)
            }
            Decoder::Bzip2(d) => {
                d.try_finish().map_err(err)?;
                let produced = std::mem::take(d.get_mut());
                out(&produced)
            }
        }
    }
}

/// Swift's `pax_key_to_swift_header`: extended attributes that become
/// object headers.
pub fn pax_key_to_header(key: &str) -> Option<String> {
    if key == "SCHILY.xattr.user.mime_type" || key == "LIBARCHIVE.xattr.user.mime_type" {
        return Some("Content-Type".into());
    }
    for prefix in ["SCHILY.xattr.user.meta.", "LIBARCHIVE.xattr.user.meta."] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return Some(format!("X-Object-Meta-{rest}"));
        }
    }
    None
}

/// Reads a whole archive held in memory (for tests and fuzzing): its
/// files' paths, contents and pax records.
#[allow(clippy::type_complexity)]
pub fn read_all(data: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>, Vec<(String, String)>)>, TarError> {
    let mut reader = TarReader::new();
    reader.push(data);
    reader.finish();
    let mut files = Vec::new();
    loop {
        match reader.next_event()? {
            None => return Err(TarError("stalled".into())),
            Some(Event::File { path, size, pax }) => {
                let cap = usize::try_from(size.min(1 << 20)).unwrap_or(0);
                files.push((path, Vec::with_capacity(cap), pax));
            }
            Some(Event::Data(d)) => {
                if let Some(f) = files.last_mut() {
                    f.1.extend_from_slice(&d);
                }
            }
            Some(Event::FileEnd) => {}
            Some(Event::End) => return Ok(files),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header for `name` of `size` bytes of type `kind`.
    pub(crate) fn header(name: &[u8], size: u64, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name);
        h[100..107].copy_from_slice(b"0000644");
        let size_field = format!("{size:011o}");
        h[124..135].copy_from_slice(size_field.as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    pub(crate) fn entry(name: &[u8], body: &[u8], kind: u8) -> Vec<u8> {
        let mut v = header(name, body.len() as u64, kind);
        v.extend_from_slice(body);
        v.resize(v.len() + padding(body.len() as u64) as usize, 0);
        v
    }

    #[test]
    fn files_long_names_pax_and_directories() {
        let mut archive = Vec::new();
        archive.extend(entry(b"dir/", b"", b'5'));
        archive.extend(entry(b"dir/a.txt", b"hello", b'0'));
        let long = vec![b'n'; 150];
        archive.extend(entry(
            b"././@LongLink",
            &[long.as_slice(), b"\0"].concat(),
            b'L',
        ));
        archive.extend(entry(b"short", b"long-named", b'0'));
        let record = b"30 SCHILY.xattr.user.meta.k=v\n";
        archive.extend(entry(b"pax", record, b'x'));
        archive.extend(entry(b"c/meta", b"m", b'0'));
        archive.extend(vec![0u8; 1024]);
        let files = read_all(&archive).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].0, b"dir/a.txt");
        assert_eq!(files[0].1, b"hello");
        assert_eq!(files[1].0, long);
        assert_eq!(
            files[2].2,
            vec![("SCHILY.xattr.user.meta.k".to_string(), "v".to_string())]
        );
        assert_eq!(
            pax_key_to_header(&files[2].2[0].0).as_deref(),
            Some("X-Object-Meta-k")
        );
    }

    #[test]
    fn archives_pythons_tarfile_writes() {
        // The fuzz seeds: a byte for the fuzzer, then Python's pax and GNU
        // archives.
        let pax = include_bytes!("../../../fuzz/seeds/tar/pax");
        let files = read_all(&pax[1..]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| String::from_utf8_lossy(&f.0).into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "c/a.txt".to_string(),
                format!("c/{}", "n".repeat(150)),
                "d/e".to_string()
            ]
        );
        assert_eq!(files[2].1, vec![b'x'; 600]);
        assert!(files[2]
            .2
            .contains(&("SCHILY.xattr.user.meta.k".to_string(), "v".to_string())));
        let gnu = include_bytes!("../../../fuzz/seeds/tar/gnu");
        let files = read_all(&gnu[1..]).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, format!("g/{}", "x".repeat(200)).into_bytes());
        assert_eq!(files[0].1, b"abc");
    }

    #[test]
    fn truncated_and_corrupt_archives_are_errors() {
        let mut archive = entry(b"a/b", b"0123456789", b'0');
        archive.truncate(BLOCK + 5);
        assert!(read_all(&archive).is_err());
        let mut bad = entry(b"a/b", b"x", b'0');
        bad[0] = b'z';
        assert_eq!(read_all(&bad), Err(TarError("bad checksum".into())));
    }

    #[test]
    fn byte_by_byte_is_the_same_as_all_at_once() {
        let mut archive = entry(b"c/one", &[7u8; 700], b'0');
        archive.extend(entry(b"c/two", b"2", b'0'));
        archive.extend(vec![0u8; 1024]);
        let mut reader = TarReader::new();
        let mut got = Vec::new();
        for b in &archive {
            reader.push(&[*b]);
            while let Some(e) = reader.next_event().unwrap() {
                match e {
                    Event::File { path, .. } => got.push((path, Vec::new())),
                    Event::Data(d) => got.last_mut().unwrap().1.extend_from_slice(&d),
                    Event::FileEnd => {}
                    Event::End => break,
                }
                if matches!(reader.state, State::Done) {
                    break;
                }
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, vec![7u8; 700]);
        assert_eq!(got[1].1, b"2");
    }

    #[test]
    fn gzip_and_bzip2_decode_in_pieces() {
        let archive = [entry(b"c/x", b"compressed", b'0'), vec![0u8; 1024]].concat();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&archive).unwrap();
        let gz = gz.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&archive).unwrap();
        let bz = bz.finish().unwrap();
        for (kind, data) in [("gz", gz), ("bz2", bz)] {
            let mut d = Decoder::new(kind).unwrap();
            let mut plain = Vec::new();
            for piece in data.chunks(7) {
                d.feed(piece, &mut |b| {
                    plain.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
            }
            d.finish(&mut |b| {
                plain.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            assert_eq!(plain, archive, "{kind}");
        }
        assert!(Decoder::new("zip").is_none());
    }
}
