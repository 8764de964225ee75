//! The shared backend: every instance of a deployment talks to one Redis (standalone or
//! behind Sentinel, version 6.2 or later for `ZADD GT`).
//!
//! Every trait method is one round trip: one command, one `MULTI`/`EXEC` block when no
//! decision depends on what is read, or one Lua script (sent as `EVALSHA`, loaded on
//! `NOSCRIPT`) when one does. A script runs alone on the server, so a compare-and-set, a
//! timer claim or a presence reap can never interleave with another one, whichever instance
//! sends it. Batches over several entities' keys (`cache_invalidate`, `counters_add_many`)
//! are one pipeline of such commands or scripts, each atomic on its own. The keys one script
//! touches share a hash tag (see [`crate::keys`]) so the layout
//! is ready for Redis Cluster slot rules.
//!
//! The connection is a [`ConnectionManager`]: one multiplexed connection that reconnects by
//! itself. Connecting and answering both time out (2 s by default), so a dead Redis makes
//! calls fail fast with [`StoreError::Unavailable`] instead of hanging, and the next call
//! after Redis comes back reconnects.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script};
use serde::{Deserialize, Serialize};
use switchboard_domain::Millis;

use crate::{
    CachedMessage, CasOutcome, PRESENCE_RETENTION, PresenceChange, PresenceEntry, RateDecision,
    RecentPage, StateStore, StoreError, StoreResult, Timer, Versioned, keys, ttl_ms,
};

/// Connection settings of [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Bound on establishing a TCP connection (and the handshake).
    pub connect_timeout: Duration,
    /// Bound on waiting for any reply.
    pub response_timeout: Duration,
    /// Extra connection attempts (with a short backoff) before a call fails. Kept low: a
    /// failed call is reported at once and the next call tries to reconnect again.
    pub reconnect_attempts: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            reconnect_attempts: 1,
        }
    }
}

/// The Redis state store. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: only the prefix is shown.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Maps a client error: transport trouble is worth retrying, a reply we cannot use is not.
pub(crate) fn map_err(e: RedisError) -> StoreError {
    let corrupt = matches!(
        e.kind(),
        ErrorKind::UnexpectedReturnType
            | ErrorKind::Parse
            | ErrorKind::Server(redis::ServerErrorKind::ResponseError)
    ) || e.code() == Some("WRONGTYPE");
    if corrupt {
        StoreError::Corrupt(e.to_string())
    } else {
        // I/O, timeouts, refused connections, LOADING, READONLY, OOM, BUSY, auth...
        StoreError::Unavailable(e.to_string())
    }
}

/// A reconnecting multiplexed connection with the timeouts of `options`.
pub(crate) async fn connection_manager(
    client: redis::Client,
    options: &RedisOptions,
) -> StoreResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(options.reconnect_attempts)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(map_err)
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// What the timer data hash holds per id.
#[derive(Serialize, Deserialize)]
struct TimerData {
    kind: String,
    payload: String,
    due_at: Millis,
}

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`, or `rediss://`) and puts
    /// every key under `prefix` (e.g. `sb:`), so several deployments can share a Redis.
    /// The prefix may not contain `{` or `}`: they would break the keys' hash tags.
    pub async fn connect(url: &str, prefix: &str, options: RedisOptions) -> StoreResult<Self> {
        if prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(format!(
                "invalid key prefix {prefix:?}: braces would break hash tags"
            )));
        }
        let client = redis::Client::open(url).map_err(map_err)?;
        let conn = connection_manager(client, &options).await?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// Deletes every key under this store's prefix (SCAN + UNLINK, not atomic). For tests
    /// and for decommissioning a deployment; returns how many keys were deleted.
    pub async fn purge_prefix(&self) -> StoreResult<u64> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            if !batch.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&batch)
                    .query_async(&mut conn)
                    .await
                    .map_err(map_err)?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// An invocation of a deadline-queue script with its four keys (KEYS[1..4]).
    fn timer_script<'s>(&self, script: &'s Script) -> redis::ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(self.key(keys::TIMERS_DUE))
            .key(self.key(keys::TIMERS_DATA))
            .key(self.key(keys::TIMERS_LEASES))
            .key(self.key(keys::TIMERS_OWNERS));
        inv
    }
}

