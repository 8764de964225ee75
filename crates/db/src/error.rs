//! [`DbError`]: what can go wrong, sorted by what the caller should do about it.
//!
//! The server maps these to ack codes and HTTP statuses in one place; this module only
//! decides which bucket a driver error belongs to. The split that matters most is
//! [`DbError::Unavailable`] ("the database is down or overloaded, try again") versus
//! everything else, so every connection, pool, I/O and lock-contention failure lands there.

use sqlx::error::{DatabaseError, ErrorKind};

/// A persistence error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached or is overloaded: connection refused or lost, pool
    /// timeout, I/O error, server shutting down, lock contention. Retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule or a state check refused the change (the state changed under the
    /// caller, or an id was reused).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row addressed (or one it must reference) does not exist.
    #[error("not found")]
    NotFound,
    /// The URL or options cannot be used.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// Stored data does not have the expected shape, or the migration history does not
    /// match this build.
    #[error("unexpected data in the database: {0}")]
    Corrupt(String),
    /// Anything else, including a caller passing arguments that break the schema's rules.
    #[error("database error: {0}")]
    Other(String),
}

/// `Result` with [`DbError`].
pub type Result<T, E = DbError> = std::result::Result<T, E>;

impl DbError {
    /// True when the caller should answer "unavailable, try again".
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match err {
            E::Database(db) => from_database_error(db.as_ref()),
            E::RowNotFound => DbError::NotFound,
            // The pool reconnects on its own; until then every one of these means "down".
            E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed
            | E::BeginFailed => DbError::Unavailable(err.to_string()),
            E::Configuration(_) | E::InvalidArgument(_) => DbError::Config(err.to_string()),
            E::TypeNotFound { .. }
            | E::ColumnIndexOutOfBounds { .. }
            | E::ColumnNotFound(_)
            | E::ColumnDecode { .. }
            | E::Decode(_) => DbError::Corrupt(err.to_string()),
            E::Migrate(m) => DbError::from(*m),
            other => DbError::Other(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for DbError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError as M;
        match err {
            M::Execute(e) | M::ExecuteMigration(e, _) => DbError::from(e),
            // The database was migrated by a different build (edited, missing or newer
            // migrations, or a migration that failed half-way): refuse to touch it.
            M::VersionMissing(_)
            | M::VersionMismatch(_)
            | M::VersionNotPresent(_)
            | M::VersionTooOld(..)
            | M::VersionTooNew(..)
            | M::Dirty(_) => DbError::Corrupt(err.to_string()),
            other => DbError::Other(other.to_string()),
        }
    }
}

fn from_database_error(err: &dyn DatabaseError) -> DbError {
    let message = err.message().to_owned();
    match err.kind() {
        ErrorKind::UniqueViolation => return DbError::Conflict(message),
        // Every foreign key points at a parent row (conversation, message, call): a
        // violation means the parent is gone.
        ErrorKind::ForeignKeyViolation => return DbError::NotFound,
        _ => {}
    }
    if let Some(pg) = err.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return classify_postgres(pg.code(), message);
    }
    if err
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        let code = err.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
        return classify_sqlite(code, message);
    }
    DbError::Other(message)
}

/// SQLSTATE classes, see PostgreSQL's "Appendix A. Error Codes".
fn classify_postgres(sqlstate: &str, message: String) -> DbError {
    let transient = sqlstate.starts_with("08") // connection exception
        || sqlstate.starts_with("53") // insufficient resources (too many connections, disk full)
        || sqlstate.starts_with("57P") // admin / crash shutdown, cannot connect now
        || sqlstate.starts_with("58") // system (I/O) error
        || sqlstate == "57014" // statement cancelled (timeout)
        || sqlstate == "40001" // serialization failure: retry
        || sqlstate == "40P01" // deadlock detected: retry
        || sqlstate == "3D000"; // the database itself is missing (dropped or not yet created)
    if transient {
        DbError::Unavailable(format!("{message} ({sqlstate})"))
    } else if sqlstate.starts_with("XX") {
        DbError::Corrupt(format!("{message} ({sqlstate})"))
    } else {
        DbError::Other(format!("{message} ({sqlstate})"))
    }
}

/// SQLite result codes, see <https://www.sqlite.org/rescode.html>. The driver reports the
/// extended code; the primary code is its low byte.
fn classify_sqlite(extended: i32, message: String) -> DbError {
    match extended & 0xff {
        // BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN, PROTOCOL
        5 | 6 | 7 | 10 | 13 | 14 | 15 => DbError::Unavailable(message),
        // CORRUPT, NOTADB
        11 | 26 => DbError::Corrupt(message),
        _ => DbError::Other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_errors_are_unavailable() {
        assert!(DbError::from(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(DbError::from(sqlx::Error::PoolClosed).is_unavailable());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(DbError::from(sqlx::Error::Io(io)).is_unavailable());
        assert_eq!(DbError::from(sqlx::Error::RowNotFound), DbError::NotFound);
    }

    #[test]
    fn sqlstate_classes() {
        assert!(classify_postgres("08006", String::new()).is_unavailable());
        assert!(classify_postgres("57P01", String::new()).is_unavailable());
        assert!(classify_postgres("53300", String::new()).is_unavailable());
        assert!(matches!(
            classify_postgres("42601", String::new()),
            DbError::Other(_)
        ));
        assert!(classify_sqlite(5, String::new()).is_unavailable());
        assert!(classify_sqlite(261, String::new()).is_unavailable()); // SQLITE_BUSY_RECOVERY
        assert!(matches!(
            classify_sqlite(11, String::new()),
            DbError::Corrupt(_)
        ));
    }
}
