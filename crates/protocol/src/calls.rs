//! Direct calls and their ringing state machine (protocol.md §5, seed 002's
//! "new flow"): `callUser`, `acceptCallNew`, `rejectCallNew`, `cancelCall`,
//! `getCallRequests` and the events they cause.

use serde::{Deserialize, Serialize};

use crate::ack::{Empty, StatusMessage};
use crate::rooms::Room;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// The state of a ringing request (§5). `pending` moves to exactly one
    /// of the others, by compare-and-set.
    pub enum PendingCallState {
        /// Ringing.
        Pending = "pending",
        /// The callee accepted; a direct room exists.
        Accepted = "accepted",
        /// The callee declined.
        Rejected = "rejected",
        /// The caller hung up first.
        Cancelled = "cancelled",
        /// Nobody answered in time.
        Timeout = "timeout",
    }
}

/// A ringing request: `{callId, state, from, fromName, to, toName,
/// timestamp, roomId?}` (§5, seed 002 `PendingCall`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingCall {
    /// Chosen by the caller.
    pub call_id: String,
    /// Current state.
    pub state: PendingCallState,
    /// Caller user id.
    pub from: String,
    /// Caller display name.
    pub from_name: String,
    /// Callee user id.
    pub to: String,
    /// Callee display name.
    pub to_name: String,
    /// Creation time (ms).
    pub timestamp: i64,
    /// The direct room, once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
}

/// `{callId}`: the payload of `acceptCallNew`, `cancelCall` and
/// `callTimeout` (§5), and of several `call:*` events (§7).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRef {
    /// The call.
    pub call_id: String,
}

/// C→S `callUser {callId, targetUserId}` (§5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallUser {
    /// A UUID chosen by the caller; reusing one answers `CONFLICT`.
    pub call_id: String,
    /// The user to ring.
    pub target_user_id: String,
}

wire_enum! {
    /// How the callee is being rung (§5).
    pub enum Delivery {
        /// At least one device is connected and got `incomingCallNew`.
        Ringing = "ringing",
        /// No device is connected but a known session exists: a push
        /// notification was sent.
        Push = "push",
    }
}

/// Response fields of a successful `callUser`: `{delivery?}` (§5).
///
/// Failures (`OFFLINE`, `BUSY` with `canRetry`, `CONFLICT`,
/// `INVALID_PAYLOAD`) are [`crate::AckError`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallUserResponse {
    /// How the callee is being rung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// C→S `acceptCallNew {callId}` (§5).
pub type AcceptCallNew = CallRef;

/// Response fields of `acceptCallNew`: `{roomId, room}` (§5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptCallNewResponse {
    /// The new direct room.
    pub room_id: String,
    /// Its full state.
    pub room: Room,
}

/// C→S `rejectCallNew {callId, reason?}` (§5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectCallNew {
    /// The call to decline.
    pub call_id: String,
    /// Free text passed on to the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Response fields of `rejectCallNew`: `{message}` (§5).
pub type RejectCallNewResponse = StatusMessage;

/// C→S `cancelCall {callId}` (§5).
pub type CancelCall = CallRef;

/// Response fields of `cancelCall`: `{message}` (§5).
pub type CancelCallResponse = StatusMessage;

/// C→S `getCallRequests {}` (§5).
pub type GetCallRequests = Empty;

/// Response fields of `getCallRequests`: `{incoming, outgoing}` (§5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRequestsResponse {
    /// Requests ringing the caller.
    pub incoming: Vec<PendingCall>,
    /// Requests the caller placed.
    pub outgoing: Vec<PendingCall>,
}

/// S→C `incomingCallNew {callId, from, fromName}` (§5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncomingCallNew {
    /// The call.
    pub call_id: String,
    /// Caller user id.
    pub from: String,
    /// Caller display name.
    pub from_name: String,
}

/// S→C `callAcceptedNew {callId, roomId, room}`, to the caller's calling
/// device (§5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallAcceptedNew {
    /// The call.
    pub call_id: String,
    /// The new direct room.
    pub room_id: String,
    /// Its full state.
    pub room: Room,
}

/// S→C `callRejectedNew {callId, reason}` (§5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRejectedNew {
    /// The call.
    pub call_id: String,
    /// The callee's reason, or a default when they gave none.
    pub reason: String,
}

wire_enum! {
    /// Why the callee's devices stop ringing, in `callCancelled` (§5).
    /// Absent when the caller cancelled.
    pub enum CallCancelledReason {
        /// Another device of the callee answered (§5).
        AnsweredElsewhere = "answered_elsewhere",
        /// Another device of the callee declined. Not named by protocol.md;
        /// this crate's choice for that case.
        RejectedElsewhere = "rejected_elsewhere",
    }
}

