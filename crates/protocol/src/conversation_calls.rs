//! Conversation calls, peer to peer (protocol.md §7, seed 004): the
//! `call:*` events, the `CallSession` and `CallParticipant` models (also
//! used for call history), WebRTC signals and ICE servers.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ack::{AckError, Empty, ErrorCode};
use crate::calls::CallRef;
use crate::sfu::MediaKind;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// Audio-only or video call (§7).
    pub enum CallType {
        /// Audio only.
        Audio = "audio",
        /// Audio and video.
        Video = "video",
    }
}

wire_enum! {
    /// How media flows (§7).
    pub enum CallMode {
        /// Directly between the two participants.
        P2p = "p2p",
        /// Through the server's SFU (§8), from the third participant on.
        Sfu = "sfu",
    }
}

wire_enum! {
    /// A conversation call's lifecycle: `initiated → ringing → active →
    /// ended` (§7).
    pub enum CallStatus {
        /// Created; only the initiator is in it.
        Initiated = "initiated",
        /// A member's device was notified.
        Ringing = "ringing",
        /// Somebody joined.
        Active = "active",
        /// Over.
        Ended = "ended",
    }
}

wire_enum! {
    /// A participant's role in a call (§7).
    pub enum ParticipantRole {
        /// Started the call.
        Initiator = "initiator",
        /// Joined it.
        Participant = "participant",
    }
}

wire_enum! {
    /// How an ended call turned out, as recorded in history (§12).
    pub enum CallOutcome {
        /// Connected and then ended normally.
        Completed = "completed",
        /// Nobody answered.
        Missed = "missed",
        /// The callee declined.
        Rejected = "rejected",
        /// The caller gave up before an answer.
        Cancelled = "cancelled",
        /// Answered but media never connected, or ended by an error.
        Failed = "failed",
    }
}

/// A call participant: `{id, callSessionId, userId?, anonymousId?, role,
/// joinedAt, leftAt?, isAudioEnabled, isVideoEnabled}` (§7, seed 004).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipant {
    /// The participant record's id (a participant may join a call more
    /// than once, each time with a new id).
    pub id: String,
    /// The call.
    pub call_session_id: String,
    /// The user, for authenticated participants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The guest id, for anonymous participants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Initiator or participant.
    pub role: ParticipantRole,
    /// Join time (ms).
    pub joined_at: i64,
    /// Leave time (ms), once left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<i64>,
    /// Microphone on.
    pub is_audio_enabled: bool,
    /// Camera on.
    pub is_video_enabled: bool,
}

/// A call, live or ended (§7; seed 004 `CallSession`). Carried by `call:*`
/// responses and by the call history (`getCallHistory`, `/api/.../calls`).
///
/// Direct calls (§5) and rooms (§6) are written to history in this shape
/// as well; they have no `conversationId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSession {
    /// The call id.
    pub id: String,
    /// The conversation, for `call:*` calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Audio or video.
    #[serde(rename = "type")]
    pub call_type: CallType,
    /// P2P or SFU.
    pub mode: CallMode,
    /// Lifecycle state.
    pub status: CallStatus,
    /// The user id of whoever started the call.
    pub initiator: String,
    /// The SFU room, once the call moved to the SFU (`call:mode-changed`),
    /// or the room of a §5/§6 call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// Creation time (ms).
    pub started_at: i64,
    /// First join (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<i64>,
    /// When media first flowed (ms); only for calls that connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<i64>,
    /// End time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// Whole seconds from `connectedAt` to the end; only for calls that
    /// connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// How it turned out; set once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<CallOutcome>,
    /// Everyone who took part (including those who left).
    #[serde(default)]
    pub participants: Vec<CallParticipant>,
}

/// A STUN or TURN server for `RTCPeerConnection`: `{urls, username?,
/// credential?}` (§7).
///
/// `urls` is always serialized as an array; a single string is accepted
/// when deserializing, as WebRTC allows both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    #[serde(deserialize_with = "string_or_strings")]
    pub urls: Vec<String>,
    /// TURN REST username, `expiry:userId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN REST credential, base64(HMAC-SHA1(secret, username)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServer {
    /// A server without credentials (typically STUN).
    pub fn new(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            username: None,
            credential: None,
        }
    }

    /// A server with TURN credentials.
    pub fn with_credentials(
        urls: impl IntoIterator<Item = impl Into<String>>,
        username: impl Into<String>,
        credential: impl Into<String>,
    ) -> Self {
        Self {
            username: Some(username.into()),
            credential: Some(credential.into()),
            ..Self::new(urls)
        }
    }
}

