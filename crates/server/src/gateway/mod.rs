//! The Socket.IO gateway: handshake, device bookkeeping, and the event table.
//!
//! Handlers here parse a payload, call a service and answer; they never reach into the store
//! or the database themselves. The gateway is generic over the Socket.IO adapter so the same
//! code serves the in-memory deployment and the Redis-shared one.

mod calls;
mod chat;
mod conversation_calls;
mod dispatch;
mod handlers;
// `rooms` already names the Socket.IO room names (`outbox::rooms`) here.
#[path = "rooms.rs"]
mod room_events;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use socketioxide_core::adapter::DefinedAdapter;
use switchboard_domain::devices::DeviceConnect;
use switchboard_protocol::events;

use crate::app::{LocalSocket, SharedApp};
use crate::metrics::Metrics;
use crate::outbox::rooms;
use crate::services::sessions::{self, AdmitError};
use crate::services::users;

pub use session::SocketSession;

/// Installs the connect middleware and handlers on the default namespace.
pub fn register<A: Adapter + DefinedAdapter>(io: &SocketIo<A>, app: SharedApp) -> A::InitRes {
    let for_middleware = app.clone();
    let on_connect = move |socket: SocketRef<A>| {
        let app = app.clone();
        async move { connected(app, socket).await }
    };
    let authenticate = move |socket: SocketRef<A>, TryData(auth): TryData<serde_json::Value>| {
        let app = for_middleware.clone();
        async move { admit(app, socket, auth.ok()).await }
    };
    io.ns("/", on_connect.with(authenticate))
}

/// The handshake: authenticate, enforce the device cap, replace an older socket of the
/// same device. An `Err` becomes the connect error `{message}` the client sees.
async fn admit<A: Adapter>(
    app: SharedApp,
    socket: SocketRef<A>,
    auth: Option<serde_json::Value>,
) -> Result<(), HandshakeError> {
    let refuse = |reason: &str| {
        app.metrics
            .refused_connections
            .get_or_create(&Metrics::reason(reason))
            .inc()
    };
    let identity = match app.auth.handshake(auth.as_ref(), app.now()) {
        Ok(identity) => identity,
        Err(error) => {
            refuse(&error.to_string());
            return Err(HandshakeError::Auth(error));
        }
    };
    let device_id = identity
        .device_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let parts = socket.req_parts();
    let ip = client_ip(parts);
    let user_agent = parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    let connect = DeviceConnect {
        user_id: identity.user_id.clone(),
        device_id: device_id.clone(),
        socket_id: socket.id.to_string(),
        instance_id: app.instance_id.clone(),
        ip,
        user_agent,
    };
    if let Err(error) = sessions::admit(&app, &connect).await {
        refuse(&error.to_string());
        if let AdmitError::Backend(e) = &error {
            tracing::warn!(user_id = %identity.user_id, error = %e, "handshake refused: backend unavailable");
        }
        return Err(HandshakeError::Admit(error));
    }
    // The user record, then presence, are written before the client sees `connect`, so a
    // request it sends right away already finds them, and online lists built from the
    // presence announcement already know the name.
    if let Err(error) = users::upsert(&app, &identity.user_id, &identity.name).await {
        tracing::warn!(user_id = %identity.user_id, %error, "could not record the user");
    }
    if let Err(error) =
        sessions::mark_connected(&app, &identity.user_id, &identity.name, &device_id).await
    {
        refuse("unavailable");
        tracing::warn!(user_id = %identity.user_id, %error, "handshake refused: could not mark the device live");
        return Err(HandshakeError::Admit(AdmitError::Backend(error)));
    }
    // Conversation rooms are joined before the client sees `connect`, so no `message:new`
    // sent after that can miss this socket (guests take part in calls only).
    if identity.guest_conversation.is_none() {
        chat::join_conversations(&app, &socket, &identity.user_id).await;
    }
    // Everything the socket needs is in place before the client sees `connect`:
    // socketioxide runs the connect handler on a spawned task after sending CONNECT, so an
    // event (or a disconnect) arriving before then must already find its handler, rooms and
    // bookkeeping. Nothing below can fail.
    socket.join([
        rooms::user(&identity.user_id),
        rooms::device(&identity.user_id, &device_id),
        rooms::lobby(),
    ]);
    app.local.insert(
        socket.id.to_string(),
        LocalSocket {
            user_id: identity.user_id.clone(),
            device_id: device_id.clone(),
        },
    );
    // The new socket gets its online list at the next flush.
    app.online_lists.mark(&identity.user_id);
    app.metrics.connections.inc();
    app.metrics.connected_sockets.set(app.local.len() as i64);
    socket.extensions.insert(Arc::new(
        SocketSession::new(identity, device_id).with_socket_id(socket.id.to_string()),
    ));
    handlers::install(&app, &socket);
    let disconnect_app = app.clone();
    socket.on_disconnect(move |socket: SocketRef<A>, reason: DisconnectReason| {
        let app = disconnect_app.clone();
        async move { disconnected(app, socket, reason).await }
    });
    Ok(())
}

