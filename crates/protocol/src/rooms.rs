//! Rooms (protocol.md §6, seed 002): the `Room`, `Participant`,
//! `RoomSummary` and in-room `ChatMessage` models, the room commands and
//! the room events.

use serde::{Deserialize, Serialize};

use crate::ack::{Empty, StatusMessage};
use crate::chat::Reaction;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// The kind of room (§6).
    pub enum RoomType {
        /// Many participants, with a host.
        Group = "group",
        /// Two users, created by an accepted direct call (§5) or `createRoom`.
        Direct = "direct",
    }
}

wire_enum! {
    /// A room's lifecycle (§6).
    pub enum RoomStatus {
        /// Created, nobody has accepted yet.
        Pending = "pending",
        /// In progress.
        Active = "active",
        /// Over.
        Ended = "ended",
    }
}

wire_enum! {
    /// A participant's answer to the room invitation (§6).
    pub enum ParticipantStatus {
        /// Invited, not answered yet.
        Pending = "pending",
        /// Accepted or joined.
        Accepted = "accepted",
        /// Declined.
        Rejected = "rejected",
    }
}

/// A room member: `{userId, name, socketId, joinedAt, isHost, status,
/// producerIds, consumerIds, isMuted, isVideoEnabled,
/// mediaStateUpdatedAt}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// The user.
    pub user_id: String,
    /// Their display name.
    pub name: String,
    /// The socket (device) taking part.
    pub socket_id: String,
    /// Join time (ms).
    pub joined_at: i64,
    /// Whether this participant is the host.
    pub is_host: bool,
    /// Invitation answer.
    pub status: ParticipantStatus,
    /// SFU producers (§8) of this participant.
    #[serde(default)]
    pub producer_ids: Vec<String>,
    /// SFU consumers (§8) of this participant.
    #[serde(default)]
    pub consumer_ids: Vec<String>,
    /// Microphone muted.
    pub is_muted: bool,
    /// Camera on.
    pub is_video_enabled: bool,
    /// When the two flags above last changed (ms).
    pub media_state_updated_at: i64,
}

/// Full room state (§6). Maps of the seed are sent as arrays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    /// Server-generated UUID.
    pub room_id: String,
    /// Group or direct.
    pub room_type: RoomType,
    /// Display name.
    pub room_name: String,
    /// Host user id.
    pub host_id: String,
    /// Host display name.
    pub host_name: String,
    /// Lifecycle state.
    pub status: RoomStatus,
    /// True when created with `invitedUserIds`, or direct.
    pub is_private: bool,
    /// Members.
    #[serde(default)]
    pub participants: Vec<Participant>,
    /// Creation time (ms).
    pub created_at: i64,
    /// End time (ms), once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// The host is gone for good and any participant may end the room.
    pub is_hostless: bool,
    /// Start of the host's grace period (ms), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_disconnected_at: Option<i64>,
    /// Who may join a private room.
    #[serde(default)]
    pub invited_user_ids: Vec<String>,
    /// In-room chat.
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
}

/// A room as listed by `getRooms` and `roomListUpdated` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// The room.
    pub room_id: String,
    /// Display name.
    pub room_name: String,
    /// Group or direct.
    pub room_type: RoomType,
    /// Host user id.
    pub host_id: String,
    /// Host display name.
    pub host_name: String,
    /// Number of participants.
    pub participant_count: u32,
    /// See [`Room::is_hostless`].
    pub is_hostless: bool,
    /// See [`Room::is_private`].
    pub is_private: bool,
    /// Creation time (ms).
    pub created_at: i64,
}

/// What a room chat message replies to: `{messageId, userName, content}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatReply {
    /// The quoted message.
    pub message_id: String,
    /// Its author's display name.
    pub user_name: String,
    /// Its content (possibly shortened by the server).
    pub content: String,
}