fn string_or_strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct UrlsVisitor;

    impl<'de> Visitor<'de> for UrlsVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an array of strings")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut urls = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
            while let Some(url) = seq.next_element::<String>()? {
                urls.push(url);
            }
            Ok(urls)
        }
    }

    deserializer.deserialize_any(UrlsVisitor)
}

wire_enum! {
    /// The kind of a WebRTC signal (§7).
    pub enum SignalType {
        /// SDP offer.
        Offer = "offer",
        /// SDP answer.
        Answer = "answer",
        /// A trickled ICE candidate.
        IceCandidate = "ice-candidate",
    }
}

/// The `signal` a client sends in `call:signal`: `{type, to, sdp?,
/// candidate?}` (§7). A `from` sent by the client is ignored; the server
/// sets it (see [`ClientSignal::relay`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSignal {
    /// Offer, answer or ICE candidate.
    #[serde(rename = "type")]
    pub signal_type: SignalType,
    /// The recipient's user id (or guest id).
    pub to: String,
    /// The SDP (a string or a `{type, sdp}` object, relayed untouched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<Value>,
    /// The ICE candidate (relayed untouched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Value>,
}

impl ClientSignal {
    /// The signal as relayed to `to`, stamped with the authenticated sender.
    pub fn relay(self, from: impl Into<String>) -> RelayedSignal {
        RelayedSignal {
            signal_type: self.signal_type,
            from: from.into(),
            to: self.to,
            sdp: self.sdp,
            candidate: self.candidate,
        }
    }
}

/// The `signal` the server relays in `call:signal`: `{type, from, to, sdp?,
/// candidate?}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayedSignal {
    /// Offer, answer or ICE candidate.
    #[serde(rename = "type")]
    pub signal_type: SignalType,
    /// The authenticated sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The SDP, untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<Value>,
    /// The ICE candidate, untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Value>,
}

/// C→S `call:initiate {conversationId, type, settings?}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallInitiate {
    /// The conversation to call.
    pub conversation_id: String,
    /// Audio or video.
    #[serde(rename = "type")]
    pub call_type: CallType,
    /// Client call settings, opaque to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
}

/// Response fields of `call:initiate`: `{callId, call, iceServers}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallInitiateResponse {
    /// The new call's id.
    pub call_id: String,
    /// The new call.
    pub call: CallSession,
    /// ICE servers for the caller.
    pub ice_servers: Vec<IceServer>,
}

/// C→S `call:join {callId, settings?}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallJoin {
    /// The call to join.
    pub call_id: String,
    /// Client call settings, opaque to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
}

/// Response fields of `call:join`: `{call, iceServers}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallJoinResponse {
    /// The call after joining.
    pub call: CallSession,
    /// ICE servers for the joiner.
    pub ice_servers: Vec<IceServer>,
}

/// C→S `call:leave {callId}` → `{success}` (§7).
pub type CallLeave = CallRef;

/// C→S `call:connected {callId}` → `{success}`: the client reports media
/// flowing (§7).
pub type CallConnected = CallRef;

/// C→S `call:signal {callId, signal}` → `{success}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSignal {
    /// The call.
    pub call_id: String,
    /// The signal to relay.
    pub signal: ClientSignal,
}

impl CallSignal {
    /// The S→C `call:signal` payload for the recipient, with `from` set to
    /// the authenticated sender.
    pub fn relay(self, from: impl Into<String>) -> CallSignalRelayed {
        CallSignalRelayed {
            call_id: self.call_id,
            signal: self.signal.relay(from),
        }
    }
}

/// S→C `call:signal {callId, signal}`, to the `to` participant's device (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSignalRelayed {
    /// The call.
    pub call_id: String,
    /// The relayed signal.
    pub signal: RelayedSignal,
}

/// C→S `call:toggle-audio` / `call:toggle-video {callId, enabled}` →
/// `{success}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallToggleMedia {
    /// The call.
    pub call_id: String,
    /// New state of the microphone or camera.
    pub enabled: bool,
}

/// C→S `call:toggle-audio {callId, enabled}` (§7).
pub type CallToggleAudio = CallToggleMedia;
/// C→S `call:toggle-video {callId, enabled}` (§7).
pub type CallToggleVideo = CallToggleMedia;

