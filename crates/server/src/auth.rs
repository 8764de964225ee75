//! Who is connecting: JWT verification (HS256), the dev-mode handshake, and token minting.

use serde::{Deserialize, Serialize};
use switchboard_domain::Millis;
use switchboard_domain::limits::Limits;

/// The claims of a client token (protocol §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, seconds since the epoch (the JWT convention).
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest: bool,
    #[serde(
        default,
        rename = "conversationId",
        skip_serializing_if = "Option::is_none"
    )]
    pub conversation_id: Option<String>,
}

/// An authenticated connection's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub name: String,
    /// The device asked for, if any; the gateway generates one otherwise.
    pub device_id: Option<String>,
    /// When the credential stops being valid (`None`: dev handshake, never).
    pub expires_at: Option<Millis>,
    /// A guest limited to the calls of one conversation (seed 004).
    pub guest_conversation: Option<String>,
}

/// Why a handshake was refused. The `Display` text is the connect error's `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unauthorized")]
    Unauthorized,
    #[error("invalid_auth")]
    InvalidAuth,
}

/// Checks client tokens and dev handshakes.
#[derive(Clone)]
pub struct Authenticator {
    decoding: jsonwebtoken::DecodingKey,
    encoding: jsonwebtoken::EncodingKey,
    has_secret: bool,
    dev: bool,
    limits: Limits,
}

impl Authenticator {
    pub fn new(secret: &str, dev: bool, limits: Limits) -> Self {
        Self {
            decoding: jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            encoding: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            has_secret: !secret.is_empty(),
            dev,
            limits,
        }
    }

    /// Authenticates a Socket.IO handshake `auth` object.
    pub fn handshake(
        &self,
        auth: Option<&serde_json::Value>,
        now: Millis,
    ) -> Result<Identity, AuthError> {
        let Some(serde_json::Value::Object(fields)) = auth else {
            return match auth {
                None | Some(serde_json::Value::Null) => Err(AuthError::Unauthorized),
                Some(_) => Err(AuthError::InvalidAuth),
            };
        };
        if let Some(token) = fields.get("token") {
            let token = token.as_str().ok_or(AuthError::InvalidAuth)?;
            return self.verify_token(token, now);
        }
        if !self.dev {
            return Err(AuthError::Unauthorized);
        }
        self.dev_identity(fields)
    }

    /// Verifies a token: signature, expiry, and well-formed claims.
    pub fn verify_token(&self, token: &str, now: Millis) -> Result<Identity, AuthError> {
        if !self.has_secret {
            return Err(AuthError::Unauthorized);
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Expiry is checked below against the injected clock, so tests can drive time.
        validation.validate_exp = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| AuthError::Unauthorized)?;
        let claims = data.claims;
        let expires_at = (claims.exp as i64).saturating_mul(1000);
        if expires_at <= now {
            return Err(AuthError::Unauthorized);
        }
        self.limits
            .check_id("sub", &claims.sub)
            .map_err(|_| AuthError::Unauthorized)?;
        if let Some(device) = &claims.device {
            self.limits
                .check_id("device", device)
                .map_err(|_| AuthError::Unauthorized)?;
        }
        if claims.guest && claims.conversation_id.is_none() {
            return Err(AuthError::Unauthorized);
        }
        let name = claims
            .name
            .filter(|n| self.limits.check_name("name", n).is_ok())
            .unwrap_or_else(|| claims.sub.clone());
        Ok(Identity {
            user_id: claims.sub,
            name,
            device_id: claims.device,
            expires_at: Some(expires_at),
            guest_conversation: if claims.guest {
                claims.conversation_id
            } else {
                None
            },
        })
    }

