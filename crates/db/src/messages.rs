//! Messages and reactions.
//!
//! Order: messages sort by `(created_at, id)`, ids compared byte by byte (PostgreSQL's
//! `COLLATE "C"`, SQLite's BINARY). That is the state store's recent-cache order too, so a
//! history walk that crosses from the cache into the database never skips or repeats a
//! message of the same millisecond, even when two instances commit concurrently (the
//! insertion sequence `seq` would order them differently than the cache). Cursors are
//! message ids, resolved to that pair.
//!
//! Idempotency: `UNIQUE(sender_id, client_message_id)` plus `ON CONFLICT DO NOTHING`. A
//! repeated client id, in the same batch, a later batch or a concurrent one, returns the
//! first message instead of inserting; the key spans all conversations, as the protocol
//! says "the same clientMessageId from the same sender never creates two messages".

use std::collections::HashMap;

use switchboard_domain::Millis;

use crate::error::{DbError, Result};
use crate::types::{InsertedMessage, Message, NewMessage, Reaction, ReplyPreview};
use crate::{Db, IN_CHUNK, page_limit};

#[derive(sqlx::FromRow)]
struct RawMessage {
    id: String,
    conversation_id: String,
    sender_id: String,
    sender_name: Option<String>,
    content: String,
    created_at: i64,
    edited_at: Option<i64>,
    deleted_at: Option<i64>,
    client_message_id: Option<String>,
    reply_to_id: Option<String>,
    reply_sender_id: Option<String>,
    reply_sender_name: Option<String>,
    reply_content: Option<String>,
    reply_deleted_at: Option<i64>,
}

impl RawMessage {
    fn into_message(self, reactions: Vec<Reaction>) -> Message {
        let reply_to = match (self.reply_to_id, self.reply_sender_id, self.reply_content) {
            (Some(id), Some(sender_id), Some(content)) => Some(ReplyPreview {
                id,
                sender_id,
                sender_name: self.reply_sender_name,
                content,
                deleted: self.reply_deleted_at.is_some(),
            }),
            _ => None,
        };
        Message {
            id: self.id,
            conversation_id: self.conversation_id,
            sender_id: self.sender_id,
            sender_name: self.sender_name,
            content: self.content,
            created_at: self.created_at,
            edited_at: self.edited_at,
            deleted_at: self.deleted_at,
            reply_to,
            client_message_id: self.client_message_id,
            reactions,
        }
    }
}

/// Everything a [`Message`] needs in one row: the sender's name and the reply preview come
/// from joins. Callers append `WHERE …`; `concat!` keeps the SQL a `&'static str`.
macro_rules! message_select {
    () => {
        "SELECT m.id, m.conversation_id, m.sender_id, su.name AS sender_name, m.content, \
           m.created_at, m.edited_at, m.deleted_at, m.client_message_id, m.reply_to_id, \
           r.sender_id AS reply_sender_id, ru.name AS reply_sender_name, \
           r.content AS reply_content, r.deleted_at AS reply_deleted_at \
         FROM messages m \
         LEFT JOIN users su ON su.id = m.sender_id \
         LEFT JOIN messages r ON r.id = m.reply_to_id \
         LEFT JOIN users ru ON ru.id = r.sender_id "
    };
}

/// Window bounds of a history page: strictly after `(after_at, after_id)` and strictly
/// before `(before_at, before_id)`. The plain range on `created_at` is redundant with the
/// tuple comparisons but lets the planner range-scan the `(conversation_id, created_at,
/// id)` index.
macro_rules! history_where {
    () => {
        "WHERE m.conversation_id = $1 AND m.created_at > $2 \
           AND m.created_at >= $3 AND (m.created_at > $3 OR m.id > $4) \
           AND m.created_at <= $5 AND (m.created_at < $5 OR m.id < $6) "
    };
}

