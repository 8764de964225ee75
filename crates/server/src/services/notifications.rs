//! Push notifications (seed 001's `queuePushNotification` and the 30 s notification job).
//!
//! [`notify`] records a notification (database row + the user's capped list in the store,
//! `notifications:{userId}`, newest first, `notifications.per_user` entries) and, when a
//! webhook is configured, queues its delivery on the store's deadline queue:
//!
//! - **high** priority (incoming and missed calls): a timer due now, sent within one poll;
//! - **normal** priority (messages): a timer due at the next multiple of
//!   `timers.notification_interval_secs` (Unix epoch aligned), so everything queued in one
//!   interval goes out together, as the seed's 30 s job did, on whichever instance claims it.
//!
//! The queue gives every delivery to exactly one instance. The handler first re-arms the same
//! timer as a guard (due after the request timeout plus a margin, counting as the next
//! attempt), then POSTs in a background task, so a slow webhook never holds up other timers
//! and a delivery whose instance dies is retried by another. The outcome settles the timer:
//! 2xx cancels it; a failure reschedules it with exponential backoff
//! (`backoff_initial_ms`, doubling, at most `backoff_max_ms`) until `max_attempts`, after
//! which the last body goes to the dead-letter table (`webhook_dead_letters`) with a warning.
//! A notification leaves the queue only delivered or dead-lettered, never silently.
//! Delivery is at-least-once: receivers deduplicate on `X-Switchboard-Delivery` (the
//! notification id). Wire format: [`crate::webhook`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_db::{NewNotification, Notification};
use switchboard_domain::Millis;
use switchboard_store::{Timer, keys};
use tokio::sync::Semaphore;

use crate::app::{App, SharedApp};
use crate::error::{AppError, AppResult};
use crate::webhook::{self, WebhookClient};

pub use switchboard_db::NotificationPriority as Priority;

/// Timer kind of a high-priority delivery (sent at once).
pub const HIGH_TIMER: &str = "notification_high";
/// Timer kind of a normal-priority delivery (sent at the next interval boundary).
pub const NORMAL_TIMER: &str = "notification_normal";
/// `X-Switchboard-Event` of notification deliveries.
pub const WEBHOOK_EVENT: &str = "notification";

/// The per-user list outlives the user's last notification by this long.
const LIST_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long after an attempt's request timeout its guard fires (the attempt is presumed lost).
const GUARD_MARGIN: Duration = Duration::from_secs(5);
/// Deliveries in flight per instance; beyond it a due delivery waits [`BUSY_DELAY`].
const MAX_IN_FLIGHT: usize = 64;
const BUSY_DELAY: Duration = Duration::from_millis(250);
/// Page size of the list endpoints when no `limit` is given.
const DEFAULT_PAGE: usize = 50;
/// What the guard records as the error if it fires.
const INTERRUPTED: &str = "delivery interrupted (instance stopped or attempt outlived its lease)";

/// A notification to record and push. The chat and calls services build these.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotice {
    pub user_id: String,
    /// `message`, `incoming_call`, `missed_call`, ...
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Anything the client needs to act on it (conversation id, call id, ...).
    pub data: Value,
    pub priority: Priority,
}

/// A recorded notification: an entry of the per-user list and the webhook body's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: Value,
    pub priority: Priority,
    pub created_at: Millis,
}

impl From<Notification> for Notice {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            user_id: n.user_id,
            kind: n.kind,
            title: n.title,
            body: n.body,
            data: n.data,
            priority: n.priority,
            created_at: n.created_at,
        }
    }
}

/// A delivery timer's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    notice: Notice,
    /// The attempt this timer makes, from 1.
    attempt: u32,
    #[serde(default)]
    last_error: Option<String>,
}

/// The webhook's JSON body: the notice plus the attempt number.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookBody<'a> {
    #[serde(flatten)]
    notice: &'a Notice,
    attempt: u32,
}

