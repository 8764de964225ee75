//! The plain values the repository methods take and return.
//!
//! Enumerations are stored as lowercase TEXT (their `as_str`), which is also their serde
//! form, so a row serialises the way the protocol spells it.

use serde::Serialize;
use switchboard_domain::Millis;

use crate::error::DbError;

/// An enum stored as TEXT.
pub(crate) trait DbEnum: Sized + Copy {
    const NAME: &'static str;
    fn parse(s: &str) -> Option<Self>;
}

/// Parses a stored enum value; an unknown one means the data is not what this build wrote.
pub(crate) fn decode_enum<T: DbEnum>(s: &str) -> Result<T, DbError> {
    T::parse(s).ok_or_else(|| DbError::Corrupt(format!("unknown {} {s:?}", T::NAME)))
}

macro_rules! db_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The stored (and wire) spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl DbEnum for $name {
            const NAME: &'static str = stringify!($name);
            fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::str::FromStr for $name {
            type Err = DbError;
            fn from_str(s: &str) -> Result<Self, DbError> {
                <Self as DbEnum>::parse(s)
                    .ok_or_else(|| DbError::Other(format!("unknown {} {s:?}", stringify!($name))))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

db_enum!(
    /// `direct` (exactly two members, unique per pair) or `group`.
    ConversationKind { Direct => "direct", Group => "group" }
);
db_enum!(
    /// A member's role in a conversation. A group's creator is its first admin.
    MemberRole { Member => "member", Admin => "admin" }
);
db_enum!(
    /// Which feature a call belongs to: a §5 direct call, a §6 room, or a §7 conversation call.
    CallKind { Direct => "direct", Room => "room", Conversation => "conversation" }
);
db_enum!(
    /// What the call carries.
    MediaType { Audio => "audio", Video => "video" }
);
db_enum!(
    /// Peer-to-peer or through the SFU.
    CallMode { P2p => "p2p", Sfu => "sfu" }
);
db_enum!(
    /// Seed 004's status: `initiated → ringing → active → ended`.
    CallStatus { Initiated => "initiated", Ringing => "ringing", Active => "active", Ended => "ended" }
);
db_enum!(
    /// How an ended call went (protocol §12).
    CallOutcome {
        Completed => "completed",
        Missed => "missed",
        Rejected => "rejected",
        Cancelled => "cancelled",
        Failed => "failed",
    }
);
db_enum!(
    /// Seed 004's participant role.
    ParticipantRole { Initiator => "initiator", Participant => "participant" }
);
db_enum!(
    /// Push priority: `high` wakes a sleeping device (incoming calls).
    NotificationPriority { Normal => "normal", High => "high" }
);

/// An entry in the users directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRow {
    pub id: String,
    pub name: String,
}

/// A conversation with its current members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: String,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Ordered by join time, then user id.
    pub members: Vec<Member>,
}

impl Conversation {
    /// The member ids, in member order.
    pub fn member_ids(&self) -> Vec<String> {
        self.members.iter().map(|m| m.user_id.clone()).collect()
    }

    /// The membership of `user_id`, if any.
    pub fn member(&self, user_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id == user_id)
    }
}

/// One member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub role: MemberRole,
    pub joined_at: Millis,
    pub last_read_at: Option<Millis>,
    /// When this user "deleted" (hid) the conversation; they see only newer messages.
    pub deleted_at: Option<Millis>,
}

/// One line of a user's conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationListItem {
    pub conversation: Conversation,
    pub last_message: Option<Message>,
    /// Messages from others, not deleted, newer than both the user's read mark and their
    /// deletion mark.
    pub unread_count: i64,
}

/// A message to store. `id` is chosen by the caller (a UUID v4), so it can be used before
/// the write commits; a duplicate `(sender_id, client_message_id)` keeps the earlier id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMessage {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub content: String,
    pub created_at: Millis,
    pub reply_to_id: Option<String>,
    pub client_message_id: Option<String>,
}

