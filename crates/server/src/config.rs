//! Layered configuration: defaults → TOML file → environment → command-line flags.
//!
//! Environment variables are `SWITCHBOARD_<SECTION>__<KEY>` (for example
//! `SWITCHBOARD_AUTH__JWT_SECRET`), plus the names the seeds use: `REDIS_HOST`,
//! `REDIS_PORT`, `REDIS_PASSWORD`, `HOST_GRACE_PERIOD` (seconds) and `ENABLE_HOSTLESS_MODE`.
//! Every key is listed in `docs/configuration.md`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use switchboard_domain::limits::Limits;

/// A string that never appears in logs or `Debug` output.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("[redacted]")
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub store: StoreSettings,
    pub database: DatabaseSettings,
    pub timers: TimerSettings,
    pub presence: PresenceSettings,
    pub chat: ChatSettings,
    pub rate_limits: RateLimits,
    pub notifications: NotificationSettings,
    pub rooms: RoomSettings,
    pub ice: IceSettings,
    pub limits: Limits,
    pub log: LogSettings,
    pub web: WebSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Accept the unauthenticated `{userId, name, deviceId?}` handshake and open `/api/*`.
    pub dev: bool,
    /// Allowed browser origins; `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// Where the SQLite database lives when no database URL is given.
    pub data_dir: PathBuf,
    /// A name for this instance in logs and `/stats`; generated when empty.
    pub instance_id: String,
    /// Packets buffered per socket before it counts as a slow consumer and is disconnected.
    pub socket_buffer: usize,
    /// Largest Socket.IO packet accepted, in bytes.
    pub max_payload_bytes: u64,
    pub ping_interval_secs: u64,
    pub ping_timeout_secs: u64,
    /// How long shutdown waits for in-flight work before closing connections.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:3000".parse().expect("valid default address"),
            dev: false,
            cors_origins: vec!["*".into()],
            data_dir: PathBuf::from("data"),
            instance_id: String::new(),
            socket_buffer: 256,
            max_payload_bytes: 256 * 1024,
            ping_interval_secs: 25,
            ping_timeout_secs: 20,
            shutdown_grace_secs: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HS256 secret for client tokens. Required outside dev mode.
    pub jwt_secret: Secret,
    /// Bearer key for the admin HTTP API. Without one, admin endpoints are closed outside dev mode.
    pub admin_key: Secret,
    pub max_devices_per_user: usize,
    /// Lifetime of tokens minted by `switchboard token` when `--ttl` is not given.
    pub default_token_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::default(),
            admin_key: Secret::default(),
            max_devices_per_user: 10,
            default_token_ttl_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// `memory` (single instance) or `redis` (shared). Setting `redis_url` selects Redis.
    pub backend: StoreBackend,
    pub redis_url: Secret,
    /// Prefix of every Redis key and pub/sub channel of this deployment.
    pub prefix: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            redis_url: Secret::default(),
            prefix: "sb:".into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `sqlite://…` or `postgres://…`; empty means a SQLite file in `server.data_dir`.
    pub url: Secret,
    pub max_connections: u32,
}

/// Every timer of the seeds, in seconds, with the seeds' defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimerSettings {
    pub ring_timeout_secs: u64,
    pub call_request_ttl_secs: u64,
    pub presence_ttl_secs: u64,
    pub typing_secs: u64,
    pub session_ttl_secs: u64,
    pub host_grace_period_secs: u64,
    pub reconnect_window_secs: u64,
    pub notification_interval_secs: u64,
    pub session_cleanup_interval_secs: u64,
    pub friend_cache_ttl_secs: u64,
    pub conversation_cache_ttl_secs: u64,
    pub message_cache_ttl_secs: u64,
    pub invitation_ttl_secs: u64,
    pub zombie_cleanup_interval_secs: u64,
}

impl Default for TimerSettings {
    fn default() -> Self {
        Self {
            ring_timeout_secs: 30,
            call_request_ttl_secs: 60,
            presence_ttl_secs: 300,
            typing_secs: 10,
            session_ttl_secs: 3600,
            host_grace_period_secs: 30,
            reconnect_window_secs: 60,
            notification_interval_secs: 30,
            session_cleanup_interval_secs: 300,
            friend_cache_ttl_secs: 7200,
            conversation_cache_ttl_secs: 86_400,
            message_cache_ttl_secs: 86_400,
            invitation_ttl_secs: 60,
            zombie_cleanup_interval_secs: 300,
        }
    }
}

impl TimerSettings {
    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_secs.max(1))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceSettings {
    /// Everyone sees every online user. Defaults to true in dev mode, false otherwise.
    pub public: Option<bool>,
    /// Public mode is refused at start-up above this many users.
    pub public_max_users: usize,
    /// Minimum spacing of `onlineUsersUpdated` to one user, in milliseconds.
    pub online_list_coalesce_ms: u64,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            public: None,
            public_max_users: 1_000,
            online_list_coalesce_ms: 250,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatSettings {
    /// Messages per conversation kept in the state store.
    pub message_cache_size: usize,
    /// Most messages one group commit writes in a single transaction.
    pub max_batch: usize,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            message_cache_size: 100,
            max_batch: 256,
        }
    }
}

