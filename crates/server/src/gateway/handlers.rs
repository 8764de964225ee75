//! The event table: which client event calls which service.

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use switchboard_domain::limits::Limits;
use switchboard_protocol::Empty;
use switchboard_protocol::events;
use switchboard_protocol::presence::{
    FriendsResponse, OnlineUsersResponse, PresenceGet, PresenceGetResponse, SetPresenceStatus,
    SetPresenceStatusResponse,
};
use switchboard_protocol::session::{AuthRefresh, UsersGet, UsersGetResponse};

use super::dispatch::{Ctx, Validate, on};
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::{presence, users};

pub fn install<A: Adapter>(app: &SharedApp, socket: &SocketRef<A>) {
    on(app, socket, events::USERS_GET, users_get);
    on(app, socket, events::AUTH_REFRESH, auth_refresh);
    on(app, socket, events::PRESENCE_STATUS, presence_status);
    on(app, socket, events::PRESENCE_GET, presence_get);
    on(app, socket, events::GET_ONLINE_USERS, get_online_users);
    on(app, socket, events::GET_FRIENDS, get_friends);
    super::chat::install(app, socket);
    super::calls::install(app, socket);
    super::room_events::install(app, socket);
    super::conversation_calls::install(app, socket);
}

impl Validate for SetPresenceStatus {
    fn validate(&self, _: &Limits) -> Result<(), AppError> {
        Ok(())
    }
}

async fn presence_status(
    ctx: Ctx,
    payload: SetPresenceStatus,
) -> AppResult<SetPresenceStatusResponse> {
    let identity = &ctx.session.identity;
    let status =
        presence::set_status(&ctx.app, &identity.user_id, &identity.name, payload.status).await?;
    Ok(SetPresenceStatusResponse { status })
}

impl Validate for PresenceGet {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        Ok(limits.check_id_list("userIds", &self.user_ids)?)
    }
}

async fn presence_get(ctx: Ctx, payload: PresenceGet) -> AppResult<PresenceGetResponse> {
    let presence = presence::get(&ctx.app, ctx.session.user_id(), &payload.user_ids).await?;
    Ok(PresenceGetResponse { presence })
}

impl Validate for Empty {
    fn validate(&self, _: &Limits) -> Result<(), AppError> {
        Ok(())
    }
}

async fn get_online_users(ctx: Ctx, _: Empty) -> AppResult<OnlineUsersResponse> {
    let users = presence::visible_online(&ctx.app, ctx.session.user_id()).await?;
    Ok(OnlineUsersResponse { users })
}

async fn get_friends(ctx: Ctx, _: Empty) -> AppResult<FriendsResponse> {
    let friends = presence::friends_with_status(&ctx.app, ctx.session.user_id()).await?;
    Ok(FriendsResponse { friends })
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
async fn auth_refresh(ctx: Ctx, payload: AuthRefresh) -> AppResult<Empty> {
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
    Ok(Empty {})
}
