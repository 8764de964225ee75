//! The shared state of one running instance: configuration, backends, and what the services
//! need to reach connected clients.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchboard_db::Db;
use switchboard_domain::Millis;
use switchboard_domain::time::Clock;
use switchboard_store::StateStore;
use switchboard_store::bus::Bus;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::jobs::TimerRegistry;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::services::messages::MessageWriter;
use crate::services::notifications::{NotificationStats, Notifier};
use crate::services::online_list::DirtyLists;
use crate::services::users::NameCache;

/// Everything a service or handler needs, built once at start-up and shared by `Arc`.
pub struct App {
    pub settings: Settings,
    pub store: Arc<dyn StateStore>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub auth: Authenticator,
    pub metrics: Metrics,
    /// Names this instance in logs, `/stats`, session records and timer claims.
    pub instance_id: String,
    pub outbox: Arc<dyn Outbox>,
    /// Messages between the instances of the deployment.
    pub bus: Arc<dyn Bus>,
    pub online_lists: DirtyLists,
    /// Display names seen recently (see `services::users`).
    pub names: NameCache,
    pub local: LocalSockets,
    pub timers: TimerRegistry,
    /// Webhook client and delivery slots of the notification worker.
    pub notifier: Notifier,
    /// Counters of the recurring jobs, shown on `/stats`.
    pub job_stats: JobStats,
    pub started_at: Instant,
    /// The group-commit writer of `message:send` (its task starts on the first message).
    pub messages: MessageWriter,
    /// The SFU's workers (started on first use) and who owns which media.
    pub media: crate::services::media::MediaHub,
}

/// The connections an instance is built on.
pub struct Backends {
    pub store: Arc<dyn StateStore>,
    pub db: Db,
    pub bus: Arc<dyn Bus>,
}

impl App {
    /// Assembles an instance's state. `Application::build` calls this with real
    /// connections; service tests call it with a recording outbox and a manual clock.
    pub fn new(
        settings: Settings,
        backends: Backends,
        clock: Arc<dyn Clock>,
        outbox: Arc<dyn Outbox>,
    ) -> SharedApp {
        let Backends { store, db, bus } = backends;
        let auth = Authenticator::new(
            settings.auth.jwt_secret.expose(),
            settings.server.dev,
            settings.limits.clone(),
        );
        let instance_id = settings.server.instance_id.clone();
        let messages = MessageWriter::new(settings.chat.max_batch);
        Arc::new(App {
            settings,
            store,
            db,
            clock,
            auth,
            metrics: Metrics::new(),
            instance_id,
            outbox,
            bus,
            online_lists: Default::default(),
            names: Default::default(),
            local: LocalSockets::default(),
            timers: Default::default(),
            notifier: Notifier::default(),
            job_stats: JobStats::default(),
            started_at: Instant::now(),
            messages,
            media: Default::default(),
        })
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }
}

/// A socket connected to this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSocket {
    pub user_id: String,
    pub device_id: String,
}

/// The sockets connected to this instance, for the presence heartbeat and `/stats`.
///
/// A std mutex: every critical section is a map insert, remove or copy with no `.await`
/// inside, so an async mutex would only add cost.
#[derive(Debug, Default)]
pub struct LocalSockets(Mutex<HashMap<String, LocalSocket>>);

impl LocalSockets {
    pub fn insert(&self, socket_id: String, socket: LocalSocket) {
        self.0
            .lock()
            .expect("local sockets lock")
            .insert(socket_id, socket);
    }

    pub fn remove(&self, socket_id: &str) -> Option<LocalSocket> {
        self.0.lock().expect("local sockets lock").remove(socket_id)
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("local sockets lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The users with at least one socket here.
    pub fn users(&self) -> HashSet<String> {
        self.0
            .lock()
            .expect("local sockets lock")
            .values()
            .map(|s| s.user_id.clone())
            .collect()
    }

    /// Distinct (user, device) pairs connected here.
    pub fn devices(&self) -> Vec<(String, String)> {
        let guard = self.0.lock().expect("local sockets lock");
        let mut pairs: Vec<(String, String)> = guard
            .values()
            .map(|s| (s.user_id.clone(), s.device_id.clone()))
            .collect();
        drop(guard);
        pairs.sort();
        pairs.dedup();
        pairs
    }
}

pub type SharedApp = Arc<App>;

/// What this instance's recurring jobs did since start (seed 001's cleanup service stats).
#[derive(Debug, Default)]
pub struct JobStats {
    pub session_sweep: RunStats,
    pub notifications: NotificationStats,
}

/// Runs of a periodic job on this instance.
#[derive(Debug, Default)]
pub struct RunStats {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    /// Unix ms of the last run, 0 if none.
    pub last_run_at: AtomicI64,
    /// What the last successful run reported (for the sweep: entries removed).
    pub last_result: AtomicU64,
}

impl RunStats {
    pub fn ran(&self, now: Millis, outcome: Result<u64, ()>) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.last_run_at.store(now, Ordering::Relaxed);
        match outcome {
            Ok(result) => self.last_result.store(result, Ordering::Relaxed),
            Err(()) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let at = self.last_run_at.load(Ordering::Relaxed);
        serde_json::json!({
            "runs": self.runs.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "lastRunAt": (at > 0).then_some(at),
            "lastResult": self.last_result.load(Ordering::Relaxed),
        })
    }
}
