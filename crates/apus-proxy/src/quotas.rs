//! Quotas (Swift's `container_quotas` and `account_quotas` middleware).
//!
//! - Container: `X-Container-Meta-Quota-Bytes` and `-Quota-Count`, set by
//!   anyone who may write the container's metadata (digits only, 400
//!   otherwise). An object PUT that would take the container past either
//!   is refused 413 `Upload exceeds quota.`, once the caller is known to
//!   be allowed to write there at all (otherwise its 401/403).
//! - Account: `X-Account-Quota-Bytes`, `-Quota-Count` and their
//!   `-Policy-<name>` forms (and the legacy `X-Account-Meta-Quota-Bytes`)
//!   may be set only by a reseller admin (403 for anyone else, 400 unless
//!   digits) and are kept as account sysmeta; everyone sees them. Object
//!   PUTs past them are refused 413 after authorization; a reseller
//!   admin's are not limited.
//!
//! Both judge by the sizes the cached info shows, as Swift does: quotas
//! are approximate by design, a burst of uploads may overshoot them.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::config::ProxyConfig;
use crate::info::{AccountInfo, InfoLookup};
use crate::service::{
    env, env_mut, error_response, header_str, header_text, AuthRequest, Authorize, BoxFuture, Env,
    Grant, Req, Resp, Service, SharedService,
};

fn parts(req: &Req, min: usize) -> Option<(String, Option<String>, Option<String>)> {
    let decoded = apus_proto::percent_decode_internal(req.uri().path()).ok()?;
    let p = apus_proto::split_path(&decoded, min, 4, true).ok()?;
    let nonempty = |i: usize| p.get(i).cloned().flatten().filter(|s| !s.is_empty());
    Some((nonempty(1)?, nonempty(2), nonempty(3)))
}

fn content_length(headers: &HeaderMap) -> u64 {
    header_str(headers, "content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

fn too_large(body: &str) -> Resp {
    error_response(StatusCode::PAYLOAD_TOO_LARGE, Some(body))
}

/// Swift's `reseller_request`: the caller is a reseller admin.
fn reseller_request(env: &Env) -> bool {
    env.remote_user.iter().any(|g| g == ".reseller_admin")
}

pub struct ContainerQuotas {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
}

impl ContainerQuotas {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>) -> Self {
        ContainerQuotas { next, info }
    }
}

impl Service for ContainerQuotas {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let Some((account, Some(container), object)) = parts(&req, 3) else {
            return self.next.call(req);
        };
        let method = req.method().clone();
        if object.is_none() && (method == Method::PUT || method == Method::POST) {
            for (name, what) in [
                ("x-container-meta-quota-bytes", "bytes"),
                ("x-container-meta-quota-count", "count"),
            ] {
                if let Some(v) = header_text(req.headers(), name) {
                    if !v.is_empty() && !digits(&v) {
                        let body = format!("Invalid {what} quota.");
                        return Box::pin(async move {
                            error_response(StatusCode::BAD_REQUEST, Some(&body))
                        });
                    }
                }
            }
            return self.next.call(req);
        }
        if object.is_none() || method != Method::PUT {
            return self.next.call(req);
        }
        Box::pin(async move {
            let client_env = env(&req);
            let info = self
                .info
                .container_info(&client_env.subrequest("CQ"), &account, &container)
                .await;
            if !info.exists() {
                return self.next.call(req).await;
            }
            let quota = |name: &str| {
                header_str(&info.headers, name)
                    .filter(|v| digits(v))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let bytes_quota = quota("x-container-meta-quota-bytes");
            let used = match bytes_quota {
                Some(_) => self
                    .bytes_used(&client_env, &req)
                    .await
                    .unwrap_or(info.bytes),
                None => info.bytes,
            };
            let over_bytes = bytes_quota.is_some_and(|q| q < used + content_length(req.headers()));
            let over_count =
                quota("x-container-meta-quota-count").is_some_and(|q| q < info.object_count + 1);
            if !(over_bytes || over_count) {
                return self.next.call(req).await;
            }
            // Say nothing of the container to whoever may not write it.
            if let Some(auth) = client_env.authorize.clone() {
                let path = crate::dlo::util::unquote(req.uri().path());
                let check = AuthRequest {
                    method: req.method(),
                    path: &path,
                    headers: req.headers(),
                    env: &client_env,
                    acl: info.write_acl.as_deref(),
                };
                if let Err(denial) = auth.authorize(check).await {
                    return denial;
                }
            }
            too_large("Upload exceeds quota.")
        })
    }
}

impl ContainerQuotas {
    /// The container's bytes as a client's HEAD would show them: through
    /// the rest of the pipeline, so that what middleware keeps on the
    /// container's behalf (object versions) counts too.
    async fn bytes_used(&self, client_env: &Env, req: &Req) -> Option<u64> {
        let decoded = apus_proto::percent_decode_internal(req.uri().path()).ok()?;
        let container_path: String = decoded.splitn(5, '/').take(4).collect::<Vec<_>>().join("/");
        let mut env = client_env.subrequest("CQ");
        env.authorize = None;
        let head = crate::dlo::util::build_request(
            Method::HEAD,
            &container_path,
            None,
            HeaderMap::new(),
            env,
            apus_http::empty(),
        )
        .ok()?;
        let resp = self.next.call(head).await;
        if !resp.status().is_success() {
            return None;
        }
        header_str(resp.headers(), "x-container-bytes-used").and_then(|b| b.parse().ok())
    }
}

pub struct AccountQuotas {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
    config: Arc<ProxyConfig>,
}

impl AccountQuotas {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>, config: Arc<ProxyConfig>) -> Self {
        AccountQuotas { next, info, config }
    }
}

