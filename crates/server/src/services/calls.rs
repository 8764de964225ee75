//! Direct calls: the ringing flow of protocol §5 (seed 002's `CallManager`, seed 000's
//! `CallRequestManager`) and the call history API (§10, §12).
//!
//! # State
//! - `keys::call_request(callId)`: the request record ([`CallRequest`]), written only through
//!   [`update_record`] with the pure transitions of `switchboard_domain::calls`, so exactly
//!   one of accept / reject / cancel / timeout wins on every instance. It is created with the
//!   request TTL (60 s) and keeps what is left of it after a decision, so a pending request
//!   never outlives its TTL even if every server dies, and a late loser still reads the
//!   winner's state (`CONFLICT`, not `NOT_FOUND`).
//! - `keys::user_calls(userId)`: the ids of the requests a user placed or is rung by (seed
//!   000's lookups by caller and callee); entries whose record is gone are pruned on read.
//! - The user's call slot (`services::call_state`): both sides are engaged `Ringing` while
//!   pending, which is what makes a third call `BUSY`; accepting swaps the slots to the room
//!   (`rooms::open_direct`), every other outcome releases them.
//! - The ring timeout is a deadline-queue timer (`ring:{callId}`, kind [`RING_TIMER`]), fired
//!   once across instances; its handler is another CAS, so it is idempotent as well.
//! - The database: the call session (id = callId, kind `direct`) is inserted when the call is
//!   placed (the insert is also the authoritative "callId never reused" check, valid long
//!   after the record expired) and finished exactly once with the ring outcome (`rejected`,
//!   `cancelled`, `missed`), or by the room once an accepted call ends (`completed`).

use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchboard_db::{CallKind, CallMode, CallOutcome, CallSession, CallStatus, DbError};
use switchboard_db::{FinishCall, MediaType, NewCallSession};
use switchboard_domain::DomainError;
use switchboard_domain::calls::{self, CallRequest, NewCall};
use switchboard_protocol::StatusMessage;
use switchboard_protocol::calls::{
    AcceptCallNewResponse, CallAcceptedNew, CallCancelled, CallCancelledReason, CallRef,
    CallRejectedNew, CallRequestsResponse, CallUserResponse, Delivery, IncomingCallNew,
};
use switchboard_protocol::events;
use switchboard_store::{Timer, Transition, UpdateError, keys, update_record};

use crate::app::App;
use crate::error::{AppError, AppResult};
use crate::outbox::rooms as to;
use crate::services::call_state::{self, Engagement};
use crate::services::notifications::{self, NewNotice, Priority};
use crate::services::rooms::{self, Party};
use crate::services::{rate_limit, sessions, users};

/// The deadline-queue kind of ring timeouts.
pub const RING_TIMER: &str = "ring_timeout";
/// The rate-limit action of call attempts (shared with `call:initiate`).
pub const CALL_ACTION: &str = "call";
/// Why the server cancels a ring whose caller's device went away.
pub const CALLER_DISCONNECTED: &str = "caller_disconnected";

/// Who is acting: the authenticated user on one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub device_id: &'a str,
    pub socket_id: &'a str,
}

/// A ring timer's payload: enough to finish the call even when its record has expired
/// (every instance was down past the TTL).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RingTimeout {
    call_id: String,
    from: String,
    from_name: String,
    from_device: String,
    to: String,
}

fn ttl(ms: u64) -> Duration {
    Duration::from_millis(ms.max(1))
}

fn ring_timeout_ms(app: &App) -> u64 {
    app.settings.timers.ring_timeout_secs.max(1) * 1000
}

fn request_ttl_ms(app: &App) -> u64 {
    app.settings.timers.call_request_ttl_secs.max(1) * 1000
}

fn update_error(e: UpdateError<DomainError>) -> AppError {
    match e {
        UpdateError::Rejected(d) => AppError::Domain(d),
        UpdateError::Store(s) => AppError::Store(s),
    }
}

fn busy(message: &str) -> AppError {
    AppError::Domain(DomainError::Busy(message.into()))
}