/// Per-instance delivery machinery: the HTTP client (built on first use from the settings)
/// and the cap on concurrent deliveries.
pub struct Notifier {
    client: OnceLock<WebhookClient>,
    permits: Arc<Semaphore>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            client: OnceLock::new(),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl Notifier {
    fn client(&self, app: &App) -> &WebhookClient {
        self.client
            .get_or_init(|| WebhookClient::new(request_timeout(app)))
    }
}

/// What this instance's notification worker did since start, for `/stats`.
#[derive(Debug, Default)]
pub struct NotificationStats {
    /// Notifications recorded (per-user list + database).
    pub recorded: AtomicU64,
    /// Deliveries queued on the deadline queue.
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    /// Failed attempts that were rescheduled.
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub in_flight: AtomicI64,
    /// Unix ms of the last successful delivery, 0 if none.
    pub last_delivered_at: AtomicI64,
    pub last_error: Mutex<Option<String>>,
}

impl NotificationStats {
    pub fn snapshot(&self) -> Value {
        let at = self.last_delivered_at.load(Ordering::Relaxed);
        json!({
            "recorded": self.recorded.load(Ordering::Relaxed),
            "queued": self.queued.load(Ordering::Relaxed),
            "delivered": self.delivered.load(Ordering::Relaxed),
            "retried": self.retried.load(Ordering::Relaxed),
            "deadLettered": self.dead_lettered.load(Ordering::Relaxed),
            "inFlight": self.in_flight.load(Ordering::Relaxed),
            "lastDeliveredAt": (at > 0).then_some(at),
            "lastError": self.last_error.lock().expect("stats lock").clone(),
        })
    }

    fn failed(&self, error: &str) {
        *self.last_error.lock().expect("stats lock") = Some(error.to_owned());
    }
}

fn request_timeout(app: &App) -> Duration {
    Duration::from_secs(app.settings.notifications.request_timeout_secs.max(1))
}

fn max_attempts(app: &App) -> u32 {
    app.settings.notifications.max_attempts.max(1)
}

fn webhook_configured(app: &App) -> bool {
    !app.settings.notifications.webhook_url.trim().is_empty()
}

/// The delay after failed attempt `attempt` (from 1): initial, doubling, capped.
pub fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_millis(
        initial_ms
            .saturating_mul(factor)
            .min(max_ms.max(initial_ms)),
    )
}

/// When a normal-priority notification created at `now` goes out: the next multiple of
/// `interval` after `now`.
pub fn next_batch_at(now: Millis, interval: Duration) -> Millis {
    let every = (interval.as_millis() as i64).max(1);
    (now.div_euclid(every) + 1) * every
}

/// Records a notification and queues its delivery. The trigger for the chat and calls code.
pub async fn notify(app: &App, n: NewNotice) -> AppResult<()> {
    record(app, n).await.map(|_| ())
}

/// Like [`notify`], only if the user has no connected device (seed 001: a message for an
/// offline member, an incoming call to a user who is not connected). Returns whether it did.
pub async fn notify_if_offline(app: &App, n: NewNotice) -> AppResult<bool> {
    let online = app
        .store
        .presence_get(std::slice::from_ref(&n.user_id), app.now())
        .await?
        .pop()
        .flatten()
        .is_some_and(|p| p.is_online());
    if online {
        return Ok(false);
    }
    notify(app, n).await?;
    Ok(true)
}

/// Sends `notice(user)` to each of `user_ids` that has no connected device, with one store
/// round trip for all of them. Returns how many were notified.
pub async fn notify_offline(
    app: &App,
    user_ids: &[String],
    notice: impl Fn(&str) -> NewNotice,
) -> AppResult<usize> {
    if user_ids.is_empty() {
        return Ok(0);
    }
    let entries = app.store.presence_get(user_ids, app.now()).await?;
    let mut sent = 0;
    for (user_id, entry) in user_ids.iter().zip(entries) {
        if entry.is_some_and(|p| p.is_online()) {
            continue;
        }
        notify(app, notice(user_id)).await?;
        sent += 1;
    }
    Ok(sent)
}

