//! The web console at `/console/`: a single page (HTML, CSS and script
//! compiled into the binary, nothing fetched from elsewhere) that browses
//! and manages an account through the Swift API of this same proxy, and
//! `/console/api/cluster`, the cluster state its cluster page draws for
//! reseller admins.
//!
//! The page is public: it holds no data and no secret. Everything it shows
//! comes from ordinary API requests carrying the user's token, so it can do
//! exactly what the user's token and ACLs allow and nothing more. The
//! cluster state is answered only after the auth filter in front of this
//! one has recognised a token of a `.reseller_admin` (or
//! `.reseller_reader`) user: this filter must sit after the auth filter.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use apus_http::full;
use http::{HeaderValue, Method, Response, StatusCode};

use crate::config::ProxyConfig;
use crate::service::{
    env, error_response, set_header, BoxFuture, Req, Resp, Service, SharedService,
};

/// Where the console lives.
pub const PREFIX: &str = "/console";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/console.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/favicon.svg"),
    },
];

/// The page may load only its own script, style and images, talk only to
/// this origin, and not be framed by others.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// A validator for an asset: it changes whenever the binary's copy does.
fn etag(asset: &Asset) -> String {
    let mut h = DefaultHasher::new();
    asset.body.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(etag).collect())
}

pub struct Console {
    next: SharedService,
    config: Arc<ProxyConfig>,
}

impl Console {
    pub fn new(next: SharedService, config: Arc<ProxyConfig>) -> Self {
        Console { next, config }
    }
}

impl Service for Console {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let path = req.uri().path();
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return self.next.call(req);
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            // `/consoles`, say: not ours.
            return self.next.call(req);
        }
        let method = req.method().clone();
        if method != Method::GET && method != Method::HEAD {
            let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED, None);
            set_header(resp.headers_mut(), "allow", "GET, HEAD");
            return Box::pin(async move { resp });
        }
        if rest.is_empty() {
            // Relative asset names need the trailing slash.
            let mut resp = error_response(StatusCode::MOVED_PERMANENTLY, Some(""));
            set_header(resp.headers_mut(), "location", "/console/");
            return Box::pin(async move { resp });
        }
        if rest == "/api/cluster" {
            let groups = env(&req).remote_user;
            let config = self.config.clone();
            return Box::pin(
                async move { cluster(&config, &groups, method == Method::HEAD).await },
            );
        }
        let name = &rest[1..];
        let resp = match ASSETS.iter().position(|a| a.name == name) {
            Some(i) => asset(&req, i, method == Method::HEAD),
            None => error_response(StatusCode::NOT_FOUND, None),
        };
        Box::pin(async move { resp })
    }
}

fn asset(req: &Req, i: usize, head: bool) -> Resp {
    let asset = &ASSETS[i];
    let tag = &etags()[i];
    let unchanged = req
        .headers()
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if unchanged {
        let mut r = Response::new(apus_http::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if head {
        Response::new(apus_http::empty())
    } else {
        Response::new(full(asset.body))
    };
    let h = resp.headers_mut();
    if !unchanged {
        h.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(asset.body.len()),
        );
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    set_header(h, "etag", tag);
    // Always revalidated, so a new binary's page is seen at once.
    set_header(h, "cache-control", "no-cache");
    set_header(h, "content-security-policy", CONTENT_SECURITY_POLICY);
    set_header(h, "x-content-type-options", "nosniff");
    set_header(h, "referrer-policy", "no-referrer");
    set_header(h, "x-frame-options", "DENY");
    resp
}

/// Whether a user with these groups may see the cluster's state.
fn sees_cluster(groups: &[String]) -> bool {
    groups
        .iter()
        .any(|g| g == ".reseller_admin" || g == ".reseller_reader")
}

async fn cluster(config: &ProxyConfig, groups: &[String], head: bool) -> Resp {
    if groups.is_empty() {
        return error_response(StatusCode::UNAUTHORIZED, None);
    }
    if !sees_cluster(groups) {
        return error_response(StatusCode::FORBIDDEN, None);
    }
    let mut resp = if head {
        Response::new(apus_http::empty())
    } else {
        let body = crate::console_cluster::report(config).await.to_string();
        let len = body.len();
        let mut r = Response::new(full(body));
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        r
    };
    let h = resp.headers_mut();
    set_header(h, "content-type", "application/json; charset=utf-8");
    set_header(h, "cache-control", "no-store");
    resp
}
