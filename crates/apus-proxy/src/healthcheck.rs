//! Swift's `healthcheck`: `GET /healthcheck` answers `200 OK` before any
//! authentication, for load balancers.

use apus_http::full;
use http::{HeaderValue, Method, Response};

use crate::service::{BoxFuture, Req, Resp, Service, SharedService};

pub struct Healthcheck {
    next: SharedService,
}

impl Healthcheck {
    pub fn new(next: SharedService) -> Self {
        Healthcheck { next }
    }
}

impl Service for Healthcheck {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        if req.uri().path() == "/healthcheck"
            && (req.method() == Method::GET || req.method() == Method::HEAD)
        {
            let mut resp = Response::new(full("OK"));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(2));
            return Box::pin(async move { resp });
        }
        self.next.call(req)
    }
}