/// One sliding-window limit: at most `limit` actions per `window_secs` per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub limit: u32,
    pub window_secs: u64,
}

impl RateLimit {
    pub const fn new(limit: u32, window_secs: u64) -> Self {
        Self { limit, window_secs }
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs.max(1))
    }
}

/// Sliding-window rate limits per user and action (seed 001's `checkRateLimit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimits {
    /// `message:send` (protocol §12: 10 per 10 s).
    pub message: RateLimit,
    /// `typing:start` refreshes.
    pub typing: RateLimit,
    /// Call attempts (`callUser`, `call:initiate`).
    pub call: RateLimit,
    /// `createRoom`.
    pub room_create: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            message: RateLimit::new(10, 10),
            typing: RateLimit::new(20, 10),
            call: RateLimit::new(10, 60),
            room_create: RateLimit::new(5, 60),
        }
    }
}

/// Push notifications (seed 001): queued, then POSTed to a webhook, signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationSettings {
    /// Where notifications are POSTed; empty keeps them in the per-user list only.
    pub webhook_url: String,
    /// HMAC-SHA256 key of the signature header.
    pub webhook_secret: Secret,
    /// Delivery attempts before a notification goes to the dead-letter list.
    pub max_attempts: u32,
    /// First retry delay; it doubles per attempt up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub request_timeout_secs: u64,
    /// Notifications kept per user.
    pub per_user: usize,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            webhook_secret: Secret::default(),
            max_attempts: 5,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            request_timeout_secs: 10,
            per_user: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomSettings {
    /// When the host's grace period expires: true turns the room hostless, false ends it.
    pub enable_hostless_mode: bool,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            enable_hostless_mode: true,
        }
    }
}

/// The `iceServers` handed to conversation-call participants (protocol §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IceSettings {
    /// STUN URLs, e.g. `stun:stun.example.org:3478`; empty sends none.
    pub stun_urls: Vec<String>,
    /// TURN URLs (`turn:` / `turns:`); sent only when `turn_secret` is set.
    pub turn_urls: Vec<String>,
    /// The TURN server's shared secret (coturn `static-auth-secret`): each participant gets
    /// TURN REST credentials of their own signed with it.
    pub turn_secret: Secret,
    /// How long TURN credentials stay valid.
    pub turn_credential_ttl_secs: u64,
}

impl Default for IceSettings {
    fn default() -> Self {
        Self {
            stun_urls: vec!["stun:stun.l.google.com:19302".into()],
            turn_urls: Vec::new(),
            turn_secret: Secret::default(),
            turn_credential_ttl_secs: 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// A `tracing` filter, e.g. `info` or `switchboard=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// The browser client (`web/`), served at `/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebSettings {
    /// The built client (`web/dist`, relative to the working directory). Empty turns it off;
    /// a directory without `index.html` is skipped with a warning at start-up.
    pub static_dir: PathBuf,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            static_dir: PathBuf::from("web/dist"),
        }
    }
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bind: Option<SocketAddr>,
    pub dev: bool,
    pub redis_url: Option<String>,
    pub database_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
}

impl Settings {
    /// Loads the layers in order. `file` is the `--config` path, if any.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, &|name| std::env::var(name).ok())
    }

    /// [`Settings::load`] with an injectable environment, for tests.
    pub fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} not found",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("SWITCHBOARD_").split("__"));
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        settings.apply_seed_env(env)?;
        settings.apply_overrides(overrides);
        settings.validate()?;
        Ok(settings)
    }

    /// The environment names the seeds use, honoured for drop-in compatibility.
    fn apply_seed_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(host) =
            env("REDIS_HOST").filter(|h| !h.is_empty() && self.store.redis_url.is_empty())
        {
            let port = env("REDIS_PORT").unwrap_or_else(|| "6379".into());
            let auth = env("REDIS_PASSWORD")
                .filter(|p| !p.is_empty())
                .map(|p| format!(":{}@", url_encode(&p)))
                .unwrap_or_default();
            self.store.redis_url = Secret::new(format!("redis://{auth}{host}:{port}"));
        }
        if let Some(dir) = env("SWITCHBOARD_DATA_DIR").filter(|d| !d.is_empty()) {
            self.server.data_dir = PathBuf::from(dir);
        }
        if let Some(grace) = env("HOST_GRACE_PERIOD") {
            self.timers.host_grace_period_secs = grace.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "HOST_GRACE_PERIOD must be whole seconds, got {grace:?}"
                ))
            })?;
        }
        if let Some(flag) = env("ENABLE_HOSTLESS_MODE") {
            self.rooms.enable_hostless_mode = match flag.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "ENABLE_HOSTLESS_MODE must be true or false, got {flag:?}"
                    )));
                }
            };
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(bind) = o.bind {
            self.server.bind = bind;
        }
        if o.dev {
            self.server.dev = true;
        }
        if let Some(url) = &o.redis_url {
            self.store.redis_url = Secret::new(url.clone());
        }
        if let Some(url) = &o.database_url {
            self.database.url = Secret::new(url.clone());
        }
        if !self.store.redis_url.is_empty() {
            self.store.backend = StoreBackend::Redis;
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.store.backend == StoreBackend::Redis && self.store.redis_url.is_empty() {
            return Err(ConfigError::Invalid(
                "store.backend = \"redis\" needs store.redis_url (or --redis-url / REDIS_HOST)"
                    .into(),
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log.format must be \"text\" or \"json\", got {:?}",
                self.log.format
            )));
        }
        if self.limits.devices_per_user == 0 || self.auth.max_devices_per_user == 0 {
            return Err(ConfigError::Invalid(
                "max_devices_per_user must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether every connected user sees every online user (protocol §4).
    pub fn presence_public(&self) -> bool {
        self.presence.public.unwrap_or(self.server.dev)
    }

    /// The database URL to use: the configured one, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            let path = self.server.data_dir.join("switchboard.db");
            format!("sqlite://{}?mode=rwc", path.display())
        } else {
            self.database.url.expose().to_string()
        }
    }
}

