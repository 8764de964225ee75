//! Building and running one instance: `Application::build(settings)`, `.port()`,
//! `.run_until_stopped(shutdown)`. Tests start it on port 0 with their own backends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::layer::SocketIoLayer;
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use switchboard_db::{Db, DbOptions};
use switchboard_domain::time::{Clock, SystemClock};
use switchboard_store::StateStore;
use switchboard_store::bus::{Bus, MemoryBus, RedisBus};
use switchboard_store::memory::MemoryStore;
use switchboard_store::redis::{RedisOptions, RedisStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::adapter::AdapterDriver;
use crate::app::{App, Backends, SharedApp};
use crate::config::{Settings, StoreBackend, redact_url};
use crate::gateway;
use crate::http;
use crate::jobs::{self, TimerHandler};
use crate::services::{calls, notifications, sessions, typing};

/// Pending connections the kernel may queue before `accept` (still capped by
/// `net.core.somaxconn`). Bursts of reconnecting clients (a deploy, a network blip, the
/// load generator's connect phase) overflow a short queue, and each dropped SYN then costs
/// its client a 1-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` like `TcpListener::bind`, with [`LISTEN_BACKLOG`].
fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    app: SharedApp,
    /// The Socket.IO adapter's Redis connection, kept alive by a background ping.
    adapter_driver: Option<AdapterDriver>,
}

