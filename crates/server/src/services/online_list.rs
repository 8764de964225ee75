//! `onlineUsersUpdated`: each instance keeps the online lists of its own sockets fresh,
//! coalesced to at most one list per user every `presence.online_list_coalesce_ms`.
//!
//! Presence changes arrive on the bus from every instance. A change only marks recipients
//! dirty; a flush every coalescing period sends each dirty recipient its full visible list
//! once. A burst of N connects therefore costs N marks and one list per recipient per
//! period, not N² events. In public mode every list is the same, so it is computed once.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use switchboard_protocol::events;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::app::SharedApp;
use crate::bus::BusEvent;
use crate::outbox::rooms;
use crate::services::{friends, presence};

/// Recipients (users connected here) whose visible list changed since the last flush.
#[derive(Debug, Default)]
pub struct DirtyLists(Mutex<Dirty>);

#[derive(Debug, Default)]
struct Dirty {
    everyone: bool,
    users: HashSet<String>,
}

impl DirtyLists {
    pub fn mark(&self, user_id: &str) {
        self.0
            .lock()
            .expect("dirty lists lock")
            .users
            .insert(user_id.to_string());
    }

    pub fn mark_everyone(&self) {
        self.0.lock().expect("dirty lists lock").everyone = true;
    }

    /// Takes what is dirty, leaving the set clean.
    fn take(&self) -> Dirty {
        std::mem::take(&mut *self.0.lock().expect("dirty lists lock"))
    }
}

/// Marks recipients from the bus until `stop`.
pub async fn follow_bus(app: SharedApp, stop: CancellationToken) {
    let mut messages = app.bus.subscribe();
    loop {
        let text = tokio::select! {
            _ = stop.cancelled() => return,
            received = messages.recv() => match received {
                Ok(text) => text,
                // Missed messages: refresh every local list rather than guess which.
                Err(RecvError::Lagged(_)) => {
                    app.online_lists.mark_everyone();
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        match serde_json::from_str::<BusEvent>(&text) {
            Ok(event) => on_event(&app, event).await,
            Err(error) => tracing::debug!(%error, "ignoring an unknown bus message"),
        }
    }
}

async fn on_event(app: &SharedApp, event: BusEvent) {
    match event {
        BusEvent::PresenceChanged { user_id } => {
            if app.settings.presence_public() {
                app.online_lists.mark_everyone();
                return;
            }
            // Friendship is mutual: the users who see `user_id` are its friends.
            let watchers = match friends::of(app, &user_id).await {
                Ok(friends) => friends,
                Err(error) => {
                    tracing::warn!(%user_id, %error, "could not read friends; refreshing every local list");
                    app.online_lists.mark_everyone();
                    return;
                }
            };
            let local = app.local.users();
            for watcher in watchers.iter().chain(std::iter::once(&user_id)) {
                if local.contains(watcher) {
                    app.online_lists.mark(watcher);
                }
            }
        }
        BusEvent::FriendsChanged { user_ids } => {
            let local = app.local.users();
            for user_id in user_ids.iter().filter(|u| local.contains(*u)) {
                app.online_lists.mark(user_id);
            }
        }
    }
}

/// Sends the dirty lists every coalescing period until `stop`.
pub async fn flush_periodically(app: SharedApp, stop: CancellationToken) {
    let period = Duration::from_millis(app.settings.presence.online_list_coalesce_ms.max(10));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        flush(&app).await;
    }
}

async fn flush(app: &SharedApp) {
    let dirty = app.online_lists.take();
    if dirty.everyone && app.settings.presence_public() {
        match presence::everyone_online(app).await {
            Ok(users) => {
                let payload = serde_json::json!({ "users": users });
                for user_id in app.local.users() {
                    app.outbox
                        .emit_local(
                            rooms::user(&user_id),
                            events::ONLINE_USERS_UPDATED,
                            payload.clone(),
                        )
                        .await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not build the online list; retrying next period");
                app.online_lists.mark_everyone();
            }
        }
        return;
    }
    let recipients: Vec<String> = if dirty.everyone {
        app.local.users().into_iter().collect()
    } else {
        dirty.users.into_iter().collect()
    };
    for user_id in recipients {
        match presence::visible_online(app, &user_id).await {
            Ok(users) => {
                let payload = serde_json::json!({ "users": users });
                app.outbox
                    .emit_local(rooms::user(&user_id), events::ONLINE_USERS_UPDATED, payload)
                    .await;
            }
            Err(error) => {
                tracing::warn!(%user_id, %error, "could not build an online list; retrying next period");
                app.online_lists.mark(&user_id);
            }
        }
    }
}
