//! Presence (protocol.md §4): statuses, `presence:*`, the online and friend
//! lists, and the `friend_*` notifications.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ack::Empty;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// A user's presence as others see it (§4).
    pub enum PresenceStatus {
        /// Connected and available (seed 002's `idle`).
        Online = "online",
        /// Set by the user.
        Away = "away",
        /// Set by the user; display only, calls are not refused.
        Busy = "busy",
        /// Set by the server while the user takes part in a call or room.
        InCall = "in_call",
        /// No device connected.
        Offline = "offline",
    }
}

wire_enum! {
    /// The statuses a user may choose with `presence:status` (§4). The
    /// server-managed `in_call` and `offline` are not among them.
    pub enum UserStatus {
        /// Available.
        Online = "online",
        /// Away.
        Away = "away",
        /// Busy (display only).
        Busy = "busy",
    }
}

impl From<UserStatus> for PresenceStatus {
    fn from(status: UserStatus) -> Self {
        match status {
            UserStatus::Online => Self::Online,
            UserStatus::Away => Self::Away,
            UserStatus::Busy => Self::Busy,
        }
    }
}

impl TryFrom<PresenceStatus> for UserStatus {
    type Error = PresenceStatus;

    /// Fails (giving the input back) for `in_call` and `offline`.
    fn try_from(status: PresenceStatus) -> Result<Self, Self::Error> {
        match status {
            PresenceStatus::Online => Ok(Self::Online),
            PresenceStatus::Away => Ok(Self::Away),
            PresenceStatus::Busy => Ok(Self::Busy),
            other => Err(other),
        }
    }
}

/// One user's entry in the `presence:get` answer: `{status, lastSeen, devices}` (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceInfo {
    /// Current status.
    pub status: PresenceStatus,
    /// Time (ms) of the user's last activity; absent if the server has
    /// never seen the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// Number of connected devices.
    pub devices: u32,
}

/// An entry of the online and friend lists: `{userId, name, status}` (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUser {
    /// The user id.
    pub user_id: String,
    /// The display name.
    pub name: String,
    /// Current status.
    pub status: PresenceStatus,
}

/// C→S `presence:status {status}` (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetPresenceStatus {
    /// The status the user chooses.
    pub status: UserStatus,
}

/// Response fields of `presence:status`: `{status}`, the status now in
/// effect (§4). While the user is in a call this stays `in_call`; the
/// chosen status comes back when the call ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetPresenceStatusResponse {
    /// The effective status.
    pub status: PresenceStatus,
}

/// C→S `presence:get {userIds}`, at most 500 ids (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceGet {
    /// The users to look up.
    pub user_ids: Vec<String>,
}

impl PresenceGet {
    /// The most ids one request may carry.
    pub const MAX_USER_IDS: usize = 500;
}

/// Response fields of `presence:get`: `{presence: {[userId]: PresenceInfo}}` (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceGetResponse {
    /// Presence by user id.
    pub presence: BTreeMap<String, PresenceInfo>,
}

/// C→S `getOnlineUsers {}` (§4).
pub type GetOnlineUsers = Empty;

/// C→S `getFriends {}` (§4).
pub type GetFriends = Empty;

/// Response fields of `getOnlineUsers`: `{users}`, the users visible to the
/// caller (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUsersResponse {
    /// The visible online users.
    pub users: Vec<OnlineUser>,
}

/// Response fields of `getFriends`: `{friends}` (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendsResponse {
    /// The caller's friends with their status.
    pub friends: Vec<OnlineUser>,
}

/// S→C `onlineUsersUpdated {users}`: the recipient's full visible list,
/// the recipient included (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUsersUpdated {
    /// The whole visible list.
    pub users: Vec<OnlineUser>,
}

/// S→C `friend_online {userId, name, timestamp}` (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendOnline {
    /// The friend who came online.
    pub user_id: String,
    /// Their display name.
    pub name: String,
    /// When (ms).
    pub timestamp: i64,
}

/// S→C `{userId, timestamp}`: the shape shared by `friend_offline`,
/// `friend_in_call` and `friend_out_of_call` (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendPresenceChanged {
    /// The friend concerned.
    pub user_id: String,
    /// When (ms).
    pub timestamp: i64,
}

