//! Rooms (protocol §6, seed 002's `RoomManager`) as a sans-IO state machine.
//!
//! Every function takes the current [`RoomRecord`] (as read from the store) and `now`, and
//! returns the next record plus an outcome saying what happened, or a [`DomainError`]
//! refusing the change. The service writes the result with compare-and-set and retries from
//! a fresh read when another writer got there first, so seed 002's `AsyncLock` sections
//! (two leaves at once, double `endCall`, a host reconnect racing the grace check) become
//! plain CAS retries that hold across instances. A function refusing with
//! [`DomainError::Conflict`] on a fresh read is how the loser of such a race learns it lost.
//!
//! What the wire [`Room`] does not carry lives next to it in the record: which device takes
//! part for each participant, who is reconnecting since when, pending invitations, and the
//! call milestones used for history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_protocol::chat::Reaction;
use switchboard_protocol::rooms::{
    ChatMessage, ChatReply, Participant, ParticipantStatus, Room, RoomStatus, RoomSummary, RoomType,
};

use crate::{DomainError, Millis};

/// Room chat keeps this many newest messages (the room record holds them; the chat of
/// conversations is the durable one).
pub const MAX_ROOM_MESSAGES: usize = 100;
/// A reply quotes at most this many characters of the original.
pub const REPLY_QUOTE_CHARS: usize = 200;
/// `endedBy` when the server ended a room by itself (timeouts, last leave by drop).
pub const ENDED_BY_SERVER: &str = "server";

/// Who acts: the authenticated user and the socket (device) they act from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: String,
    pub name: String,
    pub socket_id: String,
    pub device_id: String,
}

/// A pending invitation to a private room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub invited_at: Millis,
    pub from_user_id: String,
}

/// How an ended room goes into call history (protocol §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoomOutcome {
    /// Someone besides the creator took part.
    Completed,
    /// The invitee of a direct room never answered.
    Missed,
    /// The invitee of a direct room declined.
    Rejected,
    /// Ended before anyone else joined.
    Cancelled,
}

/// Why and by whom a room ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ending {
    pub ended_by: String,
    pub reason: String,
    pub outcome: RoomOutcome,
}

/// Which kind of call-history record the room writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HistoryKind {
    /// An accepted §5 direct call (the history id is the call id).
    DirectCall,
    /// A room created with `createRoom`.
    Room,
}

/// The stored state of a room: the wire [`Room`] plus what only the server needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRecord {
    pub room: Room,
    /// Participant user id → the device taking part (events go to that device).
    #[serde(default)]
    pub devices: BTreeMap<String, String>,
    /// Participant user id → when their socket dropped (the reconnect window runs).
    #[serde(default)]
    pub reconnecting: BTreeMap<String, Millis>,
    /// Invitee user id → their pending invitation.
    #[serde(default)]
    pub invitations: BTreeMap<String, Invitation>,
    pub history: HistoryKind,
    /// When a second user first took part (the call was answered).
    #[serde(default)]
    pub answered_at: Option<Millis>,
    /// When media first flowed (reported by the SFU); the duration runs from it.
    #[serde(default)]
    pub connected_at: Option<Millis>,
    /// Set once, when the room ends.
    #[serde(default)]
    pub ending: Option<Ending>,
    /// User id → their participant row in call history (to stamp their leave time).
    #[serde(default)]
    pub history_participants: BTreeMap<String, String>,
}

/// The result of a successful join or accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// A new participant.
    Joined,
    /// A participant came back (another socket, or after a drop).
    Rejoined {
        /// The host came back within the grace period (`hostReconnected`).
        host_restored: bool,
    },
}

/// The result of a leave (explicit, or the reconnect window running out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaveOutcome {
    /// The leave ended the room.
    pub ended: bool,
    /// The leaving host turned the room hostless.
    pub hostless: bool,
}

/// The result of a socket drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropOutcome {
    /// The host's grace period starts (group rooms).
    pub grace_started: bool,
}

/// What the grace check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraceOutcome {
    Hostless,
    Ended,
}

fn conflict(message: &str) -> DomainError {
    DomainError::Conflict(message.to_string())
}

fn forbidden(message: &str) -> DomainError {
    DomainError::Forbidden(message.to_string())
}

