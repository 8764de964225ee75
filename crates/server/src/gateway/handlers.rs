//! The event table: which client event calls which service.

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use switchboard_domain::limits::Limits;
use switchboard_protocol::events;
use switchboard_protocol::session::{AuthRefresh, UsersGet, UsersGetResponse};

use super::dispatch::{Ctx, Validate, on};
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::users;

pub fn install<A: Adapter>(app: &SharedApp, socket: &SocketRef<A>) {
    on(app, socket, events::USERS_GET, users_get);
    on(app, socket, events::AUTH_REFRESH, auth_refresh);
}

impl Validate for UsersGet {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        Ok(limits.check_id_list("userIds", &self.user_ids)?)
    }
}

async fn users_get(ctx: Ctx, payload: UsersGet) -> AppResult<UsersGetResponse> {
    let users = users::get_many(&ctx.app, &payload.user_ids).await?;
    Ok(UsersGetResponse { users })
}

impl Validate for AuthRefresh {
    fn validate(&self, _: &Limits) -> Result<(), AppError> {
        if self.token.is_empty() || self.token.len() > 8 * 1024 {
            return Err(AppError::invalid(
                "token must be a non-empty string of at most 8 KB",
            ));
        }
        Ok(())
    }
}

/// Protocol §2: a fresh token for the same user (and device, if it names one) extends the
/// connection past the old token's expiry.
async fn auth_refresh(ctx: Ctx, payload: AuthRefresh) -> AppResult<switchboard_protocol::Empty> {
    let identity = ctx
        .app
        .auth
        .verify_token(&payload.token, ctx.app.now())
        .map_err(|_| AppError::unauthorized("invalid or expired token"))?;
    if identity.user_id != ctx.session.identity.user_id {
        return Err(AppError::unauthorized("the token is for another user"));
    }
    if identity
        .device_id
        .as_ref()
        .is_some_and(|d| *d != ctx.session.device_id)
    {
        return Err(AppError::unauthorized("the token is for another device"));
    }
    if let Some(expires_at) = identity.expires_at {
        ctx.session.refresh(expires_at);
    }
    Ok(switchboard_protocol::Empty {})
}
