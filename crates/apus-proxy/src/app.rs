//! The end of the pipeline (Swift's proxy `Application`): validates the
//! path, routes `/v1/<account>[/<container>[/<object>]]` to the account,
//! container and object controllers, runs the first authorization check,
//! and serves `/info`.

use std::sync::Arc;

use apus_http::{full, BackendClient, ClientConfig};
use apus_proto::constraints::NameKind;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::backend::{Backend, ErrorLimiter, LimiterConfig, NodePlan};
use crate::config::ProxyConfig;
use crate::info::{AccountInfo, ContainerInfo, InfoCache, InfoLookup};
use crate::service::{
    env, error_response, header_str, header_text, AuthRequest, BoxFuture, Env, Req, Resp, Service,
};

/// Headers only an account's owner may set or see.
pub const SWIFT_OWNER_HEADERS: &[&str] = &[
    "x-container-read",
    "x-container-write",
    "x-container-sync-key",
    "x-container-sync-to",
    "x-account-meta-temp-url-key",
    "x-account-meta-temp-url-key-2",
    "x-container-meta-temp-url-key",
    "x-container-meta-temp-url-key-2",
    "x-account-access-control",
];

pub struct App {
    pub(crate) config: Arc<ProxyConfig>,
    pub(crate) backend: Backend,
    pub(crate) accounts: InfoCache<AccountInfo>,
    pub(crate) containers: InfoCache<ContainerInfo>,
    info_json: String,
}

/// A parsed client request path.
#[derive(Clone, Debug)]
pub struct Target {
    pub account: String,
    pub container: Option<String>,
    pub object: Option<String>,
}

impl Target {
    /// `/<account>[/<container>[/<object>]]`, unquoted.
    pub fn path(&self) -> String {
        let mut p = format!("/{}", self.account);
        if let Some(c) = &self.container {
            p.push('/');
            p.push_str(c);
            if let Some(o) = &self.object {
                p.push('/');
                p.push_str(o);
            }
        }
        p
    }
}

/// The controller a path leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Account,
    Container,
    Object,
}

impl Kind {
    fn allowed_methods(self) -> &'static str {
        match self {
            Kind::Account => "DELETE, GET, HEAD, OPTIONS, POST, PUT",
            Kind::Container => "DELETE, GET, HEAD, OPTIONS, POST, PUT",
            Kind::Object => "DELETE, GET, HEAD, OPTIONS, POST, PUT",
        }
    }

    /// Methods whose denial waits until the container's ACLs are known.
    fn delays_denial(self, method: &Method) -> bool {
        match self {
            Kind::Account => false,
            Kind::Container => *method == Method::GET || *method == Method::HEAD,
            Kind::Object => true,
        }
    }
}

impl App {
    pub fn new(config: Arc<ProxyConfig>) -> Self {
        let client = BackendClient::new(ClientConfig {
            connect_timeout: config.conn_timeout,
            node_timeout: config.node_timeout,
            ..ClientConfig::default()
        })
        .with_local(config.local_nodes.clone());
        let uploads = apus_http::expect::UploadPool::new(
            client.config().pool_max_idle_per_host,
            client.config().pool_idle_timeout,
        )
        .with_local(config.local_nodes.clone());
        let limiter = Arc::new(ErrorLimiter::new(LimiterConfig {
            limit: config.error_suppression_limit,
            interval: config.error_suppression_interval,
            probe_interval: config.error_suppression_probe_interval,
            // Twice the wait after which reads move on: a node busy
            // under load answers something within it.
            stall_timeout: config.timing.concurrency_timeout * 2,
        }));
        if let Some(m) = &config.metrics {
            // Set once: the internal pipeline's proxy shares the figures.
            m.attach_limiter(limiter.clone());
        }
        let backend = Backend {
            client,
            uploads,
            limiter,
            timing: config.timing,
        };
        let info_json = crate::info::capabilities(&config).to_string();
        App {
            accounts: InfoCache::new(config.recheck_account_existence, 100_000),
            containers: InfoCache::new(config.recheck_container_existence, 100_000),
            backend,
            info_json,
            config,
        }
    }