fn live(record: Option<RoomRecord>) -> Result<RoomRecord, DomainError> {
    let record = record.ok_or_else(|| DomainError::NotFound("no such room".into()))?;
    if record.room.status == RoomStatus::Ended {
        return Err(conflict("the room has ended"));
    }
    Ok(record)
}

fn participant(actor: &Actor, is_host: bool, now: Millis) -> Participant {
    Participant {
        user_id: actor.user_id.clone(),
        name: actor.name.clone(),
        socket_id: actor.socket_id.clone(),
        joined_at: now,
        is_host,
        status: ParticipantStatus::Accepted,
        producer_ids: Vec::new(),
        consumer_ids: Vec::new(),
        is_muted: false,
        is_video_enabled: false,
        media_state_updated_at: now,
    }
}

impl RoomRecord {
    pub fn id(&self) -> &str {
        &self.room.room_id
    }

    pub fn is_ended(&self) -> bool {
        self.room.status == RoomStatus::Ended
    }

    pub fn participant(&self, user_id: &str) -> Option<&Participant> {
        self.room.participants.iter().find(|p| p.user_id == user_id)
    }

    pub fn is_participant(&self, user_id: &str) -> bool {
        self.participant(user_id).is_some()
    }

    /// The participants' user ids.
    pub fn participant_ids(&self) -> Vec<String> {
        self.room
            .participants
            .iter()
            .map(|p| p.user_id.clone())
            .collect()
    }

    /// Whether `user_id` may see the room in `getRooms` / `roomListUpdated`: public rooms
    /// are for everyone, private ones for their invitees and participants.
    pub fn visible_to(&self, user_id: &str) -> bool {
        !self.room.is_private
            || self.room.invited_user_ids.iter().any(|u| u == user_id)
            || self.is_participant(user_id)
    }

    /// The list entry (§6 `RoomSummary`).
    pub fn summary(&self) -> RoomSummary {
        RoomSummary {
            room_id: self.room.room_id.clone(),
            room_name: self.room.room_name.clone(),
            room_type: self.room.room_type,
            host_id: self.room.host_id.clone(),
            host_name: self.room.host_name.clone(),
            participant_count: u32::try_from(self.room.participants.len()).unwrap_or(u32::MAX),
            is_hostless: self.room.is_hostless,
            is_private: self.room.is_private,
            created_at: self.room.created_at,
        }
    }

    /// Ends the room (once).
    fn end(&mut self, ended_by: &str, reason: &str, outcome: Option<RoomOutcome>, now: Millis) {
        let outcome = outcome.unwrap_or(if self.answered_at.is_some() {
            RoomOutcome::Completed
        } else {
            RoomOutcome::Cancelled
        });
        self.room.status = RoomStatus::Ended;
        self.room.ended_at = Some(now);
        self.room.host_disconnected_at = None;
        self.ending = Some(Ending {
            ended_by: ended_by.to_string(),
            reason: reason.to_string(),
            outcome,
        });
    }

    fn mark_answered(&mut self, now: Millis) {
        if self.room.participants.len() >= 2 && self.answered_at.is_none() {
            self.answered_at = Some(now);
        }
        if self.room.participants.len() >= 2 || self.room.room_type == RoomType::Group {
            self.room.status = RoomStatus::Active;
        }
    }

    fn remove_participant(&mut self, user_id: &str) {
        self.room.participants.retain(|p| p.user_id != user_id);
        self.devices.remove(user_id);
        self.reconnecting.remove(user_id);
    }
}

/// What `createRoom` asks for, validated by the gateway for shape and sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoom {
    pub room_id: String,
    pub room_type: RoomType,
    pub room_name: Option<String>,
    /// Direct rooms: the other user and their display name.
    pub target: Option<(String, String)>,
    /// Group rooms: invitees (the room is private when any are given).
    pub invited_user_ids: Vec<String>,
}

