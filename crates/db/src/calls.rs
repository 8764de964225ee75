//! Call sessions, participants and per-user call history.
//!
//! Live call state belongs to the state store; this is the record. The server inserts a
//! session when a call starts (or when it ends, for calls that only ever lived in the
//! store), updates it at milestones (answered, connected, mode change) and finishes it
//! exactly once: [`Db::finish_call_session`] is a compare-and-set on `status <> 'ended'`,
//! so a zombie sweep and a normal hang-up racing each other cannot both end a call.
//!
//! History: `call_parties` lists whose history shows each call (initiator, invitees,
//! everyone who joined), with the start time copied in, so a user's history is one range
//! scan of `(user_id, started_at, call_id)`, newest first.

use std::collections::HashMap;

use switchboard_domain::Millis;

use crate::error::{DbError, Result};
use crate::types::{
    CallParticipant, CallSession, CallSessionUpdate, CallStatus, FinishCall, NewCallParticipant,
    NewCallSession, decode_enum,
};
use crate::{Db, IN_CHUNK, decode_json_opt, encode_json, new_id, page_limit};

#[derive(sqlx::FromRow)]
struct RawSession {
    id: String,
    kind: String,
    conversation_id: Option<String>,
    room_id: Option<String>,
    media_type: String,
    mode: String,
    status: String,
    initiator_id: String,
    started_at: i64,
    answered_at: Option<i64>,
    connected_at: Option<i64>,
    ended_at: Option<i64>,
    duration_secs: Option<i64>,
    outcome: Option<String>,
    end_reason: Option<String>,
    ended_by: Option<String>,
    metadata: Option<String>,
}

