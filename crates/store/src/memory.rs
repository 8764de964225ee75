//! The embedded backend: plain maps behind one mutex, for a single instance.
//!
//! It mirrors the Redis backend's data model (one keyspace of typed entries, each with an
//! optional expiry) so that both behave the same under the conformance suite, including the
//! corner cases: a key used with the wrong kind of method is [`StoreError::Corrupt`], empty
//! collections disappear, versions restart at 1 after a record is deleted or expires.
//!
//! Expiry is lazy and cheap: every call first reads the injected [`Clock`] and drops the
//! entries that expired by then, in expiry order from an index, so an expired entry is never
//! seen and memory does not grow with dead keys even if nobody reads them again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchboard_domain::Millis;
use switchboard_domain::time::Clock;

use crate::{
    CachedMessage, CasOutcome, PRESENCE_RETENTION, PresenceChange, PresenceEntry, RateDecision,
    RecentPage, StateStore, StoreError, StoreResult, Timer, Versioned, keys, ttl_ms,
};

/// The embedded single-instance state store.
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    /// A `std` mutex, not an async one: every operation is a short synchronous section over
    /// the maps (lock, compute, unlock) and nothing `.await`s while holding it, so the guard
    /// never crosses a suspension point and an async mutex would only add cost. One lock for
    /// all state is the price of "one operation is atomic" without more machinery; the
    /// sections are microseconds long, so it is not the bottleneck of a single instance.
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// Locks the state and drops what expired by now. Returns the guard and the clock's now.
    fn lock(&self) -> (MutexGuard<'_, State>, Millis) {
        let now = self.clock.now_ms();
        // A panic inside a section leaves at worst one half-applied operation; refusing every
        // later call of the process would be worse, so a poisoned lock is taken over.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.purge(now);
        (state, now)
    }

    /// Number of live keys (records, sets, caches, counters, logs, rate limits, presence).
    pub fn key_count(&self) -> usize {
        self.lock().0.keys.len()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Entry>,
    /// `(expires_at, key)` for every entry with an expiry; kept exact on every change.
    expiries: BTreeSet<(Millis, String)>,
    timers: Timers,
    online: OnlineIndex,
}

struct Entry {
    value: Value,
    expires_at: Option<Millis>,
}

enum Value {
    Record {
        version: u64,
        data: String,
    },
    Index(BTreeSet<String>),
    Cached(String),
    CachedSet(BTreeSet<String>),
    Counters(BTreeMap<String, i64>),
    Log(VecDeque<String>),
    Recent(RecentCache),
    /// Rate-limit hit times, ascending.
    Hits(VecDeque<Millis>),
    /// Presence: device id → liveness expiry.
    Devices(BTreeMap<String, Millis>),
    /// Presence metadata; `last_seen` is 0 until the user is first active (like the absent
    /// field of the Redis hash).
    PresenceMeta {
        status: Option<String>,
        last_seen: Millis,
        in_call: bool,
    },
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Record { .. } => "record",
            Value::Index(_) => "index",
            Value::Cached(_) => "cached value",
            Value::CachedSet(_) => "cached set",
            Value::Counters(_) => "counters",
            Value::Log(_) => "log",
            Value::Recent(_) => "recent-message cache",
            Value::Hits(_) => "rate limit",
            Value::Devices(_) => "presence devices",
            Value::PresenceMeta { .. } => "presence metadata",
        }
    }
}

/// A warm recent-message cache (a cold one is no entry at all).
struct RecentCache {
    /// `(created_at, id)` → json.
    entries: BTreeMap<(Millis, String), String>,
    /// id → created_at, to find an entry by id.
    ids: HashMap<String, Millis>,
    /// Whether the cache holds the conversation's oldest message.
    whole: bool,
}

impl RecentCache {
    fn insert(&mut self, m: &CachedMessage) {
        if m.id.is_empty() {
            return;
        }
        if let Some(old) = self.ids.insert(m.id.clone(), m.created_at) {
            self.entries.remove(&(old, m.id.clone()));
        }
        self.entries
            .insert((m.created_at, m.id.clone()), m.json.clone());
    }

    /// Drops the oldest entries beyond `max`; returns whether any was dropped.
    fn trim(&mut self, max: usize) -> bool {
        let mut trimmed = false;
        while self.entries.len() > max {
            if let Some(((_, id), _)) = self.entries.pop_first() {
                self.ids.remove(&id);
                trimmed = true;
            }
        }
        trimmed
    }

    fn message(((created_at, id), json): (&(Millis, String), &String)) -> CachedMessage {
        CachedMessage {
            id: id.clone(),
            created_at: *created_at,
            json: json.clone(),
        }
    }

