//! `apus images` in the proxy's process: the image service keeps its
//! data through an internal copy of the proxy's pipeline (with SLO, for
//! segmented images) and checks tokens the way the proxy does: tempauth's
//! issued tokens, Keystone's validation, or both.

use std::sync::Arc;

use apus_http::Body;
use apus_images::{AuthOutcome, Authenticator, BoxFuture, Identity, ObjectApi};
use apus_proxy::keystone::client::{KeystoneClient, Validation};
use apus_proxy::tempauth::TempAuthTokens;
use apus_proxy::{Pipeline, Proxy, ProxyConfig, SharedService};
use http::{Request, Response};

/// Image data through the proxy's logic without client authentication:
/// the image service is the only one using it, for its own account.
pub struct InProcessStore {
    pipeline: SharedService,
}

impl InProcessStore {
    pub fn new(mut config: ProxyConfig) -> anyhow::Result<Self> {
        config.pipeline = Pipeline::internal_with(&["slo"])?;
        Ok(InProcessStore {
            pipeline: Proxy::new(config).pipeline(),
        })
    }
}

impl ObjectApi for InProcessStore {
    fn call(&self, req: Request<Body>) -> BoxFuture<'_, Response<Body>> {
        self.pipeline.call(req)
    }
}

/// Who a token belongs to, as the proxy would say.
pub struct ProxyIdentities {
    /// Tempauth's issued tokens and its default reseller prefix.
    tempauth: Option<(Arc<TempAuthTokens>, String)>,
    keystone: Option<KeystoneClient>,
}

impl ProxyIdentities {
    /// From the proxy's configuration: tempauth when its pipeline has it,
    /// Keystone when it has `authtoken`.
    pub fn new(config: &ProxyConfig) -> Self {
        let stages = config.pipeline.stages();
        let tempauth = stages.contains(&"tempauth").then(|| {
            let prefix = config
                .tempauth
                .reseller_prefixes
                .first()
                .cloned()
                .unwrap_or_else(|| "AUTH_".to_string());
            (config.tempauth.tokens.clone(), prefix)
        });
        let keystone = stages
            .contains(&"authtoken")
            .then(|| KeystoneClient::new(config.keystone.clone()));
        ProxyIdentities { tempauth, keystone }
    }
}

/// A tempauth user as the image service sees it: its account is its
/// project; account admins (`.admin`) are members, reseller admins
/// admins, anyone else a reader.
fn tempauth_identity(groups: &[String], prefix: &str) -> Identity {
    let account = groups.first().cloned().unwrap_or_default();
    let user = groups.get(1).cloned().unwrap_or_default();
    let is_admin = groups.iter().any(|g| g == ".reseller_admin");
    let owns_account = groups.iter().any(|g| *g == format!("{prefix}{account}"));
    let role = if is_admin {
        "admin"
    } else if owns_account {
        "member"
    } else {
        "reader"
    };
    Identity {
        user_id: user,
        project_id: Some(account),
        roles: vec![role.to_string()],
        is_admin,
    }
}

impl Authenticator for ProxyIdentities {
    fn identify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, AuthOutcome> {
        Box::pin(async move {
            if let Some((tokens, prefix)) = &self.tempauth {
                if let Some(groups) = tokens.groups(token) {
                    return AuthOutcome::Valid(tempauth_identity(&groups, prefix));
                }
            }
            let Some(keystone) = &self.keystone else {
                return AuthOutcome::Invalid;
            };
            match keystone.validate(token).await {
                Validation::Valid(who) => AuthOutcome::Valid(Identity {
                    user_id: who.user_id.clone(),
                    project_id: who.project_id.clone(),
                    is_admin: who.roles.iter().any(|r| r == "admin"),
                    roles: who.roles.clone(),
                }),
                Validation::Invalid => AuthOutcome::Invalid,
                Validation::Unavailable => AuthOutcome::Unavailable,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tempauth_groups_become_roles() {
        let admin = tempauth_identity(&strings(&["test", "test:tester", "AUTH_test"]), "AUTH_");
        assert_eq!(admin.project_id.as_deref(), Some("test"));
        assert_eq!(admin.roles, strings(&["member"]));
        let reader = tempauth_identity(&strings(&["test", "test:tester3"]), "AUTH_");
        assert_eq!(reader.roles, strings(&["reader"]));
        let reseller = tempauth_identity(
            &strings(&["admin", "admin:admin", ".reseller_admin", "AUTH_admin"]),
            "AUTH_",
        );
        assert!(reseller.is_admin);
    }
}
