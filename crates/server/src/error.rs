//! The one place where failures become wire codes: Socket.IO ack errors and HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchboard_db::DbError;
use switchboard_domain::DomainError;
use switchboard_protocol::{AckError, ErrorCode};
use switchboard_store::StoreError;

/// Anything a service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Domain(e) => e.code(),
            Self::Store(StoreError::Unavailable(_)) => ErrorCode::Unavailable,
            Self::Store(StoreError::Corrupt(_)) => ErrorCode::Internal,
            Self::Db(e) => db_code(e),
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The human message sent to clients. Backend details stay in the logs.
    pub fn public_message(&self) -> String {
        match self.code() {
            ErrorCode::Unavailable => "a backend is unavailable, try again shortly".into(),
            ErrorCode::Internal => "internal error".into(),
            _ => self.to_string(),
        }
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::Domain(DomainError::RateLimited { retry_after_ms }) => Some(*retry_after_ms),
            _ => None,
        }
    }

    /// Whether this failure is the server's (worth a warning) rather than the client's.
    pub fn is_server_side(&self) -> bool {
        matches!(self.code(), ErrorCode::Unavailable | ErrorCode::Internal)
    }

    pub fn to_ack(&self) -> AckError {
        let mut ack = AckError::new(self.code(), self.public_message());
        ack.retry_after_ms = self.retry_after_ms();
        // Protocol §5: the callee being offline or busy is worth trying again later.
        if matches!(self.code(), ErrorCode::Offline | ErrorCode::Busy) {
            ack.can_retry = Some(true);
        }
        ack
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Domain(DomainError::invalid(message))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::Domain(DomainError::NotFound(message.into()))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Domain(DomainError::Unauthorized(message.into()))
    }
}

fn db_code(e: &DbError) -> ErrorCode {
    match e {
        DbError::Unavailable(_) => ErrorCode::Unavailable,
        DbError::Conflict(_) => ErrorCode::Conflict,
        DbError::NotFound => ErrorCode::NotFound,
        _ => ErrorCode::Internal,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let code = self.code();
        if self.is_server_side() {
            tracing::warn!(error = %self, "request failed");
        }
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = serde_json::json!({ "error": self.public_message(), "code": code });
        if let Some(ms) = self.retry_after_ms() {
            body["retryAfterMs"] = ms.into();
        }
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_outages_are_unavailable_and_hide_details() {
        let e = AppError::from(StoreError::Unavailable(
            "connection refused to 10.0.0.1".into(),
        ));
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert!(!e.public_message().contains("10.0.0.1"));
        let e = AppError::from(DbError::Unavailable("pool timed out".into()));
        assert_eq!(e.code(), ErrorCode::Unavailable);
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let e = AppError::from(DomainError::RateLimited {
            retry_after_ms: 1200,
        });
        let ack = serde_json::to_value(e.to_ack()).unwrap();
        assert_eq!(ack["success"], false);
        assert_eq!(ack["code"], "RATE_LIMITED");
        assert_eq!(ack["retryAfterMs"], 1200);
    }

    #[test]
    fn invalid_payloads_keep_their_message() {
        let ack =
            serde_json::to_value(AppError::invalid("userIds must be an array").to_ack()).unwrap();
        assert_eq!(ack["code"], "INVALID_PAYLOAD");
        assert_eq!(ack["error"], "userIds must be an array");
    }
}
