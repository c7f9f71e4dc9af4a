//! A push-driven reader of `multipart/form-data` bodies, reading them as
//! Swift's formpost does (`iter_multipart_mime_documents` and
//! `parse_mime_headers`), without ever holding a whole part in memory.
//!
//! The caller feeds byte chunks as they arrive ([`MultipartReader::feed`],
//! then [`MultipartReader::finish`] at the end of the input) and takes
//! [`Event`]s until [`MultipartReader::next_event`] says it needs more
//! input. What the reader keeps between chunks is bounded: the unread rest
//! of the last chunk, at most one part's header block
//! ([`MAX_HEADER_BLOCK`]) and the few bytes that could begin a delimiter.
//!
//! How Swift reads a form, and so how this reader does:
//! - blank lines (`\r\n`) before the first boundary line are skipped; the
//!   first other line, cut at the boundary line's length and stripped of
//!   whitespace, must be `--<boundary>`;
//! - a part runs until the next `\r\n--<boundary>`; the two bytes after a
//!   delimiter are `--` at the end of the form and are otherwise skipped
//!   (they are the line end); the end of the input also ends the form;
//! - a part's header block ends at its first empty line, or where the part
//!   ends; its lines are `Name: value` with folded continuation lines, and
//!   the first line that is neither ends the headers (the rest of the
//!   block is ignored).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;

/// The longest boundary accepted. RFC 2046 allows 70 characters; this is
/// generous, and keeps what is held back between chunks small.
pub const MAX_BOUNDARY_LENGTH: usize = 1024;

/// The largest header block of one part. Browsers send a few hundred
/// bytes; a longer block is refused rather than buffered.
pub const MAX_HEADER_BLOCK: usize = 16 * 1024;

/// What the reader found next in the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins, with its headers; its body follows as `Data`.
    PartStart(PartHeaders),
    /// Bytes of the current part's body, in order.
    Data(Bytes),
    /// The current part is complete.
    PartEnd,
    /// The form is over: nothing more comes, whatever is fed.
    End,
}

/// Why a form cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// The boundary is empty of meaning for this reader (too long).
    BoundaryTooLong,
    /// The body does not begin with the boundary line.
    InvalidStart,
    /// A part's header block exceeds [`MAX_HEADER_BLOCK`].
    HeadersTooLong,
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MultipartError::BoundaryTooLong => "boundary too long",
            MultipartError::InvalidStart => "invalid starting boundary",
            MultipartError::HeadersTooLong => "part headers too long",
        })
    }
}

impl std::error::Error for MultipartError {}

/// A part's headers in the order given; lookups ignore case and take the
/// first of a repeated name, as Swift's header dictionary does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    fields: Vec<(String, String)>,
}

impl PartHeaders {
    /// The value of the first header called `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// Reads a header block as Python's email parser does for Swift:
    /// each line is UTF-8, or Latin-1 when it is not valid UTF-8.
    pub fn parse(block: &[u8]) -> PartHeaders {
        let mut fields: Vec<(String, String)> = Vec::new();
        for raw in lines(block) {
            let line = match std::str::from_utf8(raw) {
                Ok(s) => s.to_string(),
                Err(_) => raw.iter().map(|b| char::from(*b)).collect(),
            };
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                // A folded line continues the header before it (and is
                // dropped when there is none).
                if let Some((_, value)) = fields.last_mut() {
                    value.push_str(&line);
                }
                continue;
            }
            if line.starts_with("From ") {
                continue;
            }
            let Some(colon) = line.find(':') else {
                break;
            };
            let name = &line[..colon];
            if !name.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                // Not a header line: the headers end here.
                break;
            }
            if name.is_empty() {
                continue;
            }
            let value = line[colon + 1..].trim_start_matches([' ', '\t']);
            fields.push((name.to_string(), value.to_string()));
        }
        PartHeaders { fields }
    }
}

/// The lines of `block`, split at `\r\n`, `\n` or `\r` as the email
/// parser splits them, without their ends.
fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = block;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i..].starts_with(b"\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = &[];
                Some(line)
            }
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening boundary line.
    Start,
    /// In a part's header block; `scanned` bytes of the buffer are whole
    /// header lines already looked at.
    Headers { scanned: usize },
    /// In a part's body.
    Body,
    /// Just after a delimiter: `--` ends the form.
    AfterDelimiter,
    /// The form is over.
    Done,
}