/// Escapes the glob characters of `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

// --- Scripts ------------------------------------------------------------------------------
//
// Each script documents its KEYS and ARGV. Times are milliseconds; scores are the callers'
// `now`, TTLs (PEXPIRE) the server's clock.

/// KEYS: record. ARGV: expected version ('' = must not exist), value, ttl ms (0 = none).
/// Returns the new version, or -1 on a conflict.
static CAS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if current then return -1 end
elseif current ~= ARGV[1] then
  return -1
end
local version = 1
if current then version = tonumber(current) + 1 end
redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[2])
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
return version
",
    )
});

/// KEYS: record. ARGV: expected version. Returns 1 if deleted.
static CAS_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'v') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

/// KEYS: counters. ARGV: field, delta. Returns the new value; a zero field is removed.
static COUNTER_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local value = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if value == 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return value
",
    )
});

/// KEYS: hits (zset of unique members scored by hit time). ARGV: now, window ms, limit,
/// unique member. Returns {allowed, remaining, retry_after_ms}.
static RATE_LIMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
local retry = window
if oldest then retry = tonumber(oldest) + window - now end
if retry < 1 then retry = 1 end
return {0, 0, retry}
",
    )
});

/// KEYS: due, data, leases, owners. ARGV: id, due_at, data. Replaces any earlier timer with
/// the id, claimed or not.
static TIMER_SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
",
    )
});

/// KEYS: due, data, leases, owners. ARGV: id. Returns 1 if the timer was pending.
static TIMER_CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local pending = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return pending
",
    )
});

/// KEYS: due, data, leases, owners. ARGV: now, max, owner, lease expiry.
/// Claims timers whose lease lapsed, then due ones, up to max. Returns {id, data, ...}.
static TIMERS_CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local max = tonumber(ARGV[2])
local out = {}
local function take(id)
  local data = redis.call('HGET', KEYS[2], id)
  if data then
    redis.call('ZADD', KEYS[3], ARGV[4], id)
    redis.call('HSET', KEYS[4], id, ARGV[3])
    out[#out + 1] = id
    out[#out + 1] = data
  else
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, max)) do
  take(id)
end
local room = max - #out / 2
if room > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, room)) do
    redis.call('ZREM', KEYS[1], id)
    take(id)
  end
end
return out
",
    )
});

/// KEYS: due, data, leases, owners. ARGV: id, owner. Returns 1 if the owner held the claim.
static TIMER_COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
",
    )
});

// Presence: the online index's score is always the latest expiry of the user's devices, and a
// user is in the index exactly while they have devices that were not disconnected or reaped.
// Membership in the index is therefore "reported online", which is what `was_online` means.

/// Shared by the presence scripts: marks the user active at ARGV now (never moving back).
const TOUCH_META: &str = r"
local function touch(meta, now, keep)
  local seen = tonumber(redis.call('HGET', meta, 'last_seen') or '0')
  if tonumber(now) > seen then redis.call('HSET', meta, 'last_seen', now) end
  redis.call('PEXPIRE', meta, keep)
end
";

/// KEYS: online, devices, meta. ARGV: user, device, now, expires_at, keep ms.
/// Returns {was_online, live devices}.
static PRESENCE_CONNECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{TOUCH_META}
local was = redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
redis.call('ZADD', KEYS[1], latest, ARGV[1])
touch(KEYS[3], ARGV[3], ARGV[5])
return {{was, redis.call('ZCARD', KEYS[2])}}
"
    ))
});

