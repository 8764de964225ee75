//! Messages (protocol §9): sending through the group-commit writer, edit, delete, reactions,
//! history, read marks and unread counts.
//!
//! # Group commit
//! `message:send` never writes on its own. It hands the message to [`MessageWriter`], one
//! background task per instance that takes every request waiting in its channel (up to
//! `chat.max_batch`) and stores them in ONE `Db::insert_messages` transaction. Each sender
//! is answered only after that commit, so an ack always means "durable", and a failed
//! commit answers every request of the batch `UNAVAILABLE` with nothing broadcast. Under
//! load one commit carries many messages; when idle a message is written alone at once
//! (there is no waiting to fill a batch).
//!
//! # Unread counts
//! The store keeps one counter hash per user (`keys::unread`), bumped for every member but
//! the sender after each commit and reset by `message:read`. The memory store forgets it on
//! restart (and Redis may lose it), so the hash carries a marker field, [`UNREAD_READY`]:
//! a read that does not find it initialises the user's counters from `Db::unread_counts`
//! first. The hot path (`unread:get`) stays one store round trip.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_db::{Db, DbError, InsertedMessage, NewMessage};
use switchboard_domain::chat::{self, ConversationMeta};
use switchboard_domain::time::Clock;
use switchboard_domain::{DomainError, Millis};
use switchboard_protocol::chat::{
    ConversationRead, Message, MessagePayload, MessageReactionUpdated, MessageRef, MessageReply,
    Reaction, UnreadUpdated,
};
use switchboard_protocol::events;
use switchboard_store::{CachedMessage, keys};
use tokio::sync::{mpsc, oneshot};

use crate::app::App;
use crate::error::{AppError, AppResult};
use crate::outbox::rooms;
use crate::services::notifications::{self, NewNotice, Priority};
use crate::services::{conversations, rate_limit};

/// The marker field of a user's unread hash: present once the counters were initialised
/// from the database (conversation ids are UUIDs, so it cannot collide).
pub const UNREAD_READY: &str = "_ready";
/// The rate-limit action of `message:send`.
pub const SEND_ACTION: &str = "message";
/// A reply preview shows at most this many characters of the quoted message.
const REPLY_PREVIEW_CHARS: usize = 200;

// --- Wire form -------------------------------------------------------------------------

fn preview(content: &str) -> String {
    if content.chars().count() <= REPLY_PREVIEW_CHARS {
        content.to_string()
    } else {
        let mut s: String = content.chars().take(REPLY_PREVIEW_CHARS).collect();
        s.push('…');
        s
    }
}

/// The wire form of a stored message.
pub fn to_wire(m: switchboard_db::Message) -> Message {
    let deleted = m.deleted_at.is_some();
    Message {
        sender_name: m.sender_name.unwrap_or_else(|| m.sender_id.clone()),
        id: m.id,
        conversation_id: m.conversation_id,
        sender_id: m.sender_id,
        content: m.content,
        created_at: m.created_at,
        edited_at: m.edited_at,
        deleted: deleted.then_some(true),
        reply_to: m.reply_to.map(|r| MessageReply {
            sender_name: r.sender_name.unwrap_or(r.sender_id),
            content: if r.deleted {
                String::new()
            } else {
                preview(&r.content)
            },
            id: r.id,
        }),
        reactions: reactions_to_wire(m.reactions),
        client_message_id: m.client_message_id,
    }
}

fn reactions_to_wire(reactions: Vec<switchboard_db::Reaction>) -> Vec<Reaction> {
    reactions
        .into_iter()
        .map(|r| Reaction::new(r.emoji, r.user_ids))
        .collect()
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

// --- The group-commit writer -----------------------------------------------------------

struct WriteRequest {
    message: NewMessage,
    reply: oneshot::Sender<Result<InsertedMessage, DbError>>,
}

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed (or attempted).
    pub batches: AtomicU64,
    /// Messages handed to those transactions.
    pub messages: AtomicU64,
    /// The largest batch so far.
    pub largest_batch: AtomicU64,
    /// `message:history` pages served by the recent cache.
    pub history_from_cache: AtomicU64,
    /// `message:history` pages read from the database.
    pub history_from_db: AtomicU64,
}

