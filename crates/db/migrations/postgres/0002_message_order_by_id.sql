-- Messages of the same millisecond are ordered by id, byte by byte, everywhere: in history
-- pages from the database and in the state store's recent-message cache (a Redis sorted set
-- breaks score ties by member bytes). Insertion order (seq) cannot be used for that: two
-- instances commit concurrently, and the cache never sees seq. The "C" collation makes
-- PostgreSQL compare ids as bytes whatever the database's locale.
ALTER TABLE message_reactions ALTER COLUMN message_id TYPE TEXT COLLATE "C";
ALTER TABLE messages ALTER COLUMN id TYPE TEXT COLLATE "C";
DROP INDEX messages_conversation_time;
CREATE INDEX messages_conversation_time ON messages (conversation_id, created_at, id);
