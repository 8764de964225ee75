//! Persistent chat (protocol.md §9, seeds 001–003): conversations,
//! messages, reactions, read state, unread counts and typing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ack::Empty;
use crate::wire_enum::wire_enum;

/// One emoji on a message with the users who reacted with it:
/// `{emoji, userIds, count}` (§6 and §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    /// The emoji (at most 32 bytes).
    pub emoji: String,
    /// Who reacted.
    pub user_ids: Vec<String>,
    /// `userIds.len()`.
    pub count: u32,
}

impl Reaction {
    /// A reaction whose `count` matches `user_ids`.
    pub fn new(emoji: impl Into<String>, user_ids: Vec<String>) -> Self {
        let count = u32::try_from(user_ids.len()).unwrap_or(u32::MAX);
        Self {
            emoji: emoji.into(),
            user_ids,
            count,
        }
    }
}

wire_enum! {
    /// The kind of conversation (§9).
    pub enum ConversationType {
        /// Exactly two members; unique per pair.
        Direct = "direct",
        /// Any number of members, with a name.
        Group = "group",
    }
}

/// What a message replies to: `{id, senderName, content}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReply {
    /// The quoted message.
    pub id: String,
    /// Its sender's display name.
    pub sender_name: String,
    /// Its content (possibly shortened by the server).
    pub content: String,
}

/// A conversation message: `{id, conversationId, senderId, senderName,
/// content, createdAt, editedAt?, deleted?, replyTo?, reactions,
/// clientMessageId?}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Server-generated UUID.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// Sender user id.
    pub sender_id: String,
    /// Sender display name.
    pub sender_name: String,
    /// Text (emptied once deleted).
    pub content: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last edit (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// `true` once deleted by its sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    /// The message replied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageReply>,
    /// Reactions, one entry per emoji.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    /// The sender's idempotency key, echoed so clients can dedupe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// A conversation's full state, as returned by `conversation:create`,
/// `conversation:add-members` / `remove-member` and sent in
/// `conversation:updated` (§9).
///
/// protocol.md lists the fields of the list entry only; `createdBy` and
/// `adminIds` are this crate's additions, so clients can tell who may
/// manage a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// Server-generated UUID.
    pub id: String,
    /// Direct or group.
    #[serde(rename = "type")]
    pub conversation_type: ConversationType,
    /// Group name; absent for direct conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Current members.
    pub member_ids: Vec<String>,
    /// The creator.
    pub created_by: String,
    /// Members allowed to manage the group besides the creator.
    #[serde(default)]
    pub admin_ids: Vec<String>,
    /// Creation time (ms).
    pub created_at: i64,
}

/// An entry of `conversation:list`: `{id, type, name, memberIds,
/// lastMessage?, unreadCount, createdAt}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    /// The conversation.
    pub id: String,
    /// Direct or group.
    #[serde(rename = "type")]
    pub conversation_type: ConversationType,
    /// Group name; absent for direct conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Current members.
    pub member_ids: Vec<String>,
    /// The newest message visible to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    /// Messages the user has not read.
    pub unread_count: u64,
    /// Creation time (ms).
    pub created_at: i64,
}

/// C→S `conversation:create {type, memberIds, name?}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationCreate {
    /// Direct or group.
    #[serde(rename = "type")]
    pub conversation_type: ConversationType,
    /// The other members (the creator is added by the server).
    pub member_ids: Vec<String>,
    /// Group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `{conversation}`: the response fields of `conversation:create`,
/// `conversation:add-members` and `conversation:remove-member`, and the
/// S→C `conversation:updated` payload (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPayload {
    /// The conversation.
    pub conversation: Conversation,
}

/// Response fields of `conversation:create` and the member changes (§9).
pub type ConversationResponse = ConversationPayload;
/// S→C `conversation:updated {conversation}` (§9).
pub type ConversationUpdated = ConversationPayload;

/// C→S `conversation:list {}` (§9).
pub type ConversationList = Empty;

/// Response fields of `conversation:list`: `{conversations}` (§9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationListResponse {
    /// The user's conversations.
    pub conversations: Vec<ConversationSummary>,
}

/// `{conversationId}`: `conversation:leave`, `conversation:delete`,
/// `message:read`, `typing:start` and `typing:stop` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRef {
    /// The conversation.
    pub conversation_id: String,
}

