//! Cross-origin requests (Swift's `cors_validation` and its `OPTIONS`
//! handler): a container lets browsers on other origins use it with
//! `X-Container-Meta-Access-Control-Allow-Origin` (space-separated, or
//! `*`), `-Max-Age` and `-Expose-Headers`; the operator may allow origins
//! everywhere (`cors_allow_origin`) and expose more headers
//! (`cors_expose_headers`).
//!
//! - A preflight (`OPTIONS` with `Origin`) on a container or object is
//!   401 unless the origin is allowed and `Access-Control-Request-Method`
//!   is one of the resource's methods; otherwise it carries the
//!   `Access-Control-Allow-*` headers (every requested header allowed).
//! - Any other request with `Origin` gets `Access-Control-Allow-Origin`
//!   and `Access-Control-Expose-Headers` (the simple response headers,
//!   Swift's own, user metadata and the container's list) on its answer;
//!   with `strict_cors_mode` (the default) only when the origin is allowed.

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::service::{header_str, header_text, set_header, Resp};

/// The operator's CORS settings (`[proxy]` in Swift's proxy-server.conf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins allowed for every container.
    pub allow_origin: Vec<String>,
    /// Headers exposed on every answer, besides Swift's.
    pub expose_headers: Vec<String>,
    /// Answer a disallowed origin without CORS headers.
    pub strict_mode: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allow_origin: Vec::new(),
            expose_headers: Vec::new(),
            strict_mode: true,
        }
    }
}

/// A container's CORS metadata.
#[derive(Clone, Debug, Default)]
pub struct ContainerCors {
    allow_origin: Option<String>,
    max_age: Option<String>,
    expose_headers: Option<String>,
}

impl ContainerCors {
    /// From the container info's headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let meta = |k: &str| header_text(headers, &format!("x-container-meta-access-control-{k}"));
        ContainerCors {
            allow_origin: meta("allow-origin"),
            max_age: meta("max-age"),
            expose_headers: meta("expose-headers"),
        }
    }

    fn wildcard(&self) -> bool {
        self.allow_origin
            .as_deref()
            .is_some_and(|o| o.trim() == "*")
    }
}

/// Swift's `is_origin_allowed`.
pub fn origin_allowed(cors: &ContainerCors, config: &CorsConfig, origin: &str) -> bool {
    let container = cors
        .allow_origin
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .map(str::trim)
        .filter(|o| !o.is_empty());
    let operator = config.allow_origin.iter().map(String::as_str);
    let mut allowed = container.chain(operator);
    allowed.any(|o| o == origin || o == "*")
}

fn add_vary(headers: &mut HeaderMap, what: &str) {
    let value = match header_str(headers, "vary") {
        Some(v) => format!("{v}, {what}"),
        None => what.to_string(),
    };
    set_header(headers, "vary", &value);
}

/// The answer to a preflight `OPTIONS` with `origin`: `allow` lists the
/// resource's methods.
pub fn preflight(
    allow: &str,
    origin: &str,
    request_method: Option<&str>,
    request_headers: Option<&str>,
    cors: &ContainerCors,
    config: &CorsConfig,
) -> Resp {
    let mut resp = http::Response::new(apus_http::empty());
    let h = resp.headers_mut();
    set_header(h, "allow", allow);
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
    let method_ok = request_method.is_some_and(|m| allow.split(',').any(|a| a.trim() == m));
    if !origin_allowed(cors, config, origin) || !method_ok {
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return resp;
    }
    if cors.wildcard() {
        set_header(h, "access-control-allow-origin", "*");
    } else {
        set_header(h, "access-control-allow-origin", origin);
        add_vary(h, "Origin");
    }
    if let Some(age) = &cors.max_age {
        set_header(h, "access-control-max-age", age);
    }
    set_header(h, "access-control-allow-methods", allow);
    let mut wanted: Vec<&str> = request_headers
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if !wanted.is_empty() {
        set_header(h, "access-control-allow-headers", &wanted.join(", "));
        add_vary(h, "Access-Control-Request-Headers");
    }
    resp
}