fn ringing(call_id: &str) -> Engagement {
    Engagement::Ringing {
        call_id: call_id.to_string(),
    }
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// `callUser {callId, targetUserId}`.
#[tracing::instrument(skip(app, caller), fields(user_id = %caller.user_id))]
pub async fn call_user(
    app: &App,
    caller: &Actor<'_>,
    call_id: &str,
    target: &str,
) -> AppResult<CallUserResponse> {
    calls::check_call(caller.user_id, target)?;
    if uuid::Uuid::parse_str(call_id).is_err() {
        return Err(AppError::invalid("callId must be a UUID"));
    }
    rate_limit::check(
        app,
        caller.user_id,
        CALL_ACTION,
        app.settings.rate_limits.call,
    )
    .await?;
    if app.store.get(&keys::call_request(call_id)).await?.is_some() {
        return Err(DomainError::Conflict("this callId is already in use".into()).into());
    }

    // Who can be rung, and how (§5): a connected device rings; no connected device but a
    // live device session gets a push; nothing at all is OFFLINE.
    let now = app.now();
    let users_asked = [caller.user_id.to_string(), target.to_string()];
    let presence = app.store.presence_get(&users_asked, now).await?;
    let in_call = |i: usize| {
        presence
            .get(i)
            .and_then(Option::as_ref)
            .is_some_and(|p| p.in_call)
    };
    let target_online = presence
        .get(1)
        .and_then(Option::as_ref)
        .is_some_and(|p| p.is_online());
    let delivery = if target_online {
        Delivery::Ringing
    } else if !sessions::list(app, target).await?.is_empty() {
        Delivery::Push
    } else {
        return Err(AppError::Domain(DomainError::Offline(
            "the user is offline".into(),
        )));
    };
    if in_call(0) {
        return Err(busy("you are already in a call"));
    }
    if in_call(1) {
        return Err(busy("the user is in another call"));
    }

    let target_name = users::get_many(app, &users_asked[1..])
        .await
        .ok()
        .and_then(|mut u| u.pop())
        .map_or_else(|| target.to_string(), |u| u.name);
    // The record comes first, so that the slots claimed next always point at an existing
    // ring (a slot whose ring has no record counts as stale and could be taken).
    let new = NewCall {
        call_id,
        from: caller.user_id,
        from_name: caller.name,
        from_device: caller.device_id,
        from_socket: caller.socket_id,
        to: target,
        to_name: &target_name,
    };
    let (ring_ms, ttl_ms) = (ring_timeout_ms(app), request_ttl_ms(app));
    let req = update_record(app.store.as_ref(), &keys::call_request(call_id), |cur| {
        calls::place(cur, &new, now, ring_ms, ttl_ms)
            .map(|req| Transition::Write(req, Some(ttl(ttl_ms))))
    })
    .await
    .map_err(update_error)?
    .ok_or_else(|| AppError::Internal("the request was not written".into()))?;

    // Both slots, or neither: a user is in at most one call, room or ring.
    let ring = ringing(call_id);
    let refused = match call_state::engage(app, caller.user_id, ring.clone()).await {
        Ok(Ok(())) => match call_state::engage(app, target, ring.clone()).await {
            Ok(Ok(())) => None,
            Ok(Err(_)) => Some(busy("the user is in another call")),
            Err(e) => Some(e),
        },
        Ok(Err(_)) => Some(busy("you are already in a call")),
        Err(e) => Some(e),
    };
    // The history record doubles as the lasting claim on the call id (the request record
    // is gone after its TTL).
    let refused = match refused {
        Some(e) => Some(e),
        None => {
            let session = NewCallSession {
                id: call_id.to_string(),
                kind: CallKind::Direct,
                conversation_id: None,
                room_id: None,
                media_type: MediaType::Audio,
                mode: CallMode::Sfu,
                status: CallStatus::Ringing,
                initiator_id: caller.user_id.to_string(),
                started_at: now,
                invitees: vec![target.to_string()],
                metadata: None,
            };
            match app.db.insert_call_session(&session).await {
                Ok(_) => None,
                Err(DbError::Conflict(_)) => {
                    Some(DomainError::Conflict("this callId is already in use".into()).into())
                }
                Err(other) => Some(other.into()),
            }
        }
    };
    if let Some(e) = refused {
        // Nothing rang: take the request back whole, so the id stays unused.
        release_slots(app, &[caller.user_id, target], call_id).await;
        let _ = update_record::<_, CallRequest, DomainError, _>(
            app.store.as_ref(),
            &keys::call_request(call_id),
            |_| Ok(Transition::Delete),
        )
        .await;
        return Err(e);
    }
    let scheduled = schedule_ring_timeout(app, &req).await;
    let indexed = app
        .store
        .index_add(
            &keys::user_calls(caller.user_id),
            &[call_id.to_string()],
            None,
        )
        .await;
    let indexed_callee = app
        .store
        .index_add(&keys::user_calls(target), &[call_id.to_string()], None)
        .await;
    if let Some(e) = [scheduled, indexed, indexed_callee]
        .into_iter()
        .find_map(Result::err)
    {
        // Without its timer the call could ring for ever: take it back.
        let _ = cancel_with(app, caller.user_id, call_id, Some("failed")).await;
        return Err(e.into());
    }

    let incoming = json(&IncomingCallNew {
        call_id: call_id.to_string(),
        from: caller.user_id.to_string(),
        from_name: caller.name.to_string(),
    });
    match delivery {
        Delivery::Ringing => {
            app.outbox
                .emit(to::user(target), events::INCOMING_CALL_NEW, incoming)
                .await
        }
        Delivery::Push => {
            let notice = NewNotice {
                user_id: target.to_string(),
                kind: "incoming_call".into(),
                title: format!("{} is calling", caller.name),
                body: "Incoming call".into(),
                data: incoming,
                priority: Priority::High,
            };
            if let Err(error) = notifications::notify(app, notice).await {
                tracing::warn!(%call_id, %error, "could not queue the incoming-call push");
            }
        }
    }
    tracing::info!(%call_id, %target, ?delivery, "ringing");
    Ok(CallUserResponse {
        delivery: Some(delivery),
    })
}

async fn schedule_ring_timeout(
    app: &App,
    req: &CallRequest,
) -> Result<(), switchboard_store::StoreError> {
    let payload = serde_json::to_string(&RingTimeout {
        call_id: req.call_id.clone(),
        from: req.from.clone(),
        from_name: req.from_name.clone(),
        from_device: req.from_device.clone(),
        to: req.to.clone(),
    })
    .unwrap_or_default();
    app.store
        .timer_schedule(&Timer {
            id: calls::ring_timer_id(&req.call_id),
            kind: RING_TIMER.to_string(),
            payload,
            due_at: req.ring_deadline,
        })
        .await
}

/// Applies a transition to a request, keeping what is left of its TTL.
async fn transition(
    app: &App,
    call_id: &str,
    step: impl Fn(Option<CallRequest>) -> Result<CallRequest, DomainError>,
) -> AppResult<CallRequest> {
    let now = app.now();
    update_record(app.store.as_ref(), &keys::call_request(call_id), |cur| {
        step(cur).map(|req| {
            let left = req.ttl_left(now);
            Transition::Write(req, Some(ttl(left)))
        })
    })
    .await
    .map_err(update_error)?
    .ok_or_else(|| AppError::Internal("the request was not written".into()))
}

/// Frees the ringing slots of `users` for `call_id` (never a slot that moved on).
async fn release_slots(app: &App, users: &[&str], call_id: &str) {
    let ring = ringing(call_id);
    for user in users {
        if let Err(error) = call_state::release(app, user, &ring).await {
            tracing::warn!(%call_id, user_id = %user, %error, "could not release the call slot");
        }
    }
}

/// Writes the ring outcome to history, once (a second finisher loses quietly).
async fn finish_history(
    app: &App,
    call_id: &str,
    outcome: CallOutcome,
    ended_by: Option<&str>,
    reason: Option<&str>,
) -> bool {
    let finish = FinishCall {
        ended_at: app.now(),
        outcome,
        duration_secs: None,
        end_reason: reason.map(str::to_string),
        ended_by: ended_by.map(str::to_string),
    };
    match app.db.finish_call_session(call_id, &finish).await {
        Ok(_) => true,
        Err(DbError::Conflict(_)) | Err(DbError::NotFound) => false,
        Err(error) => {
            tracing::warn!(%call_id, %error, "could not write the call to history");
            false
        }
    }
}

/// After a decision other than accept: the timer, the slots, the indexes and history.
async fn settle(app: &App, req: &CallRequest, outcome: CallOutcome, ended_by: Option<&str>) {
    if let Err(error) = app
        .store
        .timer_cancel(&calls::ring_timer_id(&req.call_id))
        .await
    {
        tracing::warn!(call_id = %req.call_id, %error, "could not cancel the ring timer");
    }
    release_slots(app, &[&req.from, &req.to], &req.call_id).await;
    for user in [&req.from, &req.to] {
        let _ = app
            .store
            .index_remove(&keys::user_calls(user), std::slice::from_ref(&req.call_id))
            .await;
    }
    finish_history(app, &req.call_id, outcome, ended_by, req.reason.as_deref()).await;
}

/// `acceptCallNew {callId}`: the callee, on the device that answers.
#[tracing::instrument(skip(app, callee), fields(user_id = %callee.user_id))]
pub async fn accept(
    app: &App,
    callee: &Actor<'_>,
    call_id: &str,
) -> AppResult<AcceptCallNewResponse> {
    let now = app.now();
    let req = transition(app, call_id, |cur| {
        calls::accept(cur, callee.user_id, callee.device_id, now)
    })
    .await?;
    if let Err(error) = app.store.timer_cancel(&calls::ring_timer_id(call_id)).await {
        tracing::warn!(%call_id, %error, "could not cancel the ring timer");
    }
    for user in [&req.from, &req.to] {
        let _ = app
            .store
            .index_remove(&keys::user_calls(user), &[call_id.to_string()])
            .await;
    }
    let caller = Party {
        user_id: req.from.clone(),
        name: req.from_name.clone(),
        socket_id: req.from_socket.clone(),
        device_id: req.from_device.clone(),
    };
    let answering = Party {
        user_id: callee.user_id.to_string(),
        name: callee.name.to_string(),
        socket_id: callee.socket_id.to_string(),
        device_id: callee.device_id.to_string(),
    };
    let room = match rooms::open_direct(app, call_id, caller, answering).await {
        Ok(room) => room,
        Err(error) => {
            // The call cannot go on: free both sides and tell the caller it failed.
            tracing::warn!(%call_id, %error, "could not open the direct room");
            release_slots(app, &[&req.from, &req.to], call_id).await;
            finish_history(app, call_id, CallOutcome::Failed, None, Some("failed")).await;
            app.outbox
                .emit(
                    to::device(&req.from, &req.from_device),
                    events::CALL_REJECTED_NEW,
                    json(&CallRejectedNew {
                        call_id: call_id.to_string(),
                        reason: "failed".into(),
                    }),
                )
                .await;
            return Err(error);
        }
    };
    let room_id = room.room_id.clone();
    if let Err(error) = transition(app, call_id, |cur| calls::attach_room(cur, &room_id)).await {
        tracing::debug!(%call_id, %error, "could not note the room on the request");
    }
    app.outbox
        .emit(
            to::device(&req.from, &req.from_device),
            events::CALL_ACCEPTED_NEW,
            json(&CallAcceptedNew {
                call_id: call_id.to_string(),
                room_id: room_id.clone(),
                room: room.clone(),
            }),
        )
        .await;
    app.outbox
        .emit_except(
            vec![to::user(callee.user_id)],
            to::device(callee.user_id, callee.device_id),
            events::CALL_CANCELLED,
            json(&CallCancelled {
                call_id: call_id.to_string(),
                reason: Some(CallCancelledReason::AnsweredElsewhere),
            }),
        )
        .await;
    tracing::info!(%call_id, %room_id, "accepted");
    Ok(AcceptCallNewResponse { room_id, room })
}

/// `rejectCallNew {callId, reason?}`: the callee declines.
#[tracing::instrument(skip(app, callee), fields(user_id = %callee.user_id))]
pub async fn reject(
    app: &App,
    callee: &Actor<'_>,
    call_id: &str,
    reason: Option<&str>,
) -> AppResult<StatusMessage> {
    let now = app.now();
    let req = transition(app, call_id, |cur| {
        calls::reject(cur, callee.user_id, callee.device_id, reason, now)
    })
    .await?;
    settle(app, &req, CallOutcome::Rejected, Some(callee.user_id)).await;
    app.outbox
        .emit(
            to::device(&req.from, &req.from_device),
            events::CALL_REJECTED_NEW,
            json(&CallRejectedNew {
                call_id: call_id.to_string(),
                reason: req
                    .reason
                    .clone()
                    .unwrap_or_else(|| calls::DEFAULT_REJECT_REASON.into()),
            }),
        )
        .await;
    app.outbox
        .emit_except(
            vec![to::user(callee.user_id)],
            to::device(callee.user_id, callee.device_id),
            events::CALL_CANCELLED,
            json(&CallCancelled {
                call_id: call_id.to_string(),
                reason: Some(CallCancelledReason::RejectedElsewhere),
            }),
        )
        .await;
    Ok(StatusMessage::new("call rejected"))
}

/// `cancelCall {callId}`: the caller hangs up before an answer.
#[tracing::instrument(skip(app))]
pub async fn cancel(app: &App, user_id: &str, call_id: &str) -> AppResult<StatusMessage> {
    cancel_with(app, user_id, call_id, None).await?;
    Ok(StatusMessage::new("call cancelled"))
}

async fn cancel_with(
    app: &App,
    user_id: &str,
    call_id: &str,
    reason: Option<&str>,
) -> AppResult<CallRequest> {
    let now = app.now();
    let req = transition(app, call_id, |cur| calls::cancel(cur, user_id, reason, now)).await?;
    settle(app, &req, CallOutcome::Cancelled, Some(user_id)).await;
    app.outbox
        .emit(
            to::user(&req.to),
            events::CALL_CANCELLED,
            json(&CallCancelled {
                call_id: call_id.to_string(),
                reason: None,
            }),
        )
        .await;
    Ok(req)
}

/// The ring timer fired (on exactly one instance): pending → timeout, `callTimeout` to both
/// sides, the missed call to history and a high-priority missed-call notification.
pub async fn ring_timed_out(app: &App, timer: &Timer) {
    let info: RingTimeout = match serde_json::from_str(&timer.payload) {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(id = %timer.id, %error, "unreadable ring timer");
            return;
        }
    };
    let call_id = info.call_id.as_str();
    let now = app.now();
    let decided = match transition(app, call_id, |cur| calls::time_out(cur, now)).await {
        Ok(req) => {
            settle(app, &req, CallOutcome::Missed, None).await;
            true
        }
        Err(AppError::Domain(DomainError::NotFound(_))) => {
            // The record outlived nobody (every instance was down past its TTL): the
            // history row decides, once, whether this call still needs its ending.
            release_slots(app, &[&info.from, &info.to], call_id).await;
            // Only a call still ringing in history was missed (an accepted one is the
            // room's to finish).
            match app.db.get_call_session(call_id).await {
                Ok(Some(call)) if call.status == CallStatus::Ringing => {
                    finish_history(app, call_id, CallOutcome::Missed, None, None).await
                }
                Ok(_) => false,
                Err(error) => {
                    tracing::warn!(%call_id, %error, "could not read the call's history row");
                    retry_later(app, timer, now).await;
                    false
                }
            }
        }
        Err(AppError::Domain(DomainError::Conflict(_))) => {
            // Either decided already, or this clock is behind the deadline: ring on.
            if let Ok(Some(record)) = app.store.get(&keys::call_request(call_id)).await
                && let Ok(req) = serde_json::from_str::<CallRequest>(&record.value)
                && req.is_pending()
                && let Err(error) = schedule_ring_timeout(app, &req).await
            {
                tracing::warn!(%call_id, %error, "could not re-arm the ring timer");
            }
            false
        }
        Err(error) => {
            // The lease runs out and another attempt follows.
            tracing::warn!(%call_id, %error, "ring timeout failed");
            retry_later(app, timer, now).await;
            false
        }
    };
    if !decided {
        return;
    }
    let payload = json(&CallRef {
        call_id: call_id.to_string(),
    });
    app.outbox
        .emit_to(
            vec![
                to::device(&info.from, &info.from_device),
                to::user(&info.to),
            ],
            events::CALL_TIMEOUT,
            payload,
        )
        .await;
    let notice = NewNotice {
        user_id: info.to.clone(),
        kind: "missed_call".into(),
        title: format!("Missed call from {}", info.from_name),
        body: "You missed a call".into(),
        data: serde_json::json!({ "callId": call_id, "from": info.from, "fromName": info.from_name }),
        priority: Priority::High,
    };
    if let Err(error) = notifications::notify(app, notice).await {
        tracing::warn!(%call_id, %error, "could not queue the missed-call notification");
    }
    tracing::info!(%call_id, "ring timed out");
}

