//! Listing formats (Swift's `listing_formats` middleware): the rest of the
//! pipeline always sees account and container listings as JSON, so the
//! filters that edit listings (`slo`, `symlink`, object versioning) edit
//! one form; this filter turns the answer into the format the client
//! asked for (`format=` or `Accept`: plain text, JSON or XML).
//!
//! The format is chosen first (400 for a malformed `Accept`, 406 when
//! nothing offered is acceptable) and the request's `Accept` then names
//! it, as Swift's does. Answers that are not JSON listings (errors, a
//! filter's own JSON marked [`FormattedListing`]) pass unchanged. A plain
//! listing with no names is a 204; XML always has its root element.

use http::{HeaderValue, Method, StatusCode};

use crate::dlo::util::{build_query, parse_query};
use crate::service::{
    error_response, header_str, set_header, BoxFuture, Req, Resp, Service, SharedService,
};
use apus_proto::listing::{xml_attr, xml_text, ListingFormat, Query, XML_DECLARATION};

/// Put on a response by a filter whose JSON is final (Swift's
/// `swift.format_listing = False`), such as a version listing.
#[derive(Clone, Copy, Debug)]
pub struct FormattedListing;

/// Listings larger than this pass through unconverted (Swift's
/// `MAX_CONTAINER_LISTING_CONTENT_LENGTH`).
const MAX_LISTING_CONTENT_LENGTH: usize = 1024 * 1024 * 8;

pub struct ListingFormats {
    next: SharedService,
}

impl ListingFormats {
    pub fn new(next: SharedService) -> Self {
        ListingFormats { next }
    }
}

impl Service for ListingFormats {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return self.next.call(req);
        }
        let Some((account, container)) = listing_path(&req) else {
            return self.next.call(req);
        };
        Box::pin(self.handle(req, account, container))
    }
}

/// `(account, container)` of an account or container path.
fn listing_path(req: &Req) -> Option<(String, Option<String>)> {
    let decoded = apus_proto::percent_decode_internal(req.uri().path()).ok()?;
    let parts = apus_proto::split_path(&decoded, 2, 3, false).ok()?;
    let version = parts.first()?.clone()?;
    if version != "v1" && version != "v1.0" {
        return None;
    }
    let account = parts.get(1)?.clone()?;
    let container = parts.get(2).cloned().flatten();
    Some((account, container))
}

impl ListingFormats {
    async fn handle(&self, mut req: Req, account: String, container: Option<String>) -> Resp {
        let query = Query::parse(req.uri().query());
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .map(HeaderValue::as_bytes);
        let format = match apus_proto::listing::listing_format(&query, accept) {
            Ok(f) => f,
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                return match e {
                    apus_proto::listing::ListingError::NotAcceptable => {
                        error_response(status, None)
                    }
                    other => error_response(status, Some(&other.to_string())),
                };
            }
        };
        let mut pairs = parse_query(req.uri().query());
        let can_vary = !pairs.iter().any(|(k, _)| k == "format");
        pairs.retain(|(k, _)| k != "format");
        pairs.push(("format".into(), "json".into()));
        let uri = format!("{}?{}", req.uri().path(), build_query(&pairs));
        match uri.parse() {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return error_response(StatusCode::PRECONDITION_FAILED, None),
        }
        if !can_vary {
            // What the rest of the pipeline sees of the client's choice.
            set_header(req.headers_mut(), "accept", format.content_type());
        }
        let method = req.method().clone();
        let mut resp = self.next.call(req).await;
        if resp.extensions().get::<FormattedListing>().is_some() {
            return resp;
        }
        if !matches!(resp.status().as_u16(), 200 | 204) {
            return resp;
        }
        if can_vary {
            let vary = header_str(resp.headers(), "vary").map(str::to_string);
            match vary {
                Some(v)
                    if v.split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("accept")) => {}
                Some(v) => set_header(resp.headers_mut(), "vary", &format!("{v}, Accept")),
                None => set_header(resp.headers_mut(), "vary", "Accept"),
            }
        }
        let is_json = header_str(resp.headers(), "content-type")
            .and_then(|c| c.split(';').next())
            .is_some_and(|t| t.trim() == "application/json");
        if !is_json {
            return resp;
        }
        let content_type = format!("{}; charset=utf-8", format.content_type());
        if method == Method::HEAD {
            set_header(resp.headers_mut(), "content-type", &content_type);
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
            return resp;
        }
        if format == ListingFormat::Json {
            return resp;
        }
        let declared = header_str(resp.headers(), "content-length").and_then(|l| l.parse().ok());
        if declared.is_none_or(|l: usize| l > MAX_LISTING_CONTENT_LENGTH) {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let Ok(body) = apus_http::body::collect_limited(body, MAX_LISTING_CONTENT_LENGTH).await
        else {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
        };
        let listing = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Array(items)) if items.iter().all(|i| i.is_object()) => items,
            // Not a listing after all: as it came.
            _ => return http::Response::from_parts(parts, apus_http::full(body)),
        };
        let rendered = match format {
            ListingFormat::Plain => Some(listing_to_text(&listing)),
            ListingFormat::Xml(_) => match &container {
                Some(c) => container_to_xml(&listing, c),
                None => account_to_xml(&listing, &account),
            },
            ListingFormat::Json => None,
        };
        let Some(out) = rendered else {
            return http::Response::from_parts(parts, apus_http::full(body));
        };
        if out.is_empty() {
            parts.status = StatusCode::NO_CONTENT;
        }
        set_header(&mut parts.headers, "content-type", &content_type);
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        http::Response::from_parts(parts, apus_http::full(out))
    }
}

