//! The account controller: GET/HEAD (listings of containers, stats),
//! POST (metadata), PUT/DELETE (when account management is allowed), and
//! the autocreation of accounts on first write.

use apus_core::Timestamp;
use apus_http::full;
use apus_proto::constraints::{ConstraintError, NameKind};
use apus_proto::listing::{ListingError, ListingFormat, Query};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::app::{strip_owner_headers, Ctx};
use crate::backend::{best_response, quorum_size, NodePlan};
use crate::info::AccountInfo;
use crate::service::{error_response, header_str, Req, Resp};

/// Copies the headers a client may send to a backend server of
/// `server_type` (`account` or `container`): user metadata, system
/// metadata set by middleware, the `X-Remove-*` forms as empty values, and
/// the settings passed through as they are.
pub fn transfer_headers(
    src: &HeaderMap,
    dst: &mut HeaderMap,
    server_type: &str,
    pass_through: &[&str],
) {
    let remove_meta = format!("x-remove-{server_type}-meta-");
    let remove_named = [
        format!("x-remove-{server_type}-read"),
        format!("x-remove-{server_type}-write"),
        "x-remove-versions-location".to_string(),
        format!("x-remove-{server_type}-sync-key"),
        format!("x-remove-{server_type}-sync-to"),
    ];
    let meta = format!("x-{server_type}-meta-");
    let sysmeta = format!("x-{server_type}-sysmeta-");
    for name in src.keys() {
        let n = name.as_str();
        if n.starts_with(&remove_meta)
            || (server_type == "container" && remove_named.iter().any(|r| r == n))
        {
            let kept = n.replacen("-remove", "", 1);
            if let Ok(hn) = http::header::HeaderName::from_bytes(kept.as_bytes()) {
                dst.insert(hn, HeaderValue::from_static(""));
            }
        }
    }
    for (name, value) in src {
        let n = name.as_str();
        if pass_through.contains(&n) || n.starts_with(&meta) || n.starts_with(&sysmeta) {
            dst.insert(name.clone(), value.clone());
        }
    }
}

/// A failed constraint as the response Swift sends for it.
pub fn constraint_response(e: ConstraintError) -> Resp {
    error_response(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        Some(&e.body),
    )
}

/// Swift's `check_metadata` on a request's headers as a 400 response.
pub fn check_metadata(headers: &HeaderMap, target: &str) -> Result<(), Resp> {
    apus_proto::constraints::check_metadata(
        headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
        target,
    )
    .map_err(constraint_response)
}