/// An authorization that, once the caller is allowed, refuses anyway:
/// the quota's answer comes only to those who could have written.
struct RefuseAfter {
    inner: Arc<dyn Authorize>,
    body: &'static str,
}

impl Authorize for RefuseAfter {
    fn authorize<'a>(&'a self, req: AuthRequest<'a>) -> BoxFuture<'a, Result<Grant, Resp>> {
        Box::pin(async move {
            self.inner.authorize(req).await?;
            Err(too_large(self.body))
        })
    }
}

impl Service for AccountQuotas {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let Some((account, container, object)) = parts(&req, 2) else {
            return self.next.call(req);
        };
        if container.is_none() {
            return Box::pin(self.account_request(req));
        }
        if req.method() != Method::PUT || object.is_none() {
            return self.next.call(req);
        }
        if reseller_request(&env(&req)) {
            return self.next.call(req);
        }
        let container = container.unwrap_or_default();
        Box::pin(self.object_put(req, account, container))
    }
}

impl AccountQuotas {
    async fn account_request(&self, mut req: Req) -> Resp {
        let method = req.method().clone();
        if method == Method::POST || method == Method::PUT {
            let h = req.headers_mut();
            for legacy in [
                "x-account-meta-quota-bytes",
                "x-remove-account-meta-quota-bytes",
            ] {
                let new = legacy.replacen("-meta-", "-", 1);
                let new_set = header_str(h, &new).is_some_and(|v| !v.is_empty());
                if let Some(v) = h.get(legacy).cloned() {
                    if !new_set {
                        if let Ok(n) = HeaderName::from_bytes(new.as_bytes()) {
                            h.insert(n, v);
                        }
                    }
                }
            }
            let reseller = reseller_request(&env(&req));
            for kind in ["quota-bytes", "quota-count"] {
                if let Err(resp) = self.translate(req.headers_mut(), kind, reseller) {
                    return resp;
                }
            }
        }
        let mut resp = self.next.call(req).await;
        let h = resp.headers_mut();
        for kind in ["quota-bytes", "quota-count"] {
            if let Some(v) = h
                .get(format!("x-account-sysmeta-{kind}"))
                .cloned()
                .filter(|v| !v.is_empty())
            {
                if let Ok(n) = HeaderName::from_bytes(format!("x-account-{kind}").as_bytes()) {
                    h.insert(n, v);
                }
            }
            for p in &self.config.policies {
                let sysmeta = format!("x-account-sysmeta-{kind}-policy-{}", p.index);
                if let Some(v) = h.get(&sysmeta).cloned().filter(|v| !v.is_empty()) {
                    let shown = format!("x-account-{kind}-policy-{}", p.name.to_ascii_lowercase());
                    if let Ok(n) = HeaderName::from_bytes(shown.as_bytes()) {
                        h.insert(n, v);
                    }
                }
            }
        }
        resp
    }

