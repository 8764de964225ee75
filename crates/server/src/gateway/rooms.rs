//! The room events of protocol §6: parse, validate against the limits, call
//! `services::rooms`.
//!
//! Guests (seed 004's anonymous participants) may only take part in the calls of their
//! conversation, so every room event refuses them with `FORBIDDEN`.

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use switchboard_domain::DomainError;
use switchboard_domain::limits::Limits;
use switchboard_protocol::rooms::{
    ChatMessageResponse, CreateRoom, MediaStateChanged, ReactToMessage, RoomRef, RoomResponse,
    RoomType, RoomsResponse, SendMessage,
};
use switchboard_protocol::{Empty, StatusMessage, events};

use super::dispatch::{Ctx, Validate, on};
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::rooms::{self, Entry, Party};

pub fn install<A: Adapter>(app: &SharedApp, socket: &SocketRef<A>) {
    on(app, socket, events::CREATE_ROOM, create_room);
    on(app, socket, events::JOIN_ROOM, join_room);
    on(app, socket, events::LEAVE_ROOM, leave_room);
    on(app, socket, events::ACCEPT_CALL, accept_call);
    on(app, socket, events::REJECT_CALL, reject_call);
    on(app, socket, events::END_CALL, end_call);
    on(app, socket, events::GET_ROOMS, get_rooms);
    on(app, socket, events::SEND_MESSAGE, send_message);
    on(app, socket, events::REACT_TO_MESSAGE, react_to_message);
    on(
        app,
        socket,
        events::MEDIA_STATE_CHANGED,
        media_state_changed,
    );
}

/// The acting user and socket; guests are refused.
fn party(ctx: &Ctx) -> AppResult<Party> {
    if ctx.session.identity.guest_conversation.is_some() {
        return Err(DomainError::Forbidden("guests may only take part in calls".into()).into());
    }
    Ok(Party {
        user_id: ctx.session.identity.user_id.clone(),
        name: ctx.session.identity.name.clone(),
        socket_id: ctx.session.socket_id.clone(),
        device_id: ctx.session.device_id.clone(),
    })
}

impl Validate for CreateRoom {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        if let Some(name) = &self.room_name {
            limits.check_name("roomName", name)?;
        }
        if let Some(target) = &self.target_user_id {
            limits.check_id("targetUserId", target)?;
        }
        if let Some(invited) = &self.invited_user_ids {
            limits.check_id_list("invitedUserIds", invited)?;
            if invited.len() >= limits.room_participants {
                return Err(AppError::invalid(format!(
                    "invitedUserIds has more than {} entries",
                    limits.room_participants - 1
                )));
            }
        }
        match self.room_type {
            RoomType::Direct if self.target_user_id.is_none() => {
                Err(AppError::invalid("a direct room needs targetUserId"))
            }
            RoomType::Group if self.target_user_id.is_some() => Err(AppError::invalid(
                "targetUserId is for direct rooms; use invitedUserIds",
            )),
            _ => Ok(()),
        }
    }
}

async fn create_room(ctx: Ctx, p: CreateRoom) -> AppResult<RoomResponse> {
    let host = party(&ctx)?;
    let room = rooms::create(&ctx.app, &host, p).await?;
    Ok(RoomResponse { room })
}

impl Validate for RoomRef {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        Ok(limits.check_id("roomId", &self.room_id)?)
    }
}

async fn join_room(ctx: Ctx, p: RoomRef) -> AppResult<RoomResponse> {
    let who = party(&ctx)?;
    let room = rooms::enter(&ctx.app, &who, &p.room_id, Entry::Join).await?;
    Ok(RoomResponse { room })
}

async fn accept_call(ctx: Ctx, p: RoomRef) -> AppResult<RoomResponse> {
    let who = party(&ctx)?;
    let room = rooms::enter(&ctx.app, &who, &p.room_id, Entry::Accept).await?;
    Ok(RoomResponse { room })
}

async fn leave_room(ctx: Ctx, p: RoomRef) -> AppResult<StatusMessage> {
    let who = party(&ctx)?;
    rooms::leave(&ctx.app, &who.user_id, &p.room_id).await?;
    Ok(StatusMessage::new("left the room"))
}

async fn reject_call(ctx: Ctx, p: RoomRef) -> AppResult<StatusMessage> {
    let who = party(&ctx)?;
    rooms::reject(&ctx.app, &who.user_id, &who.name, &p.room_id).await?;
    Ok(StatusMessage::new("invitation declined"))
}

async fn end_call(ctx: Ctx, p: RoomRef) -> AppResult<StatusMessage> {
    let who = party(&ctx)?;
    rooms::end(&ctx.app, &who.user_id, &p.room_id).await?;
    Ok(StatusMessage::new("the room has ended"))
}

async fn get_rooms(ctx: Ctx, _: Empty) -> AppResult<RoomsResponse> {
    let who = party(&ctx)?;
    let rooms = rooms::list_for(&ctx.app, &who.user_id).await?;
    Ok(RoomsResponse { rooms })
}

impl Validate for SendMessage {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("roomId", &self.room_id)?;
        if let Some(reply_to) = &self.reply_to {
            limits.check_id("replyTo", reply_to)?;
        }
        if self.content.trim().is_empty() {
            return Err(AppError::invalid("content must not be empty"));
        }
        if self.content.len() > limits.message_bytes {
            return Err(DomainError::TooLarge(format!(
                "content is larger than {} bytes",
                limits.message_bytes
            ))
            .into());
        }
        Ok(())
    }
}

async fn send_message(ctx: Ctx, p: SendMessage) -> AppResult<ChatMessageResponse> {
    let who = party(&ctx)?;
    let message = rooms::send_message(
        &ctx.app,
        &who,
        &p.room_id,
        &p.content,
        p.reply_to.as_deref(),
    )
    .await?;
    Ok(ChatMessageResponse { message })
}

impl Validate for ReactToMessage {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("roomId", &self.room_id)?;
        limits.check_id("messageId", &self.message_id)?;
        if self.emoji.trim().is_empty() || self.emoji.len() > limits.emoji_bytes {
            return Err(AppError::invalid(format!(
                "emoji must be non-empty and at most {} bytes",
                limits.emoji_bytes
            )));
        }
        Ok(())
    }
}

async fn react_to_message(ctx: Ctx, p: ReactToMessage) -> AppResult<ChatMessageResponse> {
    let who = party(&ctx)?;
    let message = rooms::react(&ctx.app, &who.user_id, &p.room_id, &p.message_id, &p.emoji).await?;
    Ok(ChatMessageResponse { message })
}

impl Validate for MediaStateChanged {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        Ok(limits.check_id("roomId", &self.room_id)?)
    }
}

async fn media_state_changed(ctx: Ctx, p: MediaStateChanged) -> AppResult<Empty> {
    let who = party(&ctx)?;
    rooms::media_state(
        &ctx.app,
        &who.user_id,
        &p.room_id,
        p.is_muted,
        p.is_video_enabled,
    )
    .await?;
    crate::services::media::follow_media_state(
        &ctx.app,
        &who.user_id,
        &p.room_id,
        p.is_muted,
        p.is_video_enabled,
    )
    .await;
    Ok(Empty {})
}