/// C→S `conversation:add-members {conversationId, memberIds}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationAddMembers {
    /// The group.
    pub conversation_id: String,
    /// Users to add.
    pub member_ids: Vec<String>,
}

/// C→S `conversation:remove-member {conversationId, userId}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRemoveMember {
    /// The group.
    pub conversation_id: String,
    /// The user to remove.
    pub user_id: String,
}

/// C→S `conversation:leave {conversationId}` → `{success}` (§9).
pub type ConversationLeave = ConversationRef;

/// C→S `conversation:rename {conversationId, name}` → `{success}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRename {
    /// The group.
    pub conversation_id: String,
    /// The new name.
    pub name: String,
}

/// C→S `conversation:delete {conversationId}`: hides it for the sender
/// only (§9).
pub type ConversationDelete = ConversationRef;

/// Response fields of `conversation:delete`: `{deletedAt}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDeleteResponse {
    /// Deletion time (ms); only newer messages stay visible.
    pub deleted_at: i64,
}

/// C→S `message:send {conversationId, content, replyTo?, clientMessageId?}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSend {
    /// The conversation.
    pub conversation_id: String,
    /// Text (at most 8 KB).
    pub content: String,
    /// The id of the message replied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Idempotency key: the same key from the same sender never creates
    /// two messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// C→S `message:edit {conversationId, messageId, content}`, sender only (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageEdit {
    /// The conversation.
    pub conversation_id: String,
    /// The message.
    pub message_id: String,
    /// The new text.
    pub content: String,
}

/// `{conversationId, messageId}`: C→S `message:delete` (sender only) and
/// S→C `message:deleted` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    /// The conversation.
    pub conversation_id: String,
    /// The message.
    pub message_id: String,
}

/// C→S `message:delete {conversationId, messageId}` (§9).
pub type MessageDelete = MessageRef;
/// S→C `message:deleted {conversationId, messageId}` (§9).
pub type MessageDeleted = MessageRef;

/// `{message}`: the response fields of `message:send`, `message:edit` and
/// `message:delete`, and the S→C `message:new` and `message:edited`
/// payloads (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePayload {
    /// The message.
    pub message: Message,
}

/// Response fields of `message:send`, `message:edit`, `message:delete` (§9).
pub type MessageResponse = MessagePayload;
/// S→C `message:new {message}` (§9).
pub type MessageNew = MessagePayload;
/// S→C `message:edited {message}` (§9).
pub type MessageEdited = MessagePayload;

/// C→S `message:history {conversationId, before?, after?, limit?}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageHistory {
    /// The conversation.
    pub conversation_id: String,
    /// Cursor: only messages older than this message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Cursor: only messages newer than this message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size (default 50, max 100; see [`crate::page_limit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Response fields of `message:history`: `{messages, hasMore}`, oldest
/// first (§1, §9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageHistoryResponse {
    /// The page.
    pub messages: Vec<Message>,
    /// Whether more messages exist beyond the page in the requested
    /// direction.
    pub has_more: bool,
}

/// C→S `message:react {conversationId, messageId, emoji}`, toggling the
/// sender's reaction (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReact {
    /// The conversation.
    pub conversation_id: String,
    /// The message.
    pub message_id: String,
    /// The emoji to toggle.
    pub emoji: String,
}

/// Response fields of `message:react`: `{reactions}` (§9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionsResponse {
    /// All of the message's reactions now.
    pub reactions: Vec<Reaction>,
}

/// C→S `message:read {conversationId}` → `{success}` (§9).
pub type MessageRead = ConversationRef;

/// C→S `unread:get {}` (§9).
pub type UnreadGet = Empty;

/// Response fields of `unread:get`: `{counts: {[conversationId]: number}}` (§9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnreadCountsResponse {
    /// Unread count by conversation id.
    pub counts: BTreeMap<String, u64>,
}

/// C→S `typing:start {conversationId}` → `{success}` (§9).
pub type TypingStart = ConversationRef;
/// C→S `typing:stop {conversationId}` → `{success}` (§9).
pub type TypingStop = ConversationRef;

