//! Notification endpoints (protocol §10): a user's list (admin, or the user's own token) and
//! the webhook dead-letter list (admin).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Admin, Me};
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::notifications;

#[derive(Debug, Default, Deserialize)]
pub struct Page {
    limit: Option<usize>,
    before: Option<String>,
}

fn page(query: Result<Query<Page>, QueryRejection>) -> AppResult<Page> {
    query
        .map(|Query(p)| p)
        .map_err(|e| AppError::invalid(format!("bad query: {}", e.body_text())))
}

async fn user_list(app: &SharedApp, user_id: &str, page: Page) -> AppResult<Json<Value>> {
    let (list, has_more) =
        notifications::list(app, user_id, page.before.as_deref(), page.limit).await?;
    Ok(Json(
        json!({ "userId": user_id, "notifications": list, "hasMore": has_more }),
    ))
}

/// `GET /api/users/{userId}/notifications?limit=&before=`
pub async fn for_user(
    _: Admin,
    State(app): State<SharedApp>,
    Path(user_id): Path<String>,
    query: Result<Query<Page>, QueryRejection>,
) -> AppResult<Json<Value>> {
    user_list(&app, &user_id, page(query)?).await
}

/// `GET /api/me/notifications?limit=&before=`
pub async fn mine(
    me: Me,
    State(app): State<SharedApp>,
    query: Result<Query<Page>, QueryRejection>,
) -> AppResult<Json<Value>> {
    user_list(&app, &me.user_id, page(query)?).await
}

/// `GET /api/notifications/dead-letters?limit=`: oldest first. `body` is the JSON body of
/// the last attempt, parsed back when it is JSON.
pub async fn dead_letters(
    _: Admin,
    State(app): State<SharedApp>,
    query: Result<Query<Page>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let page = page(query)?;
    let limit = page.limit.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let letters = app.db.list_dead_letters(limit).await?;
    let letters: Vec<Value> = letters
        .into_iter()
        .map(|l| {
            let body = serde_json::from_str::<Value>(&l.body).unwrap_or(Value::String(l.body));
            json!({
                "id": l.id,
                "url": switchboard_db::redact_url(&l.url),
                "body": body,
                "attempts": l.attempts,
                "lastError": l.last_error,
                "createdAt": l.created_at,
            })
        })
        .collect();
    Ok(Json(
        json!({ "count": letters.len(), "deadLetters": letters }),
    ))
}

/// `DELETE /api/notifications/dead-letters/{id}`: an operator discards (or has replayed) one.
pub async fn delete_dead_letter(
    _: Admin,
    State(app): State<SharedApp>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    app.settings.limits.check_id("id", &id)?;
    if !app.db.delete_dead_letter(&id).await? {
        return Err(AppError::not_found("no such dead letter"));
    }
    Ok(Json(json!({ "deleted": id })))
}
