//! Conversations, members, read marks and per-user deletion (hiding).
//!
//! A direct conversation is unique per unordered pair through `direct_key`, a UNIQUE
//! column: concurrent creators all `INSERT … ON CONFLICT DO NOTHING` and then read back the
//! one row that won, so no lock or retry loop is needed on either backend.
//!
//! Deleting a conversation is per user (seed 003): it sets the member's `deleted_at`. The
//! conversation is left out of that user's list until a newer message arrives, and
//! [`Db::message_history`] takes the mark as `not_before`.

use std::collections::{BTreeMap, HashMap};

use switchboard_domain::Millis;

use crate::error::{DbError, Result};
use crate::types::{
    Conversation, ConversationKind, ConversationListItem, Member, MemberRole, decode_enum,
};
use crate::{Db, IN_CHUNK, new_id};

#[derive(sqlx::FromRow)]
struct RawConversation {
    id: String,
    kind: String,
    name: Option<String>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct RawMember {
    conversation_id: String,
    user_id: String,
    role: String,
    joined_at: i64,
    last_read_at: Option<i64>,
    deleted_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct RawListEntry {
    id: String,
    kind: String,
    name: Option<String>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    last_message_at: Option<i64>,
    unread_count: i64,
}

/// The unique key of a direct pair, independent of order. Length-prefixed so that no two
/// different pairs can produce the same key, whatever characters the ids contain.
fn direct_key(a: &str, b: &str) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{}:{lo}{hi}", lo.len())
}

fn member_from_raw(raw: RawMember) -> Result<(String, Member)> {
    Ok((
        raw.conversation_id,
        Member {
            user_id: raw.user_id,
            role: decode_enum(&raw.role)?,
            joined_at: raw.joined_at,
            last_read_at: raw.last_read_at,
            deleted_at: raw.deleted_at,
        },
    ))
}

impl Db {
    /// The direct conversation of `a` and `b`, created if missing. Returns it and whether
    /// this call created it. Creating it again (in either order, or concurrently) returns the
    /// same conversation, and puts back either user if they had left it.
    pub async fn create_direct_conversation(
        &self,
        a: &str,
        b: &str,
        now: Millis,
    ) -> Result<(Conversation, bool)> {
        let key = direct_key(a, b);
        let fresh_id = new_id();
        let (id, created) = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let inserted: Option<String> = sqlx::query_scalar(
                "INSERT INTO conversations (id, kind, name, created_by, direct_key, created_at, updated_at) \
                 VALUES ($1, 'direct', NULL, $2, $3, $4, $4) \
                 ON CONFLICT (direct_key) DO NOTHING RETURNING id",
            )
            .bind(&fresh_id)
            .bind(a)
            .bind(&key)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            // On PostgreSQL a losing INSERT waits for the winner to commit, so this
            // statement (a fresh snapshot under READ COMMITTED) sees the winner's row.
            let id: String = match &inserted {
                Some(id) => id.clone(),
                None => {
                    sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = $1")
                        .bind(&key)
                        .fetch_one(&mut *tx)
                        .await?
                }
            };
            for user in [a, b] {
                sqlx::query(
                    "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) \
                     VALUES ($1, $2, 'member', $3) ON CONFLICT DO NOTHING",
                )
                .bind(&id)
                .bind(user)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            (id, inserted.is_some())
        });
        let conversation = self.get_conversation(&id).await?.ok_or(DbError::NotFound)?;
        Ok((conversation, created))
    }