    pub(crate) fn account_plan(&self, account: &str) -> NodePlan {
        let ring = self.config.account_ring.get();
        let part = ring.partition(&self.config.hash, account, None, None);
        NodePlan::new(&ring, part, &self.backend.limiter)
    }

    pub(crate) fn container_plan(&self, account: &str, container: &str) -> NodePlan {
        let ring = self.config.container_ring.get();
        let part = ring.partition(&self.config.hash, account, Some(container), None);
        NodePlan::new(&ring, part, &self.backend.limiter)
    }

    /// Swift's `get_account_info`: cached, else a HEAD to the account
    /// servers. A missing account has status 404; unknown, 503.
    pub async fn account_info(&self, env: &Env, account: &str) -> AccountInfo {
        if let Some(info) = self.accounts.get(account) {
            return info;
        }
        let plan = self.account_plan(account);
        let path = format!("/{account}");
        let headers = info_headers(env);
        let resp = self
            .backend
            .read(&plan, Method::HEAD, &path, None, headers, false)
            .await;
        let status = resp.status().as_u16();
        let info = AccountInfo::from_headers(status, resp.headers());
        if status == 404 || info.exists() {
            self.accounts.put(account, info.clone());
        }
        info
    }

    /// Swift's `get_container_info`: cached, else a HEAD to the container
    /// servers. A missing container has status 404; unknown, 503.
    pub async fn container_info(&self, env: &Env, account: &str, container: &str) -> ContainerInfo {
        let key = format!("{account}/{container}");
        if let Some(info) = self.containers.get(&key) {
            return info;
        }
        let plan = self.container_plan(account, container);
        let path = format!("/{account}/{container}");
        let headers = info_headers(env);
        let resp = self
            .backend
            .read(&plan, Method::HEAD, &path, None, headers, false)
            .await;
        let status = resp.status().as_u16();
        let info = ContainerInfo::from_headers(status, resp.headers());
        if status == 404 || info.exists() {
            self.containers.put(&key, info.clone());
        }
        info
    }