/// S→C `callCancelled {callId, reason?}`, to the callee's devices (§5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCancelled {
    /// The call.
    pub call_id: String,
    /// Absent when the caller cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CallCancelledReason>,
}

/// S→C `callTimeout {callId}`, to both sides (§5).
pub type CallTimeout = CallRef;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_user_round_trip() {
        let value = json!({"callId": "c1", "targetUserId": "u2"});
        let req: CallUser = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(req.call_id, "c1");
        assert_eq!(req.target_user_id, "u2");
        assert_eq!(serde_json::to_value(&req).unwrap(), value);

        // Extra fields are tolerated, wrong types and missing fields are not.
        assert!(
            serde_json::from_value::<CallUser>(
                json!({"callId": "c1", "targetUserId": "u2", "extra": true})
            )
            .is_ok()
        );
        assert!(
            serde_json::from_value::<CallUser>(json!({"callId": 1, "targetUserId": "u2"})).is_err()
        );
        assert!(serde_json::from_value::<CallUser>(json!({"callId": "c1"})).is_err());
        assert!(serde_json::from_value::<CallUser>(json!(null)).is_err());
    }

    #[test]
    fn call_user_responses() {
        assert_eq!(
            crate::ack_ok(&CallUserResponse {
                delivery: Some(Delivery::Push)
            }),
            json!({"success": true, "delivery": "push"})
        );
        assert_eq!(
            crate::ack_ok(&CallUserResponse::default()),
            json!({"success": true})
        );
        let offline =
            crate::AckError::new(crate::ErrorCode::Offline, "user is offline").with_can_retry(true);
        assert_eq!(
            offline.to_value(),
            json!({"success": false, "error": "user is offline", "code": "OFFLINE", "canRetry": true})
        );
    }

    #[test]
    fn reject_and_cancel() {
        let reject: RejectCallNew =
            serde_json::from_value(json!({"callId": "c1", "reason": "in a meeting"})).unwrap();
        assert_eq!(reject.reason.as_deref(), Some("in a meeting"));
        let bare: RejectCallNew = serde_json::from_value(json!({"callId": "c1"})).unwrap();
        assert_eq!(bare.reason, None);
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            json!({"callId": "c1"})
        );

        let cancel: CancelCall = serde_json::from_value(json!({"callId": "c1"})).unwrap();
        assert_eq!(cancel.call_id, "c1");
        assert_eq!(
            crate::ack_ok(&CancelCallResponse::new("call cancelled")),
            json!({"success": true, "message": "call cancelled"})
        );

        let elsewhere = CallCancelled {
            call_id: "c1".into(),
            reason: Some(CallCancelledReason::AnsweredElsewhere),
        };
        assert_eq!(
            serde_json::to_value(&elsewhere).unwrap(),
            json!({"callId": "c1", "reason": "answered_elsewhere"})
        );
        let plain: CallCancelled = serde_json::from_value(json!({"callId": "c1"})).unwrap();
        assert_eq!(plain.reason, None);
    }

    #[test]
    fn pending_call_and_requests() {
        let value = json!({
            "callId": "c1", "state": "pending", "from": "u1", "fromName": "Ann",
            "to": "u2", "toName": "Bob", "timestamp": 1700000000000_i64
        });
        let call: PendingCall = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(call.state, PendingCallState::Pending);
        assert_eq!(call.room_id, None);
        assert_eq!(serde_json::to_value(&call).unwrap(), value);
        assert!(serde_json::from_value::<PendingCallState>(json!("ringing")).is_err());

        let resp = CallRequestsResponse {
            incoming: vec![call],
            outgoing: vec![],
        };
        let acked = crate::ack_ok(&resp);
        assert_eq!(acked["success"], json!(true));
        assert_eq!(acked["incoming"][0]["fromName"], json!("Ann"));
        assert_eq!(acked["outgoing"], json!([]));
    }

    #[test]
    fn server_events() {
        let incoming = IncomingCallNew {
            call_id: "c1".into(),
            from: "u1".into(),
            from_name: "Ann".into(),
        };
        assert_eq!(
            serde_json::to_value(&incoming).unwrap(),
            json!({"callId": "c1", "from": "u1", "fromName": "Ann"})
        );
        let rejected: CallRejectedNew =
            serde_json::from_value(json!({"callId": "c1", "reason": "declined"})).unwrap();
        assert_eq!(rejected.reason, "declined");
        let timeout: CallTimeout = serde_json::from_value(json!({"callId": "c1"})).unwrap();
        assert_eq!(timeout.call_id, "c1");
    }
}