    /// A new group conversation. The creator is an admin; the other members (duplicates
    /// ignored) are plain members.
    pub async fn create_group_conversation(
        &self,
        creator: &str,
        name: Option<&str>,
        members: &[String],
        now: Millis,
    ) -> Result<Conversation> {
        let id = new_id();
        let mut others: Vec<&str> = members
            .iter()
            .map(String::as_str)
            .filter(|m| *m != creator)
            .collect();
        others.sort_unstable();
        others.dedup();
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO conversations (id, kind, name, created_by, direct_key, created_at, updated_at) \
                 VALUES ($1, 'group', $2, $3, NULL, $4, $4)",
            )
            .bind(&id)
            .bind(name)
            .bind(creator)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let roles = std::iter::once((creator, MemberRole::Admin))
                .chain(others.iter().map(|m| (*m, MemberRole::Member)));
            for (user, role) in roles {
                sqlx::query(
                    "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&id)
                .bind(user)
                .bind(role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.get_conversation(&id).await?.ok_or(DbError::NotFound)
    }

    /// A conversation with its members.
    pub async fn get_conversation(&self, id: &str) -> Result<Option<Conversation>> {
        let raw: Option<RawConversation> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, kind, name, created_by, created_at, updated_at FROM conversations WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let Some(raw) = raw else { return Ok(None) };
        let mut members = self.load_members(std::slice::from_ref(&raw.id)).await?;
        Ok(Some(Conversation {
            members: members.remove(&raw.id).unwrap_or_default(),
            id: raw.id,
            kind: decode_enum(&raw.kind)?,
            name: raw.name,
            created_by: raw.created_by,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        }))
    }

    /// One membership, if the user is a member (hidden or not).
    pub async fn get_member(&self, conversation_id: &str, user_id: &str) -> Result<Option<Member>> {
        let raw: Option<RawMember> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT conversation_id, user_id, role, joined_at, last_read_at, deleted_at \
                 FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(conversation_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        raw.map(|r| member_from_raw(r).map(|(_, m)| m)).transpose()
    }

    /// The user's conversation list, most recent activity first, without the conversations
    /// they deleted and that have had no message since.
    pub async fn list_conversations_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<ConversationListItem>> {
        let entries: Vec<RawListEntry> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT c.id, c.kind, c.name, c.created_by, c.created_at, c.updated_at, me.deleted_at, \
                   (SELECT MAX(x.created_at) FROM messages x WHERE x.conversation_id = c.id) AS last_message_at, \
                   (SELECT COUNT(*) FROM messages x WHERE x.conversation_id = c.id \
                      AND x.sender_id <> me.user_id AND x.deleted_at IS NULL \
                      AND x.created_at > COALESCE(me.last_read_at, $2) \
                      AND x.created_at > COALESCE(me.deleted_at, $2)) AS unread_count \
                 FROM conversation_members me JOIN conversations c ON c.id = me.conversation_id \
                 WHERE me.user_id = $1",
            )
            .bind(user_id)
            .bind(i64::MIN)
            .fetch_all(pool)
            .await?
        });
        let visible: Vec<RawListEntry> = entries
            .into_iter()
            .filter(|e| match e.deleted_at {
                None => true,
                Some(deleted) => e.last_message_at.is_some_and(|last| last > deleted),
            })
            .collect();
        if visible.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = visible.iter().map(|e| e.id.clone()).collect();
        let mut members = self.load_members(&ids).await?;
        let mut last_messages = self.last_messages_of_user_conversations(user_id).await?;

        let mut items = Vec::with_capacity(visible.len());
        for e in visible {
            let activity = e.last_message_at.unwrap_or(e.created_at).max(e.created_at);
            items.push((
                activity,
                ConversationListItem {
                    last_message: last_messages.remove(&e.id),
                    unread_count: e.unread_count,
                    conversation: Conversation {
                        members: members.remove(&e.id).unwrap_or_default(),
                        kind: decode_enum(&e.kind)?,
                        id: e.id,
                        name: e.name,
                        created_by: e.created_by,
                        created_at: e.created_at,
                        updated_at: e.updated_at,
                    },
                },
            ));
        }
        items.sort_by(|(a_at, a), (b_at, b)| {
            b_at.cmp(a_at)
                .then_with(|| a.conversation.id.cmp(&b.conversation.id))
        });
        Ok(items.into_iter().map(|(_, item)| item).collect())
    }