    fn info(&self, method: &Method) -> Resp {
        match *method {
            Method::GET | Method::HEAD => {
                let mut resp = Response::new(full(self.info_json.clone()));
                let h = resp.headers_mut();
                h.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=UTF-8"),
                );
                h.insert(
                    http::header::CONTENT_LENGTH,
                    HeaderValue::from(self.info_json.len()),
                );
                resp
            }
            Method::OPTIONS => allow_response("GET, HEAD, OPTIONS"),
            _ => {
                let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED, None);
                resp.headers_mut()
                    .insert("allow", HeaderValue::from_static("GET, HEAD, OPTIONS"));
                resp
            }
        }
    }

    async fn handle(&self, mut req: Req) -> Resp {
        let raw_path = req.uri().path().to_string();
        // Names in the reserved namespace (starting with NUL) are for the
        // cluster's own middleware, which says so with this header; the
        // gatekeeper strips it from clients.
        let allow_reserved = header_str(req.headers(), ALLOW_RESERVED_NAMES)
            .is_some_and(apus_proto::headers::is_true);
        let path = match apus_proto::percent_decode_internal(&raw_path) {
            Ok(p) if allow_reserved || !p.contains('\0') => p,
            _ => {
                return error_response(
                    StatusCode::PRECONDITION_FAILED,
                    Some("Invalid UTF8 or contains NULL"),
                )
            }
        };
        if path == "/info" {
            return self.info(req.method());
        }
        let parts = match apus_proto::split_path(&path, 1, 4, true) {
            Ok(p) => p,
            Err(_) => return error_response(StatusCode::NOT_FOUND, None),
        };
        let version = parts[0].clone().unwrap_or_default();
        let non_empty = |p: &Option<String>| p.clone().filter(|s| !s.is_empty());
        let (account, container, object) = (
            non_empty(&parts[1]),
            non_empty(&parts[2]),
            non_empty(&parts[3]),
        );
        if account.is_some() && version != "v1" && version != "v1.0" {
            return error_response(StatusCode::BAD_REQUEST, None);
        }
        if (object.is_some() && container.is_none()) || (container.is_some() && account.is_none()) {
            return error_response(StatusCode::NOT_FOUND, None);
        }
        let Some(account) = account else {
            return error_response(StatusCode::PRECONDITION_FAILED, Some("Bad URL"));
        };
        let target = Target {
            account,
            container,
            object,
        };
        let kind = match (&target.container, &target.object) {
            (None, _) => Kind::Account,
            (Some(_), None) => Kind::Container,
            (Some(_), Some(_)) => Kind::Object,
        };
        if let Some(cl) = req.headers().get(http::header::CONTENT_LENGTH) {
            let valid = cl
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some();
            if !valid {
                return error_response(StatusCode::BAD_REQUEST, Some("Invalid Content-Length"));
            }
        }
        if let Some(te) = req.headers().get(http::header::TRANSFER_ENCODING) {
            let chunked = te
                .to_str()
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .all(|t| t.eq_ignore_ascii_case("chunked") || t.is_empty())
                })
                .unwrap_or(false);
            if !chunked {
                return error_response(StatusCode::NOT_IMPLEMENTED, None);
            }
        }
        let method = req.method().clone();
        let known = matches!(
            method,
            Method::GET
                | Method::HEAD
                | Method::PUT
                | Method::POST
                | Method::DELETE
                | Method::OPTIONS
        );
        // Swift's private methods: UPDATE (rows merged into a container,
        // how the expirer's queue is fed) only for the cluster's own
        // middleware, which says so with a header clients cannot send.
        let private = method.as_str() == "UPDATE"
            && matches!(kind, Kind::Container)
            && header_str(req.headers(), "x-backend-allow-private-methods")
                .is_some_and(apus_proto::headers::is_true);
        if !known && !private {
            let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED, None);
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static(kind.allowed_methods()));
            return resp;
        }
        let mut env = env(&req);
        env.allow_reserved_names = allow_reserved;
        if let Some(auth) = env.authorize.clone() {
            let check = AuthRequest {
                method: &method,
                path: &path,
                headers: req.headers(),
                env: &env,
                acl: None,
            };
            match auth.authorize(check).await {
                Ok(grant) => {
                    env.authorize = None;
                    env.swift_owner = env.swift_owner || grant.owner;
                }
                Err(denial) => {
                    if !kind.delays_denial(&method) {
                        return denial;
                    }
                }
            }
        }
        req.extensions_mut().insert(env.clone());
        // CORS applies to containers and what is in them (Swift's
        // `cors_validation`), by the container's settings.
        let origin = header_text(req.headers(), "origin").filter(|o| !o.is_empty());
        let cors_container = target.container.clone().filter(|_| origin.is_some());
        if method == Method::OPTIONS {
            if let (Some(origin), Some(container)) = (&origin, &cors_container) {
                let info = self.container_info(&env, &target.account, container).await;
                let cors = crate::cors::ContainerCors::from_headers(&info.headers);
                return crate::cors::preflight(
                    kind.allowed_methods(),
                    origin,
                    header_str(req.headers(), "access-control-request-method"),
                    header_str(req.headers(), "access-control-request-headers"),
                    &cors,
                    &self.config.cors,
                );
            }
            return allow_response(kind.allowed_methods());
        }
        let account = target.account.clone();
        let cors_env = env.clone();
        let ctx = Ctx {
            app: self,
            env,
            target,
        };
        let mut resp = match kind {
            Kind::Account => ctx.account(req).await,
            Kind::Container => ctx.container(req).await,
            Kind::Object => ctx.object(req).await,
        };
        if let (Some(origin), Some(container)) = (&origin, &cors_container) {
            let info = self.container_info(&cors_env, &account, container).await;
            let cors = crate::cors::ContainerCors::from_headers(&info.headers);
            crate::cors::decorate(&mut resp, origin, &cors, &self.config.cors);
        }
        resp
    }
}