/// Python's `str()` of a JSON value, as Swift writes XML fields.
fn py_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(true) => "True".into(),
        serde_json::Value::Bool(false) => "False".into(),
        serde_json::Value::Null => "None".into(),
        other => other.to_string(),
    }
}

fn listing_to_text(listing: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for item in listing {
        let name = item.get("name").or_else(|| item.get("subdir"));
        if let Some(n) = name {
            out.push_str(&py_str(n));
            out.push('\n');
        }
    }
    out
}

/// `None` when an entry lacks a field Swift writes (the listing then goes
/// out as it came, as Swift's `KeyError` path does).
fn container_to_xml(listing: &[serde_json::Value], container: &str) -> Option<String> {
    let mut out = String::from(XML_DECLARATION);
    out.push_str("<container name=\"");
    xml_attr(&mut out, container);
    out.push('"');
    if listing.is_empty() {
        out.push_str(" />");
        return Some(out);
    }
    out.push('>');
    for item in listing {
        if let Some(subdir) = item.get("subdir") {
            let name = py_str(subdir);
            out.push_str("<subdir name=\"");
            xml_attr(&mut out, &name);
            out.push_str("\"><name>");
            xml_text(&mut out, &name);
            out.push_str("</name></subdir>");
            continue;
        }
        out.push_str("<object>");
        for field in ["name", "hash", "bytes", "content_type", "last_modified"] {
            let value = py_str(item.get(field)?);
            out.push_str(&format!("<{field}>"));
            xml_text(&mut out, &value);
            out.push_str(&format!("</{field}>"));
        }
        out.push_str("</object>");
    }
    out.push_str("</container>");
    Some(out)
}

fn account_to_xml(listing: &[serde_json::Value], account: &str) -> Option<String> {
    let mut out = String::from(XML_DECLARATION);
    out.push_str("<account name=\"");
    xml_attr(&mut out, account);
    out.push_str("\">\n");
    for item in listing {
        if let Some(subdir) = item.get("subdir") {
            out.push_str("<subdir name=\"");
            xml_attr(&mut out, &py_str(subdir));
            out.push_str("\" />\n");
            continue;
        }
        out.push_str("<container>");
        for field in ["name", "count", "bytes", "last_modified"] {
            let value = py_str(item.get(field)?);
            out.push_str(&format!("<{field}>"));
            xml_text(&mut out, &value);
            out.push_str(&format!("</{field}>"));
        }
        if let Some(p) = item.get("storage_policy") {
            out.push_str("<storage_policy>");
            xml_text(&mut out, &py_str(p));
            out.push_str("</storage_policy>");
        }
        out.push_str("</container>\n");
    }
    out.push_str("</account>");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_written_as_swift_writes_it() {
        let listing = vec![
            serde_json::json!({"name": "a<b", "hash": "h; symlink_target=x", "bytes": 3,
                "content_type": "text/plain", "last_modified": "2020-01-01T00:00:00.000000",
                "symlink_path": "/v1/a/c/x"}),
            serde_json::json!({"subdir": "d/"}),
        ];
        assert_eq!(
            container_to_xml(&listing, "c\"1").unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c&quot;1\">\
             <object><name>a&lt;b</name><hash>h; symlink_target=x</hash><bytes>3</bytes>\
             <content_type>text/plain</content_type>\
             <last_modified>2020-01-01T00:00:00.000000</last_modified></object>\
             <subdir name=\"d/\"><name>d/</name></subdir></container>"
        );
        assert_eq!(
            container_to_xml(&[], "c").unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c\" />"
        );
        let accounts = vec![serde_json::json!({"name": "c", "count": 1, "bytes": 2,
            "last_modified": "x", "storage_policy": "gold"})];
        assert_eq!(
            account_to_xml(&accounts, "AUTH_a").unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"AUTH_a\">\n\
             <container><name>c</name><count>1</count><bytes>2</bytes>\
             <last_modified>x</last_modified><storage_policy>gold</storage_policy></container>\n\
             </account>"
        );
        assert_eq!(
            container_to_xml(&[serde_json::json!({"name": "x"})], "c"),
            None
        );
    }

    #[test]
    fn plain_text_is_the_names() {
        let listing = vec![
            serde_json::json!({"name": "a"}),
            serde_json::json!({"subdir": "b/"}),
        ];
        assert_eq!(listing_to_text(&listing), "a\nb/\n");
        assert_eq!(listing_to_text(&[]), "");
    }
}