/// Why a handshake was refused; the text is the connect error's `message` (protocol §2).
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Admit(#[from] AdmitError),
}

fn client_ip(parts: &axum::http::request::Parts) -> Option<String> {
    let forwarded = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|ip| ip.trim().to_string())
        .filter(|ip| !ip.is_empty() && ip.len() <= 64);
    forwarded.or_else(|| {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip().to_string())
    })
}

/// The socket is connected (its rooms and handlers were set up during the handshake):
/// greet it with `session` and start watching its credential's expiry.
async fn connected<A: Adapter>(app: SharedApp, socket: SocketRef<A>) {
    let Some(session) = socket.extensions.get::<Arc<SocketSession>>() else {
        // Unreachable in practice: the middleware always inserts the session before this.
        let _ = socket.disconnect();
        return;
    };
    let user_id = session.identity.user_id.clone();
    let device_id = session.device_id.clone();

    let hello = serde_json::json!({
        "userId": user_id,
        "name": session.identity.name,
        "deviceId": device_id,
        "socketId": socket.id.to_string(),
        "serverTime": app.now(),
    });
    dispatch::emit(&app, &socket, events::SESSION, &hello);
    session::watch_expiry(app.clone(), socket.clone(), session.clone());
    // A device that connects while its user is being rung rings too (§5), once it can
    // hear it: after `connect`.
    if let Err(error) = crate::services::calls::device_connected(&app, &user_id, &device_id).await {
        tracing::warn!(%user_id, %error, "could not ring the new device");
    }
    tracing::info!(%user_id, %device_id, socket_id = %socket.id, "connected");
}

async fn disconnected<A: Adapter>(app: SharedApp, socket: SocketRef<A>, reason: DisconnectReason) {
    app.local.remove(&socket.id.to_string());
    app.metrics.connected_sockets.set(app.local.len() as i64);
    app.metrics
        .disconnections
        .get_or_create(&Metrics::reason(format!("{reason:?}")))
        .inc();
    let Some(session) = socket.extensions.get::<Arc<SocketSession>>() else {
        return;
    };
    session.close();
    let user_id = &session.identity.user_id;
    match sessions::release(&app, user_id, &session.device_id, &socket.id.to_string()).await {
        // The device went away (not replaced by a newer socket): the rings it placed stop
        // (seed 000's cleanupUserCallState, outgoing side). Not when this instance is
        // shutting down: the client reconnects to another (or the restarted) instance and
        // the call, kept in the store, rings on until answered or timed out.
        Ok(true) if !matches!(reason, DisconnectReason::ClosingServer) => {
            if let Err(error) =
                crate::services::calls::device_disconnected(&app, user_id, &session.device_id).await
            {
                tracing::warn!(%user_id, %error, "could not cancel the device's rings");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%user_id, %error, "could not release the device"),
    }
    // A participant taking part from this socket is reconnecting now (protocol §6).
    if let Err(error) =
        crate::services::rooms::socket_dropped(&app, user_id, &socket.id.to_string()).await
    {
        tracing::warn!(%user_id, %error, "could not mark the room participant reconnecting");
    }
    // A conversation-call participant attending from this socket is reconnecting (§7).
    if let Err(error) =
        crate::services::conversation_calls::socket_dropped(&app, user_id, &socket.id.to_string())
            .await
    {
        tracing::warn!(%user_id, %error, "could not mark the call participant reconnecting");
    }
    tracing::info!(%user_id, device_id = %session.device_id, socket_id = %socket.id, ?reason, "disconnected");
}