    fn dev_identity(
        &self,
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Identity, AuthError> {
        let user_id = match fields.get("userId") {
            None | Some(serde_json::Value::Null) => return Err(AuthError::Unauthorized),
            Some(serde_json::Value::String(id)) => id.clone(),
            Some(_) => return Err(AuthError::InvalidAuth),
        };
        self.limits
            .check_id("userId", &user_id)
            .map_err(|_| AuthError::InvalidAuth)?;
        let name = match fields.get("name") {
            None | Some(serde_json::Value::Null) => user_id.clone(),
            Some(serde_json::Value::String(name)) => name.clone(),
            Some(_) => return Err(AuthError::InvalidAuth),
        };
        self.limits
            .check_name("name", &name)
            .map_err(|_| AuthError::InvalidAuth)?;
        let device_id = match fields.get("deviceId") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(id)) => {
                self.limits
                    .check_id("deviceId", id)
                    .map_err(|_| AuthError::InvalidAuth)?;
                Some(id.clone())
            }
            Some(_) => return Err(AuthError::InvalidAuth),
        };
        Ok(Identity {
            user_id,
            name,
            device_id,
            expires_at: None,
            guest_conversation: None,
        })
    }

    /// Signs a token, as `switchboard token` and an app backend would.
    pub fn mint(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &self.encoding,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Millis = 1_700_000_000_000;

    fn auth(dev: bool) -> Authenticator {
        Authenticator::new("test-secret", dev, Limits::default())
    }

    fn claims(exp_secs: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            name: Some("Alice".into()),
            exp: exp_secs,
            device: Some("phone".into()),
            guest: false,
            conversation_id: None,
        }
    }

    #[test]
    fn a_valid_token_gives_its_identity() {
        let a = auth(false);
        let token = a.mint(&claims((NOW / 1000) as u64 + 60)).unwrap();
        let id = a.handshake(Some(&json!({ "token": token })), NOW).unwrap();
        assert_eq!(id.user_id, "alice");
        assert_eq!(id.name, "Alice");
        assert_eq!(id.device_id.as_deref(), Some("phone"));
        assert_eq!(id.expires_at, Some(NOW + 60_000));
    }

    #[test]
    fn expired_forged_and_missing_tokens_are_unauthorized() {
        let a = auth(false);
        let expired = a.mint(&claims((NOW / 1000) as u64)).unwrap();
        assert_eq!(
            a.handshake(Some(&json!({ "token": expired })), NOW),
            Err(AuthError::Unauthorized)
        );
        let forged = Authenticator::new("other", false, Limits::default())
            .mint(&claims((NOW / 1000) as u64 + 60))
            .unwrap();
        assert_eq!(
            a.handshake(Some(&json!({ "token": forged })), NOW),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            a.handshake(Some(&json!({ "token": "garbage" })), NOW),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(a.handshake(None, NOW), Err(AuthError::Unauthorized));
        assert_eq!(
            a.handshake(Some(&json!({})), NOW),
            Err(AuthError::Unauthorized)
        );
    }

    #[test]
    fn malformed_auth_objects_are_invalid_auth() {
        let a = auth(true);
        assert_eq!(
            a.handshake(Some(&json!("token")), NOW),
            Err(AuthError::InvalidAuth)
        );
        assert_eq!(
            a.handshake(Some(&json!({ "token": 5 })), NOW),
            Err(AuthError::InvalidAuth)
        );
        assert_eq!(
            a.handshake(Some(&json!({ "userId": 5 })), NOW),
            Err(AuthError::InvalidAuth)
        );
        assert_eq!(
            a.handshake(Some(&json!({ "userId": "u", "name": ["x"] })), NOW),
            Err(AuthError::InvalidAuth)
        );
        assert_eq!(
            a.handshake(Some(&json!({ "userId": "x".repeat(200) })), NOW),
            Err(AuthError::InvalidAuth)
        );
    }

    #[test]
    fn the_dev_handshake_only_works_in_dev_mode() {
        let payload = json!({ "userId": "bob", "name": "Bob", "deviceId": "laptop" });
        assert_eq!(
            auth(false).handshake(Some(&payload), NOW),
            Err(AuthError::Unauthorized)
        );
        let id = auth(true).handshake(Some(&payload), NOW).unwrap();
        assert_eq!(
            (
                id.user_id.as_str(),
                id.name.as_str(),
                id.device_id.as_deref()
            ),
            ("bob", "Bob", Some("laptop"))
        );
        assert_eq!(id.expires_at, None);
    }

    #[test]
    fn guests_need_a_conversation() {
        let a = auth(false);
        let mut c = claims((NOW / 1000) as u64 + 60);
        c.guest = true;
        let token = a.mint(&c).unwrap();
        assert_eq!(a.verify_token(&token, NOW), Err(AuthError::Unauthorized));
        c.conversation_id = Some("conv-1".into());
        let token = a.mint(&c).unwrap();
        assert_eq!(
            a.verify_token(&token, NOW)
                .unwrap()
                .guest_conversation
                .as_deref(),
            Some("conv-1")
        );
    }
}
