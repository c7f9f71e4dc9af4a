//! Swift's `tempauth`: v1.0 token auth with users from configuration,
//! reseller prefixes, and the authorization rules (account owners,
//! reseller admins, container ACLs, account ACLs, service tokens).
//!
//! Getting a token: `GET <auth_prefix>v1.0` (also `<auth_prefix>auth` and
//! `<auth_prefix>v1/<account>/auth`) with `X-Auth-User: account:user` and
//! `X-Auth-Key` (or `X-Storage-User` / `X-Storage-Pass`). Tokens are
//! `<reseller prefix>tk` + 32 random hex digits, kept in memory until
//! they expire; a user who logs in again while their token is valid gets
//! the same one back.
//!
//! Using a token: a request with a valid `X-Auth-Token` (or
//! `X-Storage-Token`) gets the user's groups as its `remote_user` and
//! tempauth's rules as its authorize callback; an unknown or expired token
//! of our reseller prefix is refused with 401 at once. Requests without a
//! token to accounts of our reseller prefixes get the rules too (anonymous
//! access through ACLs); requests outside our prefixes are denied unless
//! another auth system installed a callback first.
//!
//! Account ACLs (`X-Account-Access-Control`) are checked here and stored
//! by the account server as `X-Account-Sysmeta-Core-Access-Control`; the
//! owners of an account see them again on GET and HEAD.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use apus_proto::path::{percent_decode, quote, split_path};
use http::{HeaderValue, Method, Request, StatusCode};

use crate::acl;
use crate::config::TempAuthConfig;
use crate::service::{
    env_mut, error_response, header_str, set_header, split_request_path, AuthRequest, Authorize,
    BoxFuture, Grant, Req, Resp, Service, SharedService,
};

/// The header clients set and read account ACLs with.
pub const ACCOUNT_ACL_HEADER: &str = "x-account-access-control";
/// Where the account server keeps them.
pub const ACCOUNT_ACL_SYSMETA: &str = "x-account-sysmeta-core-access-control";

/// A configured user.
struct User {
    key: String,
    groups: Vec<String>,
    /// The last segment of the user's storage URL: the default reseller
    /// prefix followed by the quoted account name (`AUTH_test`).
    account_id: String,
}

struct TokenEntry {
    expires: Instant,
    groups: Vec<String>,
}

/// Tempauth's issued tokens, shareable beyond the filter (see
/// [`TempAuthConfig::tokens`]).
#[derive(Default)]
pub struct TempAuthTokens(Mutex<Tokens>);

impl std::fmt::Debug for TempAuthTokens {
    // Tokens are secrets: only how many there are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.lock().by_token.len();
        write!(f, "TempAuthTokens({n} issued)")
    }
}

impl TempAuthTokens {
    fn lock(&self) -> MutexGuard<'_, Tokens> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The groups of a valid, unexpired token (Swift's order: account,
    /// `account:user`, then the user's groups).
    pub fn groups(&self, token: &str) -> Option<Vec<String>> {
        let tokens = self.lock();
        let entry = tokens.by_token.get(token)?;
        if entry.expires <= Instant::now() {
            return None;
        }
        Some(entry.groups.clone())
    }
}

#[derive(Default)]
struct Tokens {
    by_token: HashMap<String, TokenEntry>,
    /// `account:user` → that user's latest token.
    by_user: HashMap<String, String>,
}

struct Inner {
    /// Reseller prefixes with their `_`; the first is the default.
    reseller_prefixes: Vec<String>,
    require_group: BTreeMap<String, String>,
    auth_prefix: String,
    token_life: Duration,
    /// Keyed by `account:user`.
    users: HashMap<String, User>,
    tokens: Arc<TempAuthTokens>,
    next: SharedService,
}

pub struct TempAuth {
    inner: Arc<Inner>,
}

impl TempAuth {
    pub fn new(config: TempAuthConfig, next: SharedService) -> Self {
        let mut reseller_prefixes = config.reseller_prefixes;
        if reseller_prefixes.is_empty() {
            reseller_prefixes.push("AUTH_".to_string());
        }
        let mut auth_prefix = config.auth_prefix;
        if auth_prefix.trim_matches('/').is_empty() {
            auth_prefix = "/auth/".to_string();
        }
        if !auth_prefix.starts_with('/') {
            auth_prefix.insert(0, '/');
        }
        if !auth_prefix.ends_with('/') {
            auth_prefix.push('/');
        }
        let default_prefix = reseller_prefixes[0].clone();
        let users = config
            .users
            .into_iter()
            .map(|u| {
                let account_id = format!("{default_prefix}{}", quote(&u.account));
                // Swift takes the last `/`-segment of the storage URL.
                let account_id = match account_id.rfind('/') {
                    Some(i) => account_id[i + 1..].to_string(),
                    None => account_id,
                };
                (
                    format!("{}:{}", u.account, u.user),
                    User {
                        key: u.key,
                        groups: u.groups,
                        account_id,
                    },
                )
            })
            .collect();
        TempAuth {
            inner: Arc::new(Inner {
                reseller_prefixes,
                require_group: config.require_group,
                auth_prefix,
                token_life: config.token_life,
                users,
                tokens: config.tokens,
                next,
            }),
        }
    }
}

/// A 401 with `Www-Authenticate: Swift realm="<account>"` (`unknown` when
/// the path names no account), as Swift's responses carry.
pub(crate) fn unauthorized(path: &str) -> Resp {
    let realm = match split_path(path, 2, 3, true) {
        Ok(segs) => match segs.get(1).cloned().flatten() {
            Some(r) if r != "v1.0" && r != "auth" => quote(&r),
            _ => "unknown".to_string(),
        },
        Err(_) => "unknown".to_string(),
    };
    unauthorized_realm(&realm)
}

fn unauthorized_realm(realm: &str) -> Resp {
    let mut resp = error_response(StatusCode::UNAUTHORIZED, None);
    let value = format!("Swift realm=\"{realm}\"");
    let value = match HeaderValue::from_str(&value) {
        Ok(v) => v,
        Err(_) => HeaderValue::from_str(&format!("Swift realm=\"{}\"", quote(realm)))
            .unwrap_or_else(|_| HeaderValue::from_static("Swift realm=\"unknown\"")),
    };
    resp.headers_mut()
        .insert(http::header::WWW_AUTHENTICATE, value);
    resp
}

/// Swift's `denied_response`: 403 for an authenticated caller, 401 for an
/// anonymous one.
fn denied(req: &AuthRequest<'_>) -> Resp {
    if req.env.remote_user.is_empty() {
        unauthorized(req.path)
    } else {
        error_response(StatusCode::FORBIDDEN, None)
    }
}