    /// Unread counts of every conversation the user is a member of (zeros included), by
    /// conversation id. Counts the same messages as [`ConversationListItem::unread_count`].
    pub async fn unread_counts(&self, user_id: &str) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT me.conversation_id, \
                   (SELECT COUNT(*) FROM messages x WHERE x.conversation_id = me.conversation_id \
                      AND x.sender_id <> me.user_id AND x.deleted_at IS NULL \
                      AND x.created_at > COALESCE(me.last_read_at, $2) \
                      AND x.created_at > COALESCE(me.deleted_at, $2)) AS unread_count \
                 FROM conversation_members me WHERE me.user_id = $1",
            )
            .bind(user_id)
            .bind(i64::MIN)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().collect())
    }

    /// Adds members to a group (existing members are left as they are) and returns the
    /// updated conversation. A direct conversation's members are fixed: [`DbError::Conflict`].
    pub async fn add_members(
        &self,
        conversation_id: &str,
        user_ids: &[String],
        now: Millis,
    ) -> Result<Conversation> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let kind: Option<String> =
                sqlx::query_scalar("SELECT kind FROM conversations WHERE id = $1")
                    .bind(conversation_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match kind
                .as_deref()
                .map(decode_enum::<ConversationKind>)
                .transpose()?
            {
                None => return Err(DbError::NotFound),
                Some(ConversationKind::Direct) => {
                    return Err(DbError::Conflict(
                        "a direct conversation's members cannot change".into(),
                    ));
                }
                Some(ConversationKind::Group) => {}
            }
            for user in user_ids {
                sqlx::query(
                    "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) \
                     VALUES ($1, $2, 'member', $3) ON CONFLICT DO NOTHING",
                )
                .bind(conversation_id)
                .bind(user)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE conversations SET updated_at = $2 WHERE id = $1")
                .bind(conversation_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        self.get_conversation(conversation_id)
            .await?
            .ok_or(DbError::NotFound)
    }

    /// Removes a member (also how a user leaves). [`DbError::NotFound`] if they were not one.
    pub async fn remove_member(
        &self,
        conversation_id: &str,
        user_id: &str,
        now: Millis,
    ) -> Result<()> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let removed = sqlx::query(
                "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(conversation_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if removed == 0 {
                return Err(DbError::NotFound);
            }
            sqlx::query("UPDATE conversations SET updated_at = $2 WHERE id = $1")
                .bind(conversation_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Renames a conversation (`None` clears the name) and returns it.
    pub async fn rename_conversation(
        &self,
        conversation_id: &str,
        name: Option<&str>,
        now: Millis,
    ) -> Result<Conversation> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query("UPDATE conversations SET name = $2, updated_at = $3 WHERE id = $1")
                .bind(conversation_id)
                .bind(name)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(DbError::NotFound);
        }
        self.get_conversation(conversation_id)
            .await?
            .ok_or(DbError::NotFound)
    }

    /// "Deletes" the conversation for this user only: hides it and every message up to
    /// `now`. Returns the deletion mark. [`DbError::NotFound`] if not a member.
    pub async fn hide_conversation(
        &self,
        conversation_id: &str,
        user_id: &str,
        now: Millis,
    ) -> Result<Millis> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE conversation_members SET deleted_at = $3 \
                 WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(conversation_id)
            .bind(user_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(DbError::NotFound);
        }
        Ok(now)
    }

    /// Marks everything up to `now` as read for the user. The mark never moves backwards.
    /// [`DbError::NotFound`] if not a member.
    pub async fn mark_read(&self, conversation_id: &str, user_id: &str, now: Millis) -> Result<()> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE conversation_members SET last_read_at = \
                   CASE WHEN last_read_at IS NULL OR last_read_at < $3 THEN $3 ELSE last_read_at END \
                 WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(conversation_id)
            .bind(user_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(DbError::NotFound);
        }
        Ok(())
    }

    /// Members of the given conversations, by conversation id.
    async fn load_members(
        &self,
        conversation_ids: &[String],
    ) -> Result<HashMap<String, Vec<Member>>> {
        let mut out: HashMap<String, Vec<Member>> = HashMap::new();
        for chunk in conversation_ids.chunks(IN_CHUNK) {
            let rows: Vec<RawMember> = on_pool!(self, read, |pool| {
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT conversation_id, user_id, role, joined_at, last_read_at, deleted_at \
                     FROM conversation_members WHERE conversation_id IN (",
                );
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
                qb.push(") ORDER BY joined_at, user_id");
                qb.build_query_as().fetch_all(pool).await?
            });
            for raw in rows {
                let (conversation_id, member) = member_from_raw(raw)?;
                out.entry(conversation_id).or_default().push(member);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::direct_key;

    #[test]
    fn direct_key_is_order_free_and_unambiguous() {
        assert_eq!(direct_key("a", "b"), direct_key("b", "a"));
        assert_ne!(direct_key("ab", "c"), direct_key("a", "bc"));
    }
}