/// The reader; see the module documentation.
pub struct MultipartReader {
    /// `--<boundary>`, what the opening line must hold.
    opening: Vec<u8>,
    /// `\r\n--<boundary>`, what separates parts.
    delimiter: Vec<u8>,
    finder: Finder<'static>,
    buf: BytesMut,
    state: State,
    ended_input: bool,
    pending: VecDeque<Event>,
}

impl std::fmt::Debug for MultipartReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartReader")
            .field("state", &self.state)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

/// Python's `bytes.strip()` whitespace.
fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn py_strip(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_py_space(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_py_space(*last) {
            break;
        }
        s = rest;
    }
    s
}

impl MultipartReader {
    /// A reader for parts separated by `boundary` (the `boundary`
    /// parameter of the request's content type).
    pub fn new(boundary: &[u8]) -> Result<Self, MultipartError> {
        if boundary.len() > MAX_BOUNDARY_LENGTH {
            return Err(MultipartError::BoundaryTooLong);
        }
        let mut opening = b"--".to_vec();
        opening.extend_from_slice(boundary);
        let mut delimiter = b"\r\n".to_vec();
        delimiter.extend_from_slice(&opening);
        let finder = Finder::new(&delimiter).into_owned();
        Ok(MultipartReader {
            opening,
            delimiter,
            finder,
            buf: BytesMut::new(),
            state: State::Start,
            ended_input: false,
            pending: VecDeque::new(),
        })
    }

    /// Adds the next bytes of the form. Feed only when
    /// [`next_event`](Self::next_event) has answered `Ok(None)`, so that
    /// what is buffered stays one chunk and a small remainder.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.state != State::Done && !self.ended_input {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Says the input is over.
    pub fn finish(&mut self) {
        self.ended_input = true;
    }

