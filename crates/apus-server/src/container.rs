//! The container server: Swift's backend protocol over [`ContainerBroker`].
//!
//! - `PUT /d/p/a/c` creates (201) or updates (202) a container, stores its
//!   metadata, and reports the container to the account servers named by
//!   `X-Account-Host/Partition/Device`.
//! - `PUT`/`DELETE /d/p/a/c/o` record object rows sent by object servers
//!   (201 / 204).
//! - `DELETE /d/p/a/c`: 409 while not empty, 204, or 404.
//! - `HEAD`/`GET`: stats headers and listings (JSON as Swift's container
//!   server emits it for the proxy; plain text and XML too).
//! - `POST`: metadata (and `put_timestamp` unless told otherwise).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apus_core::Timestamp;
use apus_db::{
    extract_swift_bytes, BrokerOptions, ContainerBroker, ContainerInfo, DbError, ListParams,
    Listing, Metadata, ObjectEntry, ObjectRecord,
};
use apus_proto::{quote, AccountUpdate};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LAST_MODIFIED};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::db_common::{
    blocking, bytes_response, check_drive, db_path, decode_path, has_free_space, header_str,
    header_string, http_date, is_sys_or_user_meta, json_str, listing_format, metadata_value,
    parse_path, put_header, req_timestamp, status_response, title_case, true_value, xml_attr,
    xml_text, DbBody, DbKind, DbPath, DbServerConfig, HttpError, HttpResult, ListingFormat, Query,
    ServerHandle, AUTO_CREATE_ACCOUNT_PREFIX, LISTING_LIMIT, XML_DECLARATION,
};

const POLICY_HEADER: &str = "x-backend-storage-policy-index";

/// The container server.
pub struct ContainerServer {
    cfg: Arc<DbServerConfig>,
    /// Headers stored as metadata besides `X-Container-Meta-*` and
    /// `X-Container-Sysmeta-*` (lower case).
    save_headers: Vec<&'static str>,
    /// Account updates go out through this (conn and node timeouts from
    /// the configuration).
    client: apus_http::BackendClient,
}

/// What a container PUT/DELETE reports to the account: `info`, read at
/// `read_at`.
fn report_of(info: &ContainerInfo, read_at: Timestamp) -> AccountUpdate {
    AccountUpdate {
        put_timestamp: info.put_timestamp,
        delete_timestamp: info.delete_timestamp,
        object_count: info.object_count,
        bytes_used: info.bytes_used,
        storage_policy_index: info.storage_policy_index,
        stats_timestamp: read_at,
    }
}

impl ContainerServer {
    pub fn new(config: DbServerConfig) -> Self {
        let mut save_headers = vec![
            "x-container-read",
            "x-container-write",
            "x-container-sync-key",
            "x-container-sync-to",
        ];
        if config.allow_versions {
            save_headers.push("x-versions-location");
        }
        let client = apus_http::BackendClient::new(apus_http::ClientConfig {
            connect_timeout: config.conn_timeout,
            node_timeout: config.node_timeout,
            ..apus_http::ClientConfig::default()
        });
        ContainerServer {
            cfg: Arc::new(config),
            save_headers,
            client,
        }
    }

    pub fn config(&self) -> &DbServerConfig {
        &self.cfg
    }