/// [`notify`], returning what was recorded.
pub async fn record(app: &App, n: NewNotice) -> AppResult<Notice> {
    app.settings.limits.check_id("userId", &n.user_id)?;
    let now = app.now();
    let stored = app
        .db
        .insert_notification(&NewNotification {
            user_id: n.user_id,
            kind: n.kind,
            title: n.title,
            body: n.body,
            data: n.data,
            priority: n.priority,
            created_at: now,
        })
        .await?;
    let notice = Notice::from(stored);
    let stats = &app.job_stats.notifications;
    stats.recorded.fetch_add(1, Ordering::Relaxed);
    let entry = serde_json::to_string(&notice).map_err(|e| AppError::Internal(e.to_string()))?;
    app.store
        .log_push(
            &keys::notifications(&notice.user_id),
            &entry,
            app.settings.notifications.per_user.max(1),
            Some(LIST_TTL),
        )
        .await?;
    if webhook_configured(app) {
        let (kind, due) = match notice.priority {
            Priority::High => (HIGH_TIMER, now),
            Priority::Normal => (
                NORMAL_TIMER,
                next_batch_at(
                    now,
                    Duration::from_secs(app.settings.timers.notification_interval_secs.max(1)),
                ),
            ),
        };
        let pending = Pending {
            notice: notice.clone(),
            attempt: 1,
            last_error: None,
        };
        if let Err(error) = schedule(app, kind, &pending, due).await {
            tracing::warn!(id = %notice.id, user_id = %notice.user_id, %error, "notification recorded but its delivery could not be queued");
            return Err(error);
        }
        stats.queued.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = %notice.id, user_id = %notice.user_id, kind, due, "notification queued");
    }
    Ok(notice)
}

fn timer_id(notification_id: &str) -> String {
    format!("notification:{notification_id}")
}

async fn schedule(app: &App, kind: &str, pending: &Pending, due_at: Millis) -> AppResult<()> {
    let payload = serde_json::to_string(pending).map_err(|e| AppError::Internal(e.to_string()))?;
    app.store
        .timer_schedule(&Timer {
            id: timer_id(&pending.notice.id),
            kind: kind.to_owned(),
            payload,
            due_at,
        })
        .await?;
    Ok(())
}

/// The handler of [`HIGH_TIMER`] and [`NORMAL_TIMER`]: one delivery attempt.
pub async fn on_timer(app: SharedApp, timer: Timer) {
    let pending: Pending = match serde_json::from_str(&timer.payload) {
        Ok(p) => p,
        Err(error) => {
            tracing::warn!(id = %timer.id, %error, "unreadable notification timer; dead-lettering it");
            let url = app.settings.notifications.webhook_url.clone();
            let reason = format!("unreadable queue entry: {error}");
            if let Err(error) = app
                .db
                .insert_dead_letter(&url, &timer.payload, 0, &reason, app.now())
                .await
            {
                tracing::error!(id = %timer.id, %error, payload = %timer.payload, "could not dead-letter an unreadable notification timer");
            }
            return;
        }
    };
    if !webhook_configured(&app) {
        let attempts = i64::from(pending.attempt.saturating_sub(1));
        dead_letter(
            &app,
            &timer.kind,
            &pending,
            attempts,
            "no webhook_url configured",
        )
        .await;
        return;
    }
    if pending.attempt > max_attempts(&app) {
        // A guard fired after the last attempt was lost.
        let error = pending
            .last_error
            .clone()
            .unwrap_or_else(|| INTERRUPTED.into());
        dead_letter(
            &app,
            &timer.kind,
            &pending,
            i64::from(max_attempts(&app)),
            &error,
        )
        .await;
        return;
    }
    let Ok(permit) = app.notifier.permits.clone().try_acquire_owned() else {
        let due = app.now() + BUSY_DELAY.as_millis() as i64;
        if let Err(error) = schedule(&app, &timer.kind, &pending, due).await {
            tracing::warn!(id = %pending.notice.id, %error, "could not postpone a delivery");
        }
        return;
    };
    let guard = Pending {
        attempt: pending.attempt + 1,
        last_error: Some(INTERRUPTED.into()),
        ..pending.clone()
    };
    let guard_due = app.now() + (request_timeout(&app) + GUARD_MARGIN).as_millis() as i64;
    match schedule(&app, &timer.kind, &guard, guard_due).await {
        Ok(()) => {
            tokio::spawn(async move {
                let _permit = permit;
                attempt(&app, &timer.kind, pending).await;
            });
        }
        Err(error) => {
            // Without a guard the claim is all that protects the delivery: attempt inline.
            tracing::warn!(id = %pending.notice.id, %error, "could not arm the delivery guard");
            attempt(&app, &timer.kind, pending).await;
            drop(permit);
        }
    }
}