/// Re-arms a ring timer whose handler hit a backend failure, a second from now (rescheduling
/// takes the claim away, so the runner's completion does not drop it).
async fn retry_later(app: &App, timer: &Timer, now: switchboard_domain::Millis) {
    let again = Timer {
        due_at: now + 1000,
        ..timer.clone()
    };
    if let Err(error) = app.store.timer_schedule(&again).await {
        tracing::warn!(id = %timer.id, %error, "could not re-arm the ring timer");
    }
}

/// The user's requests that are still ringing, read through the index (pruning entries
/// whose record is gone).
async fn live_requests(app: &App, user_id: &str) -> AppResult<Vec<CallRequest>> {
    let key = keys::user_calls(user_id);
    let ids = app.store.index_members(&key).await?;
    let now = app.now();
    let mut live = Vec::new();
    let mut gone = Vec::new();
    for id in ids {
        match app.store.get(&keys::call_request(&id)).await? {
            Some(record) => match serde_json::from_str::<CallRequest>(&record.value) {
                Ok(req) if req.ringing_at(now) => live.push(req),
                Ok(req) if !req.is_pending() => gone.push(id),
                Ok(_) => {}
                Err(error) => tracing::warn!(call_id = %id, %error, "unreadable call request"),
            },
            None => gone.push(id),
        }
    }
    if !gone.is_empty() {
        app.store.index_remove(&key, &gone).await?;
    }
    live.sort_by(|a, b| (a.timestamp, &a.call_id).cmp(&(b.timestamp, &b.call_id)));
    Ok(live)
}

