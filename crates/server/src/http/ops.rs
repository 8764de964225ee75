//! Operations endpoints: health, metrics, statistics, online users.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::auth::Admin;
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};
use crate::services::users;

/// How long a health probe waits for a backend before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn probe(
    backend: &str,
    result: Result<Result<Duration, String>, tokio::time::error::Elapsed>,
) -> Value {
    match result {
        Ok(Ok(latency)) => {
            json!({ "backend": backend, "ok": true, "latencyMs": latency.as_secs_f64() * 1000.0 })
        }
        Ok(Err(error)) => json!({ "backend": backend, "ok": false, "error": error }),
        Err(_) => json!({ "backend": backend, "ok": false, "error": "timed out" }),
    }
}

/// `{status, store, db}`: 200 when both backends answer, 503 naming the one that does not.
pub async fn health(State(app): State<SharedApp>) -> impl IntoResponse {
    let (store, db) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, async {
            app.store.ping().await.map_err(|e| e.to_string())
        }),
        tokio::time::timeout(PROBE_TIMEOUT, async {
            app.db.ping().await.map_err(|e| e.to_string())
        }),
    );
    let store = probe(app.store.backend(), store);
    let db = probe(app.db.backend(), db);
    let ok = store["ok"] == true && db["ok"] == true;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "instanceId": app.instance_id,
        "store": store,
        "db": db,
    });
    (status, Json(body))
}

pub async fn metrics(State(app): State<SharedApp>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

pub async fn stats(_: Admin, State(app): State<SharedApp>) -> AppResult<Json<Value>> {
    let online = app.store.presence_online_users(app.now()).await?;
    Ok(Json(json!({
        "instanceId": app.instance_id,
        "uptimeSecs": app.started_at.elapsed().as_secs(),
        "localSockets": app.local.len(),
        "onlineUsers": online.len(),
        "store": app.store.backend(),
        "db": app.db.backend(),
        "dev": app.settings.server.dev,
        "jobs": {
            "sessionSweep": app.job_stats.session_sweep.snapshot(),
            "notifications": app.job_stats.notifications.snapshot(),
        },
    })))
}

/// Every online user with name and device count, across all instances.
pub async fn online_users(_: Admin, State(app): State<SharedApp>) -> AppResult<Json<Value>> {
    let now = app.now();
    let mut ids = app.store.presence_online_users(now).await?;
    ids.sort();
    let entries = app.store.presence_get(&ids, now).await?;
    let names = users::get_many(&app, &ids).await?;
    let users: Vec<Value> = ids
        .iter()
        .zip(entries)
        .filter_map(|(id, entry)| {
            let entry = entry.filter(|e| e.is_online())?;
            let name = names
                .iter()
                .find(|u| &u.user_id == id)
                .map_or(id.as_str(), |u| u.name.as_str());
            Some(json!({
                "userId": id,
                "name": name,
                "status": entry.status.unwrap_or_else(|| "online".into()),
                "devices": entry.devices.len(),
                "lastSeen": entry.last_seen,
            }))
        })
        .collect();
    Ok(Json(json!({ "count": users.len(), "users": users })))
}

pub async fn not_found() -> AppError {
    AppError::not_found("no such endpoint")
}