/// `createRoom`: the host is the first participant. A group room is active at once; a
/// direct room (seed 002's old flow) waits, `pending`, for its invitee. Returns the record
/// and the users to invite.
pub fn create(new: NewRoom, host: &Actor, now: Millis) -> Result<RoomRecord, DomainError> {
    let (is_private, invited, status, default_name) = match new.room_type {
        RoomType::Group => {
            if new.target.is_some() {
                return Err(DomainError::invalid(
                    "targetUserId is for direct rooms; use invitedUserIds",
                ));
            }
            let mut invited: Vec<String> = Vec::new();
            for id in &new.invited_user_ids {
                if *id != host.user_id && !invited.contains(id) {
                    invited.push(id.clone());
                }
            }
            (
                !invited.is_empty(),
                invited,
                RoomStatus::Active,
                format!("{}'s room", host.name),
            )
        }
        RoomType::Direct => {
            let Some((target, target_name)) = new.target.clone() else {
                return Err(DomainError::invalid("a direct room needs targetUserId"));
            };
            if target == host.user_id {
                return Err(DomainError::invalid("you cannot call yourself"));
            }
            if !new.invited_user_ids.is_empty() && new.invited_user_ids != [target.clone()] {
                return Err(DomainError::invalid(
                    "a direct room invites exactly its targetUserId",
                ));
            }
            (
                true,
                vec![target],
                RoomStatus::Pending,
                format!("{} & {}", host.name, target_name),
            )
        }
    };
    let mut invited_user_ids = vec![host.user_id.clone()];
    invited_user_ids.extend(invited.iter().cloned());
    let invitations = invited
        .iter()
        .map(|u| {
            (
                u.clone(),
                Invitation {
                    invited_at: now,
                    from_user_id: host.user_id.clone(),
                },
            )
        })
        .collect();
    Ok(RoomRecord {
        room: Room {
            room_id: new.room_id,
            room_type: new.room_type,
            room_name: new.room_name.unwrap_or(default_name),
            host_id: host.user_id.clone(),
            host_name: host.name.clone(),
            status,
            is_private,
            participants: vec![participant(host, true, now)],
            created_at: now,
            ended_at: None,
            is_hostless: false,
            host_disconnected_at: None,
            invited_user_ids: if is_private {
                invited_user_ids
            } else {
                Vec::new()
            },
            messages: Vec::new(),
        },
        devices: BTreeMap::from([(host.user_id.clone(), host.device_id.clone())]),
        reconnecting: BTreeMap::new(),
        invitations,
        history: HistoryKind::Room,
        answered_at: None,
        connected_at: None,
        ending: None,
        history_participants: BTreeMap::new(),
    })
}

/// An accepted §5 call becomes a direct room holding both users, already active and
/// answered. The caller is its host.
pub fn open_direct(call_id: &str, caller: &Actor, callee: &Actor, now: Millis) -> RoomRecord {
    RoomRecord {
        room: Room {
            room_id: call_id.to_string(),
            room_type: RoomType::Direct,
            room_name: format!("{} & {}", caller.name, callee.name),
            host_id: caller.user_id.clone(),
            host_name: caller.name.clone(),
            status: RoomStatus::Active,
            is_private: true,
            participants: vec![
                participant(caller, true, now),
                participant(callee, false, now),
            ],
            created_at: now,
            ended_at: None,
            is_hostless: false,
            host_disconnected_at: None,
            invited_user_ids: vec![caller.user_id.clone(), callee.user_id.clone()],
            messages: Vec::new(),
        },
        devices: BTreeMap::from([
            (caller.user_id.clone(), caller.device_id.clone()),
            (callee.user_id.clone(), callee.device_id.clone()),
        ]),
        reconnecting: BTreeMap::new(),
        invitations: BTreeMap::new(),
        history: HistoryKind::DirectCall,
        answered_at: Some(now),
        connected_at: None,
        ending: None,
        history_participants: BTreeMap::new(),
    }
}

/// `joinRoom`: anyone joins a public room; only invitees join a private one (a pending
/// invitee joining accepts). A participant joining again (a new socket, or back from a drop)
/// takes part from that socket; the host doing so within the grace period is restored.
pub fn join(
    record: Option<RoomRecord>,
    actor: &Actor,
    max_participants: usize,
    now: Millis,
) -> Result<(RoomRecord, JoinOutcome), DomainError> {
    let mut record = live(record)?;
    if let Some(p) = record
        .room
        .participants
        .iter_mut()
        .find(|p| p.user_id == actor.user_id)
    {
        p.socket_id = actor.socket_id.clone();
        record
            .devices
            .insert(actor.user_id.clone(), actor.device_id.clone());
        record.reconnecting.remove(&actor.user_id);
        let host_restored =
            record.room.host_id == actor.user_id && record.room.host_disconnected_at.is_some();
        if host_restored {
            record.room.host_disconnected_at = None;
        }
        return Ok((record, JoinOutcome::Rejoined { host_restored }));
    }
    if record.room.is_private && !record.room.invited_user_ids.contains(&actor.user_id) {
        return Err(forbidden("this room is private: only invitees may join"));
    }
    if record.room.room_type == RoomType::Direct && record.room.participants.len() >= 2 {
        return Err(forbidden("a direct room holds two users"));
    }
    if record.room.participants.len() >= max_participants {
        return Err(forbidden("the room is full"));
    }
    record.invitations.remove(&actor.user_id);
    record
        .room
        .participants
        .push(participant(actor, false, now));
    record
        .devices
        .insert(actor.user_id.clone(), actor.device_id.clone());
    record.mark_answered(now);
    Ok((record, JoinOutcome::Joined))
}

