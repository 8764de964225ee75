//! Wire types of the Switchboard Socket.IO protocol.
//!
//! This crate is the Rust form of `protocol.md`, the contract between the
//! server and its clients: one constant per event name, one serde type per
//! payload in each direction, the acknowledgement envelope and the error
//! codes. It holds no logic beyond (de)serialization and small
//! constructors, and depends only on serde, serde_json and thiserror, so
//! every other crate (and test clients) can use it.
//!
//! # Layout
//!
//! Modules mirror the sections of protocol.md:
//!
//! | module | section | contents |
//! |---|---|---|
//! | [`ack`] | §3, §10 | [`AckError`], [`ErrorCode`], [`ack_ok`], [`ack_result`], [`decode_ack`], [`Empty`], [`StatusMessage`], [`HttpErrorBody`] |
//! | [`events`] | all | `pub const` event names, [`events::CLIENT_EVENTS`], [`events::SERVER_EVENTS`] |
//! | [`session`] | §2 | handshake auth and JWT claims, `session`, `auth:*`, `session:replaced`, `users:get`, `getCallHistory` |
//! | [`presence`] | §4 | [`PresenceStatus`], `presence:*`, online and friend lists, `friend_*` |
//! | [`calls`] | §5 | direct-call ringing: `callUser`, `acceptCallNew`, ..., [`PendingCall`] |
//! | [`rooms`] | §6 | [`Room`], [`Participant`], [`RoomSummary`], [`ChatMessage`], room commands and events |
//! | [`conversation_calls`] | §7 | `call:*`, [`CallSession`], [`CallParticipant`], [`IceServer`], signals |
//! | [`sfu`] | §8 | mediasoup-style signalling: transports, producers, consumers |
//! | [`chat`] | §9 | conversations, [`Message`], [`Reaction`], read state, typing |
//!
//! # Conventions
//!
//! * Field names are camelCase on the wire; Rust fields are snake_case.
//! * Optional fields are `Option<T>`, left out when `None`.
//! * Closed string sets are enums with `as_str`, `Display`, `FromStr` and
//!   an `ALL` list.
//! * Times are `i64` milliseconds since the Unix epoch; durations are
//!   whole seconds (`u64`).
//! * Opaque client data (SDP, ICE candidates, RTP parameters, `appData`,
//!   settings, stats) is [`serde_json::Value`].
//! * Client→server payloads accept unknown fields (clients may send more)
//!   but reject missing required fields and wrong types, so a failed
//!   deserialization maps to `INVALID_PAYLOAD`. Size limits (§11) are the
//!   server's job.
//! * Payloads that several events share are one struct with type aliases
//!   named after each event (e.g. [`rooms::RoomRef`] is
//!   [`rooms::JoinRoom`], [`rooms::LeaveRoom`], ...).
//! * A response struct holds only the fields beside `success`; wrap it
//!   with [`ack_ok`] (or [`ack_result`]) when answering.
//!
//! ```
//! use switchboard_protocol::{ack_ok, calls::{CallUser, CallUserResponse, Delivery}};
//!
//! let req: CallUser = serde_json::from_str(r#"{"callId":"c1","targetUserId":"u2"}"#).unwrap();
//! assert_eq!(req.target_user_id, "u2");
//! let ack = ack_ok(&CallUserResponse { delivery: Some(Delivery::Ringing) });
//! assert_eq!(ack, serde_json::json!({"success": true, "delivery": "ringing"}));
//! ```

mod wire_enum;

pub mod ack;
pub mod calls;
pub mod chat;
pub mod conversation_calls;
pub mod events;
pub mod presence;
pub mod rooms;
pub mod session;
pub mod sfu;

pub use ack::{
    AckError, AckResult, Empty, ErrorCode, HttpErrorBody, StatusMessage, ack_ok, ack_result,
    decode_ack,
};
pub use calls::{CallRef, Delivery, PendingCall, PendingCallState};
pub use chat::{
    Conversation, ConversationRef, ConversationSummary, ConversationType, Message, MessageReply,
    Reaction,
};
pub use conversation_calls::{
    CallMode, CallOutcome, CallParticipant, CallSession, CallStatus, CallType, IceServer,
    ParticipantRole, SignalType,
};
pub use presence::{OnlineUser, PresenceInfo, PresenceStatus, UserStatus};
pub use rooms::{
    ChatMessage, ChatReply, Participant, ParticipantStatus, Room, RoomRef, RoomStatus, RoomSummary,
    RoomType,
};
pub use session::{SessionInfo, TokenClaims, UserInfo};
pub use sfu::{MediaKind, MediaSource, TransportDirection};
pub use wire_enum::UnknownWireValue;

/// Page size used when a paginated request gives no `limit` (§1).
pub const DEFAULT_PAGE_LIMIT: u32 = 50;

/// Largest page size a paginated request may ask for (§1).
pub const MAX_PAGE_LIMIT: u32 = 100;

/// The page size to use for a request's optional `limit` (§1):
/// [`DEFAULT_PAGE_LIMIT`] when absent, otherwise clamped to
/// `1..=`[`MAX_PAGE_LIMIT`].
pub fn page_limit(requested: Option<u32>) -> u32 {
    requested.map_or(DEFAULT_PAGE_LIMIT, |n| n.clamp(1, MAX_PAGE_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(None), 50);
        assert_eq!(page_limit(Some(0)), 1);
        assert_eq!(page_limit(Some(20)), 20);
        assert_eq!(page_limit(Some(1000)), 100);
    }

    #[test]
    fn wire_enums_agree_with_serde() {
        fn check<T>(all: &[T])
        where
            T: serde::Serialize
                + serde::de::DeserializeOwned
                + std::fmt::Display
                + std::str::FromStr
                + PartialEq
                + std::fmt::Debug,
            <T as std::str::FromStr>::Err: std::fmt::Debug,
        {
            for value in all {
                let text = value.to_string();
                let json = serde_json::to_value(value).unwrap();
                assert_eq!(json, serde_json::Value::String(text.clone()));
                assert_eq!(&serde_json::from_value::<T>(json).unwrap(), value);
                assert_eq!(&text.parse::<T>().unwrap(), value);
            }
        }
        check(ErrorCode::ALL);
        check(PresenceStatus::ALL);
        check(UserStatus::ALL);
        check(PendingCallState::ALL);
        check(Delivery::ALL);
        check(calls::CallCancelledReason::ALL);
        check(RoomType::ALL);
        check(RoomStatus::ALL);
        check(ParticipantStatus::ALL);
        check(CallType::ALL);
        check(CallMode::ALL);
        check(CallStatus::ALL);
        check(ParticipantRole::ALL);
        check(CallOutcome::ALL);
        check(SignalType::ALL);
        check(MediaKind::ALL);
        check(MediaSource::ALL);
        check(ConversationType::ALL);
        check(session::SessionReplacedReason::ALL);
    }

    #[test]
    fn unknown_wire_value_message() {
        let err = "nope".parse::<RoomType>().unwrap_err();
        assert_eq!(err.kind, "RoomType");
        assert_eq!(err.to_string(), "unknown RoomType value \"nope\"");
    }
}
