//! The logical key layout, shared by both backends and documented in `docs/redis-keys.md`.
//!
//! A logical key is what the services pass to [`StateStore`](crate::StateStore) methods; the
//! Redis backend prepends its configured prefix (e.g. `sb:`), the memory backend uses it as
//! is. Keys take their names from the seeds where one fits (`user:{userId}:friends`,
//! `rate_limit:{userId}:{action}`, `notifications:{userId}`, ...).
//!
//! # Hash tags
//!
//! Every key carries a Redis Cluster hash tag (the part between the first `{` and the next
//! `}`), so that the keys one operation touches always share a slot, and the keys of one
//! entity live together:
//!
//! | tag | holds |
//! |---|---|
//! | `{u:<userId>}` | everything that belongs to one user (calls index, friends, unread, rate limits, sessions, logs) |
//! | `{c:<conversationId>}` | one conversation's cached metadata and recent messages |
//! | `{call:<callId>}` | one call's records |
//! | `{r:<roomId>}` | one room's record (§6) |
//! | `{rooms}` | the index of live rooms |
//! | `{convcalls}` | the index of live conversation calls (§7) |
//! | `{timers}` | the four keys of the deadline queue (one Lua script touches all of them) |
//! | `{presence}` | all presence keys: per-user devices and metadata, and the global online index |
//!
//! Presence is one slot on purpose: connecting, disconnecting and reaping must update a
//! user's devices *and* the global online index atomically (that is what makes "each user
//! goes offline exactly once" hold with concurrent reapers), and a Lua script may only touch
//! one slot. The price is that presence traffic is served by one cluster node; see
//! `docs/redis-keys.md` for the numbers and the alternative.
//!
//! Ids are used verbatim. They are UUIDs or validated names in practice (protocol §11); an
//! id containing `}` would still produce consistent keys for the same entity, only its slot
//! would be shared with another entity.

/// Tag for a user's keys.
fn u(user_id: &str) -> String {
    format!("{{u:{user_id}}}")
}

/// Tag for a conversation's keys.
fn c(conversation_id: &str) -> String {
    format!("{{c:{conversation_id}}}")
}

/// Tag for a room's keys.
fn r(room_id: &str) -> String {
    format!("{{r:{room_id}}}")
}

/// Tag for a call's keys.
fn call(call_id: &str) -> String {
    format!("{{call:{call_id}}}")
}

// --- Versioned records ------------------------------------------------------------------

/// A pending call request (ringing), TTL about 60 s. Seed 000: `call:{callerId}:{calleeId}`.
pub fn call_request(call_id: &str) -> String {
    format!("call:{}:request", call(call_id))
}

/// An accepted (active or connected) call. Seed 000: `call:active:{callId}`.
pub fn active_call(call_id: &str) -> String {
    format!("call:{}:active", call(call_id))
}

/// The call a user currently takes part in. Seed 000: `user:{userId}:current_call`.
pub fn current_call(user_id: &str) -> String {
    format!("user:{}:current_call", u(user_id))
}

/// A room (protocol §6): the wire room plus devices, reconnecting participants, pending
/// invitations and call milestones. No TTL while live; kept for an hour once ended.
pub fn room(room_id: &str) -> String {
    format!("room:{}", r(room_id))
}

/// A conversation call (protocol §7): the wire session, who attends from which device,
/// relayed ICE directions, how it ended. No TTL while live; kept for an hour once ended.
pub fn conversation_call(call_id: &str) -> String {
    format!("convcall:{}", call(call_id))
}

/// The live call of a conversation, `{callId}`: claimed with compare-and-set, so a
/// conversation has at most one live call across instances (`CALL_ALREADY_ACTIVE`).
pub fn conversation_live_call(conversation_id: &str) -> String {
    format!("convcall:{}:live", c(conversation_id))
}

/// One device's session (seed 001: `session:{userId}:{deviceId}`, TTL 1 h).
pub fn session(user_id: &str, device_id: &str) -> String {
    format!("session:{}:{device_id}", u(user_id))
}

// --- Indexes ----------------------------------------------------------------------------

/// The calls (requests and active) a user takes part in, so that a disconnect can find them.
pub fn user_calls(user_id: &str) -> String {
    format!("user:{}:calls", u(user_id))
}

/// The ids of every live room (for `getRooms`, `roomListUpdated`, `GET /api/rooms`).
pub fn live_rooms() -> String {
    "rooms:{rooms}:live".to_string()
}

/// The conversation calls a user (or guest) attends, so that a disconnect finds them.
pub fn user_conversation_calls(user_id: &str) -> String {
    format!("user:{}:convcalls", u(user_id))
}

/// The ids of every live conversation call, for the zombie sweep.
pub fn live_conversation_calls() -> String {
    "convcalls:{convcalls}:live".to_string()
}

/// The device ids with a session (seed 001: `sessions:{userId}`).
pub fn sessions(user_id: &str) -> String {
    format!("sessions:{}", u(user_id))
}

/// Every user with a device session, for the periodic sweep of expired sessions.
pub fn session_users() -> String {
    "sessions:{users}".to_string()
}

/// The conversations a user deleted on their side (seed 003: `deleted:{userId}`).
pub fn deleted_conversations(user_id: &str) -> String {
    format!("deleted:{}", u(user_id))
}

// --- Caches -----------------------------------------------------------------------------

/// A user's friend ids copied from the database, TTL 2 h. The issue's
/// `user:{userId}:friends`; the braces double as the hash tag.
pub fn friends(user_id: &str) -> String {
    format!("user:{}:friends", u(user_id))
}

