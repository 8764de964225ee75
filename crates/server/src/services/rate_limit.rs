//! Sliding-window rate limits per user and action (seed 001's `checkRateLimit`), on the
//! store's atomic `rate_limit_hit`.

use switchboard_domain::DomainError;
use switchboard_store::{RateDecision, keys};

use crate::app::App;
use crate::config::RateLimit;
use crate::error::AppResult;

/// Records a hit of `action` for `user_id` and returns the verdict.
pub async fn hit(
    app: &App,
    user_id: &str,
    action: &str,
    limit: RateLimit,
) -> AppResult<RateDecision> {
    Ok(app
        .store
        .rate_limit_hit(
            &keys::rate_limit(user_id, action),
            limit.limit,
            limit.window(),
            app.now(),
        )
        .await?)
}

/// Like [`hit`], but a refused hit is `RATE_LIMITED` with `retryAfterMs`.
pub async fn check(app: &App, user_id: &str, action: &str, limit: RateLimit) -> AppResult<()> {
    let decision = hit(app, user_id, action, limit).await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(DomainError::RateLimited {
            retry_after_ms: decision.retry_after_ms.max(1),
        }
        .into())
    }
}
