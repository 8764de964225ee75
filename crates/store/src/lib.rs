//! The state store: what Switchboard keeps in memory or in Redis.
//!
//! The store gives atomicity; the domain gives the rules. A state machine's transition is
//! computed by a pure domain function and written with [`StateStore::compare_and_set`] (see
//! [`update_record`] for the optimistic retry loop), so the rules live once and both backends
//! enforce them the same way.
//!
//! # Layout
//! - [`StateStore`]: the trait every backend implements, grouped by what the features need.
//! - [`memory::MemoryStore`]: the embedded single-instance backend (the default).
//! - [`redis::RedisStore`]: the shared backend; one Lua script or command per operation.
//! - [`keys`]: the logical key layout, shared by both backends and documented in
//!   `docs/redis-keys.md`.
//! - [`bus`]: the instance-to-instance message bus of a deployment ([`bus::Bus`]), in memory
//!   or over Redis pub/sub.
//! - [`conformance`]: the one suite every backend must pass, races included; instantiated
//!   by `tests/memory.rs` and `tests/redis.rs` (Redis from `SWITCHBOARD_TEST_REDIS_URL`,
//!   skipped when unreachable unless `SWITCHBOARD_REQUIRE_BACKENDS=1`).
//!
//! Time: methods that score or window by time take `now` from the caller (the domain's
//! convention); expiries the backend enforces by itself (TTLs) use the backend's clock.

pub mod bus;
pub mod conformance;
pub mod keys;
pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};
use switchboard_domain::Millis;

/// A failure of the backend itself. Lost races are not errors: see [`CasOutcome`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer; the caller may retry later.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with data this version cannot read.
    #[error("state store returned unexpected data: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

// Both backends satisfy the trait, checked when the crate compiles rather than by a test.
const _: () = {
    const fn is_state_store<T: StateStore>() {}
    is_state_store::<memory::MemoryStore>();
    is_state_store::<redis::RedisStore>();
};

/// Milliseconds of a TTL, at least 1: a zero TTL expires at once rather than never.
pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// A record with the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: String,
    /// Starts at 1 on creation and grows by one on every successful write. A record that
    /// is deleted or expires starts again at 1, so ids of records that can come back after
    /// a delete should be unique (call ids are).
    pub version: u64,
}

/// The result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// Written; the record now has this version.
    Written { version: u64 },
    /// The record was not at the expected version (or existed when it should not have).
    Conflict,
}

/// The verdict of a sliding-window rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Hits still allowed in the current window after this one.
    pub remaining: u32,
    /// When refused: how long until the oldest hit leaves the window.
    pub retry_after_ms: u64,
}

/// A timer in the deadline queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Unique per timer; scheduling the same id again replaces the earlier one.
    pub id: String,
    /// What kind of work fires (e.g. `ring_timeout`); the server dispatches on it.
    pub kind: String,
    /// Opaque to the store (JSON in practice).
    pub payload: String,
    pub due_at: Millis,
}

/// What a device connecting or disconnecting did to its user's presence.
///
/// The store reports every transition once, so that friends see online and offline
/// alternate: a user goes online when [`StateStore::presence_connect`] returns
/// `!was_online && is_online()`, and goes offline exactly once afterwards, either when
/// [`StateStore::presence_disconnect`] returns `was_online && !is_online()` or when
/// [`StateStore::presence_reap_expired`] returns the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    /// Whether the user counted as online before the operation: the user had a device that
    /// had not been disconnected or reaped yet. A device whose liveness lapsed still counts
    /// until it is removed, because its user has not been reported offline yet.
    pub was_online: bool,
    /// Live devices after the operation (lapsed devices of the user are removed by it).
    pub devices: u32,
}

impl PresenceChange {
    pub fn is_online(&self) -> bool {
        self.devices > 0
    }
}