    fn page(&self, before: Option<&str>, after: Option<&str>, limit: usize) -> RecentPage {
        use std::ops::Bound::{Excluded, Unbounded};
        let incomplete = RecentPage {
            entries: Vec::new(),
            complete: false,
        };
        let cursor = |id: Option<&str>| match id {
            None => Some(Unbounded),
            Some(id) => self.ids.get(id).map(|at| Excluded((*at, id.to_owned()))),
        };
        let (Some(upper), Some(lower)) = (cursor(before), cursor(after)) else {
            return incomplete;
        };
        if let (Excluded(lo), Excluded(hi)) = (&lower, &upper)
            && lo >= hi
        {
            return RecentPage {
                entries: Vec::new(),
                complete: true,
            };
        }
        let range = self.entries.range((lower, upper));
        if after.is_some() {
            RecentPage {
                entries: range.take(limit).map(Self::message).collect(),
                complete: true,
            }
        } else {
            let mut entries: Vec<CachedMessage> =
                range.rev().take(limit).map(Self::message).collect();
            entries.reverse();
            // Short of `limit`: the page ran into the oldest cached entry.
            let complete = self.whole || entries.len() >= limit;
            RecentPage { entries, complete }
        }
    }
}

fn wrong_kind(key: &str, found: &Value, wanted: &str) -> StoreError {
    StoreError::Corrupt(format!("{key} holds a {}, not a {wanted}", found.kind()))
}

impl State {
    fn purge(&mut self, now: Millis) {
        while let Some((at, _)) = self.expiries.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.expiries.pop_first() {
                self.keys.remove(&key);
            }
        }
    }

    fn value(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).map(|e| &e.value)
    }

    fn value_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.keys.get_mut(key).map(|e| &mut e.value)
    }

    /// Replaces whatever the key held, like Redis `SET` does.
    fn insert(&mut self, key: &str, value: Value, expires_at: Option<Millis>) {
        self.remove(key);
        if let Some(at) = expires_at {
            self.expiries.insert((at, key.to_owned()));
        }
        self.keys
            .insert(key.to_owned(), Entry { value, expires_at });
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.keys.remove(key)
            && let Some(at) = old.expires_at
        {
            self.expiries.remove(&(at, key.to_owned()));
        }
    }

    fn set_expiry(&mut self, key: &str, expires_at: Option<Millis>) {
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        if let Some(old) = entry.expires_at {
            self.expiries.remove(&(old, key.to_owned()));
        }
        entry.expires_at = expires_at;
        if let Some(at) = expires_at {
            self.expiries.insert((at, key.to_owned()));
        }
    }

    /// Removes the key if its collection became empty (Redis deletes empty keys too).
    fn drop_if_empty(&mut self, key: &str) {
        let empty = match self.value(key) {
            Some(Value::Index(s) | Value::CachedSet(s)) => s.is_empty(),
            Some(Value::Counters(m)) => m.is_empty(),
            Some(Value::Log(l)) => l.is_empty(),
            Some(Value::Hits(h)) => h.is_empty(),
            Some(Value::Devices(d)) => d.is_empty(),
            _ => false,
        };
        if empty {
            self.remove(key);
        }
    }

    fn counter_add(&mut self, key: &str, field: &str, delta: i64) -> StoreResult<i64> {
        let value = match self.value_mut(key) {
            Some(Value::Counters(map)) => {
                let v = map.entry(field.to_owned()).or_default();
                *v = v.checked_add(delta).ok_or_else(|| {
                    StoreError::Corrupt(format!("counter {key}/{field} overflows"))
                })?;
                let v = *v;
                if v == 0 {
                    map.remove(field);
                }
                v
            }
            Some(other) => return Err(wrong_kind(key, other, "counters")),
            None => {
                if delta != 0 {
                    let map = BTreeMap::from([(field.to_owned(), delta)]);
                    self.insert(key, Value::Counters(map), None);
                }
                delta
            }
        };
        self.drop_if_empty(key);
        Ok(value)
    }

    /// Marks a user active at `now` (never moving `last_seen` back) and keeps the metadata.
    fn touch_meta(&mut self, user_id: &str, now: Millis, keep_until: Millis) -> StoreResult<()> {
        let key = keys::presence_user(user_id);
        match self.value_mut(&key) {
            Some(Value::PresenceMeta { last_seen, .. }) => *last_seen = (*last_seen).max(now),
            Some(other) => return Err(wrong_kind(&key, other, "presence metadata")),
            None => self.insert(
                &key,
                Value::PresenceMeta {
                    status: None,
                    last_seen: now,
                    in_call: false,
                },
                None,
            ),
        }
        self.set_expiry(&key, Some(keep_until));
        Ok(())
    }

    /// Takes a user's devices out of the keyspace (to edit them without holding a borrow).
    fn take_devices(&mut self, user_id: &str) -> StoreResult<BTreeMap<String, Millis>> {
        let key = keys::presence_devices(user_id);
        match self.value(&key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Devices(_)) => match self.keys.remove(&key) {
                Some(Entry {
                    value: Value::Devices(d),
                    expires_at,
                }) => {
                    if let Some(at) = expires_at {
                        self.expiries.remove(&(at, key));
                    }
                    Ok(d)
                }
                _ => Ok(BTreeMap::new()),
            },
            Some(other) => Err(wrong_kind(&key, other, "presence devices")),
        }
    }

    /// Puts a user's devices back and keeps the online index's score at their latest expiry
    /// (or removes the user from it when none is left).
    fn put_devices(
        &mut self,
        user_id: &str,
        devices: BTreeMap<String, Millis>,
        keep_until: Millis,
    ) {
        match devices.values().max().copied() {
            None => self.online.remove(user_id),
            Some(latest) => {
                self.online.set(user_id, latest);
                self.insert(
                    &keys::presence_devices(user_id),
                    Value::Devices(devices),
                    Some(keep_until),
                );
            }
        }
    }
}