/// The 400 for an `X-Account-Access-Control` tempauth does not accept.
fn bad_account_acl(error: &str, input: &str) -> Resp {
    let body = format!("X-Account-Access-Control invalid: {error}\n\nInput: {input}\n");
    let mut resp = error_response(StatusCode::BAD_REQUEST, Some(&body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    resp
}

fn random_hex() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A header's text when present and not empty (Python's `if not value`).
fn nonempty_header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    header_str(headers, name).filter(|s| !s.is_empty())
}

impl Inner {
    fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock()
    }

    fn reseller_prefix(&self) -> &str {
        self.reseller_prefixes
            .first()
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The reseller prefix `account` belongs to: the first non-empty one
    /// it starts with, else `""` when that is one of ours.
    fn account_prefix(&self, account: &str) -> Option<&str> {
        self.reseller_prefixes
            .iter()
            .filter(|p| !p.is_empty())
            .find(|p| account.starts_with(p.as_str()))
            .or_else(|| self.reseller_prefixes.iter().find(|p| p.is_empty()))
            .map(String::as_str)
    }

    /// Whether the account is one of ours (we are the definitive auth).
    fn is_definitive(&self, path: &str) -> bool {
        match split_path(path, 1, 3, true) {
            Ok(segs) => match segs.get(1).cloned().flatten() {
                Some(account) if !account.is_empty() => self.account_prefix(&account).is_some(),
                _ => false,
            },
            Err(_) => false,
        }
    }

    /// Accounts whose name starts with `.` after the prefix are the
    /// cluster's own; even reseller admins do not own them.
    fn dot_account(&self, account: &str) -> bool {
        match self.account_prefix(account) {
            Some(prefix) => account[prefix.len()..].starts_with('.'),
            None => false,
        }
    }

    /// A user's groups in Swift's order: `account`, `account:user`, the
    /// configured groups; `.admin` is replaced by the account under every
    /// reseller prefix (the account the user administers).
    fn user_groups(&self, account: &str, account_user: &str, user: &User) -> Vec<String> {
        let mut groups = vec![account.to_string(), account_user.to_string()];
        groups.extend(user.groups.iter().cloned());
        if let Some(pos) = groups.iter().position(|g| g == ".admin") {
            groups.remove(pos);
            for prefix in self.reseller_prefixes.iter().filter(|p| !p.is_empty()) {
                groups.push(format!("{prefix}{account}"));
            }
            if !groups.contains(&user.account_id) {
                groups.push(user.account_id.clone());
            }
        }
        groups
    }

    /// The groups of a valid, unexpired token.
    fn token_groups(&self, token: &str) -> Option<Vec<String>> {
        let prefix = format!("{}tk", self.reseller_prefix());
        if !token.starts_with(&prefix) {
            return None;
        }
        self.tokens.groups(token)
    }

    /// The user's current token if still valid for the same groups, else a
    /// new one; with the time it has left.
    fn issue_token(
        &self,
        account_user: &str,
        groups: Vec<String>,
    ) -> std::io::Result<(String, Instant)> {
        let now = Instant::now();
        let mut tokens = self.tokens();
        if let Some(old) = tokens.by_user.get(account_user) {
            if let Some(entry) = tokens.by_token.get(old) {
                let same: bool = entry.groups.iter().collect::<HashSet<_>>()
                    == groups.iter().collect::<HashSet<_>>();
                if entry.expires > now && same {
                    return Ok((old.clone(), entry.expires));
                }
            }
        }
        let Tokens { by_token, by_user } = &mut *tokens;
        by_token.retain(|_, e| e.expires > now);
        by_user.retain(|_, t| by_token.contains_key(t));
        let token = format!("{}tk{}", self.reseller_prefix(), random_hex()?);
        let expires = now
            .checked_add(self.token_life)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        by_token.insert(token.clone(), TokenEntry { expires, groups });
        by_user.insert(account_user.to_string(), token.clone());
        Ok((token, expires))
    }

    /// Requests under the auth prefix: only token requests, with GET.
    fn handle_auth(&self, req: &Req, path: &str) -> Resp {
        // Drop the first segment of the path, the auth prefix's.
        let path_info = match path.get(1..).and_then(|rest| rest.find('/')) {
            Some(i) => &path[i + 1..],
            None => "",
        };
        if req.method() != Method::GET {
            return error_response(StatusCode::METHOD_NOT_ALLOWED, None);
        }
        let segs = match split_path(path_info, 1, 4, true) {
            Ok(s) => s,
            Err(_) => return error_response(StatusCode::NOT_FOUND, None),
        };
        match segs[0].as_deref() {
            Some("v1" | "v1.0" | "auth") => self.get_token(req, path_info),
            _ => error_response(StatusCode::BAD_REQUEST, None),
        }
    }

    fn get_token(&self, req: &Req, path_info: &str) -> Resp {
        let segs = match split_path(path_info, 1, 3, true) {
            Ok(s) => s,
            Err(_) => return error_response(StatusCode::NOT_FOUND, None),
        };
        let headers = req.headers();
        let (account, user, key): (String, Option<String>, Option<&str>);
        if segs[0].as_deref() == Some("v1") && segs[2].as_deref() == Some("auth") {
            account = segs[1].clone().unwrap_or_default();
            match nonempty_header(headers, "x-storage-user") {
                Some(u) => user = Some(u.to_string()),
                None => {
                    let Some((account2, u)) =
                        nonempty_header(headers, "x-auth-user").and_then(|u| u.split_once(':'))
                    else {
                        return unauthorized_realm(&account);
                    };
                    if account2 != account {
                        return unauthorized_realm(&account);
                    }
                    user = Some(u.to_string());
                }
            }
            key = nonempty_header(headers, "x-storage-pass")
                .or_else(|| nonempty_header(headers, "x-auth-key"));
        } else if matches!(segs[0].as_deref(), Some("auth" | "v1.0")) {
            let Some((a, u)) = nonempty_header(headers, "x-auth-user")
                .or_else(|| nonempty_header(headers, "x-storage-user"))
                .and_then(|u| u.split_once(':'))
            else {
                return unauthorized_realm("unknown");
            };
            account = a.to_string();
            user = Some(u.to_string());
            key = nonempty_header(headers, "x-auth-key")
                .or_else(|| nonempty_header(headers, "x-storage-pass"));
        } else {
            return error_response(StatusCode::BAD_REQUEST, None);
        }
        let realm = if account.is_empty() {
            "unknown"
        } else {
            account.as_str()
        };
        let (Some(user), Some(key)) = (user.filter(|u| !u.is_empty()), key) else {
            return unauthorized_realm(realm);
        };
        if account.is_empty() {
            return unauthorized_realm(realm);
        }
        let account_user = format!("{account}:{user}");
        let Some(entry) = self.users.get(&account_user) else {
            return unauthorized_realm(realm);
        };
        if entry.key != key {
            return unauthorized_realm(realm);
        }
        let groups = self.user_groups(&account, &account_user, entry);
        let (token, expires) = match self.issue_token(&account_user, groups) {
            Ok(t) => t,
            Err(_) => {
                let mut resp = error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some("Internal server error.\n"),
                );
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                );
                return resp;
            }
        };
        let left = expires.saturating_duration_since(Instant::now()).as_secs();
        let mut resp = error_response(StatusCode::OK, None);
        let h = resp.headers_mut();
        set_header(h, "x-auth-token", &token);
        set_header(h, "x-storage-token", &token);
        set_header(h, "x-auth-token-expires", &left.to_string());
        let url = format!("{}/v1/{}", host_url(req), entry.account_id);
        set_header(h, "x-storage-url", &url);
        resp
    }

    /// Swift's `authorize`.
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Grant, Resp> {
        let Some((account, container, obj)) = split_request_path(req.path) else {
            return Err(error_response(StatusCode::NOT_FOUND, None));
        };
        let Some(account) = account else {
            return Err(denied(req));
        };
        let Some(prefix) = self.account_prefix(&account) else {
            return Err(denied(req));
        };
        if let Some(value) = req.headers.get(ACCOUNT_ACL_HEADER) {
            let text = String::from_utf8_lossy(value.as_bytes());
            if let Err(e) = acl::check_tempauth_account_acl(&text) {
                return Err(bad_account_acl(&e, &text));
            }
        }
        // An anonymous caller matches as the one empty group, as in Swift.
        let anonymous = [String::new()];
        let user_groups: &[String] = if req.env.remote_user.is_empty() {
            &anonymous
        } else {
            &req.env.remote_user
        };
        let has = |g: &str| user_groups.iter().any(|u| u == g);
        let method = req.method;
        let is_read = *method == Method::GET || *method == Method::HEAD;
        let owner = Grant { owner: true };
        let plain = Grant { owner: false };

        let resellers_own =
            !self.reseller_prefixes.contains(&account) && !self.dot_account(&account);
        if has(".reseller_admin") && resellers_own {
            return Ok(owner);
        }
        if has(".reseller_reader") && resellers_own && is_read {
            return Ok(plain);
        }
        if has(&account)
            && (!(*method == Method::DELETE || *method == Method::PUT) || container.is_some())
        {
            match self.require_group.get(prefix).filter(|g| !g.is_empty()) {
                Some(group) if has(group) => return Ok(owner),
                Some(_) => {}
                None => return Ok(owner),
            }
        }
        if *method == Method::OPTIONS {
            return Ok(plain);
        }
        let (referrers, groups) = acl::parse_acl(req.acl);
        if acl::referrer_allowed(header_str(req.headers, "referer"), &referrers)
            && (obj.is_some() || groups.iter().any(|g| g == ".rlistings"))
        {
            return Ok(plain);
        }
        if user_groups.iter().any(|u| groups.contains(u)) {
            return Ok(plain);
        }
        if let Some(acls) = self.account_acls(req, &account).await {
            let any_in = |list: &[String]| user_groups.iter().any(|u| list.contains(u));
            if any_in(&acls.admin) {
                return Ok(owner);
            }
            if any_in(&acls.read_write) && (container.is_some() || is_read) {
                return Ok(plain);
            }
            if any_in(&acls.read_only) && is_read {
                return Ok(plain);
            }
        }
        Err(denied(req))
    }

    /// The account's ACLs, read with a HEAD of the account that is not
    /// itself authorized.
    async fn account_acls(&self, req: &AuthRequest<'_>, account: &str) -> Option<acl::AccountAcls> {
        let mut env = req.env.subrequest("TA");
        env.authorize = None;
        let mut sub = Request::builder()
            .method(Method::HEAD)
            .uri(format!("/v1/{}", quote(account)))
            .body(apus_http::empty())
            .ok()?;
        sub.extensions_mut().insert(env);
        let resp = self.next.call(sub).await;
        acl::account_acls_from_sysmeta(header_str(resp.headers(), ACCOUNT_ACL_SYSMETA))
    }
}

