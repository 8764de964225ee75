//! The direct-call ringing state machine (protocol §5, seed 002's `CallManager`, seed 000's
//! `CallRequestManager`): `pending → accepted | rejected | cancelled | timeout`.
//!
//! Every transition is a pure function from the current record (`None` when the store has
//! none) to the next one. The services apply them with the store's compare-and-set, so of
//! two transitions racing on the same request exactly one is computed on `pending` and wins;
//! the other is recomputed on the winner's state and refused with `CONFLICT`. That is the
//! whole of seed 002's `transitionState(callId, expected, new)`, but it holds across
//! instances instead of inside one process.
//!
//! The ring deadline is part of the rules, not only of the timer: once `ring_deadline` has
//! passed, accept / reject / cancel are refused even if the timeout timer has not fired yet
//! (it may be a poll away, or its instance may have died), so "timeout while accepting" has
//! one answer whichever instance is faster.

use serde::{Deserialize, Serialize};
use switchboard_protocol::calls::{PendingCall, PendingCallState};

use crate::error::DomainError;
use crate::time::Millis;

/// A ringing request as the store keeps it: the wire `PendingCall` fields (so anything that
/// reads the record, e.g. the call-state slots' staleness check, sees `state`), plus what
/// the server needs to route events and enforce deadlines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRequest {
    pub call_id: String,
    pub state: PendingCallState,
    pub from: String,
    pub from_name: String,
    pub to: String,
    pub to_name: String,
    /// Creation time (ms), the wire `timestamp`.
    pub timestamp: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// The caller's device that placed the call: caller-side events go there only (§2).
    pub from_device: String,
    /// The caller's socket on that device (the direct room's participant entry needs it).
    pub from_socket: String,
    /// When nobody answered in time: `timestamp + ring timeout`.
    pub ring_deadline: Millis,
    /// When the record leaves the store: `timestamp + request TTL`.
    pub expires_at: Millis,
    /// The callee's device that answered (accepted or rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_device: Option<String>,
    /// When the request left `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Millis>,
    /// The callee's reason on reject, or why the server cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Who a request is being placed by and to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall<'a> {
    pub call_id: &'a str,
    pub from: &'a str,
    pub from_name: &'a str,
    pub from_device: &'a str,
    pub from_socket: &'a str,
    pub to: &'a str,
    pub to_name: &'a str,
}

impl CallRequest {
    pub fn is_pending(&self) -> bool {
        self.state == PendingCallState::Pending
    }

    /// The wire form (§5 `PendingCall`).
    pub fn to_wire(&self) -> PendingCall {
        PendingCall {
            call_id: self.call_id.clone(),
            state: self.state,
            from: self.from.clone(),
            from_name: self.from_name.clone(),
            to: self.to.clone(),
            to_name: self.to_name.clone(),
            timestamp: self.timestamp,
            room_id: self.room_id.clone(),
        }
    }

    /// Milliseconds the record has left to live at `now` (at least 1: a zero TTL would
    /// mean "never" to some backends).
    pub fn ttl_left(&self, now: Millis) -> u64 {
        u64::try_from(self.expires_at.saturating_sub(now))
            .unwrap_or(0)
            .max(1)
    }

    /// Whether a pending request should still be ringing at `now`.
    pub fn ringing_at(&self, now: Millis) -> bool {
        self.is_pending() && now < self.ring_deadline
    }
}

/// Checks a `callUser` before anything is stored: nobody calls themselves (§5:
/// `INVALID_PAYLOAD`).
pub fn check_call(from: &str, to: &str) -> Result<(), DomainError> {
    if from == to {
        return Err(DomainError::invalid("you cannot call yourself"));
    }
    Ok(())
}

/// The record a `callUser` creates. Refused with `CONFLICT` if the id is taken (a callId is
/// never reused, §5), whatever state the existing record is in.
pub fn place(
    current: Option<CallRequest>,
    call: &NewCall<'_>,
    now: Millis,
    ring_timeout_ms: u64,
    ttl_ms: u64,
) -> Result<CallRequest, DomainError> {
    if current.is_some() {
        return Err(DomainError::Conflict(
            "this callId is already in use".into(),
        ));
    }
    check_call(call.from, call.to)?;
    let ring = i64::try_from(ring_timeout_ms).unwrap_or(i64::MAX);
    // The request never outlives its TTL, and never stops ringing after it is gone.
    let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX).max(ring);
    Ok(CallRequest {
        call_id: call.call_id.to_string(),
        state: PendingCallState::Pending,
        from: call.from.to_string(),
        from_name: call.from_name.to_string(),
        to: call.to.to_string(),
        to_name: call.to_name.to_string(),
        timestamp: now,
        room_id: None,
        from_device: call.from_device.to_string(),
        from_socket: call.from_socket.to_string(),
        ring_deadline: now.saturating_add(ring),
        expires_at: now.saturating_add(ttl),
        answered_device: None,
        decided_at: None,
        reason: None,
    })
}

