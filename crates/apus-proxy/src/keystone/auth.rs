//! The `keystoneauth` filter: Swift's authorization rules for callers
//! Keystone vouched for (see the `authtoken` filter), and for anonymous
//! callers of accounts under our reseller prefixes.
//!
//! For a caller with an identity, in order:
//! - `OPTIONS` passes (CORS preflight is answered by the controllers);
//! - the reseller admin role owns every account;
//! - a system reader role may read (GET, HEAD) everything;
//! - nobody else may DELETE an account;
//! - a container ACL entry `<project>:<user>` matching the caller's ids
//!   (or `*`) grants access; names match too when the caller's user and
//!   project, and the account's project, are in the default domain;
//! - a referrer (`.r:`) rule grants objects, and listings with
//!   `.rlistings`; a referrer rule that matches only the container
//!   denies;
//! - otherwise the account must be the caller's project's (`<prefix>` +
//!   project id): an operator role makes the caller its owner, provided
//!   the prefix's service roles (if any) come with an `X-Service-Token`;
//!   a project reader role may read;
//! - finally a container ACL naming one of the caller's roles grants.
//!
//! Which domain an account's project is in is recorded when the account
//! is created or first written by a token of its project (account
//! sysmeta, shown to clients as `X-Account-Project-Domain-Id`); an
//! account created with another project's token is marked unknown, and
//! names in its ACLs are never honoured.
//!
//! Anonymous callers get only the referrer rules, and only for accounts
//! under our reseller prefixes. Denials are 403 for identified callers
//! and 401 for anonymous ones.
//!
//! Swift's keystoneauth registers nothing in `/info`, and neither does
//! this filter.

use std::sync::Arc;

use apus_proto::path::percent_decode;
use http::{Method, StatusCode};

use super::{KeystoneConfig, KeystoneIdentity};
use crate::acl;
use crate::info::InfoLookup;
use crate::service::{
    env_mut, error_response, header_str, set_header, split_request_path, AuthRequest, Authorize,
    BoxFuture, Grant, PathParts, Req, Resp, Service, SharedService,
};

/// Where the account server keeps the domain of an account's project.
pub const PROJECT_DOMAIN_ID_SYSMETA: &str = "x-account-sysmeta-project-domain-id";
/// What is recorded for an account created by a token of another
/// project: its project's domain is not known.
pub const UNKNOWN_DOMAIN_ID: &str = "_unknown";
/// How clients see it.
pub const PROJECT_DOMAIN_ID_HEADER: &str = "x-account-project-domain-id";

struct Rules {
    config: KeystoneConfig,
    info: Arc<dyn InfoLookup>,
}

pub struct KeystoneAuth {
    rules: Arc<Rules>,
    next: SharedService,
}

impl KeystoneAuth {
    pub fn new(config: KeystoneConfig, info: Arc<dyn InfoLookup>, next: SharedService) -> Self {
        let mut config = config;
        if config.reseller_prefixes.is_empty() {
            config.reseller_prefixes.push("AUTH_".to_string());
        }
        KeystoneAuth {
            rules: Arc::new(Rules { config, info }),
            next,
        }
    }
}

/// Swift's `denied_response`.
fn denied(req: &AuthRequest<'_>) -> Resp {
    if req.env.remote_user.is_empty() {
        crate::tempauth::unauthorized(req.path)
    } else {
        error_response(StatusCode::FORBIDDEN, None)
    }
}

const OWNER: Grant = Grant { owner: true };
const PLAIN: Grant = Grant { owner: false };

fn any_in(have: &[String], wanted: &[String]) -> bool {
    have.iter().any(|h| wanted.contains(h))
}

impl Rules {
    /// The reseller prefix of `account`: the first non-empty one it starts
    /// with, else the empty prefix when that is one of ours.
    fn account_prefix(&self, account: &str) -> Option<&str> {
        let prefixes = &self.config.reseller_prefixes;
        prefixes
            .iter()
            .filter(|p| !p.is_empty())
            .find(|p| account.starts_with(p.as_str()))
            .or_else(|| prefixes.iter().find(|p| p.is_empty()))
            .map(String::as_str)
    }

    /// Whether `account` is the project's under one of our prefixes.
    fn account_matches_project(&self, account: &str, project_id: Option<&str>) -> bool {
        let Some(project_id) = project_id else {
            return false;
        };
        self.config.reseller_prefixes.iter().any(|p| {
            account.len() == p.len() + project_id.len()
                && account.starts_with(p.as_str())
                && account.ends_with(project_id)
        })
    }