    /// Sends account updates to the account servers of this process
    /// without a socket (see `apus_http::local`).
    pub fn with_local_nodes(mut self, nodes: apus_http::local::LocalNodes) -> Self {
        self.client = self.client.with_local(nodes);
        self
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

    /// Answers one backend request. The request body is not read (no verb
    /// served here takes one).
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
        let result = self.dispatch(&req).await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => e.into_response(&method),
        };
        tracing::debug!(%method, path = %req.uri().path(), status = resp.status().as_u16(), "container request");
        resp
    }

    async fn dispatch<B>(&self, req: &Request<B>) -> HttpResult<Response<DbBody>> {
        let path = decode_path(req.uri().path(), "Invalid UTF8 or contains NULL")?;
        let headers = req.headers();
        let query = Query::parse(req.uri().query());
        match *req.method() {
            Method::PUT => self.put(&path, headers).await,
            Method::DELETE => self.delete(&path, headers).await,
            Method::HEAD => self.head(&path, headers, &query).await,
            Method::GET => self.get(&path, headers, &query).await,
            Method::POST => self.post(&path, headers).await,
            Method::OPTIONS => Ok(options_response("container-server")),
            _ => Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED)),
        }
    }

    fn broker_path(&self, p: &DbPath) -> PathBuf {
        let container = p.container.as_deref().unwrap_or("");
        let hash = self.cfg.hash.hash_path(&p.account, Some(container), None);
        db_path(
            &self.cfg.devices,
            &p.device,
            DbKind::Container,
            &p.partition,
            &hash,
        )
    }

    /// `X-Backend-Storage-Policy-Index`, validated against the policies:
    /// `None` when absent, 400 when not a known policy.
    fn requested_policy(&self, headers: &HeaderMap) -> HttpResult<Option<i64>> {
        let Some(v) = headers.get(POLICY_HEADER) else {
            return Ok(None);
        };
        let raw = header_string(v);
        match raw.trim().parse::<i64>() {
            Ok(i) if self.cfg.policies.get(i).is_some() => Ok(Some(i)),
            Ok(i) => Err(HttpError::with_body(
                StatusCode::BAD_REQUEST,
                format!("Invalid X-Backend-Storage-Policy-Index {i}"),
            )),
            Err(_) => Err(HttpError::with_body(
                StatusCode::BAD_REQUEST,
                format!("Invalid X-Backend-Storage-Policy-Index {raw:?}"),
            )),
        }
    }

    fn metadata_updates(&self, headers: &HeaderMap, ts: Timestamp) -> HttpResult<Metadata> {
        let mut md = Metadata::new();
        let mut removals = Vec::new();
        for (name, value) in headers {
            let n = name.as_str();
            if self.save_headers.contains(&n) || is_sys_or_user_meta("container", n) {
                md.insert(title_case(n), (metadata_value(value)?, ts));
            } else if let Some(rest) = n.strip_prefix("x-remove-") {
                let target = format!("x-{rest}");
                if self.save_headers.contains(&target.as_str())
                    || is_sys_or_user_meta("container", &target)
                {
                    removals.push(title_case(&target));
                }
            }
        }
        for key in removals {
            md.entry(key).or_insert((String::new(), ts));
        }
        Ok(md)
    }

    fn check_sync_to(&self, headers: &HeaderMap) -> HttpResult<()> {
        if let Some(v) = headers.get("x-container-sync-to") {
            if let Some(err) = validate_sync_to(&header_string(v), &self.cfg.allowed_sync_hosts) {
                return Err(HttpError::bad_request(err));
            }
        }
        Ok(())
    }

    fn should_autocreate(account: &str, headers: &HeaderMap) -> bool {
        if let Some(v) = header_str(headers, "x-backend-auto-create").filter(|v| !v.is_empty()) {
            return true_value(Some(v));
        }
        let shards = format!("{AUTO_CREATE_ACCOUNT_PREFIX}shards_");
        if account.starts_with(&shards) {
            return false;
        }
        account.starts_with(AUTO_CREATE_ACCOUNT_PREFIX)
    }

    // ---- PUT ----

    async fn put(&self, path: &str, headers: &HeaderMap) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 4, 5, true)?;
        let ts = req_timestamp(headers)?;
        self.check_sync_to(headers)?;
        if p.object.is_some() {
            return self.put_object(p, headers, ts).await;
        }
        let requested = self.requested_policy(headers)?;
        let new_policy = match requested {
            Some(i) => i,
            None => match header_str(headers, "x-backend-storage-policy-default") {
                Some(v) => v.trim().parse::<i64>().map_err(|_| {
                    HttpError::bad_request("Invalid X-Backend-Storage-Policy-Default")
                })?,
                None => self.cfg.policies.default_index,
            },
        };
        let metadata = self.metadata_updates(headers, ts)?;
        let cfg = Arc::clone(&self.cfg);
        let db = self.broker_path(&p);
        let p2 = p.clone();
        let (created, report) = blocking(move || {
            writable_drive(&cfg, &p2.device)?;
            let container = p2.container.as_deref().unwrap_or("");
            let (broker, created) = if !db.exists() {
                match ContainerBroker::create(
                    &db,
                    &p2.account,
                    container,
                    ts,
                    new_policy,
                    BrokerOptions::default(),
                ) {
                    Ok(b) => (b, true),
                    Err(DbError::AlreadyExists { .. }) => {
                        (ContainerBroker::open(&db, BrokerOptions::default())?, false)
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                (ContainerBroker::open(&db, BrokerOptions::default())?, false)
            };
            let created = if created {
                true
            } else {
                let recreated = broker.is_deleted()?;
                if recreated {
                    broker.set_storage_policy_index(new_policy, ts)?;
                } else if let Some(req_idx) = requested {
                    let current = broker.storage_policy_index()?;
                    if req_idx != current {
                        return Err(HttpError::new(StatusCode::CONFLICT).header(
                            http::HeaderName::from_static(POLICY_HEADER),
                            current.to_string(),
                        ));
                    }
                }
                broker.update_put_timestamp(ts)?;
                if broker.is_deleted()? {
                    return Err(HttpError::new(StatusCode::CONFLICT));
                }
                if recreated {
                    broker.update_status_changed_at(ts)?;
                }
                recreated
            };
            if !metadata.is_empty() {
                update_metadata(&broker, &metadata)?;
            }
            let read_at = Timestamp::now();
            let info = broker.get_info()?;
            Ok((created, report_of(&info, read_at)))
        })
        .await?;
        let spi = report.storage_policy_index;
        if let Some(resp) = self.account_update(&p, headers, &report).await? {
            return Ok(resp);
        }
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        let mut resp = status_response(status, &Method::PUT, None);
        resp.headers_mut()
            .insert(POLICY_HEADER, HeaderValue::from(spi));
        Ok(resp)
    }

    async fn put_object(
        &self,
        p: DbPath,
        headers: &HeaderMap,
        ts: Timestamp,
    ) -> HttpResult<Response<DbBody>> {
        let requested = self.requested_policy(headers)?;
        let policy = requested.unwrap_or(0);
        let name = p.object.clone().unwrap_or_default();
        let size = header_str(headers, "x-size")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| HttpError::bad_request("Missing or invalid X-Size header"))?;
        let content_type = headers
            .get("x-content-type")
            .map(header_string)
            .ok_or_else(|| HttpError::bad_request("Missing X-Content-Type header"))?;
        let etag = headers
            .get("x-etag")
            .map(header_string)
            .ok_or_else(|| HttpError::bad_request("Missing X-Etag header"))?;
        let opt_ts = |name: &str| -> HttpResult<Option<Timestamp>> {
            match header_str(headers, name) {
                None => Ok(None),
                Some(v) => Timestamp::parse(v)
                    .map(Some)
                    .map_err(|_| HttpError::bad_request(format!("Invalid {name} header"))),
            }
        };
        let ctype_ts = opt_ts("x-content-type-timestamp")?;
        let meta_ts = opt_ts("x-meta-timestamp")?;
        let record = ObjectRecord::put(&name, ts, size, &content_type, &etag, policy)
            .with_timestamps(ctype_ts, meta_ts);
        self.object_update(p, headers, ts, policy, record, StatusCode::CREATED)
            .await
    }

    /// Records an object row, auto-creating the container where Swift does.
    async fn object_update(
        &self,
        p: DbPath,
        headers: &HeaderMap,
        ts: Timestamp,
        policy: i64,
        record: ObjectRecord,
        status: StatusCode,
    ) -> HttpResult<Response<DbBody>> {
        let autocreate = Self::should_autocreate(&p.account, headers);
        let cfg = Arc::clone(&self.cfg);
        let db = self.broker_path(&p);
        let method = if status == StatusCode::CREATED {
            Method::PUT
        } else {
            Method::DELETE
        };
        let check_space = method == Method::PUT;
        blocking(move || {
            if check_space {
                writable_drive(&cfg, &p.device)?;
            } else {
                usable_drive(&cfg, &p.device)?;
            }
            // The row goes to the pending file without reading the
            // database, so a lock on it does not hold the update up.
            let broker = autocreated_broker(
                &db,
                &p,
                ts,
                policy,
                autocreate,
                ContainerBroker::open_for_updates,
            )?;
            broker.put_object(record)?;
            Ok(())
        })
        .await?;
        Ok(status_response(status, &method, None))
    }

    // ---- UPDATE ----

    /// Swift's `UPDATE`: object rows given as JSON (`name`, `created_at`,
    /// `size`, `content_type`, `etag`, `deleted`, `storage_policy_index`)
    /// merged into the container as they are, as a batch of container
    /// updates would be. The proxy uses it to queue work for the expirer.
    async fn update(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
    ) -> HttpResult<Response<DbBody>> {
        let path = decode_path(parts.uri.path(), "Invalid UTF8 or contains NULL")?;
        let headers = &parts.headers;
        let p = parse_path(&path, 4, 4, true)?;
        let ts = req_timestamp(headers)?;
        let policy = self.requested_policy(headers)?.unwrap_or(0);
        let items: Vec<ObjectRecord> = serde_json::from_slice(&body)
            .map_err(|e| HttpError::with_body(StatusCode::BAD_REQUEST, e.to_string()))?;
        let autocreate = Self::should_autocreate(&p.account, headers);
        let cfg = Arc::clone(&self.cfg);
        let db = self.broker_path(&p);
        blocking(move || {
            writable_drive(&cfg, &p.device)?;
            let broker =
                autocreated_broker(&db, &p, ts, policy, autocreate, ContainerBroker::open)?;
            broker.merge_items(items, None)?;
            Ok(())
        })
        .await?;
        Ok(status_response(StatusCode::ACCEPTED, &Method::PUT, None))
    }

    // ---- DELETE ----

    async fn delete(&self, path: &str, headers: &HeaderMap) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 4, 5, true)?;
        let ts = req_timestamp(headers)?;
        if let Some(obj) = p.object.clone() {
            let policy = self.requested_policy(headers)?.unwrap_or(0);
            let record = ObjectRecord::delete(&obj, ts, policy);
            return self
                .object_update(p, headers, ts, policy, record, StatusCode::NO_CONTENT)
                .await;
        }
        let cfg = Arc::clone(&self.cfg);
        let db = self.broker_path(&p);
        let device = p.device.clone();
        let (existed, report) = blocking(move || {
            usable_drive(&cfg, &device)?;
            if !db.exists() {
                return Err(HttpError::new(StatusCode::NOT_FOUND));
            }
            let broker = ContainerBroker::open(&db, BrokerOptions::default())?;
            if !broker.empty()? {
                return Err(HttpError::new(StatusCode::CONFLICT));
            }
            let info = broker.get_info()?;
            let existed = info.put_timestamp != Timestamp::ZERO && !broker.is_deleted()?;
            broker.delete_db(ts)?;
            if !broker.is_deleted()? {
                return Err(HttpError::new(StatusCode::CONFLICT));
            }
            let read_at = Timestamp::now();
            let info = broker.get_info()?;
            Ok((existed, report_of(&info, read_at)))
        })
        .await?;
        if let Some(resp) = self.account_update(&p, headers, &report).await? {
            return Ok(resp);
        }
        let status = if existed {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::NOT_FOUND
        };
        Ok(status_response(status, &Method::DELETE, None))
    }

    // ---- HEAD / GET ----

    fn read_opts() -> BrokerOptions {
        BrokerOptions {
            pending_timeout: Duration::from_millis(100),
            stale_reads_ok: true,
            ..BrokerOptions::default()
        }
    }

    async fn head(
        &self,
        path: &str,
        headers: &HeaderMap,
        query: &Query,
    ) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 4, 5, true)?;
        let format = listing_format(query, headers)?;
        let cfg = Arc::clone(&self.cfg);
        let db = self.broker_path(&p);
        let device = p.device.clone();
        let (info, metadata) = blocking(move || {
            usable_drive(&cfg, &device)?;
            if !db.exists() {
                return Ok((None, Metadata::new()));
            }
            let broker = ContainerBroker::open(&db, Self::read_opts())?;
            let info = broker.get_info()?;
            let md = broker.metadata()?;
            Ok((Some(info), md))
        })
        .await?;
        let deleted = !matches!(info.as_ref(), Some(i) if !is_deleted_info(i));
        let mut resp = status_response(
            if deleted {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::NO_CONTENT
            },
            &Method::HEAD,
            None,
        );
        gen_resp_headers(resp.headers_mut(), info.as_ref(), deleted);
        if deleted {
            return Ok(resp);
        }
        self.metadata_headers(resp.headers_mut(), &metadata);
        let h = resp.headers_mut();
        put_header(
            h,
            "content-type",
            &format!("{}; charset=utf-8", format.content_type()),
        );
        h.insert(CONTENT_LENGTH, HeaderValue::from(0));
        if let Some(i) = &info {
            put_header(h, "last-modified", &http_date(i.put_timestamp.ceil_secs()));
        }
        Ok(resp)
    }

    fn metadata_headers(&self, h: &mut HeaderMap, metadata: &Metadata) {
        for (key, (value, _)) in metadata {
            let lower = key.to_ascii_lowercase();
            if !value.is_empty()
                && (self.save_headers.contains(&lower.as_str())
                    || is_sys_or_user_meta("container", key))
            {
                put_header(h, key, value);
            }
        }
    }

    async fn get(
        &self,
        path: &str,
        headers: &HeaderMap,
        query: &Query,
    ) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 4, 5, true)?;
        let marker = query.get("marker")?.unwrap_or_default();
        let end_marker = query.get("end_marker")?.unwrap_or_default();
        let prefix = query.get("prefix")?;
        let delimiter = query.get("delimiter")?;
        let lpath = query.get("path")?;
        query.get("format")?;
        let reverse = true_value(query.get("reverse")?.as_deref());
        query.get("states")?;
        query.get("includes")?;
        let limit = query.limit(LISTING_LIMIT)?;
        let format = listing_format(query, headers)?;
        let allow_reserved = true_value(header_str(headers, "x-backend-allow-reserved-names"));
        let params = ListParams {
            limit,
            marker,
            end_marker,
            prefix,
            delimiter,
            path: lpath,
            reverse,
            allow_reserved,
        };
        let cfg = Arc::clone(&self.cfg);
        let db = self.broker_path(&p);
        let device = p.device.clone();
        // The policy header is validated after the drive check, as Swift does.
        let requested = self.requested_policy(headers);
        let (info, metadata, listing, spi) = blocking(move || {
            usable_drive(&cfg, &device)?;
            if !db.exists() {
                return Ok((None, Metadata::new(), Vec::new(), 0));
            }
            let broker = ContainerBroker::open(&db, Self::read_opts())?;
            let info = broker.get_info()?;
            let requested = requested?;
            if is_deleted_info(&info) {
                return Ok((Some(info), Metadata::new(), Vec::new(), 0));
            }
            let spi = requested.unwrap_or(info.storage_policy_index);
            let listing = broker.list_objects(&params, spi)?;
            let md = broker.metadata()?;
            Ok((Some(info), md, listing, spi))
        })
        .await?;
        let deleted = !matches!(info.as_ref(), Some(i) if !is_deleted_info(i));
        if deleted {
            let mut resp = status_response(StatusCode::NOT_FOUND, &Method::GET, None);
            gen_resp_headers(resp.headers_mut(), info.as_ref(), true);
            return Ok(resp);
        }
        let container = p.container.as_deref().unwrap_or("");
        let body = render_listing(format, container, &listing);
        let status = if body.is_empty() {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::OK
        };
        let mut resp = bytes_response(status, Bytes::from(body));
        let h = resp.headers_mut();
        gen_resp_headers(h, info.as_ref(), false);
        put_header(h, "x-backend-record-type", "object");
        put_header(h, "x-backend-record-storage-policy-index", &spi.to_string());
        self.metadata_headers(resp.headers_mut(), &metadata);
        let h = resp.headers_mut();
        put_header(
            h,
            CONTENT_TYPE.as_str(),
            &format!("{}; charset=utf-8", format.content_type()),
        );
        if let Some(i) = &info {
            put_header(
                h,
                LAST_MODIFIED.as_str(),
                &http_date(i.put_timestamp.ceil_secs()),
            );
        }
        Ok(resp)
    }

    // ---- POST ----

    async fn post(&self, path: &str, headers: &HeaderMap) -> HttpResult<Response<DbBody>> {
        let p = parse_path(path, 4, 4, false)?;
        let ts = req_timestamp(headers)?;
        self.check_sync_to(headers)?;
        let metadata = self.metadata_updates(headers, ts)?;
        let bump = !true_value(header_str(headers, "x-backend-no-timestamp-update"));
        let cfg = Arc::clone(&self.cfg);
        let db = self.broker_path(&p);
        blocking(move || {
            writable_drive(&cfg, &p.device)?;
            if !db.exists() {
                return Err(HttpError::new(StatusCode::NOT_FOUND));
            }
            let broker = ContainerBroker::open(&db, BrokerOptions::default())?;
            if broker.is_deleted()? {
                return Err(HttpError::new(StatusCode::NOT_FOUND));
            }
            if bump {
                broker.update_put_timestamp(ts)?;
            }
            if !metadata.is_empty() {
                update_metadata(&broker, &metadata)?;
            }
            Ok(())
        })
        .await?;
        Ok(status_response(StatusCode::NO_CONTENT, &Method::POST, None))
    }

    // ---- account updates ----

    /// Reports the container to the account servers the proxy named. Each
    /// update is bounded by the connect and node timeouts; failures are
    /// logged (the container updater catches up). Returns 404 if every
    /// account server answered 404, 400 for mismatched headers.
    async fn account_update(
        &self,
        p: &DbPath,
        headers: &HeaderMap,
        report: &AccountUpdate,
    ) -> HttpResult<Option<Response<DbBody>>> {
        let hosts_raw = header_str(headers, "x-account-host").unwrap_or("");
        let devices_raw = header_str(headers, "x-account-device").unwrap_or("");
        let partition = header_str(headers, "x-account-partition").unwrap_or("");
        let hosts: Vec<&str> = hosts_raw.split(',').map(str::trim).collect();
        let devices: Vec<&str> = devices_raw.split(',').map(str::trim).collect();
        if hosts.len() != devices.len() {
            tracing::error!(
                hosts = hosts_raw,
                devices = devices_raw,
                "account update failed: different numbers of hosts and devices"
            );
            return Err(HttpError::new(StatusCode::BAD_REQUEST));
        }
        if partition.is_empty() {
            return Ok(None);
        }
        let container = p.container.as_deref().unwrap_or("");
        let trans_id = header_str(headers, "x-trans-id").unwrap_or("-").to_string();
        let override_deleted = header_str(headers, "x-account-override-deleted")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let mut updates = Vec::new();
        for (host, device) in hosts.iter().zip(devices.iter()) {
            let path = format!("/{device}/{partition}/{}/{container}", p.account);
            let mut req_headers = report.headers();
            req_headers.push(("x-trans-id", trans_id.clone()));
            req_headers.push((
                "user-agent",
                format!("container-server {}", std::process::id()),
            ));
            if override_deleted {
                req_headers.push(("x-account-override-deleted", "yes".to_string()));
            }
            let host = host.to_string();
            let client = self.client.clone();
            let deadline = self.cfg.conn_timeout + self.cfg.node_timeout;
            updates.push(async move {
                let mut hm = HeaderMap::new();
                for (k, v) in &req_headers {
                    put_header(&mut hm, k, v);
                }
                hm.insert(CONTENT_LENGTH, HeaderValue::from(0));
                let exchange = async {
                    let resp = client
                        .request(Method::PUT, &host, &quote(&path), hm, apus_http::empty())
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = resp.status();
                    // Drain the small body so the connection can be reused.
                    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                    Ok::<_, String>(status)
                };
                let r = match tokio::time::timeout(deadline, exchange).await {
                    Ok(r) => r,
                    Err(_) => Err("timeout".to_string()),
                };
                match &r {
                    Ok(s) if s.is_success() || *s == StatusCode::NOT_FOUND => {}
                    Ok(s) => tracing::error!(
                        host = %host, path = %path, status = s.as_u16(),
                        "account update failed (will retry later)"
                    ),
                    Err(e) => tracing::error!(
                        host = %host, path = %path, error = %e,
                        "account update failed (will retry later)"
                    ),
                }
                r
            });
        }
        let n = updates.len();
        let results = futures_util::future::join_all(updates).await;
        let not_found = results
            .iter()
            .filter(|r| matches!(r, Ok(s) if *s == StatusCode::NOT_FOUND))
            .count();
        if n > 0 && not_found == n {
            return Ok(Some(status_response(
                StatusCode::NOT_FOUND,
                &Method::PUT,
                None,
            )));
        }
        Ok(None)
    }
}