/// One user's presence as the store knows it.
///
/// An entry exists while the user has a live device or retained metadata (see
/// [`PRESENCE_RETENTION`]): an offline user still has an entry, with no devices, so that
/// the last seen time and the user-set status can be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    pub user_id: String,
    /// Live device ids (liveness not lapsed at the `now` asked about), sorted. Empty when
    /// the user is offline, including when their devices lapsed but were not reaped yet.
    pub devices: Vec<String>,
    /// The user-set status (`online`, `away`, `busy`), if the user ever set one.
    pub status: Option<String>,
    /// The last activity of any device (connect, refresh or disconnect); 0 if the user was
    /// never active (metadata created only by [`StateStore::presence_set_status`] or
    /// [`StateStore::presence_set_in_call`]).
    pub last_seen: Millis,
    /// The server-set in-call flag (see [`StateStore::presence_set_in_call`]).
    pub in_call: bool,
}

impl PresenceEntry {
    /// Whether the user has a live device.
    pub fn is_online(&self) -> bool {
        !self.devices.is_empty()
    }
}

/// One message in a conversation's recent-message cache (see [`StateStore::recent_fill`]).
///
/// Entries are ordered by `(created_at, id)`: ids break ties between messages created in the
/// same millisecond, compared byte-wise (Rust's `str` order, which is also Redis's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedMessage {
    /// Unique in the conversation and never empty (entries with an empty id are ignored).
    pub id: String,
    pub created_at: Millis,
    /// Opaque to the store: the message as the caller will send it (JSON in practice).
    pub json: String,
}

/// A page read from a recent-message cache by [`StateStore::recent_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentPage {
    /// Oldest first (ascending `(created_at, id)`), at most `limit` entries.
    pub entries: Vec<CachedMessage>,
    /// Whether `entries` is exactly what the database would answer for the same page. False
    /// when the cursor is not in the cache, or when the page would need messages older than
    /// the oldest cached one and the cache does not hold the conversation's beginning (see
    /// [`StateStore::recent_page`]). The caller then asks the database instead.
    pub complete: bool,
}

