//! Conversations (protocol §9): creation (a direct pair is unique), the user's list, member
//! changes, rename, and per-user deletion.
//!
//! The database holds conversations and members; the store caches each conversation's facts
//! ([`ConversationMeta`]) under `keys::conversation` for `timers.conversation_cache_ttl_secs`,
//! and every change invalidates that entry. Members' sockets are in the Socket.IO room
//! `conv:{id}` (joined on connect, and through the outbox when added), which is where
//! messages and typing go; membership changes go to each member's user room, so removed
//! members hear about their removal too.

use std::time::Duration;

use switchboard_db::{ConversationKind, MemberRole};
use switchboard_domain::chat::{self, ConversationMeta, ConversationType, MemberMeta};
use switchboard_domain::{DomainError, Millis};
use switchboard_protocol::chat::{
    Conversation, ConversationPayload, ConversationSummary, UnreadUpdated,
};
use switchboard_protocol::events;
use switchboard_store::keys;

use crate::app::App;
use crate::error::{AppError, AppResult};
use crate::outbox::rooms;
use crate::services::messages;

fn cache_ttl(app: &App) -> Duration {
    Duration::from_secs(app.settings.timers.conversation_cache_ttl_secs.max(1))
}

/// The rule-facing facts of a stored conversation.
pub fn meta_from_db(c: &switchboard_db::Conversation) -> ConversationMeta {
    ConversationMeta {
        id: c.id.clone(),
        kind: match c.kind {
            ConversationKind::Direct => ConversationType::Direct,
            ConversationKind::Group => ConversationType::Group,
        },
        name: c.name.clone(),
        created_by: c.created_by.clone(),
        created_at: c.created_at,
        members: c
            .members
            .iter()
            .map(|m| MemberMeta {
                user_id: m.user_id.clone(),
                admin: m.role == MemberRole::Admin,
                joined_at: m.joined_at,
                deleted_at: m.deleted_at,
            })
            .collect(),
    }
}

/// The wire form.
pub fn to_wire(meta: &ConversationMeta) -> Conversation {
    Conversation {
        id: meta.id.clone(),
        conversation_type: meta.kind,
        name: meta.name.clone(),
        member_ids: meta.member_ids(),
        created_by: meta.created_by.clone(),
        admin_ids: meta.admin_ids(),
        created_at: meta.created_at,
    }
}

/// A conversation's facts, from the cache when it has them. `NOT_FOUND` if it does not
/// exist.
pub async fn meta(app: &App, conversation_id: &str) -> AppResult<ConversationMeta> {
    let key = keys::conversation(conversation_id);
    if let Some(cached) = app.store.cache_get(&key).await? {
        match serde_json::from_str::<ConversationMeta>(&cached) {
            Ok(meta) => return Ok(meta),
            Err(error) => tracing::warn!(%key, %error, "unreadable cached conversation; reloading"),
        }
    }
    let Some(conversation) = app.db.get_conversation(conversation_id).await? else {
        return Err(AppError::not_found("conversation not found"));
    };
    let meta = meta_from_db(&conversation);
    cache(app, &meta).await;
    Ok(meta)
}

async fn cache(app: &App, meta: &ConversationMeta) {
    let key = keys::conversation(&meta.id);
    match serde_json::to_string(meta) {
        Ok(json) => {
            if let Err(error) = app.store.cache_set(&key, &json, cache_ttl(app)).await {
                tracing::debug!(%key, %error, "could not cache a conversation");
            }
        }
        Err(error) => tracing::warn!(%key, %error, "could not encode a conversation"),
    }
}

/// Drops the cached facts after a change. A failure is returned: serving stale membership
/// would let removed members keep reading.
pub async fn invalidate(app: &App, conversation_id: &str) -> AppResult<()> {
    app.store
        .cache_invalidate(&[keys::conversation(conversation_id)])
        .await?;
    Ok(())
}

