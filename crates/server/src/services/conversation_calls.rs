//! Conversation calls (protocol §7, seed 004's `CallService`): the driver around
//! `switchboard_domain::conversation_calls`.
//!
//! A call is one versioned record (`keys::conversation_call`) changed only by CAS
//! transitions, so two instances racing on it (a leave and the timeout, two joins) agree on
//! one outcome, and the effects (events, history, timers) run once, after the winning write.
//! "One live call per conversation" is a second record, the conversation's live pointer
//! (`keys::conversation_live_call`), claimed with CAS once the new call's record exists; a
//! pointer at a zombie is cleaned up first (the call ends) and the claim retried.
//!
//! Timers are deadline-queue entries, fired once across instances: the ring timeout
//! ([`RING_TIMER`], nobody joined within `ring_timeout_secs`: missed), each dropped
//! participant's reconnect window ([`RECONNECT_TIMER`]) and the periodic zombie sweep
//! ([`SWEEP_TIMER`], every `zombie_cleanup_interval_secs`). Handlers carry the time they were
//! set for, so a stale timer finds nothing to do.
//!
//! Events about a call go to the device each participant attends from (`device:` rooms, on
//! every instance through the adapter): signals to the addressed participant's device only,
//! `call:initiated` to the conversation's members, `call:ended` to both.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_db::{
    self as db, CallKind, CallSessionUpdate, DbError, FinishCall, MediaType, NewCallParticipant,
    NewCallSession, ParticipantRole,
};
use switchboard_domain::conversation_calls::{
    self as domain, Attendance, CallRecord, JoinOutcome, Joiner, Left, ZombieRules,
};
use switchboard_domain::{DomainError, Millis};
use switchboard_protocol::conversation_calls::{
    CallEnded, CallInitiate, CallInitiateResponse, CallInitiated, CallJoinResponse,
    CallMediaToggled, CallModeChanged, CallParticipantJoined, CallParticipantLeft,
    CallParticipantReconnecting, CallSignal, CallType, IceServer, SignalType,
};
use switchboard_protocol::sfu::MediaKind;
use switchboard_protocol::{ErrorCode, events};
use switchboard_store::{CasOutcome, Timer, Transition, UpdateError, keys, update_record};

use crate::app::App;
use crate::error::{AppError, AppResult};
use crate::outbox::rooms;
use crate::services::call_state::{self, Engagement};
use crate::services::{calls, conversations, presence, rate_limit, rooms as room_service, users};

/// The deadline-queue kind of the no-join timeout.
pub const RING_TIMER: &str = "conv_call_ring";
/// The deadline-queue kind of a dropped participant's reconnect window.
pub const RECONNECT_TIMER: &str = "conv_call_reconnect";
/// The deadline-queue kind of the periodic zombie sweep.
pub const SWEEP_TIMER: &str = "conv_call_sweep";
/// An ended call stays readable (a late `call:join` gets `CONFLICT`) this long.
const ENDED_CALL_TTL: Duration = Duration::from_secs(3600);
/// An unanswered call is a zombie after this many ring timeouts (2 minutes by default,
/// seed 004's figure): its timeout must have been lost.
const UNANSWERED_ZOMBIE_FACTOR: u64 = 4;

/// Someone acting on calls from one socket: a user, or a guest of one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The user id, or the guest's anonymous id.
    pub peer_id: String,
    /// For guests: the one conversation whose calls they may take part in.
    pub guest_conversation: Option<String>,
    pub socket_id: String,
    pub device_id: String,
}

impl Peer {
    fn joiner(&self) -> Joiner {
        Joiner {
            peer_id: self.peer_id.clone(),
            guest: self.guest_conversation.is_some(),
            socket_id: self.socket_id.clone(),
            device_id: self.device_id.clone(),
        }
    }
}

// --- Store plumbing ---------------------------------------------------------------------

/// Applies a domain transition to a call with CAS and returns the record written and what
/// the transition reported; `before` gets the record the winning attempt started from.
async fn transition<O>(
    app: &App,
    call_id: &str,
    mut f: impl FnMut(Option<CallRecord>) -> Result<(CallRecord, O), DomainError>,
) -> AppResult<(CallRecord, O, Option<CallRecord>)> {
    let mut outcome = None;
    let mut before = None;
    let written = update_record(
        app.store.as_ref(),
        &keys::conversation_call(call_id),
        |cur| {
            before = cur.clone();
            let (next, o) = f(cur)?;
            outcome = Some(o);
            let ttl = next.is_ended().then_some(ENDED_CALL_TTL);
            Ok::<_, DomainError>(Transition::Write(next, ttl))
        },
    )
    .await
    .map_err(|e| match e {
        UpdateError::Rejected(e) => AppError::from(e),
        UpdateError::Store(e) => AppError::from(e),
    })?;
    match (written, outcome) {
        (Some(record), Some(o)) => Ok((record, o, before)),
        _ => Err(AppError::Internal("call transition wrote nothing".into())),
    }
}

/// One call's record.
pub async fn record(app: &App, call_id: &str) -> AppResult<Option<CallRecord>> {
    match app.store.get(&keys::conversation_call(call_id)).await? {
        None => Ok(None),
        Some(v) => serde_json::from_str(&v.value)
            .map(Some)
            .map_err(|e| AppError::Internal(format!("unreadable call {call_id}: {e}"))),
    }
}

