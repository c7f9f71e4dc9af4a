//! The container controller: GET/HEAD (object listings, stats), PUT (with
//! its storage policy and the account update), POST (metadata, ACLs) and
//! DELETE, plus the container info the object controller decides on.

use apus_core::Timestamp;
use apus_proto::constraints::NameKind;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::account::{check_metadata, copy_request_headers, transfer_headers};
use crate::app::{strip_owner_headers, Ctx, SWIFT_OWNER_HEADERS};
use crate::backend::{assign_update_targets, best_response, quorum_size, NodePlan};
use crate::info::ContainerInfo;
use crate::service::{error_response, header_str, Req, Resp};

/// Container settings a client sends as they are.
const CONTAINER_PASS_THROUGH: &[&str] = &[
    "x-container-read",
    "x-container-write",
    "x-container-sync-key",
    "x-container-sync-to",
    "x-versions-location",
];

impl Ctx<'_> {
    fn container_name(&self) -> &str {
        self.target.container.as_deref().unwrap_or("")
    }

    fn container_key(&self) -> String {
        format!("{}/{}", self.target.account, self.container_name())
    }

    pub fn container_plan(&self) -> NodePlan {
        self.app
            .container_plan(&self.target.account, self.container_name())
    }

    fn container_path(&self) -> String {
        format!("/{}/{}", self.target.account, self.container_name())
    }

    pub async fn container(mut self, mut req: Req) -> Resp {
        let method = req.method().clone();
        if method == Method::PUT || method == Method::POST {
            if let Err(resp) = clean_acls(req.headers_mut()) {
                return resp;
            }
            if let Err(resp) = check_metadata(req.headers(), "container") {
                return resp;
            }
            if !self.env.swift_owner {
                for name in SWIFT_OWNER_HEADERS {
                    req.headers_mut().remove(*name);
                }
            }
        }
        match method {
            Method::GET | Method::HEAD => self.container_get(req).await,
            Method::PUT => self.container_put(req).await,
            Method::POST => self.container_post(req).await,
            Method::DELETE => self.container_delete(req).await,
            _ if method.as_str() == "UPDATE" => self.container_update(req).await,
            _ => error_response(StatusCode::METHOD_NOT_ALLOWED, None),
        }
    }

    async fn container_get(&mut self, req: Req) -> Resp {
        if self.account_info().await.is_none() {
            if let Err(denial) = self.authorize(&req, None).await {
                return denial;
            }
            return error_response(StatusCode::NOT_FOUND, None);
        }
        let plan = self.container_plan();
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
                &self.container_path(),
                req.uri().query(),
                headers,
                newest,
            )
            .await;
        let status = resp.status().as_u16();
        if status == 404 || resp.status().is_success() {
            self.app.containers.put(
                &self.container_key(),
                ContainerInfo::from_headers(status, resp.headers()),
            );
        }
        if resp.status().is_success() {
            let policy = header_str(resp.headers(), "x-backend-storage-policy-index")
                .and_then(|v| v.parse::<u32>().ok())
                .and_then(|i| self.app.config.policy(i))
                .map(|p| p.name.clone());
            if let Some(name) = policy {
                crate::service::set_header(resp.headers_mut(), "x-storage-policy", &name);
            }
        }
        let acl = header_str(resp.headers(), "x-container-read").map(str::to_string);
        if let Err(denial) = self.authorize(&req, acl.as_deref()).await {
            return denial;
        }
        if !self.env.swift_owner {
            strip_owner_headers(resp.headers_mut());
        }
        resp
    }

    /// The backend headers of a container PUT or DELETE: one set per
    /// container replica, each naming the account replica it updates.
    fn container_backend_headers(&self, req: &Req, policy: Option<u32>) -> Vec<HeaderMap> {
        let ts = Timestamp::now().internal();
        let mut base = self.base_headers(Some(&ts));
        transfer_headers(
            req.headers(),
            &mut base,
            "container",
            CONTAINER_PASS_THROUGH,
        );
        match policy {
            Some(index) => {
                base.insert("x-backend-storage-policy-index", HeaderValue::from(index));
            }
            None => {
                let default = self
                    .app
                    .config
                    .default_policy()
                    .map(|p| p.index)
                    .unwrap_or(0);
                base.insert(
                    "x-backend-storage-policy-default",
                    HeaderValue::from(default),
                );
            }
        }
        let container_count = self.app.config.container_ring.get().replica_count().max(1);
        let ring = self.app.config.account_ring.get();
        let part = ring.partition(&self.app.config.hash, &self.target.account, None, None);
        let accounts = ring.primaries(part);
        let mut out = vec![base; container_count];
        assign_update_targets(&mut out, &accounts, part, "x-account");
        out
    }

    fn requested_policy(&self, req: &Req) -> Result<Option<u32>, Resp> {
        let Some(name) = header_str(req.headers(), "x-storage-policy") else {
            if req.headers().contains_key("x-storage-policy") {
                return Err(error_response(
                    StatusCode::BAD_REQUEST,
                    Some("Invalid X-Storage-Policy"),
                ));
            }
            return Ok(None);
        };
        if name.is_empty() {
            return Ok(None);
        }
        match self.app.config.policy_by_name(name) {
            None => Err(error_response(
                StatusCode::BAD_REQUEST,
                Some(&format!("Invalid X-Storage-Policy '{name}'")),
            )),
            Some(p) if p.deprecated => Err(error_response(
                StatusCode::BAD_REQUEST,
                Some(&format!("Storage Policy '{}' is deprecated", p.name)),
            )),
            Some(p) => Ok(Some(p.index)),
        }
    }

    async fn container_put(&mut self, req: Req) -> Resp {
        let policy = match self.requested_policy(&req) {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        // Only a new container's name is checked, as in Swift: any other
        // request for a longer name simply finds no container.
        if let Err(resp) = self.check_name_length(NameKind::Container) {
            return resp;
        }
        let mut account = self.account_info().await;
        if account.is_none() && self.app.config.account_autocreate {
            if !self.autocreate_account(req.headers()).await {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, None);
            }
            account = self.account_info().await;
        }
        let Some(account) = account else {
            return error_response(StatusCode::NOT_FOUND, None);
        };
        let limit = self.app.config.max_containers_per_account;
        if limit > 0 && account.container_count >= limit {
            let info = self.container_info().await;
            if !info.exists() {
                return error_response(
                    StatusCode::FORBIDDEN,
                    Some(&format!("Reached container limit of {limit}")),
                );
            }
        }
        let headers = self.container_backend_headers(&req, policy);
        let plan = self.container_plan();
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::PUT, &self.container_path(), None, &|i| {
                headers.get(i).cloned().unwrap_or_default()
            })
            .await;
        self.app.containers.forget(&self.container_key());
        self.app.accounts.forget(&self.target.account);
        best_response(&answers, quorum_size(plan.replicas), "Container PUT")
    }

    async fn container_post(&mut self, req: Req) -> Resp {
        if self.account_info().await.is_none() {
            return error_response(StatusCode::NOT_FOUND, None);
        }
        let ts = Timestamp::now().internal();
        let mut headers = self.base_headers(Some(&ts));
        transfer_headers(
            req.headers(),
            &mut headers,
            "container",
            CONTAINER_PASS_THROUGH,
        );
        if let Some(v) = req.headers().get("x-storage-policy") {
            headers.insert("x-storage-policy", v.clone());
        }
        self.app.containers.forget(&self.container_key());
        let plan = self.container_plan();
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::POST, &self.container_path(), None, &|_| {
                headers.clone()
            })
            .await;
        best_response(&answers, quorum_size(plan.replicas), "Container POST")
    }

    /// Swift's private `UPDATE`: the JSON rows of the body merged into
    /// every replica of the container (created if its account is one of
    /// the cluster's own), answered by quorum.
    async fn container_update(&mut self, req: Req) -> Resp {
        let method = req.method().clone();
        let ts = header_str(req.headers(), "x-timestamp")
            .map(str::to_string)
            .unwrap_or_else(|| Timestamp::now().internal());
        let mut headers = self.base_headers(Some(&ts));
        copy_request_headers(
            req.headers(),
            &mut headers,
            &["content-type", "x-backend-storage-policy-index"],
        );
        let body = match apus_http::body::collect_limited(
            req.into_body(),
            apus_proto::db_replication::MAX_RPC_BODY,
        )
        .await
        {
            Ok(b) => b,
            Err(_) => return error_response(StatusCode::PAYLOAD_TOO_LARGE, None),
        };
        let plan = self.container_plan();
        let answers = self
            .app
            .backend
            .fan_out_with_body(
                &plan,
                method,
                &self.container_path(),
                None,
                &|_| headers.clone(),
                Some(body),
            )
            .await;
        best_response(&answers, quorum_size(plan.replicas), "Container UPDATE")
    }

    async fn container_delete(&mut self, req: Req) -> Resp {
        if self.account_info().await.is_none() {
            return error_response(StatusCode::NOT_FOUND, None);
        }
        let headers = self.container_backend_headers(&req, None);
        self.app.containers.forget(&self.container_key());
        let plan = self.container_plan();
        let answers = self
            .app
            .backend
            .fan_out(&plan, Method::DELETE, &self.container_path(), None, &|i| {
                headers.get(i).cloned().unwrap_or_default()
            })
            .await;
        self.app.containers.forget(&self.container_key());
        self.app.accounts.forget(&self.target.account);
        let resp = best_response(&answers, quorum_size(plan.replicas), "Container DELETE");
        if resp.status() == StatusCode::ACCEPTED {
            return error_response(StatusCode::NOT_FOUND, None);
        }
        resp
    }

    /// Swift's `container_info` for the target's container.
    pub async fn container_info(&self) -> ContainerInfo {
        self.app
            .container_info(&self.env, &self.target.account, self.container_name())
            .await
    }
}

