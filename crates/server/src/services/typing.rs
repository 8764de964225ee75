//! Typing indicators (protocol §9): `typing:start` / `typing:stop`, and the expiry after
//! `timers.typing_secs` without a refresh.
//!
//! The expiry is a deadline-queue timer, one per (conversation, user): a refresh reschedules
//! (replaces) it, `typing:stop` cancels it, and when it fires (on whichever instance claims
//! it) the server sends `isTyping: false` itself. Refreshes are rate limited with
//! `rate_limits.typing`; a throttled refresh answers success and changes nothing (no
//! broadcast, no reschedule), since typing is advisory and an error would only make clients
//! noisy.

use serde::{Deserialize, Serialize};
use switchboard_domain::chat::{self, TypingStart};
use switchboard_protocol::chat::Typing;
use switchboard_protocol::events;
use switchboard_store::Timer;

use crate::app::App;
use crate::error::AppResult;
use crate::outbox::rooms;
use crate::services::{conversations, rate_limit};

/// The deadline-queue kind of typing expiries.
pub const TYPING_TIMER: &str = "typing_expiry";
/// The rate-limit action of `typing:start`.
pub const TYPING_ACTION: &str = "typing";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expiry {
    conversation_id: String,
    user_id: String,
}

async fn tell(app: &App, conversation_id: &str, user_id: &str, is_typing: bool) {
    let data = serde_json::to_value(Typing {
        conversation_id: conversation_id.to_string(),
        user_id: user_id.to_string(),
        is_typing,
    })
    .unwrap_or_default();
    app.outbox
        .emit_except(
            vec![rooms::conversation(conversation_id)],
            rooms::user(user_id),
            events::TYPING,
            data,
        )
        .await;
}

/// `typing:start`: members only. Returns whether it was broadcast (false when throttled).
pub async fn start(app: &App, user_id: &str, conversation_id: &str) -> AppResult<bool> {
    conversations::member_of(app, conversation_id, user_id).await?;
    let decision =
        rate_limit::hit(app, user_id, TYPING_ACTION, app.settings.rate_limits.typing).await?;
    match chat::typing_start(decision.allowed, app.now(), app.settings.timers.typing_secs) {
        TypingStart::Throttled => Ok(false),
        TypingStart::Broadcast { expires_at } => {
            let payload = serde_json::to_string(&Expiry {
                conversation_id: conversation_id.to_string(),
                user_id: user_id.to_string(),
            })
            .unwrap_or_default();
            app.store
                .timer_schedule(&Timer {
                    id: chat::typing_timer_id(conversation_id, user_id),
                    kind: TYPING_TIMER.to_string(),
                    payload,
                    due_at: expires_at,
                })
                .await?;
            tell(app, conversation_id, user_id, true).await;
            Ok(true)
        }
    }
}

/// `typing:stop`: cancels the expiry and tells the others, if the user was typing. Not
/// limited to current members, so a user removed mid-typing can still clear it.
pub async fn stop(app: &App, user_id: &str, conversation_id: &str) -> AppResult<bool> {
    let pending = app
        .store
        .timer_cancel(&chat::typing_timer_id(conversation_id, user_id))
        .await?;
    let broadcast = chat::typing_stop_broadcasts(pending);
    if broadcast {
        tell(app, conversation_id, user_id, false).await;
    }
    Ok(broadcast)
}

/// The timer handler: the user stopped refreshing, so they stopped typing.
pub async fn expired(app: &App, timer: &Timer) {
    match serde_json::from_str::<Expiry>(&timer.payload) {
        Ok(e) => tell(app, &e.conversation_id, &e.user_id, false).await,
        Err(error) => tracing::warn!(id = %timer.id, %error, "unreadable typing timer"),
    }
}
