//! RFC 7232 ETags on request (Swift's `etag_quoter` middleware): Swift
//! answers bare MD5 ETags, which some HTTP clients refuse. An account or
//! container flag (`X-Account-Rfc-Compliant-Etags`,
//! `X-Container-Rfc-Compliant-Etags`, kept as sysmeta; the container's
//! wins) or `enable_by_default` makes object answers quote their ETag.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::info::InfoLookup;
use crate::service::{env, header_str, BoxFuture, Req, Resp, Service, SharedService};

pub struct EtagQuoter {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
    enable_by_default: bool,
}

impl EtagQuoter {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>, enable_by_default: bool) -> Self {
        EtagQuoter {
            next,
            info,
            enable_by_default,
        }
    }
}

/// The `/info` entry for `etag_quoter`.
pub fn info(enable_by_default: bool) -> serde_json::Value {
    serde_json::json!({"enable_by_default": enable_by_default})
}

const SYSMETA_FLAG: &str = "rfc-compliant-etags";

impl Service for EtagQuoter {
    fn call(&self, mut req: Req) -> BoxFuture<'_, Resp> {
        let Ok(path) = apus_proto::percent_decode_internal(req.uri().path()) else {
            return self.next.call(req);
        };
        let Ok(parts) = apus_proto::split_path(&path, 2, 4, true) else {
            return self.next.call(req);
        };
        let version = parts[0].clone().unwrap_or_default();
        if version != "v1" && version != "v1.0" {
            return self.next.call(req);
        }
        let account = parts[1].clone().unwrap_or_default();
        let container = parts.get(2).cloned().flatten().filter(|c| !c.is_empty());
        let object = parts.get(3).cloned().flatten().filter(|o| !o.is_empty());
        if object.is_none() {
            // The flag is set and shown under its client name.
            let kind = if container.is_some() {
                "container"
            } else {
                "account"
            };
            let client = format!("x-{kind}-rfc-compliant-etags");
            let sysmeta = format!("x-{kind}-sysmeta-{SYSMETA_FLAG}");
            let h = req.headers_mut();
            if let Some(v) = h.get(&client).cloned() {
                let value = if v.is_empty() {
                    ""
                } else if apus_proto::headers::is_true(&String::from_utf8_lossy(v.as_bytes())) {
                    "True"
                } else {
                    "False"
                };
                if let Ok(n) = HeaderName::from_bytes(sysmeta.as_bytes()) {
                    h.insert(n, HeaderValue::from_static(value));
                }
            }
            let remove = format!("x-remove-{kind}-rfc-compliant-etags");
            if header_str(h, &remove).is_some_and(|v| !v.is_empty()) {
                if let Ok(n) = HeaderName::from_bytes(sysmeta.as_bytes()) {
                    h.insert(n, HeaderValue::from_static(""));
                }
            }
            return Box::pin(async move {
                let mut resp = self.next.call(req).await;
                if let Some(v) = resp.headers_mut().remove(sysmeta.as_str()) {
                    if let Ok(n) = HeaderName::from_bytes(client.as_bytes()) {
                        resp.headers_mut().insert(n, v);
                    }
                }
                resp
            });
        }
        let container = container.unwrap_or_default();
        Box::pin(async move {
            let e = env(&req).subrequest("EQ");
            let c = self.info.container_info(&e, &account, &container).await;
            if !c.exists() {
                return self.next.call(req).await;
            }
            let mut flag = header_str(&c.headers, &format!("x-container-sysmeta-{SYSMETA_FLAG}"))
                .map(str::to_string);
            if flag.is_none() {
                let a = self.info.account_info(&e, &account).await;
                if !a.exists() {
                    return self.next.call(req).await;
                }
                flag = header_str(&a.headers, &format!("x-account-sysmeta-{SYSMETA_FLAG}"))
                    .map(str::to_string);
            }
            let quote = match flag {
                Some(f) => apus_proto::headers::is_true(&f),
                None => self.enable_by_default,
            };
            let mut resp = self.next.call(req).await;
            if quote {
                if let Some(etag) = header_str(resp.headers(), "etag").map(str::to_string) {
                    let quoted = (etag.starts_with('"') || etag.starts_with("W/\""))
                        && etag.ends_with('"')
                        && etag.len() > 1;
                    if !quoted {
                        if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
                            resp.headers_mut().insert(http::header::ETAG, v);
                        }
                    }
                }
            }
            resp
        })
    }
}