/// The per-instance group-commit writer. Its task starts on the first write (so service
/// tests and the server get it alike) and ends when the [`App`] is dropped.
pub struct MessageWriter {
    tx: mpsc::Sender<WriteRequest>,
    rx: Mutex<Option<mpsc::Receiver<WriteRequest>>>,
    started: AtomicBool,
    max_batch: usize,
    pub stats: Arc<WriterStats>,
}

impl MessageWriter {
    pub fn new(max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        // Room for a few batches; senders wait beyond that (backpressure).
        let (tx, rx) = mpsc::channel(max_batch.saturating_mul(8).max(64));
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            started: AtomicBool::new(false),
            max_batch,
            stats: Arc::default(),
        }
    }

    /// Starts the writer task if it is not running yet. Needs a Tokio runtime.
    pub fn start(&self, db: &Db, clock: &Arc<dyn Clock>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let rx = self.rx.lock().expect("writer lock").take();
        if let Some(rx) = rx {
            self.started.store(true, Ordering::Release);
            tokio::spawn(run_writer(
                rx,
                db.clone(),
                clock.clone(),
                self.stats.clone(),
                self.max_batch,
            ));
        }
    }

    /// Stores one message with the next group commit; returns once it is committed.
    /// `id` and `created_at` are assigned by the writer (see `run_writer`).
    pub async fn write(
        &self,
        db: &Db,
        clock: &Arc<dyn Clock>,
        message: NewMessage,
    ) -> AppResult<InsertedMessage> {
        self.start(db, clock);
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(WriteRequest { message, reply })
            .await
            .map_err(|_| {
                AppError::from(DbError::Unavailable("the message writer stopped".into()))
            })?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(DbError::Unavailable("the message writer stopped".into()).into()),
        }
    }

    /// Transactions so far.
    pub fn batches(&self) -> u64 {
        self.stats.batches.load(Ordering::Relaxed)
    }
}

async fn run_writer(
    mut rx: mpsc::Receiver<WriteRequest>,
    db: Db,
    clock: Arc<dyn Clock>,
    stats: Arc<WriterStats>,
    max_batch: usize,
) {
    let mut last_stamp: Millis = Millis::MIN;
    let mut pending: Vec<WriteRequest> = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut pending, max_batch).await > 0 {
        // Strictly increasing per batch, and the batch's ids sorted in write order: the
        // database orders messages by (created_at, insertion) and the recent cache by
        // (created_at, id), and this makes the two orders agree for this instance's writes.
        let now = clock.now_ms().max(last_stamp.saturating_add(1));
        last_stamp = now;
        let mut ids: Vec<String> = (0..pending.len())
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        ids.sort_unstable();
        let (batch, replies): (Vec<NewMessage>, Vec<_>) = pending
            .drain(..)
            .zip(ids)
            .map(|(r, id)| {
                let mut m = r.message;
                m.id = id;
                m.created_at = now;
                (m, r.reply)
            })
            .unzip();
        let results = commit(&db, &stats, &batch).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // A sender that went away (disconnected) no longer waits; the message stands.
            let _ = reply.send(result);
        }
    }
}

/// One transaction for the batch. If it fails for a reason other than an outage, the
/// messages are retried one by one, so one bad message does not fail its neighbours.
async fn commit(
    db: &Db,
    stats: &WriterStats,
    batch: &[NewMessage],
) -> Vec<Result<InsertedMessage, DbError>> {
    let count = |n: usize| {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.messages.fetch_add(n as u64, Ordering::Relaxed);
        stats.largest_batch.fetch_max(n as u64, Ordering::Relaxed);
    };
    count(batch.len());
    match db.insert_messages(batch).await {
        Ok(inserted) => inserted.into_iter().map(Ok).collect(),
        Err(error @ DbError::Unavailable(_)) => {
            tracing::warn!(%error, batch = batch.len(), "group commit failed");
            batch.iter().map(|_| Err(error.clone())).collect()
        }
        Err(error) if batch.len() > 1 => {
            tracing::warn!(%error, batch = batch.len(), "group commit failed; retrying one by one");
            let mut out = Vec::with_capacity(batch.len());
            for m in batch {
                count(1);
                out.push(match db.insert_messages(std::slice::from_ref(m)).await {
                    Ok(mut one) => one
                        .pop()
                        .ok_or_else(|| DbError::Corrupt("empty insert result".into())),
                    Err(e) => Err(e),
                });
            }
            out
        }
        Err(error) => vec![Err(error)],
    }
}

