//! The `authtoken` filter (keystonemiddleware's `auth_token`): the
//! request's `X-Auth-Token` (or `X-Storage-Token`) is validated with
//! Keystone, and so is its `X-Service-Token`; a caller both vouch for
//! gets a [`KeystoneIdentity`] in the request's `Env`.
//!
//! With `delay_auth_decision` (Swift's recommended setting) a request
//! with no token, or with a token Keystone does not know, goes on as
//! anonymous and is left to the authorization rules (ACLs, tempurl);
//! without it such a request is refused with 401 here. Either way an
//! invalid token grants nothing. When Keystone cannot be asked, a request
//! that carried a token gets 503.

use std::sync::Arc;

use http::{HeaderValue, StatusCode};

use super::{KeystoneClient, KeystoneConfig, KeystoneIdentity, Validation};
use crate::service::{
    env_mut, error_response, header_str, BoxFuture, Req, Resp, Service, SharedService,
};

pub struct AuthToken {
    client: Arc<KeystoneClient>,
    delay_auth_decision: bool,
    www_authenticate: String,
    next: SharedService,
}

impl AuthToken {
    pub fn new(config: KeystoneConfig, next: SharedService) -> Self {
        AuthToken {
            delay_auth_decision: config.delay_auth_decision,
            www_authenticate: format!("Keystone uri=\"{}\"", config.auth_url),
            client: Arc::new(KeystoneClient::new(config)),
            next,
        }
    }

    /// The client, shared with whoever needs to see its cache.
    pub fn client(&self) -> Arc<KeystoneClient> {
        self.client.clone()
    }

    fn unauthorized(&self) -> Resp {
        let mut resp = error_response(StatusCode::UNAUTHORIZED, None);
        if let Ok(v) = HeaderValue::from_str(&self.www_authenticate) {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// The caller's identity, `Ok(None)` for anonymous, or the response
    /// that ends the request.
    async fn identify(&self, req: &Req) -> Result<Option<KeystoneIdentity>, Resp> {
        let headers = req.headers();
        let token = header_str(headers, "x-auth-token")
            .or_else(|| header_str(headers, "x-storage-token"))
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return self.anonymous();
        };
        let mut identity = match self.client.validate(token).await {
            Validation::Valid(identity) => (*identity).clone(),
            Validation::Invalid => return self.anonymous(),
            Validation::Unavailable => return Err(unavailable()),
        };
        if let Some(service) = header_str(headers, "x-service-token").filter(|t| !t.is_empty()) {
            match self.client.validate(service).await {
                Validation::Valid(s) => identity.service_roles = s.roles.clone(),
                Validation::Invalid => return self.anonymous(),
                Validation::Unavailable => return Err(unavailable()),
            }
        }
        Ok(Some(identity))
    }

    fn anonymous(&self) -> Result<Option<KeystoneIdentity>, Resp> {
        if self.delay_auth_decision {
            Ok(None)
        } else {
            Err(self.unauthorized())
        }
    }
}

fn unavailable() -> Resp {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        Some("The identity service could not be reached.\n"),
    )
}

impl Service for AuthToken {
    fn call(&self, mut req: Req) -> BoxFuture<'_, Resp> {
        Box::pin(async move {
            // s3api found the caller by its EC2 credential (Swift's
            // s3token): no token to validate.
            let by_s3 = req
                .extensions()
                .get::<crate::service::Env>()
                .is_some_and(|e| e.keystone.is_some() && e.s3_user.is_some());
            if by_s3 {
                return self.next.call(req).await;
            }
            let identity = match self.identify(&req).await {
                Ok(identity) => identity,
                Err(resp) => return resp,
            };
            env_mut(&mut req).keystone = identity.map(Arc::new);
            self.next.call(req).await
        })
    }
}