/// Hides the password of a URL for logging.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

fn url_encode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], overrides: Overrides) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(None, &overrides, &move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_seeds_timers() {
        let s = load(&[], Overrides::default()).unwrap();
        assert_eq!(s.timers.ring_timeout_secs, 30);
        assert_eq!(s.timers.call_request_ttl_secs, 60);
        assert_eq!(s.timers.presence_ttl_secs, 300);
        assert_eq!(s.timers.typing_secs, 10);
        assert_eq!(s.timers.session_ttl_secs, 3600);
        assert_eq!(s.timers.host_grace_period_secs, 30);
        assert_eq!(s.timers.reconnect_window_secs, 60);
        assert_eq!(s.timers.notification_interval_secs, 30);
        assert_eq!(s.timers.session_cleanup_interval_secs, 300);
        assert_eq!(s.timers.friend_cache_ttl_secs, 7200);
        assert_eq!(s.chat.message_cache_size, 100);
        assert_eq!(s.store.backend, StoreBackend::Memory);
        assert!(!s.presence_public());
    }

    #[test]
    fn seed_environment_names_are_honoured() {
        let s = load(
            &[
                ("REDIS_HOST", "cache"),
                ("REDIS_PORT", "6380"),
                ("REDIS_PASSWORD", "p@ss"),
                ("HOST_GRACE_PERIOD", "12"),
                ("ENABLE_HOSTLESS_MODE", "false"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.store.redis_url.expose(), "redis://:p%40ss@cache:6380");
        assert_eq!(s.store.backend, StoreBackend::Redis);
        assert_eq!(s.timers.host_grace_period_secs, 12);
        assert!(!s.rooms.enable_hostless_mode);
    }

    #[test]
    fn bad_seed_values_are_refused() {
        assert!(load(&[("HOST_GRACE_PERIOD", "soon")], Overrides::default()).is_err());
        assert!(load(&[("ENABLE_HOSTLESS_MODE", "maybe")], Overrides::default()).is_err());
    }

    #[test]
    fn flags_win_and_dev_makes_presence_public() {
        let s = load(
            &[],
            Overrides {
                dev: true,
                bind: Some("127.0.0.1:0".parse().unwrap()),
                redis_url: Some("redis://x".into()),
                database_url: None,
            },
        )
        .unwrap();
        assert!(s.server.dev);
        assert!(s.presence_public());
        assert_eq!(s.server.bind.port(), 0);
        assert_eq!(s.store.backend, StoreBackend::Redis);
    }

    #[test]
    fn toml_file_layer_is_read() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("switchboard.toml");
        std::fs::write(
            &file,
            "[timers]\nring_timeout_secs = 45\n[presence]\npublic = true\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), &|_| None).unwrap();
        assert_eq!(s.timers.ring_timeout_secs, 45);
        assert!(s.presence_public());
        std::fs::remove_dir_all(dir).ok();
        assert!(
            Settings::load_from(
                Some(Path::new("/nonexistent/sb.toml")),
                &Overrides::default(),
                &|_| None
            )
            .is_err()
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let mut s = Settings::default();
        s.auth.jwt_secret = Secret::new("super-secret");
        s.database.url = Secret::new("postgres://u:pw@h/db");
        let shown = format!("{s:?}");
        assert!(!shown.contains("super-secret"));
        assert!(!shown.contains("pw@"));
        assert_eq!(
            redact_url("postgres://u:pw@h/db"),
            "postgres://u:redacted@h/db"
        );
    }
}
