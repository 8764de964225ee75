//! Who may call the HTTP API: the admin key for `/api/*`, `/stats` and `/online-users`
//! (open in dev mode), and a user's own token for `/api/me/*`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::app::SharedApp;
use crate::error::AppError;

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Compares without an early exit, so response timing does not reveal the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Proof that the caller may use the admin API.
pub struct Admin;

impl FromRequestParts<SharedApp> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &SharedApp,
    ) -> Result<Self, Self::Rejection> {
        if app.settings.server.dev {
            return Ok(Admin);
        }
        let key = app.settings.auth.admin_key.expose();
        match bearer(parts) {
            Some(given)
                if !key.is_empty() && constant_time_eq(given.as_bytes(), key.as_bytes()) =>
            {
                Ok(Admin)
            }
            _ => Err(AppError::unauthorized("admin key required")),
        }
    }
}

/// The user a `/api/me/*` request acts for, from their own token.
pub struct Me {
    pub user_id: String,
}

impl FromRequestParts<SharedApp> for Me {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &SharedApp,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| AppError::unauthorized("bearer token required"))?;
        let identity = app
            .auth
            .verify_token(token, app.now())
            .map_err(|_| AppError::unauthorized("invalid or expired token"))?;
        Ok(Me {
            user_id: identity.user_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