// --- Sending ---------------------------------------------------------------------------

/// What a send needs from the handler.
pub struct SendRequest<'a> {
    pub sender_id: &'a str,
    pub sender_name: &'a str,
    pub conversation_id: &'a str,
    pub content: &'a str,
    pub reply_to: Option<&'a str>,
    pub client_message_id: Option<&'a str>,
}

/// `message:send`: member check, rate limit, reply check, group commit; then (for a new
/// message, not a retried `clientMessageId`) the recent cache, the unread counters and the
/// broadcasts. Returns the stored message (the original one for a retry).
pub async fn send(app: &App, req: SendRequest<'_>) -> AppResult<Message> {
    chat::check_content(&app.settings.limits, req.content)?;
    let meta = conversations::member_of(app, req.conversation_id, req.sender_id).await?;
    rate_limit::check(
        app,
        req.sender_id,
        SEND_ACTION,
        app.settings.rate_limits.message,
    )
    .await?;
    if let Some(reply_id) = req.reply_to {
        match app.db.get_message(reply_id).await? {
            Some(m) if m.conversation_id == req.conversation_id => {}
            _ => return Err(AppError::not_found("the message replied to was not found")),
        }
    }
    let in_flight = InFlight::begin(app, req.conversation_id).await?;
    let new = NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        conversation_id: req.conversation_id.to_string(),
        sender_id: req.sender_id.to_string(),
        content: req.content.to_string(),
        created_at: app.now(),
        reply_to_id: req.reply_to.map(str::to_string),
        client_message_id: req.client_message_id.map(str::to_string),
    };
    let written = app.messages.write(&app.db, &app.clock, new).await;
    let inserted = match written {
        Ok(inserted) => inserted,
        Err(error) => {
            in_flight.end(app).await;
            return Err(error);
        }
    };
    let mut message = to_wire(inserted.message);
    if message.sender_name == message.sender_id {
        message.sender_name = req.sender_name.to_string();
    }
    if inserted.duplicate {
        // A retry: the original was acked (or will be) and broadcast already.
        in_flight.end(app).await;
        return Ok(message);
    }
    after_commit(app, &meta, &message, in_flight).await;
    Ok(message)
}

/// How long a send may sit between marking itself in flight and adding its message to the
/// recent cache before readers presume its instance died and rebuild the cache.
const IN_FLIGHT_DEADLINE_MS: Millis = 30_000;

/// A send between its database commit and its recent-cache add, announced in the store.
///
/// Without it, a reader could be served a cache page that lacks a message already committed
/// (and acked) by another task or instance: a forward page (`after`) would then skip it for
/// good, and a writer killed between commit and cache add would leave the gap forever. While
/// any send of the conversation is in flight, history reads the database; a marker whose
/// deadline passed belongs to a dead writer, and the reader drops the cache instead.
struct InFlight {
    key: String,
    field: String,
}

impl InFlight {
    async fn begin(app: &App, conversation_id: &str) -> AppResult<Self> {
        let marker = Self {
            key: keys::messages_in_flight(conversation_id),
            field: uuid::Uuid::new_v4().to_string(),
        };
        app.store
            .counter_add(
                &marker.key,
                &marker.field,
                app.now().saturating_add(IN_FLIGHT_DEADLINE_MS),
            )
            .await?;
        Ok(marker)
    }

    async fn end(self, app: &App) {
        if let Err(error) = app.store.counter_reset(&self.key, &self.field).await {
            // The marker expires by itself: readers bypass the cache until then.
            tracing::warn!(key = %self.key, %error, "could not clear an in-flight marker");
        }
    }
}

