//! The account server: Swift's backend protocol over [`AccountBroker`].
//!
//! - `PUT /d/p/a` creates (201) or updates (202) an account; 403 with
//!   `X-Account-Status: Deleted` while it is marked deleted.
//! - `PUT /d/p/a/c` records a container row reported by a container server
//!   or updater (201, or 204 when the report is a deletion), with its
//!   counts' stats timestamp from `X-Apus-Stats-Timestamp`, or this
//!   server's clock for a sender without it (Swift's).
//! - `DELETE /d/p/a` marks the account deleted (204; 404 if it was not
//!   there). Emptying it is the reaper's job, as in Swift.
//! - `HEAD`/`GET`: stats (also per storage policy) and container listings.
//! - `POST`: metadata.
//!
//! Missing accounts answer 404; deleted ones 404 with
//! `X-Account-Status: Deleted`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apus_core::Timestamp;
use apus_db::{
    AccountBroker, AccountInfo, AccountPolicyStat, BrokerOptions, ContainerEntry, ContainerRecord,
    DbError, ListParams, Listing, Metadata,
};
use apus_proto::account_update::{
    X_APUS_STATS_TIMESTAMP, X_BYTES_USED, X_DELETE_TIMESTAMP, X_OBJECT_COUNT, X_PUT_TIMESTAMP,
};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::container::{options_response, writable_drive};
use crate::db_common::{
    blocking, bytes_response, check_drive, db_path, decode_path, header_str, is_sys_or_user_meta,
    json_str, listing_format, metadata_value, parse_path, put_header, req_timestamp,
    status_response, title_case, true_value, xml_attr, xml_text, DbBody, DbKind, DbPath,
    DbServerConfig, HttpError, HttpResult, ListingFormat, Query, ServerHandle,
    AUTO_CREATE_ACCOUNT_PREFIX, LISTING_LIMIT, XML_DECLARATION,
};

/// The account server.
pub struct AccountServer {
    cfg: Arc<DbServerConfig>,
}

/// Everything HEAD and GET report about an account.
struct AccountStats {
    info: AccountInfo,
    policies: Vec<(i64, AccountPolicyStat)>,
    metadata: Metadata,
}

/// Whether a missing-or-deleted account is explicitly marked deleted.
enum State {
    Missing,
    Deleted { status_deleted: bool },
}

fn usable_drive(cfg: &DbServerConfig, device: &str) -> HttpResult<PathBuf> {
    check_drive(&cfg.devices, device, cfg.mount_check)
        .ok_or_else(|| HttpError::insufficient_storage(device))
}

impl AccountServer {
    pub fn new(config: DbServerConfig) -> Self {
        AccountServer {
            cfg: Arc::new(config),
        }
    }

    pub fn config(&self) -> &DbServerConfig {
        &self.cfg
    }

    /// Serves on `listener` (apus-http's bootstrap) on a new task.
    pub fn spawn(self: Arc<Self>, listener: TcpListener) -> std::io::Result<ServerHandle> {
        ServerHandle::spawn(listener, self)
    }