/// `acceptCall`: a pending invitee accepts and becomes a participant.
pub fn accept(
    record: Option<RoomRecord>,
    actor: &Actor,
    max_participants: usize,
    now: Millis,
) -> Result<(RoomRecord, JoinOutcome), DomainError> {
    let record = live(record)?;
    if !record.invitations.contains_key(&actor.user_id) {
        if record.is_participant(&actor.user_id) {
            return Err(conflict("you already take part in this room"));
        }
        return Err(forbidden("you have no pending invitation to this room"));
    }
    join(Some(record), actor, max_participants, now)
}

/// `rejectCall`: a pending invitee declines. Declining a direct room ends it.
pub fn reject(
    record: Option<RoomRecord>,
    user_id: &str,
    now: Millis,
) -> Result<(RoomRecord, bool), DomainError> {
    let mut record = live(record)?;
    if record.invitations.remove(user_id).is_none() {
        return Err(forbidden("you have no pending invitation to this room"));
    }
    let ends = record.room.room_type == RoomType::Direct;
    if ends {
        record.end(user_id, "rejected", Some(RoomOutcome::Rejected), now);
    }
    Ok((record, ends))
}

/// An invitation ran out unanswered (after `invitation_ttl_secs`). A direct room whose
/// invitee never answered ends as missed. `invited_at` names the invitation the timer was
/// set for, so a newer invitation is left alone.
pub fn invitation_expired(
    record: Option<RoomRecord>,
    user_id: &str,
    invited_at: Millis,
    now: Millis,
) -> Result<(RoomRecord, bool), DomainError> {
    let mut record = live(record)?;
    match record.invitations.get(user_id) {
        Some(inv) if inv.invited_at == invited_at => {}
        _ => return Err(conflict("the invitation was answered")),
    }
    record.invitations.remove(user_id);
    let ends = record.room.room_type == RoomType::Direct && record.room.participants.len() < 2;
    if ends {
        record.end(ENDED_BY_SERVER, "no_answer", Some(RoomOutcome::Missed), now);
    }
    Ok((record, ends))
}

/// Removes a participant. A direct room ends when either side leaves; a group room ends
/// with its last participant. A group host who leaves for good hands the room to its
/// participants (hostless) when `hostless_mode`, and ends it otherwise.
fn leave_inner(
    mut record: RoomRecord,
    user_id: &str,
    ended_by: &str,
    reason: &str,
    hostless_mode: bool,
    now: Millis,
) -> (RoomRecord, LeaveOutcome) {
    record.remove_participant(user_id);
    let mut outcome = LeaveOutcome {
        ended: false,
        hostless: false,
    };
    if record.room.room_type == RoomType::Direct || record.room.participants.is_empty() {
        record.end(ended_by, reason, None, now);
        outcome.ended = true;
    } else if record.room.host_id == user_id && !record.room.is_hostless {
        if hostless_mode {
            record.room.is_hostless = true;
            record.room.host_disconnected_at = None;
            outcome.hostless = true;
        } else {
            record.end(ended_by, "host_left", None, now);
            outcome.ended = true;
        }
    }
    (record, outcome)
}

/// `leaveRoom`.
pub fn leave(
    record: Option<RoomRecord>,
    user_id: &str,
    hostless_mode: bool,
    now: Millis,
) -> Result<(RoomRecord, LeaveOutcome), DomainError> {
    let record = live(record)?;
    if !record.is_participant(user_id) {
        return Err(DomainError::NotFound("you are not in this room".into()));
    }
    Ok(leave_inner(
        record,
        user_id,
        user_id,
        "left",
        hostless_mode,
        now,
    ))
}