/// The drive must exist (and be mounted with `mount_check`): 507 otherwise.
fn usable_drive(cfg: &DbServerConfig, device: &str) -> HttpResult<PathBuf> {
    check_drive(&cfg.devices, device, cfg.mount_check)
        .ok_or_else(|| HttpError::insufficient_storage(device))
}

/// A usable drive with space left above the reserve.
pub(crate) fn writable_drive(cfg: &DbServerConfig, device: &str) -> HttpResult<PathBuf> {
    let path = usable_drive(cfg, device)?;
    if !has_free_space(&path, cfg.fallocate_reserve_percent) {
        return Err(HttpError::insufficient_storage(device));
    }
    Ok(path)
}

fn update_metadata(broker: &ContainerBroker, md: &Metadata) -> HttpResult<()> {
    if md.contains_key("X-Container-Sync-To") {
        let current = broker.metadata()?;
        let changed = match (
            current.get("X-Container-Sync-To"),
            md.get("X-Container-Sync-To"),
        ) {
            (Some((old, _)), Some((new, _))) => old != new,
            _ => true,
        };
        if changed {
            broker.set_x_container_sync_points(Some(-1), Some(-1))?;
        }
    }
    broker.update_metadata(md, true)?;
    Ok(())
}

/// A container is deleted when its delete is newer than its last PUT and
/// it holds no objects.
fn is_deleted_info(info: &ContainerInfo) -> bool {
    info.object_count == 0 && info.delete_timestamp > info.put_timestamp
}

