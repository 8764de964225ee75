//! Stored notifications (`GET /api/me/notifications`) and webhook dead letters (deliveries
//! that ran out of retries and must not be dropped silently, protocol §10).

use switchboard_domain::Millis;

use crate::error::{DbError, Result};
use crate::types::{DeadLetter, NewNotification, Notification, decode_enum};
use crate::{Db, decode_json, encode_json, new_id, page_limit};

#[derive(sqlx::FromRow)]
struct RawNotification {
    id: String,
    user_id: String,
    kind: String,
    title: String,
    body: String,
    data: String,
    priority: String,
    created_at: i64,
    read_at: Option<i64>,
}

impl RawNotification {
    fn into_notification(self) -> Result<Notification> {
        Ok(Notification {
            data: decode_json(&self.data)?,
            priority: decode_enum(&self.priority)?,
            id: self.id,
            user_id: self.user_id,
            kind: self.kind,
            title: self.title,
            body: self.body,
            created_at: self.created_at,
            read_at: self.read_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RawDeadLetter {
    id: String,
    url: String,
    body: String,
    attempts: i64,
    last_error: String,
    created_at: i64,
}

impl Db {
    /// Stores a notification and returns it with its new id.
    pub async fn insert_notification(&self, n: &NewNotification) -> Result<Notification> {
        let id = new_id();
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO notifications (id, user_id, kind, title, body, data, priority, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(&n.user_id)
            .bind(&n.kind)
            .bind(&n.title)
            .bind(&n.body)
            .bind(encode_json(&n.data))
            .bind(n.priority.as_str())
            .bind(n.created_at)
            .execute(pool)
            .await?;
        });
        Ok(Notification {
            id,
            user_id: n.user_id.clone(),
            kind: n.kind.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            data: n.data.clone(),
            priority: n.priority,
            created_at: n.created_at,
            read_at: None,
        })
    }

    /// A user's notifications, newest first, and whether older ones exist. `before` is a
    /// notification id of this user ([`DbError::NotFound`] otherwise).
    pub async fn list_notifications(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<Notification>, bool)> {
        let limit = page_limit(limit);
        let cursor: (i64, String) = match before {
            None => (i64::MAX, String::new()),
            Some(id) => {
                let at: Option<i64> = on_pool!(self, read, |pool| {
                    sqlx::query_scalar(
                        "SELECT created_at FROM notifications WHERE id = $1 AND user_id = $2",
                    )
                    .bind(id)
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await?
                });
                (at.ok_or(DbError::NotFound)?, id.to_owned())
            }
        };
        let mut rows: Vec<RawNotification> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, user_id, kind, title, body, data, priority, created_at, read_at \
                 FROM notifications WHERE user_id = $1 AND created_at <= $2 \
                   AND (created_at < $2 OR id < $3) \
                 ORDER BY created_at DESC, id DESC LIMIT $4",
            )
            .bind(user_id)
            .bind(cursor.0)
            .bind(&cursor.1)
            .bind(limit + 1)
            .fetch_all(pool)
            .await?
        });
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let list = rows
            .into_iter()
            .map(RawNotification::into_notification)
            .collect::<Result<Vec<_>>>()?;
        Ok((list, has_more))
    }

    /// Marks one of the user's notifications read (the first read time stays).
    /// [`DbError::NotFound`] if it is not theirs.
    pub async fn mark_notification_read(&self, user_id: &str, id: &str, now: Millis) -> Result<()> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE notifications SET read_at = COALESCE(read_at, $3) WHERE id = $1 AND user_id = $2",
            )
            .bind(id)
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

    /// Parks a webhook delivery that exhausted its retries.
    pub async fn insert_dead_letter(
        &self,
        url: &str,
        body: &str,
        attempts: i64,
        last_error: &str,
        now: Millis,
    ) -> Result<DeadLetter> {
        let id = new_id();
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO webhook_dead_letters (id, url, body, attempts, last_error, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(url)
            .bind(body)
            .bind(attempts)
            .bind(last_error)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(DeadLetter {
            id,
            url: url.to_owned(),
            body: body.to_owned(),
            attempts,
            last_error: last_error.to_owned(),
            created_at: now,
        })
    }

    /// The oldest dead letters first (the order to replay them in).
    pub async fn list_dead_letters(&self, limit: Option<u32>) -> Result<Vec<DeadLetter>> {
        let limit = page_limit(limit);
        let rows: Vec<RawDeadLetter> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, url, body, attempts, last_error, created_at FROM webhook_dead_letters \
                 ORDER BY created_at, id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                id: r.id,
                url: r.url,
                body: r.body,
                attempts: r.attempts,
                last_error: r.last_error,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Removes a dead letter (replayed or discarded by an operator). Returns whether it
    /// existed.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM webhook_dead_letters WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }
}
