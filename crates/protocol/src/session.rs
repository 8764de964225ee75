//! Handshake, identity and devices (protocol.md §2), and the socket form of
//! the call history of §10 (`getCallHistory`).

use serde::{Deserialize, Serialize};

use crate::ack::Empty;
use crate::conversation_calls::CallSession;
use crate::wire_enum::wire_enum;

/// The Socket.IO `auth` object of the handshake (§2).
///
/// Normally `{token}`. In dev mode only, `{userId, name, deviceId?}` is
/// accepted without a token. All fields are optional here; which
/// combination is acceptable is the server's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandshakeAuth {
    /// The JWT (see [`TokenClaims`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Dev mode: the user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Dev mode: the display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Dev mode: the device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// The claims of the handshake JWT (§2). Unknown claims (`iat`, `iss`, ...)
/// are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenClaims {
    /// The user id.
    pub sub: String,
    /// The display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, in seconds since the Unix epoch (the JWT convention, unlike
    /// the millisecond times of the payloads).
    pub exp: u64,
    /// The device id, if the token is bound to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// An anonymous guest, allowed only in calls of `conversation_id`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest: bool,
    /// For guests: the one conversation whose calls they may join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

/// The data of a refused handshake's connect error (§2): `{message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectErrorData {
    /// [`ConnectErrorData::UNAUTHORIZED`] or [`ConnectErrorData::INVALID_AUTH`].
    pub message: String,
}

impl ConnectErrorData {
    /// Missing, invalid or expired credentials.
    pub const UNAUTHORIZED: &'static str = "unauthorized";
    /// A malformed `auth` object.
    pub const INVALID_AUTH: &'static str = "invalid_auth";

    /// `{message: "unauthorized"}`.
    pub fn unauthorized() -> Self {
        Self {
            message: Self::UNAUTHORIZED.to_owned(),
        }
    }

    /// `{message: "invalid_auth"}`.
    pub fn invalid_auth() -> Self {
        Self {
            message: Self::INVALID_AUTH.to_owned(),
        }
    }
}

/// S→C `session`, sent right after a successful connect (§2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The authenticated user.
    pub user_id: String,
    /// Their display name.
    pub name: String,
    /// This socket's device id (given or generated).
    pub device_id: String,
    /// The Socket.IO socket id.
    pub socket_id: String,
    /// The server's clock (ms), so clients can estimate skew.
    pub server_time: i64,
}

/// C→S `auth:refresh {token}` → `{success}` ([`Empty`]) (§2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRefresh {
    /// A fresh JWT for the same user.
    pub token: String,
}

/// S→C `auth:expired {}` (§2).
pub type AuthExpired = Empty;

wire_enum! {
    /// Why a device session was ended by the server (§2).
    pub enum SessionReplacedReason {
        /// A newer socket connected with the same user and device id.
        Replaced = "replaced",
    }
}

/// S→C `session:replaced {deviceId, reason}`, sent to the old socket just
/// before it is disconnected (§2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionReplaced {
    /// The device id both sockets claimed.
    pub device_id: String,
    /// Always `"replaced"`.
    pub reason: SessionReplacedReason,
}

/// A user id with its display name: `{userId, name}` (§2 `users:get`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// The user id.
    pub user_id: String,
    /// The display name.
    pub name: String,
}

/// C→S `users:get {userIds}` (§2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersGet {
    /// The users to look up.
    pub user_ids: Vec<String>,
}

/// Response fields of `users:get`: `{users}` (§2). Unknown ids are left
/// out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersGetResponse {
    /// The users found.
    pub users: Vec<UserInfo>,
}