/// An in-room chat message (§6, seed 002 `ChatMessage`); the payload of
/// `newMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Server-generated UUID.
    pub message_id: String,
    /// Sender user id.
    pub user_id: String,
    /// Sender display name.
    pub user_name: String,
    /// Text.
    pub content: String,
    /// Send time (ms).
    pub timestamp: i64,
    /// The message replied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ChatReply>,
    /// Reactions, one entry per emoji.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
}

/// `{roomId}`: the payload of `joinRoom`, `leaveRoom`, `acceptCall`,
/// `rejectCall`, `endCall` (§6), `invitationExpired` (§6) and
/// `getRouterRtpCapabilities` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRef {
    /// The room.
    pub room_id: String,
}

/// C→S `createRoom {roomType, roomName?, targetUserId?, invitedUserIds?}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRoom {
    /// Group or direct.
    pub room_type: RoomType,
    /// Display name; the server picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_name: Option<String>,
    /// For a direct room: the other user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_user_id: Option<String>,
    /// Makes the room private to these users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_user_ids: Option<Vec<String>>,
}

/// Response fields `{room}` of `createRoom`, `joinRoom` and `acceptCall` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomResponse {
    /// Full room state.
    pub room: Room,
}

/// C→S `joinRoom {roomId}` → [`RoomResponse`] (§6).
pub type JoinRoom = RoomRef;
/// C→S `leaveRoom {roomId}` → [`StatusMessage`] (§6).
pub type LeaveRoom = RoomRef;
/// C→S `acceptCall {roomId}` → [`RoomResponse`] (§6).
pub type AcceptCall = RoomRef;
/// C→S `rejectCall {roomId}` → [`StatusMessage`] (§6).
pub type RejectCall = RoomRef;
/// C→S `endCall {roomId}` → [`StatusMessage`] (§6).
pub type EndCall = RoomRef;
/// Response fields `{message}` of `leaveRoom`, `rejectCall` and `endCall` (§6).
pub type RoomStatusMessage = StatusMessage;

/// C→S `getRooms {}` (§6).
pub type GetRooms = Empty;

/// Response fields of `getRooms`: `{rooms}`, the public rooms plus the
/// private ones the caller is invited to (§6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomsResponse {
    /// The visible rooms.
    pub rooms: Vec<RoomSummary>,
}

/// C→S `sendMessage {roomId, content, replyTo?}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// The room.
    pub room_id: String,
    /// Text.
    pub content: String,
    /// The `messageId` replied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// C→S `reactToMessage {roomId, messageId, emoji}`, toggling the sender's
/// reaction (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactToMessage {
    /// The room.
    pub room_id: String,
    /// The message.
    pub message_id: String,
    /// The emoji to toggle.
    pub emoji: String,
}

/// Response fields `{message}` of `sendMessage` (the stored message) and
/// `reactToMessage` (the updated message) (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessageResponse {
    /// The message.
    pub message: ChatMessage,
}

/// C→S `mediaStateChanged {roomId, isMuted, isVideoEnabled}` → `{success}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaStateChanged {
    /// The room.
    pub room_id: String,
    /// Microphone muted.
    pub is_muted: bool,
    /// Camera on.
    pub is_video_enabled: bool,
}

/// S→C `incomingCall {roomId, roomType, fromUserId, fromUserName}`: a room
/// invitation (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncomingCall {
    /// The room.
    pub room_id: String,
    /// Its type.
    pub room_type: RoomType,
    /// Who invites.
    pub from_user_id: String,
    /// Their display name.
    pub from_user_name: String,
}

/// S→C `invitationExpired {roomId}`: unanswered after 60 s, or the room
/// ended (§6).
pub type InvitationExpired = RoomRef;

/// S→C `callAccepted {userId, roomId}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallAccepted {
    /// Who accepted.
    pub user_id: String,
    /// The room.
    pub room_id: String,
}

/// S→C `callRejected {userId, userName, roomId}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRejected {
    /// Who declined.
    pub user_id: String,
    /// Their display name.
    pub user_name: String,
    /// The room.
    pub room_id: String,
}

