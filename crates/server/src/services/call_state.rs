//! Which call a user is engaged in (seed 000's `CallStateManager` and its
//! `user:{userId}:current_call`): one slot per user, at [`keys::current_call`].
//!
//! The slot is what makes `BUSY` (protocol §5: "in any call, room or ring") atomic across
//! instances: ringing a user, accepting a call, creating, joining or accepting a room all
//! claim it with compare-and-set, and only one claim wins. A slot pointing at a ring or a
//! room that is over (its record gone, answered, or ended) is stale and counts as free, so a
//! crash between "the call ended" and "the slot was released" cannot leave a user busy for
//! ever.

use serde::{Deserialize, Serialize};
use switchboard_domain::DomainError;
use switchboard_domain::Millis;
use switchboard_domain::conversation_calls::CallRecord;
use switchboard_domain::rooms::RoomRecord;
use switchboard_store::{Transition, UpdateError, keys, update_record};

use crate::app::App;
use crate::error::{AppError, AppResult};

/// What a user is engaged in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Engagement {
    /// A §5 ring, as caller or callee.
    Ringing { call_id: String },
    /// A room (§6), including the direct room of an accepted call.
    InRoom { room_id: String },
    /// A conversation call (§7).
    InConversationCall { call_id: String },
}

/// The stored slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Slot {
    engagement: Engagement,
    /// When it was claimed.
    since: Millis,
}

/// A room or conversation-call claim whose user is not (yet) a participant counts as live
/// this long: the time between claiming the slot and the write that adds the user.
const ROOM_CLAIM_GRACE_MS: Millis = 10_000;

/// Ring states after which the ring no longer engages anyone (the accepted state is left out:
/// the accepting side swaps the slot to the room right after).
const RING_OVER: [&str; 3] = ["rejected", "cancelled", "timeout"];

fn store_err<E>(e: UpdateError<E>) -> AppError
where
    E: Into<AppError>,
{
    match e {
        UpdateError::Rejected(e) => e.into(),
        UpdateError::Store(e) => e.into(),
    }
}

async fn read(app: &App, user_id: &str) -> AppResult<Option<Slot>> {
    match app.store.get(&keys::current_call(user_id)).await? {
        None => Ok(None),
        Some(v) => Ok(serde_json::from_str(&v.value).ok()),
    }
}

/// Whether a slot still engages its user.
async fn is_live(app: &App, user_id: &str, slot: &Slot) -> AppResult<bool> {
    match &slot.engagement {
        Engagement::Ringing { call_id } => {
            let Some(v) = app.store.get(&keys::call_request(call_id)).await? else {
                return Ok(false);
            };
            let state = serde_json::from_str::<serde_json::Value>(&v.value)
                .ok()
                .and_then(|j| j.get("state").and_then(|s| s.as_str()).map(str::to_owned));
            Ok(!state.is_some_and(|s| RING_OVER.contains(&s.as_str())))
        }
        Engagement::InRoom { room_id } => {
            let Some(v) = app.store.get(&keys::room(room_id)).await? else {
                return Ok(false);
            };
            let Ok(record) = serde_json::from_str::<RoomRecord>(&v.value) else {
                return Ok(false);
            };
            if record.is_ended() {
                return Ok(false);
            }
            Ok(record.is_participant(user_id) || app.now() - slot.since < ROOM_CLAIM_GRACE_MS)
        }
        Engagement::InConversationCall { call_id } => {
            let within_grace = app.now() - slot.since < ROOM_CLAIM_GRACE_MS;
            // The slot is claimed just before the call's record is written or joined.
            let Some(v) = app.store.get(&keys::conversation_call(call_id)).await? else {
                return Ok(within_grace);
            };
            let Ok(record) = serde_json::from_str::<CallRecord>(&v.value) else {
                return Ok(false);
            };
            if record.is_ended() {
                return Ok(false);
            }
            Ok(record.attendee(user_id).is_some() || within_grace)
        }
    }
}

/// Atomically claims the user's slot if free; `Err(existing)` when busy. A slot that points
/// at a ring or room that no longer exists / is over is stale and counts as free. Claiming
/// what the slot already holds succeeds (a participant joining their room again).
pub async fn engage(app: &App, user_id: &str, e: Engagement) -> AppResult<Result<(), Engagement>> {
    let key = keys::current_call(user_id);
    loop {
        let seen = read(app, user_id).await?;
        let replaceable = match &seen {
            None => true,
            Some(slot) if slot.engagement == e => true,
            Some(slot) => !is_live(app, user_id, slot).await?,
        };
        if !replaceable {
            return Ok(Err(seen.map(|s| s.engagement).expect("busy means a slot")));
        }
        let now = app.now();
        let result = update_record::<_, Slot, (), _>(app.store.as_ref(), &key, |cur| {
            // Only the slot we judged (or none) may be replaced; anything newer is looked
            // at again from the top.
            if cur != seen {
                return Err(());
            }
            let since = match &cur {
                Some(slot) if slot.engagement == e => slot.since,
                _ => now,
            };
            Ok(Transition::Write(
                Slot {
                    engagement: e.clone(),
                    since,
                },
                None,
            ))
        })
        .await;
        match result {
            Ok(_) => return Ok(Ok(())),
            Err(UpdateError::Rejected(())) => continue,
            Err(UpdateError::Store(error)) => return Err(error.into()),
        }
    }
}

/// Atomically swaps `from` for `to` (a ring becoming a room); false if the slot no longer
/// holds `from`.
pub async fn replace(
    app: &App,
    user_id: &str,
    from: &Engagement,
    to: Engagement,
) -> AppResult<bool> {
    let now = app.now();
    let result = update_record::<_, Slot, DomainError, _>(
        app.store.as_ref(),
        &keys::current_call(user_id),
        |cur| match cur {
            Some(slot) if slot.engagement == *from => Ok(Transition::Write(
                Slot {
                    engagement: to.clone(),
                    since: now,
                },
                None,
            )),
            _ => Err(DomainError::Conflict("the slot changed".into())),
        },
    )
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(UpdateError::Rejected(_)) => Ok(false),
        Err(e) => Err(store_err(e)),
    }
}

/// Frees the slot only if it holds `e`.
pub async fn release(app: &App, user_id: &str, e: &Engagement) -> AppResult<bool> {
    let result = update_record::<_, Slot, DomainError, _>(
        app.store.as_ref(),
        &keys::current_call(user_id),
        |cur| match cur {
            Some(slot) if slot.engagement == *e => Ok(Transition::Delete),
            _ => Err(DomainError::Conflict(
                "the slot holds something else".into(),
            )),
        },
    )
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(UpdateError::Rejected(_)) => Ok(false),
        Err(e) => Err(store_err(e)),
    }
}

/// What the user is engaged in now (stale slots included; see [`engage`]).
pub async fn current(app: &App, user_id: &str) -> AppResult<Option<Engagement>> {
    Ok(read(app, user_id).await?.map(|s| s.engagement))
}