/// `endCall`: in a group room the host ends it, or any participant once it is hostless;
/// either participant ends a direct room. A second `endCall` loses with `CONFLICT`.
pub fn end(
    record: Option<RoomRecord>,
    user_id: &str,
    now: Millis,
) -> Result<RoomRecord, DomainError> {
    let mut record = live(record)?;
    if !record.is_participant(user_id) {
        return Err(forbidden("only participants end a room"));
    }
    if record.room.room_type == RoomType::Group
        && !record.room.is_hostless
        && record.room.host_id != user_id
    {
        return Err(forbidden(
            "only the host ends a group room (anyone may once it is hostless)",
        ));
    }
    record.end(user_id, "ended", None, now);
    Ok(record)
}

/// The conversation call (§7) that moved to this room ended, so the room ends with it
/// (ended by the server, reason `call_ended`), whoever is still in it.
pub fn end_with_call(record: Option<RoomRecord>, now: Millis) -> Result<RoomRecord, DomainError> {
    let mut record = live(record)?;
    record.end(ENDED_BY_SERVER, "call_ended", None, now);
    Ok(record)
}

/// A participant's socket dropped: they stay, reconnecting, for the reconnect window. A
/// group host's drop also starts the grace period. Only the socket taking part counts (the
/// user's other devices dropping change nothing); `None` means the user is gone whatever
/// their socket (every device lapsed: their instance died without telling).
pub fn socket_dropped(
    record: Option<RoomRecord>,
    user_id: &str,
    socket_id: Option<&str>,
    now: Millis,
) -> Result<(RoomRecord, DropOutcome), DomainError> {
    let mut record = live(record)?;
    match record.participant(user_id) {
        Some(p) if socket_id.is_none_or(|s| s == p.socket_id) => {}
        _ => return Err(conflict("that socket does not take part")),
    }
    if record.reconnecting.contains_key(user_id) {
        return Err(conflict("already reconnecting"));
    }
    record.reconnecting.insert(user_id.to_string(), now);
    let grace_started = record.room.room_type == RoomType::Group
        && record.room.host_id == user_id
        && !record.room.is_hostless;
    if grace_started {
        record.room.host_disconnected_at = Some(now);
    }
    Ok((record, DropOutcome { grace_started }))
}

/// The reconnect window of a participant ran out: if they are still reconnecting since
/// `since`, they leave.
pub fn reconnect_expired(
    record: Option<RoomRecord>,
    user_id: &str,
    since: Millis,
    hostless_mode: bool,
    now: Millis,
) -> Result<(RoomRecord, LeaveOutcome), DomainError> {
    let record = live(record)?;
    if record.reconnecting.get(user_id) != Some(&since) {
        return Err(conflict("the participant came back"));
    }
    Ok(leave_inner(
        record,
        user_id,
        ENDED_BY_SERVER,
        "disconnected",
        hostless_mode,
        now,
    ))
}

/// The host's grace period (started at `since`) ran out: unless the host came back, the
/// room turns hostless (`hostless_mode`) or ends.
pub fn grace_expired(
    record: Option<RoomRecord>,
    since: Millis,
    hostless_mode: bool,
    now: Millis,
) -> Result<(RoomRecord, GraceOutcome), DomainError> {
    let mut record = live(record)?;
    if record.room.host_disconnected_at != Some(since) {
        return Err(conflict("the host came back"));
    }
    record.room.host_disconnected_at = None;
    if hostless_mode {
        record.room.is_hostless = true;
        Ok((record, GraceOutcome::Hostless))
    } else {
        record.end(ENDED_BY_SERVER, "host_timeout", None, now);
        Ok((record, GraceOutcome::Ended))
    }
}

fn require_participant(record: &RoomRecord, user_id: &str) -> Result<(), DomainError> {
    if record.is_participant(user_id) {
        Ok(())
    } else {
        Err(forbidden("only participants may do this"))
    }
}