/// `<scheme>://<host>` of the request, from its Host header.
fn host_url(req: &Req) -> String {
    let host = nonempty_header(req.headers(), "host")
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let scheme = req.uri().scheme_str().unwrap_or("http");
    let host = match scheme {
        "http" => host.strip_suffix(":80").unwrap_or(&host),
        "https" => host.strip_suffix(":443").unwrap_or(&host),
        _ => &host,
    };
    format!("{scheme}://{host}")
}

/// The authorize callback installed on a request.
struct Authorizer {
    inner: Arc<Inner>,
    /// Not ours to authorize: deny everything (Swift's `denied_response`
    /// installed as the callback).
    deny_all: bool,
    /// The account the client request addresses at account level.
    request_account: Option<String>,
    /// An owner grant was given for that account.
    owns_request_account: AtomicBool,
}

impl Authorize for Authorizer {
    fn authorize<'a>(&'a self, req: AuthRequest<'a>) -> BoxFuture<'a, Result<Grant, Resp>> {
        Box::pin(async move {
            if self.deny_all {
                return Err(denied(&req));
            }
            let result = self.inner.authorize(&req).await;
            if let (Ok(Grant { owner: true }), Some(want)) = (&result, &self.request_account) {
                if let Some((Some(account), None, _)) = split_request_path(req.path) {
                    if &account == want {
                        self.owns_request_account.store(true, Ordering::Relaxed);
                    }
                }
            }
            result
        })
    }
}