/// Whether the recent cache may answer now: no send of the conversation is between commit
/// and cache add. Markers of dead writers are cleared after dropping the cache, which may
/// lack their messages; the next read refills it from the database.
async fn cache_consistent(app: &App, conversation_id: &str) -> AppResult<bool> {
    let key = keys::messages_in_flight(conversation_id);
    let markers = app.store.counters(&key).await?;
    if markers.is_empty() {
        return Ok(true);
    }
    let now = app.now();
    let (stale, live): (Vec<_>, Vec<_>) = markers
        .into_iter()
        .partition(|(_, deadline)| *deadline <= now);
    if !stale.is_empty() {
        app.store
            .cache_invalidate(&[keys::messages(conversation_id)])
            .await?;
        for (field, _) in &stale {
            app.store.counter_reset(&key, field).await?;
        }
        tracing::info!(%conversation_id, stale = stale.len(), "recent cache dropped after an interrupted send");
    }
    Ok(live.is_empty())
}

/// Everything that follows a new message's commit. Failures here are logged, not returned:
/// the message is durable and the sender must get its ack.
async fn after_commit(app: &App, meta: &ConversationMeta, message: &Message, in_flight: InFlight) {
    cache_add(app, message).await;
    in_flight.end(app).await;
    let recipients = chat::unread_recipients(meta, &message.sender_id);
    bump_unread(app, &message.conversation_id, &recipients).await;
    notify_offline_recipients(app, meta, message, &recipients).await;
    app.outbox
        .emit(
            rooms::conversation(&message.conversation_id),
            events::MESSAGE_NEW,
            json(&MessagePayload {
                message: message.clone(),
            }),
        )
        .await;
}

/// Seed 001: a member with no connected device gets a normal-priority push notification.
async fn notify_offline_recipients(
    app: &App,
    meta: &ConversationMeta,
    message: &Message,
    recipients: &[String],
) {
    const PREVIEW_CHARS: usize = 140;
    let title = match &meta.name {
        Some(name) if !name.is_empty() => format!("{} in {name}", message.sender_name),
        _ => message.sender_name.clone(),
    };
    let preview: String = message.content.chars().take(PREVIEW_CHARS).collect();
    let data =
        serde_json::json!({ "conversationId": message.conversation_id, "messageId": message.id });
    let notice = |user_id: &str| NewNotice {
        user_id: user_id.to_string(),
        kind: "message".into(),
        title: title.clone(),
        body: preview.clone(),
        data: data.clone(),
        priority: Priority::Normal,
    };
    if let Err(error) = notifications::notify_offline(app, recipients, notice).await {
        tracing::warn!(conversation_id = %message.conversation_id, %error, "could not notify offline members");
    }
}

/// Adds one to each recipient's unread count of the conversation (one store round trip)
/// and tells their devices.
async fn bump_unread(app: &App, conversation_id: &str, recipients: &[String]) {
    if recipients.is_empty() {
        return;
    }
    let updates: Vec<(String, String, i64)> = recipients
        .iter()
        .map(|r| (keys::unread(r), conversation_id.to_string(), 1))
        .collect();
    let counts = match app.store.counters_add_many(&updates).await {
        Ok(counts) => counts,
        Err(error) => {
            tracing::warn!(%conversation_id, %error, "could not bump unread counts");
            return;
        }
    };
    for (recipient, count) in recipients.iter().zip(counts) {
        app.outbox
            .emit(
                rooms::user(recipient),
                events::UNREAD_UPDATED,
                json(&UnreadUpdated {
                    conversation_id: conversation_id.to_string(),
                    count: count.max(0) as u64,
                }),
            )
            .await;
    }
}

// --- Recent-message cache --------------------------------------------------------------

/// Messages per conversation kept in the recent cache: `chat.message_cache_size`, at most
/// one database page (the fill reads one page).
fn cache_size(app: &App) -> usize {
    app.settings
        .chat
        .message_cache_size
        .clamp(1, switchboard_protocol::MAX_PAGE_LIMIT as usize)
}

fn cache_ttl(app: &App) -> Duration {
    Duration::from_secs(app.settings.timers.message_cache_ttl_secs.max(1))
}

fn cached(message: &Message) -> CachedMessage {
    CachedMessage {
        id: message.id.clone(),
        created_at: message.created_at,
        json: serde_json::to_string(message).unwrap_or_default(),
    }
}