/// Swift's `gen_resp_headers`.
fn gen_resp_headers(h: &mut HeaderMap, info: Option<&ContainerInfo>, deleted: bool) {
    let z = Timestamp::ZERO;
    let (created, put, del, changed, spi) = match info {
        Some(i) => (
            i.created_at,
            i.put_timestamp,
            i.delete_timestamp,
            i.status_changed_at,
            i.storage_policy_index,
        ),
        None => (z, z, z, z, 0),
    };
    put_header(h, "x-backend-timestamp", &created.internal());
    put_header(h, "x-backend-put-timestamp", &put.internal());
    put_header(h, "x-backend-delete-timestamp", &del.internal());
    put_header(h, "x-backend-status-changed-at", &changed.internal());
    put_header(h, POLICY_HEADER, &spi.to_string());
    if !deleted {
        let (count, bytes) = info.map_or((0, 0), |i| (i.object_count, i.bytes_used));
        put_header(h, "x-container-object-count", &count.to_string());
        put_header(h, "x-container-bytes-used", &bytes.to_string());
        put_header(h, "x-timestamp", &created.normal());
        put_header(h, "x-put-timestamp", &put.normal());
        put_header(h, "x-backend-sharding-state", "unsharded");
    }
}

/// One listing row as the container server reports it: the size comes
/// from a `swift_bytes` content-type parameter when there is one.
fn object_row(e: &ObjectEntry) -> (i64, std::borrow::Cow<'_, str>) {
    let (ct, swift_bytes) = extract_swift_bytes(&e.content_type);
    let size = swift_bytes
        .and_then(|b| b.parse::<i64>().ok())
        .unwrap_or(e.size);
    (size, ct)
}