/// C→S `call:force-leave {conversationId}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallForceLeave {
    /// The conversation whose live calls the sender leaves.
    pub conversation_id: String,
}

/// Response fields of `call:force-leave`: `{endedCallIds}` (§7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallForceLeaveResponse {
    /// Calls that ended because they were left empty or were zombies.
    pub ended_call_ids: Vec<String>,
}

/// C→S `call:quality {callId, stats}` → `{success}` (§7). `stats` must be a
/// JSON object (at most 4 KB, checked by the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallQuality {
    /// The call.
    pub call_id: String,
    /// Client statistics, opaque to the server.
    pub stats: Map<String, Value>,
}

/// `{success}`-only responses of this section (`call:leave`,
/// `call:signal`, the toggles, `call:connected`, `call:quality`).
pub type CallOk = Empty;

/// S→C `call:initiated {callId, conversationId, type, mode, initiator,
/// participants}`, to the conversation's members (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallInitiated {
    /// The call.
    pub call_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Audio or video.
    #[serde(rename = "type")]
    pub call_type: CallType,
    /// P2P at first.
    pub mode: CallMode,
    /// The initiator's user id.
    pub initiator: String,
    /// Current participants (the initiator).
    pub participants: Vec<CallParticipant>,
}

/// S→C `call:participant-joined {callId, participant, mode, iceServers}`;
/// each recipient gets its own `iceServers` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipantJoined {
    /// The call.
    pub call_id: String,
    /// Who joined.
    pub participant: CallParticipant,
    /// Current mode.
    pub mode: CallMode,
    /// ICE servers for the recipient.
    pub ice_servers: Vec<IceServer>,
}

/// S→C `call:participant-left {callId, participantId, userId?,
/// anonymousId?}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipantLeft {
    /// The call.
    pub call_id: String,
    /// The participant record.
    pub participant_id: String,
    /// The user, if authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The guest, if anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
}

/// S→C `call:participant-reconnecting {callId, userId}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipantReconnecting {
    /// The call.
    pub call_id: String,
    /// The participant whose socket dropped.
    pub user_id: String,
}

/// S→C `call:media-toggled {callId, participantId, userId, mediaType,
/// enabled}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallMediaToggled {
    /// The call.
    pub call_id: String,
    /// The participant record.
    pub participant_id: String,
    /// The user.
    pub user_id: String,
    /// Audio or video.
    pub media_type: MediaKind,
    /// New state.
    pub enabled: bool,
}

/// S→C `call:mode-changed {callId, mode: 'sfu', roomId}` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallModeChanged {
    /// The call.
    pub call_id: String,
    /// The new mode (always SFU today).
    pub mode: CallMode,
    /// The SFU room to join (§6, §8).
    pub room_id: String,
}

/// S→C `call:ended {callId, duration, endedBy, reason?}` (§7). The room
/// event `callEnded` of §6 is [`crate::rooms::RoomCallEnded`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEnded {
    /// The call.
    pub call_id: String,
    /// Whole seconds since the call connected (0 if it never did).
    pub duration: u64,
    /// The user who ended it, or a server marker when nobody did.
    pub ended_by: String,
    /// E.g. `"timeout"` when nobody joined within 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CallEnded {
    /// The `reason` when nobody joined in time (§7).
    pub const REASON_TIMEOUT: &'static str = "timeout";
}

/// S→C `call:error {code, message, callId?}`, sent to the sender whenever a
/// `call:*` ack is a failure (§3, §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallError {
    /// Same code as the ack.
    pub code: ErrorCode,
    /// Same message as the ack's `error`.
    pub message: String,
    /// The call concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