/// The listing the proxy makes up for an account that does not exist yet
/// when accounts are created on first write (Swift's fake listing).
fn fake_account_listing(req: &Req, account: &str) -> Resp {
    let format = match listing_format(req) {
        Ok(format) => format,
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return match e {
                ListingError::NotAcceptable => error_response(status, None),
                other => error_response(status, Some(&other.to_string())),
            };
        }
    };
    let ts = Timestamp::now();
    let ctype = format.content_type();
    let (status, body) = match format {
        ListingFormat::Json => (StatusCode::OK, "[]".to_string()),
        ListingFormat::Xml(_) => (
            StatusCode::OK,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"{}\">\n</account>",
                xml_escape(account)
            ),
        ),
        ListingFormat::Plain => (StatusCode::NO_CONTENT, String::new()),
    };
    let len = body.len();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for name in [
        "x-account-container-count",
        "x-account-object-count",
        "x-account-bytes-used",
    ] {
        h.insert(name, HeaderValue::from(0));
    }
    for name in ["x-timestamp", "x-put-timestamp"] {
        if let Ok(v) = HeaderValue::from_str(&ts.normal()) {
            h.insert(name, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{ctype}; charset=utf-8")) {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    if status != StatusCode::NO_CONTENT {
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    h.insert(
        "x-backend-fake-account-listing",
        HeaderValue::from_static("yes"),
    );
    resp
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The format of a listing the proxy answers itself, from `?format=` or
/// the Accept header, negotiated exactly as the listing servers do.
pub fn listing_format(req: &Req) -> Result<ListingFormat, ListingError> {
    let query = Query::parse(req.uri().query());
    let accept = req.headers().get(http::header::ACCEPT);
    apus_proto::listing::listing_format(&query, accept.map(HeaderValue::as_bytes))
}

impl Ctx<'_> {
    fn account_plan(&self) -> NodePlan {
        self.app.account_plan(&self.target.account)
    }

    pub async fn account(self, req: Req) -> Resp {
        // A PUT checks the name after its other checks, as in Swift.
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::POST) {
            if let Err(resp) = self.check_name_length(NameKind::Account) {
                return resp;
            }
        }
        match *req.method() {
            Method::GET | Method::HEAD => self.account_get(req).await,
            Method::PUT => self.account_put(req).await,
            Method::POST => self.account_post(req).await,
            Method::DELETE => self.account_delete(req).await,
            _ => error_response(StatusCode::METHOD_NOT_ALLOWED, None),
        }
    }

    async fn account_get(&self, req: Req) -> Resp {
        let plan = self.account_plan();
        let path = self.target.path();
        let mut headers = self.base_headers(None);
        copy_request_headers(req.headers(), &mut headers, &["accept", "x-newest"]);
        let newest =
            header_str(req.headers(), "x-newest").is_some_and(apus_proto::headers::is_true);
        let mut resp = self
            .app
            .backend
            .read(
                &plan,
                req.method().clone(),
                &path,
                req.uri().query(),
                headers,
                newest,
            )
            .await;
        if resp.status() == StatusCode::NOT_FOUND {
            let deleted = header_str(resp.headers(), "x-account-status")
                .is_some_and(|s| s.eq_ignore_ascii_case("deleted"));
            if deleted {
                resp = error_response(StatusCode::GONE, None);
            } else if self.app.config.account_autocreate {
                resp = fake_account_listing(&req, &self.target.account);
            }
        }
        if resp.status().is_success()
            && resp
                .headers()
                .get("x-backend-fake-account-listing")
                .is_none()
        {
            self.app.accounts.put(
                &self.target.account,
                AccountInfo::from_headers(resp.status().as_u16(), resp.headers()),
            );
        }
        if !self.env.swift_owner {
            strip_owner_headers(resp.headers_mut());
        }
        resp
    }

    fn account_write_headers(&self, req: &Req) -> HeaderMap {
        let ts = Timestamp::now().internal();
        let mut headers = self.base_headers(Some(&ts));
        transfer_headers(req.headers(), &mut headers, "account", &[]);
        headers
    }

    async fn account_put(&self, req: Req) -> Resp {
        if !self.app.config.allow_account_management {
            return method_not_allowed("DELETE, GET, HEAD, OPTIONS, POST, PUT");
        }
        if let Err(resp) = check_metadata(req.headers(), "account") {
            return resp;
        }
        if let Err(resp) = self.check_name_length(NameKind::Account) {
            return resp;
        }
        let headers = self.account_write_headers(&req);
        self.app.accounts.forget(&self.target.account);
        let plan = self.account_plan();
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::PUT, &self.target.path(), None, &|_| {
                headers.clone()
            })
            .await;
        best_response(&answers, quorum_size(plan.replicas), "Account PUT")
    }

    async fn account_post(&self, req: Req) -> Resp {
        if let Err(resp) = check_metadata(req.headers(), "account") {
            return resp;
        }
        let headers = self.account_write_headers(&req);
        self.app.accounts.forget(&self.target.account);
        let plan = self.account_plan();
        let path = self.target.path();
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::POST, &path, None, &|_| headers.clone())
            .await;
        let mut resp = best_response(&answers, quorum_size(plan.replicas), "Account POST");
        if resp.status() == StatusCode::NOT_FOUND && self.app.config.account_autocreate {
            if !self.autocreate_account(req.headers()).await {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, None);
            }
            let answers = self
                .app
                .backend
                .fan_out(&plan, Method::POST, &path, None, &|_| headers.clone())
                .await;
            resp = best_response(&answers, quorum_size(plan.replicas), "Account POST");
        }
        resp
    }

    async fn account_delete(&self, req: Req) -> Resp {
        if req.uri().query().is_some_and(|q| !q.is_empty()) {
            return error_response(StatusCode::BAD_REQUEST, None);
        }
        if !self.app.config.allow_account_management {
            return method_not_allowed("DELETE, GET, HEAD, OPTIONS, POST, PUT");
        }
        let ts = Timestamp::now().internal();
        let headers = self.base_headers(Some(&ts));
        self.app.accounts.forget(&self.target.account);
        self.app
            .containers
            .forget_prefix(&format!("{}/", self.target.account));
        let plan = self.account_plan();
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::DELETE, &self.target.path(), None, &|_| {
                headers.clone()
            })
            .await;
        best_response(&answers, quorum_size(plan.replicas), "Account DELETE")
    }

    /// Creates the account on its servers (first write to a new account),
    /// carrying over account sysmeta from the request.
    pub async fn autocreate_account(&self, src: &HeaderMap) -> bool {
        let ts = Timestamp::now().internal();
        let mut headers = self.base_headers(Some(&ts));
        for (name, value) in src {
            if name.as_str().starts_with("x-account-sysmeta-") {
                headers.insert(name.clone(), value.clone());
            }
        }
        let plan = self.account_plan();
        let path = format!("/{}", self.target.account);
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::PUT, &path, None, &|_| headers.clone())
            .await;
        let resp = best_response(&answers, quorum_size(plan.replicas), "Account autocreate");
        self.app.accounts.forget(&self.target.account);
        resp.status().is_success()
    }

    /// Swift's `account_info`: the account's info when it really exists
    /// (a made-up listing for an autocreate account does not count).
    pub async fn account_info(&self) -> Option<AccountInfo> {
        let info = self.app.account_info(&self.env, &self.target.account).await;
        info.exists().then_some(info)
    }
}

