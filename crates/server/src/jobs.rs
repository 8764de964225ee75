//! Background work: the presence heartbeat, the presence reaper, and the deadline-queue
//! runner that fires timers exactly once across instances.
//!
//! Each loop is a thin driver: it reads the clock, calls one store operation and dispatches
//! what comes back. The exactly-once guarantee lives in the store's claim operation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use switchboard_store::Timer;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::SharedApp;
use crate::metrics::Metrics;
use crate::services::{online_list, presence, sessions};

/// How often the deadline queue is polled. Timers fire within this much of their deadline.
const TIMER_POLL: Duration = Duration::from_millis(100);
/// Timers claimed per poll.
const TIMER_BATCH: usize = 128;
/// A claimed timer whose instance dies is retried by another instance after this long.
const TIMER_LEASE: Duration = Duration::from_secs(30);
/// How often expired presence is swept.
const REAP_EVERY: Duration = Duration::from_secs(1);

pub type TimerHandler = Arc<dyn Fn(SharedApp, Timer) -> BoxFuture<'static, ()> + Send + Sync>;

/// Which code runs for which timer kind. Features register their kinds at start-up.
#[derive(Default)]
pub struct TimerRegistry(RwLock<HashMap<String, TimerHandler>>);

impl TimerRegistry {
    pub fn register(&self, kind: impl Into<String>, handler: TimerHandler) {
        self.0
            .write()
            .expect("timer registry lock")
            .insert(kind.into(), handler);
    }

    fn get(&self, kind: &str) -> Option<TimerHandler> {
        self.0
            .read()
            .expect("timer registry lock")
            .get(kind)
            .cloned()
    }
}

/// Starts every background loop; they stop when `stop` is cancelled.
pub fn spawn_all(app: SharedApp, stop: CancellationToken) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(heartbeat(app.clone(), stop.clone()));
    set.spawn(reaper(app.clone(), stop.clone()));
    set.spawn(online_list::follow_bus(app.clone(), stop.clone()));
    set.spawn(online_list::flush_periodically(app.clone(), stop.clone()));
    set.spawn(timer_runner(app, stop));
    set
}

/// Keeps the presence of this instance's sockets alive. If the instance dies the entries
/// lapse after the presence TTL and its users go offline by themselves.
async fn heartbeat(app: SharedApp, stop: CancellationToken) {
    let ttl = app.settings.timers.presence_ttl();
    let every = (ttl / 3).max(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let devices = app.local.devices();
        if devices.is_empty() {
            continue;
        }
        if let Err(error) = sessions::refresh_connected(&app, &devices).await {
            tracing::warn!(%error, "could not extend device sessions");
        }
        let unknown = match app.store.presence_refresh(&devices, app.now(), ttl).await {
            Ok(unknown) => unknown,
            Err(error) => {
                tracing::warn!(%error, "presence heartbeat failed");
                continue;
            }
        };
        // Devices the store no longer knows were reaped while this instance could not
        // refresh them (a stall, a Redis outage): they come back through a full connect, so
        // the user is reported online again rather than silently resurrected.
        for (user_id, device_id) in unknown {
            if let Err(error) = sessions::mark_connected(&app, &user_id, &user_id, &device_id).await
            {
                tracing::warn!(%user_id, %error, "could not restore lapsed presence");
            }
        }
    }
}

/// Sweeps devices whose liveness lapsed (their instance died). Each user who went offline
/// is reported to exactly one instance.
async fn reaper(app: SharedApp, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REAP_EVERY) => {}
        }
        match app.store.presence_reap_expired(app.now(), 256).await {
            Ok(users) if users.is_empty() => {}
            Ok(users) => {
                tracing::info!(count = users.len(), "presence expired");
                if let Err(error) = presence::users_expired(&app, &users).await {
                    tracing::warn!(%error, "could not announce expired presence");
                }
                for user_id in &users {
                    if let Err(error) = crate::services::rooms::user_gone(&app, user_id).await {
                        tracing::warn!(%user_id, %error, "could not mark the room participant reconnecting");
                    }
                    if let Err(error) =
                        crate::services::conversation_calls::user_gone(&app, user_id).await
                    {
                        tracing::warn!(%user_id, %error, "could not mark the call participant reconnecting");
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "presence sweep failed"),
        }
    }
}

/// Claims due timers and runs their handlers.
async fn timer_runner(app: SharedApp, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(jittered(TIMER_POLL)) => {}
        }
        let due = match app
            .store
            .timers_claim_due(app.now(), TIMER_BATCH, &app.instance_id, TIMER_LEASE)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::debug!(%error, "timer poll failed");
                continue;
            }
        };
        for timer in due {
            fire(&app, timer).await;
        }
    }
}

/// Spreads the polls of different instances apart, so they do not all hit the store in
/// the same instant.
fn jittered(base: Duration) -> Duration {
    let spread = base.as_millis() as u64 / 5;
    base - Duration::from_millis(spread) + Duration::from_millis(rand::random_range(0..=2 * spread))
}

async fn fire(app: &SharedApp, timer: Timer) {
    let id = timer.id.clone();
    let kind = timer.kind.clone();
    match app.timers.get(&kind) {
        Some(handler) => handler(app.clone(), timer).await,
        None => tracing::warn!(%id, %kind, "no handler for timer kind; dropping it"),
    }
    app.metrics
        .timers_fired
        .get_or_create(&Metrics::reason(kind.as_str()))
        .inc();
    if let Err(error) = app.store.timer_complete(&id, &app.instance_id).await {
        // The lease runs out and another instance retries; handlers are idempotent.
        tracing::warn!(%id, %error, "could not complete timer");
    }
}