    /// Swift's `validate_and_translate_quotas` for one kind of quota.
    fn translate(&self, h: &mut HeaderMap, kind: &str, reseller: bool) -> Result<(), Resp> {
        let header_value = |h: &HeaderMap, n: &str| header_text(h, n);
        let truthy = |h: &HeaderMap, n: &str| header_str(h, n).is_some_and(|v| !v.is_empty());
        // (sysmeta name, new value): None leaves it, "" removes it.
        let mut quotas: Vec<(String, Option<String>)> = Vec::new();
        let mut global = header_value(h, &format!("x-account-{kind}"));
        if truthy(h, &format!("x-remove-account-{kind}")) {
            global = Some(String::new());
        }
        quotas.push((format!("x-account-sysmeta-{kind}"), global));
        for p in &self.config.policies {
            let tail = format!("account-{kind}-policy-{}", p.name.to_ascii_lowercase());
            let value = if truthy(h, &format!("x-remove-{tail}")) {
                Some(String::new())
            } else {
                let v = header_value(h, &format!("x-{tail}"));
                h.remove(format!("x-{tail}").as_str());
                v
            };
            quotas.push((
                format!("x-account-sysmeta-{kind}-policy-{}", p.index),
                value,
            ));
        }
        if reseller {
            if quotas
                .iter()
                .any(|(_, q)| q.as_deref().is_some_and(|q| !q.is_empty() && !digits(q)))
            {
                return Err(error_response(StatusCode::BAD_REQUEST, None));
            }
            for (name, value) in quotas {
                if let (Some(v), Ok(n)) = (value, HeaderName::from_bytes(name.as_bytes())) {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        h.insert(n, v);
                    }
                }
            }
            Ok(())
        } else if quotas.iter().any(|(_, q)| q.is_some()) {
            Err(error_response(StatusCode::FORBIDDEN, None))
        } else {
            Ok(())
        }
    }

    async fn object_put(&self, mut req: Req, account: String, container: String) -> Resp {
        let client_env = env(&req);
        let sub = client_env.subrequest("AQ");
        let length = content_length(req.headers());
        let info = self.info.account_info(&sub, &account).await;
        if let Some(body) = self
            .exceeded(&info, &sub, &account, &container, length)
            .await
        {
            match client_env.authorize.clone() {
                Some(inner) => {
                    env_mut(&mut req).authorize = Some(Arc::new(RefuseAfter { inner, body }));
                }
                None => return too_large(body),
            }
        }
        self.next.call(req).await
    }

    /// The quota an upload of `length` bytes would break, if any.
    async fn exceeded(
        &self,
        info: &AccountInfo,
        env: &Env,
        account: &str,
        container: &str,
        length: u64,
    ) -> Option<&'static str> {
        let number = |name: &str| -> Option<u64> {
            header_str(&info.headers, name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .and_then(|v| u64::try_from(v).ok())
        };
        let bytes_quota = number("x-account-sysmeta-quota-bytes")
            .or_else(|| number("x-account-meta-quota-bytes"));
        if bytes_quota.is_some_and(|q| q < info.bytes + length) {
            return Some("Upload exceeds quota.");
        }
        if number("x-account-sysmeta-quota-count").is_some_and(|q| q < info.object_count + 1) {
            return Some("Upload exceeds quota.");
        }
        let c = self.info.container_info(env, account, container).await;
        let index = c.storage_policy;
        let policy_bytes = number(&format!("x-account-sysmeta-quota-bytes-policy-{index}"));
        let policy_count = number(&format!("x-account-sysmeta-quota-count-policy-{index}"));
        if policy_bytes.is_none() && policy_count.is_none() {
            return None;
        }
        let name = self
            .config
            .policy(index)
            .map(|p| p.name.to_ascii_lowercase())
            .unwrap_or_default();
        let used =
            |what: &str| number(&format!("x-account-storage-policy-{name}-{what}")).unwrap_or(0);
        if policy_bytes.is_some_and(|q| q < used("bytes-used") + length) {
            return Some("Upload exceeds policy quota.");
        }
        if policy_count.is_some_and(|q| q < used("object-count") + 1) {
            return Some("Upload exceeds policy quota.");
        }
        None
    }
}
