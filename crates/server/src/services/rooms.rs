//! Rooms (protocol §6, seed 002's `RoomManager`): the driver around
//! `switchboard_domain::rooms`.
//!
//! Every change is one pure domain transition written with compare-and-set
//! ([`update_record`]) on the room's record, so seed 002's `AsyncLock` sections hold across
//! instances: of two racing writers one wins and the other recomputes from the fresh state
//! (two leaves at once both land; a second `endCall` finds the room ended and gets
//! `CONFLICT`; a host reconnect and the grace check cannot both win). The effects (events,
//! call-state slots, presence, history, timers) run after the write, from what the winning
//! transition returned, so they run exactly once.
//!
//! Timers are deadline-queue entries (fired once across instances): a participant's
//! reconnect window ([`RECONNECT_TIMER`]), the host's grace period ([`GRACE_TIMER`]) and
//! each invitation's expiry ([`INVITATION_TIMER`]). Their handlers are transitions too, and
//! carry the timestamp they were set for, so a stale timer finds nothing to do.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_db::{
    CallKind, CallMode, CallOutcome, CallSessionUpdate, CallStatus, DbError, FinishCall, MediaType,
    NewCallParticipant, NewCallSession, ParticipantRole,
};
use switchboard_domain::rooms::{
    self as domain, Actor, GraceOutcome, HistoryKind, JoinOutcome, LeaveOutcome, NewRoom,
    RoomOutcome, RoomRecord,
};
use switchboard_domain::{DomainError, Millis};
use switchboard_protocol::events;
use switchboard_protocol::rooms::{ChatMessage, CreateRoom, Room, RoomSummary, RoomType};
use switchboard_store::{Timer, Transition, UpdateError, keys, update_record};

use crate::app::App;
use crate::error::{AppError, AppResult};
use crate::outbox::rooms;
use crate::services::call_state::{self, Engagement};
use crate::services::notifications::{self, NewNotice, Priority};
use crate::services::{conversation_calls, presence, rate_limit, users};

/// The deadline-queue kind of a participant's reconnect window.
pub const RECONNECT_TIMER: &str = "room_reconnect";
/// The deadline-queue kind of the host's grace period.
pub const GRACE_TIMER: &str = "room_host_grace";
/// The deadline-queue kind of an invitation's expiry.
pub const INVITATION_TIMER: &str = "room_invitation";
/// The rate-limit action of `createRoom`.
pub const CREATE_ACTION: &str = "room_create";
/// The rate-limit action of `sendMessage` (limited like `message:send`, counted apart).
pub const MESSAGE_ACTION: &str = "room_message";
/// An ended room stays readable (`GET /api/rooms/{id}`, a late `endCall` gets `CONFLICT`)
/// this long.
const ENDED_ROOM_TTL: Duration = Duration::from_secs(3600);

/// A user taking part from one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub user_id: String,
    pub name: String,
    pub socket_id: String,
    pub device_id: String,
}

impl Party {
    fn actor(&self) -> Actor {
        Actor {
            user_id: self.user_id.clone(),
            name: self.name.clone(),
            socket_id: self.socket_id.clone(),
            device_id: self.device_id.clone(),
        }
    }
}

// --- Store plumbing ---------------------------------------------------------------------

/// Applies a domain transition to a room with CAS and returns the record written and what
/// the transition reported. A missing room is `NOT_FOUND`.
async fn transition<O>(
    app: &App,
    room_id: &str,
    mut f: impl FnMut(Option<RoomRecord>) -> Result<(RoomRecord, O), DomainError>,
) -> AppResult<(RoomRecord, O)> {
    let mut outcome = None;
    let written = update_record(app.store.as_ref(), &keys::room(room_id), |cur| {
        let (next, o) = f(cur)?;
        outcome = Some(o);
        let ttl = next.is_ended().then_some(ENDED_ROOM_TTL);
        Ok::<_, DomainError>(Transition::Write(next, ttl))
    })
    .await
    .map_err(|e| match e {
        UpdateError::Rejected(e) => AppError::from(e),
        UpdateError::Store(e) => AppError::from(e),
    })?;
    match (written, outcome) {
        (Some(record), Some(o)) => Ok((record, o)),
        _ => Err(AppError::Internal("room transition wrote nothing".into())),
    }
}

/// One room's record.
pub async fn record(app: &App, room_id: &str) -> AppResult<Option<RoomRecord>> {
    match app.store.get(&keys::room(room_id)).await? {
        None => Ok(None),
        Some(v) => serde_json::from_str(&v.value)
            .map(Some)
            .map_err(|e| AppError::Internal(format!("unreadable room {room_id}: {e}"))),
    }
}

/// Every live room, oldest first. Ids whose record is gone or ended are dropped from the
/// index on the way (an instance may have died between ending a room and unlisting it).
pub async fn live_rooms(app: &App) -> AppResult<Vec<RoomRecord>> {
    let ids = app.store.index_members(&keys::live_rooms()).await?;
    let mut live = Vec::with_capacity(ids.len());
    let mut gone = Vec::new();
    for id in ids {
        match record(app, &id).await? {
            Some(r) if !r.is_ended() => live.push(r),
            _ => gone.push(id),
        }
    }
    if !gone.is_empty() {
        app.store.index_remove(&keys::live_rooms(), &gone).await?;
    }
    live.sort_by(|a, b| (a.room.created_at, a.id()).cmp(&(b.room.created_at, b.id())));
    Ok(live)
}

fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Where a room's events go: its Socket.IO room, and the device of every participant
/// directly as well, so a device whose channel membership was lost (its instance restarted,
/// the adapter failed to join it) still hears them. The outbox sends once per socket.
fn audience(record: &RoomRecord) -> Vec<String> {
    std::iter::once(rooms::room(record.id()))
        .chain(
            record
                .devices
                .iter()
                .map(|(user, device)| rooms::device(user, device)),
        )
        .collect()
}

async fn emit_room(app: &App, record: &RoomRecord, event: &'static str, data: serde_json::Value) {
    app.outbox.emit_to(audience(record), event, data).await;
}

fn timer_id(kind: &str, room_id: &str, user_id: Option<&str>) -> String {
    match user_id {
        // The length prefix keeps ids containing `:` from colliding.
        Some(user) => format!("{kind}:{}:{room_id}:{user}", room_id.len()),
        None => format!("{kind}:{room_id}"),
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimerPayload {
    room_id: String,
    #[serde(default)]
    user_id: Option<String>,
    /// The drop, grace start or invitation time the timer was set for.
    since: Millis,
}

async fn schedule(
    app: &App,
    kind: &str,
    room_id: &str,
    user_id: Option<&str>,
    since: Millis,
    after_secs: u64,
) -> AppResult<()> {
    let payload = to_value(&TimerPayload {
        room_id: room_id.to_string(),
        user_id: user_id.map(str::to_owned),
        since,
    })
    .to_string();
    let after = i64::try_from(after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    app.store
        .timer_schedule(&Timer {
            id: timer_id(kind, room_id, user_id),
            kind: kind.to_string(),
            payload,
            due_at: since.saturating_add(after),
        })
        .await?;
    Ok(())
}

async fn cancel(app: &App, kind: &str, room_id: &str, user_id: Option<&str>) {
    if let Err(error) = app
        .store
        .timer_cancel(&timer_id(kind, room_id, user_id))
        .await
    {
        tracing::warn!(%room_id, kind, %error, "could not cancel a room timer");
    }
}

fn log_failure(what: &str, room_id: &str, result: AppResult<()>) {
    if let Err(error) = result {
        tracing::warn!(%room_id, %error, "{what}");
    }
}

// --- Taking part ------------------------------------------------------------------------

/// Claims the user's call-state slot for a room, or answers `BUSY`.
async fn claim(app: &App, user_id: &str, room_id: &str) -> AppResult<()> {
    let e = Engagement::InRoom {
        room_id: room_id.to_string(),
    };
    match call_state::engage(app, user_id, e).await? {
        Ok(()) => Ok(()),
        // A participant of a conversation call that moved to this room (§7): the call's
        // claim covers the room, and stays the slot's holder.
        Err(Engagement::InConversationCall { call_id })
            if conversation_calls::attends_call_in_room(app, &call_id, user_id, room_id)
                .await? =>
        {
            Ok(())
        }
        Err(_) => Err(DomainError::Busy("you are already in a call or room".into()).into()),
    }
}

async fn unclaim(app: &App, user_id: &str, room_id: &str) {
    let e = Engagement::InRoom {
        room_id: room_id.to_string(),
    };
    if let Err(error) = call_state::release(app, user_id, &e).await {
        tracing::warn!(%user_id, %room_id, %error, "could not release the call-state slot");
    }
}

/// The user's device takes part: room events reach it, and the user shows as in a call.
async fn attach(app: &App, user_id: &str, device_id: &str, room_id: &str) {
    app.outbox
        .join(rooms::device(user_id, device_id), rooms::room(room_id))
        .await;
    log_failure(
        "could not mark the user in a call",
        room_id,
        presence::mark_in_call(app, user_id).await,
    );
}

/// The user no longer takes part: their slot is freed, their earlier presence comes back,
/// and room events stop reaching their device.
async fn detach(app: &App, user_id: &str, device_id: Option<&str>, room_id: &str) {
    if let Some(device_id) = device_id {
        app.outbox
            .leave(rooms::device(user_id, device_id), rooms::room(room_id))
            .await;
    }
    unclaim(app, user_id, room_id).await;
    // A join of the same user that landed between the leave and this release (another
    // device joining again) keeps them in the room: their slot is claimed back.
    if let Ok(Some(r)) = record(app, room_id).await
        && !r.is_ended()
        && r.is_participant(user_id)
    {
        let _ = call_state::engage(
            app,
            user_id,
            Engagement::InRoom {
                room_id: room_id.to_string(),
            },
        )
        .await;
        return;
    }
    // Only if the slot moved on to nothing else: a user who already joined another room
    // stays in a call.
    match call_state::current(app, user_id).await {
        Ok(None) => log_failure(
            "could not mark the user out of a call",
            room_id,
            presence::mark_out_of_call(app, user_id).await,
        ),
        Ok(Some(_)) => {}
        Err(error) => tracing::warn!(%user_id, %error, "could not read the call-state slot"),
    }
}

// --- History ----------------------------------------------------------------------------

fn outcome_of(o: RoomOutcome) -> CallOutcome {
    match o {
        RoomOutcome::Completed => CallOutcome::Completed,
        RoomOutcome::Missed => CallOutcome::Missed,
        RoomOutcome::Rejected => CallOutcome::Rejected,
        RoomOutcome::Cancelled => CallOutcome::Cancelled,
    }
}

/// Records a participant in the room's history and remembers the row in the room.
async fn history_join(app: &App, record: &RoomRecord, user_id: &str, now: Millis) {
    let room_id = record.id().to_string();
    let role = if record.room.host_id == user_id {
        ParticipantRole::Initiator
    } else {
        ParticipantRole::Participant
    };
    let added = app
        .db
        .add_call_participant(&NewCallParticipant {
            call_id: room_id.clone(),
            user_id: Some(user_id.to_string()),
            anonymous_id: None,
            role,
            joined_at: now,
            audio_enabled: true,
            video_enabled: false,
        })
        .await;
    let participant = match added {
        Ok(p) => p,
        Err(error) => {
            tracing::warn!(%room_id, %user_id, %error, "could not record a participant");
            return;
        }
    };
    if let Some(answered_at) = record.answered_at {
        let update = CallSessionUpdate {
            status: Some(CallStatus::Active),
            answered_at: Some(answered_at),
            ..Default::default()
        };
        if let Err(error) = app.db.update_call_session(&room_id, &update).await
            && !matches!(error, DbError::Conflict(_))
        {
            tracing::warn!(%room_id, %error, "could not mark the call answered");
        }
    }
    let noted = transition(app, &room_id, |cur| {
        domain::note_history_participant(cur, user_id, &participant.id).map(|r| (r, ()))
    })
    .await;
    if let Err(error) = noted {
        tracing::debug!(%room_id, %error, "participant row not remembered");
    }
}

async fn history_leave(app: &App, record: &RoomRecord, user_id: &str, now: Millis) {
    if let Some(id) = record.history_participants.get(user_id)
        && let Err(error) = app.db.mark_participant_left(id, now).await
    {
        tracing::warn!(room_id = %record.id(), %user_id, %error, "could not stamp a leave");
    }
}

/// Writes the ended room to call history, exactly once (the database's own CAS backs up
/// the room's: a finish that finds the call ended already is a no-op).
async fn history_finish(app: &App, record: &RoomRecord) {
    let Some(ending) = &record.ending else { return };
    let finish = FinishCall {
        ended_at: record.room.ended_at.unwrap_or_else(|| app.now()),
        outcome: outcome_of(ending.outcome),
        duration_secs: None,
        end_reason: Some(ending.reason.clone()),
        ended_by: Some(ending.ended_by.clone()),
    };
    match app.db.finish_call_session(record.id(), &finish).await {
        Ok(_) | Err(DbError::Conflict(_)) => {}
        Err(error) => {
            tracing::warn!(room_id = %record.id(), %error, "could not write the call to history")
        }
    }
}

// --- Room list --------------------------------------------------------------------------

/// The rooms `user_id` may see, oldest first.
fn visible(live: &[RoomRecord], user_id: &str) -> Vec<RoomSummary> {
    live.iter()
        .filter(|r| r.visible_to(user_id))
        .map(RoomRecord::summary)
        .collect()
}

/// `getRooms`: public rooms plus the private ones the user is invited to or takes part in.
pub async fn list_for(app: &App, user_id: &str) -> AppResult<Vec<RoomSummary>> {
    Ok(visible(&live_rooms(app).await?, user_id))
}

/// `roomListUpdated` after `changed` changed: a public room's change goes to everyone
/// connected (the lobby), then each user who can also see private rooms gets their own
/// fuller list right after (clients keep the latest list); a private room's change goes to
/// its invitees and participants only.
async fn broadcast_list(app: &App, changed: &RoomRecord) {
    let live = match live_rooms(app).await {
        Ok(live) => live,
        Err(error) => {
            tracing::warn!(%error, "could not list rooms for roomListUpdated");
            return;
        }
    };
    let mut viewers: BTreeSet<String> = BTreeSet::new();
    if changed.room.is_private {
        viewers.extend(changed.room.invited_user_ids.iter().cloned());
        viewers.extend(changed.participant_ids());
    } else {
        let public: Vec<RoomSummary> = live
            .iter()
            .filter(|r| !r.room.is_private)
            .map(RoomRecord::summary)
            .collect();
        app.outbox
            .emit(
                rooms::lobby(),
                events::ROOM_LIST_UPDATED,
                json!({ "rooms": public }),
            )
            .await;
        for r in live.iter().filter(|r| r.room.is_private) {
            viewers.extend(r.room.invited_user_ids.iter().cloned());
            viewers.extend(r.participant_ids());
        }
    }
    for user in viewers {
        app.outbox
            .emit(
                rooms::user(&user),
                events::ROOM_LIST_UPDATED,
                json!({ "rooms": visible(&live, &user) }),
            )
            .await;
    }
}

// --- Operations -------------------------------------------------------------------------

/// Starts the room's history record. Direct calls have theirs already (the ring wrote it);
/// if it is missing it is created here so the call still shows.
async fn history_start(app: &App, record: &RoomRecord, status: CallStatus) {
    let invitees: Vec<String> = record
        .room
        .invited_user_ids
        .iter()
        .chain(record.room.participants.iter().map(|p| &p.user_id))
        .filter(|u| **u != record.room.host_id)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let kind = match record.history {
        HistoryKind::DirectCall => CallKind::Direct,
        HistoryKind::Room => CallKind::Room,
    };
    let new = NewCallSession {
        id: record.id().to_string(),
        kind,
        conversation_id: None,
        room_id: Some(record.id().to_string()),
        media_type: MediaType::Audio,
        mode: CallMode::Sfu,
        status,
        initiator_id: record.room.host_id.clone(),
        started_at: record.room.created_at,
        invitees,
        metadata: None,
    };
    if let Err(error) = app.db.insert_call_session(&new).await
        && !matches!(error, DbError::Conflict(_))
    {
        tracing::warn!(room_id = %record.id(), %error, "could not record the call");
    }
}

/// The accepted direct call becomes a direct room holding both (status active, both
/// participants accepted, both slots `InRoom` via `replace` from `Ringing{call_id}`, both
/// in a call, the call's history session marked answered). The room's id is the call id.
/// Ending the room later finishes that session as `completed`.
pub async fn open_direct(
    app: &App,
    call_id: &str,
    caller: Party,
    callee: Party,
) -> AppResult<Room> {
    let now = app.now();
    let fresh = domain::open_direct(call_id, &caller.actor(), &callee.actor(), now);
    let (record, ()) = transition(app, call_id, |cur| match cur {
        None => Ok((fresh.clone(), ())),
        Some(_) => Err(DomainError::Conflict("this call already has a room".into())),
    })
    .await?;
    app.store
        .index_add(&keys::live_rooms(), &[call_id.to_string()], None)
        .await?;
    let ringing = Engagement::Ringing {
        call_id: call_id.to_string(),
    };
    let in_room = Engagement::InRoom {
        room_id: call_id.to_string(),
    };
    for party in [&caller, &callee] {
        let swapped = call_state::replace(app, &party.user_id, &ringing, in_room.clone()).await?;
        if !swapped
            && call_state::engage(app, &party.user_id, in_room.clone())
                .await?
                .is_err()
        {
            tracing::warn!(%call_id, user_id = %party.user_id, "call-state slot held by something else");
        }
        attach(app, &party.user_id, &party.device_id, call_id).await;
    }
    // The ring normally recorded the call; a missing record is created so history holds it.
    let update = CallSessionUpdate {
        status: Some(CallStatus::Active),
        room_id: Some(call_id.to_string()),
        answered_at: Some(now),
        ..Default::default()
    };
    match app.db.update_call_session(call_id, &update).await {
        Ok(_) => {}
        Err(DbError::NotFound) => {
            history_start(app, &record, CallStatus::Active).await;
            if let Err(error) = app.db.update_call_session(call_id, &update).await {
                tracing::warn!(%call_id, %error, "could not mark the call answered");
            }
        }
        Err(error) => tracing::warn!(%call_id, %error, "could not mark the call answered"),
    }
    history_join(app, &record, &caller.user_id, now).await;
    history_join(app, &record, &callee.user_id, now).await;
    broadcast_list(app, &record).await;
    Ok(record.room)
}

/// Media flows in the room (reported by the SFU or the clients): the first report sets
/// `connectedAt`, from which the history's duration runs.
pub async fn mark_connected(app: &App, room_id: &str, at: Millis) -> AppResult<()> {
    match transition(app, room_id, |cur| {
        domain::mark_connected(cur, at).map(|r| (r, ()))
    })
    .await
    {
        Ok(_) => {}
        Err(AppError::Domain(DomainError::Conflict(_))) => return Ok(()),
        Err(e) => return Err(e),
    }
    let update = CallSessionUpdate {
        connected_at: Some(at),
        ..Default::default()
    };
    match app.db.update_call_session(room_id, &update).await {
        Ok(_) | Err(DbError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `createRoom`. The host takes part at once; invitees get `incomingCall` and have
/// `invitation_ttl_secs` to answer.
pub async fn create(app: &App, host: &Party, req: CreateRoom) -> AppResult<Room> {
    let target = match (&req.room_type, &req.target_user_id) {
        (RoomType::Direct, Some(target)) => {
            if *target == host.user_id {
                return Err(AppError::invalid("you cannot call yourself"));
            }
            let name = users::get_many(app, std::slice::from_ref(target))
                .await?
                .pop()
                .map(|u| u.name)
                .ok_or_else(|| AppError::not_found("no such user"))?;
            Some((target.clone(), name))
        }
        _ => None,
    };
    rate_limit::check(
        app,
        &host.user_id,
        CREATE_ACTION,
        app.settings.rate_limits.room_create,
    )
    .await?;
    let now = app.now();
    let room_id = uuid::Uuid::new_v4().to_string();
    let fresh = domain::create(
        NewRoom {
            room_id: room_id.clone(),
            room_type: req.room_type,
            room_name: req.room_name.clone(),
            target,
            invited_user_ids: req.invited_user_ids.clone().unwrap_or_default(),
        },
        &host.actor(),
        now,
    )?;
    claim(app, &host.user_id, &room_id).await?;
    let written = transition(app, &room_id, |cur| match cur {
        None => Ok((fresh.clone(), ())),
        Some(_) => Err(DomainError::Conflict("room id taken".into())),
    })
    .await;
    let record = match written {
        Ok((record, ())) => record,
        Err(error) => {
            unclaim(app, &host.user_id, &room_id).await;
            return Err(error);
        }
    };
    app.store
        .index_add(&keys::live_rooms(), std::slice::from_ref(&room_id), None)
        .await?;
    attach(app, &host.user_id, &host.device_id, &room_id).await;
    let status = if record.room.room_type == RoomType::Group {
        CallStatus::Active
    } else {
        CallStatus::Ringing
    };
    history_start(app, &record, status).await;
    history_join(app, &record, &host.user_id, now).await;
    let invitation = json!({
        "roomId": room_id,
        "roomType": record.room.room_type,
        "fromUserId": host.user_id,
        "fromUserName": host.name,
    });
    for (user, inv) in &record.invitations {
        app.outbox
            .emit(rooms::user(user), events::INCOMING_CALL, invitation.clone())
            .await;
        log_failure(
            "could not schedule an invitation expiry",
            &room_id,
            schedule(
                app,
                INVITATION_TIMER,
                &room_id,
                Some(user),
                inv.invited_at,
                app.settings.timers.invitation_ttl_secs,
            )
            .await,
        );
    }
    // Invitees with no connected device are woken by a high-priority push (seed 001), so a
    // phone can still answer within the invitation's lifetime.
    let invitees: Vec<String> = record.invitations.keys().cloned().collect();
    let pushed = notifications::notify_offline(app, &invitees, |user| NewNotice {
        user_id: user.to_string(),
        kind: "room_invitation".into(),
        title: format!("{} invites you to {}", host.name, record.room.room_name),
        body: match record.room.room_type {
            RoomType::Direct => "Incoming call".into(),
            RoomType::Group => "Join the room".into(),
        },
        data: invitation.clone(),
        priority: Priority::High,
    })
    .await;
    if let Err(error) = pushed {
        tracing::warn!(%room_id, %error, "could not push the invitations");
    }
    broadcast_list(app, &record).await;
    Ok(record.room)
}

/// The SFU room of a conversation call that got its third participant (§7): a private
/// group room with the given id, hosted by `host` (taking part at once, from the device
/// they attend the call with, under the call's claim of their slot), open to `members`
/// (the conversation's members). Nobody gets `incomingCall`: the call's participants learn
/// the room from `call:mode-changed`, and members may join it as invitees for as long as it
/// lasts (no invitation expiry). History: a `room` session of its own.
pub async fn open_for_call(
    app: &App,
    room_id: &str,
    host: &Party,
    room_name: String,
    members: Vec<String>,
) -> AppResult<Room> {
    let now = app.now();
    let mut fresh = domain::create(
        NewRoom {
            room_id: room_id.to_string(),
            room_type: RoomType::Group,
            room_name: Some(room_name),
            target: None,
            invited_user_ids: members,
        },
        &host.actor(),
        now,
    )?;
    fresh.room.is_private = true;
    fresh.invitations.clear();
    let (record, ()) = transition(app, room_id, |cur| match cur {
        None => Ok((fresh.clone(), ())),
        Some(_) => Err(DomainError::Conflict("this call already has a room".into())),
    })
    .await?;
    app.store
        .index_add(&keys::live_rooms(), &[room_id.to_string()], None)
        .await?;
    attach(app, &host.user_id, &host.device_id, room_id).await;
    history_start(app, &record, CallStatus::Active).await;
    history_join(app, &record, &host.user_id, now).await;
    broadcast_list(app, &record).await;
    Ok(record.room)
}

/// The conversation call that moved to this room ended: the room ends too (once; a room
/// over already is left alone).
pub async fn end_with_call(app: &App, room_id: &str) -> AppResult<()> {
    let now = app.now();
    match transition(app, room_id, |cur| {
        domain::end_with_call(cur, now).map(|r| (r, ()))
    })
    .await
    {
        Ok((record, ())) => {
            finish(app, &record).await;
            Ok(())
        }
        Err(AppError::Domain(DomainError::Conflict(_) | DomainError::NotFound(_))) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a user enters by `joinRoom` or by `acceptCall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Join,
    Accept,
}

/// `joinRoom` / `acceptCall`. Taking part claims the user's slot (`BUSY` when engaged
/// elsewhere). A participant joining again (new socket, back from a drop) takes part from
/// the new socket; the host doing so in the grace period is restored (`hostReconnected`).
pub async fn enter(app: &App, party: &Party, room_id: &str, entry: Entry) -> AppResult<Room> {
    claim(app, &party.user_id, room_id).await?;
    let max = app.settings.limits.room_participants;
    let now = app.now();
    let actor = party.actor();
    let mut previous_device = None;
    let mut had_invitation = false;
    let result = transition(app, room_id, |cur| {
        previous_device = cur
            .as_ref()
            .and_then(|r| r.devices.get(&party.user_id).cloned());
        had_invitation = cur
            .as_ref()
            .is_some_and(|r| r.invitations.contains_key(&party.user_id));
        match entry {
            Entry::Join => domain::join(cur, &actor, max, now),
            Entry::Accept => domain::accept(cur, &actor, max, now),
        }
    })
    .await;
    let (record, outcome) = match result {
        Ok(done) => done,
        Err(error) => {
            // A refused entry takes no part, so the slot goes back (a participant's rejoin
            // fails only once the room has ended, which frees the slot anyway).
            unclaim(app, &party.user_id, room_id).await;
            return Err(error);
        }
    };
    if let Some(old) = previous_device.filter(|d| *d != party.device_id) {
        app.outbox
            .leave(rooms::device(&party.user_id, &old), rooms::room(room_id))
            .await;
    }
    attach(app, &party.user_id, &party.device_id, room_id).await;
    match outcome {
        JoinOutcome::Joined => {
            if had_invitation {
                cancel(app, INVITATION_TIMER, room_id, Some(&party.user_id)).await;
                app.outbox
                    .emit_except(
                        audience(&record),
                        rooms::user(&party.user_id),
                        events::CALL_ACCEPTED,
                        json!({ "userId": party.user_id, "roomId": room_id }),
                    )
                    .await;
            }
            app.outbox
                .emit_except(
                    audience(&record),
                    rooms::user(&party.user_id),
                    events::USER_JOINED,
                    json!({
                        "userId": party.user_id,
                        "userName": party.name,
                        "socketId": party.socket_id,
                    }),
                )
                .await;
            history_join(app, &record, &party.user_id, now).await;
            broadcast_list(app, &record).await;
        }
        JoinOutcome::Rejoined { host_restored } => {
            cancel(app, RECONNECT_TIMER, room_id, Some(&party.user_id)).await;
            if host_restored {
                cancel(app, GRACE_TIMER, room_id, None).await;
                emit_room(
                    app,
                    &record,
                    events::HOST_RECONNECTED,
                    json!({ "roomId": room_id, "userId": party.user_id }),
                )
                .await;
            }
        }
    }
    Ok(record.room)
}

/// `rejectCall`: a pending invitee declines; the room's participants get `callRejected`.
/// Declining a direct room ends it.
pub async fn reject(app: &App, user_id: &str, user_name: &str, room_id: &str) -> AppResult<()> {
    let now = app.now();
    let (record, ended) = transition(app, room_id, |cur| domain::reject(cur, user_id, now)).await?;
    cancel(app, INVITATION_TIMER, room_id, Some(user_id)).await;
    emit_room(
        app,
        &record,
        events::CALL_REJECTED,
        json!({ "userId": user_id, "userName": user_name, "roomId": room_id }),
    )
    .await;
    if ended {
        finish(app, &record).await;
    } else {
        broadcast_list(app, &record).await;
    }
    Ok(())
}

/// What follows a participant leaving (explicitly or at the end of the reconnect window).
async fn after_leave(
    app: &App,
    before_device: Option<String>,
    record: &RoomRecord,
    user_id: &str,
    outcome: LeaveOutcome,
) {
    let room_id = record.id();
    let now = app.now();
    cancel(app, RECONNECT_TIMER, room_id, Some(user_id)).await;
    crate::services::media::participant_left(app, room_id, user_id).await;
    detach(app, user_id, before_device.as_deref(), room_id).await;
    history_leave(app, record, user_id, now).await;
    emit_room(
        app,
        record,
        events::USER_LEFT,
        json!({ "userId": user_id, "roomId": room_id }),
    )
    .await;
    if outcome.hostless {
        cancel(app, GRACE_TIMER, room_id, None).await;
        emit_room(
            app,
            record,
            events::ROOM_HOSTLESS,
            json!({
                "roomId": room_id,
                "message": "The host left; any participant may now end the room",
            }),
        )
        .await;
    }
    if outcome.ended {
        finish(app, record).await;
    } else {
        broadcast_list(app, record).await;
    }
}

/// `leaveRoom`.
pub async fn leave(app: &App, user_id: &str, room_id: &str) -> AppResult<()> {
    let now = app.now();
    let hostless = app.settings.rooms.enable_hostless_mode;
    let mut device = None;
    let (record, outcome) = transition(app, room_id, |cur| {
        device = cur.as_ref().and_then(|r| r.devices.get(user_id).cloned());
        domain::leave(cur, user_id, hostless, now)
    })
    .await?;
    after_leave(app, device, &record, user_id, outcome).await;
    Ok(())
}

/// `endCall`: see the domain for who may. The loser of two racing `endCall`s gets
/// `CONFLICT`; the room ends (and is written to history) once.
pub async fn end(app: &App, user_id: &str, room_id: &str) -> AppResult<()> {
    let now = app.now();
    let (record, ()) = transition(app, room_id, |cur| {
        domain::end(cur, user_id, now).map(|r| (r, ()))
    })
    .await?;
    finish(app, &record).await;
    Ok(())
}

/// The room ended (the transition that ended it ran here, so this runs once): everyone is
/// told, released and detached, pending invitations expire, and the call goes to history.
async fn finish(app: &App, record: &RoomRecord) {
    let room_id = record.id();
    let ending = record.ending.clone();
    emit_room(
        app,
        record,
        events::ROOM_CALL_ENDED,
        json!({
            "roomId": room_id,
            "endedBy": ending.as_ref().map_or(domain::ENDED_BY_SERVER, |e| e.ended_by.as_str()),
            "reason": ending.as_ref().map(|e| e.reason.clone()),
        }),
    )
    .await;
    // Every socket still in the room's channel leaves it.
    app.outbox
        .leave(rooms::room(room_id), rooms::room(room_id))
        .await;
    cancel(app, GRACE_TIMER, room_id, None).await;
    crate::services::media::room_ended(app, room_id).await;
    for p in &record.room.participants {
        cancel(app, RECONNECT_TIMER, room_id, Some(&p.user_id)).await;
        detach(app, &p.user_id, None, room_id).await;
    }
    for user in record.invitations.keys() {
        cancel(app, INVITATION_TIMER, room_id, Some(user)).await;
        app.outbox
            .emit(
                rooms::user(user),
                events::INVITATION_EXPIRED,
                json!({ "roomId": room_id }),
            )
            .await;
    }
    if let Err(error) = app
        .store
        .index_remove(&keys::live_rooms(), &[room_id.to_string()])
        .await
    {
        tracing::warn!(%room_id, %error, "could not unlist the room");
    }
    history_finish(app, record).await;
    broadcast_list(app, record).await;
}

/// A socket dropped: if it is the one a participant takes part from, they are reconnecting
/// for the reconnect window, and a group host's grace period starts. Runs for every
/// disconnect (seed 000's `cleanupUserCallState`, room part).
pub async fn socket_dropped(app: &App, user_id: &str, socket_id: &str) -> AppResult<()> {
    dropped(app, user_id, Some(socket_id)).await
}

/// Every device of the user lapsed (the presence reaper found them: their instance died
/// without running the disconnect): the participant is reconnecting as after a drop, so a
/// room whose members vanished with a crashed instance still ends.
pub async fn user_gone(app: &App, user_id: &str) -> AppResult<()> {
    dropped(app, user_id, None).await
}

async fn dropped(app: &App, user_id: &str, socket_id: Option<&str>) -> AppResult<()> {
    let Some(Engagement::InRoom { room_id }) = call_state::current(app, user_id).await? else {
        return Ok(());
    };
    let now = app.now();
    let dropped = transition(app, &room_id, |cur| {
        domain::socket_dropped(cur, user_id, socket_id, now)
    })
    .await;
    let outcome = match dropped {
        Ok((_, outcome)) => outcome,
        Err(AppError::Domain(DomainError::Conflict(_) | DomainError::NotFound(_))) => {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let timers = &app.settings.timers;
    schedule(
        app,
        RECONNECT_TIMER,
        &room_id,
        Some(user_id),
        now,
        timers.reconnect_window_secs,
    )
    .await?;
    if outcome.grace_started {
        schedule(
            app,
            GRACE_TIMER,
            &room_id,
            None,
            now,
            timers.host_grace_period_secs,
        )
        .await?;
    }
    Ok(())
}

/// Registers the room timer kinds with the deadline-queue runner.
pub fn register_timers(app: &App) {
    app.timers.register(
        RECONNECT_TIMER,
        std::sync::Arc::new(|app, timer| {
            Box::pin(async move { reconnect_expired(&app, &timer).await })
        }),
    );
    app.timers.register(
        GRACE_TIMER,
        std::sync::Arc::new(|app, timer| {
            Box::pin(async move { grace_expired(&app, &timer).await })
        }),
    );
    app.timers.register(
        INVITATION_TIMER,
        std::sync::Arc::new(|app, timer| {
            Box::pin(async move { invitation_expired(&app, &timer).await })
        }),
    );
}

/// Runs the handler of a room timer (the deadline-queue runner does this in production;
/// simulated-time tests call it with the timers they claim). Returns false for other kinds.
pub async fn fire(app: &App, timer: &Timer) -> bool {
    match timer.kind.as_str() {
        RECONNECT_TIMER => reconnect_expired(app, timer).await,
        GRACE_TIMER => grace_expired(app, timer).await,
        INVITATION_TIMER => invitation_expired(app, timer).await,
        _ => return false,
    }
    true
}

fn payload(timer: &Timer) -> Option<TimerPayload> {
    match serde_json::from_str(&timer.payload) {
        Ok(p) => Some(p),
        Err(error) => {
            tracing::warn!(id = %timer.id, %error, "unreadable room timer");
            None
        }
    }
}

/// Whether a timer transition lost to a newer change (nothing to do) rather than failed.
fn stale(result: &AppResult<impl Sized>) -> bool {
    matches!(
        result,
        Err(AppError::Domain(
            DomainError::Conflict(_) | DomainError::NotFound(_)
        ))
    )
}

/// [`RECONNECT_TIMER`]: the participant did not come back in time, so they leave (which
/// ends a direct room).
pub async fn reconnect_expired(app: &App, timer: &Timer) {
    let Some(TimerPayload {
        room_id,
        user_id: Some(user_id),
        since,
    }) = payload(timer)
    else {
        return;
    };
    let now = app.now();
    let hostless = app.settings.rooms.enable_hostless_mode;
    let mut device = None;
    let result = transition(app, &room_id, |cur| {
        device = cur.as_ref().and_then(|r| r.devices.get(&user_id).cloned());
        domain::reconnect_expired(cur, &user_id, since, hostless, now)
    })
    .await;
    if stale(&result) {
        return;
    }
    match result {
        Ok((record, outcome)) => after_leave(app, device, &record, &user_id, outcome).await,
        Err(error) => tracing::warn!(%room_id, %user_id, %error, "reconnect expiry failed"),
    }
}

/// [`GRACE_TIMER`]: the host did not come back: hostless (`enable_hostless_mode`) or ended.
pub async fn grace_expired(app: &App, timer: &Timer) {
    let Some(TimerPayload { room_id, since, .. }) = payload(timer) else {
        return;
    };
    let now = app.now();
    let hostless = app.settings.rooms.enable_hostless_mode;
    let result = transition(app, &room_id, |cur| {
        domain::grace_expired(cur, since, hostless, now)
    })
    .await;
    if stale(&result) {
        return;
    }
    match result {
        Ok((record, GraceOutcome::Hostless)) => {
            emit_room(
                app,
                &record,
                events::ROOM_HOSTLESS,
                json!({
                    "roomId": room_id,
                    "message": "The host did not come back; any participant may now end the room",
                }),
            )
            .await;
            broadcast_list(app, &record).await;
        }
        Ok((record, GraceOutcome::Ended)) => finish(app, &record).await,
        Err(error) => tracing::warn!(%room_id, %error, "grace check failed"),
    }
}

/// [`INVITATION_TIMER`]: unanswered, the invitation expires (`invitationExpired` to the
/// invitee); an unanswered direct room ends as missed.
pub async fn invitation_expired(app: &App, timer: &Timer) {
    let Some(TimerPayload {
        room_id,
        user_id: Some(user_id),
        since,
    }) = payload(timer)
    else {
        return;
    };
    let now = app.now();
    let result = transition(app, &room_id, |cur| {
        domain::invitation_expired(cur, &user_id, since, now)
    })
    .await;
    if stale(&result) {
        return;
    }
    match result {
        Ok((record, ended)) => {
            app.outbox
                .emit(
                    rooms::user(&user_id),
                    events::INVITATION_EXPIRED,
                    json!({ "roomId": room_id }),
                )
                .await;
            if ended {
                finish(app, &record).await;
            } else {
                broadcast_list(app, &record).await;
            }
        }
        Err(error) => tracing::warn!(%room_id, %user_id, %error, "invitation expiry failed"),
    }
}

// --- In-room chat and media ---------------------------------------------------------------

/// `sendMessage`: stored in the room and sent to every participant as `newMessage` (the
/// sender's devices included; clients dedupe by `messageId`).
pub async fn send_message(
    app: &App,
    party: &Party,
    room_id: &str,
    content: &str,
    reply_to: Option<&str>,
) -> AppResult<ChatMessage> {
    rate_limit::check(
        app,
        &party.user_id,
        MESSAGE_ACTION,
        app.settings.rate_limits.message,
    )
    .await?;
    let now = app.now();
    let id = uuid::Uuid::new_v4().to_string();
    let actor = party.actor();
    let (record, message) = transition(app, room_id, |cur| {
        domain::send_message(cur, &actor, &id, content, reply_to, now)
    })
    .await?;
    emit_room(app, &record, events::NEW_MESSAGE, to_value(&message)).await;
    Ok(message)
}

/// `reactToMessage`: toggles the user's reaction; participants get
/// `messageReactionUpdated`.
pub async fn react(
    app: &App,
    user_id: &str,
    room_id: &str,
    message_id: &str,
    emoji: &str,
) -> AppResult<ChatMessage> {
    let (record, message) = transition(app, room_id, |cur| {
        domain::react(cur, user_id, message_id, emoji)
    })
    .await?;
    emit_room(
        app,
        &record,
        events::ROOM_MESSAGE_REACTION_UPDATED,
        json!({ "messageId": message.message_id, "reactions": message.reactions }),
    )
    .await;
    Ok(message)
}

/// `mediaStateChanged`: participants get `participantMediaStateUpdated`.
pub async fn media_state(
    app: &App,
    user_id: &str,
    room_id: &str,
    is_muted: bool,
    is_video_enabled: bool,
) -> AppResult<()> {
    set_media_state(
        app,
        user_id,
        room_id,
        Some(is_muted),
        Some(is_video_enabled),
    )
    .await
}

/// A participant paused or resumed their mic or camera producer (docs/protocol.md §8):
/// the flag it stands for follows, announced as for `mediaStateChanged`, but only when it
/// actually changes. `None` leaves a flag as it is.
pub async fn media_state_from_producer(
    app: &App,
    user_id: &str,
    room_id: &str,
    is_muted: Option<bool>,
    is_video_enabled: Option<bool>,
) -> AppResult<()> {
    let Some(record) = record(app, room_id).await?.filter(|r| !r.is_ended()) else {
        return Ok(());
    };
    let Some(p) = record.participant(user_id) else {
        return Ok(());
    };
    let unchanged = is_muted.is_none_or(|m| m == p.is_muted)
        && is_video_enabled.is_none_or(|v| v == p.is_video_enabled);
    if unchanged {
        return Ok(());
    }
    set_media_state(app, user_id, room_id, is_muted, is_video_enabled).await
}

/// Sets the given flags (the others as they are at the write) and tells the room.
async fn set_media_state(
    app: &App,
    user_id: &str,
    room_id: &str,
    is_muted: Option<bool>,
    is_video_enabled: Option<bool>,
) -> AppResult<()> {
    let now = app.now();
    let (record, p) = transition(app, room_id, |cur| {
        let current = cur
            .as_ref()
            .and_then(|r| r.participant(user_id))
            .map(|p| (p.is_muted, p.is_video_enabled))
            .unwrap_or_default();
        domain::media_state(
            cur,
            user_id,
            is_muted.unwrap_or(current.0),
            is_video_enabled.unwrap_or(current.1),
            now,
        )
    })
    .await?;
    emit_room(
        app,
        &record,
        events::PARTICIPANT_MEDIA_STATE_UPDATED,
        json!({
            "userId": p.user_id,
            "name": p.name,
            "isMuted": p.is_muted,
            "isVideoEnabled": p.is_video_enabled,
        }),
    )
    .await;
    Ok(())
}

/// `GET /api/rooms`: every live room.
pub async fn all(app: &App) -> AppResult<Vec<Room>> {
    Ok(live_rooms(app).await?.into_iter().map(|r| r.room).collect())
}

/// `GET /api/rooms/{roomId}`: a live or recently ended room.
pub async fn get(app: &App, room_id: &str) -> AppResult<Room> {
    record(app, room_id)
        .await?
        .map(|r| r.room)
        .ok_or_else(|| AppError::not_found("no such room"))
}

/// Who is in which room, for tests and `/stats`.
pub async fn participants_by_room(app: &App) -> AppResult<BTreeMap<String, Vec<String>>> {
    Ok(live_rooms(app)
        .await?
        .into_iter()
        .map(|r| (r.id().to_string(), r.participant_ids()))
        .collect())
}