/// `sendMessage`: participants only; `reply_to` must name a message of the room and is
/// resolved to `{messageId, userName, content}` (the quote shortened). The room keeps its
/// newest [`MAX_ROOM_MESSAGES`].
pub fn send_message(
    record: Option<RoomRecord>,
    actor: &Actor,
    message_id: &str,
    content: &str,
    reply_to: Option<&str>,
    now: Millis,
) -> Result<(RoomRecord, ChatMessage), DomainError> {
    let mut record = live(record)?;
    require_participant(&record, &actor.user_id)?;
    if content.trim().is_empty() {
        return Err(DomainError::invalid("content must not be empty"));
    }
    let reply_to = match reply_to {
        None => None,
        Some(id) => {
            let quoted = record
                .room
                .messages
                .iter()
                .find(|m| m.message_id == id)
                .ok_or_else(|| DomainError::NotFound("the replied-to message is gone".into()))?;
            Some(ChatReply {
                message_id: quoted.message_id.clone(),
                user_name: quoted.user_name.clone(),
                content: quoted.content.chars().take(REPLY_QUOTE_CHARS).collect(),
            })
        }
    };
    let message = ChatMessage {
        message_id: message_id.to_string(),
        user_id: actor.user_id.clone(),
        user_name: actor.name.clone(),
        content: content.to_string(),
        timestamp: now,
        reply_to,
        reactions: Vec::new(),
    };
    record.room.messages.push(message.clone());
    let excess = record.room.messages.len().saturating_sub(MAX_ROOM_MESSAGES);
    record.room.messages.drain(..excess);
    Ok((record, message))
}

/// `reactToMessage`: toggles the user's `emoji` on a message; an emoji nobody uses any more
/// disappears from the list.
pub fn react(
    record: Option<RoomRecord>,
    user_id: &str,
    message_id: &str,
    emoji: &str,
) -> Result<(RoomRecord, ChatMessage), DomainError> {
    let mut record = live(record)?;
    require_participant(&record, user_id)?;
    let message = record
        .room
        .messages
        .iter_mut()
        .find(|m| m.message_id == message_id)
        .ok_or_else(|| DomainError::NotFound("no such message".into()))?;
    match message.reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(reaction) => {
            if let Some(pos) = reaction.user_ids.iter().position(|u| u == user_id) {
                reaction.user_ids.remove(pos);
            } else {
                reaction.user_ids.push(user_id.to_string());
            }
            *reaction = Reaction::new(
                reaction.emoji.clone(),
                std::mem::take(&mut reaction.user_ids),
            );
        }
        None => message
            .reactions
            .push(Reaction::new(emoji, vec![user_id.to_string()])),
    }
    message.reactions.retain(|r| r.count > 0);
    let updated = message.clone();
    Ok((record, updated))
}

/// `mediaStateChanged`: participants only.
pub fn media_state(
    record: Option<RoomRecord>,
    user_id: &str,
    is_muted: bool,
    is_video_enabled: bool,
    now: Millis,
) -> Result<(RoomRecord, Participant), DomainError> {
    let mut record = live(record)?;
    let p = record
        .room
        .participants
        .iter_mut()
        .find(|p| p.user_id == user_id)
        .ok_or_else(|| forbidden("only participants may do this"))?;
    p.is_muted = is_muted;
    p.is_video_enabled = is_video_enabled;
    p.media_state_updated_at = now;
    let updated = p.clone();
    Ok((record, updated))
}

/// Remembers the history row of a participant (written after the join, so a separate CAS).
pub fn note_history_participant(
    record: Option<RoomRecord>,
    user_id: &str,
    participant_id: &str,
) -> Result<RoomRecord, DomainError> {
    let mut record = record.ok_or_else(|| DomainError::NotFound("no such room".into()))?;
    record
        .history_participants
        .insert(user_id.to_string(), participant_id.to_string());
    Ok(record)
}