/// S→C `message:reaction-updated {conversationId, messageId, reactions}` (§9).
/// The room counterpart is [`crate::rooms::RoomMessageReactionUpdated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReactionUpdated {
    /// The conversation.
    pub conversation_id: String,
    /// The message.
    pub message_id: String,
    /// All its reactions now.
    pub reactions: Vec<Reaction>,
}

/// S→C `conversation:read {conversationId, userId, readAt}` (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRead {
    /// The conversation.
    pub conversation_id: String,
    /// The reader.
    pub user_id: String,
    /// When (ms).
    pub read_at: i64,
}

/// S→C `unread:updated {conversationId, count}`, to the member's devices
/// on every change (§9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnreadUpdated {
    /// The conversation.
    pub conversation_id: String,
    /// The new unread count.
    pub count: u64,
}

/// S→C `typing {conversationId, userId, isTyping}` (§9). After 10 s
/// without a refresh the server sends `isTyping: false` itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    /// The conversation.
    pub conversation_id: String,
    /// Who is typing.
    pub user_id: String,
    /// Started (`true`) or stopped (`false`).
    pub is_typing: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn sample_message_json() -> Value {
        json!({
            "id": "m2",
            "conversationId": "conv-1",
            "senderId": "u1",
            "senderName": "Ann",
            "content": "see you",
            "createdAt": 1700000000000_i64,
            "editedAt": 1700000001000_i64,
            "replyTo": {"id": "m1", "senderName": "Bob", "content": "bye"},
            "reactions": [{"emoji": "👋", "userIds": ["u2"], "count": 1}],
            "clientMessageId": "local-7"
        })
    }

    #[test]
    fn message_round_trip() {
        let value = sample_message_json();
        let msg: Message = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(msg.reply_to.as_ref().unwrap().id, "m1");
        assert_eq!(msg.deleted, None);
        assert_eq!(serde_json::to_value(&msg).unwrap(), value);

        let new = MessageNew { message: msg };
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            json!({"message": value})
        );
    }

    #[test]
    fn message_send() {
        let req: MessageSend = serde_json::from_value(json!({
            "conversationId": "conv-1", "content": "hi", "clientMessageId": "local-1"
        }))
        .unwrap();
        assert_eq!(req.client_message_id.as_deref(), Some("local-1"));
        assert_eq!(req.reply_to, None);
        assert!(
            serde_json::from_value::<MessageSend>(
                json!({"conversationId": "conv-1", "content": 5})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<MessageSend>(json!({"conversationId": "conv-1"})).is_err()
        );

        let msg: Message = serde_json::from_value(sample_message_json()).unwrap();
        let acked = crate::ack_ok(&MessageResponse { message: msg });
        assert_eq!(acked["success"], json!(true));
        assert_eq!(acked["message"]["clientMessageId"], json!("local-7"));
    }

    #[test]
    fn history() {
        let req: MessageHistory = serde_json::from_value(
            json!({"conversationId": "conv-1", "before": "m9", "limit": 20}),
        )
        .unwrap();
        assert_eq!(req.before.as_deref(), Some("m9"));
        assert_eq!(req.after, None);
        assert_eq!(req.limit, Some(20));
        assert!(
            serde_json::from_value::<MessageHistory>(
                json!({"conversationId": "conv-1", "limit": "all"})
            )
            .is_err()
        );
        assert_eq!(
            crate::ack_ok(&MessageHistoryResponse::default()),
            json!({"success": true, "messages": [], "hasMore": false})
        );
    }

    #[test]
    fn conversations() {
        let create: ConversationCreate = serde_json::from_value(
            json!({"type": "group", "memberIds": ["u2", "u3"], "name": "Team"}),
        )
        .unwrap();
        assert_eq!(create.conversation_type, ConversationType::Group);
        assert!(
            serde_json::from_value::<ConversationCreate>(
                json!({"type": "channel", "memberIds": []})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<ConversationCreate>(
                json!({"type": "direct", "memberIds": "u2"})
            )
            .is_err()
        );

        let conv = Conversation {
            id: "conv-1".into(),
            conversation_type: ConversationType::Direct,
            name: None,
            member_ids: vec!["u1".into(), "u2".into()],
            created_by: "u1".into(),
            admin_ids: vec![],
            created_at: 5,
        };
        assert_eq!(
            crate::ack_ok(&ConversationResponse { conversation: conv }),
            json!({
                "success": true,
                "conversation": {
                    "id": "conv-1", "type": "direct", "memberIds": ["u1", "u2"],
                    "createdBy": "u1", "adminIds": [], "createdAt": 5
                }
            })
        );

        let list = ConversationListResponse {
            conversations: vec![ConversationSummary {
                id: "conv-2".into(),
                conversation_type: ConversationType::Group,
                name: Some("Team".into()),
                member_ids: vec!["u1".into(), "u2".into(), "u3".into()],
                last_message: None,
                unread_count: 3,
                created_at: 6,
            }],
        };
        assert_eq!(
            crate::ack_ok(&list),
            json!({
                "success": true,
                "conversations": [{
                    "id": "conv-2", "type": "group", "name": "Team",
                    "memberIds": ["u1", "u2", "u3"], "unreadCount": 3, "createdAt": 6
                }]
            })
        );

        let rename: ConversationRename =
            serde_json::from_value(json!({"conversationId": "conv-2", "name": "Crew"})).unwrap();
        assert_eq!(rename.name, "Crew");
        let remove: ConversationRemoveMember =
            serde_json::from_value(json!({"conversationId": "conv-2", "userId": "u3"})).unwrap();
        assert_eq!(remove.user_id, "u3");
        let add: ConversationAddMembers =
            serde_json::from_value(json!({"conversationId": "conv-2", "memberIds": ["u4"]}))
                .unwrap();
        assert_eq!(add.member_ids, ["u4"]);
        assert_eq!(
            crate::ack_ok(&ConversationDeleteResponse { deleted_at: 99 }),
            json!({"success": true, "deletedAt": 99})
        );
    }

    #[test]
    fn reactions_and_read_state() {
        let react: MessageReact = serde_json::from_value(
            json!({"conversationId": "conv-1", "messageId": "m1", "emoji": "❤️"}),
        )
        .unwrap();
        assert_eq!(react.message_id, "m1");

        let reaction = Reaction::new("❤️", vec!["u1".into(), "u2".into()]);
        assert_eq!(reaction.count, 2);
        assert_eq!(
            crate::ack_ok(&ReactionsResponse {
                reactions: vec![reaction.clone()]
            }),
            json!({"success": true, "reactions": [{"emoji": "❤️", "userIds": ["u1", "u2"], "count": 2}]})
        );
        let updated = MessageReactionUpdated {
            conversation_id: "conv-1".into(),
            message_id: "m1".into(),
            reactions: vec![reaction],
        };
        assert_eq!(
            serde_json::to_value(&updated).unwrap()["conversationId"],
            json!("conv-1")
        );

        let mut counts = BTreeMap::new();
        counts.insert("conv-1".to_owned(), 4);
        assert_eq!(
            crate::ack_ok(&UnreadCountsResponse { counts }),
            json!({"success": true, "counts": {"conv-1": 4}})
        );
        assert_eq!(
            serde_json::to_value(UnreadUpdated {
                conversation_id: "conv-1".into(),
                count: 0
            })
            .unwrap(),
            json!({"conversationId": "conv-1", "count": 0})
        );
        assert_eq!(
            serde_json::to_value(ConversationRead {
                conversation_id: "conv-1".into(),
                user_id: "u2".into(),
                read_at: 7
            })
            .unwrap(),
            json!({"conversationId": "conv-1", "userId": "u2", "readAt": 7})
        );
    }

    #[test]
    fn typing_and_refs() {
        let start: TypingStart =
            serde_json::from_value(json!({"conversationId": "conv-1"})).unwrap();
        assert_eq!(start.conversation_id, "conv-1");
        assert!(serde_json::from_value::<TypingStop>(json!({"conversationId": null})).is_err());
        assert_eq!(
            serde_json::to_value(Typing {
                conversation_id: "conv-1".into(),
                user_id: "u1".into(),
                is_typing: false
            })
            .unwrap(),
            json!({"conversationId": "conv-1", "userId": "u1", "isTyping": false})
        );
        let deleted: MessageDeleted =
            serde_json::from_value(json!({"conversationId": "conv-1", "messageId": "m1"})).unwrap();
        assert_eq!(deleted.message_id, "m1");
    }
}