    /// Binds `addr` (port 0 for any) and serves on a new task.
    pub async fn bind(self, addr: SocketAddr) -> std::io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr).await?;
        Arc::new(self).spawn(listener)
    }

    /// Answers one backend request (the body is not read).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<DbBody> {
        if apus_http::healthcheck::is_healthcheck(req.method(), req.uri().path()) {
            return apus_http::healthcheck::answer();
        }
        if let Some(recon) = &self.cfg.recon {
            if crate::recon::is_recon_path(req.uri().path()) {
                return crate::recon::answer(recon.clone(), req.method(), req.uri().path()).await;
            }
        }
        let method = req.method().clone();
        let resp = match self.dispatch(&req).await {
            Ok(r) => r,
            Err(e) => e.into_response(&method),
        };
        tracing::debug!(%method, path = %req.uri().path(), status = resp.status().as_u16(), "account request");
        resp
    }

    async fn dispatch<B>(&self, req: &Request<B>) -> HttpResult<Response<DbBody>> {
        let path = decode_path(req.uri().path(), "Invalid UTF8")?;
        let headers = req.headers();
        let query = Query::parse(req.uri().query());
        match *req.method() {
            Method::PUT => self.put(&path, headers).await,
            Method::DELETE => self.delete(&path, headers).await,
            Method::HEAD => self.head(&path, headers, &query).await,
            Method::GET => self.get(&path, headers, &query).await,
            Method::POST => self.post(&path, headers).await,
            Method::OPTIONS => Ok(options_response("account-server")),
            _ => Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED)),
        }
    }

    fn broker_path(&self, p: &DbPath) -> PathBuf {
        let hash = self.cfg.hash.hash_path(&p.account, None, None);
        db_path(
            &self.cfg.devices,
            &p.device,
            DbKind::Account,
            &p.partition,
            &hash,
        )
    }

    fn metadata_updates(headers: &HeaderMap, ts: Timestamp) -> HttpResult<Metadata> {
        let mut md = Metadata::new();
        let mut removals = Vec::new();
        for (name, value) in headers {
            let n = name.as_str();
            if is_sys_or_user_meta("account", n) {
                md.insert(title_case(n), (metadata_value(value)?, ts));
            } else if let Some(rest) = n.strip_prefix("x-remove-") {
                let target = format!("x-{rest}");
                if is_sys_or_user_meta("account", &target) {
                    removals.push(title_case(&target));
                }
            }
        }
        for key in removals {
            md.entry(key).or_insert((String::new(), ts));
        }
        Ok(md)
    }

    // ---- PUT ----

    async fn put(&self, path: &str, headers: &HeaderMap) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 3, 4, false)?;
        let cfg = Arc::clone(&self.cfg);
        let device = p.device.clone();
        blocking(move || writable_drive(&cfg, &device).map(|_| ())).await?;
        if p.container.is_some() {
            self.put_container(p, headers).await
        } else {
            self.put_account(p, headers).await
        }
    }

    async fn put_container(&self, p: DbPath, headers: &HeaderMap) -> HttpResult<Response<DbBody>> {
        let ts = if headers.contains_key("x-timestamp") {
            req_timestamp(headers)?
        } else {
            Timestamp::now()
        };
        let policy = match header_str(headers, "x-backend-storage-policy-index") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map_err(|_| HttpError::bad_request("Invalid X-Backend-Storage-Policy-Index"))?,
        };
        let ts_header = |name: &str| -> HttpResult<Timestamp> {
            let v = header_str(headers, name)
                .ok_or_else(|| HttpError::bad_request(format!("Missing {name} header")))?;
            if v.is_empty() {
                return Ok(Timestamp::ZERO);
            }
            Timestamp::parse(v)
                .map_err(|_| HttpError::bad_request(format!("Invalid {name} header")))
        };
        let int_header = |name: &str| -> HttpResult<i64> {
            header_str(headers, name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| HttpError::bad_request(format!("Missing or invalid {name} header")))
        };
        let put_ts = ts_header(X_PUT_TIMESTAMP)?;
        let delete_ts = ts_header(X_DELETE_TIMESTAMP)?;
        // A sender without it (Swift's) read the counts shortly before
        // sending: the time of receipt stands in.
        let stats_ts = match header_str(headers, X_APUS_STATS_TIMESTAMP) {
            None => Timestamp::now(),
            Some(v) => Timestamp::parse(v.trim())
                .map_err(|_| HttpError::bad_request("Invalid X-Apus-Stats-Timestamp header"))?,
        };
        let record = ContainerRecord::new(
            p.container.as_deref().unwrap_or(""),
            put_ts,
            delete_ts,
            int_header(X_OBJECT_COUNT)?,
            int_header(X_BYTES_USED)?,
            policy,
        )
        .with_stats_timestamp(stats_ts);
        let override_deleted = header_str(headers, "x-account-override-deleted")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let opts = if headers.contains_key("x-trans-id") {
            BrokerOptions {
                pending_timeout: Duration::from_secs(3),
                ..BrokerOptions::default()
            }
        } else {
            BrokerOptions::default()
        };
        let autocreate = p.account.starts_with(AUTO_CREATE_ACCOUNT_PREFIX);
        let db = self.broker_path(&p);
        blocking(move || {
            let broker = if autocreate && !db.exists() {
                match AccountBroker::create(&db, &p.account, ts, opts.clone()) {
                    Ok(b) => b,
                    Err(DbError::AlreadyExists { .. }) => AccountBroker::open(&db, opts)?,
                    Err(e) => return Err(e.into()),
                }
            } else if !db.exists() {
                return Err(HttpError::new(StatusCode::NOT_FOUND));
            } else {
                AccountBroker::open(&db, opts)?
            };
            if !override_deleted && broker.is_deleted()? {
                return Err(HttpError::new(StatusCode::NOT_FOUND));
            }
            broker.put_container(record)?;
            Ok(())
        })
        .await?;
        let status = if delete_ts > put_ts {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::CREATED
        };
        Ok(status_response(status, &Method::PUT, None))
    }

    async fn put_account(&self, p: DbPath, headers: &HeaderMap) -> HttpResult<Response<DbBody>> {
        let ts = req_timestamp(headers)?;
        let metadata = Self::metadata_updates(headers, ts)?;
        let db = self.broker_path(&p);
        let created = blocking(move || {
            let opts = BrokerOptions::default();
            let (broker, created) = if !db.exists() {
                match AccountBroker::create(&db, &p.account, ts, opts.clone()) {
                    Ok(b) => (b, true),
                    Err(DbError::AlreadyExists { .. }) => (AccountBroker::open(&db, opts)?, false),
                    Err(e) => return Err(e.into()),
                }
            } else {
                let broker = AccountBroker::open(&db, opts)?;
                if broker.is_status_deleted()? {
                    return Err(
                        HttpError::with_body(StatusCode::FORBIDDEN, "Recently deleted")
                            .header(http::HeaderName::from_static("x-account-status"), "Deleted"),
                    );
                }
                let created = broker.is_deleted()?;
                broker.update_put_timestamp(ts)?;
                if broker.is_deleted()? {
                    return Err(HttpError::new(StatusCode::CONFLICT));
                }
                (broker, created)
            };
            if !metadata.is_empty() {
                broker.update_metadata(&metadata, true)?;
            }
            Ok(created)
        })
        .await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        Ok(status_response(status, &Method::PUT, None))
    }

    // ---- DELETE ----

    async fn delete(&self, path: &str, headers: &HeaderMap) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 3, 3, false)?;
        let cfg = Arc::clone(&self.cfg);
        let device = p.device.clone();
        blocking(move || usable_drive(&cfg, &device).map(|_| ())).await?;
        let ts = req_timestamp(headers)?;
        let db = self.broker_path(&p);
        let status_deleted = blocking(move || {
            if !db.exists() {
                return Ok(Err(State::Missing));
            }
            let broker = AccountBroker::open(&db, BrokerOptions::default())?;
            if broker.is_deleted()? {
                return Ok(Err(State::Deleted {
                    status_deleted: broker.is_status_deleted()?,
                }));
            }
            broker.delete_db(ts)?;
            Ok(Ok(broker.is_status_deleted()?))
        })
        .await?;
        match status_deleted {
            Ok(marked) => Ok(deleted_response(
                StatusCode::NO_CONTENT,
                &Method::DELETE,
                marked,
            )),
            Err(state) => Ok(state_response(state, &Method::DELETE)),
        }
    }

    // ---- HEAD / GET ----

    fn read_opts() -> BrokerOptions {
        BrokerOptions {
            pending_timeout: Duration::from_millis(100),
            stale_reads_ok: true,
            ..BrokerOptions::default()
        }
    }

    /// Opens the account for reading: its stats, or why there are none.
    async fn read_stats(
        &self,
        p: &DbPath,
        listing: Option<ListParams>,
    ) -> HttpResult<Result<(AccountStats, Vec<Listing<ContainerEntry>>), State>> {
        let db = self.broker_path(p);
        let device = p.device.clone();
        let cfg = Arc::clone(&self.cfg);
        blocking(move || {
            usable_drive(&cfg, &device)?;
            if !db.exists() {
                return Ok(Err(State::Missing));
            }
            let broker = AccountBroker::open(&db, Self::read_opts())?;
            if broker.is_deleted()? {
                return Ok(Err(State::Deleted {
                    status_deleted: broker.is_status_deleted()?,
                }));
            }
            let info = broker.get_info()?;
            let policies = broker.get_policy_stats()?.into_iter().collect();
            let metadata = broker.metadata()?;
            let list = match listing {
                Some(params) => broker.list_containers(&params)?,
                None => Vec::new(),
            };
            Ok(Ok((
                AccountStats {
                    info,
                    policies,
                    metadata,
                },
                list,
            )))
        })
        .await
    }

    fn stats_headers(&self, h: &mut HeaderMap, stats: &AccountStats) {
        let i = &stats.info;
        put_header(
            h,
            "x-account-container-count",
            &i.container_count.to_string(),
        );
        put_header(h, "x-account-object-count", &i.object_count.to_string());
        put_header(h, "x-account-bytes-used", &i.bytes_used.to_string());
        put_header(h, "x-timestamp", &i.created_at.normal());
        put_header(h, "x-put-timestamp", &i.put_timestamp.normal());
        for (idx, st) in &stats.policies {
            let Some(policy) = self.cfg.policies.get(*idx) else {
                continue;
            };
            let prefix = format!("X-Account-Storage-Policy-{}", policy.name);
            put_header(
                h,
                &format!("{prefix}-Object-Count"),
                &st.object_count.to_string(),
            );
            put_header(
                h,
                &format!("{prefix}-Bytes-Used"),
                &st.bytes_used.to_string(),
            );
            put_header(
                h,
                &format!("{prefix}-Container-Count"),
                &st.container_count.to_string(),
            );
        }
        for (key, (value, _)) in &stats.metadata {
            if !value.is_empty() {
                put_header(h, key, value);
            }
        }
    }

    async fn head(
        &self,
        path: &str,
        headers: &HeaderMap,
        query: &Query,
    ) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 3, 3, false)?;
        let format = listing_format(query, headers)?;
        let (stats, _) = match self.read_stats(&p, None).await? {
            Ok(s) => s,
            Err(state) => return Ok(state_response(state, &Method::HEAD)),
        };
        let mut resp = status_response(StatusCode::NO_CONTENT, &Method::HEAD, None);
        let h = resp.headers_mut();
        self.stats_headers(h, &stats);
        put_header(
            h,
            "content-type",
            &format!("{}; charset=utf-8", format.content_type()),
        );
        h.insert(CONTENT_LENGTH, HeaderValue::from(0));
        Ok(resp)
    }

    async fn get(
        &self,
        path: &str,
        headers: &HeaderMap,
        query: &Query,
    ) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 3, 3, false)?;
        let prefix = query.get("prefix")?;
        let delimiter = query.get("delimiter")?;
        let reverse = true_value(query.get("reverse")?.as_deref());
        let limit = query.limit(LISTING_LIMIT)?;
        let marker = query.get("marker")?.unwrap_or_default();
        let end_marker = query.get("end_marker")?.unwrap_or_default();
        let format = listing_format(query, headers)?;
        let params = ListParams {
            limit,
            marker,
            end_marker,
            prefix,
            delimiter,
            path: None,
            reverse,
            allow_reserved: true_value(header_str(headers, "x-backend-allow-reserved-names")),
        };
        let (stats, listing) = match self.read_stats(&p, Some(params)).await? {
            Ok(s) => s,
            Err(state) => return Ok(state_response(state, &Method::GET)),
        };
        let body = self.render_listing(format, &p.account, &listing);
        let status = if body.is_empty() {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::OK
        };
        let mut resp = bytes_response(status, Bytes::from(body));
        let h = resp.headers_mut();
        self.stats_headers(h, &stats);
        put_header(
            h,
            "content-type",
            &format!("{}; charset=utf-8", format.content_type()),
        );
        Ok(resp)
    }

    /// The listing body in `format` (JSON exactly as Swift's `json.dumps`).
    pub fn render_listing(
        &self,
        format: ListingFormat,
        account: &str,
        listing: &[Listing<ContainerEntry>],
    ) -> Vec<u8> {
        let mut out = String::new();
        let policy_name = |idx: i64| self.cfg.policies.get(idx).map(|p| p.name.as_str());
        match format {
            ListingFormat::Json => {
                out.push('[');
                for (i, item) in listing.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match item {
                        Listing::Subdir(name) => {
                            out.push_str("{\"subdir\": ");
                            json_str(&mut out, name);
                            out.push('}');
                        }
                        Listing::Item(c) => {
                            out.push_str("{\"name\": ");
                            json_str(&mut out, &c.name);
                            out.push_str(&format!(
                                ", \"count\": {}, \"bytes\": {}, \"last_modified\": ",
                                c.object_count, c.bytes_used
                            ));
                            json_str(&mut out, &c.put_timestamp.isoformat());
                            if let Some(name) = policy_name(c.storage_policy_index) {
                                out.push_str(", \"storage_policy\": ");
                                json_str(&mut out, name);
                            }
                            out.push('}');
                        }
                    }
                }
                out.push(']');
            }
            ListingFormat::Xml(_) => {
                out.push_str(XML_DECLARATION);
                out.push_str("<account name=\"");
                xml_attr(&mut out, account);
                out.push_str("\">\n");
                for item in listing {
                    match item {
                        Listing::Subdir(name) => {
                            out.push_str("<subdir name=\"");
                            xml_attr(&mut out, name);
                            out.push_str("\" />");
                        }
                        Listing::Item(c) => {
                            out.push_str("<container><name>");
                            xml_text(&mut out, &c.name);
                            out.push_str(&format!(
                                "</name><count>{}</count><bytes>{}</bytes><last_modified>{}</last_modified>",
                                c.object_count,
                                c.bytes_used,
                                c.put_timestamp.isoformat()
                            ));
                            if let Some(name) = policy_name(c.storage_policy_index) {
                                out.push_str("<storage_policy>");
                                xml_text(&mut out, name);
                                out.push_str("</storage_policy>");
                            }
                            out.push_str("</container>");
                        }
                    }
                    out.push('\n');
                }
                out.push_str("</account>");
            }
            ListingFormat::Plain => {
                for item in listing {
                    let name = match item {
                        Listing::Subdir(n) => n,
                        Listing::Item(c) => &c.name,
                    };
                    out.push_str(name);
                    out.push('\n');
                }
            }
        }
        out.into_bytes()
    }

    // ---- POST ----

    async fn post(&self, path: &str, headers: &HeaderMap) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 3, 3, false)?;
        let ts = req_timestamp(headers)?;
        let metadata = Self::metadata_updates(headers, ts)?;
        let cfg = Arc::clone(&self.cfg);
        let db = self.broker_path(&p);
        let r = blocking(move || {
            writable_drive(&cfg, &p.device)?;
            if !db.exists() {
                return Ok(Err(State::Missing));
            }
            let broker = AccountBroker::open(&db, BrokerOptions::default())?;
            if broker.is_deleted()? {
                return Ok(Err(State::Deleted {
                    status_deleted: broker.is_status_deleted()?,
                }));
            }
            if !metadata.is_empty() {
                broker.update_metadata(&metadata, true)?;
            }
            Ok(Ok(()))
        })
        .await?;
        match r {
            Ok(()) => Ok(status_response(StatusCode::NO_CONTENT, &Method::POST, None)),
            Err(state) => Ok(state_response(state, &Method::POST)),
        }
    }
}