/// `getCallRequests {}`: what rings the user and what the user is ringing.
pub async fn requests(app: &App, user_id: &str) -> AppResult<CallRequestsResponse> {
    let mut out = CallRequestsResponse::default();
    for req in live_requests(app, user_id).await? {
        if req.to == user_id {
            out.incoming.push(req.to_wire());
        } else {
            out.outgoing.push(req.to_wire());
        }
    }
    Ok(out)
}

/// A device connected: if the user is being rung, that device rings too (a phone woken by
/// the push can still answer).
pub async fn device_connected(app: &App, user_id: &str, device_id: &str) -> AppResult<()> {
    for req in live_requests(app, user_id).await? {
        if req.to == user_id {
            app.outbox
                .emit(
                    to::device(user_id, device_id),
                    events::INCOMING_CALL_NEW,
                    json(&IncomingCallNew {
                        call_id: req.call_id.clone(),
                        from: req.from.clone(),
                        from_name: req.from_name.clone(),
                    }),
                )
                .await;
        }
    }
    Ok(())
}

/// A device went away (its socket still held it): the rings it placed are cancelled
/// (seed 000's `cleanupUserCallState` for outgoing requests).
pub async fn device_disconnected(app: &App, user_id: &str, device_id: &str) -> AppResult<usize> {
    let mut cancelled = 0;
    for req in live_requests(app, user_id).await? {
        if req.from == user_id && req.from_device == device_id {
            match cancel_with(app, user_id, &req.call_id, Some(CALLER_DISCONNECTED)).await {
                Ok(_) => cancelled += 1,
                // Answered or timed out meanwhile: nothing to cancel.
                Err(AppError::Domain(_)) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(cancelled)
}

// --- History (§10, §12) ---------------------------------------------------------------

/// A database enum in its wire form (both spell the values the same way).
fn wire_enum<T: serde::de::DeserializeOwned>(value: &str) -> AppResult<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|e| AppError::Internal(format!("unexpected stored value {value}: {e}")))
}

/// The wire form of a history entry: the protocol's `CallSession` (§7 shape, used for every
/// kind of call), plus `kind` (`direct`, `room`, `conversation`), `endReason` and `endedBy`.
fn history_entry(call: CallSession) -> AppResult<serde_json::Value> {
    use switchboard_protocol::conversation_calls as wire;
    let participants = call
        .participants
        .iter()
        .map(|p| {
            Ok(wire::CallParticipant {
                id: p.id.clone(),
                call_session_id: p.call_id.clone(),
                user_id: p.user_id.clone(),
                anonymous_id: p.anonymous_id.clone(),
                role: wire_enum(p.role.as_str())?,
                joined_at: p.joined_at,
                left_at: p.left_at,
                is_audio_enabled: p.audio_enabled,
                is_video_enabled: p.video_enabled,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let session = wire::CallSession {
        id: call.id.clone(),
        conversation_id: call.conversation_id.clone(),
        call_type: wire_enum(call.media_type.as_str())?,
        mode: wire_enum(call.mode.as_str())?,
        status: wire_enum(call.status.as_str())?,
        initiator: call.initiator_id.clone(),
        room_id: call.room_id.clone(),
        started_at: call.started_at,
        answered_at: call.answered_at,
        connected_at: call.connected_at,
        ended_at: call.ended_at,
        duration: call.duration_secs.and_then(|d| u64::try_from(d).ok()),
        outcome: call.outcome.map(|o| wire_enum(o.as_str())).transpose()?,
        participants,
    };
    let mut value = json(&session);
    value["kind"] = call.kind.as_str().into();
    if let Some(reason) = call.end_reason {
        value["endReason"] = reason.into();
    }
    if let Some(by) = call.ended_by {
        value["endedBy"] = by.into();
    }
    Ok(value)
}

/// A page of a user's call history, newest first, and whether older calls exist.
pub async fn history(
    app: &App,
    user_id: &str,
    before: Option<&str>,
    limit: Option<u32>,
) -> AppResult<(Vec<serde_json::Value>, bool)> {
    app.settings.limits.check_id("userId", user_id)?;
    if let Some(before) = before {
        app.settings.limits.check_id("before", before)?;
    }
    if limit == Some(0) {
        return Err(AppError::invalid("limit must be at least 1"));
    }
    let (calls, has_more) = app
        .db
        .call_history_for_user(user_id, before, limit)
        .await
        .map_err(|e| match e {
            DbError::NotFound => AppError::not_found("unknown cursor: before"),
            other => other.into(),
        })?;
    let calls = calls
        .into_iter()
        .map(history_entry)
        .collect::<AppResult<Vec<_>>>()?;
    Ok((calls, has_more))
}

/// One call of the history.
pub async fn get(app: &App, call_id: &str) -> AppResult<serde_json::Value> {
    app.settings.limits.check_id("callId", call_id)?;
    let call = app
        .db
        .get_call_session(call_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such call"))?;
    history_entry(call)
}

/// The state of a request, for tests and the admin view.
pub async fn request(app: &App, call_id: &str) -> AppResult<Option<CallRequest>> {
    match app.store.get(&keys::call_request(call_id)).await? {
        Some(record) => Ok(serde_json::from_str(&record.value).ok()),
        None => Ok(None),
    }
}