impl CallError {
    /// The `call:error` matching a failed ack.
    pub fn from_ack(err: &AckError, call_id: Option<String>) -> Self {
        Self {
            code: err.code,
            message: err.error.clone(),
            call_id,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample_call_json() -> Value {
        json!({
            "id": "call-1",
            "conversationId": "conv-1",
            "type": "video",
            "mode": "p2p",
            "status": "ended",
            "initiator": "u1",
            "startedAt": 1000,
            "answeredAt": 2000,
            "connectedAt": 2500,
            "endedAt": 62500,
            "duration": 60,
            "outcome": "completed",
            "participants": [{
                "id": "p1", "callSessionId": "call-1", "userId": "u1",
                "role": "initiator", "joinedAt": 1000, "leftAt": 62500,
                "isAudioEnabled": true, "isVideoEnabled": true
            }, {
                "id": "p2", "callSessionId": "call-1", "anonymousId": "guest-7",
                "role": "participant", "joinedAt": 2000,
                "isAudioEnabled": true, "isVideoEnabled": false
            }]
        })
    }

    #[test]
    fn call_session_round_trip() {
        let value = sample_call_json();
        let call: CallSession = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(call.call_type, CallType::Video);
        assert_eq!(call.mode, CallMode::P2p);
        assert_eq!(call.outcome, Some(CallOutcome::Completed));
        assert_eq!(call.participants[1].user_id, None);
        assert_eq!(
            call.participants[1].anonymous_id.as_deref(),
            Some("guest-7")
        );
        assert_eq!(serde_json::to_value(&call).unwrap(), value);

        let mut bad = value;
        bad["duration"] = json!("60");
        assert!(serde_json::from_value::<CallSession>(bad).is_err());
    }

    #[test]
    fn enum_strings() {
        assert_eq!(
            serde_json::to_value(SignalType::IceCandidate).unwrap(),
            json!("ice-candidate")
        );
        assert!(serde_json::from_value::<SignalType>(json!("ice_candidate")).is_err());
        assert_eq!(serde_json::to_value(CallMode::P2p).unwrap(), json!("p2p"));
        assert_eq!(serde_json::to_value(CallMode::Sfu).unwrap(), json!("sfu"));
        assert_eq!(
            "ringing".parse::<CallStatus>().unwrap(),
            CallStatus::Ringing
        );
        assert_eq!(CallOutcome::Missed.as_str(), "missed");
        assert!(serde_json::from_value::<CallType>(json!("screen")).is_err());
    }

    #[test]
    fn initiate_and_join() {
        let req: CallInitiate = serde_json::from_value(json!({
            "conversationId": "conv-1", "type": "video", "settings": {"resolution": "720p"}
        }))
        .unwrap();
        assert_eq!(req.call_type, CallType::Video);
        assert_eq!(req.settings, Some(json!({"resolution": "720p"})));
        assert!(
            serde_json::from_value::<CallInitiate>(json!({"conversationId": "c", "type": "fax"}))
                .is_err()
        );

        let call: CallSession = serde_json::from_value(sample_call_json()).unwrap();
        let resp = CallInitiateResponse {
            call_id: call.id.clone(),
            call,
            ice_servers: vec![IceServer::new(["stun:stun.example.org:3478"])],
        };
        let acked = crate::ack_ok(&resp);
        assert_eq!(acked["success"], json!(true));
        assert_eq!(acked["callId"], json!("call-1"));
        assert_eq!(
            acked["iceServers"],
            json!([{"urls": ["stun:stun.example.org:3478"]}])
        );

        let join: CallJoin = serde_json::from_value(json!({"callId": "call-1"})).unwrap();
        assert_eq!(join.settings, None);
    }

    #[test]
    fn ice_server_urls() {
        let one: IceServer = serde_json::from_value(json!({
            "urls": "turn:turn.example.org:3478", "username": "1700000000:u1", "credential": "abc="
        }))
        .unwrap();
        assert_eq!(one.urls, ["turn:turn.example.org:3478"]);
        assert_eq!(
            serde_json::to_value(&one).unwrap(),
            json!({
                "urls": ["turn:turn.example.org:3478"],
                "username": "1700000000:u1",
                "credential": "abc="
            })
        );
        let many: IceServer =
            serde_json::from_value(json!({"urls": ["stun:a", "stun:b"]})).unwrap();
        assert_eq!(many.urls.len(), 2);
        assert!(serde_json::from_value::<IceServer>(json!({"urls": 3})).is_err());
        assert!(serde_json::from_value::<IceServer>(json!({"urls": [3]})).is_err());
        assert_eq!(
            IceServer::with_credentials(["turn:t"], "u", "c"),
            IceServer {
                urls: vec!["turn:t".into()],
                username: Some("u".into()),
                credential: Some("c".into()),
            }
        );
    }

    #[test]
    fn signal_relay() {
        // A client may include `from`; it is ignored and replaced.
        let req: CallSignal = serde_json::from_value(json!({
            "callId": "call-1",
            "signal": {"type": "offer", "from": "spoofed", "to": "u2", "sdp": "v=0..."}
        }))
        .unwrap();
        assert_eq!(req.signal.signal_type, SignalType::Offer);
        let relayed = req.relay("u1");
        assert_eq!(
            serde_json::to_value(&relayed).unwrap(),
            json!({
                "callId": "call-1",
                "signal": {"type": "offer", "from": "u1", "to": "u2", "sdp": "v=0..."}
            })
        );

        let candidate: CallSignal = serde_json::from_value(json!({
            "callId": "call-1",
            "signal": {
                "type": "ice-candidate", "to": "u1",
                "candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host", "sdpMid": "0"}
            }
        }))
        .unwrap();
        assert_eq!(candidate.signal.signal_type, SignalType::IceCandidate);
        assert!(candidate.signal.candidate.is_some());

        assert!(
            serde_json::from_value::<CallSignal>(
                json!({"callId": "call-1", "signal": {"type": "hello", "to": "u1"}})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<CallSignal>(json!({"callId": "call-1", "signal": "offer"}))
                .is_err()
        );
    }

    #[test]
    fn small_commands() {
        let toggle: CallToggleAudio =
            serde_json::from_value(json!({"callId": "call-1", "enabled": false})).unwrap();
        assert!(!toggle.enabled);
        assert!(
            serde_json::from_value::<CallToggleVideo>(json!({"callId": "call-1", "enabled": 0}))
                .is_err()
        );

        let leave: CallLeave = serde_json::from_value(json!({"callId": "call-1"})).unwrap();
        assert_eq!(leave.call_id, "call-1");

        let force: CallForceLeave =
            serde_json::from_value(json!({"conversationId": "conv-1"})).unwrap();
        assert_eq!(force.conversation_id, "conv-1");
        assert_eq!(
            crate::ack_ok(&CallForceLeaveResponse {
                ended_call_ids: vec!["call-1".into()]
            }),
            json!({"success": true, "endedCallIds": ["call-1"]})
        );

        let quality: CallQuality = serde_json::from_value(
            json!({"callId": "call-1", "stats": {"rtt": 42, "packetsLost": 0}}),
        )
        .unwrap();
        assert_eq!(quality.stats["rtt"], json!(42));
        assert!(
            serde_json::from_value::<CallQuality>(json!({"callId": "call-1", "stats": [1, 2]}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<CallQuality>(json!({"callId": "call-1", "stats": "good"}))
                .is_err()
        );
    }

    #[test]
    fn server_events() {
        let left = CallParticipantLeft {
            call_id: "call-1".into(),
            participant_id: "p2".into(),
            user_id: Some("u2".into()),
            anonymous_id: None,
        };
        assert_eq!(
            serde_json::to_value(&left).unwrap(),
            json!({"callId": "call-1", "participantId": "p2", "userId": "u2"})
        );

        let toggled = CallMediaToggled {
            call_id: "call-1".into(),
            participant_id: "p1".into(),
            user_id: "u1".into(),
            media_type: MediaKind::Audio,
            enabled: false,
        };
        assert_eq!(
            serde_json::to_value(&toggled).unwrap(),
            json!({
                "callId": "call-1", "participantId": "p1", "userId": "u1",
                "mediaType": "audio", "enabled": false
            })
        );

        let mode: CallModeChanged =
            serde_json::from_value(json!({"callId": "call-1", "mode": "sfu", "roomId": "r9"}))
                .unwrap();
        assert_eq!(mode.mode, CallMode::Sfu);

        let ended = CallEnded {
            call_id: "call-1".into(),
            duration: 0,
            ended_by: "system".into(),
            reason: Some(CallEnded::REASON_TIMEOUT.into()),
        };
        assert_eq!(
            serde_json::to_value(&ended).unwrap(),
            json!({"callId": "call-1", "duration": 0, "endedBy": "system", "reason": "timeout"})
        );

        let err = CallError::from_ack(
            &AckError::from(ErrorCode::CallAlreadyActive),
            Some("call-0".into()),
        );
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({
                "code": "CALL_ALREADY_ACTIVE",
                "message": "a call is already active in this conversation",
                "callId": "call-0"
            })
        );

        let call: CallSession = serde_json::from_value(sample_call_json()).unwrap();
        let joined = CallParticipantJoined {
            call_id: "call-1".into(),
            participant: call.participants[1].clone(),
            mode: CallMode::P2p,
            ice_servers: vec![],
        };
        let value = serde_json::to_value(&joined).unwrap();
        assert_eq!(value["participant"]["anonymousId"], json!("guest-7"));
        assert_eq!(value["iceServers"], json!([]));
    }
}
