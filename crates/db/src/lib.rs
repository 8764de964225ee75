//! Switchboard's persistence: users, friendships, conversations, messages, reactions, call
//! history, notifications and webhook dead letters, on SQLite (the default, a single file)
//! or PostgreSQL, chosen by the URL scheme.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_db::DbError> {
//! use switchboard_db::{Db, DbOptions};
//! let db = Db::connect("sqlite://data/switchboard.db?mode=rwc", &DbOptions::default()).await?;
//! db.migrate().await?;
//! db.upsert_user("u1", "Ada", 1_700_000_000_000).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`pool`]: [`Db`], [`DbOptions`], connecting (URL scheme → backend, SQLite file with one
//!   writer plus WAL readers, or a PostgreSQL pool), [`Db::migrate`], [`Db::ping`].
//! - [`error`]: [`DbError`], and the one place driver errors are sorted into "unavailable",
//!   "conflict", "not found" and the rest.
//! - [`types`]: the plain structs and enums the methods take and return.
//! - `users`, `conversations`, `messages`, `calls`, `notifications`: the repository methods,
//!   as `impl Db` blocks, one file per table group.
//! - `conformance` (hidden): the backend conformance suite, written once and run against a
//!   fresh SQLite file and a fresh PostgreSQL database per case by `tests/sqlite.rs` and
//!   `tests/postgres.rs`.
//! - `migrations/{sqlite,postgres}/`: one schema per backend, kept in step by hand and
//!   embedded at compile time.
//!
//! # Design
//!
//! The two backends are concrete sqlx pools behind an enum rather than `sqlx::Any`, so each
//! keeps its native types and connection options (WAL, busy timeout, foreign keys). Every
//! query is written once in portable SQL (`$n` placeholders, `ON CONFLICT`, `RETURNING`) and
//! compiled for both pools by the internal `on_pool!` macro, so there is one code path to
//! test, and the conformance suite proves it on both.
//!
//! Times are [`Millis`](switchboard_domain::Millis) passed in by the caller: this crate never
//! reads the clock, so tests drive time. Ids of messages and calls are chosen by the caller
//! (they exist before the write commits); ids of conversations, participants, notifications
//! and dead letters are generated here (UUID v4).
//!
//! User ids are external identities (the JWT `sub`), so no table has a foreign key to
//! `users`: it is a directory of display names, filled by [`Db::upsert_user`] on connect.

/// Runs `$body` once per backend with `$pool` bound to that backend's concrete pool, so
/// one portable query is compiled for both. `read` picks the SQLite reader pool and `write`
/// the single SQLite writer; PostgreSQL has one pool for both. The body may use `?` and
/// `.await`, and must have the same type in both arms.
macro_rules! on_pool {
    ($db:expr, read, |$pool:ident| $body:expr) => {
        match &$db.backend {
            $crate::pool::Backend::Sqlite { reader, .. } => {
                let $pool = reader;
                $body
            }
            $crate::pool::Backend::Postgres(pg) => {
                let $pool = pg;
                $body
            }
        }
    };
    ($db:expr, write, |$pool:ident| $body:expr) => {
        match &$db.backend {
            $crate::pool::Backend::Sqlite { writer, .. } => {
                let $pool = writer;
                $body
            }
            $crate::pool::Backend::Postgres(pg) => {
                let $pool = pg;
                $body
            }
        }
    };
}

mod calls;
#[doc(hidden)]
pub mod conformance;
mod conversations;
pub mod error;
mod messages;
mod notifications;
pub mod pool;
pub mod types;
mod users;

pub use error::{DbError, Result};
pub use pool::{Db, DbOptions, backend_for_url, redact_url};
pub use types::*;

/// Default page size for histories (protocol §1).
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Largest page a history query returns (protocol §1).
pub const MAX_PAGE_LIMIT: u32 = 100;

/// `None` or 0 → the default; anything larger than the maximum is clamped.
pub(crate) fn page_limit(limit: Option<u32>) -> i64 {
    let limit = match limit {
        None | Some(0) => DEFAULT_PAGE_LIMIT,
        Some(n) => n.min(MAX_PAGE_LIMIT),
    };
    i64::from(limit)
}

/// A fresh server-side id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Largest number of bind parameters put in one `IN (…)` list; well under both backends'
/// limits (SQLite 32 766, PostgreSQL 65 535).
pub(crate) const IN_CHUNK: usize = 500;

pub(crate) fn encode_json(value: &serde_json::Value) -> String {
    value.to_string()
}

pub(crate) fn decode_json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt(format!("stored JSON: {e}")))
}

pub(crate) fn decode_json_opt(text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.as_deref().map(decode_json).transpose()
}
