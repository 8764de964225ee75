//! Presence: derived status, what friends are told, and who sees whom (protocol §4).
//!
//! The store keeps the facts (live devices, user-set status, in-call flag) atomically; the
//! rules of `switchboard_domain::presence` say what they mean and what friends hear. Every
//! change is also published on the bus so each instance refreshes the online lists of its
//! own sockets (`services::online_list`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;
use switchboard_domain::presence::{
    FriendNotice, PresenceFacts, PresenceStatus, UserStatus, notices, parse_user_status,
};
use switchboard_protocol::{OnlineUser, PresenceInfo, events};
use switchboard_store::{PresenceChange, PresenceEntry};

use crate::app::App;
use crate::bus::{self, BusEvent};
use crate::error::AppResult;
use crate::outbox::rooms;
use crate::services::{friends, users};

fn facts_of(entry: Option<&PresenceEntry>) -> PresenceFacts {
    match entry {
        None => PresenceFacts::OFFLINE,
        Some(e) => PresenceFacts {
            devices: e.devices.len() as u32,
            status: parse_user_status(e.status.as_deref()),
            in_call: e.in_call,
        },
    }
}

async fn facts(app: &App, user_id: &str) -> AppResult<PresenceFacts> {
    let entry = app
        .store
        .presence_get(&[user_id.to_string()], app.now())
        .await?
        .pop()
        .flatten();
    Ok(facts_of(entry.as_ref()))
}

/// A device came up. Friends hear `friend_online` when it is the user's first.
pub async fn device_connected(
    app: &App,
    user_id: &str,
    name: &str,
    change: PresenceChange,
) -> AppResult<()> {
    if change.was_online {
        return Ok(());
    }
    let after = facts(app, user_id).await?;
    let before = PresenceFacts {
        devices: 0,
        ..after
    };
    announce(app, user_id, name, notices(before, after)).await
}

/// A device went away. Friends hear `friend_offline` when it was the user's last.
pub async fn device_released(app: &App, user_id: &str, change: PresenceChange) -> AppResult<()> {
    if !change.was_online || change.devices > 0 {
        return Ok(());
    }
    announce(app, user_id, user_id, vec![FriendNotice::Offline]).await
}

/// Users whose devices all lapsed (their instance died) are offline now.
pub async fn users_expired(app: &App, user_ids: &[String]) -> AppResult<()> {
    for user_id in user_ids {
        announce(app, user_id, user_id, vec![FriendNotice::Offline]).await?;
    }
    Ok(())
}

/// `presence:status`: sets the user's status for all their devices and returns the status
/// others now see (`in_call` wins over the user's choice while in a call).
pub async fn set_status(
    app: &App,
    user_id: &str,
    name: &str,
    status: UserStatus,
) -> AppResult<PresenceStatus> {
    let previous = app
        .store
        .presence_set_status(user_id, status.as_str())
        .await?;
    let after = facts(app, user_id).await?;
    let before = PresenceFacts {
        status: parse_user_status(previous.as_deref()),
        ..after
    };
    announce(app, user_id, name, notices(before, after)).await?;
    Ok(after.display())
}

/// Marks a user as taking part in a call or room (seed 000's `markInCall`).
pub async fn mark_in_call(app: &App, user_id: &str) -> AppResult<()> {
    set_in_call(app, user_id, true).await
}

/// Marks a user as out of every call; their user-set status shows again.
pub async fn mark_out_of_call(app: &App, user_id: &str) -> AppResult<()> {
    set_in_call(app, user_id, false).await
}

async fn set_in_call(app: &App, user_id: &str, in_call: bool) -> AppResult<()> {
    if !app.store.presence_set_in_call(user_id, in_call).await? {
        return Ok(());
    }
    let after = facts(app, user_id).await?;
    let before = PresenceFacts {
        in_call: !in_call,
        ..after
    };
    announce(app, user_id, user_id, notices(before, after)).await
}

/// Tells the user's online friends, on every instance, and has every instance refresh the
/// online lists that show this user.
async fn announce(
    app: &App,
    user_id: &str,
    name: &str,
    notices: Vec<FriendNotice>,
) -> AppResult<()> {
    if notices.is_empty() {
        return Ok(());
    }
    let friend_rooms = online_friend_rooms(app, user_id).await?;
    let timestamp = app.now();
    for notice in &notices {
        let (event, data) = match notice {
            FriendNotice::Online => {
                let name = if name == user_id {
                    display_name(app, user_id).await
                } else {
                    name.to_string()
                };
                (
                    events::FRIEND_ONLINE,
                    json!({ "userId": user_id, "name": name, "timestamp": timestamp }),
                )
            }
            FriendNotice::Offline => (
                events::FRIEND_OFFLINE,
                json!({ "userId": user_id, "timestamp": timestamp }),
            ),
            FriendNotice::InCall => (
                events::FRIEND_IN_CALL,
                json!({ "userId": user_id, "timestamp": timestamp }),
            ),
            FriendNotice::OutOfCall => (
                events::FRIEND_OUT_OF_CALL,
                json!({ "userId": user_id, "timestamp": timestamp }),
            ),
            FriendNotice::Status(status) => (
                events::FRIEND_STATUS,
                json!({ "userId": user_id, "status": status.as_str(), "timestamp": timestamp }),
            ),
        };
        app.outbox.emit_to(friend_rooms.clone(), event, data).await;
    }
    bus::publish(
        app,
        &BusEvent::PresenceChanged {
            user_id: user_id.to_string(),
        },
    )
    .await;
    Ok(())
}