/// S→C `callEnded {roomId, endedBy, reason?}` (§6). The event name is
/// [`crate::events::ROOM_CALL_ENDED`]; `call:ended` of §7 is
/// [`crate::conversation_calls::CallEnded`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomCallEnded {
    /// The room.
    pub room_id: String,
    /// The user who ended it, or a server marker when nobody did.
    pub ended_by: String,
    /// Free text, e.g. why the server ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// S→C `userJoined {userId, userName, socketId}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJoined {
    /// Who joined.
    pub user_id: String,
    /// Their display name.
    pub user_name: String,
    /// Their socket.
    pub socket_id: String,
}

/// S→C `userLeft {userId, roomId}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserLeft {
    /// Who left.
    pub user_id: String,
    /// The room.
    pub room_id: String,
}

/// S→C `newMessage`: the [`ChatMessage`] itself (§6).
pub type NewMessage = ChatMessage;

/// S→C `messageReactionUpdated {messageId, reactions}` (§6). The §9
/// counterpart is [`crate::chat::MessageReactionUpdated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomMessageReactionUpdated {
    /// The message.
    pub message_id: String,
    /// All its reactions now.
    pub reactions: Vec<Reaction>,
}

/// S→C `participantMediaStateUpdated {userId, name, isMuted, isVideoEnabled}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantMediaStateUpdated {
    /// The participant.
    pub user_id: String,
    /// Their display name.
    pub name: String,
    /// Microphone muted.
    pub is_muted: bool,
    /// Camera on.
    pub is_video_enabled: bool,
}

/// S→C `roomListUpdated {rooms}` (§6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomListUpdated {
    /// The rooms the recipient may see.
    pub rooms: Vec<RoomSummary>,
}

/// S→C `roomHostless {roomId, message}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomHostless {
    /// The room.
    pub room_id: String,
    /// Human-readable explanation.
    pub message: String,
}

