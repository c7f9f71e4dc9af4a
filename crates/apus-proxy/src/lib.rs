//! apus-proxy: Swift's public API (`/v1/<account>[/<container>[/<object>]]`,
//! `/auth/v1.0`, `/info`, `/healthcheck`) in front of the storage servers.
//!
//! It owns:
//! - [`service`]: the pipeline's shape ([`Service`], [`Env`], the
//!   authorization hook) and Swift's default error bodies;
//! - [`pipeline`]: the pipeline as data, Swift's `[pipeline:main]`: which
//!   names exist, Swift's required filters and where they go, building
//!   the stages and their `/info` entries;
//! - the middleware, one module each, in default pipeline order: [`catch_errors`]
//!   (transaction ids, request logging), [`gatekeeper`] (strips backend
//!   and system headers from clients), [`healthcheck`], [`tempauth`],
//!   [`console`] (the web console's page and its cluster state),
//!   [`copy`] (COPY and `X-Copy-From` as GET + PUT), [`dlo`] (dynamic
//!   large objects);
//! - the controllers at the end of the pipeline ([`app`]): ring lookups,
//!   fan-out to primaries and handoffs, Swift's quorum rules, error
//!   limiting of failing nodes, account/container info caching;
//! - [`metrics`]: the proxy's Prometheus figures (client requests by
//!   type and policy, first byte, body bytes, backend failures);
//! - [`console_cluster`]: the web console's cluster page, gathered from
//!   the storage servers' recon and the proxy's figures.
//!
//! Invariant: the proxy reaches storage only over HTTP, through
//! `apus-http`'s backend client and `apus-proto`'s protocol; it never
//! depends on `apus-server`, `apus-db` or `apus-diskfile`.

// Handlers return early with a ready response; boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod account;
pub mod acl;
pub mod app;
pub mod backend;
pub mod bulk;
pub mod catch_errors;
pub mod config;
pub mod console;
pub mod console_cluster;
pub mod container;
pub mod copy;
pub mod cors;
pub mod crossdomain;
pub mod dlo;
pub mod domain_remap;
pub mod etag_quoter;
pub mod formpost;
pub mod gatekeeper;
pub mod healthcheck;
pub mod info;
pub mod keystone;
pub mod listing_formats;
pub mod metrics;
pub mod name_check;
pub mod object;
pub mod object_versioning;
pub mod pipeline;
pub mod quotas;
pub mod ratelimit;
pub mod read_only;
pub mod s3api;
mod segments;
pub mod service;
pub mod slo;
pub mod staticweb;
pub mod symlink;
pub mod tar;
pub mod tempauth;
pub mod tempurl;
pub mod versioned_writes;

use std::sync::Arc;

use apus_http::{incoming, Handler};
use http::{Request, Response};
use hyper::body::Incoming;

pub use config::{Policy, ProxyConfig, TempAuthConfig, TempAuthUser};
pub use pipeline::{FilterContext, Pipeline, PipelineError};
pub use service::{Env, Req, Resp, Service, SharedService};

/// The whole proxy: the pipeline built from a [`ProxyConfig`], served by
/// `apus_http::serve`.
pub struct Proxy {
    pipeline: SharedService,
    metrics: Option<Arc<metrics::ProxyMetrics>>,
}

impl Proxy {
    /// The pipeline `config.pipeline` names, in front of the controllers.
    pub fn new(config: ProxyConfig) -> Self {
        let pipeline = config.pipeline.clone();
        Self::with_pipeline(config, &pipeline)
    }

    /// Swift's internal-client pipeline, for daemons acting for the
    /// cluster itself (the expirer): errors caught, no gatekeeper, no
    /// authentication, no DLO or COPY.
    pub fn internal(config: ProxyConfig) -> Self {
        Self::with_pipeline(config, &Pipeline::internal())
    }

    fn with_pipeline(mut config: ProxyConfig, pipeline: &Pipeline) -> Self {
        config.pipeline = pipeline.clone();
        let metrics = config.metrics.clone();
        let config = Arc::new(config);
        let app = Arc::new(app::App::new(config.clone()));
        let ctx = FilterContext {
            config,
            info: app.clone(),
        };
        Proxy {
            pipeline: pipeline.build(&ctx, app),
            metrics,
        }
    }

    /// The pipeline, for callers that feed it requests directly.
    pub fn pipeline(&self) -> SharedService {
        self.pipeline.clone()
    }
}

impl Handler for Proxy {
    async fn call(&self, req: Request<Incoming>) -> Response<apus_http::Body> {
        let (parts, body) = req.into_parts();
        let Some(m) = &self.metrics else {
            let req = Request::from_parts(parts, incoming(body));
            return self.pipeline.call(req).await;
        };
        let started = std::time::Instant::now();
        let kind = metrics::RequestType::of_path(parts.uri.path());
        let method = parts.method.clone();
        let req = Request::from_parts(parts, m.count_request_body(kind, incoming(body)));
        let resp = self.pipeline.call(req).await;
        m.observe(kind, &method, started, resp)
    }
}