/// The outcome of storing one [`NewMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InsertedMessage {
    /// The stored message: the new one, or the earlier one with the same client id.
    pub message: Message,
    /// True when nothing was inserted because the client id had been used before.
    pub duplicate: bool,
}

/// A stored message, with what the wire form needs (sender name, reply preview, reactions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    /// From the users directory; `None` if the sender was never upserted.
    pub sender_name: Option<String>,
    /// Empty once deleted.
    pub content: String,
    pub created_at: Millis,
    pub edited_at: Option<Millis>,
    pub deleted_at: Option<Millis>,
    pub reply_to: Option<ReplyPreview>,
    pub client_message_id: Option<String>,
    pub reactions: Vec<Reaction>,
}

impl Message {
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// What a reply shows of the message it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyPreview {
    pub id: String,
    pub sender_id: String,
    pub sender_name: Option<String>,
    pub content: String,
    pub deleted: bool,
}

/// One emoji on a message and who reacted with it, in reaction order. Groups are ordered
/// by their first reaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<String>,
}

impl Reaction {
    pub fn count(&self) -> usize {
        self.user_ids.len()
    }
}

/// A call to record. `id` is the call id the server already uses (for §5 calls, the one the
/// caller chose).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCallSession {
    pub id: String,
    pub kind: CallKind,
    pub conversation_id: Option<String>,
    pub room_id: Option<String>,
    pub media_type: MediaType,
    pub mode: CallMode,
    pub status: CallStatus,
    pub initiator_id: String,
    pub started_at: Millis,
    /// Users rung or invited besides the initiator: the call shows in their history even
    /// if they never join (a missed call).
    pub invitees: Vec<String>,
    pub metadata: Option<serde_json::Value>,
}

/// Changes to a live call; `None` leaves a field alone. `answered_at` and `connected_at`
/// are first-writer-wins: once set they are never moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSessionUpdate {
    /// Must not be `Ended`; use [`crate::Db::finish_call_session`].
    pub status: Option<CallStatus>,
    pub mode: Option<CallMode>,
    pub room_id: Option<String>,
    pub answered_at: Option<Millis>,
    pub connected_at: Option<Millis>,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishCall {
    pub ended_at: Millis,
    pub outcome: CallOutcome,
    /// Whole seconds. `None`: computed from `connected_at` when the call connected, else
    /// left empty (protocol §12: only connected calls have a duration).
    pub duration_secs: Option<i64>,
    pub end_reason: Option<String>,
    pub ended_by: Option<String>,
}

/// A stored call with its participants (ordered by join time).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSession {
    pub id: String,
    pub kind: CallKind,
    pub conversation_id: Option<String>,
    pub room_id: Option<String>,
    pub media_type: MediaType,
    pub mode: CallMode,
    pub status: CallStatus,
    pub initiator_id: String,
    pub started_at: Millis,
    pub answered_at: Option<Millis>,
    pub connected_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub duration_secs: Option<i64>,
    pub outcome: Option<CallOutcome>,
    pub end_reason: Option<String>,
    pub ended_by: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub participants: Vec<CallParticipant>,
}

/// Someone joining a call: a user or an anonymous guest (exactly one of the two ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCallParticipant {
    pub call_id: String,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub role: ParticipantRole,
    pub joined_at: Millis,
    pub audio_enabled: bool,
    pub video_enabled: bool,
}

/// One join of a call (a user who leaves and rejoins has two).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipant {
    pub id: String,
    pub call_id: String,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub role: ParticipantRole,
    pub joined_at: Millis,
    pub left_at: Option<Millis>,
    pub audio_enabled: bool,
    pub video_enabled: bool,
    pub connection_quality: Option<serde_json::Value>,
}

/// A notification to store.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewNotification {
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub priority: NotificationPriority,
    pub created_at: Millis,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub priority: NotificationPriority,
    pub created_at: Millis,
    pub read_at: Option<Millis>,
}

/// A webhook delivery that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: String,
    pub url: String,
    pub body: String,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: Millis,
}
