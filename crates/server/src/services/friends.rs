//! Friendships: the database holds them, the store caches each user's list (2 h by default)
//! and the cache is invalidated whenever a list changes.

use std::collections::BTreeSet;
use std::time::Duration;

use switchboard_store::keys;

use crate::app::App;
use crate::bus::{self, BusEvent};
use crate::error::AppResult;

fn cache_ttl(app: &App) -> Duration {
    Duration::from_secs(app.settings.timers.friend_cache_ttl_secs.max(1))
}

/// A user's friends, from the cache when it has them.
pub async fn of(app: &App, user_id: &str) -> AppResult<Vec<String>> {
    let key = keys::friends(user_id);
    if let Some(cached) = app.store.cache_get_members(&key).await? {
        return Ok(cached);
    }
    let mut friends = app.db.get_friends(user_id).await?;
    friends.sort();
    app.store
        .cache_set_members(&key, &friends, cache_ttl(app))
        .await?;
    Ok(friends)
}

/// Replaces a user's friend list. Friendship is mutual, so every user added or removed has
/// their cached list invalidated too.
pub async fn replace(app: &App, user_id: &str, friend_ids: &[String]) -> AppResult<Vec<String>> {
    let before = app.db.get_friends(user_id).await?;
    app.db.set_friends(user_id, friend_ids, app.now()).await?;
    let touched: BTreeSet<&String> = before.iter().chain(friend_ids).collect();
    let touched_ids: Vec<String> = touched.into_iter().cloned().collect();
    let mut stale: Vec<String> = touched_ids.iter().map(|id| keys::friends(id)).collect();
    stale.push(keys::friends(user_id));
    app.store.cache_invalidate(&stale).await?;
    let mut changed: Vec<String> = touched_ids;
    changed.push(user_id.to_string());
    bus::publish(app, &BusEvent::FriendsChanged { user_ids: changed }).await;
    let mut now_friends: Vec<String> = friend_ids
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    now_friends.sort();
    Ok(now_friends)
}