impl Application {
    /// Connects the backends, applies migrations, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        mut settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        if !settings.server.dev && settings.auth.jwt_secret.is_empty() {
            anyhow::bail!(
                "auth.jwt_secret (SWITCHBOARD_AUTH__JWT_SECRET) is required outside dev mode"
            );
        }
        if settings.server.instance_id.is_empty() {
            settings.server.instance_id =
                format!("sb-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        }
        let store = connect_store(&settings, clock.clone()).await?;
        let bus: Arc<dyn Bus> = match settings.store.backend {
            StoreBackend::Memory => Arc::new(MemoryBus::new()),
            StoreBackend::Redis => Arc::new(
                RedisBus::connect(settings.store.redis_url.expose(), &settings.store.prefix)
                    .await
                    .with_context(|| {
                        format!(
                            "connecting the instance bus to {}",
                            redact_url(settings.store.redis_url.expose())
                        )
                    })?,
            ),
        };
        let db = connect_db(&settings).await?;
        let public_users = settings.presence.public_max_users;
        if settings.presence_public() {
            let known = db.count_users().await.context("counting users")?;
            if known as usize > public_users {
                anyhow::bail!(
                    "presence.public is refused with {known} users (presence.public_max_users = {public_users})"
                );
            }
        }

        let builder = SocketIo::builder()
            .max_buffer_size(settings.server.socket_buffer)
            .max_payload(settings.server.max_payload_bytes)
            .ping_interval(Duration::from_secs(settings.server.ping_interval_secs))
            .ping_timeout(Duration::from_secs(settings.server.ping_timeout_secs));

        let mut adapter_driver = None;
        let (router, app) = match settings.store.backend {
            StoreBackend::Memory => {
                let (layer, io) = builder.build_layer();
                let app = App::new(
                    settings,
                    Backends { store, db, bus },
                    clock,
                    Arc::new(io.clone()),
                );
                gateway::register(&io, app.clone());
                (compose(app.clone(), layer), app)
            }
            StoreBackend::Redis => {
                let client = redis::Client::open(resp3_url(settings.store.redis_url.expose())?)
                    .context("parsing the Redis URL")?;
                let config = RedisAdapterConfig::new()
                    .with_prefix(format!("{}socket.io", settings.store.prefix));
                let driver = AdapterDriver::connect(client).await.with_context(|| {
                    format!(
                        "connecting the Socket.IO Redis adapter to {}",
                        redact_url(settings.store.redis_url.expose())
                    )
                })?;
                adapter_driver = Some(driver.clone());
                let adapter = RedisAdapterCtr::new_with_driver(driver, config);
                let (layer, io) = builder
                    .with_adapter::<CustomRedisAdapter<_, AdapterDriver>>(adapter)
                    .build_layer();
                let app = App::new(
                    settings,
                    Backends { store, db, bus },
                    clock,
                    Arc::new(io.clone()),
                );
                gateway::register(&io, app.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("initialising the Redis adapter: {e}"))?;
                (compose(app.clone(), layer), app)
            }
        };

        let listener = bind_listener(app.settings.server.bind)
            .with_context(|| format!("binding {}", app.settings.server.bind))?;
        Ok(Self {
            listener,
            router,
            app,
            adapter_driver,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn app(&self) -> SharedApp {
        self.app.clone()
    }

    /// Registers the code that runs when timers of `kind` fall due.
    pub fn register_timer(&self, kind: &str, handler: TimerHandler) {
        self.app.timers.register(kind, handler);
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes every socket (so
    /// disconnect handlers release presence), lets in-flight requests finish within the
    /// grace period, and stops the background jobs.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            app,
            adapter_driver,
        } = self;
        let stop_jobs = CancellationToken::new();
        register_builtin_timers(&app);
        if let Err(error) = sessions::schedule_sweep(&app).await {
            tracing::warn!(%error, "could not schedule the session sweep");
        }
        if let Err(error) = crate::services::conversation_calls::schedule_sweep(&app).await {
            tracing::warn!(%error, "could not schedule the zombie call sweep");
        }
        let mut jobs = jobs::spawn_all(app.clone(), stop_jobs.clone());
        if let Some(driver) = adapter_driver {
            jobs.spawn(driver.keepalive(stop_jobs.clone()));
        }
        let closing = CancellationToken::new();
        let outbox = app.outbox.clone();
        let signal = closing.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: closing sockets");
            outbox.close().await;
            signal.cancel();
        });
        let grace = Duration::from_secs(app.settings.server.shutdown_grace_secs);
        // Nagle off: with several acks or events in flight on one socket, the later frames
        // would otherwise wait for the client's delayed ACK (tens of milliseconds).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(closing.clone().cancelled_owned());
        let served = tokio::spawn(async move { serve.await });
        closing.cancelled().await;
        match tokio::time::timeout(grace, served).await {
            Ok(joined) => joined.context("server task")?.context("serving")?,
            Err(_) => tracing::warn!("in-flight requests outlived the shutdown grace period"),
        }
        stop_jobs.cancel();
        while jobs.join_next().await.is_some() {}
        app.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The timers the server itself schedules.
fn register_builtin_timers(app: &SharedApp) {
    app.timers.register(
        sessions::CLEANUP_TIMER,
        Arc::new(|app, _| {
            Box::pin(async move {
                let outcome = sessions::sweep_expired(&app).await;
                let stats = &app.job_stats.session_sweep;
                match outcome {
                    Ok(removed) => {
                        stats.ran(app.now(), Ok(removed as u64));
                        tracing::info!(removed, "session sweep done")
                    }
                    Err(error) => {
                        stats.ran(app.now(), Err(()));
                        tracing::warn!(%error, "session sweep failed")
                    }
                }
            })
        }),
    );
    for kind in [notifications::HIGH_TIMER, notifications::NORMAL_TIMER] {
        app.timers.register(
            kind,
            Arc::new(|app, timer| Box::pin(notifications::on_timer(app, timer))),
        );
    }
    app.timers.register(
        calls::RING_TIMER,
        Arc::new(|app, timer| Box::pin(async move { calls::ring_timed_out(&app, &timer).await })),
    );
    app.timers.register(
        typing::TYPING_TIMER,
        Arc::new(|app, timer| Box::pin(async move { typing::expired(&app, &timer).await })),
    );
    crate::services::rooms::register_timers(app);
    crate::services::conversation_calls::register_timers(app);
}

fn compose<A: Adapter>(app: SharedApp, layer: SocketIoLayer<A>) -> Router {
    let cors = cors(&app.settings.server.cors_origins);
    http::router(app).layer(layer).layer(cors)
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(Any);
    }
    let allowed: Vec<axum::http::HeaderValue> =
        origins.iter().filter_map(|o| o.parse().ok()).collect();
    layer.allow_origin(AllowOrigin::list(allowed))
}

async fn connect_store(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn StateStore>> {
    Ok(match settings.store.backend {
        StoreBackend::Memory => Arc::new(MemoryStore::new(clock)),
        StoreBackend::Redis => {
            let url = settings.store.redis_url.expose();
            let store = RedisStore::connect(url, &settings.store.prefix, RedisOptions::default())
                .await
                .with_context(|| format!("connecting to Redis at {}", redact_url(url)))?;
            tracing::info!(url = %redact_url(url), prefix = %settings.store.prefix, "state store: redis");
            Arc::new(store)
        }
    })
}

async fn connect_db(settings: &Settings) -> anyhow::Result<Db> {
    let url = settings.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.server.data_dir)
            .with_context(|| format!("creating {}", settings.server.data_dir.display()))?;
    }
    let mut options = DbOptions::default();
    if settings.database.max_connections > 0 {
        options.max_connections = settings.database.max_connections;
    }
    let db = Db::connect(&url, &options)
        .await
        .with_context(|| format!("connecting to the database at {}", redact_url(&url)))?;
    db.migrate().await.context("applying database migrations")?;
    tracing::info!(url = %redact_url(&url), backend = db.backend(), "database ready");
    Ok(db)
}

/// The Redis adapter needs RESP3 (push messages for pub/sub).
fn resp3_url(url: &str) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).context("parsing the Redis URL")?;
    let others: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "protocol")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("protocol", "resp3");
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::resp3_url;

    #[test]
    fn the_adapter_url_asks_for_resp3() {
        assert_eq!(
            resp3_url("redis://127.0.0.1:6379").unwrap(),
            "redis://127.0.0.1:6379?protocol=resp3"
        );
        assert_eq!(
            resp3_url("redis://h:1/2?protocol=resp2&x=1").unwrap(),
            "redis://h:1/2?x=1&protocol=resp3"
        );
    }
}
