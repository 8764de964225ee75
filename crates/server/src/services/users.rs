//! Users: recorded on every connect, read by `users:get`, the online lists and the admin API.
//!
//! Names are read on hot paths (every online list, every friend notice) and written on every
//! connect, but they rarely change. [`NameCache`] keeps the names this instance has seen for
//! a few minutes, so a reconnect with the same name writes nothing and lists read nothing
//! from the database. A rename made through another instance shows here within
//! [`NAME_TTL_MS`].

use std::collections::HashMap;
use std::sync::Mutex;

use switchboard_domain::Millis;
use switchboard_protocol::session::UserInfo;

use crate::app::App;
use crate::error::AppResult;

/// How long a cached name is trusted.
pub const NAME_TTL_MS: Millis = 5 * 60 * 1000;
/// Past this many entries the cache starts over (a bound, not an eviction policy: names
/// come back from the database on the next miss).
const NAME_CACHE_MAX: usize = 200_000;

/// Display names seen recently by this instance: user id → (name, when seen).
#[derive(Debug, Default)]
pub struct NameCache(Mutex<HashMap<String, (String, Millis)>>);

impl NameCache {
    fn get(&self, user_id: &str, now: Millis) -> Option<String> {
        let guard = self.0.lock().expect("name cache lock");
        guard
            .get(user_id)
            .filter(|(_, seen)| now - seen < NAME_TTL_MS)
            .map(|(name, _)| name.clone())
    }

    fn put(&self, user_id: &str, name: &str, now: Millis) {
        let mut guard = self.0.lock().expect("name cache lock");
        if guard.len() >= NAME_CACHE_MAX {
            guard.clear();
        }
        guard.insert(user_id.to_string(), (name.to_string(), now));
    }
}

/// Records the user (on connect). Nothing is written when the name is the one this
/// instance recorded recently.
pub async fn upsert(app: &App, user_id: &str, name: &str) -> AppResult<()> {
    let now = app.now();
    if app.names.get(user_id, now).as_deref() == Some(name) {
        return Ok(());
    }
    app.db.upsert_user(user_id, name, now).await?;
    app.names.put(user_id, name, now);
    Ok(())
}

/// The known users among `user_ids`, in the order asked, each once; unknown ids are left
/// out. Only names this instance has not seen recently are read from the database.
pub async fn get_many(app: &App, user_ids: &[String]) -> AppResult<Vec<UserInfo>> {
    let now = app.now();
    let mut found: HashMap<&str, String> = HashMap::with_capacity(user_ids.len());
    let mut missing: Vec<String> = Vec::new();
    for id in user_ids {
        if found.contains_key(id.as_str()) {
            continue;
        }
        match app.names.get(id, now) {
            Some(name) => {
                found.insert(id, name);
            }
            None => missing.push(id.clone()),
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        let rows = app.db.get_users(&missing).await?;
        let by_id: HashMap<&str, &str> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.name.as_str()))
            .collect();
        for id in user_ids {
            if let Some(name) = by_id.get(id.as_str()) {
                app.names.put(id, name, now);
                found.insert(id, name.to_string());
            }
        }
    }
    let mut users = Vec::with_capacity(found.len());
    for id in user_ids {
        if let Some(name) = found.remove(id.as_str()) {
            users.push(UserInfo {
                user_id: id.clone(),
                name,
            });
        }
    }
    Ok(users)
}
