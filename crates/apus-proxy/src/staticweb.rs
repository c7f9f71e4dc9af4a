//! Static websites (Swift's `staticweb` middleware): a container whose
//! owner sets `X-Container-Meta-Web-Index`, `-Web-Listings`,
//! `-Web-Listings-CSS`, `-Web-Listings-Label`, `-Web-Error` or
//! `-Web-Directory-Type` answers anonymous (or `X-Web-Mode: true`, or
//! temporary URL) GETs and HEADs as a website:
//!
//! - a directory path (`/c/`, `/c/dir/`) serves its index object, or else
//!   an HTML listing when listings are on; a directory path without its
//!   slash is redirected (301) to it;
//! - a directory marker object (`application/directory`, at most one
//!   byte) counts as missing;
//! - a 404 (or 401 on the container) answers with the `<status><error>`
//!   object when one is set.
//!
//! Everything else passes through. Listings are written exactly as
//! Swift's: clients and tests compare them.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::dlo::util::{build_request, parse_query};
use crate::info::InfoLookup;
use crate::service::{
    env, error_response, header_str, header_text, set_header, AuthRequest, BoxFuture, Env, Req,
    Resp, Service, SharedService,
};

const SWIFT_SOURCE: &str = "SW";

pub struct StaticWeb {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
}

impl StaticWeb {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>) -> Self {
        StaticWeb { next, info }
    }
}

/// Python's `html.escape` (quotes included).
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Swift's `human_readable`: `1023`, `1Ki`, `5Mi`, ...
fn human_readable(value: u64) -> String {
    let mut v = value as f64;
    let suffixes = ['K', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'];
    let mut index: Option<usize> = None;
    while v >= 1024.0 && index.map_or(0, |i| i + 1) < suffixes.len() {
        let next = index.map_or(0, |i| i + 1);
        index = Some(next);
        v = round_half_even(v / 1024.0);
    }
    match index {
        None => format!("{}", v as u64),
        Some(i) => format!("{}{}i", round_half_even(v) as u64, suffixes[i]),
    }
}

/// Python 3's `round` (halves to even).
fn round_half_even(v: f64) -> f64 {
    v.round_ties_even()
}

/// Swift's `quote(s)` (only `/` kept besides the unreserved characters).
fn quote(s: &str) -> String {
    apus_proto::quote(s)
}

/// What the container says of its website.
#[derive(Default, Clone)]
struct Site {
    index: String,
    error: String,
    listings: String,
    listings_label: String,
    listings_css: String,
    dir_type: String,
    read_acl: Option<String>,
}

impl Site {
    fn listings_on(&self) -> bool {
        apus_proto::headers::is_true(&self.listings)
    }
}

struct Ctx<'a> {
    sw: &'a StaticWeb,
    version: String,
    account: String,
    container: String,
    /// The decoded request path.
    path: String,
    env: Env,
    headers: HeaderMap,
    method: Method,
    query: Option<String>,
    site: Site,
}

impl Service for StaticWeb {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let client_env = env(&req);
        // Nothing has been authorized a way staticweb can ask about.
        if client_env.authorize.is_none() {
            return self.next.call(req);
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return self.next.call(req);
        }
        let Ok(path) = apus_proto::percent_decode_internal(req.uri().path()) else {
            return self.next.call(req);
        };
        let Ok(parts) = apus_proto::split_path(&path, 2, 4, true) else {
            return self.next.call(req);
        };
        let web_mode =
            header_str(req.headers(), "x-web-mode").is_some_and(apus_proto::headers::is_true);
        let user = &client_env.remote_user;
        let tempurl = user.len() == 1 && user[0] == ".wsgi.tempurl";
        if !user.is_empty() && !tempurl && !web_mode {
            return self.next.call(req);
        }
        let version = parts[0].clone().unwrap_or_default();
        let account = parts[1].clone().unwrap_or_default();
        let Some(container) = parts.get(2).cloned().flatten().filter(|c| !c.is_empty()) else {
            return self.next.call(req);
        };
        let object = parts.get(3).cloned().flatten().filter(|o| !o.is_empty());
        Box::pin(async move {
            let mut ctx = Ctx {
                sw: self,
                version,
                account,
                container,
                path,
                env: client_env,
                headers: req.headers().clone(),
                method: req.method().clone(),
                query: req.uri().query().map(str::to_string),
                site: Site::default(),
            };
            match object {
                Some(obj) => ctx.handle_object(req, obj).await,
                None => ctx.handle_container(req).await,
            }
        })
    }
}