fn allow_response(methods: &'static str) -> Resp {
    let mut resp = Response::new(apus_http::empty());
    resp.headers_mut()
        .insert("allow", HeaderValue::from_static(methods));
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

impl Service for App {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        Box::pin(self.handle(req))
    }
}

impl InfoLookup for App {
    fn account_info<'a>(&'a self, env: &'a Env, account: &'a str) -> BoxFuture<'a, AccountInfo> {
        Box::pin(App::account_info(self, env, account))
    }

    fn container_info<'a>(
        &'a self,
        env: &'a Env,
        account: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, ContainerInfo> {
        Box::pin(App::container_info(self, env, account, container))
    }
}

/// One request on its way through a controller.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub env: Env,
    pub target: Target,
}

impl Ctx<'_> {
    /// The delayed authorization check, with the ACL that applies now.
    pub async fn authorize(&mut self, req: &Req, acl: Option<&str>) -> Result<(), Resp> {
        let Some(auth) = self.env.authorize.clone() else {
            return Ok(());
        };
        let path = format!("/v1{}", self.target.path());
        let check = AuthRequest {
            method: req.method(),
            path: &path,
            headers: req.headers(),
            env: &self.env,
            acl,
        };
        let grant = auth.authorize(check).await?;
        self.env.authorize = None;
        self.env.swift_owner = self.env.swift_owner || grant.owner;
        Ok(())
    }

    /// Swift's name-length check of the target's `kind` name (in
    /// characters), as the 400 Swift answers.
    pub fn check_name_length(&self, kind: NameKind) -> Result<(), Resp> {
        let t = &self.target;
        let name = match kind {
            NameKind::Account => Some(t.account.as_str()),
            NameKind::Container => t.container.as_deref(),
            NameKind::Object => t.object.as_deref(),
        };
        apus_proto::constraints::check_name_length(kind, &t.account, name.unwrap_or(""))
            .map_err(crate::account::constraint_response)
    }

    /// Headers every backend request carries.
    pub fn base_headers(&self, timestamp: Option<&str>) -> HeaderMap {
        backend_headers(&self.env, timestamp)
    }
}

/// Headers every backend request made for `env` carries.
pub fn backend_headers(env: &Env, timestamp: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&env.trans_id) {
        h.insert("x-trans-id", v.clone());
        h.insert("x-openstack-request-id", v);
    }
    if let Some(ts) = timestamp {
        if let Ok(v) = HeaderValue::from_str(ts) {
            h.insert("x-timestamp", v);
        }
    }
    h.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static("proxy-server apus"),
    );
    if env.allow_reserved_names {
        h.insert(ALLOW_RESERVED_NAMES, HeaderValue::from_static("true"));
    }
    h
}

/// The headers of an info lookup: reserved names are always allowed
/// there, as in Swift, since only the cluster sees what it finds.
fn info_headers(env: &Env) -> HeaderMap {
    let mut h = backend_headers(env, None);
    h.insert(ALLOW_RESERVED_NAMES, HeaderValue::from_static("true"));
    h
}

/// The header by which middleware reach names in the reserved namespace.
pub const ALLOW_RESERVED_NAMES: &str = "x-backend-allow-reserved-names";

/// Drops owner-only headers from a response for callers that do not own
/// the account.
pub fn strip_owner_headers(headers: &mut HeaderMap) {
    for name in SWIFT_OWNER_HEADERS {
        headers.remove(*name);
    }
}