    /// Whether the form has ended (an [`Event::End`] was or is about to
    /// be given).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How many bytes are held, for callers checking the bound.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next event, `Ok(None)` when more input is needed, or why the
    /// form cannot be read (the reader is then of no further use).
    pub fn next_event(&mut self) -> Result<Option<Event>, MultipartError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            let progressed = match self.state {
                State::Start => self.read_opening()?,
                State::Headers { scanned } => self.read_headers(scanned)?,
                State::Body => self.read_body(),
                State::AfterDelimiter => self.read_after_delimiter(),
                State::Done => {
                    self.buf.clear();
                    return Ok(None);
                }
            };
            if !progressed && self.pending.is_empty() {
                return Ok(None);
            }
        }
    }

    /// Skips blank lines, then checks the boundary line (Swift reads it
    /// with `readline(len(boundary line))`).
    fn read_opening(&mut self) -> Result<bool, MultipartError> {
        let limit = self.opening.len() + 2;
        let window = &self.buf[..self.buf.len().min(limit)];
        let line_len = match memchr::memchr(b'\n', window) {
            Some(i) => i + 1,
            None if self.buf.len() >= limit => limit,
            None if self.ended_input => self.buf.len(),
            None => return Ok(false),
        };
        let line = self.buf.split_to(line_len);
        if &line[..] == b"\r\n" {
            return Ok(true);
        }
        if py_strip(&line) != self.opening.as_slice() {
            return Err(MultipartError::InvalidStart);
        }
        self.state = State::Headers { scanned: 0 };
        Ok(true)
    }

    /// Looks for the end of the header block from `scanned` on.
    fn read_headers(&mut self, mut scanned: usize) -> Result<bool, MultipartError> {
        loop {
            let rest = &self.buf[scanned..];
            let Some(at) = memchr::memmem::find(rest, b"\r\n") else {
                if self.ended_input {
                    // The input ends inside the headers: so does the part,
                    // and the form.
                    let block = self.buf.split_to(self.buf.len());
                    self.pending
                        .push_back(Event::PartStart(PartHeaders::parse(&block)));
                    self.pending.push_back(Event::PartEnd);
                    self.pending.push_back(Event::End);
                    self.state = State::Done;
                    return Ok(true);
                }
                if self.buf.len() > MAX_HEADER_BLOCK {
                    return Err(MultipartError::HeadersTooLong);
                }
                self.state = State::Headers { scanned };
                return Ok(false);
            };
            let line_end = scanned + at;
            if line_end > MAX_HEADER_BLOCK {
                return Err(MultipartError::HeadersTooLong);
            }
            let after = &self.buf[line_end..];
            if after.len() < self.delimiter.len()
                && self.delimiter.starts_with(after)
                && !self.ended_input
            {
                // Maybe a delimiter, maybe a line end: wait and see.
                self.state = State::Headers { scanned };
                return Ok(false);
            }
            if after.starts_with(&self.delimiter) {
                // The part ends inside its headers: what came is its
                // header block and it has no body.
                let block = self.buf.split_to(line_end);
                let _ = self.buf.split_to(self.delimiter.len());
                self.pending
                    .push_back(Event::PartStart(PartHeaders::parse(&block)));
                self.pending.push_back(Event::PartEnd);
                self.state = State::AfterDelimiter;
                return Ok(true);
            }
            if at == 0 {
                // The empty line: the body starts after it.
                let block = self.buf.split_to(line_end);
                let _ = self.buf.split_to(2);
                self.pending
                    .push_back(Event::PartStart(PartHeaders::parse(&block)));
                self.state = State::Body;
                return Ok(true);
            }
            scanned = line_end + 2;
        }
    }

    /// Hands out the body up to the next delimiter, holding back only
    /// what could be the start of one.
    fn read_body(&mut self) -> bool {
        match self.finder.find(&self.buf) {
            Some(0) => {
                let _ = self.buf.split_to(self.delimiter.len());
                self.pending.push_back(Event::PartEnd);
                self.state = State::AfterDelimiter;
                true
            }
            Some(at) => {
                let data = self.buf.split_to(at).freeze();
                self.pending.push_back(Event::Data(data));
                true
            }
            None if self.ended_input => {
                if !self.buf.is_empty() {
                    let data = self.buf.split_to(self.buf.len()).freeze();
                    self.pending.push_back(Event::Data(data));
                }
                self.pending.push_back(Event::PartEnd);
                self.pending.push_back(Event::End);
                self.state = State::Done;
                true
            }
            None => {
                let keep = self.delimiter.len() - 1;
                let safe = self.buf.len().saturating_sub(keep);
                if safe == 0 {
                    return false;
                }
                let data = self.buf.split_to(safe).freeze();
                self.pending.push_back(Event::Data(data));
                true
            }
        }
    }

    /// `--` after a delimiter closes the form; any other two bytes are
    /// the end of the delimiter's line and a new part follows.
    fn read_after_delimiter(&mut self) -> bool {
        if self.buf.len() < 2 && !self.ended_input {
            return false;
        }
        if self.buf.starts_with(b"--") {
            self.buf.clear();
            self.pending.push_back(Event::End);
            self.state = State::Done;
            return true;
        }
        let skip = self.buf.len().min(2);
        let _ = self.buf.split_to(skip);
        self.state = State::Headers { scanned: 0 };
        true
    }
}

/// Swift's `parse_content_disposition` (also used for `Content-Type`):
/// the value before the first `;`, and its `name=value` attributes (a
/// later one of the same name wins), quotes stripped.
pub fn parse_disposition(header: &str) -> (String, Vec<(String, String)>) {
    let (value, mut attrs) = match header.split_once(';') {
        Some((v, a)) => (v.trim().to_string(), a.trim()),
        None => (header.to_string(), ""),
    };
    let mut out: Vec<(String, String)> = Vec::new();
    while let Some((name, raw, used)) = match_attribute(attrs) {
        let stripped = raw.trim_matches('"').to_string();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = stripped,
            None => out.push((name.to_string(), stripped)),
        }
        attrs = &attrs[used..];
        if used == 0 {
            break;
        }
    }
    (value, out)
}