pub fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED, None);
    resp.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    resp
}

/// Copies the named request headers, when present, to a backend request.
pub fn copy_request_headers(src: &HeaderMap, dst: &mut HeaderMap, names: &[&str]) {
    for name in names {
        if let Some(v) = src.get(*name) {
            if let Ok(hn) = http::header::HeaderName::from_bytes(name.as_bytes()) {
                dst.insert(hn, v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(uri: &str, accept: Option<&str>) -> (u16, String) {
        let mut req = http::Request::builder().uri(uri);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = fake_account_listing(&req.body(apus_http::empty()).unwrap(), "AUTH_a");
        let ctype = header_str(resp.headers(), "content-type")
            .unwrap_or("")
            .to_string();
        (resp.status().as_u16(), ctype)
    }

    #[test]
    fn fake_listings_negotiate_their_format_as_the_servers_do() {
        let json = (200, "application/json; charset=utf-8".to_string());
        let plain = (204, "text/plain; charset=utf-8".to_string());
        // `format` is percent-decoded and wins over Accept.
        assert_eq!(fake("/v1/AUTH_a?format=%6Ason", Some("text/xml")), json);
        // Pairs are separated by `&` only.
        assert_eq!(fake("/v1/AUTH_a?x=1;format=json", None), plain);
        // Accept's qualities count; `text/xml` is answered as asked.
        assert_eq!(
            fake("/v1/AUTH_a", Some("application/json;q=0.1, text/plain")),
            plain
        );
        assert_eq!(
            fake("/v1/AUTH_a", Some("text/xml")),
            (200, "text/xml; charset=utf-8".to_string())
        );
        assert_eq!(fake("/v1/AUTH_a", Some("image/png")).0, 406);
        assert_eq!(fake("/v1/AUTH_a", Some("garbage")).0, 400);
        assert_eq!(fake("/v1/AUTH_a?format=%ff", None).0, 400);
    }
}
