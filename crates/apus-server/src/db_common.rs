//! What the account and container servers share: their configuration, the
//! backend request path (`/<device>/<partition>/<account>[/<container>[/<object>]]`),
//! the database file layout, drive checks, `X-Timestamp` validation, listing
//! query parameters and formats (JSON as Swift's servers emit it, XML,
//! plain text), Swift-style error responses, and a small hyper bootstrap.
//!
//! Everything here follows Swift 2.38's storage servers
//! (`request_helpers`, `constraints`, `listing_formats`, `swob`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apus_core::{HashConfig, Timestamp};
use apus_db::DbError;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The response body of the database servers (apus-http's body). Listings
/// are bounded (at most 10,000 entries), so they are built whole.
pub type DbBody = apus_http::Body;

/// Swift's listing limit for containers and accounts.
pub const LISTING_LIMIT: usize = 10_000;
/// Account names starting with this are auto-created by the servers.
pub use apus_proto::constraints::AUTO_CREATE_ACCOUNT_PREFIX;

/// One storage policy as the servers need it: its index and its name (for
/// the account's per-policy headers and listings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    pub index: i64,
    pub name: String,
}

/// The storage policies of the cluster (from `swift.conf`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policies {
    pub policies: Vec<PolicyInfo>,
    /// Index of the default policy (used when a container PUT names none).
    pub default_index: i64,
}

impl Default for Policies {
    /// Swift's implicit single policy: `Policy-0`, index 0.
    fn default() -> Self {
        Policies {
            policies: vec![PolicyInfo {
                index: 0,
                name: "Policy-0".into(),
            }],
            default_index: 0,
        }
    }
}

impl Policies {
    pub fn get(&self, index: i64) -> Option<&PolicyInfo> {
        self.policies.iter().find(|p| p.index == index)
    }
}

/// Configuration of an account or container server.
#[derive(Clone, Debug)]
pub struct DbServerConfig {
    /// The directory holding one directory per device (`devices`).
    pub devices: PathBuf,
    /// Require each device directory to be a mount point.
    pub mount_check: bool,
    /// The cluster's hash path prefix and suffix.
    pub hash: HashConfig,
    pub policies: Policies,
    /// Percentage of a device kept free: writes get 507 below it
    /// (Swift's `fallocate_reserve`, default 1%).
    pub fallocate_reserve_percent: f64,
    /// Connect timeout of the container server's account updates.
    pub conn_timeout: Duration,
    /// Response timeout of the container server's account updates.
    pub node_timeout: Duration,
    /// Hosts a container may sync to without a realm
    /// (`allowed_sync_hosts`, default 127.0.0.1).
    pub allowed_sync_hosts: Vec<String>,
    /// Store `X-Versions-Location` as container metadata (`allow_versions`).
    pub allow_versions: bool,
    /// Answer Swift's `/recon/*` checks from these sources (`None`:
    /// such paths are database paths like any other).
    pub recon: Option<std::sync::Arc<crate::recon::ReconConfig>>,
}

impl DbServerConfig {
    /// Swift's defaults over the given devices directory and hash salt.
    pub fn new(devices: impl Into<PathBuf>, hash: HashConfig) -> Self {
        DbServerConfig {
            devices: devices.into(),
            mount_check: false,
            hash,
            policies: Policies::default(),
            fallocate_reserve_percent: 1.0,
            conn_timeout: Duration::from_millis(500),
            node_timeout: Duration::from_secs(3),
            allowed_sync_hosts: vec!["127.0.0.1".into()],
            allow_versions: false,
            recon: None,
        }
    }
}

/// Which database a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Account,
    Container,
}

impl DbKind {
    /// Swift's data directory name on each device.
    pub fn datadir(self) -> &'static str {
        match self {
            DbKind::Account => "accounts",
            DbKind::Container => "containers",
        }
    }
}