/// 404 for a missing or deleted account, marked when explicitly deleted.
fn state_response(state: State, method: &Method) -> Response<DbBody> {
    let marked = match state {
        State::Missing => false,
        State::Deleted { status_deleted } => status_deleted,
    };
    deleted_response(StatusCode::NOT_FOUND, method, marked)
}

fn deleted_response(status: StatusCode, method: &Method, marked: bool) -> Response<DbBody> {
    let mut resp = status_response(status, method, None);
    if marked {
        put_header(resp.headers_mut(), "x-account-status", "Deleted");
    }
    resp
}

impl apus_http::Handler for AccountServer {
    async fn call(&self, req: Request<hyper::body::Incoming>) -> Response<DbBody> {
        self.answer(req.map(apus_http::incoming)).await
    }
}

/// A proxy or object server of the same process hands its requests here
/// without a socket (see `apus_http::local`).
impl apus_http::local::LocalHandler for AccountServer {
    fn call_local(
        self: Arc<Self>,
        req: Request<apus_http::Body>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<DbBody>> + Send>> {
        Box::pin(async move { self.answer(req).await })
    }
}

impl AccountServer {
    async fn answer(&self, req: Request<apus_http::Body>) -> Response<DbBody> {
        let (parts, body) = req.into_parts();
        // Only REPLICATE reads a body; other verbs keep just the head.
        if crate::db_replicate::is_replicate(&parts.method) {
            return crate::db_replicate::replicate::<apus_db::AccountBroker>(
                &self.cfg,
                DbKind::Account,
                &parts,
                body,
            )
            .await;
        }
        self.handle(Request::from_parts(parts, ())).await
    }
}