/// KEYS: online, devices, meta. ARGV: user, device, now, keep ms.
/// Returns {was_online, live devices}.
static PRESENCE_DISCONNECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{TOUCH_META}
local was = redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local left = redis.call('ZCARD', KEYS[2])
if left == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
  redis.call('ZADD', KEYS[1], latest, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if was == 1 then touch(KEYS[3], ARGV[3], ARGV[4]) end
return {{was, left}}
"
    ))
});

/// KEYS: online, then devices and meta per pair. ARGV: now, expires_at, keep ms, then user
/// and device per pair. Returns {user, device, ...} of the pairs that are not known.
static PRESENCE_REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{TOUCH_META}
local unknown = {{}}
for i = 1, (#KEYS - 1) / 2 do
  local devices, meta = KEYS[2 * i], KEYS[2 * i + 1]
  local user, device = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  if redis.call('ZSCORE', devices, device) then
    redis.call('ZADD', devices, 'GT', ARGV[2], device)
    redis.call('PEXPIRE', devices, ARGV[3])
    redis.call('ZADD', KEYS[1], 'GT', ARGV[2], user)
    touch(meta, ARGV[1], ARGV[3])
  else
    unknown[#unknown + 1] = user
    unknown[#unknown + 1] = device
  end
end
return unknown
"
    ))
});

/// KEYS: devices and meta per user. ARGV: now. Returns per user either nil (no live device
/// and no metadata) or {has_status, status, last_seen, in_call, device...}.
static PRESENCE_GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i = 1, #KEYS / 2 do
  local live = redis.call('ZRANGEBYSCORE', KEYS[2 * i - 1], '(' .. ARGV[1], '+inf')
  local meta = redis.call('HMGET', KEYS[2 * i], 'status', 'last_seen', 'in_call')
  if #live == 0 and not (meta[1] or meta[2] or meta[3]) then
    out[i] = false
  else
    local row = {meta[1] and '1' or '0', meta[1] or '', meta[2] or '0', meta[3] and '1' or '0'}
    for _, device in ipairs(live) do row[#row + 1] = device end
    out[i] = row
  end
end
return out
",
    )
});

/// KEYS: online. ARGV: now, max, devices key prefix (prefixed `{presence}:devices:`).
/// Removes lapsed devices of up to max users whose latest expiry passed; returns the users
/// left with none. The per-user keys are built here because they are only known once the
/// index is read; they share the `{presence}` slot with the index, so this stays a one-slot
/// script.
static PRESENCE_REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local gone = {}
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, user in ipairs(users) do
  local devices = ARGV[3] .. user
  redis.call('ZREMRANGEBYSCORE', devices, '-inf', ARGV[1])
  local latest = redis.call('ZRANGE', devices, -1, -1, 'WITHSCORES')[2]
  if latest then
    redis.call('ZADD', KEYS[1], latest, user)
  else
    redis.call('ZREM', KEYS[1], user)
    gone[#gone + 1] = user
  end
end
return gone
",
    )
});

// Recent-message caches: a ZSET (id → created_at; equal scores order by id, byte-wise, which
// is the `(created_at, id)` order) and its companion HASH `<key>:json` (id → json, and the
// field "" → 'whole' or 'partial'). The hash exists exactly while the cache is warm, so an
// empty conversation is a hash with only "". Both keys share a slot and get the same TTL.

/// Shared by the cache scripts: the cache's state, or nil when it is cold. The two keys are
/// written together but expire separately; a cache where they disagree (one expired a moment
/// before the other) is cold, and its leftover is deleted. ZCARD and HGET fail with
/// WRONGTYPE on a key of another kind.
const RECENT_WARM: &str = r"
local function warm(set, json)
  local n = redis.call('ZCARD', set)
  local state = redis.call('HGET', json, '')
  if state and redis.call('HLEN', json) == n + 1 then return state end
  if state or n > 0 then redis.call('DEL', set, json) end
  return nil
end
";

/// KEYS: set, json. ARGV: ttl ms, max, then id, created_at, json per entry.
/// Returns 1 if the cache was warm (and updated), 0 if cold (nothing written).
static RECENT_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RECENT_WARM}
if not warm(KEYS[1], KEYS[2]) then return 0 end
for i = 3, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if extra > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, extra - 1)) do
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
  redis.call('HSET', KEYS[2], '', 'partial')
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"
    ))
});