/// `<devices>/<device>/<datadir>/<partition>/<hash[-3:]>/<hash>/<hash>.db`,
/// Swift's `storage_directory` layout.
pub fn db_path(devices: &Path, device: &str, kind: DbKind, partition: &str, hash: &str) -> PathBuf {
    let suffix = hash.get(hash.len().saturating_sub(3)..).unwrap_or(hash);
    devices
        .join(device)
        .join(kind.datadir())
        .join(partition)
        .join(suffix)
        .join(hash)
        .join(format!("{hash}.db"))
}

// ---------------------------------------------------------------------------
// Errors as responses

/// A response decided early (Swift raises these as `HTTPException`s).
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub body: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
    /// The device a 507 is about.
    pub drive: Option<String>,
}

impl HttpError {
    pub fn new(status: StatusCode) -> Self {
        HttpError {
            status,
            body: None,
            headers: Vec::new(),
            drive: None,
        }
    }

    /// 507 for an unusable device.
    pub fn insufficient_storage(drive: &str) -> Self {
        HttpError {
            drive: Some(drive.to_string()),
            ..Self::new(StatusCode::INSUFFICIENT_STORAGE)
        }
    }

    pub fn with_body(status: StatusCode, body: impl Into<String>) -> Self {
        HttpError {
            status,
            body: Some(body.into()),
            headers: Vec::new(),
            drive: None,
        }
    }