impl RawSession {
    fn into_session(self, participants: Vec<CallParticipant>) -> Result<CallSession> {
        Ok(CallSession {
            kind: decode_enum(&self.kind)?,
            media_type: decode_enum(&self.media_type)?,
            mode: decode_enum(&self.mode)?,
            status: decode_enum(&self.status)?,
            outcome: self.outcome.as_deref().map(decode_enum).transpose()?,
            metadata: decode_json_opt(self.metadata)?,
            id: self.id,
            conversation_id: self.conversation_id,
            room_id: self.room_id,
            initiator_id: self.initiator_id,
            started_at: self.started_at,
            answered_at: self.answered_at,
            connected_at: self.connected_at,
            ended_at: self.ended_at,
            duration_secs: self.duration_secs,
            end_reason: self.end_reason,
            ended_by: self.ended_by,
            participants,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RawParticipant {
    id: String,
    call_id: String,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    role: String,
    joined_at: i64,
    left_at: Option<i64>,
    audio_enabled: bool,
    video_enabled: bool,
    connection_quality: Option<String>,
}

impl RawParticipant {
    fn into_participant(self) -> Result<CallParticipant> {
        Ok(CallParticipant {
            role: decode_enum(&self.role)?,
            connection_quality: decode_json_opt(self.connection_quality)?,
            id: self.id,
            call_id: self.call_id,
            user_id: self.user_id,
            anonymous_id: self.anonymous_id,
            joined_at: self.joined_at,
            left_at: self.left_at,
            audio_enabled: self.audio_enabled,
            video_enabled: self.video_enabled,
        })
    }
}

macro_rules! session_columns {
    () => {
        "s.id, s.kind, s.conversation_id, s.room_id, s.media_type, s.mode, s.status, \
         s.initiator_id, s.started_at, s.answered_at, s.connected_at, s.ended_at, \
         s.duration_secs, s.outcome, s.end_reason, s.ended_by, s.metadata "
    };
}

macro_rules! participant_columns {
    () => {
        "id, call_id, user_id, anonymous_id, role, joined_at, left_at, audio_enabled, \
         video_enabled, connection_quality "
    };
}

impl Db {
    /// Records a new call. The initiator and `invitees` get it in their history.
    /// [`DbError::Conflict`] if the id is taken.
    pub async fn insert_call_session(&self, call: &NewCallSession) -> Result<CallSession> {
        if call.status == CallStatus::Ended {
            return Err(DbError::Other(
                "insert a call as live, then end it with finish_call_session".into(),
            ));
        }
        let metadata = call.metadata.as_ref().map(encode_json);
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO call_sessions (id, kind, conversation_id, room_id, media_type, mode, \
                   status, initiator_id, started_at, metadata) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&call.id)
            .bind(call.kind.as_str())
            .bind(&call.conversation_id)
            .bind(&call.room_id)
            .bind(call.media_type.as_str())
            .bind(call.mode.as_str())
            .bind(call.status.as_str())
            .bind(&call.initiator_id)
            .bind(call.started_at)
            .bind(&metadata)
            .execute(&mut *tx)
            .await?;
            for user in std::iter::once(&call.initiator_id).chain(&call.invitees) {
                sqlx::query(
                    "INSERT INTO call_parties (user_id, call_id, started_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(user)
                .bind(&call.id)
                .bind(call.started_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.get_call_session(&call.id)
            .await?
            .ok_or(DbError::NotFound)
    }

    /// Adds users to a call's history audience (rung or invited later). Unknown call:
    /// [`DbError::NotFound`].
    pub async fn add_call_invitees(&self, call_id: &str, user_ids: &[String]) -> Result<()> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let started_at: Option<i64> =
                sqlx::query_scalar("SELECT started_at FROM call_sessions WHERE id = $1")
                    .bind(call_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(started_at) = started_at else {
                return Err(DbError::NotFound);
            };
            for user in user_ids {
                sqlx::query(
                    "INSERT INTO call_parties (user_id, call_id, started_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(user)
                .bind(call_id)
                .bind(started_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// One call with its participants.
    pub async fn get_call_session(&self, id: &str) -> Result<Option<CallSession>> {
        let raw: Option<RawSession> = on_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                "FROM call_sessions s WHERE s.id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let Some(raw) = raw else { return Ok(None) };
        let mut participants = self
            .load_participants(std::slice::from_ref(&raw.id))
            .await?;
        let ps = participants.remove(&raw.id).unwrap_or_default();
        raw.into_session(ps).map(Some)
    }

    /// Applies milestones to a live call and returns it. [`DbError::Conflict`] if the call
    /// has ended, [`DbError::NotFound`] if unknown.
    pub async fn update_call_session(
        &self,
        id: &str,
        update: &CallSessionUpdate,
    ) -> Result<CallSession> {
        if update.status == Some(CallStatus::Ended) {
            return Err(DbError::Other("end a call with finish_call_session".into()));
        }
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE call_sessions SET status = COALESCE($2, status), mode = COALESCE($3, mode), \
                   room_id = COALESCE($4, room_id), answered_at = COALESCE(answered_at, $5), \
                   connected_at = COALESCE(connected_at, $6) \
                 WHERE id = $1 AND status <> 'ended'",
            )
            .bind(id)
            .bind(update.status.map(|s| s.as_str()))
            .bind(update.mode.map(|m| m.as_str()))
            .bind(&update.room_id)
            .bind(update.answered_at)
            .bind(update.connected_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let call = self.get_call_session(id).await?.ok_or(DbError::NotFound)?;
        if updated == 0 {
            return Err(DbError::Conflict("the call has ended".into()));
        }
        Ok(call)
    }

    /// Ends a call, once: sets status `ended`, the outcome and duration, and closes every
    /// participant still in it at `ended_at`. A second finish is [`DbError::Conflict`].
    pub async fn finish_call_session(&self, id: &str, finish: &FinishCall) -> Result<CallSession> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let connected_at: Option<Option<i64>> =
                sqlx::query_scalar("SELECT connected_at FROM call_sessions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(connected_at) = connected_at else {
                return Err(DbError::NotFound);
            };
            let duration = finish.duration_secs.or_else(|| {
                connected_at.map(|c| (finish.ended_at.saturating_sub(c)).max(0) / 1000)
            });
            // The status test makes this the compare-and-set: on PostgreSQL a concurrent
            // finisher blocks on the row lock, then re-checks and matches nothing.
            let updated = sqlx::query(
                "UPDATE call_sessions SET status = 'ended', ended_at = $2, outcome = $3, \
                   duration_secs = $4, end_reason = $5, ended_by = $6 \
                 WHERE id = $1 AND status <> 'ended'",
            )
            .bind(id)
            .bind(finish.ended_at)
            .bind(finish.outcome.as_str())
            .bind(duration)
            .bind(&finish.end_reason)
            .bind(&finish.ended_by)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(DbError::Conflict("the call has already ended".into()));
            }
            sqlx::query(
                "UPDATE call_participants SET left_at = $2 WHERE call_id = $1 AND left_at IS NULL",
            )
            .bind(id)
            .bind(finish.ended_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.get_call_session(id).await?.ok_or(DbError::NotFound)
    }

    /// Records a join (a user, or a guest by anonymous id). The user gets the call in their
    /// history. [`DbError::NotFound`] for an unknown call, [`DbError::Conflict`] if it ended.
    pub async fn add_call_participant(&self, p: &NewCallParticipant) -> Result<CallParticipant> {
        self.add_call_participant_with_id(&new_id(), p).await
    }

    /// [`Db::add_call_participant`] under an id the caller chose (the live call state names
    /// the participant record before the row is written). [`DbError::Conflict`] if taken.
    pub async fn add_call_participant_with_id(
        &self,
        id: &str,
        p: &NewCallParticipant,
    ) -> Result<CallParticipant> {
        if p.user_id.is_some() == p.anonymous_id.is_some() {
            return Err(DbError::Other(
                "a participant has exactly one of user_id and anonymous_id".into(),
            ));
        }
        let id = id.to_string();
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let call: Option<(String, i64)> =
                sqlx::query_as("SELECT status, started_at FROM call_sessions WHERE id = $1")
                    .bind(&p.call_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((status, started_at)) = call else {
                return Err(DbError::NotFound);
            };
            if status == CallStatus::Ended.as_str() {
                return Err(DbError::Conflict("the call has ended".into()));
            }
            sqlx::query(
                "INSERT INTO call_participants (id, call_id, user_id, anonymous_id, role, joined_at, \
                   audio_enabled, video_enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(&p.call_id)
            .bind(&p.user_id)
            .bind(&p.anonymous_id)
            .bind(p.role.as_str())
            .bind(p.joined_at)
            .bind(p.audio_enabled)
            .bind(p.video_enabled)
            .execute(&mut *tx)
            .await?;
            if let Some(user) = &p.user_id {
                sqlx::query(
                    "INSERT INTO call_parties (user_id, call_id, started_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(user)
                .bind(&p.call_id)
                .bind(started_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.get_call_participant(&id)
            .await?
            .ok_or(DbError::NotFound)
    }

    /// Stamps a participant's leave time (the first one stays). [`DbError::NotFound`] if
    /// unknown.
    pub async fn mark_participant_left(
        &self,
        participant_id: &str,
        left_at: Millis,
    ) -> Result<CallParticipant> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE call_participants SET left_at = COALESCE(left_at, $2) WHERE id = $1",
            )
            .bind(participant_id)
            .bind(left_at)
            .execute(pool)
            .await?;
        });
        self.get_call_participant(participant_id)
            .await?
            .ok_or(DbError::NotFound)
    }

    /// Sets a participant's media flags; `None` leaves one alone.
    pub async fn set_participant_media(
        &self,
        participant_id: &str,
        audio_enabled: Option<bool>,
        video_enabled: Option<bool>,
    ) -> Result<CallParticipant> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE call_participants SET audio_enabled = COALESCE($2, audio_enabled), \
                   video_enabled = COALESCE($3, video_enabled) WHERE id = $1",
            )
            .bind(participant_id)
            .bind(audio_enabled)
            .bind(video_enabled)
            .execute(pool)
            .await?;
        });
        self.get_call_participant(participant_id)
            .await?
            .ok_or(DbError::NotFound)
    }

    /// Stores the latest connection-quality report (`call:quality`) of a participant.
    pub async fn set_participant_quality(
        &self,
        participant_id: &str,
        quality: &serde_json::Value,
    ) -> Result<()> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query("UPDATE call_participants SET connection_quality = $2 WHERE id = $1")
                .bind(participant_id)
                .bind(encode_json(quality))
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(DbError::NotFound);
        }
        Ok(())
    }

    /// One participant record.
    pub async fn get_call_participant(
        &self,
        participant_id: &str,
    ) -> Result<Option<CallParticipant>> {
        let raw: Option<RawParticipant> = on_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                participant_columns!(),
                "FROM call_participants WHERE id = $1"
            ))
            .bind(participant_id)
            .fetch_optional(pool)
            .await?
        });
        raw.map(RawParticipant::into_participant).transpose()
    }

