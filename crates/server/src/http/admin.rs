//! The admin API (`/api/*`) and the user's own `/api/me/*`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Admin, Me};
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::{friends, sessions, users};

fn check_id(app: &SharedApp, field: &str, id: &str) -> AppResult<()> {
    Ok(app.settings.limits.check_id(field, id)?)
}

pub async fn get_user(
    _: Admin,
    State(app): State<SharedApp>,
    Path(user_id): Path<String>,
) -> AppResult<Json<Value>> {
    check_id(&app, "userId", &user_id)?;
    let user = users::get_many(&app, std::slice::from_ref(&user_id))
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("no such user"))?;
    let presence = app
        .store
        .presence_get(std::slice::from_ref(&user_id), app.now())
        .await?
        .pop()
        .flatten();
    Ok(Json(json!({
        "userId": user.user_id,
        "name": user.name,
        "online": presence.as_ref().is_some_and(|p| p.is_online()),
        "devices": presence.as_ref().map_or(0, |p| p.devices.len()),
        "lastSeen": presence.map(|p| p.last_seen).filter(|&at| at > 0),
    })))
}

pub async fn get_friends(
    _: Admin,
    State(app): State<SharedApp>,
    Path(user_id): Path<String>,
) -> AppResult<Json<Value>> {
    check_id(&app, "userId", &user_id)?;
    let friend_ids = friends::of(&app, &user_id).await?;
    Ok(Json(json!({ "userId": user_id, "friendIds": friend_ids })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FriendsBody {
    friend_ids: Vec<String>,
}

pub async fn put_friends(
    _: Admin,
    State(app): State<SharedApp>,
    Path(user_id): Path<String>,
    body: Result<Json<FriendsBody>, axum::extract::rejection::JsonRejection>,
) -> AppResult<Json<Value>> {
    check_id(&app, "userId", &user_id)?;
    let Json(body) = body.map_err(|e| {
        AppError::invalid(format!(
            "body must be {{friendIds: string[]}}: {}",
            e.body_text()
        ))
    })?;
    if body.friend_ids.len() > app.settings.limits.conversation_members {
        return Err(AppError::invalid(format!(
            "friendIds has more than {} entries",
            app.settings.limits.conversation_members
        )));
    }
    body.friend_ids
        .iter()
        .try_for_each(|id| check_id(&app, "friendIds", id))?;
    if body.friend_ids.contains(&user_id) {
        return Err(AppError::invalid("a user cannot be their own friend"));
    }
    let friend_ids = friends::replace(&app, &user_id, &body.friend_ids).await?;
    Ok(Json(json!({ "userId": user_id, "friendIds": friend_ids })))
}

pub async fn list_sessions(
    _: Admin,
    State(app): State<SharedApp>,
    Path(user_id): Path<String>,
) -> AppResult<Json<Value>> {
    check_id(&app, "userId", &user_id)?;
    let sessions = sessions::list(&app, &user_id).await?;
    Ok(Json(json!({ "userId": user_id, "sessions": sessions })))
}

pub async fn revoke_session(
    _: Admin,
    State(app): State<SharedApp>,
    Path((user_id, device_id)): Path<(String, String)>,
) -> AppResult<Json<Value>> {
    check_id(&app, "userId", &user_id)?;
    check_id(&app, "deviceId", &device_id)?;
    if !sessions::revoke(&app, &user_id, &device_id).await? {
        return Err(AppError::not_found("no such session"));
    }
    Ok(Json(json!({ "success": true })))
}

pub async fn my_sessions(me: Me, State(app): State<SharedApp>) -> AppResult<Json<Value>> {
    let sessions = sessions::list(&app, &me.user_id).await?;
    Ok(Json(json!({ "userId": me.user_id, "sessions": sessions })))
}

pub async fn security_log(
    _: Admin,
    State(app): State<SharedApp>,
    Path(user_id): Path<String>,
) -> AppResult<Json<Value>> {
    check_id(&app, "userId", &user_id)?;
    let entries = sessions::security_log(&app, &user_id).await?;
    Ok(Json(json!({ "userId": user_id, "entries": entries })))
}
