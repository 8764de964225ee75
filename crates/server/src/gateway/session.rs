//! What the gateway remembers about one socket, and the token-expiry watch.

use std::sync::Arc;
use std::time::Duration;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use switchboard_domain::Millis;
use switchboard_protocol::events;
use tokio::sync::watch;

use crate::app::SharedApp;
use crate::auth::Identity;

/// A value of the expiry channel meaning "the socket is gone, stop watching".
const CLOSED: Millis = -1;
/// A value meaning "this credential never expires" (the dev handshake).
const NEVER: Millis = 0;

/// The identity and device of a connected socket, kept in its extensions.
#[derive(Debug)]
pub struct SocketSession {
    pub identity: Identity,
    pub device_id: String,
    /// The Socket.IO socket id (a room participant's `socketId`, protocol §6).
    pub socket_id: String,
    /// When the current credential expires; `auth:refresh` moves it.
    expiry: watch::Sender<Millis>,
}

impl SocketSession {
    pub fn new(identity: Identity, device_id: String) -> Self {
        let (expiry, _) = watch::channel(identity.expires_at.unwrap_or(NEVER));
        Self {
            identity,
            device_id,
            socket_id: String::new(),
            expiry,
        }
    }

    /// Names the socket this session belongs to.
    pub fn with_socket_id(mut self, socket_id: String) -> Self {
        self.socket_id = socket_id;
        self
    }

    pub fn user_id(&self) -> &str {
        &self.identity.user_id
    }

    pub fn expires_at(&self) -> Option<Millis> {
        Some(*self.expiry.borrow()).filter(|&at| at > NEVER)
    }

    /// Extends the session to a new credential's expiry.
    pub fn refresh(&self, expires_at: Millis) {
        self.expiry.send_replace(expires_at);
    }

    /// Stops the expiry watch once the socket is gone.
    pub fn close(&self) {
        self.expiry.send_replace(CLOSED);
    }
}

/// Disconnects the socket when its credential expires, unless `auth:refresh` moved the
/// expiry first. Protocol §2: the client is told with `auth:expired` before the disconnect.
pub fn watch_expiry<A: Adapter>(app: SharedApp, socket: SocketRef<A>, session: Arc<SocketSession>) {
    let mut expiry = session.expiry.subscribe();
    drop(session);
    tokio::spawn(async move {
        loop {
            let expires_at = *expiry.borrow_and_update();
            if expires_at == CLOSED || expires_at == NEVER || !socket.connected() {
                return;
            }
            let wait = expires_at - app.now();
            if wait <= 0 {
                tracing::info!(socket_id = %socket.id, "credential expired");
                let _ = socket.emit(events::AUTH_EXPIRED, &serde_json::json!({}));
                // Let the notice leave before the disconnect packet.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = socket.disconnect();
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                changed = expiry.changed() => if changed.is_err() { return },
            }
        }
    });
}