/// Media flows (the SFU reports it): the first report sets `connected_at`.
pub fn mark_connected(record: Option<RoomRecord>, at: Millis) -> Result<RoomRecord, DomainError> {
    let mut record = live(record)?;
    if record.connected_at.is_some() {
        return Err(conflict("already connected"));
    }
    record.connected_at = Some(at);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_000_000;

    fn actor(id: &str) -> Actor {
        Actor {
            user_id: id.into(),
            name: id.to_uppercase(),
            socket_id: format!("s-{id}"),
            device_id: format!("d-{id}"),
        }
    }

    fn group(invited: &[&str]) -> RoomRecord {
        create(
            NewRoom {
                room_id: "r1".into(),
                room_type: RoomType::Group,
                room_name: None,
                target: None,
                invited_user_ids: invited.iter().map(|s| s.to_string()).collect(),
            },
            &actor("ann"),
            T0,
        )
        .unwrap()
    }

    fn joined(record: RoomRecord, who: &str) -> RoomRecord {
        join(Some(record), &actor(who), 100, T0 + 1).unwrap().0
    }

    #[test]
    fn a_public_group_room_is_open_and_hosted() {
        let r = group(&[]);
        assert_eq!(r.room.status, RoomStatus::Active);
        assert!(!r.room.is_private);
        assert!(r.room.participants[0].is_host);
        let r = joined(r, "bob");
        assert_eq!(r.summary().participant_count, 2);
        assert_eq!(r.answered_at, Some(T0 + 1));
        assert!(r.visible_to("zed"));
    }

    #[test]
    fn private_rooms_admit_only_invitees() {
        let r = group(&["bob"]);
        assert!(r.room.is_private);
        assert!(r.visible_to("bob") && !r.visible_to("zed"));
        let e = join(Some(r.clone()), &actor("zed"), 100, T0).unwrap_err();
        assert!(matches!(e, DomainError::Forbidden(_)));
        let (r, _) = accept(Some(r), &actor("bob"), 100, T0 + 5).unwrap();
        assert!(r.invitations.is_empty());
        assert!(matches!(
            accept(Some(r), &actor("bob"), 100, T0 + 6),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn rejecting_a_direct_room_ends_it() {
        let r = create(
            NewRoom {
                room_id: "d".into(),
                room_type: RoomType::Direct,
                room_name: None,
                target: Some(("bob".into(), "Bob".into())),
                invited_user_ids: vec![],
            },
            &actor("ann"),
            T0,
        )
        .unwrap();
        assert_eq!(r.room.status, RoomStatus::Pending);
        let (r, ended) = reject(Some(r), "bob", T0 + 1).unwrap();
        assert!(ended);
        assert_eq!(r.ending.unwrap().outcome, RoomOutcome::Rejected);
    }

    #[test]
    fn an_unanswered_direct_room_is_missed() {
        let r = create(
            NewRoom {
                room_id: "d".into(),
                room_type: RoomType::Direct,
                room_name: None,
                target: Some(("bob".into(), "Bob".into())),
                invited_user_ids: vec![],
            },
            &actor("ann"),
            T0,
        )
        .unwrap();
        assert!(invitation_expired(Some(r.clone()), "bob", T0 - 1, T0).is_err());
        let (r, ended) = invitation_expired(Some(r), "bob", T0, T0 + 60_000).unwrap();
        assert!(ended);
        assert_eq!(r.ending.unwrap().outcome, RoomOutcome::Missed);
    }

    #[test]
    fn two_leaves_in_turn_lose_nobody_and_the_last_ends_the_room() {
        let r = joined(joined(group(&[]), "bob"), "cat");
        let (r, o) = leave(Some(r), "bob", true, T0 + 2).unwrap();
        assert!(!o.ended);
        let (r, o) = leave(Some(r), "cat", true, T0 + 2).unwrap();
        assert!(!o.ended);
        assert_eq!(r.participant_ids(), vec!["ann"]);
        let (r, o) = leave(Some(r), "ann", true, T0 + 3).unwrap();
        assert!(o.ended);
        assert!(r.is_ended());
    }

    #[test]
    fn only_the_host_ends_a_group_room_until_it_is_hostless() {
        let r = joined(group(&[]), "bob");
        assert!(matches!(
            end(Some(r.clone()), "bob", T0),
            Err(DomainError::Forbidden(_))
        ));
        let ended = end(Some(r.clone()), "ann", T0 + 9).unwrap();
        assert_eq!(ended.ending.as_ref().unwrap().ended_by, "ann");
        assert!(matches!(
            end(Some(ended), "ann", T0 + 10),
            Err(DomainError::Conflict(_))
        ));
        let (r, _) = socket_dropped(Some(r), "ann", Some("s-ann"), T0 + 20).unwrap();
        let (r, o) = grace_expired(Some(r), T0 + 20, true, T0 + 30_020).unwrap();
        assert_eq!(o, GraceOutcome::Hostless);
        assert!(end(Some(r), "bob", T0 + 30_021).is_ok());
    }

    #[test]
    fn a_host_back_in_time_cancels_the_grace_check() {
        let r = joined(group(&[]), "bob");
        let (r, o) = socket_dropped(Some(r), "ann", Some("s-ann"), T0 + 5).unwrap();
        assert!(o.grace_started);
        let mut again = actor("ann");
        again.socket_id = "s-ann-2".into();
        let (r, o) = join(Some(r), &again, 100, T0 + 10).unwrap();
        assert_eq!(
            o,
            JoinOutcome::Rejoined {
                host_restored: true
            }
        );
        assert!(r.reconnecting.is_empty());
        assert!(grace_expired(Some(r.clone()), T0 + 5, true, T0 + 30_005).is_err());
        assert!(reconnect_expired(Some(r), "ann", T0 + 5, true, T0 + 60_005).is_err());
    }

    #[test]
    fn without_hostless_mode_the_grace_expiry_ends_the_room() {
        let r = joined(group(&[]), "bob");
        let (r, _) = socket_dropped(Some(r), "ann", Some("s-ann"), T0).unwrap();
        let (r, o) = grace_expired(Some(r), T0, false, T0 + 30_000).unwrap();
        assert_eq!(o, GraceOutcome::Ended);
        assert_eq!(r.ending.unwrap().reason, "host_timeout");
    }

    #[test]
    fn a_direct_room_ends_when_a_dropped_side_does_not_come_back() {
        let r = open_direct("c1", &actor("ann"), &actor("bob"), T0);
        assert!(socket_dropped(Some(r.clone()), "bob", Some("other"), T0).is_err());
        let (r, o) = socket_dropped(Some(r), "bob", None, T0).unwrap();
        assert!(!o.grace_started);
        let (r, o) = reconnect_expired(Some(r), "bob", T0, true, T0 + 60_000).unwrap();
        assert!(o.ended);
        let ending = r.ending.unwrap();
        assert_eq!(ending.ended_by, ENDED_BY_SERVER);
        assert_eq!(ending.outcome, RoomOutcome::Completed);
    }

    #[test]
    fn chat_replies_and_reactions() {
        let r = joined(group(&[]), "bob");
        let (r, m1) = send_message(Some(r), &actor("ann"), "m1", "hello", None, T0).unwrap();
        let (r, m2) =
            send_message(Some(r), &actor("bob"), "m2", "hi!", Some("m1"), T0 + 1).unwrap();
        let reply = m2.reply_to.unwrap();
        assert_eq!(
            (reply.message_id.as_str(), reply.user_name.as_str()),
            ("m1", "ANN")
        );
        assert_eq!(reply.content, m1.content);
        assert!(send_message(Some(r.clone()), &actor("zed"), "m3", "x", None, T0).is_err());
        assert!(send_message(Some(r.clone()), &actor("bob"), "m3", "x", Some("nope"), T0).is_err());
        let (r, m) = react(Some(r), "bob", "m1", "👍").unwrap();
        assert_eq!(m.reactions[0].user_ids, vec!["bob"]);
        let (r, m) = react(Some(r), "ann", "m1", "👍").unwrap();
        assert_eq!(m.reactions[0].count, 2);
        let (r, _) = react(Some(r), "bob", "m1", "👍").unwrap();
        let (_, m) = react(Some(r), "ann", "m1", "👍").unwrap();
        assert!(m.reactions.is_empty());
    }

    #[test]
    fn room_chat_keeps_the_newest_messages() {
        let mut r = joined(group(&[]), "bob");
        for i in 0..MAX_ROOM_MESSAGES + 5 {
            r = send_message(Some(r), &actor("ann"), &format!("m{i}"), "x", None, T0)
                .unwrap()
                .0;
        }
        assert_eq!(r.room.messages.len(), MAX_ROOM_MESSAGES);
        assert_eq!(r.room.messages[0].message_id, "m5");
    }

    #[test]
    fn media_state_is_for_participants() {
        let r = joined(group(&[]), "bob");
        let (_, p) = media_state(Some(r.clone()), "bob", true, true, T0 + 7).unwrap();
        assert!(p.is_muted && p.is_video_enabled);
        assert_eq!(p.media_state_updated_at, T0 + 7);
        assert!(media_state(Some(r), "zed", true, true, T0).is_err());
    }

    #[test]
    fn the_host_leaving_hands_the_room_over() {
        let r = joined(group(&[]), "bob");
        let (r, o) = leave(Some(r.clone()), "ann", true, T0).unwrap();
        assert!(o.hostless && !o.ended);
        assert!(r.room.is_hostless);
    }
}