/// C→S `getCallHistory {limit?, before?}` (§10, socket form of
/// `GET /api/me/calls`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetCallHistory {
    /// Page size (default 50, max 100; see [`crate::page_limit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Cursor: a call id; only older calls are returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// Response fields of `getCallHistory`: `{calls}`, oldest first (§1, §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallHistoryResponse {
    /// The page of ended calls.
    pub calls: Vec<CallSession>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn handshake_auth_forms() {
        let auth: HandshakeAuth = serde_json::from_value(json!({"token": "jwt"})).unwrap();
        assert_eq!(auth.token.as_deref(), Some("jwt"));
        assert_eq!(auth.user_id, None);

        let dev: HandshakeAuth =
            serde_json::from_value(json!({"userId": "u1", "name": "Ann", "deviceId": "d1"}))
                .unwrap();
        assert_eq!(dev.user_id.as_deref(), Some("u1"));
        assert_eq!(dev.device_id.as_deref(), Some("d1"));

        assert!(serde_json::from_value::<HandshakeAuth>(json!({"token": 12})).is_err());
    }

    #[test]
    fn token_claims() {
        let claims: TokenClaims = serde_json::from_value(json!({
            "sub": "u1", "name": "Ann", "exp": 1700000000, "iat": 1690000000
        }))
        .unwrap();
        assert!(!claims.guest);
        assert_eq!(claims.device, None);

        let guest: TokenClaims = serde_json::from_value(json!({
            "sub": "g1", "exp": 1700000000, "guest": true, "conversationId": "c9"
        }))
        .unwrap();
        assert!(guest.guest);
        assert_eq!(guest.conversation_id.as_deref(), Some("c9"));
        assert_eq!(
            serde_json::to_value(&guest).unwrap(),
            json!({"sub": "g1", "exp": 1700000000, "guest": true, "conversationId": "c9"})
        );

        assert!(serde_json::from_value::<TokenClaims>(json!({"sub": "u1"})).is_err());
    }

    #[test]
    fn connect_error() {
        assert_eq!(
            serde_json::to_value(ConnectErrorData::unauthorized()).unwrap(),
            json!({"message": "unauthorized"})
        );
        assert_eq!(
            serde_json::to_value(ConnectErrorData::invalid_auth()).unwrap(),
            json!({"message": "invalid_auth"})
        );
    }

    #[test]
    fn session_events() {
        let value = json!({
            "userId": "u1", "name": "Ann", "deviceId": "d1",
            "socketId": "s1", "serverTime": 1700000000000_i64
        });
        let info: SessionInfo = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(info.server_time, 1_700_000_000_000);
        assert_eq!(serde_json::to_value(&info).unwrap(), value);

        let replaced = SessionReplaced {
            device_id: "d1".into(),
            reason: SessionReplacedReason::Replaced,
        };
        assert_eq!(
            serde_json::to_value(&replaced).unwrap(),
            json!({"deviceId": "d1", "reason": "replaced"})
        );
        assert_eq!(serde_json::to_value(AuthExpired {}).unwrap(), json!({}));

        let refresh: AuthRefresh = serde_json::from_value(json!({"token": "t2"})).unwrap();
        assert_eq!(refresh.token, "t2");
        assert!(serde_json::from_value::<AuthRefresh>(json!({})).is_err());
    }

    #[test]
    fn users_get() {
        let req: UsersGet = serde_json::from_value(json!({"userIds": ["u1", "u2"]})).unwrap();
        assert_eq!(req.user_ids, ["u1", "u2"]);
        assert!(serde_json::from_value::<UsersGet>(json!({"userIds": 5})).is_err());
        assert!(serde_json::from_value::<UsersGet>(json!({"userIds": [1]})).is_err());

        let resp = UsersGetResponse {
            users: vec![UserInfo {
                user_id: "u1".into(),
                name: "Ann".into(),
            }],
        };
        assert_eq!(
            crate::ack_ok(&resp),
            json!({"success": true, "users": [{"userId": "u1", "name": "Ann"}]})
        );
    }

    #[test]
    fn get_call_history() {
        let empty: GetCallHistory = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, GetCallHistory::default());
        let page: GetCallHistory =
            serde_json::from_value(json!({"limit": 20, "before": "call-9"})).unwrap();
        assert_eq!(page.limit, Some(20));
        assert_eq!(page.before.as_deref(), Some("call-9"));
        assert!(serde_json::from_value::<GetCallHistory>(json!({"limit": "20"})).is_err());
        assert!(serde_json::from_value::<GetCallHistory>(json!({"limit": -1})).is_err());
        assert_eq!(
            crate::ack_ok(&CallHistoryResponse { calls: vec![] }),
            json!({"success": true, "calls": []})
        );
    }
}