/// The common guard of every transition out of `pending`.
fn pending(current: Option<CallRequest>, now: Millis) -> Result<CallRequest, DomainError> {
    let Some(req) = current else {
        return Err(DomainError::NotFound("no such call".into()));
    };
    if !req.is_pending() {
        return Err(DomainError::Conflict(format!(
            "the call is already {}",
            req.state.as_str()
        )));
    }
    if now >= req.ring_deadline {
        return Err(DomainError::Conflict("the call timed out".into()));
    }
    Ok(req)
}

/// `acceptCallNew`: pending → accepted, by the callee only, from `device`.
pub fn accept(
    current: Option<CallRequest>,
    user_id: &str,
    device: &str,
    now: Millis,
) -> Result<CallRequest, DomainError> {
    let mut req = pending(current, now)?;
    if req.to != user_id {
        return Err(DomainError::Forbidden("only the callee can accept".into()));
    }
    req.state = PendingCallState::Accepted;
    req.answered_device = Some(device.to_string());
    req.decided_at = Some(now);
    Ok(req)
}

/// `rejectCallNew`: pending → rejected, by the callee only.
pub fn reject(
    current: Option<CallRequest>,
    user_id: &str,
    device: &str,
    reason: Option<&str>,
    now: Millis,
) -> Result<CallRequest, DomainError> {
    let mut req = pending(current, now)?;
    if req.to != user_id {
        return Err(DomainError::Forbidden("only the callee can reject".into()));
    }
    req.state = PendingCallState::Rejected;
    req.answered_device = Some(device.to_string());
    req.decided_at = Some(now);
    req.reason = Some(reason.unwrap_or(DEFAULT_REJECT_REASON).to_string());
    Ok(req)
}

/// The reason `callRejectedNew` carries when the callee gave none.
pub const DEFAULT_REJECT_REASON: &str = "declined";

/// `cancelCall` (or the caller's device disconnecting): pending → cancelled, by the caller
/// only. `reason` is the server's when it cancels on the caller's behalf.
pub fn cancel(
    current: Option<CallRequest>,
    user_id: &str,
    reason: Option<&str>,
    now: Millis,
) -> Result<CallRequest, DomainError> {
    let mut req = pending(current, now)?;
    if req.from != user_id {
        return Err(DomainError::Forbidden("only the caller can cancel".into()));
    }
    req.state = PendingCallState::Cancelled;
    req.decided_at = Some(now);
    req.reason = reason.map(str::to_string);
    Ok(req)
}

/// The ring timer: pending → timeout, only once the deadline has passed (a timer that fires
/// early, e.g. on a fast clock, changes nothing).
pub fn time_out(current: Option<CallRequest>, now: Millis) -> Result<CallRequest, DomainError> {
    let Some(mut req) = current else {
        return Err(DomainError::NotFound("no such call".into()));
    };
    if !req.is_pending() {
        return Err(DomainError::Conflict(format!(
            "the call is already {}",
            req.state.as_str()
        )));
    }
    if now < req.ring_deadline {
        return Err(DomainError::Conflict("the call is still ringing".into()));
    }
    req.state = PendingCallState::Timeout;
    req.decided_at = Some(now);
    Ok(req)
}

/// Records the direct room an accepted call became (so `getCallRequests` and late readers
/// see `roomId`). Only on an accepted request.
pub fn attach_room(
    current: Option<CallRequest>,
    room_id: &str,
) -> Result<CallRequest, DomainError> {
    match current {
        Some(mut req) if req.state == PendingCallState::Accepted => {
            req.room_id = Some(room_id.to_string());
            Ok(req)
        }
        Some(_) => Err(DomainError::Conflict("the call was not accepted".into())),
        None => Err(DomainError::NotFound("no such call".into())),
    }
}

