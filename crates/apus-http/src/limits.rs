//! The limits Swift's servers put on a request's head, checked on what
//! hyper parsed before any handler sees the request.
//!
//! Swift serves HTTP with eventlet's WSGI server, configured from its
//! constraints (`swift/common/wsgi.py`), which refuses:
//! - a request line of 8,192 bytes or more, its CRLF included
//!   (`url_length_limit = MAX_REQUEST_LINE`): `414 Request URI Too Long`;
//! - a header line of 8,192 bytes or more (`MAX_HEADER_LINE`, which Swift
//!   sets to `max_header_size`): `400 Header Line Too Long`;
//! - header lines of more than 65,536 bytes in all, the empty line that
//!   ends them included (`MAX_TOTAL_HEADER_SIZE`): `400 Headers Too Large`;
//! - more than 200 header fields: `431 Too many headers`. Python's
//!   `http.client.parse_headers` refuses a head of more than `_MAXHEADERS`
//!   lines counting the empty line, and Swift sets that to 1.6 ×
//!   `MAX_HEADER_COUNT` = 1.6 × (90 metadata items + 36) = 201.6.
//!
//! Each answer closes the connection. eventlet reads the head line by
//! line and stops at the first line that breaks a limit; the checks here
//! run in that order over the fields in the order hyper keeps them (the
//! same, except that a repeated name's later lines come right after its
//! first).
//!
//! hyper has no per-line limits, so line lengths are computed from the
//! parsed request: `METHOD SP target SP HTTP/1.1 CRLF` and
//! `name: value CRLF`. That is exact for the usual form and a little
//! short when a client pads with more whitespace than one space.
//!
//! Differences that remain: hyper refuses on its own, with a bodiless
//! answer, a head larger than its read buffer ([`PARSE_BUFFER_BYTES`],
//! far above the largest head Swift accepts) with 431, more than
//! [`PARSE_MAX_HEADERS`] fields with 431 (Swift's status for too many
//! fields, but Swift says 400 when those lines also pass 65,536 bytes
//! before the 202nd), and a request target longer than 65,534 bytes (what
//! `http::Uri` holds) with 414, as Swift would.

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::ext::ReasonPhrase;

use crate::body::{full, Body};

/// How many header fields hyper parses before answering 431 itself: well
/// above [`HeadLimits::max_header_count`] so that Swift's answer, with
/// its explanation, is the one a client gets.
pub const PARSE_MAX_HEADERS: usize = 1024;

/// hyper's read buffer, which bounds a request's head: far above the
/// largest head Swift accepts (8,191 + 65,536 bytes).
pub const PARSE_BUFFER_BYTES: usize = 512 * 1024;

/// Swift's limits on a request's head (the defaults are Swift's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// A request line this long or longer (CRLF included) is 414.
    pub max_request_line: usize,
    /// A header line this long or longer (CRLF included) is 400.
    pub max_header_line: usize,
    /// More bytes of header lines than this (CRLFs and the final empty
    /// line included) is 400.
    pub max_header_bytes: usize,
    /// More header fields than this is 431.
    pub max_header_count: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_request_line: 8192,
            max_header_line: 8192,
            max_header_bytes: 65536,
            max_header_count: 200,
        }
    }
}

/// Which limit a request broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    RequestLineTooLong,
    HeaderLineTooLong,
    HeadersTooLarge,
    TooManyHeaders,
}

/// `SP HTTP/1.x CRLF` after the target, and the space before it.
const REQUEST_LINE_FRAMING: usize = 1 + 1 + "HTTP/1.1".len() + 2;
/// `: ` between name and value, CRLF after it.
const HEADER_LINE_FRAMING: usize = 2 + 2;

/// The request target's length as it was on the request line.
fn target_len(uri: &Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    scheme + authority + path
}