/// Adds a new message to its conversation's cache if the cache is warm (a cold cache is
/// filled from the database by the next reader).
async fn cache_add(app: &App, message: &Message) {
    let key = keys::messages(&message.conversation_id);
    if let Err(error) = app
        .store
        .recent_add(&key, &[cached(message)], cache_size(app), cache_ttl(app))
        .await
    {
        // The cache would have a gap: drop it so the next reader refills it.
        tracing::warn!(%key, %error, "could not cache a message; invalidating");
        let _ = app.store.cache_invalidate(&[key]).await;
    }
}

/// Replaces a cached message after an edit, a deletion or a reaction.
async fn cache_update(app: &App, message: &Message) {
    let key = keys::messages(&message.conversation_id);
    let json = serde_json::to_string(message).unwrap_or_default();
    if let Err(error) = app.store.recent_update(&key, &message.id, &json).await {
        tracing::warn!(%key, %error, "could not update a cached message; invalidating");
        let _ = app.store.cache_invalidate(&[key]).await;
    }
}

/// Fills a cold cache with the newest messages from the database. A message committed
/// while the fill was in flight found the cache cold and did not add itself; the catch-up
/// read after the fill adds it (its commit precedes its own add, which preceded the fill).
async fn cache_fill(app: &App, conversation_id: &str) -> AppResult<()> {
    let key = keys::messages(conversation_id);
    let max = cache_size(app);
    let (newest, _) = app
        .db
        .message_history(conversation_id, None, None, Some(max as u32), None)
        .await?;
    let entries: Vec<CachedMessage> = newest
        .iter()
        .cloned()
        .map(|m| cached(&to_wire(m)))
        .collect();
    app.store
        .recent_fill(&key, &entries, max, cache_ttl(app))
        .await?;
    let (missed, _) = app
        .db
        .message_history(
            conversation_id,
            None,
            newest.last().map(|m| m.id.as_str()),
            Some(max as u32),
            None,
        )
        .await?;
    if !missed.is_empty() {
        let entries: Vec<CachedMessage> = missed.into_iter().map(|m| cached(&to_wire(m))).collect();
        app.store
            .recent_add(&key, &entries, max, cache_ttl(app))
            .await?;
    }
    Ok(())
}

/// A history page from the recent cache, or `None` when the cache cannot answer it exactly
/// (cold, a cursor it does not hold, older than what it holds, or hidden messages in a
/// forward page). Reads `limit + 1` entries to know whether more lie beyond the page.
async fn history_from_cache(
    app: &App,
    conversation_id: &str,
    before: Option<&str>,
    after: Option<&str>,
    limit: usize,
    deleted_at: Option<Millis>,
) -> AppResult<Option<(Vec<Message>, bool)>> {
    if !cache_consistent(app, conversation_id).await? {
        return Ok(None);
    }
    let key = keys::messages(conversation_id);
    let page = match app
        .store
        .recent_page(&key, before, after, limit + 1)
        .await?
    {
        Some(page) => page,
        None => {
            cache_fill(app, conversation_id).await?;
            match app
                .store
                .recent_page(&key, before, after, limit + 1)
                .await?
            {
                Some(page) => page,
                None => return Ok(None),
            }
        }
    };
    if !page.complete {
        return Ok(None);
    }
    let mut entries: Vec<Message> = Vec::with_capacity(page.entries.len());
    for entry in page.entries {
        match serde_json::from_str::<Message>(&entry.json) {
            Ok(m) => entries.push(m),
            Err(error) => {
                tracing::warn!(%key, %error, "unreadable cached message; invalidating");
                app.store.cache_invalidate(&[key]).await?;
                return Ok(None);
            }
        }
    }
    let total = entries.len();
    entries.retain(|m| chat::visible(deleted_at, m.created_at));
    let hidden = entries.len() < total;
    if after.is_some() {
        // Hidden messages are the oldest: a forward page would come up short.
        if hidden {
            return Ok(None);
        }
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        Ok(Some((entries, has_more)))
    } else {
        // Backwards: hidden messages are the oldest, so nothing visible lies beyond them.
        let has_more = !hidden && entries.len() > limit;
        if entries.len() > limit {
            entries.drain(..entries.len() - limit);
        }
        Ok(Some((entries, has_more)))
    }
}

// --- Edit, delete, react ---------------------------------------------------------------

