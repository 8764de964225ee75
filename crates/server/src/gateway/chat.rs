//! The chat events of protocol §9: parse, validate against the limits, call a service.
//!
//! Guests (seed 004's anonymous call participants) may only take part in calls, so every
//! chat event refuses them with `FORBIDDEN`.

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use switchboard_domain::DomainError;
use switchboard_domain::limits::Limits;
use switchboard_protocol::Empty;
use switchboard_protocol::chat::{
    ConversationAddMembers, ConversationCreate, ConversationDeleteResponse,
    ConversationListResponse, ConversationPayload, ConversationRef, ConversationRemoveMember,
    ConversationRename, ConversationType, MessageEdit, MessageHistory, MessageHistoryResponse,
    MessagePayload, MessageReact, MessageRef, MessageSend, ReactionsResponse, UnreadCountsResponse,
};
use switchboard_protocol::events;

use super::dispatch::{Ctx, Validate, on};
use crate::app::{App, SharedApp};
use crate::error::{AppError, AppResult};
use crate::outbox::rooms;
use crate::services::messages::{self, SendRequest};
use crate::services::{conversations, typing};

pub fn install<A: Adapter>(app: &SharedApp, socket: &SocketRef<A>) {
    on(
        app,
        socket,
        events::CONVERSATION_CREATE,
        conversation_create,
    );
    on(app, socket, events::CONVERSATION_LIST, conversation_list);
    on(
        app,
        socket,
        events::CONVERSATION_ADD_MEMBERS,
        conversation_add_members,
    );
    on(
        app,
        socket,
        events::CONVERSATION_REMOVE_MEMBER,
        conversation_remove_member,
    );
    on(app, socket, events::CONVERSATION_LEAVE, conversation_leave);
    on(
        app,
        socket,
        events::CONVERSATION_RENAME,
        conversation_rename,
    );
    on(
        app,
        socket,
        events::CONVERSATION_DELETE,
        conversation_delete,
    );
    on(app, socket, events::MESSAGE_SEND, message_send);
    on(app, socket, events::MESSAGE_EDIT, message_edit);
    on(app, socket, events::MESSAGE_DELETE, message_delete);
    on(app, socket, events::MESSAGE_HISTORY, message_history);
    on(app, socket, events::MESSAGE_REACT, message_react);
    on(app, socket, events::MESSAGE_READ, message_read);
    on(app, socket, events::UNREAD_GET, unread_get);
    on(app, socket, events::TYPING_START, typing_start);
    on(app, socket, events::TYPING_STOP, typing_stop);
}

/// Joins a connecting socket to the room of every conversation its user is a member of
/// (hidden ones included, so a new message brings them back). Called by the handshake
/// middleware, before the client sees `connect`, so no `message:new` sent after the
/// client's `connect` can miss it. A database failure is logged and the socket connects
/// anyway (presence and calls still work); it then only gets chat events of conversations
/// it joins later.
pub async fn join_conversations<A: Adapter>(app: &App, socket: &SocketRef<A>, user_id: &str) {
    match conversations::ids_for_user(app, user_id).await {
        Ok(ids) => {
            if !ids.is_empty() {
                socket.join(
                    ids.iter()
                        .map(|id| rooms::conversation(id))
                        .collect::<Vec<_>>(),
                );
            }
        }
        Err(error) => {
            tracing::warn!(%user_id, %error, "could not join the user's conversation rooms")
        }
    }
}

/// The authenticated chat user; guests are refused.
fn chat_user(ctx: &Ctx) -> AppResult<&str> {
    if ctx.session.identity.guest_conversation.is_some() {
        return Err(DomainError::Forbidden("guests may only take part in calls".into()).into());
    }
    Ok(ctx.session.user_id())
}

fn check_name(limits: &Limits, name: &str) -> Result<(), AppError> {
    Ok(limits.check_name("name", name)?)
}

// --- Conversations ---------------------------------------------------------------------

impl Validate for ConversationCreate {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id_list("memberIds", &self.member_ids)?;
        if let Some(name) = &self.name {
            check_name(limits, name)?;
        }
        if self.conversation_type == ConversationType::Direct && self.name.is_some() {
            return Err(AppError::invalid("a direct conversation has no name"));
        }
        Ok(())
    }
}

async fn conversation_create(ctx: Ctx, p: ConversationCreate) -> AppResult<ConversationPayload> {
    let user = chat_user(&ctx)?;
    let conversation = conversations::create(
        &ctx.app,
        user,
        p.conversation_type,
        &p.member_ids,
        p.name.as_deref().map(str::trim),
    )
    .await?;
    Ok(ConversationPayload { conversation })
}

async fn conversation_list(ctx: Ctx, _: Empty) -> AppResult<ConversationListResponse> {
    let user = chat_user(&ctx)?;
    let conversations = conversations::list(&ctx.app, user).await?;
    Ok(ConversationListResponse { conversations })
}

impl Validate for ConversationRef {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        Ok(limits.check_id("conversationId", &self.conversation_id)?)
    }
}

impl Validate for ConversationAddMembers {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        if self.member_ids.is_empty() {
            return Err(AppError::invalid("memberIds must not be empty"));
        }
        Ok(limits.check_id_list("memberIds", &self.member_ids)?)
    }
}

async fn conversation_add_members(
    ctx: Ctx,
    p: ConversationAddMembers,
) -> AppResult<ConversationPayload> {
    let user = chat_user(&ctx)?;
    let conversation =
        conversations::add_members(&ctx.app, user, &p.conversation_id, &p.member_ids).await?;
    Ok(ConversationPayload { conversation })
}