    pub fn bad_request(body: impl Into<String>) -> Self {
        Self::with_body(StatusCode::BAD_REQUEST, body)
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_response(self, method: &Method) -> Response<DbBody> {
        let mut resp = match self.body {
            Some(body) => text_response(self.status, body),
            None => status_response(self.status, method, self.drive.as_deref()),
        };
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

impl From<DbError> for HttpError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound { .. } => HttpError::new(StatusCode::NOT_FOUND),
            DbError::MetadataLimit(msg) => HttpError::bad_request(msg),
            DbError::Invalid(msg) => HttpError::bad_request(msg),
            DbError::Corrupt {
                path,
                reason,
                detail,
            } => {
                match quarantine_db(&path) {
                    Ok(to) => tracing::error!(
                        db = %path.display(), to = %to.display(), reason, detail,
                        "quarantined a damaged database"
                    ),
                    Err(e) => tracing::error!(
                        db = %path.display(), reason, detail, error = %e,
                        "damaged database could not be quarantined"
                    ),
                }
                HttpError::new(StatusCode::INTERNAL_SERVER_ERROR)
            }
            other => {
                tracing::error!(error = %other, "database error");
                HttpError::new(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

pub type HttpResult<T> = Result<T, HttpError>;

/// Moves a damaged database's directory to the device's `quarantined/`
/// (apus-db's [`apus_db::quarantine_db`]). Blocking; returns where it went.
pub fn quarantine_db(db_file: &Path) -> std::io::Result<PathBuf> {
    apus_db::quarantine_db(db_file)
}

/// Runs blocking database work on tokio's blocking pool.
pub async fn blocking<T, F>(f: F) -> HttpResult<T>
where
    F: FnOnce() -> HttpResult<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "blocking database task failed");
            Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// A response with Swift's default HTML explanation for error statuses
/// (none for HEAD and for 2xx without one). `drive` completes 507's text.
pub fn status_response(
    status: StatusCode,
    method: &Method,
    drive: Option<&str>,
) -> Response<DbBody> {
    let body = if *method == Method::HEAD || status.as_u16() == 204 {
        None
    } else {
        apus_proto::status::default_body(status.as_u16(), drive)
    };
    match body {
        Some(b) => {
            let mut r = bytes_response(status, Bytes::from(b));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(apus_proto::status::DEFAULT_BODY_CONTENT_TYPE),
            );
            r
        }
        None => bytes_response(status, Bytes::new()),
    }
}

/// A plain-text response.
pub fn text_response(status: StatusCode, body: impl Into<String>) -> Response<DbBody> {
    let mut r = bytes_response(status, Bytes::from(body.into()));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

/// A response with `body` and its Content-Length.
pub fn bytes_response(status: StatusCode, body: Bytes) -> Response<DbBody> {
    let len = body.len();
    let mut r = Response::new(apus_http::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// 507 for `drive`.
pub fn insufficient_storage(method: &Method, drive: &str) -> Response<DbBody> {
    status_response(StatusCode::INSUFFICIENT_STORAGE, method, Some(drive))
}

/// Adds a header if its value is representable; metadata values that came
/// in as header values always are.
pub fn put_header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(n, v);
    } else if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value.as_bytes()),
    ) {
        headers.insert(n, v);
    }
}

// ---------------------------------------------------------------------------
// Paths

pub use apus_proto::{quote as percent_encode_path, title_case};

/// Swift's `split_path` (apus-proto's), its error as Swift's 400 text.
pub fn split_path(
    path: &str,
    minsegs: usize,
    maxsegs: usize,
    rest_with_last: bool,
) -> Result<Vec<Option<String>>, String> {
    apus_proto::split_path(path, minsegs, maxsegs, rest_with_last).map_err(|e| e.to_string())
}

/// The parts of a backend path. `account` is always present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbPath {
    pub device: String,
    pub partition: String,
    pub account: String,
    pub container: Option<String>,
    pub object: Option<String>,
}

const RESERVED: char = '\0';

fn validate_internal_name(name: &str, what: &str) -> HttpResult<()> {
    if name.contains(RESERVED) && !name.starts_with(RESERVED) {
        return Err(HttpError::bad_request(format!(
            "Invalid reserved-namespace {what}"
        )));
    }
    Ok(())
}

/// Swift's `validate_internal_container` / `validate_internal_obj`: a name
/// holds NUL only at its start, and objects of the reserved namespace
/// live in containers of it (and only there). 400 otherwise.
pub fn validate_internal_names(
    account: &str,
    container: Option<&str>,
    object: Option<&str>,
) -> HttpResult<()> {
    validate_internal_name(account, "account")?;
    let Some(c) = container.filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    validate_internal_name(c, "container")?;
    let Some(o) = object.filter(|o| !o.is_empty()) else {
        return Ok(());
    };
    if account.starts_with(AUTO_CREATE_ACCOUNT_PREFIX) {
        return Ok(());
    }
    validate_internal_name(o, "object")?;
    if c.starts_with(RESERVED) && !o.starts_with(RESERVED) {
        return Err(HttpError::bad_request(
            "Invalid user-namespace object in reserved-namespace container",
        ));
    }
    if o.starts_with(RESERVED) && !c.starts_with(RESERVED) {
        return Err(HttpError::bad_request(
            "Invalid reserved-namespace object in user-namespace container",
        ));
    }
    Ok(())
}

/// Decodes the request path, checks it is UTF-8 (412 otherwise, Swift's
/// `check_utf8` with reserved names allowed). Swift checks this before
/// anything else, the method included.
pub fn decode_path(raw: &str, utf8_error: &str) -> HttpResult<String> {
    let bytes = apus_proto::path::unquote_bytes(raw);
    match String::from_utf8(bytes) {
        Ok(s) if !s.is_empty() => Ok(s),
        _ => Err(HttpError::with_body(
            StatusCode::PRECONDITION_FAILED,
            utf8_error.to_string(),
        )),
    }
}

/// Splits and validates a decoded path (`split_and_validate_path` plus the
/// reserved-namespace checks): 400 on failure.
pub fn parse_path(
    path: &str,
    minsegs: usize,
    maxsegs: usize,
    rest_with_last: bool,
) -> HttpResult<DbPath> {
    let segs =
        split_path(path, minsegs, maxsegs, rest_with_last).map_err(HttpError::bad_request)?;
    let mut it = segs.into_iter();
    let device = it.next().flatten().unwrap_or_default();
    let partition = it.next().flatten().unwrap_or_default();
    let account = it.next().flatten().unwrap_or_default();
    let container = it.next().flatten();
    let object = it.next().flatten();
    if device.is_empty() || device.contains('/') || device == "." || device == ".." {
        return Err(HttpError::bad_request(format!(
            "Invalid device: {}",
            percent_encode_path(&device)
        )));
    }
    if partition.is_empty() || partition.contains('/') || partition == "." || partition == ".." {
        return Err(HttpError::bad_request(format!(
            "Invalid partition: {}",
            percent_encode_path(&partition)
        )));
    }
    if account.is_empty() {
        return Err(HttpError::bad_request("Account is required"));
    }
    validate_internal_names(&account, container.as_deref(), object.as_deref())?;
    Ok(DbPath {
        device,
        partition,
        account,
        container,
        object,
    })
}

/// Swift's `check_drive`: the name must survive `quote_plus` unchanged and
/// name a directory (a mount point with `mount_check`). Returns the
/// device's path, or `None` for a 507.
pub fn check_drive(devices: &Path, drive: &str, mount_check: bool) -> Option<PathBuf> {
    if drive.is_empty()
        || !drive
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-~".contains(&c))
    {
        return None;
    }
    let path = devices.join(drive);
    if mount_check {
        is_mount(&path).then_some(path)
    } else {
        path.is_dir().then_some(path)
    }
}

fn is_mount(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !me.is_dir() {
        return false;
    }
    let Ok(parent) = std::fs::metadata(path.join("..")) else {
        return false;
    };
    me.dev() != parent.dev() || me.ino() == parent.ino()
}

/// Swift's `fs_has_free_space` with a percentage reserve.
pub fn has_free_space(path: &Path, reserve_percent: f64) -> bool {
    if reserve_percent <= 0.0 {
        return true;
    }
    match rustix::fs::statvfs(path) {
        Ok(st) => {
            if st.f_blocks == 0 {
                return true;
            }
            let free = st.f_bavail as f64 / st.f_blocks as f64 * 100.0;
            free > reserve_percent
        }
        Err(_) => true,
    }
}

// ---------------------------------------------------------------------------
// Headers

/// Case-insensitive header lookup as a string (`None` if absent or not
/// valid UTF-8).
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header value decoded as UTF-8 (lossless for valid UTF-8, lossy for
/// the rest).
pub fn header_string(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

/// A header value a database keeps as metadata. Swift's
/// `validate_metadata` refuses values that are not UTF-8 or hold NUL
/// (`check_utf8`) with 400, whichever header carries them (user metadata,
/// sysmeta, ACLs, sync settings): database metadata is JSON text.
pub fn metadata_value(v: &HeaderValue) -> HttpResult<String> {
    match std::str::from_utf8(v.as_bytes()) {
        Ok(s) if !s.contains('\0') => Ok(s.to_string()),
        _ => Err(HttpError::bad_request("Metadata must be valid UTF-8")),
    }
}

/// Swift's `config_true_value`.
pub fn true_value(v: Option<&str>) -> bool {
    matches!(
        v.map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("true" | "1" | "yes" | "on" | "t" | "y")
    )
}

/// `X-Timestamp`, required: 400 if missing or invalid.
pub fn req_timestamp(headers: &HeaderMap) -> HttpResult<Timestamp> {
    let Some(raw) = headers.get("x-timestamp") else {
        return Err(HttpError::bad_request("Missing X-Timestamp header"));
    };
    raw.to_str()
        .ok()
        .and_then(|s| Timestamp::parse(s).ok())
        .ok_or_else(|| HttpError::bad_request("Invalid X-Timestamp header"))
}

/// Swift's `is_sys_or_user_meta(server_type, key)` for `account` or
/// `container`.
pub fn is_sys_or_user_meta(server_type: &str, key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let user = format!("x-{server_type}-meta-");
    let sys = format!("x-{server_type}-sysmeta-");
    (key.len() > 8 + server_type.len() && lower.starts_with(&user))
        || (key.len() > 11 + server_type.len() && lower.starts_with(&sys))
}

/// An HTTP date (`Last-Modified`) for whole seconds since the epoch.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = apus_core::timestamp::civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m.clamp(1, 12) - 1) as usize],
        y,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------
// Query parameters and listing formats

pub use apus_proto::listing::{best_match, BadAccept, ListingError, ListingFormat, Query};

impl From<ListingError> for HttpError {
    fn from(e: ListingError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        match e {
            ListingError::NotAcceptable => HttpError::new(status),
            other => HttpError::with_body(status, other.to_string()),
        }
    }
}

/// Swift's `get_listing_content_type`: `format=` overrides `Accept`; 400 on
/// a malformed Accept header, 406 when nothing offered is acceptable.
pub fn listing_format(query: &Query, headers: &HeaderMap) -> HttpResult<ListingFormat> {
    let accept = headers.get(http::header::ACCEPT).map(HeaderValue::as_bytes);
    Ok(apus_proto::listing::listing_format(query, accept)?)
}

/// A JSON string as Python's `json.dumps` writes it (ASCII only).
pub use apus_core::pyjson::push_json_str as json_str;

/// XML as Swift writes its listings (one copy, shared with the proxy).
pub use apus_proto::listing::{xml_attr, xml_text, XML_DECLARATION};

// ---------------------------------------------------------------------------
// Serving

/// A server running on its own task: its address, and a way to stop it.
pub struct ServerHandle {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ServerHandle {
    /// Serves `handler` on `listener` with apus-http's bootstrap.
    pub fn spawn<H: apus_http::Handler>(
        listener: TcpListener,
        handler: Arc<H>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(apus_http::serve(listener, handler, async move {
            let _ = rx.await;
        }));
        Ok(ServerHandle {
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// Stops accepting, lets requests in progress finish (bounded by
    /// apus-http's graceful timeout) and waits for the server to end.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_like_swift() {
        assert_eq!(
            split_path("/d/p/a", 3, 3, false).unwrap(),
            vec![Some("d".into()), Some("p".into()), Some("a".into())]
        );
        assert_eq!(
            split_path("/d/p/a/c/o/r", 4, 5, true).unwrap()[4],
            Some("o/r".into())
        );
        assert_eq!(split_path("/d/p/a/c", 4, 5, true).unwrap()[4], None);
        assert!(split_path("/d/p/a/c/", 4, 4, false).is_ok());
        assert!(split_path("/d/p/a/c/x", 4, 4, false).is_err());
        assert!(split_path("/d/p", 3, 4, false).is_err());
        assert!(split_path("/d//a", 3, 4, false).is_err());
        assert_eq!(
            split_path("/d/p/a/", 3, 4, false).unwrap()[3],
            Some("".into())
        );
        // Account server PUT: /d/p/a (3..4)
        assert_eq!(split_path("/d/p/a", 3, 4, false).unwrap()[3], None);
    }

    #[test]
    fn title_case_like_wsgi() {
        assert_eq!(title_case("x-container-meta-foo"), "X-Container-Meta-Foo");
        assert_eq!(title_case("X-CONTAINER-META-a1b"), "X-Container-Meta-A1B");
    }

    #[test]
    fn json_escapes_like_python() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\\n\u{1}é😀\u{7f}");
        assert_eq!(s, "\"a\\\"b\\\\\\n\\u0001\\u00e9\\ud83d\\ude00\\u007f\"");
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn db_layout() {
        let p = db_path(
            Path::new("/srv"),
            "sda",
            DbKind::Container,
            "7",
            "abcdef0123",
        );
        assert_eq!(
            p,
            Path::new("/srv/sda/containers/7/123/abcdef0123/abcdef0123.db")
        );
    }

    #[test]
    fn listing_errors_as_responses() {
        let err = |e: ListingError| {
            let e = HttpError::from(e);
            (e.status.as_u16(), e.body)
        };
        let q = Query::parse(Some("limit=10001&prefix=%ff"));
        assert_eq!(
            err(q.limit(10_000).unwrap_err()),
            (412, Some("Maximum limit is 10000".into()))
        );
        assert_eq!(
            err(q.get("prefix").unwrap_err()),
            (400, Some("\"prefix\" parameter not valid UTF-8".into()))
        );
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("image/png"));
        let e = listing_format(&Query::parse(None), &headers).unwrap_err();
        assert_eq!((e.status.as_u16(), e.body), (406, None));
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("garbage"));
        let e = listing_format(&Query::parse(None), &headers).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.body),
            (400, Some("Invalid Accept header".into()))
        );
    }
}