/// The global online index: user → latest device expiry, ordered by that expiry.
#[derive(Default)]
struct OnlineIndex {
    scores: HashMap<String, Millis>,
    by_expiry: BTreeSet<(Millis, String)>,
}

impl OnlineIndex {
    fn contains(&self, user_id: &str) -> bool {
        self.scores.contains_key(user_id)
    }

    fn set(&mut self, user_id: &str, expiry: Millis) {
        if let Some(old) = self.scores.insert(user_id.to_owned(), expiry) {
            self.by_expiry.remove(&(old, user_id.to_owned()));
        }
        self.by_expiry.insert((expiry, user_id.to_owned()));
    }

    /// Sets the score unless it is already higher (Redis `ZADD GT`).
    fn raise(&mut self, user_id: &str, expiry: Millis) {
        if self.scores.get(user_id).is_none_or(|old| *old < expiry) {
            self.set(user_id, expiry);
        }
    }

    fn remove(&mut self, user_id: &str) {
        if let Some(old) = self.scores.remove(user_id) {
            self.by_expiry.remove(&(old, user_id.to_owned()));
        }
    }
}

#[derive(Default)]
struct Timers {
    entries: HashMap<String, TimerEntry>,
    /// `(due_at, id)` of pending (unclaimed) timers.
    due: BTreeSet<(Millis, String)>,
    /// `(lease expiry, id)` of claimed timers.
    leases: BTreeSet<(Millis, String)>,
}

struct TimerEntry {
    timer: Timer,
    claim: Option<(String, Millis)>,
}

impl Timers {
    /// Removes a timer in any state; returns it with whether it was pending.
    fn remove(&mut self, id: &str) -> Option<(TimerEntry, bool)> {
        let entry = self.entries.remove(id)?;
        let pending = match &entry.claim {
            None => self.due.remove(&(entry.timer.due_at, id.to_owned())),
            Some((_, until)) => {
                self.leases.remove(&(*until, id.to_owned()));
                false
            }
        };
        Some((entry, pending))
    }