impl Validate for ConversationRemoveMember {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        Ok(limits.check_id("userId", &self.user_id)?)
    }
}

async fn conversation_remove_member(
    ctx: Ctx,
    p: ConversationRemoveMember,
) -> AppResult<ConversationPayload> {
    let user = chat_user(&ctx)?;
    let conversation =
        conversations::remove_member(&ctx.app, user, &p.conversation_id, &p.user_id).await?;
    Ok(ConversationPayload { conversation })
}

async fn conversation_leave(ctx: Ctx, p: ConversationRef) -> AppResult<Empty> {
    let user = chat_user(&ctx)?;
    conversations::leave(&ctx.app, user, &p.conversation_id).await?;
    Ok(Empty {})
}

impl Validate for ConversationRename {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        check_name(limits, &self.name)
    }
}

async fn conversation_rename(ctx: Ctx, p: ConversationRename) -> AppResult<Empty> {
    let user = chat_user(&ctx)?;
    conversations::rename(&ctx.app, user, &p.conversation_id, &p.name).await?;
    Ok(Empty {})
}

async fn conversation_delete(
    ctx: Ctx,
    p: ConversationRef,
) -> AppResult<ConversationDeleteResponse> {
    let user = chat_user(&ctx)?;
    let deleted_at = conversations::delete(&ctx.app, user, &p.conversation_id).await?;
    Ok(ConversationDeleteResponse { deleted_at })
}

// --- Messages --------------------------------------------------------------------------

impl Validate for MessageSend {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        switchboard_domain::chat::check_content(limits, &self.content)?;
        if let Some(reply_to) = &self.reply_to {
            limits.check_id("replyTo", reply_to)?;
        }
        if let Some(client_id) = &self.client_message_id {
            limits.check_id("clientMessageId", client_id)?;
        }
        Ok(())
    }
}

async fn message_send(ctx: Ctx, p: MessageSend) -> AppResult<MessagePayload> {
    let user = chat_user(&ctx)?;
    let message = messages::send(
        &ctx.app,
        SendRequest {
            sender_id: user,
            sender_name: &ctx.session.identity.name,
            conversation_id: &p.conversation_id,
            content: &p.content,
            reply_to: p.reply_to.as_deref(),
            client_message_id: p.client_message_id.as_deref(),
        },
    )
    .await?;
    Ok(MessagePayload { message })
}

impl Validate for MessageEdit {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        limits.check_id("messageId", &self.message_id)?;
        Ok(switchboard_domain::chat::check_content(
            limits,
            &self.content,
        )?)
    }
}

async fn message_edit(ctx: Ctx, p: MessageEdit) -> AppResult<MessagePayload> {
    let user = chat_user(&ctx)?;
    let message = messages::edit(
        &ctx.app,
        user,
        &p.conversation_id,
        &p.message_id,
        &p.content,
    )
    .await?;
    Ok(MessagePayload { message })
}

impl Validate for MessageRef {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        Ok(limits.check_id("messageId", &self.message_id)?)
    }
}

async fn message_delete(ctx: Ctx, p: MessageRef) -> AppResult<MessagePayload> {
    let user = chat_user(&ctx)?;
    let message = messages::delete(&ctx.app, user, &p.conversation_id, &p.message_id).await?;
    Ok(MessagePayload { message })
}

impl Validate for MessageHistory {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        if let Some(before) = &self.before {
            limits.check_id("before", before)?;
        }
        if let Some(after) = &self.after {
            limits.check_id("after", after)?;
        }
        Ok(())
    }
}

async fn message_history(ctx: Ctx, p: MessageHistory) -> AppResult<MessageHistoryResponse> {
    let user = chat_user(&ctx)?;
    let (messages, has_more) = messages::history(
        &ctx.app,
        user,
        &p.conversation_id,
        p.before.as_deref(),
        p.after.as_deref(),
        p.limit,
    )
    .await?;
    Ok(MessageHistoryResponse { messages, has_more })
}

impl Validate for MessageReact {
    fn validate(&self, limits: &Limits) -> Result<(), AppError> {
        limits.check_id("conversationId", &self.conversation_id)?;
        limits.check_id("messageId", &self.message_id)?;
        Ok(switchboard_domain::chat::check_emoji(limits, &self.emoji)?)
    }
}

async fn message_react(ctx: Ctx, p: MessageReact) -> AppResult<ReactionsResponse> {
    let user = chat_user(&ctx)?;
    let reactions =
        messages::react(&ctx.app, user, &p.conversation_id, &p.message_id, &p.emoji).await?;
    Ok(ReactionsResponse { reactions })
}

async fn message_read(ctx: Ctx, p: ConversationRef) -> AppResult<Empty> {
    let user = chat_user(&ctx)?;
    messages::mark_read(&ctx.app, user, &p.conversation_id).await?;
    Ok(Empty {})
}

async fn unread_get(ctx: Ctx, _: Empty) -> AppResult<UnreadCountsResponse> {
    let user = chat_user(&ctx)?;
    let counts = messages::unread_counts(&ctx.app, user).await?;
    Ok(UnreadCountsResponse { counts })
}

// --- Typing ----------------------------------------------------------------------------

async fn typing_start(ctx: Ctx, p: ConversationRef) -> AppResult<Empty> {
    let user = chat_user(&ctx)?;
    typing::start(&ctx.app, user, &p.conversation_id).await?;
    Ok(Empty {})
}

async fn typing_stop(ctx: Ctx, p: ConversationRef) -> AppResult<Empty> {
    let user = chat_user(&ctx)?;
    typing::stop(&ctx.app, user, &p.conversation_id).await?;
    Ok(Empty {})
}