/// Sends one attempt and settles the timer: cancel, retry later, or dead-letter.
async fn attempt(app: &App, kind: &str, pending: Pending) {
    let settings = &app.settings.notifications;
    let stats = &app.job_stats.notifications;
    let id = pending.notice.id.clone();
    let body = webhook_body(&pending.notice, pending.attempt);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let result = app
        .notifier
        .client(app)
        .post(webhook::Delivery {
            url: settings.webhook_url.trim(),
            secret: settings.webhook_secret.expose().as_bytes(),
            event: WEBHOOK_EVENT,
            delivery_id: &id,
            attempt: pending.attempt,
            body,
            timestamp: app.now(),
        })
        .await;
    stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok(status) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            stats.last_delivered_at.store(app.now(), Ordering::Relaxed);
            tracing::debug!(%id, attempt = pending.attempt, status, "notification delivered");
            settle(app, &id).await;
        }
        Err(error) => {
            stats.failed(&error);
            if pending.attempt >= max_attempts(app) {
                dead_letter(app, kind, &pending, i64::from(pending.attempt), &error).await;
                return;
            }
            let delay = backoff(
                settings.backoff_initial_ms,
                settings.backoff_max_ms,
                pending.attempt,
            );
            let next = Pending {
                attempt: pending.attempt + 1,
                last_error: Some(error.clone()),
                ..pending
            };
            stats.retried.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%id, attempt = next.attempt - 1, %error, retry_in_ms = delay.as_millis() as u64, "notification delivery failed; retrying");
            if let Err(e) = schedule(app, kind, &next, app.now() + delay.as_millis() as i64).await {
                // The guard is still armed: the retry happens when it fires.
                tracing::warn!(%id, error = %e, "could not reschedule a delivery; its guard will retry it");
            }
        }
    }
}

fn webhook_body(notice: &Notice, attempt: u32) -> String {
    serde_json::to_string(&WebhookBody { notice, attempt }).expect("a notice serialises to JSON")
}

/// Removes the delivery from the queue (delivered or dead-lettered).
async fn settle(app: &App, notification_id: &str) {
    if let Err(error) = app.store.timer_cancel(&timer_id(notification_id)).await {
        // The guard fires later and the receiver sees a duplicate delivery id.
        tracing::warn!(id = %notification_id, %error, "could not remove a settled delivery");
    }
}

