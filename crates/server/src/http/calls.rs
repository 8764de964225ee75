//! Call history endpoints (protocol §10): a user's history and one call (admin), and the
//! user's own history with their token.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Admin, Me};
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::calls;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryQuery {
    user_id: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

fn query(q: Result<Query<HistoryQuery>, QueryRejection>) -> AppResult<HistoryQuery> {
    q.map(|Query(q)| q)
        .map_err(|e| AppError::invalid(format!("bad query: {}", e.body_text())))
}

async fn page(app: &SharedApp, user_id: &str, q: &HistoryQuery) -> AppResult<Json<Value>> {
    let (calls, has_more) = calls::history(app, user_id, q.before.as_deref(), q.limit).await?;
    Ok(Json(
        json!({ "userId": user_id, "calls": calls, "hasMore": has_more }),
    ))
}

/// `GET /api/calls/history?userId=&limit=&before=`
pub async fn history(
    _: Admin,
    State(app): State<SharedApp>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let q = query(q)?;
    let user_id = q
        .user_id
        .clone()
        .ok_or_else(|| AppError::invalid("userId is required"))?;
    page(&app, &user_id, &q).await
}

/// `GET /api/calls/{callId}`
pub async fn get(
    _: Admin,
    State(app): State<SharedApp>,
    Path(call_id): Path<String>,
) -> AppResult<Json<Value>> {
    Ok(Json(calls::get(&app, &call_id).await?))
}

/// `GET /api/me/calls?limit=&before=`
pub async fn mine(
    me: Me,
    State(app): State<SharedApp>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let q = query(q)?;
    page(&app, &me.user_id, &q).await
}