/// Reloads from the database and refreshes the cache (after a change).
async fn reload(app: &App, conversation_id: &str) -> AppResult<ConversationMeta> {
    invalidate(app, conversation_id).await?;
    meta(app, conversation_id).await
}

/// The conversation, if `user_id` is a member (`FORBIDDEN` otherwise).
pub async fn member_of(
    app: &App,
    conversation_id: &str,
    user_id: &str,
) -> AppResult<ConversationMeta> {
    let meta = meta(app, conversation_id).await?;
    chat::require_member(&meta, user_id)?;
    Ok(meta)
}

/// Tells every listed user (their devices) the conversation's new state.
async fn announce(app: &App, meta: &ConversationMeta, extra: &[String]) {
    let mut targets: Vec<String> = meta
        .members
        .iter()
        .map(|m| rooms::user(&m.user_id))
        .collect();
    targets.extend(extra.iter().map(|u| rooms::user(u)));
    let payload = ConversationPayload {
        conversation: to_wire(meta),
    };
    match serde_json::to_value(&payload) {
        Ok(data) => {
            app.outbox
                .emit_to(targets, events::CONVERSATION_UPDATED, data)
                .await
        }
        Err(error) => tracing::warn!(%error, "could not encode conversation:updated"),
    }
}

async fn join_room(app: &App, user_ids: &[String], conversation_id: &str) {
    for user_id in user_ids {
        app.outbox
            .join(rooms::user(user_id), rooms::conversation(conversation_id))
            .await;
    }
}

/// `conversation:create`: a direct conversation is unique per pair (creating it again, in
/// either order or concurrently, returns the same one); a group gets a fresh id.
pub async fn create(
    app: &App,
    creator: &str,
    kind: ConversationType,
    member_ids: &[String],
    name: Option<&str>,
) -> AppResult<Conversation> {
    let members = chat::plan_create(creator, kind, member_ids, &app.settings.limits)?;
    let now = app.now();
    let meta = match kind {
        ConversationType::Direct => {
            let (conversation, _created) = app
                .db
                .create_direct_conversation(creator, &members[1], now)
                .await?;
            // Creating again may have put back a member who had left.
            invalidate(app, &conversation.id).await?;
            meta_from_db(&conversation)
        }
        ConversationType::Group => {
            let conversation = app
                .db
                .create_group_conversation(creator, name, &members[1..], now)
                .await?;
            meta_from_db(&conversation)
        }
    };
    cache(app, &meta).await;
    join_room(app, &meta.member_ids(), &meta.id).await;
    announce(app, &meta, &[]).await;
    Ok(to_wire(&meta))
}

/// `conversation:list`: the user's conversations, most recent activity first, without the
/// ones they deleted unless a newer message came since. `unreadCount` is the same counter
/// `unread:get` reads.
pub async fn list(app: &App, user_id: &str) -> AppResult<Vec<ConversationSummary>> {
    let items = app.db.list_conversations_for_user(user_id).await?;
    let counts = messages::unread_counts(app, user_id).await?;
    Ok(items
        .into_iter()
        .map(|item| {
            let c = &item.conversation;
            let deleted_at = c.member(user_id).and_then(|m| m.deleted_at);
            let last_message = item
                .last_message
                .filter(|m| chat::visible(deleted_at, m.created_at))
                .map(messages::to_wire);
            ConversationSummary {
                unread_count: counts.get(&c.id).copied().unwrap_or(0),
                id: c.id.clone(),
                conversation_type: match c.kind {
                    ConversationKind::Direct => ConversationType::Direct,
                    ConversationKind::Group => ConversationType::Group,
                },
                name: c.name.clone(),
                member_ids: c.member_ids(),
                last_message,
                created_at: c.created_at,
            }
        })
        .collect())
}