/// The attribute at the start of `s` as Swift's pattern
/// `(\w+)=(".*?"|[^";]+)(; ?|$)` finds it: (name, raw value, length
/// matched).
fn match_attribute(s: &str) -> Option<(&str, &str, usize)> {
    let name_len: usize = s
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i);
    if name_len == 0 || !s[name_len..].starts_with('=') {
        return None;
    }
    let name = &s[..name_len];
    let value_at = name_len + 1;
    let rest = &s[value_at..];
    // What follows a value: `;` with an optional space, or the end.
    let separator = |after: &str| -> Option<usize> {
        if let Some(more) = after.strip_prefix(';') {
            return Some(if more.starts_with(' ') { 2 } else { 1 });
        }
        if after.is_empty() || after == "\n" {
            return Some(0);
        }
        None
    };
    if rest.starts_with('"') {
        // The shortest quoted value followed by a separator.
        for (i, c) in rest.char_indices().skip(1) {
            if c == '\n' {
                break;
            }
            if c == '"' {
                let end = i + 1;
                if let Some(sep) = separator(&rest[end..]) {
                    return Some((name, &rest[..end], value_at + end + sep));
                }
            }
        }
        return None;
    }
    let run = rest.find(['"', ';']).unwrap_or(rest.len());
    if run == 0 {
        return None;
    }
    let sep = separator(&rest[run..])?;
    Some((name, &rest[..run], value_at + run + sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes and collects the events,
    /// joining consecutive data.
    fn read_all(boundary: &str, input: &[u8], step: usize) -> Result<Vec<Event>, MultipartError> {
        let mut r = MultipartReader::new(boundary.as_bytes())?;
        let mut out: Vec<Event> = Vec::new();
        let push = |e: Event, out: &mut Vec<Event>| match (out.last_mut(), e) {
            (Some(Event::Data(prev)), Event::Data(more)) => {
                let mut joined = prev.to_vec();
                joined.extend_from_slice(&more);
                *prev = Bytes::from(joined);
            }
            (_, e) => out.push(e),
        };
        for piece in input.chunks(step.max(1)) {
            r.feed(piece);
            while let Some(e) = r.next_event()? {
                push(e, &mut out);
            }
            assert!(r.buffered() <= step + MAX_HEADER_BLOCK + boundary.len() + 4);
        }
        r.finish();
        while let Some(e) = r.next_event()? {
            push(e, &mut out);
        }
        Ok(out)
    }

    fn form() -> Vec<u8> {
        b"--XyZ\r\nContent-Disposition: form-data; name=\"redirect\"\r\n\r\nhttp://x\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file1\"; filename=\"a.txt\"\r\n\
Content-Type: text/plain\r\n\r\nline one\r\nline two\r\n--XyZ--\r\nepilogue"
            .to_vec()
    }

    fn start(cd: &str) -> Event {
        Event::PartStart(PartHeaders {
            fields: vec![("Content-Disposition".into(), cd.into())],
        })
    }

    #[test]
    fn a_form_reads_the_same_whatever_the_chunking() {
        let expected = vec![
            start("form-data; name=\"redirect\""),
            Event::Data(Bytes::from_static(b"http://x")),
            Event::PartEnd,
            Event::PartStart(PartHeaders {
                fields: vec![
                    (
                        "Content-Disposition".into(),
                        "form-data; name=\"file1\"; filename=\"a.txt\"".into(),
                    ),
                    ("Content-Type".into(), "text/plain".into()),
                ],
            }),
            Event::Data(Bytes::from_static(b"line one\r\nline two")),
            Event::PartEnd,
            Event::End,
        ];
        for step in [1, 2, 3, 7, 64, 10_000] {
            assert_eq!(read_all("XyZ", &form(), step).unwrap(), expected, "{step}");
        }
    }

    #[test]
    fn the_opening_line_is_checked_as_swift_does() {
        // Blank lines first are fine; anything else is not.
        let mut body = b"\r\n\r\n".to_vec();
        body.extend(form());
        assert_eq!(read_all("XyZ", &body, 5).unwrap().len(), 7);
        let mut bad = b"XX".to_vec();
        bad.extend(form());
        assert_eq!(read_all("XyZ", &bad, 5), Err(MultipartError::InvalidStart));
        assert_eq!(read_all("XyZ", b"", 5), Err(MultipartError::InvalidStart));
        assert_eq!(
            read_all("XyZ", b"--XyZ--\r\n", 5),
            Err(MultipartError::InvalidStart)
        );
        assert_eq!(
            MultipartReader::new(&[b'a'; MAX_BOUNDARY_LENGTH + 1]).err(),
            Some(MultipartError::BoundaryTooLong)
        );
    }

    #[test]
    fn the_input_ending_ends_the_part_and_the_form() {
        let events = read_all(
            "b",
            b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nabc",
            2,
        )
        .unwrap();
        assert_eq!(
            events,
            vec![
                start("form-data; name=\"x\""),
                Event::Data(Bytes::from_static(b"abc")),
                Event::PartEnd,
                Event::End
            ]
        );
        // A delimiter without `--`: an empty part follows.
        let events = read_all("b", b"--b\r\n\r\nv\r\n--b\r\n", 3).unwrap();
        assert_eq!(
            events,
            vec![
                Event::PartStart(PartHeaders::default()),
                Event::Data(Bytes::from_static(b"v")),
                Event::PartEnd,
                Event::PartStart(PartHeaders::default()),
                Event::PartEnd,
                Event::End
            ]
        );
    }

    #[test]
    fn a_part_may_end_inside_its_headers() {
        let events = read_all(
            "b",
            b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n--b--",
            4,
        )
        .unwrap();
        assert_eq!(
            events,
            vec![start("form-data; name=\"x\""), Event::PartEnd, Event::End]
        );
    }

    #[test]
    fn near_delimiters_are_data() {
        let body = b"--b\r\n\r\n\r\n--c\r\n-b\r\n--\r\n--b--";
        let events = read_all("b", body, 1).unwrap();
        assert_eq!(
            events[1],
            Event::Data(Bytes::from_static(b"\r\n--c\r\n-b\r\n--"))
        );
    }

    #[test]
    fn header_blocks_are_bounded() {
        let mut body = b"--b\r\nX-Long: ".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_HEADER_BLOCK + 10));
        body.extend(b"\r\n\r\ndata\r\n--b--");
        assert_eq!(
            read_all("b", &body, 100),
            Err(MultipartError::HeadersTooLong)
        );
        // Many short lines count as much as one long one.
        let mut body = b"--b\r\n".to_vec();
        for _ in 0..MAX_HEADER_BLOCK / 6 {
            body.extend(b"A: bc\r\n");
        }
        body.extend(b"\r\ndata\r\n--b--");
        assert_eq!(
            read_all("b", &body, 100),
            Err(MultipartError::HeadersTooLong)
        );
    }

    #[test]
    fn headers_read_as_the_email_parser_reads_them() {
        let h = PartHeaders::parse(
            b"Content-Type:  text/plain \r\n X-Folded\r\ncontent-type: second\r\n:odd\r\nno colon here\r\nAfter: ignored",
        );
        assert_eq!(h.get("CONTENT-TYPE"), Some("text/plain  X-Folded"));
        assert_eq!(h.fields().len(), 2);
        assert_eq!(h.get("after"), None);
        // Not UTF-8: Latin-1.
        let h = PartHeaders::parse(b"Name: caf\xe9");
        assert_eq!(h.get("name"), Some("caf\u{e9}"));
    }

    #[test]
    fn dispositions_parse_as_swifts_pattern() {
        let (v, a) = parse_disposition("form-data; name=\"file1\"; filename=\"a b.txt\"");
        assert_eq!(v, "form-data");
        assert_eq!(
            a,
            vec![
                ("name".to_string(), "file1".to_string()),
                ("filename".to_string(), "a b.txt".to_string())
            ]
        );
        let (v, a) = parse_disposition("multipart/form-data; boundary=----abc");
        assert_eq!(v, "multipart/form-data");
        assert_eq!(a, vec![("boundary".to_string(), "----abc".to_string())]);
        // A quoted value runs to a quote followed by `;` or the end.
        let (_, a) = parse_disposition("x; filename=\"a\"b\"; name=n");
        assert_eq!(a[0], ("filename".to_string(), "a\"b".to_string()));
        assert_eq!(a[1], ("name".to_string(), "n".to_string()));
        // Reading stops at the first attribute that does not fit.
        let (_, a) = parse_disposition("x; a=1; =2; b=3");
        assert_eq!(a, vec![("a".to_string(), "1".to_string())]);
        let (_, a) = parse_disposition("x; a=1;b=2;a=3");
        assert_eq!(
            a,
            vec![
                ("a".to_string(), "3".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
        let (v, a) = parse_disposition(" form-data ");
        assert_eq!(v, " form-data ");
        assert!(a.is_empty());
        let (_, a) = parse_disposition("x; filename=\"\"");
        assert_eq!(a, vec![("filename".to_string(), String::new())]);
    }
}
