-- Messages of the same millisecond are ordered by id, byte by byte, everywhere: in history
-- pages from the database and in the state store's recent-message cache (a Redis sorted set
-- breaks score ties by member bytes). SQLite's default BINARY collation already compares
-- bytes; only the index changes.
DROP INDEX messages_conversation_time;
CREATE INDEX messages_conversation_time ON messages (conversation_id, created_at, id);
