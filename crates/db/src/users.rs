//! Users directory and friendships.
//!
//! Friendship is mutual and stored symmetrically (a row `(a, b)` and a row `(b, a)`), so
//! "friends of X" is one index lookup. [`Db::set_friends`] replaces one user's list: the
//! user ends up friends with exactly the listed users, in both directions, and anyone
//! dropped from the list loses the friendship in both directions too.

use switchboard_domain::Millis;

use crate::error::Result;
use crate::types::UserRow;
use crate::{Db, IN_CHUNK};

#[derive(sqlx::FromRow)]
struct RawUser {
    id: String,
    name: String,
}

impl Db {
    /// Inserts the user or renames them. Writes nothing when the name is unchanged, since
    /// this runs on every connect.
    pub async fn upsert_user(&self, id: &str, name: &str, now: Millis) -> Result<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO users (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at \
                 WHERE users.name <> excluded.name",
            )
            .bind(id)
            .bind(name)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The known users among `ids`, ordered by id. Unknown ids are left out.
    pub async fn get_users(&self, ids: &[String]) -> Result<Vec<UserRow>> {
        let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let rows: Vec<RawUser> = on_pool!(self, read, |pool| {
                let mut qb = sqlx::QueryBuilder::new("SELECT id, name FROM users WHERE id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(") ORDER BY id");
                qb.build_query_as().fetch_all(pool).await?
            });
            out.extend(rows.into_iter().map(|r| UserRow {
                id: r.id,
                name: r.name,
            }));
        }
        // Chunks come back sorted each, and the chunks are in order.
        Ok(out)
    }

    /// How many users the directory holds (start-up refuses public presence above a cap).
    pub async fn count_users(&self) -> Result<i64> {
        let count: i64 = on_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }

    /// One user, if known.
    pub async fn get_user(&self, id: &str) -> Result<Option<UserRow>> {
        let row: Option<RawUser> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT id, name FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|r| UserRow {
            id: r.id,
            name: r.name,
        }))
    }

    /// Replaces `user_id`'s friends with `friend_ids` (duplicates and the user themselves
    /// are ignored), mutually, in one transaction. Friends need not be in the directory.
    pub async fn set_friends(
        &self,
        user_id: &str,
        friend_ids: &[String],
        now: Millis,
    ) -> Result<()> {
        let mut friends: Vec<&str> = friend_ids
            .iter()
            .map(String::as_str)
            .filter(|f| *f != user_id)
            .collect();
        friends.sort_unstable();
        friends.dedup();
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM friendships WHERE user_id = $1 OR friend_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for friend in &friends {
                sqlx::query(
                    "INSERT INTO friendships (user_id, friend_id, created_at) \
                     VALUES ($1, $2, $3), ($2, $1, $3) ON CONFLICT DO NOTHING",
                )
                .bind(user_id)
                .bind(*friend)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The user's friends, ordered by id.
    pub async fn get_friends(&self, user_id: &str) -> Result<Vec<String>> {
        let ids: Vec<String> = on_pool!(self, read, |pool| {
            sqlx::query_scalar(
                "SELECT friend_id FROM friendships WHERE user_id = $1 ORDER BY friend_id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(ids)
    }
}
