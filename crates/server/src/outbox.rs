//! How services reach clients without depending on the Socket.IO adapter type.
//!
//! The gateway is generic over the adapter (local in memory mode, Redis across instances);
//! services only need "emit this to that room" and "disconnect that room", which work the
//! same on every instance through whichever adapter is in use.

use async_trait::async_trait;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Emits to every socket in `room`, on every instance.
    async fn emit(&self, room: String, event: &'static str, data: serde_json::Value);
    /// Disconnects every socket in `room`, on every instance.
    async fn disconnect(&self, room: String);
    /// Disconnects every socket of this instance (graceful shutdown).
    async fn close(&self);
}

#[async_trait]
impl<A: Adapter> Outbox for SocketIo<A> {
    async fn emit(&self, room: String, event: &'static str, data: serde_json::Value) {
        if let Err(error) = self.to(room.clone()).emit(event, &data).await {
            tracing::debug!(%room, event, %error, "broadcast partly failed");
        }
    }

    async fn disconnect(&self, room: String) {
        if let Err(error) = self.to(room.clone()).disconnect().await {
            tracing::debug!(%room, %error, "remote disconnect partly failed");
        }
    }

    async fn close(&self) {
        SocketIo::close(self).await;
    }
}

/// Room names. Every socket joins its user's and its device's room on connect.
pub mod rooms {
    pub fn user(user_id: &str) -> String {
        format!("user:{user_id}")
    }

    pub fn device(user_id: &str, device_id: &str) -> String {
        // The length prefix keeps ids that contain `:` from colliding.
        format!("device:{}:{user_id}:{device_id}", user_id.len())
    }
}
