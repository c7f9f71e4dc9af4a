//! The end of the pipeline: routes `/v1/...` to the account, container
//! and object controllers and serves `/info`.

use std::sync::Arc;

use http::StatusCode;

use crate::config::ProxyConfig;
use crate::service::{error_response, BoxFuture, Req, Resp, Service};

pub struct App {
    #[allow(dead_code)]
    config: Arc<ProxyConfig>,
}

impl App {
    pub fn new(config: Arc<ProxyConfig>) -> Self {
        App { config }
    }
}

impl Service for App {
    fn call(&self, _req: Req) -> BoxFuture<'_, Resp> {
        Box::pin(async move { error_response(StatusCode::NOT_FOUND, None) })
    }
}
