//! Keystone authentication, as Swift deployments run it with two filters:
//! `authtoken` (keystonemiddleware's `auth_token`) validates the
//! `X-Auth-Token` and `X-Service-Token` of a request with Keystone's v3
//! API and records who the caller is; `keystoneauth` (Swift's own) turns
//! that identity into the authorize callback the controllers call.
//!
//! Both are opt-in: name `authtoken keystoneauth` in the pipeline instead
//! of `tempauth`. The identity travels in the request's [`Env`] (never in
//! headers a client could send), as a [`KeystoneIdentity`].
//!
//! [`Env`]: crate::service::Env

mod auth;
mod authtoken;
pub mod client;

use std::collections::BTreeMap;
use std::time::Duration;

pub use auth::KeystoneAuth;
pub use authtoken::AuthToken;
pub use client::{KeystoneClient, TokenCache, Validation};

/// The roles one reseller prefix's accounts are governed by
/// (`[<PREFIX>_]operator_roles`, `service_roles`, `project_reader_roles`),
/// all lowercased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixRoles {
    /// Roles that make a user of the project the owner of its account.
    pub operator_roles: Vec<String>,
    /// When not empty, owners must also bring an `X-Service-Token` with
    /// one of these roles.
    pub service_roles: Vec<String>,
    /// Roles that may read (GET, HEAD) the project's account.
    pub project_reader_roles: Vec<String>,
}

/// The settings of both filters (`[filter:authtoken]` and
/// `[filter:keystoneauth]`). Its `Debug` output leaves the password out.
#[derive(Clone)]
pub struct KeystoneConfig {
    /// Keystone's address, `http://host:port[/path]`; the v3 API is
    /// under `<auth_url>/v3`.
    pub auth_url: String,
    /// The proxy's own service user, in `user_domain_id`.
    pub username: String,
    pub password: String,
    pub user_domain_id: String,
    /// The project the service token is scoped to, in
    /// `project_domain_id`.
    pub project_name: String,
    pub project_domain_id: String,
    /// `delay_auth_decision`: a request with no or an invalid token goes
    /// on as anonymous (ACLs, tempurl) instead of being refused with 401.
    pub delay_auth_decision: bool,
    /// `token_cache_time`: validated tokens are trusted this long at most
    /// (never past their expiry).
    pub token_cache_time: Duration,
    /// How many validations are remembered at most.
    pub token_cache_size: usize,
    /// Time allowed for each request to Keystone.
    pub http_timeout: Duration,
    /// Reseller prefixes with their trailing `_` (`AUTH_`), the first
    /// being the default.
    pub reseller_prefixes: Vec<String>,
    /// The roles for prefixes without their own entry in `prefix_roles`.
    pub roles: PrefixRoles,
    /// Per-prefix roles (keyed by prefix with its `_`), each replacing
    /// `roles` as a whole.
    pub prefix_roles: BTreeMap<String, PrefixRoles>,
    /// `reseller_admin_role`, lowercased: owner of every account.
    pub reseller_admin_role: String,
    /// `system_reader_roles`, lowercased: may read every account.
    pub system_reader_roles: Vec<String>,
    /// `allow_overrides`: an earlier filter (tempurl, formpost) may
    /// authorize a request its own way.
    pub allow_overrides: bool,
    /// `default_domain_id`: names in container ACLs are honoured only
    /// for users and projects of this domain.
    pub default_domain_id: String,
    /// `allow_names_in_acls`.
    pub allow_names_in_acls: bool,
}

impl Default for KeystoneConfig {
    fn default() -> Self {
        KeystoneConfig {
            auth_url: "http://127.0.0.1:5000".to_string(),
            username: "swift".to_string(),
            password: String::new(),
            user_domain_id: "default".to_string(),
            project_name: "service".to_string(),
            project_domain_id: "default".to_string(),
            delay_auth_decision: true,
            token_cache_time: Duration::from_secs(300),
            token_cache_size: 10_000,
            http_timeout: Duration::from_secs(3),
            reseller_prefixes: vec!["AUTH_".to_string()],
            roles: PrefixRoles {
                operator_roles: vec!["admin".to_string(), "swiftoperator".to_string()],
                service_roles: Vec::new(),
                project_reader_roles: Vec::new(),
            },
            prefix_roles: BTreeMap::new(),
            reseller_admin_role: "reselleradmin".to_string(),
            system_reader_roles: Vec::new(),
            allow_overrides: true,
            default_domain_id: "default".to_string(),
            allow_names_in_acls: true,
        }
    }
}

impl std::fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoneConfig")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("user_domain_id", &self.user_domain_id)
            .field("project_name", &self.project_name)
            .field("project_domain_id", &self.project_domain_id)
            .field("delay_auth_decision", &self.delay_auth_decision)
            .field("token_cache_time", &self.token_cache_time)
            .field("token_cache_size", &self.token_cache_size)
            .field("http_timeout", &self.http_timeout)
            .field("reseller_prefixes", &self.reseller_prefixes)
            .field("roles", &self.roles)
            .field("prefix_roles", &self.prefix_roles)
            .field("reseller_admin_role", &self.reseller_admin_role)
            .field("system_reader_roles", &self.system_reader_roles)
            .field("allow_overrides", &self.allow_overrides)
            .field("default_domain_id", &self.default_domain_id)
            .field("allow_names_in_acls", &self.allow_names_in_acls)
            .finish()
    }
}

impl KeystoneConfig {
    /// The roles that govern accounts of `prefix`.
    pub fn roles_for(&self, prefix: &str) -> &PrefixRoles {
        self.prefix_roles.get(prefix).unwrap_or(&self.roles)
    }
}

/// Who a validated token says the caller is. Role names are lowercased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeystoneIdentity {
    pub user_id: String,
    pub user_name: String,
    pub user_domain_id: Option<String>,
    pub user_domain_name: Option<String>,
    /// The project the token is scoped to (`None` for an unscoped or
    /// domain-scoped token).
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub roles: Vec<String>,
    /// The roles of the request's valid `X-Service-Token`, if it had one.
    pub service_roles: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let config = KeystoneConfig {
            password: "s3cret".into(),
            ..KeystoneConfig::default()
        };
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("auth_url"), "{text}");
    }
}