/// KEYS: set, json. ARGV: id, json. Returns 1 if the entry was cached and replaced.
static RECENT_UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RECENT_WARM}
if not warm(KEYS[1], KEYS[2]) then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"
    ))
});

/// KEYS: set, json. ARGV: before, after ('-' for none, '+<id>' for a cursor), limit.
/// Returns nil when cold, else {complete ('1'/'0'), id, created_at, json, ...} oldest first.
/// Ranks are 0-based, oldest first; the page is the ranks lo..hi.
static RECENT_PAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RECENT_WARM}
local state = warm(KEYS[1], KEYS[2])
if not state then return false end
local limit = tonumber(ARGV[3])
local lo, hi = 0, redis.call('ZCARD', KEYS[1]) - 1
if ARGV[1] ~= '-' then
  local r = redis.call('ZRANK', KEYS[1], string.sub(ARGV[1], 2))
  if not r then return {{'0'}} end
  hi = r - 1
end
local complete = '1'
if ARGV[2] ~= '-' then
  local r = redis.call('ZRANK', KEYS[1], string.sub(ARGV[2], 2))
  if not r then return {{'0'}} end
  lo = r + 1
  hi = math.min(hi, lo + limit - 1)
else
  lo = math.max(lo, hi - limit + 1)
  -- Short of limit: the page ran into the oldest cached entry.
  if hi - lo + 1 < limit and state ~= 'whole' then complete = '0' end
end
local out = {{complete}}
if lo <= hi then
  local ids = redis.call('ZRANGE', KEYS[1], lo, hi, 'WITHSCORES')
  for i = 1, #ids, 2 do
    local json = redis.call('HGET', KEYS[2], ids[i])
    if not json then
      redis.call('DEL', KEYS[1], KEYS[2])
      return false
    end
    out[#out + 1] = ids[i]
    out[#out + 1] = ids[i + 1]
    out[#out + 1] = json
  end
end
return out
"
    ))
});

/// The entries a fill keeps: the newest `max` of `entries` by `(created_at, id)`, oldest
/// first, one per id (the later entry wins), empty ids dropped; and whether they are all of
/// the conversation (fewer than `max` distinct entries).
pub(crate) fn newest_distinct(
    entries: &[CachedMessage],
    max: usize,
) -> (Vec<&CachedMessage>, bool) {
    let mut by_id: std::collections::HashMap<&str, &CachedMessage> = Default::default();
    for m in entries.iter().filter(|m| !m.id.is_empty()) {
        by_id.insert(&m.id, m);
    }
    let mut kept: Vec<&CachedMessage> = by_id.into_values().collect();
    kept.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let whole = kept.len() < max;
    let cut = kept.len().saturating_sub(max);
    kept.drain(..cut);
    (kept, whole)
}

/// A page cursor for the page script: `-` for none, `+<id>` for an id.
fn cursor_arg(id: Option<&str>) -> String {
    id.map_or_else(|| "-".to_owned(), |id| format!("+{id}"))
}

/// A sorted-set score that holds a millisecond time (integers below 2^53 are exact).
fn parse_score(score: &str) -> Option<Millis> {
    score
        .parse::<Millis>()
        .ok()
        .or_else(|| score.parse::<f64>().ok().map(|f| f as Millis))
}

fn ms_arg(ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, ttl_ms)
}