/// The deadline-queue timer id of a call's ring timeout.
pub fn ring_timer_id(call_id: &str) -> String {
    format!("ring:{call_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_000_000;

    fn placed() -> CallRequest {
        place(
            None,
            &NewCall {
                call_id: "c1",
                from: "alice",
                from_name: "Alice",
                from_device: "a-phone",
                from_socket: "s1",
                to: "bob",
                to_name: "Bob",
            },
            T0,
            30_000,
            60_000,
        )
        .unwrap()
    }

    fn code(r: Result<CallRequest, DomainError>) -> &'static str {
        r.unwrap_err().code().as_str()
    }

    #[test]
    fn placing_sets_deadlines_and_refuses_reuse_and_self_calls() {
        let req = placed();
        assert_eq!(req.state, PendingCallState::Pending);
        assert_eq!(req.ring_deadline, T0 + 30_000);
        assert_eq!(req.expires_at, T0 + 60_000);
        assert!(req.ringing_at(T0 + 29_999));
        assert!(!req.ringing_at(T0 + 30_000));
        let again = place(
            Some(req.clone()),
            &NewCall {
                call_id: "c1",
                from: "carol",
                from_name: "Carol",
                from_device: "d",
                from_socket: "s",
                to: "dave",
                to_name: "Dave",
            },
            T0,
            30_000,
            60_000,
        );
        assert_eq!(code(again), "CONFLICT");
        assert_eq!(
            code(check_call("alice", "alice").map(|_| req)),
            "INVALID_PAYLOAD"
        );
    }

    #[test]
    fn a_ttl_shorter_than_the_ring_is_stretched_to_it() {
        let req = place(
            None,
            &NewCall {
                call_id: "c",
                from: "a",
                from_name: "A",
                from_device: "d",
                from_socket: "s",
                to: "b",
                to_name: "B",
            },
            T0,
            30_000,
            10_000,
        )
        .unwrap();
        assert_eq!(req.expires_at, req.ring_deadline);
    }

    #[test]
    fn only_the_callee_answers_and_only_the_caller_cancels() {
        let req = placed();
        assert_eq!(
            code(accept(Some(req.clone()), "alice", "d", T0)),
            "FORBIDDEN"
        );
        assert_eq!(
            code(reject(Some(req.clone()), "carol", "d", None, T0)),
            "FORBIDDEN"
        );
        assert_eq!(
            code(cancel(Some(req.clone()), "bob", None, T0)),
            "FORBIDDEN"
        );
        let accepted = accept(Some(req.clone()), "bob", "b-laptop", T0 + 5).unwrap();
        assert_eq!(accepted.state, PendingCallState::Accepted);
        assert_eq!(accepted.answered_device.as_deref(), Some("b-laptop"));
        let rejected = reject(Some(req.clone()), "bob", "b", None, T0).unwrap();
        assert_eq!(rejected.reason.as_deref(), Some(DEFAULT_REJECT_REASON));
        let cancelled = cancel(Some(req), "alice", None, T0).unwrap();
        assert_eq!(cancelled.state, PendingCallState::Cancelled);
    }

    #[test]
    fn exactly_one_transition_wins() {
        let req = placed();
        type Step = fn(Option<CallRequest>) -> Result<CallRequest, DomainError>;
        let winners: [Step; 4] = [
            |r| accept(r, "bob", "d", T0 + 1),
            |r| reject(r, "bob", "d", Some("busy"), T0 + 1),
            |r| cancel(r, "alice", None, T0 + 1),
            |r| time_out(r, T0 + 30_000),
        ];
        for win in &winners {
            let after = win(Some(req.clone())).unwrap();
            for lose in &winners {
                // Whatever comes second, including the same transition again (a retried
                // accept), is a lost race.
                assert_eq!(code(lose(Some(after.clone()))), "CONFLICT");
            }
        }
    }

    #[test]
    fn the_deadline_decides_timeout_against_a_late_answer() {
        let req = placed();
        assert_eq!(code(time_out(Some(req.clone()), T0 + 29_999)), "CONFLICT");
        assert_eq!(
            code(accept(Some(req.clone()), "bob", "d", T0 + 30_000)),
            "CONFLICT"
        );
        assert_eq!(
            code(cancel(Some(req.clone()), "alice", None, T0 + 30_000)),
            "CONFLICT"
        );
        let timed_out = time_out(Some(req), T0 + 30_000).unwrap();
        assert_eq!(timed_out.state, PendingCallState::Timeout);
        assert_eq!(code(time_out(Some(timed_out), T0 + 30_001)), "CONFLICT");
    }

    #[test]
    fn unknown_calls_are_not_found_and_rooms_attach_only_to_accepted_calls() {
        assert_eq!(code(accept(None, "bob", "d", T0)), "NOT_FOUND");
        assert_eq!(code(time_out(None, T0)), "NOT_FOUND");
        let req = placed();
        assert_eq!(code(attach_room(Some(req.clone()), "r")), "CONFLICT");
        let accepted = accept(Some(req), "bob", "d", T0).unwrap();
        assert_eq!(
            attach_room(Some(accepted), "r").unwrap().room_id.as_deref(),
            Some("r")
        );
    }

    #[test]
    fn the_record_carries_the_wire_fields() {
        let req = placed();
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["state"], "pending");
        assert_eq!(json["callId"], "c1");
        let wire = serde_json::to_value(req.to_wire()).unwrap();
        assert_eq!(wire["fromName"], "Alice");
        assert!(wire.get("fromDevice").is_none());
        assert_eq!(req.ttl_left(T0 + 59_000), 1_000);
        assert_eq!(req.ttl_left(T0 + 70_000), 1);
    }
}