/// The listing body in `format` (JSON exactly as Swift's `json.dumps`).
pub fn render_listing(
    format: ListingFormat,
    container: &str,
    listing: &[Listing<ObjectEntry>],
) -> Vec<u8> {
    // About what one JSON entry takes, so a page is not regrown as it fills.
    let mut out = String::with_capacity(listing.len().saturating_mul(176).min(1 << 24));
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
                    Listing::Item(e) => {
                        let (size, ct) = object_row(e);
                        out.push_str("{\"bytes\": ");
                        push_int(&mut out, size);
                        out.push_str(", \"hash\": ");
                        json_str(&mut out, &e.etag);
                        out.push_str(", \"name\": ");
                        json_str(&mut out, &e.name);
                        out.push_str(", \"content_type\": ");
                        json_str(&mut out, &ct);
                        // Digits and `-T:.` only: nothing to escape.
                        out.push_str(", \"last_modified\": \"");
                        e.last_modified.push_isoformat(&mut out);
                        out.push_str("\"}");
                    }
                }
            }
            out.push(']');
        }
        ListingFormat::Xml(_) => {
            out.push_str(XML_DECLARATION);
            out.push_str("<container name=\"");
            xml_attr(&mut out, container);
            out.push('"');
            if listing.is_empty() {
                out.push_str(" />");
            } else {
                out.push('>');
                for item in listing {
                    match item {
                        Listing::Subdir(name) => {
                            out.push_str("<subdir name=\"");
                            xml_attr(&mut out, name);
                            out.push_str("\"><name>");
                            xml_text(&mut out, name);
                            out.push_str("</name></subdir>");
                        }
                        Listing::Item(e) => {
                            let (size, ct) = object_row(e);
                            out.push_str("<object><name>");
                            xml_text(&mut out, &e.name);
                            out.push_str("</name><hash>");
                            xml_text(&mut out, &e.etag);
                            out.push_str("</hash><bytes>");
                            push_int(&mut out, size);
                            out.push_str("</bytes><content_type>");
                            xml_text(&mut out, &ct);
                            out.push_str("</content_type><last_modified>");
                            e.last_modified.push_isoformat(&mut out);
                            out.push_str("</last_modified></object>");
                        }
                    }
                }
                out.push_str("</container>");
            }
        }
        ListingFormat::Plain => {
            for item in listing {
                let name = match item {
                    Listing::Subdir(n) => n,
                    Listing::Item(e) => &e.name,
                };
                out.push_str(name);
                out.push('\n');
            }
        }
    }
    out.into_bytes()
}