/// `conversation:add-members` (groups; creator or admins).
pub async fn add_members(
    app: &App,
    actor: &str,
    conversation_id: &str,
    member_ids: &[String],
) -> AppResult<Conversation> {
    let before = meta(app, conversation_id).await?;
    let new = chat::plan_add_members(&before, actor, member_ids, &app.settings.limits)?;
    if new.is_empty() {
        return Ok(to_wire(&before));
    }
    app.db.add_members(conversation_id, &new, app.now()).await?;
    let after = reload(app, conversation_id).await?;
    join_room(app, &new, conversation_id).await;
    announce(app, &after, &[]).await;
    Ok(to_wire(&after))
}

/// `conversation:remove-member` (groups; creator or admins).
pub async fn remove_member(
    app: &App,
    actor: &str,
    conversation_id: &str,
    target: &str,
) -> AppResult<Conversation> {
    let before = meta(app, conversation_id).await?;
    chat::check_remove_member(&before, actor, target)?;
    let after = drop_member(app, conversation_id, target).await?;
    Ok(to_wire(&after))
}

/// `conversation:leave`: any member, of any kind of conversation. Creating a direct
/// conversation again puts the leaver back.
pub async fn leave(app: &App, user_id: &str, conversation_id: &str) -> AppResult<()> {
    member_of(app, conversation_id, user_id).await?;
    drop_member(app, conversation_id, user_id).await?;
    Ok(())
}

async fn drop_member(
    app: &App,
    conversation_id: &str,
    user_id: &str,
) -> AppResult<ConversationMeta> {
    match app
        .db
        .remove_member(conversation_id, user_id, app.now())
        .await
    {
        Ok(()) => {}
        Err(switchboard_db::DbError::NotFound) => {
            return Err(AppError::not_found(
                "that user is not a member of this conversation",
            ));
        }
        Err(error) => return Err(error.into()),
    }
    let after = reload(app, conversation_id).await?;
    app.outbox
        .leave(rooms::user(user_id), rooms::conversation(conversation_id))
        .await;
    messages::clear_unread(app, user_id, conversation_id).await;
    announce(app, &after, &[user_id.to_string()]).await;
    Ok(after)
}

/// `conversation:rename` (groups; creator or admins).
pub async fn rename(app: &App, actor: &str, conversation_id: &str, name: &str) -> AppResult<()> {
    let before = meta(app, conversation_id).await?;
    chat::require_manager(&before, actor)?;
    app.db
        .rename_conversation(conversation_id, Some(name.trim()), app.now())
        .await?;
    let after = reload(app, conversation_id).await?;
    announce(app, &after, &[]).await;
    Ok(())
}

/// `conversation:delete`: hides the conversation for this user only. They see only newer
/// messages from now on, and a newer message brings it back to their list. Their unread
/// count for it is cleared (nothing older is visible any more). Their sockets stay in the
/// room, so the next message still reaches them.
pub async fn delete(app: &App, user_id: &str, conversation_id: &str) -> AppResult<Millis> {
    member_of(app, conversation_id, user_id).await?;
    let deleted_at = match app
        .db
        .hide_conversation(conversation_id, user_id, app.now())
        .await
    {
        Ok(at) => at,
        Err(switchboard_db::DbError::NotFound) => {
            return Err(
                DomainError::Forbidden("you are not a member of this conversation".into()).into(),
            );
        }
        Err(error) => return Err(error.into()),
    };
    invalidate(app, conversation_id).await?;
    messages::clear_unread(app, user_id, conversation_id).await;
    let data = serde_json::to_value(UnreadUpdated {
        conversation_id: conversation_id.to_string(),
        count: 0,
    })
    .unwrap_or_default();
    app.outbox
        .emit(rooms::user(user_id), events::UNREAD_UPDATED, data)
        .await;
    Ok(deleted_at)
}

/// Every conversation the user is a member of (hidden ones included: a new message must
/// still reach them), for joining the rooms on connect.
pub async fn ids_for_user(app: &App, user_id: &str) -> AppResult<Vec<String>> {
    Ok(app.db.unread_counts(user_id).await?.into_keys().collect())
}