impl Service for TempAuth {
    fn call(&self, mut req: Req) -> BoxFuture<'_, Resp> {
        Box::pin(async move {
            if crate::service::env(&req).authorize_override {
                return self.inner.next.call(req).await;
            }
            let inner = &self.inner;
            let raw = req.uri().path().to_string();
            let path = percent_decode(&raw).unwrap_or(raw);
            if path.starts_with(&inner.auth_prefix) {
                return inner.handle_auth(&req, &path);
            }
            let headers = req.headers();
            let token = headers
                .get("x-auth-token")
                .or_else(|| headers.get("x-storage-token"))
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .filter(|t| !t.is_empty());
            let service_token = nonempty_header(headers, "x-service-token").map(str::to_string);
            let parts = split_request_path(&path);
            let account_level = match &parts {
                Some((Some(a), None, _)) => Some(a.clone()),
                _ => None,
            };
            let rules = |inner: &Arc<Inner>| {
                Arc::new(Authorizer {
                    inner: inner.clone(),
                    deny_all: false,
                    request_account: account_level.clone(),
                    owns_request_account: AtomicBool::new(false),
                })
            };
            let deny = |inner: &Arc<Inner>| -> Arc<dyn Authorize> {
                Arc::new(Authorizer {
                    inner: inner.clone(),
                    deny_all: true,
                    request_account: None,
                    owns_request_account: AtomicBool::new(false),
                })
            };
            let prefix = inner.reseller_prefix().to_string();
            let mut installed: Option<Arc<Authorizer>> = None;
            let env = env_mut(&mut req);
            // A user s3api verified by S3 signature: as if by token.
            let s3_groups = env
                .s3_user
                .as_deref()
                .and_then(|u| inner.users.get(u).map(|user| (u, user)))
                .map(|(u, user)| {
                    let account = u.split(':').next().unwrap_or_default();
                    inner.user_groups(account, u, user)
                });
            if let Some(groups) = s3_groups {
                env.remote_user = groups;
                let a = rules(inner);
                env.authorize = Some(a.clone());
                installed = Some(a);
            } else {
                match token {
                    Some(token) if token.starts_with(&prefix) => match inner.token_groups(&token) {
                        Some(mut groups) => {
                            if let Some(st) = service_token {
                                if let Some(service_groups) = inner.token_groups(&st) {
                                    groups.extend(service_groups);
                                }
                            }
                            env.remote_user = groups;
                            let a = rules(inner);
                            env.authorize = Some(a.clone());
                            installed = Some(a);
                        }
                        None if !prefix.is_empty() => return unauthorized(&path),
                        None => {
                            if env.authorize.is_none() {
                                env.authorize = Some(deny(inner));
                            }
                        }
                    },
                    _ => {
                        if inner.is_definitive(&path) {
                            let a = rules(inner);
                            env.authorize = Some(a.clone());
                            installed = Some(a);
                        } else if prefix.is_empty() {
                            if env.authorize.is_none() {
                                let a = rules(inner);
                                env.authorize = Some(a.clone());
                                installed = Some(a);
                            }
                        } else if env.authorize.is_none() {
                            env.authorize = Some(deny(inner));
                        }
                    }
                }
            }

            // Account ACLs: checked whenever we authorize a request for one
            // of our accounts, and handed to the account server as sysmeta.
            // Only owners get an account POST or PUT past authorization.
            let ours = matches!(&parts, Some((Some(a), _, _)) if inner.account_prefix(a).is_some());
            if installed.is_some() && ours {
                if let Some(value) = req.headers_mut().remove(ACCOUNT_ACL_HEADER) {
                    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    if let Err(e) = acl::check_tempauth_account_acl(&text) {
                        return bad_account_acl(&e, &text);
                    }
                    if account_level.is_some() {
                        req.headers_mut().insert(ACCOUNT_ACL_SYSMETA, value);
                    }
                }
            }

            let method = req.method().clone();
            let mut resp = inner.next.call(req).await;
            let shows_acl = matches!(
                method,
                Method::GET | Method::HEAD | Method::PUT | Method::POST
            );
            if let Some(a) = installed {
                if shows_acl && a.owns_request_account.load(Ordering::Relaxed) {
                    let stored =
                        header_str(resp.headers(), ACCOUNT_ACL_SYSMETA).map(str::to_string);
                    if let Some(acl) = acl::parse_acl_v2(stored.as_deref()) {
                        if !acl.is_empty() {
                            set_header(
                                resp.headers_mut(),
                                ACCOUNT_ACL_HEADER,
                                &acl::format_acl_v2(&acl),
                            );
                        }
                    }
                }
            }
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TempAuthUser;
    use crate::service::{env, Env};
    use http::HeaderMap;
    use http_body_util::BodyExt;

    /// What the fake app saw of one request.
    #[derive(Clone)]
    struct Seen {
        method: Method,
        path: String,
        headers: HeaderMap,
        env: Env,
        grant: Option<Grant>,
    }

    /// Stands in for the controllers: authorizes as they do (first without
    /// an ACL, then with the container's for container reads and object
    /// requests) and answers 204, with the account's stored ACL on account
    /// GET and HEAD.
    #[derive(Default)]
    struct FakeApp {
        seen: Mutex<Vec<Seen>>,
        read_acl: Mutex<Option<String>>,
        write_acl: Mutex<Option<String>>,
        account_sysmeta: Mutex<Option<String>>,
    }

    impl Service for FakeApp {
        fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
            Box::pin(async move {
                let e = env(&req);
                let path = percent_decode(req.uri().path()).unwrap();
                let parts = split_request_path(&path);
                let mut grant = None;
                let mut denial = None;
                if let Some(auth) = &e.authorize {
                    let first = auth
                        .authorize(AuthRequest {
                            method: req.method(),
                            path: &path,
                            headers: req.headers(),
                            env: &e,
                            acl: None,
                        })
                        .await;
                    let result = match first {
                        Ok(g) => Ok(g),
                        Err(d) => {
                            let is_read =
                                req.method() == Method::GET || req.method() == Method::HEAD;
                            let retry = match &parts {
                                Some((_, Some(_), Some(_))) => true,
                                Some((_, Some(_), None)) => is_read,
                                _ => false,
                            };
                            if retry {
                                let acl = if is_read {
                                    self.read_acl.lock().unwrap().clone()
                                } else {
                                    self.write_acl.lock().unwrap().clone()
                                };
                                auth.authorize(AuthRequest {
                                    method: req.method(),
                                    path: &path,
                                    headers: req.headers(),
                                    env: &e,
                                    acl: acl.as_deref(),
                                })
                                .await
                            } else {
                                Err(d)
                            }
                        }
                    };
                    match result {
                        Ok(g) => grant = Some(g),
                        Err(d) => denial = Some(d),
                    }
                }
                self.seen.lock().unwrap().push(Seen {
                    method: req.method().clone(),
                    path: path.clone(),
                    headers: req.headers().clone(),
                    env: e,
                    grant,
                });
                if let Some(d) = denial {
                    return d;
                }
                let mut resp = crate::service::status_response(StatusCode::NO_CONTENT);
                if matches!(&parts, Some((Some(_), None, _)))
                    && (req.method() == Method::GET || req.method() == Method::HEAD)
                {
                    if let Some(s) = self.account_sysmeta.lock().unwrap().as_deref() {
                        set_header(resp.headers_mut(), ACCOUNT_ACL_SYSMETA, s);
                    }
                }
                resp
            })
        }
    }

    struct Harness {
        app: Arc<FakeApp>,
        auth: TempAuth,
    }

    fn harness_with(config: TempAuthConfig) -> Harness {
        let app = Arc::new(FakeApp::default());
        let auth = TempAuth::new(config, app.clone());
        Harness { app, auth }
    }

    fn harness() -> Harness {
        harness_with(TempAuthConfig::functest_defaults())
    }

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Req {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(apus_http::empty()).unwrap()
    }

    async fn body(resp: Resp) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn hdr<'a>(resp: &'a Resp, name: &str) -> Option<&'a str> {
        header_str(resp.headers(), name)
    }

    impl Harness {
        async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Resp {
            self.auth.call(request(method, path, headers)).await
        }

        async fn login(&self, user: &str, key: &str) -> String {
            let resp = self
                .send(
                    Method::GET,
                    "/auth/v1.0",
                    &[("x-auth-user", user), ("x-auth-key", key)],
                )
                .await;
            assert_eq!(resp.status(), 200, "login {user}");
            hdr(&resp, "x-auth-token").unwrap().to_string()
        }

        /// A request with `user`'s token; returns its status.
        async fn status_as(&self, token: &str, method: Method, path: &str) -> u16 {
            self.send(method, path, &[("x-auth-token", token)])
                .await
                .status()
                .as_u16()
        }

        fn last(&self) -> Seen {
            self.app.seen.lock().unwrap().last().cloned().unwrap()
        }

        fn client_requests(&self) -> Vec<Seen> {
            let seen = self.app.seen.lock().unwrap();
            seen.iter()
                .filter(|s| s.env.source.is_none())
                .cloned()
                .collect()
        }

        fn set_account_acl(&self, acl: Option<&str>) {
            *self.app.account_sysmeta.lock().unwrap() = acl.map(str::to_string);
        }

        fn set_container_acls(&self, read: Option<&str>, write: Option<&str>) {
            *self.app.read_acl.lock().unwrap() = read.map(str::to_string);
            *self.app.write_acl.lock().unwrap() = write.map(str::to_string);
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn login_gives_token_and_storage_url() {
        let h = harness();
        let resp = h
            .send(
                Method::GET,
                "/auth/v1.0",
                &[
                    ("x-auth-user", "test:tester"),
                    ("x-auth-key", "testing"),
                    ("host", "example.com:8080"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200);
        let token = hdr(&resp, "x-auth-token").unwrap().to_string();
        assert!(token.starts_with("AUTH_tk"), "{token}");
        assert_eq!(token.len(), "AUTH_tk".len() + 32);
        assert!(token["AUTH_tk".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(hdr(&resp, "x-storage-token"), Some(token.as_str()));
        let expires: u64 = hdr(&resp, "x-auth-token-expires").unwrap().parse().unwrap();
        assert!((86_398..=86_400).contains(&expires), "{expires}");
        assert_eq!(
            hdr(&resp, "x-storage-url"),
            Some("http://example.com:8080/v1/AUTH_test")
        );
        assert!(h.app.seen.lock().unwrap().is_empty());

        // The storage variants of the headers, other paths, default host.
        for (path, headers) in [
            (
                "/auth/v1.0",
                vec![
                    ("x-storage-user", "test:tester"),
                    ("x-storage-pass", "testing"),
                ],
            ),
            (
                "/auth/auth",
                vec![
                    ("x-auth-user", "test:tester"),
                    ("x-storage-pass", "testing"),
                ],
            ),
            (
                "/auth/v1/test/auth",
                vec![("x-auth-user", "test:tester"), ("x-auth-key", "testing")],
            ),
            (
                "/auth/v1/test/auth",
                vec![("x-storage-user", "tester"), ("x-storage-pass", "testing")],
            ),
        ] {
            let resp = h.send(Method::GET, path, &headers).await;
            assert_eq!(resp.status(), 200, "{path} {headers:?}");
            assert_eq!(hdr(&resp, "x-auth-token"), Some(token.as_str()));
            assert_eq!(
                hdr(&resp, "x-storage-url"),
                Some("http://127.0.0.1/v1/AUTH_test")
            );
        }
        let resp = h
            .send(
                Method::GET,
                "/auth/v1.0",
                &[
                    ("x-auth-user", "test:tester"),
                    ("x-auth-key", "testing"),
                    ("host", "example.com:80"),
                ],
            )
            .await;
        assert_eq!(
            hdr(&resp, "x-storage-url"),
            Some("http://example.com/v1/AUTH_test")
        );
    }

    #[tokio::test]
    async fn login_failures() {
        let h = harness();
        type Case<'a> = (
            Method,
            &'a str,
            Vec<(&'a str, &'a str)>,
            u16,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                Method::GET,
                "/auth/v1.0",
                vec![("x-auth-user", "test:tester"), ("x-auth-key", "wrong")],
                401,
                Some("Swift realm=\"test\""),
            ),
            (
                Method::GET,
                "/auth/v1.0",
                vec![("x-auth-user", "test:nobody"), ("x-auth-key", "testing")],
                401,
                Some("Swift realm=\"test\""),
            ),
            (
                Method::GET,
                "/auth/v1.0",
                vec![("x-auth-user", "tester"), ("x-auth-key", "testing")],
                401,
                Some("Swift realm=\"unknown\""),
            ),
            (
                Method::GET,
                "/auth/v1.0",
                vec![("x-auth-user", "test:tester")],
                401,
                Some("Swift realm=\"test\""),
            ),
            (
                Method::GET,
                "/auth/v1/test/auth",
                vec![("x-auth-user", "other:tester"), ("x-auth-key", "testing")],
                401,
                Some("Swift realm=\"test\""),
            ),
            (
                Method::GET,
                "/auth/v1/test/auth",
                vec![("x-auth-user", "tester"), ("x-auth-key", "testing")],
                401,
                Some("Swift realm=\"test\""),
            ),
            (
                Method::GET,
                "/auth/v1/act/auth/invalid",
                vec![("x-auth-user", "act:usr"), ("x-auth-key", "key")],
                400,
                None,
            ),
            (Method::GET, "/auth/v2", vec![], 400, None),
            (Method::GET, "/auth/v1", vec![], 400, None),
            (Method::GET, "/auth/", vec![], 404, None),
            (
                Method::PUT,
                "/auth/v1.0",
                vec![("x-auth-user", "test:tester"), ("x-auth-key", "testing")],
                405,
                None,
            ),
            (
                Method::HEAD,
                "/auth/v1.0",
                vec![("x-auth-user", "test:tester"), ("x-auth-key", "testing")],
                405,
                None,
            ),
        ];
        for (method, path, headers, status, realm) in cases {
            let resp = h.send(method.clone(), path, &headers).await;
            assert_eq!(resp.status(), status, "{method} {path} {headers:?}");
            assert_eq!(hdr(&resp, "www-authenticate"), realm, "{path} {headers:?}");
            assert!(hdr(&resp, "x-auth-token").is_none());
        }
        assert!(h.app.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn tokens_are_reused_until_they_expire() {
        let h = harness();
        let t1 = h.login("test:tester", "testing").await;
        let t2 = h.login("test:tester", "testing").await;
        assert_eq!(t1, t2);
        let other = h.login("test:tester2", "testing2").await;
        assert_ne!(t1, other);

        let config = TempAuthConfig {
            token_life: Duration::ZERO,
            ..TempAuthConfig::functest_defaults()
        };
        let h = harness_with(config);
        let t1 = h.login("test:tester", "testing").await;
        let t2 = h.login("test:tester", "testing").await;
        assert_ne!(t1, t2);
        // Expired tokens are refused, and purged when a new one is made.
        assert_eq!(h.status_as(&t2, Method::GET, "/v1/AUTH_test").await, 401);
        assert!(!h.auth.inner.tokens().by_token.contains_key(&t1));
        assert_eq!(h.auth.inner.tokens().by_token.len(), 1);
    }

    #[tokio::test]
    async fn token_gives_groups_and_owner() {
        let h = harness();
        let token = h.login("test:tester", "testing").await;
        assert_eq!(h.status_as(&token, Method::GET, "/v1/AUTH_test").await, 204);
        let seen = h.last();
        assert_eq!(
            seen.env.remote_user,
            strings(&["test", "test:tester", "AUTH_test", "SERVICE_test"])
        );
        assert_eq!(seen.grant, Some(Grant { owner: true }));
        // X-Storage-Token works as well.
        let resp = h
            .send(
                Method::GET,
                "/v1/AUTH_test/c/o",
                &[("x-storage-token", &token)],
            )
            .await;
        assert_eq!(resp.status(), 204);
        assert_eq!(h.last().grant, Some(Grant { owner: true }));

        // A user without .admin is neither owner nor allowed by default.
        let t3 = h.login("test:tester3", "testing3").await;
        assert_eq!(h.status_as(&t3, Method::GET, "/v1/AUTH_test").await, 403);
        assert_eq!(h.last().env.remote_user, strings(&["test", "test:tester3"]));
        assert_eq!(
            h.status_as(&t3, Method::PUT, "/v1/AUTH_test/c/o").await,
            403
        );

        // Owners may not PUT or DELETE their own account; others' is 403.
        assert_eq!(h.status_as(&token, Method::PUT, "/v1/AUTH_test").await, 403);
        assert_eq!(
            h.status_as(&token, Method::DELETE, "/v1/AUTH_test").await,
            403
        );
        assert_eq!(
            h.status_as(&token, Method::POST, "/v1/AUTH_test").await,
            204
        );
        assert_eq!(
            h.status_as(&token, Method::GET, "/v1/AUTH_test2").await,
            403
        );
        // Outside our reseller prefixes: denied.
        assert_eq!(
            h.status_as(&token, Method::GET, "/v1/OTHER_test").await,
            403
        );
    }

    #[tokio::test]
    async fn reseller_admin_owns_every_account() {
        let h = harness();
        let token = h.login("admin:admin", "admin").await;
        for (method, path) in [
            (Method::GET, "/v1/AUTH_test"),
            (Method::PUT, "/v1/AUTH_new"),
            (Method::DELETE, "/v1/AUTH_test2"),
            (Method::PUT, "/v1/SERVICE_test/c/o"),
        ] {
            assert_eq!(
                h.status_as(&token, method.clone(), path).await,
                204,
                "{method} {path}"
            );
            assert_eq!(h.last().grant, Some(Grant { owner: true }));
        }
        // Not the reseller's own dot-accounts, nor a bare prefix.
        assert_eq!(
            h.status_as(&token, Method::GET, "/v1/AUTH_.hidden").await,
            403
        );
        assert_eq!(h.status_as(&token, Method::GET, "/v1/AUTH_").await, 403);
    }

    #[tokio::test]
    async fn unknown_token_is_refused_at_once() {
        let h = harness();
        let resp = h
            .send(
                Method::GET,
                "/v1/AUTH_test/c",
                &[("x-auth-token", "AUTH_tk0123456789abcdef0123456789abcdef")],
            )
            .await;
        assert_eq!(resp.status(), 401);
        assert_eq!(
            hdr(&resp, "www-authenticate"),
            Some("Swift realm=\"AUTH_test\"")
        );
        assert!(body(resp).await.contains("Unauthorized"));
        assert!(h.app.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn anonymous_requests() {
        let h = harness();
        let resp = h.send(Method::GET, "/v1/AUTH_test", &[]).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(
            hdr(&resp, "www-authenticate"),
            Some("Swift realm=\"AUTH_test\"")
        );
        assert!(h.last().env.remote_user.is_empty());

        for path in ["/v1/BLAH_account", "/", "/v1"] {
            let resp = h.send(Method::GET, path, &[]).await;
            assert_eq!(resp.status(), 401, "{path}");
        }
        let resp = h.send(Method::GET, "/", &[]).await;
        assert_eq!(
            hdr(&resp, "www-authenticate"),
            Some("Swift realm=\"unknown\"")
        );
        // A token that is not ours, on an account that is not ours.
        let resp = h
            .send(
                Method::GET,
                "/v1/BLAH_account",
                &[("x-auth-token", "BLAH_t")],
            )
            .await;
        assert_eq!(resp.status(), 401);
        assert_eq!(
            hdr(&resp, "www-authenticate"),
            Some("Swift realm=\"BLAH_account\"")
        );
        // OPTIONS is always let through on our accounts.
        let resp = h.send(Method::OPTIONS, "/v1/AUTH_test/c/o", &[]).await;
        assert_eq!(resp.status(), 204);
    }

    #[tokio::test]
    async fn container_acls_referrers_and_groups() {
        let h = harness();
        let t3 = h.login("test:tester3", "testing3").await;
        let t2 = h.login("test2:tester2", "testing2").await;

        h.set_container_acls(Some("test:tester3"), None);
        assert_eq!(h.status_as(&t3, Method::GET, "/v1/AUTH_test/c").await, 204);
        assert_eq!(h.last().grant, Some(Grant { owner: false }));
        assert_eq!(
            h.status_as(&t3, Method::GET, "/v1/AUTH_test/c/o").await,
            204
        );
        assert_eq!(
            h.status_as(&t2, Method::GET, "/v1/AUTH_test/c/o").await,
            403
        );
        // The read ACL does not allow writes.
        assert_eq!(
            h.status_as(&t3, Method::PUT, "/v1/AUTH_test/c/o").await,
            403
        );

        // Groups match any of the user's groups, e.g. the account.
        h.set_container_acls(None, Some("test2"));
        assert_eq!(
            h.status_as(&t2, Method::PUT, "/v1/AUTH_test/c/o").await,
            204
        );
        assert_eq!(
            h.status_as(&t2, Method::DELETE, "/v1/AUTH_test/c/o").await,
            204
        );
        assert_eq!(
            h.status_as(&t3, Method::PUT, "/v1/AUTH_test/c/o").await,
            403
        );
        // ...but never account or container writes.
        assert_eq!(h.status_as(&t2, Method::PUT, "/v1/AUTH_test/c").await, 403);

        // Referrers: objects, and listings only with .rlistings.
        h.set_container_acls(Some(".r:*"), None);
        assert_eq!(
            h.send(Method::GET, "/v1/AUTH_test/c/o", &[]).await.status(),
            204
        );
        let resp = h.send(Method::GET, "/v1/AUTH_test/c", &[]).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(
            hdr(&resp, "www-authenticate"),
            Some("Swift realm=\"AUTH_test\"")
        );
        assert_eq!(h.status_as(&t2, Method::GET, "/v1/AUTH_test/c").await, 403);
        h.set_container_acls(Some(".r:*,.rlistings"), None);
        assert_eq!(
            h.send(Method::GET, "/v1/AUTH_test/c", &[]).await.status(),
            204
        );
        assert_eq!(h.status_as(&t2, Method::GET, "/v1/AUTH_test/c").await, 204);

        h.set_container_acls(Some(".r:.example.com,.r:-thief.example.com"), None);
        let get = |referer: &'static str| {
            let h = &h;
            async move {
                h.send(Method::GET, "/v1/AUTH_test/c/o", &[("referer", referer)])
                    .await
            }
        };
        assert_eq!(get("http://www.example.com/index.html").await.status(), 204);
        assert_eq!(get("http://thief.example.com/").await.status(), 401);
        assert_eq!(get("http://www.other.com/").await.status(), 401);
        assert_eq!(
            h.send(Method::GET, "/v1/AUTH_test/c/o", &[]).await.status(),
            401
        );
    }

    #[tokio::test]
    async fn account_acl_levels() {
        let h = harness();
        let t3 = h.login("test:tester3", "testing3").await;

        h.set_account_acl(Some(r#"{"read-only":["test:tester3"]}"#));
        assert_eq!(h.status_as(&t3, Method::GET, "/v1/AUTH_test").await, 204);
        assert_eq!(h.last().grant, Some(Grant { owner: false }));
        assert_eq!(h.status_as(&t3, Method::HEAD, "/v1/AUTH_test/c").await, 204);
        assert_eq!(
            h.status_as(&t3, Method::GET, "/v1/AUTH_test/c/o").await,
            204
        );
        assert_eq!(h.status_as(&t3, Method::POST, "/v1/AUTH_test").await, 403);
        assert_eq!(h.status_as(&t3, Method::PUT, "/v1/AUTH_test/c").await, 403);
        assert_eq!(
            h.status_as(&t3, Method::PUT, "/v1/AUTH_test/c/o").await,
            403
        );

        // The ACLs are read with an unauthorized HEAD of the account.
        let sub = {
            let seen = h.app.seen.lock().unwrap();
            seen.iter()
                .find(|s| s.env.source == Some("TA"))
                .cloned()
                .unwrap()
        };
        assert_eq!(sub.method, Method::HEAD);
        assert_eq!(sub.path, "/v1/AUTH_test");
        assert!(sub.env.authorize.is_none());
        assert!(sub.grant.is_none());

        h.set_account_acl(Some(r#"{"read-write":["test:tester3"]}"#));
        assert_eq!(h.status_as(&t3, Method::GET, "/v1/AUTH_test").await, 204);
        assert_eq!(h.status_as(&t3, Method::PUT, "/v1/AUTH_test/c").await, 204);
        assert_eq!(
            h.status_as(&t3, Method::DELETE, "/v1/AUTH_test/c/o").await,
            204
        );
        assert_eq!(h.last().grant, Some(Grant { owner: false }));
        assert_eq!(h.status_as(&t3, Method::POST, "/v1/AUTH_test").await, 403);

        h.set_account_acl(Some(r#"{"admin":["test:tester3"]}"#));
        assert_eq!(h.status_as(&t3, Method::POST, "/v1/AUTH_test").await, 204);
        assert_eq!(h.last().grant, Some(Grant { owner: true }));
        assert_eq!(h.status_as(&t3, Method::PUT, "/v1/AUTH_test").await, 204);
        assert_eq!(
            h.status_as(&t3, Method::PUT, "/v1/AUTH_test/c/o").await,
            204
        );
        assert_eq!(h.last().grant, Some(Grant { owner: true }));

        // Anonymous callers are not in any list, and get 401.
        assert_eq!(
            h.send(Method::GET, "/v1/AUTH_test", &[]).await.status(),
            401
        );
        h.set_account_acl(Some("{}"));
        assert_eq!(h.status_as(&t3, Method::GET, "/v1/AUTH_test").await, 403);
    }

    #[tokio::test]
    async fn account_acl_header_is_checked_and_stored_as_sysmeta() {
        let h = harness();
        let token = h.login("test:tester", "testing").await;
        let acl = r#"{"admin":["test:tester3"]}"#;
        let resp = h
            .send(
                Method::POST,
                "/v1/AUTH_test",
                &[("x-auth-token", &token), ("x-account-access-control", acl)],
            )
            .await;
        assert_eq!(resp.status(), 204);
        let seen = h.last();
        assert_eq!(header_str(&seen.headers, ACCOUNT_ACL_SYSMETA), Some(acl));
        assert!(seen.headers.get(ACCOUNT_ACL_HEADER).is_none());

        for (bad, error) in [
            ("invalid", "Syntax error in input ('invalid')"),
            (
                r#"{"admin":["a"],"invalid_key":"x"}"#,
                "Key \"invalid_key\" not recognized",
            ),
            (r#"{"admin":"a"}"#, "Value for key \"admin\" must be a list"),
        ] {
            let before = h.app.seen.lock().unwrap().len();
            let resp = h
                .send(
                    Method::POST,
                    "/v1/AUTH_test",
                    &[("x-auth-token", &token), ("x-account-access-control", bad)],
                )
                .await;
            assert_eq!(resp.status(), 400);
            assert_eq!(
                hdr(&resp, "content-type"),
                Some("text/plain; charset=UTF-8")
            );
            assert_eq!(
                body(resp).await,
                format!("X-Account-Access-Control invalid: {error}\n\nInput: {bad}\n")
            );
            assert_eq!(h.app.seen.lock().unwrap().len(), before);
        }

        // Someone who may not set it is refused by authorization.
        let t3 = h.login("test:tester3", "testing3").await;
        let resp = h
            .send(
                Method::POST,
                "/v1/AUTH_test",
                &[("x-auth-token", &t3), ("x-account-access-control", acl)],
            )
            .await;
        assert_eq!(resp.status(), 403);
        // Not stored on anything but accounts.
        let resp = h
            .send(
                Method::PUT,
                "/v1/AUTH_test/c",
                &[("x-auth-token", &token), ("x-account-access-control", acl)],
            )
            .await;
        assert_eq!(resp.status(), 204);
        assert!(h.last().headers.get(ACCOUNT_ACL_SYSMETA).is_none());
        assert!(h.last().headers.get(ACCOUNT_ACL_HEADER).is_none());
    }

    #[tokio::test]
    async fn owners_see_account_acls() {
        let h = harness();
        let token = h.login("test:tester", "testing").await;
        let t3 = h.login("test:tester3", "testing3").await;
        h.set_account_acl(Some(
            r#"{ "read-only": ["test:tester3"], "admin": ["x\u00e9"] }"#,
        ));
        let resp = h
            .send(Method::HEAD, "/v1/AUTH_test", &[("x-auth-token", &token)])
            .await;
        assert_eq!(resp.status(), 204);
        assert_eq!(
            hdr(&resp, ACCOUNT_ACL_HEADER),
            Some(r#"{"admin":["x\u00e9"],"read-only":["test:tester3"]}"#)
        );
        let resp = h
            .send(Method::GET, "/v1/AUTH_test", &[("x-auth-token", &t3)])
            .await;
        assert_eq!(resp.status(), 204);
        assert!(hdr(&resp, ACCOUNT_ACL_HEADER).is_none());
        // An empty ACL is no header.
        h.set_account_acl(Some("{}"));
        let resp = h
            .send(Method::GET, "/v1/AUTH_test", &[("x-auth-token", &token)])
            .await;
        assert!(hdr(&resp, ACCOUNT_ACL_HEADER).is_none());
    }

    #[tokio::test]
    async fn service_tokens() {
        let h = harness();
        let user = h.login("test:tester", "testing").await;
        let service = h.login("test5:tester5", "testing5").await;

        // The SERVICE_ prefix requires the `service` group as well.
        assert_eq!(
            h.status_as(&user, Method::GET, "/v1/SERVICE_test").await,
            403
        );
        let both = [
            ("x-auth-token", user.as_str()),
            ("x-service-token", service.as_str()),
        ];
        let resp = h.send(Method::PUT, "/v1/SERVICE_test/c/o", &both).await;
        assert_eq!(resp.status(), 204);
        let seen = h.last();
        assert_eq!(seen.grant, Some(Grant { owner: true }));
        assert_eq!(
            seen.env.remote_user,
            strings(&[
                "test",
                "test:tester",
                "AUTH_test",
                "SERVICE_test",
                "test5",
                "test5:tester5",
                "service",
                "AUTH_test5",
                "SERVICE_test5",
            ])
        );
        // The service user alone only owns its own accounts.
        assert_eq!(
            h.status_as(&service, Method::GET, "/v1/SERVICE_test5")
                .await,
            204
        );
        assert_eq!(
            h.status_as(&service, Method::GET, "/v1/SERVICE_test").await,
            403
        );
        // A bad service token adds nothing; a bad user token is refused.
        let bad_service = [
            ("x-auth-token", user.as_str()),
            ("x-service-token", "AUTH_tkjunk"),
        ];
        let resp = h.send(Method::GET, "/v1/SERVICE_test", &bad_service).await;
        assert_eq!(resp.status(), 403);
        let bad_user = [
            ("x-auth-token", "AUTH_tkjunk"),
            ("x-service-token", service.as_str()),
        ];
        let resp = h.send(Method::GET, "/v1/SERVICE_test", &bad_user).await;
        assert_eq!(resp.status(), 401);
        // AUTH_ accounts need no service group.
        assert_eq!(h.status_as(&user, Method::GET, "/v1/AUTH_test").await, 204);
    }

    #[tokio::test]
    async fn groups_follow_swift_for_odd_users() {
        let config = TempAuthConfig {
            reseller_prefixes: strings(&["AUTH_", "OTHER_"]),
            users: vec![TempAuthUser {
                account: "a b".to_string(),
                user: "u".to_string(),
                key: "k".to_string(),
                groups: strings(&["g1", ".admin", "g2"]),
            }],
            ..TempAuthConfig::default()
        };
        let h = harness_with(config);
        let resp = h
            .send(
                Method::GET,
                "/auth/v1.0",
                &[("x-auth-user", "a b:u"), ("x-auth-key", "k")],
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            hdr(&resp, "x-storage-url"),
            Some("http://127.0.0.1/v1/AUTH_a%20b")
        );
        let token = hdr(&resp, "x-auth-token").unwrap().to_string();
        assert_eq!(
            h.status_as(&token, Method::GET, "/v1/AUTH_a%20b").await,
            204
        );
        assert_eq!(
            h.last().env.remote_user,
            strings(&[
                "a b",
                "a b:u",
                "g1",
                "g2",
                "AUTH_a b",
                "OTHER_a b",
                "AUTH_a%20b"
            ])
        );
        assert_eq!(h.client_requests().len(), 1);
    }

    #[tokio::test]
    async fn issued_tokens_are_visible_through_the_shared_store() {
        let config = TempAuthConfig::functest_defaults();
        let tokens = config.tokens.clone();
        let h = harness_with(config);
        let token = h.login("test:tester", "testing").await;
        assert_eq!(
            tokens.groups(&token),
            Some(strings(&[
                "test",
                "test:tester",
                "AUTH_test",
                "SERVICE_test"
            ]))
        );
        assert_eq!(tokens.groups("AUTH_tkbogus"), None);
        assert!(
            !format!("{tokens:?}").contains(&token),
            "Debug shows no token"
        );
    }

    #[tokio::test]
    async fn other_auth_prefix() {
        let config = TempAuthConfig {
            auth_prefix: "other".to_string(),
            users: vec![TempAuthUser {
                account: "ac".to_string(),
                user: "user".to_string(),
                key: "testing".to_string(),
                groups: vec![],
            }],
            ..TempAuthConfig::default()
        };
        let h = harness_with(config);
        let headers = [("x-auth-user", "ac:user"), ("x-auth-key", "testing")];
        let resp = h.send(Method::GET, "/other/v1.0", &headers).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            hdr(&resp, "x-storage-url"),
            Some("http://127.0.0.1/v1/AUTH_ac")
        );
        // The default prefix is now an ordinary (denied) path.
        let resp = h.send(Method::GET, "/auth/v1.0", &headers).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(h.client_requests().len(), 1);
    }
}