/// Appends `n` in decimal: a listing writes one per object, and `write!`
/// costs several times this.
fn push_int(out: &mut String, n: i64) {
    let mut digits = [0u8; 20];
    let mut left = n.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (left % 10) as u8;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// Swift's `validate_sync_to` without container-sync realms: `None` when
/// acceptable, else the error text.
fn validate_sync_to(value: &str, allowed_hosts: &[String]) -> Option<String> {
    let v = value.trim_end_matches('/');
    if v.is_empty() {
        return None;
    }
    if let Some(rest) = v.strip_prefix("//") {
        if rest.split('/').count() != 4 {
            return Some(format!("Invalid X-Container-Sync-To format {value:?}"));
        }
        let realm = rest.split('/').next().unwrap_or("");
        return Some(format!("No realm key for {realm:?}"));
    }
    let (scheme, rest) = v.split_once("://").unwrap_or(("", v));
    if scheme != "http" && scheme != "https" {
        return Some(format!(
            "Invalid scheme {scheme:?} in X-Container-Sync-To, must be \"//\", \"http\", or \"https\"."
        ));
    }
    let (netloc, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.is_empty() {
        return Some("Path required in X-Container-Sync-To".into());
    }
    if path.contains(['?', '#', ';']) {
        return Some("Params, queries, and fragments not allowed in X-Container-Sync-To".into());
    }
    let hostport = netloc.rsplit('@').next().unwrap_or(netloc);
    let host = if let Some(h) = hostport.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    }
    .to_ascii_lowercase();
    if !allowed_hosts.contains(&host) {
        return Some(format!("Invalid host {host:?} in X-Container-Sync-To"));
    }
    None
}

/// `OPTIONS`: the verbs served.
pub(crate) fn options_response(server_type: &str) -> Response<DbBody> {
    let mut resp = bytes_response(StatusCode::OK, Bytes::new());
    put_header(
        resp.headers_mut(),
        "allow",
        "DELETE, GET, HEAD, OPTIONS, POST, PUT",
    );
    put_header(
        resp.headers_mut(),
        "server",
        &format!("{server_type}/apus-{}", env!("CARGO_PKG_VERSION")),
    );
    resp
}

/// The container's database, created first when `autocreate` allows it
/// (404 when it does not exist and may not be created); an existing one is
/// opened with `open`.
fn autocreated_broker(
    db: &std::path::Path,
    p: &DbPath,
    ts: Timestamp,
    policy: i64,
    autocreate: bool,
    open: fn(&std::path::Path, BrokerOptions) -> apus_db::Result<ContainerBroker>,
) -> HttpResult<ContainerBroker> {
    if db.exists() {
        return Ok(open(db, BrokerOptions::default())?);
    }
    if !autocreate {
        return Err(HttpError::new(StatusCode::NOT_FOUND));
    }
    // An object timestamp may carry an offset; the container's does not.
    let cts = Timestamp::from_ticks(ts.ticks(), 0).unwrap_or(ts);
    let container = p.container.as_deref().unwrap_or("");
    match ContainerBroker::create(
        db,
        &p.account,
        container,
        cts,
        policy,
        BrokerOptions::default(),
    ) {
        Ok(b) => Ok(b),
        Err(DbError::AlreadyExists { .. }) => Ok(open(db, BrokerOptions::default())?),
        Err(e) => Err(e.into()),
    }
}

impl apus_http::Handler for ContainerServer {
    async fn call(&self, req: Request<hyper::body::Incoming>) -> Response<DbBody> {
        self.answer(req.map(apus_http::incoming)).await
    }
}

/// A proxy or object server of the same process hands its requests here
/// without a socket (see `apus_http::local`).
impl apus_http::local::LocalHandler for ContainerServer {
    fn call_local(
        self: Arc<Self>,
        req: Request<apus_http::Body>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<DbBody>> + Send>> {
        Box::pin(async move { self.answer(req).await })
    }
}

impl ContainerServer {
    async fn answer(&self, req: Request<apus_http::Body>) -> Response<DbBody> {
        let (parts, body) = req.into_parts();
        // Only REPLICATE and UPDATE read a body; other verbs keep just the
        // head.
        if crate::db_replicate::is_replicate(&parts.method) {
            return crate::db_replicate::replicate::<apus_db::ContainerBroker>(
                &self.cfg,
                DbKind::Container,
                &parts,
                body,
            )
            .await;
        }
        if parts.method.as_str() == "UPDATE" {
            let method = parts.method.clone();
            let result = match apus_http::body::collect_limited(
                body,
                apus_proto::db_replication::MAX_RPC_BODY,
            )
            .await
            {
                Ok(bytes) => self.update(&parts, bytes).await,
                Err(_) => Err(HttpError::new(StatusCode::PAYLOAD_TOO_LARGE)),
            };
            return result.unwrap_or_else(|e| e.into_response(&method));
        }
        self.handle(Request::from_parts(parts, ())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_to_validation() {
        let hosts = vec!["127.0.0.1".to_string()];
        assert_eq!(validate_sync_to("", &hosts), None);
        assert_eq!(
            validate_sync_to("http://127.0.0.1:8080/v1/a/c", &hosts),
            None
        );
        assert!(validate_sync_to("ftp://127.0.0.1/v1/a/c", &hosts).is_some());
        assert!(validate_sync_to("http://10.0.0.1/v1/a/c", &hosts).is_some());
        assert!(validate_sync_to("http://127.0.0.1", &hosts).is_some());
        assert!(validate_sync_to("http://127.0.0.1/a?x", &hosts).is_some());
        assert!(validate_sync_to("//realm/cluster/a/c", &hosts).is_some());
    }

    #[test]
    fn integers_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 42, -1, -10, 1_000_000, i64::MAX, i64::MIN] {
            let mut out = String::from("<");
            push_int(&mut out, n);
            assert_eq!(out, format!("<{n}"));
        }
    }

    #[test]
    fn listing_json_like_swift() {
        let listing = vec![
            Listing::Item(ObjectEntry {
                name: "o\u{e9}".into(),
                last_modified: Timestamp::parse("1700000000.12345").unwrap(),
                size: 3,
                content_type: "text/plain;swift_bytes=42".into(),
                etag: "abc".into(),
            }),
            Listing::Subdir("d/".into()),
        ];
        let body = String::from_utf8(render_listing(ListingFormat::Json, "c", &listing)).unwrap();
        assert_eq!(
            body,
            "[{\"bytes\": 42, \"hash\": \"abc\", \"name\": \"o\\u00e9\", \"content_type\": \"text/plain\", \"last_modified\": \"2023-11-14T22:13:20.123450\"}, {\"subdir\": \"d/\"}]"
        );
        let xml = String::from_utf8(render_listing(
            ListingFormat::Xml("application/xml"),
            "c",
            &[],
        ))
        .unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c\" />"
        );
    }
}
