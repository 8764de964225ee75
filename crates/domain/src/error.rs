//! The errors domain rules can produce. Services add backend failures on top; the gateway
//! maps the union to wire codes in exactly one place.

use switchboard_protocol::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    InvalidPayload(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The state changed under the caller (a lost race or an invalid transition).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Offline(String),
    #[error("rate limited, retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error("{0}")]
    TooLarge(String),
    /// A feature-specific code named by the protocol, e.g. `CALL_ALREADY_ACTIVE`.
    #[error("{message}")]
    Specific { code: ErrorCode, message: String },
}

impl DomainError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidPayload(_) => ErrorCode::InvalidPayload,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Busy(_) => ErrorCode::Busy,
            Self::Offline(_) => ErrorCode::Offline,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::Specific { code, .. } => *code,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidPayload(message.into())
    }
}