impl Ctx<'_> {
    fn container_path(&self) -> String {
        format!("/{}/{}/{}", self.version, self.account, self.container)
    }

    async fn load_site(&mut self) -> bool {
        let info = self
            .sw
            .info
            .container_info(
                &self.env.subrequest(SWIFT_SOURCE),
                &self.account,
                &self.container,
            )
            .await;
        if !info.exists() {
            self.site = Site::default();
            return false;
        }
        let meta = |k: &str| {
            header_text(&info.headers, &format!("x-container-meta-{k}"))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        self.site = Site {
            index: meta("web-index"),
            error: meta("web-error"),
            listings: meta("web-listings"),
            listings_label: meta("web-listings-label"),
            listings_css: meta("web-listings-css"),
            dir_type: meta("web-directory-type"),
            read_acl: info.read_acl.clone(),
        };
        true
    }

    /// A request of the client's method and headers for `path` (decoded),
    /// marked as staticweb's.
    async fn fetch(&self, method: Method, path: &str, query: Option<&str>) -> Resp {
        let mut headers = self.headers.clone();
        let agent = format!(
            "{} StaticWeb",
            header_str(&self.headers, "user-agent").unwrap_or("None")
        );
        set_header(&mut headers, "user-agent", &agent);
        if method != self.method {
            headers.remove(http::header::RANGE);
        }
        match build_request(
            method,
            path,
            query,
            headers,
            self.env.subrequest(SWIFT_SOURCE),
            apus_http::empty(),
        ) {
            Ok(r) => self.sw.next.call(r).await,
            Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
        }
    }

    /// The answer for an error: the `<status><web-error>` object when the
    /// site has one and it can be read, with the error's status.
    async fn error_answer(&self, resp: Resp, use_error_page: bool) -> Resp {
        if !use_error_page || self.site.error.is_empty() {
            return resp;
        }
        let status = resp.status();
        let page = format!(
            "{}/{}{}",
            self.container_path(),
            status.as_u16(),
            self.site.error
        );
        let got = self.fetch(Method::GET, &page, None).await;
        if !got.status().is_success() {
            return resp;
        }
        let (mut parts, body) = got.into_parts();
        parts.status = status;
        http::Response::from_parts(parts, body)
    }

    /// A 301 to the same path with a slash, absolute as swob makes it.
    fn redirect_with_slash(&self) -> Resp {
        let location = format!("{}/", apus_proto::quote(&self.path));
        let mut resp = error_response(StatusCode::MOVED_PERMANENTLY, None);
        set_header(resp.headers_mut(), "location", &location);
        resp
    }

    async fn handle_container(&mut self, req: Req) -> Resp {
        self.load_site().await;
        if let Some(auth) = self.env.authorize.clone() {
            let check = AuthRequest {
                method: &self.method,
                path: &self.path,
                headers: &self.headers,
                env: &self.env,
                acl: self.site.read_acl.as_deref(),
            };
            if let Err(denial) = auth.authorize(check).await {
                return self.error_answer(denial, true).await;
            }
        }
        if self.site.listings.is_empty() && self.site.index.is_empty() {
            if header_str(&self.headers, "x-web-mode").is_some_and(apus_proto::headers::is_true) {
                return error_response(StatusCode::NOT_FOUND, None);
            }
            return self.sw.next.call(req).await;
        }
        if !self.path.ends_with('/') {
            return self.redirect_with_slash();
        }
        if self.site.index.is_empty() {
            return self.listing("").await;
        }
        let index_path = format!("{}{}", self.path, self.site.index);
        let resp = self
            .fetch(
                self.method.clone(),
                &index_path,
                self.query.clone().as_deref(),
            )
            .await;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return self.listing("").await;
        }
        if !status.is_success() && !status.is_redirection() {
            return self.error_answer(resp, true).await;
        }
        resp
    }

    async fn handle_object(&mut self, req: Req, obj: String) -> Resp {
        let method = self.method.clone();
        let query = self.query.clone();
        let resp = self
            .fetch(method.clone(), &self.path.clone(), query.as_deref())
            .await;
        drop(req);
        let mut status = resp.status();
        self.load_site().await;
        if status.is_success() || status.is_redirection() {
            let dir_type = if self.site.dir_type.is_empty() {
                "application/directory"
            } else {
                self.site.dir_type.as_str()
            };
            let length: u64 = header_str(resp.headers(), "content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if header_str(resp.headers(), "content-type") == Some(dir_type) && length <= 1 {
                status = StatusCode::NOT_FOUND;
            } else {
                return resp;
            }
        }
        if status != StatusCode::NOT_FOUND {
            // Swift uses error pages for 404s only here.
            return resp;
        }
        if self.site.listings.is_empty() && self.site.index.is_empty() {
            return resp;
        }
        let mut status = StatusCode::NOT_FOUND;
        if !self.site.index.is_empty() {
            let mut index_path = self.path.clone();
            if !index_path.ends_with('/') {
                index_path.push('/');
            }
            index_path.push_str(&self.site.index);
            let index = self
                .fetch(method.clone(), &index_path, query.as_deref())
                .await;
            status = index.status();
            if status.is_success() || status.is_redirection() {
                if !self.path.ends_with('/') {
                    return self.redirect_with_slash();
                }
                return index;
            }
        }
        if status != StatusCode::NOT_FOUND {
            return resp;
        }
        if !self.path.ends_with('/') {
            // A directory without its slash: only if something is in it.
            let prefix = format!("{obj}/");
            let q = format!(
                "limit=1&delimiter=/&prefix={}&format=json",
                crate::dlo::util::quote_query(&prefix)
            );
            let listing = self
                .fetch(Method::GET, &self.container_path(), Some(&q))
                .await;
            let ok = listing.status().is_success();
            let body = apus_http::body::collect_limited(listing.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let found = ok
                && serde_json::from_slice::<Vec<serde_json::Value>>(&body)
                    .is_ok_and(|l| !l.is_empty());
            if !found {
                return self
                    .error_answer(error_response(StatusCode::NOT_FOUND, None), true)
                    .await;
            }
            return self.redirect_with_slash();
        }
        self.listing(&obj).await
    }

    /// Swift's `_build_css_path`.
    fn css_path(&self, prefix: &str) -> String {
        let css = &self.site.listings_css;
        if css.starts_with('/') || css.starts_with("http://") || css.starts_with("https://") {
            // Swift keeps ':' and '/' here.
            quote(css).replace("%3A", ":")
        } else {
            format!(
                "{}{}",
                "../".repeat(prefix.matches('/').count()),
                quote(css)
            )
        }
    }

    /// The page's style: a link to the site's CSS, else `default`.
    fn stylesheet(&self, prefix: &str, default: &str) -> String {
        if self.site.listings_css.is_empty() {
            return default.to_string();
        }
        format!(
            "  <link rel=\"stylesheet\" type=\"text/css\" href=\"{}\" />\n",
            self.css_path(prefix)
        )
    }

    async fn listing(&self, prefix: &str) -> Resp {
        let mut label = self.path.clone();
        if !self.site.listings_label.is_empty() {
            let rest: Vec<&str> = self.path.split('/').skip(4).collect();
            label = format!("{}/{}", self.site.listings_label, rest.join("/"));
        }
        if !self.site.listings_on() {
            let mut body = format!(
                "<!DOCTYPE html>\n<html>\n<head>\n<title>Listing of {}</title>\n",
                html_escape(&label)
            );
            body.push_str(&self.stylesheet(
                prefix,
                "  <style type=\"text/css\">\n   h1 {font-size: 1em; font-weight: bold;}\n   p {font-size: 2}\n  </style>\n",
            ));
            body.push_str(
                "</head>\n<body>  <h1>Web Listing Disabled</h1>   <p>The owner of this web site has disabled web listing.   <p>If you are the owner of this web site, you can enable   web listing by setting X-Container-Meta-Web-Listings.</p>",
            );
            if !self.site.index.is_empty() {
                body.push_str(&format!(
                    "<h1>Index File Not Found</h1> <p>The owner of this web site has set  <b>X-Container-Meta-Web-Index: {}</b>.  However, this file is not found.</p>",
                    self.site.index
                ));
            }
            body.push_str(" </body>\n</html>\n");
            let resp = error_response(StatusCode::NOT_FOUND, Some(&body));
            return self.error_answer(resp, true).await;
        }
        let mut q = "delimiter=/&format=json".to_string();
        if !prefix.is_empty() {
            q.push_str(&format!("&prefix={}", quote(prefix)));
        }
        let resp = self
            .fetch(Method::GET, &self.container_path(), Some(&q))
            .await;
        if !resp.status().is_success() {
            return self.error_answer(resp, true).await;
        }
        let body =
            apus_http::body::collect_limited(resp.into_body(), crate::segments::MAX_LISTING_BYTES)
                .await
                .unwrap_or_default();
        let listing: Vec<serde_json::Value> = if body.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(&body).unwrap_or_default()
        };
        if !prefix.is_empty() && listing.is_empty() {
            return self
                .error_answer(error_response(StatusCode::NOT_FOUND, None), true)
                .await;
        }
        let (tempurl_qs, tempurl_prefix) = self.tempurl_links();
        let mut body = format!(
            "<!DOCTYPE html>\n<html>\n <head>\n  <title>Listing of {}</title>\n",
            html_escape(&label)
        );
        body.push_str(&self.stylesheet(
            prefix,
            "  <style type=\"text/css\">\n   h1 {font-size: 1em; font-weight: bold;}\n   th {text-align: left; padding: 0px 1em 0px 1em;}\n   td {padding: 0px 1em 0px 1em;}\n   a {text-decoration: none;}\n  </style>\n",
        ));
        body.push_str(&format!(
            " </head>\n <body>\n  <h1 id=\"title\">Listing of {}</h1>\n  <table id=\"listing\">\n   <tr id=\"heading\">\n    <th class=\"colname\">Name</th>\n    <th class=\"colsize\">Size</th>\n    <th class=\"coldate\">Date</th>\n   </tr>\n",
            html_escape(&label)
        ));
        if prefix.chars().count() > tempurl_prefix.chars().count() {
            body.push_str(&format!(
                "   <tr id=\"parent\" class=\"item\">\n    <td class=\"colname\"><a href=\"../{tempurl_qs}\">../</a></td>\n    <td class=\"colsize\">&nbsp;</td>\n    <td class=\"coldate\">&nbsp;</td>\n   </tr>\n"
            ));
        }
        let strip = |name: &str| -> String {
            if prefix.is_empty() {
                name.to_string()
            } else {
                name.chars().skip(prefix.chars().count()).collect()
            }
        };
        for item in &listing {
            let Some(subdir) = item.get("subdir").and_then(|s| s.as_str()) else {
                continue;
            };
            let subdir = strip(subdir);
            body.push_str(&format!(
                "   <tr class=\"item subdir\">\n    <td class=\"colname\"><a href=\"./{}{tempurl_qs}\">{}</a></td>\n    <td class=\"colsize\">&nbsp;</td>\n    <td class=\"coldate\">&nbsp;</td>\n   </tr>\n",
                quote(&subdir).replace('.', "%2E"),
                html_escape(&subdir)
            ));
        }
        for item in &listing {
            let Some(name) = item.get("name").and_then(|s| s.as_str()) else {
                continue;
            };
            let name = strip(name);
            let content_type = item
                .get("content_type")
                .and_then(|c| c.as_str())
                .unwrap_or("");
            let bytes = human_readable(item.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0));
            let last_modified = html_escape(
                item.get("last_modified")
                    .and_then(|l| l.as_str())
                    .unwrap_or(""),
            )
            .split('.')
            .next()
            .unwrap_or("")
            .replace('T', " ");
            let classes: Vec<String> = content_type
                .split('/')
                .map(|t| format!("type-{}", html_escape(&t.to_lowercase())))
                .collect();
            body.push_str(&format!(
                "   <tr class=\"item {}\">\n    <td class=\"colname\"><a href=\"./{}{tempurl_qs}\">{}</a></td>\n    <td class=\"colsize\">{bytes}</td>\n    <td class=\"coldate\">{last_modified}</td>\n   </tr>\n",
                classes.join(" "),
                quote(&name).replace('.', "%2E"),
                html_escape(&name)
            ));
        }
        body.push_str("  </table>\n </body>\n</html>\n");
        let mut resp = http::Response::new(apus_http::full(body.clone()));
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        h.insert(
            "x-backend-content-generator",
            HeaderValue::from_static("staticweb"),
        );
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        resp
    }

    /// For a listing reached by a temporary URL with a prefix: the query
    /// each link carries, and that prefix.
    fn tempurl_links(&self) -> (String, String) {
        let user = &self.env.remote_user;
        if !(user.len() == 1 && user[0] == ".wsgi.tempurl") {
            return (String::new(), String::new());
        }
        let params = parse_query(self.query.as_deref());
        let first = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let Some(prefix) = first("temp_url_prefix") else {
            return (String::new(), String::new());
        };
        let mut parts = vec![
            format!("temp_url_prefix={}", quote(&prefix)),
            format!(
                "temp_url_expires={}",
                quote(&first("temp_url_expires").unwrap_or_default())
            ),
            format!("temp_url_sig={}", first("temp_url_sig").unwrap_or_default()),
        ];
        if let Some(ip) = first("temp_url_ip_range") {
            parts.push(format!("temp_url_ip_range={}", quote(&ip)));
        }
        if params.iter().any(|(k, _)| k == "inline") {
            parts.push("inline".into());
        }
        (format!("?{}", parts.join("&amp;")), prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_swift_writes_them() {
        // swift.common.utils.human_readable
        assert_eq!(human_readable(0), "0");
        assert_eq!(human_readable(1023), "1023");
        assert_eq!(human_readable(1024), "1Ki");
        assert_eq!(human_readable(1536), "2Ki");
        assert_eq!(human_readable(2560), "2Ki");
        assert_eq!(human_readable(5 * 1024 * 1024), "5Mi");
    }

    #[test]
    fn html_is_escaped_as_python_does() {
        assert_eq!(html_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#x27;");
    }
}