async fn display_name(app: &App, user_id: &str) -> String {
    match users::get_many(app, &[user_id.to_string()]).await {
        Ok(mut found) => found.pop().map_or_else(|| user_id.to_string(), |u| u.name),
        Err(_) => user_id.to_string(),
    }
}

async fn online_friend_rooms(app: &App, user_id: &str) -> AppResult<Vec<String>> {
    let friends = friends::of(app, user_id).await?;
    if friends.is_empty() {
        return Ok(Vec::new());
    }
    let entries = app.store.presence_get(&friends, app.now()).await?;
    Ok(friends
        .iter()
        .zip(entries)
        .filter(|(_, entry)| facts_of(entry.as_ref()).devices > 0)
        .map(|(id, _)| rooms::user(id))
        .collect())
}

/// Who `viewer` may see: everyone in public mode, else their friends and themselves.
async fn visible_filter(app: &App, viewer: &str) -> AppResult<Option<BTreeSet<String>>> {
    if app.settings.presence_public() {
        return Ok(None);
    }
    let mut visible: BTreeSet<String> = friends::of(app, viewer).await?.into_iter().collect();
    visible.insert(viewer.to_string());
    Ok(Some(visible))
}

/// `presence:get`: the presence of the asked users that `viewer` may see. Users the viewer
/// may not see are left out of the map.
pub async fn get(
    app: &App,
    viewer: &str,
    user_ids: &[String],
) -> AppResult<BTreeMap<String, PresenceInfo>> {
    let visible = visible_filter(app, viewer).await?;
    let asked: Vec<String> = user_ids
        .iter()
        .filter(|id| visible.as_ref().is_none_or(|v| v.contains(*id)))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let entries = app.store.presence_get(&asked, app.now()).await?;
    Ok(asked
        .into_iter()
        .zip(entries)
        .map(|(id, entry)| {
            let view = PresenceInfo {
                status: facts_of(entry.as_ref()).display(),
                last_seen: entry.as_ref().map(|e| e.last_seen).filter(|&at| at > 0),
                devices: entry.as_ref().map_or(0, |e| e.devices.len() as u32),
            };
            (id, view)
        })
        .collect())
}

/// The online users `viewer` sees, the viewer included (`getOnlineUsers`,
/// `onlineUsersUpdated`).
pub async fn visible_online(app: &App, viewer: &str) -> AppResult<Vec<OnlineUser>> {
    let candidates = match visible_filter(app, viewer).await? {
        None => app.store.presence_online_users(app.now()).await?,
        Some(visible) => visible.into_iter().collect(),
    };
    let mut listed = list(app, &candidates).await?;
    listed.retain(|u| u.status != PresenceStatus::Offline);
    Ok(listed)
}

/// Every online user, for public mode, computed once and shared by all recipients.
pub async fn everyone_online(app: &App) -> AppResult<Vec<OnlineUser>> {
    let ids = app.store.presence_online_users(app.now()).await?;
    let mut listed = list(app, &ids).await?;
    listed.retain(|u| u.status != PresenceStatus::Offline);
    Ok(listed)
}

/// `getFriends`: every friend with their status, offline ones included.
pub async fn friends_with_status(app: &App, user_id: &str) -> AppResult<Vec<OnlineUser>> {
    let friends = friends::of(app, user_id).await?;
    list(app, &friends).await
}

/// Names and statuses of `user_ids`, sorted by name.
async fn list(app: &App, user_ids: &[String]) -> AppResult<Vec<OnlineUser>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let entries = app.store.presence_get(user_ids, app.now()).await?;
    let names: HashMap<String, String> = users::get_many(app, user_ids)
        .await?
        .into_iter()
        .map(|u| (u.user_id, u.name))
        .collect();
    let mut listed: Vec<OnlineUser> = user_ids
        .iter()
        .zip(entries)
        .map(|(id, entry)| OnlineUser {
            user_id: id.clone(),
            name: names.get(id).cloned().unwrap_or_else(|| id.clone()),
            status: facts_of(entry.as_ref()).display(),
        })
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.user_id.cmp(&b.user_id)));
    Ok(listed)
}