/// How long a user's presence metadata (status, last seen, in-call flag) outlives the user's
/// last activity.
/// A user-set status survives reconnects and short absences, and memory stays bounded.
pub const PRESENCE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The state store. Every method is one atomic operation (one round trip on Redis), except
/// the batches over keys of several entities, which are one round trip of operations each
/// atomic on its own: [`cache_invalidate`](Self::cache_invalidate) and
/// [`counters_add_many`](Self::counters_add_many).
///
/// Keys are logical (see [`keys`]); a backend may add its own prefix. Each key holds one
/// kind of data: using a key with a method of another kind fails with
/// [`StoreError::Corrupt`]. Methods taking `now` use it for scores and windows (rate
/// limits, timers, presence); record, index, cache and log TTLs are enforced by the
/// backend's own clock (the injected clock for memory, the server's for Redis) at
/// millisecond precision, and an expired entry behaves as absent.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// `"memory"` or `"redis"`.
    fn backend(&self) -> &'static str;

    /// A round trip to the backend, for `/health`.
    async fn ping(&self) -> StoreResult<Duration>;

    // --- Versioned records: the state machines' storage -------------------------------

    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>>;

    /// Writes `value` if the record is at `expected` (`None`: it must not exist). A `ttl`
    /// sets (or replaces) the record's expiry; `None` keeps it forever.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<CasOutcome>;

    /// Deletes the record if it is at `expected`. Returns whether it was deleted.
    async fn compare_and_delete(&self, key: &str, expected: u64) -> StoreResult<bool>;

    // --- Indexes: sets of ids that point at records (e.g. a user's calls) --------------

    /// Adds members to a set and (re)sets the set's expiry when `ttl` is given (`None`
    /// leaves the current expiry, if any, alone).
    async fn index_add(
        &self,
        key: &str,
        members: &[String],
        ttl: Option<Duration>,
    ) -> StoreResult<()>;
    async fn index_remove(&self, key: &str, members: &[String]) -> StoreResult<()>;
    async fn index_members(&self, key: &str) -> StoreResult<Vec<String>>;

    // --- Caches: values and sets copied from the database ------------------------------

    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>>;
    async fn cache_set(&self, key: &str, value: &str, ttl: Duration) -> StoreResult<()>;
    /// Replaces a cached set. An empty set is cached too (distinct from a miss).
    async fn cache_set_members(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
    ) -> StoreResult<()>;
    /// `None` on a miss; `Some(vec![])` for a cached empty set.
    async fn cache_get_members(&self, key: &str) -> StoreResult<Option<Vec<String>>>;
    /// Deletes cached values, sets and recent-message caches (which turn cold).
    async fn cache_invalidate(&self, keys: &[String]) -> StoreResult<()>;

    // --- Counters: a hash of integer fields per key (e.g. unread counts per user) -------

    /// Adds `delta` to a field and returns the new value. Counters never expire; a field
    /// that comes back to zero is removed.
    async fn counter_add(&self, key: &str, field: &str, delta: i64) -> StoreResult<i64>;
    /// Every non-zero field of the key.
    async fn counters(&self, key: &str) -> StoreResult<Vec<(String, i64)>>;
    async fn counter_reset(&self, key: &str, field: &str) -> StoreResult<()>;

    /// Applies [`counter_add`](Self::counter_add) to each `(key, field, delta)` in order and
    /// returns the new values in the same order, in one round trip (e.g. the unread counts
    /// of every member of a conversation). Each increment is atomic on its own; the batch is
    /// not a transaction: another client may see some of the increments before the others,
    /// and on an error some increments may have been applied (the keys may live on
    /// different cluster nodes, one per user).
    async fn counters_add_many(&self, updates: &[(String, String, i64)]) -> StoreResult<Vec<i64>>;

    // --- Recent-message caches: the newest messages of a conversation ------------------
    //
    // A cache is cold (absent) or warm. Only `recent_fill` makes it warm, with what the
    // database holds, so a partial cache is never created: `recent_add` and
    // `recent_update` on a cold cache do nothing. It turns cold again when its TTL runs
    // out or on `cache_invalidate(&[key])`. A warm cache holds the newest messages of the
    // conversation, contiguous (nothing in between is missing), ordered by
    // `(created_at, id)`, and knows whether it also holds the oldest message of the
    // conversation ("whole") or older messages may exist only in the database ("partial").
    // Keys: `keys::messages(conversation_id)`.

    /// Replaces the cache with the newest `max` of `entries` (any order; of two entries with
    /// the same id the later one wins) and makes it warm for `ttl`. `entries` must be the
    /// newest `max` messages of the conversation, or all of them when it has fewer: a fill
    /// with fewer than `max` distinct entries declares the cache whole (an empty fill caches
    /// a conversation without messages), one with `max` or more makes it partial.
    async fn recent_fill(
        &self,
        key: &str,
        entries: &[CachedMessage],
        max: usize,
        ttl: Duration,
    ) -> StoreResult<()>;
    /// If the cache is warm: adds `entries` (an entry whose id is cached replaces it, json
    /// and `created_at`), drops the oldest entries beyond `max` (which makes the cache
    /// partial), resets the TTL to `ttl` and returns true. If it is cold: writes nothing and
    /// returns false (the next reader fills it from the database).
    async fn recent_add(
        &self,
        key: &str,
        entries: &[CachedMessage],
        max: usize,
        ttl: Duration,
    ) -> StoreResult<bool>;
    /// Replaces the json of the cached entry `id` (edits, reactions, deletions) and returns
    /// true; false when the cache is cold or does not hold `id`. The TTL is left alone.
    async fn recent_update(&self, key: &str, id: &str, json: &str) -> StoreResult<bool>;
    /// Reads a page, oldest first; `None` when the cache is cold.
    ///
    /// - no cursor: the newest `limit` entries;
    /// - `before: Some(id)`: the `limit` entries just older than `id`;
    /// - `after: Some(id)`: the `limit` entries just newer than `id`;
    /// - both: the first `limit` entries after `after` that are older than `before`.
    ///
    /// `complete` is false when a cursor is not in the cache (then `entries` is empty), or
    /// when the page holds fewer than `limit` entries because it reached the oldest cached
    /// entry (no cursor or `before` only) while the cache is partial. Otherwise the page is
    /// what the database would answer: an `after` page is always complete (the cache holds
    /// the newest messages), and so is a page of exactly `limit` entries.
    async fn recent_page(
        &self,
        key: &str,
        before: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Option<RecentPage>>;

    // --- Capped logs: newest-first lists of at most `max` entries ----------------------

    /// Prepends `entry` and drops the oldest entries beyond `max`. A `ttl` (re)sets the
    /// log's expiry; `None` leaves it alone.
    async fn log_push(
        &self,
        key: &str,
        entry: &str,
        max: usize,
        ttl: Option<Duration>,
    ) -> StoreResult<()>;
    /// Newest first, at most `limit` entries.
    async fn log_range(&self, key: &str, limit: usize) -> StoreResult<Vec<String>>;

    // --- Sliding-window rate limits ---------------------------------------------------

    /// Records a hit at `now` if fewer than `limit` hits fall in `(now - window, now]`.
    /// A refused hit is not recorded. `window` is at least 1 ms.
    async fn rate_limit_hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<RateDecision>;

    // --- Deadline queue: timers that fire exactly once across instances ---------------

    /// Schedules (or reschedules) a timer. Rescheduling a claimed timer takes the claim
    /// away: it fires again at its new due time and its former owner cannot complete it.
    async fn timer_schedule(&self, timer: &Timer) -> StoreResult<()>;
    /// Cancels a timer. Returns true if it was pending (not claimed), so it will never fire.
    /// A claimed timer is dropped too, so it is not retried when its lease runs out, but its
    /// owner may be running it right now: then this returns false and the owner's
    /// [`timer_complete`](Self::timer_complete) returns false.
    async fn timer_cancel(&self, id: &str) -> StoreResult<bool>;
    /// Claims up to `max` timers due at `now` for `owner`. A claimed timer is invisible to
    /// other claimers until `now + lease`; if its owner has not completed it by then, it
    /// becomes claimable again (so a crashed instance's timers still fire). Timers whose
    /// lease ran out are handed out before newly due ones.
    async fn timers_claim_due(
        &self,
        now: Millis,
        max: usize,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>>;
    /// Removes a claimed timer for good. Returns false if `owner` no longer holds the claim.
    async fn timer_complete(&self, id: &str, owner: &str) -> StoreResult<bool>;

    // --- Presence: devices with expiring liveness -------------------------------------

    /// Marks a device live until `now + ttl` and the user active at `now`.
    async fn presence_connect(
        &self,
        user_id: &str,
        device_id: &str,
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<PresenceChange>;
    /// Removes a device, and marks the user active at `now` if it was online.
    async fn presence_disconnect(
        &self,
        user_id: &str,
        device_id: &str,
        now: Millis,
    ) -> StoreResult<PresenceChange>;
    /// Extends the liveness of the given `(user_id, device_id)` pairs to `now + ttl`
    /// (heartbeat), in one round trip, and marks their users active at `now`. Returns the
    /// pairs the store does not know (never connected, disconnected, or reaped): they are
    /// not revived here, because their users may already have been reported offline; the
    /// caller connects them again with [`presence_connect`](Self::presence_connect), which
    /// reports the transition.
    async fn presence_refresh(
        &self,
        devices: &[(String, String)],
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<Vec<(String, String)>>;
    /// Sets the user-set status; it is kept across reconnects for [`PRESENCE_RETENTION`]
    /// (renewed by this call). Returns the status it replaced (`None` if none was set), read
    /// and written atomically, so of concurrent callers each sees the one before its own.
    async fn presence_set_status(&self, user_id: &str, status: &str)
    -> StoreResult<Option<String>>;
    /// Sets (`true`) or clears (`false`) the server-set in-call flag, kept with the user's
    /// presence metadata: setting it renews the metadata's [`PRESENCE_RETENTION`], clearing
    /// it leaves the expiry alone and creates nothing for a user without metadata. Returns
    /// whether the flag changed, atomically: of concurrent callers setting the same value,
    /// exactly one sees `true`. The flag is independent of devices: disconnects and the
    /// reaper do not clear it.
    async fn presence_set_in_call(&self, user_id: &str, in_call: bool) -> StoreResult<bool>;
    /// One slot per user asked, in order: the user's entry if the user has a live device at
    /// `now` or retained presence metadata (then with `devices` empty: the user is offline),
    /// `None` for a user the store does not know (never seen, or metadata expired).
    async fn presence_get(
        &self,
        user_ids: &[String],
        now: Millis,
    ) -> StoreResult<Vec<Option<PresenceEntry>>>;
    /// Every user with a live device.
    async fn presence_online_users(&self, now: Millis) -> StoreResult<Vec<String>>;
    /// Removes devices whose liveness lapsed before `now` and returns the users left with
    /// none. Each such user is returned by exactly one call, whichever instance makes it.
    async fn presence_reap_expired(&self, now: Millis, max: usize) -> StoreResult<Vec<String>>;
}

/// What a pure transition function decided for a record.
pub enum Transition<T> {
    /// Write the new state (with an optional expiry) and return it.
    Write(T, Option<Duration>),
    /// Delete the record.
    Delete,
}

/// The result of [`update_record`].
#[derive(Debug)]
pub enum UpdateError<E> {
    /// The transition function refused.
    Rejected(E),
    Store(StoreError),
}

/// Applies a pure transition to a JSON record with optimistic concurrency: read, compute,
/// compare-and-set, and retry from a fresh read if another writer got there first.
///
/// `transition` sees the current state (`None` if absent) and must be pure: it may run more
/// than once. Returns the state written (`None` after a delete).
pub async fn update_record<S, T, E, F>(
    store: &S,
    key: &str,
    mut transition: F,
) -> Result<Option<T>, UpdateError<E>>
where
    S: StateStore + ?Sized,
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> Result<Transition<T>, E>,
{
    const MAX_ATTEMPTS: usize = 64;
    for _ in 0..MAX_ATTEMPTS {
        let current = store.get(key).await.map_err(UpdateError::Store)?;
        let (state, version) = match &current {
            Some(v) => (
                Some(
                    serde_json::from_str::<T>(&v.value)
                        .map_err(|e| UpdateError::Store(StoreError::Corrupt(e.to_string())))?,
                ),
                Some(v.version),
            ),
            None => (None, None),
        };
        match transition(state).map_err(UpdateError::Rejected)? {
            Transition::Write(next, ttl) => {
                let json = serde_json::to_string(&next)
                    .map_err(|e| UpdateError::Store(StoreError::Corrupt(e.to_string())))?;
                match store
                    .compare_and_set(key, version, &json, ttl)
                    .await
                    .map_err(UpdateError::Store)?
                {
                    CasOutcome::Written { .. } => return Ok(Some(next)),
                    CasOutcome::Conflict => continue,
                }
            }
            Transition::Delete => match version {
                None => return Ok(None),
                Some(version) => {
                    if store
                        .compare_and_delete(key, version)
                        .await
                        .map_err(UpdateError::Store)?
                    {
                        return Ok(None);
                    }
                }
            },
        }
    }
    Err(UpdateError::Store(StoreError::Unavailable(format!(
        "too much contention on {key}"
    ))))
}