impl Db {
    /// Stores a batch of messages in ONE transaction (group commit: one durable write for
    /// many sends) and returns one result per input, in input order. A message whose
    /// `(sender_id, client_message_id)` was used before is not inserted; its result is the
    /// earlier message with `duplicate: true`. A `reply_to_id` that is not a message of the
    /// same conversation is dropped rather than failing the batch; validate it up front to
    /// answer NOT_FOUND. The conversations must exist ([`DbError::NotFound`] fails the batch).
    #[tracing::instrument(level = "debug", skip_all, fields(batch = batch.len()))]
    pub async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<InsertedMessage>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let stored: Vec<(String, bool)> = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let mut stored = Vec::with_capacity(batch.len());
            for m in batch {
                let reply_to: Option<String> = match &m.reply_to_id {
                    None => None,
                    Some(reply_id) => {
                        sqlx::query_scalar(
                            "SELECT id FROM messages WHERE id = $1 AND conversation_id = $2",
                        )
                        .bind(reply_id)
                        .bind(&m.conversation_id)
                        .fetch_optional(&mut *tx)
                        .await?
                    }
                };
                let inserted: Option<String> = sqlx::query_scalar(
                    "INSERT INTO messages \
                       (id, conversation_id, sender_id, content, created_at, reply_to_id, client_message_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (sender_id, client_message_id) DO NOTHING RETURNING id",
                )
                .bind(&m.id)
                .bind(&m.conversation_id)
                .bind(&m.sender_id)
                .bind(&m.content)
                .bind(m.created_at)
                .bind(reply_to)
                .bind(&m.client_message_id)
                .fetch_optional(&mut *tx)
                .await?;
                match inserted {
                    Some(id) => stored.push((id, false)),
                    None => {
                        // Only the client-id key has DO NOTHING, so the earlier row exists
                        // (and on PostgreSQL is committed: the insert waited for it).
                        let id: String = sqlx::query_scalar(
                            "SELECT id FROM messages WHERE sender_id = $1 AND client_message_id = $2",
                        )
                        .bind(&m.sender_id)
                        .bind(&m.client_message_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        stored.push((id, true));
                    }
                }
            }
            tx.commit().await?;
            stored
        });
        let ids: Vec<String> = stored.iter().map(|(id, _)| id.clone()).collect();
        let messages = self.load_messages(&ids).await?;
        stored
            .into_iter()
            .map(|(id, duplicate)| {
                // Several inputs may resolve to one message (duplicates in the batch).
                let message = messages.get(&id).cloned().ok_or_else(|| {
                    DbError::Corrupt(format!("message {id} vanished after insert"))
                })?;
                Ok(InsertedMessage { message, duplicate })
            })
            .collect()
    }

    /// One message, with reactions.
    pub async fn get_message(&self, id: &str) -> Result<Option<Message>> {
        Ok(self.load_messages(&[id.to_owned()]).await?.remove(id))
    }

    /// A page of a conversation's history, always in ascending time order, and whether more
    /// messages lie beyond the page:
    /// - no cursor: the newest `limit` messages; `has_more` = older ones exist;
    /// - `before`: the `limit` messages just older than that message; `has_more` = older;
    /// - `after`: the `limit` messages just newer than that message; `has_more` = newer;
    /// - both: the first `limit` messages between them; `has_more` = more lie between.
    ///
    /// `limit` defaults to 50 and is capped at 100. `not_before` (the user's deletion mark)
    /// leaves out messages created at or before it. An unknown cursor, or one from another
    /// conversation, is [`DbError::NotFound`].
    pub async fn message_history(
        &self,
        conversation_id: &str,
        before: Option<&str>,
        after: Option<&str>,
        limit: Option<u32>,
        not_before: Option<Millis>,
    ) -> Result<(Vec<Message>, bool)> {
        let limit = page_limit(limit);
        let lower = match after {
            Some(id) => self.message_position(conversation_id, id).await?,
            None => (i64::MIN, String::new()),
        };
        let upper = match before {
            Some(id) => self.message_position(conversation_id, id).await?,
            None => (i64::MAX, String::new()),
        };
        // Scanning from the lower bound when there is one, from the newest otherwise.
        let ascending = after.is_some();
        let mut rows: Vec<RawMessage> = on_pool!(self, read, |pool| {
            let sql = if ascending {
                concat!(
                    message_select!(),
                    history_where!(),
                    "ORDER BY m.created_at ASC, m.id ASC LIMIT $7"
                )
            } else {
                concat!(
                    message_select!(),
                    history_where!(),
                    "ORDER BY m.created_at DESC, m.id DESC LIMIT $7"
                )
            };
            sqlx::query_as(sql)
                .bind(conversation_id)
                .bind(not_before.unwrap_or(i64::MIN))
                .bind(lower.0)
                .bind(&lower.1)
                .bind(upper.0)
                .bind(&upper.1)
                .bind(limit + 1)
                .fetch_all(pool)
                .await?
        });
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        if !ascending {
            rows.reverse();
        }
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut reactions = self.load_reactions(&ids).await?;
        let messages = rows
            .into_iter()
            .map(|r| {
                let rs = reactions.remove(&r.id).unwrap_or_default();
                r.into_message(rs)
            })
            .collect();
        Ok((messages, has_more))
    }

    /// Replaces a message's content and stamps `edited_at`. [`DbError::NotFound`] if it does
    /// not exist, [`DbError::Conflict`] if it was deleted. Only the sender may edit: check
    /// `sender_id` (it never changes) before calling.
    pub async fn edit_message(
        &self,
        message_id: &str,
        content: &str,
        now: Millis,
    ) -> Result<Message> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE messages SET content = $2, edited_at = $3 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(message_id)
            .bind(content)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let message = self
            .get_message(message_id)
            .await?
            .ok_or(DbError::NotFound)?;
        if updated == 0 {
            return Err(DbError::Conflict("the message was deleted".into()));
        }
        Ok(message)
    }

    /// Marks a message deleted and blanks its content (a deleted message's text should not
    /// stay readable). Deleting again keeps the first deletion time. [`DbError::NotFound`] if
    /// it does not exist.
    pub async fn soft_delete_message(&self, message_id: &str, now: Millis) -> Result<Message> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE messages SET deleted_at = $2, content = '' WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(message_id)
            .bind(now)
            .execute(pool)
            .await?;
        });
        self.get_message(message_id).await?.ok_or(DbError::NotFound)
    }

    /// Toggles `user_id`'s `emoji` on a message and returns the message's reactions after
    /// the change. [`DbError::NotFound`] if the message does not exist.
    pub async fn toggle_reaction(
        &self,
        message_id: &str,
        user_id: &str,
        emoji: &str,
        now: Millis,
    ) -> Result<Vec<Reaction>> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let removed = sqlx::query(
                "DELETE FROM message_reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
            )
            .bind(message_id)
            .bind(user_id)
            .bind(emoji)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if removed == 0 {
                // A missing message fails the foreign key, which maps to NotFound.
                sqlx::query(
                    "INSERT INTO message_reactions (message_id, user_id, emoji, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(message_id)
                .bind(user_id)
                .bind(emoji)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(self
            .load_reactions(&[message_id.to_owned()])
            .await?
            .remove(message_id)
            .unwrap_or_default())
    }

    /// `(created_at, id)` of a message of this conversation, for cursors.
    async fn message_position(
        &self,
        conversation_id: &str,
        message_id: &str,
    ) -> Result<(i64, String)> {
        let pos: Option<(i64, String)> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT created_at, id FROM messages WHERE id = $1 AND conversation_id = $2",
            )
            .bind(message_id)
            .bind(conversation_id)
            .fetch_optional(pool)
            .await?
        });
        pos.ok_or(DbError::NotFound)
    }

    /// Full messages by id (missing ids are left out).
    async fn load_messages(&self, ids: &[String]) -> Result<HashMap<String, Message>> {
        let mut unique: Vec<&str> = ids.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        let mut rows: Vec<RawMessage> = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(IN_CHUNK) {
            let part: Vec<RawMessage> = on_pool!(self, read, |pool| {
                let mut qb = sqlx::QueryBuilder::new(concat!(message_select!(), "WHERE m.id IN ("));
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(pool).await?
            });
            rows.extend(part);
        }
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut reactions = self.load_reactions(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let rs = reactions.remove(&r.id).unwrap_or_default();
                (r.id.clone(), r.into_message(rs))
            })
            .collect())
    }

    /// The newest message of each conversation `user_id` is a member of.
    pub(crate) async fn last_messages_of_user_conversations(
        &self,
        user_id: &str,
    ) -> Result<HashMap<String, Message>> {
        let rows: Vec<RawMessage> = on_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                message_select!(),
                "WHERE m.id IN (SELECT (SELECT x.id FROM messages x \
                     WHERE x.conversation_id = me.conversation_id \
                     ORDER BY x.created_at DESC, x.id DESC LIMIT 1) \
                   FROM conversation_members me WHERE me.user_id = $1)"
            ))
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut reactions = self.load_reactions(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let rs = reactions.remove(&r.id).unwrap_or_default();
                (r.conversation_id.clone(), r.into_message(rs))
            })
            .collect())
    }

    /// Reactions of the given messages, grouped by emoji in order of first reaction.
    async fn load_reactions(
        &self,
        message_ids: &[String],
    ) -> Result<HashMap<String, Vec<Reaction>>> {
        let mut out: HashMap<String, Vec<Reaction>> = HashMap::new();
        for chunk in message_ids.chunks(IN_CHUNK) {
            let rows: Vec<(String, String, String)> = on_pool!(self, read, |pool| {
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT message_id, emoji, user_id FROM message_reactions WHERE message_id IN (",
                );
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
                qb.push(") ORDER BY created_at, user_id, emoji");
                qb.build_query_as().fetch_all(pool).await?
            });
            for (message_id, emoji, user_id) in rows {
                let groups = out.entry(message_id).or_default();
                match groups.iter_mut().find(|g| g.emoji == emoji) {
                    Some(group) => group.user_ids.push(user_id),
                    None => groups.push(Reaction {
                        emoji,
                        user_ids: vec![user_id],
                    }),
                }
            }
        }
        Ok(out)
    }
}
