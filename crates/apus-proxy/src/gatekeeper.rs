//! Swift's `gatekeeper`: clients may neither set nor see the headers that
//! only the cluster itself uses (`X-Backend-*`, system and transient
//! system metadata). Subrequests made by later middleware bypass this.

use http::HeaderMap;

use crate::service::{BoxFuture, Req, Resp, Service, SharedService};

pub struct Gatekeeper {
    next: SharedService,
}

impl Gatekeeper {
    pub fn new(next: SharedService) -> Self {
        Gatekeeper { next }
    }
}

/// Headers reserved to the cluster, in either direction.
pub fn is_reserved_header(name: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "x-backend-",
        "x-object-sysmeta-",
        "x-container-sysmeta-",
        "x-account-sysmeta-",
        "x-object-transient-sysmeta-",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

fn strip_reserved(headers: &mut HeaderMap) {
    let reserved: Vec<_> = headers
        .keys()
        .filter(|k| is_reserved_header(k.as_str()))
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(&name);
    }
}

impl Service for Gatekeeper {
    fn call(&self, mut req: Req) -> BoxFuture<'_, Resp> {
        strip_reserved(req.headers_mut());
        // Swift's `shunt_inbound_x_timestamp`: a client does not choose the
        // timestamp its write gets; it is kept aside for the backend.
        if let Some(ts) = req.headers_mut().remove("x-timestamp") {
            req.headers_mut()
                .insert("x-backend-inbound-x-timestamp", ts);
        }
        Box::pin(async move {
            let mut resp = self.next.call(req).await;
            strip_reserved(resp.headers_mut());
            resp
        })
    }
}