    /// Swift's `_is_name_allowed_in_acl`: names in ACLs are honoured only
    /// when the caller's user and project and the account's project all
    /// are in the default domain (or in no domain at all).
    async fn names_allowed(
        &self,
        req: &AuthRequest<'_>,
        account: &str,
        identity: &KeystoneIdentity,
    ) -> bool {
        let c = &self.config;
        if !c.allow_names_in_acls {
            return false;
        }
        let in_default = |domain: &Option<String>| match domain.as_deref() {
            Some(d) if !d.is_empty() => d == c.default_domain_id,
            _ => true,
        };
        if !in_default(&identity.user_domain_id) || !in_default(&identity.project_domain_id) {
            return false;
        }
        if self.account_matches_project(account, identity.project_id.as_deref()) {
            return true;
        }
        let info = self.info.account_info(req.env, account).await;
        let domain = header_str(&info.headers, PROJECT_DOMAIN_ID_SYSMETA);
        info.exists() && domain.is_none_or(|d| d == c.default_domain_id)
    }

    /// Swift's `_authorize_unconfirmed_identity`: `Some(true)` when a
    /// referrer rule grants, `Some(false)` when one matches but grants
    /// nothing here, `None` when none applies.
    fn referrer_rule(
        req: &AuthRequest<'_>,
        obj: bool,
        referrers: &[String],
        groups: &[String],
    ) -> Option<bool> {
        if acl::referrer_allowed(header_str(req.headers, "referer"), referrers) {
            Some(obj || groups.iter().any(|g| g == ".rlistings"))
        } else {
            None
        }
    }

    async fn authorize(
        &self,
        req: &AuthRequest<'_>,
        identity: &KeystoneIdentity,
    ) -> Result<Grant, Resp> {
        let c = &self.config;
        let (referrers, groups) = acl::parse_acl(req.acl);
        if *req.method == Method::OPTIONS {
            return Ok(PLAIN);
        }
        let Some((account, container, obj)) = split_request_path(req.path) else {
            return Err(error_response(StatusCode::NOT_FOUND, None));
        };
        let account = account.unwrap_or_default();
        let is_read = *req.method == Method::GET || *req.method == Method::HEAD;
        let roles = &identity.roles;

        if roles.contains(&c.reseller_admin_role) {
            return Ok(OWNER);
        }
        if is_read && any_in(roles, &c.system_reader_roles) {
            return Ok(PLAIN);
        }
        if container.is_none() && obj.is_none() && *req.method == Method::DELETE {
            return Err(denied(req));
        }

        if !groups.is_empty() {
            let names = self.names_allowed(req, &account, identity).await;
            let mut projects = vec![identity.project_id.clone(), Some("*".to_string())];
            let mut users = vec![Some(identity.user_id.clone()), Some("*".to_string())];
            if names {
                projects.push(identity.project_name.clone());
                users.push(Some(identity.user_name.clone()));
            }
            for project in projects.iter().flatten() {
                for user in users.iter().flatten() {
                    let entry = format!("{project}:{user}");
                    if groups.contains(&entry) {
                        return Ok(PLAIN);
                    }
                }
            }
        }

        let referred = Self::referrer_rule(req, obj.is_some(), &referrers, &groups);
        if referred == Some(true) {
            return Ok(PLAIN);
        }

        if !self.account_matches_project(&account, identity.project_id.as_deref()) {
            return Err(denied(req));
        }
        // The account is the project's, so it has one of our prefixes.
        let prefix = self.account_prefix(&account).unwrap_or_default();
        let rules = c.roles_for(prefix);
        let operator = any_in(roles, &rules.operator_roles);
        let service =
            rules.service_roles.is_empty() || any_in(&identity.service_roles, &rules.service_roles);
        if operator && service {
            return Ok(OWNER);
        }
        if is_read && any_in(roles, &rules.project_reader_roles) {
            return Ok(PLAIN);
        }
        if referred.is_some() {
            return Err(denied(req));
        }
        let acl_roles: Vec<String> = groups.iter().map(|g| g.to_lowercase()).collect();
        if any_in(roles, &acl_roles) {
            return Ok(PLAIN);
        }
        Err(denied(req))
    }

