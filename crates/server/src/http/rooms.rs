//! `GET /api/rooms` and `GET /api/rooms/{roomId}` (protocol §10, admin).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::auth::Admin;
use crate::app::SharedApp;
use crate::error::AppResult;
use crate::services::rooms;

/// Every live room, in full.
pub async fn list(_: Admin, State(app): State<SharedApp>) -> AppResult<Json<Value>> {
    let rooms = rooms::all(&app).await?;
    Ok(Json(json!({ "rooms": rooms })))
}

/// One room, live or recently ended.
pub async fn get(
    _: Admin,
    State(app): State<SharedApp>,
    Path(room_id): Path<String>,
) -> AppResult<Json<Value>> {
    app.settings.limits.check_id("roomId", &room_id)?;
    let room = rooms::get(&app, &room_id).await?;
    Ok(Json(json!({ "room": room })))
}
