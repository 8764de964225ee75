//! Connecting: the backend is picked from the URL scheme, and each gets the pool shape that
//! suits it.
//!
//! - PostgreSQL: one pool; reads and writes share it.
//! - SQLite file: a *writer* pool of exactly one connection and a *reader* pool of up to
//!   `max_connections`. SQLite allows one writer at a time anyway; funnelling writes through
//!   one connection queues them in the pool (fair, bounded by the acquire timeout) instead of
//!   letting transactions collide on the file lock, where a transaction that read before it
//!   wrote fails with `SQLITE_BUSY` no matter the busy timeout. WAL mode lets the readers
//!   run alongside the writer. Reader connections are `query_only`, so a write sent to the
//!   wrong pool fails loudly instead of racing the writer.
//! - SQLite in memory (`sqlite::memory:`): one connection serves both, because every
//!   connection to `:memory:` would otherwise be a separate empty database.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::{DbError, Result};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOptions {
    /// PostgreSQL pool size, or the SQLite reader pool size (SQLite always has one writer).
    pub max_connections: u32,
    /// How long a query waits for a connection before failing with
    /// [`DbError::Unavailable`]. Short, so a dead database fails requests fast instead of
    /// piling them up; the pool keeps reconnecting in the background.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a statement waits on a locked file before giving up.
    pub sqlite_busy_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The persistence handle. Cloning is cheap (the pools are reference counted) and clones
/// share the connections.
#[derive(Clone)]
pub struct Db {
    pub(crate) backend: Backend,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres(PgPool),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Which backend a URL selects: `"sqlite"` for `sqlite:`, `"postgres"` for `postgres://` and
/// `postgresql://`.
pub fn backend_for_url(url: &str) -> Result<&'static str> {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("sqlite:") {
        Ok("sqlite")
    } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Ok("postgres")
    } else {
        Err(DbError::Config(format!(
            "unsupported database URL {}: expected sqlite:… or postgres://…",
            redact_url(url)
        )))
    }
}

/// The URL with any password replaced, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Unparseable: show only the scheme, in case the rest holds a secret.
        Err(_) => format!("{}:…", url.split(':').next().unwrap_or_default()),
    }
}

impl Db {
    /// Connects to the database the URL names. Fails with [`DbError::Unavailable`] if it
    /// cannot be reached within the acquire timeout. Does not migrate.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Db> {
        let db = match backend_for_url(url)? {
            "sqlite" => connect_sqlite(url, options).await?,
            _ => connect_postgres(url, options).await?,
        };
        tracing::info!(backend = db.backend(), url = %redact_url(url), "database connected");
        Ok(db)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Applies the pending migrations of this backend. Safe to run again, and (on
    /// PostgreSQL, which takes an advisory lock) from several servers at once.
    pub async fn migrate(&self) -> Result<()> {
        let started = Instant::now();
        match &self.backend {
            Backend::Sqlite { writer, .. } => SQLITE_MIGRATOR.run(writer).await?,
            Backend::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await?,
        }
        tracing::info!(backend = self.backend(), elapsed = ?started.elapsed(), "database migrated");
        Ok(())
    }

    /// Round-trips a trivial query and returns how long it took (for `/health`).
    pub async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        on_pool!(self, read, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(started.elapsed())
    }

    /// Closes every connection; later calls fail with [`DbError::Unavailable`].
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

async fn connect_sqlite(url: &str, options: &DbOptions) -> Result<Db> {
    let mut base = SqliteConnectOptions::from_str(url)?
        .busy_timeout(options.sqlite_busy_timeout)
        .foreign_keys(true);
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let in_memory = url.contains(":memory:") || query.split('&').any(|kv| kv == "mode=memory");
    // A bare `sqlite://path` creates the file, as `?mode=rwc` would; an explicit mode wins.
    if !query.split('&').any(|kv| kv.starts_with("mode=")) {
        base = base.create_if_missing(true);
    }

    if in_memory {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // Dropping the only connection would drop the database with it.
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base)
            .await?;
        return Ok(Db {
            backend: Backend::Sqlite {
                writer: pool.clone(),
                reader: pool,
            },
        });
    }

    if let Some(parent) = base.get_filename().parent()
        && !parent.as_os_str().is_empty()
    {
        tokio::fs::create_dir_all(parent).await.map_err(|e| {
            DbError::Unavailable(format!("cannot create {}: {e}", parent.display()))
        })?;
    }

    // The writer connects first: it creates the file and switches it to WAL, which is
    // persistent, so the readers need not (and must not race to) do it again.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(base.clone().journal_mode(SqliteJournalMode::Wal))
        .await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(base.create_if_missing(false).pragma("query_only", "ON"))
        .await?;
    Ok(Db {
        backend: Backend::Sqlite { writer, reader },
    })
}

async fn connect_postgres(url: &str, options: &DbOptions) -> Result<Db> {
    let connect = PgConnectOptions::from_str(url)?.application_name("switchboard");
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await?;
    Ok(Db {
        backend: Backend::Postgres(pool),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_picks_backend() {
        assert_eq!(
            backend_for_url("sqlite://data/x.db?mode=rwc").unwrap(),
            "sqlite"
        );
        assert_eq!(backend_for_url("sqlite::memory:").unwrap(), "sqlite");
        assert_eq!(backend_for_url("postgres://u@h/db").unwrap(), "postgres");
        assert_eq!(backend_for_url("postgresql://u@h/db").unwrap(), "postgres");
        assert!(matches!(
            backend_for_url("mysql://u@h/db"),
            Err(DbError::Config(_))
        ));
    }

    #[test]
    fn redacts_passwords() {
        let shown = redact_url("postgres://user:secret@host:5432/db");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("user"));
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
