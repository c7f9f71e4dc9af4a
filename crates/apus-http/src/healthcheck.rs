//! Swift's `healthcheck` middleware, for the proxy and the storage servers
//! alike (the first element of the storage servers' sample pipelines):
//! `GET` or `HEAD /healthcheck` answers `200 OK`, before any
//! authentication or routing, for load balancers, monitoring and
//! `apus status`.

use crate::{full, Body};
use http::{HeaderValue, Method, Response};

/// Whether a request is the middleware's.
pub fn is_healthcheck(method: &Method, raw_path: &str) -> bool {
    raw_path == "/healthcheck" && (method == Method::GET || method == Method::HEAD)
}

/// The answer: `OK`, as text.
pub fn answer() -> Response<Body> {
    let mut resp = Response::new(full("OK"));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(2));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_the_path() {
        assert!(is_healthcheck(&Method::GET, "/healthcheck"));
        assert!(is_healthcheck(&Method::HEAD, "/healthcheck"));
        assert!(!is_healthcheck(&Method::PUT, "/healthcheck"));
        assert!(!is_healthcheck(&Method::GET, "/healthcheck/x"));
        assert_eq!(answer().status(), 200);
    }
}
