-- Switchboard schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql: same
-- tables, columns, constraints and indexes; only the column types differ (SQLite has no
-- identity columns, and INTEGER PRIMARY KEY is its rowid alias).
--
-- Conventions: ids are TEXT, timestamps are BIGINT milliseconds since the Unix epoch,
-- flags are BOOLEAN (stored as 0/1), JSON is TEXT. User ids are external identities (the
-- JWT `sub`), so nothing has a foreign key to `users`: that table is a directory of names.

CREATE TABLE users (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Friendship is mutual, so it is stored symmetrically: one row per direction.
CREATE TABLE friendships (
    user_id     TEXT NOT NULL,
    friend_id   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id),
    CHECK (user_id <> friend_id)
);
CREATE INDEX friendships_friend ON friendships (friend_id);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    name        TEXT,
    created_by  TEXT NOT NULL,
    -- Set for direct conversations only: the unique key that makes a pair's conversation
    -- unique even when both users create it at the same moment.
    direct_key  TEXT UNIQUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE conversation_members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    joined_at       BIGINT NOT NULL,
    last_read_at    BIGINT,
    -- Per-user "delete conversation": hides it, and older messages, from this user only.
    deleted_at      BIGINT,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

CREATE TABLE messages (
    -- Insertion order; breaks ties between messages of the same millisecond.
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id         TEXT NOT NULL,
    content           TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    edited_at         BIGINT,
    deleted_at        BIGINT,
    reply_to_id       TEXT,
    client_message_id TEXT,
    -- Idempotent sends: NULLs are distinct, so messages without a client id never clash.
    UNIQUE (sender_id, client_message_id)
);
CREATE INDEX messages_conversation_time ON messages (conversation_id, created_at, seq);

CREATE TABLE message_reactions (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);

CREATE TABLE call_sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('direct', 'room', 'conversation')),
    conversation_id TEXT,
    room_id         TEXT,
    media_type      TEXT NOT NULL CHECK (media_type IN ('audio', 'video')),
    mode            TEXT NOT NULL CHECK (mode IN ('p2p', 'sfu')),
    status          TEXT NOT NULL CHECK (status IN ('initiated', 'ringing', 'active', 'ended')),
    initiator_id    TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    answered_at     BIGINT,
    connected_at    BIGINT,
    ended_at        BIGINT,
    duration_secs   BIGINT,
    outcome         TEXT CHECK (outcome IN ('completed', 'missed', 'rejected', 'cancelled', 'failed')),
    end_reason      TEXT,
    ended_by        TEXT,
    metadata        TEXT
);
CREATE INDEX call_sessions_conversation ON call_sessions (conversation_id, started_at);
CREATE INDEX call_sessions_unfinished ON call_sessions (started_at) WHERE status <> 'ended';

CREATE TABLE call_participants (
    id                 TEXT PRIMARY KEY NOT NULL,
    call_id            TEXT NOT NULL REFERENCES call_sessions (id) ON DELETE CASCADE,
    user_id            TEXT,
    anonymous_id       TEXT,
    role               TEXT NOT NULL CHECK (role IN ('initiator', 'participant')),
    joined_at          BIGINT NOT NULL,
    left_at            BIGINT,
    audio_enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    video_enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    connection_quality TEXT,
    CHECK ((user_id IS NULL) <> (anonymous_id IS NULL))
);
CREATE INDEX call_participants_call ON call_participants (call_id, joined_at);

-- Whose call history shows a call: the initiator, everyone rung or invited (so a missed
-- call shows for the callee, who never joined) and every user who joined. `started_at` is
-- copied from the session so that a user's history is one index range scan.
CREATE TABLE call_parties (
    user_id     TEXT NOT NULL,
    call_id     TEXT NOT NULL REFERENCES call_sessions (id) ON DELETE CASCADE,
    started_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, call_id)
);
CREATE INDEX call_parties_user_time ON call_parties (user_id, started_at, call_id);

CREATE TABLE notifications (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    data        TEXT NOT NULL DEFAULT '{}',
    priority    TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('normal', 'high')),
    created_at  BIGINT NOT NULL,
    read_at     BIGINT
);
CREATE INDEX notifications_user_time ON notifications (user_id, created_at, id);

CREATE TABLE webhook_dead_letters (
    id          TEXT PRIMARY KEY NOT NULL,
    url         TEXT NOT NULL,
    body        TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    last_error  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX webhook_dead_letters_time ON webhook_dead_letters (created_at, id);