/// S→C `friend_offline {userId, timestamp}` (§4).
pub type FriendOffline = FriendPresenceChanged;
/// S→C `friend_in_call {userId, timestamp}` (§4).
pub type FriendInCall = FriendPresenceChanged;
/// S→C `friend_out_of_call {userId, timestamp}` (§4).
pub type FriendOutOfCall = FriendPresenceChanged;

/// S→C `friend_status {userId, status, timestamp}`, on changes between
/// online, away and busy (§4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendStatus {
    /// The friend concerned.
    pub user_id: String,
    /// Their new user-set status.
    pub status: UserStatus,
    /// When (ms).
    pub timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_strings() {
        assert_eq!(
            serde_json::to_value(PresenceStatus::InCall).unwrap(),
            json!("in_call")
        );
        assert_eq!(PresenceStatus::InCall.as_str(), "in_call");
        assert_eq!(
            serde_json::from_value::<PresenceStatus>(json!("offline")).unwrap(),
            PresenceStatus::Offline
        );
        assert!(serde_json::from_value::<PresenceStatus>(json!("idle")).is_err());
        assert!(serde_json::from_value::<PresenceStatus>(json!("inCall")).is_err());
        assert_eq!(PresenceStatus::from(UserStatus::Busy), PresenceStatus::Busy);
        assert_eq!(
            UserStatus::try_from(PresenceStatus::InCall),
            Err(PresenceStatus::InCall)
        );
    }

    #[test]
    fn presence_status_request() {
        let req: SetPresenceStatus = serde_json::from_value(json!({"status": "away"})).unwrap();
        assert_eq!(req.status, UserStatus::Away);
        // Users cannot claim the server-managed statuses.
        assert!(serde_json::from_value::<SetPresenceStatus>(json!({"status": "in_call"})).is_err());
        assert!(serde_json::from_value::<SetPresenceStatus>(json!({"status": 1})).is_err());
        assert_eq!(
            crate::ack_ok(&SetPresenceStatusResponse {
                status: PresenceStatus::Away
            }),
            json!({"success": true, "status": "away"})
        );
    }

    #[test]
    fn presence_get() {
        let req: PresenceGet = serde_json::from_value(json!({"userIds": ["u1", "u2"]})).unwrap();
        assert_eq!(req.user_ids.len(), 2);
        assert!(serde_json::from_value::<PresenceGet>(json!({"userIds": 5})).is_err());
        assert!(serde_json::from_value::<PresenceGet>(json!({"userIds": "u1"})).is_err());
        assert!(serde_json::from_value::<PresenceGet>(json!({})).is_err());

        let mut presence = BTreeMap::new();
        presence.insert(
            "u1".to_owned(),
            PresenceInfo {
                status: PresenceStatus::InCall,
                last_seen: Some(1_700_000_000_000),
                devices: 2,
            },
        );
        presence.insert(
            "u2".to_owned(),
            PresenceInfo {
                status: PresenceStatus::Offline,
                last_seen: None,
                devices: 0,
            },
        );
        let value = crate::ack_ok(&PresenceGetResponse { presence });
        assert_eq!(
            value,
            json!({
                "success": true,
                "presence": {
                    "u1": {"status": "in_call", "lastSeen": 1_700_000_000_000_i64, "devices": 2},
                    "u2": {"status": "offline", "devices": 0}
                }
            })
        );
        let back: PresenceGetResponse = serde_json::from_value(value).unwrap();
        assert_eq!(back.presence["u1"].devices, 2);
    }

    #[test]
    fn lists_and_friend_events() {
        let update = OnlineUsersUpdated {
            users: vec![OnlineUser {
                user_id: "u1".into(),
                name: "Ann".into(),
                status: PresenceStatus::Online,
            }],
        };
        assert_eq!(
            serde_json::to_value(&update).unwrap(),
            json!({"users": [{"userId": "u1", "name": "Ann", "status": "online"}]})
        );

        let online: FriendOnline =
            serde_json::from_value(json!({"userId": "u2", "name": "Bob", "timestamp": 5})).unwrap();
        assert_eq!(online.name, "Bob");
        let in_call: FriendInCall =
            serde_json::from_value(json!({"userId": "u2", "timestamp": 6})).unwrap();
        assert_eq!(in_call.timestamp, 6);
        let status = FriendStatus {
            user_id: "u2".into(),
            status: UserStatus::Busy,
            timestamp: 7,
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"userId": "u2", "status": "busy", "timestamp": 7})
        );
        let _: GetFriends = serde_json::from_value(json!({})).unwrap();
    }
}
