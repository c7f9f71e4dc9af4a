//! Swift's `read_only` middleware: the whole cluster (`read_only`) or one
//! account (`X-Account-Sysmeta-Read-Only`, which wins either way) refuses
//! writes (PUT, POST, COPY, and DELETE unless `allow_deletes`) with 405
//! `Writes are disabled for this account.`

use std::sync::Arc;

use http::StatusCode;

use crate::info::InfoLookup;
use crate::service::{
    env, error_response, header_str, BoxFuture, Req, Resp, Service, SharedService,
};

/// Swift's `[filter:read_only]` settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOnlyConfig {
    pub read_only: bool,
    pub allow_deletes: bool,
}

pub struct ReadOnly {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
    config: ReadOnlyConfig,
}

impl ReadOnly {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>, config: ReadOnlyConfig) -> Self {
        ReadOnly { next, info, config }
    }
}

impl Service for ReadOnly {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let writes = match req.method().as_str() {
            "PUT" | "POST" | "COPY" => true,
            "DELETE" => !self.config.allow_deletes,
            _ => false,
        };
        if !writes {
            return self.next.call(req);
        }
        let account = apus_proto::percent_decode_internal(req.uri().path())
            .ok()
            .and_then(|p| apus_proto::split_path(&p, 2, 4, true).ok())
            .filter(|p| matches!(p[0].as_deref(), Some("v1" | "v1.0")))
            .and_then(|p| p[1].clone());
        let Some(mut account) = account else {
            return self.next.call(req);
        };
        if req.method().as_str() == "COPY" {
            if let Some(dest) = header_str(req.headers(), "destination-account") {
                account = crate::dlo::util::unquote(dest);
            }
        }
        Box::pin(async move {
            let info = self
                .info
                .account_info(&env(&req).subrequest("RO"), &account)
                .await;
            let read_only = match header_str(&info.headers, "x-account-sysmeta-read-only") {
                Some(v) if !v.is_empty() => apus_proto::headers::is_true(v),
                _ => self.config.read_only,
            };
            if read_only {
                return error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Some("Writes are disabled for this account."),
                );
            }
            self.next.call(req).await
        })
    }
}