#[async_trait]
impl StateStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> StoreResult<Duration> {
        let started = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        Ok(started.elapsed())
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        let (version, value): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key(key))
            .arg("v")
            .arg("d")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        match (version, value) {
            (None, _) => Ok(None),
            (Some(v), Some(value)) => Ok(Some(Versioned {
                value,
                version: v
                    .parse()
                    .map_err(|_| corrupt(format!("{key}: version {v:?}")))?,
            })),
            (Some(_), None) => Err(corrupt(format!("{key}: record without data"))),
        }
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<CasOutcome> {
        let version: i64 = CAS
            .key(self.key(key))
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(value)
            .arg(ms_arg(ttl))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        Ok(match u64::try_from(version) {
            Ok(version) => CasOutcome::Written { version },
            Err(_) => CasOutcome::Conflict,
        })
    }

    async fn compare_and_delete(&self, key: &str, expected: u64) -> StoreResult<bool> {
        CAS_DELETE
            .key(self.key(key))
            .arg(expected.to_string())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn index_add(
        &self,
        key: &str,
        members: &[String],
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !members.is_empty() {
            pipe.cmd("SADD").arg(&key).arg(members).ignore();
        }
        if let Some(ttl) = ttl {
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms(ttl)).ignore();
        }
        if members.is_empty() && ttl.is_none() {
            return Ok(());
        }
        pipe.query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn index_remove(&self, key: &str, members: &[String]) -> StoreResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        redis::cmd("SREM")
            .arg(self.key(key))
            .arg(members)
            .exec_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn index_members(&self, key: &str) -> StoreResult<Vec<String>> {
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key(key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        members.sort();
        Ok(members)
    }

    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>> {
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn cache_set(&self, key: &str, value: &str, ttl: Duration) -> StoreResult<()> {
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .exec_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn cache_set_members(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
    ) -> StoreResult<()> {
        // A Redis set cannot be empty, so the empty member marks "cached": a cached empty
        // set is {""}, a miss is no key at all. Ids are never empty.
        let key = self.key(key);
        let members: Vec<&str> = std::iter::once("")
            .chain(members.iter().map(String::as_str).filter(|m| !m.is_empty()))
            .collect();
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .cmd("SADD")
            .arg(&key)
            .arg(&members)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(ttl))
            .ignore()
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn cache_get_members(&self, key: &str) -> StoreResult<Option<Vec<String>>> {
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key(key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        if members.is_empty() {
            return Ok(None);
        }
        members.retain(|m| !m.is_empty());
        members.sort();
        Ok(Some(members))
    }

    async fn cache_invalidate(&self, keys: &[String]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        // One DEL per key rather than one multi-key DEL: the keys may live in different
        // cluster slots. Pipelined, it is still one round trip. Each key's recent-message
        // companion goes too (a recent-message cache is two keys; for other keys the
        // companion does not exist and the DEL costs nothing).
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("DEL").arg(self.key(key)).ignore();
            pipe.cmd("DEL")
                .arg(self.key(&keys::recent_json(key)))
                .ignore();
        }
        pipe.query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn counter_add(&self, key: &str, field: &str, delta: i64) -> StoreResult<i64> {
        COUNTER_ADD
            .key(self.key(key))
            .arg(field)
            .arg(delta)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn counters(&self, key: &str) -> StoreResult<Vec<(String, i64)>> {
        let fields: BTreeMap<String, i64> = redis::cmd("HGETALL")
            .arg(self.key(key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        Ok(fields.into_iter().filter(|(_, v)| *v != 0).collect())
    }

    async fn counter_reset(&self, key: &str, field: &str) -> StoreResult<()> {
        redis::cmd("HDEL")
            .arg(self.key(key))
            .arg(field)
            .exec_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn counters_add_many(&self, updates: &[(String, String, i64)]) -> StoreResult<Vec<i64>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        // One pipeline, not one script: the keys may live in different cluster slots (one
        // per user). Each increment is the atomic COUNTER_ADD script; the batch is not a
        // transaction. Loading the script first in the same pipeline makes EVALSHA safe
        // after a Redis restart or SCRIPT FLUSH.
        let mut pipe = redis::pipe();
        pipe.load_script(&COUNTER_ADD).ignore();
        let invocations: Vec<_> = updates
            .iter()
            .map(|(key, field, delta)| {
                let mut inv = COUNTER_ADD.prepare_invoke();
                inv.key(self.key(key)).arg(field).arg(*delta);
                inv
            })
            .collect();
        for inv in &invocations {
            pipe.invoke_script(inv);
        }
        let values: Vec<i64> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        if values.len() != updates.len() {
            return Err(corrupt("counters_add_many: one value per update expected"));
        }
        Ok(values)
    }

    async fn recent_fill(
        &self,
        key: &str,
        entries: &[CachedMessage],
        max: usize,
        ttl: Duration,
    ) -> StoreResult<()> {
        let (kept, whole) = newest_distinct(entries, max);
        let (set, json) = (self.key(key), self.key(&keys::recent_json(key)));
        let ttl = ttl_ms(ttl);
        // Nothing depends on what is read: one MULTI block replaces both keys.
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(&set).arg(&json).ignore();
        let hset = pipe
            .cmd("HSET")
            .arg(&json)
            .arg("")
            .arg(if whole { "whole" } else { "partial" });
        for m in &kept {
            hset.arg(&m.id).arg(&m.json);
        }
        hset.ignore();
        if !kept.is_empty() {
            let zadd = pipe.cmd("ZADD").arg(&set);
            for m in &kept {
                zadd.arg(m.created_at).arg(&m.id);
            }
            zadd.ignore();
            pipe.cmd("PEXPIRE").arg(&set).arg(ttl).ignore();
        }
        pipe.cmd("PEXPIRE").arg(&json).arg(ttl).ignore();
        pipe.query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn recent_add(
        &self,
        key: &str,
        entries: &[CachedMessage],
        max: usize,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let mut inv = RECENT_ADD.key(self.key(key));
        inv.key(self.key(&keys::recent_json(key)))
            .arg(ttl_ms(ttl))
            .arg(max);
        for m in entries.iter().filter(|m| !m.id.is_empty()) {
            inv.arg(&m.id).arg(m.created_at).arg(&m.json);
        }
        inv.invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn recent_update(&self, key: &str, id: &str, json: &str) -> StoreResult<bool> {
        RECENT_UPDATE
            .key(self.key(key))
            .key(self.key(&keys::recent_json(key)))
            .arg(id)
            .arg(json)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn recent_page(
        &self,
        key: &str,
        before: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Option<RecentPage>> {
        // A cache never holds 2^31 entries: the cap keeps Lua's arithmetic exact.
        let limit = limit.min(1 << 31);
        let reply: Option<Vec<String>> = RECENT_PAGE
            .key(self.key(key))
            .key(self.key(&keys::recent_json(key)))
            .arg(cursor_arg(before))
            .arg(cursor_arg(after))
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        let Some(reply) = reply else { return Ok(None) };
        let Some((complete, rows)) = reply.split_first() else {
            return Err(corrupt(format!("{key}: empty page reply")));
        };
        if rows.len() % 3 != 0 {
            return Err(corrupt(format!("{key}: short page row")));
        }
        let entries = rows
            .chunks_exact(3)
            .map(|row| {
                Ok(CachedMessage {
                    id: row[0].clone(),
                    created_at: parse_score(&row[1])
                        .ok_or_else(|| corrupt(format!("{key}: score {:?}", row[1])))?,
                    json: row[2].clone(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(RecentPage {
            entries,
            complete: complete == "1",
        }))
    }

    async fn log_push(
        &self,
        key: &str,
        entry: &str,
        max: usize,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if max == 0 {
            // LTRIM 0 -1 would keep everything: a log of at most nothing is no log.
            pipe.cmd("DEL").arg(&key).ignore();
        } else {
            pipe.cmd("LPUSH").arg(&key).arg(entry).ignore();
            pipe.cmd("LTRIM").arg(&key).arg(0).arg(max - 1).ignore();
            if let Some(ttl) = ttl {
                pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms(ttl)).ignore();
            }
        }
        pipe.query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn log_range(&self, key: &str, limit: usize) -> StoreResult<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        redis::cmd("LRANGE")
            .arg(self.key(key))
            .arg(0)
            .arg(limit - 1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn rate_limit_hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        // Hits are members of a sorted set, so two hits in the same millisecond (from two
        // instances, say) must still be distinct members.
        let member = format!("{now}-{}", uuid::Uuid::new_v4().simple());
        let (allowed, remaining, retry_after_ms): (i64, i64, i64) = RATE_LIMIT
            .key(self.key(key))
            .arg(now)
            .arg(ttl_ms(window))
            .arg(limit)
            .arg(member)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        Ok(RateDecision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).map_err(corrupt)?,
            retry_after_ms: u64::try_from(retry_after_ms).map_err(corrupt)?,
        })
    }

    async fn timer_schedule(&self, timer: &Timer) -> StoreResult<()> {
        let data = serde_json::to_string(&TimerData {
            kind: timer.kind.clone(),
            payload: timer.payload.clone(),
            due_at: timer.due_at,
        })
        .map_err(corrupt)?;
        self.timer_script(&TIMER_SCHEDULE)
            .arg(&timer.id)
            .arg(timer.due_at)
            .arg(data)
            .invoke_async::<()>(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn timer_cancel(&self, id: &str) -> StoreResult<bool> {
        self.timer_script(&TIMER_CANCEL)
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn timers_claim_due(
        &self,
        now: Millis,
        max: usize,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let flat: Vec<String> = self
            .timer_script(&TIMERS_CLAIM)
            .arg(now)
            .arg(max)
            .arg(owner)
            .arg(now.saturating_add(ttl_ms(lease)))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        let mut timers = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let (id, data) = (&pair[0], &pair[1]);
            match serde_json::from_str::<TimerData>(data) {
                Ok(d) => timers.push(Timer {
                    id: id.clone(),
                    kind: d.kind,
                    payload: d.payload,
                    due_at: d.due_at,
                }),
                Err(e) => {
                    // One unreadable timer must not stall the queue: drop it (it would be
                    // handed out again at every lease otherwise).
                    tracing::error!(timer_id = %id, error = %e, "dropping unreadable timer");
                    let _ = self.timer_complete(id, owner).await;
                }
            }
        }
        Ok(timers)
    }

    async fn timer_complete(&self, id: &str, owner: &str) -> StoreResult<bool> {
        self.timer_script(&TIMER_COMPLETE)
            .arg(id)
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }

    async fn presence_connect(
        &self,
        user_id: &str,
        device_id: &str,
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<PresenceChange> {
        let (was, devices): (i64, u32) = PRESENCE_CONNECT
            .key(self.key(keys::PRESENCE_ONLINE))
            .key(self.key(&keys::presence_devices(user_id)))
            .key(self.key(&keys::presence_user(user_id)))
            .arg(user_id)
            .arg(device_id)
            .arg(now)
            .arg(now.saturating_add(ttl_ms(ttl)))
            .arg(ttl_ms(PRESENCE_RETENTION))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        Ok(PresenceChange {
            was_online: was == 1,
            devices,
        })
    }

    async fn presence_disconnect(
        &self,
        user_id: &str,
        device_id: &str,
        now: Millis,
    ) -> StoreResult<PresenceChange> {
        let (was, devices): (i64, u32) = PRESENCE_DISCONNECT
            .key(self.key(keys::PRESENCE_ONLINE))
            .key(self.key(&keys::presence_devices(user_id)))
            .key(self.key(&keys::presence_user(user_id)))
            .arg(user_id)
            .arg(device_id)
            .arg(now)
            .arg(ttl_ms(PRESENCE_RETENTION))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        Ok(PresenceChange {
            was_online: was == 1,
            devices,
        })
    }

    async fn presence_refresh(
        &self,
        devices: &[(String, String)],
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<Vec<(String, String)>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = PRESENCE_REFRESH.key(self.key(keys::PRESENCE_ONLINE));
        inv.arg(now)
            .arg(now.saturating_add(ttl_ms(ttl)))
            .arg(ttl_ms(PRESENCE_RETENTION));
        for (user_id, device_id) in devices {
            inv.key(self.key(&keys::presence_devices(user_id)))
                .key(self.key(&keys::presence_user(user_id)))
                .arg(user_id)
                .arg(device_id);
        }
        let flat: Vec<String> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        Ok(flat
            .chunks_exact(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect())
    }

    async fn presence_set_status(
        &self,
        user_id: &str,
        status: &str,
    ) -> StoreResult<Option<String>> {
        let key = self.key(&keys::presence_user(user_id));
        // MULTI runs the read and the write back to back: nothing can slip in between.
        let (previous,): (Option<String>,) = redis::pipe()
            .atomic()
            .cmd("HGET")
            .arg(&key)
            .arg("status")
            .cmd("HSET")
            .arg(&key)
            .arg("status")
            .arg(status)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(PRESENCE_RETENTION))
            .ignore()
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        Ok(previous)
    }

    async fn presence_set_in_call(&self, user_id: &str, in_call: bool) -> StoreResult<bool> {
        let key = self.key(&keys::presence_user(user_id));
        // The field is present ("1") exactly while the flag is set, so HSET answers 1 (field
        // created) and HDEL answers 1 (field removed) exactly when the flag changes.
        let changed: i64 = if in_call {
            let (created,): (i64,) = redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&key)
                .arg("in_call")
                .arg("1")
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl_ms(PRESENCE_RETENTION))
                .ignore()
                .query_async(&mut self.conn.clone())
                .await
                .map_err(map_err)?;
            created
        } else {
            redis::cmd("HDEL")
                .arg(&key)
                .arg("in_call")
                .query_async(&mut self.conn.clone())
                .await
                .map_err(map_err)?
        };
        Ok(changed == 1)
    }

    async fn presence_get(
        &self,
        user_ids: &[String],
        now: Millis,
    ) -> StoreResult<Vec<Option<PresenceEntry>>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = PRESENCE_GET.arg(now);
        for user_id in user_ids {
            inv.key(self.key(&keys::presence_devices(user_id)))
                .key(self.key(&keys::presence_user(user_id)));
        }
        let rows: Vec<Option<Vec<String>>> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        if rows.len() != user_ids.len() {
            return Err(corrupt("presence_get: one row per user expected"));
        }
        user_ids
            .iter()
            .zip(rows)
            .map(|(user_id, row)| {
                let Some(row) = row else { return Ok(None) };
                let [has_status, status, last_seen, in_call, devices @ ..] = row.as_slice() else {
                    return Err(corrupt(format!("presence of {user_id}: short row")));
                };
                let mut devices = devices.to_vec();
                devices.sort();
                Ok(Some(PresenceEntry {
                    user_id: user_id.clone(),
                    devices,
                    status: (has_status == "1").then(|| status.clone()),
                    last_seen: last_seen.parse().map_err(|_| {
                        corrupt(format!("presence of {user_id}: last_seen {last_seen:?}"))
                    })?,
                    in_call: in_call == "1",
                }))
            })
            .collect()
    }

    async fn presence_online_users(&self, now: Millis) -> StoreResult<Vec<String>> {
        let mut users: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(keys::PRESENCE_ONLINE))
            .arg(format!("({now}"))
            .arg("+inf")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        users.sort();
        Ok(users)
    }

    async fn presence_reap_expired(&self, now: Millis, max: usize) -> StoreResult<Vec<String>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        PRESENCE_REAP
            .key(self.key(keys::PRESENCE_ONLINE))
            .arg(now)
            .arg(max)
            .arg(self.key(keys::PRESENCE_DEVICES_PREFIX))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("sb:"), "sb:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn type_errors_are_corrupt_and_transport_errors_unavailable() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(map_err(io), StoreError::Unavailable(_)));
        let parse = RedisError::from((ErrorKind::UnexpectedReturnType, "not a number"));
        assert!(matches!(map_err(parse), StoreError::Corrupt(_)));
    }
}