async fn live_record(app: &App, call_id: &str) -> AppResult<CallRecord> {
    match record(app, call_id).await? {
        None => Err(AppError::not_found("no such call")),
        Some(r) if r.is_ended() => Err(DomainError::Conflict("the call has ended".into()).into()),
        Some(r) => Ok(r),
    }
}

/// The conversation's live pointer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LivePointer {
    call_id: String,
}

fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

fn device_room(a: &Attendance) -> String {
    rooms::device(&a.peer_id, &a.device_id)
}

/// The devices attending a call.
fn audience(r: &CallRecord) -> Vec<String> {
    r.attendance.iter().map(device_room).collect()
}

fn ice_for(app: &App, peer_id: &str, now: Millis) -> Vec<IceServer> {
    let ice = &app.settings.ice;
    domain::ice_servers(
        &ice.stun_urls,
        &ice.turn_urls,
        Some(ice.turn_secret.expose()),
        ice.turn_credential_ttl_secs,
        peer_id,
        now,
    )
}

fn secs_ms(secs: u64) -> Millis {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn timer_id(kind: &str, call_id: &str, peer_id: Option<&str>) -> String {
    match peer_id {
        // The length prefix keeps ids containing `:` from colliding.
        Some(peer) => format!("{kind}:{}:{call_id}:{peer}", call_id.len()),
        None => format!("{kind}:{call_id}"),
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimerPayload {
    call_id: String,
    #[serde(default)]
    peer_id: Option<String>,
    /// The start or drop time the timer was set for.
    since: Millis,
}

async fn schedule(
    app: &App,
    kind: &str,
    call_id: &str,
    peer_id: Option<&str>,
    since: Millis,
    after_secs: u64,
) -> AppResult<()> {
    let payload = to_value(&TimerPayload {
        call_id: call_id.to_string(),
        peer_id: peer_id.map(str::to_owned),
        since,
    })
    .to_string();
    app.store
        .timer_schedule(&Timer {
            id: timer_id(kind, call_id, peer_id),
            kind: kind.to_string(),
            payload,
            due_at: since.saturating_add(secs_ms(after_secs)),
        })
        .await?;
    Ok(())
}

async fn cancel(app: &App, kind: &str, call_id: &str, peer_id: Option<&str>) {
    if let Err(error) = app
        .store
        .timer_cancel(&timer_id(kind, call_id, peer_id))
        .await
    {
        tracing::warn!(%call_id, kind, %error, "could not cancel a call timer");
    }
}

fn warn_on<T>(what: &str, call_id: &str, result: Result<T, impl std::fmt::Display>) {
    if let Err(error) = result {
        tracing::warn!(%call_id, %error, "{what}");
    }
}

/// Whether a timer or cleanup transition lost to a newer change (nothing to do).
fn stale<T>(result: &AppResult<T>) -> bool {
    matches!(
        result,
        Err(AppError::Domain(
            DomainError::Conflict(_) | DomainError::NotFound(_)
        ))
    )
}

// --- Access -----------------------------------------------------------------------------

/// Users must be members of the conversation; guests may only touch their own
/// conversation's calls.
async fn check_access(app: &App, peer: &Peer, conversation_id: &str) -> AppResult<()> {
    match &peer.guest_conversation {
        Some(allowed) if allowed == conversation_id => Ok(()),
        Some(_) => Err(DomainError::Forbidden(
            "guests may only take part in their conversation's calls".into(),
        )
        .into()),
        None => conversations::member_of(app, conversation_id, &peer.peer_id)
            .await
            .map(|_| ()),
    }
}

fn zombie_rules(app: &App) -> ZombieRules {
    let timers = &app.settings.timers;
    ZombieRules {
        reconnect_window_ms: secs_ms(timers.reconnect_window_secs),
        unanswered_max_ms: secs_ms(
            timers
                .ring_timeout_secs
                .saturating_mul(UNANSWERED_ZOMBIE_FACTOR),
        ),
    }
}

/// Whether nobody attends the call any more: each attendee's device is checked against
/// presence (an instance that crashed never reported its sockets' drops).
async fn is_zombie(app: &App, r: &CallRecord, now: Millis) -> AppResult<bool> {
    let peers: Vec<String> = r.attendance.iter().map(|a| a.peer_id.clone()).collect();
    let entries = app.store.presence_get(&peers, now).await?;
    let alive = |a: &Attendance| {
        entries
            .iter()
            .flatten()
            .any(|e| e.user_id == a.peer_id && e.devices.contains(&a.device_id))
    };
    Ok(domain::is_zombie(r, alive, zombie_rules(app), now))
}

// --- Call-state slot (BUSY) -------------------------------------------------------------

fn engagement(call_id: &str) -> Engagement {
    Engagement::InConversationCall {
        call_id: call_id.to_string(),
    }
}

/// Claims the user's call-state slot for the call (seed 000's `current_call`), so a user in
/// a conversation call is `BUSY` for rings, rooms and other calls, and shows as in a call.
/// Guests have no slot. Claiming the call the slot already holds succeeds (a rejoin).
async fn claim(app: &App, peer: &Peer, call_id: &str) -> AppResult<()> {
    if peer.guest_conversation.is_some() {
        return Ok(());
    }
    match call_state::engage(app, &peer.peer_id, engagement(call_id)).await? {
        Ok(()) => {
            warn_on(
                "could not mark the user in a call",
                call_id,
                presence::mark_in_call(app, &peer.peer_id).await,
            );
            Ok(())
        }
        // Already in the SFU room this call moved to (joined it first): that claim covers
        // the call.
        Err(Engagement::InRoom { room_id })
            if record(app, call_id)
                .await?
                .is_some_and(|r| r.call.room_id.as_deref() == Some(room_id.as_str())) =>
        {
            Ok(())
        }
        Err(_) => Err(DomainError::Busy("you are already in a call or room".into()).into()),
    }
}

/// Whether `user_id` attends the live call `call_id` and that call moved to the SFU room
/// `room_id` (rooms let such a user in under the call's claim of their slot).
pub async fn attends_call_in_room(
    app: &App,
    call_id: &str,
    user_id: &str,
    room_id: &str,
) -> AppResult<bool> {
    Ok(record(app, call_id).await?.is_some_and(|r| {
        !r.is_ended() && r.call.room_id.as_deref() == Some(room_id) && r.attendee(user_id).is_some()
    }))
}

/// Frees the user's slot if it still holds the call; their earlier presence comes back
/// unless they moved on to something else.
async fn unclaim(app: &App, peer_id: &str, guest: bool, call_id: &str) {
    if guest {
        return;
    }
    match call_state::release(app, peer_id, &engagement(call_id)).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::warn!(%call_id, %peer_id, %error, "could not release the call-state slot");
            return;
        }
    }
    if let Ok(None) = call_state::current(app, peer_id).await {
        warn_on(
            "could not mark the user out of a call",
            call_id,
            presence::mark_out_of_call(app, peer_id).await,
        );
    }
}

// --- History ----------------------------------------------------------------------------

fn media_type(t: CallType) -> MediaType {
    match t {
        CallType::Audio => MediaType::Audio,
        CallType::Video => MediaType::Video,
    }
}

async fn history_start(
    app: &App,
    r: &CallRecord,
    invitees: Vec<String>,
    settings: Option<serde_json::Value>,
) {
    let new = NewCallSession {
        id: r.id().to_string(),
        kind: CallKind::Conversation,
        conversation_id: r.call.conversation_id.clone(),
        room_id: None,
        media_type: media_type(r.call.call_type),
        mode: db::CallMode::P2p,
        status: db::CallStatus::Initiated,
        initiator_id: r.call.initiator.clone(),
        started_at: r.call.started_at,
        invitees,
        metadata: settings.map(|s| json!({ "settings": s })),
    };
    warn_on(
        "could not record the call",
        r.id(),
        app.db.insert_call_session(&new).await,
    );
}

async fn history_join(app: &App, r: &CallRecord, participant_id: &str) {
    let Some(p) = r.participant(participant_id) else {
        return;
    };
    let row = NewCallParticipant {
        call_id: r.id().to_string(),
        user_id: p.user_id.clone(),
        anonymous_id: p.anonymous_id.clone(),
        role: match p.role {
            switchboard_protocol::conversation_calls::ParticipantRole::Initiator => {
                ParticipantRole::Initiator
            }
            switchboard_protocol::conversation_calls::ParticipantRole::Participant => {
                ParticipantRole::Participant
            }
        },
        joined_at: p.joined_at,
        audio_enabled: p.is_audio_enabled,
        video_enabled: p.is_video_enabled,
    };
    match app
        .db
        .add_call_participant_with_id(participant_id, &row)
        .await
    {
        Ok(_) | Err(DbError::Conflict(_)) => {}
        Err(error) => tracing::warn!(call_id = %r.id(), %error, "could not record a participant"),
    }
}

async fn history_update(app: &App, call_id: &str, update: CallSessionUpdate) {
    match app.db.update_call_session(call_id, &update).await {
        Ok(_) | Err(DbError::Conflict(_)) => {}
        Err(error) => tracing::warn!(%call_id, %error, "could not update the call's history"),
    }
}

async fn history_finish(app: &App, r: &CallRecord) {
    let Some(outcome) = r.call.outcome else {
        return;
    };
    let outcome = match outcome {
        switchboard_protocol::conversation_calls::CallOutcome::Completed => {
            db::CallOutcome::Completed
        }
        switchboard_protocol::conversation_calls::CallOutcome::Missed => db::CallOutcome::Missed,
        switchboard_protocol::conversation_calls::CallOutcome::Rejected => {
            db::CallOutcome::Rejected
        }
        switchboard_protocol::conversation_calls::CallOutcome::Cancelled => {
            db::CallOutcome::Cancelled
        }
        switchboard_protocol::conversation_calls::CallOutcome::Failed => db::CallOutcome::Failed,
    };
    let finish = FinishCall {
        ended_at: r.call.ended_at.unwrap_or_else(|| app.now()),
        outcome,
        // Computed by the database from the connectedAt it holds (seed 000).
        duration_secs: None,
        end_reason: r.ending.as_ref().and_then(|e| e.reason.clone()),
        ended_by: r.ending.as_ref().map(|e| e.ended_by.clone()),
    };
    match app.db.finish_call_session(r.id(), &finish).await {
        Ok(_) | Err(DbError::Conflict(_)) => {}
        Err(error) => {
            tracing::warn!(call_id = %r.id(), %error, "could not write the call to history")
        }
    }
}

// --- Operations -------------------------------------------------------------------------

/// `call:initiate`: a new call in the conversation, with the sender as initiator. Members
/// get `call:initiated`; once one of them has a connected device the call is `ringing`.
pub async fn initiate(
    app: &App,
    peer: &Peer,
    req: CallInitiate,
) -> AppResult<CallInitiateResponse> {
    if peer.guest_conversation.is_some() {
        return Err(
            DomainError::Forbidden("guests may join calls but not start them".into()).into(),
        );
    }
    let meta = conversations::member_of(app, &req.conversation_id, &peer.peer_id).await?;
    rate_limit::check(
        app,
        &peer.peer_id,
        calls::CALL_ACTION,
        app.settings.rate_limits.call,
    )
    .await?;
    let now = app.now();
    let call_id = uuid::Uuid::new_v4().to_string();
    let participant_id = uuid::Uuid::new_v4().to_string();
    let fresh = domain::initiate(
        &call_id,
        &req.conversation_id,
        req.call_type,
        &peer.joiner(),
        &participant_id,
        now,
    );
    claim(app, peer, &call_id).await?;
    // The record exists before the pointer names it, so a pointer never leads nowhere.
    let written = transition(app, &call_id, |cur| match cur {
        None => Ok((fresh.clone(), ())),
        Some(_) => Err(DomainError::Conflict("call id taken".into())),
    })
    .await;
    let mut r = match written {
        Ok((r, (), _)) => r,
        Err(error) => {
            unclaim(app, &peer.peer_id, false, &call_id).await;
            return Err(error);
        }
    };
    if let Err(error) = claim_conversation(app, &req.conversation_id, &call_id, now).await {
        if let Ok(Some(v)) = app.store.get(&keys::conversation_call(&call_id)).await {
            let _ = app
                .store
                .compare_and_delete(&keys::conversation_call(&call_id), v.version)
                .await;
        }
        unclaim(app, &peer.peer_id, false, &call_id).await;
        return Err(error);
    }
    app.store
        .index_add(
            &keys::live_conversation_calls(),
            std::slice::from_ref(&call_id),
            None,
        )
        .await?;
    app.store
        .index_add(
            &keys::user_conversation_calls(&peer.peer_id),
            std::slice::from_ref(&call_id),
            None,
        )
        .await?;
    schedule(
        app,
        RING_TIMER,
        &call_id,
        None,
        now,
        app.settings.timers.ring_timeout_secs,
    )
    .await?;
    let others: Vec<String> = meta
        .member_ids()
        .into_iter()
        .filter(|m| *m != peer.peer_id)
        .collect();
    history_start(app, &r, others.clone(), req.settings.clone()).await;
    history_join(app, &r, &participant_id).await;
    let initiated = CallInitiated {
        call_id: call_id.clone(),
        conversation_id: req.conversation_id.clone(),
        call_type: req.call_type,
        mode: r.call.mode,
        initiator: peer.peer_id.clone(),
        participants: r.live_participants(),
    };
    app.outbox
        .emit(
            rooms::conversation(&req.conversation_id),
            events::CALL_INITIATED,
            to_value(&initiated),
        )
        .await;
    // Seed 004 issue #4, option B: `ringing` once a member's device was notified.
    let reached = app.store.presence_get(&others, now).await?;
    if reached.iter().flatten().any(|e| e.is_online()) {
        match transition(app, &call_id, |cur| domain::ring(cur).map(|r| (r, ()))).await {
            Ok((rung, (), _)) => {
                r = rung;
                history_update(
                    app,
                    &call_id,
                    CallSessionUpdate {
                        status: Some(db::CallStatus::Ringing),
                        ..Default::default()
                    },
                )
                .await;
            }
            // Somebody joined (or it ended) already.
            Err(AppError::Domain(DomainError::Conflict(_) | DomainError::NotFound(_))) => {
                if let Some(now_record) = record(app, &call_id).await? {
                    r = now_record;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(CallInitiateResponse {
        call_id: call_id.clone(),
        call: r.call,
        ice_servers: ice_for(app, &peer.peer_id, now),
    })
}

/// Claims the conversation's live pointer for `call_id`: `CALL_ALREADY_ACTIVE` while
/// another live call holds it, unless that call is a zombie, which is ended first.
async fn claim_conversation(
    app: &App,
    conversation_id: &str,
    call_id: &str,
    now: Millis,
) -> AppResult<()> {
    let key = keys::conversation_live_call(conversation_id);
    let value = to_value(&LivePointer {
        call_id: call_id.to_string(),
    })
    .to_string();
    for _ in 0..16 {
        let seen = app.store.get(&key).await?;
        if let Some(v) = &seen {
            let holder = serde_json::from_str::<LivePointer>(&v.value)
                .map(|p| p.call_id)
                .unwrap_or_default();
            if let Some(existing) = record(app, &holder).await?
                && !existing.is_ended()
            {
                if !is_zombie(app, &existing, now).await? {
                    return Err(DomainError::Specific {
                        code: ErrorCode::CallAlreadyActive,
                        message: format!(
                            "a call is already active in this conversation (callId {holder})"
                        ),
                    }
                    .into());
                }
                end_zombie(app, &holder).await?;
                continue;
            }
        }
        match app
            .store
            .compare_and_set(&key, seen.map(|v| v.version), &value, None)
            .await?
        {
            CasOutcome::Written { .. } => return Ok(()),
            CasOutcome::Conflict => continue,
        }
    }
    Err(DomainError::Conflict("too many concurrent calls in this conversation".into()).into())
}

/// Frees the conversation's pointer if it still names `call_id`.
async fn release_conversation(app: &App, conversation_id: &str, call_id: &str) {
    let key = keys::conversation_live_call(conversation_id);
    match app.store.get(&key).await {
        Ok(Some(v)) => {
            let holder = serde_json::from_str::<LivePointer>(&v.value).map(|p| p.call_id);
            if holder.as_deref().ok() == Some(call_id) {
                let _ = app.store.compare_and_delete(&key, v.version).await;
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%call_id, %error, "could not free the conversation's call"),
    }
}

/// `call:join`: the sender takes part (the first join makes the call `active`), or, when
/// already attending (back after a drop, or from another device), resumes with the same
/// participant record. Every participant gets `call:participant-joined` with ICE servers
/// of their own.
pub async fn join(app: &App, peer: &Peer, call_id: &str) -> AppResult<CallJoinResponse> {
    let current = live_record(app, call_id).await?;
    check_access(app, peer, current.conversation_id()).await?;
    let now = app.now();
    let fresh_id = uuid::Uuid::new_v4().to_string();
    let joiner = peer.joiner();
    let already_in = current.attendee(&peer.peer_id).is_some();
    claim(app, peer, call_id).await?;
    let sfu_room_id = uuid::Uuid::new_v4().to_string();
    let joined = transition(app, call_id, |cur| {
        domain::join(cur, &joiner, &fresh_id, &sfu_room_id, now)
    })
    .await;
    let (r, outcome, _) = match joined {
        Ok(j) => j,
        Err(error) => {
            if !already_in {
                let guest = peer.guest_conversation.is_some();
                unclaim(app, &peer.peer_id, guest, call_id).await;
            }
            return Err(error);
        }
    };
    let participant_id = r
        .attendee(&peer.peer_id)
        .map(|a| a.participant_id.clone())
        .unwrap_or_default();
    match &outcome {
        JoinOutcome::Joined | JoinOutcome::SwitchedToSfu { .. } => {
            cancel(app, RING_TIMER, call_id, None).await;
            app.store
                .index_add(
                    &keys::user_conversation_calls(&peer.peer_id),
                    &[call_id.to_string()],
                    None,
                )
                .await?;
            history_update(
                app,
                call_id,
                CallSessionUpdate {
                    status: Some(db::CallStatus::Active),
                    answered_at: r.call.answered_at,
                    ..Default::default()
                },
            )
            .await;
            history_join(app, &r, &participant_id).await;
        }
        JoinOutcome::Rejoined { .. } => {
            cancel(app, RECONNECT_TIMER, call_id, Some(&peer.peer_id)).await;
        }
    }
    if let JoinOutcome::SwitchedToSfu { room_id, host } = &outcome {
        switch_to_sfu(app, &r, peer, room_id, host).await?;
    }
    if let Some(participant) = r.participant(&participant_id).cloned() {
        for a in &r.attendance {
            let joined = CallParticipantJoined {
                call_id: call_id.to_string(),
                participant: participant.clone(),
                mode: r.call.mode,
                ice_servers: ice_for(app, &a.peer_id, now),
            };
            app.outbox
                .emit(
                    device_room(a),
                    events::CALL_PARTICIPANT_JOINED,
                    to_value(&joined),
                )
                .await;
        }
    }
    Ok(CallJoinResponse {
        call: r.call,
        ice_servers: ice_for(app, &peer.peer_id, now),
    })
}

/// The join that made the call's third participant moved it to the SFU (only that write
/// reports the switch, so this runs once across instances): the room is opened, private to
/// the conversation's members, hosted by the initiator (or whoever attends longest) from
/// the device they attend with; history records the mode; every participant, the joiner
/// included, gets `call:mode-changed`.
async fn switch_to_sfu(
    app: &App,
    r: &CallRecord,
    joiner: &Peer,
    room_id: &str,
    host: &Attendance,
) -> AppResult<()> {
    let call_id = r.id();
    // Guests never reach here (the domain refuses the switch with a guest in the call).
    let meta = conversations::member_of(app, r.conversation_id(), &joiner.peer_id).await?;
    let host_name = users::get_many(app, std::slice::from_ref(&host.peer_id))
        .await?
        .pop()
        .map_or_else(|| host.peer_id.clone(), |u| u.name);
    let host_party = room_service::Party {
        user_id: host.peer_id.clone(),
        name: host_name,
        socket_id: host.socket_id.clone(),
        device_id: host.device_id.clone(),
    };
    room_service::open_for_call(
        app,
        room_id,
        &host_party,
        "Conversation call".to_string(),
        meta.member_ids(),
    )
    .await?;
    history_update(
        app,
        call_id,
        CallSessionUpdate {
            mode: Some(db::CallMode::Sfu),
            room_id: Some(room_id.to_string()),
            ..Default::default()
        },
    )
    .await;
    let changed = CallModeChanged {
        call_id: call_id.to_string(),
        mode: r.call.mode,
        room_id: room_id.to_string(),
    };
    app.outbox
        .emit_to(audience(r), events::CALL_MODE_CHANGED, to_value(&changed))
        .await;
    Ok(())
}

/// What follows a participant leaving (explicitly, by force-leave, or when the reconnect
/// window ran out): their record gets `leftAt`, everyone who attended hears
/// `call:participant-left`, and the call ends if they were the last.
async fn after_leave(
    app: &App,
    before: Option<&CallRecord>,
    r: &CallRecord,
    peer_id: &str,
    left: Left,
) {
    let call_id = r.id();
    cancel(app, RECONNECT_TIMER, call_id, Some(peer_id)).await;
    let guest = left.participant.user_id.is_none();
    unclaim(app, peer_id, guest, call_id).await;
    warn_on(
        "could not unlist the call for the participant",
        call_id,
        app.store
            .index_remove(
                &keys::user_conversation_calls(peer_id),
                &[call_id.to_string()],
            )
            .await,
    );
    if let Some(left_at) = left.participant.left_at {
        warn_on(
            "could not stamp a leave",
            call_id,
            app.db
                .mark_participant_left(&left.participant.id, left_at)
                .await,
        );
    }
    let notice = CallParticipantLeft {
        call_id: call_id.to_string(),
        participant_id: left.participant.id.clone(),
        user_id: left.participant.user_id.clone(),
        anonymous_id: left.participant.anonymous_id.clone(),
    };
    let was_there = before.map(audience).unwrap_or_default();
    app.outbox
        .emit_to(was_there, events::CALL_PARTICIPANT_LEFT, to_value(&notice))
        .await;
    if left.ended {
        finish(app, before, r).await;
    }
}

/// `call:leave`.
pub async fn leave(app: &App, peer: &Peer, call_id: &str) -> AppResult<()> {
    let now = app.now();
    let (r, left, before) =
        transition(app, call_id, |cur| domain::leave(cur, &peer.peer_id, now)).await?;
    after_leave(app, before.as_ref(), &r, &peer.peer_id, left).await;
    Ok(())
}

/// The call ended (the transition that ended it ran here, so this runs once): members and
/// the devices that attended get `call:ended`, timers and indexes are cleared, the
/// conversation is free for a new call, and the call goes to history.
async fn finish(app: &App, before: Option<&CallRecord>, r: &CallRecord) {
    let call_id = r.id();
    let ended = CallEnded {
        call_id: call_id.to_string(),
        duration: r.duration_secs(app.now()),
        ended_by: r
            .ending
            .as_ref()
            .map_or(domain::ENDED_BY_SERVER.to_string(), |e| e.ended_by.clone()),
        reason: r.ending.as_ref().and_then(|e| e.reason.clone()),
    };
    let mut to = vec![rooms::conversation(r.conversation_id())];
    to.extend(before.map(audience).unwrap_or_default());
    app.outbox
        .emit_to(to, events::CALL_ENDED, to_value(&ended))
        .await;
    cancel(app, RING_TIMER, call_id, None).await;
    for a in before.map(|b| b.attendance.as_slice()).unwrap_or_default() {
        cancel(app, RECONNECT_TIMER, call_id, Some(&a.peer_id)).await;
        unclaim(app, &a.peer_id, a.guest, call_id).await;
        warn_on(
            "could not unlist the call for a participant",
            call_id,
            app.store
                .index_remove(
                    &keys::user_conversation_calls(&a.peer_id),
                    &[call_id.to_string()],
                )
                .await,
        );
    }
    if let Some(room_id) = &r.call.room_id {
        warn_on(
            "could not end the call's SFU room",
            call_id,
            room_service::end_with_call(app, room_id).await,
        );
    }
    release_conversation(app, r.conversation_id(), call_id).await;
    warn_on(
        "could not unlist the call",
        call_id,
        app.store
            .index_remove(&keys::live_conversation_calls(), &[call_id.to_string()])
            .await,
    );
    history_finish(app, r).await;
}

async fn end_zombie(app: &App, call_id: &str) -> AppResult<bool> {
    let now = app.now();
    let result = transition(app, call_id, |cur| {
        domain::end_zombie(cur, now).map(|r| (r, ()))
    })
    .await;
    if stale(&result) {
        return Ok(false);
    }
    let (r, (), before) = result?;
    tracing::info!(%call_id, "ended a zombie call");
    finish(app, before.as_ref(), &r).await;
    Ok(true)
}

/// Media flows: the first report sets `connectedAt`, from which the duration runs.
async fn connected_at(app: &App, call_id: &str, at: Millis) {
    history_update(
        app,
        call_id,
        CallSessionUpdate {
            connected_at: Some(at),
            ..Default::default()
        },
    )
    .await;
}

/// `call:connected`: a participant reports media flowing.
pub async fn report_connected(app: &App, peer: &Peer, call_id: &str) -> AppResult<()> {
    let r = live_record(app, call_id).await?;
    if r.attendee(&peer.peer_id).is_none() {
        return Err(DomainError::Forbidden("you are not in this call".into()).into());
    }
    let now = app.now();
    match transition(app, call_id, |cur| {
        domain::mark_connected(cur, now).map(|r| (r, ()))
    })
    .await
    {
        Ok(_) => connected_at(app, call_id, now).await,
        // Connected already: nothing to change.
        Err(AppError::Domain(DomainError::Conflict(_))) if r.call.connected_at.is_some() => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// `call:signal`: relayed to the addressed participant's device in the call, with `from`
/// set to the sender. ICE candidates relayed both ways mark the call connected.
pub async fn signal(app: &App, peer: &Peer, req: CallSignal) -> AppResult<()> {
    let r = live_record(app, &req.call_id).await?;
    match r.attendee(&peer.peer_id) {
        None => return Err(DomainError::Forbidden("you are not in this call".into()).into()),
        // Signalling belongs to the device that takes part, not to the user's others.
        Some(a) if a.device_id != peer.device_id => {
            return Err(DomainError::Forbidden("this device is not in the call".into()).into());
        }
        Some(_) => {}
    }
    if req.signal.to == peer.peer_id {
        return Err(AppError::invalid("a signal goes to another participant"));
    }
    let Some(target) = r.attendee(&req.signal.to).cloned() else {
        return Err(AppError::not_found("no such participant in this call"));
    };
    let call_id = req.call_id.clone();
    let to = req.signal.to.clone();
    if req.signal.signal_type == SignalType::IceCandidate
        && domain::ice_is_news(&r, &peer.peer_id, &to)
    {
        let now = app.now();
        let (_, became, _) = transition(app, &call_id, |cur| {
            domain::note_ice(cur, &peer.peer_id, &to, now)
        })
        .await?;
        if became {
            connected_at(app, &call_id, now).await;
        }
    }
    let relayed = req.relay(peer.peer_id.clone());
    app.outbox
        .emit(
            device_room(&target),
            events::CALL_SIGNAL,
            to_value(&relayed),
        )
        .await;
    Ok(())
}

/// `call:toggle-audio` / `call:toggle-video`: participants get `call:media-toggled`.
pub async fn toggle_media(
    app: &App,
    peer: &Peer,
    call_id: &str,
    kind: MediaKind,
    enabled: bool,
) -> AppResult<()> {
    let (r, p, _) = transition(app, call_id, |cur| {
        domain::toggle_media(cur, &peer.peer_id, kind, enabled)
    })
    .await?;
    let toggled = CallMediaToggled {
        call_id: call_id.to_string(),
        participant_id: p.id.clone(),
        user_id: peer.peer_id.clone(),
        media_type: kind,
        enabled,
    };
    app.outbox
        .emit_to(audience(&r), events::CALL_MEDIA_TOGGLED, to_value(&toggled))
        .await;
    let (audio, video) = match kind {
        MediaKind::Audio => (Some(enabled), None),
        MediaKind::Video => (None, Some(enabled)),
    };
    warn_on(
        "could not record a media toggle",
        call_id,
        app.db.set_participant_media(&p.id, audio, video).await,
    );
    Ok(())
}

/// `call:quality`: the participant's latest statistics, stored as their connection quality.
pub async fn quality(
    app: &App,
    peer: &Peer,
    call_id: &str,
    stats: &serde_json::Map<String, serde_json::Value>,
) -> AppResult<()> {
    let r = live_record(app, call_id).await?;
    let Some(a) = r.attendee(&peer.peer_id) else {
        return Err(DomainError::Forbidden("you are not in this call".into()).into());
    };
    app.db
        .set_participant_quality(&a.participant_id, &serde_json::Value::Object(stats.clone()))
        .await?;
    Ok(())
}

/// `call:force-leave`: the sender leaves every live call of the conversation, and calls left
/// empty or found to be zombies end (seed 004 issue #3). Returns the calls that ended.
pub async fn force_leave(app: &App, peer: &Peer, conversation_id: &str) -> AppResult<Vec<String>> {
    check_access(app, peer, conversation_id).await?;
    let mut candidates = app
        .store
        .index_members(&keys::user_conversation_calls(&peer.peer_id))
        .await?;
    if let Some(v) = app
        .store
        .get(&keys::conversation_live_call(conversation_id))
        .await?
        && let Ok(p) = serde_json::from_str::<LivePointer>(&v.value)
    {
        candidates.push(p.call_id);
    }
    candidates.sort();
    candidates.dedup();
    let mut ended = Vec::new();
    for call_id in candidates {
        let Some(r) = record(app, &call_id).await? else {
            continue;
        };
        if r.is_ended() || r.conversation_id() != conversation_id {
            continue;
        }
        if r.attendee(&peer.peer_id).is_some() {
            let now = app.now();
            let result =
                transition(app, &call_id, |cur| domain::leave(cur, &peer.peer_id, now)).await;
            if !stale(&result) {
                let (after, left, before) = result?;
                let was_last = left.ended;
                after_leave(app, before.as_ref(), &after, &peer.peer_id, left).await;
                if was_last {
                    ended.push(call_id);
                    continue;
                }
            }
        }
        if let Some(r) = record(app, &call_id).await?
            && !r.is_ended()
            && is_zombie(app, &r, app.now()).await?
            && end_zombie(app, &call_id).await?
        {
            ended.push(call_id);
        }
    }
    Ok(ended)
}

// --- Disconnects and timers -------------------------------------------------------------

/// A socket dropped: a participant attending from it is `reconnecting` for the reconnect
/// window (`call:participant-reconnecting` to the others).
pub async fn socket_dropped(app: &App, peer_id: &str, socket_id: &str) -> AppResult<()> {
    dropped(app, peer_id, Some(socket_id)).await
}

/// Every device of the user lapsed (their instance died): reconnecting as after a drop.
pub async fn user_gone(app: &App, peer_id: &str) -> AppResult<()> {
    dropped(app, peer_id, None).await
}

async fn dropped(app: &App, peer_id: &str, socket_id: Option<&str>) -> AppResult<()> {
    let calls = app
        .store
        .index_members(&keys::user_conversation_calls(peer_id))
        .await?;
    for call_id in calls {
        let now = app.now();
        let result = transition(app, &call_id, |cur| {
            domain::socket_dropped(cur, peer_id, socket_id, now)
        })
        .await;
        match result {
            Ok((r, _, _)) => {
                schedule(
                    app,
                    RECONNECT_TIMER,
                    &call_id,
                    Some(peer_id),
                    now,
                    app.settings.timers.reconnect_window_secs,
                )
                .await?;
                let notice = CallParticipantReconnecting {
                    call_id: call_id.clone(),
                    user_id: peer_id.to_string(),
                };
                let others: Vec<String> = r
                    .attendance
                    .iter()
                    .filter(|a| a.peer_id != peer_id)
                    .map(device_room)
                    .collect();
                app.outbox
                    .emit_to(
                        others,
                        events::CALL_PARTICIPANT_RECONNECTING,
                        to_value(&notice),
                    )
                    .await;
            }
            Err(AppError::Domain(DomainError::NotFound(_))) => {
                app.store
                    .index_remove(&keys::user_conversation_calls(peer_id), &[call_id])
                    .await?;
            }
            Err(AppError::Domain(DomainError::Conflict(_))) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Registers the conversation-call timer kinds with the deadline-queue runner.
pub fn register_timers(app: &App) {
    for kind in [RING_TIMER, RECONNECT_TIMER, SWEEP_TIMER] {
        app.timers.register(
            kind,
            std::sync::Arc::new(|app, timer| {
                Box::pin(async move {
                    fire(&app, &timer).await;
                })
            }),
        );
    }
}

/// Runs the handler of a conversation-call timer (the deadline-queue runner does this in
/// production; simulated-time tests call it with the timers they claim). Returns false for
/// other kinds.
pub async fn fire(app: &App, timer: &Timer) -> bool {
    match timer.kind.as_str() {
        RING_TIMER => ring_expired(app, timer).await,
        RECONNECT_TIMER => reconnect_expired(app, timer).await,
        SWEEP_TIMER => match sweep(app).await {
            Ok(ended) if ended > 0 => tracing::info!(ended, "zombie call sweep done"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "zombie call sweep failed"),
        },
        _ => return false,
    }
    true
}

fn payload(timer: &Timer) -> Option<TimerPayload> {
    match serde_json::from_str(&timer.payload) {
        Ok(p) => Some(p),
        Err(error) => {
            tracing::warn!(id = %timer.id, %error, "unreadable call timer");
            None
        }
    }
}

/// [`RING_TIMER`]: nobody joined in time; the call ends as missed (`reason: 'timeout'`).
async fn ring_expired(app: &App, timer: &Timer) {
    let Some(TimerPayload { call_id, .. }) = payload(timer) else {
        return;
    };
    let now = app.now();
    let result = transition(app, &call_id, |cur| {
        domain::ring_expired(cur, now).map(|r| (r, ()))
    })
    .await;
    if stale(&result) {
        return;
    }
    match result {
        Ok((r, (), before)) => finish(app, before.as_ref(), &r).await,
        Err(error) => tracing::warn!(%call_id, %error, "call timeout failed"),
    }
}

/// [`RECONNECT_TIMER`]: the participant did not come back in time, so they leave.
async fn reconnect_expired(app: &App, timer: &Timer) {
    let Some(TimerPayload {
        call_id,
        peer_id: Some(peer_id),
        since,
    }) = payload(timer)
    else {
        return;
    };
    let now = app.now();
    let result = transition(app, &call_id, |cur| {
        domain::reconnect_expired(cur, &peer_id, since, now)
    })
    .await;
    if stale(&result) {
        return;
    }
    match result {
        Ok((r, left, before)) => after_leave(app, before.as_ref(), &r, &peer_id, left).await,
        Err(error) => tracing::warn!(%call_id, %peer_id, %error, "reconnect expiry failed"),
    }
}

/// The zombie sweep (seed 004 issue #6): ends every live call nobody attends any more,
/// drops ended calls from the live index, and schedules its next run. Returns how many
/// calls it ended.
pub async fn sweep(app: &App) -> AppResult<usize> {
    let ids = app
        .store
        .index_members(&keys::live_conversation_calls())
        .await?;
    let mut ended = 0;
    for call_id in ids {
        match record(app, &call_id).await? {
            Some(r) if !r.is_ended() => {
                if is_zombie(app, &r, app.now()).await? && end_zombie(app, &call_id).await? {
                    ended += 1;
                }
            }
            _ => {
                app.store
                    .index_remove(&keys::live_conversation_calls(), &[call_id])
                    .await?;
            }
        }
    }
    schedule_sweep(app).await?;
    Ok(ended)
}

/// (Re)schedules the next zombie sweep one interval from now.
pub async fn schedule_sweep(app: &App) -> AppResult<()> {
    let interval = secs_ms(app.settings.timers.zombie_cleanup_interval_secs.max(1));
    app.store
        .timer_schedule(&Timer {
            id: format!("job:{SWEEP_TIMER}"),
            kind: SWEEP_TIMER.to_string(),
            payload: "{}".to_string(),
            due_at: app.now().saturating_add(interval),
        })
        .await?;
    Ok(())
}

/// The live call of a conversation, if any (for tests and the HTTP API).
pub async fn live_call_of(app: &App, conversation_id: &str) -> AppResult<Option<CallRecord>> {
    let Some(v) = app
        .store
        .get(&keys::conversation_live_call(conversation_id))
        .await?
    else {
        return Ok(None);
    };
    let Ok(p) = serde_json::from_str::<LivePointer>(&v.value) else {
        return Ok(None);
    };
    Ok(record(app, &p.call_id).await?.filter(|r| !r.is_ended()))
}