    /// Swift's `_set_project_domain_id`: an account PUT or POST, or a
    /// container PUT (which may create the account), records the domain
    /// of the account's project as account sysmeta when the caller's
    /// token tells it (the account is the token's project), or marks it
    /// unknown when a new account is created by someone else. Names in
    /// ACLs are honoured only for accounts of the default domain.
    async fn record_project_domain(
        &self,
        req: &mut Req,
        parts: &PathParts,
        identity: &KeystoneIdentity,
    ) {
        let (Some(account), container, obj) = parts else {
            return;
        };
        let method = req.method();
        let applies = obj.is_none()
            && (*method == Method::PUT || (*method == Method::POST && container.is_none()));
        if !applies || req.headers().contains_key(PROJECT_DOMAIN_ID_SYSMETA) {
            return;
        }
        let info = self
            .info
            .account_info(&crate::service::env(req), account)
            .await;
        let stored = header_str(&info.headers, PROJECT_DOMAIN_ID_SYSMETA);
        let from_token = self.account_matches_project(account, identity.project_id.as_deref());
        let token_domain = identity.project_domain_id.as_deref().filter(|_| from_token);
        let default = self.config.default_domain_id.as_str();
        let record = if !info.exists() {
            if from_token {
                token_domain
            } else {
                Some(UNKNOWN_DOMAIN_ID)
            }
        } else if stored.is_none() && token_domain == Some(default) {
            token_domain
        } else if stored == Some(UNKNOWN_DOMAIN_ID) && from_token {
            Some(token_domain.unwrap_or(""))
        } else {
            if from_token && stored != token_domain {
                tracing::warn!(
                    account = %account,
                    stored = ?stored,
                    token = ?token_domain,
                    "keystoneauth: the token's project domain differs from the account's"
                );
            }
            None
        };
        if let Some(domain) = record.map(str::to_string) {
            set_header(req.headers_mut(), PROJECT_DOMAIN_ID_SYSMETA, &domain);
        }
    }

    /// Swift's `authorize_anonymous`.
    fn authorize_anonymous(&self, req: &AuthRequest<'_>) -> Result<Grant, Resp> {
        let Some((account, _container, obj)) = split_request_path(req.path) else {
            return Err(error_response(StatusCode::NOT_FOUND, None));
        };
        if *req.method == Method::OPTIONS {
            return Ok(PLAIN);
        }
        let ours = account
            .as_deref()
            .is_some_and(|a| self.account_prefix(a).is_some());
        if !ours {
            return Err(denied(req));
        }
        let (referrers, groups) = acl::parse_acl(req.acl);
        match Self::referrer_rule(req, obj.is_some(), &referrers, &groups) {
            Some(true) => Ok(PLAIN),
            _ => Err(denied(req)),
        }
    }
}

/// The callback installed on a request: the rules for its caller.
struct Authorizer {
    rules: Arc<Rules>,
    identity: Option<Arc<KeystoneIdentity>>,
}

impl Authorize for Authorizer {
    fn authorize<'a>(&'a self, req: AuthRequest<'a>) -> BoxFuture<'a, Result<Grant, Resp>> {
        Box::pin(async move {
            match &self.identity {
                Some(identity) => self.rules.authorize(&req, identity).await,
                None => self.rules.authorize_anonymous(&req),
            }
        })
    }
}