/// Parks a delivery that ran out of attempts. If the database refuses, the delivery stays
/// queued and this is tried again later: nothing is dropped silently.
async fn dead_letter(app: &App, kind: &str, pending: &Pending, attempts: i64, error: &str) {
    let settings = &app.settings.notifications;
    let id = &pending.notice.id;
    let last_attempt = u32::try_from(attempts.max(1)).unwrap_or(u32::MAX);
    let body = webhook_body(&pending.notice, last_attempt);
    match app
        .db
        .insert_dead_letter(
            settings.webhook_url.trim(),
            &body,
            attempts,
            error,
            app.now(),
        )
        .await
    {
        Ok(letter) => {
            app.job_stats
                .notifications
                .dead_lettered
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%id, user_id = %pending.notice.user_id, attempts, last_error = %error, dead_letter_id = %letter.id, "notification moved to the dead-letter list");
            settle(app, id).await;
        }
        Err(db_error) => {
            tracing::error!(%id, error = %db_error, "could not dead-letter a notification; keeping it queued");
            let again = Pending {
                attempt: max_attempts(app) + 1,
                last_error: Some(error.to_owned()),
                ..pending.clone()
            };
            let due = app.now() + settings.backoff_max_ms.max(1_000) as i64;
            if let Err(e) = schedule(app, kind, &again, due).await {
                tracing::error!(%id, error = %e, "could not keep an undeliverable notification queued");
            }
        }
    }
}

/// A page of a user's list, newest first, and whether older entries exist. `before` is a
/// notification id from the list. The list is the store's capped `notifications:{userId}`;
/// if the store has lost it (a restarted memory store), the newest `per_user` rows of the
/// database are served instead.
pub async fn list(
    app: &App,
    user_id: &str,
    before: Option<&str>,
    limit: Option<usize>,
) -> AppResult<(Vec<Notice>, bool)> {
    app.settings.limits.check_id("userId", user_id)?;
    let per_user = app.settings.notifications.per_user.max(1);
    let entries = app
        .store
        .log_range(&keys::notifications(user_id), per_user)
        .await?;
    let mut all: Vec<Notice> = entries
        .iter()
        .filter_map(|e| match serde_json::from_str(e) {
            Ok(n) => Some(n),
            Err(error) => {
                tracing::warn!(%user_id, %error, "unreadable notification list entry");
                None
            }
        })
        .collect();
    if all.is_empty() {
        let cap = u32::try_from(per_user).unwrap_or(u32::MAX);
        let (rows, _) = app.db.list_notifications(user_id, None, Some(cap)).await?;
        all = rows.into_iter().map(Notice::from).collect();
        all.truncate(per_user);
    }
    let start = match before {
        None => 0,
        Some(id) => {
            all.iter()
                .position(|n| n.id == id)
                .ok_or_else(|| AppError::not_found("no such notification"))?
                + 1
        }
    };
    let limit = match limit {
        None | Some(0) => DEFAULT_PAGE,
        Some(n) => n,
    }
    .min(per_user);
    let rest = all.get(start..).unwrap_or_default();
    let has_more = rest.len() > limit;
    Ok((rest.iter().take(limit).cloned().collect(), has_more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = |a| backoff(100, 1_000, a).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5)],
            [100, 200, 400, 800, 1_000]
        );
        assert_eq!(ms(200), 1_000);
    }

    #[test]
    fn normal_notifications_wait_for_the_next_boundary() {
        let every = Duration::from_secs(30);
        assert_eq!(next_batch_at(0, every), 30_000);
        assert_eq!(next_batch_at(29_999, every), 30_000);
        assert_eq!(next_batch_at(30_000, every), 60_000);
    }

    #[test]
    fn the_webhook_body_is_the_notice_plus_the_attempt() {
        let notice = Notice {
            id: "n1".into(),
            user_id: "u1".into(),
            kind: "message".into(),
            title: "t".into(),
            body: "b".into(),
            data: json!({"conversationId": "c1"}),
            priority: Priority::High,
            created_at: 5,
        };
        let body: Value = serde_json::from_str(&webhook_body(&notice, 2)).unwrap();
        assert_eq!(
            body,
            json!({"id": "n1", "userId": "u1", "kind": "message", "title": "t", "body": "b",
                   "data": {"conversationId": "c1"}, "priority": "high", "createdAt": 5, "attempt": 2})
        );
    }
}