impl HeadLimits {
    /// The first limit a request with this method, target and headers
    /// breaks, in the order eventlet reads the head.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Refusal> {
        self.check_line(method, target_len(uri))
            .or_else(|| self.check_headers(headers))
    }

    fn check_line(&self, method: &Method, target_len: usize) -> Option<Refusal> {
        let line = method.as_str().len() + target_len + REQUEST_LINE_FRAMING;
        (line >= self.max_request_line).then_some(Refusal::RequestLineTooLong)
    }

    fn check_headers(&self, headers: &HeaderMap) -> Option<Refusal> {
        let mut total = 0usize;
        let mut lines = 0usize;
        let fields = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + HEADER_LINE_FRAMING);
        // The empty line that ends the head counts as a line too.
        for len in fields.chain(std::iter::once(2)) {
            if len >= self.max_header_line {
                return Some(Refusal::HeaderLineTooLong);
            }
            total += len;
            if total > self.max_header_bytes {
                return Some(Refusal::HeadersTooLarge);
            }
            lines += 1;
            if lines > self.max_header_count + 1 {
                return Some(Refusal::TooManyHeaders);
            }
        }
        None
    }

    /// [`HeadLimits::check`] on a request.
    pub fn check_request<B>(&self, req: &Request<B>) -> Option<Refusal> {
        self.check(req.method(), req.uri(), req.headers())
    }

    /// [`HeadLimits::check_request`] for a request whose target grew by
    /// `grown` bytes on its way in (raw bytes percent-encoded by
    /// [`crate::wire::TargetEncoder`]): the request line is judged at the
    /// length the client sent.
    pub fn check_grown_request<B>(&self, req: &Request<B>, grown: usize) -> Option<Refusal> {
        let sent = target_len(req.uri()).saturating_sub(grown);
        self.check_line(req.method(), sent)
            .or_else(|| self.check_headers(req.headers()))
    }
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::RequestLineTooLong => StatusCode::URI_TOO_LONG,
            Refusal::HeaderLineTooLong | Refusal::HeadersTooLarge => StatusCode::BAD_REQUEST,
            Refusal::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The reason phrase Swift's server sends.
    fn reason(self) -> ReasonPhrase {
        const LINE: ReasonPhrase = ReasonPhrase::from_static(b"Request URI Too Long");
        const HEADER_LINE: ReasonPhrase = ReasonPhrase::from_static(b"Header Line Too Long");
        const HEADERS: ReasonPhrase = ReasonPhrase::from_static(b"Headers Too Large");
        const COUNT: ReasonPhrase = ReasonPhrase::from_static(b"Too many headers");
        match self {
            Refusal::RequestLineTooLong => LINE,
            Refusal::HeaderLineTooLong => HEADER_LINE,
            Refusal::HeadersTooLarge => HEADERS,
            Refusal::TooManyHeaders => COUNT,
        }
    }

    /// What the answer's body says.
    pub fn explain(self, limits: &HeadLimits) -> String {
        match self {
            Refusal::RequestLineTooLong => format!(
                "The request line is longer than {} bytes.\n",
                limits.max_request_line - 1
            ),
            Refusal::HeaderLineTooLong => format!(
                "A header line is longer than {} bytes.\n",
                limits.max_header_line - 1
            ),
            Refusal::HeadersTooLarge => format!(
                "The header lines are longer than {} bytes in all.\n",
                limits.max_header_bytes
            ),
            Refusal::TooManyHeaders => format!(
                "The request has more than {} header fields.\n",
                limits.max_header_count
            ),
        }
    }

    /// The answer: Swift's status and reason phrase, a plain-text body,
    /// and `Connection: close` (hyper then closes the connection without
    /// reading the rest of the request).
    pub fn response(self, limits: &HeadLimits) -> Response<Body> {
        let text = self.explain(limits);
        let len = text.len();
        let mut resp = Response::new(full(text));
        *resp.status_mut() = self.status();
        resp.extensions_mut().insert(self.reason());
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, usize)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, len) in fields {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(&"v".repeat(*len)).unwrap(),
            );
        }
        h
    }

    fn check(target: &str, fields: &[(&str, usize)]) -> Option<Refusal> {
        let uri: Uri = target.parse().unwrap();
        HeadLimits::default().check(&Method::GET, &uri, &headers(fields))
    }

    #[test]
    fn request_line_counts_method_target_version_and_crlf() {
        // "GET " + target + " HTTP/1.1\r\n" = target + 15.
        let ok = format!("/{}", "a".repeat(8191 - 15 - 1));
        assert_eq!(check(&ok, &[]), None);
        let long = format!("/{}", "a".repeat(8192 - 15 - 1));
        assert_eq!(check(&long, &[]), Some(Refusal::RequestLineTooLong));
        let absolute = format!("http://h/{}", "a".repeat(8192 - 15 - 9));
        assert_eq!(check(&absolute, &[]), Some(Refusal::RequestLineTooLong));
    }

    #[test]
    fn header_lines_count_name_value_and_framing() {
        // "x: " + value + "\r\n" = value + 5.
        assert_eq!(check("/", &[("x", 8191 - 5)]), None);
        assert_eq!(
            check("/", &[("x", 8192 - 5)]),
            Some(Refusal::HeaderLineTooLong)
        );
    }

    #[test]
    fn the_first_limit_reached_wins() {
        let names: Vec<String> = (0..300).map(|i| format!("x{i:03}")).collect();
        let many = |len: usize, n: usize| -> Vec<(&str, usize)> {
            names[..n].iter().map(|s| (s.as_str(), len)).collect()
        };
        assert_eq!(check("/", &many(1, 200)), None);
        assert_eq!(check("/", &many(1, 201)), Some(Refusal::TooManyHeaders));
        // 66 lines of 1,000 bytes pass 65,536 bytes before the count.
        assert_eq!(check("/", &many(993, 65)), None);
        assert_eq!(check("/", &many(993, 66)), Some(Refusal::HeadersTooLarge));
        assert_eq!(check("/", &many(993, 250)), Some(Refusal::HeadersTooLarge));
        // Short lines reach 202 lines first.
        assert_eq!(check("/", &many(300, 250)), Some(Refusal::TooManyHeaders));
        // A long line after the 201st is never read.
        let mut fields = many(1, 250);
        fields.push(("z", 9000));
        assert_eq!(check("/", &fields), Some(Refusal::TooManyHeaders));
    }
}