/// Loads a message of the conversation that `user_id` may see.
async fn visible_message(
    app: &App,
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
) -> AppResult<(ConversationMeta, switchboard_db::Message)> {
    let meta = conversations::member_of(app, conversation_id, user_id).await?;
    let deleted_at = meta.member(user_id).and_then(|m| m.deleted_at);
    match app.db.get_message(message_id).await? {
        Some(m)
            if m.conversation_id == conversation_id && chat::visible(deleted_at, m.created_at) =>
        {
            Ok((meta, m))
        }
        _ => Err(AppError::not_found("message not found")),
    }
}

/// `message:edit`: the sender only; a deleted message cannot be edited (`CONFLICT`).
pub async fn edit(
    app: &App,
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
    content: &str,
) -> AppResult<Message> {
    chat::check_content(&app.settings.limits, content)?;
    let (_, existing) = visible_message(app, user_id, conversation_id, message_id).await?;
    chat::require_sender(&existing.sender_id, user_id)?;
    let message = to_wire(app.db.edit_message(message_id, content, app.now()).await?);
    cache_update(app, &message).await;
    app.outbox
        .emit(
            rooms::conversation(conversation_id),
            events::MESSAGE_EDITED,
            json(&MessagePayload {
                message: message.clone(),
            }),
        )
        .await;
    Ok(message)
}

/// `message:delete`: the sender only. The message stays in the history as `deleted: true`
/// with empty content. Deleting again answers the same deleted message.
pub async fn delete(
    app: &App,
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
) -> AppResult<Message> {
    let (_, existing) = visible_message(app, user_id, conversation_id, message_id).await?;
    chat::require_sender(&existing.sender_id, user_id)?;
    let already = existing.deleted_at.is_some();
    let message = to_wire(app.db.soft_delete_message(message_id, app.now()).await?);
    if !already {
        cache_update(app, &message).await;
        app.outbox
            .emit(
                rooms::conversation(conversation_id),
                events::MESSAGE_DELETED,
                json(&MessageRef {
                    conversation_id: conversation_id.to_string(),
                    message_id: message_id.to_string(),
                }),
            )
            .await;
    }
    Ok(message)
}

/// `message:react`: toggles the user's emoji on a message; returns all its reactions.
pub async fn react(
    app: &App,
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
    emoji: &str,
) -> AppResult<Vec<Reaction>> {
    chat::check_emoji(&app.settings.limits, emoji)?;
    let (_, mut existing) = visible_message(app, user_id, conversation_id, message_id).await?;
    if existing.deleted_at.is_some() {
        return Err(DomainError::Conflict("the message was deleted".into()).into());
    }
    let reactions = app
        .db
        .toggle_reaction(message_id, user_id, emoji, app.now())
        .await?;
    existing.reactions = reactions.clone();
    cache_update(app, &to_wire(existing)).await;
    let reactions = reactions_to_wire(reactions);
    app.outbox
        .emit(
            rooms::conversation(conversation_id),
            events::MESSAGE_REACTION_UPDATED,
            json(&MessageReactionUpdated {
                conversation_id: conversation_id.to_string(),
                message_id: message_id.to_string(),
                reactions: reactions.clone(),
            }),
        )
        .await;
    Ok(reactions)
}

// --- History ---------------------------------------------------------------------------

/// `message:history`: a page in ascending order and whether more lie beyond it in the
/// requested direction (older without a cursor or with `before`, newer with `after`).
/// Only messages newer than the user's deletion mark are returned.
pub async fn history(
    app: &App,
    user_id: &str,
    conversation_id: &str,
    before: Option<&str>,
    after: Option<&str>,
    limit: Option<u32>,
) -> AppResult<(Vec<Message>, bool)> {
    let meta = conversations::member_of(app, conversation_id, user_id).await?;
    let deleted_at = meta.member(user_id).and_then(|m| m.deleted_at);
    let page = switchboard_protocol::page_limit(limit) as usize;
    match history_from_cache(app, conversation_id, before, after, page, deleted_at).await {
        Ok(Some(found)) => {
            app.messages
                .stats
                .history_from_cache
                .fetch_add(1, Ordering::Relaxed);
            return Ok(found);
        }
        Ok(None) => {}
        Err(error) => {
            tracing::debug!(%conversation_id, %error, "history cache unusable; reading the database")
        }
    }
    app.messages
        .stats
        .history_from_db
        .fetch_add(1, Ordering::Relaxed);
    let (messages, has_more) = app
        .db
        .message_history(
            conversation_id,
            before,
            after,
            Some(page as u32),
            deleted_at,
        )
        .await
        .map_err(|e| match e {
            DbError::NotFound => AppError::not_found("the cursor message was not found"),
            other => other.into(),
        })?;
    Ok((messages.into_iter().map(to_wire).collect(), has_more))
}