/// S→C `hostReconnected {roomId, userId}` (§6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostReconnected {
    /// The room.
    pub room_id: String,
    /// The host.
    pub user_id: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A direct room as the wire carries it, shared with other modules' tests.
    pub(crate) fn sample_room_json() -> Value {
        json!({
            "roomId": "r1",
            "roomType": "direct",
            "roomName": "Ann & Bob",
            "hostId": "u1",
            "hostName": "Ann",
            "status": "active",
            "isPrivate": true,
            "participants": [{
                "userId": "u1", "name": "Ann", "socketId": "s1", "joinedAt": 10,
                "isHost": true, "status": "accepted", "producerIds": ["p1"],
                "consumerIds": [], "isMuted": false, "isVideoEnabled": true,
                "mediaStateUpdatedAt": 10
            }],
            "createdAt": 5,
            "isHostless": false,
            "invitedUserIds": ["u1", "u2"],
            "messages": [{
                "messageId": "m1", "userId": "u1", "userName": "Ann",
                "content": "hi", "timestamp": 11,
                "replyTo": {"messageId": "m0", "userName": "Bob", "content": "hello"},
                "reactions": [{"emoji": "👍", "userIds": ["u2"], "count": 1}]
            }]
        })
    }

    #[test]
    fn room_round_trip() {
        let value = sample_room_json();
        let room: Room = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(room.room_type, RoomType::Direct);
        assert_eq!(room.participants[0].status, ParticipantStatus::Accepted);
        assert_eq!(room.messages[0].reactions[0].count, 1);
        assert_eq!(room.ended_at, None);
        assert_eq!(serde_json::to_value(&room).unwrap(), value);

        let mut wrong = value;
        wrong["status"] = json!("ringing");
        assert!(serde_json::from_value::<Room>(wrong).is_err());
    }

    #[test]
    fn create_room() {
        let req: CreateRoom =
            serde_json::from_value(json!({"roomType": "group", "roomName": "Standup"})).unwrap();
        assert_eq!(req.room_type, RoomType::Group);
        assert_eq!(req.invited_user_ids, None);

        let req: CreateRoom =
            serde_json::from_value(json!({"roomType": "group", "invitedUserIds": ["u2", "u3"]}))
                .unwrap();
        assert_eq!(req.invited_user_ids.unwrap().len(), 2);

        assert!(serde_json::from_value::<CreateRoom>(json!({"roomType": "party"})).is_err());
        assert!(
            serde_json::from_value::<CreateRoom>(
                json!({"roomType": "group", "invitedUserIds": "u2"})
            )
            .is_err()
        );
        assert!(serde_json::from_value::<CreateRoom>(json!({})).is_err());

        let room: Room = serde_json::from_value(sample_room_json()).unwrap();
        let acked = crate::ack_ok(&RoomResponse { room });
        assert_eq!(acked["success"], json!(true));
        assert_eq!(acked["room"]["roomId"], json!("r1"));
    }

    #[test]
    fn room_commands() {
        let join: JoinRoom = serde_json::from_value(json!({"roomId": "r1"})).unwrap();
        assert_eq!(join.room_id, "r1");
        assert!(serde_json::from_value::<LeaveRoom>(json!({"roomId": ["r1"]})).is_err());

        let send: SendMessage =
            serde_json::from_value(json!({"roomId": "r1", "content": "hi", "replyTo": "m0"}))
                .unwrap();
        assert_eq!(send.reply_to.as_deref(), Some("m0"));

        let react: ReactToMessage =
            serde_json::from_value(json!({"roomId": "r1", "messageId": "m1", "emoji": "🎉"}))
                .unwrap();
        assert_eq!(react.emoji, "🎉");

        let media: MediaStateChanged = serde_json::from_value(
            json!({"roomId": "r1", "isMuted": true, "isVideoEnabled": false}),
        )
        .unwrap();
        assert!(media.is_muted);
        assert!(
            serde_json::from_value::<MediaStateChanged>(
                json!({"roomId": "r1", "isMuted": "yes", "isVideoEnabled": false})
            )
            .is_err()
        );
    }

    #[test]
    fn room_events() {
        let summary = RoomSummary {
            room_id: "r1".into(),
            room_name: "Standup".into(),
            room_type: RoomType::Group,
            host_id: "u1".into(),
            host_name: "Ann".into(),
            participant_count: 3,
            is_hostless: false,
            is_private: false,
            created_at: 5,
        };
        assert_eq!(
            serde_json::to_value(RoomListUpdated {
                rooms: vec![summary]
            })
            .unwrap(),
            json!({"rooms": [{
                "roomId": "r1", "roomName": "Standup", "roomType": "group",
                "hostId": "u1", "hostName": "Ann", "participantCount": 3,
                "isHostless": false, "isPrivate": false, "createdAt": 5
            }]})
        );

        let ended = RoomCallEnded {
            room_id: "r1".into(),
            ended_by: "u1".into(),
            reason: None,
        };
        assert_eq!(
            serde_json::to_value(&ended).unwrap(),
            json!({"roomId": "r1", "endedBy": "u1"})
        );

        let incoming: IncomingCall = serde_json::from_value(json!({
            "roomId": "r1", "roomType": "group", "fromUserId": "u1", "fromUserName": "Ann"
        }))
        .unwrap();
        assert_eq!(incoming.room_type, RoomType::Group);

        let reactions = RoomMessageReactionUpdated {
            message_id: "m1".into(),
            reactions: vec![Reaction {
                emoji: "👍".into(),
                user_ids: vec!["u1".into(), "u2".into()],
                count: 2,
            }],
        };
        assert_eq!(
            serde_json::to_value(&reactions).unwrap(),
            json!({"messageId": "m1", "reactions": [{"emoji": "👍", "userIds": ["u1", "u2"], "count": 2}]})
        );

        // A newMessage without reactions (as seed 002 allows) still parses.
        let msg: NewMessage = serde_json::from_value(json!({
            "messageId": "m2", "userId": "u1", "userName": "Ann", "content": "yo", "timestamp": 1
        }))
        .unwrap();
        assert!(msg.reactions.is_empty());
    }
}
