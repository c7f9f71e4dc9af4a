//! Virtual hosting (Swift's `domain_remap` middleware): with a storage
//! domain `example.com`, a request to `AUTH_test.example.com/c/o` is
//! served as `/v1/AUTH_test/c/o`, and one to
//! `c.AUTH_test.example.com/o` as `/v1/AUTH_test/c/o`. An account name
//! may spell its reseller prefix's `_` as `-` (host names have no `_`).
//! `Location` and `Content-Location` in the answer are written back in
//! the client's terms. Hosts outside the storage domains pass unchanged.

use http::{HeaderValue, StatusCode};

use crate::service::{error_response, header_str, BoxFuture, Req, Resp, Service, SharedService};

/// Swift's `[filter:domain_remap]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRemapConfig {
    /// The domains served (empty: the filter does nothing).
    pub storage_domain: Vec<String>,
    pub path_root: String,
    pub reseller_prefixes: Vec<String>,
    pub default_reseller_prefix: Option<String>,
    pub mangle_client_paths: bool,
}

impl Default for DomainRemapConfig {
    fn default() -> Self {
        DomainRemapConfig {
            storage_domain: Vec::new(),
            path_root: "v1".into(),
            reseller_prefixes: vec!["AUTH".into()],
            default_reseller_prefix: None,
            mangle_client_paths: false,
        }
    }
}

/// The `/info` entry for `domain_remap`.
pub fn info(config: &DomainRemapConfig) -> serde_json::Value {
    serde_json::json!({"default_reseller_prefix": config.default_reseller_prefix})
}

pub struct DomainRemap {
    next: SharedService,
    /// Each domain with its leading dot.
    domains: Vec<String>,
    config: DomainRemapConfig,
}

impl DomainRemap {
    pub fn new(next: SharedService, config: DomainRemapConfig) -> Self {
        let domains = config
            .storage_domain
            .iter()
            .filter(|d| !d.is_empty())
            .map(|d| {
                if d.starts_with('.') {
                    d.clone()
                } else {
                    format!(".{d}")
                }
            })
            .collect();
        DomainRemap {
            next,
            domains,
            config,
        }
    }

    /// The account named by a host label, with its reseller prefix
    /// restored; `None` when it has none we serve.
    fn account(&self, label: &str) -> Option<String> {
        if self.config.reseller_prefixes.is_empty() {
            return Some(label.to_string());
        }
        let mut account = label.to_string();
        if !account.contains('_') && account.contains('-') {
            account = account.replacen('-', "_", 1);
        }
        let given = account.split('_').next().unwrap_or("").to_ascii_lowercase();
        if let Some(real) = self
            .config
            .reseller_prefixes
            .iter()
            .find(|p| p.to_ascii_lowercase() == given)
        {
            if !account.starts_with(real.as_str()) {
                account = format!("{real}{}", &account[real.len()..]);
            }
            return Some(account);
        }
        self.config
            .default_reseller_prefix
            .as_ref()
            .map(|d| format!("{d}_{account}"))
    }
}

impl Service for DomainRemap {
    fn call(&self, mut req: Req) -> BoxFuture<'_, Resp> {
        if self.domains.is_empty() {
            return self.next.call(req);
        }
        // Host names reach here as the client's bytes; a container label
        // may be UTF-8.
        let host = req
            .headers()
            .get(http::header::HOST)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let domain_part = match host.rsplit_once(':') {
            Some((h, _port)) => h.to_string(),
            None => host.clone(),
        };
        let Some(domain) = self
            .domains
            .iter()
            .find(|d| domain_part.ends_with(d.as_str()))
        else {
            return self.next.call(req);
        };
        let labels: Vec<&str> = domain_part[..domain_part.len() - domain.len()]
            .trim_matches('.')
            .split('.')
            .collect();
        let (container, account) = match labels.as_slice() {
            [c, a] => (Some(c.to_string()), a.to_string()),
            [a] => (None, a.to_string()),
            _ => {
                return Box::pin(async {
                    crate::service::text_error(StatusCode::BAD_REQUEST, "Bad domain in host header")
                })
            }
        };
        let Some(account) = self.account(&account) else {
            return self.next.call(req);
        };
        let requested = req.uri().path().to_string();
        // One slash off: an object may be named `/v1`.
        let mut path = requested
            .strip_prefix('/')
            .unwrap_or(&requested)
            .to_string();
        let root = self.config.path_root.trim_matches('/');
        if self.config.mangle_client_paths && format!("{path}/").starts_with(&format!("{root}/")) {
            path = path[root.len()..].trim_start_matches('/').to_string();
        }
        // The request path stays as the client quoted it; names from the
        // host are quoted here.
        let mut new_path = format!("/{root}/{}", apus_proto::quote(&account));
        if let Some(c) = &container {
            new_path.push('/');
            new_path.push_str(&apus_proto::quote(c));
        }
        new_path.push('/');
        new_path.push_str(&path);
        let uri = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path.clone(),
        };
        match uri.parse() {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return Box::pin(async { error_response(StatusCode::BAD_REQUEST, None) }),
        }
        Box::pin(async move {
            let mut resp = self.next.call(req).await;
            for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
                let Some(value) = header_str(resp.headers(), name.as_str()).map(str::to_string)
                else {
                    continue;
                };
                if let Some(rewritten) = rewrite_location(&value, &new_path, &requested) {
                    if let Ok(v) = HeaderValue::from_str(&rewritten) {
                        resp.headers_mut().insert(name, v);
                    }
                }
            }
            resp
        })
    }
}

/// `value` with the rewritten path put back as the client asked for it,
/// when it starts with it (after an optional `scheme://host`).
fn rewrite_location(value: &str, rewritten: &str, requested: &str) -> Option<String> {
    let (base, path) = match value.find("://") {
        Some(i) => {
            let after = &value[i + 3..];
            let slash = after.find('/').map_or(value.len(), |j| i + 3 + j);
            (&value[..slash], &value[slash..])
        }
        None => ("", value),
    };
    let rest = path.strip_prefix(rewritten)?;
    Some(format!("{base}{requested}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remap() -> DomainRemap {
        struct Nothing;
        impl Service for Nothing {
            fn call(&self, _req: Req) -> BoxFuture<'_, Resp> {
                Box::pin(async { error_response(StatusCode::OK, None) })
            }
        }
        DomainRemap::new(
            std::sync::Arc::new(Nothing),
            DomainRemapConfig {
                storage_domain: vec!["example.com".into()],
                ..Default::default()
            },
        )
    }

    #[test]
    fn accounts_get_their_reseller_prefix_back() {
        let r = remap();
        assert_eq!(r.account("AUTH_test").as_deref(), Some("AUTH_test"));
        assert_eq!(r.account("auth-test").as_deref(), Some("AUTH_test"));
        assert_eq!(r.account("other"), None);
    }

    #[test]
    fn locations_are_put_back_in_the_client_s_terms() {
        assert_eq!(
            rewrite_location(
                "http://c.AUTH_a.example.com/v1/AUTH_a/c/dir/",
                "/v1/AUTH_a/c/dir",
                "/dir"
            )
            .as_deref(),
            Some("http://c.AUTH_a.example.com/dir/")
        );
        assert_eq!(
            rewrite_location("/v1/AUTH_a/c/", "/v1/AUTH_a/c", "/c").as_deref(),
            Some("/c/")
        );
        assert_eq!(rewrite_location("/elsewhere", "/v1/AUTH_a/c", "/c"), None);
    }
}