/// Adds the CORS headers to the answer of a request from `origin`.
pub fn decorate(resp: &mut Resp, origin: &str, cors: &ContainerCors, config: &CorsConfig) {
    if config.strict_mode && !origin_allowed(cors, config, origin) {
        return;
    }
    let h = resp.headers_mut();
    if !h.contains_key("access-control-expose-headers") {
        let mut expose: Vec<String> = [
            "cache-control",
            "content-language",
            "content-type",
            "expires",
            "last-modified",
            "pragma",
            "etag",
            "x-timestamp",
            "x-trans-id",
            "x-openstack-request-id",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        expose.extend(config.expose_headers.iter().map(|s| s.to_ascii_lowercase()));
        for name in h.keys() {
            let n = name.as_str();
            if n.starts_with("x-container-meta") || n.starts_with("x-object-meta") {
                expose.push(n.to_string());
            }
        }
        if let Some(more) = &cors.expose_headers {
            expose.extend(
                more.split(' ')
                    .map(|x| x.trim().to_ascii_lowercase())
                    .filter(|x| !x.is_empty()),
            );
        }
        let mut seen = std::collections::HashSet::new();
        expose.retain(|x| seen.insert(x.clone()));
        set_header(h, "access-control-expose-headers", &expose.join(", "));
    }
    if !h.contains_key("access-control-allow-origin") {
        if cors.wildcard() {
            set_header(h, "access-control-allow-origin", "*");
        } else {
            set_header(h, "access-control-allow-origin", origin);
            add_vary(h, "Origin");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origin: &str) -> ContainerCors {
        let mut h = HeaderMap::new();
        set_header(
            &mut h,
            "x-container-meta-access-control-allow-origin",
            origin,
        );
        ContainerCors::from_headers(&h)
    }

    #[test]
    fn origins_are_allowed_by_the_container_or_the_operator() {
        let strict = CorsConfig::default();
        assert!(origin_allowed(&cors("*"), &strict, "http://m.com"));
        assert!(origin_allowed(
            &cors("http://a.com http://m.com"),
            &strict,
            "http://m.com"
        ));
        assert!(!origin_allowed(
            &cors("http://a.com"),
            &strict,
            "http://m.com"
        ));
        let operator = CorsConfig {
            allow_origin: vec!["http://m.com".into()],
            ..Default::default()
        };
        assert!(origin_allowed(
            &ContainerCors::default(),
            &operator,
            "http://m.com"
        ));
    }

    #[test]
    fn preflights_need_an_allowed_origin_and_method() {
        let config = CorsConfig::default();
        let allow = "DELETE, GET, HEAD, OPTIONS, POST, PUT";
        let r = preflight(allow, "http://m.com", None, None, &cors("*"), &config);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = preflight(
            allow,
            "http://m.com",
            Some("GET"),
            Some("x-b, x-a"),
            &cors("*"),
            &config,
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header_str(r.headers(), "access-control-allow-origin"),
            Some("*")
        );
        assert_eq!(
            header_str(r.headers(), "access-control-allow-headers"),
            Some("x-a, x-b")
        );
        let r = preflight(
            allow,
            "http://m.com",
            Some("GET"),
            None,
            &cors("http://x.com"),
            &config,
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn answers_expose_metadata_to_allowed_origins() {
        let config = CorsConfig::default();
        let mut resp = http::Response::new(apus_http::empty());
        set_header(resp.headers_mut(), "x-object-meta-color", "red");
        decorate(&mut resp, "http://m.com", &cors("http://m.com"), &config);
        let h = resp.headers();
        assert_eq!(
            header_str(h, "access-control-allow-origin"),
            Some("http://m.com")
        );
        assert_eq!(header_str(h, "vary"), Some("Origin"));
        let exposed = header_str(h, "access-control-expose-headers").unwrap();
        assert!(
            exposed.split(", ").any(|x| x == "x-object-meta-color"),
            "{exposed}"
        );
        let mut resp = http::Response::new(apus_http::empty());
        decorate(&mut resp, "http://m.com", &cors("http://x.com"), &config);
        assert!(!resp.headers().contains_key("access-control-allow-origin"));
    }
}