    /// The calls in `user_id`'s history (initiated, invited to, or joined), newest first,
    /// and whether older ones exist. `before` is a call id from this history (an unknown one
    /// is [`DbError::NotFound`]); `limit` defaults to 50, at most 100. Live calls are included
    /// (their status says so).
    pub async fn call_history_for_user(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<CallSession>, bool)> {
        let limit = page_limit(limit);
        let cursor: (i64, String) = match before {
            None => (i64::MAX, String::new()),
            Some(call_id) => {
                let started: Option<i64> = on_pool!(self, read, |pool| {
                    sqlx::query_scalar(
                        "SELECT started_at FROM call_parties WHERE user_id = $1 AND call_id = $2",
                    )
                    .bind(user_id)
                    .bind(call_id)
                    .fetch_optional(pool)
                    .await?
                });
                (started.ok_or(DbError::NotFound)?, call_id.to_owned())
            }
        };
        // With no cursor every row passes `started_at < i64::MAX`.
        let mut rows: Vec<RawSession> = on_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                "FROM call_parties p JOIN call_sessions s ON s.id = p.call_id \
                 WHERE p.user_id = $1 AND p.started_at <= $2 \
                   AND (p.started_at < $2 OR p.call_id < $3) \
                 ORDER BY p.started_at DESC, p.call_id DESC LIMIT $4"
            ))
            .bind(user_id)
            .bind(cursor.0)
            .bind(&cursor.1)
            .bind(limit + 1)
            .fetch_all(pool)
            .await?
        });
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok((self.with_participants(rows).await?, has_more))
    }

    /// Calls not yet ended, oldest first; for sweeping zombies after a restart. With a
    /// conversation id, only that conversation's calls.
    pub async fn unfinished_calls(
        &self,
        conversation_id: Option<&str>,
    ) -> Result<Vec<CallSession>> {
        let rows: Vec<RawSession> =
            on_pool!(self, read, |pool| {
                match conversation_id {
                    None => sqlx::query_as(concat!(
                        "SELECT ",
                        session_columns!(),
                        "FROM call_sessions s WHERE s.status <> 'ended' ORDER BY s.started_at, s.id"
                    ))
                    .fetch_all(pool)
                    .await?,
                    Some(conversation_id) => sqlx::query_as(concat!(
                        "SELECT ",
                        session_columns!(),
                        "FROM call_sessions s WHERE s.conversation_id = $1 AND s.status <> 'ended' \
                         ORDER BY s.started_at, s.id"
                    ))
                    .bind(conversation_id)
                    .fetch_all(pool)
                    .await?,
                }
            });
        self.with_participants(rows).await
    }

    async fn with_participants(&self, rows: Vec<RawSession>) -> Result<Vec<CallSession>> {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut participants = self.load_participants(&ids).await?;
        rows.into_iter()
            .map(|r| {
                let ps = participants.remove(&r.id).unwrap_or_default();
                r.into_session(ps)
            })
            .collect()
    }

    /// Participants of the given calls, by call id, in join order.
    async fn load_participants(
        &self,
        call_ids: &[String],
    ) -> Result<HashMap<String, Vec<CallParticipant>>> {
        let mut out: HashMap<String, Vec<CallParticipant>> = HashMap::new();
        for chunk in call_ids.chunks(IN_CHUNK) {
            let rows: Vec<RawParticipant> = on_pool!(self, read, |pool| {
                let mut qb = sqlx::QueryBuilder::new(concat!(
                    "SELECT ",
                    participant_columns!(),
                    "FROM call_participants WHERE call_id IN ("
                ));
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
                qb.push(") ORDER BY joined_at, id");
                qb.build_query_as().fetch_all(pool).await?
            });
            for raw in rows {
                let p = raw.into_participant()?;
                out.entry(p.call_id.clone()).or_default().push(p);
            }
        }
        Ok(out)
    }
}