    fn claim(&mut self, id: &str, owner: &str, until: Millis) -> Option<Timer> {
        let entry = self.entries.get_mut(id)?;
        match entry.claim.take() {
            None => self.due.remove(&(entry.timer.due_at, id.to_owned())),
            Some((_, old)) => self.leases.remove(&(old, id.to_owned())),
        };
        entry.claim = Some((owner.to_owned(), until));
        self.leases.insert((until, id.to_owned()));
        Some(entry.timer.clone())
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> StoreResult<Duration> {
        let started = Instant::now();
        drop(self.lock());
        Ok(started.elapsed())
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        let (state, _) = self.lock();
        match state.value(key) {
            None => Ok(None),
            Some(Value::Record { version, data }) => Ok(Some(Versioned {
                value: data.clone(),
                version: *version,
            })),
            Some(other) => Err(wrong_kind(key, other, "record")),
        }
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<CasOutcome> {
        let (mut state, now) = self.lock();
        let current = match state.value(key) {
            None => None,
            Some(Value::Record { version, .. }) => Some(*version),
            Some(other) => return Err(wrong_kind(key, other, "record")),
        };
        if current != expected {
            return Ok(CasOutcome::Conflict);
        }
        let version = current.map_or(1, |v| v + 1);
        let record = Value::Record {
            version,
            data: value.to_owned(),
        };
        state.insert(key, record, ttl.map(|t| now.saturating_add(ttl_ms(t))));
        Ok(CasOutcome::Written { version })
    }

    async fn compare_and_delete(&self, key: &str, expected: u64) -> StoreResult<bool> {
        let (mut state, _) = self.lock();
        match state.value(key) {
            Some(Value::Record { version, .. }) if *version == expected => {
                state.remove(key);
                Ok(true)
            }
            Some(Value::Record { .. }) | None => Ok(false),
            Some(other) => Err(wrong_kind(key, other, "record")),
        }
    }

    async fn index_add(
        &self,
        key: &str,
        members: &[String],
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        let (mut state, now) = self.lock();
        match state.value_mut(key) {
            Some(Value::Index(set)) => set.extend(members.iter().cloned()),
            Some(other) => return Err(wrong_kind(key, other, "index")),
            // Like SADD with no members, an empty add creates nothing.
            None if members.is_empty() => return Ok(()),
            None => state.insert(key, Value::Index(members.iter().cloned().collect()), None),
        }
        if let Some(ttl) = ttl {
            state.set_expiry(key, Some(now.saturating_add(ttl_ms(ttl))));
        }
        Ok(())
    }

    async fn index_remove(&self, key: &str, members: &[String]) -> StoreResult<()> {
        let (mut state, _) = self.lock();
        match state.value_mut(key) {
            Some(Value::Index(set)) => {
                for m in members {
                    set.remove(m);
                }
            }
            Some(other) => return Err(wrong_kind(key, other, "index")),
            None => return Ok(()),
        }
        state.drop_if_empty(key);
        Ok(())
    }

    async fn index_members(&self, key: &str) -> StoreResult<Vec<String>> {
        let (state, _) = self.lock();
        match state.value(key) {
            None => Ok(Vec::new()),
            Some(Value::Index(set)) => Ok(set.iter().cloned().collect()),
            Some(other) => Err(wrong_kind(key, other, "index")),
        }
    }

    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>> {
        let (state, _) = self.lock();
        match state.value(key) {
            None => Ok(None),
            Some(Value::Cached(v)) => Ok(Some(v.clone())),
            Some(other) => Err(wrong_kind(key, other, "cached value")),
        }
    }

    async fn cache_set(&self, key: &str, value: &str, ttl: Duration) -> StoreResult<()> {
        let (mut state, now) = self.lock();
        let expires_at = now.saturating_add(ttl_ms(ttl));
        state.insert(key, Value::Cached(value.to_owned()), Some(expires_at));
        Ok(())
    }

    async fn cache_set_members(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
    ) -> StoreResult<()> {
        let (mut state, now) = self.lock();
        let expires_at = now.saturating_add(ttl_ms(ttl));
        // Empty ids are dropped, as on Redis where the empty member marks a cached set.
        let set = members.iter().filter(|m| !m.is_empty()).cloned().collect();
        state.insert(key, Value::CachedSet(set), Some(expires_at));
        Ok(())
    }

    async fn cache_get_members(&self, key: &str) -> StoreResult<Option<Vec<String>>> {
        let (state, _) = self.lock();
        match state.value(key) {
            None => Ok(None),
            Some(Value::CachedSet(set)) => Ok(Some(set.iter().cloned().collect())),
            Some(other) => Err(wrong_kind(key, other, "cached set")),
        }
    }

    async fn cache_invalidate(&self, keys: &[String]) -> StoreResult<()> {
        let (mut state, _) = self.lock();
        for key in keys {
            state.remove(key);
        }
        Ok(())
    }

    async fn counter_add(&self, key: &str, field: &str, delta: i64) -> StoreResult<i64> {
        self.lock().0.counter_add(key, field, delta)
    }

    async fn counters_add_many(&self, updates: &[(String, String, i64)]) -> StoreResult<Vec<i64>> {
        let (mut state, _) = self.lock();
        // Like the Redis pipeline: every increment is tried, the first error is reported.
        let mut values = Vec::with_capacity(updates.len());
        let mut first_error = None;
        for (key, field, delta) in updates {
            match state.counter_add(key, field, *delta) {
                Ok(v) => values.push(v),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(values),
        }
    }

    async fn counters(&self, key: &str) -> StoreResult<Vec<(String, i64)>> {
        let (state, _) = self.lock();
        match state.value(key) {
            None => Ok(Vec::new()),
            Some(Value::Counters(map)) => Ok(map
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, v)| (k.clone(), *v))
                .collect()),
            Some(other) => Err(wrong_kind(key, other, "counters")),
        }
    }

    async fn counter_reset(&self, key: &str, field: &str) -> StoreResult<()> {
        let (mut state, _) = self.lock();
        match state.value_mut(key) {
            Some(Value::Counters(map)) => {
                map.remove(field);
            }
            Some(other) => return Err(wrong_kind(key, other, "counters")),
            None => return Ok(()),
        }
        state.drop_if_empty(key);
        Ok(())
    }

    async fn recent_fill(
        &self,
        key: &str,
        entries: &[CachedMessage],
        max: usize,
        ttl: Duration,
    ) -> StoreResult<()> {
        let (mut state, now) = self.lock();
        let mut cache = RecentCache {
            entries: BTreeMap::new(),
            ids: HashMap::new(),
            whole: true,
        };
        for m in entries {
            cache.insert(m);
        }
        cache.whole = cache.entries.len() < max;
        cache.trim(max);
        let expires_at = now.saturating_add(ttl_ms(ttl));
        state.insert(key, Value::Recent(cache), Some(expires_at));
        Ok(())
    }

    async fn recent_add(
        &self,
        key: &str,
        entries: &[CachedMessage],
        max: usize,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let (mut state, now) = self.lock();
        match state.value_mut(key) {
            Some(Value::Recent(cache)) => {
                for m in entries {
                    cache.insert(m);
                }
                if cache.trim(max) {
                    cache.whole = false;
                }
            }
            Some(other) => return Err(wrong_kind(key, other, "recent-message cache")),
            None => return Ok(false),
        }
        state.set_expiry(key, Some(now.saturating_add(ttl_ms(ttl))));
        Ok(true)
    }

    async fn recent_update(&self, key: &str, id: &str, json: &str) -> StoreResult<bool> {
        let (mut state, _) = self.lock();
        match state.value_mut(key) {
            Some(Value::Recent(cache)) => {
                let Some(at) = cache.ids.get(id) else {
                    return Ok(false);
                };
                let slot = cache.entries.get_mut(&(*at, id.to_owned()));
                Ok(slot.map(|j| *j = json.to_owned()).is_some())
            }
            Some(other) => Err(wrong_kind(key, other, "recent-message cache")),
            None => Ok(false),
        }
    }

    async fn recent_page(
        &self,
        key: &str,
        before: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Option<RecentPage>> {
        let (state, _) = self.lock();
        match state.value(key) {
            Some(Value::Recent(cache)) => Ok(Some(cache.page(before, after, limit))),
            Some(other) => Err(wrong_kind(key, other, "recent-message cache")),
            None => Ok(None),
        }
    }

    async fn log_push(
        &self,
        key: &str,
        entry: &str,
        max: usize,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        let (mut state, now) = self.lock();
        match state.value_mut(key) {
            Some(Value::Log(log)) => {
                log.push_front(entry.to_owned());
                log.truncate(max);
            }
            Some(other) => return Err(wrong_kind(key, other, "log")),
            None => {
                let mut log = VecDeque::from([entry.to_owned()]);
                log.truncate(max);
                state.insert(key, Value::Log(log), None);
            }
        }
        if let Some(ttl) = ttl {
            state.set_expiry(key, Some(now.saturating_add(ttl_ms(ttl))));
        }
        state.drop_if_empty(key);
        Ok(())
    }

    async fn log_range(&self, key: &str, limit: usize) -> StoreResult<Vec<String>> {
        let (state, _) = self.lock();
        match state.value(key) {
            None => Ok(Vec::new()),
            Some(Value::Log(log)) => Ok(log.iter().take(limit).cloned().collect()),
            Some(other) => Err(wrong_kind(key, other, "log")),
        }
    }

    async fn rate_limit_hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        let (mut state, clock_now) = self.lock();
        let window = ttl_ms(window);
        let mut hits = match state.value_mut(key) {
            Some(Value::Hits(hits)) => std::mem::take(hits),
            Some(other) => return Err(wrong_kind(key, other, "rate limit")),
            None => VecDeque::new(),
        };
        // The window is (now - window, now]: a hit at `h` leaves it at `h + window`.
        while hits
            .front()
            .is_some_and(|h| *h <= now.saturating_sub(window))
        {
            hits.pop_front();
        }
        let count = hits.len();
        let decision = if count < limit as usize {
            // Instances' clocks may disagree a little: keep the hits sorted anyway.
            let at = hits.partition_point(|h| *h <= now);
            hits.insert(at, now);
            RateDecision {
                allowed: true,
                remaining: limit - count as u32 - 1,
                retry_after_ms: 0,
            }
        } else {
            let oldest = hits.front().copied().unwrap_or(now);
            RateDecision {
                allowed: false,
                remaining: 0,
                retry_after_ms: (oldest.saturating_add(window) - now).max(1) as u64,
            }
        };
        let expires_at = if decision.allowed {
            Some(clock_now.saturating_add(window))
        } else {
            state.keys.get(key).and_then(|e| e.expires_at)
        };
        if hits.is_empty() {
            state.remove(key);
        } else {
            state.insert(key, Value::Hits(hits), expires_at);
        }
        Ok(decision)
    }

    async fn timer_schedule(&self, timer: &Timer) -> StoreResult<()> {
        let (mut state, _) = self.lock();
        let timers = &mut state.timers;
        timers.remove(&timer.id);
        timers.due.insert((timer.due_at, timer.id.clone()));
        timers.entries.insert(
            timer.id.clone(),
            TimerEntry {
                timer: timer.clone(),
                claim: None,
            },
        );
        Ok(())
    }

    async fn timer_cancel(&self, id: &str) -> StoreResult<bool> {
        let (mut state, _) = self.lock();
        Ok(state.timers.remove(id).is_some_and(|(_, pending)| pending))
    }

    async fn timers_claim_due(
        &self,
        now: Millis,
        max: usize,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>> {
        let (mut state, _) = self.lock();
        let timers = &mut state.timers;
        let until = now.saturating_add(ttl_ms(lease));
        // Lapsed leases first: their timers have waited longest.
        let mut ids: Vec<String> = timers
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .map(|(_, id)| id.clone())
            .collect();
        let room = max - ids.len();
        ids.extend(
            timers
                .due
                .iter()
                .take_while(|(at, _)| *at <= now)
                .take(room)
                .map(|(_, id)| id.clone()),
        );
        Ok(ids
            .iter()
            .filter_map(|id| timers.claim(id, owner, until))
            .collect())
    }

    async fn timer_complete(&self, id: &str, owner: &str) -> StoreResult<bool> {
        let (mut state, _) = self.lock();
        let held = state
            .timers
            .entries
            .get(id)
            .and_then(|e| e.claim.as_ref())
            .is_some_and(|(o, _)| o == owner);
        if held {
            state.timers.remove(id);
        }
        Ok(held)
    }

    async fn presence_connect(
        &self,
        user_id: &str,
        device_id: &str,
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<PresenceChange> {
        let (mut state, clock_now) = self.lock();
        let keep_until = clock_now.saturating_add(ttl_ms(PRESENCE_RETENTION));
        let was_online = state.online.contains(user_id);
        let mut devices = state.take_devices(user_id)?;
        devices.retain(|_, exp| *exp > now);
        devices.insert(device_id.to_owned(), now.saturating_add(ttl_ms(ttl)));
        let count = devices.len() as u32;
        state.put_devices(user_id, devices, keep_until);
        state.touch_meta(user_id, now, keep_until)?;
        Ok(PresenceChange {
            was_online,
            devices: count,
        })
    }

    async fn presence_disconnect(
        &self,
        user_id: &str,
        device_id: &str,
        now: Millis,
    ) -> StoreResult<PresenceChange> {
        let (mut state, clock_now) = self.lock();
        let keep_until = clock_now.saturating_add(ttl_ms(PRESENCE_RETENTION));
        let was_online = state.online.contains(user_id);
        let mut devices = state.take_devices(user_id)?;
        devices.remove(device_id);
        devices.retain(|_, exp| *exp > now);
        let count = devices.len() as u32;
        state.put_devices(user_id, devices, keep_until);
        if was_online {
            state.touch_meta(user_id, now, keep_until)?;
        }
        Ok(PresenceChange {
            was_online,
            devices: count,
        })
    }

    async fn presence_refresh(
        &self,
        devices: &[(String, String)],
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<Vec<(String, String)>> {
        let (mut state, clock_now) = self.lock();
        let keep_until = clock_now.saturating_add(ttl_ms(PRESENCE_RETENTION));
        let expires_at = now.saturating_add(ttl_ms(ttl));
        let mut unknown = Vec::new();
        for (user_id, device_id) in devices {
            let key = keys::presence_devices(user_id);
            // A known device is extended even if its liveness lapsed: its user has not been
            // reported offline yet (the reaper has not removed it), so nothing is lost.
            let latest = match state.value_mut(&key) {
                Some(Value::Devices(d)) => d.get_mut(device_id).map(|exp| {
                    *exp = (*exp).max(expires_at);
                    *exp
                }),
                Some(other) => return Err(wrong_kind(&key, other, "presence devices")),
                None => None,
            };
            match latest {
                Some(latest) => {
                    state.online.raise(user_id, latest);
                    state.set_expiry(&key, Some(keep_until));
                    state.touch_meta(user_id, now, keep_until)?;
                }
                None => unknown.push((user_id.clone(), device_id.clone())),
            }
        }
        Ok(unknown)
    }

    async fn presence_set_status(
        &self,
        user_id: &str,
        status: &str,
    ) -> StoreResult<Option<String>> {
        let (mut state, clock_now) = self.lock();
        let keep_until = clock_now.saturating_add(ttl_ms(PRESENCE_RETENTION));
        let key = keys::presence_user(user_id);
        let previous = match state.value_mut(&key) {
            Some(Value::PresenceMeta { status: s, .. }) => s.replace(status.to_owned()),
            Some(other) => return Err(wrong_kind(&key, other, "presence metadata")),
            None => {
                state.insert(
                    &key,
                    Value::PresenceMeta {
                        status: Some(status.to_owned()),
                        last_seen: 0,
                        in_call: false,
                    },
                    None,
                );
                None
            }
        };
        state.set_expiry(&key, Some(keep_until));
        Ok(previous)
    }

    async fn presence_set_in_call(&self, user_id: &str, in_call: bool) -> StoreResult<bool> {
        let (mut state, clock_now) = self.lock();
        let keep_until = clock_now.saturating_add(ttl_ms(PRESENCE_RETENTION));
        let key = keys::presence_user(user_id);
        let (changed, now_empty) = match state.value_mut(&key) {
            Some(Value::PresenceMeta {
                status,
                last_seen,
                in_call: flag,
            }) => {
                let changed = *flag != in_call;
                *flag = in_call;
                (changed, status.is_none() && *last_seen == 0 && !in_call)
            }
            Some(other) => return Err(wrong_kind(&key, other, "presence metadata")),
            // Clearing creates nothing (like HDEL on a missing hash).
            None if !in_call => return Ok(false),
            None => {
                state.insert(
                    &key,
                    Value::PresenceMeta {
                        status: None,
                        last_seen: 0,
                        in_call: true,
                    },
                    None,
                );
                (true, false)
            }
        };
        if now_empty {
            // The Redis hash loses its last field and disappears: so does the entry.
            state.remove(&key);
        } else if in_call {
            state.set_expiry(&key, Some(keep_until));
        }
        Ok(changed)
    }

    async fn presence_get(
        &self,
        user_ids: &[String],
        now: Millis,
    ) -> StoreResult<Vec<Option<PresenceEntry>>> {
        let (state, _) = self.lock();
        user_ids
            .iter()
            .map(|user_id| {
                let key = keys::presence_devices(user_id);
                let live: Vec<String> = match state.value(&key) {
                    None => Vec::new(),
                    Some(Value::Devices(d)) => d
                        .iter()
                        .filter(|(_, exp)| **exp > now)
                        .map(|(id, _)| id.clone())
                        .collect(),
                    Some(other) => return Err(wrong_kind(&key, other, "presence devices")),
                };
                let meta_key = keys::presence_user(user_id);
                let (status, last_seen, in_call) = match state.value(&meta_key) {
                    None if live.is_empty() => return Ok(None),
                    None => (None, 0, false),
                    Some(Value::PresenceMeta {
                        status,
                        last_seen,
                        in_call,
                    }) => (status.clone(), *last_seen, *in_call),
                    Some(other) => return Err(wrong_kind(&meta_key, other, "presence metadata")),
                };
                Ok(Some(PresenceEntry {
                    user_id: user_id.clone(),
                    devices: live,
                    status,
                    last_seen,
                    in_call,
                }))
            })
            .collect()
    }

    async fn presence_online_users(&self, now: Millis) -> StoreResult<Vec<String>> {
        let (state, _) = self.lock();
        let mut users: Vec<String> = state
            .online
            .by_expiry
            .range((now.saturating_add(1), String::new())..)
            .map(|(_, u)| u.clone())
            .collect();
        users.sort();
        Ok(users)
    }

    async fn presence_reap_expired(&self, now: Millis, max: usize) -> StoreResult<Vec<String>> {
        let (mut state, clock_now) = self.lock();
        let keep_until = clock_now.saturating_add(ttl_ms(PRESENCE_RETENTION));
        let candidates: Vec<String> = state
            .online
            .by_expiry
            .iter()
            .take_while(|(exp, _)| *exp <= now)
            .take(max)
            .map(|(_, u)| u.clone())
            .collect();
        let mut gone = Vec::new();
        for user_id in candidates {
            let mut devices = state.take_devices(&user_id)?;
            devices.retain(|_, exp| *exp > now);
            if devices.is_empty() {
                gone.push(user_id.clone());
            }
            // Removes the user from the index when nothing is left, else fixes its score.
            state.put_devices(&user_id, devices, keep_until);
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::time::ManualClock;

    fn store() -> (MemoryStore, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        (MemoryStore::new(Arc::new(clock.clone())), clock)
    }

    #[tokio::test]
    async fn expired_entries_are_purged_without_being_read() {
        let (store, clock) = store();
        for i in 0..100 {
            store
                .cache_set(&format!("c{i}"), "v", Duration::from_millis(50))
                .await
                .unwrap();
            store
                .index_add(
                    &format!("i{i}"),
                    &["m".to_owned()],
                    Some(Duration::from_millis(50)),
                )
                .await
                .unwrap();
        }
        store
            .cache_set("keep", "v", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.key_count(), 201);
        clock.advance(51);
        // Any call purges; nothing else reads the dead keys.
        assert_eq!(store.key_count(), 1);
        assert_eq!(store.state.lock().unwrap().expiries.len(), 1);
    }

    #[tokio::test]
    async fn changing_a_ttl_keeps_the_expiry_index_exact() {
        let (store, clock) = store();
        store
            .compare_and_set("r", None, "a", Some(Duration::from_millis(10)))
            .await
            .unwrap();
        store
            .compare_and_set("r", Some(1), "b", None)
            .await
            .unwrap();
        clock.advance(1_000);
        assert_eq!(store.get("r").await.unwrap().unwrap().value, "b");
        assert!(store.state.lock().unwrap().expiries.is_empty());
    }

    #[tokio::test]
    async fn wrong_kind_is_corrupt() {
        let (store, _) = store();
        store
            .cache_set("k", "v", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(matches!(store.get("k").await, Err(StoreError::Corrupt(_))));
        assert!(matches!(
            store.counter_add("k", "f", 1).await,
            Err(StoreError::Corrupt(_))
        ));
        // Writing a cache replaces whatever the key held, like SET.
        store.compare_and_set("r", None, "v", None).await.unwrap();
        store
            .cache_set("r", "v", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(store.cache_get("r").await.unwrap().as_deref(), Some("v"));
    }

    #[tokio::test]
    async fn reaped_and_disconnected_users_leave_no_keys_but_metadata() {
        let (store, _) = store();
        let ttl = Duration::from_millis(100);
        store.presence_connect("a", "d1", 0, ttl).await.unwrap();
        store.presence_connect("b", "d1", 0, ttl).await.unwrap();
        store.presence_disconnect("a", "d1", 10).await.unwrap();
        assert_eq!(
            store.presence_reap_expired(200, 10).await.unwrap(),
            vec!["b"]
        );
        let state = store.state.lock().unwrap();
        assert!(state.online.scores.is_empty() && state.online.by_expiry.is_empty());
        let mut left: Vec<_> = state.keys.keys().cloned().collect();
        left.sort();
        assert_eq!(
            left,
            vec![keys::presence_user("a"), keys::presence_user("b")]
        );
    }

    #[tokio::test]
    async fn presence_metadata_expires_after_retention() {
        let (store, clock) = store();
        store.presence_set_status("a", "busy").await.unwrap();
        clock.advance(ttl_ms(PRESENCE_RETENTION) + 1);
        assert_eq!(store.key_count(), 0);
        assert_eq!(
            store.presence_get(&["a".to_owned()], 0).await.unwrap(),
            vec![None]
        );
    }

    #[tokio::test]
    async fn in_call_flag_is_retained_then_expires() {
        let (store, clock) = store();
        store.presence_set_in_call("a", true).await.unwrap();
        clock.advance(ttl_ms(PRESENCE_RETENTION) - 1);
        let got = store.presence_get(&["a".to_owned()], 0).await.unwrap();
        assert!(got[0].as_ref().is_some_and(|e| e.in_call));
        // Setting it again renews the retention.
        assert!(!store.presence_set_in_call("a", true).await.unwrap());
        clock.advance(2);
        assert_eq!(store.key_count(), 1);
        clock.advance(ttl_ms(PRESENCE_RETENTION));
        assert_eq!(store.key_count(), 0);
        assert!(
            !store.presence_set_in_call("a", false).await.unwrap(),
            "expired with its metadata"
        );
        assert_eq!(store.key_count(), 0, "clearing creates nothing");
    }
}
