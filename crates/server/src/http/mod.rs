//! The HTTP API on the Socket.IO port (protocol §10).

mod admin;
mod auth;
mod calls;
mod notifications;
mod ops;
mod rooms;
pub mod web;

use axum::Router;
use axum::routing::{delete, get};

use crate::app::SharedApp;

pub fn router(app: SharedApp) -> Router {
    let client = web::WebClient::from_settings(&app.settings.web);
    let api = Router::new()
        .route("/health", get(ops::health))
        .route("/redis/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/stats", get(ops::stats))
        .route("/redis/stats", get(ops::stats))
        .route("/online-users", get(ops::online_users))
        .route("/redis/online-users", get(ops::online_users))
        .route("/api/users/online", get(ops::online_users))
        .route("/api/rooms", get(rooms::list))
        .route("/api/rooms/{room_id}", get(rooms::get))
        .route("/api/users/{user_id}", get(admin::get_user))
        .route(
            "/api/users/{user_id}/friends",
            get(admin::get_friends).put(admin::put_friends),
        )
        .route("/api/users/{user_id}/sessions", get(admin::list_sessions))
        .route(
            "/api/users/{user_id}/security-log",
            get(admin::security_log),
        )
        .route(
            "/api/users/{user_id}/sessions/{device_id}",
            delete(admin::revoke_session),
        )
        .route("/api/me/sessions", get(admin::my_sessions))
        .route("/api/calls/history", get(calls::history))
        .route("/api/calls/{call_id}", get(calls::get))
        .route("/api/me/calls", get(calls::mine))
        .route(
            "/api/users/{user_id}/notifications",
            get(notifications::for_user),
        )
        .route("/api/me/notifications", get(notifications::mine))
        .route(
            "/api/notifications/dead-letters",
            get(notifications::dead_letters),
        )
        .route(
            "/api/notifications/dead-letters/{id}",
            delete(notifications::delete_dead_letter),
        )
        .with_state(app);
    match client {
        Some(client) => api.fallback(move |request| async move { client.serve(request).await }),
        None => api.fallback(ops::not_found),
    }
}