/// Validates and normalizes `X-Container-Read` / `X-Container-Write`.
fn clean_acls(headers: &mut HeaderMap) -> Result<(), Resp> {
    for name in ["x-container-read", "x-container-write"] {
        let Some(value) = headers.get(name) else {
            continue;
        };
        // Swift cleans the WSGI string (a code point per byte); for a
        // value that is not UTF-8, do the same so that its bytes reach the
        // container server unchanged, which refuses them (400).
        let (text, wsgi) = match std::str::from_utf8(value.as_bytes()) {
            Ok(t) => (t.to_string(), false),
            Err(_) => (
                value.as_bytes().iter().map(|b| char::from(*b)).collect(),
                true,
            ),
        };
        match crate::acl::clean_acl(name, &text) {
            Ok(clean) => {
                let cleaned = if wsgi {
                    let bytes: Option<Vec<u8>> =
                        clean.chars().map(|c| u8::try_from(c).ok()).collect();
                    bytes.and_then(|b| HeaderValue::from_bytes(&b).ok())
                } else {
                    HeaderValue::from_str(&clean).ok()
                };
                if let Some(v) = cleaned {
                    headers.insert(name, v);
                }
            }
            Err(msg) => return Err(error_response(StatusCode::BAD_REQUEST, Some(&msg))),
        }
    }
    Ok(())
}