// --- Read marks and unread counts ------------------------------------------------------

fn counts_from(fields: Vec<(String, i64)>) -> BTreeMap<String, u64> {
    fields
        .into_iter()
        .filter(|(field, count)| field != UNREAD_READY && *count > 0)
        .map(|(field, count)| (field, count as u64))
        .collect()
}

/// `unread:get`: the user's non-zero unread counts, one store round trip once initialised.
pub async fn unread_counts(app: &App, user_id: &str) -> AppResult<BTreeMap<String, u64>> {
    let key = keys::unread(user_id);
    let fields = app.store.counters(&key).await?;
    if fields.iter().any(|(field, _)| field == UNREAD_READY) {
        return Ok(counts_from(fields));
    }
    initialise_unread(app, user_id).await
}

/// Initialises a user's counters from the database after the store lost them (a memory
/// store restarted, a Redis flush). The first caller claims the marker; a concurrent caller
/// reads what is there. Increments made before (for messages the database already counts)
/// are absorbed by setting each counter to the database's value.
async fn initialise_unread(app: &App, user_id: &str) -> AppResult<BTreeMap<String, u64>> {
    let key = keys::unread(user_id);
    if app.store.counter_add(&key, UNREAD_READY, 1).await? != 1 {
        return Ok(counts_from(app.store.counters(&key).await?));
    }
    let stored = match app.db.unread_counts(user_id).await {
        Ok(counts) => counts,
        Err(error) => {
            // Let the next read try again.
            let _ = app.store.counter_reset(&key, UNREAD_READY).await;
            return Err(error.into());
        }
    };
    let current: BTreeMap<String, i64> = app
        .store
        .counters(&key)
        .await?
        .into_iter()
        .filter(|(field, _)| field != UNREAD_READY)
        .collect();
    let mut out = BTreeMap::new();
    let fields: std::collections::BTreeSet<&String> = stored.keys().chain(current.keys()).collect();
    for field in fields {
        let want = stored.get(field).copied().unwrap_or(0).max(0);
        let have = current.get(field).copied().unwrap_or(0);
        if want != have {
            app.store.counter_add(&key, field, want - have).await?;
        }
        if want > 0 {
            out.insert(field.clone(), want as u64);
        }
    }
    tracing::debug!(%user_id, conversations = out.len(), "unread counters initialised from the database");
    Ok(out)
}

/// Clears a user's unread count of one conversation (read, left, removed, deleted).
pub async fn clear_unread(app: &App, user_id: &str, conversation_id: &str) {
    if let Err(error) = app
        .store
        .counter_reset(&keys::unread(user_id), conversation_id)
        .await
    {
        tracing::warn!(%user_id, %error, "could not clear an unread count");
    }
}

/// `message:read`: everything up to now is read. Tells the conversation
/// (`conversation:read`) and the reader's devices (`unread:updated` with 0).
pub async fn mark_read(app: &App, user_id: &str, conversation_id: &str) -> AppResult<Millis> {
    conversations::member_of(app, conversation_id, user_id).await?;
    let now = app.now();
    // The counter first: a message landing in between is counted by both (shows as
    // unread), never by neither.
    app.store
        .counter_reset(&keys::unread(user_id), conversation_id)
        .await?;
    app.db.mark_read(conversation_id, user_id, now).await?;
    app.outbox
        .emit(
            rooms::conversation(conversation_id),
            events::CONVERSATION_READ,
            json(&ConversationRead {
                conversation_id: conversation_id.to_string(),
                user_id: user_id.to_string(),
                read_at: now,
            }),
        )
        .await;
    app.outbox
        .emit(
            rooms::user(user_id),
            events::UNREAD_UPDATED,
            json(&UnreadUpdated {
                conversation_id: conversation_id.to_string(),
                count: 0,
            }),
        )
        .await;
    Ok(now)
}
