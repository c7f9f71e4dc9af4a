//! Swift's `crossdomain` middleware: `GET /crossdomain.xml` answers the
//! cross-domain policy that Flash, Java and Silverlight clients ask for
//! before using the API from pages served elsewhere.

use http::{HeaderValue, Method};

use crate::service::{BoxFuture, Req, Resp, Service, SharedService};

/// Swift's default policy: every domain, over plain HTTP too.
pub const DEFAULT_POLICY: &str = "<allow-access-from domain=\"*\" secure=\"false\" />";

pub struct CrossDomain {
    next: SharedService,
    body: String,
}

impl CrossDomain {
    pub fn new(next: SharedService, policy: &str) -> Self {
        let body = format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE cross-domain-policy SYSTEM \
             \"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd\" >\n\
             <cross-domain-policy>\n{policy}\n</cross-domain-policy>"
        );
        CrossDomain { next, body }
    }
}

impl Service for CrossDomain {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        if req.method() != Method::GET || req.uri().path() != "/crossdomain.xml" {
            return self.next.call(req);
        }
        let mut resp = http::Response::new(apus_http::full(self.body.clone()));
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        h.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(self.body.len()),
        );
        Box::pin(async move { resp })
    }
}
