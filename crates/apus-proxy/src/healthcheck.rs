//! Swift's `healthcheck`: `GET /healthcheck` answers `200 OK` before any
//! authentication, for load balancers.

use apus_http::healthcheck::{answer, is_healthcheck};

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
        if is_healthcheck(req.method(), req.uri().path()) {
            let resp = answer();
            return Box::pin(async move { resp });
        }
        self.next.call(req)
    }
}