impl Service for KeystoneAuth {
    fn call(&self, mut req: Req) -> BoxFuture<'_, Resp> {
        Box::pin(async move {
            let rules = &self.rules;
            let (identity, overridden) = match req.extensions().get::<crate::service::Env>() {
                Some(env) => (env.keystone.clone(), env.authorize_override),
                None => (None, false),
            };
            if rules.config.allow_overrides && overridden {
                return self.next.call(req).await;
            }
            let raw = req.uri().path();
            let parts =
                split_request_path(&percent_decode(raw).unwrap_or_else(|_| raw.to_string()));
            if let (Some(identity), Some(parts)) = (&identity, &parts) {
                rules.record_project_domain(&mut req, parts, identity).await;
            }
            let env = env_mut(&mut req);
            if let Some(identity) = &identity {
                // Swift's `REMOTE_USER` is the project; a reseller admin's
                // requests are reseller requests (account quotas).
                let mut user = vec![
                    identity.project_id.clone().unwrap_or_default(),
                    identity.project_name.clone().unwrap_or_default(),
                ];
                if identity.roles.contains(&rules.config.reseller_admin_role) {
                    user.push(".reseller_admin".to_string());
                }
                env.remote_user = user;
            }
            env.authorize = Some(Arc::new(Authorizer {
                rules: rules.clone(),
                identity,
            }));
            let account_level = matches!(parts, Some((Some(_), None, _)));
            let mut resp = self.next.call(req).await;
            if account_level {
                if let Some(domain) =
                    header_str(resp.headers(), PROJECT_DOMAIN_ID_SYSMETA).map(str::to_string)
                {
                    set_header(resp.headers_mut(), PROJECT_DOMAIN_ID_HEADER, &domain);
                }
            }
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    //! The rules, case by case as Swift's `test_keystoneauth.py` has them.
    use super::*;
    use crate::info::{AccountInfo, ContainerInfo};
    use crate::keystone::PrefixRoles;
    use crate::service::Env;
    use http::HeaderMap;
    use std::collections::HashMap;

    /// Accounts by name: their status and stored project domain.
    #[derive(Default)]
    struct FakeInfo {
        accounts: HashMap<String, (u16, Option<String>)>,
    }

    impl InfoLookup for FakeInfo {
        fn account_info<'a>(&'a self, _: &'a Env, account: &'a str) -> BoxFuture<'a, AccountInfo> {
            Box::pin(async move {
                let (status, domain) = self.accounts.get(account).cloned().unwrap_or((404, None));
                let mut headers = HeaderMap::new();
                if let Some(d) = domain {
                    set_header(&mut headers, PROJECT_DOMAIN_ID_SYSMETA, &d);
                }
                AccountInfo::from_headers(status, &headers)
            })
        }

        fn container_info<'a>(
            &'a self,
            _: &'a Env,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, ContainerInfo> {
            Box::pin(async { ContainerInfo::default() })
        }
    }

    fn rules_with(config: KeystoneConfig, info: FakeInfo) -> Rules {
        Rules {
            config,
            info: Arc::new(info),
        }
    }

    fn rules() -> Rules {
        rules_with(KeystoneConfig::default(), FakeInfo::default())
    }

    fn identity(project: &str, user: &str, roles: &[&str]) -> KeystoneIdentity {
        KeystoneIdentity {
            user_id: format!("{user}_id"),
            user_name: format!("{user}_name"),
            user_domain_id: Some("default".into()),
            user_domain_name: Some("Default".into()),
            project_id: Some(format!("{project}_id")),
            project_name: Some(format!("{project}_name")),
            project_domain_id: Some("default".into()),
            project_domain_name: Some("Default".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            service_roles: Vec::new(),
        }
    }

    /// What the rules say to `method path` by `who` (anonymous when
    /// `None`) under the container ACL `acl`: the grant or the status.
    async fn check(
        rules: &Rules,
        who: Option<&KeystoneIdentity>,
        method: Method,
        path: &str,
        acl: Option<&str>,
        referer: Option<&str>,
    ) -> Result<Grant, u16> {
        let mut env = Env::default();
        if let Some(id) = who {
            env.remote_user = vec![id.project_id.clone().unwrap_or_default()];
        }
        let mut headers = HeaderMap::new();
        if let Some(r) = referer {
            set_header(&mut headers, "referer", r);
        }
        let req = AuthRequest {
            method: &method,
            path,
            headers: &headers,
            env: &env,
            acl,
        };
        let result = match who {
            Some(id) => rules.authorize(&req, id).await,
            None => rules.authorize_anonymous(&req),
        };
        result.map_err(|r| r.status().as_u16())
    }

    /// The project domain a request by `who` records, if any.
    async fn recorded(
        rules: &Rules,
        who: &KeystoneIdentity,
        method: Method,
        path: &str,
    ) -> Option<String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(apus_http::empty())
            .unwrap();
        let parts = split_request_path(path).unwrap();
        rules.record_project_domain(&mut req, &parts, who).await;
        header_str(req.headers(), PROJECT_DOMAIN_ID_SYSMETA).map(str::to_string)
    }

    #[tokio::test]
    async fn the_project_domain_is_recorded_as_swift_records_it() {
        let mut info = FakeInfo::default();
        info.accounts.insert("AUTH_legacy_id".into(), (204, None));
        info.accounts.insert(
            "AUTH_unknown_id".into(),
            (204, Some(UNKNOWN_DOMAIN_ID.into())),
        );
        info.accounts
            .insert("AUTH_d2_id".into(), (204, Some("d2".into())));
        let r = rules_with(KeystoneConfig::default(), info);
        let in_domain = |project: &str, domain: Option<&str>| KeystoneIdentity {
            project_domain_id: domain.map(str::to_string),
            ..identity(project, "u", &["admin"])
        };
        // A new account: the token's project domain, or unknown when the
        // token is another project's.
        let new = in_domain("new", Some("d2"));
        for (method, path) in [
            (Method::PUT, "/v1/AUTH_new_id"),
            (Method::POST, "/v1/AUTH_new_id"),
            (Method::PUT, "/v1/AUTH_new_id/c"),
        ] {
            assert_eq!(
                recorded(&r, &new, method, path).await.as_deref(),
                Some("d2")
            );
        }
        let root = in_domain("ops", Some("default"));
        assert_eq!(
            recorded(&r, &root, Method::PUT, "/v1/AUTH_new_id/c")
                .await
                .as_deref(),
            Some(UNKNOWN_DOMAIN_ID)
        );
        // A token without domains (v2) records nothing for its account.
        let v2 = in_domain("new", None);
        assert_eq!(
            recorded(&r, &v2, Method::PUT, "/v1/AUTH_new_id/c").await,
            None
        );
        // Only writes at account level and container PUTs.
        for (method, path) in [
            (Method::POST, "/v1/AUTH_new_id/c"),
            (Method::PUT, "/v1/AUTH_new_id/c/o"),
            (Method::GET, "/v1/AUTH_new_id"),
        ] {
            assert_eq!(recorded(&r, &new, method, path).await, None, "{path}");
        }
        // A legacy account learns the default domain, and only that.
        let legacy = in_domain("legacy", Some("default"));
        assert_eq!(
            recorded(&r, &legacy, Method::POST, "/v1/AUTH_legacy_id")
                .await
                .as_deref(),
            Some("default")
        );
        let legacy_d2 = in_domain("legacy", Some("d2"));
        assert_eq!(
            recorded(&r, &legacy_d2, Method::POST, "/v1/AUTH_legacy_id").await,
            None
        );
        // An unknown domain is learnt from the project's own token.
        let unknown = in_domain("unknown", Some("d3"));
        assert_eq!(
            recorded(&r, &unknown, Method::PUT, "/v1/AUTH_unknown_id/c")
                .await
                .as_deref(),
            Some("d3")
        );
        assert_eq!(
            recorded(&r, &root, Method::PUT, "/v1/AUTH_unknown_id/c").await,
            None
        );
        // A known domain is never changed.
        let d2 = in_domain("d2", Some("other"));
        assert_eq!(
            recorded(&r, &d2, Method::POST, "/v1/AUTH_d2_id").await,
            None
        );
    }

    /// Records the Env each request reaches it with.
    #[derive(Default)]
    struct Recorder {
        seen: std::sync::Mutex<Vec<Env>>,
    }

    impl Service for Recorder {
        fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
            self.seen.lock().unwrap().push(crate::service::env(&req));
            Box::pin(async { crate::service::status_response(StatusCode::NO_CONTENT) })
        }
    }

    async fn env_after(config: KeystoneConfig, env: Env) -> Env {
        let next = Arc::new(Recorder::default());
        let filter = KeystoneAuth::new(config, Arc::new(FakeInfo::default()), next.clone());
        let mut req = http::Request::builder()
            .uri("/v1/AUTH_p_id/c/o")
            .body(apus_http::empty())
            .unwrap();
        req.extensions_mut().insert(env);
        filter.call(req).await;
        let seen = next.seen.lock().unwrap();
        seen[0].clone()
    }

    #[tokio::test]
    async fn the_filter_installs_the_rules_unless_overridden() {
        // Anonymous: the rules, no user.
        let env = env_after(KeystoneConfig::default(), Env::default()).await;
        assert!(env.authorize.is_some());
        assert!(env.remote_user.is_empty());
        // Identified: the project is the user; a reseller admin's
        // requests are reseller requests.
        let who = Env {
            keystone: Some(Arc::new(identity("p", "alice", &["reselleradmin"]))),
            ..Env::default()
        };
        let env = env_after(KeystoneConfig::default(), who).await;
        assert!(env.authorize.is_some());
        assert_eq!(env.remote_user, ["p_id", "p_name", ".reseller_admin"]);
        // tempurl authorized the request: left alone, unless overrides
        // are not allowed.
        let overridden = Env {
            authorize_override: true,
            ..Env::default()
        };
        let env = env_after(KeystoneConfig::default(), overridden.clone()).await;
        assert!(env.authorize.is_none());
        let strict = KeystoneConfig {
            allow_overrides: false,
            ..KeystoneConfig::default()
        };
        let env = env_after(strict, overridden).await;
        assert!(env.authorize.is_some());
    }

    #[tokio::test]
    async fn operators_own_their_projects_account() {
        let r = rules();
        for role in ["admin", "swiftoperator"] {
            let alice = identity("p", "alice", &[role]);
            for (method, path) in [
                (Method::GET, "/v1/AUTH_p_id"),
                (Method::POST, "/v1/AUTH_p_id"),
                (Method::PUT, "/v1/AUTH_p_id/c"),
                (Method::DELETE, "/v1/AUTH_p_id/c/o"),
            ] {
                assert_eq!(
                    check(&r, Some(&alice), method, path, None, None).await,
                    Ok(OWNER),
                    "{role} {path}"
                );
            }
        }
        // Operator roles are configured lowercased; tokens' roles are
        // lowercased when read.
        let bob = identity("p", "bob", &["swiftoperator", "member"]);
        assert_eq!(
            check(&r, Some(&bob), Method::GET, "/v1/AUTH_p_id/c", None, None).await,
            Ok(OWNER)
        );
    }

    #[tokio::test]
    async fn without_an_operator_role_or_in_another_project_nothing() {
        let r = rules();
        let member = identity("p", "carol", &["member"]);
        assert_eq!(
            check(&r, Some(&member), Method::GET, "/v1/AUTH_p_id", None, None).await,
            Err(403)
        );
        let other = identity("q", "dave", &["admin"]);
        assert_eq!(
            check(&r, Some(&other), Method::GET, "/v1/AUTH_p_id/c", None, None).await,
            Err(403)
        );
        // Not one of our prefixes, even named after the project.
        let alice = identity("p", "alice", &["admin"]);
        assert_eq!(
            check(&r, Some(&alice), Method::GET, "/v1/OTHER_p_id", None, None).await,
            Err(403)
        );
        // An unscoped token matches no account.
        let mut unscoped = identity("p", "alice", &["admin"]);
        unscoped.project_id = None;
        assert_eq!(
            check(
                &r,
                Some(&unscoped),
                Method::GET,
                "/v1/AUTH_None",
                None,
                None
            )
            .await,
            Err(403)
        );
    }

    #[tokio::test]
    async fn nobody_but_a_reseller_admin_deletes_an_account() {
        let r = rules();
        let alice = identity("p", "alice", &["admin"]);
        assert_eq!(
            check(
                &r,
                Some(&alice),
                Method::DELETE,
                "/v1/AUTH_p_id",
                None,
                None
            )
            .await,
            Err(403)
        );
        let reseller = identity("ops", "root", &["reselleradmin"]);
        assert_eq!(
            check(
                &r,
                Some(&reseller),
                Method::DELETE,
                "/v1/AUTH_p_id",
                None,
                None
            )
            .await,
            Ok(OWNER)
        );
    }

    #[tokio::test]
    async fn reseller_admins_own_every_account() {
        let r = rules();
        let root = identity("ops", "root", &["reselleradmin"]);
        for path in ["/v1/AUTH_p_id", "/v1/AUTH_q_id/c/o", "/v1/anything"] {
            assert_eq!(
                check(&r, Some(&root), Method::PUT, path, None, None).await,
                Ok(OWNER),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn system_readers_read_everything_and_write_nothing() {
        let config = KeystoneConfig {
            system_reader_roles: vec!["auditor".into()],
            ..KeystoneConfig::default()
        };
        let r = rules_with(config, FakeInfo::default());
        let eve = identity("audit", "eve", &["auditor"]);
        assert_eq!(
            check(&r, Some(&eve), Method::GET, "/v1/AUTH_p_id/c", None, None).await,
            Ok(PLAIN)
        );
        assert_eq!(
            check(&r, Some(&eve), Method::PUT, "/v1/AUTH_p_id/c/o", None, None).await,
            Err(403)
        );
    }

    #[tokio::test]
    async fn project_readers_read_their_projects_account() {
        let mut config = KeystoneConfig::default();
        config.roles.project_reader_roles = vec!["reader".into()];
        let r = rules_with(config, FakeInfo::default());
        let rita = identity("p", "rita", &["reader"]);
        assert_eq!(
            check(
                &r,
                Some(&rita),
                Method::HEAD,
                "/v1/AUTH_p_id/c/o",
                None,
                None
            )
            .await,
            Ok(PLAIN)
        );
        assert_eq!(
            check(
                &r,
                Some(&rita),
                Method::PUT,
                "/v1/AUTH_p_id/c/o",
                None,
                None
            )
            .await,
            Err(403)
        );
        assert_eq!(
            check(
                &r,
                Some(&rita),
                Method::GET,
                "/v1/AUTH_q_id/c/o",
                None,
                None
            )
            .await,
            Err(403)
        );
    }

    #[tokio::test]
    async fn container_acls_by_ids_and_wildcards() {
        let r = rules();
        let bob = identity("q", "bob", &["member"]);
        let path = "/v1/AUTH_p_id/c/o";
        for acl in [
            "q_id:bob_id",
            "q_id:*",
            "*:bob_id",
            "*:*",
            "x:y,q_id:bob_id",
        ] {
            assert_eq!(
                check(&r, Some(&bob), Method::GET, path, Some(acl), None).await,
                Ok(PLAIN),
                "{acl}"
            );
        }
        for acl in ["q_id:other", "other:bob_id", "q_id", "bob_id"] {
            assert_eq!(
                check(&r, Some(&bob), Method::GET, path, Some(acl), None).await,
                Err(403),
                "{acl}"
            );
        }
        // An ACL grant never makes the caller an owner.
        let admin_elsewhere = identity("q", "bob", &["admin"]);
        assert_eq!(
            check(
                &r,
                Some(&admin_elsewhere),
                Method::PUT,
                path,
                Some("q_id:bob_id"),
                None
            )
            .await,
            Ok(PLAIN)
        );
    }

    #[tokio::test]
    async fn names_in_acls_only_in_the_default_domain() {
        let mut info = FakeInfo::default();
        info.accounts.insert("AUTH_p_id".into(), (204, None));
        info.accounts
            .insert("AUTH_d_id".into(), (204, Some("default".into())));
        info.accounts
            .insert("AUTH_x_id".into(), (204, Some("elsewhere".into())));
        let r = rules_with(KeystoneConfig::default(), info);
        let bob = identity("q", "bob", &["member"]);
        let acl = Some("q_name:bob_name");
        // Legacy account (no domain stored) and default-domain account.
        for path in ["/v1/AUTH_p_id/c/o", "/v1/AUTH_d_id/c/o"] {
            assert_eq!(
                check(&r, Some(&bob), Method::GET, path, acl, None).await,
                Ok(PLAIN),
                "{path}"
            );
        }
        // The account's project is in another domain, or unknown.
        for path in ["/v1/AUTH_x_id/c/o", "/v1/AUTH_gone_id/c/o"] {
            assert_eq!(
                check(&r, Some(&bob), Method::GET, path, acl, None).await,
                Err(403),
                "{path}"
            );
        }
        // The caller's user or project in another domain: names never
        // match, ids still do.
        let mut foreign_user = bob.clone();
        foreign_user.user_domain_id = Some("d2".into());
        let mut foreign_project = bob.clone();
        foreign_project.project_domain_id = Some("d2".into());
        for who in [&foreign_user, &foreign_project] {
            assert_eq!(
                check(&r, Some(who), Method::GET, "/v1/AUTH_p_id/c/o", acl, None).await,
                Err(403)
            );
            assert_eq!(
                check(
                    &r,
                    Some(who),
                    Method::GET,
                    "/v1/AUTH_p_id/c/o",
                    Some("q_id:bob_id"),
                    None
                )
                .await,
                Ok(PLAIN)
            );
        }
        // No domains at all (a v2 token): names match.
        let mut v2 = bob.clone();
        v2.user_domain_id = None;
        v2.project_domain_id = None;
        assert_eq!(
            check(&r, Some(&v2), Method::GET, "/v1/AUTH_p_id/c/o", acl, None).await,
            Ok(PLAIN)
        );
        // Turned off.
        let config = KeystoneConfig {
            allow_names_in_acls: false,
            ..KeystoneConfig::default()
        };
        let r = rules_with(config, FakeInfo::default());
        assert_eq!(
            check(&r, Some(&bob), Method::GET, "/v1/AUTH_q_id/c/o", acl, None).await,
            Err(403)
        );
    }

    #[tokio::test]
    async fn roles_named_in_acls() {
        let r = rules();
        let bob = identity("p", "bob", &["Member"]);
        let bob = KeystoneIdentity {
            roles: vec!["member".into()],
            ..bob
        };
        assert_eq!(
            check(
                &r,
                Some(&bob),
                Method::GET,
                "/v1/AUTH_p_id/c/o",
                Some("Member"),
                None
            )
            .await,
            Ok(PLAIN)
        );
        // Only in the caller's own project's account.
        assert_eq!(
            check(
                &r,
                Some(&bob),
                Method::GET,
                "/v1/AUTH_q_id/c/o",
                Some("member"),
                None
            )
            .await,
            Err(403)
        );
    }

    #[tokio::test]
    async fn referrer_rules() {
        let r = rules();
        let obj = "/v1/AUTH_p_id/c/o";
        let listing = "/v1/AUTH_p_id/c";
        let anyone = Some(".r:*");
        // Anonymous: objects, and listings only with .rlistings.
        assert_eq!(
            check(&r, None, Method::GET, obj, anyone, None).await,
            Ok(PLAIN)
        );
        assert_eq!(
            check(&r, None, Method::GET, listing, anyone, None).await,
            Err(401)
        );
        assert_eq!(
            check(
                &r,
                None,
                Method::GET,
                listing,
                Some(".r:*,.rlistings"),
                None
            )
            .await,
            Ok(PLAIN)
        );
        let host = Some(".r:.example.com");
        assert_eq!(
            check(
                &r,
                None,
                Method::GET,
                obj,
                host,
                Some("http://www.example.com/x")
            )
            .await,
            Ok(PLAIN)
        );
        assert_eq!(
            check(&r, None, Method::GET, obj, host, Some("http://evil.org/")).await,
            Err(401)
        );
        assert_eq!(
            check(&r, None, Method::GET, obj, None, None).await,
            Err(401)
        );
        // Identified callers of other projects: the same, but 403.
        let bob = identity("q", "bob", &["member"]);
        assert_eq!(
            check(&r, Some(&bob), Method::GET, obj, anyone, None).await,
            Ok(PLAIN)
        );
        assert_eq!(
            check(&r, Some(&bob), Method::GET, listing, anyone, None).await,
            Err(403)
        );
        // A matching referrer rule that does not grant the listing also
        // stops a role named in the ACL, but not an operator.
        let member = identity("p", "mia", &["member"]);
        assert_eq!(
            check(
                &r,
                Some(&member),
                Method::GET,
                listing,
                Some(".r:*,member"),
                None
            )
            .await,
            Err(403)
        );
        let op = identity("p", "olga", &["admin"]);
        assert_eq!(
            check(&r, Some(&op), Method::GET, listing, anyone, None).await,
            Ok(OWNER)
        );
    }

    #[tokio::test]
    async fn anonymous_callers_outside_our_prefixes_are_refused() {
        let r = rules();
        assert_eq!(
            check(&r, None, Method::GET, "/v1/OTHER_p/c/o", Some(".r:*"), None).await,
            Err(401)
        );
        assert_eq!(
            check(&r, None, Method::OPTIONS, "/v1/OTHER_p/c/o", None, None).await,
            Ok(PLAIN)
        );
        assert_eq!(check(&r, None, Method::GET, "", None, None).await, Err(404));
        // With the empty prefix among ours, every account is ours.
        let config = KeystoneConfig {
            reseller_prefixes: vec!["AUTH_".into(), String::new()],
            ..KeystoneConfig::default()
        };
        let r = rules_with(config, FakeInfo::default());
        assert_eq!(
            check(&r, None, Method::GET, "/v1/OTHER_p/c/o", Some(".r:*"), None).await,
            Ok(PLAIN)
        );
    }

    #[tokio::test]
    async fn service_roles_demand_a_service_token() {
        let mut config = KeystoneConfig {
            reseller_prefixes: vec!["AUTH_".into(), "SERVICE_".into()],
            ..KeystoneConfig::default()
        };
        config.prefix_roles.insert(
            "SERVICE_".into(),
            PrefixRoles {
                operator_roles: vec!["admin".into(), "swiftoperator".into()],
                service_roles: vec!["service".into()],
                project_reader_roles: Vec::new(),
            },
        );
        let r = rules_with(config, FakeInfo::default());
        let alice = identity("p", "alice", &["admin"]);
        // The AUTH_ account needs no service token.
        assert_eq!(
            check(&r, Some(&alice), Method::GET, "/v1/AUTH_p_id", None, None).await,
            Ok(OWNER)
        );
        assert_eq!(
            check(
                &r,
                Some(&alice),
                Method::GET,
                "/v1/SERVICE_p_id",
                None,
                None
            )
            .await,
            Err(403)
        );
        let mut wrong = alice.clone();
        wrong.service_roles = vec!["member".into()];
        assert_eq!(
            check(
                &r,
                Some(&wrong),
                Method::GET,
                "/v1/SERVICE_p_id",
                None,
                None
            )
            .await,
            Err(403)
        );
        let mut with_service = alice.clone();
        with_service.service_roles = vec!["service".into()];
        assert_eq!(
            check(
                &r,
                Some(&with_service),
                Method::PUT,
                "/v1/SERVICE_p_id/c",
                None,
                None
            )
            .await,
            Ok(OWNER)
        );
        // A service token alone makes no operator.
        let mut service_only = identity("p", "svc", &["member"]);
        service_only.service_roles = vec!["service".into()];
        assert_eq!(
            check(
                &r,
                Some(&service_only),
                Method::GET,
                "/v1/SERVICE_p_id",
                None,
                None
            )
            .await,
            Err(403)
        );
    }

    #[tokio::test]
    async fn options_pass_and_bad_paths_are_404() {
        let r = rules();
        let bob = identity("q", "bob", &["member"]);
        assert_eq!(
            check(
                &r,
                Some(&bob),
                Method::OPTIONS,
                "/v1/AUTH_p_id/c",
                None,
                None
            )
            .await,
            Ok(PLAIN)
        );
        assert_eq!(
            check(&r, Some(&bob), Method::GET, "/v1/a/c/o", None, None).await,
            Err(403)
        );
        assert_eq!(
            check(&r, Some(&bob), Method::GET, "", None, None).await,
            Err(404)
        );
    }
}