/// A conversation's metadata copied from the database, TTL 24 h (seed 003: `chat:{id}`).
pub fn conversation(conversation_id: &str) -> String {
    format!("conversation:{}", c(conversation_id))
}

// --- Counters ---------------------------------------------------------------------------

/// A user's unread counts, one field per conversation. Seed 003 kept one string per
/// `unread:{userId}:{chatId}`; one hash per user reads all counts in one command.
pub fn unread(user_id: &str) -> String {
    format!("unread:{}", u(user_id))
}

/// Sends of a conversation between their database commit and their recent-cache add: one
/// field per send, valued with the time after which its writer is presumed dead. While a
/// field is live the cache may lack a committed message, so history reads the database.
pub fn messages_in_flight(conversation_id: &str) -> String {
    format!("messages_in_flight:{}", c(conversation_id))
}

// --- Recent-message caches -------------------------------------------------------------

/// A conversation's recent-message cache: its newest messages, ordered by
/// `(created_at, id)` (seed 003: `messages:{chatId}`, sorted set of the last 100, TTL 2 h).
/// On Redis it is this sorted set plus the hash [`recent_json`] of the same slot.
pub fn messages(conversation_id: &str) -> String {
    format!("messages:{}", c(conversation_id))
}

/// The companion of a recent-message cache key (used by the backends only): message id →
/// json, plus the field `""` holding the cache's state (`whole` or `partial`). It exists
/// exactly while the cache is warm. It shares the cache key's hash tag, so the key's slot.
pub fn recent_json(cache_key: &str) -> String {
    format!("{cache_key}:json")
}

// --- Capped logs ------------------------------------------------------------------------

/// A user's recent notifications, newest first (seed 001: `notifications:{userId}`, max 100).
pub fn notifications(user_id: &str) -> String {
    format!("notifications:{}", u(user_id))
}

/// A user's security events (logins, new devices), newest first (seed 001: max 100).
pub fn security_log(user_id: &str) -> String {
    format!("security_log:{}", u(user_id))
}

// --- Rate limits ------------------------------------------------------------------------

/// The hits of one user on one action (seed 001: `rate_limit:{userId}:{action}`).
pub fn rate_limit(user_id: &str, action: &str) -> String {
    format!("rate_limit:{}:{action}", u(user_id))
}

// --- Deadline queue (used by the backends only) -----------------------------------------

/// Pending timers: id → due time (ms).
pub const TIMERS_DUE: &str = "{timers}:due";
/// Every timer's data: id → JSON `{kind, payload, due_at}`.
pub const TIMERS_DATA: &str = "{timers}:data";
/// Claimed timers: id → lease expiry (ms).
pub const TIMERS_LEASES: &str = "{timers}:leases";
/// Claimed timers: id → owner.
pub const TIMERS_OWNERS: &str = "{timers}:owners";

// --- Presence (used by the backends only) -----------------------------------------------

/// The global online index: user id → the latest expiry of the user's devices (ms).
pub const PRESENCE_ONLINE: &str = "{presence}:online";
/// Prefix of [`presence_devices`]; the reaper script appends user ids to it.
pub const PRESENCE_DEVICES_PREFIX: &str = "{presence}:devices:";
/// Prefix of [`presence_user`].
pub const PRESENCE_USER_PREFIX: &str = "{presence}:user:";

/// A user's devices: device id → liveness expiry (ms).
pub fn presence_devices(user_id: &str) -> String {
    format!("{PRESENCE_DEVICES_PREFIX}{user_id}")
}

/// A user's presence metadata: `status` (user-set) and `last_seen` (ms).
pub fn presence_user(user_id: &str) -> String {
    format!("{PRESENCE_USER_PREFIX}{user_id}")
}

/// The hash tag of a key: what Redis Cluster hashes to pick the slot.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_user_share_a_slot() {
        let tags = [
            friends("42"),
            user_calls("42"),
            unread("42"),
            rate_limit("42", "send_message"),
            session("42", "phone"),
            sessions("42"),
            notifications("42"),
            security_log("42"),
            current_call("42"),
            deleted_conversations("42"),
            user_conversation_calls("42"),
        ]
        .map(|k| hash_tag(&k).to_owned());
        assert!(tags.iter().all(|t| t == "u:42"), "{tags:?}");
        assert_eq!(friends("42"), "user:{u:42}:friends");
    }

    #[test]
    fn queue_and_presence_keys_each_share_one_slot() {
        for k in [TIMERS_DUE, TIMERS_DATA, TIMERS_LEASES, TIMERS_OWNERS] {
            assert_eq!(hash_tag(k), "timers");
        }
        for k in [
            PRESENCE_ONLINE.to_owned(),
            presence_devices("a"),
            presence_user("b"),
        ] {
            assert_eq!(hash_tag(&k), "presence");
        }
    }

    #[test]
    fn hash_tag_follows_redis_rules() {
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("a{}b"), "a{}b");
        assert_eq!(hash_tag("a{x}{y}"), "x");
        assert_eq!(hash_tag(&call_request("c1")), "call:c1");
        assert_eq!(hash_tag(&messages("c1")), "c:c1");
        assert_eq!(hash_tag(&room("r1")), "r:r1");
        assert_eq!(hash_tag(&live_rooms()), "rooms");
        assert_eq!(hash_tag(&conversation_call("k1")), "call:k1");
        assert_eq!(hash_tag(&conversation_live_call("c1")), "c:c1");
        assert_eq!(hash_tag(&live_conversation_calls()), "convcalls");
        assert_eq!(hash_tag(&recent_json(&messages("c1"))), "c:c1");
    }
}
